/* json_file.c: a whole file read, then parsed. */
#include "planner/json_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file_util.h"
#include "core/log.h"

xdt_status xdt_json_load(const char *path, cJSON **out) {
    FILE *f = NULL;
    xdt_status st0 = xdt_fopen_read(path, "", &f);
    if (st0 != XDT_OK) return st0;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1L << 30) &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    const int err = errno;
    fclose(f);
    if (!buf)
        return xdt_fail(XDT_ERR_IO, "%s: cannot read: %s", path,
                        n >= (1L << 30) ? "larger than 1 GiB" : strerror(err ? err : EIO));
    cJSON *root = cJSON_ParseWithLength(buf, (size_t)n);
    free(buf);
    if (!root) return xdt_fail(XDT_ERR_FORMAT, "%s: not valid JSON", path);
    *out = root;
    return XDT_OK;
}
