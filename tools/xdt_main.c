/* xdt_main.c: the `xdt` command: dispatches to one subcommand per file. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "devices/device.h"
#include "tools/commands.h"

typedef struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand COMMANDS[] = {
    {"train", xdt_cmd_train, "train a GPT model in one process"},
    {"eval", xdt_cmd_eval, "mean cross-entropy of a saved model on a data file"},
    {"plan", xdt_cmd_plan, "place a model's pipeline on a cluster and predict the step"},
    {"simulate", xdt_cmd_simulate, "predict a plan's step and draw its timeline"},
    {"demo", xdt_cmd_demo,
     "plan, predict and train across two emulated datacenters, then summarize"},
    {"launch", xdt_cmd_launch, "run a plan: one worker per rank on this host, WAN emulated"},
    {"worker", xdt_cmd_worker, "run one rank of a plan (under xdt launch, srun, mpirun, torchrun)"},
    {"profile", xdt_cmd_profile, "measure each model unit's time on a device for the planner"},
    {"bench", xdt_cmd_bench, "measure a link (bench link) or the wire codecs (bench codec)"},
};
static const int N_COMMANDS = (int)(sizeof COMMANDS / sizeof COMMANDS[0]);

static void usage(FILE *out) {
    fprintf(out, "usage: xdt <command> [options]\n\n"
                 "xdt trains transformer models with pipeline parallelism across sites and mixed "
                 "GPUs.\n\ncommands:\n");
    for (int i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-10s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(out, "\nbuilt with: devices %s; transport %s\n", xdt_device_backends(),
#ifdef XDT_HAVE_UCX
            "UCX"
#else
            "in-process only (no UCX: launch and worker cannot run)"
#endif
    );
    fprintf(out, "\nRun `xdt <command> --help` for a command's options.\n");
}

int main(int argc, char **argv) {
    /* A write past a file-size limit must fail with EFBIG and be reported, not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 2, argv + 2);
    fprintf(stderr, "xdt: error: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
