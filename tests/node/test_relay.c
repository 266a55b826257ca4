/*
 * test_relay.c: backup relays (SPEC.md 13.5) between real ternd processes
 * on loopback, found through a real DNS server (dnsmasq): one.test (the
 * origin, alice), two.test (the home node, bob) and relay.test (a backup
 * relay with relay_for = two.test), with the tern CLI as the users; and a
 * fake node (this process, on the real transport, holding keys the DNS
 * names) for what an honest relay never sends.
 */
#define _GNU_SOURCE /* memmem */
#include <stdarg.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include "ternd_harness.h"
#include "ternd_dnsmasq.h"
#include "fed_harness.h"

#include <sodium.h>
#include <uv.h>

#include "keyfile.h"
#include "msg.h"
#include "net.h"
#include "noise.h"
#include "nodesig.h"
#include "tt_uv.h"

#define NREC 24


static struct fnode O, H, R;   /* origin, home, relay */
static char dns[32];           /* dnsmasq's address */
static char rec[NREC][256];
static int nrec;



/* rnode_init: a federation node that asks our dnsmasq (no static
 * routes). */
static void
rnode_init(struct fnode *n, const char *domain)
{
	fnode_init(n, domain);
	ternd_conf_set(&n->t, "dns_servers", dns);
}

static void
rec_add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
rec_add(const char *fmt, ...)
{
	va_list ap;

	TT_ASSERT(nrec < NREC);
	va_start(ap, fmt);
	vsnprintf(rec[nrec++], sizeof(rec[0]), fmt, ap);
	va_end(ap);
}

/* The records every case publishes: each domain's SRV and key, and
 * two.test's SRV to relay.test's node at a lower priority. */
static void
rec_common(void)
{
	rec_add("--host-record=node.test,127.0.0.1");
	rec_add("--srv-host=_tern-fed._tcp.one.test,node.test,%u,10,0",
	    O.fed_port);
	rec_add("--srv-host=_tern-fed._tcp.two.test,node.test,%u,10,0",
	    H.fed_port);
	rec_add("--srv-host=_tern-fed._tcp.two.test,node.test,%u,20,0",
	    R.fed_port);
	rec_add("--srv-host=_tern-fed._tcp.relay.test,node.test,%u,10,0",
	    R.fed_port);
	rec_add("--txt-record=_tern-key.one.test,v=tern1 k=%s", O.key);
	rec_add("--txt-record=_tern-key.two.test,v=tern1 k=%s", H.key);
	rec_add("--txt-record=_tern-key.relay.test,v=tern1 k=%s", R.key);
}

static void
dns_start(void)
{
	const char *recs[NREC + 1];
	int i;

	for (i = 0; i < nrec; i++)
		recs[i] = rec[i];
	recs[i] = NULL;
	dm_start((uint16_t)atoi(strchr(dns, ':') + 1), recs);
}

/* The three nodes, made (not started); DNS port chosen. */
static void
trio_init(void)
{
	nrec = 0;
	snprintf(dns, sizeof(dns), "127.0.0.1:%u", ternd_free_port());
	rnode_init(&O, "one.test");
	rnode_init(&H, "two.test");
	rnode_init(&R, "relay.test");
	ternd_conf_set(&R.t, "relay_for", "two.test");
	snprintf(pdir, sizeof(pdir), "%s/profiles", O.t.dir);
	TT_EQ(mkdir(pdir, 0700), 0);
}

static void
trio_end(void)
{
	if (O.t.pid != 0)
		ternd_stop(&O.t);
	if (H.t.pid != 0)
		ternd_stop(&H.t);
	if (R.t.pid != 0)
		ternd_stop(&R.t);
	dm_stop();
	ternd_destroy(&O.t);
	ternd_destroy(&H.t);
	ternd_destroy(&R.t);
}






static void
send_ok(const char *who, const char *to, const char *text)
{
	struct run r;

	TERN(&r, who, "send", to, text);
	ok(&r);
	TT_EQ(strlen(r.out), 33);
	free(r.out);
}



/* metric_wait: until the metric is want (it is refreshed every second). */
static void
metric_wait(const struct fnode *n, const char *name, unsigned long long want,
    uint32_t max_ms)
{
	uint64_t end = ternd_now_ms() + max_ms;
	unsigned long long v;

	while ((v = metric_of(n, name)) != want) {
		if (ternd_now_ms() >= end)
			tt_fail(__FILE__, __LINE__, "%s of %s stays %llu, want "
			    "%llu", name, n->domain, v, want);
		ternd_nap(100);
	}
}

/* log_wait: until the node's log holds text. */
static void
log_wait(const struct fnode *n, const char *text, uint32_t max_ms)
{
	uint64_t end = ternd_now_ms() + max_ms;

	for (;;) {
		char *l = tt_read_file(n->t.log, NULL);
		bool found;
		TT_ASSERT(l != NULL);
		found = strstr(l, text) != NULL;
		free(l);
		if (found)
			return;
		if (ternd_now_ms() >= end) {
			ternd_log_tail(&n->t, 4000);
			tt_fail(__FILE__, __LINE__, "no '%s' in %s's log after "
			    "%u ms", text, n->domain, max_ms);
		}
		ternd_nap(100);
	}
}

/* Both users, and one message each way while all is up: alice then has
 * a session with bob's device, so she can write to him while his node
 * is down (the client sends to the devices it has sessions with). */
static void
users_and_warmup(void)
{
	struct run r;

	TERN(&r, "alice", "register", "alice@one.test", "--server", O.server);
	ok(&r);
	free(r.out);
	TERN(&r, "bob", "register", "bob@two.test", "--server", H.server);
	ok(&r);
	free(r.out);
	send_ok("alice", "bob@two.test", "warm up");
	free(inbox_wait("bob", "warm up", 20000));
}

static int
doctor(struct fnode *n, const char *domain, char *out, size_t cap)
{
	const char *args[] = {"doctor", domain, NULL};
	int st = ternd_cli(&n->t, out, cap, args);

	fprintf(stderr, "--- ternd doctor %s (exit %d):\n%s", domain, st, out);
	return st;
}

/* Home down: the origin hands its envelopes to the authorized relay and
 * forgets them; the relay holds them; the home node, back, says hello to
 * its relay, which hands them over at once; bob gets each exactly once,
 * in order; the relay's queue empties. Then doctor: all well, and a
 * relay without relay_for is named. */
TT_CASE(relay__holds_while_home_down_hands_over_once)
{
	static const char *const texts[] = {"relayed one", "relayed two",
	    "relayed three", "relayed four"};
	char *all, out[16384];
	const char *prev = NULL;
	size_t i;

	trio_init();
	rec_common();
	rec_add("--txt-record=_tern-relay.two.test,v=tern1 k=%s d=relay.test",
	    R.key);
	dns_start();
	ternd_start(&O.t);
	ternd_start(&H.t);
	ternd_start(&R.t);
	users_and_warmup();

	ternd_stop(&H.t);
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		send_ok("alice", "bob@two.test", texts[i]);
	/* At the relay, durably; gone from the origin. */
	metric_wait(&R, "tern_fed_queued", 4, 20000);
	metric_wait(&O, "tern_fed_queued", 0, 20000);
	log_wait(&O, "is two.test's backup relay", 1000);

	ternd_start(&H.t);
	all = inbox_wait("bob", texts[3], 30000);
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		const char *at = strstr(all, texts[i]);
		TT_EQ(count_of(all, texts[i]), 1);
		TT_ASSERT(at != NULL && (prev == NULL || prev < at));
		prev = at;
	}
	free(all);
	metric_wait(&R, "tern_fed_queued", 0, 20000);
	/* Nothing more comes later (exactly once). */
	all = inbox_wait("bob", "", 1000);
	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		TT_EQ(count_of(all, texts[i]), 0);
	free(all);
	/* With home up the origin goes straight there again. */
	send_ok("alice", "bob@two.test", "direct again");
	free(inbox_wait("bob", "direct again", 20000));

	/* doctor: home and relay as they should be. */
	TT_EQ(doctor(&O, "two.test", out, sizeof(out)), 0);
	TT_ASSERT(strstr(out, "ok   relays TXT _tern-relay.two.test lists 1")
	    != NULL);
	TT_ASSERT(strstr(out, "is two.test's authorized relay relay.test")
	    != NULL);
	TT_ASSERT(strstr(out, "accepts two.test") != NULL);
	/* A relay that does not have relay_for. */
	ternd_stop(&R.t);
	ternd_conf_set(&R.t, "relay_for", "none");
	ternd_start(&R.t);
	TT_EQ(doctor(&O, "two.test", out, sizeof(out)), 1);
	TT_ASSERT(strstr(out, "does not accept two.test: set relay_for = "
	    "two.test in its [federation] section") != NULL);
	trio_end();
}

/* --- a fake node: this process on the real transport ------------------ */









/* fk_link: a link as domain to the node at port, with our key priv. */
static void
fk_link(const uint8_t priv[32], uint16_t port, const char *domain,
    const char *to)
{
	struct msg m = {.type = MSG_FED_HELLO, .req = 1};
	uint64_t end = ternd_now_ms() + 10000;

	if (F.c != NULL)
		net_conn_close(F.c, 0);
	F.c = NULL;
	F.open = F.closed = false;
	F.answers = 0;
	TT_OK(net_connect(&F.nl, "127.0.0.1", port, CHAN_KIND_FEDERATION,
	    CHAN_XX, priv, NULL, NULL, MSG_MAX, &fk_cbs, 0, &F.c));
	while (!F.open && !F.closed) {
		uv_run(&F.loop, UV_RUN_NOWAIT);
		TT_ASSERT(ternd_now_ms() < end);
		ternd_nap(2);
	}
	TT_ASSERT(F.open);
	m.u.fed_hello.domain.p = domain;
	m.u.fed_hello.domain.len = strlen(domain);
	m.u.fed_hello.to_domain.p = to;
	m.u.fed_hello.to_domain.len = strlen(to);
	m.u.fed_hello.time_ms = 1;
	fk_send(&m);
	fk_wait_answer(1);
	TT_EQ(F.type, MSG_FED_WELCOME);
}

static const char *const fk_payload = "relayed";

/* renv: an envelope from from to to; signed by sign_key if not NULL
 * (else sig random); then alter (0 none, 1 payload, 2 from) after
 * signing. Sends it with req, waits for its answer. */
static void
renv(uint32_t req, const char *from, const char *to, const uint8_t *sign_key,
    int alter)
{
	struct msg m = {.type = MSG_FED_RENV, .req = req};
	struct msg_fed_env *e = &m.u.fed_renv.env;
	static uint8_t pay[16];

	randombytes_buf(e->id, MSG_ID_LEN);
	e->from.p = from;
	e->from.len = strlen(from);
	e->from_device = 1;
	e->to.p = to;
	e->to.len = strlen(to);
	e->to_device = 1;
	e->class = MSG_CLASS_MESSAGE;
	e->timestamp_ms = 1700000000000ull;
	e->received_ms = 1700000000001ull;
	memcpy(pay, fk_payload, strlen(fk_payload));
	e->payload.p = pay;
	e->payload.len = strlen(fk_payload);
	if (sign_key != NULL)
		TT_OK(nodesig_env_sign(sign_key, e, m.u.fed_renv.sig));
	else
		randombytes_buf(m.u.fed_renv.sig, MSG_SIG_LEN);
	if (alter == 1)
		pay[0] ^= 1;
	if (alter == 2) {
		e->from.p = "mallory@one.test";
		e->from.len = strlen(e->from.p);
	}
	fk_send(&m);
	fk_wait_answer(F.answers + 1);
}

/* The origin's node key, read from its key file (the test plays a relay
 * that got a genuine envelope from it). */
static void
origin_priv(uint8_t priv[32])
{
	char path[TERND_PATH + 16], err[256];
	uint8_t pub[32];

	snprintf(path, sizeof(path), "%s/node.key", O.t.dir);
	TT_OK(keyfile_load(path, priv, pub, err, sizeof(err)));
}

/*
 * The home node refuses what a relay may not do: an envelope altered
 * after the origin signed it, one with a forged signature, one signed by
 * the relay itself, one from an unauthorized relay; a genuine one gets
 * past the checks (to the 7.2 ones). The origin does not hand envelopes
 * to a relay two.test does not list; doctor names it.
 */
TT_CASE(relay__spoofing_and_unauthorized_relays_refused)
{
	uint8_t okpriv[32], okpub[32], badpriv[32], badpub[32], opriv[32];
	char okb64[64], badb64[64], out[16384];
	uint32_t req = 10;

	TT_ASSERT(sodium_init() >= 0);
	noise_keypair_generate(okpriv, okpub);
	noise_keypair_generate(badpriv, badpub);
	sodium_bin2base64(okb64, sizeof(okb64), okpub, 32,
	    sodium_base64_VARIANT_ORIGINAL);
	sodium_bin2base64(badb64, sizeof(badb64), badpub, 32,
	    sodium_base64_VARIANT_ORIGINAL);
	trio_init();
	rec_common();
	/* two.test authorizes the fake ok.test only: relay.test, though an
	 * SRV target of two.test with relay_for set, is not authorized. */
	rec_add("--txt-record=_tern-relay.two.test,v=tern1 k=%s d=ok.test",
	    okb64);
	rec_add("--txt-record=_tern-key.ok.test,v=tern1 k=%s", okb64);
	rec_add("--txt-record=_tern-key.bad.test,v=tern1 k=%s", badb64);
	dns_start();
	ternd_start(&O.t);
	ternd_start(&H.t);
	ternd_start(&R.t);
	users_and_warmup();
	origin_priv(opriv);
	TT_OK(uv_loop_init(&F.loop));
	TT_OK(net_loop_init(&F.nl, &F.loop, NULL));

	/* An authorized relay (ok.test) that alters or forges. */
	fk_link(okpriv, H.fed_port, "ok.test", "two.test");
	renv(++req, "alice@one.test", "nobody@two.test", opriv, 0);
	TT_EQ(F.code, -TERN_ENOUSER); /* genuine: past every relay check */
	renv(++req, "alice@one.test", "bob@two.test", opriv, 1);
	TT_EQ(F.code, -TERN_EAUTH);
	renv(++req, "alice@one.test", "bob@two.test", opriv, 2);
	TT_EQ(F.code, -TERN_EAUTH);
	renv(++req, "alice@one.test", "bob@two.test", NULL, 0);
	TT_EQ(F.code, -TERN_EAUTH);
	renv(++req, "alice@one.test", "bob@two.test", okpriv, 0);
	TT_EQ(F.code, -TERN_EAUTH);
	TT_ASSERT(!F.closed);
	/* Unsigned, from a domain the link did not prove: as before. */
	{
		struct msg m = {.type = MSG_FED_ENV, .req = ++req};
		m.u.fed_env.from.p = "alice@one.test";
		m.u.fed_env.from.len = 14;
		m.u.fed_env.from_device = 1;
		m.u.fed_env.to.p = "bob@two.test";
		m.u.fed_env.to.len = 12;
		m.u.fed_env.to_device = 1;
		m.u.fed_env.class = MSG_CLASS_MESSAGE;
		fk_send(&m);
		fk_wait_answer(F.answers + 1);
		TT_EQ(F.code, -TERN_EAUTH);
	}
	/* An unauthorized relay, with a genuine envelope. */
	fk_link(badpriv, H.fed_port, "bad.test", "two.test");
	renv(++req, "alice@one.test", "bob@two.test", opriv, 0);
	TT_EQ(F.code, -TERN_EAUTH);
	log_wait(&H, "unauthorized relay", 5000);
	log_wait(&H, "bad origin signature", 1000);
	sodium_memzero(opriv, sizeof(opriv));
	if (F.c != NULL)
		net_conn_close(F.c, 0);
	net_loop_close(&F.nl, NULL, NULL);
	tt_uv_close(&F.loop);
	/* bob got none of them. */
	{
		char *all = inbox_wait("bob", "", 1000);
		TT_EQ(count_of(all, fk_payload), 0);
		TT_EQ(count_of(all, "\"from\""), 0);
		free(all);
	}

	/* The origin with two.test down: relay.test answers, but its key
	 * is not in _tern-relay.two.test: nothing handed to it. */
	ternd_stop(&H.t);
	send_ok("alice", "bob@two.test", "held at the origin");
	log_wait(&O, "unauthorized relay: ", 20000);
	metric_wait(&O, "tern_fed_queued", 1, 5000);
	TT_EQ(metric_of(&R, "tern_fed_queued"), 0);
	TT_EQ(doctor(&O, "two.test", out, sizeof(out)), 1);
	TT_ASSERT(strstr(out, "FAIL target unauthorized relay: 127.0.0.1:")
	    != NULL);
	TT_ASSERT(strstr(out, "neither in TXT _tern-key.two.test nor "
	    "_tern-relay.two.test") != NULL);
	/* Home back: it arrives from the origin itself, once. */
	ternd_start(&H.t);
	{
		char *all = inbox_wait("bob", "held at the origin", 40000);
		TT_EQ(count_of(all, "held at the origin"), 1);
		free(all);
	}
	metric_wait(&O, "tern_fed_queued", 0, 10000);
	trio_end();
}
