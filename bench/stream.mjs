// The per-user stream's load (bench/stream.py runs it): N users, each a member of
// --per-user of --rooms public rooms (user i: rooms (i + s*k) mod rooms, k < per-user,
// s = rooms / per-user; set up by stream.py), each with ONE connection (batch=1) on room i mod rooms; --rate chat
// messages a second, each from a random user on its connection's room, one in ten
// mentioning a random member of that room. Prints "MEASURE-START" and "MEASURE-END"
// around the measured time — the sending, then until every chat has arrived — (the
// driver samples the server's CPU there), then one
// JSON line: delivery latency of every chat received (send to receive, one clock),
// activity and notify items received.
//   node bench/stream.mjs --url http://127.0.0.1:PORT --clients 1000 --rooms 100
//        --per-user 20 --rate 50 --seconds 20 [--warmup 2] [--user-prefix load --password P]
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at === -1 ? fallback : argv[at + 1];
};
const url = opt("url");
const N = Number(opt("clients", 1000));
const rooms = Number(opt("rooms", 100));
const perUser = Number(opt("per-user", 20));
const rate = Number(opt("rate", 50));
const seconds = Number(opt("seconds", 20));
const warmup = Number(opt("warmup", 2));
const prefix = opt("user-prefix", "load");
const password = opt("password", "load-password-1");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function pool(n, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => { while (next < N) await fn(next++); }));
}

async function signIn(i) {
  const r = await fetch(`${url}/api/session`, {
    method: "POST",
    body: JSON.stringify({ name: `${prefix}${i}`, password }),
    headers: { "content-type": "application/json" },
  });
  if (!r.ok) throw new Error(`sign-in ${prefix}${i}: HTTP ${r.status}`);
  return r.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
}

const cookies = new Array(N);
await pool(16, async (i) => { cookies[i] = await signIn(i); });

let measuring = false;
const latencies = [];
const errors = [];
let chats = 0, activity = 0, notify = 0, frames = 0, closes = 0, lastFrameAt = 0;
let histories = 0; // sockets whose history came: registered with the server's hub
function onFrame(raw) {
  const now = performance.now();
  lastFrameAt = now;
  if (!measuring) {
    if (raw.toString().startsWith('{"type":"history"')) histories++;
    return;
  }
  frames++;
  const frame = JSON.parse(raw);
  for (const item of frame.type === "batch" ? frame.messages : [frame]) {
    if (item.type === "chat") {
      chats++;
      latencies.push(now - parseFloat(item.data.slice(1)));
    } else if (item.type === "activity") activity++;
    else if (item.type === "notify") notify++;
    else if (item.type === "error") errors.push(item.code);
  }
}

const roomOf = (i) => i % rooms;
function connect(i) {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url.replace("http", "ws")}/ws/chat/s-${roomOf(i)}?batch=1`, {
      headers: { Cookie: cookies[i] },
      perMessageDeflate: false,
    });
    ws.on("open", () => resolve(ws));
    ws.on("error", () => resolve(null));
    ws.on("close", () => { closes++; });
    ws.on("message", onFrame);
  });
}
const sockets = new Array(N);
await pool(100, async (i) => { sockets[i] = await connect(i); });
// Until every socket has its history (before it, a message goes into the history, not
// live: it would count as lost) and the join storm has settled: no frame for `warmup`
// seconds (two minutes at most).
const opened = performance.now();
const connected = sockets.filter(Boolean).length;
while (
  (histories < connected || performance.now() - lastFrameAt < warmup * 1000) &&
  performance.now() - opened < 120_000
) await sleep(100);

// The members of room r: users i with (r - i) mod rooms == s*k for some k < per-user.
const stride = Math.floor(rooms / perUser);
const membersOf = (r) => {
  const found = [];
  for (let i = 0; i < N; i++) {
    const d = (((r - (i % rooms)) % rooms) + rooms) % rooms;
    if (d % stride === 0 && d / stride < perUser) found.push(i);
  }
  return found;
};
const members = Array.from({ length: rooms }, (_, r) => membersOf(r));

console.log("MEASURE-START");
measuring = true;
const started = performance.now();
let sent = 0, mentions = 0, expected = 0;
const connectedTo = new Array(rooms).fill(0);
for (let i = 0; i < N; i++) if (sockets[i]) connectedTo[roomOf(i)]++;
while (performance.now() - started < seconds * 1000) {
  const due = Math.floor(((performance.now() - started) / 1000) * rate);
  for (; sent < due; sent++) {
    const i = Math.floor(Math.random() * N);
    const ws = sockets[i];
    if (!ws || ws.readyState !== WebSocket.OPEN) continue;
    const room = members[roomOf(i)];
    const mentioned = room[Math.floor(Math.random() * room.length)];
    const mention = sent % 10 === 0 ? ` @${prefix}${mentioned}` : "";
    if (mention && mentioned !== i) mentions++;
    ws.send(JSON.stringify({ type: "chat", data: `t${performance.now()}${mention}` }));
    expected += connectedTo[roomOf(i)];
  }
  await sleep(5);
}
// Until every chat has arrived (a server that fell behind catches up: its CPU is the
// work the load cost), a minute at most; then the trailing activity's second.
const sendingEnded = performance.now();
while (chats < expected && performance.now() - sendingEnded < 60_000) await sleep(50);
const drainS = (performance.now() - sendingEnded) / 1000;
await sleep(1500);
measuring = false;
console.log("MEASURE-END");
latencies.sort((a, b) => a - b);
const at = (q) => (latencies.length ? +latencies[Math.floor(q * (latencies.length - 1))].toFixed(1) : null);
console.log(JSON.stringify({
  clients: N, connected, histories, closes, sent, seconds, chats_expected: expected,
  drain_s: +drainS.toFixed(1), errors: errors.length, error_codes: [...new Set(errors)],
  chats_received: chats, frames, activity_items: activity, notify_items: notify, mentions_of_others: mentions,
  latency_p50_ms: at(0.5), latency_p99_ms: at(0.99), latency_max_ms: at(1),
}));
for (const ws of sockets) ws?.terminate();
process.exit(0);
