/* run_trace.h: the measured timeline of a pipelined run in the simulator's Chrome trace format
 * (planner/trace_writer.h): one lane per rank with forwards, backwards, receive waits, sends,
 * all-reduce and optimizer step, each event carrying its step. Every rank writes its events to
 * PATH.rank<N>; after a barrier rank 0 merges them into PATH and removes the parts. */
#ifndef XDT_RUN_TRACE_H
#define XDT_RUN_TRACE_H

#include "core/pipeline_executor.h"
#include "planner/plan_io.h"
#include "tools/worker_setup.h"

xdt_status xdt_run_trace_write(const char *path, xdt_worker_link *link, const xdt_loaded_plan *plan,
                               const xdt_exec_event *events, int n);

#endif
