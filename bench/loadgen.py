"""The load generator: many WebSocket clients in one room, some of them sending.

    python bench/loadgen.py --url http://127.0.0.1:8000 --clients 100 --senders 10 \
        --mode closed|steady [--rate 200] [--seconds 10] [--batch] [--deflate] [--rooms 1]

closed: each sender sends, waits for its own message to come back, sends again.
steady: the senders together send `--rate` messages per second.
Every client counts what it receives; latency is receive time minus the send time the
sender wrote into the text (one process, one clock). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

PASSWORD = "benchmark password"


async def sign_in(client: httpx.AsyncClient) -> str:
    response = await client.post("/api/session", json={"name": "b" + secrets.token_hex(6), "password": PASSWORD})
    response.raise_for_status()
    return "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)


class Client:
    def __init__(self, ws: ClientConnection, index: int, reads: bool = False) -> None:
        self.ws = ws
        self.reads = reads  # a read frame for every chat message received
        self.index = index
        self.deliveries = 0
        self.latencies: list[float] = []
        self.own = asyncio.Event()
        self.measuring = False

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            # A batch may carry join, left and list frames too (presence is coalesced into it).
            items = frame["messages"] if frame["type"] == "batch" else [frame]
            messages = [m for m in items if m["type"] == "chat"]
            now = time.perf_counter()
            if self.reads:
                for message in messages:
                    await self.ws.send(json.dumps({"type": "read", "id": message["id"]}))
            for message in messages:
                sender, sent_at = message["data"].split(" ", 2)[:2]
                if self.measuring:
                    self.deliveries += 1
                    self.latencies.append(now - float(sent_at))
                if int(sender) == self.index:
                    self.own.set()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--mode", choices=["closed", "steady"], default="closed")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--private", action="store_true", help="only bench/loadgen.mjs makes private rooms")
    parser.add_argument("--reads", action="store_true", help="a read frame for every chat message received")
    args = parser.parse_args()
    if args.private:
        parser.error("--private needs the Node load generator (cd bench && npm install)")

    ws_base = args.url.replace("http://", "ws://")
    async with httpx.AsyncClient(base_url=args.url, timeout=60) as http:
        cookies = await asyncio.gather(*(sign_in(http) for _ in range(min(args.clients, 50))))
    clients: list[Client] = []
    for index in range(args.clients):
        room = f"bench-{index % args.rooms}"
        ws = await connect(
            f"{ws_base}/ws/chat/{room}" + ("?batch=1" if args.batch else ""),
            additional_headers={"Cookie": cookies[index % len(cookies)]},
            compression="deflate" if args.deflate else None,
            max_size=2**24,
            max_queue=None,
            open_timeout=60,
        )
        clients.append(Client(ws, index, args.reads))
    readers = [asyncio.create_task(c.read()) for c in clients]
    senders = clients[: args.senders]
    padding = "x" * 60

    async def closed_loop(client: Client, stop: float) -> int:
        sent = 0
        while time.perf_counter() < stop:
            client.own.clear()
            text = f"{client.index} {time.perf_counter()} {padding}"
            await client.ws.send(json.dumps({"type": "chat", "data": text}))
            await client.own.wait()
            sent += 1
        return sent

    async def steady(client: Client, stop: float) -> int:
        interval = len(senders) / args.rate
        next_at = time.perf_counter() + interval * (client.index / len(senders))
        sent = 0
        while next_at < stop:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            text = f"{client.index} {time.perf_counter()} {padding}"
            await client.ws.send(json.dumps({"type": "chat", "data": text}))
            sent += 1
            next_at += interval
        return sent

    loop_kind = closed_loop if args.mode == "closed" else steady
    warm_stop = time.perf_counter() + args.warmup
    await asyncio.gather(*(loop_kind(c, warm_stop) for c in senders))
    await asyncio.sleep(0.5)
    for c in clients:
        c.measuring = True
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    sent = sum(await asyncio.gather(*(loop_kind(c, started + args.seconds) for c in senders)))
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(1.0)  # the last deliveries
    for c in clients:
        c.measuring = False
    latencies = sorted(latency for c in clients for latency in c.latencies)
    deliveries = sum(c.deliveries for c in clients)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)

    def percentile(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    result: dict[str, Any] = {
        "sent_per_s": sent / elapsed,
        "deliveries_per_s": deliveries / elapsed,
        "p50_ms": percentile(0.50),
        "p99_ms": percentile(0.99),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "loadgen_cpu_share": cpu / elapsed,
    }
    for task in readers:
        task.cancel()
    for c in clients:
        await c.ws.close()
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
