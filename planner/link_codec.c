/* link_codec.c: wire size and time of each codec, and the per-link choice. */
#include "planner/link_codec.h"

#include <string.h>

static const char *const names[XDT_LINK_CODEC_COUNT] = {"none", "bf16", "fp16",
                                                        "int8", "int4", "zstd"};

const char *xdt_link_codec_name(xdt_link_codec c) {
    return c >= 0 && c < XDT_LINK_CODEC_COUNT ? names[c] : "auto";
}

int xdt_link_codec_parse(const char *name) {
    if (!strcmp(name, "auto")) return XDT_LINK_CODEC_AUTO;
    for (int c = 0; c < XDT_LINK_CODEC_COUNT; c++)
        if (!strcmp(name, names[c])) return c;
    return -2;
}

double xdt_link_codec_ratio(xdt_link_codec c) {
    switch (c) {
    case XDT_LINK_CODEC_BF16:
    case XDT_LINK_CODEC_FP16:
        return 0.5;
    case XDT_LINK_CODEC_INT8: /* 1 byte a value and a 4-byte step per block of 128 */
        return (1.0 + 4.0 / 128) / 4;
    case XDT_LINK_CODEC_INT4:
        return (0.5 + 4.0 / 128) / 4;
    case XDT_LINK_CODEC_ZSTD:
        return 0.9;
    default:
        return 1;
    }
}

double xdt_link_codec_ms_per_byte(xdt_link_codec c, const xdt_device_type *from,
                                  const xdt_device_type *to) {
    if (c == XDT_LINK_CODEC_NONE || c < 0) return 0;
    /* zstd runs on the host CPU at roughly 0.5 GB/s a core either way for fp32 data */
    if (c == XDT_LINK_CODEC_ZSTD) return 2 / (0.5e9 / 1e3);
    return 1 / (from->memory_gbps * 1e6) + 1 / (to->memory_gbps * 1e6);
}

double xdt_link_codec_message_ms(xdt_link_codec c, double bytes, double gbps,
                                 const xdt_device_type *from, const xdt_device_type *to) {
    const double wire = gbps > 0 ? bytes * xdt_link_codec_ratio(c) / (gbps * 1e9 / 8 / 1e3) : 0;
    return wire + bytes * xdt_link_codec_ms_per_byte(c, from, to);
}

xdt_link_codec xdt_link_codec_choose(double bytes, double gbps, const xdt_device_type *from,
                                     const xdt_device_type *to) {
    const xdt_link_codec options[] = {XDT_LINK_CODEC_BF16, XDT_LINK_CODEC_INT8};
    const double plain = xdt_link_codec_message_ms(XDT_LINK_CODEC_NONE, bytes, gbps, from, to);
    xdt_link_codec best = XDT_LINK_CODEC_NONE;
    double best_ms = plain;
    for (int i = 0; i < 2; i++) {
        const double ms = xdt_link_codec_message_ms(options[i], bytes, gbps, from, to);
        if (ms < 0.9 * plain && ms < best_ms) {
            best = options[i];
            best_ms = ms;
        }
    }
    return best;
}
