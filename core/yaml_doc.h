/* yaml_doc.h: typed reading of YAML files (through libyaml's document API) with errors that name
 * the file, the line and the field. Every config reader in xdt goes through this. */
#ifndef XDT_YAML_DOC_H
#define XDT_YAML_DOC_H

#include <stdbool.h>
#include <stdint.h>

#include "core/status.h"

typedef struct xdt_yaml_doc xdt_yaml_doc;

#define XDT_YAML_MAX_KEYS 64

/* A mapping being read: remembers which keys were asked for, so that close() can reject the
 * rest as unknown. */
typedef struct xdt_yaml_map {
    xdt_yaml_doc *doc;
    int node;
    int n_pairs;
    bool used[XDT_YAML_MAX_KEYS];
} xdt_yaml_map;

/* Loads and parses `path`. On a syntax error reports "path:line: ..." and returns XDT_ERR_CONFIG;
 * a missing file is XDT_ERR_IO. The caller owns *out (xdt_yaml_destroy). */
xdt_status xdt_yaml_load(const char *path, xdt_yaml_doc **out);
void xdt_yaml_destroy(xdt_yaml_doc *doc);

/* The file name the document was loaded from (for messages). */
const char *xdt_yaml_path(const xdt_yaml_doc *doc);

/* Opens the document's root node as a mapping. */
xdt_status xdt_yaml_root_map(xdt_yaml_doc *doc, xdt_yaml_map *out);

/* Typed getters. A missing required key, a wrong type or an out-of-range value is reported with
 * file, line and key and returns XDT_ERR_CONFIG. An absent optional key leaves *out unchanged and
 * returns XDT_OK. */
xdt_status xdt_yaml_get_int(xdt_yaml_map *m, const char *key, bool required, int64_t min,
                            int64_t max, int64_t *out);
xdt_status xdt_yaml_get_double(xdt_yaml_map *m, const char *key, bool required, double min,
                               double max, double *out);
/* *out points into the document; it lives as long as the document. */
xdt_status xdt_yaml_get_string(xdt_yaml_map *m, const char *key, bool required, const char **out);

/* Line (1-based) of a key in the mapping, or of the mapping itself when the key is absent. */
int xdt_yaml_line(const xdt_yaml_map *m, const char *key);

/* A sequence inside a document. */
typedef struct xdt_yaml_seq {
    xdt_yaml_doc *doc;
    int node, count;
} xdt_yaml_seq;

/* The mapping under `key`. An absent optional key gives an empty mapping (n_pairs 0). */
xdt_status xdt_yaml_get_map(xdt_yaml_map *m, const char *key, bool required, xdt_yaml_map *out);
/* The sequence under `key`. An absent optional key gives an empty sequence. */
xdt_status xdt_yaml_get_seq(xdt_yaml_map *m, const char *key, bool required, xdt_yaml_seq *out);
/* Item i of a sequence, which must be a mapping. */
xdt_status xdt_yaml_seq_map(const xdt_yaml_seq *s, int i, xdt_yaml_map *out);
/* Key i of a mapping and its value as a mapping (for maps keyed by name); marks it used. */
xdt_status xdt_yaml_map_entry(xdt_yaml_map *m, int i, const char **key, xdt_yaml_map *value);
/* Line of the mapping itself. */
int xdt_yaml_map_line(const xdt_yaml_map *m);

/* Fails with "path:line: unknown key 'k'" for the first key no getter asked for. */
xdt_status xdt_yaml_map_close(xdt_yaml_map *m);

#endif
