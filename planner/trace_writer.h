/* trace_writer.h: timelines in the Chrome trace event format (JSON with `traceEvents`, which
 * Perfetto and chrome://tracing open): one lane per rank with its forward, backward, receive
 * waits and the rest, and one lane per directed link with each transfer. The simulator writes
 * it now; the runtime writes the same format, so predicted and measured runs line up. */
#ifndef XDT_TRACE_WRITER_H
#define XDT_TRACE_WRITER_H

#include <stdbool.h>
#include <stdio.h>

#include "planner/simulator.h"

/* An op's event name ("F3", "B3.1", "recv A2", "allreduce") and category ("forward",
 * "backward", "wait", "send", "other"): the runtime's traces use the same. */
void xdt_trace_op_label(const xdt_op *op, int chunks, char *buf, size_t cap);
const char *xdt_trace_op_category(xdt_op_kind k);

/* Starts a trace in f: the `traceEvents` array and the event naming process 0 `name`, escaped
 * as a JSON string (names come from files and paths). False when out of memory. */
bool xdt_trace_begin(FILE *f, const char *name);

/* Writes the simulated step to `path` atomically. `title` names the process lane. */
xdt_status xdt_trace_write_sim(const char *path, const char *title, const xdt_schedule *s,
                               const xdt_sim_result *r);

#endif
