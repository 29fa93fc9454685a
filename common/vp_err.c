/* vp_err.c - names for the error codes in vp_err.h. */
#include "vp_err.h"

const char *vp_strerror(int code)
{
    switch (code) {
    case VP_OK: return "ok";
    case VP_ENOMEM: return "out of memory";
    case VP_EAGAIN: return "need more input";
    case VP_ECORRUPT: return "corrupt input";
    case VP_ETOOBIG: return "over a size limit";
    case VP_EVERSION: return "unsupported version";
    case VP_EIO: return "i/o error";
    case VP_EINVAL: return "invalid argument";
    case VP_EFULL: return "full";
    case VP_EDONE: return "end of stream";
    case VP_ENOTFOUND: return "not found";
    case VP_EAUTH: return "unauthorized";
    default: return "unknown error";
    }
}
