# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The compiled sample path: a device's STREAM_DATA to its one WebSocket subscriber.

Compiled only. :class:`SamplePath` is a session's ``fast_path``: the session offers it
each received chunk, and it either does exactly what the Python path would do with it
(decode, receive budget, stream hub rules, frame, direct write) and returns True, or
touches nothing and returns False (the Python path then does it). It takes a chunk
only when all of this holds; everything else is the Python path's:

* the chunk is one whole STREAM_DATA with a one-byte type and size, the stream id as
  a varint and the payload as PSON, and the decoder holds nothing;
* the stream has a :class:`Route`, installed by ``streams.ResourceStream`` for the
  one interval-0 subscriber of a WebSocket with the direct writer, and dropped by it
  before the stream's handle, interval or subscribers change; per sample, the session
  still has that stream handle and the subscriber holds nothing and is not waiting
  for its echo;
* the payload transcodes (``_pson_json_c``), and the repeat rule can be decided (the
  last value delivered is one this path delivered, compared with ``same_valid``, or a
  Python value compared with the hub's ``_same`` after one decode);
* the receive budget has a token, and the socket takes a direct write now.

Then the subscription's bookkeeping is the Python path's (``last_delivery``,
``deliveries``, ``last_value`` as a :class:`~iotmp.server.streams.RawValue` decoded
on first use) and the stream handle's ``last_message`` decodes the kept chunk on first
use.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t
from libc.string cimport memcmp

from iotmp.protocol._pson_json_c cimport Out, _put, same_valid, transcode_into
from iotmp.protocol._ratelimit_c cimport TokenBucket

from iotmp.protocol.pson import decode as _decode

# The stream hub's rules, given by iotmp.server.streams (configure()), which imports
# this module: no import cycle, and one definition of each.
cdef double _WINDOW = 0.0
cdef Py_ssize_t _WRITE_LIMIT = 0
cdef object _Nothing = None
cdef object _same_values = None


def configure(nothing, same, double window, Py_ssize_t write_limit):
    """Bind the hub's ``_NOTHING``, ``_same``, ``DUPLICATE_WINDOW`` and the direct-write
    limit (called once by ``streams``)."""
    global _Nothing, _same_values, _WINDOW, _WRITE_LIMIT
    _Nothing, _same_values, _WINDOW, _WRITE_LIMIT = nothing, same, window, write_limit


cdef class RawValue:
    """A value this path delivered, kept as its PSON bytes (the end of the received
    chunk, from ``start``): ``Subscription.offer`` decodes it when the Python path needs
    the value. Only this path makes them, so the Python path has no such type."""

    cdef readonly bytes chunk
    cdef readonly Py_ssize_t start
    cdef readonly int max_depth

    @property
    def raw(self):
        """The PSON bytes of the value."""
        return self.chunk[self.start:]

    def decode(self):
        """Return the value (the bytes were valid PSON when they were delivered)."""
        return _decode(self.chunk[self.start:], max_depth=self.max_depth)


cdef class Route:
    """Where one device stream's samples go on the compiled path (see the module).

    The stream's side of the conditions (this handle, interval 0, ``sub`` the only
    subscriber) holds for the route's life: ``streams`` drops the route before any
    of them changes. The rest is checked per sample.
    """

    cdef public object handle, sub, outbox, ws, transport, clock, budget
    cdef public bytes prefix
    cdef public int max_depth
    cdef public Py_ssize_t max_size
    cdef public long taken

    def __init__(self, handle, sub, outbox, ws, transport, clock, budget,
                 bytes prefix, int max_depth, Py_ssize_t max_size):
        self.handle = handle
        self.sub = sub
        self.outbox = outbox
        self.ws = ws
        self.transport = transport
        self.clock = clock
        self.budget = budget
        self.prefix = prefix
        self.max_depth = max_depth
        self.max_size = max_size
        self.taken = 0


cdef class SamplePath:
    """A session's compiled path for the samples of its routed streams."""

    cdef public dict routes
    cdef public object session
    cdef Out out

    def __init__(self, session):
        self.session = session
        self.routes = {}

    def __call__(self, object data):
        """Take ``data`` (True) or leave it, untouched, to the Python path (False)."""
        return self.take(data)

    def install_front(self, transport):
        """Put a :class:`Front` before ``transport`` (the session's ``ProtocolTransport``)
        as its connection's protocol, where that is the plain setup; True if installed."""
        inner = getattr(transport, "_transport", None)
        if (inner is None or not hasattr(inner, "set_protocol")
                or inner.get_protocol() is not transport
                or getattr(transport, "_receiver", None) is not self.session):
            return False
        inner.set_protocol(Front(transport, self.session, self))
        return True

    cdef bint take(self, object data) except -1:
        cdef const unsigned char* p
        cdef Py_ssize_t end, pos, start
        cdef uint64_t sid = 0
        cdef unsigned char b
        cdef int shift = 0, verdict
        cdef Route route
        cdef RawValue lastv, value
        cdef const unsigned char* lp
        cdef Out* o = &self.out
        cdef object sub, last, transport, outbox
        cdef double now
        cdef Py_ssize_t size
        if type(data) is not bytes:
            return False
        p = <const unsigned char*>PyBytes_AS_STRING(data)
        end = PyBytes_GET_SIZE(data)
        if end < 4 or p[0] != 0x0A or p[1] >= 0x80 or p[1] + 2 != end or p[2] != 0x08:
            return False
        pos = 3
        while True:  # the stream id: a varint of at most 5 bytes (32 bits)
            if pos >= end or shift > 28:
                return False
            b = p[pos]
            pos += 1
            sid |= (<uint64_t>(b & 0x7F)) << shift
            if b < 0x80:
                break
            shift += 7
        if sid >= (<uint64_t>1 << 32) or pos >= end or p[pos] != 0x1A:
            return False
        start = pos + 1
        obj = self.routes.get(sid)
        if obj is None:
            return False
        route = <Route>obj
        if end - 2 > route.max_size:
            return False
        session = self.session
        if session._streams.get(sid) is not route.handle or session._decoder.buffered:
            return False
        sub = route.sub
        if (sub.pending_first or sub.interval_ms != 0 or sub._held is not _Nothing
                or sub._held_timer is not None):
            return False
        outbox = route.outbox
        transport = route.transport
        if (outbox.overflowed or outbox._frames or outbox._sending or route.ws.closed
                or transport.is_closing() or transport.get_write_buffer_size() > _WRITE_LIMIT):
            return False
        # The frame: 4 bytes kept for the WebSocket header, then the JSON text.
        o.n = 4
        if not _put(o, PyBytes_AS_STRING(route.prefix), PyBytes_GET_SIZE(route.prefix)):
            return False
        if transcode_into(o, p, start, end, route.max_depth) < 0 or not _put(o, b"}", 1):
            return False
        last = sub.last_value
        if type(last) is RawValue:
            lastv = <RawValue>last
            lp = <const unsigned char*>PyBytes_AS_STRING(lastv.chunk) + lastv.start
            size = PyBytes_GET_SIZE(lastv.chunk) - lastv.start
            if size == end - start and memcmp(lp, p + start, size) == 0:
                verdict = 1  # the same bytes: the same value (transcode refused NaN)
            else:
                verdict = same_valid(p + start, end - start, lp, size)
                if verdict < 0:
                    return False
        elif last is _Nothing:
            verdict = 0
        else:  # delivered by the Python path: one decode, then this path's own values
            payload = PyBytes_FromStringAndSize(<const char*>p + start, end - start)
            verdict = 1 if _same_values(_decode(payload, max_depth=route.max_depth), last) else 0
        budget = route.budget
        if budget is not None:
            if type(budget) is TokenBucket:
                if not (<TokenBucket>budget).take(1):
                    return False  # the Python path closes the session, as it would have
            elif not budget.take(1):
                return False
        # From here on the sample is this path's: do what the Python path does.
        handle = route.handle
        handle._last_message = None
        handle._last_frame = data
        now = route.clock()
        if verdict == 1 and sub.last_delivery is not None and now - sub.last_delivery < _WINDOW:
            return True  # a repeat: dropped
        size = o.n - 4
        if size < 126:
            o.buf[2] = <char>0x81
            o.buf[3] = <char>size
            frame = PyBytes_FromStringAndSize(o.buf + 2, o.n - 2)
        elif size < 65536:
            o.buf[0] = <char>0x81
            o.buf[1] = <char>126
            o.buf[2] = <char>((size >> 8) & 0xFF)
            o.buf[3] = <char>(size & 0xFF)
            frame = PyBytes_FromStringAndSize(o.buf, o.n)
        else:
            return False  # (cannot happen: the buffer is smaller)
        value = RawValue.__new__(RawValue)
        value.chunk = data
        value.start = start
        value.max_depth = route.max_depth
        sub.last_delivery = now
        sub.last_value = value
        sub.deliveries += 1
        route.taken += 1
        transport.write(frame)
        return True


cdef Py_ssize_t _FEED_SLICE = 4096
cdef object _SESSION_LOG = None


def configure_session(Py_ssize_t feed_slice, logger):
    """Bind the session's chunk limit for handling in the callback, and its logger."""
    global _FEED_SLICE, _SESSION_LOG
    _FEED_SLICE, _SESSION_LOG = feed_slice, logger


cdef class Front:
    """A device connection's asyncio protocol once its session has a sample path.

    It hands a chunk to the path when the transport and the session would have (the
    transport open and pushing to the session, which is open, has no reader task,
    no job running or queued, and the chunk is small enough to handle in the
    callback), doing their bookkeeping; everything else, and every other callback,
    goes to the session's ``ProtocolTransport`` as before. Two Python calls fewer
    per sample.
    """

    cdef object inner, session, inner_data_received
    cdef SamplePath path

    def __init__(self, inner, session, SamplePath path):
        self.inner = inner
        self.session = session
        self.path = path
        self.inner_data_received = inner.data_received

    def data_received(self, object data):
        inner = self.inner
        session = self.session
        if (type(data) is bytes and PyBytes_GET_SIZE(data) <= _FEED_SLICE
                and not inner._closed and inner._receiver is session
                and session.close_reason is None and session._reader is None
                and not session._worker_busy):
            work = session._work
            if work is None or work.empty():
                try:
                    taken = self.path.take(data)
                except Exception:
                    _SESSION_LOG.exception("%s: reader failed", session.name)
                    inner.rx_bytes += PyBytes_GET_SIZE(data)
                    session._last_rx = session._loop.time()
                    session._request_close("internal error")
                    return
                if taken:
                    inner.rx_bytes += PyBytes_GET_SIZE(data)
                    session._last_rx = session._loop.time()
                    return
        self.inner_data_received(data)

    def eof_received(self):
        return self.inner.eof_received()

    def connection_lost(self, exc):
        self.inner.connection_lost(exc)

    def pause_writing(self):
        self.inner.pause_writing()

    def resume_writing(self):
        self.inner.resume_writing()

    def connection_made(self, transport):
        self.inner.connection_made(transport)
