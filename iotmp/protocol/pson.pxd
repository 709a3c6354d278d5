# Cython declarations for compiling pson.py as iotmp.protocol._pson_c (see hatch_build.py).
# Only types: the logic is pson.py's. Values that a peer controls and that may
# exceed 63 bits (lengths, counts, varints) stay Python ints.
cimport cython

cdef object _F32, _F64, _pack_f32, _unpack_f32, _pack_f64, _unpack_f32_from, _unpack_f64_from
cdef int _CLS_UINT, _CLS_NINT, _CLS_STR, _CLS_BYTES, _CLS_MAP, _CLS_ARRAY
cdef int _VK_UINT, _VK_STR, _VK_F32, _VK_MAP, _VK_DISCRETE, _VK_F64, _VK_ARRAY, _VK_ESC_UINT, _VK_OTHER
cdef Py_ssize_t _TABLE_SIZE, _KEY_CACHE_MAX, _KEY_CACHE_MAX_LEN
cdef double _F32_MIN_NORMAL, _F32_MAX, _INF, _INT64_MIN_F, _INT64_END_F
cdef bint _COMPILED_LE
cdef bytes _TRUE, _FALSE, _NULL, _TAG_F32, _TAG_F64
cdef tuple _UINT, _NINT, _STR_HEAD, _BYTES_HEAD, _MAP_HEAD, _ARRAY_HEAD, _DISCRETE, _KLEN, _VKIND, _DISCRETE_BY_TAG
cdef dict _key_cache

cdef bytes _int_bytes(object v)
@cython.locals(f=float)
cdef bytes _float_bytes(double d)
cdef bytes _str_bytes(str s)
cdef bytes _key_bytes(object k)
cpdef void _enc(object v, bytearray out, Py_ssize_t depth) except *
@cython.locals(n=Py_ssize_t, kc=dict, tx=type, ty=type)
cpdef void _enc_map(dict v, bytearray out, Py_ssize_t depth) except *
@cython.locals(n=Py_ssize_t, tx=type)
cdef void _enc_list(object v, bytearray out, Py_ssize_t depth) except *

@cython.locals(a=double, t=double, j=int, digits=int, r=double)
cpdef double f32_value(double d)

@cython.locals(b=int, shift=object, start=Py_ssize_t, value=object)
cdef tuple _uvarint64(bytes buf, Py_ssize_t pos)
@cython.locals(tag=int, cls=int, n=object, e=object)
cdef tuple _dec(bytes buf, Py_ssize_t pos, Py_ssize_t rem)
@cython.locals(kt=int, s=Py_ssize_t)
cdef tuple _long_key(bytes buf, Py_ssize_t pos)
@cython.locals(blen=Py_ssize_t, d=dict, sub=dict, kn=Py_ssize_t, s=Py_ssize_t, vt=int, k=int, m=Py_ssize_t, _=Py_ssize_t, count=Py_ssize_t)
cdef tuple _map(bytes buf, Py_ssize_t pos, object n, Py_ssize_t rem)
@cython.locals(blen=Py_ssize_t, a=list, vt=int, k=int, s=Py_ssize_t, _=Py_ssize_t)
cdef tuple _array(bytes buf, Py_ssize_t pos, object n, Py_ssize_t rem)
