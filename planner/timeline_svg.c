/* timeline_svg.c: SVG timelines of simulated (and, later, measured) steps. */
#include "planner/timeline_svg.h"

#include <stdio.h>

#include "core/log.h"

#define LEFT  90.0
#define WIDTH 1100.0
#define ROW   26.0
#define TOP   40.0

static const char *fill_of(xdt_op_kind k) {
    switch (k) {
    case XDT_OP_FWD:
        return "#4e79a7";
    case XDT_OP_BWD:
    case XDT_OP_BWD_INPUT:
        return "#f28e2b";
    case XDT_OP_BWD_WEIGHT:
        return "#e15759";
    case XDT_OP_ALLREDUCE:
    case XDT_OP_OPT_STEP:
        return "#76b7b2";
    default:
        return NULL;
    }
}

xdt_status xdt_timeline_write_svg(const char *path, const char *title, const xdt_schedule *s,
                                  const xdt_sim_result *r) {
    /* P here counts rows: every global rank of every replica */
    const int P = r->ranks, stages = r->stages, V = xdt_schedule_chunks(s);
    int lanes[256], n_links = 0; /* link rows: src * P + dst */
    for (int i = 0; i < P * P && n_links < 256; i++)
        if (r->link_bytes[i] > 0) lanes[n_links++] = i;
    const double scale = r->step_ms > 0 ? WIDTH / r->step_ms : 1;
    const double height = TOP + (P + n_links) * ROW + 40;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot create the timeline", tmp);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"11\">\n",
            LEFT + WIDTH + 20, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f, "<text x=\"10\" y=\"22\" font-size=\"15\">");
    for (const char *c = title; *c; c++) /* the title (a plan's path) as XML text */
        switch (*c) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        default:
            fputc(*c, f);
        }
    fprintf(f, ": step %.3f ms</text>\n", r->step_ms);
    for (int p = 0; p < P; p++) {
        double y = TOP + p * ROW;
        fprintf(f, "<text x=\"10\" y=\"%.1f\">rank %d</text>\n", y + 16, p);
        fprintf(f,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#f4f4f4\"/>\n",
                LEFT, y + 2, WIDTH, ROW - 4);
    }
    for (int k = 0; k < n_links; k++) {
        double y = TOP + (P + k) * ROW;
        fprintf(f, "<text x=\"10\" y=\"%.1f\">link %d&#8594;%d</text>\n", y + 16, lanes[k] / P,
                lanes[k] % P);
    }
    for (int i = 0; i < r->n_events; i++) {
        const xdt_sim_event *e = &r->events[i];
        const char *fill = fill_of(e->op.kind);
        if (fill && e->end_ms > e->start_ms) {
            double x = LEFT + e->start_ms * scale, w = (e->end_ms - e->start_ms) * scale;
            double y = TOP + e->rank * ROW;
            fprintf(f,
                    "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" "
                    "stroke=\"white\" stroke-width=\"0.5\"/>\n",
                    x, y + 2, w, ROW - 4, fill);
            if (e->op.microbatch >= 0 && w > 14) {
                if (V > 1)
                    fprintf(f,
                            "<text x=\"%.2f\" y=\"%.1f\" fill=\"white\" text-anchor=\"middle\">"
                            "%d.%d</text>\n",
                            x + w / 2, y + 17, e->op.microbatch, e->op.chunk);
                else
                    fprintf(f,
                            "<text x=\"%.2f\" y=\"%.1f\" fill=\"white\" text-anchor=\"middle\">"
                            "%d</text>\n",
                            x + w / 2, y + 17, e->op.microbatch);
            }
        }
        if (e->op.kind == XDT_OP_SEND_ACT || e->op.kind == XDT_OP_SEND_GRAD) {
            int lane = 0;
            const int to = e->rank / stages * stages + e->op.peer;
            while (lane < n_links && lanes[lane] != e->rank * P + to)
                lane++;
            double y = TOP + (P + lane) * ROW;
            double x = LEFT + e->wire_start_ms * scale;
            double w = (e->arrive_ms - e->wire_start_ms) * scale;
            fprintf(f,
                    "<rect x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" fill=\"%s\" "
                    "opacity=\"0.6\"/>\n",
                    x, y + 6, w > 0.5 ? w : 0.5, ROW - 12,
                    e->op.kind == XDT_OP_SEND_ACT ? "#4e79a7" : "#f28e2b");
        }
    }
    double ly = TOP + (P + n_links) * ROW + 22;
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"#4e79a7\"/><text "
            "x=\"%.0f\" y=\"%.0f\">forward</text>\n",
            LEFT, ly - 10, LEFT + 16, ly);
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"#f28e2b\"/><text "
            "x=\"%.0f\" y=\"%.0f\">backward</text>\n",
            LEFT + 90, ly - 10, LEFT + 106, ly);
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\">grey: idle (bubble); link rows: transfers, "
            "serialisation and flight</text>\n",
            LEFT + 190, ly);
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return xdt_fail(XDT_ERR_IO, "%s: cannot write the timeline", path);
    }
    return XDT_OK;
}
