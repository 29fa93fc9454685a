/* vp_config.c - see vp_config.h. */
#define _POSIX_C_SOURCE 200809L
#include "vp_config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vp_err.h"
#include "vp_mem.h"

#define CONFIG_LINE_MAX 4096

static int find(const vp_config *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->count; i++) {
        if (strlen(c->options[i].name) == len && memcmp(c->options[i].name, name, len) == 0)
            return (int)i;
    }
    return -1;
}

static int set(vp_config *c, int i, const char *value, size_t len)
{
    char *copy = vp_strndup(value, len);
    if (!copy)
        return VP_ENOMEM;
    vp_free(c->values[i]);
    c->values[i] = copy;
    return VP_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(vp_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open config %s: %s", path, strerror(errno));
        return VP_EIO;
    }
    char line[CONFIG_LINE_MAX];
    int lineno = 0, rc = VP_OK;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            rc = VP_ETOOBIG;
            goto fail;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected key = value", path, lineno);
            rc = VP_EINVAL;
            goto fail;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        int i = find(c, key, strlen(key));
        if (i < 0 || strcmp(key, "config") == 0) {
            snprintf(err, errlen, "%s:%d: unknown setting '%s'", path, lineno, key);
            rc = VP_EINVAL;
            goto fail;
        }
        if ((rc = set(c, i, value, strlen(value))) != VP_OK) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
    }
fail:
    fclose(f);
    return rc;
}

static void usage(const vp_config *c, const char *program, const char *summary)
{
    printf("usage: %s [options]\n%s\n\noptions (also keys of the --config file):\n", program,
           summary);
    for (size_t i = 0; i < c->count; i++) {
        const vp_option *o = &c->options[i];
        char flag[96];
        snprintf(flag, sizeof(flag), "--%s %s", o->name, o->arg ? o->arg : "");
        printf("  %-28s %s", flag, o->help);
        if (o->def && *o->def)
            printf(" (default: %s)", o->def);
        printf("\n");
    }
    printf("  %-28s %s\n  %-28s %s\n", "--help", "show this and exit", "--version",
           "show the version and exit");
}

int vp_config_load(vp_config *c, const char *program, const char *version,
                   const char *summary, const vp_option *options, size_t count, int argc,
                   char **argv, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    if (count > VP_CONFIG_MAX_OPTIONS) {
        snprintf(err, errlen, "too many options");
        return VP_EINVAL;
    }
    c->options = options;
    c->count = count;
    for (size_t i = 0; i < count; i++) {
        if (options[i].def && set(c, (int)i, options[i].def, strlen(options[i].def)) != VP_OK) {
            snprintf(err, errlen, "out of memory");
            return VP_ENOMEM;
        }
    }
    /* The file is applied before any flag, wherever --config stands. */
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
            usage(c, program, summary);
            return VP_CONFIG_EXIT_OK;
        }
        if (strcmp(argv[a], "--version") == 0) {
            printf("%s %s\n", program, version);
            return VP_CONFIG_EXIT_OK;
        }
    }
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--config") == 0 || strncmp(argv[a], "--config=", 9) == 0) {
            const char *path = argv[a][8] == '=' ? argv[a] + 9 : (a + 1 < argc ? argv[a + 1] : NULL);
            if (!path) {
                snprintf(err, errlen, "--config needs a file");
                return VP_EINVAL;
            }
            int rc = load_file(c, path, err, errlen);
            if (rc != VP_OK)
                return rc;
        }
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", arg);
            return VP_EINVAL;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (a + 1 >= argc) {
                snprintf(err, errlen, "%s needs a value", arg);
                return VP_EINVAL;
            }
            value = argv[++a];
        }
        if (nlen == 6 && memcmp(name, "config", 6) == 0)
            continue;
        int i = find(c, name, nlen);
        if (i < 0) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, name);
            return VP_EINVAL;
        }
        if (set(c, i, value, strlen(value)) != VP_OK) {
            snprintf(err, errlen, "out of memory");
            return VP_ENOMEM;
        }
    }
    return VP_OK;
}

const char *vp_config_get(const vp_config *c, const char *name)
{
    int i = find(c, name, strlen(name));
    return i < 0 ? NULL : c->values[i];
}

int vp_config_get_u64(const vp_config *c, const char *name, uint64_t min, uint64_t max,
                      uint64_t *out, char *err, size_t errlen)
{
    const char *s = vp_config_get(c, name);
    if (!s || !*s)
        return VP_ENOTFOUND;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-' || v < min || v > max) {
        snprintf(err, errlen, "--%s must be a whole number from %llu to %llu, not '%s'", name,
                 (unsigned long long)min, (unsigned long long)max, s);
        return VP_EINVAL;
    }
    *out = v;
    return VP_OK;
}

void vp_config_free(vp_config *c)
{
    for (size_t i = 0; i < c->count; i++) {
        vp_free(c->values[i]);
        c->values[i] = NULL;
    }
}
