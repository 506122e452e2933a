// Scenario 5: open N idle WebSockets with `inflight` handshakes at a time; report the
// connect rate and how many failed. The caller reads the server's memory meanwhile.
//   node bench/idle.mjs --url http://127.0.0.1:8000 --connections 5000 --inflight 200 --hold 5
import { performance } from "node:perf_hooks";
import WebSocket from "ws";

const argv = process.argv.slice(2);
const opt = (name, fallback) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : fallback);
const url = opt("url");
const total = Number(opt("connections", 5000));
const inflight = Number(opt("inflight", 200));
const hold = Number(opt("hold", 5));

const cookies = [];
for (let i = 0; i < 20; i++) {
  const response = await fetch(`${url}/api/session`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: `idle${Math.random().toString(16).slice(2, 12)}`, password: "benchmark password" }),
  });
  cookies.push(response.headers.getSetCookie().map((c) => c.split(";")[0]).join("; "));
}
const sockets = [];
let failed = 0;
let next = 0;
const started = performance.now();
async function opener() {
  while (next < total) {
    const index = next++;
    const ws = new WebSocket(`${url.replace("http://", "ws://")}/ws/chat/idle-${index % 50}`, {
      headers: { Cookie: cookies[index % cookies.length] },
      perMessageDeflate: false,
      handshakeTimeout: 30000,
    });
    ws.on("message", () => {});
    await new Promise((resolve) => {
      ws.once("open", () => { sockets.push(ws); resolve(); });
      ws.once("error", () => { failed++; resolve(); });
    });
  }
}
await Promise.all(Array.from({ length: inflight }, opener));
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ opened: sockets.length, failed, connect_per_s: sockets.length / seconds, seconds }));
await new Promise((resolve) => setTimeout(resolve, hold * 1000));
for (const ws of sockets) ws.terminate();
process.exit(0);
