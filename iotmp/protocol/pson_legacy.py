"""Legacy PSON (protoson; IOTMP wire type 1, connection option ``"pv": 0``), spec section 6.

Each value starts with a protobuf-style tag ``field_type << 3 | pb_wire_type``
(always one byte, field types 0..15):

=====  ==================  ==============================================
tag    type                data
=====  ==================  ==============================================
00     null                --
08     varint              varint(value), positive integers >= 2
10     svarint             varint(magnitude) of a negative integer
1d     float               4 bytes float32 LE
21     double              8 bytes float64 LE
28/30  true / false        --
38/40  zero / one          --
4a     string              varint(length) + UTF-8 bytes
50     empty string        --
5a     bytes               varint(length) + bytes
60     empty bytes         --
6a     object              varint(content byte length) + entries
                           (varint(key length) + key bytes + value)
72     array               varint(content byte length) + values
78     empty               -- (decodes as null)
=====  ==================  ==============================================

Encoding reproduces protoson's ``operator=`` (spec 6.2): 0 and 1 get their own
tags; doubles that are whole and within int64 become integers; other doubles
become float32 when ``|d - float32(d)| <= 1e-5`` (**lossy**: 0.1 decodes as
0.10000000149011612), else double. Empty strings/bytes use their own tags.

Decoding accepts exactly the sixteen tags above (a multi-byte or unknown tag is
a :class:`~.errors.ProtocolError`), requires container contents to end exactly
at their declared byte length, and applies the same limits as new PSON (depth,
varint length, UTF-8, magnitudes above 2**63).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from . import speedups
from .errors import ProtocolError
from .limits import DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP
from .pson import f32_value

__all__ = ["MAX_ENCODE_DEPTH", "decode", "decode_at", "encode", "encode_into"]

MAX_ENCODE_DEPTH: Final = 256

T_NULL: Final = 0x00
T_VARINT: Final = 0x08
T_SVARINT: Final = 0x10
T_FLOAT: Final = 0x1D
T_DOUBLE: Final = 0x21
T_TRUE: Final = 0x28
T_FALSE: Final = 0x30
T_ZERO: Final = 0x38
T_ONE: Final = 0x40
T_STRING: Final = 0x4A
T_EMPTY_STRING: Final = 0x50
T_BYTES: Final = 0x5A
T_EMPTY_BYTES: Final = 0x60
T_OBJECT: Final = 0x6A
T_ARRAY: Final = 0x72
T_EMPTY: Final = 0x78

_UINT64_LIMIT: Final = 1 << 64
_NEG_LIMIT: Final = 1 << 63
_INT64_MIN_F: Final = -9223372036854775808.0
_INT64_END_F: Final = 9223372036854775808.0
_DEMOTE_TOLERANCE: Final = 0.00001

_F32: Final = struct.Struct("<f")
_F64: Final = struct.Struct("<d")
_pack_f32 = _F32.pack
_unpack_f32 = _F32.unpack
_pack_f64 = _F64.pack
_unpack_f32_from = _F32.unpack_from
_unpack_f64_from = _F64.unpack_from


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINT: Final[tuple[bytes, ...]] = tuple(_varint(n) for n in range(1024))


def _len_prefix(n: int) -> bytes:
    return _SMALL_VARINT[n] if n < 1024 else _varint(n)


# --------------------------------------------------------------------------- encode


def _int_into(v: int, out: bytearray) -> None:
    if v == 0:
        out.append(T_ZERO)
    elif v == 1:
        out.append(T_ONE)
    elif v > 0:
        if v >= _UINT64_LIMIT:
            raise ValueError(f"integer {v} is outside the PSON range -2**63 .. 2**64-1")
        out.append(T_VARINT)
        out += _len_prefix(v)
    else:
        if v < -_NEG_LIMIT:
            raise ValueError(f"integer {v} is outside the PSON range -2**63 .. 2**64-1")
        out.append(T_SVARINT)
        out += _len_prefix(-v)


def _float_into(d: float, out: bytearray) -> None:
    """Spec 6.2: integer if whole within int64; float32 if within 1e-5; else double."""
    if _INT64_MIN_F <= d < _INT64_END_F and d.is_integer():
        _int_into(int(d), out)
        return
    try:
        f32 = _pack_f32(d)
    except OverflowError:  # C's (float)d is +-inf here, so the difference is inf
        out.append(T_DOUBLE)
        out += _pack_f64(d)
        return
    if abs(d - _unpack_f32(f32)[0]) <= _DEMOTE_TOLERANCE:  # False for NaN and +-inf
        out.append(T_FLOAT)
        out += f32
    else:
        out.append(T_DOUBLE)
        out += _pack_f64(d)


def encode(value: Any) -> bytes:
    """Encode one value as legacy PSON (``TypeError`` / ``ValueError`` as in :mod:`.pson`)."""
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


def encode_into(value: Any, out: bytearray) -> None:
    """Append the legacy-PSON encoding of ``value`` to ``out``."""
    _enc(value, out, 0)


def _enc(v: Any, out: bytearray, depth: int) -> None:
    t = type(v)
    if t is int:
        _int_into(v, out)
    elif t is str:
        if v:
            b = v.encode()
            out.append(T_STRING)
            out += _len_prefix(len(b))
            out += b
        else:
            out.append(T_EMPTY_STRING)
    elif t is float:
        _float_into(v, out)
    elif t is dict:
        if depth >= MAX_ENCODE_DEPTH:
            raise ValueError(f"value nested deeper than {MAX_ENCODE_DEPTH} levels")
        body = bytearray()
        for k, x in v.items():
            if type(k) is not str and not isinstance(k, str):
                raise TypeError(f"PSON map keys must be str, not {type(k).__name__}")
            kb = k.encode()
            body += _len_prefix(len(kb))
            body += kb
            _enc(x, body, depth + 1)
        out.append(T_OBJECT)
        out += _len_prefix(len(body))
        out += body
    elif t is list or t is tuple:
        if depth >= MAX_ENCODE_DEPTH:
            raise ValueError(f"value nested deeper than {MAX_ENCODE_DEPTH} levels")
        body = bytearray()
        for x in v:
            _enc(x, body, depth + 1)
        out.append(T_ARRAY)
        out += _len_prefix(len(body))
        out += body
    elif v is None:
        out.append(T_NULL)
    elif v is True:
        out.append(T_TRUE)
    elif v is False:
        out.append(T_FALSE)
    elif t is bytes or t is bytearray or t is memoryview:
        b = bytes(v)
        if b:
            out.append(T_BYTES)
            out += _len_prefix(len(b))
            out += b
        else:
            out.append(T_EMPTY_BYTES)
    else:
        _enc(_normalize(v), out, depth)


def _normalize(v: Any) -> Any:
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float):
        return float(v)
    if isinstance(v, str):
        return v.encode().decode()
    if isinstance(v, bytes):
        return bytes(v)
    if isinstance(v, Mapping):
        return dict(v.items())
    if isinstance(v, (list, tuple)):
        return list(v)
    raise TypeError(f"cannot encode {type(v).__name__} as PSON")


# --------------------------------------------------------------------------- decode


def decode(data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode exactly one legacy PSON value filling ``data``."""
    if type(data) is not bytes:
        data = bytes(data)
    value, pos = decode_body_value(data, 0, len(data), max_depth)
    if pos != len(data):
        raise ProtocolError(f"{len(data) - pos} trailing bytes after the PSON value")
    return value


def decode_at(
    buf: bytes | bytearray | memoryview,
    pos: int,
    end: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[Any, int]:
    """Decode one legacy PSON value at ``buf[pos]`` that must end by ``end``."""
    if type(buf) is not bytes:
        buf = bytes(buf)
    if not 0 <= pos <= end <= len(buf):
        raise ValueError(f"bad range {pos}..{end} for a buffer of {len(buf)} bytes")
    return decode_body_value(buf, pos, end, max_depth)


def decode_body_value(buf: bytes, pos: int, end: int, max_depth: int) -> tuple[Any, int]:
    """Decode at ``pos`` for the message codec; every failure becomes :class:`ProtocolError`."""
    max_depth = min(max_depth, MAX_DEPTH_CAP)
    try:
        return _dec(buf, pos, end, max_depth)
    except (IndexError, struct.error):
        raise ProtocolError("truncated legacy PSON value") from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8 in legacy PSON string: {exc.reason}") from None
    except RecursionError:
        raise ProtocolError("legacy PSON nesting too deep for the interpreter") from None


def _uvarint64(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise ProtocolError(f"truncated legacy PSON varint at offset {start}")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise ProtocolError(f"legacy PSON varint at offset {start} is longer than 10 bytes")
    if value >= _UINT64_LIMIT:
        raise ProtocolError(f"legacy PSON varint at offset {start} exceeds 64 bits")
    return value, pos


def _length(buf: bytes, pos: int, end: int, what: str) -> tuple[int, int]:
    n, pos = _uvarint64(buf, pos, end)
    if n > end - pos:
        raise ProtocolError(f"legacy PSON {what} claims {n} bytes but only {end - pos} remain")
    return n, pos


def _dec(buf: bytes, pos: int, end: int, rem: int) -> tuple[Any, int]:
    if pos >= end:
        raise ProtocolError("truncated legacy PSON value")
    tag = buf[pos]
    pos += 1
    if tag == T_VARINT:
        return _uvarint64(buf, pos, end)
    if tag == T_STRING:
        n, pos = _length(buf, pos, end, "string")
        return buf[pos : pos + n].decode(), pos + n
    if tag == T_OBJECT:
        if rem <= 0:
            raise ProtocolError("legacy PSON nesting exceeds the depth limit")
        n, pos = _length(buf, pos, end, "object")
        cend = pos + n
        d: dict[str, Any] = {}
        while pos < cend:
            kn, pos = _length(buf, pos, cend, "map key")
            key = buf[pos : pos + kn].decode()
            d[key], pos = _dec(buf, pos + kn, cend, rem - 1)
        return d, pos
    if tag == T_FLOAT:
        if pos + 4 > end:
            raise ProtocolError("truncated legacy PSON float")
        return f32_value(_unpack_f32_from(buf, pos)[0]), pos + 4
    if tag == T_ZERO:
        return 0, pos
    if tag == T_ONE:
        return 1, pos
    if tag == T_ARRAY:
        if rem <= 0:
            raise ProtocolError("legacy PSON nesting exceeds the depth limit")
        n, pos = _length(buf, pos, end, "array")
        cend = pos + n
        a: list[Any] = []
        while pos < cend:
            x, pos = _dec(buf, pos, cend, rem - 1)
            a.append(x)
        return a, pos
    if tag == T_SVARINT:
        n, pos = _uvarint64(buf, pos, end)
        if n > _NEG_LIMIT:
            raise ProtocolError(f"legacy PSON negative magnitude {n} exceeds 2**63")
        return -n, pos
    if tag == T_DOUBLE:
        if pos + 8 > end:
            raise ProtocolError("truncated legacy PSON double")
        return _unpack_f64_from(buf, pos)[0], pos + 8
    if tag == T_TRUE:
        return True, pos
    if tag == T_FALSE:
        return False, pos
    if tag in (T_NULL, T_EMPTY):
        return None, pos
    if tag == T_EMPTY_STRING:
        return "", pos
    if tag == T_BYTES:
        n, pos = _length(buf, pos, end, "bytes")
        return buf[pos : pos + n], pos + n
    if tag == T_EMPTY_BYTES:
        return b"", pos
    raise ProtocolError(f"invalid legacy PSON tag 0x{tag:02x}")


# The compiled copy of this module, when installed and not disabled (see speedups).
speedups.install("pson_legacy", globals(), ("encode", "encode_into", "decode", "decode_at"))
