/*
 * vp_err.h - error codes shared by all modules: 0 is success, failures are
 * negative so that a function can also return a non-negative count.
 */
#ifndef VP_ERR_H
#define VP_ERR_H

enum {
    VP_OK = 0,
    VP_ENOMEM = -1,     /* an allocation failed */
    VP_EAGAIN = -2,     /* not enough input yet; feed more and call again */
    VP_ECORRUPT = -3,   /* input violates the format */
    VP_ETOOBIG = -4,    /* a length or count exceeds a limit in vp_limits.h */
    VP_EVERSION = -5,   /* a version we do not speak */
    VP_EIO = -6,        /* an operating-system call failed; errno says why */
    VP_EINVAL = -7,     /* a caller passed an impossible argument */
    VP_EFULL = -8,      /* a bounded queue or store is at its bound */
    VP_EDONE = -9,      /* the stream has ended (vmprof TRAILER seen) */
    VP_ENOTFOUND = -10, /* no such item */
    VP_EAUTH = -11,     /* wrong or missing token */
};

/* vp_strerror returns a static string for a code; never NULL. */
const char *vp_strerror(int code);

#endif
