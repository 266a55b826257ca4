/*
 * server.c: the running node (see server.h and SPEC.md section 7).
 *
 * Delivery. An envelope of class message or receipt is answered SENT only
 * when the store has committed it (durable), or when its recipient has
 * already acknowledged it (then it is safe with the recipient, and the
 * store's write is withdrawn: write-back, see pp_insert). A device that is
 * "live" (its backlog drained) gets envelopes pushed as they arrive, in
 * order of receipt. A device that logs in first drains its queue with
 * store_fetch in seq order; envelopes sent to it meanwhile are not pushed
 * but picked up by the next fetch ("dirty", set when they are submitted),
 * so nothing overtakes the backlog. The device acknowledges each envelope;
 * only then is it deleted. Ephemeral envelopes are pushed if the device is
 * online and live, else dropped; they are never stored.
 *
 * Load shedding follows the seed design ("deprioritise, don't drop"):
 * while the store's queue is deep, ephemeral envelopes are dropped and
 * receipts wait in memory until it drains; messages always go to the
 * store, and when even that is full the sender gets EBUSY and no SENT, so
 * its client resends later.
 *
 * Keys (SPEC.md section 12). The node checks the signature of an uploaded
 * signed prekey and stores the public keys; a bundle fetch consumes one
 * one-time prekey per device inside the store's writer, which is what
 * keeps a prekey from being served twice. Fetches of another user's
 * bundles are rate limited per (requester, target) in memory.
 */
#include "server.h"

#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "admin.h"
#include "http.h"
#include "ident.h"
#include "keyfile.h"
#include "fed.h"
#include "log.h"
#include "metrics.h"
#include "msg.h"
#include "net.h"
#include "ratelimit.h"
#include "rcache.h"
#include "sig.h"
#include "slab.h"
#include "store.h"

#define SRV_FETCH_BATCH 128        /* envelopes per fetch */
#define SRV_INFLIGHT_RESUME 64     /* fetch more when fewer unacked */
#define SRV_INFLIGHT_LIVE_MAX 4096 /* unacked pushes before draining */
#define SRV_OUT_LIVE_MAX (1u << 20) /* queued output before draining */
#define SRV_SUBS_MAX 256           /* presence subscriptions per session */
#define SRV_OVERLOAD_HIGH 16384    /* store backlog: start shedding */
#define SRV_OVERLOAD_LOW 4096      /* store backlog: stop shedding */
#define SRV_DEFERRED_MAX 65536     /* receipts held while overloaded */
#define SRV_USERS_BUCKETS0 1024    /* initial hash buckets */
#define SRV_PP_BUCKETS0 4096       /* pushed-before-commit table, at
                                      first; it doubles as it fills */
#define SRV_HOLD_MS 250            /* a pushed envelope's write waits
                                      this long for the device's ACK */
#define SRV_HOLD_MAX 65536         /* writes held back at once */
#define SRV_HOLD_BYTES (32u << 20) /* and their payload and context */
#define SRV_BUNDLE_BURST 6         /* bundle fetches per pair at once */
#define SRV_BUNDLE_INTERVAL_MS 100000 /* one more per 100 s (12.3) */
#define SRV_BUNDLE_PAIRS_MAX 65536 /* rate-limit buckets held */
#define SRV_PREKEYS_LOW 10         /* push KEYS_COUNT below this */
#define SRV_RCACHE_SLOTS 4096      /* recipients found in the store */
#define SRV_RCACHE_TTL_MS 10000    /* trusted this long (rcache.h) */
/* name@domain as formatted here; over 255 bytes it fails to encode. */
#define SRV_ADDR_BUF (STORE_NAME_MAX + 1 + 253 + 1)

struct session;
struct nuser;
struct rview;
struct rwatch;

/* A presence subscription: session sub watches user target. */
struct psub {
	struct session *sub;        /* who watches */
	struct nuser *target;       /* whom */
	struct psub *next_t;        /* in target->subs */
	struct psub *next_s;        /* in sub->subs */
};

/* What the node knows of a user while anyone is online or watching.
 * Widest fields first: no padding before the name. */
struct nuser {
	int64_t user_id;            /* store id */
	struct session *sessions;   /* its logged-in devices */
	struct psub *subs;          /* who watches it */
	struct rview *rviews;       /* who, in other domains, watches it */
	int64_t last_seen_ms;       /* last activity we know of */
	int64_t offline_at;         /* when to tell them "offline" (0: no,
	                               or back online while still listed) */
	double tokens;              /* send rate limit bucket */
	uint64_t tokens_ms;         /* its last refill */
	struct nuser *hnext;        /* hash chain */
	struct nuser *nnext;        /* chain in the by-name hash */
	struct nuser *onext;        /* in srv->going_offline */
	uint32_t refs;              /* sessions + subscriptions (and
	                               going_offline while listed) */
	uint32_t online;            /* how many */
	uint32_t nrviews;           /* how many */
	uint8_t privacy;            /* STORE_LASTSEEN_* */
	bool shown_online;          /* what subscribers were last told */
	bool listed;                /* in srv->going_offline */
	/* The local part, allocated to its length: an idle connection's
	 * user is a good part of what the connection costs (BENCHMARKS). */
	char name[];
};

enum session_state {
	SS_UNAUTH = 0,  /* handshake done, not logged in */
	SS_AUTHED,      /* logged in */
	SS_GONE         /* closing */
};

/* A client connection's session; the connection's owner data is a
 * pointer to it (conn_session). The 32- and 8-bit fields come last,
 * together, so that no padding sits between fields: every idle
 * connection has one. */
struct session {
	struct server *srv;         /* the node */
	struct net_conn *conn;      /* the connection */
	struct nuser *user;         /* once logged in */
	int64_t last_seq;           /* highest seq fetched or pushed */
	struct psub *subs;          /* of local users */
	struct rwatch *rwatches;    /* of users of other domains */
	struct session *unext;      /* in user->sessions */
	struct req_ctx *held_first; /* envelopes pushed to it whose write is
	                               held back, in arrival order (also in
	                               srv->held): flushed without a scan */
	struct req_ctx *held_last;
	uint32_t device_id;         /* once logged in */
	uint32_t inflight;          /* pushed, not yet acknowledged */
	uint32_t fed_waiting;       /* envelopes for us waiting for their
	                               commit to be pushed, since one from
	                               another domain found no room: later
	                               ones wait too, so none overtakes */
	uint32_t nsubs;             /* presence subscriptions, local and
	                               remote targets */
	uint32_t pending;           /* store requests holding this session */
	uint8_t state;              /* enum session_state */
	bool live;                  /* backlog drained: push on commit */
	bool fetching;              /* a store_fetch is under way */
	bool dirty;                 /* commits for us during the fetch */
	bool fetch_more;            /* the store has more for us */
};

/* A store request's context: the session may close before it completes,
 * so the session is kept (pending count) until the completion runs. */
struct req_ctx {
	struct server *srv;         /* the node */
	struct session *ss;         /* requester; NULL for a FED_ENV */
	void (*done)(void *, int);  /* FED_ENV: answer the link instead */
	void *done_arg;             /* its argument */
	uint32_t req;               /* its req id */
	uint8_t type;               /* request type */
	uint8_t env_id[MSG_ID_LEN]; /* SEND: envelope id */
	uint64_t t0_us;             /* when it arrived */
	struct nuser *rcpt;         /* SEND: recipient user (ref held) */
	uint32_t rcpt_device;       /* SEND: recipient device */
	uint8_t cls;                /* SEND: class */
	uint64_t sent_ms;           /* SEND: sender timestamp */
	uint32_t payload_len;       /* SEND: payload bytes */
	uint8_t *payload;           /* SEND: copy for the push */
	char from[SRV_ADDR_BUF];     /* SEND: sender address */
	uint32_t from_device;       /* SEND: sender device */
	struct req_ctx *next;       /* in the deferred receipts queue */
	struct store_req *handle;   /* SEND: the enqueue, for store_cancel */
	bool pushed;                /* SEND: delivered before the commit */
	struct session *push_to;    /* the session it was pushed to (a
	                               reference): a later login of the same
	                               device is another session */
	struct session *wait_to;    /* the live device whose fed_waiting
	                               counts it (a reference) */
	uint64_t received_ms;       /* FED_ENV: when the origin accepted it
	                               (0: a local SEND, accepted now) */
	bool in_pp;                 /* SEND: in srv->pp (awaiting ack) */
	bool held;                  /* SEND: in srv->held, not submitted */
	uint64_t hold_until;        /* then submitted (uv_now) */
	struct req_ctx *hnext;      /* in srv->held */
	struct req_ctx *hprev;
	struct req_ctx *dnext;      /* in push_to's held list */
	struct req_ctx *dprev;
	struct req_ctx *pp_next;    /* hash chain in srv->pp */
	int64_t target_user;        /* BUNDLE_GET: whose bundles */
};

/* A user's name lives in its nuser, so users come in sizes: one pool per
 * SLAB_ALIGN bytes of name, the smallest for the shortest names. */
#define SRV_USER_BYTES(nlen) (offsetof(struct nuser, name) + (nlen) + 1)
#define SRV_USER_SLAB(nlen) \
	((SRV_USER_BYTES(nlen) + SLAB_ALIGN - 1) / SLAB_ALIGN - \
	 (SRV_USER_BYTES(0) + SLAB_ALIGN - 1) / SLAB_ALIGN)
#define SRV_USER_SLABS (SRV_USER_SLAB(STORE_NAME_MAX) + 1)

struct server {
	uv_loop_t *loop;            /* everything runs here */
	struct node_config cfg;     /* configuration (copy) */
	uint8_t priv[32];           /* node static key */
	struct store *store;        /* durable state */
	struct net_loop nl;         /* connections */
	struct net_listener *lis;   /* client listener */
	struct http_server *http;   /* metrics and admin */
	struct metrics m;           /* counters */
	char admin_token[128];      /* for the admin endpoints */
	uv_signal_t sigterm;        /* stop */
	uv_signal_t sigint;         /* stop */
	uv_timer_t timer;           /* expiry, presence, sampling, shedding */
	uint64_t next_expire;       /* when to run store_expire next */
	struct nuser **users;       /* hash of nuser by user_id */
	struct nuser **names;       /* the same by name */
	uint32_t nbuckets;          /* of each; a power of two */
	uint32_t nusers;            /* entries */
	struct nuser *going_offline; /* users whose devices all left */
	struct req_ctx *deferred;   /* receipts held while overloaded */
	struct req_ctx *deferred_tail; /* append here */
	uint32_t ndeferred;         /* how many */
	struct req_ctx **pp;        /* pushed before commit, by recipient
	                               and envelope id */
	uint32_t pp_nb;             /* its buckets, a power of two */
	uint32_t pp_count;          /* entries */
	struct req_ctx *held;       /* pushed, write held back, oldest
	                               first (see hold_add) */
	struct req_ctx *held_tail;
	uint32_t nheld;             /* how many */
	size_t held_bytes;          /* their payloads and contexts */
	uv_timer_t hold_timer;      /* submits them when their time is up */
	struct ratelimit *bundle_rl; /* BUNDLE_GET per (requester, target) */
	struct rcache *rcache;      /* recipients lately found in the store */
	struct fed *fed;            /* federation, or NULL when off */
	struct rwatch *rw_head;     /* all rwatches, by renewal time */
	struct rwatch *rw_tail;
	uint32_t nrviews;           /* rviews of all users */
	uint64_t next_rview_expiry; /* uv_now of the next sweep */
	uint64_t presence_pushed;   /* FED_PRESENCE sent */
	uint64_t clock_skew_ms;     /* added to the rate limit's clock
	                               (server_clock_advance, tests only) */
	bool overloaded;            /* shedding load */
	bool expiring;              /* a store_expire is under way */
	bool stopping;              /* server_stop ran */
	uint32_t closing_parts;     /* parts still closing */
	void (*done)(void *, int);  /* called when stopped */
	void *done_arg;             /* its argument */
	int status;                 /* exit status for done */
	/* Sessions and users live as long as connections: kept apart from
	 * the heap's short-lived allocations (slab.h). */
	struct slab session_slab;
	struct slab user_slabs[SRV_USER_SLABS];
	uint64_t trim_total;        /* connections_total at the last trim */
	uint64_t trim_current;      /* connections_current then */
	uint64_t trim_ms;           /* when it ran (loop time) */
	uint64_t accept_retries;    /* nl.accept_retries at the last tick */
	uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* name_hash_full's,
	                               random */
	uint64_t pp_key[2];         /* pp_hash's, random */
};

static void session_fetch(struct session *ss);
static void commit_times(struct server *srv);
static void presence_changed(struct server *srv, struct nuser *u);
static void rview_push(struct server *srv, struct nuser *u);
static int rwatch_add(struct session *ss, const struct msg_str *target,
    uint32_t req);
static void rwatch_remove(struct session *ss, struct rwatch *w);
static struct rwatch *rwatch_find(struct session *ss,
    const struct msg_str *target);

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* --- users ----------------------------------------------------------- */

static uint32_t
user_hash(int64_t id)
{
	uint64_t x = (uint64_t)id * 0x9E3779B97F4A7C15ull;
	return (uint32_t)(x >> 32);
}

static struct nuser *
user_find(struct server *srv, int64_t id)
{
	struct nuser *u;

	for (u = srv->users[user_hash(id) & (srv->nbuckets - 1)]; u != NULL;
	    u = u->hnext)
		if (u->user_id == id)
			return u;
	return NULL;
}

/* name_hash_full: keyed (SipHash), since with open registration the
 * names are anyone's choice, and so would be the chains of a fixed hash. */
static uint32_t
name_hash_full(const struct server *srv, const char *name)
{
	uint8_t out[crypto_shorthash_BYTES];
	uint32_t h;

	crypto_shorthash(out, (const uint8_t *)name, strlen(name),
	    srv->hash_key);
	memcpy(&h, out, sizeof(h));
	return h;
}

/* name_bucket: a name's bucket in srv->names, sized like srv->users. */
static uint32_t
name_bucket(const struct server *srv, const char *name)
{
	return name_hash_full(srv, name) & (srv->nbuckets - 1);
}

/* user_grow: both tables twice the size, so that they grow with the
 * users rather than start at their largest (an idle connection's share
 * of a fixed 64k-bucket table was 35 B at 15,000: BENCHMARKS.md). */
static void
user_grow(struct server *srv)
{
	uint32_t nb = srv->nbuckets * 2, i, h;
	struct nuser **b = calloc(nb, sizeof(*b)), *u, *next;
	struct nuser **n = calloc(nb, sizeof(*n));

	if (b == NULL || n == NULL) {
		free(b);
		free(n);
		return; /* longer chains, still correct */
	}
	for (i = 0; i < srv->nbuckets; i++) {
		for (u = srv->users[i]; u != NULL; u = next) {
			next = u->hnext;
			h = user_hash(u->user_id) & (nb - 1);
			u->hnext = b[h];
			b[h] = u;
		}
		for (u = srv->names[i]; u != NULL; u = next) {
			next = u->nnext;
			h = name_hash_full(srv, u->name) & (nb - 1);
			u->nnext = n[h];
			n[h] = u;
		}
	}
	free(srv->users);
	free(srv->names);
	srv->users = b;
	srv->names = n;
	srv->nbuckets = nb;
}

/* user_by_name: the nuser of a user someone is online as or watches. */
static struct nuser *
user_by_name(struct server *srv, const char *name)
{
	struct nuser *u;

	for (u = srv->names[name_bucket(srv, name)]; u != NULL; u = u->nnext)
		if (strcmp(u->name, name) == 0)
			return u;
	return NULL;
}

/* user_get: the nuser for a store user, made on first use; a reference
 * is taken. NULL on allocation failure. */
static struct nuser *
user_get(struct server *srv, int64_t id, const char *name)
{
	struct store_profile p;
	struct nuser *u = user_find(srv, id);
	size_t nlen = strnlen(name, STORE_NAME_MAX);
	uint32_t b;

	if (u != NULL) {
		u->refs++;
		return u;
	}
	/* The pool whose objects have room for the name and its NUL. */
	if ((u = slab_alloc(&srv->user_slabs[SRV_USER_SLAB(nlen)])) == NULL)
		return NULL;
	u->user_id = id;
	memcpy(u->name, name, nlen);
	u->name[nlen] = '\0';
	u->refs = 1;
	u->tokens = srv->cfg.send_burst;
	u->tokens_ms = uv_now(srv->loop);
	if (store_profile_get(srv->store, id, &p) == 0) {
		u->last_seen_ms = p.last_seen_ms;
		u->privacy = (uint8_t)p.last_seen_privacy;
	}
	if (srv->nusers + 1 > srv->nbuckets)
		user_grow(srv);
	b = user_hash(id) & (srv->nbuckets - 1);
	u->hnext = srv->users[b];
	srv->users[b] = u;
	b = name_bucket(srv, u->name);
	u->nnext = srv->names[b];
	srv->names[b] = u;
	srv->nusers++;
	return u;
}

static void
user_put(struct server *srv, struct nuser *u)
{
	struct nuser **pp;

	if (--u->refs > 0)
		return;
	for (pp = &srv->users[user_hash(u->user_id) & (srv->nbuckets - 1)];
	    *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == u) {
			*pp = u->hnext;
			break;
		}
	}
	/* Never listed here: the list holds a reference. */
	for (pp = &srv->names[name_bucket(srv, u->name)]; *pp != NULL;
	    pp = &(*pp)->nnext) {
		if (*pp == u) {
			*pp = u->nnext;
			break;
		}
	}
	srv->nusers--;
	slab_free(&srv->user_slabs[SRV_USER_SLAB(strlen(u->name))], u);
}

/* --- sending to a session -------------------------------------------- */

static int
session_send(struct session *ss, const struct msg *m)
{
	uint8_t buf[MSG_MAX];
	size_t n;
	int r;

	if (ss->state == SS_GONE)
		return TERN_ECLOSED;
	if ((r = msg_encode(m, buf, sizeof(buf), &n)) != 0) {
		log_warn("encode %s: %s", msg_type_name(m->type),
		    tern_strerror(r));
		return r;
	}
	r = net_conn_send(ss->conn, buf, n);
	if (r != 0)
		net_conn_abort(ss->conn, r);
	return r;
}

static void
session_error(struct session *ss, uint32_t req, int code, const char *detail)
{
	struct msg m = {.type = MSG_ERROR, .req = req};

	m.u.error.code = (uint16_t)(code < 0 ? -code : code);
	m.u.error.detail.p = detail ? detail : tern_strerror(code);
	m.u.error.detail.len = strlen(m.u.error.detail.p);
	(void)session_send(ss, &m);
}

static void
session_ok(struct session *ss, uint32_t req)
{
	struct msg m = {.type = MSG_OK, .req = req};

	(void)session_send(ss, &m);
}

static struct session *
user_device(struct nuser *u, uint32_t device_id)
{
	struct session *ss;

	for (ss = u->sessions; ss != NULL; ss = ss->unext)
		if (ss->device_id == device_id && ss->state == SS_AUTHED)
			return ss;
	return NULL;
}

/* push_deliver: sends one envelope to a device; 0, or the error of a
 * connection that takes nothing more (closing, or over its output cap). */
static int
push_deliver(struct session *ss, const uint8_t id[MSG_ID_LEN],
    const char *from, uint32_t from_device, uint8_t cls, uint64_t sent_ms,
    uint64_t received_ms, const uint8_t *payload, size_t len)
{
	struct msg m = {.type = MSG_DELIVER, .req = 0};
	int r;

	memcpy(m.u.deliver.id, id, MSG_ID_LEN);
	m.u.deliver.from.p = from;
	m.u.deliver.from.len = strlen(from);
	m.u.deliver.from_device = from_device;
	m.u.deliver.class = cls;
	m.u.deliver.timestamp_ms = sent_ms;
	m.u.deliver.received_ms = received_ms;
	m.u.deliver.payload.p = payload;
	m.u.deliver.payload.len = len;
	/* Every DELIVER is acknowledged, ephemeral ones too (the device
	 * can't tell them from others before it looks), so every one counts
	 * as in flight. */
	if ((r = session_send(ss, &m)) == 0) {
		ss->srv->m.envelopes_delivered_total++;
		ss->inflight++;
	}
	return r;
}

static void
push_notice(struct session *ss, const struct store_env *e)
{
	struct store_notice n;
	struct msg m = {.type = MSG_NOTICE, .req = 0};

	if (store_notice_parse(e->payload, e->payload_len, &n) != 0) {
		log_warn("bad notice in queue, dropped");
		if (store_ack(ss->srv->store, ss->user->user_id,
		    ss->device_id, e->env_id, NULL, NULL) != 0)
			log_debug("ack of a bad notice deferred");
		return;
	}
	memcpy(m.u.notice.notice_id, e->env_id, MSG_ID_LEN);
	m.u.notice.kind = n.kind;
	memcpy(m.u.notice.ref_id, n.ref_env_id, MSG_ID_LEN);
	m.u.notice.peer.p = n.peer_addr;
	m.u.notice.peer.len = n.peer_len;
	m.u.notice.peer_device = n.peer_device;
	if (session_send(ss, &m) == 0)
		ss->inflight++;
}

/* --- the offline queue ----------------------------------------------- */

static void
session_release(struct session *ss)
{
	if (--ss->pending == 0 && ss->state == SS_GONE)
		slab_free(&ss->srv->session_slab, ss);
}

static void
fetch_done(void *arg, int status, const struct store_result *res)
{
	struct session *ss = arg;
	size_t i;

	ss->fetching = false;
	if (ss->state != SS_AUTHED) {
		session_release(ss);
		return;
	}
	if (status != 0) {
		log_warn("fetch for %s/%u: %s", ss->user->name, ss->device_id,
		    tern_strerror(status));
		ss->fetch_more = true; /* retry on the next ack or timer */
		session_release(ss);
		return;
	}
	for (i = 0; i < res->n_envs; i++) {
		const struct store_env *e = &res->envs[i];
		/* Sent on this connection since the fetch was asked for: an
		 * envelope pushed before its commit, whose seq came with the
		 * commit (enqueue_done) after the fetch took last_seq. */
		if (e->seq <= ss->last_seq)
			continue;
		ss->last_seq = e->seq;
		if (e->cls == STORE_CLASS_NOTICE)
			push_notice(ss, e);
		else
			push_deliver(ss, e->env_id, e->sender_addr,
			    e->sender_device, e->cls, (uint64_t)e->sent_ms,
			    (uint64_t)e->received_ms, e->payload,
			    e->payload_len);
	}
	ss->fetch_more = res->more;
	if (!res->more && !ss->dirty)
		ss->live = true;
	session_fetch(ss);
	session_release(ss);
}

/* session_fetch: asks for the next part of the backlog, unless the device
 * has too much unacknowledged already (it asks again as acks come). */
static void
session_fetch(struct session *ss)
{
	int r;

	if (ss->state != SS_AUTHED || ss->fetching || ss->live ||
	    ss->inflight >= SRV_INFLIGHT_RESUME)
		return;
	if (!ss->fetch_more && !ss->dirty)
		return;
	ss->dirty = false;
	ss->fetching = true;
	ss->pending++;
	r = store_fetch(ss->srv->store, ss->user->user_id, ss->device_id,
	    ss->last_seq, SRV_FETCH_BATCH, fetch_done, ss);
	if (r != 0) {
		ss->fetching = false;
		ss->pending--;
		ss->fetch_more = true;
	}
}

static void hold_flush(struct server *srv, struct session *to);

/* session_unlive: the device fell behind; further envelopes wait in the
 * store and reach it through fetches, after those held back for it. */
static void
session_unlive(struct session *ss)
{
	hold_flush(ss->srv, ss);
	ss->live = false;
	ss->dirty = true;
}

/* --- envelopes ------------------------------------------------------- */

/*
 * Write-back. An envelope for a live device is pushed at once and its
 * enqueue submitted; if the device acknowledges it before the store's
 * writer has taken the enqueue, the enqueue is withdrawn and the envelope
 * never reaches the disk (most messages to online users are acknowledged
 * within a millisecond). The sender then hears SENT with the recipient's
 * acknowledgement: the envelope is safe with its recipient. srv->pp finds
 * such envelopes by recipient device and id when the ACK comes.
 */
/*
 * pp_hash: all of the id, mixed under a random key of the node's own.
 * Ids are the senders' choice: the first bytes alone (as before) put
 * every envelope of a client that numbers its ids after a fixed prefix
 * (the benchmark does) in one chain per device, thousands long, and let a
 * client build such chains on purpose. A multiply-xorshift mix rather
 * than SipHash, as it runs three times per envelope: without the key a
 * client cannot aim at a bucket, and a chain is bounded anyway, by what
 * a device may have pushed and not acknowledged.
 */
static uint32_t
pp_hash(const struct server *srv, int64_t user_id, uint32_t device_id,
    const uint8_t id[MSG_ID_LEN])
{
	uint64_t a, b, h;

	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 8);
	h = (a ^ srv->pp_key[0]) * 0x9e3779b97f4a7c15ull;
	h = (h ^ (b ^ srv->pp_key[1])) * 0xc2b2ae3d27d4eb4full;
	h ^= ((uint64_t)user_id << 32 | device_id) * 0x165667b19e3779f9ull;
	h ^= h >> 31;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 29;
	return (uint32_t)h;
}

static uint32_t
pp_bucket(const struct server *srv, const struct req_ctx *c)
{
	return pp_hash(srv, c->rcpt->user_id, c->rcpt_device, c->env_id) &
	    (srv->pp_nb - 1);
}

/* pp_grow: twice the buckets. The table is sized to what is pushed and
 * unacknowledged, not to the most it could be: a lookup then touches a
 * bucket array that stays in the cache (it was a fixed 512 KiB, a cache
 * miss or two per lookup: BENCHMARKS.md, fourth session). */
static void
pp_grow(struct server *srv)
{
	uint32_t nb = srv->pp_nb * 2, i, b;
	struct req_ctx **t = calloc(nb, sizeof(*t)), *c, *next;

	if (t == NULL)
		return; /* longer chains, still correct */
	srv->pp_nb = nb;
	for (i = 0; i < nb / 2; i++) {
		for (c = srv->pp[i]; c != NULL; c = next) {
			next = c->pp_next;
			b = pp_bucket(srv, c);
			c->pp_next = t[b];
			t[b] = c;
		}
	}
	free(srv->pp);
	srv->pp = t;
}

static void
pp_insert(struct server *srv, struct req_ctx *c)
{
	uint32_t b;

	if (srv->pp_count >= srv->pp_nb)
		pp_grow(srv);
	b = pp_bucket(srv, c);
	c->pp_next = srv->pp[b];
	srv->pp[b] = c;
	c->in_pp = true;
	srv->pp_count++;
}

static void
pp_remove(struct server *srv, struct req_ctx *c)
{
	struct req_ctx **pp;

	if (!c->in_pp)
		return;
	for (pp = &srv->pp[pp_bucket(srv, c)]; *pp != NULL;
	    pp = &(*pp)->pp_next) {
		if (*pp == c) {
			*pp = c->pp_next;
			srv->pp_count--;
			break;
		}
	}
	c->in_pp = false;
}

static struct req_ctx *
pp_find(struct server *srv, int64_t user_id, uint32_t device_id,
    const uint8_t id[MSG_ID_LEN])
{
	struct req_ctx *c;

	for (c = srv->pp[pp_hash(srv, user_id, device_id, id) &
	    (srv->pp_nb - 1)]; c != NULL; c = c->pp_next)
		if (c->rcpt->user_id == user_id && c->rcpt_device ==
		    device_id && memcmp(c->env_id, id, MSG_ID_LEN) == 0)
			return c;
	return NULL;
}

/* ctx_env_new: a zeroed context for an envelope, its payload copy in the
 * same allocation (one malloc per envelope, not two). */
static struct req_ctx *
ctx_env_new(size_t payload_len)
{
	struct req_ctx *c = malloc(sizeof(*c) + payload_len);

	if (c == NULL)
		return NULL;
	memset(c, 0, sizeof(*c));
	c->payload = (uint8_t *)(c + 1);
	return c;
}

/* addr_join: "name@domain" into out (cap bytes, truncated like
 * snprintf); the SEND path's copy, without the cost of a format. */
static void
addr_join(char *out, size_t cap, const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);

	if (cap == 0)
		return;
	if (n > cap - 1)
		n = cap - 1;
	memcpy(out, name, n);
	if (n < cap - 1)
		out[n++] = '@';
	if (d > cap - 1 - n)
		d = cap - 1 - n;
	memcpy(out + n, domain, d);
	out[n + d] = '\0';
}

/* ctx_push: write-back (SPEC.md 7.3): c goes to its live device to now,
 * before its commit. False if that connection took nothing (closing):
 * then c goes the store's way, and the device gets it by a fetch. */
static bool
ctx_push(struct server *srv, struct req_ctx *c, struct session *to,
    uint64_t received_ms)
{
	if (push_deliver(to, c->env_id, c->from, c->from_device, c->cls,
	    c->sent_ms, received_ms, c->payload, c->payload_len) != 0)
		return false;
	metrics_observe(&srv->m.send_to_push_us, mono_us() - c->t0_us);
	c->pushed = true;
	c->push_to = to;
	to->pending++;
	return true;
}

/* ctx_wait_behind: c, for the live device to, is pushed at its commit,
 * and so is every envelope for to accepted while any such waits (its
 * fed_waiting count), so that none overtakes another. */
static void
ctx_wait_behind(struct req_ctx *c, struct session *to)
{
	to->fed_waiting++;
	to->pending++;
	c->wait_to = to;
}

static void
ctx_sent(struct server *srv, struct req_ctx *c)
{
	struct msg m = {.type = MSG_SENT, .req = c->req};

	if (c->done != NULL) {
		/* From another node: OK on its link, once. */
		c->done(c->done_arg, 0);
		c->done = NULL;
		return;
	}
	memcpy(m.u.sent.id, c->env_id, MSG_ID_LEN);
	if (c->ss->state == SS_AUTHED)
		(void)session_send(c->ss, &m);
	metrics_observe(&srv->m.send_to_sent_us, mono_us() - c->t0_us);
}

static void
ctx_free(struct server *srv, struct req_ctx *c)
{
	if (c->done != NULL) {
		/* Never answered (the node is stopping): the other node
		 * sends it again. */
		c->done(c->done_arg, TERN_ECLOSED);
		c->done = NULL;
	}
	pp_remove(srv, c);
	if (c->wait_to != NULL) {
		c->wait_to->fed_waiting--;
		session_release(c->wait_to);
	}
	if (c->push_to != NULL)
		session_release(c->push_to);
	if (c->rcpt != NULL)
		user_put(srv, c->rcpt);
	if (c->payload != NULL && c->payload != (uint8_t *)(c + 1))
		free(c->payload);
	if (c->ss != NULL)
		session_release(c->ss);
	free(c);
}

static void
enqueue_done(void *arg, int status, const struct store_result *res)
{
	struct req_ctx *c = arg;
	struct session *ss = c->ss, *to;
	struct server *srv = c->srv;

	pp_remove(srv, c);
	if (status == TERN_ECANCELED) {
		/* Acknowledged by its recipient first: SENT went then. */
		if (c->done != NULL) {
			c->done(c->done_arg, 0);
			c->done = NULL;
		}
		ctx_free(srv, c);
		return;
	}
	if (status != 0) {
		if (status == TERN_EQUOTA)
			srv->m.quota_refusals_total++;
		else if (status == TERN_EDISK)
			srv->m.disk_errors_total++;
		/* A pushed copy may have reached the device; the sender
		 * resends, and the device drops the duplicate by id. */
		if (c->done != NULL) {
			c->done(c->done_arg, status);
			c->done = NULL;
		} else if (ss->state == SS_AUTHED)
			session_error(ss, c->req, status, NULL);
		ctx_free(srv, c);
		return;
	}
	ctx_sent(srv, c);
	to = user_device(c->rcpt, c->rcpt_device);
	if (!c->pushed && to != NULL && !res->duplicate) {
		if (to->live && (to->inflight >= SRV_INFLIGHT_LIVE_MAX ||
		    net_conn_queued(to->conn) > SRV_OUT_LIVE_MAX))
			session_unlive(to);
		if (to->live) {
			push_deliver(to, c->env_id, c->from, c->from_device,
			    c->cls, c->sent_ms, c->received_ms != 0 ?
			    c->received_ms : now_ms(), c->payload,
			    c->payload_len);
			metrics_observe(&srv->m.send_to_push_us,
			    mono_us() - c->t0_us);
		} else {
			to->dirty = true;
			session_fetch(to);
		}
	}
	/* A pushed one moves the position of the session it went to only:
	 * a later login of the same device has not seen it, and its
	 * fetches must still find it. */
	if (to != NULL && res->seq > to->last_seq &&
	    (c->pushed ? c->push_to == to : to->live))
		to->last_seq = res->seq;
	ctx_free(srv, c);
}

/* enqueue_write: submits c's enqueue (see enqueue_submit). */
static int
enqueue_write(struct server *srv, struct req_ctx *c)
{
	struct store_env_in e = {0};
	uint64_t now = now_ms();

	e.rcpt_user = c->rcpt->user_id;
	e.rcpt_device = c->rcpt_device;
	memcpy(e.env_id, c->env_id, MSG_ID_LEN);
	e.cls = c->cls;
	e.sender_addr = c->from;
	/* Only local senders get notices; a remote one's node does. */
	e.sender_user = c->ss != NULL && c->ss->user != NULL ?
	    c->ss->user->user_id : 0;
	e.sender_device = c->from_device;
	e.sent_ms = (int64_t)c->sent_ms;
	e.received_ms = (int64_t)(c->received_ms != 0 ? c->received_ms : now);
	e.expires_ms = (int64_t)(now + srv->cfg.queue_ttl_ms);
	e.payload = c->payload;
	e.payload_len = c->payload_len;
	return store_enqueue_h(srv->store, &e, enqueue_done, c, &c->handle);
}

/* enqueue_submit: c's enqueue, after any held back for the same device,
 * so that the device's queue keeps the order of arrival. */
static int
enqueue_submit(struct server *srv, struct req_ctx *c)
{
	struct session *to = user_device(c->rcpt, c->rcpt_device);

	if (to != NULL && to->held_first != NULL)
		hold_flush(srv, to);
	return enqueue_write(srv, c);
}

/*
 * Holding back the write of a pushed envelope. The device acknowledges
 * most pushes within a millisecond or two, but the writer takes whatever
 * is waiting each time it starts a batch, so under load a good part of
 * the envelopes it takes are already acknowledged: written and deleted
 * again for nothing (measured: a third of local deliveries, half of
 * those from other domains). So the enqueue of a pushed envelope waits
 * in srv->held for up to SRV_HOLD_MS; the ACK that comes meanwhile
 * answers the sender (SENT, or OK to the other node) and nothing is
 * written. When the time is up, the device turns to draining or leaves,
 * another envelope for it must be written, or the node stops, it is
 * submitted as before (the ACK may still withdraw it, see handle_ack).
 * The sender has no SENT while it is held: a crash loses nothing it was
 * told was safe.
 */
static void
hold_unlink(struct server *srv, struct req_ctx *c)
{
	if (c->hprev != NULL)
		c->hprev->hnext = c->hnext;
	else
		srv->held = c->hnext;
	if (c->hnext != NULL)
		c->hnext->hprev = c->hprev;
	else
		srv->held_tail = c->hprev;
	c->hnext = c->hprev = NULL;
	if (c->dprev != NULL)
		c->dprev->dnext = c->dnext;
	else
		c->push_to->held_first = c->dnext;
	if (c->dnext != NULL)
		c->dnext->dprev = c->dprev;
	else
		c->push_to->held_last = c->dprev;
	c->dnext = c->dprev = NULL;
	c->held = false;
	srv->nheld--;
	srv->held_bytes -= sizeof(*c) + c->payload_len;
}

/* hold_submit: a held envelope's time is up (or it must go now). */
static void
hold_submit(struct server *srv, struct req_ctx *c)
{
	int r;

	hold_unlink(srv, c);
	if ((r = enqueue_write(srv, c)) == 0)
		return;
	/* Not taken (store full or closing): no SENT, so the sender sends
	 * it again; the device, which has it, drops the copy by id. */
	pp_remove(srv, c);
	if (c->done != NULL) {
		c->done(c->done_arg, r);
		c->done = NULL;
	} else if (c->ss->state == SS_AUTHED)
		session_error(c->ss, c->req, r, NULL);
	ctx_free(srv, c);
}

/* hold_flush: submits, in order, every envelope held back for to. */
static void
hold_flush(struct server *srv, struct session *to)
{
	struct req_ctx *c;

	while ((c = to->held_first) != NULL)
		hold_submit(srv, c);
}

static void
hold_timer_cb(uv_timer_t *t)
{
	struct server *srv = t->data;
	uint64_t now = uv_now(srv->loop);

	while (srv->held != NULL && srv->held->hold_until <= now)
		hold_submit(srv, srv->held);
	if (srv->held != NULL)
		uv_timer_start(&srv->hold_timer, hold_timer_cb,
		    srv->held->hold_until - now, 0);
}

/* hold_add: c was pushed to its live device (c->push_to); its write
 * waits. */
static int
hold_add(struct server *srv, struct req_ctx *c)
{
	if (srv->stopping)
		return enqueue_submit(srv, c);
	/* Over the bounds, the oldest go first (to the store, as at the
	 * end of their time). */
	while (srv->held != NULL && (srv->nheld >= SRV_HOLD_MAX ||
	    srv->held_bytes + sizeof(*c) + c->payload_len > SRV_HOLD_BYTES))
		hold_submit(srv, srv->held);
	c->held = true;
	c->hold_until = uv_now(srv->loop) + SRV_HOLD_MS;
	c->hprev = srv->held_tail;
	c->hnext = NULL;
	if (srv->held_tail != NULL)
		srv->held_tail->hnext = c;
	else {
		srv->held = c;
		uv_timer_start(&srv->hold_timer, hold_timer_cb, SRV_HOLD_MS, 0);
	}
	srv->held_tail = c;
	srv->nheld++;
	srv->held_bytes += sizeof(*c) + c->payload_len;
	c->dprev = c->push_to->held_last;
	c->dnext = NULL;
	if (c->push_to->held_last != NULL)
		c->push_to->held_last->dnext = c;
	else
		c->push_to->held_first = c;
	c->push_to->held_last = c;
	return 0;
}

/* deferred_drain: submits held receipts while the store has room. */
static void
deferred_drain(struct server *srv)
{
	struct req_ctx *c;
	int r;

	while ((c = srv->deferred) != NULL) {
		if (store_pending(srv->store) > SRV_OVERLOAD_LOW)
			return;
		srv->deferred = c->next;
		if (srv->deferred == NULL)
			srv->deferred_tail = NULL;
		srv->ndeferred--;
		c->next = NULL;
		if ((r = enqueue_submit(srv, c)) != 0) {
			if (c->done != NULL) {
				c->done(c->done_arg, r);
				c->done = NULL;
			} else if (c->ss->state == SS_AUTHED)
				session_error(c->ss, c->req, r, NULL);
			ctx_free(srv, c);
		}
	}
}

static bool
overload_check(struct server *srv)
{
	uint64_t pending = store_pending(srv->store);

	if (!srv->overloaded && pending > SRV_OVERLOAD_HIGH) {
		srv->overloaded = true;
		log_warn("overloaded (%llu store requests waiting): shedding "
		    "typing indicators, delaying receipts",
		    (unsigned long long)pending);
	} else if (srv->overloaded && pending < SRV_OVERLOAD_LOW) {
		srv->overloaded = false;
		log_info("load back to normal");
	}
	return srv->overloaded;
}

/* rate_take: one token from the user's bucket (send_rate/s, send_burst). */
static bool
rate_take(struct server *srv, struct nuser *u)
{
	uint64_t now = uv_now(srv->loop);

	u->tokens += (double)(now - u->tokens_ms) * srv->cfg.send_rate / 1000.0;
	if (u->tokens > srv->cfg.send_burst)
		u->tokens = srv->cfg.send_burst;
	u->tokens_ms = now;
	if (u->tokens < 1.0)
		return false;
	u->tokens -= 1.0;
	return true;
}

/* addr_local: the local part of addr if its domain is ours, else NULL. */
static const char *
addr_local(struct server *srv, const struct msg_str *a, char *buf, size_t cap)
{
	struct ident_addr ia;

	if (ident_addr_split(a->p, a->len, &ia) != 0)
		return NULL;
	if (ia.domain_len != strlen(srv->cfg.domain) ||
	    memcmp(ia.domain, srv->cfg.domain, ia.domain_len) != 0)
		return NULL;
	if (ia.local_len >= cap)
		return NULL;
	memcpy(buf, ia.local, ia.local_len);
	buf[ia.local_len] = '\0';
	return buf;
}

/*
 * rcpt_lookup: the user id of local user name if it has device dev and
 * is active: TERN_ENOUSER, TERN_EDENIED (disabled). A device that is
 * logged in exists and is active (disabling an account disconnects it):
 * then the database is not asked.
 */
static int
rcpt_lookup(struct server *srv, const char *name, uint32_t dev,
    int64_t *user_id)
{
	struct store_user_info ui;
	uint8_t key[STORE_KEY_LEN];
	struct nuser *u = user_by_name(srv, name);
	int r;

	if (u != NULL && user_device(u, dev) != NULL) {
		*user_id = u->user_id;
		return 0;
	}
	/* Not online: two reads of the store on this thread, unless they
	 * were done lately (the writer checks again; rcache.h). */
	if (rcache_get(srv->rcache, name, dev, uv_now(srv->loop), user_id))
		return 0;
	if ((r = store_user_lookup(srv->store, name, &ui)) != 0 ||
	    (r = store_device_lookup(srv->store, name, dev, key)) != 0)
		return r == TERN_EDENIED ? r : TERN_ENOUSER;
	*user_id = ui.user_id;
	rcache_put(srv->rcache, name, dev, ui.user_id, uv_now(srv->loop));
	return 0;
}

static void send_remote(struct session *ss, const struct msg *m);
static int forward_remote(struct session *ss, const struct msg *m,
    const struct msg_str *user);

static void
handle_send(struct session *ss, const struct msg *m)
{
	const struct msg_send *s = &m->u.send;
	struct server *srv = ss->srv;
	char name[STORE_NAME_MAX + 1];
	struct store_user_info ui;
	struct session *to;
	struct req_ctx *c;
	struct nuser *ru;
	int r;

	srv->m.envelopes_in_total[s->class < 4 ? s->class : 0]++;
	if (!rate_take(srv, ss->user)) {
		srv->m.rate_limited_total++;
		session_error(ss, m->req, TERN_ERATE, "send rate limit");
		return;
	}
	if (addr_local(srv, &s->to, name, sizeof(name)) == NULL) {
		if (srv->fed == NULL) {
			session_error(ss, m->req, TERN_EUNREACH,
			    "recipient's domain is not served here "
			    "(federation is not enabled)");
			return;
		}
		send_remote(ss, m);
		return;
	}
	if ((r = rcpt_lookup(srv, name, s->to_device, &ui.user_id)) != 0) {
		session_error(ss, m->req, r, r == TERN_EDENIED ?
		    "recipient disabled" : "no such user or device");
		return;
	}
	if (s->class == MSG_CLASS_EPHEMERAL) {
		/* Never stored: to a live device now, or nowhere. */
		struct msg sent = {.type = MSG_SENT, .req = m->req};
		ru = user_find(srv, ui.user_id);
		to = ru ? user_device(ru, s->to_device) : NULL;
		if (to != NULL && to->live && !srv->overloaded) {
			char from[SRV_ADDR_BUF];
			snprintf(from, sizeof(from), "%s@%s", ss->user->name,
			    srv->cfg.domain);
			push_deliver(to, s->id, from, ss->device_id, s->class,
			    s->timestamp_ms, now_ms(), s->payload.p,
			    s->payload.len);
		} else
			srv->m.ephemeral_dropped_total++;
		memcpy(sent.u.sent.id, s->id, MSG_ID_LEN);
		(void)session_send(ss, &sent);
		return;
	}
	if ((c = ctx_env_new(s->payload.len)) == NULL) {
		session_error(ss, m->req, TERN_ENOMEM, NULL);
		return;
	}
	c->srv = srv;
	c->ss = ss;
	ss->pending++;
	c->req = m->req;
	c->type = m->type;
	c->t0_us = mono_us();
	memcpy(c->env_id, s->id, MSG_ID_LEN);
	c->cls = s->class;
	c->sent_ms = s->timestamp_ms;
	c->rcpt_device = s->to_device;
	c->from_device = ss->device_id;
	addr_join(c->from, sizeof(c->from), ss->user->name, srv->cfg.domain);
	if (s->payload.len > 0)
		memcpy(c->payload, s->payload.p, s->payload.len);
	c->payload_len = (uint32_t)s->payload.len;
	if ((c->rcpt = user_get(srv, ui.user_id, name)) == NULL) {
		ctx_free(srv, c);
		session_error(ss, m->req, TERN_ENOMEM, NULL);
		return;
	}
	if (s->class == MSG_CLASS_RECEIPT && (overload_check(srv) ||
	    srv->deferred != NULL)) {
		if (srv->ndeferred >= SRV_DEFERRED_MAX) {
			ctx_free(srv, c);
			session_error(ss, m->req, TERN_EBUSY, NULL);
			return;
		}
		/* Receipts wait (in order) until the store catches up. */
		srv->m.receipts_deferred_total++;
		if (srv->deferred_tail)
			srv->deferred_tail->next = c;
		else
			srv->deferred = c;
		srv->deferred_tail = c;
		srv->ndeferred++;
		return;
	}
	to = user_device(c->rcpt, c->rcpt_device);
	if (to != NULL && to->live && to->fed_waiting > 0) {
		/* An envelope from another domain waits for its commit to be
		 * pushed: this one, accepted after it, waits too. */
		ctx_wait_behind(c, to);
	} else if (to != NULL && to->live) {
		/* Not on srv->overloaded: a push now lets the device's ACK
		 * withdraw the write (less for the lagging writer), whereas
		 * draining would store it and read it back by a fetch. */
		if (to->inflight >= SRV_INFLIGHT_LIVE_MAX ||
		    net_conn_queued(to->conn) > SRV_OUT_LIVE_MAX) {
			/* It can't take more now: this one and the next wait
			 * in the store, in order, for its fetches. */
			session_unlive(to);
		} else
			(void)ctx_push(srv, c, to, now_ms());
	}
	if (to != NULL && !to->live)
		to->dirty = true; /* its next fetch must come after this */
	if ((r = c->pushed ? hold_add(srv, c) :
	    enqueue_submit(srv, c)) != 0) {
		ctx_free(srv, c);
		session_error(ss, m->req, r, NULL);
		return;
	}
	if (c->pushed)
		pp_insert(srv, c);
}


static void
handle_ack(struct session *ss, const struct msg *m)
{
	struct server *srv = ss->srv;

	struct req_ctx *c;

	if (ss->inflight > 0)
		ss->inflight--;
	srv->m.envelopes_acked_total++;
	c = pp_find(srv, ss->user->user_id, ss->device_id, m->u.ack.id);
	if (c != NULL) {
		pp_remove(srv, c);
		if (c->held) {
			/* Never submitted, and now safe with its recipient. */
			hold_unlink(srv, c);
			srv->m.envelopes_unwritten_total++;
			ctx_sent(srv, c);
			ctx_free(srv, c);
			session_fetch(ss);
			return;
		}
		if (store_cancel(srv->store, c->handle) == 0) {
			/* Never stored, and now safe with its recipient. */
			srv->m.envelopes_unwritten_total++;
			ctx_sent(srv, c);
			session_fetch(ss);
			return;
		}
		/* The writer has it: the ack below deletes it after. */
	}
	/* A repeated ack is harmless: the store reports ENOTFOUND to no
	 * one (no callback). */
	if (store_ack(srv->store, ss->user->user_id, ss->device_id,
	    m->u.ack.id, NULL, NULL) != 0)
		log_debug("ack not stored (store busy or closing): the "
		    "envelope will be delivered again");
	session_fetch(ss);
}

/* --- presence -------------------------------------------------------- */

/* presence_visible: may viewer see target's online state and last seen?
 * Privacy applies as set by target; and, as in WhatsApp, a viewer who
 * hides their own last seen sees no one's. */
static bool
presence_visible(struct server *srv, struct nuser *viewer,
    struct nuser *target)
{
	char addr[SRV_ADDR_BUF];

	if (viewer == target)
		return true;
	if (viewer->privacy == STORE_LASTSEEN_NOBODY)
		return false;
	switch (target->privacy) {
	case STORE_LASTSEEN_EVERYONE:
		return true;
	case STORE_LASTSEEN_CONTACTS:
		snprintf(addr, sizeof(addr), "%s@%s", viewer->name,
		    srv->cfg.domain);
		return store_contact_has(srv->store, target->user_id,
		    addr) == 0;
	default:
		return false;
	}
}

static void
presence_send(struct server *srv, struct session *to, struct nuser *u,
    uint32_t req)
{
	char addr[SRV_ADDR_BUF];
	struct msg m = {.type = MSG_PRESENCE, .req = req};

	snprintf(addr, sizeof(addr), "%s@%s", u->name, srv->cfg.domain);
	m.u.presence.user.p = addr;
	m.u.presence.user.len = strlen(addr);
	if (to->user == NULL || !presence_visible(srv, to->user, u)) {
		m.u.presence.state = MSG_PRESENCE_HIDDEN;
		m.u.presence.last_seen_ms = 0;
	} else if (u->shown_online) {
		m.u.presence.state = MSG_PRESENCE_ONLINE;
		m.u.presence.last_seen_ms = (uint64_t)u->last_seen_ms;
	} else {
		m.u.presence.state = MSG_PRESENCE_OFFLINE;
		m.u.presence.last_seen_ms = (uint64_t)u->last_seen_ms;
	}
	(void)session_send(to, &m);
}

static void
presence_changed(struct server *srv, struct nuser *u)
{
	struct psub *p;

	for (p = u->subs; p != NULL; p = p->next_t)
		if (p->sub->state == SS_AUTHED)
			presence_send(srv, p->sub, u, 0);
	if (u->rviews != NULL)
		rview_push(srv, u);
}

/*
 * Users whose last device left wait in srv->going_offline for their
 * threshold. A user back within it stays listed, with offline_at 0, until
 * the next presence tick drops it: finding it in the list now would cost
 * a walk of the whole list for every login, quadratic in a storm of
 * reconnections (a node restart, a network blip), which is when the list
 * is longest.
 */
static void
presence_online(struct server *srv, struct nuser *u)
{
	u->last_seen_ms = (int64_t)now_ms();
	u->offline_at = 0;
	if (!u->shown_online) {
		u->shown_online = true;
		presence_changed(srv, u);
	}
	if (store_last_seen(srv->store, u->user_id, u->last_seen_ms, NULL,
	    NULL) != 0)
		log_debug("last seen of %s not stored", u->name);
}

/* presence_offline_soon: the last device left; subscribers hear
 * "offline" only if none is back within the threshold, so a device that
 * reconnects (a phone changing networks) does not flap. */
static void
presence_offline_soon(struct server *srv, struct nuser *u)
{
	u->last_seen_ms = (int64_t)now_ms();
	if (store_last_seen(srv->store, u->user_id, u->last_seen_ms, NULL,
	    NULL) != 0)
		log_debug("last seen of %s not stored", u->name);
	u->offline_at = u->last_seen_ms + (int64_t)srv->cfg.online_threshold_ms;
	if (u->listed)
		return; /* back and gone again before the tick: listed still */
	u->refs++; /* held until the timer has told the subscribers */
	u->listed = true;
	u->onext = srv->going_offline;
	srv->going_offline = u;
}

static void
presence_tick(struct server *srv)
{
	struct nuser **pp = &srv->going_offline, *u;
	int64_t now = (int64_t)now_ms();

	while ((u = *pp) != NULL) {
		if (u->offline_at > now) {
			pp = &u->onext;
			continue;
		}
		/* Its time has come, or it is back (offline_at 0). */
		*pp = u->onext;
		u->onext = NULL;
		u->listed = false;
		if (u->online == 0 && u->offline_at != 0 && u->shown_online) {
			u->shown_online = false;
			presence_changed(srv, u);
		}
		user_put(srv, u);
	}
}

static void
psub_remove(struct server *srv, struct psub *p)
{
	struct psub **pp;

	for (pp = &p->target->subs; *pp != NULL; pp = &(*pp)->next_t) {
		if (*pp == p) {
			*pp = p->next_t;
			break;
		}
	}
	for (pp = &p->sub->subs; *pp != NULL; pp = &(*pp)->next_s) {
		if (*pp == p) {
			*pp = p->next_s;
			break;
		}
	}
	p->sub->nsubs--;
	user_put(srv, p->target);
	free(p);
}

static void
handle_presence_sub(struct session *ss, const struct msg *m, bool sub)
{
	struct server *srv = ss->srv;
	char name[STORE_NAME_MAX + 1];
	struct store_user_info ui;
	struct nuser *t;
	struct psub *p;

	if (addr_local(srv, &m->u.presence_sub.user, name,
	    sizeof(name)) == NULL) {
		if (srv->fed == NULL) {
			session_error(ss, m->req, TERN_EUNREACH, "the user's "
			    "domain is not served here (federation is not "
			    "enabled)");
		} else if (!sub) {
			struct rwatch *w = rwatch_find(ss,
			    &m->u.presence_unsub.user);
			if (w != NULL)
				rwatch_remove(ss, w);
			session_ok(ss, m->req);
		} else if (rwatch_add(ss, &m->u.presence_sub.user,
		    m->req) == 0) {
			(void)forward_remote(ss, m, &m->u.presence_sub.user);
		}
		return;
	}
	if (store_user_lookup(srv->store, name, &ui) != 0 ||
	    ui.state != STORE_USER_ACTIVE) {
		session_error(ss, m->req, TERN_ENOUSER, NULL);
		return;
	}
	for (p = ss->subs; p != NULL; p = p->next_s)
		if (p->target->user_id == ui.user_id)
			break;
	if (!sub) {
		if (p != NULL)
			psub_remove(srv, p);
		session_ok(ss, m->req);
		return;
	}
	if (p == NULL) {
		if (ss->nsubs >= SRV_SUBS_MAX) {
			session_error(ss, m->req, TERN_EQUOTA,
			    "too many presence subscriptions");
			return;
		}
		if ((p = calloc(1, sizeof(*p))) == NULL ||
		    (t = user_get(srv, ui.user_id, name)) == NULL) {
			free(p);
			session_error(ss, m->req, TERN_ENOMEM, NULL);
			return;
		}
		p->sub = ss;
		p->target = t;
		p->next_t = t->subs;
		t->subs = p;
		p->next_s = ss->subs;
		ss->subs = p;
		ss->nsubs++;
	}
	/* OK answers the request; the state follows as a push, like every
	 * later change (SPEC.md 4, 8). */
	session_ok(ss, m->req);
	presence_send(srv, ss, p->target, 0);
}

/* --- accounts -------------------------------------------------------- */

/* session_login: the connection is now user u's device. */
static void
session_login(struct session *ss, struct nuser *u, uint32_t device_id)
{
	struct server *srv = ss->srv;
	struct session *old = user_device(u, device_id);

	/* One connection per device: the newest wins (the old one is a
	 * dead socket the device has not noticed yet). */
	if (old != NULL) {
		/* What was pushed to it and is held goes to the store now,
		 * before this session's first fetch, which must find it. */
		if (old->held_first != NULL)
			hold_flush(srv, old);
		session_error(old, 0, TERN_ECLOSED,
		    "logged in again from elsewhere");
		net_conn_close(old->conn, TERN_ECLOSED);
	}
	ss->user = u;
	ss->device_id = device_id;
	ss->state = SS_AUTHED;
	ss->unext = u->sessions;
	u->sessions = ss;
	if (u->online++ == 0)
		presence_online(srv, u);
	else
		u->last_seen_ms = (int64_t)now_ms();
	srv->m.unauth_current--;
	srv->m.logins_total++;
	chan_set_msg_cap(&ss->conn->chan, MSG_MAX);
	ss->fetch_more = true;
	session_fetch(ss);
}

static void
handle_login(struct session *ss, const struct msg *m)
{
	struct server *srv = ss->srv;
	char name[STORE_NAME_MAX + 1];
	struct store_user_info ui;
	uint8_t key[STORE_KEY_LEN];
	uint64_t queued = 0, qbytes = 0;
	struct nuser *u;
	int r;

	if (addr_local(srv, &m->u.login.user, name, sizeof(name)) == NULL) {
		srv->m.login_failures_total++;
		session_error(ss, m->req, TERN_ENOUSER,
		    "this node does not serve that domain");
		net_conn_close(ss->conn, TERN_ENOUSER);
		return;
	}
	r = store_device_lookup(srv->store, name, m->u.login.device_id, key);
	if (r == 0 && sodium_memcmp(key, chan_remote_key(&ss->conn->chan),
	    STORE_KEY_LEN) != 0)
		r = TERN_EAUTH;
	if (r == 0)
		r = store_user_lookup(srv->store, name, &ui);
	if (r != 0) {
		/* Unknown device and wrong key look the same from outside. */
		srv->m.login_failures_total++;
		if (r == TERN_ENOUSER)
			r = TERN_EAUTH;
		session_error(ss, m->req, r, r == TERN_EDENIED ?
		    "account disabled" : "device not registered with this key");
		net_conn_close(ss->conn, r);
		return;
	}
	if ((u = user_get(srv, ui.user_id, name)) == NULL) {
		session_error(ss, m->req, TERN_ENOMEM, NULL);
		net_conn_close(ss->conn, TERN_ENOMEM);
		return;
	}
	if (store_queue_usage(srv->store, ui.user_id, &queued, &qbytes) != 0)
		queued = 0;
	struct msg ok = {.type = MSG_LOGIN_OK, .req = m->req};
	ok.u.login_ok.server_time_ms = now_ms();
	ok.u.login_ok.queued = queued > UINT32_MAX ? UINT32_MAX :
	    (uint32_t)queued;
	(void)session_send(ss, &ok);
	session_login(ss, u, m->u.login.device_id);
}

static void
register_done(void *arg, int status, const struct store_result *res)
{
	struct req_ctx *c = arg;
	struct session *ss = c->ss;
	struct server *srv = ss->srv;
	struct nuser *u;

	if (ss->state != SS_UNAUTH) {
		ctx_free(srv, c);
		return;
	}
	if (status != 0) {
		session_error(ss, c->req, status, status == TERN_EDENIED ?
		    "invite unknown, used or expired" : status == TERN_EEXIST ?
		    "name taken" : NULL);
		ctx_free(srv, c);
		return;
	}
	if ((u = user_get(srv, res->user_id, c->from)) == NULL) {
		session_error(ss, c->req, TERN_ENOMEM, NULL);
		net_conn_close(ss->conn, TERN_ENOMEM);
		ctx_free(srv, c);
		return;
	}
	srv->m.registrations_total++;
	struct msg ok = {.type = MSG_REGISTERED, .req = c->req};
	ok.u.registered.device_id = res->device_id;
	(void)session_send(ss, &ok);
	session_login(ss, u, res->device_id);
	ctx_free(srv, c);
}

static void
handle_register(struct session *ss, const struct msg *m)
{
	const struct msg_register *g = &m->u.reg;
	struct server *srv = ss->srv;
	uint8_t h[STORE_INVITE_HASH_LEN];
	char name[STORE_NAME_MAX + 1], dev[MSG_DEVICE_NAME_MAX + 1];
	const uint8_t *invite = NULL;
	struct req_ctx *c;
	int r;

	if (addr_local(srv, &g->user, name, sizeof(name)) == NULL) {
		session_error(ss, m->req, TERN_EDENIED,
		    "this node does not serve that domain");
		return;
	}
	if (g->invite.len > 0) {
		crypto_generichash(h, sizeof(h), (const uint8_t *)g->invite.p,
		    g->invite.len, NULL, 0);
		invite = h;
	} else if (!srv->cfg.open_registration) {
		session_error(ss, m->req, TERN_EDENIED,
		    "an invite code is required");
		return;
	}
	snprintf(dev, sizeof(dev), "%.*s", (int)g->device_name.len,
	    g->device_name.p);
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		session_error(ss, m->req, TERN_ENOMEM, NULL);
		return;
	}
	c->ss = ss;
	ss->pending++;
	c->req = m->req;
	snprintf(c->from, sizeof(c->from), "%s", name);
	r = store_register(srv->store, name, invite,
	    chan_remote_key(&ss->conn->chan), dev, (int64_t)now_ms(),
	    register_done, c);
	if (r != 0) {
		session_error(ss, m->req, r, NULL);
		ctx_free(srv, c);
	}
}

/* Completion of a store write whose answer is OK or ERROR. */
static void
simple_done(void *arg, int status, const struct store_result *res)
{
	struct req_ctx *c = arg;
	struct session *ss = c->ss;

	/* A lookup while the removal was under way may have found the
	 * device still there. */
	if (c->type == MSG_DEVICE_REMOVE)
		rcache_clear(c->srv->rcache);
	if (ss->state == SS_AUTHED) {
		if (status == 0 && c->type == MSG_DEVICE_ADD) {
			struct msg m = {.type = MSG_DEVICE_ADDED, .req = c->req};
			m.u.device_added.device_id = res->device_id;
			(void)session_send(ss, &m);
		} else if (status == 0 || (status == TERN_ENOTFOUND &&
		    c->type == MSG_CONTACT_REMOVE)) {
			session_ok(ss, c->req);
			if (status == 0 && c->type == MSG_DEVICE_REMOVE) {
				/* Removed for good: its connection (maybe this
				 * one) ends now. */
				struct session *d = user_device(ss->user,
				    c->rcpt_device);
				if (d != NULL) {
					session_error(d, 0, TERN_EDENIED,
					    "device removed");
					net_conn_close(d->conn, TERN_EDENIED);
				}
			}
			if (c->type == MSG_CONTACT_ADD ||
			    c->type == MSG_CONTACT_REMOVE)
				presence_changed(ss->srv, ss->user);
		} else {
			session_error(ss, c->req, status, NULL);
		}
	}
	ctx_free(ss->srv, c);
}

static struct req_ctx *
ctx_new(struct session *ss, const struct msg *m)
{
	struct req_ctx *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		session_error(ss, m->req, TERN_ENOMEM, NULL);
		return NULL;
	}
	c->srv = ss->srv;
	c->ss = ss;
	ss->pending++;
	c->req = m->req;
	c->type = m->type;
	return c;
}

static void
submitted(struct session *ss, struct req_ctx *c, int r)
{
	if (r != 0) {
		session_error(ss, c->req, r, NULL);
		ctx_free(ss->srv, c);
	}
}

static int
contacts_each(void *arg, const char *address)
{
	struct buf_writer *w = ((void **)arg)[0];
	struct msg_list *l = ((void **)arg)[1];

	if (l->count >= MSG_CONTACTS_MAX)
		return 1;
	return msg_addrlist_add(l, w, address, strlen(address));
}

/*
 * devices_answer / profile_answer: DEVICES or PROFILE about local user
 * user_id (named user) into out, which borrows recs / p (the caller's):
 * for a local requester and for one from another node alike.
 */
static int
devices_answer(struct server *srv, int64_t user_id,
    const struct msg_str *user, struct msg *out,
    uint8_t recs[MSG_DEVICES_MAX * MSG_DEVICE_REC_LEN])
{
	struct store_device_info di[MSG_DEVICES_MAX];
	struct buf_writer w;
	size_t n = 0, i;

	if (store_device_list(srv->store, user_id, di, MSG_DEVICES_MAX,
	    &n) != 0)
		return TERN_ENOUSER;
	if (n > MSG_DEVICES_MAX)
		n = MSG_DEVICES_MAX;
	out->type = MSG_DEVICES;
	out->u.devices.user = *user;
	memset(&out->u.devices.device_ids, 0,
	    sizeof(out->u.devices.device_ids));
	buf_writer_init(&w, recs, MSG_DEVICES_MAX * MSG_DEVICE_REC_LEN);
	for (i = 0; i < n; i++) {
		uint8_t r[MSG_DEVICE_REC_LEN];
		buf_store_be32(r, di[i].device_id);
		if (msg_record_add(&out->u.devices.device_ids, &w, r,
		    sizeof(r)) != 0)
			break;
	}
	return 0;
}

static int
profile_answer(struct server *srv, int64_t user_id,
    const struct msg_str *user, struct msg *out, struct store_profile *p)
{
	if (store_profile_get(srv->store, user_id, p) != 0)
		return TERN_ENOUSER;
	out->type = MSG_PROFILE;
	out->u.profile.user = *user;
	out->u.profile.name.p = p->display_name;
	out->u.profile.name.len = strnlen(p->display_name, MSG_NAME_MAX);
	out->u.profile.status.p = p->status_text;
	out->u.profile.status.len = strnlen(p->status_text, MSG_STATUS_MAX);
	return 0;
}

/* active_user: the id of local user addr if it is active, else 0. */
static int64_t
active_user(struct server *srv, const struct msg_str *addr)
{
	char name[STORE_NAME_MAX + 1];
	struct store_user_info ui;

	if (addr_local(srv, addr, name, sizeof(name)) == NULL ||
	    store_user_lookup(srv->store, name, &ui) != 0 ||
	    ui.state != STORE_USER_ACTIVE)
		return 0;
	return ui.user_id;
}

static void
handle_device_list(struct session *ss, const struct msg *m)
{
	uint8_t recs[MSG_DEVICES_MAX * MSG_DEVICE_REC_LEN];
	struct msg out = {.type = MSG_DEVICES, .req = m->req};
	int64_t uid = active_user(ss->srv, &m->u.device_list.user);

	if (uid == 0 || devices_answer(ss->srv, uid, &m->u.device_list.user,
	    &out, recs) != 0) {
		session_error(ss, m->req, TERN_ENOUSER, NULL);
		return;
	}
	(void)session_send(ss, &out);
}

static void
handle_profile_get(struct session *ss, const struct msg *m)
{
	struct store_profile p;
	struct msg out = {.type = MSG_PROFILE, .req = m->req};
	int64_t uid = active_user(ss->srv, &m->u.profile_get.user);

	if (uid == 0 || profile_answer(ss->srv, uid, &m->u.profile_get.user,
	    &out, &p) != 0) {
		session_error(ss, m->req, TERN_ENOUSER, NULL);
		return;
	}
	(void)session_send(ss, &out);
}

/* --- keys (SPEC.md section 12) ---------------------------------------- */

static void
keys_count_send(struct session *ss, uint32_t req, uint32_t prekeys,
    uint32_t signed_prekey_id)
{
	struct msg m = {.type = MSG_KEYS_COUNT, .req = req};

	m.u.keys_count.prekeys = prekeys;
	m.u.keys_count.signed_prekey_id = signed_prekey_id;
	(void)session_send(ss, &m);
}

static void
keys_put_done(void *arg, int status, const struct store_result *res)
{
	struct req_ctx *c = arg;
	struct session *ss = c->ss;

	if (status == 0)
		ss->srv->m.keys_put_total++;
	if (ss->state == SS_AUTHED) {
		if (status == 0)
			keys_count_send(ss, c->req, res->prekeys,
			    res->signed_prekey_id);
		else
			session_error(ss, c->req, status, status ==
			    TERN_EQUOTA ? "more than 100 one-time prekeys" :
			    NULL);
	}
	ctx_free(ss->srv, c);
}

/*
 * handle_keys_put: SPEC.md 12.1. The signature is checked here, before
 * anything reaches the store, so a bad upload stores nothing; the store
 * does the rest (identity change, replace, quota) in one transaction.
 */
static void
handle_keys_put(struct session *ss, const struct msg *m)
{
	const struct msg_keys_put *k = &m->u.keys_put;
	struct server *srv = ss->srv;
	struct store_prekey pk[MSG_PREKEYS_MAX];
	struct store_keys_in in;
	struct req_ctx *c;
	size_t i, j, n = k->prekeys.count;
	const uint8_t *rec;

	if (n > MSG_PREKEYS_MAX) {
		session_error(ss, m->req, TERN_ETOOBIG, NULL);
		return;
	}
	/* The codec checks the list's shape, not what is in a record. */
	for (i = 0; i < n; i++) {
		if ((rec = msg_record(&k->prekeys, MSG_PREKEY_REC_LEN, i)) ==
		    NULL) {
			session_error(ss, m->req, TERN_ETRUNC, NULL);
			return;
		}
		pk[i].id = buf_load_be32(rec);
		memcpy(pk[i].key, rec + 4, STORE_KEY_LEN);
		if (pk[i].id == 0 || pk[i].id > MSG_PREKEY_ID_MAX) {
			session_error(ss, m->req, TERN_EFIELD,
			    "one-time prekey id out of range");
			return;
		}
	}
	if (sig_verify_signed(k->identity_key, k->signed_prekey,
	    k->signature) != 0) {
		session_error(ss, m->req, TERN_EKEY,
		    "signed prekey signature does not verify");
		return;
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < i; j++) {
			if (pk[j].id == pk[i].id) {
				session_error(ss, m->req, TERN_EKEY,
				    "one-time prekey id repeated");
				return;
			}
		}
	}
	memset(&in, 0, sizeof(in));
	in.user_id = ss->user->user_id;
	in.device_id = ss->device_id;
	memcpy(in.identity, k->identity_key, STORE_KEY_LEN);
	in.registration_id = k->registration_id;
	in.signed_prekey_id = k->signed_prekey_id;
	memcpy(in.signed_prekey, k->signed_prekey, STORE_KEY_LEN);
	memcpy(in.signature, k->signature, STORE_SIG_LEN);
	memcpy(in.last_resort, k->last_resort, STORE_KEY_LEN);
	in.prekeys = pk;
	in.n_prekeys = n;
	if ((c = ctx_new(ss, m)) == NULL)
		return;
	submitted(ss, c, store_keys_put(srv->store, &in, keys_put_done, c));
}

static void
handle_keys_status(struct session *ss, const struct msg *m)
{
	uint32_t prekeys = 0, spk = 0;
	int r;

	r = store_keys_count(ss->srv->store, ss->user->user_id, ss->device_id,
	    &prekeys, &spk);
	if (r != 0) {
		session_error(ss, m->req, r, NULL);
		return;
	}
	keys_count_send(ss, m->req, prekeys, spk);
}

/* bundle_record: one BUNDLE record (SPEC.md 4.33) from a store bundle. */
static void
bundle_record(uint8_t rec[MSG_BUNDLE_REC_LEN], const struct store_bundle *b)
{
	buf_store_be32(rec, b->device_id);
	buf_store_be32(rec + 4, b->registration_id);
	memcpy(rec + 8, b->identity, 32);
	buf_store_be32(rec + 40, b->signed_prekey_id);
	memcpy(rec + 44, b->signed_prekey, 32);
	memcpy(rec + 76, b->signature, 64);
	buf_store_be32(rec + 140, b->prekey_id);
	memcpy(rec + 144, b->prekey, 32);
}

/*
 * bundle_answer: the BUNDLE for user from a store_bundle_get result into
 * out (borrowing recs), counting what was served.
 */
static void
bundle_answer(struct server *srv, const struct store_result *res,
    const char *user, struct msg *out,
    uint8_t recs[STORE_BUNDLES_MAX * MSG_BUNDLE_REC_LEN])
{
	uint8_t rec[MSG_BUNDLE_REC_LEN];
	struct buf_writer w;
	size_t i;

	out->type = MSG_BUNDLE;
	out->u.bundle.user.p = user;
	out->u.bundle.user.len = strlen(user);
	memset(&out->u.bundle.devices, 0, sizeof(out->u.bundle.devices));
	buf_writer_init(&w, recs, STORE_BUNDLES_MAX * MSG_BUNDLE_REC_LEN);
	for (i = 0; i < res->n_bundles; i++) {
		const struct store_bundle *b = &res->bundles[i];
		bundle_record(rec, b);
		/* Cannot fail: recs holds STORE_BUNDLES_MAX records. */
		if (msg_record_add(&out->u.bundle.devices, &w, rec,
		    sizeof(rec)) != 0)
			break;
		srv->m.bundles_served_total++;
		if (b->prekey_id == STORE_LAST_RESORT_ID)
			srv->m.prekeys_exhausted_total++;
	}
}

/* bundle_low: devices of user_id a fetch left short of one-time prekeys
 * hear it now, wherever they are connected (SPEC.md 12.2). */
static void
bundle_low(struct server *srv, int64_t user_id, const struct store_result *res)
{
	struct nuser *t = user_find(srv, user_id);
	struct session *to;
	size_t i;

	for (i = 0; t != NULL && i < res->n_bundles; i++) {
		const struct store_bundle *b = &res->bundles[i];
		if (b->prekeys_left < SRV_PREKEYS_LOW &&
		    (to = user_device(t, b->device_id)) != NULL)
			keys_count_send(to, 0, b->prekeys_left,
			    b->signed_prekey_id);
	}
}

static void
bundle_done(void *arg, int status, const struct store_result *res)
{
	struct req_ctx *c = arg;
	struct session *ss = c->ss;
	struct server *srv = ss->srv;
	uint8_t recs[STORE_BUNDLES_MAX * MSG_BUNDLE_REC_LEN];
	struct msg out = {.type = MSG_BUNDLE, .req = c->req};

	if (status != 0) {
		if (ss->state == SS_AUTHED)
			session_error(ss, c->req, status, status ==
			    TERN_ENOUSER ? "no such user or device" : NULL);
		ctx_free(srv, c);
		return;
	}
	bundle_answer(srv, res, c->from, &out, recs);
	/* The prekeys are consumed whether or not the requester is still
	 * there to hear about them. */
	if (ss->state == SS_AUTHED)
		(void)session_send(ss, &out);
	bundle_low(srv, c->target_user, res);
	ctx_free(srv, c);
}

/*
 * handle_bundle_get: SPEC.md 4.32, 12.2, 12.3. The rate limit is checked
 * only for a user that exists, so that it is not spent on typos, and
 * never for one's own user.
 */
static void
handle_bundle_get(struct session *ss, const struct msg *m)
{
	const struct msg_bundle_get *g = &m->u.bundle_get;
	struct server *srv = ss->srv;
	char name[STORE_NAME_MAX + 1];
	struct store_user_info ui;
	struct req_ctx *c;
	int r;

	if (addr_local(srv, &g->user, name, sizeof(name)) == NULL) {
		session_error(ss, m->req, TERN_EUNREACH,
		    "user's domain is not served here (federation is not "
		    "enabled)");
		return;
	}
	if (store_user_lookup(srv->store, name, &ui) != 0 ||
	    ui.state != STORE_USER_ACTIVE) {
		session_error(ss, m->req, TERN_ENOUSER, NULL);
		return;
	}
	if (ui.user_id != ss->user->user_id) {
		r = ratelimit_take(srv->bundle_rl, (uint64_t)ss->user->user_id,
		    (uint64_t)ui.user_id, uv_now(srv->loop) + srv->clock_skew_ms);
		if (r == TERN_ERATE) {
			srv->m.bundle_rate_limited_total++;
			session_error(ss, m->req, r, "bundle fetch rate limit");
			return;
		}
		if (r != 0) {
			session_error(ss, m->req, r, NULL);
			return;
		}
	}
	if ((c = ctx_new(ss, m)) == NULL)
		return;
	c->target_user = ui.user_id;
	snprintf(c->from, sizeof(c->from), "%.*s", (int)g->user.len,
	    g->user.p);
	submitted(ss, c, store_bundle_get(srv->store, ui.user_id, g->device_id,
	    bundle_done, c));
}


/* --- federation (SPEC.md section 13; fed.c does the links) -------------- */

/* addr_domain_of: the domain part of an address (NUL-terminated). */
static const char *
addr_domain_of(const struct msg_str *a, char *buf, size_t cap)
{
	struct ident_addr ia;

	if (ident_addr_split(a->p, a->len, &ia) != 0 || ia.domain_len >= cap)
		return NULL;
	memcpy(buf, ia.domain, ia.domain_len);
	buf[ia.domain_len] = '\0';
	return buf;
}

struct fedq_ctx {
	struct session *ss;
	uint32_t req;
	uint8_t env_id[MSG_ID_LEN];
	char domain[IDENT_DOMAIN_MAX + 1];
	/* The envelope again, to write it to an established link before
	 * the enqueue commits (fed_wb_begin: write-back) or as soon as it
	 * does (fed_offer), without reading it back. */
	struct fed_wb wb;
	int64_t sender_user;        /* for the enqueue, maybe submitted */
	int64_t expires_ms;         /* later (fed_wb_hold) */
	char from[SRV_ADDR_BUF];
	char to[SRV_ADDR_BUF];
	struct msg_fed_env e;
	uint8_t payload[];
};

/* fedq_finish: SENT (status 0) or the error for q's SEND; frees q. */
static void
fedq_finish(struct fedq_ctx *q, int status)
{
	struct session *ss = q->ss;
	struct server *srv = ss->srv;

	if (status == 0) {
		struct msg m = {.type = MSG_SENT, .req = q->req};
		memcpy(m.u.sent.id, q->env_id, MSG_ID_LEN);
		if (ss->state == SS_AUTHED)
			(void)session_send(ss, &m);
	} else {
		if (status == TERN_EDISK)
			srv->m.disk_errors_total++;
		if (ss->state == SS_AUTHED)
			session_error(ss, q->req, status, status == TERN_EBUSY ?
			    "the outbound queue is full" : NULL);
	}
	free(q);
	session_release(ss);
}

static void
fedq_done(void *arg, int status, const struct store_result *res)
{
	struct fedq_ctx *q = arg;
	/* Committed, or (write-back) the destination took it already: its
	 * OK means durable there, so SENT holds even if our write failed or
	 * was withdrawn (SPEC.md 13.2). */
	bool taken = fed_wb_end(q->ss->srv->fed, q->domain, &q->wb, status,
	    status == 0 ? res->seq : 0, &q->e);

	fedq_finish(q, taken ? 0 : status);
}

/* fedq_submit: the outbound enqueue of q's envelope (q->wb.handle). */
static int
fedq_submit(struct fedq_ctx *q)
{
	struct store_fed_in in = {0};

	in.dest_domain = q->domain;
	memcpy(in.env_id, q->env_id, MSG_ID_LEN);
	in.to_addr = q->to;
	in.to_device = q->e.to_device;
	in.cls = q->e.class;
	in.sender_user = q->sender_user;
	in.sender_addr = q->from;
	in.sender_device = q->e.from_device;
	in.sent_ms = (int64_t)q->e.timestamp_ms;
	in.received_ms = (int64_t)q->e.received_ms;
	in.expires_ms = q->expires_ms;
	in.payload = q->payload;
	in.payload_len = q->e.payload.len;
	return store_fed_enqueue_h(q->ss->srv->store, &in, fedq_done, q,
	    &q->wb.handle);
}

static struct fedq_ctx *
fedq_of(struct fed_wb *w)
{
	return (struct fedq_ctx *)(void *)((char *)w -
	    offsetof(struct fedq_ctx, wb));
}

/* fedq_held_submit: fed held the enqueue back and wants it now. */
static void
fedq_held_submit(struct fed_wb *w)
{
	struct fedq_ctx *q = fedq_of(w);
	int r = fedq_submit(q);

	if (r != 0)
		fedq_done(q, r, NULL);
}

/* fedq_taken: the destination took the envelope while its enqueue was
 * held back: nothing is stored here, and the sender has its SENT. */
static void
fedq_taken(struct fed_wb *w)
{
	fedq_finish(fedq_of(w), 0);
}

/*
 * send_remote: a SEND for another domain: durable in the outbound queue
 * (then SENT), or, for class 3, onto the link if it is up (SENT either
 * way: ephemeral envelopes are never kept).
 */
static void
send_remote(struct session *ss, const struct msg *m)
{
	const struct msg_send *s = &m->u.send;
	struct server *srv = ss->srv;
	char from[SRV_ADDR_BUF], to[SRV_ADDR_BUF];
	struct fedq_ctx *q;
	uint64_t now = now_ms();
	int r;

	if ((q = calloc(1, sizeof(*q) + s->payload.len)) == NULL) {
		session_error(ss, m->req, TERN_ENOMEM, NULL);
		return;
	}
	if (addr_domain_of(&s->to, q->domain, sizeof(q->domain)) == NULL) {
		free(q);
		session_error(ss, m->req, TERN_EFIELD, NULL);
		return;
	}
	snprintf(from, sizeof(from), "%s@%s", ss->user->name,
	    srv->cfg.domain);
	snprintf(to, sizeof(to), "%.*s", (int)s->to.len, s->to.p);
	if (s->class == MSG_CLASS_EPHEMERAL) {
		struct msg sent = {.type = MSG_SENT, .req = m->req};
		struct msg_fed_env e = {0};
		memcpy(e.id, s->id, MSG_ID_LEN);
		e.from.p = from;
		e.from.len = strlen(from);
		e.from_device = ss->device_id;
		e.to = s->to;
		e.to_device = s->to_device;
		e.class = s->class;
		e.timestamp_ms = s->timestamp_ms;
		e.received_ms = now;
		e.payload = s->payload;
		if (fed_send_now(srv->fed, q->domain, &e) != 0)
			srv->m.ephemeral_dropped_total++;
		memcpy(sent.u.sent.id, s->id, MSG_ID_LEN);
		(void)session_send(ss, &sent);
		free(q);
		return;
	}
	q->ss = ss;
	q->req = m->req;
	memcpy(q->env_id, s->id, MSG_ID_LEN);
	snprintf(q->from, sizeof(q->from), "%s", from);
	snprintf(q->to, sizeof(q->to), "%s", to);
	memcpy(q->e.id, s->id, MSG_ID_LEN);
	q->e.from_device = ss->device_id;
	q->e.to_device = s->to_device;
	q->e.class = s->class;
	q->e.timestamp_ms = s->timestamp_ms;
	q->e.received_ms = now;
	q->e.payload.len = s->payload.len;
	if (s->payload.len > 0)
		memcpy(q->payload, s->payload.p, s->payload.len);
	q->e.from.p = q->from;
	q->e.from.len = strlen(q->from);
	q->e.to.p = q->to;
	q->e.to.len = strlen(q->to);
	q->e.payload.p = q->payload;
	q->sender_user = ss->user->user_id;
	q->expires_ms = (int64_t)(now + srv->cfg.fed_retention_ms);
	q->wb.submit = fedq_held_submit;
	q->wb.taken = fedq_taken;
	ss->pending++;
	/* On an established link the envelope goes at once, and its
	 * enqueue waits a moment for the OK that makes it unneeded. */
	if (srv->fed != NULL && fed_wb_hold(srv->fed, q->domain, &q->e,
	    &q->wb))
		return;
	if ((r = fedq_submit(q)) != 0) {
		ss->pending--;
		free(q);
		session_error(ss, m->req, r, NULL);
		return;
	}
	/* Submitted: now it may go before it commits (the handle is set). */
	if (srv->fed != NULL)
		fed_wb_begin(srv->fed, q->domain, &q->e, &q->wb);
}

struct fwd_ctx {
	struct session *ss;
	uint32_t req;
	bool presence;              /* PRESENCE_SUB: push it, then OK */
	bool renew;                 /* our renewal: push it, nothing else */
	char target[SRV_ADDR_BUF];  /* PRESENCE_SUB: whom */
};

/* presence_viewer: what a remote user's presence shows to our viewer,
 * whose own setting applies here as to a local target (presence_visible):
 * who hides their last seen sees no one's. */
static void
presence_viewer(const struct session *ss, struct msg_presence *p)
{
	if (ss->user != NULL && ss->user->privacy == STORE_LASTSEEN_NOBODY) {
		p->state = MSG_PRESENCE_HIDDEN;
		p->last_seen_ms = 0;
	}
}

static void
forward_done(void *arg, int status, const struct msg *resp)
{
	struct fwd_ctx *x = arg;
	struct session *ss = x->ss;

	if (ss->state == SS_AUTHED) {
		if (status == 0 && x->presence && resp->type == MSG_PRESENCE) {
			/* The state now; changes follow as FED_PRESENCE
			 * (SPEC.md 13.6). */
			struct msg out = *resp;
			out.req = 0;
			presence_viewer(ss, &out.u.presence);
			(void)session_send(ss, &out);
			if (!x->renew)
				session_ok(ss, x->req);
		} else if (x->presence && status == 0) {
			/* Refused (no such user, ...): not watched. */
			struct msg_str t = {x->target, strlen(x->target)};
			struct rwatch *w = rwatch_find(ss, &t);
			if (w != NULL)
				rwatch_remove(ss, w);
			if (!x->renew) {
				struct msg out = *resp;
				out.req = x->req;
				(void)session_send(ss, &out);
			}
		} else if (x->renew) {
			/* Unreachable: the next renewal tries again. */
		} else if (status != 0) {
			session_error(ss, x->req, status, "the user's node "
			    "could not be reached");
		} else {
			struct msg out = *resp;
			out.req = x->req;
			(void)session_send(ss, &out);
		}
	}
	free(x);
	session_release(ss);
}

/* forward_remote: 1 if m is about a user of another domain and was
 * relayed (or answered), 0 if it is ours to answer. */
static int
forward_remote(struct session *ss, const struct msg *m,
    const struct msg_str *user)
{
	struct server *srv = ss->srv;
	char name[STORE_NAME_MAX + 1], dom[IDENT_DOMAIN_MAX + 1];
	char me[SRV_ADDR_BUF];
	struct fwd_ctx *x;
	int r;

	if (addr_local(srv, user, name, sizeof(name)) != NULL ||
	    srv->fed == NULL)
		return 0;
	if (addr_domain_of(user, dom, sizeof(dom)) == NULL) {
		session_error(ss, m->req, TERN_EFIELD, NULL);
		return 1;
	}
	if ((x = malloc(sizeof(*x))) == NULL) {
		session_error(ss, m->req, TERN_ENOMEM, NULL);
		return 1;
	}
	x->ss = ss;
	x->req = m->req;
	x->presence = m->type == MSG_PRESENCE_SUB;
	x->renew = false;
	snprintf(x->target, sizeof(x->target), "%.*s", (int)user->len,
	    user->p);
	snprintf(me, sizeof(me), "%s@%s", ss->user->name, srv->cfg.domain);
	ss->pending++;
	if ((r = fed_forward(srv->fed, dom, me, m, forward_done, x)) != 0) {
		ss->pending--;
		free(x);
		session_error(ss, m->req, r, NULL);
	}
	return 1;
}

/* --- presence across domains (SPEC.md 13.6) ---------------------------- */

/*
 * Our side (the viewer's node): an rwatch per (session, remote user),
 * renewed with a relayed PRESENCE_SUB every SRV_RWATCH_RENEW_MS, which
 * also brings the state again should a push have been lost. The other
 * side (the target's node): an rview per (target, remote viewer), told
 * of every change with FED_PRESENCE until its lease runs out. A lease is
 * longer than two renewals, so one lost renewal does not end it.
 */
#define SRV_RWATCH_RENEW_MS (4u * 60 * 1000)
#define SRV_RVIEW_LEASE_MS (10u * 60 * 1000)
#define SRV_RVIEW_SWEEP_MS (60u * 1000)
/* Heap trims (server_trim): at most this long apart while connections
 * keep coming and handshakes are always in progress. */
#define SRV_TRIM_MAX_MS 10000
#define SRV_RVIEWS_PER_USER 1024   /* remote viewers of one user */
#define SRV_RVIEWS_MAX 262144      /* of all users together */

struct rwatch {
	struct session *ss;         /* who watches */
	char target[SRV_ADDR_BUF];  /* whom: user@domain, normalized */
	uint64_t renew;             /* uv_now of the next renewal */
	struct rwatch *next_s;      /* in ss->rwatches */
	struct rwatch *prev, *next; /* in srv->rw_head, by renew */
};

struct rview {
	char domain[IDENT_DOMAIN_MAX + 1]; /* the viewer's node's domain */
	char viewer[SRV_ADDR_BUF];  /* user@domain, normalized */
	uint64_t expires;           /* uv_now */
	struct rview *next;         /* in target->rviews */
};

/* addr_norm: a (wire) address as a normalized C string, or -1. */
static int
addr_norm(const struct msg_str *a, char *out, size_t cap)
{
	char in[SRV_ADDR_BUF];

	if (a->len >= sizeof(in))
		return -1;
	memcpy(in, a->p, a->len);
	in[a->len] = '\0';
	return ident_addr_normalize(in, out, cap) == 0 ? 0 : -1;
}

static void
rw_unlink(struct server *srv, struct rwatch *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		srv->rw_head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		srv->rw_tail = w->prev;
	w->prev = w->next = NULL;
}

static void
rw_append(struct server *srv, struct rwatch *w)
{
	w->renew = uv_now(srv->loop) + SRV_RWATCH_RENEW_MS;
	w->next = NULL;
	w->prev = srv->rw_tail;
	if (srv->rw_tail != NULL)
		srv->rw_tail->next = w;
	else
		srv->rw_head = w;
	srv->rw_tail = w;
}

static struct rwatch *
rwatch_find(struct session *ss, const struct msg_str *target)
{
	char t[SRV_ADDR_BUF];
	struct rwatch *w;

	if (addr_norm(target, t, sizeof(t)) != 0)
		return NULL;
	for (w = ss->rwatches; w != NULL; w = w->next_s)
		if (strcmp(w->target, t) == 0)
			return w;
	return NULL;
}

/* rwatch_add: ss watches remote user target (0), or ss has been answered
 * with an error (-1). Watching it already is fine. */
static int
rwatch_add(struct session *ss, const struct msg_str *target, uint32_t req)
{
	struct rwatch *w;

	if (rwatch_find(ss, target) != NULL)
		return 0;
	if (ss->nsubs >= SRV_SUBS_MAX) {
		session_error(ss, req, TERN_EQUOTA,
		    "too many presence subscriptions");
		return -1;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL) {
		session_error(ss, req, TERN_ENOMEM, NULL);
		return -1;
	}
	if (addr_norm(target, w->target, sizeof(w->target)) != 0) {
		free(w);
		session_error(ss, req, TERN_EFIELD, NULL);
		return -1;
	}
	w->ss = ss;
	w->next_s = ss->rwatches;
	ss->rwatches = w;
	ss->nsubs++;
	rw_append(ss->srv, w);
	return 0;
}

static void
rwatch_unsub_done(void *arg, int status, const struct msg *resp)
{
	(void)arg;
	(void)status;
	(void)resp; /* if lost, the lease ends it */
}

/* rwatch_remove: ss stops watching; when no other device of its user
 * watches the target either, the target's node is told (best effort). */
static void
rwatch_remove(struct session *ss, struct rwatch *w)
{
	struct server *srv = ss->srv;
	struct rwatch **pp, *o;
	struct session *s2;
	bool others = false;

	for (pp = &ss->rwatches; *pp != NULL; pp = &(*pp)->next_s) {
		if (*pp == w) {
			*pp = w->next_s;
			break;
		}
	}
	ss->nsubs--;
	rw_unlink(srv, w);
	if (ss->user != NULL) {
		for (s2 = ss->user->sessions; s2 != NULL && !others;
		    s2 = s2->unext) {
			if (s2 == ss)
				continue;
			for (o = s2->rwatches; o != NULL; o = o->next_s)
				if (strcmp(o->target, w->target) == 0)
					others = true;
		}
	}
	if (!others && ss->user != NULL && srv->fed != NULL &&
	    !srv->stopping) {
		char me[SRV_ADDR_BUF];
		const char *at = strrchr(w->target, '@');
		struct msg m = {.type = MSG_PRESENCE_UNSUB};

		m.u.presence_unsub.user.p = w->target;
		m.u.presence_unsub.user.len = strlen(w->target);
		snprintf(me, sizeof(me), "%s@%s", ss->user->name,
		    srv->cfg.domain);
		if (at != NULL && fed_forward(srv->fed, at + 1, me, &m,
		    rwatch_unsub_done, NULL) != 0)
			log_debug("presence: unsubscribing from %s not sent",
			    w->target);
	}
	free(w);
}

/* rwatch_tick: renewals that are due (a relayed PRESENCE_SUB each). */
static void
rwatch_tick(struct server *srv)
{
	uint64_t now = uv_now(srv->loop);
	struct rwatch *w;

	while ((w = srv->rw_head) != NULL && w->renew <= now) {
		struct session *ss = w->ss;
		struct msg m = {.type = MSG_PRESENCE_SUB};
		char me[SRV_ADDR_BUF];
		const char *at = strrchr(w->target, '@');
		struct fwd_ctx *x;

		rw_unlink(srv, w);
		rw_append(srv, w);
		if (ss->state != SS_AUTHED || srv->fed == NULL || at == NULL ||
		    (x = calloc(1, sizeof(*x))) == NULL)
			continue;
		x->ss = ss;
		x->presence = x->renew = true;
		snprintf(x->target, sizeof(x->target), "%s", w->target);
		m.u.presence_sub.user.p = w->target;
		m.u.presence_sub.user.len = strlen(w->target);
		snprintf(me, sizeof(me), "%s@%s", ss->user->name,
		    srv->cfg.domain);
		ss->pending++;
		if (fed_forward(srv->fed, at + 1, me, &m, forward_done,
		    x) != 0) {
			ss->pending--;
			free(x);
		}
	}
}

/* rview_state: what remote viewer may see of u (u's privacy; the
 * viewer's own setting is applied by its node). */
static uint8_t
rview_state(struct server *srv, struct nuser *u, const char *viewer,
    uint64_t *last_seen)
{
	bool visible = u->privacy == STORE_LASTSEEN_EVERYONE ||
	    (u->privacy == STORE_LASTSEEN_CONTACTS &&
	    store_contact_has(srv->store, u->user_id, viewer) == 0);

	if (!visible) {
		*last_seen = 0;
		return MSG_PRESENCE_HIDDEN;
	}
	*last_seen = (uint64_t)u->last_seen_ms;
	return u->shown_online ? MSG_PRESENCE_ONLINE : MSG_PRESENCE_OFFLINE;
}

/* rview_renew: viewer (a user of another domain) watches u for another
 * lease. Past the caps it gets the snapshot only (logged). */
static void
rview_renew(struct server *srv, struct nuser *u, const char *viewer)
{
	char v[SRV_ADDR_BUF];
	const char *at;
	struct rview *r;

	if (ident_addr_normalize(viewer, v, sizeof(v)) != 0 ||
	    (at = strrchr(v, '@')) == NULL)
		return;
	for (r = u->rviews; r != NULL; r = r->next) {
		if (strcmp(r->viewer, v) == 0) {
			r->expires = uv_now(srv->loop) + SRV_RVIEW_LEASE_MS;
			return;
		}
	}
	if (u->nrviews >= SRV_RVIEWS_PER_USER ||
	    srv->nrviews >= SRV_RVIEWS_MAX) {
		log_warn("presence: too many remote watchers; %s gets no "
		    "updates about %s", v, u->name);
		return;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return;
	snprintf(r->viewer, sizeof(r->viewer), "%s", v);
	snprintf(r->domain, sizeof(r->domain), "%s", at + 1);
	r->expires = uv_now(srv->loop) + SRV_RVIEW_LEASE_MS;
	r->next = u->rviews;
	u->rviews = r;
	u->nrviews++;
	u->refs++; /* u stays known while it is watched */
	srv->nrviews++;
}

/* rview_drop: removes u's viewers matching viewer (NULL: those whose
 * lease ended before now). Returns how many references to put: the
 * caller puts them once it no longer touches u. */
static uint32_t
rview_drop(struct server *srv, struct nuser *u, const char *viewer,
    uint64_t now)
{
	struct rview **pp = &u->rviews, *r;
	uint32_t n = 0;

	while ((r = *pp) != NULL) {
		if (viewer != NULL ? strcmp(r->viewer, viewer) != 0 :
		    r->expires > now) {
			pp = &r->next;
			continue;
		}
		*pp = r->next;
		free(r);
		u->nrviews--;
		srv->nrviews--;
		n++;
	}
	return n;
}

/* rview_sweep: leases that ran out (now = UINT64_MAX: all, at stop). */
static void
rview_sweep(struct server *srv, uint64_t now)
{
	uint32_t i;

	for (i = 0; i < srv->nbuckets; i++) {
		struct nuser *u = srv->users[i], *next;

		for (; u != NULL; u = next) {
			uint32_t n;

			next = u->hnext;
			if (u->rviews == NULL)
				continue;
			n = rview_drop(srv, u, NULL, now);
			while (n-- > 0)
				user_put(srv, u);
		}
	}
}

/* rview_push: u's presence changed: each remote viewer's node hears what
 * that viewer may see. */
static void
rview_push(struct server *srv, struct nuser *u)
{
	char addr[SRV_ADDR_BUF];
	struct rview *r;
	uint64_t now = uv_now(srv->loop);

	if (srv->fed == NULL || srv->stopping)
		return;
	snprintf(addr, sizeof(addr), "%s@%s", u->name, srv->cfg.domain);
	for (r = u->rviews; r != NULL; r = r->next) {
		struct msg_fed_presence pr = {0};
		int e;

		if (r->expires <= now)
			continue; /* the sweep frees it */
		pr.to.p = r->viewer;
		pr.to.len = strlen(r->viewer);
		pr.user.p = addr;
		pr.user.len = strlen(addr);
		pr.state = rview_state(srv, u, r->viewer, &pr.last_seen_ms);
		if ((e = fed_push_presence(srv->fed, r->domain, &pr)) == 0)
			srv->presence_pushed++;
		else
			log_debug("presence: %s's change not pushed to %s: %s",
			    u->name, r->domain, tern_strerror(e));
	}
}

/* The hooks fed.c calls. */

/* fed_hook_presence: a remote user we watch changed: to each device of
 * the viewer that watches it. */
static void
fed_hook_presence(void *arg, const struct msg_fed_presence *pr)
{
	struct server *srv = arg;
	char name[STORE_NAME_MAX + 1];
	struct session *ss;
	struct nuser *u;

	if (addr_local(srv, &pr->to, name, sizeof(name)) == NULL ||
	    (u = user_by_name(srv, name)) == NULL)
		return; /* not online: nothing to tell */
	for (ss = u->sessions; ss != NULL; ss = ss->unext) {
		struct msg m = {.type = MSG_PRESENCE};

		if (ss->state != SS_AUTHED || rwatch_find(ss, &pr->user) ==
		    NULL)
			continue;
		m.u.presence.user = pr->user;
		m.u.presence.state = pr->state;
		m.u.presence.last_seen_ms = pr->last_seen_ms;
		presence_viewer(ss, &m.u.presence);
		(void)session_send(ss, &m);
	}
}

static int
fed_hook_deliver(void *arg, const struct msg_fed_env *e,
    void (*done)(void *, int), void *darg)
{
	struct server *srv = arg;
	char name[STORE_NAME_MAX + 1];
	struct store_user_info ui;
	struct session *to;
	struct req_ctx *c;
	struct nuser *ru;
	int r;

	srv->m.envelopes_in_total[e->class < 4 ? e->class : 0]++;
	if (addr_local(srv, &e->to, name, sizeof(name)) == NULL)
		return TERN_EUNREACH;
	if ((r = rcpt_lookup(srv, name, e->to_device, &ui.user_id)) != 0)
		return r;
	if (e->class == MSG_CLASS_EPHEMERAL) {
		char from[SRV_ADDR_BUF];
		ru = user_find(srv, ui.user_id);
		to = ru ? user_device(ru, e->to_device) : NULL;
		snprintf(from, sizeof(from), "%.*s", (int)e->from.len,
		    e->from.p);
		if (to != NULL && to->live && !srv->overloaded)
			push_deliver(to, e->id, from, e->from_device, e->class,
			    e->timestamp_ms, e->received_ms, e->payload.p,
			    e->payload.len);
		else
			srv->m.ephemeral_dropped_total++;
		done(darg, 0);
		return 0;
	}
	if (store_pending(srv->store) > SRV_OVERLOAD_HIGH)
		return TERN_EBUSY; /* the other node retries */
	if ((c = ctx_env_new(e->payload.len)) == NULL)
		return TERN_ENOMEM;
	c->srv = srv;
	c->done = done;
	c->done_arg = darg;
	c->type = MSG_SEND;
	c->t0_us = mono_us();
	memcpy(c->env_id, e->id, MSG_ID_LEN);
	c->cls = e->class;
	c->sent_ms = e->timestamp_ms;
	/* SPEC.md 4.17: DELIVER carries the origin's acceptance time. */
	c->received_ms = e->received_ms != 0 ? e->received_ms : now_ms();
	c->rcpt_device = e->to_device;
	c->from_device = e->from_device;
	snprintf(c->from, sizeof(c->from), "%.*s", (int)e->from.len,
	    e->from.p);
	if (e->payload.len > 0)
		memcpy(c->payload, e->payload.p, e->payload.len);
	c->payload_len = (uint32_t)e->payload.len;
	if ((c->rcpt = user_get(srv, ui.user_id, name)) == NULL) {
		c->done = NULL;
		ctx_free(srv, c);
		return TERN_ENOMEM;
	}
	/* As for a local SEND (write-back, SPEC.md 7.3): a live device
	 * with room hears it at once while the store commits it; OK goes
	 * to the other node at the commit, or when the device acknowledged
	 * it before the writer took it (withdrawn then, never written: it
	 * is safe with its recipient), also while the node sheds load: the
	 * push spares the writer. A device without room waits for the
	 * commit as before: turning it to draining here, as a local SEND
	 * does, would make every envelope of a pipelined link a store read
	 * (measured: throughput fell). */
	to = user_device(c->rcpt, c->rcpt_device);
	if (to != NULL && to->live && to->fed_waiting == 0 &&
	    to->inflight < SRV_INFLIGHT_LIVE_MAX &&
	    net_conn_queued(to->conn) <= SRV_OUT_LIVE_MAX) {
		(void)ctx_push(srv, c, to, c->received_ms);
	} else if (to != NULL && to->live) {
		/* Pushed at its commit, in order: so are the ones after it. */
		ctx_wait_behind(c, to);
	}
	if (to != NULL && !to->live)
		to->dirty = true;
	if ((r = c->pushed ? hold_add(srv, c) :
	    enqueue_submit(srv, c)) != 0) {
		c->done = NULL;
		ctx_free(srv, c);
		return r;
	}
	if (c->pushed)
		pp_insert(srv, c);
	return 0;
}

struct freq_ctx {
	struct server *srv;
	void (*done)(void *, const struct msg *);
	void *arg;
	int64_t target_user;
	char user[SRV_ADDR_BUF];
};

static void
fed_error_resp(void (*done)(void *, const struct msg *), void *arg, int code)
{
	struct msg m = {.type = MSG_ERROR};

	m.u.error.code = (uint16_t)(code < 0 ? -code : code);
	m.u.error.detail.p = tern_strerror(code);
	m.u.error.detail.len = strlen(m.u.error.detail.p);
	done(arg, &m);
}

static void
fed_bundle_done(void *arg, int status, const struct store_result *res)
{
	struct freq_ctx *x = arg;
	uint8_t recs[STORE_BUNDLES_MAX * MSG_BUNDLE_REC_LEN];
	struct msg out = {.type = MSG_BUNDLE};

	if (status != 0) {
		fed_error_resp(x->done, x->arg, status);
	} else {
		bundle_answer(x->srv, res, x->user, &out, recs);
		x->done(x->arg, &out);
		bundle_low(x->srv, x->target_user, res);
	}
	free(x);
}

/* A remote requester's key for the bundle rate limit: a hash of its
 * address with the top bit set, apart from local user ids. */
static uint64_t
remote_key(const char *addr)
{
	uint64_t h = 1469598103934665603ull;

	for (; *addr != '\0'; addr++)
		h = (h ^ (uint8_t)*addr) * 1099511628211ull;
	return h | (1ull << 63);
}

static int
fed_hook_request(void *arg, const char *requester, const struct msg *req,
    void (*done)(void *, const struct msg *), void *darg)
{
	struct server *srv = arg;
	char name[STORE_NAME_MAX + 1];
	struct store_user_info ui;
	const struct msg_str *user;
	int r;

	user = req->type == MSG_DEVICE_LIST ? &req->u.device_list.user :
	    req->type == MSG_PROFILE_GET ? &req->u.profile_get.user :
	    req->type == MSG_PRESENCE_SUB ? &req->u.presence_sub.user :
	    req->type == MSG_PRESENCE_UNSUB ? &req->u.presence_unsub.user :
	    &req->u.bundle_get.user;
	if (addr_local(srv, user, name, sizeof(name)) == NULL) {
		fed_error_resp(done, darg, TERN_EUNREACH);
		return 0;
	}
	if (store_user_lookup(srv->store, name, &ui) != 0 ||
	    ui.state != STORE_USER_ACTIVE) {
		fed_error_resp(done, darg, TERN_ENOUSER);
		return 0;
	}
	switch (req->type) {
	case MSG_DEVICE_LIST: {
		uint8_t recs[MSG_DEVICES_MAX * MSG_DEVICE_REC_LEN];
		struct msg out = {0};
		if (devices_answer(srv, ui.user_id, user, &out, recs) != 0)
			fed_error_resp(done, darg, TERN_ENOUSER);
		else
			done(darg, &out);
		return 0;
	}
	case MSG_PRESENCE_SUB: {
		/* As presence_send for a local viewer, with the target's
		 * privacy (the viewer's own is applied by its node); and the
		 * viewer hears of changes until its lease ends (13.6). */
		struct nuser *t = user_get(srv, ui.user_id, name);
		struct msg out = {.type = MSG_PRESENCE};

		if (t == NULL) {
			fed_error_resp(done, darg, TERN_ENOMEM);
			return 0;
		}
		rview_renew(srv, t, requester);
		out.u.presence.user = *user;
		out.u.presence.state = rview_state(srv, t, requester,
		    &out.u.presence.last_seen_ms);
		done(darg, &out);
		user_put(srv, t);
		return 0;
	}
	case MSG_PRESENCE_UNSUB: {
		struct nuser *t = user_find(srv, ui.user_id);
		struct msg out = {.type = MSG_OK};
		char v[SRV_ADDR_BUF];

		if (t != NULL && ident_addr_normalize(requester, v,
		    sizeof(v)) == 0) {
			uint32_t n;
			t->refs++; /* kept while its list is edited */
			n = rview_drop(srv, t, v, 0);
			while (n-- > 0)
				user_put(srv, t);
			user_put(srv, t);
		}
		done(darg, &out);
		return 0;
	}
	case MSG_PROFILE_GET: {
		struct store_profile pr;
		struct msg out = {0};
		if (profile_answer(srv, ui.user_id, user, &out, &pr) != 0)
			fed_error_resp(done, darg, TERN_ENOUSER);
		else
			done(darg, &out);
		return 0;
	}
	default: {
		struct freq_ctx *x;
		r = ratelimit_take(srv->bundle_rl, remote_key(requester),
		    (uint64_t)ui.user_id, uv_now(srv->loop) +
		    srv->clock_skew_ms);
		if (r != 0) {
			if (r == TERN_ERATE)
				srv->m.bundle_rate_limited_total++;
			fed_error_resp(done, darg, r);
			return 0;
		}
		if ((x = calloc(1, sizeof(*x))) == NULL)
			return TERN_ENOMEM;
		x->srv = srv;
		x->done = done;
		x->arg = darg;
		x->target_user = ui.user_id;
		snprintf(x->user, sizeof(x->user), "%.*s", (int)user->len,
		    user->p);
		if ((r = store_bundle_get(srv->store, ui.user_id,
		    req->u.bundle_get.device_id, fed_bundle_done, x)) != 0) {
			free(x);
			return r;
		}
		return 0;
	}
	}
}

static void
fed_hook_notice(void *arg, int64_t user_id, uint32_t device_id)
{
	struct server *srv = arg;
	struct nuser *u = user_find(srv, user_id);
	struct session *to;

	if (u == NULL || (to = user_device(u, device_id)) == NULL ||
	    to->state != SS_AUTHED)
		return;
	to->live = false;
	to->dirty = true;
	session_fetch(to);
}

static void
handle_authed(struct session *ss, const struct msg *m)
{
	struct server *srv = ss->srv;
	int64_t uid = ss->user->user_id;
	char buf[STORE_ADDR_MAX + 1];
	char name[STORE_NAME_MAX + 1];
	struct req_ctx *c;

	switch (m->type) {
	case MSG_SEND:
		handle_send(ss, m);
		return;
	case MSG_ACK:
		handle_ack(ss, m);
		return;
	case MSG_DEVICE_ADD:
		if ((c = ctx_new(ss, m)) == NULL)
			return;
		snprintf(name, sizeof(name), "%.*s",
		    (int)m->u.device_add.device_name.len,
		    m->u.device_add.device_name.p);
		submitted(ss, c, store_device_add(srv->store, uid,
		    m->u.device_add.new_device_key, name, (int64_t)now_ms(),
		    simple_done, c));
		return;
	case MSG_DEVICE_LIST:
		if (!forward_remote(ss, m, &m->u.device_list.user))
			handle_device_list(ss, m);
		return;
	case MSG_DEVICE_REMOVE:
		if ((c = ctx_new(ss, m)) == NULL)
			return;
		c->rcpt_device = m->u.device_remove.device_id;
		rcache_clear(srv->rcache);
		submitted(ss, c, store_device_remove(srv->store, uid,
		    m->u.device_remove.device_id, simple_done, c));
		return;
	case MSG_PROFILE_SET: {
		char st[STORE_STATUS_MAX + 1];
		if ((c = ctx_new(ss, m)) == NULL)
			return;
		snprintf(name, sizeof(name), "%.*s",
		    (int)m->u.profile_set.name.len, m->u.profile_set.name.p);
		snprintf(st, sizeof(st), "%.*s",
		    (int)m->u.profile_set.status.len,
		    m->u.profile_set.status.p);
		submitted(ss, c, store_profile_set(srv->store, uid, name, st,
		    simple_done, c));
		return;
	}
	case MSG_PROFILE_GET:
		if (!forward_remote(ss, m, &m->u.profile_get.user))
			handle_profile_get(ss, m);
		return;
	case MSG_PRIVACY_SET:
		if ((c = ctx_new(ss, m)) == NULL)
			return;
		ss->user->privacy = m->u.privacy_set.last_seen;
		submitted(ss, c, store_privacy_set(srv->store, uid,
		    m->u.privacy_set.last_seen, simple_done, c));
		presence_changed(srv, ss->user);
		return;
	case MSG_CONTACT_ADD:
	case MSG_CONTACT_REMOVE: {
		const struct msg_str *a = m->type == MSG_CONTACT_ADD ?
		    &m->u.contact_add.user : &m->u.contact_remove.user;
		if ((c = ctx_new(ss, m)) == NULL)
			return;
		snprintf(buf, sizeof(buf), "%.*s", (int)a->len, a->p);
		submitted(ss, c, m->type == MSG_CONTACT_ADD ?
		    store_contact_add(srv->store, uid, buf, (int64_t)now_ms(),
		    simple_done, c) :
		    store_contact_remove(srv->store, uid, buf, simple_done, c));
		/* Who may see this user's presence changes at the commit. */
		return;
	}
	case MSG_CONTACT_LIST: {
		static uint8_t lb[MSG_CONTACTS_MAX * 256];
		struct buf_writer w;
		struct msg out = {.type = MSG_CONTACTS, .req = m->req};
		void *args[2] = {&w, &out.u.contacts.users};
		buf_writer_init(&w, lb, sizeof(lb));
		if (store_contacts_list(srv->store, uid, contacts_each,
		    args) < 0) {
			session_error(ss, m->req, TERN_EDB, NULL);
			return;
		}
		(void)session_send(ss, &out);
		return;
	}
	case MSG_PRESENCE_SUB:
		handle_presence_sub(ss, m, true);
		return;
	case MSG_PRESENCE_UNSUB:
		handle_presence_sub(ss, m, false);
		return;
	case MSG_KEYS_PUT:
		handle_keys_put(ss, m);
		return;
	case MSG_KEYS_STATUS:
		handle_keys_status(ss, m);
		return;
	case MSG_BUNDLE_GET:
		if (!forward_remote(ss, m, &m->u.bundle_get.user))
			handle_bundle_get(ss, m);
		return;
	default:
		session_error(ss, m->req, TERN_ETYPE,
		    "not a request a device sends");
		return;
	}
}

/* --- connections ----------------------------------------------------- */

/* A connection's owner data is one pointer to its session, which lives on
 * the heap: store requests in flight may outlive the connection, and the
 * session is freed when both are done (session_release). */
static struct session *
conn_session(struct net_conn *conn)
{
	return *(struct session **)net_conn_data(conn);
}

static int
session_message(struct net_conn *conn, const uint8_t *buf, size_t len)
{
	struct session *ss = conn_session(conn);
	struct server *srv = ss->srv;
	uint8_t type = 0;
	uint32_t req = 0;
	struct msg m;
	int r;

	if ((r = msg_decode(buf, len, &m)) != 0) {
		if (msg_peek_header(buf, len, &type, &req) != 0)
			type = 0, req = 0;
		if (r == TERN_ETYPE) {
			/* A newer peer may probe: answer, keep the link. */
			session_error(ss, req, r, "unknown message type");
			return 0;
		}
		srv->m.protocol_errors_total++;
		if (type != MSG_ERROR)
			session_error(ss, req, r, NULL);
		return r;
	}
	if (m.type == MSG_PING) {
		struct msg pong = {.type = MSG_PONG, .req = m.req};
		pong.u.pong.nonce = m.u.ping.nonce;
		(void)session_send(ss, &pong);
		return 0;
	}
	if (m.type == MSG_ERROR || m.type == MSG_PONG)
		return 0;
	if (ss->state == SS_UNAUTH) {
		if (m.type == MSG_LOGIN)
			handle_login(ss, &m);
		else if (m.type == MSG_REGISTER)
			handle_register(ss, &m);
		else
			session_error(ss, m.req, TERN_EAUTH, "log in first");
		return 0;
	}
	if (ss->state == SS_AUTHED) {
		if (m.type == MSG_LOGIN || m.type == MSG_REGISTER)
			session_error(ss, m.req, TERN_ESTATE,
			    "already logged in");
		else
			handle_authed(ss, &m);
	}
	return 0;
}

static void
session_open(struct net_conn *conn)
{
	struct server *srv = net_listener_data(net_conn_listener(conn));
	struct session *ss = slab_alloc(&srv->session_slab);

	if (ss == NULL) {
		net_conn_abort(conn, TERN_ENOMEM);
		return;
	}
	*(struct session **)net_conn_data(conn) = ss;
	ss->srv = srv;
	ss->conn = conn;
	ss->state = SS_UNAUTH;
	srv->m.connections_current++;
	srv->m.connections_total++;
	srv->m.unauth_current++;
}

static void
session_error_cb(struct net_conn *conn, int err)
{
	struct session *ss = conn_session(conn);

	/* Bad bytes after the handshake: one ERROR naming them, then the
	 * close (net does it). Before the handshake there is no one to
	 * tell. */
	if (ss != NULL) {
		ss->srv->m.protocol_errors_total++;
		session_error(ss, 0, err, NULL);
	}
}

static void
session_closed(struct net_conn *conn, int err)
{
	struct session *ss = conn_session(conn), **pp;
	struct server *srv;
	struct nuser *u;

	if (ss == NULL)
		return; /* never finished the handshake */
	srv = ss->srv;
	u = ss->user;
	if (ss->held_first != NULL)
		hold_flush(srv, ss); /* pushed, maybe lost: they go to the store */
	srv->m.connections_current--;
	if (ss->state == SS_UNAUTH)
		srv->m.unauth_current--;
	while (ss->subs != NULL)
		psub_remove(srv, ss->subs);
	while (ss->rwatches != NULL)
		rwatch_remove(ss, ss->rwatches);
	if (u != NULL) {
		for (pp = &u->sessions; *pp != NULL; pp = &(*pp)->unext) {
			if (*pp == ss) {
				*pp = ss->unext;
				break;
			}
		}
		if (--u->online == 0)
			presence_offline_soon(srv, u);
		user_put(srv, u);
		ss->user = NULL;
	}
	ss->state = SS_GONE;
	ss->conn = NULL;
	if (err != 0 && err != TERN_ECLOSED)
		log_debug("client connection closed: %s", tern_strerror(err));
	ss->pending++;
	session_release(ss);
}

static const struct net_conn_cbs session_cbs = {
	.open = session_open,
	.message = session_message,
	.closed = session_closed,
	.error = session_error_cb,
};

/* --- housekeeping ---------------------------------------------------- */

static void
expire_done(void *arg, int status, const struct store_result *res)
{
	struct server *srv = arg;
	struct session *ss;
	uint32_t i;

	srv->expiring = false;
	if (status != 0) {
		log_warn("queue expiry: %s", tern_strerror(status));
		return;
	}
	if (res->expired > 0)
		log_info("expired %u undelivered envelopes, %u notices queued",
		    res->expired, res->notices);
	srv->m.expired_total += res->expired;
	if (res->more)
		srv->next_expire = 0; /* again at the next tick */
	if (res->notices == 0)
		return;
	/* Notices went to senders' devices: the online ones fetch them. */
	for (i = 0; i < srv->nbuckets; i++) {
		struct nuser *u;
		for (u = srv->users[i]; u != NULL; u = u->hnext) {
			for (ss = u->sessions; ss != NULL; ss = ss->unext) {
				if (ss->state != SS_AUTHED)
					continue;
				ss->live = false;
				ss->dirty = true;
				session_fetch(ss);
			}
		}
	}
}

/* fetch_retry: a fetch that failed (store busy) is asked again here, so a
 * device does not wait for its next ack or envelope. */
static void
fetch_retry(struct server *srv)
{
	struct session *ss;
	struct nuser *u;
	uint32_t i;

	for (i = 0; i < srv->nbuckets; i++)
		for (u = srv->users[i]; u != NULL; u = u->hnext)
			for (ss = u->sessions; ss != NULL; ss = ss->unext)
				if (ss->state == SS_AUTHED && !ss->live &&
				    !ss->fetching)
					session_fetch(ss);
}

/*
 * server_trim: gives the heap's free pages back to the kernel once
 * connections have come or gone. A storm of logins frees, when it ends,
 * everything its handshakes and store requests held; the connections
 * themselves live in slabs, so that memory is whole free pages, not holes
 * between them. glibc returns free pages by itself only from the top of
 * the heap; malloc_trim returns those inside too. Measured 0.2-0.5 ms at
 * 15,000 idle connections, so it waits for the handshakes in progress to
 * finish (or SRV_TRIM_MAX_MS) and runs at most once a tick.
 */
static void
server_trim(struct server *srv, uint64_t now)
{
#ifdef __GLIBC__
	if (srv->m.connections_total == srv->trim_total &&
	    srv->m.connections_current == srv->trim_current)
		return;
	if (srv->nl.nunauth > 0 && now - srv->trim_ms < SRV_TRIM_MAX_MS)
		return;
	srv->trim_total = srv->m.connections_total;
	srv->trim_current = srv->m.connections_current;
	srv->trim_ms = now;
	(void)malloc_trim(0);
#else
	(void)srv;
	(void)now;
#endif
}

static void
server_tick(uv_timer_t *t)
{
	struct server *srv = t->data;
	uint64_t now = uv_now(srv->loop);

	presence_tick(srv);
	rwatch_tick(srv);
	if (now >= srv->next_rview_expiry) {
		srv->next_rview_expiry = now + SRV_RVIEW_SWEEP_MS;
		rview_sweep(srv, now);
	}
	fetch_retry(srv);
	commit_times(srv);
	metrics_sample(&srv->m, now_ms());
	(void)overload_check(srv);
	deferred_drain(srv);
	if (!srv->expiring && now >= srv->next_expire) {
		srv->next_expire = now + srv->cfg.expire_interval_ms;
		srv->expiring = true;
		if (store_expire(srv->store, (int64_t)now_ms(), expire_done,
		    srv) != 0)
			srv->expiring = false;
	}
	server_trim(srv, now);
	if (srv->nl.accept_retries != srv->accept_retries) {
		log_warn("no memory for new connections: %llu put off since "
		    "the last tick, tried again every %u ms",
		    (unsigned long long)(srv->nl.accept_retries -
		    srv->accept_retries), (unsigned)NET_ACCEPT_RETRY_MS);
		srv->accept_retries = srv->nl.accept_retries;
	}
}

/* --- metrics and admin over loopback HTTP ---------------------------- */

/* commit_times: the store's commit durations since the last call go into
 * the histogram (each tick, and before figures are shown). */
static void
commit_times(struct server *srv)
{
	uint32_t us[256];
	size_t n, i;

	do {
		n = store_commit_times(srv->store, us, 256);
		for (i = 0; i < n; i++)
			metrics_observe(&srv->m.store_commit_us, us[i]);
	} while (n == 256);
}

static void
server_gauges(struct server *srv)
{
	struct store_stats st;

	commit_times(srv);
	if (store_stats(srv->store, &st) == 0) {
		srv->m.envelopes_queued = st.queued;
		srv->m.queued_bytes = st.queued_bytes;
		srv->m.store_batches_total = st.batches;
		srv->m.store_requests_total = st.requests;
		srv->m.fed_queued = st.fed_queued;
		srv->m.store_memory_bytes = st.memory;
	}
	{
		/* Walks every arena: fine for a scrape, not for a hot path. */
		struct mallinfo2 mi = mallinfo2();

		srv->m.memory_heap_bytes = (uint64_t)mi.uordblks +
		    (uint64_t)mi.hblkhd;
		srv->m.memory_heap_free_bytes = (uint64_t)mi.fordblks;
	}
	srv->m.accept_retries_total = srv->nl.accept_retries;
	srv->m.memory_slab_bytes = slab_mapped_bytes(&srv->session_slab);
	for (size_t i = 0; i < SRV_USER_SLABS; i++)
		srv->m.memory_slab_bytes +=
		    slab_mapped_bytes(&srv->user_slabs[i]);
	for (size_t i = 0; i < NET_CONN_SLABS; i++)
		srv->m.memory_slab_bytes +=
		    slab_mapped_bytes(&srv->nl.conn_slabs[i]);
	if (srv->fed != NULL) {
		struct fed_stats fs;
		fed_stats(srv->fed, &fs);
		srv->m.fed_links_up = fs.links_up;
		srv->m.fed_inbound_up = fs.inbound_up;
		srv->m.fed_sent_total = fs.sent_total;
		srv->m.fed_refused_total = fs.refused_total;
		srv->m.fed_received_total = fs.received_total;
		srv->m.fed_auth_refused_total = fs.auth_refused_total;
		srv->m.fed_rate_limited_total = fs.rate_limited_total;
		srv->m.fed_presence_watchers = srv->nrviews;
		srv->m.fed_presence_pushed_total = srv->presence_pushed;
		srv->m.fed_relayed_in_total = fs.relayed_in_total;
		srv->m.fed_relay_refused_total = fs.relay_refused_total;
		srv->m.fed_writeback_total = fs.writeback_total;
	}
}

static int
user_list_each(void *arg, const struct store_user_info *u)
{
	struct buf_writer *w = arg;
	static const char *const states[] = {"active", "disabled", "deleted"};
	char line[256];
	int n;

	n = snprintf(line, sizeof(line), "%-24s %-8s devices=%u queued=%llu "
	    "bytes=%llu\n", u->name, states[u->state < 3 ? u->state : 0],
	    u->devices, (unsigned long long)u->queued,
	    (unsigned long long)u->queued_bytes);
	buf_put_bytes(w, line, (size_t)n);
	return 0;
}

/* An account change from the admin API, closed out at its commit. */
struct admin_ctx {
	struct server *srv;             /* the node */
	char name[STORE_NAME_MAX + 1];  /* the user */
};

/* admin_user_done: a disabled or deleted user's devices go offline once
 * the change is committed (from then on LOGIN fails). */
static void
admin_user_done(void *arg, int status, const struct store_result *res)
{
	struct admin_ctx *a = arg;
	struct nuser *u;
	struct session *ss;

	(void)res;
	rcache_clear(a->srv->rcache);
	if (status != 0) {
		log_warn("admin change of %s failed: %s", a->name,
		    tern_strerror(status));
	} else if ((u = user_by_name(a->srv, a->name)) != NULL) {
		for (ss = u->sessions; ss != NULL; ss = ss->unext) {
			session_error(ss, 0, TERN_EDENIED, "account disabled");
			net_conn_close(ss->conn, TERN_EDENIED);
		}
	}
	free(a);
}

static void
invite_done(void *arg, int status, const struct store_result *res)
{
	(void)arg;
	(void)res;
	if (status != 0)
		log_warn("invite not stored: %s", tern_strerror(status));
}

static int
server_http(void *arg, const struct http_request *req,
    struct http_response *resp)
{
	struct server *srv = arg;
	const char *name, *v;

	server_gauges(srv);
	if (strcmp(req->path, "/metrics") == 0) {
		resp->content_type = "text/plain; version=0.0.4";
		return metrics_render_prometheus(&srv->m, &resp->body);
	}
	/* Everything else passed the server's bearer-token check. */
	if (strcmp(req->path, "/status") == 0) {
		struct store_stats st;
		int r = metrics_render_status(&srv->m, &resp->body);
		if (r == 0 && store_stats(srv->store, &st) == 0)
			http_resp_printf(resp, "users: %llu, devices: %llu, "
			    "store backlog: %llu requests\n",
			    (unsigned long long)st.users,
			    (unsigned long long)st.devices,
			    (unsigned long long)st.pending);
		return r;
	}
	if (strcmp(req->path, "/admin/users") == 0)
		return store_user_list(srv->store, user_list_each, &resp->body);
	if (req->method != HTTP_POST)
		return 405;
	if (strcmp(req->path, "/admin/invite") == 0) {
		uint64_t ttl = 7 * 86400000ull;
		unsigned count = 1, done = 0;
		if ((v = http_request_param(req, "count")) != NULL)
			count = (unsigned)strtoul(v, NULL, 10);
		if ((v = http_request_param(req, "ttl")) != NULL &&
		    config_duration_parse(v, &ttl) != 0)
			return 400;
		/* Codes are answered at once; each is usable from its commit,
		 * a few milliseconds later. */
		return admin_invite_create(srv->store, count, ttl, &resp->body,
		    invite_done, srv, &done);
	}
	if ((name = http_request_param(req, "name")) == NULL)
		return 400;
	if (strcmp(req->path, "/admin/user/disable") == 0 ||
	    strcmp(req->path, "/admin/user/delete") == 0) {
		struct store_user_info ui;
		bool del = strcmp(req->path, "/admin/user/delete") == 0;
		struct admin_ctx *a;
		int r;
		if ((r = store_user_lookup(srv->store, name, &ui)) != 0)
			return r;
		if ((a = calloc(1, sizeof(*a))) == NULL)
			return TERN_ENOMEM;
		a->srv = srv;
		snprintf(a->name, sizeof(a->name), "%s", name);
		rcache_clear(srv->rcache);
		r = del ? store_user_delete(srv->store, name, admin_user_done,
		    a) : store_user_disable(srv->store, name, admin_user_done,
		    a);
		if (r != 0) {
			free(a);
			return r;
		}
		http_resp_printf(resp, "%s %s\n", name,
		    del ? "deleted" : "disabled");
		return 0;
	}
	return 404;
}

/* --- start and stop -------------------------------------------------- */

static void
server_slabs_fini(struct server *srv)
{
	slab_fini(&srv->session_slab);
	for (size_t i = 0; i < SRV_USER_SLABS; i++)
		slab_fini(&srv->user_slabs[i]);
}

static void
server_part_closed(struct server *srv)
{
	if (--srv->closing_parts == 0) {
		log_info("stopped");
		if (srv->done != NULL)
			srv->done(srv->done_arg, srv->status);
		free(srv->users);
		free(srv->names);
		free(srv->pp);
		ratelimit_free(srv->bundle_rl);
		rcache_free(srv->rcache);
		server_slabs_fini(srv);
		sodium_memzero(srv->priv, sizeof(srv->priv));
		sodium_memzero(srv->admin_token, sizeof(srv->admin_token));
		free(srv);
	}
}

static void
server_handle_closed(uv_handle_t *h)
{
	server_part_closed(h->data);
}

static void
server_store_closed(void *arg)
{
	server_part_closed(arg);
}

static void
server_net_closed(void *arg)
{
	struct server *srv = arg;
	struct req_ctx *c;
	struct nuser *u;

	/* No session is left: receipts still held will never be answered,
	 * so their senders resend them after reconnecting. */
	while ((c = srv->deferred) != NULL) {
		srv->deferred = c->next;
		ctx_free(srv, c);
	}
	srv->deferred_tail = NULL;
	srv->ndeferred = 0;
	/* Users whose last device just left wait for a presence tick that
	 * will not come (the timer is closed): drop the list's references. */
	while ((u = srv->going_offline) != NULL) {
		srv->going_offline = u->onext;
		u->onext = NULL;
		u->listed = false;
		user_put(srv, u);
	}
	/* Remote viewers' leases end with the node. */
	rview_sweep(srv, UINT64_MAX);
	/* The store commits what it was given, then closes. */
	store_close(srv->store, server_store_closed, srv);
}

static void
server_http_closed(void *arg)
{
	server_part_closed(arg);
}

/* server_fed_stopped: federation's links and queries are gone; the
 * client connections and then the store follow. */
static void
server_fed_stopped(void *arg)
{
	struct server *s = arg;

	s->fed = NULL;
	net_loop_close(&s->nl, server_net_closed, s);
}

void
server_stop(struct server *s)
{
	if (s->stopping)
		return;
	s->stopping = true;
	log_info("stopping: no new connections, finishing writes");
	s->closing_parts = 6; /* signals x2, timers x2, http, store */
	uv_close((uv_handle_t *)&s->sigterm, server_handle_closed);
	uv_close((uv_handle_t *)&s->sigint, server_handle_closed);
	uv_close((uv_handle_t *)&s->timer, server_handle_closed);
	/* What is held goes to the store as its device's session closes. */
	uv_close((uv_handle_t *)&s->hold_timer, server_handle_closed);
	http_server_close(s->http, server_http_closed, s);
	if (s->fed != NULL)
		fed_stop(s->fed, server_fed_stopped, s);
	else
		net_loop_close(&s->nl, server_net_closed, s);
}

uint16_t
server_fed_port(const struct server *s)
{
	return s->fed != NULL ? fed_port(s->fed) : 0;
}

uint16_t
server_admin_port(const struct server *s)
{
	return http_server_port(s->http);
}

uint16_t
server_port(const struct server *s)
{
	return net_listener_port(s->lis);
}

void
server_clock_advance(struct server *s, uint64_t ms)
{
	s->clock_skew_ms += ms;
}

static void
server_signal(uv_signal_t *h, int signum)
{
	log_info("signal %d", signum);
	server_stop(h->data);
}

int
server_start(uv_loop_t *loop, const struct node_config *cfg,
    const uint8_t static_priv[32], void (*done)(void *, int), void *arg,
    struct server **out)
{
	struct server *srv;
	struct store_config sc = {0};
	struct net_config nc = {0};
	char path[4096], tpath[4096], err[256] = "";
	int r;

	if ((srv = calloc(1, sizeof(*srv))) == NULL)
		return TERN_ENOMEM;
	srv->loop = loop;
	srv->cfg = *cfg;
	memcpy(srv->priv, static_priv, 32);
	srv->done = done;
	srv->done_arg = arg;
	srv->nbuckets = SRV_USERS_BUCKETS0;
	srv->pp_nb = SRV_PP_BUCKETS0;
	crypto_shorthash_keygen(srv->hash_key);
	randombytes_buf(srv->pp_key, sizeof(srv->pp_key));
	/* Neither maps anything before its first object. */
	r = slab_init(&srv->session_slab, sizeof(struct session));
	for (size_t i = 0; r == 0 && i < SRV_USER_SLABS; i++)
		r = slab_init(&srv->user_slabs[i],
		    SRV_USER_BYTES(0) + i * SLAB_ALIGN);
	if (r != 0) {
		free(srv);
		return r;
	}
	if ((srv->users = calloc(srv->nbuckets, sizeof(*srv->users))) == NULL ||
	    (srv->names = calloc(srv->nbuckets, sizeof(*srv->names))) ==
	    NULL ||
	    (srv->pp = calloc(SRV_PP_BUCKETS0, sizeof(*srv->pp))) == NULL ||
	    ratelimit_new(SRV_BUNDLE_BURST, SRV_BUNDLE_INTERVAL_MS,
	    SRV_BUNDLE_PAIRS_MAX, &srv->bundle_rl) != 0 ||
	    rcache_new(SRV_RCACHE_SLOTS, SRV_RCACHE_TTL_MS, &srv->rcache) != 0) {
		free(srv->users);
		free(srv->names);
		free(srv->pp);
		ratelimit_free(srv->bundle_rl);
		free(srv);
		return TERN_ENOMEM;
	}
	metrics_init(&srv->m);
	if ((r = config_path_join(cfg, cfg->admin_token_file, tpath,
	    sizeof(tpath))) != 0 ||
	    (r = keyfile_token_load(tpath, srv->admin_token,
	    sizeof(srv->admin_token), err, sizeof(err))) != 0) {
		log_error("admin token: %s", err);
		goto fail;
	}
	if ((r = config_path_join(cfg, cfg->database, path,
	    sizeof(path))) != 0)
		goto fail;
	sc.path = path;
	sc.domain = cfg->domain;
	sc.durability = cfg->durability;
	sc.quota_count = cfg->quota_count;
	sc.quota_bytes = cfg->quota_bytes;
	sc.contacts_max = MSG_CONTACTS_MAX; /* what one CONTACTS can carry */
	if ((r = store_open(&srv->store, loop, &sc)) != 0) {
		log_error("database %s: %s", path, tern_strerror(r));
		goto fail;
	}
	nc.handshake_timeout_ms = cfg->handshake_timeout_ms;
	nc.idle_timeout_ms = cfg->idle_timeout_ms;
	nc.max_unauth = cfg->max_unauth;
	if ((r = net_loop_init(&srv->nl, loop, &nc)) != 0)
		goto fail_store;
	r = net_listen(&srv->nl, cfg->listen_host, cfg->listen_port,
	    CHAN_KIND_CLIENT, srv->priv, MSG_MAX_UNAUTH, &session_cbs,
	    sizeof(struct session *), srv, &srv->lis);
	if (r != 0) {
		log_error("listen on %s:%u: %s", cfg->listen_host,
		    cfg->listen_port, tern_strerror(r));
		goto fail_net;
	}
	r = http_server_start(loop, cfg->metrics_host, cfg->metrics_port,
	    server_http, srv, &srv->http);
	if (r != 0) {
		log_error("metrics listen on %s:%u: %s", cfg->metrics_host,
		    cfg->metrics_port, tern_strerror(r));
		goto fail_net;
	}
	if ((r = http_server_set_token(srv->http, srv->admin_token)) != 0) {
		http_server_close(srv->http, NULL, NULL);
		goto fail_net;
	}
	if (strcmp(cfg->fed_listen, "none") != 0) {
		struct fed_config fc = {0};
		struct fed_hooks fh = {0};
		fc.domain = cfg->domain;
		fc.priv = srv->priv;
		fc.listen = cfg->fed_listen;
		fc.peers = cfg->fed_peers;
		fc.dns_servers = cfg->fed_dns;
		fc.retention_ms = cfg->fed_retention_ms;
		fc.inbound_rate = cfg->fed_inbound_rate;
		fc.inbound_burst = cfg->fed_inbound_burst;
		fc.relay_for = cfg->fed_relay_for;
		fc.relays = cfg->fed_relays;
		fh.deliver = fed_hook_deliver;
		fh.request = fed_hook_request;
		fh.notice_wake = fed_hook_notice;
		fh.presence = fed_hook_presence;
		fh.srv = srv;
		if ((r = fed_start(loop, &srv->nl, srv->store, &fc, &fh,
		    &srv->fed)) != 0) {
			http_server_close(srv->http, NULL, NULL);
			goto fail_net;
		}
	}
	uv_signal_init(loop, &srv->sigterm);
	uv_signal_init(loop, &srv->sigint);
	uv_timer_init(loop, &srv->timer);
	uv_timer_init(loop, &srv->hold_timer);
	srv->sigterm.data = srv->sigint.data = srv->timer.data = srv;
	srv->hold_timer.data = srv;
	uv_signal_start(&srv->sigterm, server_signal, SIGTERM);
	uv_signal_start(&srv->sigint, server_signal, SIGINT);
	uv_timer_start(&srv->timer, server_tick, 1000, 1000);
	log_info("serving %s: clients on %s:%u, metrics on http://%s:%u/metrics",
	    cfg->domain, cfg->listen_host, net_listener_port(srv->lis),
	    cfg->metrics_host, http_server_port(srv->http));
	*out = srv;
	return 0;

fail_net:
	/* Close what was opened; the loop's next run finishes it and frees
	 * srv. done is not called: start failed synchronously. */
	srv->done = NULL;
	srv->closing_parts = 1;
	net_loop_close(&srv->nl, server_net_closed, srv);
	return r;
fail_store:
	srv->done = NULL;
	srv->closing_parts = 1;
	store_close(srv->store, server_store_closed, srv);
	return r;
fail:
	sodium_memzero(srv->priv, sizeof(srv->priv));
	free(srv->users);
	free(srv->names);
	free(srv->pp);
	ratelimit_free(srv->bundle_rl);
	rcache_free(srv->rcache);
	server_slabs_fini(srv);
	free(srv);
	return r != 0 ? r : TERN_EIO;
}
