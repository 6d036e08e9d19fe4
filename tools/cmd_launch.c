/* cmd_launch.c: `xdt launch plan.json --data PATH [worker options]`: starts one `xdt worker` per
 * rank of the plan on this host (every site emulated here) with the torchrun-style environment
 * the bootstrap reads (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and a fresh XDT_JOB_TOKEN,
 * then watches them. Rank 0 keeps the terminal; the others' standard output is discarded
 * (their errors still reach standard error). If a rank fails, the others get the time to notice
 * the lost peer themselves (their own timeout plus a margin) and are then stopped; the launcher
 * exits non-zero naming the rank and how it ended. Ctrl-C (or SIGTERM) stops every rank; a
 * worker whose launcher dies is stopped by the kernel (PR_SET_PDEATHSIG), so none is orphaned. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "planner/plan_io.h"
#include "tools/commands.h"

static volatile sig_atomic_t stop_signal = 0;

static void on_signal(int sig) {
    stop_signal = sig;
}

/* A port the kernel considers free now (bind to port 0 and read it back). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static xdt_status job_token(char *out, size_t cap) {
    const char *given = getenv("XDT_JOB_TOKEN");
    if (given && *given) {
        snprintf(out, cap, "%s", given);
        return XDT_OK;
    }
    unsigned char raw[16];
    FILE *f = fopen("/dev/urandom", "rb");
    const bool ok = f && fread(raw, sizeof raw, 1, f) == 1;
    if (f) fclose(f);
    if (!ok) return xdt_fail(XDT_ERR_IO, "xdt launch: cannot read /dev/urandom for the job token");
    for (size_t i = 0; i < sizeof raw && 2 * i + 2 < cap; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return XDT_OK;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* How a child ended, in words. */
static void describe_exit(int status, char *buf, size_t cap) {
    if (WIFSIGNALED(status))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
}

/* Starts rank r: the worker with the plan and the pass-through arguments. */
static pid_t spawn(int r, int world, int port, const char *token, const char *plan, int argc,
                   char **argv) {
    const pid_t launcher = getpid();
    const pid_t pid = fork();
    if (pid != 0) return pid;
    /* the child: die with the launcher, take the default signal actions back */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != launcher) _exit(1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    char v[32];
    snprintf(v, sizeof v, "%d", r);
    setenv("RANK", v, 1);
    setenv("LOCAL_RANK", v, 1);
    snprintf(v, sizeof v, "%d", world);
    setenv("WORLD_SIZE", v, 1);
    setenv("LOCAL_WORLD_SIZE", v, 1);
    snprintf(v, sizeof v, "%d", port);
    setenv("MASTER_PORT", v, 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    setenv("XDT_JOB_TOKEN", token, 1);
    if (r > 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, STDOUT_FILENO);
    }
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args) _exit(1);
    args[0] = "xdt";
    args[1] = "worker";
    args[2] = (char *)plan;
    for (int i = 0; i < argc; i++)
        args[3 + i] = argv[i];
    execv("/proc/self/exe", args);
    fprintf(stderr, "xdt: error: xdt launch: cannot start rank %d: %s\n", r, strerror(errno));
    _exit(127);
}

static void signal_all(const pid_t *pids, const bool *alive, int n, int sig) {
    for (int r = 0; r < n; r++)
        if (alive[r]) kill(pids[r], sig);
}

/* The longest a worker waits for a lost peer (its --timeout), to let it report the loss. */
static int worker_timeout_s(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc) return atoi(argv[i + 1]);
        if (!strncmp(argv[i], "--timeout=", 10)) return atoi(argv[i] + 10);
    }
    return 30;
}

int xdt_cmd_launch(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || argv[0][0] == '-') {
        FILE *out =
            argc >= 1 && argv[0][0] == '-' && strcmp(argv[0], "--help") && strcmp(argv[0], "-h")
                ? stderr
                : stdout;
        fprintf(out, "usage: xdt launch plan.json --data PATH [worker options]\n\n"
                     "Starts one xdt worker per rank of the plan on this host, all sites emulated "
                     "here\n(links between sites shaped as the cluster says unless "
                     "--no-emulate-wan).\nEvery option after the plan goes to each worker: see xdt "
                     "worker --help.\n");
        return out == stdout ? 0 : 2;
    }
    const char *plan_path = argv[0];
    const int checked = xdt_worker_check_args(argc, argv); /* one line, not one per rank */
    if (checked >= 0) return checked;
    xdt_loaded_plan plan;
    if (xdt_plan_load(plan_path, &plan) != XDT_OK) return 1;
    const int world = plan.ranks;
    xdt_plan_free(&plan);
    char token[80];
    const int port = free_port();
    if (port < 0) {
        xdt_log_error("xdt launch: no free TCP port on 127.0.0.1 for the bootstrap store");
        return 1;
    }
    if (job_token(token, sizeof token) != XDT_OK) return 1;
    pid_t *pids = calloc((size_t)world, sizeof *pids);
    bool *alive = calloc((size_t)world, sizeof *alive);
    int *status = calloc((size_t)world, sizeof *status);
    if (!pids || !alive || !status) {
        xdt_log_error("xdt launch: out of memory");
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int started = 0;
    for (; started < world; started++) {
        pids[started] = spawn(started, world, port, token, plan_path, argc - 1, argv + 1);
        if (pids[started] < 0) {
            xdt_log_error("xdt launch: cannot fork rank %d: %s", started, strerror(errno));
            break;
        }
        alive[started] = true;
    }
    int running = started, failed_rank = started < world ? started : -1, failed_status = 0;
    double stop_at = started < world ? now_s() : -1; /* when the survivors get SIGTERM */
    bool terminated = false;
    const double grace = worker_timeout_s(argc - 1, argv + 1) + 5.0;
    double killed_at = -1;
    while (running > 0) {
        int st = 0;
        const pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid > 0) {
            for (int r = 0; r < world; r++) {
                if (!alive[r] || pids[r] != pid) continue;
                alive[r] = false;
                status[r] = st;
                running--;
                const bool bad = !WIFEXITED(st) || WEXITSTATUS(st) != 0;
                if (bad && failed_rank < 0 && !stop_signal) {
                    failed_rank = r;
                    failed_status = st;
                    /* let the others notice the lost peer and say so, then stop them */
                    stop_at = now_s() + grace;
                }
            }
            continue;
        }
        if (stop_signal && !terminated) {
            signal_all(pids, alive, world, SIGTERM);
            terminated = true;
            killed_at = now_s() + 5;
        }
        if (stop_at >= 0 && now_s() >= stop_at && !terminated) {
            signal_all(pids, alive, world, SIGTERM);
            terminated = true;
            killed_at = now_s() + 5;
        }
        if (killed_at >= 0 && now_s() >= killed_at) {
            signal_all(pids, alive, world, SIGKILL);
            killed_at = -1;
        }
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    int rc = 0;
    char how[96];
    if (stop_signal) {
        xdt_log_error("xdt launch: stopped by signal %d (%s); all %d ranks ended", (int)stop_signal,
                      strsignal(stop_signal), world);
        rc = 128 + stop_signal;
    } else if (failed_rank >= 0) {
        if (failed_rank < started) {
            describe_exit(failed_status, how, sizeof how);
            xdt_log_error("xdt launch: rank %d %s; the job stopped", failed_rank, how);
        }
        for (int r = 0; r < started; r++) {
            if (r == failed_rank || (WIFEXITED(status[r]) && WEXITSTATUS(status[r]) == 0)) continue;
            describe_exit(status[r], how, sizeof how);
            xdt_log_error("xdt launch: rank %d then %s", r, how);
        }
        rc = 1;
    }
    free(pids);
    free(alive);
    free(status);
    return rc;
}
