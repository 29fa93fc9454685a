/*
 * vp_net.h - small helpers the daemons share for addresses and readiness.
 */
#ifndef VP_NET_H
#define VP_NET_H

#include <stddef.h>
#include <stdint.h>

/* vp_net_split_hostport splits "HOST:PORT" or "[V6]:PORT" into host (cap
 * bytes, NUL-terminated) and a port in 0..65535. VP_EINVAL if malformed. */
int vp_net_split_hostport(const char *s, char *host, size_t cap, uint16_t *port);

/* vp_net_ready prints "<program> listening on <what>" to stdout and flushes,
 * the one line scripts and tests wait for before they connect. */
void vp_net_ready(const char *program, const char *what);

#endif
