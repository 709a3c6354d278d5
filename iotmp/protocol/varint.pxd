# Cython declarations for compiling varint.py as iotmp.protocol._varint_c (see hatch_build.py).
cimport cython

cdef tuple _SMALL

@cython.locals(b=int, shift=object, start=Py_ssize_t, value=object)
cpdef object try_decode_varint32(object buf, Py_ssize_t pos, Py_ssize_t end)
