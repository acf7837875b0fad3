"""Request bodies read one chunk ahead (aperture.dicomweb.body)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from aperture.dicomweb.body import read_ahead


class _Peer:
    """An ASGI server's side of `receive`, recording when each message was asked for."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.messages = messages
        self.asked = 0
        self.cancelled = False

    async def receive(self) -> dict[str, Any]:
        self.asked += 1
        if self.asked > len(self.messages):
            try:
                await asyncio.sleep(3600)  # a body that never ends
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return self.messages[self.asked - 1]


def _request(peer: _Peer) -> Request:
    return Request({"type": "http", "method": "POST", "headers": []}, peer.receive)


def _chunk(body: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_chunks_come_in_order_and_the_next_is_asked_for_before_this_one_is_handled() -> None:
    peer = _Peer([_chunk(b"a"), _chunk(b""), _chunk(b"b"), _chunk(b"c", more=False)])

    async def run() -> list[tuple[bytes, int]]:
        seen = []
        async for chunk in read_ahead(_request(peer)):
            await asyncio.sleep(0)  # let the pending receive start
            seen.append((chunk, peer.asked))
        return seen

    seen = asyncio.run(run())
    assert [chunk for chunk, _ in seen] == [b"a", b"b", b"c"]  # empty chunks are skipped
    assert [asked for _, asked in seen] == [2, 4, 4]  # while "a" is handled, the next was asked for
    assert peer.asked == 4  # nothing is asked for after the last chunk


def test_a_client_that_goes_away_is_a_client_disconnect() -> None:
    peer = _Peer([_chunk(b"a"), {"type": "http.disconnect"}])

    async def run() -> list[bytes]:
        return [chunk async for chunk in read_ahead(_request(peer))]

    with pytest.raises(ClientDisconnect):
        asyncio.run(run())


def test_stopping_early_cancels_the_receive_asked_for_ahead() -> None:
    peer = _Peer([_chunk(b"a")])  # then the body never ends

    async def run() -> None:
        body = read_ahead(_request(peer))
        assert await body.__anext__() == b"a"
        await asyncio.sleep(0)
        await body.aclose()
        await asyncio.sleep(0)

    asyncio.run(run())
    assert peer.cancelled
