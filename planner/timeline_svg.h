/* timeline_svg.h: an SVG picture of one step a person can read at a glance: one row per rank
 * with forwards and backwards in two colours labelled by microbatch, empty stretches (the
 * bubbles) left blank, one row per link with its transfers, and the step time in the title. */
#ifndef XDT_TIMELINE_SVG_H
#define XDT_TIMELINE_SVG_H

#include "planner/simulator.h"

xdt_status xdt_timeline_write_svg(const char *path, const char *title, const xdt_schedule *s,
                                  const xdt_sim_result *r);

#endif
