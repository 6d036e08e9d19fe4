/* fuzz_frame_decode.c: libFuzzer target for the frame decoder. Arbitrary bytes (after a mode byte,
 * see frame_fuzz_seeds.h) are decoded against a fixed expectation and, when the header passes,
 * the rest is checked as the payload. It must never crash or read past the input; and a header
 * that decodes must re-encode to the very same 80 bytes (decoding is exact and canonical). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transports/frame/frame.h"
#include "transports/frame/frame_fuzz_seeds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const uint8_t mode = data[0];
    const size_t n = size - 1;
    /* An exact-size heap copy, so ASan sees any read past the frame (and repairs can write). */
    uint8_t *f = malloc(n ? n : 1);
    if (!f) return 0;
    if (n) memcpy(f, data + 1, n);
    fuzz_frame_repair(mode, f, n);

    xdt_frame_expect e;
    fuzz_frame_expect(&e);
    xdt_frame_header h;
    memset(&h, 0xa5, sizeof h);
    const xdt_frame_header before = h;
    xdt_status st = xdt_frame_decode_header(n ? f : NULL, n, &e, &h);
    if (st != XDT_OK) {
        if (st != XDT_ERR_FORMAT || memcmp(&h, &before, sizeof h) != 0) __builtin_trap();
        goto out;
    }
    uint8_t again[XDT_FRAME_HEADER_BYTES];
    xdt_frame_encode_header(&h, again);
    if (memcmp(again, f, XDT_FRAME_HEADER_BYTES) != 0) __builtin_trap();
    char line[512];
    xdt_frame_describe(&h, line, sizeof line);
    st = xdt_frame_check_payload(&h, n > XDT_FRAME_HEADER_BYTES ? f + XDT_FRAME_HEADER_BYTES : NULL,
                                 n - XDT_FRAME_HEADER_BYTES);
    if (st != XDT_OK && st != XDT_ERR_FORMAT) __builtin_trap();
out:
    free(f);
    return 0;
}
