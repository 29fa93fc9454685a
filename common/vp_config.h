/*
 * vp_config.h - settings from a config file and command-line flags.
 *
 * Every daemon declares its settings once, as a table of vp_option. The same
 * name is a flag (`--listen ADDR`) and a config-file key (`listen = ADDR`);
 * flags win over the file, the file over the defaults. The file is lines of
 * `key = value`; `#` starts a comment; unknown keys are errors, so a typo
 * never goes unnoticed.
 */
#ifndef VP_CONFIG_H
#define VP_CONFIG_H

#include <stddef.h>
#include <stdint.h>

typedef struct vp_option {
    const char *name;  /* flag and key, without the leading "--" */
    const char *arg;   /* placeholder in --help, e.g. "HOST:PORT" */
    const char *def;   /* default value, or NULL for none */
    const char *help;  /* one line */
} vp_option;

#define VP_CONFIG_MAX_OPTIONS 48

typedef struct vp_config {
    const vp_option *options;
    size_t count;
    char *values[VP_CONFIG_MAX_OPTIONS]; /* owned; NULL = unset */
} vp_config;

enum { VP_CONFIG_EXIT_OK = 1 }; /* --help or --version was printed */

/* vp_config_load fills c from the defaults, then `--config FILE` if given,
 * then the flags. Returns VP_OK, VP_CONFIG_EXIT_OK after printing --help or
 * --version to stdout, or a negative code with a one-line reason in err.
 * The caller must call vp_config_free in every case. `options` must outlive c. */
int vp_config_load(vp_config *c, const char *program, const char *version,
                   const char *summary, const vp_option *options, size_t count, int argc,
                   char **argv, char *err, size_t errlen);

/* vp_config_get returns the value of a declared option, or NULL if unset.
 * The string is owned by c. */
const char *vp_config_get(const vp_config *c, const char *name);

/* vp_config_get_u64 parses an option as a decimal in [min, max]; VP_EINVAL
 * with a reason in err if it is not one. An unset option gives VP_ENOTFOUND. */
int vp_config_get_u64(const vp_config *c, const char *name, uint64_t min, uint64_t max,
                      uint64_t *out, char *err, size_t errlen);

void vp_config_free(vp_config *c);

#endif
