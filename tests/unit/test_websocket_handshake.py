"""Reading the upstream's answer to a WebSocket handshake, whole and in pieces.

The 101's status, reason phrase and fields go to the client as the upstream sent
them, so a head split across reads (llhttp hands ``on_status`` over piece by piece)
must be read as the whole head is.
"""

from __future__ import annotations

import asyncio

import pytest

from rampart_sidecar.websocket import _read_handshake
from tests.conftest import async_wait_until

ANSWER = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)
FRAME = b"\x81\x05hello"  # the upstream's first frame, in the same read as the head


@pytest.mark.parametrize("split", [None, 1, 12, 14, 20, 40, len(ANSWER) + 2])
async def test_the_handshake_is_read_whole_however_it_arrives(split: int | None) -> None:
    data = ANSWER + FRAME
    reader = asyncio.StreamReader()
    if split is None:
        reader.feed_data(data)
        status, reason, fields, rest = await _read_handshake(reader)
    else:
        reader.feed_data(data[:split])
        reading = asyncio.create_task(_read_handshake(reader))
        # The second piece only once the first was read, so it comes in a read of its
        # own (fed at once, the two would be one read).
        await async_wait_until(lambda: not reader._buffer, what="the first piece read")
        reader.feed_data(data[split:])
        status, reason, fields, rest = await reading
    assert (status, reason) == (101, "Switching Protocols")
    assert fields["Upgrade"] == "websocket"
    assert fields["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    # What came in the head's last read after it is the upstream's, to be relayed
    # (the rest of the frame is still in the reader, for the relay to read).
    head_ends_in = len(data) if split is None or split <= len(ANSWER) else split
    assert rest == data[len(ANSWER) : head_ends_in]
