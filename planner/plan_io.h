/* plan_io.h: reading plan.json (written by `xdt plan`; the format is documented at the top of
 * tools/cmd_plan.c) into what the simulator and, later, the runtime need: the schedule (checked
 * by the validator), per-stage forward/backward milliseconds, the links between consecutive
 * stages, and the activation bytes at each boundary. */
#ifndef XDT_PLAN_IO_H
#define XDT_PLAN_IO_H

#include "core/schedule.h"
#include "planner/simulator.h"

#define XDT_PLAN_VERSION 1

typedef struct xdt_loaded_plan {
    xdt_schedule *schedule;
    int stages;
    double *fwd_ms, *bwd_ms, *boundary_bytes; /* per stage */
    xdt_sim_link *links;                      /* stages x stages */
    double predicted_step_ms;
    char cluster[64], model[64];
} xdt_loaded_plan;

/* Loads and checks a plan; any missing or malformed field is reported as "path: field ..."
 * and returns XDT_ERR_FORMAT; a schedule the validator refuses is XDT_ERR_FORMAT too. */
xdt_status xdt_plan_load(const char *path, xdt_loaded_plan *out);
void xdt_plan_free(xdt_loaded_plan *p);

#endif
