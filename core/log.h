/* log.h: one-line diagnostics on stderr. The first function that sees an error reports it with
 * its context (file, field, rank, peer); callers only pass the status on. */
#ifndef XDT_LOG_H
#define XDT_LOG_H

#include "core/status.h"

typedef enum xdt_log_level {
    XDT_LOG_ERROR = 0,
    XDT_LOG_WARN = 1,
    XDT_LOG_INFO = 2,
    XDT_LOG_DEBUG = 3,
} xdt_log_level;

#if defined(__GNUC__)
#define XDT_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define XDT_PRINTF(a, b)
#endif

/* Writes "xdt: error: <message>" (or warning/info/debug) as one line to stderr. The level shown is
 * read once from XDT_LOG_LEVEL (error|warn|info|debug, default info). */
void xdt_log(xdt_log_level level, const char *fmt, ...) XDT_PRINTF(2, 3);

/* Reports an error and returns `status`, so call sites can `return xdt_fail(...)`. */
xdt_status xdt_fail(xdt_status status, const char *fmt, ...) XDT_PRINTF(2, 3);

/* Prefixes the calling thread's following lines with "<context>: " (e.g. "rank 3"); NULL
 * stops it. For context the first reporter of an error cannot know, such as which rank's
 * device failed to open. The caller keeps the string alive until it clears it. */
void xdt_log_set_context(const char *context);

#define xdt_log_error(...) xdt_log(XDT_LOG_ERROR, __VA_ARGS__)
#define xdt_log_warn(...)  xdt_log(XDT_LOG_WARN, __VA_ARGS__)
#define xdt_log_info(...)  xdt_log(XDT_LOG_INFO, __VA_ARGS__)
#define xdt_log_debug(...) xdt_log(XDT_LOG_DEBUG, __VA_ARGS__)

#endif
