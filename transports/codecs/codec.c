/* codec.c: the codecs' public side: spec parsing and naming, payload sizes, the codec object
 * (zstd contexts, error-feedback residuals), the run-time choice of kernel path, and encode and
 * decode with every check a payload off the wire needs before a kernel touches it. */
#include "transports/codecs/codec.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "core/log.h"
#include "transports/codecs/codec_kernels.h"

#if XDT_CODEC_X86
#include <cpuid.h>
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the codecs write little-endian payloads by copying host words"
#endif

struct xdt_codec {
    xdt_codec_spec spec;
    size_t max_n;
    const xdt_codec_kernels *k;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    float *residual[2]; /* error feedback: [cur] is the live residual, the other the next one */
    int cur;
    size_t ef_n; /* the n the live residual belongs to (SIZE_MAX: none yet) */
    char name[XDT_CODEC_NAME_MAX];
};

static const char *const kind_names[XDT_CODEC_KIND_COUNT] = {"none", "zstd", "fp16",
                                                             "bf16", "int8", "int4"};

const char *xdt_codec_kind_name(xdt_codec_kind kind) {
    return (unsigned)kind < XDT_CODEC_KIND_COUNT ? kind_names[kind] : "?";
}

static bool is_quant(xdt_codec_kind kind) {
    return kind == XDT_CODEC_INT8 || kind == XDT_CODEC_INT4;
}

bool xdt_codec_is_lossless(const xdt_codec_spec *spec) {
    return spec->kind == XDT_CODEC_NONE || spec->kind == XDT_CODEC_ZSTD;
}

static bool block_ok(long block) {
    return block >= XDT_CODEC_MIN_BLOCK && block <= XDT_CODEC_MAX_BLOCK &&
           (block & (block - 1)) == 0;
}

static int log2_of(size_t v) {
    int l = 0;
    while (v > 1) {
        v >>= 1;
        l++;
    }
    return l;
}

/* Whether a spec (built by hand or parsed) is one the codecs support; why not in *why. */
static bool spec_valid(const xdt_codec_spec *s, const char **why) {
    if ((unsigned)s->kind >= XDT_CODEC_KIND_COUNT) {
        *why = "unknown codec kind";
        return false;
    }
    if (s->kind == XDT_CODEC_ZSTD && (s->level < ZSTD_minCLevel() || s->level > ZSTD_maxCLevel())) {
        *why = "zstd level outside zstd's range";
        return false;
    }
    if (is_quant(s->kind) && !block_ok(s->block)) {
        *why = "block must be a power of two in [16, 65536]";
        return false;
    }
    if (s->error_feedback && xdt_codec_is_lossless(s)) {
        *why = "+ef applies to lossy codecs only (fp16, bf16, int8, int4)";
        return false;
    }
    return true;
}

/* Parses a whole decimal integer in [lo, hi]. */
static bool parse_long(const char *s, long lo, long hi, long *out) {
    if (!((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9'))) return false;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (*end != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

xdt_status xdt_codec_parse(const char *text, xdt_codec_spec *out) {
    if (!text || !*text) return xdt_fail(XDT_ERR_CONFIG, "codec: empty spec (try none, int8, ...)");
    char buf[64];
    size_t len = strlen(text);
    if (len >= sizeof buf)
        return xdt_fail(XDT_ERR_CONFIG, "codec \"%.40s...\": spec longer than %zu characters", text,
                        sizeof buf - 1);
    memcpy(buf, text, len + 1);
    xdt_codec_spec s = {.level = XDT_CODEC_DEFAULT_LEVEL, .block = XDT_CODEC_DEFAULT_BLOCK};
    char *plus = strchr(buf, '+');
    if (plus) {
        if (strcmp(plus, "+ef") != 0)
            return xdt_fail(XDT_ERR_CONFIG, "codec \"%s\": unknown suffix \"%s\" (only +ef)", text,
                            plus);
        *plus = '\0';
        s.error_feedback = true;
    }
    char *param = strchr(buf, ':');
    if (param) *param++ = '\0';
    int kind = -1;
    for (int i = 0; i < XDT_CODEC_KIND_COUNT; i++)
        if (!strcmp(buf, kind_names[i])) kind = i;
    if (kind < 0)
        return xdt_fail(XDT_ERR_CONFIG,
                        "codec \"%s\": unknown codec \"%s\" (none, zstd, fp16, bf16, int8, int4)",
                        text, buf);
    s.kind = (xdt_codec_kind)kind;
    if (param) {
        long v = 0;
        if (s.kind == XDT_CODEC_ZSTD) {
            const char *num = strncmp(param, "level=", 6) ? param : param + 6;
            if (!parse_long(num, ZSTD_minCLevel(), ZSTD_maxCLevel(), &v))
                return xdt_fail(XDT_ERR_CONFIG,
                                "codec \"%s\": zstd level must be an integer in [%d, %d]", text,
                                ZSTD_minCLevel(), ZSTD_maxCLevel());
            s.level = (int)v;
        } else if (is_quant(s.kind)) {
            if (strncmp(param, "block=", 6) != 0 || !parse_long(param + 6, 0, LONG_MAX, &v) ||
                !block_ok(v))
                return xdt_fail(
                    XDT_ERR_CONFIG,
                    "codec \"%s\": expected block=B with B a power of two in [16, 65536]", text);
            s.block = (int)v;
        } else {
            return xdt_fail(XDT_ERR_CONFIG, "codec \"%s\": %s takes no parameter", text, buf);
        }
    }
    const char *why = NULL;
    if (!spec_valid(&s, &why)) return xdt_fail(XDT_ERR_CONFIG, "codec \"%s\": %s", text, why);
    *out = s;
    return XDT_OK;
}

const char *xdt_codec_name(const xdt_codec_spec *spec, char *buf, size_t cap) {
    if (!cap) return buf;
    const char *kind = xdt_codec_kind_name(spec->kind), *ef = spec->error_feedback ? "+ef" : "";
    if (spec->kind == XDT_CODEC_ZSTD)
        snprintf(buf, cap, "%s:%d%s", kind, spec->level, ef);
    else if (is_quant(spec->kind))
        snprintf(buf, cap, "%s:block=%d%s", kind, spec->block, ef);
    else
        snprintf(buf, cap, "%s%s", kind, ef);
    return buf;
}

/* Payload bytes after the header for n values (exact; zstd: its bound). */
static size_t body_bytes(const xdt_codec_spec *s, size_t n) {
    size_t nb = is_quant(s->kind) ? (n + (size_t)s->block - 1) / (size_t)s->block : 0;
    switch (s->kind) {
    case XDT_CODEC_NONE:
        return 4 * n;
    case XDT_CODEC_ZSTD:
        return ZSTD_compressBound(4 * n);
    case XDT_CODEC_FP16:
    case XDT_CODEC_BF16:
        return 2 * n;
    case XDT_CODEC_INT8:
        return 4 * nb + n;
    case XDT_CODEC_INT4:
        return 4 * nb + (n + 1) / 2;
    case XDT_CODEC_KIND_COUNT:
        break;
    }
    return 0;
}

size_t xdt_codec_max_encoded_bytes(const xdt_codec_spec *spec, size_t n) {
    const char *why;
    if (n > XDT_CODEC_MAX_N || !spec_valid(spec, &why)) return 0;
    return XDT_CODEC_HEADER_BYTES + body_bytes(spec, n);
}

/* ---- kernel paths ---- */

bool xdt_codec_isa_available(xdt_codec_isa isa) {
    switch (isa) {
    case XDT_CODEC_ISA_AUTO:
    case XDT_CODEC_ISA_SCALAR:
        return true;
#if XDT_CODEC_X86
    case XDT_CODEC_ISA_AVX2: {
        unsigned a = 0, b = 0, c = 0, d = 0;
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
    }
    case XDT_CODEC_ISA_AVX512:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
    case XDT_CODEC_ISA_AVX2:
    case XDT_CODEC_ISA_AVX512:
        return false;
#endif
    }
    return false;
}

static const xdt_codec_kernels *kernels_for(xdt_codec_isa isa) {
    if (!xdt_codec_isa_available(isa)) return NULL;
    switch (isa) {
#if XDT_CODEC_X86
    case XDT_CODEC_ISA_AVX512:
        return &xdt_codec_kernels_avx512;
    case XDT_CODEC_ISA_AVX2:
        return &xdt_codec_kernels_avx2;
#endif
    case XDT_CODEC_ISA_SCALAR:
        return &xdt_codec_kernels_scalar;
    default:
        break;
    }
    if (xdt_codec_isa_available(XDT_CODEC_ISA_AVX512)) return kernels_for(XDT_CODEC_ISA_AVX512);
    if (xdt_codec_isa_available(XDT_CODEC_ISA_AVX2)) return kernels_for(XDT_CODEC_ISA_AVX2);
    return &xdt_codec_kernels_scalar;
}

const char *xdt_codec_isa_name(xdt_codec_isa isa) {
    switch (isa) {
    case XDT_CODEC_ISA_AUTO:
        return "auto";
    case XDT_CODEC_ISA_SCALAR:
        return "scalar";
    case XDT_CODEC_ISA_AVX2:
        return "avx2";
    case XDT_CODEC_ISA_AVX512:
        return "avx512";
    }
    return "?";
}

xdt_status xdt_codec_set_isa(xdt_codec *c, xdt_codec_isa isa) {
    const xdt_codec_kernels *k = kernels_for(isa);
    if (!k)
        return xdt_fail(XDT_ERR_UNSUPPORTED,
                        "codec %s: kernel path %s is not available on this CPU or build", c->name,
                        xdt_codec_isa_name(isa));
    c->k = k;
    return XDT_OK;
}

xdt_codec_isa xdt_codec_get_isa(const xdt_codec *c) {
    return c->k->isa;
}

/* ---- the codec object ---- */

xdt_status xdt_codec_create(const xdt_codec_spec *spec, size_t max_n, xdt_codec **out) {
    const char *why = NULL;
    char name[XDT_CODEC_NAME_MAX];
    if (!spec_valid(spec, &why))
        return xdt_fail(XDT_ERR_CONFIG, "codec %s: %s", xdt_codec_name(spec, name, sizeof name),
                        why);
    if (max_n > XDT_CODEC_MAX_N)
        return xdt_fail(XDT_ERR_INVALID_ARG, "codec %s: %zu values exceed the payload limit of %u",
                        xdt_codec_name(spec, name, sizeof name), max_n, (unsigned)XDT_CODEC_MAX_N);
    xdt_status st = XDT_ERR_NO_MEMORY;
    xdt_codec *c = calloc(1, sizeof *c);
    if (!c) goto err_alloc;
    c->spec = *spec;
    c->max_n = max_n;
    c->ef_n = SIZE_MAX;
    c->k = kernels_for(XDT_CODEC_ISA_AUTO);
    xdt_codec_name(spec, c->name, sizeof c->name);
    if (spec->kind == XDT_CODEC_ZSTD) {
        c->cctx = ZSTD_createCCtx();
        c->dctx = ZSTD_createDCtx();
        if (!c->cctx || !c->dctx) goto err_alloc;
        size_t r = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, spec->level);
        if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1);
        if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0);
        if (ZSTD_isError(r)) {
            st = xdt_fail(XDT_ERR_CONFIG, "codec %s: zstd refused its parameters: %s", c->name,
                          ZSTD_getErrorName(r));
            goto err_zstd;
        }
    }
    if (spec->error_feedback) {
        for (int i = 0; i < 2; i++) {
            c->residual[i] = calloc(max_n ? max_n : 1, sizeof(float));
            if (!c->residual[i]) goto err_alloc;
        }
    }
    *out = c;
    return XDT_OK;
err_alloc:
    st = xdt_fail(XDT_ERR_NO_MEMORY, "codec %s: out of memory for %zu values",
                  xdt_codec_name(spec, name, sizeof name), max_n);
err_zstd:
    xdt_codec_destroy(c);
    return st;
}

void xdt_codec_destroy(xdt_codec *c) {
    if (!c) return;
    ZSTD_freeCCtx(c->cctx);
    ZSTD_freeDCtx(c->dctx);
    free(c->residual[0]);
    free(c->residual[1]);
    free(c);
}

const xdt_codec_spec *xdt_codec_get_spec(const xdt_codec *c) {
    return &c->spec;
}

void xdt_codec_reset(xdt_codec *c) {
    c->ef_n = SIZE_MAX; /* the next encode starts from a zero residual */
}

/* ---- encode ---- */

static void put_header(const xdt_codec *c, uint8_t *dst, size_t n) {
    uint32_t n32 = (uint32_t)n;
    dst[0] = (uint8_t)c->spec.kind;
    dst[1] = (uint8_t)(is_quant(c->spec.kind) ? log2_of((size_t)c->spec.block) : 0);
    dst[2] = dst[3] = 0;
    memcpy(dst + 4, &n32, 4);
}

/* Finds the first value an encode could not carry, for the error message. */
static xdt_status fail_numeric(const xdt_codec *c, const float *src, const float *r_in, size_t n) {
    size_t i = 0;
    for (; i < n; i++) {
        float y = r_in ? src[i] + r_in[i] : src[i];
        if (!isfinite(y)) break;
        if (c->spec.kind == XDT_CODEC_FP16 && !isfinite(xdt_f32_from_f16(xdt_f16_from_f32(y))))
            break;
        if (c->spec.kind == XDT_CODEC_BF16 && !isfinite(xdt_f32_from_bf16(xdt_bf16_from_f32(y))))
            break;
    }
    if (i == n) return xdt_fail(XDT_ERR_NUMERIC, "codec %s: a value cannot be carried", c->name);
    float y = r_in ? src[i] + r_in[i] : src[i];
    return xdt_fail(XDT_ERR_NUMERIC, "codec %s: value %zu is %g%s; %s", c->name, i, (double)src[i],
                    r_in ? " (with the error-feedback residual added)" : "",
                    isfinite(y) ? "it rounds to infinity, which error feedback cannot carry"
                                : "this codec carries finite values only");
}

static xdt_status encode_zstd(xdt_codec *c, const float *src, size_t n, uint8_t *body, size_t cap,
                              size_t *body_len) {
    size_t r = ZSTD_compress2(c->cctx, body, cap, src, 4 * n);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall)
            return xdt_fail(XDT_ERR_INVALID_ARG,
                            "codec %s: %zu-byte destination too small for %zu values "
                            "(xdt_codec_max_encoded_bytes gives %zu)",
                            c->name, cap + XDT_CODEC_HEADER_BYTES, n,
                            xdt_codec_max_encoded_bytes(&c->spec, n));
        return xdt_fail(ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? XDT_ERR_NO_MEMORY
                                                                             : XDT_ERR_INVALID_ARG,
                        "codec %s: zstd compression failed: %s", c->name, ZSTD_getErrorName(r));
    }
    *body_len = r;
    return XDT_OK;
}

xdt_status xdt_codec_encode(xdt_codec *c, const float *src, size_t n, void *dst, size_t cap,
                            size_t *written) {
    if (n > c->max_n)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "codec %s: %zu values to encode, created for at most %zu", c->name, n,
                        c->max_n);
    size_t need =
        XDT_CODEC_HEADER_BYTES + (c->spec.kind == XDT_CODEC_ZSTD ? 0 : body_bytes(&c->spec, n));
    if (cap < need || !dst || (n && !src))
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "codec %s: %zu values need a %zu-byte destination, got %zu", c->name, n,
                        need, dst ? cap : 0);
    uint8_t *out = dst, *body = out + XDT_CODEC_HEADER_BYTES;
    const float *r_in = NULL;
    float *r_out = NULL;
    if (c->spec.error_feedback) {
        r_in = n == c->ef_n ? c->residual[c->cur] : NULL; /* a new n starts from zero */
        r_out = c->residual[c->cur ^ 1];
    }
    size_t nb =
        is_quant(c->spec.kind) ? (n + (size_t)c->spec.block - 1) / (size_t)c->spec.block : 0;
    size_t body_len = need - XDT_CODEC_HEADER_BYTES;
    bool ok = true;
    xdt_status st;
    switch (c->spec.kind) {
    case XDT_CODEC_NONE:
        if (n) memcpy(body, src, 4 * n);
        break;
    case XDT_CODEC_ZSTD:
        st = encode_zstd(c, src, n, body, cap - XDT_CODEC_HEADER_BYTES, &body_len);
        if (st != XDT_OK) return st;
        break;
    case XDT_CODEC_FP16:
        ok = c->k->fp16_encode(src, r_in, r_out, body, n);
        break;
    case XDT_CODEC_BF16:
        ok = c->k->bf16_encode(src, r_in, r_out, body, n);
        break;
    case XDT_CODEC_INT8:
        ok = c->k->int8_encode(src, r_in, r_out, n, (size_t)c->spec.block, body, body + 4 * nb);
        break;
    case XDT_CODEC_INT4:
        ok = c->k->int4_encode(src, r_in, r_out, n, (size_t)c->spec.block, body, body + 4 * nb);
        break;
    case XDT_CODEC_KIND_COUNT:
        return xdt_fail(XDT_ERR_INVALID_ARG, "codec %s: corrupt codec object", c->name);
    }
    if (!ok) return fail_numeric(c, src, r_in, n);
    put_header(c, out, n);
    if (c->spec.error_feedback) {
        c->cur ^= 1;
        c->ef_n = n;
    }
    *written = XDT_CODEC_HEADER_BYTES + body_len;
    return XDT_OK;
}

/* ---- decode ---- */

/* Every step must be finite, non-negative, and keep levels * step finite. */
static xdt_status check_scales(const xdt_codec *c, const uint8_t *scales, size_t nb, float levels) {
    for (size_t i = 0; i < nb; i++) {
        float d = xdt_scale_at(scales, i);
        uint32_t u = xdt_f2u(d);
        if ((u >> 31) || u >= XDT_F32_INF_BITS || !isfinite(levels * d))
            return xdt_fail(
                XDT_ERR_FORMAT,
                "codec %s: block %zu carries step %g (bits 0x%08x), not a finite non-negative step",
                c->name, i, (double)d, u);
    }
    return XDT_OK;
}

static xdt_status decode_zstd(xdt_codec *c, const uint8_t *body, size_t len, float *dst, size_t n) {
    unsigned long long size = ZSTD_getFrameContentSize(body, len);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN)
        return xdt_fail(XDT_ERR_FORMAT,
                        "codec %s: payload is not a zstd frame with a recorded content size",
                        c->name);
    if (size != 4ull * n)
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: zstd frame holds %llu bytes, expected %zu",
                        c->name, size, 4 * n);
    size_t frame = ZSTD_findFrameCompressedSize(body, len);
    if (ZSTD_isError(frame) || frame != len)
        return xdt_fail(XDT_ERR_FORMAT,
                        "codec %s: zstd frame does not span the %zu-byte payload%s%s", c->name, len,
                        ZSTD_isError(frame) ? ": " : "",
                        ZSTD_isError(frame) ? ZSTD_getErrorName(frame) : "");
    size_t r = ZSTD_decompressDCtx(c->dctx, dst, 4 * n, body, len);
    if (ZSTD_isError(r))
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: zstd: %s", c->name, ZSTD_getErrorName(r));
    if (r != 4 * n)
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: zstd frame decoded to %zu bytes, expected %zu",
                        c->name, r, 4 * n);
    return XDT_OK;
}

xdt_status xdt_codec_decode(xdt_codec *c, const void *src, size_t len, float *dst, size_t n) {
    if (n > c->max_n || (n && !dst))
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "codec %s: %zu values to decode, created for at most %zu", c->name, n,
                        c->max_n);
    const uint8_t *in = src;
    if (len < XDT_CODEC_HEADER_BYTES || !in)
        return xdt_fail(XDT_ERR_FORMAT,
                        "codec %s: %zu-byte payload, shorter than its %d-byte header", c->name, len,
                        XDT_CODEC_HEADER_BYTES);
    uint32_t count;
    memcpy(&count, in + 4, 4);
    uint8_t want_log2 = (uint8_t)(is_quant(c->spec.kind) ? log2_of((size_t)c->spec.block) : 0);
    if (in[0] != (uint8_t)c->spec.kind)
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: payload is encoded with codec id %u (%s)",
                        c->name, in[0], xdt_codec_kind_name((xdt_codec_kind)in[0]));
    if (in[1] != want_log2)
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: payload has block parameter %u, expected %u",
                        c->name, in[1], want_log2);
    if (in[2] || in[3])
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: payload header's reserved bytes are not zero",
                        c->name);
    if (count != n)
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: payload holds %u values, expected %zu", c->name,
                        count, n);
    const uint8_t *body = in + XDT_CODEC_HEADER_BYTES;
    size_t body_len = len - XDT_CODEC_HEADER_BYTES;
    if (c->spec.kind == XDT_CODEC_ZSTD) return decode_zstd(c, body, body_len, dst, n);
    if (body_len != body_bytes(&c->spec, n))
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: %zu-byte payload, %zu values need %zu", c->name,
                        len, n, XDT_CODEC_HEADER_BYTES + body_bytes(&c->spec, n));
    size_t block = (size_t)c->spec.block, nb = is_quant(c->spec.kind) ? (n + block - 1) / block : 0;
    bool ok = true;
    xdt_status st;
    switch (c->spec.kind) {
    case XDT_CODEC_NONE:
        if (n) memcpy(dst, body, 4 * n);
        break;
    case XDT_CODEC_FP16:
        c->k->fp16_decode(body, dst, n);
        break;
    case XDT_CODEC_BF16:
        c->k->bf16_decode(body, dst, n);
        break;
    case XDT_CODEC_INT8:
        if ((st = check_scales(c, body, nb, 127.0f)) != XDT_OK) return st;
        ok = c->k->int8_decode(body, body + 4 * nb, dst, n, block);
        break;
    case XDT_CODEC_INT4:
        if ((st = check_scales(c, body, nb, 7.0f)) != XDT_OK) return st;
        if ((n & 1) && (body[body_len - 1] >> 4))
            return xdt_fail(XDT_ERR_FORMAT, "codec %s: the unused last nibble is not zero",
                            c->name);
        ok = c->k->int4_decode(body, body + 4 * nb, dst, n, block);
        break;
    default:
        return xdt_fail(XDT_ERR_INVALID_ARG, "codec %s: corrupt codec object", c->name);
    }
    if (!ok)
        return xdt_fail(XDT_ERR_FORMAT, "codec %s: payload holds a code outside [%d, %d]", c->name,
                        c->spec.kind == XDT_CODEC_INT8 ? -127 : -7,
                        c->spec.kind == XDT_CODEC_INT8 ? 127 : 7);
    return XDT_OK;
}
