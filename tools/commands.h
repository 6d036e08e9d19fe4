/* commands.h: the `xdt` subcommands, one file each; each returns the process exit code. */
#ifndef XDT_COMMANDS_H
#define XDT_COMMANDS_H

int xdt_cmd_train(int argc, char **argv);
int xdt_cmd_eval(int argc, char **argv);
int xdt_cmd_bench(int argc, char **argv);
int xdt_cmd_plan(int argc, char **argv);
int xdt_cmd_simulate(int argc, char **argv);
int xdt_cmd_worker(int argc, char **argv);
int xdt_cmd_launch(int argc, char **argv);
/* The worker's options (argv: plan.json, then options) checked as a worker would, its data
 * file opened and a --ckpt-dir without --resume checked unused: -1 when all are good, else the
 * exit code, the reason reported in one line.
 * xdt launch calls it before it starts any rank. */
int xdt_worker_check_args(int argc, char **argv);
int xdt_cmd_demo(int argc, char **argv);
int xdt_cmd_profile(int argc, char **argv);
int xdt_cmd_bench_link(int argc, char **argv);
int xdt_cmd_bench_codec(int argc, char **argv);

#endif
