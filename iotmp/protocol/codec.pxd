# Cython declarations for compiling codec.py as iotmp.protocol._codec_c (see hatch_build.py).
cimport cython

cdef int _WT_VARINT, _WT_LEGACY, _WT_PSON
cdef tuple _SMALL_VARINT, _WIRE_TYPES
cdef dict _KNOWN_TYPES

@cython.locals(p=Py_ssize_t)
cdef object _read_header(object buf, Py_ssize_t pos, Py_ssize_t end, object limits)
@cython.locals(end=Py_ssize_t, fields=dict, wire_types=dict, fid=object, wt=int)
cdef object _decode_body(object mtype, bytes buf, Py_ssize_t pos, object max_depth)
