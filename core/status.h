/* status.h: the one status enum every xdt function returns, and its names. */
#ifndef XDT_STATUS_H
#define XDT_STATUS_H

typedef enum xdt_status {
    XDT_OK = 0,
    XDT_ERR_INVALID_ARG = -1, /* a caller passed a value outside the contract */
    XDT_ERR_NO_MEMORY = -2,   /* an allocation failed or would not fit */
    XDT_ERR_IO = -3,          /* open/read/write/fsync/rename failed */
    XDT_ERR_FORMAT = -4,      /* a file or frame is malformed (magic, version, size, checksum) */
    XDT_ERR_CONFIG = -5,      /* a configuration file or flag is wrong */
    XDT_ERR_DEVICE = -6,      /* a device backend reported a failure */
    XDT_ERR_UNSUPPORTED = -7, /* a feature is not available in this build or on this device */
    XDT_ERR_NUMERIC = -8,     /* a NaN or infinity appeared where a finite value is required */
    XDT_ERR_TIMEOUT = -9,     /* a peer did not answer in time */
    XDT_ERR_PEER = -10,       /* a peer failed, closed the connection or was refused */
    XDT_ERR_AUTH = -11,       /* a peer could not prove it holds the job secret */
} xdt_status;

/* Returns a short constant English name for a status ("ok", "out of memory", ...). */
const char *xdt_status_string(xdt_status status);

#endif
