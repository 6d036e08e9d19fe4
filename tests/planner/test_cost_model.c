/* test_cost_model.c: stage costs from the unit figures: memory is 16 bytes a parameter plus
 * retained activations per microbatch in flight, the head apart from the embedding carries the
 * tied copy, faster devices take less time in proportion to peak when compute bound, slowdown
 * stretches time, and a stage too big for a device is refused with a readable reason. */
#include <string.h>

#include "planner/cost_model.h"
#include "tests/unit/test_util.h"

int main(void) {
    char path[2048];
    const char *root = getenv("XDT_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/configs/devices.yaml", root ? root : ".");
    xdt_device_catalog cat;
    CHECK(xdt_device_catalog_load(path, &cat) == XDT_OK);
    snprintf(path, sizeof path, "%s/configs/models/gpt2-124M.yaml", root ? root : ".");
    xdt_model_config cfg;
    CHECK(xdt_model_config_load(path, &cfg) == XDT_OK);
    const xdt_device_type *h100 = xdt_device_catalog_find(&cat, "H100-SXM");
    const xdt_device_type *a100 = xdt_device_catalog_find(&cat, "A100-80GB");
    const xdt_device_type *t4 = xdt_device_catalog_find(&cat, "T4");
    xdt_cost_params bf16 = {XDT_PRECISION_BF16, 0.5};
    const int L = cfg.n_layer;

    /* memory of the whole model, independently summed from the unit figures */
    xdt_stage_cost whole, w2;
    xdt_stage_cost_estimate(&cfg, 0, L + 1, 8, 1024, 1, h100, 1, &bf16, &whole);
    xdt_stage_cost_estimate(&cfg, 0, L + 1, 8, 1024, 2, h100, 1, &bf16, &w2);
    double params = 0, retained = 0;
    for (int u = 0; u <= L + 1; u++) {
        xdt_unit_info info;
        xdt_gpt_unit_info(&cfg, u, 8, 1024, &info);
        params += (double)info.params;
        retained += (double)info.retained_bytes;
    }
    CHECK(whole.params == params);
    CHECK(fabs(whole.memory_bytes - (16 * params + retained)) < 1);
    CHECK(fabs(w2.memory_bytes - whole.memory_bytes - retained) < 1);
    CHECK(whole.boundary_bytes == 0); /* the last stage sends nothing onward */
    CHECK(params > 124e6 && params < 125e6);

    /* fused attention: each block keeps its rows' statistics, not the t x t probabilities, on
     * a GPU; a CPU keeps them */
    xdt_cost_params fused = bf16;
    fused.fused_attention = true;
    xdt_stage_cost whole_f, cpu_e, cpu_f;
    xdt_stage_cost_estimate(&cfg, 0, L + 1, 8, 1024, 2, h100, 1, &fused, &whole_f);
    const double saved = 4.0 * ((double)xdt_gpt_attention_state_floats(&cfg, 8, 1024, false) -
                                (double)xdt_gpt_attention_state_floats(&cfg, 8, 1024, true));
    CHECK(saved == 4.0 * (8.0 * 12 * 1024 * 1024 - 8.0 * 12 * 1024));
    CHECK_MSG(fabs(w2.memory_bytes - whole_f.memory_bytes - 2 * L * saved) < 1,
              "fused saves %.0f bytes, want %.0f", w2.memory_bytes - whole_f.memory_bytes,
              2 * L * saved);
    CHECK(whole_f.params == w2.params);
    const xdt_device_type *cpu = xdt_device_catalog_find(&cat, "cpu");
    CHECK(cpu != NULL);
    if (cpu) {
        xdt_stage_cost_estimate(&cfg, 1, L, 8, 1024, 1, cpu, 1, &bf16, &cpu_e);
        xdt_stage_cost_estimate(&cfg, 1, L, 8, 1024, 1, cpu, 1, &fused, &cpu_f);
        CHECK(cpu_e.memory_bytes == cpu_f.memory_bytes);
    }
    /* heads wider than the fused kernels take keep the probabilities */
    xdt_model_config wide = cfg;
    wide.n_head = 6; /* 128-dim heads */
    CHECK(xdt_gpt_attention_state_floats(&wide, 2, 64, true) ==
          xdt_gpt_attention_state_floats(&wide, 2, 64, false));

    /* a head stage apart from the embedding holds the tied copy */
    xdt_stage_cost head;
    xdt_stage_cost_estimate(&cfg, L, L + 1, 8, 1024, 1, h100, 1, &bf16, &head);
    xdt_unit_info hi;
    xdt_gpt_unit_info(&cfg, L + 1, 8, 1024, &hi);
    CHECK(head.params > (double)hi.tied_params);

    /* compute bound blocks: time ratio follows the bf16 peak ratio */
    xdt_stage_cost on_h, on_a, slow;
    xdt_stage_cost_estimate(&cfg, 1, L, 8, 1024, 1, h100, 1, &bf16, &on_h);
    xdt_stage_cost_estimate(&cfg, 1, L, 8, 1024, 1, a100, 1, &bf16, &on_a);
    xdt_stage_cost_estimate(&cfg, 1, L, 8, 1024, 1, h100, 2, &bf16, &slow);
    double want = h100->tflops_bf16 / a100->tflops_bf16;
    CHECK_MSG(fabs(on_a.fwd_ms / on_h.fwd_ms - want) < 0.05 * want, "ratio %.3f want %.3f",
              on_a.fwd_ms / on_h.fwd_ms, want);
    CHECK(on_h.bwd_ms > on_h.fwd_ms);
    CHECK(fabs(slow.fwd_ms - 2 * on_h.fwd_ms) < 1e-9 * slow.fwd_ms);
    CHECK(on_h.boundary_bytes == 8.0 * 1024 * cfg.n_embd * 4);

    /* too big for a T4 */
    xdt_stage_cost big;
    char why[160] = "";
    xdt_stage_cost_estimate(&cfg, 0, L + 1, 16, 1024, 4, t4, 1, &bf16, &big);
    CHECK(!xdt_stage_fits(&big, t4, 3, why, sizeof why));
    CHECK_MSG(strstr(why, "stage 3 on T4 needs") && strstr(why, "has 16.0 GiB"), "%s", why);
    CHECK(xdt_stage_fits(&whole, h100, 0, why, sizeof why));
    return test_exit_code("test_cost_model");
}
