/*
 * profile_gen.h - builds vmprof files byte by byte from a known plan, so the
 * reader's results can be compared with counts the generator knows, not with
 * anything the reader computed.
 */
#ifndef PROFILE_GEN_H
#define PROFILE_GEN_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct gen {
    uint8_t *buf;
    size_t len, cap;
} gen;

static void gen_bytes(gen *g, const void *p, size_t n)
{
    if (g->len + n > g->cap) {
        g->cap = (g->len + n) * 2 + 256;
        g->buf = realloc(g->buf, g->cap);
    }
    memcpy(g->buf + g->len, p, n);
    g->len += n;
}

static void gen_u8(gen *g, uint8_t v)
{
    gen_bytes(g, &v, 1);
}

static void gen_word(gen *g, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    gen_bytes(g, b, 8);
}

/* Static header, HEADER, TIME_N_ZONE and two META records, as vmprof writes. */
static void gen_start(gen *g, uint16_t version, uint8_t mode, uint64_t period_us)
{
    gen_word(g, 0);
    gen_word(g, 3);
    gen_word(g, 0);
    gen_word(g, period_us);
    gen_word(g, 0);
    gen_u8(g, 0x05);
    gen_u8(g, (uint8_t)(version >> 8));
    gen_u8(g, (uint8_t)version);
    gen_u8(g, mode);
    gen_u8(g, 7);
    gen_bytes(g, "cpython", 7);
    gen_u8(g, 0x06);
    gen_word(g, 1700000000);
    gen_word(g, 250000);
    gen_word(g, 0);
    gen_u8(g, 0x07);
    gen_word(g, 2);
    gen_bytes(g, "os", 2);
    gen_word(g, 5);
    gen_bytes(g, "linux", 5);
}

/* A sample; frames are root first here and written leaf first, as vmprof does. */
static void gen_stack(gen *g, uint16_t version, uint8_t mode, const uint64_t *frames, size_t n,
                      uint64_t thread, uint64_t rss, int64_t t_ns)
{
    gen_u8(g, 0x01);
    gen_word(g, 1);
    gen_word(g, n);
    for (size_t i = n; i-- > 0;)
        gen_word(g, frames[i]);
    gen_word(g, thread);
    if (mode & 1)
        gen_word(g, rss);
    if (version >= 7)
        gen_word(g, (uint64_t)t_ns);
}

static void gen_name(gen *g, uint8_t marker, uint64_t addr, const char *name)
{
    gen_u8(g, marker);
    gen_word(g, addr);
    gen_word(g, strlen(name));
    gen_bytes(g, name, strlen(name));
}

static void gen_trailer(gen *g)
{
    gen_u8(g, 0x03);
    gen_word(g, 1700000005);
    gen_word(g, 0);
    gen_word(g, 0);
}

#endif
