/* profile.h: measured forward and backward times of every model unit on one device type, read
 * from the profile.json that `xdt profile` writes (the format is documented in
 * tools/cmd_profile.c). The cost model uses a profile in place of its roofline when the device
 * type, the model's dimensions and the sequence length all match. */
#ifndef XDT_PROFILE_H
#define XDT_PROFILE_H

#include <stdbool.h>

#include "core/model_config.h"
#include "core/status.h"

#define XDT_PROFILE_VERSION 1

typedef struct xdt_profile {
    char device_type[32];   /* the catalog name the times belong to ("cpu", "H100-SXM") */
    xdt_model_config model; /* name and dimensions; max_seq_len is not recorded (0) */
    int seq;                /* T: tokens per row the times were measured at */
    int threads;            /* CPU threads used (informational) */
    double sgemm_tflops;    /* the device's measured GEMM rate at those threads */
    int n_units;            /* model.n_layer + 2 */
    int n_mb;               /* measured microbatch sizes, >= 1 */
    int *b;                 /* [n_mb] microbatch rows, strictly increasing */
    double *fwd_ms;         /* [n_mb * n_units]: fwd_ms[i * n_units + unit] for b[i] */
    double *bwd_ms;         /* [n_mb * n_units] */
} xdt_profile;

/* Reads and checks a profile file: version, device type, model dimensions, seq, and for every
 * microbatch its n_layer + 2 units with non-negative times. Errors are one line naming the file
 * and the field ("p.json: field 'microbatches[0].units[2].fwd_ms' is -1, must be >= 0"); they
 * return XDT_ERR_IO (unreadable) or XDT_ERR_FORMAT. *out is set only on success and is owned by
 * the caller (xdt_profile_free). */
xdt_status xdt_profile_load(const char *path, xdt_profile *out);

/* Frees what a load allocated; safe on a zeroed or already freed profile. */
void xdt_profile_free(xdt_profile *p);

/* Whether the profile was measured for this model's dimensions (n_layer, n_embd, n_head,
 * vocab_size, padded_vocab_size; the name is not compared) at `seq` tokens per row. */
bool xdt_profile_matches(const xdt_profile *p, const xdt_model_config *cfg, int seq);

/* Forward and backward milliseconds of `unit` (0 .. n_units-1) for microbatches of b rows. Exact
 * when b was measured; otherwise the nearest measured size (the larger one on a tie) scaled
 * linearly in tokens, i.e. by b / b_measured at the profile's seq. */
void xdt_profile_unit_ms(const xdt_profile *p, int unit, int b, double *fwd_ms, double *bwd_ms);

#endif
