/*
 * test_dns.c: SRV lookups through dns.c against a real DNS server: a
 * dnsmasq the test starts on 127.0.0.1 with records made for each case,
 * and sockets that never answer or refuse. Only loopback is ever asked.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <unistd.h>

#include "dns.h"
#include "dnsans.h"
#include "tt.h"
#include "tt_uv.h"

#define DNSMASQ "/usr/sbin/dnsmasq"

/* The zone dnsmasq serves; every case reads from it. */
static const char *const dm_records[] = {
	/* Three priorities, listed out of order. */
	"--srv-host=_tern._tcp.a.test,node1.a.test,7370,10,60",
	"--srv-host=_tern._tcp.a.test,node2.a.test,7371,20,0",
	"--srv-host=_tern._tcp.a.test,node3.a.test,7372,5,0",
	"--host-record=node1.a.test,127.0.0.2",
	"--host-record=node2.a.test,127.0.0.3",
	"--host-record=node3.a.test,127.0.0.4",
	/* A federation label on the same domain. */
	"--srv-host=_tern-fed._tcp.a.test,fed.a.test,7380,0,0",
	"--host-record=fed.a.test,127.0.0.8",
	/* Two equal weights in one priority. */
	"--srv-host=_tern._tcp.w.test,wa.w.test,1001,1,50",
	"--srv-host=_tern._tcp.w.test,wb.w.test,1002,1,50",
	"--host-record=wa.w.test,127.0.0.5",
	"--host-record=wb.w.test,127.0.0.6",
	/* A target with an IPv4 and an IPv6 address. */
	"--srv-host=_tern._tcp.six.test,dual.six.test,7370,0,0",
	"--host-record=dual.six.test,127.0.0.7,::1",
	/* No target: dnsmasq answers with ".", "not offered here". */
	"--srv-host=_tern._tcp.none.test",
	/* The name exists, the SRV record does not. */
	"--host-record=_tern._tcp.nodata.test,127.0.0.9",
	/* One target without address, one with. */
	"--srv-host=_tern._tcp.dangle.test,ghost.dangle.test,7370,1,0",
	"--srv-host=_tern._tcp.dangle.test,ok.dangle.test,7371,2,0",
	"--host-record=ok.dangle.test,127.0.0.10",
	/* Only a target without address. */
	"--srv-host=_tern._tcp.ghost.test,ghost.ghost.test,7370,1,0",
	/* TTLs: SRV and TXT records get --local-ttl; a host record its own. */
	"--local-ttl=300",
	"--srv-host=_tern._tcp.ttl.test,short.ttl.test,7370,0,0",
	"--host-record=short.ttl.test,127.0.0.12,45",
	/* Addresses alone, both families. */
	"--host-record=plain.test,127.0.0.11,::1,90",
	/* TXT: two records; one record of two strings; an empty one. */
	"--txt-record=two.test,first record",
	"--txt-record=two.test,second",
	"--txt-record=multi.test,abc,def",
};

static pid_t dm_pid = -1;
static uint16_t dm_port;
static char dm_server[32];

struct res {
	int calls;                             /* callbacks seen */
	int err;                               /* last error */
	size_t n;                              /* targets */
	struct dns_target t[DNS_MAX_TARGETS];  /* copied targets */
	char detail[DNS_DETAIL_MAX];           /* copied text */
};

static void
res_cb(void *arg, int err, const struct dns_target *t, size_t n,
    const char *detail)
{
	struct res *r = arg;

	TT_ASSERT(detail != NULL);
	TT_ASSERT(n <= DNS_MAX_TARGETS);
	if (err)
		TT_EQ(n, 0);
	r->calls++;
	r->err = err;
	r->n = n;
	if (n)
		memcpy(r->t, t, n * sizeof(*t));
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

/* --- helpers: sockets and the dnsmasq child ---------------------------- */

/* udp_bound: a UDP socket on 127.0.0.1 and some free port; never read. */
static int
udp_bound(uint16_t *port)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	TT_ASSERT(fd >= 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	TT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	TT_EQ(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	*port = ntohs(sa.sin_port);
	return fd;
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
dm_spawn(void)
{
	char port[32];
	const char *argv[64];
	size_t n = 0;

	snprintf(port, sizeof(port), "--port=%u", dm_port);
	argv[n++] = DNSMASQ;
	argv[n++] = "--no-daemon";
	argv[n++] = "--conf-file=/dev/null";
	argv[n++] = "--no-resolv";
	argv[n++] = "--no-hosts";
	argv[n++] = "--listen-address=127.0.0.1";
	argv[n++] = "--bind-interfaces";
	argv[n++] = port;
	argv[n++] = "--pid-file=";
	argv[n++] = "--local=/test/";
	argv[n++] = "--log-facility=/dev/null";
	for (size_t i = 0; i < sizeof(dm_records) / sizeof(dm_records[0]); i++)
		argv[n++] = dm_records[i];
	argv[n] = NULL;
	TT_ASSERT(n < sizeof(argv) / sizeof(argv[0]));

	dm_pid = fork();
	TT_ASSERT(dm_pid >= 0);
	if (dm_pid == 0) {
		int null = open("/dev/null", O_RDWR);

		/* If the test dies without its atexit, so does dnsmasq. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
		}
		execv(DNSMASQ, (char *const *)argv);
		_exit(127);
	}
}

/* run_one: one lookup on a fresh loop and resolver; returns when done. */
static void
run_one(const struct dns_config *cfg, const char *service,
    const char *domain, struct res *r)
{
	uv_loop_t loop;
	struct dns *d;

	memset(r, 0, sizeof(*r));
	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, cfg, &d));
	TT_OK(dns_srv(d, service, domain, res_cb, r));
	while (r->calls == 0)
		uv_run(&loop, UV_RUN_ONCE);
	dns_close(d, NULL, NULL);
	tt_uv_close(&loop);
	TT_EQ(r->calls, 1);
}

/* dm_start: starts dnsmasq and waits until it answers, asking rather
 * than sleeping a guessed time. A port taken between our probe and its
 * bind makes dnsmasq exit; then another port is tried. */
static void
dm_start(void)
{
	struct dns_config cfg = { .timeout_ms = 300, .tries = 1 };
	struct res r;

	TT_ASSERT(access(DNSMASQ, X_OK) == 0);
	atexit(dm_stop);
	for (int attempt = 0; attempt < 3; attempt++) {
		dm_port = free_port();
		snprintf(dm_server, sizeof(dm_server), "127.0.0.1:%u", dm_port);
		cfg.nameserver = dm_server;
		dm_spawn();
		for (int i = 0; i < 100; i++) {
			int st;

			if (waitpid(dm_pid, &st, WNOHANG) == dm_pid) {
				dm_pid = -1;
				break;
			}
			run_one(&cfg, "_tern._tcp", "a.test", &r);
			if (r.err == 0)
				return;
			uv_sleep(20);
		}
		dm_stop();
	}
	tt_fail(__FILE__, __LINE__, "dnsmasq did not start answering");
}

static void
srv(const char *service, const char *domain, struct res *r)
{
	struct dns_config cfg = { .nameserver = dm_server, .timeout_ms = 3000 };

	run_one(&cfg, service, domain, r);
}

/* --- TXT and address lookups -------------------------------------------- */

struct tres {
	int calls;                               /* callbacks seen */
	int err;                                 /* last error */
	size_t n;                                /* records or addresses */
	uint32_t ttl;                            /* TXT: the smallest TTL */
	struct dns_txt_rec txt[DNS_MAX_TXT];     /* copied records */
	struct dns_addr addr[DNS_MAX_ADDRS];     /* copied addresses */
	char detail[DNS_DETAIL_MAX];             /* copied text */
};

static void
tres_txt_cb(void *arg, int err, const struct dns_txt_rec *recs, size_t n,
    uint32_t ttl, const char *detail)
{
	struct tres *r = arg;

	TT_ASSERT(detail != NULL);
	TT_ASSERT(n <= DNS_MAX_TXT);
	r->calls++;
	r->err = err;
	r->n = n;
	r->ttl = ttl;
	if (n)
		memcpy(r->txt, recs, n * sizeof(*recs));
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

static void
tres_addrs_cb(void *arg, int err, const struct dns_addr *a, size_t n,
    const char *detail)
{
	struct tres *r = arg;

	TT_ASSERT(detail != NULL);
	TT_ASSERT(n <= DNS_MAX_ADDRS);
	r->calls++;
	r->err = err;
	r->n = n;
	if (n)
		memcpy(r->addr, a, n * sizeof(*a));
	snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

/* run_other: one dns_txt (txt true) or dns_addrs on a fresh resolver. */
static void
run_other(bool txt, const char *name, struct tres *r)
{
	struct dns_config cfg = { .nameserver = dm_server, .timeout_ms = 3000 };
	uv_loop_t loop;
	struct dns *d;

	memset(r, 0, sizeof(*r));
	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &d));
	if (txt)
		TT_OK(dns_txt(d, name, tres_txt_cb, r));
	else
		TT_OK(dns_addrs(d, name, tres_addrs_cb, r));
	while (r->calls == 0)
		uv_run(&loop, UV_RUN_ONCE);
	dns_close(d, NULL, NULL);
	tt_uv_close(&loop);
	TT_EQ(r->calls, 1);
}

/* --- cases --------------------------------------------------------------- */

TT_CASE(dns__srv__ttl_is_min_of_srv_and_address)
{
	struct res r;

	dm_start();
	srv("_tern._tcp", "ttl.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 1);
	TT_EQ(r.t[0].ttl, 45); /* the address's 45 s under the SRV's 300 s */
	srv("_tern._tcp", "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.t[0].ttl, 300); /* host records default to --local-ttl */
}

TT_CASE(dns__txt__records_joined_and_ttl)
{
	struct tres r;

	dm_start();
	run_other(true, "two.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	TT_EQ(r.ttl, 300);
	/* dnsmasq answers in the order configured; accept either. */
	TT_ASSERT((strcmp(r.txt[0].text, "first record") == 0 &&
	    strcmp(r.txt[1].text, "second") == 0) ||
	    (strcmp(r.txt[1].text, "first record") == 0 &&
	    strcmp(r.txt[0].text, "second") == 0));
	run_other(true, "multi.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 1);
	TT_ASSERT(strcmp(r.txt[0].text, "abcdef") == 0);
	TT_EQ(r.txt[0].len, 6);
}

TT_CASE(dns__txt__none_is_notfound)
{
	struct tres r;

	dm_start();
	run_other(true, "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	TT_ASSERT(strstr(r.detail, "no TXT record for nx.test"));
	run_other(true, "plain.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
}

TT_CASE(dns__addrs__both_families_with_ttl)
{
	struct tres r;
	bool v4 = false, v6 = false;

	dm_start();
	run_other(false, "plain.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	for (size_t i = 0; i < r.n; i++) {
		v4 |= strcmp(r.addr[i].addr, "127.0.0.11") == 0;
		v6 |= strcmp(r.addr[i].addr, "::1") == 0;
		TT_EQ(r.addr[i].ttl, 90);
	}
	TT_ASSERT(v4 && v6);
	run_other(false, "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	TT_ASSERT(strstr(r.detail, "no A/AAAA record for nx.test"));
}

TT_CASE(dns__addrs__bad_names_einval)
{
	struct dns_config cfg = { .nameserver = "127.0.0.1:1" };
	struct tres r;
	uv_loop_t loop;
	struct dns *d;

	memset(&r, 0, sizeof(r));
	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &d));
	TT_ERR(dns_addrs(d, "", tres_addrs_cb, &r), TERN_EINVAL);
	TT_ERR(dns_addrs(d, "a..b", tres_addrs_cb, &r), TERN_EINVAL);
	TT_ERR(dns_txt(d, "a b", tres_txt_cb, &r), TERN_EINVAL);
	TT_ERR(dns_txt(d, NULL, tres_txt_cb, &r), TERN_EINVAL);
	dns_close(d, NULL, NULL);
	TT_ERR(dns_txt(d, "a.test", tres_txt_cb, &r), TERN_ESTATE);
	tt_uv_close(&loop);
	TT_EQ(r.calls, 0);
}

/* The TTL walk over hand-made answers (dnsans.c). */
TT_CASE(dnsans__min_ttl__records_cname_and_truncation)
{
	/* Header: 1 question, 3 answers; question a.t SRV IN; answers: a
	 * CNAME (ttl 50) by pointer, two SRV with ttls 100 and 2^31. */
	static const uint8_t msg[] = {
		0, 1, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0,
		1, 'a', 1, 't', 0, 0, 33, 0, 1,
		0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 50, 0, 2, 0xc0, 12,
		0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 100, 0, 1, 'x',
		0xc0, 12, 0, 33, 0, 1, 0x80, 0, 0, 0, 0, 0,
	};
	uint8_t two[sizeof(msg) - 12];
	uint32_t ttl = 7;

	TT_OK(dnsans_min_ttl(msg, sizeof(msg), 33, &ttl));
	TT_EQ(ttl, 0); /* top bit set reads as 0 */
	/* Without the last answer (12 bytes): */
	memcpy(two, msg, sizeof(two));
	two[7] = 2;
	TT_OK(dnsans_min_ttl(two, sizeof(two), 33, &ttl));
	TT_EQ(ttl, 50); /* the CNAME's is smaller than the SRV's */
	two[7] = 3;
	TT_ERR(dnsans_min_ttl(two, sizeof(two), 33, &ttl), TERN_ETRUNC);
	two[12] = 0x40; /* a reserved label type */
	TT_ERR(dnsans_min_ttl(two, sizeof(two), 33, &ttl), TERN_EFIELD);
	TT_ERR(dnsans_min_ttl(msg, sizeof(msg), 16, &ttl), TERN_ENOTFOUND);
	TT_ERR(dnsans_min_ttl(msg, sizeof(msg) - 1, 33, &ttl), TERN_ETRUNC);
	TT_ERR(dnsans_min_ttl(msg, 11, 33, &ttl), TERN_ETRUNC);
	TT_ERR(dnsans_min_ttl(NULL, 0, 33, &ttl), TERN_ETRUNC);
}

TT_CASE(dns__srv__priorities_ordered)
{
	struct res r;

	dm_start();
	srv("_tern._tcp", "a.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 3);
	TT_ASSERT(strcmp(r.t[0].host, "node3.a.test") == 0);
	TT_EQ(r.t[0].port, 7372);
	TT_EQ(r.t[0].priority, 5);
	TT_ASSERT(strcmp(r.t[0].addr, "127.0.0.4") == 0);
	TT_ASSERT(strcmp(r.t[1].host, "node1.a.test") == 0);
	TT_EQ(r.t[1].port, 7370);
	TT_EQ(r.t[1].priority, 10);
	TT_EQ(r.t[1].weight, 60);
	TT_ASSERT(strcmp(r.t[1].addr, "127.0.0.2") == 0);
	TT_ASSERT(strcmp(r.t[2].host, "node2.a.test") == 0);
	TT_EQ(r.t[2].priority, 20);
	TT_ASSERT(strcmp(r.t[2].addr, "127.0.0.3") == 0);
	TT_ASSERT(strcmp(r.detail, "") == 0);
}

TT_CASE(dns__srv__final_dot_and_other_service_label)
{
	struct res r;

	dm_start();
	srv("_tern-fed._tcp", "a.test.", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 1);
	TT_ASSERT(strcmp(r.t[0].host, "fed.a.test") == 0);
	TT_EQ(r.t[0].port, 7380);
	TT_ASSERT(strcmp(r.t[0].addr, "127.0.0.8") == 0);
}

struct wrun {
	struct dns *d; /* resolver */
	int to_start;  /* lookups not yet started */
	int left;      /* lookups not answered */
	int ab, ba;    /* orders seen */
	int other;     /* anything else: a failure */
};

static void
weight_cb(void *arg, int err, const struct dns_target *t, size_t n,
    const char *detail)
{
	struct wrun *w = arg;

	w->left--;
	if (err != 0 || n != 2) {
		fprintf(stderr, "lookup: %s (%s)\n", tern_errname(err), detail);
		w->other++;
	} else if (strcmp(t[0].host, "wa.w.test") == 0 &&
	    strcmp(t[1].host, "wb.w.test") == 0) {
		w->ab++;
	} else if (strcmp(t[0].host, "wb.w.test") == 0 &&
	    strcmp(t[1].host, "wa.w.test") == 0) {
		w->ba++;
	} else {
		w->other++;
	}
	/* The next lookup starts from this callback. */
	if (w->to_start > 0) {
		w->to_start--;
		TT_OK(dns_srv(w->d, "_tern._tcp", "w.test", weight_cb, w));
	}
}

/*
 * 200 lookups on one resolver, 8 in flight at a time (a burst of hundreds
 * would overflow dnsmasq's socket buffer and test UDP loss instead). With
 * weights 50/50 each order comes with p = 1/2, so never seeing one has
 * p = 2^-199.
 */
TT_CASE(dns__srv__equal_weights_give_both_orders)
{
	struct dns_config cfg = { .timeout_ms = 5000 };
	struct wrun w = { .left = 200, .to_start = 200 };
	uv_loop_t loop;

	dm_start();
	cfg.nameserver = dm_server;
	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &w.d));
	for (int i = 0; i < 8; i++) {
		w.to_start--;
		TT_OK(dns_srv(w.d, "_tern._tcp", "w.test", weight_cb, &w));
	}
	while (w.left > 0)
		uv_run(&loop, UV_RUN_ONCE);
	dns_close(w.d, NULL, NULL);
	tt_uv_close(&loop);
	TT_EQ(w.other, 0);
	TT_EQ(w.ab + w.ba, 200);
	TT_ASSERT(w.ab >= 1);
	TT_ASSERT(w.ba >= 1);
	/* Far from 100 means loaded dice (p < 1e-9 by chance). */
	TT_ASSERT(w.ab > 40 && w.ab < 160);
}

TT_CASE(dns__srv__ipv4_and_ipv6_give_two_entries)
{
	struct res r;
	int v4 = 0, v6 = 0;

	dm_start();
	srv("_tern._tcp", "six.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 2);
	for (size_t i = 0; i < r.n; i++) {
		TT_ASSERT(strcmp(r.t[i].host, "dual.six.test") == 0);
		TT_EQ(r.t[i].port, 7370);
		v4 += strcmp(r.t[i].addr, "127.0.0.7") == 0;
		v6 += strcmp(r.t[i].addr, "::1") == 0;
	}
	TT_EQ(v4, 1);
	TT_EQ(v6, 1);
}

TT_CASE(dns__srv__no_such_name_is_enotfound)
{
	struct res r;

	dm_start();
	srv("_tern._tcp", "nx.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	TT_ASSERT(strstr(r.detail, "no SRV record for _tern._tcp.nx.test"));
}

TT_CASE(dns__srv__name_without_srv_is_enotfound)
{
	struct res r;

	dm_start();
	srv("_tern._tcp", "nodata.test", &r);
	TT_ERR(r.err, TERN_ENOTFOUND);
	TT_ASSERT(strstr(r.detail, "no SRV record for _tern._tcp.nodata.test"));
}

TT_CASE(dns__srv__dot_target_is_enoservice)
{
	struct res r;

	dm_start();
	srv("_tern._tcp", "none.test", &r);
	TT_ERR(r.err, DNS_ENOSERVICE);
	TT_ASSERT(DNS_ENOSERVICE != TERN_ENOTFOUND);
	TT_ASSERT(strstr(r.detail, "offers no such service"));
}

TT_CASE(dns__srv__target_without_address_is_skipped)
{
	struct res r;

	dm_start();
	srv("_tern._tcp", "dangle.test", &r);
	TT_OK(r.err);
	TT_EQ(r.n, 1);
	TT_ASSERT(strcmp(r.t[0].host, "ok.dangle.test") == 0);
	TT_ASSERT(strcmp(r.t[0].addr, "127.0.0.10") == 0);
	TT_ASSERT(strstr(r.detail, "ghost.dangle.test"));
}

TT_CASE(dns__srv__no_target_with_address_is_unreach)
{
	struct res r;

	dm_start();
	srv("_tern._tcp", "ghost.test", &r);
	TT_ERR(r.err, TERN_EUNREACH);
	TT_ASSERT(strstr(r.detail, "ghost.ghost.test"));
}

TT_CASE(dns__srv__silent_server_times_out)
{
	struct dns_config cfg = { .timeout_ms = 400, .tries = 2 };
	char server[32];
	uint16_t port;
	int fd = udp_bound(&port);
	uint64_t t0;
	double ms;
	struct res r;

	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	cfg.nameserver = server;
	t0 = uv_hrtime();
	run_one(&cfg, "_tern._tcp", "example.test", &r);
	ms = (double)(uv_hrtime() - t0) / 1e6;
	close(fd);
	TT_ERR(r.err, TERN_ETIMEOUT);
	TT_ASSERT(strstr(r.detail, "DNS timeout after 400 ms"));
	TT_ASSERT(strstr(r.detail, server));
	TT_ASSERT(ms >= 350 && ms < 1500);
}

TT_CASE(dns__srv__refusing_port_is_unreach)
{
	struct dns_config cfg = { .timeout_ms = 2000 };
	char server[32];
	struct res r;

	snprintf(server, sizeof(server), "127.0.0.1:%u", free_port());
	cfg.nameserver = server;
	run_one(&cfg, "_tern._tcp", "example.test", &r);
	TT_ERR(r.err, TERN_EUNREACH);
	TT_ASSERT(strstr(r.detail, server));
}

static int close_calls;

static void
close_cb(void *arg)
{
	close_calls++;
	TT_ASSERT(arg == &close_calls);
}

TT_CASE(dns__close__pending_lookups_canceled_once)
{
	struct dns_config cfg = { .timeout_ms = 5000 };
	char server[32];
	uint16_t port;
	int fd = udp_bound(&port);
	struct res r1, r2;
	uv_loop_t loop;
	struct dns *d;

	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	cfg.nameserver = server;
	memset(&r1, 0, sizeof(r1));
	memset(&r2, 0, sizeof(r2));
	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &d));
	TT_OK(dns_srv(d, "_tern._tcp", "one.test", res_cb, &r1));
	TT_OK(dns_srv(d, "_tern._tcp", "two.test", res_cb, &r2));
	/* Let the queries go out, so sockets and the timer are live. */
	uv_run(&loop, UV_RUN_NOWAIT);
	dns_close(d, close_cb, &close_calls);
	TT_EQ(close_calls, 0); /* never synchronously */
	tt_uv_close(&loop);
	close(fd);
	TT_EQ(close_calls, 1);
	TT_EQ(r1.calls, 1);
	TT_EQ(r2.calls, 1);
	TT_ERR(r1.err, TERN_ECANCELED);
	TT_ERR(r2.err, TERN_ECANCELED);
}

struct reenter {
	struct dns *d;   /* resolver to close */
	struct res a;    /* the lookup that closes */
	struct res b;    /* still pending then */
	int srv_after;   /* dns_srv's result while closing */
};

static void
reenter_cb(void *arg, int err, const struct dns_target *t, size_t n,
    const char *detail)
{
	struct reenter *re = arg;

	res_cb(&re->a, err, t, n, detail);
	dns_close(re->d, close_cb, &close_calls);
	dns_close(re->d, close_cb, &close_calls); /* twice is harmless */
	re->srv_after = dns_srv(re->d, "_tern._tcp", "a.test", res_cb,
	    &re->b);
}

/* dns_close from inside a callback run by c-ares' processing, with
 * another lookup pending: a.test needs a second round trip (its targets'
 * addresses), so none.test's answer always comes first. */
TT_CASE(dns__close__from_callback_with_other_pending)
{
	struct dns_config cfg = { .timeout_ms = 5000 };
	struct reenter re;
	uv_loop_t loop;

	dm_start();
	cfg.nameserver = dm_server;
	memset(&re, 0, sizeof(re));
	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &re.d));
	TT_OK(dns_srv(re.d, "_tern._tcp", "none.test", reenter_cb, &re));
	TT_OK(dns_srv(re.d, "_tern._tcp", "a.test", res_cb, &re.b));
	tt_uv_close(&loop);
	TT_EQ(re.a.calls, 1);
	TT_ERR(re.a.err, DNS_ENOSERVICE);
	TT_ERR(re.srv_after, TERN_ESTATE);
	TT_EQ(re.b.calls, 1);
	TT_ERR(re.b.err, TERN_ECANCELED);
	TT_EQ(close_calls, 1);
}

struct later {
	struct dns *d;  /* resolver */
	struct res *r;  /* where the second lookup reports */
};

static void
later_cb(uv_timer_t *t)
{
	struct later *lt = t->data;

	TT_OK(dns_srv(lt->d, "_tern._tcp", "two.test", res_cb, lt->r));
	uv_close((uv_handle_t *)t, NULL);
}

/* The first lookup's deadline passes (answered from the resolver's
 * timer); its callback closes the resolver while a younger lookup waits. */
TT_CASE(dns__close__from_timeout_callback_with_other_pending)
{
	struct dns_config cfg = { .timeout_ms = 300, .tries = 2 };
	struct reenter re;
	struct later lt;
	char server[32];
	uint16_t port;
	int fd = udp_bound(&port);
	uv_loop_t loop;
	uv_timer_t timer;

	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	cfg.nameserver = server;
	memset(&re, 0, sizeof(re));
	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &re.d));
	TT_OK(dns_srv(re.d, "_tern._tcp", "one.test", reenter_cb, &re));
	lt.d = re.d;
	lt.r = &re.b;
	TT_OK(uv_timer_init(&loop, &timer));
	timer.data = &lt;
	TT_OK(uv_timer_start(&timer, later_cb, 150, 0));
	tt_uv_close(&loop);
	close(fd);
	TT_EQ(re.a.calls, 1);
	TT_ERR(re.a.err, TERN_ETIMEOUT);
	TT_ERR(re.srv_after, TERN_ESTATE);
	TT_EQ(re.b.calls, 1);
	TT_ERR(re.b.err, TERN_ECANCELED);
	TT_EQ(close_calls, 1);
}

TT_CASE(dns__close__idle_resolver)
{
	uv_loop_t loop;
	struct dns *d;
	struct dns_config cfg = { .nameserver = "127.0.0.1:53" };

	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &d));
	TT_ASSERT(strcmp(dns_servers(d), "127.0.0.1:53") == 0);
	dns_close(d, close_cb, &close_calls);
	tt_uv_close(&loop);
	TT_EQ(close_calls, 1);
}

/* The system's configuration (resolv.conf): created and closed, no
 * query sent, since a test asks nothing but loopback. */
TT_CASE(dns__new__system_config)
{
	uv_loop_t loop;
	struct dns *d;

	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, NULL, &d));
	TT_ASSERT(dns_servers(d)[0] != '\0');
	dns_close(d, close_cb, &close_calls);
	tt_uv_close(&loop);
	TT_EQ(close_calls, 1);
}

TT_CASE(dns__srv__bad_names_einval_without_query)
{
	/* The silent server would turn any query into a timeout; EINVAL
	 * must come back at once and the callback never. */
	struct dns_config cfg = { .timeout_ms = 200 };
	char server[32], longname[300], longlabel[80];
	uint16_t port;
	int fd = udp_bound(&port);
	struct res r;
	uv_loop_t loop;
	struct dns *d;

	snprintf(server, sizeof(server), "127.0.0.1:%u", port);
	cfg.nameserver = server;
	memset(&r, 0, sizeof(r));
	/* 254 characters: labels of 9 and dots. */
	for (size_t i = 0; i < 254; i++)
		longname[i] = i % 10 == 9 ? '.' : 'a';
	longname[254] = '\0';
	memset(longlabel, 'b', 64);
	memcpy(longlabel + 64, ".test", 6);

	TT_OK(uv_loop_init(&loop));
	TT_OK(dns_new(&loop, &cfg, &d));
	TT_ERR(dns_srv(d, "_tern._tcp", "", res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", ".", res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "", "example.org", res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", longname, res_cb, &r), TERN_EINVAL);
	/* Fits alone, not with the service in front. */
	longname[245] = '\0';
	TT_ERR(dns_srv(d, "_tern._tcp", longname, res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", longlabel, res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", "a..test", res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", ".a.test", res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", "ex ample.org", res_cb, &r),
	    TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", "a.test\n", res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", NULL, res_cb, &r), TERN_EINVAL);
	TT_ERR(dns_srv(d, "_tern._tcp", "a.test", NULL, &r), TERN_EINVAL);
	uv_run(&loop, UV_RUN_NOWAIT);
	dns_close(d, NULL, NULL);
	tt_uv_close(&loop);
	close(fd);
	TT_EQ(r.calls, 0);
}

TT_CASE(dns__new__bad_nameserver_econfig)
{
	static const char *const bad[] = {
		"", "nope", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x",
		"[::1", "[::1]x", "[127.0.0.1]:53x", "1.2.3.4:53,",
		"1.1.1.1,2.2.2.2,3.3.3.3,4.4.4.4,5.5.5.5", "example.org:53",
	};
	static const char *const good[] = {
		"127.0.0.1", "127.0.0.1:5353", "::1", "[::1]:5353",
		"127.0.0.1:53, [::1]:53",
	};
	struct dns_config cfg = { 0 };
	uv_loop_t loop;
	struct dns *d;

	TT_OK(uv_loop_init(&loop));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cfg.nameserver = bad[i];
		d = (struct dns *)&cfg;
		if (dns_new(&loop, &cfg, &d) != TERN_ECONFIG)
			tt_fail(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
		TT_ASSERT(d == NULL);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		cfg.nameserver = good[i];
		TT_OK(dns_new(&loop, &cfg, &d));
		dns_close(d, NULL, NULL);
	}
	tt_uv_close(&loop);
}
