"""`python -m tests.postgres_database create|drop NAME`: a scratch database for a test pass.

`create` prints the async SQLAlchemy URL; exit status 3 when PostgreSQL is not there.
"""

from __future__ import annotations

import asyncio
import sys

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def main(action: str, name: str) -> int:
    import asyncpg

    try:
        admin = await asyncpg.connect(ADMIN, timeout=5)
    except (OSError, asyncpg.PostgresError) as missing:
        print(f"PostgreSQL is not available: {missing}", file=sys.stderr)
        return 3
    try:
        if action == "create":
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            print(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1], sys.argv[2])))
