"""Accounts for load, in bulk: `<prefix>0` … `<prefix>N-1`, one password, one transaction.

    python bench/accounts.py DATABASE_URL --count 2000 [--prefix load] [--password load-password-1]

A load of a thousand clients, each its own user, must still sign in through
`/api/session` (the issue's scenarios do), but hashing a thousand passwords at the
server's argon2 cost takes minutes. So the rows are written straight into a migrated
database, every one with the same hash of the one password, made once with argon2's
cheapest parameters: the server verifies that hash in microseconds (argon2 reads the
parameters from the hash). Bench only — never point it at a real deployment.
The names match what the anchors' harness signs in with (`--user-prefix`, `--password`).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quartchat import migrate, models
from quartchat.accounts import name_key, name_skeleton
from quartchat.database import create_database
from quartchat.settings import Settings

CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


async def bulk_accounts(
    database_url: str, count: int, prefix: str = "load", password: str = "load-password-1"
) -> float:
    """Insert `count` accounts into the (migrated) database; the seconds it took."""
    started = time.monotonic()
    password_hash = CHEAP.hash(password)
    rows = [
        {
            "id": str(uuid.uuid4()),
            "name": name,
            "name_key": name_key(name),
            "name_skeleton": name_skeleton(name),
            "password_hash": password_hash,
            "created_ms": 0,
        }
        for name in (f"{prefix}{i}" for i in range(count))
    ]
    database = create_database(Settings(database_url=database_url))
    try:
        async with database.writer.begin() as connection:
            await connection.execute(insert(models.User), rows)
    finally:
        await database.dispose()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--prefix", default="load")
    parser.add_argument("--password", default="load-password-1")
    parser.add_argument("--migrate", action="store_true", help="run the migrations first")
    args = parser.parse_args()
    if args.migrate:
        migrate.upgrade(args.database_url)
    seconds = asyncio.run(bulk_accounts(args.database_url, args.count, args.prefix, args.password))
    print(f"{args.count} accounts in {seconds:.2f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
