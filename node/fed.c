/*
 * fed.c: links between nodes and the outbound queues (fed.h, SPEC.md 13).
 *
 * Outbound, per destination domain, a struct peer walks:
 *
 *   IDLE -> CONNECTING (static route, or SRV via discover.c first)
 *        -> VERIFYING (XX: is the key it proved acceptable for the
 *           domain? keytrust.c with the TXT keys) -> HELLO -> UP
 *   any failure -> BACKOFF (1 s doubling to 10 min, full jitter) -> ...
 *
 * While UP it pages through the store's outbound queue for the domain in
 * seq order, keeps up to FED_WINDOW FED_ENV unanswered, and deletes each
 * entry only when the destination answered OK (store_fed_done, batched).
 * A final refusal sets the entry aside with a notice to its sender; any
 * other failure counts an attempt and rewinds the page so it is sent
 * again (the destination drops a repeated id).
 *
 * An attempt walks the SRV targets in order until one answers (home
 * first, then the domain's backup relays, as SMTP walks MX records),
 * and backs off only when all failed. A target proving a key the
 * domain's TXT _tern-key lists is its node; one whose key TXT
 * _tern-relay lists is a backup relay (SPEC.md 13.5), which gets every
 * envelope as FED_RENV signed with our node key; any other is refused
 * and the walk goes on. A link to a relay is closed once idle, and after
 * FED_RELAY_RECHECK_MS in any case, so new traffic tries the domain's
 * node first again.
 *
 * Inbound, a struct fin per connection: FED_HELLO (key checked against
 * the claimed domain), then FED_ENV and FED_REQ handed to the server's
 * hooks. A fin outlives its connection while a hook has not answered
 * (refs), like the server's sessions. FED_RENV for our own domain waits
 * in the fin's queue, in arrival order, for its checks (is the link an
 * authorized relay, does the origin's signature verify under a key that
 * may speak for its domain), which may need DNS; then it goes the way of
 * FED_ENV. FED_RENV on a link that asked for a domain we relay for is
 * verified against the link's own key (the origin signs with the key it
 * proved) and stored in our outbound queue for that domain.
 */
#include "fed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "buf.h"
#include "discover.h"
#include "dns.h"
#include "ident.h"
#include "keytrust.h"
#include "log.h"
#include "nodesig.h"

#define FED_TARGETS_MAX 8
#define FED_DONE_MIN 256            /* first size of a peer's done list */
#define FED_DONE_OUT_MAX 8          /* full delete requests out at once */
#define FED_FETCH_MIN 128           /* window room worth a fetch */
#define FED_READY_MAX 16384         /* committed envelopes kept per link */
#define FED_RING_MIN 256            /* first size of a link's ring */
#define FED_RING_MAX (4 * FED_WINDOW) /* most FED_ENV between the oldest
                                       unanswered and the newest */
#define FED_SKIP_BITS 14            /* skip set: 2 * FED_WINDOW slots */
#define FED_SKIP_CAP ((size_t)1 << FED_SKIP_BITS)
#define FED_STATIC_MAX 256
#define FED_REWIND_MS 1000          /* pause after a transient refusal */
/* What one peer domain's link may send us when the config does not say
 * ([federation] inbound_rate, inbound_burst): a bucket of FED_IN_BURST
 * envelopes refilled at FED_IN_RATE per second; beyond it EBUSY, and the
 * other node retries after a pause (13.2). Protects this node from one
 * domain. */
#define FED_IN_RATE 50000
#define FED_IN_BURST 100000

enum peer_st {
	P_IDLE = 0,     /* nothing to do, no link */
	P_RESOLVING,    /* asking DNS where the domain's nodes are */
	P_CONNECTING,   /* TCP and Noise */
	P_VERIFYING,    /* asking DNS which keys the domain publishes */
	P_HELLO,        /* FED_HELLO sent */
	P_UP,           /* established */
	P_BACKOFF       /* waiting to try again */
};

struct infl {
	uint32_t req;               /* the FED_ENV's req */
	bool early;                 /* sent before its commit: id is in the
	                               skip set until answered */
	uint8_t id[MSG_ID_LEN];     /* its envelope id, for the skip set */
	int64_t seq;                /* its queue entry; 0: none (yet) */
	struct fed_wb *wb;          /* sent before its enqueue committed
	                               (write-back): the server's, until
	                               fed_wb_end; seq is 0 meanwhile */
	bool answered;              /* OK or ERROR came (out of order) */
};

/* struct fed_wb's state (fed.h) */
enum {
	FWB_NONE = 0,               /* not sent early: fed_offer at commit */
	FWB_OUT,                    /* sent early, unanswered */
	FWB_OK,                     /* the destination took it */
	FWB_REFUSED,                /* refused for good: set aside at commit */
	FWB_RETRY,                  /* refused for now: counted, resent */
	FWB_LOST                    /* the link went: resent */
};

/* A committed envelope the link could not take at its commit (window
 * full): sent from here, in order, as answers make room, rather than
 * read back from the store. */
struct ready {
	struct ready *next;
	int64_t seq;
	struct msg_fed_env e;       /* from, to, payload point into data */
	uint8_t data[];
};

/* A relayed client request waiting for its FED_RESP. */
struct fwd {
	uint32_t req;               /* on the link; 0 while not yet sent */
	uint64_t deadline;          /* uv_now after which it fails */
	uint8_t *msg;               /* the encoded FED_REQ (req patched) */
	size_t len;
	void (*cb)(void *, int, const struct msg *); /* NULL: a push
	                               (FED_PRESENCE), freed once written */
	void *arg;
	struct fwd *next;
};

struct fstatic {
	char domain[IDENT_DOMAIN_MAX + 1];
	char host[DNS_ADDR_MAX];
	uint16_t port;
	bool pinned;
	uint8_t key[32];
};

struct peer {
	struct fed *f;
	char domain[IDENT_DOMAIN_MAX + 1];
	int st;                     /* enum peer_st */
	struct net_conn *conn;      /* while CONNECTING..UP */
	uv_timer_t timer;           /* backoff, keepalive, rewind */
	uint32_t fails;             /* consecutive failed attempts */
	const struct fstatic *stat; /* a static route, or NULL */
	struct dns_target tg[FED_TARGETS_MAX];
	size_t ntg, ti;             /* targets and the next to try */
	bool queued;                /* the store may hold entries for us */
	uint32_t kicks;             /* fed_kick calls: a fetch that started
	                               before the last one may have missed
	                               what it announced */
	uint32_t fetch_kicks;       /* kicks when the fetch out started */
	bool fetching;              /* a store_fed_fetch is out */
	bool paused;                /* after a transient refusal */
	int64_t last_seq;           /* highest seq sent on this link */
	uint8_t (*skip)[MSG_ID_LEN]; /* ids of envelopes in flight since
	                               before their commit: a fetch that
	                               reads them does not send them again
	                               (open addressing, zeros = free) */
	size_t nskip;
	struct ready *ready_head;   /* committed, not sent: before wait_head */
	struct ready *ready_tail;
	uint32_t nready;
	struct fed_wb *wait_head;   /* enqueues submitted and not committed,
	                               waiting for the link to take them */
	struct fed_wb *wait_tail;
	/* FED_ENV in flight, a ring in sending order (req increasing).
	 * Answers come out of order (the destination answers an envelope
	 * its device acknowledged before one it must commit), so the ring
	 * spans more than the window: it grows to FED_RING_MAX. */
	struct infl *infl;
	size_t icap;                /* ring slots: 0 or a power of two */
	size_t ih;                  /* the oldest */
	size_t ninfl;               /* ring entries (answered ones at the
	                               head are dropped at once) */
	size_t nunans;              /* of which unanswered: the window */
	int64_t *done;              /* OK'd entries to delete: each one
	                               kept until deleted, or it would stay
	                               queued (and expire with a false notice) */
	size_t ndone, done_cap;
	uint32_t done_out;          /* store_fed_done requests out */
	uint32_t next_req;
	struct fwd *fwds;           /* relayed requests, oldest first */
	uint64_t last_tx;           /* uv_now of our last message */
	bool relay;                 /* the link is to a backup relay of the
	                               domain, not to its node (13.5) */
	bool relay_idle;            /* closing that link on purpose: not a
	                               failure, retry from the top */
	uint64_t up_since;          /* uv_now when the link came up */
	struct peer *next;
};

/* What a connection's owner data holds: which side it is. */
struct fconn {
	bool inbound;
	struct peer *p;             /* outbound */
	struct fin *in;             /* inbound */
};

struct renv_job;

/* An inbound link. */
struct fin {
	struct fed *f;
	struct net_conn *conn;      /* NULL once closed */
	char domain[IDENT_DOMAIN_MAX + 1]; /* once verified */
	uint8_t key[32];            /* the peer's static key */
	bool up;                    /* FED_WELCOME sent */
	bool verifying;             /* waiting for DNS */
	uint32_t hello_req;
	uint32_t refs;              /* hooks not yet answered, + 1 for conn */
	struct fin *prev, *next;    /* in f->fins while the conn is open */
	double tokens;              /* inbound rate limit bucket */
	uint64_t tokens_ms;         /* its last refill (uv_now) */
	char relay_dom[IDENT_DOMAIN_MAX + 1]; /* FED_HELLO asked for this
	                               domain we relay for; "" for ours */
	struct renv_job *rq_head;   /* FED_RENV waiting for their checks */
	struct renv_job *rq_tail;
	size_t rq_bytes;            /* what they hold */
	bool rq_busy;               /* the head's check is out (DNS) */
};

/* A [federation] relays entry: one of our backup relays. */
struct frelay_pin {
	char domain[IDENT_DOMAIN_MAX + 1]; /* the relay's own domain */
	uint8_t key[32];            /* its node key */
};

struct fed {
	uv_loop_t *loop;
	struct net_loop *nl;
	struct store *store;
	struct fed_hooks hooks;
	char domain[IDENT_DOMAIN_MAX + 1];
	uint8_t priv[32];
	uint8_t pub[32];            /* ours, from priv */
	uint64_t retention_ms;      /* for envelopes we relay */
	double in_rate;             /* envelopes/s one inbound link may bring */
	double in_burst;            /* and in a burst */
	char relay_for[FED_RELAY_FOR_MAX][IDENT_DOMAIN_MAX + 1]; /* 13.5 */
	size_t nrelay_for;
	struct frelay_pin relays[FED_RELAY_PINS_MAX]; /* [federation] relays */
	size_t nrelays;
	struct net_listener *lis;
	struct dns *dns;
	struct fdisc *disc;
	struct ktrust *kt;
	struct fstatic stat[FED_STATIC_MAX];
	size_t nstat;
	struct peer *peers;
	size_t npeers;
	struct fin *fins;           /* inbound links open */
	uv_timer_t tick;            /* forwarded requests' deadlines */
	uv_timer_t hold;            /* the end of the oldest hold */
	uint8_t skip_key[crypto_shorthash_KEYBYTES]; /* the skip sets' */
	struct fed_wb *hold_head;   /* held enqueues (fed_wb_hold), oldest */
	struct fed_wb *hold_tail;   /* first: hold_until in order */
	uint32_t nheld;
	size_t held_bytes;          /* their payloads (FED_HOLD_BYTES) */
	struct fed_stats st;
	uint32_t pending;           /* store and DNS callbacks outstanding */
	uint32_t handles;           /* uv handles not yet closed */
	bool stopping;
	void (*stop_cb)(void *);
	void *stop_arg;
};

static void peer_pump(struct peer *p);
static void peer_drain_wait(struct peer *p);
static void hold_unlink(struct fed *f, struct fed_wb *w);
static void ready_drop(struct peer *p);
static int ready_add(struct peer *p, int64_t seq, const struct msg_fed_env *e);
static void skip_add(struct peer *p, const uint8_t id[MSG_ID_LEN]);
static void peer_connect(struct peer *p);
static bool peer_next_target(struct peer *p);
static int peer_dial(struct peer *p, const char *host, uint16_t port,
    const uint8_t *rs);
static void peer_lost(struct peer *p, int err);
static void fed_maybe_freed(struct fed *f);

/* --- small helpers ------------------------------------------------------ */

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int
fed_write(struct net_conn *c, const struct msg *m)
{
	uint8_t buf[MSG_MAX];
	size_t n;
	int r;

	if ((r = msg_encode(m, buf, sizeof(buf), &n)) != 0) {
		log_warn("federation: encode %s: %s", msg_type_name(m->type),
		    tern_strerror(r));
		return r;
	}
	return net_conn_send(c, buf, n);
}

static void
fed_error(struct net_conn *c, uint32_t req, int code, const char *detail)
{
	struct msg m = {.type = MSG_ERROR, .req = req};

	m.u.error.code = (uint16_t)(code < 0 ? -code : code);
	m.u.error.detail.p = detail ? detail : tern_strerror(code);
	m.u.error.detail.len = strlen(m.u.error.detail.p);
	(void)fed_write(c, &m);
}

/* addr_domain: the domain part of an address, or NULL. */
static const char *
addr_domain(const struct msg_str *a, char *buf, size_t cap)
{
	struct ident_addr ia;

	if (ident_addr_split(a->p, a->len, &ia) != 0 ||
	    ia.domain_len >= cap)
		return NULL;
	memcpy(buf, ia.domain, ia.domain_len);
	buf[ia.domain_len] = '\0';
	return buf;
}

static const struct fstatic *
fed_static(const struct fed *f, const char *domain)
{
	size_t i;

	for (i = 0; i < f->nstat; i++)
		if (strcmp(f->stat[i].domain, domain) == 0)
			return &f->stat[i];
	return NULL;
}

/*
 * fed_parse_peers: "D=HOST:PORT[/KEY], ..." into f->stat. HOST is
 * numeric (the node must not depend on a resolver for a static route).
 */
static int
fed_parse_peers(struct fed *f, const char *text)
{
	const char *p = text;

	if (text == NULL || strcmp(text, "none") == 0)
		return 0;
	while (*p != '\0') {
		char item[512], *eq, *colon, *slash, *end;
		struct fstatic *s;
		size_t n;
		unsigned long port;

		while (*p == ' ' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		n = strcspn(p, ",");
		if (n >= sizeof(item) || f->nstat >= FED_STATIC_MAX)
			goto bad;
		memcpy(item, p, n);
		item[n] = '\0';
		while (n > 0 && item[n - 1] == ' ')
			item[--n] = '\0';
		p += strcspn(p, ",");
		s = &f->stat[f->nstat];
		memset(s, 0, sizeof(*s));
		if ((eq = strchr(item, '=')) == NULL)
			goto bad;
		*eq = '\0';
		if (strlen(item) > IDENT_DOMAIN_MAX ||
		    ident_domain_check(item, strlen(item)) != 0)
			goto bad;
		strcpy(s->domain, item);
		if ((slash = strchr(eq + 1, '/')) != NULL) {
			*slash = '\0';
			{
				char rec[FDISC_KEY_TEXT_MAX + 16];
				snprintf(rec, sizeof(rec), "v=tern1 k=%s",
				    slash + 1);
				if (fdisc_key_parse(rec, strlen(rec), s->key) !=
				    0)
					goto bad;
			}
			s->pinned = true;
		}
		if ((colon = strrchr(eq + 1, ':')) == NULL)
			goto bad;
		*colon = '\0';
		port = strtoul(colon + 1, &end, 10);
		if (*end != '\0' || port == 0 || port > 65535)
			goto bad;
		{
			const char *h = eq + 1;
			size_t hl = strlen(h);
			if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
				h++;
				hl -= 2;
			}
			if (hl == 0 || hl >= sizeof(s->host))
				goto bad;
			memcpy(s->host, h, hl);
			s->host[hl] = '\0';
		}
		s->port = (uint16_t)port;
		f->nstat++;
	}
	return 0;
bad:
	log_error("[federation] peers: cannot read '%s' (want "
	    "DOMAIN=HOST:PORT or DOMAIN=HOST:PORT/KEY, comma-separated)", text);
	return TERN_ECONFIG;
}

/* fed_list_next: the next comma-separated item of *p (spaces trimmed)
 * into item; false at the end. An item too long is cut to cap - 1 and
 * so fails whatever check follows. */
static bool
fed_list_next(const char **p, char *item, size_t cap)
{
	size_t n;

	while (**p == ' ' || **p == ',')
		(*p)++;
	if (**p == '\0')
		return false;
	n = strcspn(*p, ",");
	snprintf(item, cap, "%.*s", (int)(n < cap ? n : cap - 1), *p);
	*p += n;
	n = strlen(item);
	while (n > 0 && item[n - 1] == ' ')
		item[--n] = '\0';
	return true;
}

static void
lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* fed_parse_relay_for: "[federation] relay_for = D1,D2" (13.5). */
static int
fed_parse_relay_for(struct fed *f, const char *text)
{
	const char *p = text;
	char item[IDENT_DOMAIN_MAX + 2];

	if (text == NULL || strcmp(text, "none") == 0)
		return 0;
	while (fed_list_next(&p, item, sizeof(item))) {
		if (f->nrelay_for >= FED_RELAY_FOR_MAX ||
		    strlen(item) > IDENT_DOMAIN_MAX ||
		    ident_domain_check(item, strlen(item)) != 0)
			goto bad;
		lower(item);
		if (strcmp(item, f->domain) == 0)
			goto bad;
		strcpy(f->relay_for[f->nrelay_for++], item);
	}
	return 0;
bad:
	log_error("[federation] relay_for: cannot read '%s' (want other "
	    "domains, comma-separated, at most %d; or none)", text,
	    FED_RELAY_FOR_MAX);
	return TERN_ECONFIG;
}

/* fed_parse_relays: "[federation] relays = DOMAIN/KEY,..." (13.5). */
static int
fed_parse_relays(struct fed *f, const char *text)
{
	const char *p = text;
	char item[512], rec[FDISC_KEY_TEXT_MAX + 16], *slash;
	struct frelay_pin *r;

	if (text == NULL || strcmp(text, "none") == 0)
		return 0;
	while (fed_list_next(&p, item, sizeof(item))) {
		if (f->nrelays >= FED_RELAY_PINS_MAX ||
		    (slash = strchr(item, '/')) == NULL)
			goto bad;
		*slash = '\0';
		r = &f->relays[f->nrelays];
		if (strlen(item) > IDENT_DOMAIN_MAX ||
		    ident_domain_check(item, strlen(item)) != 0)
			goto bad;
		memcpy(r->domain, item, strlen(item) + 1);
		lower(r->domain);
		snprintf(rec, sizeof(rec), "v=tern1 k=%s", slash + 1);
		if (fdisc_key_parse(rec, strlen(rec), r->key) != 0)
			goto bad;
		f->nrelays++;
	}
	return 0;
bad:
	log_error("[federation] relays: cannot read '%s' (want DOMAIN/KEY, "
	    "the relay's domain and its node key in base64, comma-separated, "
	    "at most %d; or none)", text, FED_RELAY_PINS_MAX);
	return TERN_ECONFIG;
}

/* fed_relaying: whether we are a backup relay for domain. */
static bool
fed_relaying(const struct fed *f, const char *domain)
{
	size_t i;

	for (i = 0; i < f->nrelay_for; i++)
		if (strcasecmp(f->relay_for[i], domain) == 0)
			return true;
	return false;
}

/* --- peers -------------------------------------------------------------- */

/* A peer's memory goes with the fed (fed_maybe_freed): store callbacks
 * still out at stop refer to it. */
static void
peer_timer_closed(uv_handle_t *h)
{
	struct peer *p = h->data;
	struct fed *f = p->f;

	f->handles--;
	fed_maybe_freed(f);
}

static struct peer *
peer_find(struct fed *f, const char *domain, bool create)
{
	struct peer *p;

	for (p = f->peers; p != NULL; p = p->next)
		if (strcmp(p->domain, domain) == 0)
			return p;
	if (!create || f->stopping || f->npeers >= FED_PEERS_MAX)
		return NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->f = f;
	snprintf(p->domain, sizeof(p->domain), "%s", domain);
	p->stat = fed_static(f, domain);
	p->next_req = 1;
	if (uv_timer_init(f->loop, &p->timer) != 0) {
		free(p);
		return NULL;
	}
	p->timer.data = p;
	f->handles++;
	p->next = f->peers;
	f->peers = p;
	f->npeers++;
	return p;
}

static uint32_t
peer_req(struct peer *p)
{
	uint32_t r = p->next_req++;

	if (p->next_req == 0)
		p->next_req = 1;
	return r;
}

/* --- the in-flight ring ------------------------------------------------- */

static struct infl *
infl_at(struct peer *p, size_t k)
{
	return &p->infl[(p->ih + k) & (p->icap - 1)];
}

/* infl_room: the link may take one more FED_ENV now. */
static bool
infl_room(const struct peer *p)
{
	return p->nunans < FED_WINDOW && p->ninfl < FED_RING_MAX;
}

/* infl_grow: room for one more entry (TERN_ENOMEM at FED_RING_MAX or
 * without memory). Growing moves the entries: the write-backs' slots
 * follow. */
static int
infl_grow(struct peer *p)
{
	size_t k, cap;
	struct infl *n;

	if (p->ninfl < p->icap)
		return 0;
	cap = p->icap > 0 ? p->icap * 2 : FED_RING_MIN;
	if (cap > FED_RING_MAX || (n = malloc(cap * sizeof(*n))) == NULL)
		return TERN_ENOMEM;
	for (k = 0; k < p->ninfl; k++) {
		n[k] = *infl_at(p, k);
		if (n[k].wb != NULL)
			n[k].wb->slot = k;
	}
	free(p->infl);
	p->infl = n;
	p->icap = cap;
	p->ih = 0;
	return 0;
}

/* infl_push: the ring entry of a FED_ENV just written (req); room was
 * made by infl_grow before writing it. */
static void
infl_push(struct peer *p, uint32_t req, int64_t seq, struct fed_wb *w)
{
	struct infl *x;
	size_t k;

	k = (p->ih + p->ninfl) & (p->icap - 1);
	x = &p->infl[k];
	x->req = req;
	x->seq = seq;
	x->wb = w;
	x->answered = false;
	x->early = false;
	p->ninfl++;
	p->nunans++;
	if (w != NULL) {
		/* Before its commit: a fetch may read it while it is out. */
		w->slot = k;
		x->early = true;
		memcpy(x->id, w->e->id, MSG_ID_LEN);
		skip_add(p, x->id);
	}
}

/* infl_find: the unanswered entry for req, by bisection (reqs increase
 * along the ring, modulo 2^32), or SIZE_MAX. */
static size_t
infl_find(struct peer *p, uint32_t req)
{
	size_t lo = 0, hi = p->ninfl, mid;
	uint32_t base;

	if (p->ninfl == 0)
		return SIZE_MAX;
	base = infl_at(p, 0)->req;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if ((uint32_t)(infl_at(p, mid)->req - base) <
		    (uint32_t)(req - base))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->ninfl || infl_at(p, lo)->req != req ||
	    infl_at(p, lo)->answered)
		return SIZE_MAX;
	return (p->ih + lo) & (p->icap - 1);
}

/* --- the skip set ------------------------------------------------------ */

static const uint8_t skip_free[MSG_ID_LEN];

/* Keyed (SipHash): ids are chosen by senders, who must not be able to
 * pile them into one run. */
static size_t
skip_slot(const struct peer *p, const uint8_t id[MSG_ID_LEN])
{
	uint8_t h[crypto_shorthash_BYTES];
	uint64_t v;

	crypto_shorthash(h, id, MSG_ID_LEN, p->f->skip_key);
	memcpy(&v, h, sizeof(v));
	return (size_t)(v >> (64 - FED_SKIP_BITS));
}

static size_t
skip_next(size_t i)
{
	return (i + 1) & (FED_SKIP_CAP - 1);
}

static void
skip_add(struct peer *p, const uint8_t id[MSG_ID_LEN])
{
	size_t i;

	if (p->skip == NULL &&
	    (p->skip = calloc(FED_SKIP_CAP, sizeof(*p->skip))) == NULL)
		return; /* then a fetch sends it again: a repeat, dropped */
	if (p->nskip >= FED_SKIP_CAP / 2 ||
	    memcmp(id, skip_free, MSG_ID_LEN) == 0)
		return;
	for (i = skip_slot(p, id); memcmp(p->skip[i], skip_free, MSG_ID_LEN) != 0;
	    i = skip_next(i))
		if (memcmp(p->skip[i], id, MSG_ID_LEN) == 0)
			return;
	memcpy(p->skip[i], id, MSG_ID_LEN);
	p->nskip++;
}

/* skip_find: id's slot, or SIZE_MAX. */
static size_t
skip_find(const struct peer *p, const uint8_t id[MSG_ID_LEN])
{
	size_t i;

	if (p->nskip == 0)
		return SIZE_MAX;
	for (i = skip_slot(p, id); memcmp(p->skip[i], id, MSG_ID_LEN) != 0;
	    i = skip_next(i))
		if (memcmp(p->skip[i], skip_free, MSG_ID_LEN) == 0)
			return SIZE_MAX;
	return i;
}

static void
skip_del(struct peer *p, const uint8_t id[MSG_ID_LEN])
{
	size_t i = skip_find(p, id), j, k;

	if (i == SIZE_MAX)
		return;
	/* Backward shift: a later member of the run moves into the hole
	 * unless its home slot lies between the hole and it. */
	j = i;
	for (;;) {
		memset(p->skip[i], 0, MSG_ID_LEN);
		for (;;) {
			j = skip_next(j);
			if (memcmp(p->skip[j], skip_free, MSG_ID_LEN) == 0) {
				p->nskip--;
				return;
			}
			k = skip_slot(p, p->skip[j]);
			if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
				continue;
			break;
		}
		memcpy(p->skip[i], p->skip[j], MSG_ID_LEN);
		i = j;
	}
}

static void
skip_clear(struct peer *p)
{
	if (p->nskip > 0)
		memset(p->skip, 0, FED_SKIP_CAP * sizeof(*p->skip));
	p->nskip = 0;
}

static void
peer_timer_cb(uv_timer_t *t)
{
	struct peer *p = t->data;
	struct fed *f = p->f;

	if (f->stopping)
		return;
	switch (p->st) {
	case P_BACKOFF:
		p->st = P_IDLE;
		peer_connect(p);
		break;
	case P_UP:
		if (p->relay && !p->relay_idle &&
		    uv_now(f->loop) - p->up_since >= FED_RELAY_RECHECK_MS) {
			/* Is the domain's node back? The next attempt starts
			 * there; what is in flight is sent again (the relay
			 * stores a repeated id once). */
			p->relay_idle = true;
			net_conn_close(p->conn, 0);
			break;
		}
		if (p->paused) {
			p->paused = false;
			peer_pump(p);
		}
		/* Keepalive: a PING when we have said nothing for a while,
		 * so neither side's idle timeout closes a useful link. */
		if (uv_now(f->loop) - p->last_tx >= FED_KEEPALIVE_MS) {
			struct msg m = {.type = MSG_PING, .req = peer_req(p)};
			m.u.ping.nonce = uv_now(f->loop);
			if (fed_write(p->conn, &m) == 0)
				p->last_tx = uv_now(f->loop);
		}
		(void)uv_timer_start(&p->timer, peer_timer_cb,
		    FED_KEEPALIVE_MS, 0);
		break;
	default:
		break;
	}
}

/* peer_backoff: the next try after a random wait in [0, window), the
 * window doubling with each failure (full jitter). */
static void
peer_backoff(struct peer *p)
{
	uint64_t win = FED_BACKOFF_MIN_MS;
	uint32_t i, wait;

	for (i = 1; i < p->fails && win < FED_BACKOFF_MAX_MS; i++)
		win *= 2;
	if (win > FED_BACKOFF_MAX_MS)
		win = FED_BACKOFF_MAX_MS;
	wait = randombytes_uniform((uint32_t)win) + 1;
	p->st = P_BACKOFF;
	(void)uv_timer_start(&p->timer, peer_timer_cb, wait, 0);
	log_info("federation: %s unreachable (attempt %u), next try in %u ms",
	    p->domain, p->fails, wait);
}

/* peer_fail_fwds: relayed requests that cannot be sent get err. */
static void
peer_fail_fwds(struct peer *p, int err, bool only_expired)
{
	struct fwd **pp = &p->fwds, *w;
	uint64_t now = uv_now(p->f->loop);

	while ((w = *pp) != NULL) {
		if (only_expired && w->deadline > now) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		if (w->cb != NULL)
			w->cb(w->arg, only_expired ? TERN_ETIMEOUT : err, NULL);
		free(w->msg);
		free(w);
	}
}

/* peer_send_fwds: writes the relayed requests not yet on the link, and
 * the pushes (which no answer follows: gone once written). */
static void
peer_send_fwds(struct peer *p)
{
	struct fwd **pp = &p->fwds, *w;

	if (p->relay) {
		/* A relay holds envelopes, not the domain's users: questions
		 * about them wait for the domain's node (13.5). */
		peer_fail_fwds(p, TERN_EUNREACH, false);
		return;
	}
	while ((w = *pp) != NULL) {
		if (w->req != 0) {
			pp = &w->next;
			continue;
		}
		w->req = peer_req(p);
		buf_store_be32(w->msg + 2, w->req);
		if (net_conn_send(p->conn, w->msg, w->len) != 0)
			return;
		p->last_tx = uv_now(p->f->loop);
		if (w->cb == NULL) {
			*pp = w->next;
			free(w->msg);
			free(w);
			continue;
		}
		pp = &w->next;
	}
}

/* --- the outbound queue -------------------------------------------------- */

/*
 * peer_write_env: one envelope onto p's link. To the domain's node, our
 * own as FED_ENV; to a backup relay, signed by us as FED_RENV (13.5). An
 * entry we relay for someone else (sig: its origin's signature) always
 * goes as FED_RENV with that signature unchanged.
 */
static int
peer_write_env(struct peer *p, uint32_t req, const struct msg_fed_env *e,
    const uint8_t *sig)
{
	struct msg m = {.req = req};
	int r;

	if (sig == NULL && !p->relay) {
		m.type = MSG_FED_ENV;
		m.u.fed_env = *e;
		return fed_write(p->conn, &m);
	}
	m.type = MSG_FED_RENV;
	m.u.fed_renv.env = *e;
	if (sig != NULL)
		memcpy(m.u.fed_renv.sig, sig, MSG_SIG_LEN);
	else if ((r = nodesig_env_sign(p->f->priv, e, m.u.fed_renv.sig)) != 0)
		return r;
	return fed_write(p->conn, &m);
}

/*
 * peer_send_env: writes e on the link and tracks it in flight: seq its
 * queue entry (0 if not committed yet), w its write-back (or NULL), sig
 * as for peer_write_env. Nothing is written if the ring has no room.
 */
static int
peer_send_env(struct peer *p, const struct msg_fed_env *e, int64_t seq,
    struct fed_wb *w, const uint8_t *sig)
{
	uint32_t req;
	int r;

	if ((r = infl_grow(p)) != 0)
		return r;
	req = peer_req(p);
	if ((r = peer_write_env(p, req, e, sig)) != 0)
		return r;
	infl_push(p, req, seq, w);
	p->last_tx = uv_now(p->f->loop);
	if (w != NULL) {
		w->peer = p;
		w->state = FWB_OUT;
	}
	return 0;
}

/*
 * peer_relay_check: a link to a backup relay with nothing left to send
 * is closed, so that the next envelope tries the domain's own node
 * first (13.5); peer_lost reconnects at once if something came meanwhile.
 */
static void
peer_relay_check(struct peer *p)
{
	if (!p->relay || p->relay_idle || p->st != P_UP || p->conn == NULL ||
	    p->queued || p->fetching || p->ninfl > 0 || p->fwds != NULL)
		return;
	log_info("federation: done with %s's backup relay for now",
	    p->domain);
	p->relay_idle = true;
	net_conn_close(p->conn, 0);
}

static void fed_op_done(struct fed *f);

static void
done_cb(void *arg, int status, const struct store_result *res)
{
	struct peer *p = arg;
	struct fed *f = p->f;

	p->done_out--;
	if (status != 0)
		log_warn("federation: deleting sent envelopes for %s: %s "
		    "(they may be sent again)", p->domain,
		    tern_strerror(status));
	/* Once stopping, the last callback frees f (and p): touch nothing
	 * after fed_op_done then. */
	if (f->stopping) {
		fed_op_done(f);
		return;
	}
	fed_op_done(f);
	if (p->ndone > 0)
		peer_pump(p);
}

static void
peer_flush_done(struct peer *p)
{
	struct fed *f = p->f;

	size_t n;

	/* One request at a time gathers small batches; full ones go at
	 * once, a few together, so deletes keep up with a busy link. */
	while (!f->stopping && p->ndone > 0 &&
	    (p->done_out == 0 || (p->ndone >= STORE_FED_DONE_MAX &&
	    p->done_out < FED_DONE_OUT_MAX))) {
		/* From the end: the order of deletes does not matter. */
		n = p->ndone < STORE_FED_DONE_MAX ? p->ndone :
		    STORE_FED_DONE_MAX;
		if (store_fed_done(f->store, p->done + p->ndone - n, n,
		    done_cb, p) != 0)
			return; /* kept: tried again with the next answer */
		p->done_out++;
		p->ndone -= n;
		f->pending++;
	}
}

static void
refuse_cb(void *arg, int status, const struct store_result *res)
{
	struct fed *f = arg;

	if (status == 0 && res->notice_device != 0 &&
	    f->hooks.notice_wake != NULL && !f->stopping)
		f->hooks.notice_wake(f->hooks.srv, res->notice_user,
		    res->notice_device);
	fed_op_done(f);
}

struct attempt_ctx {
	struct fed *f;
	int64_t seq;
};

static void
attempt_cb(void *arg, int status, const struct store_result *res)
{
	struct attempt_ctx *a = arg;
	struct fed *f = a->f;

	if (status == 0 && res->attempts >= FED_ATTEMPTS_MAX && !f->stopping) {
		log_warn("federation: envelope seq %lld set aside after %u "
		    "failed attempts", (long long)a->seq, res->attempts);
		if (store_fed_refuse(f->store, a->seq, STORE_NOTICE_REFUSED,
		    refuse_cb, f) == 0) {
			f->pending++;
			f->st.refused_total++;
		}
	}
	free(a);
	fed_op_done(f);
}

static void
fetch_cb(void *arg, int status, const struct store_result *res)
{
	struct peer *p = arg;
	struct fed *f = p->f;
	size_t i;

	p->fetching = false;
	if (f->stopping) {
		fed_op_done(f);
		return;
	}
	fed_op_done(f);
	if (status != 0) {
		log_warn("federation: reading the queue for %s: %s",
		    p->domain, tern_strerror(status));
		return;
	}
	if (p->st != P_UP || p->conn == NULL)
		return;
	if (p->relay_idle)
		return;
	for (i = 0; i < res->n_fed_envs && infl_room(p); i++) {
		const struct store_fed_env *e = &res->fed_envs[i];
		struct msg_fed_env env = {0}, *fe = &env;
		int r;

		if (e->seq <= p->last_seq)
			continue;
		if (skip_find(p, e->env_id) != SIZE_MAX) {
			/* In flight since before its commit: not again (its
			 * answer, when it comes, is acted on as any). */
			p->last_seq = e->seq;
			continue;
		}
		memcpy(fe->id, e->env_id, MSG_ID_LEN);
		fe->from.p = e->sender_addr;
		fe->from.len = strlen(e->sender_addr);
		fe->from_device = e->sender_device;
		fe->to.p = e->to_addr;
		fe->to.len = strlen(e->to_addr);
		fe->to_device = e->to_device;
		fe->class = e->cls;
		fe->timestamp_ms = (uint64_t)e->sent_ms;
		fe->received_ms = (uint64_t)e->received_ms;
		fe->payload.p = e->payload;
		fe->payload.len = e->payload_len;
		if ((r = peer_send_env(p, fe, e->seq, NULL,
		    e->has_sig ? e->sig : NULL)) != 0) {
			net_conn_close(p->conn, r);
			return;
		}
		p->last_seq = e->seq;
	}
	/* Nothing stored past last_seq (all it read is sent, and it read
	 * to the end): what is in flight is tracked, and newer entries come
	 * through fed_offer in seq order, or before their commit from the
	 * waiting list. */
	if (i == res->n_fed_envs && !res->more &&
	    p->kicks == p->fetch_kicks) {
		p->queued = false;
		peer_drain_wait(p);
		peer_relay_check(p);
	} else {
		peer_pump(p); /* more, or announced while this fetch ran */
	}
}

/* peer_pump: sends more of the queue if the window has room. */
static void
peer_pump(struct peer *p)
{
	struct fed *f = p->f;
	uint32_t room;

	peer_flush_done(p);
	if (!p->queued)
		peer_drain_wait(p);
	if (p->st != P_UP || p->fetching || p->paused || !p->queued ||
	    p->relay_idle || f->stopping)
		return;
	room = FED_WINDOW - (uint32_t)p->nunans;
	if (room > FED_RING_MAX - p->ninfl)
		room = (uint32_t)(FED_RING_MAX - p->ninfl);
	if (room > STORE_FED_FETCH_MAX)
		room = STORE_FED_FETCH_MAX;
	if (room < FED_FETCH_MIN)
		return; /* wait for answers: fetch in bigger pages */
	if (store_fed_fetch(f->store, p->domain, p->last_seq, room, fetch_cb,
	    p) != 0)
		return;
	p->fetching = true;
	p->fetch_kicks = p->kicks;
	f->pending++;
}

/* final: an answer after which an envelope is not sent again. */
static bool
final_refusal(int code)
{
	return code == TERN_ENOUSER || code == TERN_EDENIED ||
	    code == TERN_EQUOTA || code == TERN_EAUTH ||
	    code == TERN_EUNREACH || code == TERN_EFIELD ||
	    code == TERN_ETOOBIG;
}

/* peer_done_add: the destination took entry seq: delete it (batched). */
static void
peer_done_add(struct peer *p, int64_t seq)
{
	if (p->ndone == p->done_cap) {
		size_t cap = p->done_cap > 0 ? p->done_cap * 2 : FED_DONE_MIN;
		int64_t *d = realloc(p->done, cap * sizeof(*d));
		if (d == NULL) {
			/* Kept queued: sent again after a restart, and dropped
			 * there as a repeat. */
			log_warn("federation: out of memory: envelope seq %lld "
			    "for %s stays queued", (long long)seq, p->domain);
			return;
		}
		p->done = d;
		p->done_cap = cap;
	}
	p->done[p->ndone++] = seq;
	peer_flush_done(p);
}

/*
 * peer_hold: something sent before the envelopes still unanswered and not
 * yet committed must go again from the store, so their commits must not
 * move last_seq past it (fed_wb_end).
 */
static void
peer_hold(struct peer *p)
{
	size_t k;

	for (k = 0; k < p->ninfl; k++) {
		struct infl *x = infl_at(p, k);
		if (x->wb != NULL)
			x->wb->nolast = true;
	}
}

/* peer_pause: after a transient refusal, send again from the store in a
 * while (FED_REWIND_MS). */
static void
peer_pause(struct peer *p)
{
	peer_hold(p);
	ready_drop(p);
	p->queued = true; /* it and what followed it go again */
	p->kicks++;       /* a fetch out now started after last_seq moved */
	p->paused = true;
	(void)uv_timer_start(&p->timer, peer_timer_cb, FED_REWIND_MS, 0);
}

/*
 * peer_answer_early: the answer to a FED_ENV sent before its enqueue
 * committed. OK: withdraw the enqueue if the writer has not taken it yet
 * (then nothing is ever written), else fed_wb_end deletes the entry at
 * its commit. A refusal is acted on at the commit too, when the entry
 * has its seq.
 */
static void
peer_answer_early(struct peer *p, struct fed_wb *w, int code)
{
	struct fed *f = p->f;
	bool held = w->held;

	w->peer = NULL;
	if (held)
		hold_unlink(f, w);
	if (code == 0) {
		w->state = FWB_OK;
		f->st.sent_total++;
		if (held) {
			/* Never stored here: the server answers SENT and
			 * frees w. */
			f->st.writeback_total++;
			w->taken(w);
		} else if (store_cancel(f->store, w->handle) == 0) {
			f->st.writeback_total++;
		}
		peer_pump(p);
		return;
	}
	if (final_refusal(code)) {
		log_info("federation: %s refused an envelope: %s", p->domain,
		    tern_strerror(code));
		w->state = FWB_REFUSED;
		if (held)
			w->submit(w); /* set aside at its commit */
		peer_pump(p);
		return;
	}
	w->state = FWB_RETRY;
	peer_pause(p);
	if (held)
		w->submit(w); /* counted and sent again after its commit */
}

/* peer_answer: OK or ERROR for one of our FED_ENV. */
static void
peer_answer_env(struct peer *p, size_t k, int code)
{
	struct fed *f = p->f;
	int64_t seq = p->infl[k].seq;
	struct fed_wb *w = p->infl[k].wb;

	p->infl[k].answered = true;
	p->infl[k].wb = NULL;
	p->nunans--;
	if (p->infl[k].early) /* answered: a fetch may send it again now */
		skip_del(p, p->infl[k].id);
	while (p->ninfl > 0 && p->infl[p->ih].answered) {
		p->ih = (p->ih + 1) & (p->icap - 1);
		p->ninfl--;
	}
	if (w != NULL) {
		peer_answer_early(p, w, code);
		return;
	}
	if (seq == 0) {
		/* Sent early, and its enqueue failed: its sender got that
		 * error; nothing here to delete or to send again. */
		if (code == 0)
			f->st.sent_total++;
		peer_pump(p);
		return;
	}
	if (code == 0) {
		f->st.sent_total++;
		peer_done_add(p, seq);
		peer_pump(p);
		peer_relay_check(p);
		return;
	}
	if (final_refusal(code)) {
		log_info("federation: %s refused envelope seq %lld: %s",
		    p->domain, (long long)seq, tern_strerror(code));
		if (store_fed_refuse(f->store, seq, STORE_NOTICE_REFUSED,
		    refuse_cb, f) == 0) {
			f->pending++;
			f->st.refused_total++;
		}
		peer_pump(p);
		peer_relay_check(p);
		return;
	}
	/* Busy, disk trouble at the other end...: count it, and send it
	 * (and whatever follows it) again after a pause. */
	{
		struct attempt_ctx *a = malloc(sizeof(*a));
		if (a != NULL) {
			a->f = f;
			a->seq = seq;
			if (store_fed_attempt(f->store, seq, attempt_cb, a) == 0)
				f->pending++;
			else
				free(a);
		}
	}
	if (seq - 1 < p->last_seq)
		p->last_seq = seq - 1;
	peer_pause(p);
}

/* --- outbound links ---------------------------------------------------- */

static void
out_open_verified(struct peer *p)
{
	struct fed *f = p->f;
	struct msg m = {.type = MSG_FED_HELLO};

	m.req = peer_req(p);
	m.u.fed_hello.domain.p = f->domain;
	m.u.fed_hello.domain.len = strlen(f->domain);
	m.u.fed_hello.to_domain.p = p->domain;
	m.u.fed_hello.to_domain.len = strlen(p->domain);
	m.u.fed_hello.time_ms = wall_ms();
	p->st = P_HELLO;
	if (fed_write(p->conn, &m) != 0)
		net_conn_close(p->conn, TERN_EIO);
}

struct verify_ctx {
	struct fed *f;
	struct peer *p;             /* outbound, or NULL */
	struct fin *in;             /* inbound, or NULL */
	uint8_t key[32];
	char domain[IDENT_DOMAIN_MAX + 1];
};

static void fin_put(struct fin *in);
static void fin_verified(struct fin *in, int r, const char *why);

/* An outbound target whose key the domain does not publish: is it one of
 * the domain's backup relays (13.5)? What DNS said about the keys is
 * kept for the verdict if not. */
struct rcheck_ctx {
	struct fed *f;
	struct peer *p;
	struct net_conn *conn;      /* the link being verified */
	uint8_t key[32];            /* the key the target proved */
	int err;                    /* fdisc_keys' answer, copied */
	uint8_t keys[FDISC_MAX_KEYS][32];
	size_t n;
	bool stale;
};

static const char *
peer_target(const struct peer *p, char *buf, size_t cap)
{
	if (p->stat != NULL)
		snprintf(buf, cap, "%s:%u", p->stat->host, p->stat->port);
	else if (p->ntg > 0)
		snprintf(buf, cap, "%s:%u", p->tg[p->ti].addr,
		    p->tg[p->ti].port);
	else
		snprintf(buf, cap, "?");
	return buf;
}

static void
out_relays_cb(void *arg, int err, const struct fdisc_relay *rl, size_t n,
    unsigned flags, const char *detail)
{
	struct rcheck_ctx *x = arg;
	struct fed *f = x->f;
	struct peer *p = x->p;
	char why[KTRUST_WHY_MAX], fp[2 * KTRUST_FP_LEN + 1], at[DNS_ADDR_MAX + 8];
	struct ktrust_dns d = {0};
	size_t i;
	int r;

	(void)flags;
	(void)detail;
	if (p->st != P_VERIFYING || p->conn == NULL || p->conn != x->conn)
		goto out; /* that link is gone */
	if (f->stopping || err == TERN_ECANCELED) {
		net_conn_close(p->conn, TERN_ECANCELED);
		goto out;
	}
	for (i = 0; err == 0 && i < n; i++) {
		if (sodium_memcmp(rl[i].key, x->key, 32) != 0)
			continue;
		p->relay = true;
		log_info("federation: %s at %s is %s's backup relay (TXT "
		    "%s.%s)", rl[i].domain, peer_target(p, at, sizeof(at)),
		    p->domain, FDISC_RELAY_LABEL, p->domain);
		out_open_verified(p);
		goto out;
	}
	/* Not a relay: maybe still the domain's node by the trust rules
	 * (a remembered key while DNS fails, 13.4). */
	d.err = x->err;
	d.keys = (const uint8_t (*)[KTRUST_KEY_LEN])x->keys;
	d.n = x->n;
	d.stale = x->stale;
	r = ktrust_check(f->kt, p->domain, x->key, &d, why, sizeof(why));
	if (r == 0) {
		out_open_verified(p);
		goto out;
	}
	ktrust_fingerprint(x->key, fp);
	f->st.auth_refused_total++;
	log_warn("federation: unauthorized relay: %s holds key %s..., which "
	    "is neither in TXT %s.%s nor %s.%s: not sending it %s's "
	    "envelopes (%s)", peer_target(p, at, sizeof(at)), fp,
	    FDISC_KEY_LABEL, p->domain, FDISC_RELAY_LABEL, p->domain,
	    p->domain, why);
	net_conn_close(p->conn, TERN_EAUTH);
out:
	free(x);
	fed_op_done(f);
}

/*
 * out_maybe_relay: the key the target proved is not among the keys the
 * domain publishes (keys, n; err is fdisc_keys' answer): asks whether
 * the domain authorizes it as a backup relay. 1 if the answer comes to
 * out_relays_cb; 0 if that does not apply (our static routes, a domain
 * we relay for ourselves: only its own node will do).
 */
static int
out_maybe_relay(struct peer *p, const uint8_t key[32], int err,
    const uint8_t (*keys)[FDISC_KEY_LEN], size_t n, bool stale)
{
	struct fed *f = p->f;
	struct rcheck_ctx *x;

	if (p->stat != NULL || fed_relaying(f, p->domain) ||
	    (x = calloc(1, sizeof(*x))) == NULL)
		return 0;
	x->f = f;
	x->p = p;
	x->conn = p->conn;
	memcpy(x->key, key, 32);
	x->err = err;
	x->n = n < FDISC_MAX_KEYS ? n : FDISC_MAX_KEYS;
	if (err == 0 && x->n > 0)
		memcpy(x->keys, keys, x->n * 32);
	x->stale = stale;
	if (fdisc_relays(f->disc, p->domain, out_relays_cb, x) != 0) {
		free(x);
		return 0;
	}
	f->pending++;
	return 1;
}

static void
verify_keys_cb(void *arg, int err, const uint8_t (*keys)[FDISC_KEY_LEN],
    size_t n, unsigned flags, const char *detail)
{
	struct verify_ctx *v = arg;
	struct fed *f = v->f;
	struct ktrust_dns d = {0};
	char why[KTRUST_WHY_MAX];
	int r;

	d.err = err;
	d.keys = keys;
	d.n = n;
	d.stale = (flags & FDISC_STALE) != 0;
	if (v->p != NULL && !f->stopping && err != TERN_ECANCELED &&
	    v->p->st == P_VERIFYING && v->p->conn != NULL) {
		struct peer *p = v->p;
		bool listed = false;
		size_t i;

		for (i = 0; err == 0 && i < n; i++)
			listed |= sodium_memcmp(keys[i], v->key, 32) == 0;
		if (sodium_memcmp(v->key, f->pub, 32) == 0) {
			/* One of the domain's targets is this node (we are
			 * its backup relay): not a way to it. */
			net_conn_close(p->conn, TERN_EAUTH);
			free(v);
			fed_op_done(f);
			return;
		}
		if (!listed && out_maybe_relay(p, v->key, err, keys, n,
		    d.stale) == 1) {
			free(v);
			fed_op_done(f);
			return;
		}
	}
	if (f->stopping || err == TERN_ECANCELED)
		r = TERN_ECANCELED;
	else
		r = ktrust_check(f->kt, v->domain, v->key, &d, why,
		    sizeof(why));
	if (v->p != NULL) {
		struct peer *p = v->p;
		if (p->st == P_VERIFYING && p->conn != NULL) {
			if (r == 0) {
				out_open_verified(p);
			} else {
				if (r != TERN_ECANCELED) {
					f->st.auth_refused_total++;
					log_warn("federation: the node at %s does "
					    "not prove it serves %s: %s",
					    p->stat ? p->stat->host :
					    p->tg[p->ti ? p->ti - 1 : 0].addr,
					    p->domain, why);
				}
				net_conn_close(p->conn, TERN_EAUTH);
			}
		}
	} else {
		fin_verified(v->in, r, r == 0 ? NULL : why);
		fin_put(v->in);
	}
	free(v);
	fed_op_done(f);
}

/* fed_verify: is key acceptable for domain? Pinned static keys decide
 * alone; otherwise keytrust with the published keys. */
static int
fed_verify(struct fed *f, struct peer *p, struct fin *in, const char *domain,
    const uint8_t key[32])
{
	const struct fstatic *s = fed_static(f, domain);
	struct verify_ctx *v;
	int r;

	if (s != NULL && s->pinned)
		return sodium_memcmp(s->key, key, 32) == 0 ? 0 : TERN_EAUTH;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return TERN_ENOMEM;
	v->f = f;
	v->p = p;
	v->in = in;
	memcpy(v->key, key, 32);
	snprintf(v->domain, sizeof(v->domain), "%s", domain);
	if ((r = fdisc_keys(f->disc, domain, verify_keys_cb, v)) != 0) {
		free(v);
		return r;
	}
	f->pending++;
	return 1; /* answer later */
}

static void
out_open(struct net_conn *c)
{
	struct fconn *fc = net_conn_data(c);
	struct peer *p = fc->p;
	struct fed *f = p->f;
	int r;

	p->st = P_VERIFYING;
	r = fed_verify(f, p, NULL, p->domain, chan_remote_key(&c->chan));
	if (r == 0) {
		out_open_verified(p);
	} else if (r != 1) {
		f->st.auth_refused_total++;
		log_warn("federation: the node at %s:%u is not the one pinned "
		    "for %s in [federation] peers", p->stat ? p->stat->host :
		    "?", p->stat ? p->stat->port : 0, p->domain);
		net_conn_close(c, TERN_EAUTH);
	}
}

static int
out_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct fconn *fc = net_conn_data(c);
	struct peer *p = fc->p;
	struct fed *f = p->f;
	struct msg m;
	size_t k;
	int r;

	if ((r = msg_decode(buf, len, &m)) != 0)
		return r; /* a node that sends garbage loses the link */
	if (p->st == P_HELLO) {
		if (m.type == MSG_FED_WELCOME) {
			uint64_t now = wall_ms(), t = m.u.fed_welcome.time_ms;
			p->st = P_UP;
			p->fails = 0;
			p->last_tx = p->up_since = uv_now(f->loop);
			f->st.links_up++;
			if ((now > t ? now - t : t - now) > 5 * 60 * 1000)
				log_warn("federation: %s's clock is %lld s "
				    "off ours", p->domain, (long long)
				    ((int64_t)(t - now) / 1000));
			if (p->relay)
				log_info("federation: link to %s's backup relay "
				    "at %s:%u up (the domain's node did not "
				    "answer)", p->domain, p->tg[p->ti].addr,
				    p->tg[p->ti].port);
			else
				log_info("federation: link to %s up",
				    p->domain);
			(void)uv_timer_start(&p->timer, peer_timer_cb,
			    FED_KEEPALIVE_MS, 0);
			peer_send_fwds(p);
			peer_pump(p);
			return 0;
		}
		if (m.type == MSG_ERROR) {
			log_warn("federation: %s refused our link: %.*s",
			    p->domain, (int)m.u.error.detail.len,
			    m.u.error.detail.p);
			return -(int)m.u.error.code;
		}
		return TERN_ESTATE;
	}
	if (p->st != P_UP)
		return TERN_ESTATE;
	switch (m.type) {
	case MSG_PONG:
		return 0;
	case MSG_OK:
	case MSG_ERROR:
		if ((k = infl_find(p, m.req)) != SIZE_MAX) {
			peer_answer_env(p, k, m.type == MSG_OK ? 0 :
			    -(int)m.u.error.code);
			return 0;
		}
		/* maybe a relayed request's error */
		/* FALLTHROUGH */
	case MSG_FED_RESP: {
		struct fwd **pp, *w;
		for (pp = &p->fwds; (w = *pp) != NULL; pp = &w->next)
			if (w->req == m.req && w->cb != NULL)
				break;
		if (w == NULL)
			return 0; /* late, after its deadline */
		*pp = w->next;
		if (m.type == MSG_FED_RESP) {
			struct msg in;
			r = msg_decode(m.u.fed_resp.response.p,
			    m.u.fed_resp.response.len, &in);
			if (r == 0)
				w->cb(w->arg, 0, &in);
			else
				w->cb(w->arg, TERN_EUNREACH, NULL);
		} else {
			w->cb(w->arg, 0, &m);
		}
		free(w->msg);
		free(w);
		return 0;
	}
	default:
		return TERN_ETYPE;
	}
}

static void
out_closed(struct net_conn *c, int err)
{
	struct fconn *fc = net_conn_data(c);
	struct peer *p = fc->p;

	if (p == NULL || p->conn != c)
		return;
	if (p->st == P_CONNECTING && p->stat != NULL && p->stat->pinned &&
	    err != TERN_EUNREACH && err != TERN_ETIMEOUT)
		/* IK with a pinned key: a node holding another key cannot
		 * finish the handshake; say what to look at. */
		log_warn("federation: no handshake with %s at %s:%u (%s): is "
		    "its key the key pinned for %s in [federation] peers?",
		    p->domain, p->stat->host, p->stat->port,
		    tern_strerror(err), p->domain);
	p->conn = NULL;
	peer_lost(p, err);
}

static const struct net_conn_cbs out_cbs = {
	.open = out_open,
	.message = out_message,
	.closed = out_closed,
};

/* peer_lost: the link went (or never came); what was in flight is sent
 * again next time from the store. */
static void
peer_lost(struct peer *p, int err)
{
	struct fed *f = p->f;
	size_t k;
	struct fwd *w;
	bool was_up = p->st == P_UP, idle = p->relay_idle;

	if (was_up) {
		f->st.links_up--;
		if (!idle)
			log_info("federation: link to %s lost: %s", p->domain,
			    tern_strerror(err));
	}
	p->relay = p->relay_idle = false;
	for (k = 0; k < p->ninfl; k++) {
		struct infl *x = infl_at(p, k);
		if (x->answered)
			continue;
		if (x->wb != NULL) {
			/* Not committed yet: fed_wb_end kicks the queue. */
			struct fed_wb *wb = x->wb;
			wb->state = FWB_LOST;
			wb->peer = NULL;
			x->wb = NULL;
			if (wb->held) {
				hold_unlink(f, wb);
				wb->submit(wb);
			}
		} else if (x->seq != 0 && x->seq - 1 < p->last_seq) {
			p->last_seq = x->seq - 1;
		}
		p->queued = true; /* sent again on the next link */
		p->kicks++;
	}
	p->ninfl = p->nunans = 0;
	p->ih = 0;
	if (p->ready_head != NULL)
		p->queued = true, p->kicks++; /* the store sends them */
	ready_drop(p);
	p->paused = false;
	skip_clear(p); /* nothing is in flight any more */
	/* Relayed requests already written get no answer now. */
	for (w = p->fwds; w != NULL; w = w->next)
		w->req = 0;
	uv_timer_stop(&p->timer);
	p->st = P_IDLE;
	if (f->stopping)
		return;
	if (idle) {
		/* We closed a relay link on purpose: not a failure. */
		if (p->queued || p->fwds != NULL)
			peer_connect(p);
		return;
	}
	/* This attempt goes on with the next target, if there is one. */
	if (!was_up && peer_next_target(p))
		return;
	p->fails++;
	if (p->queued || p->fwds != NULL)
		peer_backoff(p);
	if (p->fails > 3)
		peer_fail_fwds(p, TERN_EUNREACH, false);
}

/*
 * peer_next_target: dials the next SRV target of this attempt (13.3,
 * 13.5); false when none is left (or there is nothing to send).
 */
static bool
peer_next_target(struct peer *p)
{
	while (p->stat == NULL && p->ti + 1 < p->ntg && !p->f->stopping &&
	    (p->queued || p->fwds != NULL)) {
		p->ti++;
		if (peer_dial(p, p->tg[p->ti].addr, p->tg[p->ti].port,
		    NULL) == 0)
			return true;
	}
	return false;
}

/* peer_dial: one target; 0, or the error (logged) if it cannot even
 * start (the caller moves on or backs off). */
static int
peer_dial(struct peer *p, const char *host, uint16_t port, const uint8_t *rs)
{
	struct fed *f = p->f;
	struct net_conn *c;
	int r;

	r = net_connect(f->nl, host, port, CHAN_KIND_FEDERATION,
	    rs != NULL ? CHAN_IK : CHAN_XX, f->priv, f->pub, rs, MSG_MAX,
	    &out_cbs, sizeof(struct fconn), &c);
	if (r != 0) {
		log_warn("federation: connecting to %s at %s:%u: %s",
		    p->domain, host, port, tern_strerror(r));
		return r;
	}
	((struct fconn *)net_conn_data(c))->p = p;
	p->conn = c;
	p->st = P_CONNECTING;
	return 0;
}

/* peer_dial_first: the first target of an attempt, else the next ones;
 * backs off when none can be dialed. */
static void
peer_dial_first(struct peer *p, const char *host, uint16_t port,
    const uint8_t *rs)
{
	if (peer_dial(p, host, port, rs) == 0 || peer_next_target(p))
		return;
	p->st = P_IDLE;
	p->fails++;
	peer_backoff(p);
}

static void
lookup_cb(void *arg, int err, const struct dns_target *t, size_t n,
    unsigned flags, const char *detail)
{
	struct peer *p = arg;
	struct fed *f = p->f;

	if (f->stopping) {
		fed_op_done(f);
		return;
	}
	fed_op_done(f);
	if (p->st != P_RESOLVING)
		return;
	if (err != 0 || n == 0) {
		log_warn("federation: finding %s's node: %s%s%s", p->domain,
		    tern_strerror(err != 0 ? err : TERN_ENOTFOUND),
		    detail[0] ? ": " : "", detail);
		p->fails++;
		if (err == TERN_ENOSERVICE)
			peer_fail_fwds(p, TERN_EUNREACH, false);
		peer_backoff(p);
		return;
	}
	p->ntg = n < FED_TARGETS_MAX ? n : FED_TARGETS_MAX;
	memcpy(p->tg, t, p->ntg * sizeof(t[0]));
	/* Each attempt walks the targets in RFC 2782 order from the first
	 * (the domain's node before its backup relays) until one answers;
	 * peer_lost moves on to the next. */
	p->ti = 0;
	peer_dial_first(p, p->tg[0].addr, p->tg[0].port, NULL);
}

static void
peer_connect(struct peer *p)
{
	struct fed *f = p->f;
	int r;

	if (p->st != P_IDLE || f->stopping)
		return;
	if (p->stat != NULL) {
		peer_dial_first(p, p->stat->host, p->stat->port,
		    p->stat->pinned ? p->stat->key : NULL);
		return;
	}
	p->st = P_RESOLVING;
	if ((r = fdisc_lookup(f->disc, p->domain, lookup_cb, p)) != 0) {
		log_warn("federation: cannot look up %s: %s", p->domain,
		    tern_strerror(r));
		p->fails++;
		peer_backoff(p);
		return;
	}
	f->pending++;
}

/*
 * fed_kick: new traffic for domain. A domain we are backing off from
 * keeps its timer: new envelopes do not make us hammer a node that is
 * down (each failed try would also lengthen the backoff).
 */
void
fed_kick(struct fed *f, const char *domain)
{
	struct peer *p;

	if (f->stopping || (p = peer_find(f, domain, true)) == NULL)
		return;
	ready_drop(p); /* the fetch reads them */
	p->queued = true;
	p->kicks++;
	if (p->st == P_UP)
		peer_pump(p);
	else if (p->st == P_IDLE)
		peer_connect(p);
}

/* fed_retry_now: the domain is back (it opened a link to us): try now,
 * with the backoff reset. */
static void
fed_retry_now(struct fed *f, const char *domain)
{
	struct peer *p = peer_find(f, domain, false);

	if (p == NULL || f->stopping)
		return;
	p->fails = 0;
	if (p->st == P_BACKOFF) {
		uv_timer_stop(&p->timer);
		p->st = P_IDLE;
	}
	if (p->st == P_IDLE && (p->queued || p->fwds != NULL))
		peer_connect(p);
}

void
fed_offer(struct fed *f, const char *domain, int64_t seq,
    const struct msg_fed_env *e)
{
	struct peer *p = peer_find(f, domain, false);

	if (p == NULL || p->st != P_UP || p->conn == NULL) {
		fed_kick(f, domain);
		return;
	}
	if (seq <= p->last_seq)
		return; /* a fetch that read it after its commit sent it */
	/* The link is ours but full (or others wait before it): keep it in
	 * memory, in order, rather than read it back later. */
	if (!p->queued && !p->fetching && !p->paused && !p->relay &&
	    !p->relay_idle && (p->ready_head != NULL || !infl_room(p)) &&
	    ready_add(p, seq, e) == 0) {
		peer_drain_wait(p);
		return;
	}
	if (p->queued || p->fetching || p->paused || p->relay_idle ||
	    !infl_room(p) || p->ready_head != NULL) {
		ready_drop(p);
		/* The queue sends it in turn. A fetch out now reads it: its
		 * read comes after this commit (the writer serves reads after
		 * the writes of their batch, and callbacks come in order), so
		 * this is not a kick that fetch could have missed. */
		p->queued = true;
		peer_pump(p);
		return;
	}
	if (peer_send_env(p, e, seq, NULL, NULL) != 0) {
		fed_kick(f, domain);
		return;
	}
	p->last_seq = seq;
}

/* wait_unlink: w leaves its peer's waiting list. */
static void
wait_unlink(struct peer *p, struct fed_wb *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		p->wait_head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		p->wait_tail = w->prev;
	w->prev = w->next = NULL;
	w->waiting = false;
}

/* hold_unlink: w leaves the held list (its enqueue is submitted next,
 * or never). */
static void
hold_unlink(struct fed *f, struct fed_wb *w)
{
	if (w->hprev != NULL)
		w->hprev->hnext = w->hnext;
	else
		f->hold_head = w->hnext;
	if (w->hnext != NULL)
		w->hnext->hprev = w->hprev;
	else
		f->hold_tail = w->hprev;
	w->hprev = w->hnext = NULL;
	w->held = false;
	f->nheld--;
	f->held_bytes -= w->e->payload.len;
}

/* peer_link_free: the link takes an envelope now, and the store holds
 * none that it has not sent. Relay links sign each envelope and are
 * left to the queue. */
static bool
peer_link_free(const struct peer *p)
{
	return p->st == P_UP && p->conn != NULL && !p->queued &&
	    !p->fetching && !p->paused && !p->relay && !p->relay_idle &&
	    !p->f->stopping && infl_room(p);
}

/* peer_can_send: ... and no committed one waits in memory either: a new
 * envelope goes now without overtaking any. */
static bool
peer_can_send(const struct peer *p)
{
	return peer_link_free(p) && p->ready_head == NULL;
}

/* ready_drop: the store sends them (its fetch starts at last_seq, which
 * no ready entry has passed). */
static void
ready_drop(struct peer *p)
{
	struct ready *r;

	while ((r = p->ready_head) != NULL) {
		p->ready_head = r->next;
		free(r);
	}
	p->ready_tail = NULL;
	p->nready = 0;
}

static int
ready_add(struct peer *p, int64_t seq, const struct msg_fed_env *e)
{
	struct ready *r;

	if (p->nready >= FED_READY_MAX ||
	    (r = malloc(sizeof(*r) + e->from.len + e->to.len +
	    e->payload.len)) == NULL)
		return TERN_ENOMEM;
	r->next = NULL;
	r->seq = seq;
	r->e = *e;
	memcpy(r->data, e->from.p, e->from.len);
	r->e.from.p = (const char *)r->data;
	memcpy(r->data + e->from.len, e->to.p, e->to.len);
	r->e.to.p = (const char *)r->data + e->from.len;
	if (e->payload.len > 0)
		memcpy(r->data + e->from.len + e->to.len, e->payload.p,
		    e->payload.len);
	r->e.payload.p = r->data + e->from.len + e->to.len;
	if (p->ready_tail != NULL)
		p->ready_tail->next = r;
	else
		p->ready_head = r;
	p->ready_tail = r;
	p->nready++;
	return 0;
}

/*
 * peer_drain_wait: writes waiting envelopes, oldest first, while the
 * link takes them. Each is in flight before its enqueue has committed:
 * its seq comes with fed_wb_end.
 */
static void
peer_drain_wait(struct peer *p)
{
	struct fed_wb *w;
	struct ready *r;

	/* Committed ones first: they are older than any waiting. */
	while ((r = p->ready_head) != NULL && peer_link_free(p)) {
		if (peer_send_env(p, &r->e, r->seq, NULL, NULL) != 0) {
			/* Left to the store, with whatever follows. */
			ready_drop(p);
			p->queued = true;
			return;
		}
		if (r->seq > p->last_seq)
			p->last_seq = r->seq;
		p->ready_head = r->next;
		if (p->ready_head == NULL)
			p->ready_tail = NULL;
		p->nready--;
		free(r);
	}
	while ((w = p->wait_head) != NULL && peer_can_send(p)) {
		/* On failure it stays first: it goes at its commit, by
		 * fed_offer, and nothing behind it overtakes it. */
		if (peer_send_env(p, w->e, 0, w, NULL) != 0)
			return;
		wait_unlink(p, w);
	}
}

/* wb_reset: a fresh write-back for e (w->handle and the callbacks are
 * the server's, set before). */
static void
wb_reset(struct fed_wb *w, const struct msg_fed_env *e)
{
	w->peer = NULL;
	w->e = e;
	w->prev = w->next = w->hprev = w->hnext = NULL;
	w->state = FWB_NONE;
	w->waiting = w->nolast = w->held = false;
}

static void
hold_cb(uv_timer_t *t)
{
	struct fed *f = t->data;
	uint64_t now = uv_now(f->loop);
	struct fed_wb *w;

	/* Not answered in time: stored after all (w stays in flight). */
	while ((w = f->hold_head) != NULL && w->hold_until <= now) {
		hold_unlink(f, w);
		w->submit(w);
	}
	if (f->hold_head != NULL && !f->stopping)
		(void)uv_timer_start(&f->hold, hold_cb,
		    f->hold_head->hold_until - now, 0);
}

bool
fed_wb_hold(struct fed *f, const char *domain, const struct msg_fed_env *e,
    struct fed_wb *w)
{
	struct peer *p;

	wb_reset(w, e);
	/* Only where nothing older waits, for the link or in the store. */
	if (f->stopping || f->nheld >= FED_HOLD_MAX ||
	    f->held_bytes + e->payload.len > FED_HOLD_BYTES ||
	    (p = peer_find(f, domain, false)) == NULL ||
	    p->wait_head != NULL || !peer_can_send(p) ||
	    peer_send_env(p, e, 0, w, NULL) != 0)
		return false;
	w->held = true;
	w->hold_until = uv_now(f->loop) + FED_HOLD_MS;
	w->hprev = f->hold_tail;
	if (f->hold_tail != NULL)
		f->hold_tail->hnext = w;
	else
		f->hold_head = w;
	f->hold_tail = w;
	f->held_bytes += e->payload.len;
	if (f->nheld++ == 0)
		(void)uv_timer_start(&f->hold, hold_cb, FED_HOLD_MS, 0);
	return true;
}

void
fed_wb_begin(struct fed *f, const char *domain, const struct msg_fed_env *e,
    struct fed_wb *w)
{
	struct peer *p;

	wb_reset(w, e);
	if (f->stopping || (p = peer_find(f, domain, true)) == NULL)
		return; /* fed_wb_end: fed_offer, which kicks */
	w->peer = p;
	w->waiting = true;
	w->prev = p->wait_tail;
	if (p->wait_tail != NULL)
		p->wait_tail->next = w;
	else
		p->wait_head = w;
	p->wait_tail = w;
	peer_drain_wait(p);
}

bool
fed_wb_end(struct fed *f, const char *domain, struct fed_wb *w, int status,
    int64_t seq, const struct msg_fed_env *e)
{
	struct peer *p;
	int st = w->state;

	if (st == FWB_NONE) {
		/* Never sent: as any committed entry. */
		if (w->waiting)
			wait_unlink(w->peer, w);
		w->peer = NULL;
		if (status == 0 && f != NULL && !f->stopping)
			fed_offer(f, domain, seq, e);
		return false;
	}
	if (st == FWB_OUT) {
		/* Committed (or failed) before its answer came. */
		struct infl *x;
		p = w->peer;
		x = &p->infl[w->slot];
		x->wb = NULL;
		w->peer = NULL;
		w->state = FWB_NONE;
		if (status != 0)
			return false; /* x->seq stays 0: nothing stored */
		x->seq = seq;
		/* Its place in the queue is sent unless something before it
		 * must go again (queued, paused: the store sends from
		 * last_seq on, this one included). */
		if (!w->nolast && !p->queued && !p->paused && seq > p->last_seq)
			p->last_seq = seq;
		/* else the fetch that comes passes it (skip set) */
		return false;
	}
	/* Answered before the commit, or its link went. */
	if (status != 0 || f == NULL || f->stopping ||
	    (p = peer_find(f, domain, false)) == NULL)
		return st == FWB_OK; /* stored or not, the store has it right:
		                        a kept entry is sent again later */
	/* Taken or refused for good: a fetch must not send it again (it is
	 * deleted shortly), so last_seq passes it where it may. */
	if ((st == FWB_OK || st == FWB_REFUSED) && !w->nolast && !p->queued &&
	    !p->paused && seq > p->last_seq)
		p->last_seq = seq;
	switch (st) {
	case FWB_OK:
		peer_done_add(p, seq);
		peer_pump(p);
		break;
	case FWB_REFUSED:
		if (store_fed_refuse(f->store, seq, STORE_NOTICE_REFUSED,
		    refuse_cb, f) == 0) {
			f->pending++;
			f->st.refused_total++;
		}
		break;
	case FWB_RETRY: {
		struct attempt_ctx *a = malloc(sizeof(*a));
		if (a != NULL) {
			a->f = f;
			a->seq = seq;
			if (store_fed_attempt(f->store, seq, attempt_cb, a) == 0)
				f->pending++;
			else
				free(a);
		}
		fed_kick(f, domain);
		break;
	}
	default: /* FWB_LOST */
		fed_kick(f, domain);
		break;
	}
	return st == FWB_OK;
}

int
fed_send_now(struct fed *f, const char *domain, const struct msg_fed_env *e)
{
	struct peer *p = peer_find(f, domain, false);
	struct msg m = {.type = MSG_FED_ENV};

	/* A relay does not hold ephemeral envelopes: dropped (13.5). */
	if (p == NULL || p->st != P_UP || p->conn == NULL || p->relay ||
	    p->relay_idle)
		return TERN_EUNREACH;
	m.req = peer_req(p);
	m.u.fed_env = *e;
	/* Its OK is not awaited: an ephemeral envelope is never resent. */
	if (fed_write(p->conn, &m) != 0)
		return TERN_EUNREACH;
	p->last_tx = uv_now(f->loop);
	return 0;
}

int
fed_forward(struct fed *f, const char *domain, const char *requester,
    const struct msg *req, void (*cb)(void *, int, const struct msg *),
    void *arg)
{
	uint8_t inner[MSG_FED_REQ_MAX];
	size_t ilen, olen;
	struct msg m = {.type = MSG_FED_REQ};
	struct peer *p;
	struct fwd *w;
	int r;

	if (req->type != MSG_DEVICE_LIST && req->type != MSG_PROFILE_GET &&
	    req->type != MSG_BUNDLE_GET && req->type != MSG_PRESENCE_SUB &&
	    req->type != MSG_PRESENCE_UNSUB)
		return TERN_EINVAL;
	if ((r = msg_encode(req, inner, sizeof(inner), &ilen)) != 0)
		return r;
	if ((p = peer_find(f, domain, true)) == NULL)
		return TERN_ENOMEM;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return TERN_ENOMEM;
	m.u.fed_req.requester.p = requester;
	m.u.fed_req.requester.len = strlen(requester);
	m.u.fed_req.request.p = inner;
	m.u.fed_req.request.len = ilen;
	olen = msg_encoded_size(&m);
	if (olen == 0 || (w->msg = malloc(olen)) == NULL ||
	    msg_encode(&m, w->msg, olen, &w->len) != 0) {
		free(w->msg);
		free(w);
		return TERN_EINVAL;
	}
	w->cb = cb;
	w->arg = arg;
	w->deadline = uv_now(f->loop) + FED_FORWARD_TIMEOUT_MS;
	/* Appended: answers come in any order, but requests go in order. */
	{
		struct fwd **pp = &p->fwds;
		while (*pp != NULL)
			pp = &(*pp)->next;
		*pp = w;
	}
	if (p->st == P_UP)
		peer_send_fwds(p);
	else if (p->st == P_IDLE)
		peer_connect(p);
	else if (p->st == P_BACKOFF)
		/* Known to be down: answered (ETIMEOUT) at the next tick,
		 * rather than making the client wait the whole deadline. */
		w->deadline = uv_now(f->loop);
	return 0;
}

int
fed_push_presence(struct fed *f, const char *domain,
    const struct msg_fed_presence *pr)
{
	struct msg m = {.type = MSG_FED_PRESENCE};
	struct peer *p;
	struct fwd *w;
	size_t olen;

	if (f->stopping)
		return TERN_ECLOSED;
	if ((p = peer_find(f, domain, true)) == NULL)
		return TERN_ENOMEM;
	/* A domain we are backing off from would only hold it until it
	 * is stale; its subscriptions renew (and so refresh) anyway. */
	if (p->st == P_BACKOFF)
		return TERN_EUNREACH;
	{
		size_t n = 0;
		for (w = p->fwds; w != NULL; w = w->next)
			n++;
		if (n >= FED_PUSH_PENDING_MAX)
			return TERN_EBUSY;
	}
	m.u.fed_presence = *pr;
	if (p->relay)
		return TERN_EUNREACH; /* a backup relay knows no one there */
	if (p->st == P_UP && p->conn != NULL) {
		m.req = peer_req(p);
		if (fed_write(p->conn, &m) != 0)
			return TERN_EUNREACH;
		p->last_tx = uv_now(f->loop);
		return 0;
	}
	/* Not up yet: kept with the relayed requests, written (in order)
	 * once the link is, dropped at the usual deadline if it never is. */
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return TERN_ENOMEM;
	olen = msg_encoded_size(&m);
	if (olen == 0 || (w->msg = malloc(olen)) == NULL ||
	    msg_encode(&m, w->msg, olen, &w->len) != 0) {
		free(w->msg);
		free(w);
		return TERN_EINVAL;
	}
	w->deadline = uv_now(f->loop) + FED_FORWARD_TIMEOUT_MS;
	{
		struct fwd **pp = &p->fwds;
		while (*pp != NULL)
			pp = &(*pp)->next;
		*pp = w;
	}
	if (p->st == P_IDLE)
		peer_connect(p);
	return 0;
}

/* --- inbound links ------------------------------------------------------ */

static void
fin_put(struct fin *in)
{
	if (--in->refs == 0)
		free(in);
}

static void
fin_verified(struct fin *in, int r, const char *why)
{
	struct fed *f = in->f;
	struct msg m = {.type = MSG_FED_WELCOME, .req = in->hello_req};
	struct peer *p;

	in->verifying = false;
	if (in->conn == NULL)
		return;
	if (r != 0) {
		char key_fp[2 * KTRUST_FP_LEN + 1];
		ktrust_fingerprint(in->key, key_fp);
		f->st.auth_refused_total++;
		log_warn("federation: refused a link claiming %s (key %s...): "
		    "%s", in->domain, key_fp, why != NULL ? why :
		    "the key is not the one pinned in [federation] peers");
		fed_error(in->conn, in->hello_req, TERN_EAUTH, "this key does "
		    "not serve that domain");
		net_conn_close(in->conn, TERN_EAUTH);
		return;
	}
	in->up = true;
	f->st.inbound_up++;
	m.u.fed_welcome.domain.p = f->domain;
	m.u.fed_welcome.domain.len = strlen(f->domain);
	m.u.fed_welcome.time_ms = wall_ms();
	(void)fed_write(in->conn, &m);
	/* A node that is back: what we had for it goes now (13.2). */
	(void)p;
	fed_retry_now(f, in->domain);
}

struct env_ctx {
	struct fin *in;
	uint32_t req;
};

static void
in_env_done(void *arg, int status)
{
	struct env_ctx *x = arg;
	struct fin *in = x->in;

	if (in->conn != NULL) {
		if (status == 0) {
			struct msg m = {.type = MSG_OK, .req = x->req};
			(void)fed_write(in->conn, &m);
		} else {
			fed_error(in->conn, x->req, status, NULL);
		}
	}
	free(x);
	fin_put(in);
}

static void
in_req_done(void *arg, const struct msg *resp)
{
	struct env_ctx *x = arg;
	struct fin *in = x->in;
	uint8_t buf[MSG_MAX];
	size_t n;

	if (in->conn != NULL) {
		if (msg_encode(resp, buf, sizeof(buf), &n) != 0) {
			fed_error(in->conn, x->req, TERN_EINVAL, NULL);
		} else {
			struct msg m = {.type = MSG_FED_RESP, .req = x->req};
			m.u.fed_resp.response.p = buf;
			m.u.fed_resp.response.len = n;
			(void)fed_write(in->conn, &m);
		}
	}
	free(x);
	fin_put(in);
}

static int
in_hello(struct fin *in, const struct msg *m)
{
	struct fed *f = in->f;
	const struct msg_fed_hello *h = &m->u.fed_hello;
	int r;

	if (in->up || in->verifying) {
		fed_error(in->conn, m->req, TERN_ESTATE, "hello again");
		return 0;
	}
	if (h->to_domain.len != strlen(f->domain) ||
	    strncasecmp(h->to_domain.p, f->domain, h->to_domain.len) != 0) {
		char want[IDENT_DOMAIN_MAX + 1];
		snprintf(want, sizeof(want), "%.*s", (int)h->to_domain.len,
		    h->to_domain.p);
		if (!fed_relaying(f, want)) {
			fed_error(in->conn, m->req, TERN_EUNREACH, "that "
			    "domain is not served here");
			return TERN_EUNREACH;
		}
		/* A domain we are a backup relay for (13.5). */
		lower(want);
		snprintf(in->relay_dom, sizeof(in->relay_dom), "%s", want);
	}
	snprintf(in->domain, sizeof(in->domain), "%.*s", (int)h->domain.len,
	    h->domain.p);
	for (char *c = in->domain; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	if (strcmp(in->domain, f->domain) == 0 ||
	    strcmp(in->domain, in->relay_dom) == 0) {
		fed_error(in->conn, m->req, TERN_EAUTH, in->relay_dom[0] ?
		    "that domain's own node does not go through its relay" :
		    "that is our domain");
		return TERN_EAUTH;
	}
	in->hello_req = m->req;
	in->verifying = true;
	in->refs++;
	r = fed_verify(f, NULL, in, in->domain, in->key);
	if (r == 1)
		return 0; /* fin_verified later */
	in->refs--;
	fin_verified(in, r, NULL);
	return 0;
}

/* in_take_token: the inbound rate limit of a link (f->in_rate and
 * f->in_burst), one token per FED_ENV or FED_RENV. */
static bool
in_take_token(struct fin *in, uint32_t req)
{
	struct fed *f = in->f;
	uint64_t now = uv_now(f->loop);

	in->tokens += (double)(now - in->tokens_ms) * f->in_rate / 1000.0;
	if (in->tokens > f->in_burst)
		in->tokens = f->in_burst;
	in->tokens_ms = now;
	if (in->tokens < 1.0) {
		f->st.rate_limited_total++;
		fed_error(in->conn, req, TERN_EBUSY, "too many envelopes from "
		    "your domain; slow down");
		return false;
	}
	in->tokens -= 1.0;
	return true;
}

static int
in_env(struct fin *in, const struct msg *m)
{
	struct fed *f = in->f;
	const struct msg_fed_env *e = &m->u.fed_env;
	char d[IDENT_DOMAIN_MAX + 1];
	struct env_ctx *x;
	int r;

	if (addr_domain(&e->from, d, sizeof(d)) == NULL ||
	    strcasecmp(d, in->domain) != 0) {
		/* Someone speaking for a domain it did not prove. */
		f->st.auth_refused_total++;
		log_warn("federation: %s sent an envelope from %.*s: refused",
		    in->domain, (int)e->from.len, e->from.p);
		fed_error(in->conn, m->req, TERN_EAUTH, "sender not in your "
		    "domain");
		return 0;
	}
	if (addr_domain(&e->to, d, sizeof(d)) == NULL ||
	    strcasecmp(d, f->domain) != 0) {
		fed_error(in->conn, m->req, TERN_EUNREACH, "recipient's domain "
		    "is not served here");
		return 0;
	}
	if (!in_take_token(in, m->req))
		return 0;
	if ((x = malloc(sizeof(*x))) == NULL) {
		fed_error(in->conn, m->req, TERN_ENOMEM, NULL);
		return 0;
	}
	x->in = in;
	x->req = m->req;
	in->refs++;
	f->st.received_total++;
	if ((r = f->hooks.deliver(f->hooks.srv, e, in_env_done, x)) != 0) {
		in->refs--;
		free(x);
		fed_error(in->conn, m->req, r, NULL);
	}
	return 0;
}

static int
in_req(struct fin *in, const struct msg *m)
{
	struct fed *f = in->f;
	const struct msg_fed_req *q = &m->u.fed_req;
	char d[IDENT_DOMAIN_MAX + 1], who[IDENT_ADDR_MAX + 1];
	struct env_ctx *x;
	struct msg inner;
	int r;

	if (addr_domain(&q->requester, d, sizeof(d)) == NULL ||
	    strcasecmp(d, in->domain) != 0) {
		fed_error(in->conn, m->req, TERN_EAUTH, "requester not in your "
		    "domain");
		return 0;
	}
	if ((r = msg_decode(q->request.p, q->request.len, &inner)) != 0) {
		fed_error(in->conn, m->req, r, "bad relayed request");
		return 0;
	}
	if (inner.type != MSG_DEVICE_LIST && inner.type != MSG_PROFILE_GET &&
	    inner.type != MSG_BUNDLE_GET && inner.type != MSG_PRESENCE_SUB &&
	    inner.type != MSG_PRESENCE_UNSUB) {
		fed_error(in->conn, m->req, TERN_ETYPE, "not a relayable "
		    "request");
		return 0;
	}
	snprintf(who, sizeof(who), "%.*s", (int)q->requester.len,
	    q->requester.p);
	if ((x = malloc(sizeof(*x))) == NULL) {
		fed_error(in->conn, m->req, TERN_ENOMEM, NULL);
		return 0;
	}
	x->in = in;
	x->req = m->req;
	in->refs++;
	if ((r = f->hooks.request(f->hooks.srv, who, &inner, in_req_done,
	    x)) != 0) {
		in->refs--;
		free(x);
		fed_error(in->conn, m->req, r, NULL);
	}
	return 0;
}

/* in_presence: a push, never answered (13.6). One about a user of
 * another domain than the link's, or for a viewer not ours, is dropped
 * and logged: the link stays, as for any single bad request. */
static void
in_presence(struct fin *in, const struct msg *m)
{
	struct fed *f = in->f;
	const struct msg_fed_presence *pr = &m->u.fed_presence;
	char d[IDENT_DOMAIN_MAX + 1];

	if (addr_domain(&pr->user, d, sizeof(d)) == NULL ||
	    strcasecmp(d, in->domain) != 0) {
		f->st.auth_refused_total++;
		log_warn("federation: %s sent the presence of %.*s: dropped",
		    in->domain, (int)pr->user.len, pr->user.p);
		return;
	}
	if (addr_domain(&pr->to, d, sizeof(d)) == NULL ||
	    strcasecmp(d, f->domain) != 0) {
		log_warn("federation: %s sent a presence for %.*s, not ours: "
		    "dropped", in->domain, (int)pr->to.len, pr->to.p);
		return;
	}
	if (f->hooks.presence != NULL)
		f->hooks.presence(f->hooks.srv, pr);
}

static void
in_open(struct net_conn *c)
{
	struct fed *f = net_listener_data(net_conn_listener(c));
	struct fconn *fc = net_conn_data(c);
	struct fin *in = calloc(1, sizeof(*in));

	if (in == NULL) {
		net_conn_abort(c, TERN_ENOMEM);
		return;
	}
	in->f = f;
	in->conn = c;
	in->refs = 1;
	in->tokens = f->in_burst;
	in->tokens_ms = uv_now(f->loop);
	memcpy(in->key, chan_remote_key(&c->chan), 32);
	fc->inbound = true;
	fc->in = in;
	in->next = f->fins;
	if (f->fins != NULL)
		f->fins->prev = in;
	f->fins = in;
}

/* fin_unlink: the connection is gone (or is being dropped at stop). */
static void
fin_unlink(struct fin *in)
{
	struct fed *f = in->f;

	if (in->prev != NULL)
		in->prev->next = in->next;
	else if (f->fins == in)
		f->fins = in->next;
	if (in->next != NULL)
		in->next->prev = in->prev;
	in->prev = in->next = NULL;
	if (in->up)
		f->st.inbound_up--;
	in->up = false;
	in->conn = NULL;
}

/* --- FED_RENV: signed envelopes, maybe through a backup relay (13.5) ---- */

/* A FED_RENV for our domain waiting in its link's queue for its checks;
 * its fields point into data. */
struct renv_job {
	uint32_t req;               /* the FED_RENV's */
	struct msg_fed_renv re;     /* the envelope and its signature */
	char origin[IDENT_DOMAIN_MAX + 1]; /* from's domain */
	size_t size;                /* counted in the fin's rq_bytes */
	struct renv_job *next;
	uint8_t data[];             /* from, to, payload */
};

/* One asynchronous check of a queue's head; holds a ref on the fin. */
struct renv_check {
	struct fin *in;
};

static void renv_drain(struct fin *in);

/* renv_refuse: a FED_RENV that fails a check: EAUTH, counted, logged
 * with who relayed it and why. */
static void
renv_refuse(struct fin *in, uint32_t req, const struct msg_fed_env *e,
    const char *why)
{
	struct fed *f = in->f;
	char fp[2 * KTRUST_FP_LEN + 1];

	ktrust_fingerprint(in->key, fp);
	f->st.relay_refused_total++;
	f->st.auth_refused_total++;
	log_warn("federation: refused an envelope from %.*s that %s (key "
	    "%s...) brought: %s", (int)e->from.len, e->from.p, in->domain,
	    fp, why);
	if (in->conn != NULL)
		fed_error(in->conn, req, TERN_EAUTH, why);
}

/* --- as a backup relay: store it for its domain ------------------------ */

struct relay_ctx {
	struct fin *in;
	uint32_t req;
	char domain[IDENT_DOMAIN_MAX + 1]; /* the relayed domain */
};

static void
relay_stored(void *arg, int status, const struct store_result *res)
{
	struct relay_ctx *x = arg;
	struct fin *in = x->in;
	struct fed *f = in->f;

	(void)res;
	if (in->conn != NULL) {
		if (status == 0) {
			struct msg m = {.type = MSG_OK, .req = x->req};
			(void)fed_write(in->conn, &m);
		} else {
			fed_error(in->conn, x->req, status, status ==
			    TERN_EBUSY ? "this relay's queue is full" : NULL);
		}
	}
	if (status == 0 && !f->stopping) {
		f->st.relayed_in_total++;
		/* Sent on when the domain's node can be reached. */
		fed_kick(f, x->domain);
	}
	free(x);
	fin_put(in);
	fed_op_done(f);
}

/*
 * relay_take: a FED_RENV on a link that asked for a domain we relay for.
 * The origin is the link's node and signs with the key it proved, so the
 * signature is checked against that key here, and nothing unsigned or
 * altered is ever stored; then it goes durably into our outbound queue
 * for the domain, the signature with it, before OK.
 */
static void
relay_take(struct fin *in, const struct msg *m)
{
	struct fed *f = in->f;
	const struct msg_fed_renv *re = &m->u.fed_renv;
	const struct msg_fed_env *e = &re->env;
	char d[IDENT_DOMAIN_MAX + 1], to[IDENT_ADDR_MAX + 1];
	char from[IDENT_ADDR_MAX + 1];
	struct store_fed_in q = {0};
	struct relay_ctx *x;
	int r;

	if (addr_domain(&e->from, d, sizeof(d)) == NULL ||
	    strcasecmp(d, in->domain) != 0) {
		/* A relay takes envelopes from their origin only. */
		renv_refuse(in, m->req, e, "sender not in your domain");
		return;
	}
	if (addr_domain(&e->to, d, sizeof(d)) == NULL ||
	    strcmp(d, in->relay_dom) != 0) {
		fed_error(in->conn, m->req, TERN_EUNREACH, "recipient's domain "
		    "is not the one this link is for");
		return;
	}
	if (e->class == MSG_CLASS_EPHEMERAL) {
		fed_error(in->conn, m->req, TERN_EUNREACH, "a relay does not "
		    "hold ephemeral envelopes");
		return;
	}
	if (nodesig_env_verify(in->key, e, re->sig) != 0) {
		renv_refuse(in, m->req, e, "bad origin signature");
		return;
	}
	if (!in_take_token(in, m->req))
		return;
	if ((x = calloc(1, sizeof(*x))) == NULL) {
		fed_error(in->conn, m->req, TERN_ENOMEM, NULL);
		return;
	}
	snprintf(to, sizeof(to), "%.*s", (int)e->to.len, e->to.p);
	snprintf(from, sizeof(from), "%.*s", (int)e->from.len, e->from.p);
	x->in = in;
	x->req = m->req;
	snprintf(x->domain, sizeof(x->domain), "%s", in->relay_dom);
	q.dest_domain = x->domain;
	memcpy(q.env_id, e->id, MSG_ID_LEN);
	q.to_addr = to;
	q.to_device = e->to_device;
	q.cls = e->class;
	q.sender_user = 0;
	q.sender_addr = from;
	q.sender_device = e->from_device;
	q.sent_ms = (int64_t)e->timestamp_ms;
	/* Signed: sent on as the origin gave it. The expiry is ours. */
	q.received_ms = (int64_t)e->received_ms;
	q.expires_ms = (int64_t)(wall_ms() + f->retention_ms);
	q.payload = e->payload.p;
	q.payload_len = e->payload.len;
	q.sig = re->sig;
	if ((r = store_fed_enqueue(f->store, &q, relay_stored, x)) != 0) {
		free(x);
		fed_error(in->conn, m->req, r, NULL);
		return;
	}
	in->refs++;
	f->pending++;
	f->st.received_total++;
}

/* --- as the domain's node: check, then deliver ------------------------- */

static void
renv_pop(struct fin *in)
{
	struct renv_job *j = in->rq_head;

	in->rq_head = j->next;
	if (in->rq_head == NULL)
		in->rq_tail = NULL;
	in->rq_bytes -= j->size;
	free(j);
	fin_put(in);
}

/* renv_done: the head's checks are over: err 0 (deliver it) or a
 * refusal with why; then the next one. */
static void
renv_done(struct fin *in, int err, const char *why)
{
	struct fed *f = in->f;
	struct renv_job *j = in->rq_head;
	struct env_ctx *x;
	int r;

	if (in->conn == NULL || f->stopping) {
		renv_pop(in);
		return;
	}
	if (err != 0) {
		renv_refuse(in, j->req, &j->re.env, why);
		renv_pop(in);
		return;
	}
	if ((x = malloc(sizeof(*x))) == NULL) {
		fed_error(in->conn, j->req, TERN_ENOMEM, NULL);
		renv_pop(in);
		return;
	}
	x->in = in;
	x->req = j->req;
	in->refs++;
	/* The server copies what it keeps before this returns. */
	if ((r = f->hooks.deliver(f->hooks.srv, &j->re.env, in_env_done,
	    x)) != 0) {
		in->refs--;
		free(x);
		fed_error(in->conn, j->req, r, NULL);
	}
	renv_pop(in);
}

/* renv_sig_by: whether the head's signature verifies under one of keys
 * that may speak for its origin domain by the trust rules (13.4). */
static bool
renv_sig_by(struct fin *in, const uint8_t (*keys)[32], size_t n,
    const struct ktrust_dns *dns)
{
	struct fed *f = in->f;
	struct renv_job *j = in->rq_head;
	size_t i;

	for (i = 0; i < n; i++)
		if (nodesig_env_verify(keys[i], &j->re.env, j->re.sig) == 0 &&
		    ktrust_check(f->kt, j->origin, keys[i], dns, NULL, 0) == 0)
			return true;
	return false;
}

static void
renv_keys_cb(void *arg, int err, const uint8_t (*keys)[FDISC_KEY_LEN],
    size_t n, unsigned flags, const char *detail)
{
	struct renv_check *c = arg;
	struct fin *in = c->in;
	struct fed *f = in->f;
	struct ktrust_dns d = {0};
	uint8_t mem[KTRUST_MAX_KEYS][32];
	size_t nm = 0;
	bool ok;

	(void)detail;
	free(c);
	in->rq_busy = false;
	if (f->stopping || err == TERN_ECANCELED || in->conn == NULL) {
		renv_pop(in);
		renv_drain(in); /* the link is gone: drops the rest */
		goto out;
	}
	d.err = err;
	d.keys = keys;
	d.n = n;
	d.stale = (flags & FDISC_STALE) != 0;
	/* The keys DNS lists, then those remembered (which count only
	 * while DNS gives no usable answer: ktrust_check decides). */
	ok = err == 0 && renv_sig_by(in, keys, n, &d);
	if (!ok && store_peer_keys_load(f->store, in->rq_head->origin, mem,
	    KTRUST_MAX_KEYS, &nm) == 0)
		ok = renv_sig_by(in, (const uint8_t (*)[32])mem, nm, &d);
	renv_done(in, ok ? 0 : TERN_EAUTH, "bad origin signature (no key "
	    "that may speak for the sender's domain verifies it)");
	renv_drain(in);
out:
	fin_put(in);
	fed_op_done(f);
}

/* renv_origin_check: the link may relay; now the origin's signature. */
static void
renv_origin_check(struct fin *in)
{
	struct fed *f = in->f;
	struct renv_job *j = in->rq_head;
	const struct fstatic *s = fed_static(f, j->origin);
	struct renv_check *c;

	if (s != NULL && s->pinned) {
		renv_done(in, nodesig_env_verify(s->key, &j->re.env,
		    j->re.sig) == 0 ? 0 : TERN_EAUTH, "bad origin signature "
		    "(not by the key pinned for the sender's domain)");
		return;
	}
	if ((c = malloc(sizeof(*c))) == NULL) {
		renv_done(in, TERN_EAUTH, "out of memory");
		return;
	}
	c->in = in;
	if (fdisc_keys(f->disc, j->origin, renv_keys_cb, c) != 0) {
		free(c);
		renv_done(in, TERN_EAUTH, "cannot look up the sender's "
		    "domain's keys");
		return;
	}
	in->rq_busy = true;
	in->refs++;
	f->pending++;
}

static void
renv_relays_cb(void *arg, int err, const struct fdisc_relay *rl, size_t n,
    unsigned flags, const char *detail)
{
	struct renv_check *c = arg;
	struct fin *in = c->in;
	struct fed *f = in->f;
	bool listed = false;
	size_t i;

	(void)flags;
	(void)detail;
	free(c);
	in->rq_busy = false;
	if (f->stopping || err == TERN_ECANCELED || in->conn == NULL) {
		renv_pop(in);
		renv_drain(in); /* the link is gone: drops the rest */
		goto out;
	}
	for (i = 0; err == 0 && i < n; i++)
		listed |= sodium_memcmp(rl[i].key, in->key, 32) == 0;
	if (listed)
		renv_origin_check(in);
	else
		renv_done(in, TERN_EAUTH, "unauthorized relay (its key is not "
		    "in our TXT _tern-relay record)");
	if (!in->rq_busy)
		renv_drain(in);
out:
	fin_put(in);
	fed_op_done(f);
}

/*
 * renv_drain: checks the queue's head, and the next, in arrival order,
 * until one waits for DNS. The origin itself (from in the link's domain)
 * signs with the key the link proved; anything else must come from one
 * of our authorized backup relays ([federation] relays, else TXT
 * _tern-relay of our domain) and be signed by a key that may speak for
 * the sender's domain.
 */
static void
renv_drain(struct fin *in)
{
	struct fed *f = in->f;
	struct renv_job *j;
	struct renv_check *c;
	size_t i;

	while ((j = in->rq_head) != NULL && !in->rq_busy) {
		if (in->conn == NULL || f->stopping) {
			renv_pop(in);
			continue;
		}
		if (strcmp(j->origin, in->domain) == 0) {
			renv_done(in, nodesig_env_verify(in->key, &j->re.env,
			    j->re.sig) == 0 ? 0 : TERN_EAUTH,
			    "bad origin signature");
			continue;
		}
		if (f->nrelays > 0) {
			bool pinned = false;
			for (i = 0; i < f->nrelays; i++)
				pinned |= sodium_memcmp(f->relays[i].key,
				    in->key, 32) == 0;
			if (!pinned)
				renv_done(in, TERN_EAUTH, "unauthorized relay "
				    "(its key is not in our [federation] "
				    "relays)");
			else
				renv_origin_check(in);
			continue;
		}
		if ((c = malloc(sizeof(*c))) != NULL)
			c->in = in;
		if (c == NULL ||
		    fdisc_relays(f->disc, f->domain, renv_relays_cb, c) != 0) {
			free(c);
			renv_done(in, TERN_EAUTH, "cannot look up our relays");
			continue;
		}
		in->rq_busy = true;
		in->refs++;
		f->pending++;
	}
}

/* in_renv: a FED_RENV (13.5). */
static int
in_renv(struct fin *in, const struct msg *m)
{
	struct fed *f = in->f;
	const struct msg_fed_env *e = &m->u.fed_renv.env;
	char d[IDENT_DOMAIN_MAX + 1];
	struct renv_job *j;
	size_t size;
	uint8_t *cur;

	if (in->relay_dom[0] != '\0') {
		relay_take(in, m);
		return 0;
	}
	if (addr_domain(&e->to, d, sizeof(d)) == NULL ||
	    strcasecmp(d, f->domain) != 0) {
		fed_error(in->conn, m->req, TERN_EUNREACH, "recipient's domain "
		    "is not served here");
		return 0;
	}
	if (addr_domain(&e->from, d, sizeof(d)) == NULL ||
	    strcasecmp(d, f->domain) == 0) {
		renv_refuse(in, m->req, e, "sender in our own domain");
		return 0;
	}
	size = sizeof(*j) + e->from.len + e->to.len + e->payload.len;
	if (in->rq_bytes + size > FED_RENV_HELD_MAX) {
		fed_error(in->conn, m->req, TERN_EBUSY, "too many signed "
		    "envelopes waiting for their checks; slow down");
		return 0;
	}
	if (!in_take_token(in, m->req))
		return 0;
	if ((j = calloc(1, size)) == NULL) {
		fed_error(in->conn, m->req, TERN_ENOMEM, NULL);
		return 0;
	}
	j->req = m->req;
	j->size = size;
	j->re = m->u.fed_renv;
	lower(d);
	snprintf(j->origin, sizeof(j->origin), "%s", d);
	cur = j->data;
	memcpy(cur, e->from.p, e->from.len);
	j->re.env.from.p = (const char *)cur;
	cur += e->from.len;
	memcpy(cur, e->to.p, e->to.len);
	j->re.env.to.p = (const char *)cur;
	cur += e->to.len;
	if (e->payload.len > 0)
		memcpy(cur, e->payload.p, e->payload.len);
	j->re.env.payload.p = cur;
	if (in->rq_tail != NULL)
		in->rq_tail->next = j;
	else
		in->rq_head = j;
	in->rq_tail = j;
	in->rq_bytes += size;
	in->refs++; /* the job's */
	f->st.received_total++;
	renv_drain(in);
	return 0;
}

static int
in_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct fconn *fc = net_conn_data(c);
	struct fin *in = fc->in;
	struct msg m;
	uint8_t type;
	uint32_t req;
	int r;

	if (in == NULL)
		return TERN_ESTATE;
	if ((r = msg_decode(buf, len, &m)) != 0) {
		if (msg_peek_header(buf, len, &type, &req) == 0 &&
		    type != MSG_ERROR)
			fed_error(c, req, r, NULL);
		return r == TERN_ETYPE ? 0 : r;
	}
	if (m.type == MSG_PING) {
		struct msg pong = {.type = MSG_PONG, .req = m.req};
		pong.u.pong.nonce = m.u.ping.nonce;
		(void)fed_write(c, &pong);
		return 0;
	}
	if (m.type == MSG_FED_HELLO)
		return in_hello(in, &m);
	if (!in->up) {
		fed_error(c, m.req, TERN_EAUTH, "hello first");
		return 0;
	}
	if (in->relay_dom[0] != '\0' && m.type != MSG_FED_RENV &&
	    m.type != MSG_ERROR && m.type != MSG_PONG) {
		/* Asked for a domain we only relay for: we hold signed
		 * envelopes for it and nothing else (13.5). */
		fed_error(c, m.req, TERN_EUNREACH, "this node is only a backup "
		    "relay for that domain: it takes FED_RENV only");
		return 0;
	}
	switch (m.type) {
	case MSG_FED_RENV:
		return in_renv(in, &m);
	case MSG_FED_ENV:
		return in_env(in, &m);
	case MSG_FED_REQ:
		return in_req(in, &m);
	case MSG_FED_PRESENCE:
		in_presence(in, &m);
		return 0;
	case MSG_ERROR:
	case MSG_PONG:
		return 0;
	default:
		fed_error(c, m.req, TERN_ETYPE, "not on a federation link");
		return 0;
	}
}

static void
in_closed(struct net_conn *c, int err)
{
	struct fconn *fc = net_conn_data(c);
	struct fin *in = fc->in;

	if (in == NULL)
		return;
	fin_unlink(in);
	fc->in = NULL;
	renv_drain(in); /* FED_RENV not yet checked: dropped, sent again */
	fin_put(in);
}

static const struct net_conn_cbs in_cbs = {
	.open = in_open,
	.message = in_message,
	.closed = in_closed,
};

/* --- start, stop -------------------------------------------------------- */

static void
tick_cb(uv_timer_t *t)
{
	struct fed *f = t->data;
	struct peer *p;

	for (p = f->peers; p != NULL; p = p->next)
		peer_fail_fwds(p, TERN_ETIMEOUT, true);
}

static void
domains_cb(void *arg, int status, const struct store_result *res)
{
	struct fed *f = arg;
	size_t i;

	if (f->stopping) {
		fed_op_done(f);
		return;
	}
	fed_op_done(f);
	if (status != 0) {
		log_warn("federation: reading the outbound queues: %s",
		    tern_strerror(status));
		return;
	}
	for (i = 0; i < res->n_fed_domains; i++) {
		log_info("federation: %llu envelopes queued for %s",
		    (unsigned long long)res->fed_domains[i].count,
		    res->fed_domains[i].domain);
		fed_kick(f, res->fed_domains[i].domain);
	}
	if (res->more && res->n_fed_domains > 0 &&
	    store_fed_domains(f->store,
	    res->fed_domains[res->n_fed_domains - 1].domain, domains_cb,
	    f) == 0)
		f->pending++;
}

static int
ks_load(void *ctx, const char *domain, uint8_t (*keys)[KTRUST_KEY_LEN],
    size_t cap, size_t *n)
{
	struct fed *f = ctx;

	return store_peer_keys_load(f->store, domain, keys, cap, n);
}

static int
ks_save(void *ctx, const char *domain, const uint8_t key[KTRUST_KEY_LEN])
{
	struct fed *f = ctx;

	/* Committed a moment later; a check in between still has the key
	 * in DNS, which is why it is being remembered. */
	return store_peer_key_save(f->store, domain, key, (int64_t)wall_ms(),
	    NULL, NULL);
}

/* fed_hello_relay: a link to one of our backup relays' domains: its
 * FED_HELLO tells it we are up (13.5). */
static void
fed_hello_relay(struct fed *f, const char *domain)
{
	struct peer *p;

	if (strcmp(domain, f->domain) == 0 ||
	    (p = peer_find(f, domain, true)) == NULL)
		return;
	peer_connect(p);
}

static void
start_relays_cb(void *arg, int err, const struct fdisc_relay *rl, size_t n,
    unsigned flags, const char *detail)
{
	struct fed *f = arg;
	size_t i;

	(void)flags;
	(void)detail;
	if (!f->stopping && err == 0)
		for (i = 0; i < n; i++)
			fed_hello_relay(f, rl[i].domain);
	fed_op_done(f);
}

int
fed_start(uv_loop_t *loop, struct net_loop *nl, struct store *store,
    const struct fed_config *cfg, const struct fed_hooks *hooks,
    struct fed **out)
{
	char host[DNS_ADDR_MAX];
	const char *colon;
	unsigned long port;
	char *end;
	struct fed *f;
	struct dns_config dc = {0};
	struct ktrust_config kc = {0};
	int r;

	*out = NULL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return TERN_ENOMEM;
	f->loop = loop;
	f->nl = nl;
	f->store = store;
	f->hooks = *hooks;
	snprintf(f->domain, sizeof(f->domain), "%s", cfg->domain);
	memcpy(f->priv, cfg->priv, 32);
	f->retention_ms = cfg->retention_ms != 0 ? cfg->retention_ms :
	    7ull * 24 * 3600 * 1000;
	f->in_rate = cfg->inbound_rate != 0 ? cfg->inbound_rate : FED_IN_RATE;
	f->in_burst = cfg->inbound_burst != 0 ? cfg->inbound_burst :
	    FED_IN_BURST;
	if (crypto_scalarmult_curve25519_base(f->pub, f->priv) != 0) {
		r = TERN_EKEY;
		goto fail;
	}
	if ((r = fed_parse_peers(f, cfg->peers)) != 0 ||
	    (r = fed_parse_relay_for(f, cfg->relay_for)) != 0 ||
	    (r = fed_parse_relays(f, cfg->relays)) != 0)
		goto fail;
	colon = strrchr(cfg->listen, ':');
	if (colon == NULL || (size_t)(colon - cfg->listen) >= sizeof(host)) {
		log_error("[federation] listen: want HOST:PORT, not '%s'",
		    cfg->listen);
		r = TERN_ECONFIG;
		goto fail;
	}
	memcpy(host, cfg->listen, (size_t)(colon - cfg->listen));
	host[colon - cfg->listen] = '\0';
	if (host[0] == '[' && strlen(host) > 2) {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port > 65535) {
		log_error("[federation] listen: bad port in '%s'", cfg->listen);
		r = TERN_ECONFIG;
		goto fail;
	}
	dc.nameserver = cfg->dns_servers != NULL &&
	    strcmp(cfg->dns_servers, "system") != 0 ? cfg->dns_servers : NULL;
	dc.timeout_ms = cfg->dns_timeout_ms;
	if ((r = dns_new(loop, &dc, &f->dns)) != 0) {
		log_error("[federation] dns_servers: %s", tern_strerror(r));
		goto fail;
	}
	if ((r = fdisc_new(loop, f->dns, NULL, &f->disc)) != 0)
		goto fail_dns;
	/* Remembered keys live in the node's store: a restart keeps them
	 * (SPEC.md 13.4). */
	kc.store.load = ks_load;
	kc.store.save = ks_save;
	kc.store.ctx = f;
	if ((r = ktrust_new(&kc, &f->kt)) != 0)
		goto fail_disc;
	r = net_listen(nl, host, (uint16_t)port, CHAN_KIND_FEDERATION, f->priv,
	    MSG_MAX_UNAUTH, &in_cbs, sizeof(struct fconn), f, &f->lis);
	if (r != 0) {
		log_error("federation: cannot listen on %s: %s", cfg->listen,
		    tern_strerror(r));
		goto fail_kt;
	}
	if (uv_timer_init(loop, &f->tick) != 0) {
		net_listener_close(f->lis);
		r = TERN_EIO;
		goto fail_kt;
	}
	f->tick.data = f;
	f->handles = 1;
	(void)uv_timer_init(loop, &f->hold); /* cannot fail on a live loop */
	f->hold.data = f;
	f->handles++;
	crypto_shorthash_keygen(f->skip_key);
	(void)uv_timer_start(&f->tick, tick_cb, 1000, 1000);
	if (store_fed_domains(store, NULL, domains_cb, f) == 0)
		f->pending++;
	/* Say hello to the static peers: a node that was down tells its
	 * partners it is back, so they send what they hold at once. */
	{
		size_t i;
		for (i = 0; i < f->nstat; i++) {
			struct peer *p = peer_find(f, f->stat[i].domain, true);
			if (p != NULL)
				peer_connect(p);
		}
	}
	/* And to our backup relays, so that they hand over what they hold
	 * for us now (13.5). */
	if (f->nrelays > 0) {
		size_t i;
		for (i = 0; i < f->nrelays; i++)
			fed_hello_relay(f, f->relays[i].domain);
	} else if (fdisc_relays(f->disc, f->domain, start_relays_cb, f) ==
	    0) {
		f->pending++;
	}
	if (f->nrelay_for > 0)
		log_info("federation: a backup relay for %zu domain(s), "
		    "first %s", f->nrelay_for, f->relay_for[0]);
	log_info("federation: %s on %s:%u, %zu static routes", f->domain,
	    host, net_listener_port(f->lis), f->nstat);
	*out = f;
	return 0;
fail_kt:
	ktrust_free(f->kt);
fail_disc:
	fdisc_close(f->disc, NULL, NULL);
fail_dns:
	dns_close(f->dns, NULL, NULL);
fail:
	sodium_memzero(f->priv, sizeof(f->priv));
	free(f);
	return r;
}

uint16_t
fed_port(const struct fed *f)
{
	return net_listener_port(f->lis);
}

void
fed_stats(const struct fed *f, struct fed_stats *out)
{
	*out = f->st;
}

static void
fed_op_done(struct fed *f)
{
	f->pending--;
	fed_maybe_freed(f);
}

static void
fed_handle_closed(uv_handle_t *h)
{
	struct fed *f = h->data;

	f->handles--;
	fed_maybe_freed(f);
}

static void
fed_disc_closed(void *arg)
{
	struct fed *f = arg;

	f->handles--;
	fed_maybe_freed(f);
}

static void
fed_maybe_freed(struct fed *f)
{
	struct peer *p;

	if (!f->stopping || f->pending > 0 || f->handles > 0)
		return;
	while ((p = f->peers) != NULL) {
		f->peers = p->next;
		ready_drop(p);
		free(p->done);
		free(p->skip);
		free(p->infl);
		free(p);
	}
	ktrust_free(f->kt);
	sodium_memzero(f->priv, sizeof(f->priv));
	if (f->stop_cb != NULL)
		f->stop_cb(f->stop_arg);
	free(f);
}

static void
fed_dns_closed(void *arg)
{
	struct fed *f = arg;

	f->handles--;
	fed_maybe_freed(f);
}

void
fed_stop(struct fed *f, void (*cb)(void *), void *arg)
{
	struct peer *p, *next;

	if (f->stopping)
		return;
	f->stopping = true;
	f->stop_cb = cb;
	f->stop_arg = arg;
	f->handles++; /* held while we close things below */
	net_listener_close(f->lis);
	/* Connections close after we are gone: detach them first, so
	 * their callbacks find nothing of ours. */
	while (f->fins != NULL) {
		struct fin *in = f->fins;
		struct net_conn *c = in->conn;
		((struct fconn *)net_conn_data(c))->in = NULL;
		fin_unlink(in);
		net_conn_close(c, TERN_ECLOSED);
		renv_drain(in);
		fin_put(in);
	}
	for (p = f->peers; p != NULL; p = next) {
		size_t k;
		next = p->next;
		/* The server's write-back contexts outlive us: let go. */
		while (p->wait_head != NULL) {
			struct fed_wb *w = p->wait_head;
			wait_unlink(p, w);
			w->peer = NULL;
		}
		for (k = 0; k < p->ninfl; k++) {
			struct infl *x = infl_at(p, k);
			if (x->wb != NULL) {
				struct fed_wb *w = x->wb;
				w->state = FWB_LOST;
				w->peer = NULL;
				x->wb = NULL;
				if (w->held) {
					/* Stored now: sent after a restart. */
					hold_unlink(f, w);
					w->submit(w);
				}
			}
		}
		peer_fail_fwds(p, TERN_ECLOSED, false);
		if (p->conn != NULL) {
			((struct fconn *)net_conn_data(p->conn))->p = NULL;
			net_conn_close(p->conn, TERN_ECLOSED);
			p->conn = NULL;
		}
		uv_timer_stop(&p->timer);
		uv_close((uv_handle_t *)&p->timer, peer_timer_closed);
	}
	uv_close((uv_handle_t *)&f->tick, fed_handle_closed);
	uv_close((uv_handle_t *)&f->hold, fed_handle_closed);
	f->handles += 2;
	fdisc_close(f->disc, fed_disc_closed, f);
	dns_close(f->dns, fed_dns_closed, f);
	f->handles--;
	fed_maybe_freed(f);
}
