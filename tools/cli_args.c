/* cli_args.c: table-driven option parsing with one-line errors. */
#include "tools/cli_args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static int choice_index(const char *choices, const char *value) {
    int idx = 0;
    const char *p = choices;
    size_t vl = strlen(value);
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == vl && !strncmp(p, value, len)) return idx;
        idx++;
        if (!bar) break;
        p = bar + 1;
    }
    return -1;
}

static xdt_status set_value(const char *cmd, xdt_cli_opt *o, const char *v) {
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case XDT_ARG_STRING:
        *(const char **)o->dst = v;
        return XDT_OK;
    case XDT_ARG_INT: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno)
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: --%s: expected an integer, got '%s'", cmd,
                            o->name, v);
        if (x < o->min || x > o->max)
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: --%s: %lld is outside [%.0f, %.0f]", cmd,
                            o->name, x, o->min, o->max);
        *(int *)o->dst = (int)x;
        return XDT_OK;
    }
    case XDT_ARG_DOUBLE: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: --%s: expected a number, got '%s'", cmd,
                            o->name, v);
        if (x < o->min || x > o->max)
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: --%s: %g is outside [%g, %g]", cmd, o->name, x,
                            o->min, o->max);
        *(double *)o->dst = x;
        return XDT_OK;
    }
    case XDT_ARG_CHOICE: {
        int i = choice_index(o->choices, v);
        if (i < 0)
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: --%s: '%s' is not one of %s", cmd, o->name, v,
                            o->choices);
        *(int *)o->dst = i;
        return XDT_OK;
    }
    case XDT_ARG_FLAG:
        *(bool *)o->dst = true;
        return XDT_OK;
    }
    return XDT_ERR_CONFIG;
}

xdt_status xdt_cli_parse(const char *cmd, int argc, char **argv, xdt_cli_opt *opts, int n,
                         bool *help) {
    *help = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            *help = true;
            return XDT_OK;
        }
        /* "--name" always; "-x" for one-letter options such as -o */
        const bool short_opt = a[0] == '-' && a[1] && a[1] != '-' && !a[2];
        if (strncmp(a, "--", 2) != 0 && !short_opt)
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: unexpected argument '%s' (see xdt %s --help)",
                            cmd, a, cmd);
        const char *name = short_opt ? a + 1 : a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        xdt_cli_opt *o = NULL;
        for (int k = 0; k < n; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len)) o = &opts[k];
        if (!o)
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: unknown option '--%.*s' (see xdt %s --help)",
                            cmd, (int)len, name, cmd);
        const char *value = NULL;
        if (o->type == XDT_ARG_FLAG) {
            if (eq) return xdt_fail(XDT_ERR_CONFIG, "xdt %s: --%s takes no value", cmd, o->name);
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: --%s needs a value (%s)", cmd, o->name,
                            o->metavar ? o->metavar : "VALUE");
        }
        xdt_status st = set_value(cmd, o, value);
        if (st != XDT_OK) return st;
        o->seen = true;
    }
    for (int k = 0; k < n; k++)
        if (opts[k].required && !opts[k].seen)
            return xdt_fail(XDT_ERR_CONFIG, "xdt %s: %s%s is required (see xdt %s --help)", cmd,
                            strlen(opts[k].name) == 1 ? "-" : "--", opts[k].name, cmd);
    return XDT_OK;
}

void xdt_cli_usage(FILE *out, const char *cmd, const char *summary, const xdt_cli_opt *opts,
                   int n) {
    fprintf(out, "usage: xdt %s [options]\n\n%s\n\noptions:\n", cmd, summary);
    for (int k = 0; k < n; k++) {
        const xdt_cli_opt *o = &opts[k];
        char left[64];
        if (o->type == XDT_ARG_FLAG)
            snprintf(left, sizeof left, "--%s", o->name);
        else if (o->type == XDT_ARG_CHOICE)
            snprintf(left, sizeof left, "--%s %s", o->name, o->choices);
        else
            snprintf(left, sizeof left, "%s%s %s", strlen(o->name) == 1 ? "-" : "--", o->name,
                     o->metavar ? o->metavar : "VALUE");
        fprintf(out, "  %-30s %s%s\n", left, o->help, o->required ? " (required)" : "");
    }
}
