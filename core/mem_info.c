/* mem_info.c: reads /proc/meminfo, the cgroup limit and getrusage. */
#include "core/mem_info.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static size_t read_cgroup_limit(void) {
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r");
    if (!f) return 0;
    unsigned long long max = 0, cur = 0;
    int ok = fscanf(f, "%llu", &max) == 1;
    fclose(f);
    if (!ok) return 0; /* "max": no limit */
    f = fopen("/sys/fs/cgroup/memory.current", "r");
    if (f) {
        if (fscanf(f, "%llu", &cur) != 1) cur = 0;
        fclose(f);
    }
    return max > cur ? (size_t)(max - cur) : 0;
}

size_t xdt_mem_available_bytes(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    size_t avail = 0;
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = (size_t)kb * 1024;
        fclose(f);
    }
    size_t cg = read_cgroup_limit();
    if (cg && (!avail || cg < avail)) avail = cg;
    return avail;
}

size_t xdt_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024;
}
