# C entry points of _pson_json_c.pyx for other compiled modules (the sample path).
cdef enum:
    _OUT_SIZE = 4096

cdef struct Out:
    Py_ssize_t n
    char buf[_OUT_SIZE]

cdef bint _put(Out* o, const char* s, Py_ssize_t k) noexcept
cdef Py_ssize_t transcode_into(Out* o, const unsigned char* p, Py_ssize_t pos, Py_ssize_t end,
                               int max_depth) noexcept
cdef int same_at(const unsigned char* a, Py_ssize_t ea, const unsigned char* b, Py_ssize_t eb,
                 int max_depth) noexcept
cdef int same_valid(const unsigned char* a, Py_ssize_t ea, const unsigned char* b,
                    Py_ssize_t eb) noexcept
