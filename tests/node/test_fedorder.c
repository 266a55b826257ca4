/*
 * test_fedorder.c: order at the destination of federation (SPEC.md 7.3,
 * 13.1). A real ternd serves two.test; its user bob is online through the
 * client library and acknowledges nothing until the case says so. A fake
 * one.test in this process opens a federation link to it (its key is
 * pinned in the node's [federation] peers) and sends FED_ENV from
 * alice@one.test to bob's device.
 *
 * First bob gets as many envelopes as the node pushes to a device
 * without an acknowledgement (SRV_INFLIGHT_LIVE_MAX in node/server.c,
 * 4,096), so the next one, X, finds no room: the node does not push it,
 * it waits for its commit. Then bob makes room and Y0..Y49 follow. A Y
 * that finds room must not overtake X (commit 26943e9: while an envelope
 * from another domain waits for its commit, the later ones for that
 * device wait too). Each case checks that bob got every envelope exactly
 * once, on one connection, in the order one.test sent them; that one.test
 * got exactly one answer, OK, for every FED_ENV; and that nothing is left
 * in the node's queue.
 *
 * The moment matters, so the case makes it instead of racing for it: it
 * holds the node's commits (a write lock on its database, store_hold)
 * from before X until the node has read the Ys, and it knows when the
 * node has read something from a PING sent behind it (answered in order).
 *
 * One uv loop runs bob's client and the fake; waits end on conditions,
 * each with its own deadline, never on the passage of time.
 */
#include <stdarg.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include "ternd_harness.h"
#include "fed_harness.h"

#include <sodium.h>
#include <sqlite3.h>
#include <uv.h>

#include "client.h"
#include "msg.h"
#include "net.h"
#include "noise.h"
#include "tt_uv.h"

#define WAIT_MS 20000      /* any one wait */
#define CAP 4096           /* the node's SRV_INFLIGHT_LIVE_MAX */
#define NY 50              /* envelopes after X */
#define ACK_FIRST 64       /* acks before the Ys: room for all of them */
#define MAX_REQ 8192       /* FED_ENV and PING one case sends */
#define MAX_DEL 8192       /* deliveries bob keeps */
#define ID_TAG 0x6f        /* first byte of every envelope id we make */
#define ORIGIN "one.test"
#define DEST "two.test"
#define SENDER "alice@one.test"
#define RCPT "bob@two.test"
#define LOCAL "carol@two.test" /* a local sender (the third case) */
#define TS_BASE 1700000000000ull /* timestamp_ms of envelope 0 */

/* What the fake heard for one request it sent. */
struct answer {
	uint8_t tag;              /* the envelope's (0: not a FED_ENV) */
	uint32_t n;
	int oks;                  /* OK answers */
	int errors;               /* ERROR answers */
	uint16_t code;            /* the last ERROR's */
};

/* One DELIVER as bob got it. */
struct del {
	uint8_t tag;              /* from the id ('?': not one of ours) */
	uint32_t n;
	int conn;                 /* bob's connection it came on, from 1 */
	bool acked;               /* bob sent ACK for it */
};

static struct {
	uv_loop_t loop;
	uv_timer_t tick;          /* wakes UV_RUN_ONCE for the deadlines */
	struct fnode n;           /* two.test, the real node */
	uint8_t node_key[32];     /* its node key */

	/* bob */
	struct client *c;
	bool reg_done, gone;
	int reg_status;
	int online;               /* times bob came online */
	bool auto_ack;            /* ACK each DELIVER as it comes */
	int b_pongs;              /* PONG answers on bob's connection */
	int ndel;
	struct del del[MAX_DEL];
	int ntag[256];            /* deliveries by tag */
	sqlite3 *hold;            /* our write lock on the node's database */

	/* carol, a local user of two.test (third case) */
	struct client *cc;
	bool c_reg_done, c_gone;
	int c_reg_status;
	int c_online;
	int c_pongs;
	int probes;               /* ephemeral probes bob got (and acked) */
	int wrong;                /* what the node should never do */
	char wrong_what[160];

	/* the fake one.test */
	struct net_loop nl;
	uint8_t priv[32], pub[32];
	struct net_conn *link;
	bool open, welcomed, closed;
	uint32_t req;             /* the last req sent */
	uint32_t nenv;            /* FED_ENV sent */
	uint32_t noks;            /* OK answers to them */
	uint32_t nerrors;         /* ERROR answers to them */
	bool refusals_expected;   /* the case counts ERRORs itself */
	uint64_t pong;            /* nonce of the last PONG */
	struct answer ans[MAX_REQ];
} T;

/* --- ids and payloads -------------------------------------------------- */

static void
make_id(uint8_t id[MSG_ID_LEN], uint8_t tag, uint32_t n)
{
	memset(id, 0, MSG_ID_LEN);
	id[0] = ID_TAG;
	id[1] = tag;
	id[12] = (uint8_t)(n >> 24);
	id[13] = (uint8_t)(n >> 16);
	id[14] = (uint8_t)(n >> 8);
	id[15] = (uint8_t)n;
}

/* id_split: tag and n of an id make_id made; false for any other id. */
static bool
id_split(const uint8_t id[MSG_ID_LEN], uint8_t *tag, uint32_t *n)
{
	static const uint8_t zero[10];

	if (id[0] != ID_TAG || memcmp(id + 2, zero, sizeof(zero)) != 0)
		return false;
	*tag = id[1];
	*n = (uint32_t)id[12] << 24 | (uint32_t)id[13] << 16 |
	    (uint32_t)id[14] << 8 | id[15];
	return true;
}

static int
payload_of(char *buf, size_t cap, uint8_t tag, uint32_t n)
{
	return snprintf(buf, cap, "%c-%u", tag, n);
}

static void
wrong(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
wrong(const char *fmt, ...)
{
	va_list ap;

	if (T.wrong++ > 0)
		return; /* the first one tells */
	va_start(ap, fmt);
	vsnprintf(T.wrong_what, sizeof(T.wrong_what), fmt, ap);
	va_end(ap);
}

/* --- the loop and waits ------------------------------------------------- */

static void
tick_cb(uv_timer_t *t)
{
	(void)t; /* only wakes the loop */
}

static void
state_dump(void)
{
	int i;

	fprintf(stderr, "bob: online %d, deliveries %d; fake: open %d "
	    "welcomed %d closed %d, FED_ENV %u, OK %u, ERROR %u; wrong %d "
	    "(%s)\n", T.online, T.ndel, T.open, T.welcomed, T.closed, T.nenv,
	    T.noks, T.nerrors, T.wrong, T.wrong_what);
	for (i = T.ndel > 20 ? T.ndel - 20 : 0; i < T.ndel; i++)
		fprintf(stderr, "  delivery %d: %c-%u on connection %d\n", i,
		    T.del[i].tag, T.del[i].n, T.del[i].conn);
	if (T.n.t.pid > 0)
		fprintf(stderr, "node: tern_envelopes_queued %llu, "
		    "tern_envelopes_delivered_total %llu, "
		    "tern_envelopes_acked_total %llu\n",
		    metric_of(&T.n, "tern_envelopes_queued"),
		    metric_of(&T.n, "tern_envelopes_delivered_total"),
		    metric_of(&T.n, "tern_envelopes_acked_total"));
	ternd_log_tail(&T.n.t, 8000);
}

static void
wait_failed(const char *what, int line, uint32_t ms)
{
	state_dump();
	tt_fail(__FILE__, line, "after %u ms still waiting for %s", ms, what);
}

/* WAIT_FOR: runs the loop until cond holds, for at most WAIT_MS. */
#define WAIT_FOR(cond)                                                     \
	do {                                                               \
		uint64_t end_ = ternd_now_ms() + WAIT_MS;                  \
		while (!(cond)) {                                          \
			if (ternd_now_ms() >= end_)                        \
				wait_failed(#cond, __LINE__, WAIT_MS);     \
			uv_run(&T.loop, UV_RUN_ONCE);                      \
		}                                                          \
	} while (0)

static unsigned long long
metric(const char *name)
{
	return metric_of(&T.n, name);
}

/* --- bob ------------------------------------------------------------------ */

static void
b_state(struct client *c, enum client_state st, int err, uint32_t delay)
{
	(void)c;
	(void)err;
	(void)delay;
	if (st == CLIENT_ONLINE)
		T.online++;
}

static void
b_ack(int i)
{
	uint8_t id[MSG_ID_LEN];

	if (T.del[i].acked || T.del[i].tag == '?')
		return;
	make_id(id, T.del[i].tag, T.del[i].n);
	TT_OK(client_ack(T.c, id));
	T.del[i].acked = true;
}

/* b_deliver: records what came, in order, and checks it is what the
 * fake sent (all but received_ms, which the node sets). */
static void
b_deliver(struct client *c, const struct msg_deliver *d)
{
	struct del *r;
	char want[32];
	int len;

	{
		uint8_t tag;
		uint32_t n;
		/* A probe (setup): acknowledged, not kept with the rest. */
		if (id_split(d->id, &tag, &n) && tag == 'p') {
			if (d->class != MSG_CLASS_EPHEMERAL)
				wrong("probe p-%u with class %u", n, d->class);
			TT_OK(client_ack(c, d->id));
			T.probes++;
			return;
		}
	}
	TT_ASSERT(T.ndel < MAX_DEL);
	r = &T.del[T.ndel++];
	r->conn = T.online;
	if (!id_split(d->id, &r->tag, &r->n)) {
		r->tag = '?';
		wrong("a DELIVER with an id we never sent");
		return;
	}
	T.ntag[r->tag]++;
	len = payload_of(want, sizeof(want), r->tag, r->n);
	{
		const char *from = r->tag == 'c' ? LOCAL : SENDER;
		if (d->from.len != strlen(from) ||
		    memcmp(d->from.p, from, d->from.len) != 0)
			wrong("%c-%u delivered from %.*s", r->tag, r->n,
			    (int)d->from.len, d->from.p);
	}
	if (d->from_device != 1 || d->class != MSG_CLASS_MESSAGE ||
	    d->timestamp_ms != TS_BASE + r->n ||
	    d->payload.len != (size_t)len ||
	    memcmp(d->payload.p, want, (size_t)len) != 0)
		wrong("%c-%u delivered with other fields than sent", r->tag,
		    r->n);
	/* From another domain: the origin's acceptance time (SPEC.md 4.17),
	 * whether pushed at once, after its commit or by a fetch. */
	if (r->tag != 'c' && d->received_ms != TS_BASE + r->n)
		wrong("%c-%u delivered with received_ms %llu, not the "
		    "origin's", r->tag, r->n,
		    (unsigned long long)d->received_ms);
	if (T.auto_ack)
		b_ack(T.ndel - 1);
}

static const struct client_cbs b_cbs = {
	.state = b_state,
	.deliver = b_deliver,
};

static void
b_reg(void *arg, int status, uint32_t device_id)
{
	(void)arg;
	TT_EQ(device_id, status == 0 ? 1 : 0);
	T.reg_done = true;
	T.reg_status = status;
}

static void
b_gone(void *arg)
{
	(void)arg;
	T.gone = true;
}

static void
b_pong(void *arg, int status, const struct msg *resp)
{
	(void)arg;
	(void)resp;
	TT_EQ(status, 0);
	T.b_pongs++;
}

/* b_ping: PING on bob's connection, answered; the node answers a PING
 * when it reads it, so the PONG says it has handled all bob sent before
 * (ACK has no answer of its own). */
static void
b_ping(void)
{
	struct msg m = {.type = MSG_PING};
	int pongs = T.b_pongs;

	m.u.ping.nonce = 0x626f62;
	TT_OK(client_request(T.c, &m, b_pong, NULL));
	WAIT_FOR(T.b_pongs > pongs || T.wrong > 0);
	TT_EQ(T.wrong, 0);
}

/* --- carol, a local sender ------------------------------------------------ */

static void
c_state(struct client *c, enum client_state st, int err, uint32_t delay)
{
	(void)c;
	(void)err;
	(void)delay;
	if (st == CLIENT_ONLINE)
		T.c_online++;
}

static void
c_reg(void *arg, int status, uint32_t device_id)
{
	(void)arg;
	(void)device_id;
	T.c_reg_done = true;
	T.c_reg_status = status;
}

static void
c_gone(void *arg)
{
	(void)arg;
	T.c_gone = true;
}

static void
c_pong(void *arg, int status, const struct msg *resp)
{
	(void)arg;
	(void)resp;
	TT_EQ(status, 0);
	T.c_pongs++;
}

static const struct client_cbs c_cbs = {
	.state = c_state,
};

/* carol_online: carol registered on two.test and online. */
static void
carol_online(void)
{
	struct client_config cfg;
	static uint8_t cpriv[32], cpub[32];

	client_config_init(&cfg);
	cfg.host = "127.0.0.1";
	cfg.port = T.n.t.port;
	noise_keypair_generate(cpriv, cpub);
	cfg.device_key = cpriv;
	cfg.user = LOCAL;
	cfg.reconnect = false;
	TT_OK(client_new(&T.loop, &cfg, &c_cbs, NULL, &T.cc));
	TT_OK(client_register(T.cc, NULL, "laptop", c_reg, NULL));
	WAIT_FOR(T.c_reg_done);
	TT_EQ(T.c_reg_status, 0);
	WAIT_FOR(T.c_online > 0);
}

/* carol_send: carol sends (c, n) to bob's device 1, and the node has read
 * it (her PING behind it is answered: a connection is read in order). */
static void
carol_send(uint32_t n)
{
	struct msg m = {.type = MSG_PING};
	uint8_t id[MSG_ID_LEN];
	char payload[32];
	int len = payload_of(payload, sizeof(payload), 'c', n);
	int pongs = T.c_pongs;

	make_id(id, 'c', n);
	TT_OK(client_send(T.cc, id, RCPT, 1, MSG_CLASS_MESSAGE, TS_BASE + n,
	    (const uint8_t *)payload, (size_t)len));
	m.u.ping.nonce = 0x636172;
	TT_OK(client_request(T.cc, &m, c_pong, NULL));
	WAIT_FOR(T.c_pongs > pongs || T.wrong > 0);
	TT_EQ(T.wrong, 0);
}

/* count_of_tag: deliveries of tag so far. */
static int
count_of_tag(uint8_t tag)
{
	return T.ntag[tag];
}

/* --- the fake one.test ---------------------------------------------------- */

static void
o_send(const struct msg *m)
{
	uint8_t buf[MSG_MAX];
	size_t n;

	TT_ASSERT(T.link != NULL);
	TT_OK(msg_encode(m, buf, sizeof(buf), &n));
	TT_OK(net_conn_send(T.link, buf, n));
}

static void
o_open(struct net_conn *c)
{
	if (c == T.link)
		T.open = true;
}

static int
o_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct answer *a;
	struct msg m;

	if (c != T.link)
		return 0;
	if (msg_decode(buf, len, &m) != 0) {
		wrong("an answer that does not decode");
		return 0;
	}
	if (m.type == MSG_FED_WELCOME) {
		if (T.welcomed)
			wrong("FED_WELCOME twice");
		T.welcomed = true;
		return 0;
	}
	if (m.type == MSG_PONG) {
		T.pong = m.u.pong.nonce;
		return 0;
	}
	if ((m.type != MSG_OK && m.type != MSG_ERROR) || m.req == 0 ||
	    m.req > T.req || T.ans[m.req].tag == 0) {
		wrong("message type %#x (req %u) on the link", m.type, m.req);
		return 0;
	}
	a = &T.ans[m.req];
	if (a->oks + a->errors > 0)
		wrong("%c-%u answered twice", a->tag, a->n);
	if (m.type == MSG_OK) {
		a->oks++;
		T.noks++;
	} else {
		a->errors++;
		a->code = m.u.error.code;
		T.nerrors++;
		if (!T.refusals_expected)
			wrong("%c-%u refused: ERROR %u", a->tag, a->n,
			    a->code);
	}
	return 0;
}

static void
o_closed(struct net_conn *c, int err)
{
	(void)err;
	if (c != T.link)
		return;
	T.closed = true;
	T.link = NULL;
}

static const struct net_conn_cbs o_cbs = {
	.open = o_open, .message = o_message, .closed = o_closed,
};

/* o_link: a link to the node as one.test, welcomed. */
static void
o_link(void)
{
	struct msg m = {.type = MSG_FED_HELLO};

	TT_OK(net_connect(&T.nl, "127.0.0.1", T.n.fed_port,
	    CHAN_KIND_FEDERATION, CHAN_IK, T.priv, NULL, T.node_key, MSG_MAX, &o_cbs,
	    0, &T.link));
	WAIT_FOR(T.open || T.closed);
	TT_ASSERT(T.open);
	m.req = ++T.req;
	m.u.fed_hello.domain.p = ORIGIN;
	m.u.fed_hello.domain.len = strlen(ORIGIN);
	m.u.fed_hello.to_domain.p = DEST;
	m.u.fed_hello.to_domain.len = strlen(DEST);
	m.u.fed_hello.time_ms = (uint64_t)time(NULL) * 1000;
	o_send(&m);
	WAIT_FOR(T.welcomed || T.closed || T.wrong > 0);
	TT_ASSERT(T.welcomed);
}

static uint32_t o_env_cls(uint8_t tag, uint32_t n, uint8_t cls);

/* o_env: FED_ENV (tag, n) from alice to bob's device 1; its req. */
static uint32_t
o_env(uint8_t tag, uint32_t n)
{
	return o_env_cls(tag, n, MSG_CLASS_MESSAGE);
}

/* o_env_cls: the same, of class cls. */
static uint32_t
o_env_cls(uint8_t tag, uint32_t n, uint8_t cls)
{
	struct msg m = {.type = MSG_FED_ENV};
	struct msg_fed_env *e = &m.u.fed_env;
	char payload[32];
	int len = payload_of(payload, sizeof(payload), tag, n);

	TT_ASSERT(T.req + 1 < MAX_REQ);
	m.req = ++T.req;
	make_id(e->id, tag, n);
	e->from.p = SENDER;
	e->from.len = strlen(SENDER);
	e->from_device = 1;
	e->to.p = RCPT;
	e->to.len = strlen(RCPT);
	e->to_device = 1;
	e->class = cls;
	e->timestamp_ms = TS_BASE + n;
	e->received_ms = TS_BASE + n;
	e->payload.p = (const uint8_t *)payload;
	e->payload.len = (size_t)len;
	o_send(&m);
	T.ans[m.req].tag = tag;
	T.ans[m.req].n = n;
	T.nenv++;
	return m.req;
}

/* o_ping: PING on the link; the node answers it when it has read it, so
 * its PONG says that everything sent before it has been handled (the
 * node reads a link in order, and FED_ENV's checks run at once). */
static uint64_t
o_ping(void)
{
	struct msg m = {.type = MSG_PING};

	m.req = ++T.req;
	m.u.ping.nonce = 0x6f72646572000000ull + m.req;
	o_send(&m);
	return m.u.ping.nonce;
}

/* answered: the FED_ENV of req has its answer. */
static bool
answered(uint32_t req)
{
	return T.ans[req].oks + T.ans[req].errors > 0;
}

/* --- a case's start and end ----------------------------------------------- */

/* [federation] inbound_rate and inbound_burst for the next setup, when
 * set (outside T, which setup clears). */
static const char *conf_rate, *conf_burst;

/*
 * setup: two.test with one.test's key pinned (the address is never used:
 * the node has nothing to send to one.test), bob registered and online
 * without auto-ack, the fake's link up, and one envelope through it to
 * bob, acknowledged: bob's session is live, the link is warm.
 */
static void
setup(void)
{
	struct client_config cfg;
	static uint8_t dpriv[32], dpub[32];
	char v[256], b64[64];
	uint32_t w;
	size_t bl;

	memset(&T, 0, sizeof(T));
	TT_ASSERT(sodium_init() >= 0);
	noise_keypair_generate(T.priv, T.pub);
	sodium_bin2base64(b64, sizeof(b64), T.pub, 32,
	    sodium_base64_VARIANT_ORIGINAL);
	TT_OK(uv_loop_init(&T.loop));
	TT_OK(uv_timer_init(&T.loop, &T.tick));
	TT_OK(uv_timer_start(&T.tick, tick_cb, 20, 20));
	TT_OK(net_loop_init(&T.nl, &T.loop, NULL));

	fnode_init(&T.n, DEST);
	snprintf(v, sizeof(v), "%s=127.0.0.1:1/%s", ORIGIN, b64);
	ternd_conf_set(&T.n.t, "peers", v);
	if (conf_rate != NULL) {
		ternd_conf_set(&T.n.t, "inbound_rate", conf_rate);
		ternd_conf_set(&T.n.t, "inbound_burst", conf_burst);
	}
	TT_OK(sodium_base642bin(T.node_key, sizeof(T.node_key), T.n.key,
	    strlen(T.n.key), NULL, &bl, NULL,
	    sodium_base64_VARIANT_ORIGINAL));
	TT_EQ(bl, 32);
	ternd_start(&T.n.t);

	client_config_init(&cfg);
	cfg.host = "127.0.0.1";
	cfg.port = T.n.t.port;
	noise_keypair_generate(dpriv, dpub);
	cfg.device_key = dpriv;
	cfg.user = RCPT;
	cfg.auto_ack = false; /* bob acknowledges when the case says */
	cfg.reconnect = false; /* a second connection would be a failure */
	TT_OK(client_new(&T.loop, &cfg, &b_cbs, NULL, &T.c));
	TT_OK(client_register(T.c, NULL, "phone", b_reg, NULL));
	WAIT_FOR(T.reg_done);
	TT_EQ(T.reg_status, 0);
	WAIT_FOR(T.online > 0);

	o_link();
	T.auto_ack = true;
	w = o_env('w', 0);
	WAIT_FOR(count_of_tag('w') == 1 && answered(w));
	WAIT_FOR(metric("tern_envelopes_queued") == 0);
	T.auto_ack = false;
	/* w-0 may have come by a fetch, after which the session turns live
	 * only when a later fetch finds nothing more. Ephemeral probes
	 * (pushed to a live session, else dropped) until one arrives; the
	 * node pushes one before its OK, and bob's PONG comes after it. */
	for (uint32_t k = 0; T.probes == 0; k++) {
		TT_ASSERT(k < 1000);
		w = o_env_cls('p', k, MSG_CLASS_EPHEMERAL);
		WAIT_FOR(answered(w));
		b_ping();
	}
}

static void
teardown(void)
{
	TT_EQ(T.wrong, 0);
	client_close(T.c, b_gone, NULL);
	WAIT_FOR(T.gone);
	T.c = NULL;
	if (T.cc != NULL) {
		client_close(T.cc, c_gone, NULL);
		WAIT_FOR(T.c_gone);
		T.cc = NULL;
	}
	if (T.link != NULL)
		net_conn_close(T.link, 0);
	net_loop_close(&T.nl, NULL, NULL);
	uv_close((uv_handle_t *)&T.tick, NULL);
	tt_uv_close(&T.loop);
	ternd_stop(&T.n.t);
	ternd_destroy(&T.n.t);
}

/* --- the script ---------------------------------------------------------- */

/* fill: CAP envelopes, all pushed to bob at once and none acknowledged:
 * the node's count of bob's unacknowledged pushes is at its cap. */
static void
fill(void)
{
	uint32_t n;

	for (n = 0; n < CAP; n++)
		(void)o_env('a', n);
	WAIT_FOR(count_of_tag('a') == CAP || T.closed || T.wrong > 0);
	TT_EQ(T.wrong, 0);
}

/* o_sync: a PING on the link, answered: the node has read everything
 * sent on the link before it. */
static void
o_sync(void)
{
	uint64_t nonce = o_ping();

	WAIT_FOR(T.pong == nonce || T.closed || T.wrong > 0);
	TT_EQ(T.wrong, 0);
	TT_EQ(T.pong, nonce);
}

/*
 * store_hold: a write transaction of our own on the node's database. The
 * node's store is SQLite in WAL mode; its writer begins every batch with
 * BEGIN IMMEDIATE and waits for the lock up to its busy timeout (5 s), so
 * while we hold it the node commits nothing: X waits for its commit as
 * long as the case needs, however fast the disk. Readers are not held
 * (WAL), nor is the node's loop.
 */
static void
store_hold(void)
{
	char path[TERND_PATH + 16];

	snprintf(path, sizeof(path), "%s/ternd.db", T.n.t.dir);
	TT_EQ(sqlite3_open_v2(path, &T.hold, SQLITE_OPEN_READWRITE, NULL),
	    SQLITE_OK);
	TT_EQ(sqlite3_busy_timeout(T.hold, WAIT_MS), SQLITE_OK);
	TT_EQ(sqlite3_exec(T.hold, "BEGIN IMMEDIATE", NULL, NULL, NULL),
	    SQLITE_OK);
}

/* store_release: the node's writer goes on; nothing of ours was written. */
static void
store_release(void)
{
	TT_EQ(sqlite3_exec(T.hold, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	TT_EQ(sqlite3_close(T.hold), SQLITE_OK);
	T.hold = NULL;
}

/* make_room: bob acknowledges the first ACK_FIRST of the fill (room for
 * every Y), and the node has handled the acks (bob's PING is answered:
 * the node reads a connection in order, and ACK has no answer). */
static void
make_room(void)
{
	int i;

	for (i = 0; i < ACK_FIRST; i++)
		b_ack(1 + i); /* a-i: delivery 0 is the warm-up */
	b_ping();
}

/* send_ys: Y0..Y(NY-1), read by the node (o_sync). */
static void
send_ys(void)
{
	int i;

	for (i = 0; i < NY; i++)
		(void)o_env('y', (uint32_t)i);
	o_sync();
}

/* ack_all: bob acknowledges everything it got and from now on everything
 * as it comes. */
static void
ack_all(void)
{
	int i;

	for (i = 0; i < T.ndel; i++)
		b_ack(i);
	T.auto_ack = true;
}

/* ys_before_x: Ys bob got before X (all it got if X never came). */
static int
ys_before_x(void)
{
	int i, k = 0;

	for (i = 0; i < T.ndel && T.del[i].tag != 'x'; i++)
		k += T.del[i].tag == 'y';
	return k;
}

/*
 * check_order: bob got, on its one connection, the warm-up, the fill,
 * X, then nc of carol's if any, then the Ys: each exactly once and in the
 * order the node accepted them, nothing else.
 */
static void
check_order(int nc)
{
	int i, k = 0;

	TT_EQ(T.online, 1);
	TT_EQ(T.wrong, 0);
	for (i = 0; i < T.ndel; i++) {
		uint8_t tag;
		uint32_t n;

		if (i == 0) {
			tag = 'w';
			n = 0;
		} else if (i <= CAP) {
			tag = 'a';
			n = (uint32_t)(i - 1);
		} else if (i == CAP + 1) {
			tag = 'x';
			n = 0;
		} else if (i < CAP + 2 + nc) {
			tag = 'c';
			n = (uint32_t)(i - CAP - 2);
		} else {
			tag = 'y';
			n = (uint32_t)(i - CAP - 2 - nc);
		}
		if (T.del[i].tag != tag || T.del[i].n != n) {
			state_dump();
			tt_fail(__FILE__, __LINE__, "delivery %d is %c-%u, "
			    "want %c-%u (X is x-0; %d of the Ys came before "
			    "it)", i, T.del[i].tag, T.del[i].n, tag, n,
			    ys_before_x());
		}
		TT_EQ(T.del[i].conn, 1);
		k++;
	}
	TT_EQ(k, 1 + CAP + 1 + nc + NY);
}

/*
 * check_done: every FED_ENV got exactly one answer, OK; every delivery
 * is acknowledged and the node's queue is empty.
 */
static void
check_done(int nc)
{
	uint32_t r;

	WAIT_FOR(T.noks + T.nerrors == T.nenv || T.wrong > 0);
	TT_EQ(T.wrong, 0);
	TT_EQ(T.nerrors, 0);
	for (r = 1; r <= T.req; r++)
		if (T.ans[r].tag != 0)
			TT_EQ(T.ans[r].oks, 1);
	WAIT_FOR(metric("tern_envelopes_acked_total") ==
	    (unsigned)(T.ndel + T.probes));
	WAIT_FOR(metric("tern_envelopes_queued") == 0);
	TT_ASSERT(T.link != NULL && !T.closed);
	TT_EQ(T.ndel, 1 + CAP + 1 + nc + NY); /* nothing more came */
}

/* finish: bob has all (nc of carol's among them), in order; every answer
 * OK; the queue empty; then the node stops. */
static void
finish(int nc, uint64_t t0)
{
	WAIT_FOR(T.ndel >= 1 + CAP + 1 + nc + NY || T.wrong > 0);
	check_order(nc);
	check_done(nc);
	printf("%d FED_ENV, %d deliveries, %llu ms\n", (int)T.nenv, T.ndel,
	    (unsigned long long)(ternd_now_ms() - t0));
	teardown();
}

/*
 * x_waits_then_room: X finds bob without room and waits for its commit,
 * which the case holds back (store_hold); meanwhile bob makes room, carol
 * sends nc envelopes (0 or 1), and the node reads the Ys: all find room,
 * yet each must wait behind X.
 */
static void
x_waits_then_room(int nc)
{
	uint32_t x;

	fill();
	store_hold();
	x = o_env('x', 0);
	o_sync();
	TT_EQ(count_of_tag('x'), 0); /* the cap: not pushed */
	make_room();
	for (int i = 0; i < nc; i++)
		carol_send((uint32_t)i);
	TT_EQ(count_of_tag('c'), 0); /* behind X, not committed */
	send_ys();
	TT_ASSERT(!answered(x)); /* not committed: the store is held */
	store_release();
	ack_all();
}

/* --- cases --------------------------------------------------------------- */

/*
 * X finds bob without room and waits for its commit, which the case
 * holds back (store_hold); meanwhile bob makes room and the node reads
 * the Ys: they find room, yet each must wait behind X. Before 26943e9 the
 * Ys were pushed at once and reached bob before X.
 */
TT_CASE(fedorder__no_room_then_room_later_ones_wait)
{
	uint64_t t0 = ternd_now_ms();

	setup();
	x_waits_then_room(0);
	finish(0, t0);
}

/*
 * X finds bob without room and commits before bob makes room: bob's
 * session turns to draining, and X and the Ys that follow reach it
 * through fetches, in order, each once.
 */
TT_CASE(fedorder__no_room_at_commit_drained_in_order)
{
	uint64_t t0 = ternd_now_ms();
	uint32_t x;

	setup();
	fill();
	x = o_env('x', 0);
	WAIT_FOR(answered(x) || T.closed || T.wrong > 0);
	TT_EQ(count_of_tag('x'), 0); /* the cap: not pushed at its commit */
	make_room();
	send_ys();
	ack_all();
	finish(0, t0);
}

/*
 * As the first case, but right after bob makes room carol, a local user,
 * sends bob one envelope before the Ys: it finds room too, and must wait
 * behind X like them (the node accepted X first; a local SEND used to be
 * pushed at once here and overtook X).
 */
TT_CASE(fedorder__local_send_waits_behind_x)
{
	uint64_t t0 = ternd_now_ms();

	setup();
	carol_online();
	x_waits_then_room(1);
	finish(1, t0);
}

/*
 * The link's inbound limit ([federation] inbound_rate, inbound_burst):
 * with a bucket of 10 refilled at 1 per second, a burst of 30 after the
 * set-up (whose warm-up and probes took a token each) gets OK for the
 * tokens left, or one or two more if a second or two passed, and EBUSY
 * for the rest, each counted; the refused ones reach no one, and the
 * link stays up.
 */
TT_CASE(fedorder__inbound_limit_busy_beyond_the_burst)
{
	uint32_t n, busy = 0, ok = 0, used;
	int i;

	conf_rate = "1";
	conf_burst = "10";
	setup();
	conf_rate = conf_burst = NULL;
	used = T.nenv; /* the warm-up and the probes */
	TT_ASSERT(used < 10);
	T.refusals_expected = true;
	T.auto_ack = true;
	for (n = 0; n < 30; n++)
		(void)o_env('r', n);
	o_sync();
	WAIT_FOR(T.noks + T.nerrors == T.nenv);
	for (i = 1; i <= (int)T.req; i++) {
		if (T.ans[i].tag != 'r')
			continue;
		if (T.ans[i].oks == 1)
			ok++;
		else {
			TT_EQ(T.ans[i].code, -TERN_EBUSY);
			busy++;
		}
	}
	printf("%u taken, %u refused as busy\n", ok, busy);
	TT_ASSERT(ok >= 10 - used && ok <= 10 - used + 2);
	TT_EQ(ok + busy, 30);
	TT_EQ(metric("tern_fed_rate_limited_total"), busy);
	WAIT_FOR(count_of_tag('r') == (int)ok);
	WAIT_FOR(metric("tern_envelopes_queued") == 0);
	TT_ASSERT(T.link != NULL && !T.closed);
	teardown();
}
