/* link_codec.h: what the planner knows of the wire codecs (transports/codecs/codec.h) so it can
 * choose one per link: the wire size per fp32 payload byte and the time to encode and decode.
 * Encoding and decoding each stream the tensor through memory once more, so each takes
 * payload / memory bandwidth of the device that runs it (on this machine's CPU the measured AVX2
 * int8/bf16 kernels run at 20-42 GB/s, at or above the catalog's 20 GB/s: docs/BENCHMARKS.md).
 * zstd's ratio on fp32 tensors depends on the data; the planner assumes 0.9 and never picks it
 * on its own.
 *
 * Choice ("auto"): links inside a site at XDT_LINK_CODEC_FAST_GBPS or more stay exact (lossy
 * compression goes where bandwidth is scarce); elsewhere, among none, bf16 and int8, the codec
 * that moves one message fastest (encode + wire + decode), a lossy codec having to save at
 * least 10 % of the uncompressed time. */
#ifndef XDT_LINK_CODEC_H
#define XDT_LINK_CODEC_H

#include "planner/device_catalog.h"

#define XDT_LINK_CODEC_FAST_GBPS 25.0

typedef enum xdt_link_codec {
    XDT_LINK_CODEC_NONE = 0,
    XDT_LINK_CODEC_BF16,
    XDT_LINK_CODEC_FP16,
    XDT_LINK_CODEC_INT8,
    XDT_LINK_CODEC_INT4,
    XDT_LINK_CODEC_ZSTD,
    XDT_LINK_CODEC_COUNT,
    XDT_LINK_CODEC_AUTO = -1, /* a request: choose per link */
} xdt_link_codec;

/* The transports' spec name ("none", "bf16", "int8", ...). */
const char *xdt_link_codec_name(xdt_link_codec c);
/* Parses a name; "auto" gives XDT_LINK_CODEC_AUTO; -2 when unknown. */
int xdt_link_codec_parse(const char *name);
/* Bytes on the wire per payload byte (the 8-byte header left out: it is per message). */
double xdt_link_codec_ratio(xdt_link_codec c);
/* Encode (on `from`) plus decode (on `to`) milliseconds per payload byte. */
double xdt_link_codec_ms_per_byte(xdt_link_codec c, const xdt_device_type *from,
                                  const xdt_device_type *to);
/* Time to move one message of `bytes` over a link of gbps (encode + wire + decode, latency
 * left out: it is the same for every codec). */
double xdt_link_codec_message_ms(xdt_link_codec c, double bytes, double gbps,
                                 const xdt_device_type *from, const xdt_device_type *to);
/* The auto choice for a message of `bytes` on a link of gbps. */
xdt_link_codec xdt_link_codec_choose(double bytes, double gbps, const xdt_device_type *from,
                                     const xdt_device_type *to);

#endif
