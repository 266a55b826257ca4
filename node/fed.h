/*
 * fed.h: the node's side of federation (SPEC.md section 13): links to
 * other domains' nodes, the outbound queues they drain, and the inbound
 * links other nodes open to us.
 *
 * The server owns one struct fed when [federation] listen is set. It
 * hands it envelopes for other domains (queued durably by the store
 * first, then fed_kick), ephemeral envelopes (fed_send_now) and client
 * requests about remote users (fed_forward). What arrives from other
 * nodes goes back to the server through struct fed_hooks, so that a
 * remote envelope meets exactly the checks and the delivery path of a
 * local SEND.
 *
 * Backup relays (SPEC.md 13.5): an attempt walks the domain's SRV
 * targets in order; one whose key the domain lists in TXT _tern-relay
 * gets our envelopes signed (FED_RENV). As a relay (relay_for) fed keeps
 * what it takes for such a domain in the outbound queue and hands it to
 * that domain's own node only.
 *
 * Links carry requests one way (13.1): we open one to each domain we have
 * something for; the other node opens its own to us. A link is kept while
 * there is traffic and for a while after (keepalive PINGs), retried with
 * exponential backoff and full jitter while its domain is unreachable.
 */
#ifndef TERN_FED_H
#define TERN_FED_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "msg.h"
#include "net.h"
#include "store.h"
#include "tern_err.h"

#define FED_PORT_DEFAULT 7371
#define FED_WINDOW 8192             /* unanswered FED_ENV per link */
#define FED_ATTEMPTS_MAX 10         /* failures before an envelope is set
                                       aside (13.2) */
#define FED_BACKOFF_MIN_MS 1000
#define FED_BACKOFF_MAX_MS (10u * 60 * 1000)
#define FED_KEEPALIVE_MS 30000
#define FED_FORWARD_TIMEOUT_MS 10000 /* a relayed request's answer */
#define FED_PEERS_MAX 4096          /* domains we keep link state for */
#define FED_RELAY_FOR_MAX 64        /* domains one node relays for */
#define FED_RELAY_PINS_MAX 16       /* [federation] relays entries */
#define FED_RELAY_RECHECK_MS 60000  /* a link to a backup relay is closed
                                       after this, so the next attempt
                                       tries the domain's node first */
#define FED_RENV_HELD_MAX (16u << 20) /* bytes of FED_RENV one inbound
                                       link may have waiting for their
                                       checks; beyond, EBUSY */
#define FED_PUSH_PENDING_MAX 4096   /* requests + pushes waiting per link */

struct fed;

struct fed_config {
	const char *domain;         /* ours */
	const uint8_t *priv;        /* node static private key (32 bytes) */
	const char *listen;         /* "HOST:PORT" (numeric) */
	const char *peers;          /* static routes, or NULL/"none" */
	const char *dns_servers;    /* NULL/"system", or "IP[:PORT],..." */
	uint32_t dns_timeout_ms;    /* 0: the resolver's default */
	uint64_t retention_ms;      /* how long envelopes we relay for
	                               another domain are kept (13.5) */
	uint32_t inbound_rate;      /* envelopes/s one peer's link may bring
	                               (0: 50,000) */
	uint32_t inbound_burst;     /* and at once (0: 100,000) */
	const char *relay_for;      /* "D1,D2": domains we are a backup
	                               relay for, or NULL/"none" */
	const char *relays;         /* "DOMAIN/KEY,...": our own backup
	                               relays, or NULL/"none": DNS's */
};

/* What the server does for fed (all called on the loop thread). */
struct fed_hooks {
	/* deliver: a FED_ENV from a link authenticated for link_domain,
	 * whose sender is already checked to be in it. The server applies
	 * the checks of SPEC.md 7.2 from row 3 on and calls done(arg,
	 * status) once: 0 when durable (or, for class 3, handed on). A
	 * nonzero return means done will not be called. */
	int (*deliver)(void *srv, const struct msg_fed_env *e,
	    void (*done)(void *arg, int status), void *arg);
	/* request: a client request (DEVICE_LIST, PROFILE_GET, BUNDLE_GET)
	 * from remote user requester; done(arg, resp) once with the answer
	 * (borrowed). A nonzero return means done will not be called. */
	int (*request)(void *srv, const char *requester, const struct msg *req,
	    void (*done)(void *arg, const struct msg *resp), void *arg);
	/* notice_wake: a notice was queued for (user_id, device_id): fetch
	 * it if that device is connected. */
	void (*notice_wake)(void *srv, int64_t user_id, uint32_t device_id);
	/* presence: FED_PRESENCE from a link, its user checked to be in
	 * the link's domain and its viewer (to) in ours. May be NULL. */
	void (*presence)(void *srv, const struct msg_fed_presence *p);
	void *srv;
};

/*
 * fed_start: listens on cfg->listen and starts the outbound queues found
 * in the store (a link to each domain with something queued). Errors:
 * TERN_ECONFIG (a bad listen address or peers entry; a line on stderr via
 * log), TERN_EIO (cannot listen), TERN_ENOMEM.
 */
int fed_start(uv_loop_t *loop, struct net_loop *nl, struct store *store,
    const struct fed_config *cfg, const struct fed_hooks *hooks,
    struct fed **out) TERN_WUR;

/* fed_stop: closes links and the listener; cb(arg) when all is freed.
 * Envelopes in flight stay queued (the store still has them). */
void fed_stop(struct fed *f, void (*cb)(void *), void *arg);

/* fed_port: the port fed listens on (for tests that let it pick). */
uint16_t fed_port(const struct fed *f);

/* fed_kick: domain has (new) entries in the outbound queue: send them
 * now if its link is up, else open it (now, even if backing off). */
void fed_kick(struct fed *f, const char *domain);

/*
 * fed_offer: the outbound queue entry seq for domain, just committed, as
 * e (borrowed). Written at once if domain's link is established and has
 * nothing older still to send (write-through: no read back from the
 * store); otherwise as fed_kick, and the queue sends it in turn.
 */
void fed_offer(struct fed *f, const char *domain, int64_t seq,
    const struct msg_fed_env *e);

/*
 * Origin write-back (SPEC.md 13.2). The server submits the outbound
 * enqueue of a SEND (store_fed_enqueue_h), then calls fed_wb_begin: the
 * FED_ENV goes on the domain's link as soon as the link can take it and
 * has nothing older to send, before or after the commit. When the
 * destination's OK comes before the writer took the enqueue, fed
 * withdraws it (store_cancel): the entry is never written nor deleted.
 * Otherwise the entry is committed and handled by its answer as any
 * other.
 *
 * struct fed_wb lives in the server's context of that SEND, with the
 * envelope e; fed points at both only until fed_wb_end (or fed_stop).
 * The server calls fed_wb_end exactly once, in the enqueue's callback
 * (status, and res->seq when 0), with f = NULL once fed is gone. It
 * returns true if the destination has answered OK: then the SEND is
 * answered SENT whatever the status (the envelope is safe at the
 * destination), else SENT only for status 0. An envelope still waiting
 * for the link at its commit goes the way of fed_offer.
 *
 * Before that, the server offers the envelope with fed_wb_hold: if the
 * link can take it now, it is written and the enqueue is held back for
 * up to FED_HOLD_MS, since the OK usually comes sooner and then nothing
 * is stored here at all: fed calls w->taken (answer SENT, free the
 * context; w is not touched after). Otherwise, when the hold ends or
 * the destination refuses it or the link goes, fed calls w->submit: the
 * server submits the enqueue then (and goes on as after fed_wb_begin,
 * without calling it). fed_wb_hold returns false if it did not take the
 * envelope: submit it and call fed_wb_begin. The sender has no SENT for
 * a held envelope, so a crash loses nothing it was told was safe.
 */
struct fed_wb {
	void *peer;                 /* fed's peer while fed holds it */
	struct store_req *handle;   /* the enqueue, for store_cancel: the
	                               server sets it before fed_wb_begin */
	const struct msg_fed_env *e; /* the server's copy of the envelope */
	struct fed_wb *prev, *next; /* the peer's waiting list, in the
	                               order submitted (= commit order) */
	size_t slot;                /* its in-flight entry while sent */
	int state;                  /* fed.c's FWB_* */
	bool waiting;               /* not sent yet, not committed yet */
	bool nolast;                /* an earlier one failed: its commit
	                               must not move the link's position */
	/* fed_wb_hold: */
	void (*submit)(struct fed_wb *w);
	void (*taken)(struct fed_wb *w);
	uint64_t hold_until;        /* uv_now when it is submitted anyway */
	struct fed_wb *hprev, *hnext; /* fed's held list, by hold_until */
	bool held;                  /* sent, its enqueue not submitted */
};

/* Longest hold of an enqueue: longer than the destination's own hold of
 * its write while its device acknowledges (the reference node's is
 * 250 ms, server.c), so that an OK coming from a slow device's ACK or from
 * the destination's commit still spares our write. */
#define FED_HOLD_MS 500
#define FED_HOLD_MAX 16384          /* envelopes held at once, all links */
#define FED_HOLD_BYTES (32u << 20)  /* and their payload bytes */

bool fed_wb_hold(struct fed *f, const char *domain,
    const struct msg_fed_env *e, struct fed_wb *w);

void fed_wb_begin(struct fed *f, const char *domain,
    const struct msg_fed_env *e, struct fed_wb *w);
bool fed_wb_end(struct fed *f, const char *domain, struct fed_wb *w,
    int status, int64_t seq, const struct msg_fed_env *e);

/*
 * fed_send_now: an ephemeral envelope (class 3), never queued: written to
 * domain's link if it is established, else dropped. 0 or TERN_EUNREACH
 * (dropped; not an error to the sender, SPEC.md 13.2).
 */
int fed_send_now(struct fed *f, const char *domain,
    const struct msg_fed_env *e);

/*
 * fed_forward: relays the client request req (DEVICE_LIST, PROFILE_GET,
 * BUNDLE_GET) about a user of domain, on behalf of local user requester.
 * cb(arg, 0, resp) with the remote answer (borrowed; maybe an ERROR), or
 * cb(arg, TERN_EUNREACH / TERN_ETIMEOUT, NULL). Exactly once, never
 * synchronously. Returns TERN_ENOMEM or TERN_EINVAL synchronously (then
 * cb is not called).
 */
int fed_forward(struct fed *f, const char *domain, const char *requester,
    const struct msg *req, void (*cb)(void *arg, int status,
    const struct msg *resp), void *arg) TERN_WUR;

/*
 * fed_push_presence: tells domain's node that its user pr->to may now see
 * pr->user so (SPEC.md 13.6). Written at once on an established link, or
 * kept until the link is up (opening it) for at most the forwarding
 * deadline. Never answered. 0, or TERN_EUNREACH (domain being backed off
 * from), TERN_EBUSY (too much waiting for that link), TERN_ENOMEM: the
 * push is dropped; the subscription's renewal brings the state later.
 */
int fed_push_presence(struct fed *f, const char *domain,
    const struct msg_fed_presence *pr);

/* Counters for /metrics. */
struct fed_stats {
	uint64_t links_up;          /* outbound links established now */
	uint64_t inbound_up;        /* inbound links established now */
	uint64_t sent_total;        /* envelopes the destination took */
	uint64_t refused_total;     /* refused for good or set aside */
	uint64_t received_total;    /* envelopes from other nodes */
	uint64_t auth_refused_total; /* links refused: wrong key, domain */
	uint64_t rate_limited_total; /* inbound envelopes refused: EBUSY */
	uint64_t relayed_in_total;  /* envelopes stored as a backup relay */
	uint64_t relay_refused_total; /* FED_RENV refused: unauthorized
	                               relay or bad origin signature */
	uint64_t writeback_total;   /* envelopes the destination took
	                               before our enqueue was written:
	                               never stored here (13.2) */
};
void fed_stats(const struct fed *f, struct fed_stats *out);

#endif
