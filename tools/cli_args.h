/* cli_args.h: a small table-driven parser for `--name value`, `--name=value` and `--flag`. */
#ifndef XDT_CLI_ARGS_H
#define XDT_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

typedef enum xdt_arg_type {
    XDT_ARG_STRING, /* dst: const char ** */
    XDT_ARG_INT,    /* dst: int *, within [min, max] */
    XDT_ARG_DOUBLE, /* dst: double *, within [min, max] */
    XDT_ARG_FLAG,   /* dst: bool * */
    XDT_ARG_CHOICE, /* dst: int *, index into the '|'-separated `choices` */
} xdt_arg_type;

typedef struct xdt_cli_opt {
    const char *name; /* without the leading "--" */
    xdt_arg_type type;
    void *dst;
    const char *metavar;
    const char *help;
    double min, max;
    const char *choices;
    bool required;
    bool seen;
} xdt_cli_opt;

/* Table entries. */
#define XDT_OPT_STRING(n, d, mv, h)                                                                \
    { .name = (n), .type = XDT_ARG_STRING, .dst = (d), .metavar = (mv), .help = (h) }
#define XDT_OPT_REQUIRED(n, d, mv, h)                                                              \
    {                                                                                              \
        .name = (n), .type = XDT_ARG_STRING, .dst = (d), .metavar = (mv), .help = (h),             \
        .required = true                                                                           \
    }
#define XDT_OPT_INT(n, d, mv, h, lo, hi)                                                           \
    {                                                                                              \
        .name = (n), .type = XDT_ARG_INT, .dst = (d), .metavar = (mv), .help = (h), .min = (lo),   \
        .max = (hi)                                                                                \
    }
#define XDT_OPT_DOUBLE(n, d, mv, h, lo, hi)                                                        \
    {                                                                                              \
        .name = (n), .type = XDT_ARG_DOUBLE, .dst = (d), .metavar = (mv), .help = (h),             \
        .min = (lo), .max = (hi)                                                                   \
    }
#define XDT_OPT_FLAG(n, d, h)                                                                      \
    { .name = (n), .type = XDT_ARG_FLAG, .dst = (d), .help = (h) }
#define XDT_OPT_CHOICE(n, d, ch, h)                                                                \
    { .name = (n), .type = XDT_ARG_CHOICE, .dst = (d), .choices = (ch), .help = (h) }

/* Parses argv[0..argc) (after the subcommand). Returns XDT_OK, or XDT_ERR_CONFIG after printing
 * one error line naming the option. Sets *help when --help/-h was given (nothing else done). */
xdt_status xdt_cli_parse(const char *cmd, int argc, char **argv, xdt_cli_opt *opts, int n,
                         bool *help);

/* Prints "usage: xdt CMD ...", the summary and one line per option. */
void xdt_cli_usage(FILE *out, const char *cmd, const char *summary, const xdt_cli_opt *opts, int n);

#endif
