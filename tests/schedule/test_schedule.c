/* test_schedule.c: the schedule generators validate and keep the expected microbatches in
 * flight; hand-written broken schedules are rejected with a fitting reason. */
#include <string.h>

#include "core/schedule.h"
#include "tests/unit/test_util.h"

static int imin(int a, int b) {
    return a < b ? a : b;
}

/* Validates and reports the reason on failure. */
static int valid(const xdt_schedule *s, const char *what) {
    char why[512];
    xdt_status rc = xdt_schedule_validate(s, why, sizeof why);
    CHECK_MSG(rc == XDT_OK, "%s: %s", what, why);
    return rc == XDT_OK;
}

static void test_gpipe_and_1f1b(void) {
    for (int P = 1; P <= 6; P++) {
        for (int M = 1; M <= 12; M++) {
            char what[64];
            xdt_schedule *g = NULL, *f = NULL;
            snprintf(what, sizeof what, "gpipe P=%d M=%d", P, M);
            CHECK(xdt_schedule_gpipe(P, M, &g) == XDT_OK);
            if (g && valid(g, what))
                for (int r = 0; r < P; r++)
                    CHECK(xdt_schedule_max_in_flight(g, r) == M);
            snprintf(what, sizeof what, "1f1b P=%d M=%d", P, M);
            CHECK(xdt_schedule_1f1b(P, M, &f) == XDT_OK);
            if (f && valid(f, what))
                for (int r = 0; r < P; r++)
                    CHECK_MSG(xdt_schedule_max_in_flight(f, r) == imin(P - r, M),
                              "%s rank %d: in flight %d", what, r,
                              xdt_schedule_max_in_flight(f, r));
            xdt_schedule_destroy(g);
            xdt_schedule_destroy(f);
        }
    }
}

static void test_interleaved(void) {
    for (int P = 1; P <= 6; P++) {
        for (int V = 2; V <= 3; V++) {
            for (int M = P; M <= 12; M += P) {
                char what[64];
                snprintf(what, sizeof what, "interleaved P=%d M=%d V=%d", P, M, V);
                xdt_schedule *s = NULL;
                CHECK(xdt_schedule_interleaved(P, M, V, &s) == XDT_OK);
                if (s) {
                    valid(s, what);
                    CHECK(xdt_schedule_chunks(s) == V);
                    for (int r = 0; r < P; r++) /* Megatron: warm-up + 1, at most M*V */
                        CHECK_MSG(xdt_schedule_max_in_flight(s, r) ==
                                      imin((P - r - 1) * 2 + (V - 1) * P + 1, M * V),
                                  "%s rank %d: in flight %d", what, r,
                                  xdt_schedule_max_in_flight(s, r));
                }
                xdt_schedule_destroy(s);
            }
        }
    }
    xdt_schedule *s = NULL;
    CHECK(xdt_schedule_interleaved(4, 6, 2, &s) == XDT_ERR_INVALID_ARG); /* 6 % 4 != 0 */
    CHECK(s == NULL);
}

static void test_xdc(void) {
    int extra[6];
    for (int P = 1; P <= 6; P++) {
        for (int M = 1; M <= 12; M++) {
            /* Extras that need no raising upstream: alternating 0/1, and 2 on rank 0 only. */
            for (int pattern = 0; pattern < 2; pattern++) {
                for (int r = 0; r < P; r++)
                    extra[r] = pattern == 0 ? r % 2 : (r == 0 ? 2 : 0);
                char what[64];
                snprintf(what, sizeof what, "xdc P=%d M=%d pattern %d", P, M, pattern);
                xdt_schedule *s = NULL;
                CHECK(xdt_schedule_xdc(P, M, extra, &s) == XDT_OK);
                if (s && valid(s, what))
                    for (int r = 0; r < P; r++)
                        CHECK_MSG(xdt_schedule_max_in_flight(s, r) == imin(P - r + extra[r], M),
                                  "%s rank %d: in flight %d", what, r,
                                  xdt_schedule_max_in_flight(s, r));
                xdt_schedule_destroy(s);
            }
            /* A big extra on the last rank is fed by raising its predecessors. */
            for (int r = 0; r < P; r++)
                extra[r] = r == P - 1 ? 3 : 0;
            xdt_schedule *s = NULL;
            CHECK(xdt_schedule_xdc(P, M, extra, &s) == XDT_OK);
            if (s && valid(s, "xdc, extra 3 on the last rank")) {
                for (int r = 0; r < P; r++) {
                    int raised = 3 - (P - 1 - r) > 0 ? 3 - (P - 1 - r) : 0;
                    CHECK_MSG(xdt_schedule_max_in_flight(s, r) == imin(P - r + raised, M),
                              "P=%d M=%d rank %d: in flight %d", P, M, r,
                              xdt_schedule_max_in_flight(s, r));
                }
            }
            xdt_schedule_destroy(s);
        }
    }
    xdt_schedule *a = NULL, *b = NULL;
    CHECK(xdt_schedule_xdc(4, 8, NULL, &a) == XDT_OK);
    CHECK(xdt_schedule_1f1b(4, 8, &b) == XDT_OK);
    if (a && b)
        for (int r = 0; r < 4; r++) {
            CHECK(xdt_schedule_num_ops(a, r) == xdt_schedule_num_ops(b, r));
            CHECK(!memcmp(xdt_schedule_ops(a, r), xdt_schedule_ops(b, r),
                          (size_t)xdt_schedule_num_ops(a, r) * sizeof(xdt_op)));
        }
    xdt_schedule_destroy(a);
    xdt_schedule_destroy(b);
}

/* A 1F1B schedule with every BWD split into BWD_INPUT, SEND_GRAD, then BWD_WEIGHT. */
static void test_split_backward(void) {
    xdt_schedule *f = NULL, *s = NULL;
    CHECK(xdt_schedule_1f1b(3, 5, &f) == XDT_OK);
    CHECK(xdt_schedule_create(XDT_SCHEDULE_CUSTOM, 3, 5, 1, &s) == XDT_OK);
    if (!f || !s) goto out;
    for (int r = 0; r < 3; r++) {
        const xdt_op *ops = xdt_schedule_ops(f, r);
        int n = xdt_schedule_num_ops(f, r);
        for (int i = 0; i < n; i++) {
            xdt_op op = ops[i];
            if (op.kind != XDT_OP_BWD) {
                CHECK(xdt_schedule_append(s, r, op) == XDT_OK);
                continue;
            }
            op.kind = XDT_OP_BWD_INPUT;
            CHECK(xdt_schedule_append(s, r, op) == XDT_OK);
            if (i + 1 < n && ops[i + 1].kind == XDT_OP_SEND_GRAD)
                CHECK(xdt_schedule_append(s, r, ops[++i]) == XDT_OK);
            op.kind = XDT_OP_BWD_WEIGHT;
            CHECK(xdt_schedule_append(s, r, op) == XDT_OK);
        }
    }
    valid(s, "split backward");
    CHECK(xdt_schedule_max_in_flight(s, 0) == 3);
out:
    xdt_schedule_destroy(f);
    xdt_schedule_destroy(s);
}

static void test_print(void) {
    xdt_schedule *s = NULL;
    CHECK(xdt_schedule_1f1b(2, 2, &s) == XDT_OK);
    FILE *f = tmpfile();
    if (!s || !f) goto out;
    xdt_schedule_print(s, f);
    char buf[4096] = "";
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    CHECK(strstr(buf, "schedule 1f1b: 2 ranks, 2 microbatches") != NULL);
    CHECK(strstr(buf, "rank 0 op 0: FWD mb 0\n") != NULL);
    CHECK(strstr(buf, "rank 0 op 1: SEND_ACT mb 0 to 1\n") != NULL);
    CHECK(strstr(buf, "rank 1 op 0: RECV_ACT mb 0 from 0\n") != NULL);
    CHECK(strstr(buf, "ALLREDUCE bucket 0\n") != NULL);
    CHECK(strstr(buf, "OPT_STEP\n") != NULL);
    CHECK(!strcmp(xdt_schedule_kind_name(XDT_SCHEDULE_INTERLEAVED), "interleaved"));
out:
    if (f) fclose(f);
    xdt_schedule_destroy(s);
}

/* --- hand-written bad schedules --- */

static void add(xdt_schedule *s, int r, xdt_op_kind k, int mb, int peer) {
    xdt_op op = {k, mb, 0, peer, -1};
    CHECK(xdt_schedule_append(s, r, op) == XDT_OK);
}

static void add_tail(xdt_schedule *s, int r) {
    xdt_op ar = {XDT_OP_ALLREDUCE, -1, 0, -1, 0}, opt = {XDT_OP_OPT_STEP, -1, 0, -1, -1};
    CHECK(xdt_schedule_append(s, r, ar) == XDT_OK);
    CHECK(xdt_schedule_append(s, r, opt) == XDT_OK);
}

/* Checks that `s` is rejected with a reason containing `expect`; destroys `s`. */
static void rejected(xdt_schedule *s, const char *expect, const char *what) {
    char why[512] = "";
    CHECK_MSG(xdt_schedule_validate(s, why, sizeof why) == XDT_ERR_INVALID_ARG, "%s accepted",
              what);
    CHECK_MSG(strstr(why, expect) != NULL, "%s: reason \"%s\" lacks \"%s\"", what, why, expect);
    xdt_schedule_destroy(s);
}

static xdt_schedule *custom(int P, int M) {
    xdt_schedule *s = NULL;
    CHECK(xdt_schedule_create(XDT_SCHEDULE_CUSTOM, P, M, 1, &s) == XDT_OK);
    return s;
}

static void test_rejects(void) {
    xdt_schedule *s = custom(1, 2); /* microbatch 0 never goes backward */
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_FWD, 1, -1);
    add(s, 0, XDT_OP_BWD, 1, -1);
    add_tail(s, 0);
    rejected(s, "rank 0: microbatch 0 chunk 0: no backward", "missing backward");

    s = custom(1, 1);
    add(s, 0, XDT_OP_BWD, 0, -1);
    add(s, 0, XDT_OP_FWD, 0, -1);
    add_tail(s, 0);
    rejected(s, "rank 0: microbatch 0 chunk 0: BWD before its FWD", "BWD before FWD");

    s = custom(1, 1);
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_BWD, 0, -1);
    add_tail(s, 0);
    rejected(s, "duplicate FWD", "duplicate FWD");

    s = custom(2, 1); /* rank 0 forgets to send the activation rank 1 waits for */
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_RECV_GRAD, 0, 1);
    add(s, 0, XDT_OP_BWD, 0, -1);
    add_tail(s, 0);
    add(s, 1, XDT_OP_RECV_ACT, 0, 0);
    add(s, 1, XDT_OP_FWD, 0, -1);
    add(s, 1, XDT_OP_BWD, 0, -1);
    add(s, 1, XDT_OP_SEND_GRAD, 0, 0);
    add_tail(s, 1);
    rejected(s, "rank 1 waits forever: RECV_ACT mb 0 from rank 0, which never sends it",
             "RECV without SEND");

    s = custom(2, 1); /* rank 1 never receives the activation rank 0 sends */
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_SEND_ACT, 0, 1);
    add(s, 0, XDT_OP_RECV_GRAD, 0, 1);
    add(s, 0, XDT_OP_BWD, 0, -1);
    add_tail(s, 0);
    add(s, 1, XDT_OP_FWD, 0, -1);
    add(s, 1, XDT_OP_BWD, 0, -1);
    add(s, 1, XDT_OP_SEND_GRAD, 0, 0);
    add_tail(s, 1);
    rejected(s, "rank 0: SEND_ACT mb 0 chunk 0 to rank 1 is never received", "SEND without RECV");

    s = custom(2, 1); /* both ranks receive first */
    add(s, 0, XDT_OP_RECV_GRAD, 0, 1);
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_SEND_ACT, 0, 1);
    add(s, 0, XDT_OP_BWD, 0, -1);
    add_tail(s, 0);
    add(s, 1, XDT_OP_RECV_ACT, 0, 0);
    add(s, 1, XDT_OP_FWD, 0, -1);
    add(s, 1, XDT_OP_BWD, 0, -1);
    add(s, 1, XDT_OP_SEND_GRAD, 0, 0);
    add_tail(s, 1);
    rejected(s,
             "deadlock: rank 0 blocked at op 0 (RECV_GRAD mb 0 from 1), rank 1 blocked at op 0 "
             "(RECV_ACT mb 0 from 0)",
             "cross-wait deadlock");

    s = custom(2, 1); /* a send to the wrong rank's neighbour */
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_SEND_ACT, 0, 0);
    rejected(s, "peer is rank 0", "wrong peer");

    s = custom(1, 1); /* no OPT_STEP */
    add(s, 0, XDT_OP_FWD, 0, -1);
    add(s, 0, XDT_OP_BWD, 0, -1);
    rejected(s, "does not end with ALLREDUCE then OPT_STEP", "missing tail");

    s = custom(1, 1); /* compute after the all-reduce */
    add(s, 0, XDT_OP_FWD, 0, -1);
    xdt_op ar = {XDT_OP_ALLREDUCE, -1, 0, -1, 0};
    CHECK(xdt_schedule_append(s, 0, ar) == XDT_OK);
    add(s, 0, XDT_OP_BWD, 0, -1);
    rejected(s, "BWD after ALLREDUCE", "compute after ALLREDUCE");

    /* Each 1F1B schedule loses one op in turn: every loss must be caught. */
    xdt_schedule *f = NULL;
    CHECK(xdt_schedule_1f1b(3, 4, &f) == XDT_OK);
    for (int r = 0; f && r < 3; r++) {
        for (int drop = 0; drop < xdt_schedule_num_ops(f, r); drop++) {
            xdt_schedule *d = custom(3, 4);
            for (int q = 0; q < 3; q++)
                for (int i = 0; i < xdt_schedule_num_ops(f, q); i++)
                    if (q != r || i != drop) xdt_schedule_append(d, q, xdt_schedule_ops(f, q)[i]);
            char why[512];
            CHECK_MSG(xdt_schedule_validate(d, why, sizeof why) == XDT_ERR_INVALID_ARG,
                      "1f1b without rank %d op %d accepted", r, drop);
            xdt_schedule_destroy(d);
        }
    }
    xdt_schedule_destroy(f);
}

int main(void) {
    test_gpipe_and_1f1b();
    test_interleaved();
    test_xdc();
    test_split_backward();
    test_print();
    test_rejects();
    return test_exit_code("test_schedule");
}
