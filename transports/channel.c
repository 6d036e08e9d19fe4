/* channel.c: codec + frame + transport for tensors between two ranks. */
#include "transports/channel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct xdt_channel {
    xdt_transport *t;
    int peer;
    xdt_channel_config cfg;
    xdt_codec *enc;
    xdt_codec *dec[XDT_CODEC_KIND_COUNT]; /* one per codec the peer sends with, made on first use */
    int dec_block[XDT_CODEC_KIND_COUNT];  /* the int8/int4 block each was made for */
    unsigned char *out, *in;              /* frame header + payload */
    size_t cap;
    uint64_t send_seq, recv_seq;
    uint64_t wire_bytes, raw_bytes;
};

xdt_status xdt_channel_create(xdt_transport *t, int peer, const xdt_channel_config *cfg,
                              xdt_channel **out) {
    xdt_channel *ch = calloc(1, sizeof *ch);
    if (!ch) return xdt_fail(XDT_ERR_NO_MEMORY, "channel: out of memory");
    ch->t = t;
    ch->peer = peer;
    ch->cfg = *cfg;
    if (ch->cfg.timeout_ms == 0) ch->cfg.timeout_ms = XDT_DEFAULT_TIMEOUT_MS;
    /* the receiver does not know the sender's codec parameters, only its id: a payload
     * carries its own header (codec, block, count), so one decoder of any spec decodes all */
    size_t payload = xdt_codec_max_encoded_bytes(&cfg->codec, cfg->max_floats);
    xdt_codec_spec raw = {.kind = XDT_CODEC_NONE};
    size_t payload_raw = xdt_codec_max_encoded_bytes(&raw, cfg->max_floats);
    ch->cap = XDT_FRAME_HEADER_BYTES + (payload > payload_raw ? payload : payload_raw) + 64;
    xdt_status st = XDT_ERR_NO_MEMORY;
    ch->out = malloc(ch->cap);
    ch->in = malloc(ch->cap);
    if (!ch->out || !ch->in || !payload) {
        st = xdt_fail(payload ? XDT_ERR_NO_MEMORY : XDT_ERR_CONFIG,
                      "channel to rank %d: cannot size buffers for %zu floats", peer,
                      cfg->max_floats);
        goto err;
    }
    if ((st = xdt_codec_create(&cfg->codec, cfg->max_floats, &ch->enc))) goto err;
    *out = ch;
    return XDT_OK;
err:
    xdt_channel_destroy(ch);
    return st;
}

void xdt_channel_destroy(xdt_channel *ch) {
    if (!ch) return;
    xdt_codec_destroy(ch->enc);
    for (int k = 0; k < XDT_CODEC_KIND_COUNT; k++)
        xdt_codec_destroy(ch->dec[k]);
    free(ch->out);
    free(ch->in);
    free(ch);
}

size_t xdt_channel_wire_capacity(const xdt_channel *ch) {
    return ch->cap;
}

xdt_status xdt_channel_pack_into(xdt_channel *ch, uint64_t tag, uint64_t seq, const float *x,
                                 size_t n, unsigned char *out, size_t cap, size_t *len) {
    if (n > ch->cfg.max_floats)
        return xdt_fail(XDT_ERR_INVALID_ARG, "channel to rank %d: tensor of %zu floats exceeds %zu",
                        ch->peer, n, ch->cfg.max_floats);
    if (cap < XDT_FRAME_HEADER_BYTES)
        return xdt_fail(XDT_ERR_INVALID_ARG, "channel to rank %d: wire buffer of %zu bytes",
                        ch->peer, cap);
    size_t plen = 0;
    unsigned char *payload = out + XDT_FRAME_HEADER_BYTES;
    xdt_status st = xdt_codec_encode(ch->enc, x, n, payload, cap - XDT_FRAME_HEADER_BYTES, &plen);
    if (st) return st;
    xdt_frame_header h = {
        .job_id = ch->cfg.job_id,
        .src_rank = (uint32_t)ch->t->rank,
        .dst_rank = (uint32_t)ch->peer,
        .tag = tag,
        .seq = seq,
        .raw_size = n * sizeof(float),
        .codec = (uint8_t)ch->cfg.codec.kind,
    };
    xdt_frame_seal(&h, payload, plen);
    xdt_frame_encode_header(&h, out);
    *len = XDT_FRAME_HEADER_BYTES + plen;
    ch->wire_bytes += *len;
    ch->raw_bytes += n * sizeof(float);
    return XDT_OK;
}

xdt_status xdt_channel_pack(xdt_channel *ch, uint64_t tag, const float *x, size_t n,
                            const unsigned char **bytes, size_t *len) {
    xdt_status st = xdt_channel_pack_into(ch, tag, ch->send_seq, x, n, ch->out, ch->cap, len);
    if (st) return st;
    ch->send_seq++;
    *bytes = ch->out;
    return XDT_OK;
}

xdt_status xdt_channel_send(xdt_channel *ch, uint64_t tag, const float *x, size_t n) {
    const unsigned char *bytes;
    size_t len;
    xdt_status st = xdt_channel_pack(ch, tag, x, n, &bytes, &len);
    return st ? st : xdt_send(ch->t, ch->peer, tag, bytes, len, ch->cfg.timeout_ms);
}

xdt_status xdt_channel_unpack(xdt_channel *ch, uint64_t tag, uint64_t seq,
                              const unsigned char *bytes, size_t len, float *x, size_t n) {
    xdt_frame_expect e = {
        .job_id = ch->cfg.job_id,
        .src_rank = (uint32_t)ch->peer,
        .dst_rank = (uint32_t)ch->t->rank,
        .tag = tag,
        .tag_mask = XDT_TAG_MASK_ALL,
        .seq = seq,
        .max_raw = n * sizeof(float),
        .max_encoded = ch->cap - XDT_FRAME_HEADER_BYTES,
    };
    for (int id = 0; id < XDT_CODEC_KIND_COUNT; id++)
        xdt_frame_expect_allow_codec(&e, (uint8_t)id);
    xdt_frame_header h;
    xdt_status st;
    if ((st = xdt_frame_decode_header(bytes, len, &e, &h)) ||
        (st = xdt_frame_check_payload(&h, bytes + XDT_FRAME_HEADER_BYTES,
                                      len - XDT_FRAME_HEADER_BYTES)))
        return st;
    if (h.raw_size != n * sizeof(float))
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %d: field 'raw_size' is %llu, expected %zu", ch->peer,
                        (unsigned long long)h.raw_size, n * sizeof(float));
    /* the peer's codec may differ from ours (each end of a link encodes what it sends); the
     * payload's header names its block (byte 1, log2), which the decoder must be made for */
    const unsigned char *payload = bytes + XDT_FRAME_HEADER_BYTES;
    const bool blocked = h.codec == XDT_CODEC_INT8 || h.codec == XDT_CODEC_INT4;
    const int block = blocked && h.encoded_size >= 2 && payload[1] < 17 ? 1 << payload[1]
                                                                        : XDT_CODEC_DEFAULT_BLOCK;
    if (ch->dec[h.codec] && ch->dec_block[h.codec] != block) {
        xdt_codec_destroy(ch->dec[h.codec]);
        ch->dec[h.codec] = NULL;
    }
    if (!ch->dec[h.codec]) {
        xdt_codec_spec spec = {.kind = (xdt_codec_kind)h.codec,
                               .level = XDT_CODEC_DEFAULT_LEVEL,
                               .block =
                                   block < XDT_CODEC_MIN_BLOCK ? XDT_CODEC_DEFAULT_BLOCK : block};
        if ((st = xdt_codec_create(&spec, ch->cfg.max_floats, &ch->dec[h.codec]))) return st;
        ch->dec_block[h.codec] = block;
    }
    return xdt_codec_decode(ch->dec[h.codec], bytes + XDT_FRAME_HEADER_BYTES, h.encoded_size, x, n);
}

xdt_status xdt_channel_recv(xdt_channel *ch, uint64_t tag, float *x, size_t n) {
    size_t got = 0;
    xdt_status st = xdt_recv(ch->t, ch->peer, tag, ch->in, ch->cap, &got, ch->cfg.timeout_ms);
    if (st) return st;
    if ((st = xdt_channel_unpack(ch, tag, ch->recv_seq, ch->in, got, x, n))) return st;
    ch->recv_seq++;
    return XDT_OK;
}

void xdt_channel_stats(const xdt_channel *ch, uint64_t *wire_bytes, uint64_t *raw_bytes) {
    *wire_bytes = ch->wire_bytes;
    *raw_bytes = ch->raw_bytes;
}
