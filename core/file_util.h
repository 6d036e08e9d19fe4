/* file_util.h: whole-file reads and atomic writes (temp file, fsync, rename, fsync directory),
 * so a crash never leaves a half-written file under the final name. */
#ifndef XDT_FILE_UTIL_H
#define XDT_FILE_UTIL_H

#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

/* An atomic writer: data goes to a temp file beside `path`; commit makes it appear under `path`. */
typedef struct xdt_atomic_file {
    FILE *f;
    char path[4096];
    char tmp_path[4096];
} xdt_atomic_file;

xdt_status xdt_atomic_open(xdt_atomic_file *af, const char *path);
/* Writes n bytes; reports the path on failure. */
xdt_status xdt_atomic_write(xdt_atomic_file *af, const void *data, size_t n);
/* Flushes, fsyncs, renames into place and fsyncs the directory. */
xdt_status xdt_atomic_commit(xdt_atomic_file *af);
/* Removes the temp file (after a failure); safe to call twice. */
void xdt_atomic_abort(xdt_atomic_file *af);

/* Opens path for reading (binary); `what` (" checkpoint", " data file", or "") goes into the
 * one-line error, "PATH: cannot open WHAT: REASON", also given for a directory. */
xdt_status xdt_fopen_read(const char *path, const char *what, FILE **out);
/* Size of an open file, or -1. */
long long xdt_file_size(FILE *f);
/* Creates a directory and its parents (like mkdir -p). */
xdt_status xdt_mkdir_p(const char *path);

#endif
