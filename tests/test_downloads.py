"""Downloads: a graceful shutdown waits for the ones under way, up to its grace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from quartchat.downloads import Downloads


async def pieces(release: asyncio.Event) -> AsyncIterator[bytes]:
    yield b"first"
    await release.wait()
    yield b"last"


async def read_all(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [piece async for piece in stream]


async def test_the_shutdown_waits_for_a_download_to_end() -> None:
    downloads, release = Downloads(), asyncio.Event()
    reading = asyncio.create_task(read_all(downloads.tracked(pieces(release))))
    await asyncio.sleep(0.01)
    assert downloads.under_way == 1
    waiting = asyncio.create_task(downloads.finished(grace=5.0))
    await asyncio.sleep(0.05)
    assert not waiting.done(), "the download is still under way"
    release.set()
    await asyncio.wait_for(waiting, 1.0)
    assert await reading == [b"first", b"last"] and downloads.under_way == 0


async def test_past_the_grace_the_shutdown_goes_on_and_says_how_many_were_cut(caplog: pytest.LogCaptureFixture) -> None:
    downloads, release = Downloads(), asyncio.Event()
    reading = asyncio.create_task(read_all(downloads.tracked(pieces(release))))
    await asyncio.sleep(0.01)
    await downloads.finished(grace=0.05)
    assert "1 downloads were cut short by the shutdown" in caplog.text
    reading.cancel()
    await asyncio.gather(reading, return_exceptions=True)
    assert downloads.under_way == 0, "a cancelled download is no longer counted"
