"""Search benchmark (docs/protocol.md §16): a big history, then timed searches.

    python bench/search.py                      # 1,000,000 messages, SQLite and PostgreSQL
    python bench/search.py --messages 100000 --databases sqlite

The history: --messages in 20 rooms from 200 users, English and Chinese mixed (words
drawn with a Zipf-like skew, as real text is), written with bulk SQL (executemany in big
transactions on SQLite, with the FTS triggers doing their work as they do for the
writer; COPY on PostgreSQL, the GIN index then built once). One word, "deadline", is in
exactly 5% of the messages: the term with 50,000 hits at a million.

Every query runs through quartchat's own code (quartchat.search.search_query, the
reader engine, Store.search) for a user who may read every room, with the API's
default limit (20) unless said otherwise:

- two-term: random pairs of vocabulary words, p50 / p99 (the target on SQLite: p50 ≤ 20
  ms, p99 ≤ 100 ms);
- phrase: "word word" pairs that occur in the text;
- a 2-character CJK term (its own path: no trigram), common and rare;
- the term with 50,000 hits, and `before` paging deep into it (100 a page to the end);
- the index's size against the table's.

Numbers from one run on a shared machine are rough: compare them within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from quartchat import migrate  # noqa: E402
from quartchat.access import readable_rooms  # noqa: E402
from quartchat.database import Database, create_database  # noqa: E402
from quartchat.protocol import UserRef, format_ts  # noqa: E402
from quartchat.search import parse, search_query  # noqa: E402
from quartchat.settings import Settings  # noqa: E402
from quartchat.store import SignedIn, Store  # noqa: E402

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
ROOMS, USERS = 20, 200
HITS_WORD, HITS_SHARE = "deadline", 0.05
ENGLISH = (  # noqa: SIM905 (a sentence is easier to read and edit than 200 quoted words)
    "the be to of and a in that have it for not on with he as you do at this but his by from they we say her she "
    "or an will my one all would there their what so up out if about who get which go me when make can like time "
    "no just him know take people into year your good some could them see other than then now look only come its "
    "over think also back after use two how our work first well way even new want because any these give day most "
    "us server message channel release build deploy review merge branch commit issue ticket meeting schedule "
    "coffee lunch weekend holiday project budget customer invoice contract design prototype database index query "
    "search latency throughput memory network storage backup restore monitor alert dashboard metric incident "
    "postmortem rollback feature bugfix refactor migration schema table column render browser mobile desktop "
    "keyboard shortcut theme dark light font layout scroll history export import token session cookie password "
    "account profile avatar emoji reaction thread reply mention notification unread archive private public "
    "kubernetes docker container cluster node replica shard partition vacuum checkpoint journal transaction"
).split()
CHINESE = (  # noqa: SIM905
    "你好 大家 今天 明天 昨天 天气 工作 会议 项目 问题 时间 我们 你们 他们 已经 可以 需要 知道 觉得 一起 "
    "服务器 数据库 部署 发布 测试 代码 修复 功能 用户 消息 房间 搜索 索引 性能 内存 网络 备份 恢复 监控 告警 "
    "周末 午饭 咖啡 下班 加班 开会 讨论 计划 预算 客户 合同 设计 原型 文档 翻译 中文 英文 谢谢 没问题 好的"
).split()
# In no generated text: the 2-character term that must read the whole history.
RARE_CJK = "麒麟"


def skewed(words: list[str], rng: random.Random) -> str:
    """A word, the first ones of the list far more often (Zipf-like)."""
    return words[min(int(rng.paretovariate(1.1)) - 1, len(words) - 1)]


def make_text(rng: random.Random, index: int, total: int) -> str:
    kind = rng.random()
    if kind < 0.6:
        words = [skewed(ENGLISH, rng) for _ in range(rng.randint(3, 18))]
    elif kind < 0.85:
        words = ["".join(skewed(CHINESE, rng) for _ in range(rng.randint(2, 8)))]
    else:
        words = [skewed(ENGLISH, rng) for _ in range(rng.randint(2, 8))] + [
            "".join(skewed(CHINESE, rng) for _ in range(rng.randint(1, 4)))
        ]
    if index % round(1 / HITS_SHARE) == 0:
        words.insert(rng.randint(0, len(words)), HITS_WORD)
    if rng.random() < 0.02:
        words.append(f"https://example.com/{skewed(ENGLISH, rng)}/{index}")
    return " ".join(words)


def history(total: int, seed: int = 23) -> list[tuple[str, str, str, int, str]]:
    """(room, user id, text, ts_ms, ts) rows in id order."""
    rng = random.Random(seed)
    start = 1_700_000_000_000
    rows = []
    for i in range(total):
        ts_ms = start + i * 500
        rows.append(
            (
                f"room-{rng.randrange(ROOMS):02d}",
                user_id(rng.randrange(USERS)),
                make_text(rng, i, total),
                ts_ms,
                format_ts(ts_ms),
            )
        )
    return rows


def user_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


# Filling ------------------------------------------------------------------------------


def fill_sqlite(path: Path, rows: list[tuple[str, str, str, int, str]]) -> float:
    """Bulk insert with the FTS triggers on; seconds taken."""
    started = time.perf_counter()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = OFF")
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO users (id, name, name_key, created_ms) VALUES (?, ?, ?, 0)",
        [(user_id(n), f"user{n}", f"user{n}") for n in range(USERS)],
    )
    connection.executemany(
        "INSERT INTO rooms (name, message_count, last_id) VALUES (?, 0, 0)", [(f"room-{r:02d}",) for r in range(ROOMS)]
    )
    connection.execute("COMMIT")
    for start in range(0, len(rows), 100_000):
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO messages (room, user_id, text, ts_ms, ts) VALUES (?, ?, ?, ?, ?)",
            rows[start : start + 100_000],
        )
        connection.execute("COMMIT")
    connection.execute("UPDATE rooms SET message_count = (SELECT count(*) FROM messages WHERE room = rooms.name)")
    connection.execute("PRAGMA optimize")
    connection.close()
    return time.perf_counter() - started


def sqlite_sizes(path: Path) -> dict[str, int]:
    connection = sqlite3.connect(path)
    sizes = dict(connection.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    connection.close()
    table = sizes.get("messages", 0)
    index = sum(size for name, size in sizes.items() if name.startswith("messages_fts"))
    return {"table_bytes": table, "index_bytes": index, "file_bytes": path.stat().st_size}


async def fill_postgres(url: str, rows: list[tuple[str, str, str, int, str]]) -> tuple[float, float]:
    """COPY without the GIN index, then build it; (seconds to copy, seconds to index)."""
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await connection.execute("DROP INDEX ix_messages_text_trgm")
        await connection.copy_records_to_table(
            "users",
            records=[(user_id(n), f"user{n}", f"user{n}", 0) for n in range(USERS)],
            columns=["id", "name", "name_key", "created_ms"],
        )
        await connection.copy_records_to_table(
            "rooms",
            records=[(f"room-{r:02d}", 0, 0) for r in range(ROOMS)],
            columns=["name", "message_count", "last_id"],
        )
        await connection.copy_records_to_table(
            "messages", records=rows, columns=["room", "user_id", "text", "ts_ms", "ts"]
        )
        copied = time.perf_counter()
        await connection.execute("SET maintenance_work_mem = '256MB'")
        await connection.execute("CREATE INDEX ix_messages_text_trgm ON messages USING gin (lower(text) gin_trgm_ops)")
        await connection.execute("VACUUM ANALYZE messages")
        return copied - started, time.perf_counter() - copied
    finally:
        await connection.close()


async def postgres_sizes(url: str) -> dict[str, int]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        table = await connection.fetchval("SELECT pg_table_size('messages')")
        index = await connection.fetchval("SELECT pg_relation_size('ix_messages_text_trgm')")
        return {"table_bytes": int(table), "index_bytes": int(index)}
    finally:
        await connection.close()


# Timing -------------------------------------------------------------------------------


class Searcher:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.store = Store(database)
        who = SignedIn(UserRef(user_id(0), "user0"), "bench", 0)
        self.readable = lambda column: readable_rooms(who, column)

    async def __call__(self, q: str, limit: int = 20, before: int | None = None) -> tuple[float, list[int], bool]:
        started = time.perf_counter()
        query = search_query(parse(q), self.readable, sqlite=self.database.is_sqlite, before=before, limit=limit)
        page = await self.store.search(query, limit)
        return (time.perf_counter() - started) * 1000, [m.id for m in page.messages], page.has_more


def percentiles(times: list[float]) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def timed(search: Searcher, queries: list[str], **options: Any) -> dict[str, Any]:
    times, hits = [], []
    for q in queries:
        elapsed, ids, _ = await search(q, **options)
        times.append(elapsed)
        hits.append(len(ids))
    return {**percentiles(times), "mean_hits_per_page": round(statistics.mean(hits), 1)}


async def run_queries(search: Searcher, count: int) -> dict[str, Any]:
    rng = random.Random(7)
    await search("warm up")  # the engine's first connection
    vocabulary = ENGLISH[:150]
    two_terms = [f"{rng.choice(vocabulary)} {rng.choice(vocabulary)}" for _ in range(count)]
    rare_pairs = [f"{rng.choice(ENGLISH[150:])} {rng.choice(ENGLISH[150:])}" for _ in range(count)]
    phrases = [f'"{rng.choice(ENGLISH[:40])} {rng.choice(ENGLISH[:40])}"' for _ in range(count)]
    cjk_common = [rng.choice([w for w in CHINESE if len(w) == 2][:12]) for _ in range(count)]
    results: dict[str, Any] = {
        "two_terms_common_words": await timed(search, two_terms),
        "two_terms_rarer_words": await timed(search, rare_pairs),
        "phrase": await timed(search, phrases),
        "cjk_2_chars_common": await timed(search, cjk_common),
        "cjk_2_chars_with_an_english_term": await timed(
            search, [f"{c} {rng.choice(ENGLISH[:60])}" for c in cjk_common]
        ),
        "cjk_4_chars": await timed(search, [rng.choice(CHINESE[:10]) + rng.choice(CHINESE[:10]) for _ in range(count)]),
        "cjk_2_chars_in_no_message": await timed(search, [RARE_CJK] * max(3, count // 20)),
        "term_with_50000_hits_first_page": await timed(search, [HITS_WORD] * count),
    }
    # `before` paging through every hit of HITS_WORD, 100 a page.
    times: list[float] = []
    seen = 0
    before = None
    while True:
        elapsed, ids, has_more = await search(HITS_WORD, limit=100, before=before)
        times.append(elapsed)
        seen += len(ids)
        if not has_more:
            break
        before = ids[-1]
    results["before_paging_all_hits_of_the_50000_term"] = {
        **percentiles(times),
        "pages": len(times),
        "hits": seen,
        "last_page_ms": round(times[-1], 2),
    }
    return results


async def bench_sqlite(rows: list[tuple[str, str, str, int, str]], workdir: Path, count: int) -> dict[str, Any]:
    path = workdir / "search.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(migrate.upgrade, url)
    fill_seconds = fill_sqlite(path, rows)
    database = create_database(Settings(database_url=url))
    try:
        results = await run_queries(Searcher(database), count)
    finally:
        await database.dispose()
    return {"fill_seconds": round(fill_seconds, 1), **sqlite_sizes(path), **results}


async def bench_postgres(rows: list[tuple[str, str, str, int, str]], count: int) -> dict[str, Any]:
    import asyncpg

    name = f"qc_search_bench_{os.getpid()}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(migrate.upgrade, url)
        copy_seconds, index_seconds = await fill_postgres(url.replace("+asyncpg", ""), rows)
        database = create_database(Settings(database_url=url, secret_key="benchmark-secret-key-0123456789"))
        try:
            results = await run_queries(Searcher(database), count)
        finally:
            await database.dispose()
        sizes = await postgres_sizes(url.replace("+asyncpg", ""))
        return {
            "copy_seconds": round(copy_seconds, 1),
            "index_build_seconds": round(index_seconds, 1),
            **sizes,
            **results,
        }
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200, help="queries per kind")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    started = time.perf_counter()
    rows = history(args.messages)
    print(f"generated {len(rows):,} messages in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    report: dict[str, Any] = {"messages": args.messages, "rooms": ROOMS, "users": USERS}
    with tempfile.TemporaryDirectory(prefix="quartchat-search-") as workdir:
        for kind in args.databases.split(","):
            run: Callable[[], Awaitable[dict[str, Any]]] = (
                (lambda: bench_sqlite(rows, Path(workdir), args.queries))
                if kind == "sqlite"
                else (lambda: bench_postgres(rows, args.queries))
            )
            report[kind] = asyncio.run(run())
            print(json.dumps({kind: report[kind]}, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
