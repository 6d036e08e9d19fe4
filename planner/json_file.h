/* json_file.h: reading a JSON file (plan.json, profile.json, a trace) into a cJSON tree, with
 * the one-line errors every reader gives: "PATH: cannot open: REASON", "PATH: not valid JSON". */
#ifndef XDT_JSON_FILE_H
#define XDT_JSON_FILE_H

#include <cjson/cJSON.h>

#include "core/status.h"

/* Parses the file at path (at most 1 GiB) into *out (free with cJSON_Delete). */
xdt_status xdt_json_load(const char *path, cJSON **out);

#endif
