/* test_profile.c: profile.json as `xdt profile` writes it: loading (rows sorted by b), exact
 * lookup, linear token scaling from the nearest measured b for unmeasured sizes, the cost model
 * taking stage times from a matching profile (sum of unit times x slowdown) and falling back to
 * its roofline when the device type, the model's dimensions or seq differ, and malformed files
 * refused with one line naming the file and the field. */
#include <fcntl.h>
#include <string.h>

#include "planner/cost_model.h"
#include "planner/profile.h"
#include "tests/unit/test_util.h"

/* gpt-tiny (n_layer 2: units 0..3) at seq 32; b = 4 listed before b = 1. */
static const char *GOOD =
    "{\"version\": 1, \"device_type\": \"cpu\",\n"
    " \"model\": {\"name\": \"gpt-tiny\", \"n_layer\": 2, \"n_embd\": 64, \"n_head\": 4,\n"
    "           \"vocab_size\": 256, \"padded_vocab_size\": 256},\n"
    " \"seq\": 32, \"threads\": 2, \"reps\": 3, \"sgemm_tflops\": 0.17,\n"
    " \"microbatches\": [\n"
    "  {\"b\": 4, \"units\": [{\"unit\": 0, \"fwd_ms\": 3, \"bwd_ms\": 6},\n"
    "                       {\"unit\": 1, \"fwd_ms\": 5, \"bwd_ms\": 10},\n"
    "                       {\"unit\": 2, \"fwd_ms\": 7, \"bwd_ms\": 14},\n"
    "                       {\"unit\": 3, \"fwd_ms\": 9, \"bwd_ms\": 18}]},\n"
    "  {\"b\": 1, \"units\": [{\"unit\": 0, \"fwd_ms\": 1, \"bwd_ms\": 2},\n"
    "                       {\"unit\": 1, \"fwd_ms\": 2, \"bwd_ms\": 4},\n"
    "                       {\"unit\": 2, \"fwd_ms\": 3, \"bwd_ms\": 6},\n"
    "                       {\"unit\": 3, \"fwd_ms\": 4, \"bwd_ms\": 8}]}]}\n";

static bool near(double a, double b) {
    return fabs(a - b) <= 1e-12 * (fabs(b) > 1 ? fabs(b) : 1);
}

/* GOOD with the first occurrence of `from` replaced by `to` (the test fails if it is absent). */
static void variant(const char *from, const char *to, char *dst, size_t cap) {
    const char *at = strstr(GOOD, from);
    CHECK_MSG(at != NULL, "template lacks '%s'", from);
    if (!at) {
        snprintf(dst, cap, "%s", GOOD);
        return;
    }
    snprintf(dst, cap, "%.*s%s%s", (int)(at - GOOD), GOOD, to, at + strlen(from));
}

/* Loads `text` from a temp file; returns the status and the stderr text in msg. */
static xdt_status load_text(const char *text, xdt_profile *p, char *path, char *msg, size_t cap) {
    msg[0] = 0;
    if (test_write_temp(text, path) != 0) {
        CHECK(!"cannot write a temp file");
        return XDT_ERR_IO;
    }
    char err_path[32];
    strcpy(err_path, "/tmp/xdt-test-err-XXXXXX");
    int err_fd = mkstemp(err_path), saved = dup(2);
    fflush(stderr);
    dup2(err_fd, 2);
    xdt_status st = xdt_profile_load(path, p);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    lseek(err_fd, 0, SEEK_SET);
    ssize_t n = read(err_fd, msg, cap - 1);
    msg[n > 0 ? n : 0] = 0;
    close(err_fd);
    unlink(err_path);
    return st;
}

static void expect_bad(const char *from, const char *to, xdt_status want, const char *field) {
    char text[4096], path[32], msg[512];
    variant(from, to, text, sizeof text);
    xdt_profile p;
    xdt_profile before;
    memset(&p, 0x5a, sizeof p);
    memcpy(&before, &p, sizeof p);
    xdt_status st = load_text(text, &p, path, msg, sizeof msg);
    CHECK_MSG(st == want, "'%s' -> '%s': status %d, want %d", from, to, st, want);
    CHECK_MSG(strstr(msg, path) && strstr(msg, field), "'%s' -> '%s': message '%s' lacks '%s'",
              from, to, msg, field);
    CHECK_MSG(strchr(msg, '\n') == msg + strlen(msg) - 1, "not one line: '%s'", msg);
    CHECK_MSG(!memcmp(&p, &before, sizeof p), "'%s' -> '%s': output changed on failure", from, to);
    unlink(path);
}

int main(void) {
    char path[2048];
    const char *root = getenv("XDT_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/configs/devices.yaml", root ? root : ".");
    xdt_device_catalog cat;
    CHECK(xdt_device_catalog_load(path, &cat) == XDT_OK);
    snprintf(path, sizeof path, "%s/configs/models/gpt-tiny.yaml", root ? root : ".");
    xdt_model_config cfg;
    CHECK(xdt_model_config_load(path, &cfg) == XDT_OK);
    const xdt_device_type *cpu = xdt_device_catalog_find(&cat, "cpu");
    const xdt_device_type *h100 = xdt_device_catalog_find(&cat, "H100-SXM");
    CHECK(cpu && h100);
    if (!cpu || !h100) return test_exit_code("test_profile");

    /* load: fields, rows ordered by b */
    xdt_profile prof;
    char tmp[32], msg[512];
    CHECK(load_text(GOOD, &prof, tmp, msg, sizeof msg) == XDT_OK);
    CHECK_MSG(msg[0] == 0, "a good file printed '%s'", msg);
    unlink(tmp);
    CHECK(!strcmp(prof.device_type, "cpu") && !strcmp(prof.model.name, "gpt-tiny"));
    CHECK(prof.seq == 32 && prof.threads == 2 && near(prof.sgemm_tflops, 0.17));
    CHECK(prof.n_units == 4 && prof.n_mb == 2 && prof.b[0] == 1 && prof.b[1] == 4);

    /* exact lookup */
    double f = 0, g = 0;
    xdt_profile_unit_ms(&prof, 2, 4, &f, &g);
    CHECK_MSG(f == 7 && g == 14, "b=4 unit 2: %g %g", f, g);
    xdt_profile_unit_ms(&prof, 0, 1, &f, &g);
    CHECK_MSG(f == 1 && g == 2, "b=1 unit 0: %g %g", f, g);
    /* unmeasured b: nearest measured size, scaled by tokens */
    xdt_profile_unit_ms(&prof, 1, 2, &f, &g); /* from b = 1, x2 */
    CHECK_MSG(near(f, 4) && near(g, 8), "b=2 unit 1: %g %g", f, g);
    xdt_profile_unit_ms(&prof, 0, 3, &f, &g); /* from b = 4, x0.75 */
    CHECK_MSG(near(f, 2.25) && near(g, 4.5), "b=3 unit 0: %g %g", f, g);
    xdt_profile_unit_ms(&prof, 3, 8, &f, &g); /* from b = 4, x2 */
    CHECK_MSG(near(f, 18) && near(g, 36), "b=8 unit 3: %g %g", f, g);
    /* a tie between two measured sizes goes to the larger */
    int tie_b[2] = {2, 4};
    double tie_f[2] = {10, 100}, tie_g[2] = {20, 200};
    xdt_profile tie = {.n_units = 1, .n_mb = 2, .b = tie_b, .fwd_ms = tie_f, .bwd_ms = tie_g};
    xdt_profile_unit_ms(&tie, 0, 3, &f, &g);
    CHECK_MSG(near(f, 75) && near(g, 150), "tie b=3: %g %g", f, g);

    /* matching: dimensions and seq, not the name */
    CHECK(xdt_profile_matches(&prof, &cfg, 32));
    CHECK(!xdt_profile_matches(&prof, &cfg, 64));
    xdt_model_config wide = cfg;
    wide.n_embd = 128;
    CHECK(!xdt_profile_matches(&prof, &wide, 32));
    xdt_model_config deep = cfg;
    deep.n_layer = 3;
    CHECK(!xdt_profile_matches(&prof, &deep, 32));
    xdt_model_config renamed = cfg;
    strcpy(renamed.name, "other");
    CHECK(xdt_profile_matches(&prof, &renamed, 32));

    /* the cost model: blocks 1..2 plus the head at b = 4 on the cpu, slowdown 1.5 */
    xdt_cost_params roof = {.dtype = XDT_PRECISION_FP32, .efficiency = 0.5};
    xdt_cost_params measured = {.dtype = XDT_PRECISION_FP32, .efficiency = 0.5, .profile = &prof};
    xdt_stage_cost pc, rc;
    xdt_stage_cost_estimate(&cfg, 1, 3, 4, 32, 2, cpu, 1.5, &measured, &pc);
    xdt_stage_cost_estimate(&cfg, 1, 3, 4, 32, 2, cpu, 1.5, &roof, &rc);
    CHECK_MSG(near(pc.fwd_ms, (5 + 7 + 9) * 1.5) && near(pc.bwd_ms, (10 + 14 + 18) * 1.5),
              "profiled stage %g / %g ms", pc.fwd_ms, pc.bwd_ms);
    CHECK_MSG(!near(rc.fwd_ms, pc.fwd_ms), "roofline %g equals the profile", rc.fwd_ms);
    CHECK(pc.memory_bytes == rc.memory_bytes && pc.boundary_bytes == rc.boundary_bytes &&
          pc.params == rc.params);
    /* an unmeasured b goes through the same scaling */
    xdt_stage_cost_estimate(&cfg, 0, 0, 2, 32, 1, cpu, 1, &measured, &pc);
    CHECK_MSG(near(pc.fwd_ms, 2) && near(pc.bwd_ms, 4), "b=2 embedding %g / %g", pc.fwd_ms,
              pc.bwd_ms);
    /* another device type, other dimensions or another seq: the roofline */
    struct {
        const xdt_model_config *cfg;
        const xdt_device_type *d;
        int t;
    } fallback[] = {{&cfg, h100, 32}, {&wide, cpu, 32}, {&deep, cpu, 32}, {&cfg, cpu, 64}};
    for (int i = 0; i < 4; i++) {
        xdt_stage_cost_estimate(fallback[i].cfg, 1, 2, 4, fallback[i].t, 1, fallback[i].d, 1.5,
                                &measured, &pc);
        xdt_stage_cost_estimate(fallback[i].cfg, 1, 2, 4, fallback[i].t, 1, fallback[i].d, 1.5,
                                &roof, &rc);
        CHECK_MSG(pc.fwd_ms == rc.fwd_ms && pc.bwd_ms == rc.bwd_ms, "case %d: %g vs roofline %g", i,
                  pc.fwd_ms, rc.fwd_ms);
        CHECK_MSG(!near(pc.fwd_ms, (5 + 7) * 1.5), "case %d used the profile", i);
    }
    xdt_profile_free(&prof);
    xdt_profile_free(&prof); /* twice is harmless */
    CHECK(prof.b == NULL && prof.n_mb == 0);

    /* malformed files: one line naming the file and the field, output untouched */
    expect_bad("\"version\": 1", "\"version\": 2", XDT_ERR_FORMAT, "'version' is 2");
    expect_bad("\"device_type\": \"cpu\",", "", XDT_ERR_FORMAT, "'device_type'");
    expect_bad("\"n_embd\": 64, ", "", XDT_ERR_FORMAT, "'model.n_embd' is missing");
    expect_bad("\"n_layer\": 2", "\"n_layer\": 2.5", XDT_ERR_FORMAT, "'model.n_layer' is 2.5");
    expect_bad("\"seq\": 32", "\"seq\": -32", XDT_ERR_FORMAT, "'seq' is -32");
    expect_bad("\"sgemm_tflops\": 0.17", "\"sgemm_tflops\": \"fast\"", XDT_ERR_FORMAT,
               "'sgemm_tflops' is missing or not a number");
    expect_bad("\"fwd_ms\": 5", "\"fwd_ms\": -5", XDT_ERR_FORMAT,
               "'microbatches[0].units[1].fwd_ms' is -5");
    expect_bad("\"bwd_ms\": 18}", "\"bwd_ms\": null}", XDT_ERR_FORMAT,
               "'microbatches[0].units[3].bwd_ms' is missing");
    expect_bad("{\"unit\": 1, \"fwd_ms\": 5, \"bwd_ms\": 10},", "", XDT_ERR_FORMAT,
               "'microbatches[0].units' has 3 entries");
    expect_bad("\"unit\": 3, \"fwd_ms\": 9",
               "\"unit\": 3, \"fwd_ms\": 9}, {\"unit\": 4, "
               "\"fwd_ms\": 9, \"bwd_ms\": 1",
               XDT_ERR_FORMAT, "has 5 entries, the model has n_layer + 2 = 4");
    expect_bad("{\"unit\": 1,", "{\"unit\": 2,", XDT_ERR_FORMAT,
               "'microbatches[0].units[1].unit' is 2");
    expect_bad("\"b\": 4", "\"b\": 0", XDT_ERR_FORMAT, "'microbatches[0].b' is 0");
    expect_bad("\"b\": 4", "\"b\": 1", XDT_ERR_FORMAT, "b = 1 is listed twice");
    expect_bad("\"microbatches\": [", "\"microbatches\": [], \"x\": [", XDT_ERR_FORMAT,
               "'microbatches' is missing or empty");
    expect_bad("\"version\": 1,", "\"version\": 1,,", XDT_ERR_FORMAT, "not valid JSON");
    {
        xdt_profile p;
        char text[32] = "/tmp/xdt-no-such-profile.json";
        CHECK(xdt_profile_load(text, &p) == XDT_ERR_IO);
    }
    return test_exit_code("test_profile");
}
