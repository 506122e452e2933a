"""The message writer: one per process, it commits chat messages in groups.

Under no load a message is committed alone, at once; while a commit is running the
next messages queue up and go into the following transaction together (group commit),
so the cost of a commit is shared and the tail latency stays flat. Under load (the last
batch held several messages and more were waiting when it was committed) the writer
lingers a moment (`QUARTCHAT_WRITE_LINGER_MS`) before taking the next batch, so that
batches, and the fan-outs after them, are fewer and larger. The SQL of a batch is in
quartchat/writes.py.

Two steps are indirect, on purpose:
- The writer runs its transactions in a thread of its own, with an engine of its own
  (`Writes.open`). A transaction is a dozen driver calls; on the server's loop, busy
  with thousands of sends, each wake-up between them waited for the rest of a loop
  pass (docs/performance.md has what that cost). The server's loop hands messages
  over (`submit`) and gets committed batches back (`_hand_off_forever`), one wake-up
  each way. The thread runs an event loop of its own because PostgreSQL's driver
  (asyncpg) needs one; SQLite's writes are plain synchronous calls on that thread.
- Each committed batch goes to `on_commit`, a callback the runtime injects (the hub's
  `on_commit`: quartchat/runtime.py), in id order, before its senders hear of it; the
  writer never imports the hub.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection

from .metrics import Metrics
from .protocol import StoredMessage
from .writes import Draft, Forbidden, NotFound, NotMember, Outcome, Refused, SessionEnded, Writes

__all__ = [
    "Draft",
    "Forbidden",
    "MessageWriter",
    "NotFound",
    "NotMember",
    "OnCommit",
    "Outcome",
    "Refused",
    "SessionEnded",
    "Unavailable",
]

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 1 << 20
T = TypeVar("T")


class Unavailable(Exception):
    """The message could not be stored; nothing was broadcast; it may be retried."""


OnCommit = Callable[[Sequence[StoredMessage]], Awaitable[None]]
_Pending = tuple[Draft, "asyncio.Future[Outcome]"]
# A batch as the writer's thread hands it back: its futures, and its outcomes (None: it failed).
_Done = tuple[list["asyncio.Future[Outcome]"], "list[Outcome | Refused] | None", float]


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class MessageWriter:
    def __init__(
        self, writes: Writes, on_commit: OnCommit, metrics: Metrics, batch_size: int = 256, linger: float = 0.001
    ) -> None:
        self.writes = writes
        self.on_commit = on_commit
        self.metrics = metrics
        self.batch_size = batch_size
        self.linger = linger  # seconds: see _run
        self.committed = 0
        self.batches = 0
        self.failing = False  # the last batch could not be stored
        # Filled on the server's loop, emptied on the writer's (deque appends and pops
        # are atomic). `_signalled`: a wake-up is on its way, no need for another.
        self._pending: deque[_Pending] = deque()
        self._signalled = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the writer's own
        self._server_loop: asyncio.AbstractEventLoop | None = None
        self._has_work = asyncio.Event()  # waited on by the writer's loop only
        self._done: asyncio.Queue[_Done | None] | None = None  # on the server's loop, in commit order
        self._hand_off: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._server_loop = asyncio.get_running_loop()
        self._done = asyncio.Queue()
        self._hand_off = self._server_loop.create_task(self._hand_off_forever(), name="message-writer-hand-off")
        self._loop = _new_event_loop()
        self._thread = threading.Thread(target=self._thread_main, name="message-writer", daemon=True)
        self._thread.start()

    def submit(self, draft: Draft) -> asyncio.Future[Outcome]:
        """Queue a message; the future holds it once committed, or raises Unavailable."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if self._closing or self._loop is None:
            future.set_exception(Unavailable("the server is shutting down"))
            return future
        self._pending.append((draft, future))
        if not self._signalled:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._has_work.set)
        return future

    async def execute(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a transaction of its own on the writer's thread, between two
        batches (`Writes.run_work`): other writes (read positions) commit there rather
        than on the server's loop, whose every pass would lengthen the transaction (and
        on SQLite, hold the write lock from the writer)."""
        if self._loop is None or self._closing:
            raise Unavailable("the writer is not running")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.writes.run_work(work), self._loop))

    async def probe(self) -> None:
        """Raises while writes cannot be stored (`Writes.probe`, on the writer's thread)."""
        if self._loop is None:
            raise Unavailable("the writer is not running")
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.writes.probe(), self._loop))
        self.failing = False

    async def close(self) -> None:
        """Commit everything already taken, then stop."""
        if self._closing:
            return
        self._closing = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._has_work.set)
        if self._hand_off is not None:
            await self._hand_off

    # The writer's thread ------------------------------------------------------

    def _thread_main(self) -> None:
        assert self._loop is not None and self._server_loop is not None and self._done is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        except BaseException:
            log.exception("the message writer stopped")
        finally:
            # Whatever is still queued was not stored: its senders hear so, and may retry.
            self._closing = True
            failed = [future for _, future in self._pending]
            self._pending.clear()
            if failed:
                self._post((failed, None, 0.0))
            self._post(None)
            self._loop.close()

    def _post(self, done: _Done | None) -> None:
        """Hand a committed (or failed) batch to the server's loop; None: the end."""
        assert self._server_loop is not None and self._done is not None
        self._server_loop.call_soon_threadsafe(self._done.put_nowait, done)

    async def _run(self) -> None:
        await self.writes.open()
        try:
            while True:
                self._signalled = False  # before looking: a message added after this wakes us again
                under_load = False
                while self._pending:
                    if under_load and len(self._pending) < self.batch_size and self.linger and not self._closing:
                        # Under load (the last batch held several messages and more
                        # were waiting when it was committed) linger before taking the
                        # next batch: what the server's loop reads meanwhile shares this
                        # commit, and the fan-out that follows it (one frame a
                        # connection). A message that finds the writer idle is committed
                        # at once, even one that arrives after a batch was committed and
                        # before this thread looks again (its sender may have heard of
                        # that batch already).
                        await asyncio.sleep(self.linger)
                    drafts: list[Draft] = []
                    futures: list[asyncio.Future[Outcome]] = []
                    size = 0
                    while self._pending and len(drafts) < self.batch_size and size < MAX_BATCH_BYTES:
                        draft, future = self._pending.popleft()
                        drafts.append(draft)
                        futures.append(future)
                        size += len(draft.text)
                    started = time.perf_counter()
                    outcomes = await self._commit(drafts)
                    # Looked at before the hand-off: what arrives after it finds us idle.
                    under_load = len(drafts) > 1 and bool(self._pending)
                    self._post((futures, outcomes, time.perf_counter() - started))
                if self._closing:
                    if not self._pending:  # nothing can be added once closing is set
                        return
                    continue
                await self._has_work.wait()
                self._has_work.clear()
        finally:
            await self.writes.close()

    async def _commit(self, drafts: list[Draft]) -> list[Outcome | Refused] | None:
        """The batch's outcomes; None when it failed (logged) and nothing of it was stored."""
        try:
            return await self.writes.commit_batch(drafts)
        except Exception:
            log.exception("storing a batch of %d messages failed", len(drafts))
            return None

    # The server's loop --------------------------------------------------------

    async def _hand_off_forever(self) -> None:
        """Committed batches, in commit order: to the fan-out, then to their senders."""
        assert self._done is not None
        while (done := await self._done.get()) is not None:
            futures, outcomes, seconds = done
            self.failing = outcomes is None
            if outcomes is None:
                for future in futures:
                    if not future.done():
                        future.set_exception(Unavailable("the database could not store the message"))
                continue
            self.batches += 1
            fresh = [o.message for o in outcomes if isinstance(o, Outcome) and o.fresh]
            self.committed += len(fresh)
            self.metrics.commit_seconds.observe(seconds)
            self.metrics.messages_stored.inc(len(fresh))
            if fresh:
                try:
                    await self.on_commit(fresh)
                except Exception:
                    log.exception("fan-out of %d committed messages failed", len(fresh))
            for future, outcome in zip(futures, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Refused):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
