/* mem_info.h: how much memory this process may still use, and how much it has used. */
#ifndef XDT_MEM_INFO_H
#define XDT_MEM_INFO_H

#include <stddef.h>

/* Memory available to allocate now: MemAvailable, capped by a cgroup v2 memory.max. 0 if
 * unknown. */
size_t xdt_mem_available_bytes(void);
/* Peak resident set size of this process. */
size_t xdt_peak_rss_bytes(void);

#endif
