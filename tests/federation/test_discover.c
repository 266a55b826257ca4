/*
 * test_discover.c: federation discovery (federation/discover.c) against a
 * dnsmasq the test starts on 127.0.0.1 and stops by PID, with an injected
 * clock so that cache expiry needs no waiting; and the key trust rules
 * (federation/keytrust.c). Only loopback is ever asked.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <sodium.h>

#include "discover.h"
#include "keytrust.h"
#include "tt.h"
#include "tt_uv.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

/* Two keys (bytes 0x11.. and 0x22..), as base64. */
#define KEY1_B64 "ERERERERERERERERERERERERERERERERERERERERERE="
#define KEY2_B64 "IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI="

static const char *const dm_records[] = {
	"--local-ttl=300",
	/* Two priorities, the higher listed first. */
	"--srv-host=_tern-fed._tcp.a.test,n1.a.test,7381,10,0",
	"--srv-host=_tern-fed._tcp.a.test,n2.a.test,7382,5,0",
	"--host-record=n1.a.test,127.0.0.21",
	"--host-record=n2.a.test,127.0.0.22",
	/* No SRV: the domain's own address. */
	"--host-record=fb.test,127.0.0.23,::1",
	/* Does not federate. */
	"--srv-host=_tern-fed._tcp.none.test",
	/* Keys: two good, three that are not key records. */
	"--txt-record=_tern-key.a.test,v=tern1 k=" KEY1_B64,
	"--txt-record=_tern-key.a.test,v=tern1 k=" KEY2_B64 " x=later",
	"--txt-record=_tern-key.a.test,v=tern1 k=c2hvcnQ=",
	"--txt-record=_tern-key.a.test,v=tern2 k=" KEY1_B64,
	"--txt-record=_tern-key.a.test,hello",
	/* Only bad records. */
	"--txt-record=_tern-key.bad.test,v=tern1",
	/* Backup relays: two good (one repeated), two that are not relay
	 * records (no d=, two d=). */
	"--txt-record=_tern-relay.a.test,v=tern1 k=" KEY1_B64 " d=r1.test",
	"--txt-record=_tern-relay.a.test,v=tern1 d=R2.Test. k=" KEY2_B64,
	"--txt-record=_tern-relay.a.test,v=tern1 k=" KEY2_B64 " d=r2.test",
	"--txt-record=_tern-relay.a.test,v=tern1 k=" KEY1_B64,
	"--txt-record=_tern-relay.a.test,v=tern1 k=" KEY1_B64 " d=a.test "
	    "d=b.test",
};

static pid_t dm_pid = -1;
static char dm_server[32];
static uint64_t fake_now = 1000000;

static uint64_t
now_fn(void *arg)
{
	(void)arg;
	return fake_now;
}

static uint16_t
free_port(void)
{
	return tt_free_port();
}

static void
dm_stop(void)
{
	if (dm_pid <= 0)
		return;
	kill(dm_pid, SIGTERM);
	while (waitpid(dm_pid, NULL, 0) < 0 && errno == EINTR)
		;
	dm_pid = -1;
}

static void
dm_spawn(uint16_t port)
{
	char portarg[32];
	const char *argv[64];
	size_t n = 0;

	snprintf(portarg, sizeof(portarg), "--port=%u", port);
	argv[n++] = DNSMASQ;
	argv[n++] = "--no-daemon";
	argv[n++] = "--conf-file=/dev/null";
	argv[n++] = "--no-resolv";
	argv[n++] = "--no-hosts";
	argv[n++] = "--listen-address=127.0.0.1";
	argv[n++] = "--bind-interfaces";
	argv[n++] = portarg;
	argv[n++] = "--pid-file=";
	argv[n++] = "--local=/test/";
	argv[n++] = "--log-facility=/dev/null";
	for (size_t i = 0; i < sizeof(dm_records) / sizeof(dm_records[0]); i++)
		argv[n++] = dm_records[i];
	argv[n] = NULL;
	dm_pid = fork();
	TT_ASSERT(dm_pid >= 0);
	if (dm_pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		execv(DNSMASQ, (char *const *)argv);
		_exit(127);
	}
}

struct srvres {
	int calls; /* callbacks */
	int err;   /* last error */
};

static void
probe_cb(void *arg, int err, const struct dns_target *t, size_t n,
    const char *detail)
{
	struct srvres *r = arg;

	r->calls++;
	r->err = err;
}

/* dm_start: dnsmasq on a free port, answering before we go on. */
static void
dm_start(void)
{
	TT_ASSERT(access(DNSMASQ, X_OK) == 0);
	atexit(dm_stop);
	for (int attempt = 0; attempt < 3; attempt++) {
		uint16_t port = free_port();

		snprintf(dm_server, sizeof(dm_server), "127.0.0.1:%u", port);
		dm_spawn(port);
		for (int i = 0; i < 100; i++) {
			struct dns_config cfg = { .nameserver = dm_server,
			    .timeout_ms = 300, .tries = 1 };
			struct srvres r = { 0 };
			uv_loop_t loop;
			struct dns *dns;
			int st;

			if (waitpid(dm_pid, &st, WNOHANG) == dm_pid) {
				dm_pid = -1;
				break;
			}
			TT_OK(uv_loop_init(&loop));
			TT_OK(dns_new(&loop, &cfg, &dns));
			TT_OK(dns_srv(dns, FDISC_SERVICE, "a.test", probe_cb, &r));
			while (r.calls == 0)
				uv_run(&loop, UV_RUN_ONCE);
			dns_close(dns, NULL, NULL);
			tt_uv_close(&loop);
			if (r.err == 0)
				return;
			uv_sleep(20);
		}
		dm_stop();
	}
	tt_fail(__FILE__, __LINE__, "dnsmasq did not start answering");
}

/* --- a fixture: loop, resolver, discovery ------------------------------ */

struct fx {
	uv_loop_t loop;      /* the loop */
	struct dns *dns;     /* asks dnsmasq */
	struct fdisc *fd;    /* under test */
};

static void
fx_open(struct fx *f)
{
	struct dns_config dc = { .nameserver = dm_server, .timeout_ms = 1000,
	    .tries = 1 };
	struct fdisc_config fc = { .now_ms = now_fn };

	TT_OK(uv_loop_init(&f->loop));
	TT_OK(dns_new(&f->loop, &dc, &f->dns));
	TT_OK(fdisc_new(&f->loop, f->dns, &fc, &f->fd));
}

static int fx_closed;

static void
fx_close_cb(void *arg)
{
	fx_closed++;
}

static void
fx_close(struct fx *f)
{
	fx_closed = 0;
	fdisc_close(f->fd, fx_close_cb, NULL);
	dns_close(f->dns, NULL, NULL);
	tt_uv_close(&f->loop);
	TT_EQ(fx_closed, 1);
}

struct lres {
	int calls;                            /* callbacks */
	int err;                              /* last error */
	size_t n;                             /* targets or keys */
	unsigned flags;                       /* FDISC_* */
	struct dns_target t[DNS_MAX_TARGETS]; /* copied targets */
	uint8_t keys[FDISC_MAX_KEYS][FDISC_KEY_LEN]; /* copied keys */
	char detail[DNS_DETAIL_MAX];          /* copied text */
};

static void
lres_cb(void *arg, int err, const struct dns_target *t, size_t n,
    unsigned flags, const char *detail)
{
	struct lres *r = arg;

	TT_ASSERT(detail != NULL);
	TT_ASSERT(n <= DNS_MAX_TARGETS);
	r->calls++;
	r->err = err;
	r->n = n;
	r->flags = flags;
	if (n)
		memcpy(r->t, t, n * sizeof(*t));
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

static void
kres_cb(void *arg, int err, const uint8_t (*keys)[FDISC_KEY_LEN], size_t n,
    unsigned flags, const char *detail)
{
	struct lres *r = arg;

	TT_ASSERT(detail != NULL);
	TT_ASSERT(n <= FDISC_MAX_KEYS);
	r->calls++;
	r->err = err;
	r->n = n;
	r->flags = flags;
	if (n)
		memcpy(r->keys, keys, n * FDISC_KEY_LEN);
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

/* lookup: one fdisc_lookup, run to its answer; never answered inline. */
static void
lookup(struct fx *f, const char *domain, struct lres *r)
{
	memset(r, 0, sizeof(*r));
	TT_OK(fdisc_lookup(f->fd, domain, lres_cb, r));
	TT_EQ(r->calls, 0);
	while (r->calls == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	TT_EQ(r->calls, 1);
}

static void
keys(struct fx *f, const char *domain, struct lres *r)
{
	memset(r, 0, sizeof(*r));
	TT_OK(fdisc_keys(f->fd, domain, kres_cb, r));
	TT_EQ(r->calls, 0);
	while (r->calls == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	TT_EQ(r->calls, 1);
}

/* --- discovery ----------------------------------------------------------- */

TT_CASE(fdisc__lookup__srv_priority_order)
{
	struct fx f;
	struct lres r;

	dm_start();
	fx_open(&f);
	lookup(&f, "A.test.", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	TT_EQ(r.flags, FDISC_FROM_SRV);
	TT_ASSERT(strcmp(r.t[0].host, "n2.a.test") == 0);
	TT_EQ(r.t[0].port, 7382);
	TT_ASSERT(strcmp(r.t[0].addr, "127.0.0.22") == 0);
	TT_ASSERT(strcmp(r.t[1].host, "n1.a.test") == 0);
	TT_EQ(r.t[1].port, 7381);
	TT_EQ(r.t[1].ttl, 300);
	fx_close(&f);
}

TT_CASE(fdisc__lookup__no_srv_falls_back_to_addresses)
{
	struct fx f;
	struct lres r;
	bool v4 = false, v6 = false;

	dm_start();
	fx_open(&f);
	lookup(&f, "fb.test", &r);
	TT_OK(r.err);
	TT_EQ(r.flags, FDISC_FALLBACK);
	TT_EQ(r.n, 2);
	for (size_t i = 0; i < r.n; i++) {
		TT_ASSERT(strcmp(r.t[i].host, "fb.test") == 0);
		TT_EQ(r.t[i].port, FDISC_DEFAULT_PORT);
		v4 |= strcmp(r.t[i].addr, "127.0.0.23") == 0;
		v6 |= strcmp(r.t[i].addr, "::1") == 0;
	}
	TT_ASSERT(v4 && v6);
	TT_EQ(fdisc_queries(f.fd), 2); /* SRV, then A/AAAA */
	fx_close(&f);
}

TT_CASE(fdisc__lookup__dot_target_is_enoservice)
{
	struct fx f;
	struct lres r;

	dm_start();
	fx_open(&f);
	lookup(&f, "none.test", &r);
	TT_ERR(r.err, TERN_ENOSERVICE);
	TT_EQ(fdisc_queries(f.fd), 1); /* no fallback */
	lookup(&f, "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	TT_EQ(r.n, 0);
	fx_close(&f);
}

TT_CASE(fdisc__lookup__cache_hit_sends_nothing)
{
	struct fx f;
	struct lres r;

	dm_start();
	fx_open(&f);
	lookup(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(fdisc_queries(f.fd), 1);
	dm_stop(); /* a query now would fail */
	fake_now += 299 * 1000;
	lookup(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	TT_EQ(r.flags, FDISC_FROM_SRV); /* fresh, not stale */
	TT_EQ(fdisc_queries(f.fd), 1);
	fx_close(&f);
}

TT_CASE(fdisc__lookup__expiry_asks_again)
{
	struct fx f;
	struct lres r;

	dm_start();
	fx_open(&f);
	lookup(&f, "a.test", &r);
	TT_EQ(fdisc_queries(f.fd), 1);
	fake_now += 301 * 1000; /* past the 300 s TTL */
	lookup(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.flags, FDISC_FROM_SRV);
	TT_EQ(fdisc_queries(f.fd), 2);
	fx_close(&f);
}

TT_CASE(fdisc__lookup__negative_cached_briefly)
{
	struct fx f;
	struct lres r;
	uint64_t q;

	dm_start();
	fx_open(&f);
	lookup(&f, "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	q = fdisc_queries(f.fd);
	fake_now += (FDISC_NEG_TTL_S - 1) * 1000;
	lookup(&f, "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	TT_EQ(fdisc_queries(f.fd), q);
	fake_now += 2000;
	lookup(&f, "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	TT_ASSERT(fdisc_queries(f.fd) > q);
	fx_close(&f);
}

TT_CASE(fdisc__lookup__stale_served_while_dns_down)
{
	struct fx f;
	struct lres r;
	uint64_t q;

	dm_start();
	fx_open(&f);
	lookup(&f, "a.test", &r);
	TT_OK(r.err);
	dm_stop();
	fake_now += 400 * 1000; /* expired */
	lookup(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.flags, FDISC_FROM_SRV | FDISC_STALE);
	TT_EQ(r.n, 2);
	TT_ASSERT(strcmp(r.t[0].host, "n2.a.test") == 0);
	TT_ASSERT(strstr(r.detail, "DNS") != NULL);
	/* Within fail_ttl: no new query, still stale. */
	q = fdisc_queries(f.fd);
	fake_now += 1000;
	lookup(&f, "a.test", &r);
	TT_OK(r.err);
	TT_ASSERT(r.flags & FDISC_STALE);
	TT_EQ(fdisc_queries(f.fd), q);
	/* Past the stale limit: the failure itself. */
	fake_now += (uint64_t)FDISC_STALE_MAX_S * 1000;
	lookup(&f, "a.test", &r);
	TT_ASSERT(r.err == TERN_EUNREACH || r.err == TERN_ETIMEOUT);
	TT_EQ(fdisc_queries(f.fd), q + 1);
	/* A domain never seen: the failure. */
	lookup(&f, "fb.test", &r);
	TT_ASSERT(r.err == TERN_EUNREACH || r.err == TERN_ETIMEOUT);
	fx_close(&f);
}

TT_CASE(fdisc__lookup__concurrent_share_one_query)
{
	struct fx f;
	struct lres r[6];
	int done;

	dm_start();
	fx_open(&f);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 6; i++)
		TT_OK(fdisc_lookup(f.fd, i % 2 ? "a.test" : "A.TEST.",
		    lres_cb, &r[i]));
	do {
		uv_run(&f.loop, UV_RUN_ONCE);
		done = 0;
		for (int i = 0; i < 6; i++)
			done += r[i].calls;
	} while (done < 6);
	for (int i = 0; i < 6; i++) {
		TT_EQ(r[i].calls, 1);
		TT_OK(r[i].err);
		TT_EQ(r[i].n, 2);
	}
	TT_EQ(fdisc_queries(f.fd), 1);
	fx_close(&f);
}

TT_CASE(fdisc__lookup__close_cancels_pending)
{
	struct fx f;
	struct lres r1, r2;

	dm_start();
	fx_open(&f);
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	/* No loop turn between the lookups and the close: a fast answer
	 * (dnsmasq on loopback) cannot complete them first. */
	TT_OK(fdisc_lookup(f.fd, "a.test", lres_cb, &r1));
	TT_OK(fdisc_keys(f.fd, "a.test", kres_cb, &r2));
	fdisc_close(f.fd, fx_close_cb, NULL);
	TT_EQ(r1.calls, 1);
	TT_ERR(r1.err, TERN_ECANCELED);
	TT_EQ(r2.calls, 1);
	TT_ERR(r2.err, TERN_ECANCELED);
	TT_ERR(fdisc_lookup(f.fd, "a.test", lres_cb, &r1), TERN_ESTATE);
	fx_closed = 0;
	dns_close(f.dns, NULL, NULL);
	tt_uv_close(&f.loop);
	TT_EQ(fx_closed, 1);
	TT_EQ(r1.calls, 1);
}

TT_CASE(fdisc__lookup__bad_names_einval)
{
	struct dns_config dc = { .nameserver = "127.0.0.1:1" };
	uv_loop_t loop;
	struct dns *dns;
	struct fdisc *fd;
	struct lres r;

	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &dc, &dns));
	TT_OK(fdisc_new(&loop, dns, NULL, &fd));
	TT_ERR(fdisc_lookup(fd, "", lres_cb, &r), TERN_EINVAL);
	TT_ERR(fdisc_lookup(fd, "a..b", lres_cb, &r), TERN_EINVAL);
	TT_ERR(fdisc_lookup(fd, "a b", lres_cb, &r), TERN_EINVAL);
	TT_ERR(fdisc_keys(fd, NULL, kres_cb, &r), TERN_EINVAL);
	TT_ERR(fdisc_lookup(fd, "a.test", NULL, &r), TERN_EINVAL);
	fdisc_close(fd, NULL, NULL);
	dns_close(dns, NULL, NULL);
	tt_uv_close(&loop);
}

/* --- keys ------------------------------------------------------------------ */

TT_CASE(fdisc__keys__parsed_bad_ignored_cached)
{
	struct fx f;
	struct lres r;
	uint8_t k1[32], k2[32];
	bool s1 = false, s2 = false;

	memset(k1, 0x11, sizeof(k1));
	memset(k2, 0x22, sizeof(k2));
	dm_start();
	fx_open(&f);
	keys(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	TT_EQ(r.flags, 0);
	for (size_t i = 0; i < r.n; i++) {
		s1 |= memcmp(r.keys[i], k1, 32) == 0;
		s2 |= memcmp(r.keys[i], k2, 32) == 0;
	}
	TT_ASSERT(s1 && s2);
	TT_ASSERT(strstr(r.detail, "3 not a key record"));
	dm_stop();
	keys(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	TT_EQ(fdisc_queries(f.fd), 1);
	fake_now += 301 * 1000;
	keys(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.flags, FDISC_STALE);
	fx_close(&f);
}

TT_CASE(fdisc__keys__none_valid_is_notfound)
{
	struct fx f;
	struct lres r;

	dm_start();
	fx_open(&f);
	keys(&f, "bad.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	keys(&f, "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	fx_close(&f);
}

#define KP(text) fdisc_key_parse(text, strlen(text), k)

TT_CASE(fdisc__key_parse__format)
{
	uint8_t k[32], want[32];
	char text[FDISC_KEY_TEXT_MAX];

	memset(want, 0x11, sizeof(want));
	TT_OK(KP("v=tern1 k=" KEY1_B64));
	TT_MEMEQ(k, want, 32);
	TT_OK(KP("v=tern1  k=" KEY1_B64 " n=x "));
	TT_ERR(KP("v=tern2 k=" KEY1_B64), TERN_EVERSION);
	TT_ERR(KP("k=" KEY1_B64), TERN_EFIELD);
	TT_ERR(KP("v=tern1"), TERN_EFIELD);
	TT_ERR(KP("v=tern1 k=" KEY1_B64 " k=" KEY1_B64), TERN_EFIELD);
	TT_ERR(KP("v=tern1 k=" KEY1_B64 " junk"), TERN_EFIELD);
	/* Unpadded; the url-safe alphabet; 33 bytes. */
	TT_ERR(KP("v=tern1 k=ERERERERERERERERERERERERERERERERERERERERERE"),
	    TERN_EFIELD);
	TT_ERR(KP("v=tern1 k=____________________________________________"),
	    TERN_EFIELD);
	TT_ERR(KP("v=tern1 k=EREREREREREREREREREREREREREREREREREREREREREREQ=="),
	    TERN_EFIELD);
	TT_ERR(KP(""), TERN_EFIELD);
	TT_OK(fdisc_key_format(want, text, sizeof(text)));
	TT_ASSERT(strcmp(text, "v=tern1 k=" KEY1_B64) == 0);
	TT_ERR(fdisc_key_format(want, text, 10), TERN_ETOOBIG);
}

#define RP(text) fdisc_relay_parse(text, strlen(text), &rl)

TT_CASE(fdisc__relay_parse__format)
{
	struct fdisc_relay rl;
	uint8_t want[32];
	char text[FDISC_RELAY_TEXT_MAX];

	memset(want, 0x11, sizeof(want));
	TT_OK(RP("v=tern1 k=" KEY1_B64 " d=relay.example"));
	TT_MEMEQ(rl.key, want, 32);
	TT_ASSERT(strcmp(rl.domain, "relay.example") == 0);
	TT_OK(RP("v=tern1 d=Relay.Example. x=1 k=" KEY1_B64));
	TT_ASSERT(strcmp(rl.domain, "relay.example") == 0);
	TT_ERR(RP("v=tern1 k=" KEY1_B64), TERN_EFIELD);
	TT_ERR(RP("v=tern1 k=" KEY1_B64 " d="), TERN_EFIELD);
	TT_ERR(RP("v=tern1 k=" KEY1_B64 " d=a..b"), TERN_EFIELD);
	TT_ERR(RP("v=tern1 k=" KEY1_B64 " d=a/b"), TERN_EFIELD);
	TT_ERR(RP("v=tern1 k=" KEY1_B64 " d=a.test d=b.test"), TERN_EFIELD);
	TT_ERR(RP("v=tern2 k=" KEY1_B64 " d=a.test"), TERN_EVERSION);
	TT_ERR(RP("v=tern1 d=a.test"), TERN_EFIELD);
	TT_ERR(RP(""), TERN_EFIELD);
	{
		char nul[] = "v=tern1 k=" KEY1_B64 " d=a.test";
		nul[strlen(nul) - 3] = '\0'; /* a NUL inside the name */
		TT_ERR(fdisc_relay_parse(nul, sizeof(nul) - 1, &rl),
		    TERN_EFIELD);
	}
	TT_OK(fdisc_relay_format(want, "Relay.Example.", text, sizeof(text)));
	TT_ASSERT(strcmp(text, "v=tern1 k=" KEY1_B64 " d=relay.example") ==
	    0);
	TT_ERR(fdisc_relay_format(want, "a.test", text, 64), TERN_ETOOBIG);
	TT_ERR(fdisc_relay_format(want, "a..test", text, sizeof(text)),
	    TERN_EINVAL);
}

struct rres {
	int calls;                              /* callbacks */
	int err;                                /* last error */
	size_t n;                               /* relays */
	unsigned flags;                         /* FDISC_* */
	struct fdisc_relay r[FDISC_MAX_RELAYS]; /* copied */
	char detail[DNS_DETAIL_MAX];            /* copied text */
};

static void
rres_cb(void *arg, int err, const struct fdisc_relay *rl, size_t n,
    unsigned flags, const char *detail)
{
	struct rres *r = arg;

	TT_ASSERT(detail != NULL);
	TT_ASSERT(n <= FDISC_MAX_RELAYS);
	r->calls++;
	r->err = err;
	r->n = n;
	r->flags = flags;
	if (n)
		memcpy(r->r, rl, n * sizeof(*rl));
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

static void
relays(struct fx *f, const char *domain, struct rres *r)
{
	memset(r, 0, sizeof(*r));
	TT_OK(fdisc_relays(f->fd, domain, rres_cb, r));
	TT_EQ(r->calls, 0);
	while (r->calls == 0)
		uv_run(&f->loop, UV_RUN_ONCE);
	TT_EQ(r->calls, 1);
}

/* TXT _tern-relay: good records parsed (a repeated key once), bad ones
 * ignored, the answer cached apart from the keys; none is ENOTFOUND. */
TT_CASE(fdisc__relays__parsed_bad_ignored_cached)
{
	struct fx f;
	struct rres r;
	struct lres k;
	bool s1 = false, s2 = false;

	dm_start();
	fx_open(&f);
	relays(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	for (size_t i = 0; i < r.n; i++) {
		s1 |= r.r[i].key[0] == 0x11 &&
		    strcmp(r.r[i].domain, "r1.test") == 0;
		s2 |= r.r[i].key[0] == 0x22 &&
		    strcmp(r.r[i].domain, "r2.test") == 0;
	}
	TT_ASSERT(s1 && s2);
	TT_ASSERT(strstr(r.detail, "2 not a relay record"));
	/* The keys are another question. */
	keys(&f, "a.test", &k);
	TT_OK(k.err);
	TT_EQ(fdisc_queries(f.fd), 2);
	dm_stop();
	relays(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	TT_EQ(fdisc_queries(f.fd), 2);
	fake_now += 301 * 1000;
	relays(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.flags, FDISC_STALE);
	fx_close(&f);
}

TT_CASE(fdisc__relays__none_is_notfound)
{
	struct fx f;
	struct rres r;

	dm_start();
	fx_open(&f);
	relays(&f, "bad.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	fx_close(&f);
}

/* --- key trust ----------------------------------------------------------- */

struct logs {
	int n;             /* lines */
	char last[1024];   /* the last warn or error line */
	int warns;         /* at warn or worse */
};

static void
log_cb(void *arg, enum log_level level, const char *line)
{
	struct logs *l = arg;

	l->n++;
	if (level <= LOG_LEVEL_WARN) {
		l->warns++;
		snprintf(l->last, sizeof(l->last), "%s", line);
	}
}

struct kt_fx {
	struct ktrust_memstore *mem;  /* remembered keys */
	struct ktrust *kt;            /* under test */
	struct logs logs;             /* what it logged */
	uint8_t k1[32], k2[32], k3[32]; /* keys */
};

static void
kt_open(struct kt_fx *x)
{
	struct ktrust_config cfg = { .log = log_cb };

	memset(x, 0, sizeof(*x));
	memset(x->k1, 0x11, 32);
	memset(x->k2, 0x22, 32);
	memset(x->k3, 0x33, 32);
	TT_OK(ktrust_memstore_new(&x->mem));
	cfg.store = ktrust_memstore_ops(x->mem);
	cfg.log_arg = &x->logs;
	TT_OK(ktrust_new(&cfg, &x->kt));
}

static void
kt_close(struct kt_fx *x)
{
	ktrust_free(x->kt);
	ktrust_memstore_free(x->mem);
}

TT_CASE(ktrust__check__pinned_only)
{
	struct kt_fx x;
	uint8_t dnskeys[1][32];
	struct ktrust_dns dns = { .keys = (const uint8_t (*)[32])dnskeys,
	    .n = 1 };
	char why[KTRUST_WHY_MAX];

	kt_open(&x);
	memcpy(dnskeys[0], x.k2, 32);
	TT_OK(ktrust_pin(x.kt, "A.Test.", KEY1_B64));
	TT_ERR(ktrust_pin(x.kt, "a.test", "not base64"), TERN_EKEY);
	TT_ERR(ktrust_pin(x.kt, "a..test", KEY1_B64), TERN_EINVAL);
	TT_OK(ktrust_check(x.kt, "a.test", x.k1, &dns, why, sizeof(why)));
	/* DNS lists k2, but a pinned domain ignores DNS. */
	TT_ERR(ktrust_check(x.kt, "a.test", x.k2, &dns, why, sizeof(why)),
	    TERN_EAUTH);
	TT_ASSERT(strstr(why, "pinned"));
	TT_EQ(x.logs.warns, 1);
	TT_ASSERT(strstr(x.logs.last, "a.test"));
	TT_ASSERT(strstr(x.logs.last, "2222222222222222"));
	kt_close(&x);
}

TT_CASE(ktrust__check__dns_listed_accepted_and_remembered)
{
	struct kt_fx x;
	uint8_t dnskeys[2][32];
	struct ktrust_dns dns = { .keys = (const uint8_t (*)[32])dnskeys,
	    .n = 2 };
	struct ktrust_dns down = { .err = TERN_ETIMEOUT };
	uint8_t got[8][32];
	size_t n;

	kt_open(&x);
	memcpy(dnskeys[0], x.k1, 32);
	memcpy(dnskeys[1], x.k2, 32);
	TT_OK(ktrust_check(x.kt, "a.test", x.k2, &dns, NULL, 0));
	TT_OK(ktrust_memstore_ops(x.mem).load(x.mem, "a.test", got, 8, &n));
	TT_EQ(n, 1);
	TT_MEMEQ(got[0], x.k2, 32);
	/* Remembered: accepted while DNS is down. */
	TT_OK(ktrust_check(x.kt, "a.test", x.k2, &down, NULL, 0));
	/* Not remembered and DNS down: nothing to check against. */
	TT_ERR(ktrust_check(x.kt, "b.test", x.k2, &down, NULL, 0),
	    TERN_EUNREACH);
	/* Remembered k2, DNS down, k3 offered: an unconfirmed change. */
	TT_ERR(ktrust_check(x.kt, "a.test", x.k3, &down, NULL, 0), TERN_EAUTH);
	TT_EQ(x.logs.warns, 2);
	TT_ASSERT(strstr(x.logs.last, "3333333333333333"));
	TT_ASSERT(strstr(x.logs.last, "DNS is failing"));
	kt_close(&x);
}

TT_CASE(ktrust__check__unknown_key_refused_and_logged)
{
	struct kt_fx x;
	uint8_t dnskeys[1][32];
	struct ktrust_dns dns = { .keys = (const uint8_t (*)[32])dnskeys,
	    .n = 1 };
	struct ktrust_dns stale = dns;
	struct ktrust_dns nokey = { .err = TERN_ENOTFOUND };
	char why[KTRUST_WHY_MAX];

	kt_open(&x);
	memcpy(dnskeys[0], x.k1, 32);
	TT_ERR(ktrust_check(x.kt, "a.test", x.k3, &dns, why, sizeof(why)),
	    TERN_EAUTH);
	TT_EQ(x.logs.warns, 1);
	TT_ASSERT(strstr(x.logs.last, "refused key 3333333333333333 for "
	    "a.test"));
	TT_ASSERT(strstr(x.logs.last, "DNS lists 1 key(s): 1111111111111111"));
	/* Remember k1, then DNS rotates to k2 only: k1 no longer passes
	 * while DNS answers, but passes while DNS is stale. */
	TT_OK(ktrust_check(x.kt, "a.test", x.k1, &dns, NULL, 0));
	memcpy(dnskeys[0], x.k2, 32);
	TT_ERR(ktrust_check(x.kt, "a.test", x.k1, &dns, NULL, 0), TERN_EAUTH);
	stale.stale = true;
	TT_OK(ktrust_check(x.kt, "a.test", x.k1, &stale, NULL, 0));
	/* The domain stops publishing: the remembered key still passes, a
	 * new one does not. */
	TT_OK(ktrust_check(x.kt, "a.test", x.k1, &nokey, NULL, 0));
	TT_ERR(ktrust_check(x.kt, "a.test", x.k3, &nokey, NULL, 0),
	    TERN_EAUTH);
	TT_ERR(ktrust_check(x.kt, "c.test", x.k3, &nokey, NULL, 0),
	    TERN_EAUTH);
	kt_close(&x);
}

/* End to end: keys from DNS through fdisc into ktrust, then DNS down. */
TT_CASE(ktrust__check__with_fdisc_keys)
{
	struct fx f;
	struct lres r;
	struct kt_fx x;
	struct ktrust_dns dns;

	dm_start();
	fx_open(&f);
	kt_open(&x);
	keys(&f, "a.test", &r);
	TT_OK(r.err);
	dns = (struct ktrust_dns){ .err = r.err,
	    .keys = (const uint8_t (*)[32])r.keys, .n = r.n,
	    .stale = (r.flags & FDISC_STALE) != 0 };
	TT_OK(ktrust_check(x.kt, "a.test", x.k1, &dns, NULL, 0));
	TT_ERR(ktrust_check(x.kt, "a.test", x.k3, &dns, NULL, 0), TERN_EAUTH);
	dm_stop();
	fake_now += 3600 * 1000;
	keys(&f, "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.flags, FDISC_STALE);
	fx_close(&f);
	kt_close(&x);
}
