/* codec.h: the wire codecs that shrink activations and gradients on slow links, chosen per link
 * by a spec string: "none", "zstd[:LEVEL]", "fp16", "bf16", "int8[:block=B]", "int4[:block=B]",
 * each lossy one optionally followed by "+ef" (error feedback). A codec object holds reusable
 * scratch (zstd contexts, the error-feedback residual) and encodes fp32 tensors into a
 * self-describing payload that decoding validates as hostile bytes off a network.
 *
 * Every payload, little-endian, starts with an 8-byte header:
 *   0 u8 codec id (xdt_codec_kind)   1 u8 log2(block) for int8/int4, else 0
 *   2 u8[2] reserved, zero           4 u32 n, the number of fp32 values
 * then, with nb = ceil(n / block):
 *   none  n x f32, the values bit for bit.
 *   zstd  one zstd frame holding the n x f32 bytes, its content size recorded and equal to 4n.
 *   fp16  n x IEEE binary16, rounded to nearest even. |x - y| <= max(2^-11 |x|, 2^-25) for
 *         |x| < 65520; |x| >= 65520 becomes +-inf (65504 <= |x| < 65520 gives +-65504); inf and
 *         NaN pass through (NaN stays NaN, quieted, sign kept); subnormals are rounded, not
 *         flushed.
 *   bf16  n x the upper 16 bits of the f32, rounded to nearest even: |x - y| <= 2^-8 |x| for
 *         normal x, <= 2^-134 for subnormal x; values past the bf16 maximum round to +-inf; inf
 *         and NaN pass through as for fp16.
 *   int8  nb x f32 step d = absmax/127 of each block, then n x int8 q in [-127, 127], q =
 *         round_even(x / d), decoded as q * d. |x - y| <= 0.5001 * absmax/127 + 2^-142.
 *   int4  nb x f32 step d = absmax/7, then ceil(n/2) bytes of 4-bit two's-complement q in
 *         [-7, 7], element 2i in the low nibble of byte i, 2i+1 in the high nibble (zero when n
 *         is odd). |x - y| <= 0.5001 * absmax/7 + 2^-142.
 * int8 and int4 refuse NaN and infinity (XDT_ERR_NUMERIC): a scale cannot carry them. Their
 * decoding accepts only finite non-negative steps whose largest code stays finite and codes
 * inside the ranges above, so a decoded int8/int4 tensor is always finite.
 *
 * Error feedback ("+ef", lossy codecs only): the codec keeps r = y - decode(encode(y)) of the
 * last encode, y = x + r_previous, so the errors of a stream of encodes of the same tensor do not
 * accumulate. The residual covers the first n values; an encode with a different n starts it
 * afresh from zero. With error feedback every codec refuses a y that is not finite or that rounds
 * to infinity (XDT_ERR_NUMERIC), and a failed encode leaves the residual as it was.
 *
 * Kernels exist as portable C, AVX2 (+F16C) and AVX-512 (F+BW), chosen at run time; all give
 * bit-identical payloads. A codec object is used by one thread at a time. */
#ifndef XDT_CODEC_H
#define XDT_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Codec kinds; the values are the wire ids (payload byte 0, and the frame header's codec id). */
typedef enum xdt_codec_kind {
    XDT_CODEC_NONE = 0,
    XDT_CODEC_ZSTD = 1,
    XDT_CODEC_FP16 = 2,
    XDT_CODEC_BF16 = 3,
    XDT_CODEC_INT8 = 4,
    XDT_CODEC_INT4 = 5,
    XDT_CODEC_KIND_COUNT
} xdt_codec_kind;

#define XDT_CODEC_HEADER_BYTES  8
#define XDT_CODEC_DEFAULT_LEVEL 1   /* zstd level when none is given */
#define XDT_CODEC_DEFAULT_BLOCK 128 /* int8/int4 block when none is given */
#define XDT_CODEC_MIN_BLOCK     16  /* blocks are powers of two in [16, 65536] */
#define XDT_CODEC_MAX_BLOCK     65536
#define XDT_CODEC_MAX_N         UINT32_MAX /* values in one payload (the header's u32) */
#define XDT_CODEC_NAME_MAX      40         /* bytes xdt_codec_name needs, NUL included */

typedef struct xdt_codec_spec {
    xdt_codec_kind kind;
    int level;           /* zstd: compression level, 1..ZSTD_maxCLevel() (negative: fast modes) */
    int block;           /* int8/int4: values per scale, a power of two in [16, 65536] */
    bool error_feedback; /* lossy codecs: carry the quantisation residual into the next encode */
} xdt_codec_spec;

/* Kernel paths, for tests and benchmarks; AUTO picks the best the CPU offers. */
typedef enum xdt_codec_isa {
    XDT_CODEC_ISA_AUTO = 0,
    XDT_CODEC_ISA_SCALAR = 1,
    XDT_CODEC_ISA_AVX2 = 2,
    XDT_CODEC_ISA_AVX512 = 3,
} xdt_codec_isa;

typedef struct xdt_codec xdt_codec;

/* Parses a spec string (see the top of this file; "zstd:level=3" is also accepted). Bad text
 * returns XDT_ERR_CONFIG after one error line naming the text and what is wrong. */
xdt_status xdt_codec_parse(const char *text, xdt_codec_spec *out);

/* Writes the canonical spec string (which parses back to *spec) into buf (cap >=
 * XDT_CODEC_NAME_MAX is always enough) and returns buf. */
const char *xdt_codec_name(const xdt_codec_spec *spec, char *buf, size_t cap);

/* The short name of a kind ("int8"), or "?" for a value outside the enum. */
const char *xdt_codec_kind_name(xdt_codec_kind kind);

/* Whether decode(encode(x)) == x bit for bit (none and zstd). */
bool xdt_codec_is_lossless(const xdt_codec_spec *spec);

/* Upper bound of the payload bytes for n values (exact for all but zstd); 0 when n is larger
 * than XDT_CODEC_MAX_N or the spec is invalid. */
size_t xdt_codec_max_encoded_bytes(const xdt_codec_spec *spec, size_t n);

/* Creates a codec for tensors of at most max_n values: everything encode and decode need is
 * allocated here. Errors: XDT_ERR_CONFIG for an invalid spec, XDT_ERR_INVALID_ARG for max_n
 * above XDT_CODEC_MAX_N, XDT_ERR_NO_MEMORY. The caller owns *out. */
xdt_status xdt_codec_create(const xdt_codec_spec *spec, size_t max_n, xdt_codec **out);
/* Frees the codec; NULL is a no-op. */
void xdt_codec_destroy(xdt_codec *codec);

/* The spec the codec was created with. */
const xdt_codec_spec *xdt_codec_get_spec(const xdt_codec *codec);

/* Encodes src[0..n) into dst (cap bytes; xdt_codec_max_encoded_bytes is always enough) and sets
 * *written. Errors: XDT_ERR_INVALID_ARG (n > max_n, cap too small), XDT_ERR_NUMERIC (see the top
 * of this file); on error dst's contents are unspecified and *written is untouched. */
xdt_status xdt_codec_encode(xdt_codec *codec, const float *src, size_t n, void *dst, size_t cap,
                            size_t *written);

/* Decodes a payload of len bytes into dst[0..n), n being the count the caller expects.
 * Anything malformed (header, codec, block, count, length, scales, codes, zstd frame) returns
 * XDT_ERR_FORMAT after one error line; nothing outside src[0..len) or dst[0..n) is ever read or
 * written. On error dst's contents are unspecified. n > max_n is XDT_ERR_INVALID_ARG. */
xdt_status xdt_codec_decode(xdt_codec *codec, const void *src, size_t len, float *dst, size_t n);

/* Zeroes the error-feedback residual (a new stream starts). */
void xdt_codec_reset(xdt_codec *codec);

/* Pins the kernel path. XDT_ERR_UNSUPPORTED (reported) when this CPU or build lacks it. */
xdt_status xdt_codec_set_isa(xdt_codec *codec, xdt_codec_isa isa);
/* The kernel path in use (never AUTO). */
xdt_codec_isa xdt_codec_get_isa(const xdt_codec *codec);
/* "scalar", "avx2", "avx512" or "auto". */
const char *xdt_codec_isa_name(xdt_codec_isa isa);
/* Whether this CPU and build can run `isa` (AUTO and SCALAR always can). */
bool xdt_codec_isa_available(xdt_codec_isa isa);

#endif
