/*
 * doctor.c: `ternd doctor DOMAIN` — can this node federate with DOMAIN,
 * and if not, what exactly is wrong (doctor.h).
 *
 * The checks run in the order a link is made (SPEC.md 13.3, 13.4), each
 * printing one line "ok   ..." or "FAIL ..." with what to fix:
 *
 *   1. where:    [federation] peers, else SRV _tern-fed._tcp.DOMAIN,
 *                else DOMAIN's A/AAAA on 7371
 *   2. keys:     TXT _tern-key.DOMAIN parses to at least one key
 *   3. reach:    TCP and the Noise handshake with the first target
 *   4. key:      the key the node proved is one DOMAIN publishes (or the
 *                one pinned)
 *   5. hello:    FED_HELLO is welcomed (so the other side accepts OUR
 *                key for OUR domain), and the clocks agree within 5 min
 *   6. relays:   TXT _tern-relay.DOMAIN (SPEC.md 13.5); then every other
 *                SRV target: its key is DOMAIN's, an authorized relay's
 *                (which must welcome FED_HELLO for DOMAIN: relay_for),
 *                or neither (an unauthorized relay: a failure)
 *
 * Later checks that depend on an earlier failure are reported as not
 * run, with the reason, never as passed.
 */
#include "doctor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "discover.h"
#include "dns.h"
#include "ident.h"
#include "msg.h"
#include "net.h"

#define DOC_TIMEOUT_MS 8000
#define DOC_SKEW_MAX_MS (5 * 60 * 1000)
#define DOC_TARGETS_MAX 8

struct doc {
	uv_loop_t loop;
	struct net_loop nl;
	struct dns *dns;
	struct fdisc *disc;
	const char *domain;
	const char *ours;           /* our domain */
	uint8_t priv[32];
	int fails;
	/* 1 */
	bool have_target;
	char host[DNS_ADDR_MAX];
	uint16_t port;
	struct dns_target tg[DOC_TARGETS_MAX]; /* every SRV target, in order */
	size_t ntg;
	/* 6 */
	struct fdisc_relay relays[FDISC_MAX_RELAYS];
	size_t nrelays;
	bool relays_done;           /* its own flag: a link closing late
	                               sets done */
	bool pinned;
	uint8_t pin[32];
	/* 2 */
	uint8_t keys[FDISC_MAX_KEYS][32];
	size_t nkeys;
	bool keys_known;
	/* 3-5 */
	struct net_conn *c;
	bool opened, answered, closed;
	int close_err;
	uint8_t remote[32];
	struct msg ans;             /* fixed fields only */
	char detail[256];
	int step;                   /* which async step is waiting */
	bool done;
};

static void
doc_line(struct doc *d, bool ok, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
doc_line(struct doc *d, bool ok, const char *what, const char *fmt, ...)
{
	va_list ap;

	printf("%s %-6s ", ok ? "ok  " : "FAIL", what);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (!ok)
		d->fails++;
}

static void
doc_skip(const char *what, const char *why)
{
	printf("--   %-6s not checked: %s\n", what, why);
}

static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
fp_hex(const uint8_t k[32], char out[17])
{
	static const char h[] = "0123456789abcdef";
	int i;

	for (i = 0; i < 8; i++) {
		out[2 * i] = h[k[i] >> 4];
		out[2 * i + 1] = h[k[i] & 15];
	}
	out[16] = '\0';
}

/* Waits (running the loop) until flag is set or the deadline passes. */
static bool
doc_wait(struct doc *d, const bool *flag)
{
	uint64_t end = uv_now(&d->loop) + DOC_TIMEOUT_MS;

	while (!*flag) {
		uv_update_time(&d->loop);
		if (uv_now(&d->loop) >= end)
			return false;
		uv_run(&d->loop, UV_RUN_ONCE);
	}
	return true;
}

static void
lookup_cb(void *arg, int err, const struct dns_target *t, size_t n,
    unsigned flags, const char *detail)
{
	struct doc *d = arg;

	if (err != 0 || n == 0) {
		if (err == TERN_ENOSERVICE)
			doc_line(d, false, "where", "%s says it does not "
			    "federate (SRV _tern-fed._tcp.%s has target "
			    "\".\"): remove that record to federate",
			    d->domain, d->domain);
		else
			doc_line(d, false, "where", "no SRV _tern-fed._tcp.%s "
			    "and no A/AAAA for %s (%s%s%s): publish the SRV "
			    "record `ternd dns-records` prints on %s's node",
			    d->domain, d->domain, tern_strerror(err != 0 ?
			    err : TERN_ENOTFOUND), detail[0] ? ": " : "",
			    detail, d->domain);
	} else {
		d->have_target = true;
		snprintf(d->host, sizeof(d->host), "%s", t[0].addr);
		d->port = t[0].port;
		d->ntg = n < DOC_TARGETS_MAX ? n : DOC_TARGETS_MAX;
		memcpy(d->tg, t, d->ntg * sizeof(t[0]));
		if (flags & FDISC_FALLBACK)
			doc_line(d, true, "where", "no SRV _tern-fed._tcp.%s; "
			    "using %s's address %s on the standard port %u "
			    "(publish the SRV record to choose the port)",
			    d->domain, d->domain, d->host, d->port);
		else
			doc_line(d, true, "where", "SRV _tern-fed._tcp.%s -> "
			    "%s:%u (%s)%s", d->domain, t[0].host, d->port,
			    d->host, (flags & FDISC_STALE) ? ", stale: DNS "
			    "is failing" : "");
	}
	d->done = true;
}

static void
keys_cb(void *arg, int err, const uint8_t (*keys)[FDISC_KEY_LEN], size_t n,
    unsigned flags, const char *detail)
{
	struct doc *d = arg;
	size_t i;

	if (err != 0 || n == 0) {
		doc_line(d, false, "keys", "no usable TXT _tern-key.%s (%s%s%s): "
		    "publish the TXT record `ternd dns-records` prints on %s's "
		    "node", d->domain, tern_strerror(err != 0 ? err :
		    TERN_ENOTFOUND), detail[0] ? ": " : "", detail,
		    d->domain);
	} else {
		d->keys_known = true;
		d->nkeys = n < FDISC_MAX_KEYS ? n : FDISC_MAX_KEYS;
		for (i = 0; i < d->nkeys; i++)
			memcpy(d->keys[i], keys[i], 32);
		doc_line(d, true, "keys", "TXT _tern-key.%s publishes %zu "
		    "key(s)", d->domain, d->nkeys);
	}
	d->done = true;
}

static void
c_open(struct net_conn *c)
{
	struct doc *d = *(struct doc **)net_conn_data(c);

	if (c != d->c)
		return; /* an earlier probe's connection */
	memcpy(d->remote, chan_remote_key(&c->chan), 32);
	d->opened = true;
	d->done = true;
}

static int
c_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct doc *d = *(struct doc **)net_conn_data(c);
	struct msg m;

	if (c != d->c)
		return 0;
	if (msg_decode(buf, len, &m) != 0)
		return TERN_EFIELD;
	d->ans.type = m.type;
	if (m.type == MSG_FED_WELCOME)
		d->ans.u.fed_welcome.time_ms = m.u.fed_welcome.time_ms;
	if (m.type == MSG_ERROR) {
		d->ans.u.error.code = m.u.error.code;
		snprintf(d->detail, sizeof(d->detail), "%.*s",
		    (int)m.u.error.detail.len, m.u.error.detail.p);
	}
	d->answered = true;
	d->done = true;
	return 0;
}

static void
c_closed(struct net_conn *c, int err)
{
	struct doc *d = *(struct doc **)net_conn_data(c);

	if (c != d->c)
		return;
	d->closed = true;
	d->close_err = err;
	d->c = NULL;
	d->done = true;
}

static const struct net_conn_cbs c_cbs = {
	.open = c_open, .message = c_message, .closed = c_closed,
};

/* check_link: 3 (reach), 4 (key), 5 (hello). */
static void
check_link(struct doc *d)
{
	struct msg m = {.type = MSG_FED_HELLO, .req = 1};
	uint8_t buf[1024];
	size_t n, i;
	bool known = false;
	char fp[17];
	int r;

	/* XX: learn whatever key the node holds, then judge it. */
	r = net_connect(&d->nl, d->host, d->port, CHAN_KIND_FEDERATION,
	    CHAN_XX, d->priv, NULL, NULL, MSG_MAX, &c_cbs, sizeof(struct doc *),
	    &d->c);
	if (r != 0) {
		doc_line(d, false, "reach", "cannot connect to %s:%u: %s",
		    d->host, d->port, tern_strerror(r));
		doc_skip("key", "no connection");
		doc_skip("hello", "no connection");
		return;
	}
	*(struct doc **)net_conn_data(d->c) = d;
	d->done = false;
	(void)doc_wait(d, &d->done);
	if (!d->opened) {
		doc_line(d, false, "reach", "no Noise handshake with %s:%u "
		    "(%s): is a ternd with [federation] listen on that port, "
		    "and open in the firewall?", d->host, d->port,
		    d->closed ? tern_strerror(d->close_err) : "timed out");
		doc_skip("key", "no handshake");
		doc_skip("hello", "no handshake");
		if (d->c != NULL)
			net_conn_abort(d->c, TERN_ETIMEOUT);
		return;
	}
	doc_line(d, true, "reach", "%s:%u answers the federation handshake",
	    d->host, d->port);
	fp_hex(d->remote, fp);
	if (d->pinned) {
		known = sodium_memcmp(d->pin, d->remote, 32) == 0;
		if (known)
			doc_line(d, true, "key", "the node's key %s... is the "
			    "one pinned in [federation] peers", fp);
		else
			doc_line(d, false, "key", "the node's key %s... is not "
			    "the one pinned for %s in [federation] peers: fix "
			    "the pin (its node prints its key with `ternd "
			    "dns-records`)", fp, d->domain);
	} else if (d->keys_known) {
		for (i = 0; i < d->nkeys; i++)
			known |= sodium_memcmp(d->keys[i], d->remote, 32) == 0;
		if (known)
			doc_line(d, true, "key", "the node's key %s... is "
			    "published in TXT _tern-key.%s", fp, d->domain);
		else
			doc_line(d, false, "key", "key mismatch: the node at "
			    "%s:%u holds %s..., which TXT _tern-key.%s does "
			    "not list: publish that node's key record (or "
			    "the SRV points at the wrong node)", d->host,
			    d->port, fp, d->domain);
	} else {
		doc_skip("key", "no published or pinned key to compare");
	}
	m.u.fed_hello.domain.p = d->ours;
	m.u.fed_hello.domain.len = strlen(d->ours);
	m.u.fed_hello.to_domain.p = d->domain;
	m.u.fed_hello.to_domain.len = strlen(d->domain);
	m.u.fed_hello.time_ms = wall_ms();
	if (d->c == NULL || msg_encode(&m, buf, sizeof(buf), &n) != 0 ||
	    net_conn_send(d->c, buf, n) != 0) {
		doc_line(d, false, "hello", "the link closed before FED_HELLO");
		return;
	}
	d->done = false;
	(void)doc_wait(d, &d->done);
	if (!d->answered) {
		doc_line(d, false, "hello", "no answer to FED_HELLO (%s)",
		    d->closed ? tern_strerror(d->close_err) : "timed out");
	} else if (d->ans.type == MSG_FED_WELCOME) {
		/* Their clock at WELCOME against ours at HELLO and now:
		 * the skew is at most what the round trip cannot explain. */
		uint64_t now = wall_ms(), t = d->ans.u.fed_welcome.time_ms;
		uint64_t sent = m.u.fed_hello.time_ms;
		uint64_t skew = t < sent ? sent - t : t > now ? t - now : 0;
		doc_line(d, true, "hello", "%s accepts links from %s",
		    d->domain, d->ours);
		if (skew > DOC_SKEW_MAX_MS)
			doc_line(d, false, "clock", "%s's clock is %llu s off "
			    "ours: run NTP on both nodes", d->domain,
			    (unsigned long long)(skew / 1000));
		else
			doc_line(d, true, "clock", "clocks agree within %llu "
			    "ms", (unsigned long long)skew);
	} else if (d->ans.type == MSG_ERROR) {
		int code = -(int)d->ans.u.error.code;
		if (code == TERN_EAUTH)
			doc_line(d, false, "hello", "%s refuses our node's key "
			    "for %s (%s): publish our TXT _tern-key.%s (see "
			    "`ternd dns-records`) or have them pin it", d->domain,
			    d->ours, d->detail, d->ours);
		else if (code == TERN_EUNREACH)
			doc_line(d, false, "hello", "the node at %s:%u does not "
			    "serve %s (%s): the SRV record points at another "
			    "domain's node", d->host, d->port, d->domain,
			    d->detail);
		else
			doc_line(d, false, "hello", "refused: %s (%s)",
			    tern_strerror(code), d->detail);
	} else {
		doc_line(d, false, "hello", "unexpected answer %s",
		    msg_type_name(d->ans.type));
	}
	if (d->c != NULL)
		net_conn_close(d->c, 0);
}

/* --- 6: backup relays (SPEC.md 13.5) ----------------------------------- */

static void
relays_cb(void *arg, int err, const struct fdisc_relay *rl, size_t n,
    unsigned flags, const char *detail)
{
	struct doc *d = arg;
	char names[512] = "";
	size_t i;

	if (err == TERN_ENOTFOUND) {
		printf("--   relays none: no TXT _tern-relay.%s, so %s has no "
		    "backup relays\n", d->domain, d->domain);
	} else if (err != 0) {
		doc_line(d, false, "relays", "cannot read TXT _tern-relay.%s "
		    "(%s%s%s): is DNS answering?", d->domain,
		    tern_strerror(err), detail[0] ? ": " : "", detail);
	} else {
		d->nrelays = n < FDISC_MAX_RELAYS ? n : FDISC_MAX_RELAYS;
		memcpy(d->relays, rl, d->nrelays * sizeof(rl[0]));
		for (i = 0; i < d->nrelays; i++)
			snprintf(names + strlen(names), sizeof(names) -
			    strlen(names), "%s%s", i ? ", " : "",
			    rl[i].domain);
		doc_line(d, true, "relays", "TXT _tern-relay.%s lists %zu "
		    "relay(s): %s%s", d->domain, d->nrelays, names,
		    (flags & FDISC_STALE) ? " (stale: DNS is failing)" : "");
	}
	d->relays_done = true;
}

/*
 * probe: a link to addr:port (XX, so any key will do), and FED_HELLO
 * for d->domain. *reached if the handshake completed (remote key in
 * d->remote); *answer: 0 WELCOME, a TERN_E* code for an ERROR, 1 for
 * no answer.
 */
static void
probe(struct doc *d, const char *addr, uint16_t port, bool *reached,
    int *answer)
{
	struct msg m = {.type = MSG_FED_HELLO, .req = 1};
	uint8_t buf[1024];
	size_t n;

	*reached = false;
	*answer = 1;
	d->opened = d->answered = d->closed = false;
	d->ans.type = 0;
	if (net_connect(&d->nl, addr, port, CHAN_KIND_FEDERATION, CHAN_XX,
	    d->priv, NULL, NULL, MSG_MAX, &c_cbs, sizeof(struct doc *),
	    &d->c) != 0)
		return;
	*(struct doc **)net_conn_data(d->c) = d;
	d->done = false;
	(void)doc_wait(d, &d->done);
	if (!d->opened) {
		if (d->c != NULL)
			net_conn_abort(d->c, TERN_ETIMEOUT);
		return;
	}
	*reached = true;
	m.u.fed_hello.domain.p = d->ours;
	m.u.fed_hello.domain.len = strlen(d->ours);
	m.u.fed_hello.to_domain.p = d->domain;
	m.u.fed_hello.to_domain.len = strlen(d->domain);
	m.u.fed_hello.time_ms = wall_ms();
	if (d->c != NULL && msg_encode(&m, buf, sizeof(buf), &n) == 0 &&
	    net_conn_send(d->c, buf, n) == 0) {
		d->done = false;
		(void)doc_wait(d, &d->done);
		if (d->answered)
			*answer = d->ans.type == MSG_FED_WELCOME ? 0 :
			    d->ans.type == MSG_ERROR ?
			    -(int)d->ans.u.error.code : TERN_ETYPE;
	}
	if (d->c != NULL)
		net_conn_close(d->c, 0);
}

/* check_relays: 6. */
static void
check_relays(struct doc *d)
{
	bool seen[FDISC_MAX_RELAYS] = {false}, unknown = false;
	size_t i, k;

	if (fdisc_relays(d->disc, d->domain, relays_cb, d) == 0)
		(void)doc_wait(d, &d->relays_done);
	/* Target 0 was checked above as the domain's node. */
	for (i = 1; i < d->ntg; i++) {
		const struct dns_target *t = &d->tg[i];
		bool reached, own = false;
		int answer;
		char fp[17];

		probe(d, t->addr, t->port, &reached, &answer);
		if (!reached) {
			unknown = true;
			doc_line(d, false, "target", "%s:%u (SRV target %s, "
			    "priority %u) does not answer the federation "
			    "handshake: a backup that is down is no backup",
			    t->addr, t->port, t->host, t->priority);
			continue;
		}
		fp_hex(d->remote, fp);
		for (k = 0; k < d->nkeys; k++)
			own |= sodium_memcmp(d->keys[k], d->remote, 32) == 0;
		if (own) {
			doc_line(d, true, "target", "%s:%u holds %s's key %s... "
			    "(another node of %s)", t->addr, t->port,
			    d->domain, fp, d->domain);
			continue;
		}
		for (k = 0; k < d->nrelays; k++)
			if (sodium_memcmp(d->relays[k].key, d->remote, 32) ==
			    0)
				break;
		if (k == d->nrelays) {
			doc_line(d, false, "target", "unauthorized relay: "
			    "%s:%u holds key %s..., which is neither in TXT "
			    "_tern-key.%s nor _tern-relay.%s; publish it in "
			    "_tern-relay.%s or remove the SRV record", t->addr,
			    t->port, fp, d->domain, d->domain, d->domain);
			continue;
		}
		seen[k] = true;
		doc_line(d, true, "target", "%s:%u is %s's authorized relay %s "
		    "(key %s...)", t->addr, t->port, d->domain,
		    d->relays[k].domain, fp);
		if (answer == 0)
			doc_line(d, true, "relay", "%s at %s:%u accepts %s",
			    d->relays[k].domain, t->addr, t->port, d->domain);
		else if (answer == TERN_EUNREACH)
			doc_line(d, false, "relay", "relay %s:%u does not "
			    "accept %s: set relay_for = %s in its [federation] "
			    "section", t->addr, t->port, d->domain, d->domain);
		else if (answer == TERN_EAUTH)
			doc_line(d, false, "relay", "relay %s:%u refuses our "
			    "node's key for %s: it must find our TXT "
			    "_tern-key.%s (see `ternd dns-records`)", t->addr,
			    t->port, d->ours, d->ours);
		else
			doc_line(d, false, "relay", "relay %s:%u: no welcome "
			    "for %s (%s)", t->addr, t->port, d->domain,
			    answer == 1 ? "no answer" :
			    tern_strerror(answer));
	}
	for (k = 0; k < d->nrelays && !unknown; k++)
		if (!seen[k])
			printf("--   relay  %s (key listed in TXT _tern-relay.%s) "
			    "is no SRV target of %s: origins will not use it "
			    "until an SRV record with a lower priority (a "
			    "higher number) points at it\n", d->relays[k].domain,
			    d->domain, d->domain);
}

/* The static route for domain in peers text, if any (see fed.c). */
static bool
doc_static(struct doc *d, const char *peers)
{
	const char *p = peers;
	size_t dl = strlen(d->domain);

	if (peers == NULL || strcmp(peers, "none") == 0)
		return false;
	while (*p != '\0') {
		char item[512], *eq, *slash, *colon;
		size_t n;

		while (*p == ' ' || *p == ',')
			p++;
		n = strcspn(p, ",");
		if (n == 0 || n >= sizeof(item)) {
			p += n;
			continue;
		}
		memcpy(item, p, n);
		item[n] = '\0';
		p += n;
		if ((eq = strchr(item, '=')) == NULL ||
		    (size_t)(eq - item) != dl ||
		    strncasecmp(item, d->domain, dl) != 0)
			continue;
		if ((slash = strchr(eq + 1, '/')) != NULL) {
			char rec[128];
			*slash = '\0';
			snprintf(rec, sizeof(rec), "v=tern1 k=%s", slash + 1);
			d->pinned = fdisc_key_parse(rec, strlen(rec), d->pin) ==
			    0;
		}
		if ((colon = strrchr(eq + 1, ':')) == NULL)
			return false;
		*colon = '\0';
		snprintf(d->host, sizeof(d->host), "%s", eq + 1);
		d->port = (uint16_t)strtoul(colon + 1, NULL, 10);
		d->have_target = true;
		return true;
	}
	return false;
}

static void
doc_closed(void *arg)
{
	(void)arg;
}

int
doctor_run(const struct node_config *cfg, const uint8_t priv[32],
    const char *domain)
{
	struct doc d;
	struct dns_config dc = {0};
	int r;

	memset(&d, 0, sizeof(d));
	d.domain = domain;
	d.ours = cfg->domain;
	memcpy(d.priv, priv, 32);
	if (ident_domain_check(domain, strlen(domain)) != 0) {
		fprintf(stderr, "ternd doctor: '%s' is not a domain\n", domain);
		return 2;
	}
	printf("ternd doctor: can %s federate with %s?\n", cfg->domain,
	    domain);
	if (uv_loop_init(&d.loop) != 0 ||
	    net_loop_init(&d.nl, &d.loop, NULL) != 0)
		return 1;
	dc.nameserver = strcmp(cfg->fed_dns, "system") != 0 ? cfg->fed_dns :
	    NULL;
	dc.timeout_ms = 4000;
	if ((r = dns_new(&d.loop, &dc, &d.dns)) != 0 ||
	    (r = fdisc_new(&d.loop, d.dns, NULL, &d.disc)) != 0) {
		fprintf(stderr, "ternd doctor: DNS: %s\n", tern_strerror(r));
		return 1;
	}
	if (doc_static(&d, cfg->fed_peers))
		doc_line(&d, true, "where", "static route in [federation] "
		    "peers: %s:%u%s", d.host, d.port, d.pinned ?
		    ", key pinned" : "");
	else if (fdisc_lookup(d.disc, domain, lookup_cb, &d) == 0)
		(void)doc_wait(&d, &d.done);
	d.done = false;
	if (!d.pinned && fdisc_keys(d.disc, domain, keys_cb, &d) == 0)
		(void)doc_wait(&d, &d.done);
	if (d.have_target)
		check_link(&d);
	else {
		doc_skip("reach", "no address to try");
		doc_skip("key", "no address to try");
		doc_skip("hello", "no address to try");
	}
	if (!d.pinned)
		check_relays(&d);
	fdisc_close(d.disc, NULL, NULL);
	dns_close(d.dns, NULL, NULL);
	net_loop_close(&d.nl, doc_closed, NULL);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	(void)uv_loop_close(&d.loop);
	sodium_memzero(d.priv, sizeof(d.priv));
	printf("%s\n", d.fails == 0 ? "all checks passed" :
	    "some checks failed");
	return d.fails == 0 ? 0 : 1;
}
