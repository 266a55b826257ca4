/*
 * discover.c: federation discovery and its cache (see discover.h).
 *
 * Requests never run against the cache inside fdisc_lookup: they go to a
 * ready list that a zero timer drains on the next loop turn, so a cache
 * hit keeps the "never synchronously" rule without a second code path.
 * There a request is answered from its domain's slot, or waits on it
 * while the one query for that slot is out (coalescing).
 *
 * Lifetimes. A query (struct fdisc_query) names its domain rather than
 * pointing at the cache entry, and entries with a query out or requests
 * waiting are never evicted, so the answer always finds its entry.
 * fdisc_close cancels requests at once but frees the cache only in the
 * timer's close callback, so a callback that closes the fdisc while
 * borrowed answers are being handed out does not free them under us;
 * the struct itself goes when the last query has come back too.
 */
#include "discover.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define FDISC_NAME_CAP (DNS_NAME_MAX + 1) /* a domain and its NUL */
_Static_assert(FDISC_NAME_CAP == FDISC_DOMAIN_CAP, "one domain size");

enum fdisc_what {
	FDISC_TARGETS = 0, /* fdisc_lookup */
	FDISC_KEYS = 1,    /* fdisc_keys */
	FDISC_RELAYS = 2,  /* fdisc_relays */
	FDISC_NWHAT = 3    /* slots per entry */
};

enum fdisc_state {
	FDISC_EMPTY = 0, /* never answered */
	FDISC_POS,       /* data holds the answer */
	FDISC_NEG        /* the domain has none: neg_err */
};

struct fdisc_req {
	enum fdisc_what what;          /* which callback */
	char domain[FDISC_NAME_CAP];   /* lowercase, no final dot */
	fdisc_lookup_cb lcb;           /* FDISC_TARGETS */
	fdisc_keys_cb kcb;             /* FDISC_KEYS */
	fdisc_relays_cb rcb;           /* FDISC_RELAYS */
	void *arg;                     /* the caller's */
	struct fdisc_req *next;        /* in the ready list or a slot */
};

/* What is known about one question (targets or keys) of one domain. */
struct fdisc_slot {
	enum fdisc_state state;     /* what data and neg_err mean */
	int neg_err;                /* FDISC_NEG: ENOTFOUND or ENOSERVICE */
	uint64_t expires;           /* POS, NEG: fresh until (ms) */
	uint64_t retry_at;          /* after a failure: no query before */
	int fail_err;               /* the last failure */
	unsigned flags;             /* POS: FDISC_FROM_SRV / FDISC_FALLBACK */
	size_t n;                   /* POS: entries in data */
	void *data;                 /* dns_target[n], uint8_t[n][32] or
	                               fdisc_relay[n] */
	bool inflight;              /* a query is out */
	struct fdisc_req *waiters;  /* answered when it comes back */
	char detail[DNS_DETAIL_MAX]; /* from the last DNS answer */
};

struct fdisc_entry {
	char domain[FDISC_NAME_CAP];       /* the key */
	struct fdisc_slot slot[FDISC_NWHAT]; /* by enum fdisc_what */
	struct fdisc_entry *hnext;         /* bucket chain */
	struct fdisc_entry *prev, *next;   /* LRU list, newest first */
};

/* One DNS question out; comes back to fdisc_answered. */
struct fdisc_query {
	struct fdisc *d;               /* owner */
	enum fdisc_what what;          /* which slot */
	char domain[FDISC_NAME_CAP];   /* which entry */
};

struct fdisc {
	uv_loop_t *loop;               /* the loop */
	struct dns *dns;               /* borrowed resolver */
	struct fdisc_config cfg;       /* with defaults filled in */
	uv_timer_t ready_timer;        /* drains ready on the next turn */
	struct fdisc_req *ready;       /* requests not yet looked at */
	struct fdisc_req *ready_tail;  /* append point */
	struct fdisc_entry **buckets;  /* hash table of entries */
	size_t nbuckets;               /* a power of two */
	size_t nentries;               /* entries in the table */
	struct fdisc_entry *lru_head;  /* most recently used */
	struct fdisc_entry *lru_tail;  /* evicted first */
	uint64_t queries;              /* DNS queries started */
	uint32_t inflight;             /* queries not yet come back */
	bool closing;                  /* fdisc_close ran */
	bool timer_closed;             /* the timer's close cb ran */
	fdisc_close_cb close_cb;       /* run when all is released */
	void *close_arg;               /* its argument */
};

static void fdisc_start(struct fdisc *d, struct fdisc_entry *e,
    enum fdisc_what what);

/* --- time, names, cache ------------------------------------------------ */

static uint64_t
fdisc_now(const struct fdisc *d)
{
	if (d->cfg.now_ms)
		return d->cfg.now_ms(d->cfg.now_arg);
	return uv_now(d->loop);
}

/* fdisc_norm: domain in lowercase without a final dot, checked the way
 * net/dns.c checks names, so that one cache key means one DNS name. */
static int
fdisc_norm(const char *in, char out[FDISC_NAME_CAP])
{
	size_t len, label = 0;

	if (!in)
		return TERN_EINVAL;
	len = strlen(in);
	if (len > 1 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return TERN_EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c == '.') {
			if (label == 0)
				return TERN_EINVAL;
			label = 0;
		} else if (isalnum(c) || c == '-' || c == '_') {
			if (++label > DNS_LABEL_MAX)
				return TERN_EINVAL;
		} else {
			return TERN_EINVAL;
		}
		out[i] = (char)tolower(c);
	}
	if (label == 0)
		return TERN_EINVAL;
	out[len] = '\0';
	return 0;
}

/* FNV-1a: the keys are DNS names, not chosen to collide (and a chain of
 * collisions costs only time, bounded by max_domains). */
static size_t
fdisc_hash(const struct fdisc *d, const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h & (d->nbuckets - 1);
}

static void
fdisc_lru_unlink(struct fdisc *d, struct fdisc_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		d->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		d->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void
fdisc_lru_front(struct fdisc *d, struct fdisc_entry *e)
{
	e->next = d->lru_head;
	e->prev = NULL;
	if (d->lru_head)
		d->lru_head->prev = e;
	d->lru_head = e;
	if (!d->lru_tail)
		d->lru_tail = e;
}

static struct fdisc_entry *
fdisc_find(struct fdisc *d, const char *domain)
{
	struct fdisc_entry *e = d->buckets[fdisc_hash(d, domain)];

	while (e && strcmp(e->domain, domain) != 0)
		e = e->hnext;
	return e;
}

static bool
fdisc_busy(const struct fdisc_entry *e)
{
	for (int i = 0; i < FDISC_NWHAT; i++)
		if (e->slot[i].inflight || e->slot[i].waiters)
			return true;
	return false;
}

static void
fdisc_entry_free(struct fdisc *d, struct fdisc_entry *e)
{
	struct fdisc_entry **pp = &d->buckets[fdisc_hash(d, e->domain)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	fdisc_lru_unlink(d, e);
	for (int i = 0; i < FDISC_NWHAT; i++)
		free(e->slot[i].data);
	free(e);
	d->nentries--;
}

/* fdisc_entry_get: domain's entry, made if new, now the most recent.
 * Over the cap the least recently used idle entries go; busy ones stay
 * (the cap may be passed by the number of lookups in progress). */
static struct fdisc_entry *
fdisc_entry_get(struct fdisc *d, const char *domain)
{
	struct fdisc_entry *e = fdisc_find(d, domain), *v;
	size_t h;

	if (e) {
		fdisc_lru_unlink(d, e);
		fdisc_lru_front(d, e);
		return e;
	}
	for (v = d->lru_tail; v && d->nentries >= d->cfg.max_domains;) {
		struct fdisc_entry *p = v->prev;

		if (!fdisc_busy(v))
			fdisc_entry_free(d, v);
		v = p;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	memcpy(e->domain, domain, strlen(domain) + 1);
	h = fdisc_hash(d, domain);
	e->hnext = d->buckets[h];
	d->buckets[h] = e;
	fdisc_lru_front(d, e);
	d->nentries++;
	return e;
}

/* --- answering ----------------------------------------------------------- */

static void
fdisc_call(struct fdisc_req *r, int err, const void *data, size_t n,
    unsigned flags, const char *detail)
{
	if (err) {
		data = NULL;
		n = 0;
		flags = 0;
	}
	if (r->what == FDISC_TARGETS)
		r->lcb(r->arg, err, data, n, flags, detail);
	else if (r->what == FDISC_KEYS)
		r->kcb(r->arg, err, data, n, flags, detail);
	else
		r->rcb(r->arg, err, data, n, flags, detail);
	free(r);
}

/* fdisc_fresh: whether s answers without asking DNS now. */
static bool
fdisc_fresh(const struct fdisc *d, const struct fdisc_slot *s, uint64_t now)
{
	if ((s->state == FDISC_POS || s->state == FDISC_NEG) &&
	    now < s->expires)
		return true;
	/* DNS failed a moment ago: answer from what is known (stale or
	 * the failure) rather than ask again at once. */
	return s->retry_at && now < s->retry_at;
}

/* fdisc_serve: answers r from s: fresh, negative, stale, or the last
 * failure, in that order of preference. */
static void
fdisc_serve(struct fdisc *d, struct fdisc_req *r, struct fdisc_slot *s,
    uint64_t now)
{
	uint64_t stale_ms = (uint64_t)d->cfg.stale_max_s * 1000;

	if (d->closing) {
		fdisc_call(r, TERN_ECANCELED, NULL, 0, 0,
		    "federation discovery closed");
	} else if (s->state == FDISC_POS && now < s->expires) {
		fdisc_call(r, 0, s->data, s->n, s->flags, s->detail);
	} else if (s->state == FDISC_NEG && now < s->expires) {
		fdisc_call(r, s->neg_err, NULL, 0, 0, s->detail);
	} else if (s->state == FDISC_POS && now < s->expires + stale_ms) {
		fdisc_call(r, 0, s->data, s->n, s->flags | FDISC_STALE,
		    s->detail);
	} else {
		fdisc_call(r, s->fail_err ? s->fail_err : TERN_EUNREACH, NULL,
		    0, 0, s->detail);
	}
}

/* fdisc_resolve: one request from the ready list. */
static void
fdisc_resolve(struct fdisc *d, struct fdisc_req *r)
{
	struct fdisc_entry *e = fdisc_entry_get(d, r->domain);
	struct fdisc_slot *s;
	uint64_t now = fdisc_now(d);

	if (!e) {
		fdisc_call(r, TERN_ENOMEM, NULL, 0, 0, "out of memory");
		return;
	}
	s = &e->slot[r->what];
	if (!s->inflight && fdisc_fresh(d, s, now)) {
		fdisc_serve(d, r, s, now);
		return;
	}
	r->next = s->waiters;
	s->waiters = r;
	if (!s->inflight)
		fdisc_start(d, e, r->what);
}

static void
fdisc_ready_cb(uv_timer_t *t)
{
	struct fdisc *d = t->data;
	struct fdisc_req *r = d->ready;

	d->ready = d->ready_tail = NULL;
	while (r) {
		struct fdisc_req *next = r->next;

		if (d->closing)
			fdisc_call(r, TERN_ECANCELED, NULL, 0, 0,
			    "federation discovery closed");
		else
			fdisc_resolve(d, r);
		r = next;
	}
}

static void
fdisc_release_maybe(struct fdisc *d)
{
	fdisc_close_cb cb;
	void *arg;

	if (!d->closing || !d->timer_closed || d->inflight > 0)
		return;
	cb = d->close_cb;
	arg = d->close_arg;
	free(d->buckets);
	free(d);
	if (cb)
		cb(arg);
}

/*
 * fdisc_answered: a query is back: update the slot, then answer every
 * request waiting on it. The waiters are detached first, so a callback
 * that asks again queues a new request instead of joining this answer.
 */
static void
fdisc_answered(struct fdisc_query *q, int err, void *data, size_t n,
    unsigned flags, uint32_t ttl, const char *detail)
{
	struct fdisc *d = q->d;
	enum fdisc_what what = q->what;
	struct fdisc_entry *e;
	struct fdisc_slot *s;
	struct fdisc_req *w;
	uint64_t now;

	d->inflight--;
	e = d->closing ? NULL : fdisc_find(d, q->domain);
	free(q);
	if (!e) {
		/* Closing (or, impossibly, evicted: busy entries stay). */
		free(data);
		fdisc_release_maybe(d);
		return;
	}
	s = &e->slot[what];
	now = fdisc_now(d);
	s->inflight = false;
	snprintf(s->detail, sizeof(s->detail), "%s", detail);
	if (err == 0) {
		if (ttl < d->cfg.ttl_min_s)
			ttl = d->cfg.ttl_min_s;
		if (ttl > d->cfg.ttl_max_s)
			ttl = d->cfg.ttl_max_s;
		free(s->data);
		s->data = data;
		s->n = n;
		s->flags = flags;
		s->state = FDISC_POS;
		s->expires = now + (uint64_t)ttl * 1000;
		s->retry_at = 0;
		s->fail_err = 0;
	} else if (err == TERN_ENOTFOUND || err == TERN_ENOSERVICE) {
		/* The domain said so: forget what it said before. */
		free(s->data);
		free(data);
		s->data = NULL;
		s->n = 0;
		s->state = FDISC_NEG;
		s->neg_err = err;
		s->expires = now + (uint64_t)d->cfg.neg_ttl_s * 1000;
		s->retry_at = 0;
		s->fail_err = 0;
	} else {
		free(data);
		if (err != TERN_ECANCELED && err != TERN_ENOMEM)
			s->retry_at = now + (uint64_t)d->cfg.fail_ttl_s * 1000;
		s->fail_err = err;
	}
	w = s->waiters;
	s->waiters = NULL;
	while (w) {
		struct fdisc_req *next = w->next;

		if (err == TERN_ECANCELED || err == TERN_ENOMEM)
			fdisc_call(w, err, NULL, 0, 0, s->detail);
		else
			fdisc_serve(d, w, s, now);
		w = next;
	}
}

/* --- the questions ------------------------------------------------------- */

static void
fdisc_addrs_cb(void *arg, int err, const struct dns_addr *a, size_t n,
    const char *detail)
{
	struct fdisc_query *q = arg;
	struct dns_target *t = NULL;
	uint32_t ttl = UINT32_MAX;

	if (err == 0) {
		t = calloc(n, sizeof(*t));
		if (!t)
			err = TERN_ENOMEM;
	}
	for (size_t i = 0; err == 0 && i < n; i++) {
		snprintf(t[i].host, sizeof(t[i].host), "%s", q->domain);
		t[i].port = q->d->cfg.default_port;
		memcpy(t[i].addr, a[i].addr, sizeof(t[i].addr));
		t[i].ttl = a[i].ttl;
		if (a[i].ttl < ttl)
			ttl = a[i].ttl;
	}
	if (err == TERN_ENOTFOUND)
		detail = "no SRV record and no A/AAAA record";
	fdisc_answered(q, err, t, err ? 0 : n, FDISC_FALLBACK, ttl, detail);
}

static void
fdisc_srv_cb(void *arg, int err, const struct dns_target *t, size_t n,
    const char *detail)
{
	struct fdisc_query *q = arg;
	struct dns_target *copy = NULL;
	uint32_t ttl = UINT32_MAX;
	int r;

	if (err == TERN_ENOTFOUND && !q->d->closing) {
		/* No SRV: the domain's own addresses, on the default port. */
		q->d->queries++;
		r = dns_addrs(q->d->dns, q->domain, fdisc_addrs_cb, q);
		if (r == 0)
			return;
		err = r;
		detail = "cannot ask for the domain's addresses";
	}
	if (err == 0) {
		copy = malloc(n * sizeof(*copy));
		if (!copy)
			err = TERN_ENOMEM;
		else
			memcpy(copy, t, n * sizeof(*copy));
	}
	for (size_t i = 0; err == 0 && i < n; i++)
		if (t[i].ttl < ttl)
			ttl = t[i].ttl;
	fdisc_answered(q, err, copy, err ? 0 : n, FDISC_FROM_SRV, ttl, detail);
}

static void
fdisc_txt_cb(void *arg, int err, const struct dns_txt_rec *recs, size_t n,
    uint32_t ttl, const char *detail)
{
	struct fdisc_query *q = arg;
	uint8_t (*keys)[FDISC_KEY_LEN] = NULL;
	size_t nk = 0, bad = 0;
	char text[DNS_DETAIL_MAX + 320]; /* room for the name */

	if (err == 0) {
		keys = calloc(FDISC_MAX_KEYS, FDISC_KEY_LEN);
		if (!keys)
			err = TERN_ENOMEM;
	}
	for (size_t i = 0; err == 0 && i < n; i++) {
		uint8_t k[FDISC_KEY_LEN];
		bool dup = false;

		if (fdisc_key_parse(recs[i].text, recs[i].len, k) != 0) {
			bad++;
			continue;
		}
		for (size_t j = 0; j < nk && !dup; j++)
			dup = memcmp(keys[j], k, FDISC_KEY_LEN) == 0;
		if (!dup && nk < FDISC_MAX_KEYS)
			memcpy(keys[nk++], k, FDISC_KEY_LEN);
	}
	if (err == 0) {
		snprintf(text, sizeof(text), "%zu key(s) in %zu TXT record(s) "
		    "of %s.%s, %zu not a key record", nk, n, FDISC_KEY_LABEL,
		    q->domain, bad);
		detail = text;
		if (nk == 0)
			err = TERN_ENOTFOUND;
	}
	if (err) {
		free(keys);
		keys = NULL;
		nk = 0;
	}
	fdisc_answered(q, err, keys, nk, 0, ttl, detail);
}

static void
fdisc_relay_txt_cb(void *arg, int err, const struct dns_txt_rec *recs,
    size_t n, uint32_t ttl, const char *detail)
{
	struct fdisc_query *q = arg;
	struct fdisc_relay *rl = NULL;
	size_t nr = 0, bad = 0;
	char text[DNS_DETAIL_MAX + 320]; /* room for the name */

	if (err == 0) {
		rl = calloc(FDISC_MAX_RELAYS, sizeof(*rl));
		if (!rl)
			err = TERN_ENOMEM;
	}
	for (size_t i = 0; err == 0 && i < n; i++) {
		struct fdisc_relay x;
		bool dup = false;

		if (fdisc_relay_parse(recs[i].text, recs[i].len, &x) != 0) {
			bad++;
			continue;
		}
		for (size_t j = 0; j < nr && !dup; j++)
			dup = memcmp(rl[j].key, x.key, FDISC_KEY_LEN) == 0;
		if (!dup && nr < FDISC_MAX_RELAYS)
			rl[nr++] = x;
	}
	if (err == 0) {
		snprintf(text, sizeof(text), "%zu relay(s) in %zu TXT "
		    "record(s) of %s.%s, %zu not a relay record", nr, n,
		    FDISC_RELAY_LABEL, q->domain, bad);
		detail = text;
		if (nr == 0)
			err = TERN_ENOTFOUND;
	}
	if (err) {
		free(rl);
		rl = NULL;
		nr = 0;
	}
	fdisc_answered(q, err, rl, nr, 0, ttl, detail);
}

/* fdisc_start: sends the question for e's slot what. */
static void
fdisc_start(struct fdisc *d, struct fdisc_entry *e, enum fdisc_what what)
{
	struct fdisc_slot *s = &e->slot[what];
	struct fdisc_query *q = calloc(1, sizeof(*q));
	char name[DNS_NAME_MAX + 16];
	int r;

	s->inflight = true;
	d->inflight++;
	if (!q) {
		s->inflight = false;
		d->inflight--;
		r = TERN_ENOMEM;
		goto fail;
	}
	q->d = d;
	q->what = what;
	memcpy(q->domain, e->domain, sizeof(q->domain));
	d->queries++;
	if (what == FDISC_TARGETS) {
		r = dns_srv(d->dns, FDISC_SERVICE, e->domain, fdisc_srv_cb, q);
	} else if (what == FDISC_KEYS) {
		snprintf(name, sizeof(name), "%s.%s", FDISC_KEY_LABEL,
		    e->domain);
		r = dns_txt(d->dns, name, fdisc_txt_cb, q);
	} else {
		snprintf(name, sizeof(name), "%s.%s", FDISC_RELAY_LABEL,
		    e->domain);
		r = dns_txt(d->dns, name, fdisc_relay_txt_cb, q);
	}
	if (r == 0)
		return;
	/* The answer comes now, through the same path as a late one. */
	fdisc_answered(q, r, NULL, 0, 0, 0, "the DNS query could not start");
	return;
fail:
	while (s->waiters) {
		struct fdisc_req *w = s->waiters;

		s->waiters = w->next;
		fdisc_call(w, r, NULL, 0, 0, "out of memory");
	}
}

/* --- key records ------------------------------------------------------- */

int
fdisc_key_parse(const char *text, size_t len, uint8_t key[FDISC_KEY_LEN])
{
	size_t i = 0, ntok = 0, nk = 0;
	uint8_t k[FDISC_KEY_LEN];

	while (i < len) {
		size_t start, tlen;
		const char *tok, *eq;

		while (i < len && text[i] == ' ')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && text[i] != ' ')
			i++;
		tok = text + start;
		tlen = i - start;
		ntok++;
		if (ntok == 1) {
			if (tlen == strlen(FDISC_KEY_VERSION) &&
			    memcmp(tok, FDISC_KEY_VERSION, tlen) == 0)
				continue;
			return tlen > 2 && memcmp(tok, "v=", 2) == 0 ?
			    TERN_EVERSION : TERN_EFIELD;
		}
		eq = memchr(tok, '=', tlen);
		if (!eq || eq == tok)
			return TERN_EFIELD;
		if (eq - tok != 1 || tok[0] != 'k')
			continue; /* a later field: ignored */
		{
			size_t bin_len = 0;
			const char *end = NULL;

			if (++nk > 1 || tlen - 2 != FDISC_KEY_B64_LEN ||
			    sodium_base642bin(k, sizeof(k), tok + 2, tlen - 2,
			    NULL, &bin_len, &end,
			    sodium_base64_VARIANT_ORIGINAL) != 0 ||
			    bin_len != FDISC_KEY_LEN || end != tok + tlen)
				return TERN_EFIELD;
		}
	}
	if (ntok == 0 || nk != 1)
		return TERN_EFIELD;
	memcpy(key, k, FDISC_KEY_LEN);
	return 0;
}

int
fdisc_key_format(const uint8_t key[FDISC_KEY_LEN], char *out, size_t cap)
{
	char b64[FDISC_KEY_B64_LEN + 1];

	if (cap < FDISC_KEY_TEXT_MAX)
		return TERN_ETOOBIG;
	sodium_bin2base64(b64, sizeof(b64), key, FDISC_KEY_LEN,
	    sodium_base64_VARIANT_ORIGINAL);
	snprintf(out, cap, "%s k=%s", FDISC_KEY_VERSION, b64);
	return 0;
}

int
fdisc_relay_parse(const char *text, size_t len, struct fdisc_relay *out)
{
	struct fdisc_relay x;
	size_t i = 0, nd = 0;
	int r;

	memset(&x, 0, sizeof(x));
	if ((r = fdisc_key_parse(text, len, x.key)) != 0)
		return r;
	/* The key record's rules hold; now exactly one d=DOMAIN. */
	while (i < len) {
		size_t start, tlen;
		char name[FDISC_NAME_CAP];

		while (i < len && text[i] == ' ')
			i++;
		if (i == len)
			break;
		start = i;
		while (i < len && text[i] != ' ')
			i++;
		tlen = i - start;
		if (tlen < 2 || text[start] != 'd' || text[start + 1] != '=')
			continue;
		if (++nd > 1 || tlen - 2 >= sizeof(name))
			return TERN_EFIELD;
		memcpy(name, text + start + 2, tlen - 2);
		name[tlen - 2] = '\0';
		if (strlen(name) != tlen - 2 || fdisc_norm(name, x.domain) != 0)
			return TERN_EFIELD;
	}
	if (nd != 1)
		return TERN_EFIELD;
	*out = x;
	return 0;
}

int
fdisc_relay_format(const uint8_t key[FDISC_KEY_LEN], const char *domain,
    char *out, size_t cap)
{
	char k[FDISC_KEY_TEXT_MAX], dom[FDISC_NAME_CAP];
	int r;

	if (cap < FDISC_RELAY_TEXT_MAX)
		return TERN_ETOOBIG;
	if (fdisc_norm(domain, dom) != 0)
		return TERN_EINVAL;
	if ((r = fdisc_key_format(key, k, sizeof(k))) != 0)
		return r;
	snprintf(out, cap, "%s d=%s", k, dom);
	return 0;
}

/* --- public -------------------------------------------------------------- */

int
fdisc_new(uv_loop_t *loop, struct dns *dns, const struct fdisc_config *cfg,
    struct fdisc **out)
{
	struct fdisc *d;

	*out = NULL;
	if (!loop || !dns)
		return TERN_EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return TERN_ENOMEM;
	if (cfg)
		d->cfg = *cfg;
	if (!d->cfg.default_port)
		d->cfg.default_port = FDISC_DEFAULT_PORT;
	if (!d->cfg.ttl_min_s)
		d->cfg.ttl_min_s = FDISC_TTL_MIN_S;
	if (!d->cfg.ttl_max_s)
		d->cfg.ttl_max_s = FDISC_TTL_MAX_S;
	if (d->cfg.ttl_max_s < d->cfg.ttl_min_s)
		d->cfg.ttl_max_s = d->cfg.ttl_min_s;
	if (!d->cfg.neg_ttl_s)
		d->cfg.neg_ttl_s = FDISC_NEG_TTL_S;
	if (!d->cfg.fail_ttl_s)
		d->cfg.fail_ttl_s = FDISC_FAIL_TTL_S;
	if (!d->cfg.stale_max_s)
		d->cfg.stale_max_s = FDISC_STALE_MAX_S;
	if (!d->cfg.max_domains)
		d->cfg.max_domains = FDISC_MAX_DOMAINS;
	d->nbuckets = 16;
	while (d->nbuckets < d->cfg.max_domains && d->nbuckets < (1u << 20))
		d->nbuckets <<= 1;
	d->buckets = calloc(d->nbuckets, sizeof(*d->buckets));
	if (!d->buckets) {
		free(d);
		return TERN_ENOMEM;
	}
	if (uv_timer_init(loop, &d->ready_timer) != 0) {
		free(d->buckets);
		free(d);
		return TERN_EIO;
	}
	d->ready_timer.data = d;
	d->loop = loop;
	d->dns = dns;
	*out = d;
	return 0;
}

static int
fdisc_enqueue(struct fdisc *d, enum fdisc_what what, const char *domain,
    fdisc_lookup_cb lcb, fdisc_keys_cb kcb, fdisc_relays_cb rcb, void *arg)
{
	struct fdisc_req *r;
	int err;

	if (!d || (!lcb && !kcb && !rcb))
		return TERN_EINVAL;
	if (d->closing)
		return TERN_ESTATE;
	r = calloc(1, sizeof(*r));
	if (!r)
		return TERN_ENOMEM;
	if ((err = fdisc_norm(domain, r->domain)) != 0) {
		free(r);
		return err;
	}
	r->what = what;
	r->lcb = lcb;
	r->kcb = kcb;
	r->rcb = rcb;
	r->arg = arg;
	if (!d->ready && uv_timer_start(&d->ready_timer, fdisc_ready_cb, 0,
	    0) != 0) {
		free(r);
		return TERN_EIO;
	}
	if (d->ready_tail)
		d->ready_tail->next = r;
	else
		d->ready = r;
	d->ready_tail = r;
	return 0;
}

int
fdisc_lookup(struct fdisc *d, const char *domain, fdisc_lookup_cb cb,
    void *arg)
{
	if (!cb)
		return TERN_EINVAL;
	return fdisc_enqueue(d, FDISC_TARGETS, domain, cb, NULL, NULL, arg);
}

int
fdisc_keys(struct fdisc *d, const char *domain, fdisc_keys_cb cb, void *arg)
{
	if (!cb)
		return TERN_EINVAL;
	return fdisc_enqueue(d, FDISC_KEYS, domain, NULL, cb, NULL, arg);
}

int
fdisc_relays(struct fdisc *d, const char *domain, fdisc_relays_cb cb,
    void *arg)
{
	if (!cb)
		return TERN_EINVAL;
	return fdisc_enqueue(d, FDISC_RELAYS, domain, NULL, NULL, cb, arg);
}

static void
fdisc_timer_close_cb(uv_handle_t *h)
{
	struct fdisc *d = h->data;

	while (d->lru_head)
		fdisc_entry_free(d, d->lru_head);
	d->timer_closed = true;
	fdisc_release_maybe(d);
}

void
fdisc_close(struct fdisc *d, fdisc_close_cb cb, void *arg)
{
	struct fdisc_req *r;

	if (!d || d->closing)
		return;
	d->closing = true;
	d->close_cb = cb;
	d->close_arg = arg;
	uv_timer_stop(&d->ready_timer);
	r = d->ready;
	d->ready = d->ready_tail = NULL;
	while (r) {
		struct fdisc_req *next = r->next;

		fdisc_call(r, TERN_ECANCELED, NULL, 0, 0,
		    "federation discovery closed");
		r = next;
	}
	for (struct fdisc_entry *e = d->lru_head; e; e = e->next) {
		for (int i = 0; i < FDISC_NWHAT; i++) {
			while (e->slot[i].waiters) {
				r = e->slot[i].waiters;
				e->slot[i].waiters = r->next;
				fdisc_call(r, TERN_ECANCELED, NULL, 0, 0,
				    "federation discovery closed");
			}
		}
	}
	uv_close((uv_handle_t *)&d->ready_timer, fdisc_timer_close_cb);
}

uint64_t
fdisc_queries(const struct fdisc *d)
{
	return d->queries;
}
