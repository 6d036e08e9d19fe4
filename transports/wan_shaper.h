/* wan_shaper.h: a transport layer that makes links behave like WAN links: per peer, a one-way
 * latency, a jitter and a bandwidth (a token bucket with a burst of one message). It needs no
 * root and works over any transport. Sends on a link leave in order: message i departs when the
 * link has finished serialising message i-1 (size / bandwidth each) and arrives one latency
 * (plus jitter, never reordering) later; the shaper hands it to the inner transport at its
 * arrival time. Receives pass straight through. */
#ifndef XDT_WAN_SHAPER_H
#define XDT_WAN_SHAPER_H

#include <stdint.h>

#include "transports/transport.h"

typedef struct xdt_link_shape {
    double bandwidth_bps; /* bits per second; 0 = unlimited */
    double latency_s;     /* one-way */
    double jitter_s;      /* each message gets an extra delay uniform in [0, jitter] */
} xdt_link_shape;

/* Parses "1Gbps", "100Mbps", "2.5Gbit", "800kbps" into bits per second, and "25ms", "1.5ms",
 * "200us", "0.1s" into seconds. Errors name the text. */
xdt_status xdt_parse_bandwidth(const char *text, double *bps);
xdt_status xdt_parse_duration(const char *text, double *seconds);

typedef struct xdt_shaper_options {
    uint64_t seed; /* jitter draws */
    /* The clock in nanoseconds; NULL = CLOCK_MONOTONIC. Tests pass a virtual one. */
    uint64_t (*now_ns)(void *arg);
    void *now_arg;
} xdt_shaper_options;

/* Wraps `inner` (which the shaper then owns); shapes[p] applies to sends to peer p (world_size
 * entries; a zeroed entry leaves that link alone). */
xdt_status xdt_shaper_create(xdt_transport *inner, const xdt_link_shape *shapes,
                             const xdt_shaper_options *opts, xdt_transport **out);

/* For tests and traces: the departure and arrival times (ns, shaper clock) the shaper scheduled
 * for the last message sent to `peer`. */
void xdt_shaper_last_schedule(xdt_transport *shaped, int peer, uint64_t *depart_ns,
                              uint64_t *arrive_ns);

#endif
