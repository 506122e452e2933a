// The load generator (Node + ws), same options and JSON output as loadgen.py:
//   node bench/loadgen.mjs --url http://127.0.0.1:8000 --clients 100 --senders 10 \
//        --mode closed|steady [--rate 200] [--seconds 10] [--batch] [--deflate] [--rooms 1]
//        [--private]  (the rooms are private rooms of the first account, every other
//                      account invited: what the members-only check costs a message)
//        [--reads]    (every client sends a read frame for every chat message it receives:
//                      what read positions cost, docs/protocol.md §18)
import { performance } from "node:perf_hooks";
import { cpuUsage } from "node:process";
import WebSocket from "ws";

const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const at = argv.indexOf(`--${name}`);
  return at === -1 ? fallback : argv[at + 1];
};
const flag = (name) => argv.includes(`--${name}`);
const url = opt("url");
const clientsWanted = Number(opt("clients", 100));
const sendersWanted = Number(opt("senders", 10));
const rooms = Number(opt("rooms", 1));
const mode = opt("mode", "closed");
const rate = Number(opt("rate", 200));
const seconds = Number(opt("seconds", 10));
const warmup = Number(opt("warmup", 2));
const batch = flag("batch");
const deflate = flag("deflate");
const privateRooms = flag("private");
const reads = flag("reads");
const padding = "x".repeat(60);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const names = [];
async function signIn() {
  const name = `b${Math.random().toString(16).slice(2, 14)}`;
  const response = await fetch(`${url}/api/session`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, password: "benchmark password" }),
  });
  if (!response.ok) throw new Error(`sign-in failed: ${response.status}`);
  names.push(name);
  return response.headers.getSetCookie().map((c) => c.split(";")[0]).join("; ");
}

async function post(path, cookie, body) {
  const response = await fetch(`${url}${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Cookie: cookie },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`POST ${path} failed: ${response.status} ${await response.text()}`);
}

const cookies = [];
for (let i = 0; i < Math.min(clientsWanted, 50); i++) cookies.push(await signIn());
const roomSuffix = privateRooms ? `-${Math.random().toString(16).slice(2, 8)}` : "";
if (privateRooms) {
  for (let r = 0; r < rooms; r++) {
    const room = `bench-${r}${roomSuffix}`;
    await post("/api/rooms", cookies[0], { name: room, private: true });
    for (const name of names.slice(1)) await post(`/api/rooms/${room}/members`, cookies[0], { name });
  }
}

let measuring = false;
const clients = [];
for (let index = 0; index < clientsWanted; index++) {
  const room = `bench-${index % rooms}${roomSuffix}`;
  const wsUrl = `${url.replace("http://", "ws://")}/ws/chat/${room}${batch ? "?batch=1" : ""}`;
  const ws = new WebSocket(wsUrl, { headers: { Cookie: cookies[index % cookies.length] }, perMessageDeflate: deflate });
  const client = { index, ws, deliveries: 0, latencies: [], waiting: null };
  ws.on("message", (raw) => {
    const frame = JSON.parse(raw);
    // A batch may carry join, left and list frames too (presence is coalesced into it).
    const messages = (frame.type === "batch" ? frame.messages : [frame]).filter((m) => m.type === "chat");
    const now = performance.now();
    if (reads) for (const message of messages) ws.send(JSON.stringify({ type: "read", id: message.id }));
    for (const message of messages) {
      const [sender, sentAt] = message.data.split(" ", 2);
      if (measuring) {
        client.deliveries++;
        client.latencies.push(now - Number(sentAt));
      }
      if (Number(sender) === index && client.waiting) {
        const done = client.waiting;
        client.waiting = null;
        done();
      }
    }
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  clients.push(client);
}
const senders = clients.slice(0, sendersWanted);

async function closedLoop(client, stop) {
  let sent = 0;
  while (performance.now() < stop) {
    const echoed = new Promise((resolve) => (client.waiting = resolve));
    client.ws.send(JSON.stringify({ type: "chat", data: `${client.index} ${performance.now()} ${padding}` }));
    await echoed;
    sent++;
  }
  return sent;
}

async function steady(client, stop) {
  const interval = (senders.length / rate) * 1000;
  let nextAt = performance.now() + interval * (client.index / senders.length);
  let sent = 0;
  while (nextAt < stop) {
    await sleep(Math.max(0, nextAt - performance.now()));
    client.ws.send(JSON.stringify({ type: "chat", data: `${client.index} ${performance.now()} ${padding}` }));
    sent++;
    nextAt += interval;
  }
  return sent;
}

const loop = mode === "closed" ? closedLoop : steady;
const warmStop = performance.now() + warmup * 1000;
await Promise.all(senders.map((c) => loop(c, warmStop)));
await sleep(500);
measuring = true;
const cpuBefore = cpuUsage();
const started = performance.now();
const sentCounts = await Promise.all(senders.map((c) => loop(c, started + seconds * 1000)));
const elapsed = (performance.now() - started) / 1000;
const cpu = cpuUsage(cpuBefore);
await sleep(1000);
measuring = false;
const latencies = clients.flatMap((c) => c.latencies).sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] : NaN);
const deliveries = clients.reduce((sum, c) => sum + c.deliveries, 0);
console.log(JSON.stringify({
  sent_per_s: sentCounts.reduce((a, b) => a + b, 0) / elapsed,
  deliveries_per_s: deliveries / elapsed,
  p50_ms: pct(0.5),
  p99_ms: pct(0.99),
  max_ms: latencies.length ? latencies[latencies.length - 1] : NaN,
  loadgen_cpu_share: (cpu.user + cpu.system) / 1e6 / elapsed,
}));
for (const c of clients) c.ws.terminate();
process.exit(0);
