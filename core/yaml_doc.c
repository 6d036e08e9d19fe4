/* yaml_doc.c: libyaml documents read as typed mappings, errors with file:line:field. */
#include "core/yaml_doc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/file_util.h"
#include "core/log.h"

struct xdt_yaml_doc {
    yaml_document_t document;
    char path[512];
};

xdt_status xdt_yaml_load(const char *path, xdt_yaml_doc **out) {
    FILE *f = NULL;
    xdt_status st0 = xdt_fopen_read(path, "", &f);
    if (st0 != XDT_OK) return st0;
    xdt_yaml_doc *doc = calloc(1, sizeof *doc);
    if (!doc) {
        fclose(f);
        return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    snprintf(doc->path, sizeof doc->path, "%s", path);
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int ok = yaml_parser_load(&parser, &doc->document);
    xdt_status st = XDT_OK;
    if (!ok) {
        st = xdt_fail(XDT_ERR_CONFIG, "%s:%zu: YAML syntax error: %s", path,
                      parser.problem_mark.line + 1, parser.problem ? parser.problem : "unknown");
    } else if (!yaml_document_get_root_node(&doc->document)) {
        yaml_document_delete(&doc->document);
        st = xdt_fail(XDT_ERR_CONFIG, "%s:1: empty document", path);
    } else {
        /* one document a file: a second one (after "---") would be silently dropped */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            st =
                xdt_fail(XDT_ERR_CONFIG, "%s:%zu: YAML syntax error: %s", path,
                         parser.problem_mark.line + 1, parser.problem ? parser.problem : "unknown");
        } else {
            if (yaml_document_get_root_node(&next))
                st = xdt_fail(XDT_ERR_CONFIG,
                              "%s:%zu: a second YAML document: a file holds one document", path,
                              next.start_mark.line + 1);
            yaml_document_delete(&next);
        }
        if (st != XDT_OK) yaml_document_delete(&doc->document);
    }
    yaml_parser_delete(&parser);
    fclose(f);
    if (st != XDT_OK) {
        free(doc);
        return st;
    }
    *out = doc;
    return XDT_OK;
}

void xdt_yaml_destroy(xdt_yaml_doc *doc) {
    if (!doc) return;
    yaml_document_delete(&doc->document);
    free(doc);
}

const char *xdt_yaml_path(const xdt_yaml_doc *doc) {
    return doc->path;
}

static yaml_node_t *node_at(xdt_yaml_doc *doc, int index) {
    return yaml_document_get_node(&doc->document, index);
}

static int line_of(yaml_node_t *n) {
    return (int)n->start_mark.line + 1;
}

/* Opens node `index` as a mapping; `what` names it in errors. */
static xdt_status open_map(xdt_yaml_doc *doc, int index, const char *what, xdt_yaml_map *out) {
    yaml_node_t *node = yaml_document_get_node(&doc->document, index);
    if (!node || node->type != YAML_MAPPING_NODE)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: %s: expected a mapping of keys to values",
                        doc->path, node ? line_of(node) : 1, what);
    int n = (int)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (n > XDT_YAML_MAX_KEYS)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: mapping has %d keys, at most %d are read",
                        doc->path, line_of(node), n, XDT_YAML_MAX_KEYS);
    /* a key given twice would have its second value read as "unknown" or silently ignored */
    const yaml_node_pair_t *pairs = node->data.mapping.pairs.start;
    for (int i = 1; i < n; i++) {
        yaml_node_t *ki = yaml_document_get_node(&doc->document, pairs[i].key);
        const char *ks =
            ki && ki->type == YAML_SCALAR_NODE ? (const char *)ki->data.scalar.value : NULL;
        for (int j = 0; ks && j < i; j++) {
            yaml_node_t *kj = yaml_document_get_node(&doc->document, pairs[j].key);
            if (kj && kj->type == YAML_SCALAR_NODE &&
                !strcmp(ks, (const char *)kj->data.scalar.value))
                return xdt_fail(XDT_ERR_CONFIG,
                                "%s:%d: field '%s' is given twice (first on line %d)", doc->path,
                                line_of(ki), ks, line_of(kj));
        }
    }
    memset(out, 0, sizeof *out);
    out->doc = doc;
    out->node = index;
    out->n_pairs = n;
    return XDT_OK;
}

xdt_status xdt_yaml_root_map(xdt_yaml_doc *doc, xdt_yaml_map *out) {
    return open_map(doc, 1, "document", out); /* the root is always node 1 in libyaml */
}

static yaml_node_pair_t *pair_at(xdt_yaml_map *m, int i) {
    return node_at(m->doc, m->node)->data.mapping.pairs.start + i;
}

static const char *scalar_of(yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

/* Finds `key`; marks it used. Returns the value node or NULL. */
static yaml_node_t *find(xdt_yaml_map *m, const char *key, int *key_line) {
    for (int i = 0; i < m->n_pairs; i++) {
        yaml_node_pair_t *p = pair_at(m, i);
        yaml_node_t *k = node_at(m->doc, p->key);
        const char *ks = scalar_of(k);
        if (ks && !strcmp(ks, key)) {
            m->used[i] = true;
            if (key_line) *key_line = line_of(k);
            return node_at(m->doc, p->value);
        }
    }
    return NULL;
}

int xdt_yaml_line(const xdt_yaml_map *m, const char *key) {
    xdt_yaml_map copy = *m;
    int line = 0;
    if (find(&copy, key, &line)) return line;
    return line_of(node_at(m->doc, m->node));
}

static xdt_status missing(xdt_yaml_map *m, const char *key) {
    return xdt_fail(XDT_ERR_CONFIG, "%s:%d: missing required field '%s'", m->doc->path,
                    line_of(node_at(m->doc, m->node)), key);
}

xdt_status xdt_yaml_get_int(xdt_yaml_map *m, const char *key, bool required, int64_t min,
                            int64_t max, int64_t *out) {
    int line = 0;
    yaml_node_t *v = find(m, key, &line);
    if (!v) return required ? missing(m, key) : XDT_OK;
    const char *s = scalar_of(v);
    char *end = NULL;
    errno = 0;
    long long x = s ? strtoll(s, &end, 10) : 0;
    if (!s || !*s || *end || errno)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field '%s': expected an integer, got '%s'",
                        m->doc->path, line, key, s ? s : "(not a scalar)");
    if (x < min || x > max)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field '%s': %lld is outside [%lld, %lld]",
                        m->doc->path, line, key, x, (long long)min, (long long)max);
    *out = x;
    return XDT_OK;
}

xdt_status xdt_yaml_get_double(xdt_yaml_map *m, const char *key, bool required, double min,
                               double max, double *out) {
    int line = 0;
    yaml_node_t *v = find(m, key, &line);
    if (!v) return required ? missing(m, key) : XDT_OK;
    const char *s = scalar_of(v);
    char *end = NULL;
    errno = 0;
    double x = s ? strtod(s, &end) : 0;
    if (!s || !*s || *end || errno || !isfinite(x))
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field '%s': expected a number, got '%s'",
                        m->doc->path, line, key, s ? s : "(not a scalar)");
    if (x < min || x > max)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field '%s': %g is outside [%g, %g]", m->doc->path,
                        line, key, x, min, max);
    *out = x;
    return XDT_OK;
}

xdt_status xdt_yaml_get_string(xdt_yaml_map *m, const char *key, bool required, const char **out) {
    int line = 0;
    yaml_node_t *v = find(m, key, &line);
    if (!v) return required ? missing(m, key) : XDT_OK;
    const char *s = scalar_of(v);
    if (!s)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field '%s': expected a string", m->doc->path, line,
                        key);
    *out = s;
    return XDT_OK;
}

xdt_status xdt_yaml_get_map(xdt_yaml_map *m, const char *key, bool required, xdt_yaml_map *out) {
    int line = 0;
    yaml_node_t *v = find(m, key, &line);
    if (!v) {
        if (required) return missing(m, key);
        memset(out, 0, sizeof *out);
        out->doc = m->doc;
        out->node = m->node; /* lines point at the parent */
        return XDT_OK;
    }
    return open_map(m->doc, (int)(v - m->doc->document.nodes.start) + 1, key, out);
}

xdt_status xdt_yaml_get_seq(xdt_yaml_map *m, const char *key, bool required, xdt_yaml_seq *out) {
    int line = 0;
    yaml_node_t *v = find(m, key, &line);
    if (!v) {
        if (required) return missing(m, key);
        *out = (xdt_yaml_seq){m->doc, 0, 0};
        return XDT_OK;
    }
    if (v->type != YAML_SEQUENCE_NODE)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field '%s': expected a list", m->doc->path, line,
                        key);
    *out = (xdt_yaml_seq){m->doc, (int)(v - m->doc->document.nodes.start) + 1,
                          (int)(v->data.sequence.items.top - v->data.sequence.items.start)};
    return XDT_OK;
}

xdt_status xdt_yaml_seq_map(const xdt_yaml_seq *s, int i, xdt_yaml_map *out) {
    yaml_node_t *seq = node_at(s->doc, s->node);
    return open_map(s->doc, seq->data.sequence.items.start[i], "list item", out);
}

xdt_status xdt_yaml_map_entry(xdt_yaml_map *m, int i, const char **key, xdt_yaml_map *value) {
    yaml_node_pair_t *p = pair_at(m, i);
    const char *k = scalar_of(node_at(m->doc, p->key));
    if (!k)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: expected a name as key", m->doc->path,
                        line_of(node_at(m->doc, p->key)));
    m->used[i] = true;
    *key = k;
    return open_map(m->doc, p->value, k, value);
}

int xdt_yaml_map_line(const xdt_yaml_map *m) {
    return line_of(node_at(m->doc, m->node));
}

xdt_status xdt_yaml_map_close(xdt_yaml_map *m) {
    for (int i = 0; i < m->n_pairs; i++) {
        if (m->used[i]) continue;
        yaml_node_t *k = node_at(m->doc, pair_at(m, i)->key);
        const char *ks = scalar_of(k);
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: unknown field '%s'", m->doc->path, line_of(k),
                        ks ? ks : "(complex key)");
    }
    return XDT_OK;
}
