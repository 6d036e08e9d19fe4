/* model_setup.h: steps shared by `xdt train` and `xdt eval`: refusing a batch that does not fit
 * in memory, building the whole-model stage, and averaging the loss over token windows. */
#ifndef XDT_MODEL_SETUP_H
#define XDT_MODEL_SETUP_H

#include <stdbool.h>

#include "core/gpt.h"
#include "core/token_data.h"

/* Fails, naming --batch and --seq, when the stage (and AdamW state when `training`) would need
 * more memory than is available. */
xdt_status xdt_check_memory_fits(const xdt_model_config *cfg, int b, int t, bool training);

/* The same check against the free memory of a device that has its own (a GPU: ops->mem_info),
 * naming the device; XDT_OK for devices that use host memory (checked by the function above). */
xdt_status xdt_check_device_memory_fits(xdt_device *dev, const xdt_model_config *cfg, int b, int t,
                                        bool training);

/* Copies one batch (b*t inputs and targets on the host) into slot 0 of the stage. */
void xdt_stage_load_batch(xdt_stage *stage, const int32_t *inputs, const int32_t *targets);

/* Mean cross-entropy of the stage (whole model) over `n` windows; window(i) fills the host
 * buffers. */
typedef void (*xdt_window_fn)(void *arg, int i, int32_t *inputs, int32_t *targets);
xdt_status xdt_mean_loss(xdt_stage *stage, int n, xdt_window_fn window, void *arg, int32_t *inputs,
                         int32_t *targets, double *out);

#endif
