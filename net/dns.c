/*
 * dns.c: asynchronous DNS on libuv with c-ares, and SRV policy (see dns.h).
 *
 * c-ares does the protocol (queries, retransmission, TCP fallback on
 * truncation, parsing, address sorting per RFC 6724); this file only wires
 * its sockets and timeouts into the loop and holds the policy: RFC 2782
 * ordering, the "." target, caps, and error texts an operator can act on.
 * The weighted ordering is written here because c-ares 1.18 has none.
 *
 * Lifetimes. A lookup is freed when its callback has run and no c-ares
 * request still points at it ("pending" counts those). A lookup whose
 * deadline passes is answered at once with TERN_ETIMEOUT and lingers until
 * c-ares finishes its requests, which it does within the same budget since
 * the per-try timeout is derived from it.
 *
 * Re-entrancy. User callbacks run inside ares_process_fd (and inside
 * ares_destroy), where destroying the channel is not allowed. "depth"
 * counts our frames that may call user code; dns_close inside them only
 * marks the resolver closing, and the frame tears down on its way out.
 */
#include "dns.h"
#include "dnsans.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ares.h>

#define DNS_TRIES_MAX 5        /* the per-try share halves with each try */
#define DNS_SERVERS_MAX 4      /* entries in cfg.nameserver */
#define DNS_SERVERS_TEXT 160   /* their text, for messages */

struct dns_sock {
	uv_poll_t poll;        /* watches fd; poll.data is this */
	struct dns *d;         /* owner */
	ares_socket_t fd;      /* c-ares' socket */
	struct dns_sock *next; /* in d->socks while c-ares uses fd */
};

struct dns_rec {
	char host[DNS_NAME_MAX + 3]; /* target, no final dot */
	uint16_t port;               /* from the record */
	uint16_t priority;           /* from the record */
	uint16_t weight;             /* from the record */
};

struct dns_lookup;

/* One ares_getaddrinfo for one SRV record; its arg. */
struct dns_areq {
	struct dns_lookup *l;    /* owner */
	struct ares_addrinfo *ai; /* the answer, freed with the lookup */
	int status;              /* ARES_* */
};

/* What a lookup asks for; it picks the callback and the texts. */
enum dns_kind {
	DNS_KIND_SRV,   /* dns_srv */
	DNS_KIND_TXT,   /* dns_txt */
	DNS_KIND_ADDRS  /* dns_addrs */
};

enum dns_phase {
	DNS_PHASE_SRV,  /* waiting for the SRV answer */
	DNS_PHASE_ADDR  /* waiting for the targets' addresses */
};

struct dns_lookup {
	struct dns *d;               /* resolver */
	enum dns_kind kind;          /* which of the callbacks is set */
	dns_srv_cb cb;               /* the caller's callback (SRV) */
	dns_txt_cb txt_cb;           /* the caller's callback (TXT) */
	dns_addrs_cb addrs_cb;       /* the caller's callback (A/AAAA) */
	uint32_t srv_ttl;            /* the SRV records' smallest TTL */
	void *arg;                   /* its argument */
	char qname[DNS_NAME_MAX + 1]; /* service.domain */
	uint64_t deadline;           /* uv_now() ms when it times out */
	struct dns_lookup *prev, *next; /* in d's list until answered */
	uint32_t pending;            /* c-ares requests pointing at this */
	uint32_t addr_left;          /* address lookups not answered */
	enum dns_phase phase;        /* for messages */
	bool done;                   /* cb has run (or never will) */
	bool starting;               /* inside dns_srv: no cb, report */
	int start_err;               /* what dns_srv reports then */
	uint32_t nrecs;              /* records in recs */
	struct dns_rec recs[DNS_MAX_SRV];   /* in the order to try */
	struct dns_areq areq[DNS_MAX_SRV];  /* one per record */
	char detail[DNS_DETAIL_MAX];        /* operator text */
};

struct dns {
	uv_loop_t *loop;            /* the loop */
	ares_channel ch;            /* c-ares state; NULL once destroyed */
	uv_timer_t timer;           /* c-ares timeouts and deadlines */
	struct dns_sock *socks;     /* sockets being watched */
	struct dns_lookup *head;    /* unanswered lookups, oldest first */
	struct dns_lookup *tail;    /* newest */
	uint32_t timeout_ms;        /* budget of one lookup */
	uint64_t rng;               /* splitmix64 state for RFC 2782 */
	int depth;                  /* our frames that may run user code */
	bool closing;               /* dns_close ran */
	bool torn;                  /* the channel is destroyed */
	uint32_t open_handles;      /* uv handles not yet closed */
	dns_close_cb close_cb;      /* run once all is released */
	void *close_arg;            /* its argument */
	char servers[DNS_SERVERS_TEXT]; /* who we ask, for messages */
};

static void dns_timer_cb(uv_timer_t *t);
static void dns_teardown(struct dns *d);

/* --- small helpers --------------------------------------------------- */

/* dns_appendf: appends to a bounded text, marking a cut with "...". */
static void __attribute__((format(printf, 3, 4)))
dns_appendf(char *buf, size_t cap, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;
	int r;

	if (len + 1 >= cap)
		return;
	va_start(ap, fmt);
	r = vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
	if (r >= 0 && (size_t)r >= cap - len && cap >= 4)
		memcpy(buf + cap - 4, "...", 4);
}

/* dns_detail: sets the lookup's operator text, cut to fit. */
static void __attribute__((format(printf, 2, 3)))
dns_detail(struct dns_lookup *l, const char *fmt, ...)
{
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vsnprintf(l->detail, sizeof(l->detail), fmt, ap);
	va_end(ap);
	if (r >= 0 && (size_t)r >= sizeof(l->detail))
		memcpy(l->detail + sizeof(l->detail) - 4, "...", 4);
}

/*
 * dns_name_ok: a host name or service label sequence we will send and
 * print: labels of 1..63 letters, digits, '-' or '_', at most
 * DNS_NAME_MAX in all, no final dot. Names from the network pass here too,
 * so nothing unprintable ever reaches a log line.
 */
static bool
dns_name_ok(const char *s, size_t len)
{
	size_t label = 0;

	if (len == 0 || len > DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
		if (++label > DNS_LABEL_MAX)
			return false;
	}
	return label > 0;
}

/* splitmix64: ordering SRV records needs fair dice, not secrecy. */
static uint64_t
dns_rand(struct dns *d)
{
	uint64_t z = (d->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* dns_servers_text: the channel's servers as "ip:port, ..." */
static void
dns_servers_text(struct dns *d)
{
	struct ares_addr_port_node *list = NULL, *n;
	char ip[DNS_ADDR_MAX];

	d->servers[0] = '\0';
	if (ares_get_servers_ports(d->ch, &list) != ARES_SUCCESS) {
		snprintf(d->servers, sizeof(d->servers), "the system's DNS");
		return;
	}
	for (n = list; n; n = n->next) {
		const void *a = n->family == AF_INET6 ? (const void *)&n->addr.addr6
		    : (const void *)&n->addr.addr4;
		uint16_t port = n->udp_port ? (uint16_t)n->udp_port : 53;

		if (!inet_ntop(n->family, a, ip, sizeof(ip)))
			continue;
		dns_appendf(d->servers, sizeof(d->servers),
		    n->family == AF_INET6 ? "%s[%s]:%u" : "%s%s:%u",
		    d->servers[0] ? ", " : "", ip, port);
	}
	ares_free_data(list);
	if (!d->servers[0])
		snprintf(d->servers, sizeof(d->servers), "no DNS server");
}

/*
 * dns_parse_servers: checks cfg.nameserver and writes it in the form
 * c-ares reads ("1.2.3.4:53,[::1]:5353"). IP literals only: a resolver
 * named by host name would need a resolver.
 */
static int
dns_parse_servers(const char *in, char *out, size_t cap)
{
	char item[DNS_ADDR_MAX + 16], ip[DNS_ADDR_MAX];
	unsigned char bin[sizeof(struct in6_addr)];
	const char *p = in;
	int count = 0;

	out[0] = '\0';
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *port = NULL, *host;
		unsigned long pnum = 53;
		bool v6;

		while (len && p[0] == ' ') {
			p++;
			len--;
		}
		if (len == 0 || len >= sizeof(item) || ++count > DNS_SERVERS_MAX)
			return TERN_ECONFIG;
		memcpy(item, p, len);
		item[len] = '\0';
		if (item[0] == '[') {
			char *close = strchr(item, ']');

			if (!close || (close[1] != '\0' && close[1] != ':'))
				return TERN_ECONFIG;
			*close = '\0';
			if (close[1] == ':')
				port = close + 2;
			host = item + 1;
		} else if (inet_pton(AF_INET6, item, bin) == 1) {
			host = item;
		} else {
			char *colon = strchr(item, ':');

			if (colon) {
				*colon = '\0';
				port = colon + 1;
			}
			host = item;
		}
		if (strlen(host) >= sizeof(ip))
			return TERN_ECONFIG;
		memcpy(ip, host, strlen(host) + 1);
		v6 = inet_pton(AF_INET6, ip, bin) == 1;
		if (!v6 && inet_pton(AF_INET, ip, bin) != 1)
			return TERN_ECONFIG;
		if (port) {
			char *e;

			if (*port < '0' || *port > '9')
				return TERN_ECONFIG;
			pnum = strtoul(port, &e, 10);
			if (*e != '\0' || pnum == 0 || pnum > 65535)
				return TERN_ECONFIG;
		}
		if ((size_t)snprintf(out + strlen(out), cap - strlen(out),
		    v6 ? "%s[%s]:%lu" : "%s%s:%lu", out[0] ? "," : "", ip,
		    pnum) >= cap - strlen(out))
			return TERN_ECONFIG;
		p += len;
		if (*p == ',' && *++p == '\0')
			return TERN_ECONFIG; /* a trailing comma */
	}
	return count > 0 ? 0 : TERN_ECONFIG;
}

/* --- lookups ----------------------------------------------------------- */

static void
dns_lookup_unlink(struct dns_lookup *l)
{
	struct dns *d = l->d;

	if (l->prev)
		l->prev->next = l->next;
	else if (d->head == l)
		d->head = l->next;
	if (l->next)
		l->next->prev = l->prev;
	else if (d->tail == l)
		d->tail = l->prev;
	l->prev = l->next = NULL;
}

/* dns_lookup_release: frees l once it is answered and c-ares is done. */
static void
dns_lookup_release(struct dns_lookup *l)
{
	if (!l->done || l->pending > 0)
		return;
	for (uint32_t i = 0; i < l->nrecs; i++)
		if (l->areq[i].ai)
			ares_freeaddrinfo(l->areq[i].ai);
	free(l);
}

/* dns_finish: answers the caller once. Inside dns_srv the answer becomes
 * dns_srv's return value instead, as the callback rules in dns.h say. */
static void
dns_finish(struct dns_lookup *l, int err, const void *res, size_t n,
    uint32_t ttl)
{
	if (l->done)
		return;
	if (l->d->closing && err != TERN_ECANCELED) {
		/* c-ares may finish more lookups in the same processing
		 * call after a callback ran dns_close; after dns_close
		 * every answer is a cancellation, whatever came in. */
		err = TERN_ECANCELED;
		dns_detail(l, "DNS lookup of %s canceled: the resolver closed",
		    l->qname);
	}
	l->done = true;
	dns_lookup_unlink(l);
	if (l->starting) {
		l->start_err = err ? err : TERN_EIO;
		return;
	}
	if (err) {
		res = NULL;
		n = 0;
		ttl = 0;
	}
	switch (l->kind) {
	case DNS_KIND_SRV:
		l->cb(l->arg, err, res, n, l->detail);
		break;
	case DNS_KIND_TXT:
		l->txt_cb(l->arg, err, res, n, ttl, l->detail);
		break;
	case DNS_KIND_ADDRS:
		l->addrs_cb(l->arg, err, res, n, l->detail);
		break;
	}
}

/* dns_rtype: the record type a lookup asks for, for messages. */
static const char *
dns_rtype(const struct dns_lookup *l)
{
	switch (l->kind) {
	case DNS_KIND_TXT:
		return "TXT";
	case DNS_KIND_ADDRS:
		return "A/AAAA";
	default:
		return "SRV";
	}
}

/* dns_fail: sets the operator text from an ares status and answers. */
static void
dns_fail(struct dns_lookup *l, int status, const char *what)
{
	struct dns *d = l->d;
	int err;

	l->detail[0] = '\0';
	switch (status) {
	case ARES_ENODATA:
		err = TERN_ENOTFOUND;
		dns_detail(l,
		    "no %s record for %s (the name exists, the record not)",
		    dns_rtype(l), l->qname);
		break;
	case ARES_ENOTFOUND:
		err = TERN_ENOTFOUND;
		dns_detail(l,
		    "no %s record for %s (no such name)", dns_rtype(l),
		    l->qname);
		break;
	case ARES_ETIMEOUT:
		err = TERN_ETIMEOUT;
		dns_detail(l,
		    "DNS timeout after %u ms asking %s for %s %s", d->timeout_ms,
		    d->servers, what, l->qname);
		break;
	case ARES_ESERVFAIL:
		err = TERN_EUNREACH;
		dns_detail(l,
		    "DNS server failure (SERVFAIL) from %s for %s %s",
		    d->servers, what, l->qname);
		break;
	case ARES_EREFUSED:
		err = TERN_EUNREACH;
		dns_detail(l,
		    "DNS server %s refused the query for %s %s (REFUSED)",
		    d->servers, what, l->qname);
		break;
	case ARES_ECONNREFUSED:
		err = TERN_EUNREACH;
		dns_detail(l,
		    "DNS server %s unreachable (connection refused) for %s %s",
		    d->servers, what, l->qname);
		break;
	case ARES_EBADRESP:
	case ARES_EFORMERR:
		err = TERN_EUNREACH;
		dns_detail(l,
		    "malformed DNS reply from %s for %s %s", d->servers, what,
		    l->qname);
		break;
	case ARES_ENOMEM:
		err = TERN_ENOMEM;
		dns_detail(l,
		    "out of memory looking up %s %s", what, l->qname);
		break;
	case ARES_EDESTRUCTION:
	case ARES_ECANCELLED:
		err = TERN_ECANCELED;
		dns_detail(l,
		    "DNS lookup of %s %s canceled: the resolver closed", what,
		    l->qname);
		break;
	case ARES_EBADNAME:
	case ARES_EBADQUERY:
		err = TERN_EINVAL;
		dns_detail(l,
		    "cannot query %s %s: bad name", what, l->qname);
		break;
	default:
		err = TERN_EUNREACH;
		dns_detail(l,
		    "DNS error from %s for %s %s: %s", d->servers, what,
		    l->qname, ares_strerror(status));
		break;
	}
	dns_finish(l, err, NULL, 0, 0);
}

/* dns_is_root: c-ares spells the root name "" (some versions "."). */
static bool
dns_is_root(const char *host)
{
	return host[0] == '\0' || strcmp(host, ".") == 0;
}

/*
 * dns_order: RFC 2782's selection within each run of equal priority:
 * zero-weight records go first, then repeatedly pick r uniform in
 * [0, sum of weights] and take the first record whose running sum
 * reaches r. Zero-weight records thus have a small chance to come early
 * and otherwise come last, as the RFC intends. recs is sorted by priority.
 */
static void
dns_order(struct dns *d, struct dns_rec *recs, uint32_t n)
{
	uint32_t a = 0;

	while (a < n) {
		uint32_t b = a, z = a;

		while (b < n && recs[b].priority == recs[a].priority)
			b++;
		/* Stable partition: zero weights to the front of [a, b). */
		for (uint32_t i = a; i < b; i++) {
			if (recs[i].weight == 0) {
				struct dns_rec t = recs[i];

				memmove(&recs[z + 1], &recs[z],
				    (i - z) * sizeof(recs[0]));
				recs[z++] = t;
			}
		}
		for (uint32_t i = a; i + 1 < b; i++) {
			uint64_t sum = 0, run = 0, r;
			uint32_t j;
			struct dns_rec t;

			for (j = i; j < b; j++)
				sum += recs[j].weight;
			/* sum < 2^22, so the modulo's bias is below 2^-40. */
			r = dns_rand(d) % (sum + 1);
			for (j = i; j < b; j++) {
				run += recs[j].weight;
				if (run >= r)
					break;
			}
			t = recs[j];
			memmove(&recs[i + 1], &recs[i], (j - i) * sizeof(recs[0]));
			recs[i] = t;
		}
		a = b;
	}
}

/* dns_keep: inserts r into recs (sorted by priority, stable), keeping
 * the DNS_MAX_SRV records of lowest priority. false: r was dropped. */
static bool
dns_keep(struct dns_lookup *l, const struct dns_rec *r)
{
	uint32_t pos = l->nrecs;

	while (pos > 0 && l->recs[pos - 1].priority > r->priority)
		pos--;
	if (pos == DNS_MAX_SRV)
		return false;
	if (l->nrecs == DNS_MAX_SRV)
		l->nrecs--; /* the highest priority falls off the end */
	memmove(&l->recs[pos + 1], &l->recs[pos],
	    (l->nrecs - pos) * sizeof(l->recs[0]));
	l->recs[pos] = *r;
	l->nrecs++;
	return true;
}

/* dns_addr_done: all targets' addresses are in; build the answer. */
static void
dns_addr_done(struct dns_lookup *l)
{
	struct dns_target *t;
	size_t n = 0;
	bool timeout = false;
	char failed[DNS_DETAIL_MAX] = "";

	t = calloc(DNS_MAX_TARGETS, sizeof(*t));
	if (!t) {
		dns_fail(l, ARES_ENOMEM, "addresses of SRV");
		return;
	}
	for (uint32_t i = 0; i < l->nrecs; i++) {
		const struct dns_rec *r = &l->recs[i];
		const struct dns_areq *q = &l->areq[i];
		const struct ares_addrinfo_node *ai;
		size_t first = n, per_host = 0;

		if (q->status != ARES_SUCCESS || !q->ai || !q->ai->nodes) {
			const char *why = "no A/AAAA record";

			if (q->status == ARES_ETIMEOUT) {
				why = "timeout";
				timeout = true;
			} else if (q->status != ARES_SUCCESS &&
			    q->status != ARES_ENOTFOUND &&
			    q->status != ARES_ENODATA) {
				why = ares_strerror(q->status);
			}
			dns_appendf(failed, sizeof(failed), "%s%s (%s)",
			    failed[0] ? ", " : "", r->host, why);
			continue;
		}
		for (ai = q->ai->nodes; ai && n < DNS_MAX_TARGETS &&
		    per_host < DNS_MAX_ADDRS_PER_HOST; ai = ai->ai_next) {
			const void *a;
			bool dup = false;

			if (ai->ai_family == AF_INET)
				a = &((const struct sockaddr_in *)
				    (const void *)ai->ai_addr)->sin_addr;
			else if (ai->ai_family == AF_INET6)
				a = &((const struct sockaddr_in6 *)
				    (const void *)ai->ai_addr)->sin6_addr;
			else
				continue;
			if (!inet_ntop(ai->ai_family, a, t[n].addr,
			    sizeof(t[n].addr)))
				continue;
			for (size_t k = first; k < n && !dup; k++)
				dup = strcmp(t[k].addr, t[n].addr) == 0;
			if (dup)
				continue;
			memcpy(t[n].host, r->host, sizeof(t[n].host));
			t[n].port = r->port;
			t[n].priority = r->priority;
			t[n].weight = r->weight;
			t[n].ttl = ai->ai_ttl < 0 ? 0 : (uint32_t)ai->ai_ttl;
			if (t[n].ttl > l->srv_ttl)
				t[n].ttl = l->srv_ttl;
			n++;
			per_host++;
		}
	}
	if (n == 0) {
		dns_detail(l,
		    timeout ? "DNS timeout resolving the SRV targets of %s: %s"
		    : "no SRV target of %s has an address: %s", l->qname,
		    failed);
		dns_finish(l, timeout ? TERN_ETIMEOUT : TERN_EUNREACH, NULL, 0,
		    0);
	} else {
		if (failed[0])
			dns_appendf(l->detail, sizeof(l->detail),
			    "%sskipped SRV targets of %s: %s",
			    l->detail[0] ? "; " : "", l->qname, failed);
		dns_finish(l, 0, t, n, 0);
	}
	free(t);
}

/* dns_addrs_done: the answer of dns_addrs, from areq[0]. */
static void
dns_addrs_done(struct dns_lookup *l)
{
	const struct dns_areq *q = &l->areq[0];
	const struct ares_addrinfo_node *ai;
	struct dns_addr *a;
	size_t n = 0;

	if (q->status != ARES_SUCCESS) {
		dns_fail(l, q->status, "A/AAAA");
		return;
	}
	a = calloc(DNS_MAX_ADDRS, sizeof(*a));
	if (!a) {
		dns_fail(l, ARES_ENOMEM, "A/AAAA");
		return;
	}
	for (ai = q->ai ? q->ai->nodes : NULL; ai && n < DNS_MAX_ADDRS;
	    ai = ai->ai_next) {
		const void *p;
		bool dup = false;

		if (ai->ai_family == AF_INET)
			p = &((const struct sockaddr_in *)
			    (const void *)ai->ai_addr)->sin_addr;
		else if (ai->ai_family == AF_INET6)
			p = &((const struct sockaddr_in6 *)
			    (const void *)ai->ai_addr)->sin6_addr;
		else
			continue;
		if (!inet_ntop(ai->ai_family, p, a[n].addr, sizeof(a[n].addr)))
			continue;
		for (size_t k = 0; k < n && !dup; k++)
			dup = strcmp(a[k].addr, a[n].addr) == 0;
		if (dup)
			continue;
		a[n].ttl = ai->ai_ttl < 0 ? 0 : (uint32_t)ai->ai_ttl;
		n++;
	}
	if (n == 0)
		dns_fail(l, ARES_ENODATA, "A/AAAA");
	else
		dns_finish(l, 0, a, n, 0);
	free(a);
}

static void
dns_addr_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
	struct dns_areq *q = arg;
	struct dns_lookup *l = q->l;

	q->status = status;
	q->ai = res;
	if (!l->done) {
		if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
			dns_fail(l, status, l->kind == DNS_KIND_ADDRS ? "A/AAAA"
			    : "addresses of SRV");
		else if (l->d->closing)
			dns_fail(l, ARES_ECANCELLED, "A/AAAA");
		else if (--l->addr_left == 0 && l->kind == DNS_KIND_ADDRS)
			dns_addrs_done(l);
		else if (l->addr_left == 0)
			dns_addr_done(l);
	}
	l->pending--;
	dns_lookup_release(l);
}

/* dns_srv_answer: the SRV answer: order the records, then resolve the
 * targets, all at once. */
static void
dns_srv_answer(struct dns_lookup *l, const unsigned char *abuf, int alen)
{
	struct ares_srv_reply *srv = NULL, *s;
	struct ares_addrinfo_hints hints;
	uint32_t total = 0, roots = 0, bad = 0, dropped = 0;
	int r;

	r = ares_parse_srv_reply(abuf, alen, &srv);
	if (r != ARES_SUCCESS) {
		dns_fail(l, r, "SRV");
		return;
	}
	/* c-ares read the same bytes, so this walk cannot fail unless the
	 * answer is odd (e.g. only CNAMEs); then nothing may be cached. */
	if (dnsans_min_ttl(abuf, (size_t)alen, ns_t_srv, &l->srv_ttl) != 0)
		l->srv_ttl = 0;
	for (s = srv; s; s = s->next) {
		struct dns_rec rec;
		size_t len;

		total++;
		if (dns_is_root(s->host)) {
			roots++;
			continue;
		}
		len = strlen(s->host);
		if (len > 1 && s->host[len - 1] == '.')
			len--;
		if (!dns_name_ok(s->host, len)) {
			bad++;
			continue;
		}
		memcpy(rec.host, s->host, len);
		rec.host[len] = '\0';
		rec.port = s->port;
		rec.priority = s->priority;
		rec.weight = s->weight;
		if (!dns_keep(l, &rec))
			dropped++;
	}
	ares_free_data(srv);

	if (total == 0) {
		dns_fail(l, ARES_ENODATA, "SRV");
		return;
	}
	if (l->nrecs == 0 && bad == 0) {
		/* RFC 2782: a lone "." target says the service is decidedly
		 * not available. Several records that are all "." are out of
		 * spec; they are read the same way. */
		dns_detail(l,
		    "%s: the domain says it offers no such service "
		    "(SRV target \".\")", l->qname);
		dns_finish(l, DNS_ENOSERVICE, NULL, 0, 0);
		return;
	}
	if (l->nrecs == 0) {
		dns_detail(l,
		    "no usable SRV record for %s: %u with a malformed target",
		    l->qname, bad);
		dns_finish(l, TERN_EUNREACH, NULL, 0, 0);
		return;
	}
	if (roots || bad || dropped)
		dns_appendf(l->detail, sizeof(l->detail),
		    "ignored SRV records of %s: %u \".\", %u malformed, %u over "
		    "the cap of %u", l->qname, roots, bad, dropped,
		    DNS_MAX_SRV);

	dns_order(l->d, l->recs, l->nrecs);

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	l->phase = DNS_PHASE_ADDR;
	l->addr_left = l->nrecs;
	/* Count them all before any starts: a request may answer at once. */
	l->pending += l->nrecs;
	for (uint32_t i = 0; i < l->nrecs; i++) {
		char fqdn[sizeof(l->recs[i].host) + 1];

		/* The final dot makes c-ares ask for exactly this name, not
		 * the name with resolv.conf's search domains appended. */
		snprintf(fqdn, sizeof(fqdn), "%s.", l->recs[i].host);
		l->areq[i].l = l;
		l->areq[i].status = ARES_ENODATA;
		ares_getaddrinfo(l->d->ch, fqdn, NULL, &hints, dns_addr_cb,
		    &l->areq[i]);
	}
}

static void
dns_srv_query_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_lookup *l = arg;

	if (!l->done) {
		if (l->d->closing)
			dns_fail(l, ARES_ECANCELLED, "SRV");
		else if (status == ARES_SUCCESS)
			dns_srv_answer(l, abuf, alen);
		else
			dns_fail(l, status, "SRV");
	}
	l->pending--;
	dns_lookup_release(l);
}

/* dns_txt_answer: joins each record's strings, keeps what fits. */
static void
dns_txt_answer(struct dns_lookup *l, const unsigned char *abuf, int alen)
{
	struct ares_txt_ext *txt = NULL, *x;
	struct dns_txt_rec *recs;
	uint32_t ttl = 0, total = 0, skipped = 0;
	size_t n = 0;
	bool cur_ok = false; /* the record being joined still fits */
	int r;

	r = ares_parse_txt_reply_ext(abuf, alen, &txt);
	if (r != ARES_SUCCESS) {
		dns_fail(l, r, "TXT");
		return;
	}
	if (dnsans_min_ttl(abuf, (size_t)alen, ns_t_txt, &ttl) != 0)
		ttl = 0;
	recs = calloc(DNS_MAX_TXT, sizeof(*recs));
	if (!recs) {
		ares_free_data(txt);
		dns_fail(l, ARES_ENOMEM, "TXT");
		return;
	}
	for (x = txt; x; x = x->next) {
		struct dns_txt_rec *cur;

		if (x->record_start) {
			total++;
			if (cur_ok)
				n++;
			cur_ok = n < DNS_MAX_TXT;
			if (!cur_ok) {
				skipped++;
				continue;
			}
			recs[n].len = 0;
			recs[n].text[0] = '\0';
		}
		if (!cur_ok)
			continue;
		cur = &recs[n];
		if (x->length > DNS_TXT_LEN_MAX - cur->len ||
		    memchr(x->txt, '\0', x->length)) {
			cur_ok = false;
			skipped++;
			continue;
		}
		memcpy(cur->text + cur->len, x->txt, x->length);
		cur->len += x->length;
		cur->text[cur->len] = '\0';
	}
	if (cur_ok)
		n++;
	ares_free_data(txt);
	if (total == 0) {
		free(recs);
		dns_fail(l, ARES_ENODATA, "TXT");
		return;
	}
	if (skipped)
		dns_detail(l, "ignored %u of %u TXT records of %s (too long, "
		    "a NUL byte, or over the cap of %u)", skipped, total,
		    l->qname, DNS_MAX_TXT);
	dns_finish(l, 0, recs, n, ttl);
	free(recs);
}

static void
dns_txt_query_cb(void *arg, int status, int timeouts, unsigned char *abuf,
    int alen)
{
	struct dns_lookup *l = arg;

	if (!l->done) {
		if (l->d->closing)
			dns_fail(l, ARES_ECANCELLED, "TXT");
		else if (status == ARES_SUCCESS)
			dns_txt_answer(l, abuf, alen);
		else
			dns_fail(l, status, "TXT");
	}
	l->pending--;
	dns_lookup_release(l);
}

/* --- loop integration ---------------------------------------------------- */

/* dns_expire: answers lookups whose budget is spent. The list is in
 * deadline order (one timeout for all, appended with the loop's time). */
static void
dns_expire(struct dns *d)
{
	uint64_t now = uv_now(d->loop);

	while (d->head && d->head->deadline <= now) {
		struct dns_lookup *l = d->head;

		dns_detail(l,
		    "DNS timeout after %u ms asking %s for %s %s",
		    d->timeout_ms, d->servers,
		    l->phase == DNS_PHASE_SRV ? dns_rtype(l)
		    : "the addresses of SRV", l->qname);
		dns_finish(l, TERN_ETIMEOUT, NULL, 0, 0);
		/* It lingers (pending > 0) until c-ares lets go of it. */
	}
}

/* dns_rearm: one timer for the nearer of c-ares' next timeout and the
 * oldest lookup's deadline; stopped when neither exists. */
static void
dns_rearm(struct dns *d)
{
	struct timeval tv, *tp;
	uint64_t ms = UINT64_MAX, now = uv_now(d->loop);

	if (d->closing)
		return;
	tp = ares_timeout(d->ch, NULL, &tv);
	if (tp)
		/* Round up: firing before c-ares' deadline would spin. */
		ms = (uint64_t)tp->tv_sec * 1000 +
		    ((uint64_t)tp->tv_usec + 999) / 1000;
	if (d->head) {
		uint64_t left = d->head->deadline > now ?
		    d->head->deadline - now : 0;

		if (left < ms)
			ms = left;
	}
	if (ms == UINT64_MAX)
		uv_timer_stop(&d->timer);
	else
		uv_timer_start(&d->timer, dns_timer_cb, ms, 0);
}

static void
dns_enter(struct dns *d)
{
	d->depth++;
}

/* dns_leave: the way out of every frame that may have run user code. */
static void
dns_leave(struct dns *d)
{
	if (--d->depth > 0)
		return;
	if (d->closing)
		dns_teardown(d);
	else
		dns_rearm(d);
}

static void
dns_poll_cb(uv_poll_t *p, int status, int events)
{
	struct dns_sock *s = p->data;
	struct dns *d = s->d;
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

	if (d->torn)
		return;
	if (status < 0) {
		/* Let c-ares meet the error on its own read or write. */
		rfd = wfd = s->fd;
	} else {
		if (events & UV_READABLE)
			rfd = s->fd;
		if (events & UV_WRITABLE)
			wfd = s->fd;
	}
	dns_enter(d);
	ares_process_fd(d->ch, rfd, wfd);
	dns_leave(d);
}

static void
dns_timer_cb(uv_timer_t *t)
{
	struct dns *d = t->data;

	if (d->torn)
		return;
	dns_enter(d);
	ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_expire(d);
	dns_leave(d);
}

static void
dns_released(struct dns *d)
{
	dns_close_cb cb = d->close_cb;
	void *arg = d->close_arg;

	free(d);
	ares_library_cleanup();
	if (cb)
		cb(arg);
}

static void
dns_sock_close_cb(uv_handle_t *h)
{
	struct dns_sock *s = h->data;
	struct dns *d = s->d;

	free(s);
	if (--d->open_handles == 0 && d->torn)
		dns_released(d);
}

static void
dns_timer_close_cb(uv_handle_t *h)
{
	struct dns *d = h->data;

	if (--d->open_handles == 0)
		dns_released(d);
}

static void
dns_sock_forget(struct dns *d, struct dns_sock *s)
{
	struct dns_sock **pp;

	for (pp = &d->socks; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	uv_close((uv_handle_t *)&s->poll, dns_sock_close_cb);
}

/*
 * dns_sock_state_cb: c-ares says which of its sockets want reading or
 * writing; (0, 0) comes just before it closes one, so the poll handle
 * stops watching before the descriptor can be reused.
 */
static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = data;
	struct dns_sock *s;
	int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);

	for (s = d->socks; s; s = s->next)
		if (s->fd == fd)
			break;
	if (events == 0) {
		if (s)
			dns_sock_forget(d, s);
		return;
	}
	if (!s) {
		/* If this fails the socket is not watched, and its query ends
		 * in c-ares' timeout: an answer, if a slow one. */
		s = calloc(1, sizeof(*s));
		if (!s)
			return;
		if (uv_poll_init_socket(d->loop, &s->poll, fd) != 0) {
			free(s);
			return;
		}
		s->poll.data = s;
		s->d = d;
		s->fd = fd;
		s->next = d->socks;
		d->socks = s;
		d->open_handles++;
	}
	if (uv_poll_start(&s->poll, events, dns_poll_cb) != 0)
		dns_sock_forget(d, s);
}

/*
 * dns_teardown: destroys the channel (each pending c-ares request calls
 * back with ARES_EDESTRUCTION, which answers its lookup TERN_ECANCELED),
 * then closes the handles. Only at depth 0.
 */
static void
dns_teardown(struct dns *d)
{
	if (d->torn)
		return;
	d->depth++; /* user code runs below; keep dns_close from nesting */
	if (d->ch) {
		ares_destroy(d->ch);
		d->ch = NULL;
	}
	/* Nothing should be left; if c-ares dropped one, answer it here. */
	while (d->head) {
		struct dns_lookup *l = d->head;

		dns_detail(l,
		    "DNS lookup of %s canceled: the resolver closed", l->qname);
		dns_finish(l, TERN_ECANCELED, NULL, 0, 0);
		l->pending = 0;
		dns_lookup_release(l);
	}
	d->depth--;
	d->torn = true;
	while (d->socks)
		dns_sock_forget(d, d->socks);
	uv_close((uv_handle_t *)&d->timer, dns_timer_close_cb);
}

/* --- public ------------------------------------------------------------ */

int
dns_new(uv_loop_t *loop, const struct dns_config *cfg, struct dns **out)
{
	struct ares_options opt;
	char servers[DNS_SERVERS_MAX * (DNS_ADDR_MAX + 10)];
	char lookups[] = "b";
	struct dns *d;
	uint32_t tries, per_try;
	int optmask, r;

	*out = NULL;
	if (!loop)
		return TERN_EINVAL;
	if (cfg && cfg->nameserver) {
		r = dns_parse_servers(cfg->nameserver, servers, sizeof(servers));
		if (r != 0)
			return r;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return TERN_ENOMEM;
	d->loop = loop;
	d->timeout_ms = cfg && cfg->timeout_ms ? cfg->timeout_ms
	    : DNS_TIMEOUT_MS_DEFAULT;
	tries = cfg && cfg->tries ? cfg->tries : DNS_TRIES_DEFAULT;
	if (tries > DNS_TRIES_MAX)
		tries = DNS_TRIES_MAX;
	if (uv_random(NULL, NULL, &d->rng, sizeof(d->rng), 0, NULL) != 0)
		d->rng = uv_hrtime() ^ ((uint64_t)getpid() << 32);

	if (ares_library_init(ARES_LIB_INIT_ALL) != ARES_SUCCESS) {
		free(d);
		return TERN_EIO;
	}
	/* c-ares doubles a query's timeout after each round of servers, so
	 * tries rounds take per_try * (2^tries - 1): fit that into the
	 * budget. The lookup's own deadline enforces it in any case. */
	per_try = d->timeout_ms / ((1u << tries) - 1);
	memset(&opt, 0, sizeof(opt));
	opt.timeout = per_try ? (int)per_try : 1;
	opt.tries = (int)tries;
	opt.sock_state_cb = dns_sock_state_cb;
	opt.sock_state_cb_data = d;
	optmask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
	if (cfg && cfg->nameserver) {
		/* An override is a test or an operator pinning a server:
		 * answers must come from it, not from the hosts file. */
		opt.lookups = lookups;
		optmask |= ARES_OPT_LOOKUPS;
	}
	r = ares_init_options(&d->ch, &opt, optmask);
	if (r != ARES_SUCCESS) {
		ares_library_cleanup();
		free(d);
		return r == ARES_ENOMEM ? TERN_ENOMEM : TERN_EIO;
	}
	if (cfg && cfg->nameserver) {
		r = ares_set_servers_ports_csv(d->ch, servers);
		if (r != ARES_SUCCESS) {
			ares_destroy(d->ch);
			ares_library_cleanup();
			free(d);
			return r == ARES_ENOMEM ? TERN_ENOMEM : TERN_ECONFIG;
		}
	}
	dns_servers_text(d);
	r = uv_timer_init(loop, &d->timer);
	if (r != 0) {
		ares_destroy(d->ch);
		ares_library_cleanup();
		free(d);
		return TERN_EIO;
	}
	d->timer.data = d;
	d->open_handles = 1;
	*out = d;
	return 0;
}

/*
 * dns_start: the common start of dns_srv, dns_txt and dns_addrs. prefix
 * (may be NULL) goes before name, as the service labels of an SRV query.
 * l comes from the caller with its kind and callback set; dns_start owns
 * it from here on, on every path.
 */
static int
dns_start(struct dns *d, struct dns_lookup *l, const char *prefix,
    const char *name)
{
	size_t plen = prefix ? strlen(prefix) : 0, nlen = strlen(name), off = 0;
	int err;

	if (nlen > 1 && name[nlen - 1] == '.')
		nlen--;
	if ((prefix && !dns_name_ok(prefix, plen)) || !dns_name_ok(name, nlen) ||
	    plen + 1 + nlen > DNS_NAME_MAX + (prefix ? 0 : 1)) {
		free(l);
		return TERN_EINVAL;
	}
	l->d = d;
	if (prefix) {
		memcpy(l->qname, prefix, plen);
		l->qname[plen] = '.';
		off = plen + 1;
	}
	memcpy(l->qname + off, name, nlen);
	l->qname[off + nlen] = '\0';
	l->deadline = uv_now(d->loop) + d->timeout_ms;
	l->phase = DNS_PHASE_SRV;
	l->prev = d->tail;
	if (d->tail)
		d->tail->next = l;
	else
		d->head = l;
	d->tail = l;

	/* One reference for the query, one for this frame: the query may
	 * call back (and drop its reference) before ares_query returns. */
	l->pending = 2;
	l->starting = true;
	switch (l->kind) {
	case DNS_KIND_SRV:
		ares_query(d->ch, l->qname, ns_c_in, ns_t_srv, dns_srv_query_cb,
		    l);
		break;
	case DNS_KIND_TXT:
		ares_query(d->ch, l->qname, ns_c_in, ns_t_txt, dns_txt_query_cb,
		    l);
		break;
	case DNS_KIND_ADDRS: {
		struct ares_addrinfo_hints hints;
		char fqdn[DNS_NAME_MAX + 2];

		/* Exactly this name: no search domains (see dns_srv_answer). */
		snprintf(fqdn, sizeof(fqdn), "%s.", l->qname);
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		l->nrecs = 1;
		l->addr_left = 1;
		l->areq[0].l = l;
		l->areq[0].status = ARES_ENODATA;
		ares_getaddrinfo(d->ch, fqdn, NULL, &hints, dns_addr_cb,
		    &l->areq[0]);
		break;
	}
	}
	l->starting = false;
	l->pending--;
	if (l->done) {
		/* c-ares answered at once (only failures do): report it
		 * here, and the callback is never called. */
		err = l->start_err;
		dns_lookup_release(l);
		return err;
	}
	if (d->depth == 0)
		dns_rearm(d);
	return 0;
}

/* dns_lookup_new: a lookup of kind for a caller; NULL when out of memory. */
static struct dns_lookup *
dns_lookup_new(void *arg, enum dns_kind kind)
{
	struct dns_lookup *l = calloc(1, sizeof(*l));

	if (l) {
		l->kind = kind;
		l->arg = arg;
	}
	return l;
}

int
dns_srv(struct dns *d, const char *service, const char *domain,
    dns_srv_cb cb, void *arg)
{
	struct dns_lookup *l;

	if (!d || !service || !domain || !cb)
		return TERN_EINVAL;
	if (d->closing)
		return TERN_ESTATE;
	if (!(l = dns_lookup_new(arg, DNS_KIND_SRV)))
		return TERN_ENOMEM;
	l->cb = cb;
	return dns_start(d, l, service, domain);
}

int
dns_txt(struct dns *d, const char *name, dns_txt_cb cb, void *arg)
{
	struct dns_lookup *l;

	if (!d || !name || !cb)
		return TERN_EINVAL;
	if (d->closing)
		return TERN_ESTATE;
	if (!(l = dns_lookup_new(arg, DNS_KIND_TXT)))
		return TERN_ENOMEM;
	l->txt_cb = cb;
	return dns_start(d, l, NULL, name);
}

int
dns_addrs(struct dns *d, const char *host, dns_addrs_cb cb, void *arg)
{
	struct dns_lookup *l;

	if (!d || !host || !cb)
		return TERN_EINVAL;
	if (d->closing)
		return TERN_ESTATE;
	if (!(l = dns_lookup_new(arg, DNS_KIND_ADDRS)))
		return TERN_ENOMEM;
	l->addrs_cb = cb;
	return dns_start(d, l, NULL, host);
}

void
dns_close(struct dns *d, dns_close_cb cb, void *arg)
{
	if (!d || d->closing)
		return;
	d->closing = true;
	d->close_cb = cb;
	d->close_arg = arg;
	uv_timer_stop(&d->timer);
	if (d->depth == 0)
		dns_teardown(d);
}

const char *
dns_servers(const struct dns *d)
{
	return d->servers;
}
