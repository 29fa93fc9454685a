/* vp_mem.c - see vp_mem.h. */
#include "vp_mem.h"

#include <stdlib.h>
#include <string.h>

#ifdef VP_FAULT_INJECTION
#include <stdatomic.h>
static atomic_long alloc_count;
static int should_fail(void)
{
    static long every = -1;
    if (every < 0) {
        const char *e = getenv("VP_FAIL_ALLOC");
        every = e ? atol(e) : 0;
    }
    return every > 0 && (atomic_fetch_add(&alloc_count, 1) + 1) % every == 0;
}
#else
static int should_fail(void)
{
    return 0;
}
#endif

void *vp_malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n ? n : 1);
}

void *vp_calloc(size_t count, size_t size)
{
    return should_fail() ? NULL : calloc(count ? count : 1, size ? size : 1);
}

void *vp_realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n ? n : 1);
}

void vp_free(void *p)
{
    free(p);
}

char *vp_strndup(const char *s, size_t n)
{
    char *d = vp_malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}
