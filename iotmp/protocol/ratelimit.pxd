# Cython declarations for compiling ratelimit.py as iotmp.protocol._ratelimit_c (see
# hatch_build.py). Only types: the logic is ratelimit.py's. The token bucket is a C
# type there, so that the server's compiled sample path takes a token with a C call.

cdef class TokenBucket:
    cdef object _clock
    cdef double _stamp, _tokens
    cdef public double burst, rate
    cpdef bint take(self, long count=*) except -1
