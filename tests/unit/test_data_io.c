/* test_data_io.c: model config parsing, token files, batch order (llm.c's sequential loader),
 * the learning-rate schedule, and checkpoints (round trip, corruption, atomicity). */
#include <dirent.h>
#include <string.h>
#include <unistd.h>

#include "core/batch_loader.h"
#include "core/checkpoint.h"
#include "core/model_config.h"
#include "core/optimizer.h"
#include "core/token_data.h"
#include "tests/unit/test_util.h"

static char tmpdir[256];

static void write_file(const char *name, const void *data, size_t n, char *path_out) {
    snprintf(path_out, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(path_out, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
}

static void test_config(void) {
    char p[512];
    const char *good =
        "name: t\nvocab_size: 100\nmax_seq_len: 32\nn_layer: 2\nn_head: 2\nn_embd: 8\n";
    write_file("good.yaml", good, strlen(good), p);
    xdt_model_config c;
    CHECK(xdt_model_config_load(p, &c) == XDT_OK);
    CHECK(c.padded_vocab_size == 128 && c.n_embd == 8 && !strcmp(c.name, "t"));
    const char *bad[] = {
        "name: t\nvocab_size: 100\nmax_seq_len: 32\nn_layer: 2\nn_head: 2\nn_embd: 8\nbogus: 1\n",
        "name: t\nvocab_size: 100\nmax_seq_len: 32\nn_layer: 2\nn_head: 2\n",
        "name: t\nvocab_size: abc\nmax_seq_len: 32\nn_layer: 2\nn_head: 2\nn_embd: 8\n",
        "name: t\nvocab_size: 100\nmax_seq_len: 32\nn_layer: 2\nn_head: 3\nn_embd: 8\n",
        "name: t\nvocab_size: 100\nmax_seq_len: -4\nn_layer: 2\nn_head: 2\nn_embd: 8\n",
        "name: [t\n",
        "- a\n- b\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file("bad.yaml", bad[i], strlen(bad[i]), p);
        CHECK_MSG(xdt_model_config_load(p, &c) == XDT_ERR_CONFIG, "bad config %zu accepted", i);
    }
    CHECK(xdt_model_config_load("/nonexistent/x.yaml", &c) == XDT_ERR_IO);
}

static void test_tokens_and_batches(void) {
    char p[512];
    /* an llm.c shard of 1000 tokens 0, 1, 2, ... (mod 50) */
    size_t n = 1000;
    unsigned char *buf = calloc(1, 1024 + 2 * n);
    int32_t *h = (int32_t *)buf;
    h[0] = XDT_LLMC_SHARD_MAGIC;
    h[1] = 1;
    h[2] = (int32_t)n;
    uint16_t *tok = (uint16_t *)(buf + 1024);
    for (size_t i = 0; i < n; i++)
        tok[i] = (uint16_t)(i % 50);
    write_file("s.bin", buf, 1024 + 2 * n, p);
    xdt_token_data d;
    CHECK(xdt_token_data_load(p, &d) == XDT_OK);
    CHECK(d.n == n && d.format == XDT_TOKENS_LLMC_SHARD && d.tokens[77] == 27);
    CHECK(xdt_token_data_check_vocab(&d, 50) == XDT_OK);
    CHECK(xdt_token_data_check_vocab(&d, 49) == XDT_ERR_FORMAT);

    /* sequential order: batch i starts at token i*B*T and wraps like llm.c */
    xdt_batch_loader l;
    const int b = 3, t = 10;
    CHECK(xdt_batch_loader_init(&l, &d, b, t, 0.0, XDT_ORDER_SEQUENTIAL, 1) == XDT_OK);
    int32_t in[30], tg[30];
    size_t per_epoch = (n - 1) / (b * t); /* 33 batches fit */
    for (size_t i = 0; i < per_epoch + 1; i++) {
        xdt_batch_loader_next(&l, in, tg);
        size_t start = (i % per_epoch) * b * t;
        CHECK_MSG(in[0] == (int32_t)(start % 50) && in[29] == (int32_t)((start + 29) % 50) &&
                      tg[29] == (int32_t)((start + 30) % 50),
                  "batch %zu starts at %d", i, in[0]);
    }
    /* random order is a function of the seed only */
    xdt_batch_loader a, c;
    xdt_batch_loader_init(&a, &d, b, t, 0.1, XDT_ORDER_RANDOM, 5);
    xdt_batch_loader_init(&c, &d, b, t, 0.1, XDT_ORDER_RANDOM, 5);
    int32_t in2[30], tg2[30];
    for (int i = 0; i < 5; i++) {
        xdt_batch_loader_next(&a, in, tg);
        xdt_batch_loader_next(&c, in2, tg2);
        CHECK(!memcmp(in, in2, sizeof in) && !memcmp(tg, tg2, sizeof tg));
        for (int j = 0; j < 30; j++)
            CHECK(tg[j] == (in[j] + 1) % 50 || (j % t == t - 1));
    }
    /* the validation split is the tail: windows start at train_n */
    CHECK(a.train_n == 900 && a.val_n == 100 && xdt_batch_loader_val_batches(&a) == 3);
    xdt_batch_loader_val(&a, 1, in, tg);
    CHECK(in[0] == (900 + 30) % 50);
    /* a split smaller than a batch is refused */
    CHECK(xdt_batch_loader_init(&a, &d, b, t, 0.02, XDT_ORDER_RANDOM, 5) == XDT_ERR_CONFIG);
    xdt_token_data_free(&d);

    /* damaged shards */
    h[2] = (int32_t)n + 5;
    write_file("short.bin", buf, 1024 + 2 * n, p);
    CHECK(xdt_token_data_load(p, &d) == XDT_ERR_FORMAT);
    h[2] = (int32_t)n;
    h[0] = 1234;
    write_file("magic.bin", buf, 1024 + 2 * n, p);
    CHECK(xdt_token_data_load(p, &d) == XDT_ERR_FORMAT);
    h[0] = XDT_LLMC_SHARD_MAGIC;
    h[1] = 2;
    write_file("version.bin", buf, 1024 + 2 * n, p);
    CHECK(xdt_token_data_load(p, &d) == XDT_ERR_FORMAT);
    write_file("head.bin", buf, 100, p);
    CHECK(xdt_token_data_load(p, &d) == XDT_ERR_FORMAT);
    free(buf);

    /* text: bytes are tokens */
    write_file("t.txt", "hello", 5, p);
    CHECK(xdt_token_data_load(p, &d) == XDT_OK);
    CHECK(d.n == 5 && d.tokens[1] == 'e' && d.format == XDT_TOKENS_TEXT_BYTES);
    xdt_token_data_free(&d);
    write_file("empty.txt", "", 0, p);
    CHECK(xdt_token_data_load(p, &d) == XDT_ERR_FORMAT);
}

static void test_lr_schedule(void) {
    xdt_optim_config c = {
        .lr = 1.0f, .warmup_steps = 10, .total_steps = 110, .decay = XDT_LR_COSINE};
    CHECK(fabs(xdt_lr_at(&c, 0) - 0.1) < 1e-12);
    CHECK(fabs(xdt_lr_at(&c, 9) - 1.0) < 1e-12);
    CHECK(fabs(xdt_lr_at(&c, 10) - 1.0) < 1e-12);
    CHECK(fabs(xdt_lr_at(&c, 60) - (0.1 + 0.45)) < 1e-12); /* halfway: mid of [0.1, 1] */
    CHECK(fabs(xdt_lr_at(&c, 110) - 0.1) < 1e-12);
    c.decay = XDT_LR_CONSTANT;
    CHECK(xdt_lr_at(&c, 80) == 1.0);
}

static int count_files(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, needle)) n++;
    if (d) closedir(d);
    return n;
}

static void test_checkpoint(void) {
    xdt_model_config cfg = {"t", 32, 32, 16, 1, 2, 8};
    xdt_device *dev = NULL;
    xdt_device_options o = {.threads = 1};
    CHECK(xdt_device_create("cpu", &o, &dev) == XDT_OK);
    xdt_stage *s = NULL, *r = NULL;
    xdt_optimizer *opt = NULL, *opt2 = NULL;
    xdt_optim_config oc = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f};
    CHECK(xdt_stage_create(&cfg, dev, 0, 2, 2, 8, 1, &s) == XDT_OK);
    CHECK(xdt_stage_create(&cfg, dev, 0, 2, 2, 8, 1, &r) == XDT_OK);
    CHECK(xdt_optimizer_create(&oc, s, &opt) == XDT_OK);
    CHECK(xdt_optimizer_create(&oc, r, &opt2) == XDT_OK);
    if (!s || !r || !opt || !opt2) return;
    xdt_stage_init_params(s, 3);
    size_t n = xdt_stage_num_params(s);
    for (size_t i = 0; i < n; i++) {
        xdt_optimizer_m(opt)[i] = (float)i * 0.5f;
        xdt_optimizer_v(opt)[i] = (float)i * 0.25f;
    }
    xdt_ckpt_meta meta = {.step = 42, .first_unit = 0, .last_unit = 2, .b = 2, .t = 8};
    meta.loader.rng.s[2] = 0xdeadbeef;
    meta.loader.cursor = 77;
    char path[600];
    snprintf(path, sizeof path, "%s/ckpt_00000042.xdt", tmpdir);
    CHECK(xdt_checkpoint_save(path, s, opt, &meta) == XDT_OK);
    CHECK(count_files(tmpdir, ".tmp.") == 0);
    xdt_ckpt_meta back;
    CHECK(xdt_checkpoint_load(path, r, opt2, &back) == XDT_OK);
    CHECK(back.step == 42 && back.loader.cursor == 77 && back.loader.rng.s[2] == 0xdeadbeef);
    CHECK(!memcmp(xdt_stage_params(r), xdt_stage_params(s), n * 4));
    CHECK(!memcmp(xdt_optimizer_v(opt2), xdt_optimizer_v(opt), n * 4));
    char latest[700];
    CHECK(xdt_checkpoint_latest(tmpdir, latest, sizeof latest) == XDT_OK);
    CHECK(!strcmp(latest, path));

    /* a flipped payload byte, a flipped header byte, truncation: refused, stage untouched */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *bytes = malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    char bad[600];
    float before = xdt_stage_params(r)[5];
    bytes[300] ^= 1;
    write_file("payload.xdt", bytes, (size_t)size, bad);
    xdt_stage_params(r)[5] = before + 1;
    CHECK(xdt_checkpoint_load(bad, r, opt2, NULL) == XDT_ERR_FORMAT);
    CHECK(xdt_stage_params(r)[5] == before + 1);
    bytes[300] ^= 1;
    bytes[30] ^= 1;
    write_file("header.xdt", bytes, (size_t)size, bad);
    CHECK(xdt_checkpoint_load(bad, r, opt2, NULL) == XDT_ERR_FORMAT);
    bytes[30] ^= 1;
    write_file("trunc.xdt", bytes, (size_t)size - 4, bad);
    CHECK(xdt_checkpoint_load(bad, r, opt2, NULL) == XDT_ERR_FORMAT);
    bytes[0] = 'Y';
    write_file("magic.xdt", bytes, (size_t)size, bad);
    CHECK(xdt_checkpoint_load(bad, r, opt2, NULL) == XDT_ERR_FORMAT);
    free(bytes);
    /* a stage of another shape is refused by field */
    xdt_model_config other = cfg;
    other.n_embd = 16;
    xdt_stage *o2 = NULL;
    CHECK(xdt_stage_create(&other, dev, 0, 2, 2, 8, 1, &o2) == XDT_OK);
    if (o2) CHECK(xdt_checkpoint_load(path, o2, NULL, NULL) == XDT_ERR_FORMAT);
    xdt_stage_destroy(o2);
    /* saving into a missing directory fails and leaves nothing behind */
    CHECK(xdt_checkpoint_save("/nonexistent-dir/ckpt.xdt", s, opt, &meta) == XDT_ERR_IO);
    xdt_optimizer_destroy(opt);
    xdt_optimizer_destroy(opt2);
    xdt_stage_destroy(s);
    xdt_stage_destroy(r);
    xdt_device_destroy(dev);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/xdt-test-data-io-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    test_config();
    test_tokens_and_batches();
    test_lr_schedule();
    test_checkpoint();
    int rc = test_exit_code("test_data_io");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return rc;
}
