"""Unsigned LEB128 varints (spec 2.1).

Seven value bits per byte, least-significant group first, bit 7 set on every
byte but the last. Encoders emit the minimal form; decoders accept
non-minimal forms within the byte limit (as the reference decoders do).

Two decoders with the reference byte limits:

* :func:`decode_varint32` for the IOTMP header, field keys and varint field
  values: at most 5 bytes, value below 2**32;
* :func:`decode_varint64` for PSON lengths and integers: at most 10 bytes,
  value below 2**64.

Both raise :class:`~.errors.ProtocolError` on truncated, over-long or
out-of-range input. :func:`try_decode_varint32` is the incremental variant used
by the stream decoder: it returns ``None`` when the input simply ends too early.
"""

from __future__ import annotations

from typing import Final

from . import speedups
from .errors import ProtocolError

MAX_VARINT32_BYTES: Final = 5
MAX_VARINT64_BYTES: Final = 10
UINT32_LIMIT: Final = 1 << 32
UINT64_LIMIT: Final = 1 << 64

# Minimal encodings of 0..1023, so the common small values cost a lookup.
_SMALL: Final[tuple[bytes, ...]] = tuple(
    bytes([v]) if v < 0x80 else bytes([(v & 0x7F) | 0x80, v >> 7]) for v in range(1024)
)


def encode_varint(value: int) -> bytes:
    """Minimal varint of a non-negative integer below 2**64."""
    if 0 <= value < 1024:
        return _SMALL[value]
    if value < 0:
        raise ValueError(f"varint cannot encode negative value {value}")
    if value >= UINT64_LIMIT:
        raise ValueError(f"varint value {value} does not fit in 64 bits")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint_size(value: int) -> int:
    """Return the size in bytes of the minimal varint of ``value`` (>= 0)."""
    return max(1, (value.bit_length() + 6) // 7)


def decode_varint32(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """Decode a 32-bit varint at ``buf[pos:end]``; return ``(value, new_pos)``.

    Raises :class:`ProtocolError` when the input ends before the varint does,
    when it needs more than 5 bytes, or when the value is 2**32 or larger.
    """
    result = try_decode_varint32(buf, pos, end)
    if result is None:
        raise ProtocolError(f"truncated varint at offset {pos}")
    return result


def try_decode_varint32(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int] | None:
    """Like :func:`decode_varint32` but return ``None`` if ``end`` comes too early.

    Over-long (more than 5 bytes) or out-of-range varints still raise
    :class:`ProtocolError`, as soon as enough bytes are there to tell.
    """
    if pos < end:
        b = buf[pos]
        if b < 0x80:
            return b, pos + 1
    value = 0
    shift = 0
    start = pos
    while pos < end:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value >= UINT32_LIMIT:
                raise ProtocolError(f"varint at offset {start} exceeds 32 bits ({value})")
            return value, pos
        shift += 7
        if pos - start >= MAX_VARINT32_BYTES:
            raise ProtocolError(
                f"varint at offset {start} is longer than {MAX_VARINT32_BYTES} bytes"
            )
    return None


def decode_varint64(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """Decode a 64-bit varint at ``buf[pos:end]``; return ``(value, new_pos)``.

    Raises :class:`ProtocolError` on truncation, on more than 10 bytes, and on
    values of 2**64 or more.
    """
    value = 0
    shift = 0
    start = pos
    limit = min(end, pos + MAX_VARINT64_BYTES)
    while pos < limit:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if value >= UINT64_LIMIT:
                raise ProtocolError(f"varint at offset {start} exceeds 64 bits")
            return value, pos
        shift += 7
    if pos - start >= MAX_VARINT64_BYTES:
        raise ProtocolError(f"varint at offset {start} is longer than {MAX_VARINT64_BYTES} bytes")
    raise ProtocolError(f"truncated varint at offset {start}")


# Registered only: the compiled codec calls the compiled copy directly, and
# nothing else decodes varints often enough to want it (see speedups).
speedups.install(
    "varint",
    globals(),
    ("encode_varint", "varint_size", "decode_varint32", "try_decode_varint32", "decode_varint64"),
    rebind=False,
)
