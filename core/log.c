/* log.c: one-line diagnostics on stderr. */
#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static xdt_log_level threshold_from_env(void) {
    const char *s = getenv("XDT_LOG_LEVEL");
    if (!s) return XDT_LOG_INFO;
    if (!strcmp(s, "error")) return XDT_LOG_ERROR;
    if (!strcmp(s, "warn")) return XDT_LOG_WARN;
    if (!strcmp(s, "debug")) return XDT_LOG_DEBUG;
    return XDT_LOG_INFO;
}

/* The calling thread's context prefix (xdt_log_set_context): per thread, so one thread's
 * context never labels another's lines. */
static _Thread_local const char *log_context;

void xdt_log_set_context(const char *context) {
    log_context = context;
}

static void vlog(xdt_log_level level, const char *fmt, va_list ap) {
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (level > threshold_from_env()) return;
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    /* One line, always: a message that carries a newline would break log parsing. */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    if (log_context)
        fprintf(stderr, "xdt: %s: %s: %s\n", names[level], log_context, line);
    else
        fprintf(stderr, "xdt: %s: %s\n", names[level], line);
}

void xdt_log(xdt_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, fmt, ap);
    va_end(ap);
}

xdt_status xdt_fail(xdt_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(XDT_LOG_ERROR, fmt, ap);
    va_end(ap);
    return status;
}
