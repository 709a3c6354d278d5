# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""PSON straight to JSON, and PSON equality, in C, for the server's sample path.

Compiled only (no pure twin: without this module the server takes the Python path,
which is the reference). Both functions either give exactly what the Python path
gives or say they cannot:

* :func:`transcode` returns the compact JSON that ``dumps_bytes(pson.decode(b))``
  returns, byte for byte, or None. None for anything the decoder would reject (so the
  Python path raises the same ``ProtocolError``) and anything orjson would write in
  its own way: NaN, infinities, floats written with an exponent, strings other than
  printable ASCII without quotes or backslashes, bytes, duplicate map keys, nesting
  over ``MAX_DEPTH`` or the decoder's limit, output over ``MAX_OUTPUT`` bytes.
* :func:`same` compares two PSON values as the stream hub's ``_same`` compares the
  decoded ones (same top-level type, then Python's ``==``: ``1 == 1.0 == True`` inside
  containers, maps in any key order): 1 equal, 0 not, -1 cannot tell (maps whose
  keys come in different orders, NaN, integers beyond 2**53 against floats, anything
  :func:`transcode` refuses).

The server's compiled sample path (``iotmp/server/_sample_path_c.pyx``) uses the C
entry points declared in ``_pson_json_c.pxd``; see docs/codec.md.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t, uint64_t
from libc.math cimport signbit
from libc.string cimport memcmp, memcpy


cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int *ptype)
    void PyMem_Free(void *p)


# The compiled codec's own float32 rule, called in C (its .pxd is pson.pxd, copied as
# _pson_c.pxd by hatch_build.py): one definition, and no Python call per float.
from iotmp.protocol._pson_c cimport f32_value as _f32_value

cdef enum:
    _MAX_DEPTH = 16
    _MAX_KEYS = 64  # duplicate keys are checked pairwise

MAX_OUTPUT = _OUT_SIZE
MAX_DEPTH = _MAX_DEPTH
MAX_MAP_KEYS = _MAX_KEYS


cdef bint _put(Out* o, const char* s, Py_ssize_t k) noexcept:
    if o.n + k > _OUT_SIZE:
        return False
    memcpy(o.buf + o.n, s, k)
    o.n += k
    return True


cdef inline bint _put_u64(Out* o, uint64_t v) noexcept:
    cdef char tmp[24]
    cdef int i = 24
    if v == 0:
        return _put(o, b"0", 1)
    while v:
        i -= 1
        tmp[i] = <char>(48 + v % 10)
        v //= 10
    return _put(o, tmp + i, 24 - i)


cdef double _POW10[5]
_POW10[:] = [1.0, 10.0, 100.0, 1000.0, 10000.0]


cdef bint _put_decimal(Out* o, double d) noexcept:
    """``repr(d)`` for a value with at most 4 decimals, 1e-3 <= |d| < 1e9, or 0; False
    (nothing written) otherwise.

    The first ``k`` for which ``m / 10**k == d`` (``m``: ``d * 10**k`` rounded) gives
    the shortest decimal that reads back as ``d``, which is what ``repr`` writes: the
    division is correctly rounded and no other ``k``-decimal lies within ``d``'s
    rounding interval at these magnitudes. Sensor values (21.6, 1013.25) come this way
    instead of through the general ``PyOS_double_to_string``.
    """
    cdef double a = -d if d < 0 else d
    cdef double scaled
    cdef int64_t m
    cdef int k, i = 24, digits = 0
    cdef char tmp[24]
    if d == 0.0:
        return _put(o, b"-0.0", 4) if signbit(d) else _put(o, b"0.0", 3)
    if not (1e-3 <= a < 1e9):
        return False
    for k in range(5):
        scaled = a * _POW10[k]
        m = <int64_t>(scaled + 0.5)
        if <double>m / _POW10[k] == a:
            break
    else:
        return False
    if k == 0:
        i -= 2
        tmp[i] = b"."
        tmp[i + 1] = b"0"
    while m or digits <= k:
        if digits == k and k:
            i -= 1
            tmp[i] = b"."
        i -= 1
        tmp[i] = <char>(48 + m % 10)
        m //= 10
        digits += 1
    if d < 0:
        i -= 1
        tmp[i] = b"-"
    return _put(o, tmp + i, 24 - i)


cdef bint _put_double(Out* o, double d) noexcept:
    """``repr(d)``: orjson writes the same digits when no exponent is needed."""
    cdef char* s
    cdef Py_ssize_t k = 0
    cdef bint ok = True
    if _put_decimal(o, d):
        return True
    s = PyOS_double_to_string(d, b'r', 0, 0, NULL)
    if s == NULL:
        return False
    while s[k]:
        if s[k] == b'e' or s[k] == b'n' or s[k] == b'i':  # exponent, nan, inf
            ok = False
        k += 1
    ok = ok and _put(o, s, k)
    PyMem_Free(s)
    return ok


cdef inline Py_ssize_t _varint(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                               uint64_t* out) noexcept:
    """A PSON varint of at most 9 bytes (63 bits); -1 otherwise (longer ones go to Python)."""
    cdef uint64_t v = 0
    cdef int shift = 0
    cdef unsigned char b
    while pos < end and shift < 63:
        b = p[pos]
        pos += 1
        v |= (<uint64_t>(b & 0x7F)) << shift
        if b < 0x80:
            out[0] = v
            return pos
        shift += 7
    return -1


cdef inline bint _plain_ascii(const unsigned char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    cdef unsigned char c
    for i in range(n):
        c = p[i]
        if c < 0x20 or c >= 0x7F or c == 34 or c == 92:  # control, non-ASCII, " \
            return False
    return True


# A value's kind, for same(): what Python type it decodes to.
cdef enum:
    K_INT = 1
    K_FLOAT = 2
    K_BOOL = 3
    K_NONE = 4
    K_STR = 5
    K_MAP = 6
    K_ARRAY = 7


cdef struct Item:
    int kind
    bint negative      # K_INT: the value is -magnitude
    uint64_t magnitude  # K_INT; K_BOOL: 0 or 1; K_STR / K_MAP / K_ARRAY: length or count
    double real        # K_FLOAT
    Py_ssize_t start   # K_STR: first byte; K_MAP / K_ARRAY: first entry
    Py_ssize_t end     # the position after the whole value


cdef Py_ssize_t _head(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                      Item* it, bint checked=True) noexcept:
    """Read one value's tag (and scalar) at ``pos``; -1 for what is left to Python.

    ``checked`` false: the bytes transcoded before, so strings need no scan.
    """
    cdef unsigned char tag
    cdef int cls
    cdef uint64_t n
    cdef float f
    if pos >= end:
        return -1
    tag = p[pos]
    pos += 1
    cls = tag >> 5
    n = tag & 0x1F
    it.negative = False
    if tag == 0x40:
        if pos + 4 > end:
            return -1
        memcpy(&f, p + pos, 4)
        it.kind = K_FLOAT
        it.real = _f32_value(f)
        it.end = pos + 4
        return it.end
    if tag == 0x41:
        if pos + 8 > end:
            return -1
        memcpy(&it.real, p + pos, 8)
        it.kind = K_FLOAT
        it.end = pos + 8
        return it.end
    if 0x60 <= tag <= 0x62:
        it.kind = K_NONE if tag == 0x62 else K_BOOL
        it.magnitude = tag - 0x60
        it.end = pos
        return pos
    if cls == 2 or cls == 3 or cls == 5:
        return -1  # other float and discrete codes (errors), bytes
    if n == 31:
        pos = _varint(p, pos, end, &n)
        if pos < 0:
            return -1
    it.magnitude = n
    it.start = pos
    if cls == 0:
        it.kind = K_INT
        it.end = pos
    elif cls == 1:
        if n == 0:
            return -1  # "-0": leave the oddity to the decoder
        it.kind = K_INT
        it.negative = True
        it.end = pos
    elif cls == 4:
        if <uint64_t>(end - pos) < n or (checked and not _plain_ascii(p + pos, <Py_ssize_t>n)):
            return -1
        it.kind = K_STR
        it.end = pos + <Py_ssize_t>n
    elif cls == 6:
        if <uint64_t>(end - pos) < 2 * n or n > _MAX_KEYS:
            return -1
        it.kind = K_MAP
        it.end = -1  # known once the entries are read
    else:
        if <uint64_t>(end - pos) < n:
            return -1
        it.kind = K_ARRAY
        it.end = -1
    return it.end if it.end >= 0 else pos


cdef Py_ssize_t _key(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                     Py_ssize_t* start, bint checked=True) noexcept:
    """A map key (a short plain ASCII string): its end, and its first byte in ``start``."""
    cdef unsigned char tag
    cdef Py_ssize_t n
    if pos >= end:
        return -1
    tag = p[pos]
    if tag < 0x80 or tag >= 0x9F:
        return -1  # escaped lengths and non-strings go to Python
    n = tag - 0x80
    pos += 1
    if end - pos < n or (checked and not _plain_ascii(p + pos, n)):
        return -1
    start[0] = pos
    return pos + n


cdef bint _duplicate(const unsigned char* p, Py_ssize_t* starts, Py_ssize_t* ends,
                     Py_ssize_t count) noexcept:
    """Whether the last of ``count`` keys equals an earlier one."""
    cdef Py_ssize_t i, s = starts[count - 1], n = ends[count - 1] - starts[count - 1]
    for i in range(count - 1):
        if ends[i] - starts[i] == n and memcmp(p + starts[i], p + s, n) == 0:
            return True
    return False


cdef Py_ssize_t _json(Out* o, const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                      int depth) noexcept:
    """Write the value at ``pos`` as JSON; its end, or -1 (then ``o`` is garbage)."""
    cdef Item it
    cdef Py_ssize_t i, count
    cdef Py_ssize_t starts[_MAX_KEYS]
    cdef Py_ssize_t ends[_MAX_KEYS]
    pos = _head(p, pos, end, &it)
    if pos < 0:
        return -1
    if it.kind == K_INT:
        if it.negative:
            if it.magnitude > (<uint64_t>1 << 63) or not _put(o, b"-", 1):
                return -1
        return pos if _put_u64(o, it.magnitude) else -1
    if it.kind == K_FLOAT:
        return pos if _put_double(o, it.real) else -1
    if it.kind == K_BOOL:
        return pos if (_put(o, b"true", 4) if it.magnitude else _put(o, b"false", 5)) else -1
    if it.kind == K_NONE:
        return pos if _put(o, b"null", 4) else -1
    if it.kind == K_STR:
        if not (_put(o, b'"', 1) and _put(o, <const char*>p + it.start, <Py_ssize_t>it.magnitude)
                and _put(o, b'"', 1)):
            return -1
        return pos
    if depth <= 0:
        return -1
    count = <Py_ssize_t>it.magnitude
    if it.kind == K_MAP:
        if not _put(o, b"{", 1):
            return -1
        for i in range(count):
            if i and not _put(o, b",", 1):
                return -1
            pos = _key(p, pos, end, &starts[i])
            if pos < 0:
                return -1
            ends[i] = pos
            if i and _duplicate(p, starts, ends, i + 1):
                return -1  # the dict keeps one entry: the decoder's business
            if not (_put(o, b'"', 1) and _put(o, <const char*>p + starts[i], pos - starts[i])
                    and _put(o, b'":', 2)):
                return -1
            pos = _json(o, p, pos, end, depth - 1)
            if pos < 0:
                return -1
        return pos if _put(o, b"}", 1) else -1
    if not _put(o, b"[", 1):
        return -1
    for i in range(count):
        if i and not _put(o, b",", 1):
            return -1
        pos = _json(o, p, pos, end, depth - 1)
        if pos < 0:
            return -1
    return pos if _put(o, b"]", 1) else -1


cdef Py_ssize_t transcode_into(Out* o, const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                               int max_depth) noexcept:
    """Append the JSON of the one value filling ``p[pos:end]`` to ``o``; 0, or -1."""
    if max_depth > _MAX_DEPTH:
        max_depth = _MAX_DEPTH
    if _json(o, p, pos, end, max_depth) != end:
        return -1
    return 0


def transcode(bytes payload, int max_depth=_MAX_DEPTH):
    """The JSON of the PSON value ``payload`` (the decoder's output through
    ``dumps_bytes``), or None when the Python path has to do it."""
    cdef Out o
    o.n = 0
    if transcode_into(&o, <const unsigned char*>PyBytes_AS_STRING(payload), 0,
                      PyBytes_GET_SIZE(payload), max_depth) < 0:
        return None
    return PyBytes_FromStringAndSize(o.buf, o.n)


# ------------------------------------------------------------------ equality

cdef double _EXACT = 9007199254740992.0  # 2**53: integers up to it are exact doubles


cdef int _number_eq(Item* a, Item* b) noexcept:
    """Python's == between int, bool and float items: 1, 0, or -1."""
    cdef double x, y
    if a.kind != K_FLOAT and b.kind != K_FLOAT:  # int / bool against int / bool
        if a.magnitude == 0 and b.magnitude == 0:
            return 1
        return 1 if (a.negative == b.negative and a.magnitude == b.magnitude) else 0
    if a.kind == K_FLOAT and b.kind == K_FLOAT:
        if a.real != a.real or b.real != b.real:
            return -1  # NaN: equal only to itself as an object
        return 1 if a.real == b.real else 0
    if a.kind == K_FLOAT:
        a, b = b, a  # a: the integer, b: the float
    if b.real != b.real:
        return -1
    if a.magnitude > <uint64_t>_EXACT:
        return -1
    x = <double>a.magnitude
    if a.negative:
        x = -x
    return 1 if x == b.real else 0


cdef Py_ssize_t _skip(const unsigned char* p, Py_ssize_t pos, Py_ssize_t end, int depth) noexcept:
    """The end of the value at ``pos`` (validated as :func:`_json` would), or -1."""
    cdef Item it
    cdef Py_ssize_t i, start
    pos = _head(p, pos, end, &it)
    if pos < 0:
        return -1
    if it.kind != K_MAP and it.kind != K_ARRAY:
        return pos
    if depth <= 0:
        return -1
    for i in range(<Py_ssize_t>it.magnitude):
        if it.kind == K_MAP:
            pos = _key(p, pos, end, &start)
            if pos < 0:
                return -1
        pos = _skip(p, pos, end, depth - 1)
        if pos < 0:
            return -1
    return pos


cdef int _eq(const unsigned char* a, Py_ssize_t* pa, Py_ssize_t ea,
             const unsigned char* b, Py_ssize_t* pb, Py_ssize_t eb, int depth) noexcept:
    """Python's == of the values at ``*pa`` and ``*pb``; advances both past them."""
    cdef Item x, y
    cdef Py_ssize_t i, ka, kb, na, nb
    cdef Py_ssize_t starts[_MAX_KEYS]
    cdef Py_ssize_t ends[_MAX_KEYS]
    cdef int r, result = 1
    na = _head(a, pa[0], ea, &x)
    nb = _head(b, pb[0], eb, &y)
    if na < 0 or nb < 0:
        return -1
    if x.kind <= K_BOOL and y.kind <= K_BOOL:
        pa[0], pb[0] = na, nb
        return _number_eq(&x, &y)
    if x.kind != y.kind:
        # Different kinds are unequal; the positions must still move past both.
        pa[0] = _skip(a, pa[0], ea, depth)
        pb[0] = _skip(b, pb[0], eb, depth)
        return -1 if pa[0] < 0 or pb[0] < 0 else 0
    if x.kind == K_NONE:
        pa[0], pb[0] = na, nb
        return 1
    if x.kind == K_STR:
        pa[0], pb[0] = na, nb
        return 1 if (x.magnitude == y.magnitude and
                     memcmp(a + x.start, b + y.start, <size_t>x.magnitude) == 0) else 0
    if depth <= 0:
        return -1
    if x.magnitude != y.magnitude:
        pa[0] = _skip(a, pa[0], ea, depth)
        pb[0] = _skip(b, pb[0], eb, depth)
        return -1 if pa[0] < 0 or pb[0] < 0 else 0
    for i in range(<Py_ssize_t>x.magnitude):
        if x.kind == K_MAP:
            na = _key(a, na, ea, &ka)
            nb = _key(b, nb, eb, &kb)
            if na < 0 or nb < 0:
                return -1
            if na - ka != nb - kb or memcmp(a + ka, b + kb, <size_t>(na - ka)) != 0:
                return -1  # keys in another order (or other keys): left to Python
            starts[i], ends[i] = ka, na
            if i and _duplicate(a, starts, ends, i + 1):
                return -1  # the dict keeps one entry: left to Python
        r = _eq(a, &na, ea, b, &nb, eb, depth - 1)
        if r < 0:
            return -1
        if r == 0:
            result = 0  # keep going: the rest must still be valid
    pa[0], pb[0] = na, nb
    return result


def same(bytes new, bytes last, int max_depth=_MAX_DEPTH):
    """``_same(decode(new), decode(last))`` of the stream hub: 1, 0, or -1 (cannot tell)."""
    return same_at(<const unsigned char*>PyBytes_AS_STRING(new), PyBytes_GET_SIZE(new),
                   <const unsigned char*>PyBytes_AS_STRING(last), PyBytes_GET_SIZE(last),
                   max_depth)


cdef int same_at(const unsigned char* a, Py_ssize_t ea, const unsigned char* b, Py_ssize_t eb,
                 int max_depth) noexcept:
    cdef Py_ssize_t pa = 0, pb = 0
    cdef Item x, y
    cdef int r
    if max_depth > _MAX_DEPTH:
        max_depth = _MAX_DEPTH
    if _head(a, 0, ea, &x) < 0 or _head(b, 0, eb, &y) < 0:
        return -1
    r = _eq(a, &pa, ea, b, &pb, eb, max_depth)
    if r < 0 or pa != ea or pb != eb:
        return -1
    if x.kind != y.kind:  # type(a) is type(b): int, float, bool differ at the top
        return 0
    return r


cdef int _eq_valid(const unsigned char* a, Py_ssize_t* pa, Py_ssize_t ea,
                   const unsigned char* b, Py_ssize_t* pb, Py_ssize_t eb) noexcept:
    """:func:`_eq` for two values that transcoded: no scans, and the first difference
    decides (no duplicate keys, no NaN, every byte already read once)."""
    cdef Item x, y
    cdef Py_ssize_t i, ka, kb, na, nb
    cdef int r
    na = _head(a, pa[0], ea, &x, False)
    nb = _head(b, pb[0], eb, &y, False)
    if na < 0 or nb < 0:
        return -1
    pa[0], pb[0] = na, nb
    if x.kind <= K_BOOL and y.kind <= K_BOOL:
        return _number_eq(&x, &y)
    if x.kind != y.kind:
        return 0
    if x.kind == K_NONE:
        return 1
    if x.kind == K_STR:
        return 1 if (x.magnitude == y.magnitude and
                     memcmp(a + x.start, b + y.start, <size_t>x.magnitude) == 0) else 0
    if x.magnitude != y.magnitude:
        return 0
    for i in range(<Py_ssize_t>x.magnitude):
        if x.kind == K_MAP:
            na = _key(a, pa[0], ea, &ka, False)
            nb = _key(b, pb[0], eb, &kb, False)
            if na < 0 or nb < 0:
                return -1
            if na - ka != nb - kb or memcmp(a + ka, b + kb, <size_t>(na - ka)) != 0:
                return -1  # keys in another order (or other keys): left to Python
            pa[0], pb[0] = na, nb
        r = _eq_valid(a, pa, ea, b, pb, eb)
        if r != 1:
            return r  # one entry differs (the keys so far pair up): the containers do
    return 1


cdef int same_valid(const unsigned char* a, Py_ssize_t ea, const unsigned char* b,
                    Py_ssize_t eb) noexcept:
    """:func:`same_at` for two values that each transcoded (:func:`transcode_into`
    succeeded on them): 1 or 0 as the hub's ``_same``, or -1 (cannot tell); faster, and
    it may answer 0 where ``same_at`` says -1."""
    cdef Py_ssize_t pa = 0, pb = 0
    cdef Item x, y
    cdef int r
    if _head(a, 0, ea, &x, False) < 0 or _head(b, 0, eb, &y, False) < 0:
        return -1
    r = _eq_valid(a, &pa, ea, b, &pb, eb)
    if r < 0:
        return -1
    if x.kind != y.kind:  # type(a) is type(b): int, float, bool differ at the top
        return 0
    return r


def same_transcoded(bytes new, bytes last):
    """:func:`same` for two payloads :func:`transcode` took (else ValueError)."""
    if transcode(new) is None or transcode(last) is None:
        raise ValueError("both payloads must transcode")
    return same_valid(<const unsigned char*>PyBytes_AS_STRING(new), PyBytes_GET_SIZE(new),
                      <const unsigned char*>PyBytes_AS_STRING(last), PyBytes_GET_SIZE(last))
