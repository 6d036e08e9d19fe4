/* gpt.h: a GPT-2 style decoder cut into pipeline units (embedding, n_layer blocks, head), and
 * stages: any contiguous range of units built on one device, with its parameters in one
 * allocation and activation slots for the microbatches it keeps in flight.
 *
 * Unit u: 0 = embedding (token + position), 1..L = transformer block u-1 (pre-LN, causal
 * multi-head attention, GELU MLP of width 4C), L+1 = head (final LN, LM head tied to the token
 * embedding, cross-entropy). Shapes: B microbatch rows, T tokens, C channels, Vp padded vocab. */
#ifndef XDT_GPT_H
#define XDT_GPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/model_config.h"
#include "core/status.h"
#include "devices/device.h"

typedef enum xdt_unit_kind {
    XDT_UNIT_EMBEDDING = 0,
    XDT_UNIT_BLOCK = 1,
    XDT_UNIT_HEAD = 2,
} xdt_unit_kind;

/* What one unit costs, per microbatch of B x T tokens. */
typedef struct xdt_unit_info {
    xdt_unit_kind kind;
    int layer;     /* block index, -1 for embedding and head */
    size_t params; /* parameters the unit owns (the head's tied LM weight not counted) */
    size_t
        tied_params;  /* head only: Vp*C, held again when the head sits apart from the embedding */
    double fwd_flops; /* forward floating-point operations */
    double bwd_flops; /* backward floating-point operations */
    size_t boundary_bytes; /* activation bytes sent to the next unit (0 for the head) */
    size_t retained_bytes; /* activation bytes kept from forward to backward */
} xdt_unit_info;

/* Heads of up to this many dims take the GPU backends' fused attention when asked
 * (devices/cuda/gpu_flash_attention.cu's kHeadMax; test_device_ops checks the two agree). */
#define XDT_FUSED_ATTENTION_HEAD_MAX 64

/* Floats one block keeps for its attention's backward per microbatch of b x t: the probabilities
 * (b nh t t), or with `fused` (a GPU's flash attention, heads up to
 * XDT_FUSED_ATTENTION_HEAD_MAX) the rows' log-sum-exp (b nh t). */
size_t xdt_gpt_attention_state_floats(const xdt_model_config *cfg, int b, int t, bool fused);

/* The parameter tensors, by role; llm.c's file order follows this enum. */
typedef enum xdt_param_role {
    XDT_P_WTE = 0,
    XDT_P_WPE,
    XDT_P_LN1W,
    XDT_P_LN1B,
    XDT_P_QKVW,
    XDT_P_QKVB,
    XDT_P_ATTPROJW,
    XDT_P_ATTPROJB,
    XDT_P_LN2W,
    XDT_P_LN2B,
    XDT_P_FCW,
    XDT_P_FCB,
    XDT_P_FCPROJW,
    XDT_P_FCPROJB,
    XDT_P_LNFW,
    XDT_P_LNFB,
    XDT_P_LM_HEAD, /* the head's copy of wte when the embedding is on another stage */
    XDT_P_ROLE_COUNT
} xdt_param_role;

typedef struct xdt_param_tensor {
    xdt_param_role role;
    int layer;     /* for block tensors, else -1 */
    size_t offset; /* elements into the stage's parameter allocation */
    size_t count;  /* elements */
    bool decay;    /* AdamW weight decay applies (matrices and embeddings, not biases or LN) */
} xdt_param_tensor;

/* Number of units: n_layer + 2. */
int xdt_gpt_num_units(const xdt_model_config *cfg);
/* Fills the cost figures of unit `unit` for microbatches of b x t tokens. */
void xdt_gpt_unit_info(const xdt_model_config *cfg, int unit, int b, int t, xdt_unit_info *out);
/* Name of a parameter role as llm.c and checkpoints print it ("qkvw"). */
const char *xdt_param_role_name(xdt_param_role role);

typedef struct xdt_stage xdt_stage;

/* Bytes a stage would allocate: parameters with gradients, AdamW state, activations for n_slots
 * microbatches, and backward scratch; and what the device's backend allocates for itself to
 * run them (device_workspace_bytes: a GPU's bf16 copies and reduction partials). Lets callers
 * refuse a batch that does not fit. On `dev` when given (its attention may keep less than the
 * t x t probabilities); dev NULL gives the bound for any device without a workspace of its own. */
typedef struct xdt_stage_memory {
    size_t params_bytes, grads_bytes, optimizer_bytes, activation_bytes, scratch_bytes;
    size_t device_workspace_bytes;
} xdt_stage_memory;
void xdt_stage_memory_estimate(const xdt_model_config *cfg, xdt_device *dev, int first_unit,
                               int last_unit, int b, int t, int n_slots, xdt_stage_memory *out);
/* All of it, in bytes; the optimizer's state only when training. */
double xdt_stage_memory_total(const xdt_stage_memory *m, bool training);

/* Builds units [first_unit, last_unit] on `dev` for microbatches of b x t (t <= max_seq_len),
 * keeping n_slots microbatches in flight. Parameters are zero until xdt_stage_init_params or a
 * load. Everything is allocated here; forward and backward allocate nothing. */
xdt_status xdt_stage_create(const xdt_model_config *cfg, xdt_device *dev, int first_unit,
                            int last_unit, int b, int t, int n_slots, xdt_stage **out);
void xdt_stage_destroy(xdt_stage *stage);

/* GPT-2 initialisation: N(0, 0.02) matrices, residual projections scaled by 1/sqrt(2L), zero
 * biases, unit LN weights. Each tensor draws from its own stream of `seed`, so any split of the
 * model into stages starts from the same weights (the head's wte copy equals wte). */
xdt_status xdt_stage_init_params(xdt_stage *stage, uint64_t seed);

/* The unit range [first, last] the stage was built for. */
void xdt_stage_unit_range(const xdt_stage *stage, int *first, int *last);
/* The microbatch shape (rows b, tokens t) the stage was built for. */
void xdt_stage_batch_shape(const xdt_stage *stage, int *b, int *t);
bool xdt_stage_has_embedding(const xdt_stage *stage);
bool xdt_stage_has_head(const xdt_stage *stage);
const xdt_model_config *xdt_stage_config(const xdt_stage *stage);
xdt_device *xdt_stage_device(const xdt_stage *stage);

/* Parameters (device memory) and their table. */
float *xdt_stage_params(xdt_stage *stage);
float *xdt_stage_grads(xdt_stage *stage);
size_t xdt_stage_num_params(const xdt_stage *stage);
const xdt_param_tensor *xdt_stage_tensors(const xdt_stage *stage, int *count);

/* Per-slot device buffers the caller fills before forward: tokens (B*T int32, embedding stage),
 * targets (B*T int32, head stage), input activations (B*T*C, other stages). */
int32_t *xdt_stage_tokens(xdt_stage *stage, int slot);
int32_t *xdt_stage_targets(xdt_stage *stage, int slot);
float *xdt_stage_input(xdt_stage *stage, int slot);
/* Boundary activations (B*T*C) to send onward after forward (non-head stages). */
const float *xdt_stage_output(xdt_stage *stage, int slot);

/* Runs the forward of every unit for `slot`. On the head stage it computes the per-token losses
 * and, with want_grad, the logits' gradient scaled by dloss_scale (1 / tokens in the step). */
xdt_status xdt_stage_forward(xdt_stage *stage, int slot, bool want_grad, float dloss_scale);
/* Mean per-token loss of `slot` after forward (head stage). */
xdt_status xdt_stage_loss(xdt_stage *stage, int slot, double *mean_loss);

/* Where the gradient of the stage's output arrives before backward (non-head stages). */
float *xdt_stage_grad_output(xdt_stage *stage);
/* Backward of every unit for `slot`, accumulating into the parameter gradients. Afterwards
 * xdt_stage_grad_input holds the gradient of the stage's input (non-embedding stages). */
xdt_status xdt_stage_backward(xdt_stage *stage, int slot);
const float *xdt_stage_grad_input(xdt_stage *stage);
void xdt_stage_zero_grads(xdt_stage *stage);

#endif
