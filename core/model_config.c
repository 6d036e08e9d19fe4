/* model_config.c: model YAML files to xdt_model_config. */
#include "core/model_config.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/yaml_doc.h"

xdt_status xdt_model_config_check(const xdt_model_config *c, const char *where) {
    /* the same bounds whatever the source (a YAML file, an llm.c header, a checkpoint, a plan),
     * so that no size product downstream can overflow */
    const struct {
        const char *field;
        int value, min, max;
    } sizes[] = {
        {"vocab_size", c->vocab_size, 2, XDT_MODEL_VOCAB_MAX},
        {"padded_vocab_size", c->padded_vocab_size, 2, XDT_MODEL_VOCAB_MAX},
        {"max_seq_len", c->max_seq_len, 1, XDT_MODEL_SEQ_MAX},
        {"n_layer", c->n_layer, 1, XDT_MODEL_LAYERS_MAX},
        {"n_head", c->n_head, 1, XDT_MODEL_HEADS_MAX},
        {"n_embd", c->n_embd, 1, XDT_MODEL_EMBD_MAX},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value < sizes[i].min || sizes[i].value > sizes[i].max)
            return xdt_fail(XDT_ERR_CONFIG, "%s: field '%s': %d is outside [%d, %d]", where,
                            sizes[i].field, sizes[i].value, sizes[i].min, sizes[i].max);
    if (c->padded_vocab_size < c->vocab_size)
        return xdt_fail(XDT_ERR_CONFIG, "%s: padded_vocab_size %d is below vocab_size %d", where,
                        c->padded_vocab_size, c->vocab_size);
    if (c->n_embd % c->n_head != 0)
        return xdt_fail(XDT_ERR_CONFIG, "%s: n_embd %d is not a multiple of n_head %d", where,
                        c->n_embd, c->n_head);
    return XDT_OK;
}

xdt_status xdt_model_config_load(const char *path, xdt_model_config *out) {
    xdt_yaml_doc *doc = NULL;
    xdt_status st = xdt_yaml_load(path, &doc);
    if (st != XDT_OK) return st;
    xdt_yaml_map m;
    xdt_model_config c = {0};
    const char *name = NULL;
    int64_t v = 0, vp = -1, t = 0, l = 0, h = 0, e = 0;
    if ((st = xdt_yaml_root_map(doc, &m)) || (st = xdt_yaml_get_string(&m, "name", true, &name)) ||
        (st = xdt_yaml_get_int(&m, "vocab_size", true, 2, XDT_MODEL_VOCAB_MAX, &v)) ||
        (st = xdt_yaml_get_int(&m, "padded_vocab_size", false, 2, XDT_MODEL_VOCAB_MAX, &vp)) ||
        (st = xdt_yaml_get_int(&m, "max_seq_len", true, 1, XDT_MODEL_SEQ_MAX, &t)) ||
        (st = xdt_yaml_get_int(&m, "n_layer", true, 1, XDT_MODEL_LAYERS_MAX, &l)) ||
        (st = xdt_yaml_get_int(&m, "n_head", true, 1, XDT_MODEL_HEADS_MAX, &h)) ||
        (st = xdt_yaml_get_int(&m, "n_embd", true, 1, XDT_MODEL_EMBD_MAX, &e)) ||
        (st = xdt_yaml_map_close(&m)))
        goto out;
    if (vp < 0) vp = (v + 63) / 64 * 64;
    if (vp < v) {
        st = xdt_fail(XDT_ERR_CONFIG,
                      "%s:%d: field 'padded_vocab_size': %lld is below vocab_size %lld", path,
                      xdt_yaml_line(&m, "padded_vocab_size"), (long long)vp, (long long)v);
        goto out;
    }
    if (e % h != 0) {
        st =
            xdt_fail(XDT_ERR_CONFIG, "%s:%d: field 'n_head': n_embd %lld is not a multiple of %lld",
                     path, xdt_yaml_line(&m, "n_head"), (long long)e, (long long)h);
        goto out;
    }
    if (strlen(name) >= sizeof c.name) {
        st = xdt_fail(XDT_ERR_CONFIG, "%s:%d: field 'name': longer than %zu characters", path,
                      xdt_yaml_line(&m, "name"), sizeof c.name - 1);
        goto out;
    }
    snprintf(c.name, sizeof c.name, "%s", name);
    c.vocab_size = (int)v;
    c.padded_vocab_size = (int)vp;
    c.max_seq_len = (int)t;
    c.n_layer = (int)l;
    c.n_head = (int)h;
    c.n_embd = (int)e;
    *out = c;
out:
    xdt_yaml_destroy(doc);
    return st;
}
