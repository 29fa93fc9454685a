/* vp_net.c - see vp_net.h. */
#include "vp_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vp_err.h"

int vp_net_split_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
    const char *colon, *h = s;
    size_t hlen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return VP_EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return VP_EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= cap)
        return VP_EINVAL;
    char *end = NULL;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || p < 0 || p > 65535)
        return VP_EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)p;
    return VP_OK;
}

void vp_net_ready(const char *program, const char *what)
{
    printf("%s listening on %s\n", program, what);
    fflush(stdout);
}
