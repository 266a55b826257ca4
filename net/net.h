/*
 * net.h: TCP connections on libuv that speak the secure channel (chan.h).
 *
 * One net_loop per uv loop holds what all its connections share: one read
 * buffer (a connection owns no buffer while idle), the list of connections
 * with output to flush (written once per loop turn, so many messages to
 * one peer become one write), and one coarse timer that enforces
 * handshake deadlines and idle timeouts from two lists kept in deadline
 * order (appending is O(1), and the timer looks only at the heads).
 *
 * Ownership: net allocates a connection together with app_size bytes for
 * its owner (net_conn_data). It is freed by net right after the closed
 * callback returns. Callbacks may call net_conn_send and net_conn_close;
 * closing is deferred to a safe point, never done inside a callback chain.
 */
#ifndef TERN_NET_H
#define TERN_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "chan.h"
#include "slab.h"
#include "tern_err.h"

#define NET_READ_BUF (64 * 1024 + 4) /* the shared read buffer */
#define NET_ACCEPT_RETRY_MS 100 /* after no memory for a connection */
#define NET_APP_MAX (64u * 1024) /* owner data per connection, at most */
#define NET_CONN_SLABS 4 /* connection sizes pooled per loop; more: malloc */
#define NET_OUT_LIMIT_DEFAULT (4u * 1024 * 1024) /* queued output cap */

struct net_conn;
struct net_listener;

struct net_conn_cbs {
	/* open: the handshake finished (chan_remote_key is the peer's key). */
	void (*open)(struct net_conn *c);
	/* message: one whole message, borrowed. A nonzero result closes the
	 * connection with that error. */
	int (*message)(struct net_conn *c, const uint8_t *msg, size_t len);
	/* closed: the connection is gone; err says why (0: closed by us
	 * without error). The conn and its data are freed after return. */
	void (*closed)(struct net_conn *c, int err);
	/* error (optional): a protocol error from the peer's bytes, before
	 * the close; the owner may queue one last message (net_conn_send
	 * still works if the handshake had finished). */
	void (*error)(struct net_conn *c, int err);
};

struct net_config {
	uint32_t handshake_timeout_ms; /* connect to open; 0: default 10 s */
	uint32_t idle_timeout_ms;      /* no bytes received; 0: never */
	uint32_t max_unauth;           /* handshaking conns; 0: unlimited */
	uint32_t out_limit;            /* per-conn queued output; 0: default */
};

struct net_list {
	struct net_conn *head; /* oldest deadline */
	struct net_conn *tail; /* newest */
};

struct net_loop {
	uv_loop_t *loop;            /* the loop everything runs on */
	struct net_config cfg;      /* limits */
	uint8_t *rbuf;              /* the shared read buffer */
	uv_prepare_t flush_prepare; /* flushes before the loop blocks */
	uv_check_t flush_check;     /* flushes after I/O callbacks */
	uv_timer_t tick;            /* deadlines and idle timeouts */
	struct net_conn *dirty;     /* conns with output to flush */
	struct net_list hs;         /* handshaking, oldest first */
	struct net_list idle;       /* open, least recently heard first */
	struct net_listener *listeners; /* open listeners */
	uint32_t nconns;            /* connections alive */
	uint32_t nunauth;           /* of which handshaking */
	bool closing;               /* net_loop_close ran */
	void (*close_cb)(void *);   /* called when all is released */
	void *close_arg;            /* its argument */
	uint32_t open_handles;      /* own handles not yet closed */
	uint32_t ticks;             /* tick count, for the slower sweeps */
	/* Connections come from these, one per size (owner data differs
	 * between listeners): not malloc, see slab.h. Unused if size 0. */
	struct slab conn_slabs[NET_CONN_SLABS];
	uint64_t accept_retries;    /* accepts put off: no memory for the
	                               connection (net_accept_cb) */
	uint32_t test_fail_conns;   /* tests: fail this many allocations */
};

struct net_conn {
	uv_tcp_t tcp;               /* the socket; tcp.data is this conn */
	struct chan chan;           /* the secure channel */
	struct net_loop *nl;        /* shared state */
	struct net_listener *listener; /* where it came from, or NULL */
	const struct net_conn_cbs *cbs; /* owner's callbacks */
	uint8_t *out;               /* queued wire bytes, or NULL */
	uint64_t deadline;          /* hs deadline or last heard (ms) */
	struct net_conn *prev, *next; /* in nl->hs or nl->idle */
	struct net_conn *dirty_next;  /* in nl->dirty */
	/* The small fields together, without padding: an idle connection
	 * is mostly this struct (BENCHMARKS.md). */
	uint32_t out_len;           /* bytes in out */
	uint32_t out_cap;           /* allocated */
	uint32_t inflight;          /* bytes in a uv_write not yet done */
	int close_err;              /* why it is closing */
	uint32_t app_size;          /* bytes of owner data after this */
	uint8_t list;               /* which list: 0 none, 1 hs, 2 idle */
	uint8_t flags;              /* NET_F_* */
	_Alignas(8) uint8_t app[];  /* the owner's data (pointers at most:
	                               connections come from slab.h) */
};

/* net_loop_init: sets up the shared state on loop. */
int net_loop_init(struct net_loop *nl, uv_loop_t *loop,
    const struct net_config *cfg) TERN_WUR;

/* net_loop_close: closes listeners and every connection (each gets its
 * closed callback with TERN_ECLOSED), then net's own handles; cb runs
 * when everything is released. */
void net_loop_close(struct net_loop *nl, void (*cb)(void *), void *arg);

/*
 * net_listen: accepts connections on host:port as a responder of kind
 * with our static key s_priv (copied). app_size bytes of zeroed owner data
 * (at most NET_APP_MAX, else TERN_EINVAL) come with each connection.
 * msg_cap is the chan's first message cap. An accepted connection that
 * finds no memory waits for it: tried again every NET_ACCEPT_RETRY_MS.
 * On success *out is the listener (closed by net_loop_close or
 * net_listener_close). port 0 picks one: see net_listener_port.
 */
int net_listen(struct net_loop *nl, const char *host, uint16_t port,
    enum chan_kind kind, const uint8_t s_priv[NOISE_DHLEN], uint32_t msg_cap,
    const struct net_conn_cbs *cbs, size_t app_size, void *listener_data,
    struct net_listener **out) TERN_WUR;
uint16_t net_listener_port(const struct net_listener *l);
void *net_listener_data(const struct net_listener *l);
/* The listener a responder connection came from (NULL for initiators). */
struct net_listener *net_conn_listener(const struct net_conn *c);
void net_listener_close(struct net_listener *l);

/*
 * net_connect: connects to host:port as initiator with our static key
 * s_priv and, if the caller keeps it, its public key s_pub (NULL: the
 * handshake computes it, one X25519 operation). rs: for IK, the
 * responder's key (required); for XX, the key it must prove, or NULL.
 * app_size as for net_listen. If it fails synchronously, no callback is
 * ever called.
 */
int net_connect(struct net_loop *nl, const char *host, uint16_t port,
    enum chan_kind kind, enum chan_pattern pattern,
    const uint8_t s_priv[NOISE_DHLEN], const uint8_t *s_pub, const uint8_t *rs,
    uint32_t msg_cap, const struct net_conn_cbs *cbs, size_t app_size,
    struct net_conn **out) TERN_WUR;

/* net_conn_send: queues one message; written at the end of this turn,
 * in one frame with the other small messages of the turn (version 2
 * peers). Past the output cap the connection is aborted: TERN_ENOMEM. */
int net_conn_send(struct net_conn *c, const uint8_t *msg, size_t len) TERN_WUR;
/* net_conn_close: flushes what is queued, then closes. err is passed to
 * the closed callback. Safe to call more than once and from callbacks. */
void net_conn_close(struct net_conn *c, int err);
/* Aborts without flushing (a peer that lies gets no more of our time). */
void net_conn_abort(struct net_conn *c, int err);

static inline void *
net_conn_data(struct net_conn *c)
{
	return c->app;
}
static inline struct net_conn *
net_conn_from_data(void *data)
{
	return (struct net_conn *)((uint8_t *)data - offsetof(struct net_conn,
	    app));
}
bool net_conn_is_open(const struct net_conn *c);
uint32_t net_conn_queued(const struct net_conn *c); /* output bytes */

#endif
