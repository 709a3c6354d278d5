"""IOTMP message encoding and decoding (spec sections 2 and 3).

Wire layout::

    message := type:varint size:varint body      (size = body bytes)
    body    := (key:varint value)*               (key = field_id << 3 | wire_type)

Wire type 0 is a varint, 1 a legacy PSON value, 2 a new PSON value; PSON
values carry no length prefix, so other wire types cannot be skipped and are
rejected.

Decisions (spec section 16 leaves them open):

* Decoding accepts wire types 0, 1 and 2 for every field and records them in
  ``Message.wire_types``, so a decoded message re-encodes to the same bytes.
* Header type/size, keys and varint field values use the 32-bit varint
  decoder: at most 5 bytes and values below 2**32 (larger values are rejected,
  not truncated as the C references do).
* A body larger than ``limits.max_message_size`` is rejected as soon as the
  header has been read, before any body byte is awaited or copied.
* The fields must consume exactly ``size`` bytes.
* Duplicate field ids: the last value (and its wire type) wins, kept at the
  position where the id first appeared (as a dict assignment does).
* Unknown message types decode fine; known ones come back as
  :class:`MessageType`, unknown ones as plain ``int``. Field ids are not
  restricted (unknown ids are kept).

Encoding: a field uses ``msg.wire_types[fid]`` when given, otherwise an
``int`` (not ``bool``) with ``0 <= v < 2**32`` goes as a varint and anything
else as PSON (wire type 2, or 1 with ``legacy=True``). Encoding errors raise
``ValueError``/``TypeError`` (they are programming errors, not bad input).
"""

from __future__ import annotations

from typing import Any, Final

from . import pson, pson_legacy, speedups
from .errors import ProtocolError
from .limits import DEFAULT_LIMITS, Limits
from .message import Message, MessageType, WireType
from .varint import UINT32_LIMIT, encode_varint, try_decode_varint32

__all__ = ["MessageDecoder", "decode_message", "encode_message"]

_WT_VARINT: Final = 0
_WT_LEGACY: Final = 1
_WT_PSON: Final = 2
_WIRE_TYPES: Final = (WireType.VARINT, WireType.PSON_LEGACY, WireType.PSON)
_KNOWN_TYPES: Final[dict[int, MessageType]] = {int(t): t for t in MessageType}

_SMALL_VARINT: Final[tuple[bytes, ...]] = tuple(encode_varint(n) for n in range(1024))

# The codec appends PSON straight into the body buffer through the encoder's
# internal entry points (same package), skipping one dispatch per field.
_pson_enc = pson._enc
_pson_map = pson._enc_map
_legacy_enc = pson_legacy._enc
_pson_dec = pson.decode_body_value
_legacy_dec = pson_legacy.decode_body_value


def _uvarint(n: int) -> bytes:
    return _SMALL_VARINT[n] if 0 <= n < 1024 else encode_varint(n)


# --------------------------------------------------------------------------- encode


def encode_message(msg: Message, *, legacy: bool = False) -> bytes:
    """Encode ``msg`` (header + body); fields go out in ``msg.fields`` order."""
    body = bytearray()
    wire_types = msg.wire_types
    for fid, value in msg.fields.items():
        wt: int | None = wire_types.get(fid) if wire_types else None
        tv = type(value)
        if wt is None:
            if tv is int:
                wt = _WT_VARINT if 0 <= value < UINT32_LIMIT else _WT_PSON
            elif tv is not bool and isinstance(value, int) and 0 <= value < UINT32_LIMIT:
                wt = _WT_VARINT  # int subclass (IntEnum, ...)
            else:
                wt = _WT_PSON
            if legacy and wt == _WT_PSON:
                wt = _WT_LEGACY
        if type(fid) is not int and not isinstance(fid, int):
            raise TypeError(f"field id must be int, not {type(fid).__name__}")
        key = fid << 3 | wt
        if fid >= 0 and key < 0x80:
            body.append(key)
        elif 0 <= fid < (1 << 29):
            body += encode_varint(key)
        else:
            raise ValueError(f"field id {fid} out of range 0 .. 2**29-1")
        if wt == _WT_PSON:
            if tv is dict:
                _pson_map(value, body, 0)
            else:
                _pson_enc(value, body, 0)
        elif wt == _WT_VARINT:
            if tv is not int and (not isinstance(value, int) or isinstance(value, bool)):
                raise TypeError(f"field {fid}: varint wire type needs an int, got {value!r}")
            if not 0 <= value < UINT32_LIMIT:
                raise ValueError(f"field {fid}: varint value {value} outside 0 .. 2**32-1")
            body += _uvarint(int(value))
        elif wt == _WT_LEGACY:
            _legacy_enc(value, body, 0)
        else:
            raise ValueError(f"field {fid}: unsupported wire type {wt}")
    mtype = msg.type
    size = len(body)
    if 0 <= mtype < 0x80 and size < 0x80:
        return bytes((mtype, size)) + body
    if not 0 <= mtype < UINT32_LIMIT:
        raise ValueError(f"message type {mtype} outside 0 .. 2**32-1")
    return _uvarint(int(mtype)) + _uvarint(size) + body


# --------------------------------------------------------------------------- decode


def _read_header(
    buf: bytes | bytearray, pos: int, end: int, limits: Limits
) -> tuple[int, int, int] | None:
    """Parse ``type`` and ``size`` at ``pos``: ``(type, size, body_pos)`` or ``None`` if incomplete.

    Enforces the size limit as soon as the size varint is complete.
    """
    if pos + 1 < end and buf[pos] < 0x80 and buf[pos + 1] < 0x80:  # one-byte type and size
        mtype = buf[pos]
        size = buf[pos + 1]
        p = pos + 2
    else:
        header = try_decode_varint32(buf, pos, end)
        if header is None:
            return None
        mtype, p = header
        sized = try_decode_varint32(buf, p, end)
        if sized is None:
            return None
        size, p = sized
    if size > limits.max_message_size:
        raise ProtocolError(
            f"message body of {size} bytes exceeds the limit of {limits.max_message_size}"
        )
    return mtype, size, p


def _decode_body(mtype: int, buf: bytes, pos: int, max_depth: int) -> Message:
    """Decode fields from ``buf[pos:]`` up to the end of ``buf`` (the body's end)."""
    end = len(buf)
    fields: dict[int, Any] = {}
    wire_types: dict[int, WireType] = {}
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            res = try_decode_varint32(buf, pos, end)
            if res is None:
                raise ProtocolError("truncated field key")
            key, pos = res
        fid = key >> 3
        wt = key & 7
        if wt == _WT_VARINT:
            if pos < end and buf[pos] < 0x80:
                value: Any = buf[pos]
                pos += 1
            else:
                res = try_decode_varint32(buf, pos, end)
                if res is None:
                    raise ProtocolError(f"truncated varint value of field {fid}")
                value, pos = res
        elif wt == _WT_PSON:
            if pos >= end:
                raise ProtocolError(f"field {fid} has no PSON value")
            value, pos = _pson_dec(buf, pos, max_depth)
        elif wt == _WT_LEGACY:
            value, pos = _legacy_dec(buf, pos, end, max_depth)
        else:
            raise ProtocolError(f"field {fid} has unsupported wire type {wt}")
        fields[fid] = value
        wire_types[fid] = _WIRE_TYPES[wt]
    return Message(_KNOWN_TYPES.get(mtype, mtype), fields, wire_types)


def decode_message(
    data: bytes | bytearray | memoryview, limits: Limits = DEFAULT_LIMITS
) -> Message:
    """Decode exactly one whole message (header + body, nothing after it)."""
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    header = _read_header(data, 0, end, limits)
    if header is None:
        raise ProtocolError("truncated message header")
    mtype, size, pos = header
    if pos + size != end:
        if pos + size > end:
            raise ProtocolError(f"truncated message: body of {size} bytes, {end - pos} present")
        raise ProtocolError(f"{end - pos - size} trailing bytes after the message")
    return _decode_body(mtype, data, pos, limits.max_depth)


class MessageDecoder:
    """Incremental decoder for a byte stream of back-to-back messages.

    ``feed()`` accepts chunks split anywhere and returns the messages completed
    so far. Oversized bodies are rejected as soon as their header arrives.
    After a :class:`ProtocolError` the stream cannot be resynchronised: the
    decoder stays failed and every later ``feed()`` raises the same error
    (messages completed earlier in the failing call are not returned).
    """

    __slots__ = ("_buf", "_error", "_limits", "_pending")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._error: ProtocolError | None = None
        # (type, size, body start) of a header already validated, awaiting its body
        self._pending: tuple[int, int, int] | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)

    @property
    def limits(self) -> Limits:
        """Limits this decoder enforces."""
        return self._limits

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add ``data`` and return every message it completes, in order."""
        if self._error is not None:
            raise self._error
        try:
            return self._feed(data)
        except ProtocolError as exc:
            self._error = exc
            self._buf.clear()
            self._pending = None
            raise

    def _feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        buf = self._buf
        pending = self._pending
        if buf:
            buf += data
            if pending is not None and len(buf) < pending[2] + pending[1]:
                return []  # still inside a body whose header was checked already
            data = bytes(buf)
            buf.clear()
        elif type(data) is not bytes:
            data = bytes(data)
        # ``data`` now holds everything not yet consumed; a pending header's
        # offsets are relative to its start.
        limits = self._limits
        max_depth = limits.max_depth
        out: list[Message] = []
        pos = 0
        end = len(data)
        while pos < end:
            if pending is None:
                pending = _read_header(data, pos, end, limits)
                if pending is None:
                    break
            mtype, size, body = pending
            stop = body + size
            if stop > end:
                break
            out.append(_decode_body(mtype, data[body:stop], 0, max_depth))
            pos = stop
            pending = None
        if pos < end:
            buf += memoryview(data)[pos:]
            if pending is not None:
                pending = (pending[0], pending[1], pending[2] - pos)
        self._pending = pending
        return out


# The compiled copy of this module, when installed and not disabled (see speedups).
speedups.install("codec", globals(), ("encode_message", "decode_message", "MessageDecoder"))
