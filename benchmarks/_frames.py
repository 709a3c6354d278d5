"""Framing shared by the throughput benchmark's clients and relay.

IOTMP and MQTT frames both start with one type byte and a varint (7 bits per byte,
little-endian groups) body length, so one splitter serves both without parsing bodies.
"""

from __future__ import annotations


def frame_at(buf: bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """Return (body start, frame end) of the frame at ``pos``; None if it is incomplete."""
    if pos + 2 > end:
        return None
    length, shift, cursor = 0, 0, pos + 1
    while cursor < end:
        byte = buf[cursor]
        cursor += 1
        length |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            break
    else:
        return None
    if cursor + length > end:
        return None
    return cursor, cursor + length
