# ruff: noqa
"""What GET /api/rooms costs a user in many rooms with much unread (attack finding 5).

    .venv/bin/python bench/rooms_cost.py 200 5000     # 200 rooms, 5,000 unread in each

Makes a user in ROOMS private rooms with PER unread messages each (1M rows at 200 ×
5,000, bulk SQL on SQLite), then times GET /api/rooms: three calls one after another,
10 at once, /healthz while 10 are in flight, and the per-user stream's first load of
the user's counts (Store.stream_counts, in this process). Counting is bounded per call
(quartchat/store.py, UNREAD_BUDGET) and one user's concurrent calls share one count
(quartchat/rooms_api.py); docs/security.md has the numbers. Not a test.
"""

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import tempfile

from tests.support import Chat, Server

ROOMS = int(sys.argv[1])
PER = int(sys.argv[2])
work = Path(tempfile.mkdtemp(prefix="attack-rooms-"))


async def main():
    s = Server(work, rate_limit="100000/1").start()
    c = Chat(s)
    a = await c.user("victim")
    b = await c.user("spammer")
    await c.aclose()
    s.stop()
    db = sqlite3.connect(work / "chat.db")
    now = int(time.time() * 1000)
    t = time.time()
    db.executemany(
        "INSERT INTO rooms(name,message_count,last_id,kind,created_ms) VALUES (?,?,?,?,?)",
        [(f"r{i}", PER, 0, "private", now) for i in range(ROOMS)],
    )
    db.executemany(
        "INSERT INTO memberships(room,user_id,role,joined_ms,last_read_id) VALUES (?,?,?,?,0)",
        [(f"r{i}", a.id, "member", now) for i in range(ROOMS)],
    )

    def rows():
        for i in range(ROOMS):
            for j in range(PER):
                yield (f"r{i}", b.id, "hi", now, "2026-12-05T00:00:00.000Z", "chat")

    db.executemany("INSERT INTO messages(room,user_id,text,ts_ms,ts,kind) VALUES (?,?,?,?,?,?)", rows())
    db.execute("UPDATE rooms SET last_id=(SELECT max(id) FROM messages WHERE room=rooms.name)")
    db.commit()
    db.close()
    print("inserted", ROOMS * PER, "in", round(time.time() - t, 1), "s", flush=True)
    s = Server(work, rate_limit="100000/1").start()
    c = Chat(s)
    a = await c.user("victim")
    for k in range(3):
        t = time.perf_counter()
        r = await a.http.get("/api/rooms")
        d = time.perf_counter() - t
        print("GET /api/rooms", r.status_code, len(r.json()["rooms"]), "rooms", round(d * 1000), "ms", flush=True)
    # 10 concurrent
    t = time.perf_counter()
    rs = await asyncio.gather(*(a.http.get("/api/rooms") for _ in range(10)))
    d = time.perf_counter() - t
    print("10 concurrent GET /api/rooms", round(d * 1000), "ms", flush=True)

    # healthz latency while 10 in flight
    async def hz():
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        await a.http.get("/healthz")
        return time.perf_counter() - t

    res = await asyncio.gather(*(a.http.get("/api/rooms") for _ in range(10)), hz())
    print("healthz latency during 10 calls", round(res[-1] * 1000), "ms")
    await c.aclose()
    s.stop()
    # What a user's first socket costs the per-user stream: its counts, read once.
    from quartchat.database import create_database
    from quartchat.settings import Settings
    from quartchat.store import Store

    database = create_database(Settings(database_url=s.database_url, secret_key="s" * 32))
    try:
        for k in range(2):
            t = time.perf_counter()
            counts = await Store(database).stream_counts([a.id])
            d = time.perf_counter() - t
            print("store.stream_counts", len(counts), "rooms", round(d * 1000), "ms", flush=True)
    finally:
        await database.dispose()


asyncio.run(main())
