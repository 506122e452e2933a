"""Start-up migrations under concurrent starts: instances started together on an empty
database all come up (docs/deploy.md, "Several instances")."""

from __future__ import annotations

from pathlib import Path

from ..support import Server, sqlite_url

INSTANCES = 4


def start_together(tmp_path: Path, database_url: str) -> None:
    """Four `quartchat serve` processes launched back to back, then each must be healthy
    (none crashed on another's half-made schema) and have logged no traceback."""
    servers = []
    for index in range(INSTANCES):
        workdir = tmp_path / f"instance-{index}"
        workdir.mkdir()
        servers.append(Server(workdir, database_url))
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_healthy(timeout=90)
        for server in servers:
            assert "Traceback" not in server.log(), server.log()
    finally:
        for server in servers:
            server.stop()


def test_four_instances_started_together_on_an_empty_sqlite_file_all_come_up(tmp_path: Path) -> None:
    start_together(tmp_path, sqlite_url(tmp_path / "shared.db"))


async def test_four_instances_started_together_on_an_empty_postgresql_database_all_come_up(
    tmp_path: Path, postgres_url: str
) -> None:
    start_together(tmp_path, postgres_url)
