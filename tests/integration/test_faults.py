"""Faults injected into a real server: a full disk under SQLite, PostgreSQL stopped and
started again. Senders must hear `unavailable` at once, nothing unstored may be
broadcast, /healthz must say 503, and everything must come back by itself."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..conftest import StartServer
from ..support import Chat, Conn, free_port, need_service, sqlite_url, unique


async def health(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=30) as client:
        return (await client.get("/healthz")).status_code


async def wait_for_health(base_url: str, status: int, within: float) -> float:
    """Seconds until /healthz answers `status`; fails after `within`."""
    started = time.monotonic()
    while (await health(base_url)) != status:
        assert time.monotonic() - started < within, f"/healthz did not answer {status} within {within} s"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def nothing_more(conn: Conn, seconds: float = 1.0) -> None:
    """The connection receives no chat message for a while."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            frame = await conn.recv(timeout=left)
        except TimeoutError:
            return
        assert frame["type"] != "chat", f"broadcast while the database was down: {frame}"


# A failed store's log ------------------------------------------------------------


async def test_a_store_that_fails_logs_the_failure_but_no_message_text(
    start_server: StartServer, tmp_path: Path
) -> None:
    """The writer logs a failed batch with its traceback (and a route a failed store
    likewise): SQLAlchemy's error names the statement's parameters unless the engine
    hides them (quartchat/database.py), and a text deleted later must not live on in
    the log. The database refuses one text (a trigger); its sender hears `unavailable`."""
    server = start_server(workdir=tmp_path)
    chat = Chat(server)
    try:
        user = await chat.user()
        socket = await chat.open(user, unique("faults-"))
        await socket.say("stored before")
        with sqlite3.connect(tmp_path / "chat.db") as database:
            database.execute(
                "CREATE TRIGGER refuse_secret BEFORE INSERT ON messages WHEN NEW.text LIKE '%SECRET%' "
                "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
        await socket.send_json({"type": "chat", "data": "SECRET-TEXT-4711", "client_id": "CLIENT-4711"})
        refused = await socket.expect("error", timeout=30)
        assert (refused["code"], refused["client_id"]) == ("unavailable", "CLIENT-4711")
        assert (await socket.say("stored after"))["data"] == "stored after"
    finally:
        await chat.aclose()
    log = server.log()
    assert "storing a batch of 1 messages failed" in log and "refused by the test" in log, log
    assert "SECRET-TEXT-4711" not in log and "CLIENT-4711" not in log, log


# A full disk ------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of the test's own (mounting needs root or CAP_SYS_ADMIN)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "quartchat-test", str(mount)], capture_output=True, text=True
    )
    need_service(mounted.returncode == 0, f"a small file system to fill (mount: {mounted.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> int:
    """Write zeros until the file system is full; the bytes written."""
    written = 0
    block = b"\0" * 65536
    with path.open("wb", buffering=0) as filler:
        while True:
            try:
                written += filler.write(block)
            except OSError as full:
                assert full.errno == errno.ENOSPC, full
                break
        while True:  # the last, partial block
            try:
                written += filler.write(b"\0" * 512)
            except OSError:
                return written


async def test_a_full_disk_answers_unavailable_keeps_the_database_sound_and_recovers(
    start_server: StartServer, small_disk: Path, tmp_path: Path
) -> None:
    database = small_disk / "chat.db"
    server = start_server(database_url=sqlite_url(database), max_message_chars="16000", rate_limit="100000/1")
    chat = Chat(server)
    try:
        room = unique("full-")
        sender_user = await chat.user()
        sender, listener = await chat.open(sender_user, room), await chat.open(await chat.user(), room)
        stored = [await sender.say("before the disk filled")]
        assert await listener.expect("chat") == stored[0]
        filled = fill(small_disk / "filler")
        assert filled > 0

        big = "x" * 16000
        refused: list[str] = []
        slowest_answer = 0.0
        for number in range(300):  # the WAL may reuse space it has for a while
            client_id = f"full-{number}"
            started = time.monotonic()
            await sender.send_json({"type": "chat", "data": big, "client_id": client_id})
            answer = await sender.recv(timeout=30)
            while answer["type"] in ("join", "left"):
                answer = await sender.recv(timeout=30)
            slowest_answer = max(slowest_answer, time.monotonic() - started)
            if answer["type"] == "error":
                assert (answer["code"], answer["client_id"]) == ("unavailable", client_id), answer
                refused.append(client_id)
                if len(refused) == 3:
                    break
            else:
                assert answer["type"] == "chat" and answer["client_id"] == client_id, answer
                stored.append(answer)
                assert await listener.expect("chat") == answer
        assert len(refused) == 3, "the disk never filled up"
        assert slowest_answer < 10, f"an answer took {slowest_answer:.1f} s"
        await nothing_more(listener)
        assert await health(server.base_url) == 503
        # Reading needs no space: history over HTTP and a new connection's history still work.
        assert (await chat.messages(sender_user, room))["messages"][-1] == stored[-1]
        another = await chat.open(sender_user, room)
        assert another.history["messages"][-1] == stored[-1]

        (small_disk / "filler").unlink()  # space comes back
        recovered_in = await wait_for_health(server.base_url, 200, within=20)
        for client_id in refused:  # the clients' own retries, with the same client_id
            await sender.send_json({"type": "chat", "data": big, "client_id": client_id})
            answer = await sender.expect("chat", timeout=30)
            assert answer["client_id"] == client_id
            assert await listener.expect("chat") == answer
            assert await another.expect("chat") == answer
            stored.append(answer)
        assert await chat.all_messages(sender_user, room) == stored
    finally:
        await chat.aclose()
    server.stop()
    check = sqlite3.connect(database)
    try:
        assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        ids = [row[0] for row in check.execute("SELECT client_id FROM messages ORDER BY id")]
    finally:
        check.close()
    assert len(ids) == len(set(ids)) == len(stored), "a message stored twice or lost"
    print(
        f"disk full: {len(stored) - 1 - len(refused)} stored before, 3 refused, /healthz back in {recovered_in:.1f} s"
    )


# PostgreSQL stopped -------------------------------------------------------------


class PrivateCluster:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl), so it can be stopped."""

    def __init__(self, root: Path) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        need_service(bool(versions), "PostgreSQL server programs (initdb, pg_ctl)")
        self.bin = versions[-1].parent
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        # initdb refuses to run as root: then the cluster belongs to the postgres user.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.prefix:
            shutil.chown(root, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([*self.prefix, str(self.bin / program), *args], capture_output=True, text=True)
        assert result.returncode == 0, f"{program}: {result.stdout}{result.stderr}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    root = Path(tempfile.mkdtemp(prefix="quartchat-pg-"))
    root.chmod(0o755)
    cluster = PrivateCluster(root)
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            [*cluster.prefix, str(cluster.bin / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "stop"],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


async def test_postgresql_stopped_answers_unavailable_and_recovers_without_a_restart(
    start_server: StartServer, private_postgres: PrivateCluster
) -> None:
    server = start_server(database_url=private_postgres.url)
    chat = Chat(server)
    try:
        room = unique("outage-")
        sender_user = await chat.user()
        sender, listener = await chat.open(sender_user, room), await chat.open(await chat.user(), room)
        before = await sender.say("before the outage")
        assert await listener.expect("chat") == before

        private_postgres.stop()
        started = time.monotonic()
        await sender.send_json({"type": "chat", "data": "during the outage", "client_id": "outage-1"})
        error = await sender.expect("error", timeout=30)
        answered_in = time.monotonic() - started
        assert (error["code"], error["client_id"]) == ("unavailable", "outage-1")
        assert answered_in < 5, f"`unavailable` took {answered_in:.1f} s"
        await nothing_more(listener)
        assert await health(server.base_url) == 503

        private_postgres.start()
        recovered_in = await wait_for_health(server.base_url, 200, within=30)
        retried = await sender.say("during the outage", client_id="outage-1")
        assert await listener.expect("chat") == retried
        after = await sender.say("after the outage")
        assert await listener.expect("chat") == after
        again = await sender.say("during the outage", client_id="outage-1")  # one more retry: no duplicate
        assert again == retried
        assert await chat.all_messages(sender_user, room) == [before, retried, after]
    finally:
        await chat.aclose()
    print(f"PostgreSQL outage: unavailable in {answered_in:.2f} s, /healthz 200 again {recovered_in:.1f} s after start")
