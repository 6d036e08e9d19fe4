/* bootstrap_env.c: rank, world size, store address and job secret from the environment
 * (torchrun, Slurm or Open MPI conventions). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "transports/bootstrap.h"

static xdt_status read_int(const char *name, long min, long max, long *out) {
    const char *s = getenv(name);
    char *end = NULL;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < min || v > max)
        return xdt_fail(XDT_ERR_CONFIG,
                        "environment variable %s='%s': expected an integer in "
                        "[%ld, %ld]",
                        name, s ? s : "", min, max);
    *out = v;
    return XDT_OK;
}

xdt_status xdt_bootstrap_env_read(xdt_bootstrap_env *out) {
    static const char *const pairs[][2] = {
        {"RANK", "WORLD_SIZE"},
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
        {"SLURM_PROCID", "SLURM_NTASKS"},
    };
    xdt_bootstrap_env e = {0};
    int which = -1;
    for (int i = 0; i < 3 && which < 0; i++)
        if (getenv(pairs[i][0])) which = i;
    if (which < 0)
        return xdt_fail(XDT_ERR_CONFIG, "no rank in the environment: set RANK and WORLD_SIZE (or "
                                        "run under srun or mpirun)");
    long rank = 0, world = 0, port = 29500;
    xdt_status st;
    if ((st = read_int(pairs[which][1], 1, XDT_MAX_RANKS, &world)) ||
        (st = read_int(pairs[which][0], 0, world - 1, &rank)))
        return st;
    if (getenv("MASTER_PORT") && (st = read_int("MASTER_PORT", 1, 65535, &port))) return st;
    const char *addr = getenv("MASTER_ADDR");
    if (!addr || !*addr) addr = "127.0.0.1";
    if (strlen(addr) >= sizeof e.master_addr)
        return xdt_fail(XDT_ERR_CONFIG, "environment variable MASTER_ADDR is too long");
    const char *token = getenv("XDT_JOB_TOKEN");
    if (!token || strlen(token) < 16)
        return xdt_fail(XDT_ERR_CONFIG,
                        "environment variable XDT_JOB_TOKEN must hold the job "
                        "secret (at least 16 characters; xdt launch generates one)");
    if (strlen(token) >= sizeof e.token)
        return xdt_fail(XDT_ERR_CONFIG, "environment variable XDT_JOB_TOKEN is too long");
    e.rank = (int)rank;
    e.world_size = (int)world;
    e.master_port = (int)port;
    snprintf(e.master_addr, sizeof e.master_addr, "%s", addr);
    snprintf(e.token, sizeof e.token, "%s", token);
    e.rank_var = pairs[which][0];
    *out = e;
    return XDT_OK;
}
