/* vp_metrics.c - see vp_metrics.h. */
#include "vp_metrics.h"

#include <stdio.h>
#include <string.h>

static size_t base_len(const char *name)
{
    const char *brace = strchr(name, '{');
    return brace ? (size_t)(brace - name) : strlen(name);
}

size_t vp_metrics_render(vp_metric *table, size_t count, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap == 0)
        return 0;
    buf[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        const char *name = table[i].name;
        size_t bl = base_len(name);
        /* HELP and TYPE once per family: labelled series follow each other. */
        int first = i == 0 || base_len(table[i - 1].name) != bl ||
                    strncmp(table[i - 1].name, name, bl) != 0;
        int n = 0;
        if (first)
            n = snprintf(buf + len, cap - len, "# HELP %.*s %s\n# TYPE %.*s %s\n", (int)bl, name,
                         table[i].help, (int)bl, name, table[i].gauge ? "gauge" : "counter");
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
        n = snprintf(buf + len, cap - len, "%s %llu\n", name,
                     (unsigned long long)vp_metric_get(&table[i]));
        if (n < 0 || (size_t)n >= cap - len)
            break;
        len += (size_t)n;
    }
    return len;
}
