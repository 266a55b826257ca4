/*
 * test_fed.c: federation (SPEC.md section 13) between real ternd
 * processes on loopback, with the tern CLI as the users, and a fake node
 * (this process, on the real transport) for what an honest node never
 * sends.
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include "ternd_harness.h"
#include "ternd_dnsmasq.h"
#include "fed_harness.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>

#include <sodium.h>
#include <uv.h>

#include "config.h"
#include "msg.h"
#include "net.h"
#include "noise.h"
#include "tt_uv.h"



static struct fnode N1, N2;



/* fnode_route: n routes to m (pinning m's key, or key if not NULL). */
static void
fnode_route(struct fnode *n, const struct fnode *m, const char *key)
{
	char v[256];

	snprintf(v, sizeof(v), "%s=127.0.0.1:%u/%s", m->domain, m->fed_port,
	    key != NULL ? key : m->key);
	ternd_conf_set(&n->t, "peers", v);
}






/* Two nodes that route to each other, both running, alice on one and
 * bob on two registered. */
/* pair_init: one.test and two.test, routed to each other with pinned
 * keys, not started. */
static void
pair_init(void)
{
	fnode_init(&N1, "one.test");
	fnode_init(&N2, "two.test");
	fnode_route(&N1, &N2, NULL);
	fnode_route(&N2, &N1, NULL);
}

/* pair_run: starts the nodes pair_init made; alice@one.test and
 * bob@two.test register. */
static void
pair_run(void)
{
	struct run r;

	ternd_start(&N1.t);
	ternd_start(&N2.t);
	snprintf(pdir, sizeof(pdir), "%s/profiles", N1.t.dir);
	TT_EQ(mkdir(pdir, 0700), 0);
	TERN(&r, "alice", "register", "alice@one.test", "--server",
	    N1.server);
	ok(&r);
	free(r.out);
	TERN(&r, "bob", "register", "bob@two.test", "--server", N2.server);
	ok(&r);
	free(r.out);
}

static void
pair_start(void)
{
	pair_init();
	pair_run();
}

static void
pair_stop(void)
{
	if (N1.t.pid != 0)
		ternd_stop(&N1.t);
	if (N2.t.pid != 0)
		ternd_stop(&N2.t);
	ternd_destroy(&N1.t);
	ternd_destroy(&N2.t);
}

static void
send_ok(const char *who, const char *to, const char *text, char id[33])
{
	struct run r;

	TERN(&r, who, "send", to, text);
	ok(&r);
	TT_EQ(strlen(r.out), 33);
	if (id != NULL)
		snprintf(id, 33, "%.32s", r.out);
	free(r.out);
}


static void
status_wait(const char *who, const char *id, const char *want)
{
	uint64_t end = ternd_now_ms() + 20000;
	struct run r;

	for (;;) {
		TERN(&r, who, "status", id);
		ok(&r);
		if (strncmp(r.out, want, strlen(want)) == 0) {
			free(r.out);
			return;
		}
		if (ternd_now_ms() >= end)
			tt_fail(__FILE__, __LINE__, "status %s stays %s", id,
			    r.out);
		free(r.out);
		ternd_nap(200);
	}
}

/* Messages and receipts both ways between two domains. */
TT_CASE(fed__both_ways_with_receipts)
{
	struct run r;
	char id[33], *all;

	pair_start();
	send_ok("alice", "bob@two.test", "hello two, from one", id);
	all = inbox_wait("bob", "hello two, from one", 20000);
	TT_EQ(count_of(all, "\"from\":\"alice@one.test\""), 1);
	free(all);
	status_wait("alice", id, "delivered");
	TERN(&r, "bob", "read", "alice@one.test");
	ok(&r);
	free(r.out);
	status_wait("alice", id, "read");
	send_ok("bob", "alice@one.test", "and back to one", NULL);
	all = inbox_wait("alice", "and back to one", 20000);
	free(all);
	/* Profiles and device lists of remote users come through. */
	TERN(&r, "bob", "profile", "set", "name", "Bob Two");
	ok(&r);
	free(r.out);
	/* Presence of a remote user: a snapshot, with bob's privacy. */
	TERN(&r, "alice", "lastseen", "bob@two.test");
	ok(&r);
	TT_ASSERT(strncmp(r.out, "last seen ", 10) == 0 ||
	    strcmp(r.out, "online\n") == 0);
	free(r.out);
	TERN(&r, "bob", "privacy", "last-seen", "contacts");
	ok(&r);
	free(r.out);
	TERN(&r, "alice", "lastseen", "bob@two.test");
	ok(&r);
	TT_ASSERT(strcmp(r.out, "hidden\n") == 0);
	free(r.out);
	TERN(&r, "bob", "contacts", "add", "alice@one.test");
	ok(&r);
	free(r.out);
	TERN(&r, "alice", "lastseen", "bob@two.test");
	ok(&r);
	TT_ASSERT(strcmp(r.out, "hidden\n") != 0);
	free(r.out);
	/* The links and their traffic show in /metrics. */
	{
		static char m[65536];
		const char *p;
		unsigned long long v = 0;
		TT_ASSERT(ternd_http_get(&N1.t, "/metrics", m, sizeof(m)) > 0);
		TT_ASSERT(strncmp(m, "HTTP/1.1 200", 12) == 0);
		TT_ASSERT((p = strstr(m, "\ntern_fed_sent_total ")) != NULL);
		TT_EQ(sscanf(p + strlen("\ntern_fed_sent_total "), "%llu", &v), 1);
		TT_ASSERT(v >= 2); /* the text and at least one receipt */
		TT_ASSERT(strstr(m, "\ntern_fed_links_up 1\n") != NULL);
		TT_ASSERT(strstr(m, "\ntern_fed_inbound_up 1\n") != NULL);
	}
	pair_stop();
}

/* The recipient's node is down: the sender's node says SENT and holds
 * them; when it returns they arrive once, in order. Then the same with
 * the sender's node restarted meanwhile. */
TT_CASE(fed__recipient_down_then_back_once_in_order)
{
	char *all, *a, *b, *c;

	pair_start();
	send_ok("alice", "bob@two.test", "first, both up", NULL);
	free(inbox_wait("bob", "first, both up", 20000));
	ternd_stop(&N2.t);
	send_ok("alice", "bob@two.test", "queued one", NULL);
	send_ok("alice", "bob@two.test", "queued two", NULL);
	send_ok("alice", "bob@two.test", "queued three", NULL);
	ternd_start(&N2.t);
	all = inbox_wait("bob", "queued three", 30000);
	TT_EQ(count_of(all, "queued one"), 1);
	TT_EQ(count_of(all, "queued two"), 1);
	TT_EQ(count_of(all, "queued three"), 1);
	a = strstr(all, "queued one");
	b = strstr(all, "queued two");
	c = strstr(all, "queued three");
	TT_ASSERT(a < b && b < c);
	free(all);

	/* Both restart while the messages wait. */
	ternd_stop(&N2.t);
	send_ok("alice", "bob@two.test", "held across a restart", NULL);
	ternd_stop(&N1.t);
	ternd_start(&N1.t);
	ternd_start(&N2.t);
	all = inbox_wait("bob", "held across a restart", 30000);
	TT_EQ(count_of(all, "held across a restart"), 1);
	free(all);
	pair_stop();
}

/* A node whose key is not the one pinned for its domain gets no link,
 * on either side, and says why in its log. */
TT_CASE(fed__wrong_key_refused_both_ways)
{
	uint64_t end;
	struct run r;

	fnode_init(&N1, "one.test");
	fnode_init(&N2, "two.test");
	/* two pins a wrong key for one: one's HELLO is refused. */
	fnode_route(&N1, &N2, NULL);
	fnode_route(&N2, &N1, N2.key);
	ternd_start(&N1.t);
	ternd_start(&N2.t);
	snprintf(pdir, sizeof(pdir), "%s/profiles", N1.t.dir);
	TT_EQ(mkdir(pdir, 0700), 0);
	TERN(&r, "alice", "register", "alice@one.test", "--server",
	    N1.server);
	ok(&r);
	free(r.out);
	/* Bob's keys cannot be fetched: no link to two.test. */
	TERN(&r, "alice", "send", "bob@two.test", "never");
	TT_EQ(r.status, 6);
	free(r.out);
	end = ternd_now_ms() + 10000;
	for (;;) {
		char *l1 = tt_read_file(N1.t.log, NULL);
		char *l2 = tt_read_file(N2.t.log, NULL);
		bool done;
		TT_ASSERT(l1 != NULL && l2 != NULL);
		done = strstr(l1, "two.test refused our link") != NULL &&
		    strstr(l2, "refused a link claiming one.test") != NULL;
		free(l1);
		free(l2);
		if (done)
			break;
		TT_ASSERT(ternd_now_ms() < end);
		ternd_nap(100);
	}
	/* one pins a wrong key for two: no handshake at all. */
	ternd_stop(&N1.t);
	fnode_route(&N1, &N2, N1.key);
	ternd_start(&N1.t);
	TERN(&r, "alice", "send", "bob@two.test", "never either");
	TT_EQ(r.status, 6);
	free(r.out);
	end = ternd_now_ms() + 10000;
	for (;;) {
		char *l1 = tt_read_file(N1.t.log, NULL);
		bool done;
		TT_ASSERT(l1 != NULL);
		done = strstr(l1, "the key pinned for two.test") != NULL;
		free(l1);
		if (done)
			break;
		TT_ASSERT(ternd_now_ms() < end);
		ternd_nap(100);
	}
	pair_stop();
}

/* --- a fake node: this process on the real transport ------------------ */











static void
fk_env(uint32_t req, const char *from, const char *to)
{
	struct msg m = {.type = MSG_FED_ENV, .req = req};

	randombytes_buf(m.u.fed_env.id, MSG_ID_LEN);
	m.u.fed_env.from.p = from;
	m.u.fed_env.from.len = strlen(from);
	m.u.fed_env.from_device = 1;
	m.u.fed_env.to.p = to;
	m.u.fed_env.to.len = strlen(to);
	m.u.fed_env.to_device = 1;
	m.u.fed_env.class = MSG_CLASS_MESSAGE;
	m.u.fed_env.payload.p = (const uint8_t *)"x";
	m.u.fed_env.payload.len = 1;
	fk_send(&m);
}

/* A node that proved evil.test may speak only for evil.test; one that
 * proves nothing about one.test gets no link at all. */
TT_CASE(fed__spoofed_sender_and_unknown_key_refused)
{
	uint8_t n2key[32];
	char b64[64], v[256];
	size_t bl;
	struct run r;

	TT_ASSERT(sodium_init() >= 0);
	noise_keypair_generate(F.priv, F.pub);
	sodium_bin2base64(b64, sizeof(b64), F.pub, 32,
	    sodium_base64_VARIANT_ORIGINAL);
	fnode_init(&N2, "two.test");
	snprintf(v, sizeof(v), "evil.test=127.0.0.1:1/%s", b64);
	ternd_conf_set(&N2.t, "peers", v);
	ternd_start(&N2.t);
	snprintf(pdir, sizeof(pdir), "%s/profiles", N2.t.dir);
	TT_EQ(mkdir(pdir, 0700), 0);
	TERN(&r, "bob", "register", "bob@two.test", "--server", N2.server);
	ok(&r);
	free(r.out);
	TT_OK(sodium_base642bin(n2key, sizeof(n2key), N2.key, strlen(N2.key),
	    NULL, &bl, NULL, sodium_base64_VARIANT_ORIGINAL));
	TT_EQ(bl, 32);
	TT_OK(uv_loop_init(&F.loop));
	TT_OK(net_loop_init(&F.nl, &F.loop, NULL));

	/* Claiming one.test, which nobody vouches this key for. */
	fk_connect(N2.fed_port, n2key);
	fk_hello("one.test", "two.test");
	fk_wait_answer(1);
	TT_EQ(F.type, MSG_ERROR);
	TT_EQ(F.code, -TERN_EAUTH);

	/* As evil.test: welcome; an envelope from one.test is refused,
	 * one to another domain too, an honest one is taken. */
	fk_connect(N2.fed_port, n2key);
	fk_hello("evil.test", "two.test");
	fk_wait_answer(1);
	TT_EQ(F.type, MSG_FED_WELCOME);
	fk_env(2, "mallory@one.test", "bob@two.test");
	fk_wait_answer(2);
	TT_EQ(F.type, MSG_ERROR);
	TT_EQ(F.code, -TERN_EAUTH);
	fk_env(3, "eve@evil.test", "carol@three.test");
	fk_wait_answer(3);
	TT_EQ(F.type, MSG_ERROR);
	TT_EQ(F.code, -TERN_EUNREACH);
	fk_env(4, "eve@evil.test", "nobody@two.test");
	fk_wait_answer(4);
	TT_EQ(F.code, -TERN_ENOUSER);
	fk_env(5, "eve@evil.test", "bob@two.test");
	fk_wait_answer(5);
	TT_EQ(F.type, MSG_OK);
	/* Relayed requests: garbage inside, a type that may not be
	 * relayed, a requester from elsewhere; each an ERROR, the link
	 * stays. */
	{
		struct msg m = {.type = MSG_FED_REQ, .req = 7};
		uint8_t inner[64];
		size_t n;
		struct msg in = {.type = MSG_CONTACT_LIST, .req = 1};

		m.u.fed_req.requester.p = "eve@evil.test";
		m.u.fed_req.requester.len = 13;
		m.u.fed_req.request.p = (const uint8_t *)"\x01\x16garbage";
		m.u.fed_req.request.len = 9;
		fk_send(&m);
		fk_wait_answer(6);
		TT_EQ(F.type, MSG_ERROR);
		TT_OK(msg_encode(&in, inner, sizeof(inner), &n));
		m.req = 8;
		m.u.fed_req.request.p = inner;
		m.u.fed_req.request.len = n;
		fk_send(&m);
		fk_wait_answer(7);
		TT_EQ(F.code, -TERN_ETYPE);
		m.req = 9;
		m.u.fed_req.requester.p = "mallory@one.test";
		m.u.fed_req.requester.len = 16;
		fk_send(&m);
		fk_wait_answer(8);
		TT_EQ(F.code, -TERN_EAUTH);
		TT_ASSERT(!F.closed);
	}
	/* Presence pushes (never answered): about a user of a domain the
	 * link did not prove, or for a viewer elsewhere, are dropped and
	 * counted; the link stays (the envelope after them is taken). */
	{
		struct msg m = {.type = MSG_FED_PRESENCE, .req = 10};
		unsigned long long before = metric_of(&N2,
		    "tern_fed_auth_refused_total");

		m.u.fed_presence.to.p = "bob@two.test";
		m.u.fed_presence.to.len = 12;
		m.u.fed_presence.user.p = "mallory@one.test";
		m.u.fed_presence.user.len = 16;
		m.u.fed_presence.state = MSG_PRESENCE_ONLINE;
		fk_send(&m);
		m.u.fed_presence.to.p = "carol@three.test";
		m.u.fed_presence.to.len = 16;
		m.u.fed_presence.user.p = "eve@evil.test";
		m.u.fed_presence.user.len = 13;
		fk_send(&m);
		fk_env(11, "eve@evil.test", "bob@two.test");
		fk_wait_answer(9);
		TT_EQ(F.type, MSG_OK);
		TT_ASSERT(!F.closed);
		TT_EQ(metric_of(&N2, "tern_fed_auth_refused_total"),
		    before + 1);
	}
	/* Before HELLO nothing but HELLO is heard. */
	fk_connect(N2.fed_port, n2key);
	fk_env(6, "eve@evil.test", "bob@two.test");
	fk_wait_answer(1);
	TT_EQ(F.code, -TERN_EAUTH);

	if (F.c != NULL)
		net_conn_close(F.c, 0);
	net_loop_close(&F.nl, NULL, NULL);
	tt_uv_close(&F.loop);
	ternd_stop(&N2.t);
	ternd_destroy(&N2.t);
}

/* --- ternd doctor, against a dnsmasq on loopback ------------------------ */

static int
doctor(struct fnode *n, const char *domain, char *out, size_t cap)
{
	const char *args[] = {"doctor", domain, NULL};
	int st = ternd_cli(&n->t, out, cap, args);

	/* What it said, for whoever reads a failing case's output. */
	fprintf(stderr, "--- ternd doctor %s (exit %d):\n%s", domain, st, out);
	return st;
}

/* doctor finds a healthy domain healthy, and names each of: missing SRV,
 * wrong port, key mismatch, unreachable node. Discovery is by DNS here:
 * no static routes. */
TT_CASE(fed__doctor_names_each_problem)
{
	char dns[32], rec[12][160], out[8192];
	const char *recs[13];
	uint16_t dport, dead;
	int i = 0;

	fnode_init(&N1, "one.test");
	fnode_init(&N2, "two.test");
	dport = ternd_free_port();
	dead = ternd_free_port();
	snprintf(dns, sizeof(dns), "127.0.0.1:%u", dport);
	ternd_conf_set(&N1.t, "dns_servers", dns);
	ternd_conf_set(&N2.t, "dns_servers", dns);
	snprintf(rec[i++], 160, "--host-record=node.test,127.0.0.1");
	snprintf(rec[i++], 160, "--srv-host=_tern-fed._tcp.two.test,"
	    "node.test,%u", N2.fed_port);
	snprintf(rec[i++], 160, "--txt-record=_tern-key.two.test,"
	    "v=tern1 k=%s", N2.key);
	snprintf(rec[i++], 160, "--txt-record=_tern-key.one.test,"
	    "v=tern1 k=%s", N1.key);
	snprintf(rec[i++], 160, "--srv-host=_tern-fed._tcp.wrongport.test,"
	    "node.test,%u", dead);
	snprintf(rec[i++], 160, "--txt-record=_tern-key.wrongport.test,"
	    "v=tern1 k=%s", N2.key);
	/* badkey.test's SRV leads to two.test's node, whose key it does
	 * not publish. */
	snprintf(rec[i++], 160, "--srv-host=_tern-fed._tcp.badkey.test,"
	    "node.test,%u", N2.fed_port);
	snprintf(rec[i++], 160, "--txt-record=_tern-key.badkey.test,"
	    "v=tern1 k=%s", N1.key);
	for (int k = 0; k < i; k++)
		recs[k] = rec[k];
	recs[i] = NULL;
	dm_start(dport, recs);
	ternd_start(&N2.t);

	TT_EQ(doctor(&N1, "two.test", out, sizeof(out)), 0);
	TT_ASSERT(strstr(out, "ok   where  SRV _tern-fed._tcp.two.test") !=
	    NULL);
	TT_ASSERT(strstr(out, "ok   key ") != NULL);
	TT_ASSERT(strstr(out, "ok   hello  two.test accepts links from "
	    "one.test") != NULL);
	TT_ASSERT(strstr(out, "all checks passed") != NULL);

	TT_EQ(doctor(&N1, "nosrv.test", out, sizeof(out)), 1);
	TT_ASSERT(strstr(out, "FAIL where  no SRV _tern-fed._tcp.nosrv.test")
	    != NULL);

	TT_EQ(doctor(&N1, "wrongport.test", out, sizeof(out)), 1);
	TT_ASSERT(strstr(out, "FAIL reach ") != NULL);

	TT_EQ(doctor(&N1, "badkey.test", out, sizeof(out)), 1);
	TT_ASSERT(strstr(out, "FAIL key    key mismatch") != NULL);

	ternd_stop(&N2.t);
	TT_EQ(doctor(&N1, "two.test", out, sizeof(out)), 1);
	TT_ASSERT(strstr(out, "FAIL reach ") != NULL);
	TT_ASSERT(strstr(out, "--   hello  not checked") != NULL);

	dm_stop();
	ternd_destroy(&N1.t);
	ternd_destroy(&N2.t);
}

/* --- a link cut for a while, then healed -------------------------------- */

/*
 * A TCP proxy in a thread of this process, between one.test and two.test's
 * federation port: "cut" closes every proxied connection and stops
 * listening (connections are refused), "heal" listens again.
 */
#define PX_PAIRS 16

static struct {
	uint16_t port, to;
	int lfd;
	int a[PX_PAIRS], b[PX_PAIRS];
	atomic_int cmd;            /* 0 run, 1 cut, 2 heal, 3 stop */
	atomic_int state;          /* what it did last */
	pthread_t th;
} PX;

static int
px_listen(uint16_t port)
{
	struct sockaddr_in a = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0), one = 1;

	if (fd < 0)
		return -1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(port);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    listen(fd, 16) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void
px_drop_all(void)
{
	int i;

	for (i = 0; i < PX_PAIRS; i++) {
		if (PX.a[i] >= 0)
			close(PX.a[i]);
		if (PX.b[i] >= 0)
			close(PX.b[i]);
		PX.a[i] = PX.b[i] = -1;
	}
}

static void *
px_main(void *arg)
{
	struct pollfd p[1 + 2 * PX_PAIRS];
	char buf[65536];
	int i, n;

	(void)arg;
	for (;;) {
		int cmd = atomic_exchange(&PX.cmd, 0);
		if (cmd == 3)
			break;
		if (cmd == 1) {
			px_drop_all();
			if (PX.lfd >= 0)
				close(PX.lfd);
			PX.lfd = -1;
			atomic_store(&PX.state, 1);
		} else if (cmd == 2) {
			PX.lfd = px_listen(PX.port);
			atomic_store(&PX.state, PX.lfd >= 0 ? 2 : -1);
		}
		n = 0;
		p[n].fd = PX.lfd;
		p[n++].events = POLLIN;
		for (i = 0; i < PX_PAIRS; i++) {
			p[n].fd = PX.a[i];
			p[n++].events = POLLIN;
			p[n].fd = PX.b[i];
			p[n++].events = POLLIN;
		}
		if (poll(p, (nfds_t)n, 20) <= 0)
			continue;
		if (PX.lfd >= 0 && (p[0].revents & POLLIN)) {
			int c = accept4(PX.lfd, NULL, NULL, SOCK_CLOEXEC);
			int s = c >= 0 ? ternd_tcp_connect(PX.to) : -1;
			for (i = 0; i < PX_PAIRS && c >= 0 && s >= 0; i++)
				if (PX.a[i] < 0) {
					PX.a[i] = c;
					PX.b[i] = s;
					c = s = -1;
				}
			if (c >= 0)
				close(c);
			if (s >= 0)
				close(s);
		}
		for (i = 0; i < PX_PAIRS; i++) {
			int k, from, to;
			for (k = 0; k < 2; k++) {
				struct pollfd *q = &p[1 + 2 * i + k];
				if (q->fd < 0 || !(q->revents & (POLLIN | POLLHUP |
				    POLLERR)))
					continue;
				from = k == 0 ? PX.a[i] : PX.b[i];
				to = k == 0 ? PX.b[i] : PX.a[i];
				ssize_t r = read(from, buf, sizeof(buf));
				if (r <= 0 || write(to, buf, (size_t)r) != r) {
					close(PX.a[i]);
					close(PX.b[i]);
					PX.a[i] = PX.b[i] = -1;
					break;
				}
			}
		}
	}
	px_drop_all();
	if (PX.lfd >= 0)
		close(PX.lfd);
	return NULL;
}

static void
px_do(int cmd, int want)
{
	uint64_t end = ternd_now_ms() + 5000;

	atomic_store(&PX.state, 0);
	atomic_store(&PX.cmd, cmd);
	while (atomic_load(&PX.state) != want) {
		TT_ASSERT(ternd_now_ms() < end);
		ternd_nap(5);
	}
}

TT_CASE(fed__link_cut_then_healed)
{
	char v[256], *all;
	int i;

	fnode_init(&N1, "one.test");
	fnode_init(&N2, "two.test");
	PX.port = ternd_free_port();
	PX.to = N2.fed_port;
	PX.lfd = px_listen(PX.port);
	TT_ASSERT(PX.lfd >= 0);
	for (i = 0; i < PX_PAIRS; i++)
		PX.a[i] = PX.b[i] = -1;
	TT_EQ(pthread_create(&PX.th, NULL, px_main, NULL), 0);
	/* one reaches two only through the proxy; two reaches one
	 * directly (its answers travel on one's link anyway). */
	snprintf(v, sizeof(v), "two.test=127.0.0.1:%u/%s", PX.port, N2.key);
	ternd_conf_set(&N1.t, "peers", v);
	fnode_route(&N2, &N1, NULL);
	ternd_start(&N1.t);
	ternd_start(&N2.t);
	snprintf(pdir, sizeof(pdir), "%s/profiles", N1.t.dir);
	TT_EQ(mkdir(pdir, 0700), 0);
	{
		struct run r;
		TERN(&r, "alice", "register", "alice@one.test", "--server",
		    N1.server);
		ok(&r);
		free(r.out);
		TERN(&r, "bob", "register", "bob@two.test", "--server",
		    N2.server);
		ok(&r);
		free(r.out);
	}
	send_ok("alice", "bob@two.test", "before the cut", NULL);
	free(inbox_wait("bob", "before the cut", 20000));

	px_do(1, 1);
	send_ok("alice", "bob@two.test", "during the cut 1", NULL);
	send_ok("alice", "bob@two.test", "during the cut 2", NULL);
	ternd_nap(1500); /* one's retries meet a refused port */
	px_do(2, 2);
	all = inbox_wait("bob", "during the cut 2", 40000);
	TT_EQ(count_of(all, "during the cut 1"), 1);
	TT_EQ(count_of(all, "during the cut 2"), 1);
	TT_ASSERT(strstr(all, "during the cut 1") <
	    strstr(all, "during the cut 2"));
	free(all);

	atomic_store(&PX.cmd, 3);
	TT_EQ(pthread_join(PX.th, NULL), 0);
	pair_stop();
}

/* run_err: `ternd ARGS -c CONF` to completion; its stderr into err.
 * Returns the exit status. */
static int
run_err(struct fnode *n, const char *const *args, char *err, size_t cap)
{
	char path[TERND_PATH + 16];
	const char *argv[8];
	int fd, st, i;
	char *e;

	snprintf(path, sizeof(path), "%s/stderr", n->t.dir);
	for (i = 0; args[i] != NULL; i++)
		argv[i] = args[i];
	argv[i++] = "-c";
	argv[i++] = n->t.conf;
	argv[i] = NULL;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	TT_ASSERT(fd >= 0);
	st = ternd_wait_exit(ternd_spawn(argv, -1, fd), 10000);
	close(fd);
	TT_ASSERT(st != -1 && WIFEXITED(st));
	TT_ASSERT((e = tt_read_file(path, NULL)) != NULL);
	snprintf(err, cap, "%s", e);
	free(e);
	return WEXITSTATUS(st);
}


/* follow_wait: the follower's output (file path) has want after offset
 * *off; *off moves past it. */
static void
follow_wait(const char *path, const char *want, size_t *off)
{
	uint64_t end = ternd_now_ms() + 20000;
	size_t len;

	for (;;) {
		char *all = tt_read_file(path, &len);
		const char *at;

		TT_ASSERT(all != NULL);
		if (len > *off && (at = strstr(all + *off, want)) != NULL) {
			*off = (size_t)(at - all) + strlen(want);
			free(all);
			return;
		}
		if (ternd_now_ms() >= end)
			tt_fail(__FILE__, __LINE__, "no '%s' after offset %zu "
			    "in: %s", want, *off, all);
		free(all);
		ternd_nap(100);
	}
}

/* tern_spawn: runs `tern --profile pdir/who args...` in the background,
 * stdout to out (a path); its pid. */
static pid_t
tern_spawn(const char *who, const char *const *args, const char *out)
{
	char profile[TERND_PATH + 64], err[TERND_PATH + 32];
	char *argv[16];
	posix_spawn_file_actions_t fa;
	size_t n = 0;
	pid_t pid;
	int i;

	snprintf(profile, sizeof(profile), "%s/%s", pdir, who);
	snprintf(err, sizeof(err), "%s.err", out);
	argv[n++] = (char *)TERN_BIN;
	argv[n++] = (char *)"--profile";
	argv[n++] = profile;
	for (i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT |
	    O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT |
	    O_TRUNC, 0600);
	TT_EQ(posix_spawn(&pid, TERN_BIN, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* tern_stop: SIGTERM to a tern_spawn'd follower; it must exit 0. */
static void
tern_stop(pid_t pid)
{
	int st;

	TT_EQ(kill(pid, SIGTERM), 0);
	st = ternd_wait_exit(pid, 10000);
	TT_ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Presence across domains is live (SPEC.md 13.6): a watcher on one.test
 * hears bob@two.test come online, go offline and hide, as pushes; the
 * watch ends on bob's node when the watcher goes; the viewer's own
 * privacy applies at its node. */
TT_CASE(fed__presence_live_across_domains)
{
	const char *watch[] = {"lastseen", "bob@two.test", "--follow", NULL};
	char out[TERND_PATH + 32];
	struct run r;
	size_t off = 0;
	pid_t pid;

	pair_init();
	TT_OK(config_file_set(N2.t.conf, "presence.online_threshold", "1s"));
	pair_run();

	/* alice watches bob. */
	snprintf(out, sizeof(out), "%s/follow.out", pdir);
	pid = tern_spawn("alice", watch, out);
	/* The snapshot first: bob registered, so he was seen. */
	follow_wait(out, "last seen ", &off);
	TT_EQ(metric_of(&N2, "tern_fed_presence_watchers"), 1);

	/* bob comes online: pushed; leaves: pushed after the threshold. */
	TERN(&r, "bob", "inbox");
	ok(&r);
	free(r.out);
	follow_wait(out, "online\n", &off);
	follow_wait(out, "last seen ", &off);
	/* bob hides his last seen: pushed (the privacy change itself, made
	 * while online, and the state after he leaves). */
	TERN(&r, "bob", "privacy", "last-seen", "nobody");
	ok(&r);
	free(r.out);
	follow_wait(out, "hidden\n", &off);
	TT_ASSERT(metric_of(&N2, "tern_fed_presence_pushed_total") >= 3);

	/* alice stops watching: bob's node drops the watch. */
	tern_stop(pid);
	{
		uint64_t end = ternd_now_ms() + 15000;
		while (metric_of(&N2, "tern_fed_presence_watchers") != 0) {
			if (ternd_now_ms() >= end)
				tt_fail(__FILE__, __LINE__, "watch not ended");
			ternd_nap(200);
		}
	}

	/* The viewer's own setting, at the viewer's node: alice hides hers,
	 * so she sees bob's no more, though he shows it to everyone. */
	TERN(&r, "bob", "privacy", "last-seen", "everyone");
	ok(&r);
	free(r.out);
	TERN(&r, "alice", "lastseen", "bob@two.test");
	ok(&r);
	TT_ASSERT(strcmp(r.out, "hidden\n") != 0);
	free(r.out);
	TERN(&r, "alice", "privacy", "last-seen", "nobody");
	ok(&r);
	free(r.out);
	TERN(&r, "alice", "lastseen", "bob@two.test");
	ok(&r);
	TT_ASSERT(strcmp(r.out, "hidden\n") == 0);
	free(r.out);
	pair_stop();
}

/* A recipient online on its node while the messages come across: each
 * is shown once, in order, every sender sees it delivered, and both
 * nodes' queues end empty (the destination pushes at once and may never
 * write the envelope: SPEC.md 13.1, 7.3). */
TT_CASE(fed__live_recipient_gets_each_once)
{
	const char *follow[] = {"inbox", "--follow", "--json", NULL};
	char out[TERND_PATH + 32], id[33], text[64], *all;
	const char *prev = NULL;
	size_t len, off = 0;
	pid_t pid;
	int i;

	pair_start();
	snprintf(out, sizeof(out), "%s/bob.out", pdir);
	pid = tern_spawn("bob", follow, out);
	/* bob is live once his first inbox has drained: a first message
	 * shows that. */
	send_ok("alice", "bob@two.test", "first, to a live bob", id);
	follow_wait(out, "first, to a live bob", &off);
	for (i = 0; i < 30; i++) {
		snprintf(text, sizeof(text), "live message %02d", i);
		send_ok("alice", "bob@two.test", text, i == 29 ? id : NULL);
	}
	follow_wait(out, "live message 29", &off);
	status_wait("alice", id, "delivered");
	tern_stop(pid);
	all = tt_read_file(out, &len);
	TT_ASSERT(all != NULL);
	for (i = 0; i < 30; i++) {
		const char *at;
		snprintf(text, sizeof(text), "live message %02d", i);
		TT_EQ(count_of(all, text), 1);
		at = strstr(all, text);
		TT_ASSERT(prev == NULL || prev < at);
		prev = at;
	}
	free(all);
	{
		uint64_t end = ternd_now_ms() + 15000;
		while (metric_of(&N1, "tern_fed_queued") != 0 ||
		    metric_of(&N2, "tern_envelopes_queued") != 0) {
			if (ternd_now_ms() >= end)
				tt_fail(__FILE__, __LINE__, "queues not empty");
			ternd_nap(200);
		}
	}
	pair_stop();
}

/* A bad [federation] setting stops the node at start with a line that
 * names it; doctor refuses what is not a domain. */
TT_CASE(fed__bad_config_and_doctor_input)
{
	static const char *const bad[] = {
		"two.test",                          /* no address */
		"two.test=127.0.0.1:99999",          /* bad port */
		"two.test=127.0.0.1:7371/notakey",   /* not a key */
		"not a domain=127.0.0.1:7371",
	};
	const char *run[] = {"run", NULL};
	const char *doc[] = {"doctor", "not_a..domain", NULL};
	char err[4096];
	size_t i;

	fnode_init(&N1, "one.test");
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ternd_conf_set(&N1.t, "peers", bad[i]);
		TT_EQ(run_err(&N1, run, err, sizeof(err)), 1);
		if (strstr(err, "[federation] peers") == NULL)
			tt_fail(__FILE__, __LINE__, "'%s': %s", bad[i], err);
	}
	ternd_conf_set(&N1.t, "peers", "none");
	/* Backup relay settings (SPEC.md 13.5). */
	{
		static const char *const rf[] = {
			"not a domain", "one.test",       /* our own */
			"two.test,not a domain",          /* one bad of two */
		};
		static const char *const rl[] = {
			"relay.test",                     /* no key */
			"relay.test/notakey", "not a domain/"
			"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
		};
		for (i = 0; i < sizeof(rf) / sizeof(rf[0]); i++) {
			ternd_conf_set(&N1.t, "relay_for", rf[i]);
			TT_EQ(run_err(&N1, run, err, sizeof(err)), 1);
			if (strstr(err, "[federation] relay_for") == NULL)
				tt_fail(__FILE__, __LINE__, "'%s': %s", rf[i],
				    err);
		}
		ternd_conf_set(&N1.t, "relay_for", "none");
		for (i = 0; i < sizeof(rl) / sizeof(rl[0]); i++) {
			ternd_conf_set(&N1.t, "relays", rl[i]);
			TT_EQ(run_err(&N1, run, err, sizeof(err)), 1);
			if (strstr(err, "[federation] relays") == NULL)
				tt_fail(__FILE__, __LINE__, "'%s': %s", rl[i],
				    err);
		}
		ternd_conf_set(&N1.t, "relays", "none");
	}
	TT_OK(config_file_set(N1.t.conf, "federation.listen", "nonsense"));
	TT_EQ(run_err(&N1, run, err, sizeof(err)), 1);
	TT_ASSERT(strstr(err, "[federation] listen") != NULL);
	TT_EQ(run_err(&N1, doc, err, sizeof(err)), 2);
	TT_ASSERT(strstr(err, "not a domain") != NULL);
	ternd_destroy(&N1.t);
}
