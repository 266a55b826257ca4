/*
 * server.h: a running ternd node: the client listener, sessions, routing
 * of envelopes between devices, the offline queue's delivery, presence,
 * expiry and the loopback metrics/admin HTTP endpoint.
 *
 * Everything runs on one libuv loop thread; the store's writer thread is
 * the only other thread, and it talks to the loop only through the
 * store's completions.
 */
#ifndef TERN_SERVER_H
#define TERN_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "config.h"
#include "tern_err.h"

struct server;

/*
 * server_start: opens the store, listens for clients on cfg->listen and
 * serves metrics on cfg->metrics_listen. static_priv is the node's Noise
 * key (copied). On success the node runs as the loop runs; it stops on
 * SIGTERM/SIGINT (or server_stop) and then calls done(arg, status) once
 * everything it opened is closed.
 */
int server_start(uv_loop_t *loop, const struct node_config *cfg,
    const uint8_t static_priv[32], void (*done)(void *arg, int status),
    void *arg, struct server **out) TERN_WUR;

/* server_admin_port: the port the metrics/admin HTTP server listens on. */
uint16_t server_admin_port(const struct server *s);
/* server_port: the port the client listener listens on (the kernel's
 * pick when the configuration says 0). */
uint16_t server_port(const struct server *s);

/* server_clock_advance: TESTS ONLY: moves the clock the bundle fetch
 * rate limit reads (SPEC.md 12.3) ms forward, so a test sees buckets
 * refill without waiting. */
void server_clock_advance(struct server *s, uint64_t ms);

/* server_stop: stops accepting, closes sessions after what is queued to
 * them is written, lets the store commit everything, then calls done. */
void server_stop(struct server *s);

/* server_fed_port: the federation port (0 when federation is off). */
uint16_t server_fed_port(const struct server *s);

#endif
