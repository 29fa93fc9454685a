/*
 * vp_log.h - leveled logging to stderr, one line per call, safe from any
 * thread (each line is formatted into a buffer and written with one write()).
 */
#ifndef VP_LOG_H
#define VP_LOG_H

enum vp_log_level { VP_LOG_DEBUG = 0, VP_LOG_INFO, VP_LOG_WARN, VP_LOG_ERROR };

/* vp_log_init names the program in every line and sets the lowest level shown. */
void vp_log_init(const char *program, enum vp_log_level min_level);

/* vp_log_parse_level maps "debug", "info", "warn", "error"; -1 if unknown. */
int vp_log_parse_level(const char *name);

void vp_log(enum vp_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define vp_debug(...) vp_log(VP_LOG_DEBUG, __VA_ARGS__)
#define vp_info(...) vp_log(VP_LOG_INFO, __VA_ARGS__)
#define vp_warn(...) vp_log(VP_LOG_WARN, __VA_ARGS__)
#define vp_error(...) vp_log(VP_LOG_ERROR, __VA_ARGS__)

#endif
