/* cmd_bench.c: `xdt bench link|codec`: measurement commands (their results go to
 * docs/BENCHMARKS.md; tests never time anything). */
#include <stdio.h>
#include <string.h>

#include "tools/commands.h"

int xdt_cmd_bench(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "link")) return xdt_cmd_bench_link(argc - 1, argv + 1);
    if (argc >= 1 && !strcmp(argv[0], "codec")) return xdt_cmd_bench_codec(argc - 1, argv + 1);
    FILE *out =
        argc >= 1 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h")) ? stdout : stderr;
    fprintf(out,
            "usage: xdt bench link|codec [options]\n\n"
            "  link    latency, bandwidth, codec ratio and CPU use of a link between two ranks\n"
            "  codec   encode/decode speed and ratio of the wire codecs\n\n"
            "Run `xdt bench link --help` or `xdt bench codec --help` for options.\n");
    return out == stdout ? 0 : 2;
}
