/* file_util.c: atomic file writes and small file helpers. */
#include "core/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

xdt_status xdt_atomic_open(xdt_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (strlen(path) + 32 >= sizeof af->path)
        return xdt_fail(XDT_ERR_INVALID_ARG, "%s: path too long", path);
    snprintf(af->path, sizeof af->path, "%s", path);
    snprintf(af->tmp_path, sizeof af->tmp_path, "%s.tmp.%ld", path, (long)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) return xdt_fail(XDT_ERR_IO, "%s: cannot create: %s", af->tmp_path, strerror(errno));
    return XDT_OK;
}

xdt_status xdt_atomic_write(xdt_atomic_file *af, const void *data, size_t n) {
    if (n && fwrite(data, 1, n, af->f) != n)
        return xdt_fail(XDT_ERR_IO, "%s: write failed: %s", af->tmp_path, strerror(errno));
    return XDT_OK;
}

static void fsync_dir_of(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    int fd = open(dirname(dir), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

xdt_status xdt_atomic_commit(xdt_atomic_file *af) {
    if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
        xdt_status st = xdt_fail(XDT_ERR_IO, "%s: flush failed: %s", af->tmp_path, strerror(errno));
        xdt_atomic_abort(af);
        return st;
    }
    int rc = fclose(af->f);
    af->f = NULL;
    if (rc != 0 || rename(af->tmp_path, af->path) != 0) {
        xdt_status st =
            xdt_fail(XDT_ERR_IO, "%s: cannot move into place: %s", af->path, strerror(errno));
        unlink(af->tmp_path);
        return st;
    }
    fsync_dir_of(af->path);
    af->tmp_path[0] = 0;
    return XDT_OK;
}

void xdt_atomic_abort(xdt_atomic_file *af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    if (af->tmp_path[0]) unlink(af->tmp_path);
    af->tmp_path[0] = 0;
}

xdt_status xdt_fopen_read(const char *path, const char *what, FILE **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot open%s: %s", path, what, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) == 0 && S_ISDIR(sb.st_mode)) { /* fopen takes a directory */
        fclose(f);
        return xdt_fail(XDT_ERR_IO, "%s: cannot open%s: it is a directory", path, what);
    }
    *out = f;
    return XDT_OK;
}

long long xdt_file_size(FILE *f) {
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) return -1;
    return (long long)sb.st_size;
}

xdt_status xdt_mkdir_p(const char *path) {
    char buf[4096];
    if (strlen(path) >= sizeof buf) return xdt_fail(XDT_ERR_INVALID_ARG, "%s: path too long", path);
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return xdt_fail(XDT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return xdt_fail(XDT_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
    struct stat sb;
    if (stat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return xdt_fail(XDT_ERR_IO, "%s: not a directory", buf);
    return XDT_OK;
}
