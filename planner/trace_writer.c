/* trace_writer.c: Chrome trace JSON for simulated steps. Times are microseconds ("ts", "dur"). */
#include "planner/trace_writer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"

/* Short event names a timeline can print: F3, B3, Bi3, Bw3, recv A3, ... (chunk as .v). */
void xdt_trace_op_label(const xdt_op *op, int chunks, char *buf, size_t cap) {
    static const char *const names[XDT_OP_KIND_COUNT] = {
        "F", "B", "Bi", "Bw", "send A", "recv A", "send G", "recv G", "allreduce", "step"};
    if (op->microbatch < 0)
        snprintf(buf, cap, "%s", names[op->kind]);
    else if (chunks > 1)
        snprintf(buf, cap, "%s%d.%d", names[op->kind], op->microbatch, op->chunk);
    else
        snprintf(buf, cap, "%s%d", names[op->kind], op->microbatch);
}

const char *xdt_trace_op_category(xdt_op_kind k) {
    switch (k) {
    case XDT_OP_FWD:
        return "forward";
    case XDT_OP_BWD:
    case XDT_OP_BWD_INPUT:
    case XDT_OP_BWD_WEIGHT:
        return "backward";
    case XDT_OP_RECV_ACT:
    case XDT_OP_RECV_GRAD:
        return "wait";
    case XDT_OP_SEND_ACT:
    case XDT_OP_SEND_GRAD:
        return "send";
    default:
        return "other";
    }
}

bool xdt_trace_begin(FILE *f, const char *name) {
    cJSON *js = cJSON_CreateString(name);
    char *quoted = js ? cJSON_PrintUnformatted(js) : NULL;
    cJSON_Delete(js);
    if (!quoted) return false;
    fprintf(f,
            "{\"traceEvents\":[\n{\"ph\":\"M\",\"pid\":0,\"name\":\"process_name\",\"args\":"
            "{\"name\":%s}}",
            quoted);
    cJSON_free(quoted);
    return true;
}

xdt_status xdt_trace_write_sim(const char *path, const char *title, const xdt_schedule *s,
                               const xdt_sim_result *r) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot create the trace", tmp);
    const int R = r->ranks, P = r->stages, V = xdt_schedule_chunks(s);
    char name[4200];
    snprintf(name, sizeof name, "%s (predicted step %.3f ms)", title, r->step_ms);
    if (!xdt_trace_begin(f, name)) {
        fclose(f);
        remove(tmp);
        return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    for (int p = 0; p < R; p++)
        fprintf(f,
                ",\n{\"ph\":\"M\",\"pid\":0,\"tid\":%d,\"name\":\"thread_name\",\"args\":"
                "{\"name\":\"rank %d\"}}",
                p, p);
    char label[64];
    for (int i = 0; i < r->n_events; i++) {
        const xdt_sim_event *e = &r->events[i];
        xdt_trace_op_label(&e->op, V, label, sizeof label);
        double dur = e->end_ms - e->start_ms;
        if (dur > 0 || e->op.kind <= XDT_OP_BWD_WEIGHT)
            fprintf(f,
                    ",\n{\"ph\":\"X\",\"pid\":0,\"tid\":%d,\"name\":\"%s\",\"cat\":\"%s\","
                    "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"microbatch\":%d,\"chunk\":%d}}",
                    e->rank, label, xdt_trace_op_category(e->op.kind), e->start_ms * 1e3, dur * 1e3,
                    e->op.microbatch, e->op.chunk);
        if (e->op.kind == XDT_OP_SEND_ACT || e->op.kind == XDT_OP_SEND_GRAD) {
            /* the transfer on its link lane: serialisation, then flight until arrival */
            const int to = e->rank / P * P + e->op.peer; /* the peer in the same replica */
            int lane = 1000 + e->rank * R + to;
            fprintf(f,
                    ",\n{\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"name\":\"%s\",\"cat\":\"link\","
                    "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"from\":%d,\"to\":%d}}",
                    lane, label, e->wire_start_ms * 1e3, (e->arrive_ms - e->wire_start_ms) * 1e3,
                    e->rank, to);
        }
    }
    for (int a = 0; a < R; a++)
        for (int b = 0; b < R; b++)
            if (r->link_bytes[a * R + b] > 0)
                fprintf(f,
                        ",\n{\"ph\":\"M\",\"pid\":1,\"tid\":%d,\"name\":\"thread_name\","
                        "\"args\":{\"name\":\"link %d->%d\"}}",
                        1000 + a * R + b, a, b);
    fprintf(f,
            ",\n{\"ph\":\"M\",\"pid\":1,\"name\":\"process_name\",\"args\":{\"name\":\"links\"}}");
    fprintf(f, "\n],\"displayTimeUnit\":\"ms\"}\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return xdt_fail(XDT_ERR_IO, "%s: cannot write the trace", path);
    }
    return XDT_OK;
}
