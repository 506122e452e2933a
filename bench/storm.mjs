// A join storm of distinct users, timed until the room is quiet in the sense that
// matters: every client has seen every other one (its list plus the joins it heard).
//   node bench/storm.mjs --url ws://127.0.0.1:PORT/ws/chat[?batch=1] --clients 2000
//        [--login-url http://…/api/session --password P] [--user-prefix load]
//        [--concurrency 200] [--timeout 120]
// Identity as the anchors' harness: `<prefix><i>` signed in through --login-url (16 at a
// time, before the clock starts), else the tutorial's base64 cookie. One JSON line out.
// A client's view is a bitmap of user numbers (the digits after the prefix): a `list`
// replaces it, `join`/`left` (alone or inside a `batch` frame) set and clear a bit.
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at === -1 ? fallback : argv[at + 1];
};
const url = opt("url");
const N = Number(opt("clients", 2000));
const loginUrl = opt("login-url", "");
const password = opt("password", "load-password-1");
const prefix = opt("user-prefix", "load");
const concurrency = Number(opt("concurrency", 200));
const timeoutS = Number(opt("timeout", 120));

async function pool(n, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, N) }, async () => { while (next < N) await fn(next++); }));
}

async function identity(i) {
  const name = `${prefix}${i}`;
  if (!loginUrl) return "name=" + Buffer.from(JSON.stringify({ id: `u${i}`, name })).toString("base64");
  const r = await fetch(loginUrl, { method: "POST", body: JSON.stringify({ name, password }), headers: { "content-type": "application/json" } });
  if (!r.ok) throw new Error(`login ${name}: HTTP ${r.status}`);
  return r.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
}

const cookies = new Array(N);
const signInStart = performance.now();
await pool(loginUrl ? 16 : N, async (i) => { cookies[i] = await identity(i); });
const signInS = (performance.now() - signInStart) / 1000;

const views = Array.from({ length: N }, () => new Uint8Array(N));
const counts = new Int32Array(N);
let complete = 0, frames = 0, presenceFrames = 0, bytes = 0, closes = 0;
const closeCodes = {};
let t0 = 0, quietAt = 0, lastPresenceAt = 0;
const index = (user) => Number(String(user.name).slice(prefix.length));

function set(c, i, on) {
  if (!(i >= 0 && i < N) || views[c][i] === on) return;
  views[c][i] = on;
  const before = counts[c];
  counts[c] += on ? 1 : -1;
  if (before === N) complete--;
  if (counts[c] === N) complete++;
}

function apply(c, item) {
  if (item.type === "list") {
    for (let i = 0; i < N; i++) set(c, i, 0);
    for (const user of item.data) set(c, index(user), 1);
  } else if (item.type === "join") set(c, index(item.user), 1);
  else if (item.type === "left") set(c, index(item.user), 0);
  else return false;
  return true;
}

function onFrame(c, raw) {
  frames++;
  bytes += raw.length;
  const frame = JSON.parse(raw);
  const items = frame.type === "batch" ? frame.messages : [frame];
  let presence = false;
  for (const item of items) presence = apply(c, item) || presence;
  if (presence) {
    presenceFrames++;
    lastPresenceAt = performance.now();
  }
  if (complete === N && !quietAt) quietAt = performance.now();
}

const connectMs = [];
function connect(i) {
  return new Promise((resolve) => {
    const started = performance.now();
    const ws = new WebSocket(url, { headers: { Cookie: cookies[i] }, perMessageDeflate: false });
    ws.on("open", () => { connectMs.push(performance.now() - started); resolve(ws); });
    ws.on("error", () => resolve(null));
    ws.on("close", (code) => { closes++; closeCodes[code] = (closeCodes[code] || 0) + 1; });
    ws.on("message", (raw) => onFrame(i, raw));
  });
}

t0 = performance.now();
const sockets = new Array(N);
await pool(concurrency, async (i) => { sockets[i] = await connect(i); });
const allOpenS = (performance.now() - t0) / 1000;
while (!quietAt && performance.now() - t0 < timeoutS * 1000) await new Promise((r) => setTimeout(r, 20));
connectMs.sort((a, b) => a - b);
console.log(JSON.stringify({
  mode: "storm-views", url, clients: N, connected: sockets.filter(Boolean).length, closes, close_codes: closeCodes,
  sign_in_s: +signInS.toFixed(2), all_open_s: +allOpenS.toFixed(2),
  everyone_sees_everyone_s: quietAt ? +((quietAt - t0) / 1000).toFixed(2) : null,
  complete_clients: complete, last_presence_s: +((lastPresenceAt - t0) / 1000).toFixed(2),
  frames, presence_frames_per_client: +(presenceFrames / N).toFixed(1), mbytes: +(bytes / 1e6).toFixed(1),
  handshake_p99_ms: connectMs.length ? +connectMs[Math.floor(0.99 * (connectMs.length - 1))].toFixed(1) : null,
}));
for (const ws of sockets) ws?.terminate();
process.exit(0);
