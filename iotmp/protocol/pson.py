"""New PSON (IOTMP wire type 2, connection option ``"pv": 1``), spec section 5.

Every value starts with one tag byte ``class << 5 | n``; ``n`` 0..30 is inline,
31 means a 64-bit varint with the real ``n`` follows.

==========  ===============  =================================================
class       meaning          n
==========  ===============  =================================================
0           unsigned int     the value
1           negative int     the magnitude (no zigzag)
2           float            0 = float32, 1 = float64 (little-endian bytes follow)
3           discrete         0 = false, 1 = true, 2 = null
4 / 5       string / bytes   byte length, bytes follow
6 / 7       map / array      entry / element count; map keys are class-4 items
==========  ===============  =================================================

Value model: ``int``, ``float``, ``bool``, ``None``, ``str``, ``bytes``,
``list`` and ``dict[str, Any]``. Encoding follows the reference encoders byte
for byte (spec 5.2): whole doubles within int64 become integers (so ``1.0``
decodes as ``1`` and ``-0.0`` as ``0``), other doubles are float32 when that is
exact (and for +-inf), else float64 (NaN is always float64). A float32 decodes
as the shortest decimal that reads back as the same float32 (``21.6f`` is
``21.6``, not 21.600000381469727; :func:`f32_value`), so a decoded ``21.6``
re-encodes as float64 (same value; see docs/codec.md). Map key order is
the dict's insertion order. Tuples, other sequences and mappings, bytearray /
memoryview and int / float / str subclasses are accepted on encode.

Decoding raises only :class:`~.errors.ProtocolError` on bad input: truncated
values, over-long varints, invalid float/discrete sub-codes, negative
magnitudes above 2**63, invalid UTF-8, non-string map keys, nesting deeper than
``max_depth`` (number of nested containers; a scalar has depth 0; never above
``limits.MAX_DEPTH_CAP``) and counts or
lengths larger than the bytes that remain (checked before anything is built).
Duplicate map keys: the last value wins (at the first key's position).

The code is written for CPython speed (dispatch on ``type``, precomputed tag
bytes, inlined leaf cases in the container loops); keep that in mind before
"simplifying" it.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Mapping
from typing import Any, Final

from . import speedups

try:  # Cython's pure-Python mode: True only in the compiled copy (see hatch_build.py)
    import cython

    _COMPILED_LE: bool = cython.compiled and sys.byteorder == "little"
except ImportError:
    _COMPILED_LE = False
from .errors import ProtocolError
from .limits import DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP

__all__ = ["MAX_ENCODE_DEPTH", "decode", "decode_at", "encode", "encode_into"]

MAX_ENCODE_DEPTH: Final = 256
"""Encoding refuses (ValueError) values nested deeper than this (cycles, mostly)."""

_INT64_MIN_F: Final = -9223372036854775808.0
_INT64_END_F: Final = 9223372036854775808.0
_UINT64_LIMIT: Final = 1 << 64
_F32_MIN_NORMAL: Final = 1.1754943508222875e-38  # 2**-126
_F32_MAX: Final = 3.4028234663852886e38
_INF: Final = float("inf")
_NEG_LIMIT: Final = 1 << 63

_F32: Final = struct.Struct("<f")
_F64: Final = struct.Struct("<d")
_pack_f32 = _F32.pack
_unpack_f32 = _F32.unpack
_pack_f64 = _F64.pack
_unpack_f32_from = _F32.unpack_from
_unpack_f64_from = _F64.unpack_from

_CLS_UINT: Final = 0
_CLS_NINT: Final = 1
_CLS_STR: Final = 4
_CLS_BYTES: Final = 5
_CLS_MAP: Final = 6
_CLS_ARRAY: Final = 7

_TRUE: Final = b"\x61"
_FALSE: Final = b"\x60"
_NULL: Final = b"\x62"
_TAG_F32: Final = b"\x40"
_TAG_F64: Final = b"\x41"


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _head(cls: int, n: int) -> bytes:
    """Tag byte (plus escape varint) for class ``cls`` and number ``n``."""
    if n < 31:
        return bytes([cls << 5 | n])
    return bytes([cls << 5 | 31]) + _varint(n)


_TABLE_SIZE: Final = 1024
_UINT: Final[tuple[bytes, ...]] = tuple(_head(_CLS_UINT, n) for n in range(_TABLE_SIZE))
_NINT: Final[tuple[bytes, ...]] = tuple(_head(_CLS_NINT, n) for n in range(_TABLE_SIZE))
_STR_HEAD: Final[tuple[bytes, ...]] = tuple(_head(_CLS_STR, n) for n in range(_TABLE_SIZE))
_BYTES_HEAD: Final[tuple[bytes, ...]] = tuple(_head(_CLS_BYTES, n) for n in range(_TABLE_SIZE))
_MAP_HEAD: Final[tuple[bytes, ...]] = tuple(_head(_CLS_MAP, n) for n in range(_TABLE_SIZE))
_ARRAY_HEAD: Final[tuple[bytes, ...]] = tuple(_head(_CLS_ARRAY, n) for n in range(_TABLE_SIZE))

# Encoded map keys (tag + UTF-8), bounded: cleared when it grows past the cap.
_KEY_CACHE_MAX: Final = 4096
_KEY_CACHE_MAX_LEN: Final = 64
_key_cache: dict[str, bytes] = {}


# --------------------------------------------------------------------------- encode


def _int_bytes(v: int) -> bytes:
    if v >= 0:
        if v < _TABLE_SIZE:
            return _UINT[v]
        if v >= _UINT64_LIMIT:
            raise ValueError(f"integer {v} is outside the PSON range -2**63 .. 2**64-1")
        return _head(_CLS_UINT, v)
    if v > -_TABLE_SIZE:
        return _NINT[-v]
    if v < -_NEG_LIMIT:
        raise ValueError(f"integer {v} is outside the PSON range -2**63 .. 2**64-1")
    return _head(_CLS_NINT, -v)


def _float_bytes(d: float) -> bytes:
    """Spec 5.2 rule 3: integer if whole and within int64, else float32 if exact, else float64."""
    if _COMPILED_LE:  # the same rule with C arithmetic and casts instead of calls
        if _INT64_MIN_F <= d < _INT64_END_F and d % 1.0 == 0.0:
            return _int_bytes(int(d))
        if (d if d >= 0.0 else -d) <= _F32_MAX or d in (_INF, -_INF):  # not NaN
            f = cython.cast(cython.float, d)
            if f == d:
                raw: bytes = cython.cast(cython.p_char, cython.address(f))[:4]
                return _TAG_F32 + raw
        raw = cython.cast(cython.p_char, cython.address(d))[:8]
        return _TAG_F64 + raw
    if _INT64_MIN_F <= d < _INT64_END_F and d.is_integer():
        return _int_bytes(int(d))
    try:
        f32 = _pack_f32(d)
    except OverflowError:  # finite, beyond float32 range
        return _TAG_F64 + _pack_f64(d)
    if _unpack_f32(f32)[0] == d:  # exact, or +-inf; never NaN
        return _TAG_F32 + f32
    return _TAG_F64 + _pack_f64(d)


def _str_bytes(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    return (_STR_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_STR, n)) + b


def _key_bytes(k: Any) -> bytes:
    """Return the encoded map key (a string item), filling the bounded cache."""
    if type(k) is not str:
        if not isinstance(k, str):
            raise TypeError(f"PSON map keys must be str, not {type(k).__name__}")
        k = k.encode().decode()  # plain str copy of a str subclass
    b = _str_bytes(k)
    if len(k) <= _KEY_CACHE_MAX_LEN:
        if len(_key_cache) >= _KEY_CACHE_MAX:
            _key_cache.clear()
        _key_cache[k] = b
    return b


def encode(value: Any) -> bytes:
    """Encode one value as new PSON.

    Raises ``TypeError`` for values outside the value model (e.g. a ``set`` or
    a non-``str`` map key) and ``ValueError`` for integers outside
    -2**63 .. 2**64-1 or nesting deeper than :data:`MAX_ENCODE_DEPTH`.
    """
    t = type(value)
    if t is dict:
        out = bytearray()
        _enc_map(value, out, 0)
        return bytes(out)
    if t is int:
        return _int_bytes(value)
    if t is str:
        return _str_bytes(value)
    if t is float:
        return _float_bytes(value)
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


def encode_into(value: Any, out: bytearray) -> None:
    """Append the new-PSON encoding of ``value`` to ``out`` (see :func:`encode`)."""
    _enc(value, out, 0)


def _enc(v: Any, out: bytearray, depth: int) -> None:
    t = type(v)
    if t is dict:
        _enc_map(v, out, depth)
    elif t is str:
        b = v.encode()
        n = len(b)
        out += _STR_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_STR, n)
        out += b
    elif t is int:
        out += _UINT[v] if 0 <= v < _TABLE_SIZE else _int_bytes(v)
    elif t is float:
        out += _float_bytes(v)
    elif t is list or t is tuple:
        _enc_list(v, out, depth)
    elif v is None:
        out += _NULL
    elif v is True:
        out += _TRUE
    elif v is False:
        out += _FALSE
    elif t is bytes or t is bytearray or t is memoryview:
        b = bytes(v)
        n = len(b)
        out += _BYTES_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_BYTES, n)
        out += b
    else:
        _enc(_normalize(v), out, depth)


# The container loops encode the common leaves inline (no call per leaf) and
# go straight to the container encoders for nested dicts / lists.


def _enc_map(v: dict[Any, Any], out: bytearray, depth: int) -> None:
    if depth >= MAX_ENCODE_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_ENCODE_DEPTH} levels")
    n = len(v)
    out += _MAP_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_MAP, n)
    kc = _key_cache
    depth += 1
    for k, x in v.items():
        try:
            out += kc[k]
        except KeyError:
            out += _key_bytes(k)
        tx = type(x)
        if tx is int:
            out += _UINT[x] if 0 <= x < _TABLE_SIZE else _int_bytes(x)
        elif tx is str:
            b = x.encode()
            n = len(b)
            out += _STR_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_STR, n)
            out += b
        elif tx is float:
            out += _float_bytes(x)
        elif tx is dict:
            # A dict inside a dict is encoded here rather than by a recursive
            # call; its leaves take the same fast paths.
            if depth >= MAX_ENCODE_DEPTH:
                raise ValueError(f"value nested deeper than {MAX_ENCODE_DEPTH} levels")
            n = len(x)
            out += _MAP_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_MAP, n)
            for k2, y in x.items():
                try:
                    out += kc[k2]
                except KeyError:
                    out += _key_bytes(k2)
                ty = type(y)
                if ty is int:
                    out += _UINT[y] if 0 <= y < _TABLE_SIZE else _int_bytes(y)
                elif ty is str:
                    b = y.encode()
                    n = len(b)
                    out += _STR_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_STR, n)
                    out += b
                elif ty is float:
                    out += _float_bytes(y)
                elif y is True:
                    out += _TRUE
                elif y is False:
                    out += _FALSE
                else:
                    _enc(y, out, depth + 1)
        elif x is True:
            out += _TRUE
        elif x is False:
            out += _FALSE
        elif tx is list:
            _enc_list(x, out, depth)
        else:
            _enc(x, out, depth)


def _enc_list(v: list[Any] | tuple[Any, ...], out: bytearray, depth: int) -> None:
    if depth >= MAX_ENCODE_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_ENCODE_DEPTH} levels")
    n = len(v)
    out += _ARRAY_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_ARRAY, n)
    depth += 1
    for x in v:
        tx = type(x)
        if tx is int:
            out += _UINT[x] if 0 <= x < _TABLE_SIZE else _int_bytes(x)
        elif tx is float:
            out += _float_bytes(x)
        elif tx is str:
            b = x.encode()
            n = len(b)
            out += _STR_HEAD[n] if n < _TABLE_SIZE else _head(_CLS_STR, n)
            out += b
        elif tx is dict:
            _enc_map(x, out, depth)
        else:
            _enc(x, out, depth)


def _normalize(v: Any) -> Any:
    """Map a value of another type onto the value model (or raise TypeError)."""
    if isinstance(v, int):  # int subclasses (IntEnum, ...); bool was handled
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


def f32_value(d: float) -> float:
    """Return the value a float32 on the wire decodes to (``d``: the float32 widened).

    The shortest decimal that reads back as the same float32: a device's
    ``21.6f`` is 21.600000381469727 as a double and decodes as ``21.6``.
    Values whose exact decimal has at most 6 significant digits (23.5, 0.25)
    are that decimal already; the loop finds them without formatting.
    """
    if -1e4 < d < 1e4 and (d * 4.0) % 1.0 == 0.0:  # quarters below 1e4: <= 6 digits
        return d
    a = d if d >= 0.0 else -d
    t = a
    j = 0
    while t < 1e6 and j < 13:  # t = |d| * 10**j, exact for a float32 while j <= 12
        if t % 1.0 == 0.0:  # d's exact decimal has at most 6 significant digits
            return d
        t *= 10.0
        j += 1
    if d != d:  # noqa: PLR0124 (NaN; a C comparison when compiled)
        return d
    # A normal float32 is precise enough that no decimal of fewer than 6 digits
    # reads back unless its 6-digit rounding does; subnormals are less precise.
    digits = 6 if a >= _F32_MIN_NORMAL else 1
    while digits < 9:  # any float32 reads back from 9 significant digits
        r = float(f"{d:.{digits}g}")
        try:
            if _unpack_f32(_pack_f32(r))[0] == d:
                return r
        except OverflowError:  # rounded up past the float32 range
            pass
        digits += 1
    return float(f"{d:.9g}")


def _truncated() -> ProtocolError:
    return ProtocolError("truncated PSON value")


def decode(data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Decode exactly one PSON value filling ``data`` (trailing bytes are an error)."""
    if type(data) is not bytes:
        data = bytes(data)
    max_depth = min(max_depth, MAX_DEPTH_CAP)
    try:
        value, pos = _dec(data, 0, max_depth)
    except (IndexError, struct.error):
        raise _truncated() from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8 in PSON string: {exc.reason}") from None
    except RecursionError:
        raise ProtocolError("PSON nesting too deep for the interpreter") from None
    if pos != len(data):
        if pos > len(data):
            raise _truncated()
        raise ProtocolError(f"{len(data) - pos} trailing bytes after the PSON value")
    return value


def decode_at(
    buf: bytes | bytearray | memoryview,
    pos: int,
    end: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[Any, int]:
    """Decode one PSON value starting at ``buf[pos]`` and ending by ``end``.

    Returns ``(value, new_pos)``; the value may stop before ``end``.
    """
    if type(buf) is not bytes or end != len(buf):
        if not 0 <= end <= len(buf):
            raise ValueError(f"end {end} outside the buffer")
        buf = bytes(buf[:end])
    if not 0 <= pos <= end:
        raise ValueError(f"position {pos} outside the buffer")
    return decode_body_value(buf, pos, max_depth)


def decode_body_value(buf: bytes, pos: int, max_depth: int) -> tuple[Any, int]:
    """Decode at ``pos``; ``buf`` must be ``bytes`` whose end is the end of the input.

    Internal fast entry for the message codec (no copying); translates every
    failure into :class:`ProtocolError`.
    """
    max_depth = min(max_depth, MAX_DEPTH_CAP)
    try:
        value, pos = _dec(buf, pos, max_depth)
    except (IndexError, struct.error):
        raise _truncated() from None
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8 in PSON string: {exc.reason}") from None
    except RecursionError:
        raise ProtocolError("PSON nesting too deep for the interpreter") from None
    if pos > len(buf):
        raise _truncated()
    return value, pos


def _uvarint64(buf: bytes, pos: int) -> tuple[int, int]:
    """64-bit varint; IndexError on truncation (translated by the caller)."""
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    value = b & 0x7F
    shift = 7
    start = pos
    pos += 1
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            break
        shift += 7
        if shift >= 70:
            raise ProtocolError(f"PSON varint at offset {start} is longer than 10 bytes")
    if value >= _UINT64_LIMIT:
        raise ProtocolError(f"PSON varint at offset {start} exceeds 64 bits")
    return value, pos


_DISCRETE: Final = (False, True, None)


def _depth_error() -> ProtocolError:
    return ProtocolError("PSON nesting exceeds the depth limit")


def _dec(buf: bytes, pos: int, rem: int) -> tuple[Any, int]:
    """Decode one value at ``pos``; ``rem`` = container levels still allowed.

    Reads past the end raise IndexError / struct.error; the public entry points
    translate them (``buf`` always ends where the input ends).
    """
    tag = buf[pos]
    pos += 1
    if tag < 0x1F:
        return tag, pos
    cls = tag >> 5
    n = tag & 0x1F
    if n == 31:
        n, pos = _uvarint64(buf, pos)
    if cls == _CLS_STR:
        e = pos + n
        if e > len(buf):
            raise ProtocolError(f"PSON string of {n} bytes overruns the input")
        return buf[pos:e].decode(), e
    if cls == _CLS_MAP:
        if rem <= 0:
            raise _depth_error()
        return _map(buf, pos, n, rem - 1)
    if cls == _CLS_ARRAY:
        if rem <= 0:
            raise _depth_error()
        return _array(buf, pos, n, rem - 1)
    if cls == _CLS_UINT:
        return n, pos
    if cls == 2:
        if n == 0:
            return f32_value(_unpack_f32_from(buf, pos)[0]), pos + 4
        if n == 1:
            return _unpack_f64_from(buf, pos)[0], pos + 8
        raise ProtocolError(f"invalid PSON float sub-code {n}")
    if cls == 3:
        if n < 3:
            return _DISCRETE[n], pos
        raise ProtocolError(f"invalid PSON discrete sub-code {n}")
    if cls == _CLS_NINT:
        if n > _NEG_LIMIT:
            raise ProtocolError(f"PSON negative integer magnitude {n} exceeds 2**63")
        return -n, pos
    # class 5: bytes
    e = pos + n
    if e > len(buf):
        raise ProtocolError(f"PSON bytes of length {n} overrun the input")
    return buf[pos:e], e


# Tag tables for the container loops below.
# _KLEN[tag]: byte length of an inline-length string (tags 0x80..0x9e), else -1.
_KLEN: Final[tuple[int, ...]] = tuple(t - 0x80 if 0x80 <= t < 0x9F else -1 for t in range(256))
# _VKIND[tag]: which inline fast path decodes a value with this tag.
_VK_UINT = 0  # 0x00..0x1e: the tag is the value
_VK_STR = 1  # 0x80..0x9e: short string
_VK_F32 = 2  # 0x40
_VK_MAP = 3  # 0xc0..0xde: map with inline count
_VK_DISCRETE = 4  # 0x60..0x62
_VK_F64 = 5  # 0x41
_VK_ARRAY = 6  # 0xe0..0xfe
_VK_ESC_UINT = 7  # 0x1f: escaped unsigned integer
_VK_OTHER = 8  # everything else: through _dec


def _vkind(t: int) -> int:
    if t < 0x1F:
        return _VK_UINT
    if 0x80 <= t < 0x9F:
        return _VK_STR
    if t == 0x40:
        return _VK_F32
    if 0xC0 <= t < 0xDF:
        return _VK_MAP
    if 0x60 <= t < 0x63:
        return _VK_DISCRETE
    if t == 0x41:
        return _VK_F64
    if 0xE0 <= t < 0xFF:
        return _VK_ARRAY
    if t == 0x1F:
        return _VK_ESC_UINT
    return _VK_OTHER


_VKIND: Final[tuple[int, ...]] = tuple(_vkind(t) for t in range(256))
_DISCRETE_BY_TAG: Final[tuple[Any, ...]] = (None,) * 0x60 + (False, True, None) + (None,) * 0x9D


def _long_key(buf: bytes, pos: int) -> tuple[int, int]:
    """Start and end of a map key whose tag is not a short string (escaped or invalid)."""
    kt = buf[pos]
    if kt != 0x9F:
        raise ProtocolError(f"PSON map key has tag 0x{kt:02x}, expected a string")
    kn, s = _uvarint64(buf, pos + 1)
    if kn > len(buf) - s:
        raise ProtocolError(f"PSON map key of {kn} bytes overruns the input")
    return s, s + kn


# The two container loops decode the common leaves (small ints, short strings,
# float32/64, booleans/null, escaped ints) and nested containers inline
# instead of going through ``_dec``: a Python call plus a tuple per value is
# most of the cost of decoding. ``rem`` is the number of container levels
# still allowed *below* this container.
#
# Short strings and keys are sliced without a bounds check: ``pos`` only ever
# grows, so a slice that ran past the end either makes the next read raise
# IndexError or leaves ``pos > len(buf)``, which ``decode_body_value`` checks
# once at the end. Counts are checked against the remaining bytes *before*
# the loops, so a claimed length never drives an allocation.


def _map(buf: bytes, pos: int, n: int, rem: int) -> tuple[dict[str, Any], int]:
    blen = len(buf)
    if 2 * n > blen - pos:
        raise ProtocolError(f"PSON map claims {n} entries but only {blen - pos} bytes remain")
    d: dict[str, Any] = {}
    for _ in range(n):
        kn = _KLEN[buf[pos]]
        if kn >= 0:
            s = pos + 1
            pos = s + kn
        else:
            s, pos = _long_key(buf, pos)
        key = buf[s:pos].decode()
        vt = buf[pos]
        k = _VKIND[vt]
        if k == _VK_UINT:
            d[key] = vt
            pos += 1
        elif k == _VK_STR:
            s = pos + 1
            pos = s + vt - 0x80
            d[key] = buf[s:pos].decode()
        elif k == _VK_F32:
            d[key] = f32_value(_unpack_f32_from(buf, pos + 1)[0])
            pos += 5
        elif k == _VK_MAP:
            if rem <= 0:
                raise _depth_error()
            # A map inside a map (DESCRIBE replies, nested samples) is decoded
            # here rather than by a recursive call; its leaves take the same
            # fast paths, anything else goes through _dec.
            m = vt - 0xC0
            pos += 1
            if 2 * m > blen - pos:
                raise ProtocolError(
                    f"PSON map claims {m} entries but only {blen - pos} bytes remain"
                )
            sub: dict[str, Any] = {}
            d[key] = sub
            for _ in range(m):
                kn = _KLEN[buf[pos]]
                if kn >= 0:
                    s = pos + 1
                    pos = s + kn
                else:
                    s, pos = _long_key(buf, pos)
                skey = buf[s:pos].decode()
                vt = buf[pos]
                k = _VKIND[vt]
                if k == _VK_UINT:
                    sub[skey] = vt
                    pos += 1
                elif k == _VK_STR:
                    s = pos + 1
                    pos = s + vt - 0x80
                    sub[skey] = buf[s:pos].decode()
                elif k == _VK_F32:
                    sub[skey] = f32_value(_unpack_f32_from(buf, pos + 1)[0])
                    pos += 5
                elif k == _VK_DISCRETE:
                    sub[skey] = _DISCRETE_BY_TAG[vt]
                    pos += 1
                elif k == _VK_F64:
                    sub[skey] = _unpack_f64_from(buf, pos + 1)[0]
                    pos += 9
                elif k == _VK_ESC_UINT:
                    sub[skey], pos = _uvarint64(buf, pos + 1)
                else:
                    sub[skey], pos = _dec(buf, pos, rem - 1)
        elif k == _VK_DISCRETE:
            d[key] = _DISCRETE_BY_TAG[vt]
            pos += 1
        elif k == _VK_F64:
            d[key] = _unpack_f64_from(buf, pos + 1)[0]
            pos += 9
        elif k == _VK_ARRAY:
            if rem <= 0:
                raise _depth_error()
            d[key], pos = _array(buf, pos + 1, vt - 0xE0, rem - 1)
        elif k == _VK_ESC_UINT:
            d[key], pos = _uvarint64(buf, pos + 1)
        else:
            d[key], pos = _dec(buf, pos, rem)
    return d, pos


def _array(buf: bytes, pos: int, n: int, rem: int) -> tuple[list[Any], int]:
    blen = len(buf)
    if n > blen - pos:
        raise ProtocolError(f"PSON array claims {n} elements but only {blen - pos} bytes remain")
    a: list[Any] = []
    append = a.append
    for _ in range(n):
        vt = buf[pos]
        k = _VKIND[vt]
        if k == _VK_UINT:
            append(vt)
            pos += 1
        elif k == _VK_F32:
            append(f32_value(_unpack_f32_from(buf, pos + 1)[0]))
            pos += 5
        elif k == _VK_STR:
            s = pos + 1
            pos = s + vt - 0x80
            append(buf[s:pos].decode())
        elif k == _VK_F64:
            append(_unpack_f64_from(buf, pos + 1)[0])
            pos += 9
        elif k == _VK_MAP:
            if rem <= 0:
                raise _depth_error()
            m, pos = _map(buf, pos + 1, vt - 0xC0, rem - 1)
            append(m)
        elif k == _VK_DISCRETE:
            append(_DISCRETE_BY_TAG[vt])
            pos += 1
        elif k == _VK_ARRAY:
            if rem <= 0:
                raise _depth_error()
            sub, pos = _array(buf, pos + 1, vt - 0xE0, rem - 1)
            append(sub)
        else:
            x, pos = _dec(buf, pos, rem)
            append(x)
    return a, pos


# The compiled copy of this module, when installed and not disabled (see speedups).
speedups.install("pson", globals(), ("encode", "encode_into", "decode", "decode_at"))
