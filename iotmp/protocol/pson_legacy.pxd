# Cython declarations for compiling pson_legacy.py as iotmp.protocol._pson_legacy_c
# (see hatch_build.py). Only types: the logic is pson_legacy.py's.
cimport cython

cdef object _F32, _F64, _pack_f32, _unpack_f32, _pack_f64, _unpack_f32_from, _unpack_f64_from
cdef int T_NULL, T_VARINT, T_SVARINT, T_FLOAT, T_DOUBLE, T_TRUE, T_FALSE, T_ZERO, T_ONE
cdef int T_STRING, T_EMPTY_STRING, T_BYTES, T_EMPTY_BYTES, T_OBJECT, T_ARRAY, T_EMPTY
cdef tuple _SMALL_VARINT

@cython.locals(b=int, shift=object, start=Py_ssize_t, value=object)
cdef tuple _uvarint64(bytes buf, Py_ssize_t pos, Py_ssize_t end)
@cython.locals(tag=int, cend=Py_ssize_t, kn=Py_ssize_t, d=dict, a=list)
cdef tuple _dec(bytes buf, Py_ssize_t pos, Py_ssize_t end, Py_ssize_t rem)
cpdef void _enc(object v, bytearray out, Py_ssize_t depth) except *
