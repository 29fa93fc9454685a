/*
 * vp_mem.h - the one allocator. In builds with VP_FAULT_INJECTION, the
 * environment variable VP_FAIL_ALLOC=N makes every Nth allocation fail, so
 * tests can walk the failure paths (SQLite's faultsim, Fluent Bit's flb_malloc).
 */
#ifndef VP_MEM_H
#define VP_MEM_H

#include <stddef.h>

void *vp_malloc(size_t n);
void *vp_calloc(size_t count, size_t size);
void *vp_realloc(void *p, size_t n);
void vp_free(void *p);
/* vp_strndup copies n bytes and a NUL; the caller owns the result. */
char *vp_strndup(const char *s, size_t n);

#endif
