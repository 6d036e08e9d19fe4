/* status.c: names of the status codes. */
#include "core/status.h"

const char *xdt_status_string(xdt_status status) {
    switch (status) {
    case XDT_OK:
        return "ok";
    case XDT_ERR_INVALID_ARG:
        return "invalid argument";
    case XDT_ERR_NO_MEMORY:
        return "out of memory";
    case XDT_ERR_IO:
        return "i/o error";
    case XDT_ERR_FORMAT:
        return "bad format";
    case XDT_ERR_CONFIG:
        return "configuration error";
    case XDT_ERR_DEVICE:
        return "device error";
    case XDT_ERR_UNSUPPORTED:
        return "unsupported";
    case XDT_ERR_NUMERIC:
        return "non-finite value";
    case XDT_ERR_TIMEOUT:
        return "timed out";
    case XDT_ERR_PEER:
        return "peer failed";
    case XDT_ERR_AUTH:
        return "authentication failed";
    }
    return "unknown status";
}
