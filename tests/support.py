"""Test helpers: a real `quartchat serve` process, users, WebSocket connections."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, insert, update
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from quartchat import models
from quartchat.database import Database
from quartchat.protocol import UserRef

PASSWORD = "correct horse battery staple"
SECRET_KEY = "tests-secret-key-0123456789abcdef0123456789"
STRICT = os.environ.get("QUARTCHAT_TEST_STRICT") == "1"


def need_service(available: bool, what: str) -> None:
    """Skip when a service is missing on a laptop; fail in CI's strict mode."""
    if available:
        return
    if STRICT:
        pytest.fail(f"{what} is not available (strict mode: QUARTCHAT_TEST_STRICT=1)", pytrace=False)
    pytest.skip(f"{what} is not available")


async def until(condition: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Call `condition` (it may return an awaitable) until it gives something true, and
    return that; fail naming `what` once `timeout` seconds have passed. Tests wait for
    what they need this way, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(interval)


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


ALICE = UserRef("u-alice", "alice")


async def add_user(database: Database, user: UserRef) -> None:
    """A user row written straight into a database (no password: no sign-in)."""
    async with database.writer.begin() as connection:
        await connection.execute(
            insert(models.User).values(id=user.id, name=user.name, name_key=user.name, password_hash=None, created_ms=0)
        )


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def quartchat_env(database_url: str, **settings: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARTCHAT_") or k == "QUARTCHAT_TEST_STRICT"}
    env.update(QUARTCHAT_DATABASE_URL=database_url, QUARTCHAT_SECRET_KEY=SECRET_KEY)
    for key, value in settings.items():
        name = f"QUARTCHAT_{key.upper()}"
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(env: dict[str, str], cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "quartchat", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


class Server:
    """`python -m quartchat serve` on a free loopback port, in its own process group."""

    def __init__(self, workdir: Path, database_url: str | None = None, **settings: str | None) -> None:
        self.workdir = workdir
        self.database_url = database_url or sqlite_url(workdir / "chat.db")
        self.env = quartchat_env(self.database_url, **settings)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []

    def start(self, timeout: float = 30.0) -> Server:
        self.launch()
        return self.wait_healthy(timeout)

    def launch(self) -> Server:
        """Start the process without waiting for it (see `wait_healthy`)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "quartchat", "serve", "--bind", f"127.0.0.1:{self.port}", *self.extra_args],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_healthy(self, timeout: float = 30.0) -> Server:
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.log()}", pytrace=False)
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1, trust_env=False).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        pytest.fail(f"server not healthy in {timeout} s:\n{self.log()}", pytrace=False)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            pytest.fail(f"server ignored signal {signum} for {timeout} s", pytrace=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    async def start_workers(self, count: int, timeout: float = 10.0) -> Server:
        """Start with `--workers count` and wait until every worker listens."""
        self.extra_args = ["--workers", str(count)]
        self.start()
        self.wait_for_workers(count, timeout)
        return self

    def wait_for_workers(self, count: int, timeout: float = 10.0) -> None:
        """With `--workers N`: until `count` workers listen (healthy means one does, and
        until the others listen every connection lands on the first)."""
        deadline = time.monotonic() + timeout
        while len(set(re.findall(r"\[(\d+)\] hypercorn\.error: Running on", self.log()))) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{count} workers did not start listening in {timeout} s:\n{self.log()}", pytrace=False)
            time.sleep(0.1)

    def workers_that_closed_websockets(self) -> set[str]:
        return set(re.findall(r"\[(\d+)\] quartchat\.ws: websocket closed", self.log()))


@dataclass
class User:
    id: str
    name: str
    http: httpx.AsyncClient
    token: str | None = None  # a bot token: its http client and sockets send it, no cookie

    @property
    def ref(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.http.cookies.jar)


class Conn:
    """A WebSocket with JSON helpers; batch frames are unpacked into messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.history: dict[str, Any] = {}
        self.online: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []

    async def send_json(self, frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(raw)
        if frame.get("type") == "batch":
            self._pending.extend(frame["messages"][1:])
            return frame["messages"][0]
        return frame

    async def expect(self, kind: str, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame, which must be of `kind`; presence and the per-user stream
        (news of the user's other rooms) are skipped unless they are what is asked for."""
        while True:
            frame = await self.recv(timeout)
            if frame["type"] in ("join", "left") and kind not in ("join", "left"):
                continue
            if frame["type"] in ("activity", "notify") and kind != frame["type"]:
                continue  # the per-user stream's news of the user's rooms
            assert frame["type"] == kind, f"expected {kind}, got {frame}"
            return frame

    async def say(self, text: str, client_id: str | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "chat", "data": text}
        if client_id is not None:
            frame["client_id"] = client_id
        await self.send_json(frame)
        message = await self.expect("chat")
        assert message["data"] == text, message
        return message

    async def chats(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [await self.expect("chat", timeout) for _ in range(count)]

    async def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes; the close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None


class Chat:
    """Users, HTTP clients and sockets against one server (or a proxy in front of it,
    anything with `base_url` and `ws_url`); all closed at the end."""

    def __init__(self, server: Any, ssl_context: ssl.SSLContext | None = None) -> None:
        self.server = server
        self.ssl_context = ssl_context
        self._clients: list[httpx.AsyncClient] = []
        self._sockets: list[ClientConnection] = []

    async def aclose(self) -> None:
        for ws in self._sockets:
            await ws.close()
        for client in self._clients:
            await client.aclose()

    def http(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.server.base_url, timeout=30, trust_env=False, verify=self.ssl_context or True
        )
        self._clients.append(client)
        return client

    def again(self, user: User) -> User:
        """The same signed-in user (same cookie) with a client of this driver."""
        client = self.http()
        client.cookies = user.http.cookies
        return User(user.id, user.name, client)

    async def user(self, name: str | None = None) -> User:
        client = self.http()
        response = await client.post("/api/session", json={"name": name or unique("u"), "password": PASSWORD})
        assert response.status_code == 200, response.text
        body = response.json()["user"]
        return User(body["id"], body["name"], client)

    async def bot(self, user: User, *rooms: str) -> User:
        """`user` signed in by a bot token made with `quartchat token create` (limited to
        `rooms` when given): a client that sends `Authorization: Bearer`, and no cookie."""
        limits = [arg for room in rooms for arg in ("--room", room)]
        made = await asyncio.to_thread(
            run_cli, self.server.env, self.server.workdir, "token", "create", user.name, *limits
        )
        assert made.returncode == 0, made.stderr
        token = made.stdout.strip()
        client = self.http()
        client.headers["Authorization"] = f"Bearer {token}"
        return User(user.id, user.name, client, token)

    async def connect(
        self,
        user: User | None,
        room: str | None = None,
        *,
        query: str = "",
        origin: str | None = "same",
        cookie: str | None = None,
        **options: Any,
    ) -> Conn:
        cookie = cookie if cookie is not None else (user.cookie if user else None)
        headers = {"Cookie": cookie} if cookie else {}
        if user is not None and user.token is not None:
            headers["Authorization"] = f"Bearer {user.token}"
        path = "/ws/chat" if room is None else f"/ws/chat/{room}"
        ws = await connect(
            self.server.ws_url + path + (f"?{query}" if query else ""),
            origin=self.server.base_url if origin == "same" else origin,  # type: ignore[arg-type]
            additional_headers=headers or None,
            open_timeout=10,
            close_timeout=2,
            proxy=None,
            **({"ssl": self.ssl_context} if self.ssl_context else {}),
            **options,
        )
        self._sockets.append(ws)
        return Conn(ws)

    async def open(self, user: User, room: str | None = None, **options: Any) -> Conn:
        """Connect, and read history and list (asserting that order)."""
        conn = await self.connect(user, room, **options)
        conn.history = await conn.recv()
        assert conn.history["type"] == "history", conn.history
        listed = await conn.recv()
        assert listed["type"] == "list", listed
        conn.online = listed["data"]
        return conn

    async def messages(self, user: User, room: str, **params: Any) -> dict[str, Any]:
        response = await user.http.get(f"/api/rooms/{room}/messages", params=params)
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def all_messages(self, user: User, room: str) -> list[dict[str, Any]]:
        """Every stored message of the room, paging forwards."""
        found: list[dict[str, Any]] = []
        after = 0
        while True:
            page = await self.messages(user, room, after=after, limit=200)
            found.extend(page["messages"])
            if not page["has_more"]:
                return found
            after = found[-1]["id"]


class RawSocket:
    """A WebSocket spoken by hand, to send what no client library will: invalid UTF-8,
    stray continuation frames, a message split anywhere."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes = b"") -> None:
        self.reader, self.writer = reader, writer
        self.head = head  # the server's answer to the handshake

    @classmethod
    async def open(
        cls,
        server: Server,
        path: str,
        cookie: str,
        receive_buffer: int | None = None,
        segment_size: int | None = None,
        extra_headers: str = "",
    ) -> RawSocket:
        """`receive_buffer` and `segment_size` (bytes) are set before connecting: a small
        window, and a network's MSS instead of loopback's 64 KiB (the peer sizes its send
        buffer from the MSS: on loopback it takes megabytes before it pushes back)."""
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if segment_size is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, segment_size)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: {server.base_url}\r\nCookie: {cookie}\r\n{extra_headers}\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer, head)

    def send(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([(0x80 if fin else 0) | opcode])
        if length < 126:
            header += bytes([0x80 | length])
        else:
            header += bytes([0x80 | 126]) + length.to_bytes(2, "big")
        self.writer.write(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def frame(self) -> tuple[int, bytes]:
        first, second = await asyncio.wait_for(self.reader.readexactly(2), 10)
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return first & 0x0F, await self.reader.readexactly(length)

    async def message(self, kind: str) -> dict[str, Any]:
        """The next message of `kind` (skipping others); fails on a close frame."""
        while True:
            opcode, payload = await self.frame()
            assert opcode != 0x8, f"closed: {int.from_bytes(payload[:2], 'big')} {payload[2:]!r}"
            if opcode == 0x1 and (found := json.loads(payload))["type"] == kind:
                return dict(found)

    async def close_code(self) -> int | None:
        """The code of the server's close frame; None if it dropped the connection
        without one (what Hypercorn does on a frame wsproto cannot parse)."""
        while True:
            try:
                opcode, payload = await self.frame()
            except asyncio.IncompleteReadError:
                return None
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big")


TEXT, CONTINUATION, PING, PONG = 0x1, 0x0, 0x9, 0xA


CHROMIUM = os.environ.get("QUARTCHAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


async def set_role(server: Server, user_id: str, role: str) -> None:
    """Make a user `admin` or `member` straight in the server's database (the
    command line's `quartchat user role` does the same)."""
    from quartchat.database import create_database
    from quartchat.settings import Settings

    database = create_database(Settings(database_url=server.database_url))
    try:
        async with database.writer.begin() as connection:
            await connection.execute(update(models.User).where(models.User.id == user_id).values(role=role))
    finally:
        await database.dispose()


async def disable(server: Server, user_id: str) -> None:
    """Mark a user disabled straight in the database and end its sessions (what
    `quartchat user disable` does, without the command line)."""
    from quartchat.database import create_database
    from quartchat.settings import Settings

    database = create_database(Settings(database_url=server.database_url))
    try:
        async with database.writer.begin() as connection:
            await connection.execute(update(models.User).where(models.User.id == user_id).values(disabled=True))
            await connection.execute(delete(models.Session).where(models.Session.user_id == user_id))
    finally:
        await database.dispose()
