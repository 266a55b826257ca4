/*
 * test_fedwb.c: the origin's write-back (SPEC.md 13.2). A real ternd is
 * the origin (one.test); its user alice sends through the client library
 * to bob@two.test, and two.test is a fake node in this process: it
 * listens as a Noise responder with its own key (pinned in the origin's
 * [federation] peers), welcomes the origin's links, records every FED_ENV
 * in arrival order and answers each as the case's script says (OK, an
 * ERROR, nothing yet, nothing at all); a case may close the link, or
 * open one to the origin as two.test to say it is back.
 *
 * Each case checks what the sender was told (SENT once per envelope,
 * NOTICE for refusals), what the destination got (every id, first
 * arrivals in send order, each finally taken), and that the origin's
 * queue ends empty and stays empty across a restart: a marker sent after
 * the restart must be the only FED_ENV then, since anything still queued
 * would go before it (the queue is sent in order).
 *
 * One uv loop runs the client and the fake; waits end on conditions,
 * each with its own deadline.
 */
#include <string.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include "ternd_harness.h"
#include "fed_harness.h"

#include <sodium.h>
#include <uv.h>

#include "client.h"
#include "fed.h"
#include "msg.h"
#include "net.h"
#include "noise.h"
#include "tt_uv.h"

#define WAIT_MS 20000      /* any one wait */
#define MAX_SENT 16384     /* sent reports kept */
#define MAX_RECS 16384     /* FED_ENV the fake keeps */
#define ID_TAG 0x7b        /* first byte of every envelope id we make */
#define DEST "two.test"
#define RCPT "bob@two.test"
#define SENDER "alice@one.test"

/* What the fake answers to one FED_ENV. */
enum {
	ANS_OK = 0,        /* OK */
	ANS_NONE = 1,      /* nothing (negative: ERROR with that code) */
};

/* How the fake answers, per case. */
enum mode {
	M_OK,              /* OK at once */
	M_BUSY_FIRST,      /* EBUSY to the next busy_left, then OK */
	M_BAD_PREFIX,      /* ENOUSER when the payload starts "bad" */
	M_SILENT,          /* record, never answer */
	M_HOLD             /* record, answer OK at release_held */
};

/* One FED_ENV as the fake got it. */
struct rec {
	uint8_t id[MSG_ID_LEN];
	char from[64];
	char to[64];
	uint32_t to_device;
	uint8_t cls;
	char payload[32];
	size_t plen;
	int answer;               /* ANS_OK, ANS_NONE or -code sent */
	int link;                 /* which accepted link it came on */
};

struct dconn {
	bool hello;               /* FED_WELCOME sent */
	int link;                 /* its number, from 1 */
};

static struct {
	uv_loop_t loop;
	uv_timer_t tick;          /* wakes UV_RUN_ONCE for the deadlines */
	struct fnode n;           /* the origin */
	uint8_t origin_key[32];   /* its node key */

	/* the sender */
	struct client *c;
	bool reg_done, gone;
	int reg_status, online;
	int nsent;
	struct {
		uint8_t id[MSG_ID_LEN];
		int status;
	} sent[MAX_SENT];
	int nnotice;
	struct msg_notice notice[64];     /* peer is not kept */
	char notice_peer[64][64];

	/* the fake two.test */
	struct net_loop nl;
	struct net_listener *lis;
	uint16_t port;
	uint8_t priv[32], pub[32];
	struct net_conn *conn;    /* the latest link accepted */
	int links;                /* links accepted (handshake done) */
	int welcomed;             /* FED_WELCOME sent */
	int closed;               /* links closed */
	int wrong;                /* what an honest origin never sends */
	char wrong_what[128];
	enum mode mode;
	int busy_left;
	int nheld;                /* M_HOLD: records to answer later */
	int held[MAX_RECS];
	uint32_t held_req[MAX_RECS];
	int nrec;
	struct rec rec[MAX_RECS];

	/* the fake as initiator to the origin (case 5) */
	struct net_conn *trig;
	bool trig_welcomed, trig_closed;
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

static int
payload_of(char *buf, size_t cap, uint8_t tag, uint32_t n, bool bad)
{
	return snprintf(buf, cap, "%s%c-%u", bad ? "bad-" : "", tag, n);
}

static void
copy_str(char *dst, size_t cap, const void *p, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	if (len > 0)
		memcpy(dst, p, len);
	dst[len] = '\0';
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

	fprintf(stderr, "sender: online %d, sent %d, notices %d; fake: "
	    "links %d welcomed %d closed %d, FED_ENV %d, wrong %d (%s)\n",
	    T.online, T.nsent, T.nnotice, T.links, T.welcomed, T.closed,
	    T.nrec, T.wrong, T.wrong_what);
	if (T.n.t.pid > 0)
		fprintf(stderr, "origin: tern_fed_queued %llu, sent_total %llu, "
		    "writeback_total %llu, refused_total %llu, links_up %llu\n",
		    metric_of(&T.n, "tern_fed_queued"),
		    metric_of(&T.n, "tern_fed_sent_total"),
		    metric_of(&T.n, "tern_fed_writeback_total"),
		    metric_of(&T.n, "tern_fed_refused_total"),
		    metric_of(&T.n, "tern_fed_links_up"));
	for (i = T.nrec > 20 ? T.nrec - 20 : 0; i < T.nrec; i++)
		fprintf(stderr, "  rec %d: link %d %s answer %d\n", i,
		    T.rec[i].link, T.rec[i].payload, T.rec[i].answer);
	ternd_log_tail(&T.n.t, 12000);
}

static void
wait_failed(const char *what, int line, uint32_t ms)
{
	state_dump();
	tt_fail(__FILE__, line, "after %u ms still waiting for %s", ms, what);
}

/* WAIT_FOR: runs the loop until cond holds, for at most ms. */
#define WAIT_FOR_MS(cond, ms)                                              \
	do {                                                               \
		uint64_t end_ = ternd_now_ms() + (ms);                     \
		while (!(cond)) {                                          \
			if (ternd_now_ms() >= end_)                        \
				wait_failed(#cond, __LINE__, (ms));        \
			uv_run(&T.loop, UV_RUN_ONCE);                      \
		}                                                          \
	} while (0)
#define WAIT_FOR(cond) WAIT_FOR_MS(cond, WAIT_MS)

static unsigned long long
metric(const char *name)
{
	return metric_of(&T.n, name);
}

/* --- the sender ---------------------------------------------------------- */

static void
s_state(struct client *c, enum client_state st, int err, uint32_t delay)
{
	(void)c;
	(void)err;
	(void)delay;
	if (st == CLIENT_ONLINE)
		T.online++;
}

static void
s_sent(struct client *c, const uint8_t id[MSG_ID_LEN], int status)
{
	(void)c;
	TT_ASSERT(T.nsent < MAX_SENT);
	memcpy(T.sent[T.nsent].id, id, MSG_ID_LEN);
	T.sent[T.nsent++].status = status;
}

static void
s_notice(struct client *c, const struct msg_notice *n)
{
	(void)c;
	TT_ASSERT(T.nnotice < 64);
	T.notice[T.nnotice] = *n;
	copy_str(T.notice_peer[T.nnotice], sizeof(T.notice_peer[0]),
	    n->peer.p, n->peer.len);
	T.notice[T.nnotice].peer.p = NULL;
	T.nnotice++;
}

static void
s_deliver(struct client *c, const struct msg_deliver *d)
{
	(void)c;
	(void)d;
	T.wrong++;
	snprintf(T.wrong_what, sizeof(T.wrong_what), "a DELIVER to alice");
}

static const struct client_cbs s_cbs = {
	.state = s_state,
	.sent = s_sent,
	.deliver = s_deliver,
	.notice = s_notice,
};

static void
s_reg(void *arg, int status, uint32_t device_id)
{
	(void)arg;
	(void)device_id;
	T.reg_done = true;
	T.reg_status = status;
}

static void
s_gone(void *arg)
{
	(void)arg;
	T.gone = true;
}

static void
send_one(uint8_t tag, uint32_t n, bool bad)
{
	uint8_t id[MSG_ID_LEN];
	char payload[32];
	int len = payload_of(payload, sizeof(payload), tag, n, bad);

	make_id(id, tag, n);
	TT_OK(client_send(T.c, id, RCPT, 1, MSG_CLASS_MESSAGE,
	    1700000000000ull + n, (const uint8_t *)payload, (size_t)len));
}

/* sent_count: the sent reports for (tag, n); *status the last one's. */
static int
sent_count(uint8_t tag, uint32_t n, int *status)
{
	uint8_t id[MSG_ID_LEN];
	int i, k = 0;

	make_id(id, tag, n);
	for (i = 0; i < T.nsent; i++) {
		if (memcmp(T.sent[i].id, id, MSG_ID_LEN) == 0) {
			k++;
			if (status != NULL)
				*status = T.sent[i].status;
		}
	}
	return k;
}

/* sent_all: each of (tag, 0..count-1) has a report. */
static bool
sent_all(uint8_t tag, uint32_t count)
{
	for (uint32_t n = 0; n < count; n++)
		if (sent_count(tag, n, NULL) == 0)
			return false;
	return true;
}

/* check_sent: each of (tag, 0..count-1) was told SENT exactly once. */
static void
check_sent(uint8_t tag, uint32_t count)
{
	for (uint32_t n = 0; n < count; n++) {
		int st = 1, k = sent_count(tag, n, &st);
		if (k != 1 || st != 0)
			tt_fail(__FILE__, __LINE__, "envelope %c-%u: %d sent "
			    "reports, last status %d (%s)", tag, n, k, st,
			    tern_errname(st));
	}
}

/* --- the fake destination: records and script --------------------------- */

static int
rec_find(uint8_t tag, uint32_t n, int from)
{
	uint8_t id[MSG_ID_LEN];
	int i;

	make_id(id, tag, n);
	for (i = from; i < T.nrec; i++)
		if (memcmp(T.rec[i].id, id, MSG_ID_LEN) == 0)
			return i;
	return -1;
}

/* seen_all: the fake got each of (tag, 0..count-1) since record from. */
static bool
seen_all(uint8_t tag, uint32_t count, int from)
{
	for (uint32_t n = 0; n < count; n++)
		if (rec_find(tag, n, from) < 0)
			return false;
	return true;
}

/* taken: the fake answered OK to (tag, n) at least once. */
static bool
taken(uint8_t tag, uint32_t n)
{
	uint8_t id[MSG_ID_LEN];
	int i;

	make_id(id, tag, n);
	for (i = 0; i < T.nrec; i++)
		if (memcmp(T.rec[i].id, id, MSG_ID_LEN) == 0 &&
		    T.rec[i].answer == ANS_OK)
			return true;
	return false;
}

static bool
taken_all(uint8_t tag, uint32_t count)
{
	for (uint32_t n = 0; n < count; n++)
		if (!taken(tag, n))
			return false;
	return true;
}

/* times_id: how often the fake got envelope id. */
static int
times_id(const uint8_t id[MSG_ID_LEN])
{
	int i, k = 0;

	for (i = 0; i < T.nrec; i++)
		k += memcmp(T.rec[i].id, id, MSG_ID_LEN) == 0;
	return k;
}

static int
times_seen(uint8_t tag, uint32_t n)
{
	uint8_t id[MSG_ID_LEN];

	make_id(id, tag, n);
	return times_id(id);
}

/*
 * check_arrivals: every (tag, n) arrived with the fields alice sent,
 * and first arrivals came in send order (the queue's order, which an
 * early send must not overtake).
 */
static void
check_arrivals(uint8_t tag, uint32_t count, uint32_t bad_every)
{
	int prev = -1;

	for (uint32_t n = 0; n < count; n++) {
		char want[32];
		int i = rec_find(tag, n, 0);
		bool bad = bad_every != 0 && n % bad_every == bad_every - 1;

		if (i < 0)
			tt_fail(__FILE__, __LINE__, "%c-%u never arrived", tag,
			    n);
		if (i < prev)
			tt_fail(__FILE__, __LINE__, "%c-%u first arrived at %d, "
			    "before %c-%u (at %d)", tag, n, i, tag, n - 1,
			    prev);
		prev = i;
		payload_of(want, sizeof(want), tag, n, bad);
		TT_ASSERT(strcmp(T.rec[i].payload, want) == 0);
		TT_ASSERT(strcmp(T.rec[i].from, SENDER) == 0);
		TT_ASSERT(strcmp(T.rec[i].to, RCPT) == 0);
		TT_EQ(T.rec[i].to_device, 1);
		TT_EQ(T.rec[i].cls, MSG_CLASS_MESSAGE);
	}
}

static int
script(const struct rec *r)
{
	switch (T.mode) {
	case M_BUSY_FIRST:
		if (T.busy_left > 0) {
			T.busy_left--;
			return TERN_EBUSY;
		}
		return ANS_OK;
	case M_BAD_PREFIX:
		return strncmp(r->payload, "bad", 3) == 0 ? TERN_ENOUSER :
		    ANS_OK;
	case M_SILENT:
		return ANS_NONE;
	case M_HOLD:
		return ANS_NONE;
	default:
		return ANS_OK;
	}
}

static void
d_send(struct net_conn *c, const struct msg *m)
{
	uint8_t buf[MSG_MAX];
	size_t n;

	TT_OK(msg_encode(m, buf, sizeof(buf), &n));
	TT_OK(net_conn_send(c, buf, n));
}

static void
d_wrong(const char *what)
{
	T.wrong++;
	snprintf(T.wrong_what, sizeof(T.wrong_what), "%s", what);
}

static void
d_open(struct net_conn *c)
{
	struct dconn *dc = net_conn_data(c);

	if (memcmp(chan_remote_key(&c->chan), T.origin_key, 32) != 0)
		d_wrong("a link with another key than one.test's");
	dc->link = ++T.links;
	T.conn = c;
}

static int
d_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct dconn *dc = net_conn_data(c);
	struct msg m, a = {0};
	struct rec *r;
	int ans;

	if (msg_decode(buf, len, &m) != 0) {
		d_wrong("a message that does not decode");
		return TERN_EFIELD;
	}
	a.req = m.req;
	if (m.type == MSG_PING) {
		a.type = MSG_PONG;
		a.u.pong.nonce = m.u.ping.nonce;
		d_send(c, &a);
		return 0;
	}
	if (m.type == MSG_FED_HELLO) {
		if (dc->hello || m.u.fed_hello.domain.len != 8 ||
		    memcmp(m.u.fed_hello.domain.p, "one.test", 8) != 0 ||
		    m.u.fed_hello.to_domain.len != strlen(DEST) ||
		    memcmp(m.u.fed_hello.to_domain.p, DEST, strlen(DEST)) != 0)
			d_wrong("a FED_HELLO with the wrong domains, or again");
		dc->hello = true;
		a.type = MSG_FED_WELCOME;
		a.u.fed_welcome.domain.p = DEST;
		a.u.fed_welcome.domain.len = strlen(DEST);
		a.u.fed_welcome.time_ms = (uint64_t)time(NULL) * 1000;
		d_send(c, &a);
		T.welcomed++;
		return 0;
	}
	if (m.type != MSG_FED_ENV || !dc->hello) {
		d_wrong(m.type == MSG_FED_RENV ? "a FED_RENV" :
		    "a message other than FED_ENV, or before FED_HELLO");
		return 0;
	}
	TT_ASSERT(T.nrec < MAX_RECS);
	r = &T.rec[T.nrec++];
	memcpy(r->id, m.u.fed_env.id, MSG_ID_LEN);
	copy_str(r->from, sizeof(r->from), m.u.fed_env.from.p,
	    m.u.fed_env.from.len);
	copy_str(r->to, sizeof(r->to), m.u.fed_env.to.p, m.u.fed_env.to.len);
	r->to_device = m.u.fed_env.to_device;
	r->cls = m.u.fed_env.class;
	copy_str(r->payload, sizeof(r->payload), m.u.fed_env.payload.p,
	    m.u.fed_env.payload.len);
	r->plen = m.u.fed_env.payload.len;
	r->link = dc->link;
	ans = script(r);
	r->answer = ans;
	if (T.mode == M_HOLD) {
		T.held[T.nheld] = T.nrec - 1;
		T.held_req[T.nheld++] = m.req;
	}
	if (ans == ANS_NONE)
		return 0;
	if (ans == ANS_OK) {
		a.type = MSG_OK;
	} else {
		/* On the wire an ERROR's code is the positive u16 (fed.c's
		 * fed_error). */
		a.type = MSG_ERROR;
		a.u.error.code = (uint16_t)-ans;
		a.u.error.detail.p = tern_strerror(ans);
		a.u.error.detail.len = strlen(a.u.error.detail.p);
	}
	d_send(c, &a);
	return 0;
}

/* release_held: OK to every FED_ENV held so far, in one write. */
static void
release_held(void)
{
	struct msg a = {.type = MSG_OK};
	int i;

	TT_ASSERT(T.conn != NULL);
	for (i = 0; i < T.nheld; i++) {
		a.req = T.held_req[i];
		d_send(T.conn, &a);
		T.rec[T.held[i]].answer = ANS_OK;
	}
	T.nheld = 0;
}

static void
d_closed(struct net_conn *c, int err)
{
	(void)err;
	/* accepted links only: a handshake that failed has no number */
	if (((struct dconn *)net_conn_data(c))->link != 0)
		T.closed++;
	if (c == T.conn)
		T.conn = NULL;
}

static const struct net_conn_cbs d_cbs = {
	.open = d_open, .message = d_message, .closed = d_closed,
};

static void
d_listen(void)
{
	TT_ASSERT(T.lis == NULL);
	TT_OK(net_listen(&T.nl, "127.0.0.1", T.port, CHAN_KIND_FEDERATION,
	    T.priv, MSG_MAX, &d_cbs, sizeof(struct dconn), NULL, &T.lis));
}

/* The fake as two.test's node opening a link to the origin: its
 * FED_HELLO tells the origin two.test is back (13.2). */
static void
t_open(struct net_conn *c)
{
	struct msg m = {.type = MSG_FED_HELLO, .req = 1};

	m.u.fed_hello.domain.p = DEST;
	m.u.fed_hello.domain.len = strlen(DEST);
	m.u.fed_hello.to_domain.p = "one.test";
	m.u.fed_hello.to_domain.len = 8;
	m.u.fed_hello.time_ms = (uint64_t)time(NULL) * 1000;
	d_send(c, &m);
}

static int
t_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct msg m;

	(void)c;
	TT_OK(msg_decode(buf, len, &m));
	if (m.type == MSG_FED_WELCOME)
		T.trig_welcomed = true;
	else
		d_wrong("an answer to our FED_HELLO other than FED_WELCOME");
	return 0;
}

static void
t_closed(struct net_conn *c, int err)
{
	(void)err;
	if (c == T.trig) {
		T.trig = NULL;
		T.trig_closed = true;
	}
}

static const struct net_conn_cbs t_cbs = {
	.open = t_open, .message = t_message, .closed = t_closed,
};

/* --- a case's start and end ----------------------------------------------- */

/*
 * setup: the fake's key and loop, the origin (one.test) routing two.test
 * to the fake's port with the fake's key pinned, alice registered and
 * online. up: the fake listens from the start.
 */
static void
setup(bool up)
{
	struct client_config cfg;
	char v[256], b64[64];
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
	T.port = ternd_free_port();
	if (up)
		d_listen();

	fnode_init(&T.n, "one.test");
	snprintf(v, sizeof(v), "%s=127.0.0.1:%u/%s", DEST, T.port, b64);
	ternd_conf_set(&T.n.t, "peers", v);
	/* bursts of 300 from one user: not the rate limit under test */
	ternd_conf_set(&T.n.t, "send_rate", "100000");
	ternd_conf_set(&T.n.t, "send_burst", "100000");
	TT_OK(sodium_base642bin(T.origin_key, sizeof(T.origin_key), T.n.key,
	    strlen(T.n.key), NULL, &bl, NULL,
	    sodium_base64_VARIANT_ORIGINAL));
	TT_EQ(bl, 32);
	ternd_start(&T.n.t);

	client_config_init(&cfg);
	cfg.host = "127.0.0.1";
	cfg.port = T.n.t.port;
	{
		static uint8_t dpriv[32], dpub[32];
		noise_keypair_generate(dpriv, dpub);
		cfg.device_key = dpriv;
	}
	cfg.user = SENDER;
	cfg.backoff_min_ms = 10; /* back quickly after a restart */
	cfg.backoff_max_ms = 100;
	cfg.auto_ack = true;
	cfg.reconnect = true;
	cfg.outbox_max = MAX_SENT; /* more than a window at once */
	cfg.outbox_max_bytes = 2u << 20;
	TT_OK(client_new(&T.loop, &cfg, &s_cbs, NULL, &T.c));
	TT_OK(client_register(T.c, NULL, "phone", s_reg, NULL));
	WAIT_FOR(T.reg_done);
	TT_EQ(T.reg_status, 0);
	WAIT_FOR(T.online > 0);
}

/* warm_up: one envelope through the link (the origin dials its static
 * routes at start), OK'd, the queue empty again: the next sends find the
 * link up with nothing older to send. */
static void
warm_up(void)
{
	send_one('w', 0, false);
	WAIT_FOR(sent_count('w', 0, NULL) == 1);
	WAIT_FOR(taken('w', 0));
	WAIT_FOR(metric("tern_fed_queued") == 0);
	TT_EQ(metric("tern_fed_links_up"), 1);
}

/*
 * restart_nothing_resent: the origin stops and starts again; its queue
 * is empty (the metric), and a marker sent now is the only FED_ENV the
 * fake gets: anything still queued for two.test would be sent before it.
 */
static void
restart_nothing_resent(void)
{
	int online = T.online, from;

	ternd_stop(&T.n.t);
	ternd_start(&T.n.t);
	TT_EQ(metric("tern_fed_queued"), 0);
	WAIT_FOR(T.online > online);
	from = T.nrec;
	send_one('k', 0, false);
	WAIT_FOR(sent_count('k', 0, NULL) == 1);
	WAIT_FOR(taken('k', 0));
	WAIT_FOR(metric("tern_fed_queued") == 0);
	if (T.nrec - from != 1) {
		state_dump();
		tt_fail(__FILE__, __LINE__, "%d FED_ENV after the restart, "
		    "want only the marker", T.nrec - from);
	}
	TT_EQ(sent_count('k', 0, NULL), 1);
}

static void
teardown(void)
{
	TT_EQ(T.wrong, 0);
	client_close(T.c, s_gone, NULL);
	WAIT_FOR(T.gone);
	T.c = NULL;
	if (T.trig != NULL)
		net_conn_close(T.trig, 0);
	net_loop_close(&T.nl, NULL, NULL);
	uv_close((uv_handle_t *)&T.tick, NULL);
	tt_uv_close(&T.loop);
	ternd_stop(&T.n.t);
	ternd_destroy(&T.n.t);
}

/* --- cases --------------------------------------------------------------- */

/* A burst of 300 on a warm link, each OK'd at once: each SENT once, each
 * at the destination in order, nothing left queued, and nothing sent
 * again after a restart (an entry OK'd early and committed must still be
 * deleted). */
TT_CASE(fedwb__burst_all_taken_queue_empty)
{
	const uint32_t count = 300;
	unsigned long long sent, wb;
	uint32_t n;

	setup(true);
	T.mode = M_OK;
	warm_up();
	for (n = 0; n < count; n++)
		send_one('m', n, false);
	WAIT_FOR(sent_all('m', count));
	WAIT_FOR(taken_all('m', count));
	WAIT_FOR(metric("tern_fed_queued") == 0);
	check_sent('m', count);
	check_arrivals('m', count, 0);
	sent = metric("tern_fed_sent_total");
	wb = metric("tern_fed_writeback_total");
	printf("burst of %u: tern_fed_sent_total %llu, "
	    "tern_fed_writeback_total %llu, FED_ENV received %d\n", count, sent,
	    wb, T.nrec);
	TT_ASSERT(sent >= count + 1);
	TT_ASSERT(wb <= count + 1);
	TT_EQ(T.nnotice, 0);
	restart_nothing_resent();
	TT_EQ(T.nnotice, 0);
	teardown();
}

/*
 * The same burst with the answers held back until the origin has
 * committed all 300 (each SENT before any OK, so none can be withdrawn),
 * then 300 OK at once: every entry must still be deleted, however many
 * OKs come while a delete is being written.
 */
TT_CASE(fedwb__burst_answered_late_all_deleted)
{
	const uint32_t count = 300;
	uint32_t n;

	setup(true);
	T.mode = M_OK;
	warm_up();
	T.mode = M_HOLD;
	for (n = 0; n < count; n++)
		send_one('m', n, false);
	WAIT_FOR(sent_all('m', count));
	WAIT_FOR(seen_all('m', count, 0));
	TT_EQ(metric("tern_fed_queued"), count);
	T.mode = M_OK;
	release_held();
	WAIT_FOR(taken_all('m', count));
	WAIT_FOR(metric("tern_fed_sent_total") >= count + 1);
	WAIT_FOR(metric("tern_fed_queued") == 0);
	check_sent('m', count);
	check_arrivals('m', count, 0);
	TT_EQ(T.nnotice, 0);
	restart_nothing_resent();
	teardown();
}

/* id_num: n of an id made by make_id with tag, or -1. */
static long
id_num(const uint8_t id[MSG_ID_LEN], uint8_t tag)
{
	if (id[0] != ID_TAG || id[1] != tag)
		return -1;
	return (long)((uint32_t)id[12] << 24 | (uint32_t)id[13] << 16 |
	    (uint32_t)id[14] << 8 | id[15]);
}

/* sent_ok_tag: SENT reports with status 0 for tag (each id counted). */
static int
sent_ok_tag(uint8_t tag)
{
	int i, k = 0;

	for (i = 0; i < T.nsent; i++)
		k += id_num(T.sent[i].id, tag) >= 0 && T.sent[i].status == 0;
	return k;
}

/* taken_tag: distinct ids of tag the fake answered OK. */
static int
taken_tag(uint8_t tag, uint32_t count)
{
	static bool ok[MAX_RECS];
	int i, k = 0;
	long n;

	memset(ok, 0, sizeof(ok));
	for (i = 0; i < T.nrec; i++)
		if ((n = id_num(T.rec[i].id, tag)) >= 0 && (uint32_t)n < count &&
		    T.rec[i].answer == ANS_OK && !ok[n]) {
			ok[n] = true;
			k++;
		}
	return k;
}

/*
 * More than a window: FED_WINDOW + 904 envelopes while the destination
 * answers nothing. The origin sends exactly FED_WINDOW and keeps the
 * rest, committed, until answers make room; then every one arrives
 * exactly once and in order (none read back and sent twice), the queue
 * empties and nothing is sent again after a restart.
 */
TT_CASE(fedwb__more_than_a_window_each_once_in_order)
{
	const uint32_t count = FED_WINDOW + 904;
	long n, next = 0;
	int i, from;

	setup(true);
	T.mode = M_OK;
	warm_up();
	T.mode = M_HOLD;
	from = T.nrec;
	for (uint32_t k = 0; k < count; k++)
		send_one('v', k, false);
	/* SENT for all: the held ones at the end of their hold. */
	WAIT_FOR(sent_ok_tag('v') == (int)count);
	WAIT_FOR(T.nrec - from >= FED_WINDOW);
	WAIT_FOR(metric("tern_fed_queued") == count);
	TT_EQ(T.nrec - from, FED_WINDOW); /* no more before an answer */
	T.mode = M_OK;
	release_held();
	WAIT_FOR(taken_tag('v', count) == (int)count);
	WAIT_FOR(metric("tern_fed_queued") == 0);
	TT_EQ(T.nrec - from, (int)count); /* each once */
	for (i = from; i < T.nrec; i++) {
		n = id_num(T.rec[i].id, 'v');
		if (n != next)
			tt_fail(__FILE__, __LINE__, "arrival %d: v-%ld, want "
			    "v-%ld", i - from, n, next);
		next++;
	}
	TT_EQ(T.nnotice, 0);
	restart_nothing_resent();
	teardown();
}

/* The first 5 FED_ENV after the warm-up are refused with EBUSY: they go
 * again (after the origin's pause) until taken; no notice, nothing left
 * queued or sent again after a restart. */
TT_CASE(fedwb__transient_refusal_sent_again)
{
	const uint32_t count = 50;
	uint32_t n;
	int busy = 0, i;

	setup(true);
	T.mode = M_OK;
	warm_up();
	T.mode = M_BUSY_FIRST;
	T.busy_left = 5;
	for (n = 0; n < count; n++)
		send_one('m', n, false);
	WAIT_FOR(sent_all('m', count));
	WAIT_FOR(taken_all('m', count));
	WAIT_FOR(metric("tern_fed_queued") == 0);
	check_sent('m', count);
	check_arrivals('m', count, 0);
	for (i = 0; i < T.nrec; i++)
		busy += T.rec[i].answer == TERN_EBUSY;
	TT_EQ(busy, 5);
	/* each refused one came again */
	for (i = 0; i < T.nrec; i++)
		if (T.rec[i].answer == TERN_EBUSY)
			TT_ASSERT(times_id(T.rec[i].id) >= 2);
	printf("transient: FED_ENV received %d for %u envelopes, "
	    "tern_fed_writeback_total %llu\n", T.nrec, count + 1,
	    metric("tern_fed_writeback_total"));
	TT_EQ(metric("tern_fed_refused_total"), 0);
	TT_EQ(T.nnotice, 0);
	restart_nothing_resent();
	TT_EQ(T.nnotice, 0);
	teardown();
}

/* Every 4th of 20 is refused for good (ENOUSER): all 20 SENT, and the
 * sender gets a refused NOTICE for exactly those 5. */
TT_CASE(fedwb__final_refusal_notice)
{
	const uint32_t count = 20, every = 4;
	bool noticed[20] = {false};
	uint32_t n;
	int i;

	setup(true);
	T.mode = M_BAD_PREFIX;
	warm_up();
	for (n = 0; n < count; n++)
		send_one('m', n, n % every == every - 1);
	WAIT_FOR(sent_all('m', count));
	WAIT_FOR(T.nnotice >= 5);
	WAIT_FOR(metric("tern_fed_queued") == 0);
	for (n = 0; n < count; n++)
		if (n % every != every - 1)
			WAIT_FOR(taken('m', n));
	WAIT_FOR(metric("tern_fed_refused_total") == 5);
	check_sent('m', count);
	check_arrivals('m', count, every);
	TT_EQ(T.nnotice, 5);
	for (i = 0; i < T.nnotice; i++) {
		uint8_t id[MSG_ID_LEN];
		uint32_t k = T.notice[i].ref_id[15];

		TT_EQ(T.notice[i].kind, MSG_NOTICE_REFUSED);
		TT_ASSERT(k < count && k % every == every - 1);
		make_id(id, 'm', k);
		TT_MEMEQ(T.notice[i].ref_id, id, MSG_ID_LEN);
		TT_ASSERT(!noticed[k]);
		noticed[k] = true;
		TT_ASSERT(strcmp(T.notice_peer[i], RCPT) == 0);
		TT_EQ(T.notice[i].peer_device, 1);
	}
	for (n = 0; n < count; n++)
		if (n % every == every - 1)
			TT_ASSERT(!taken('m', n));
	TT_EQ(metric("tern_fed_refused_total"), 5);
	teardown();
}

/* The fake goes silent after the warm-up, then closes the link once it
 * has all 40; on the next link it answers OK: all SENT, all taken, the
 * queue empty, nothing sent again after a restart. */
TT_CASE(fedwb__link_lost_unanswered_sent_again)
{
	const uint32_t count = 40;
	uint32_t n;
	int from, links;

	setup(true);
	T.mode = M_OK;
	warm_up();
	T.mode = M_SILENT;
	from = T.nrec;
	for (n = 0; n < count; n++)
		send_one('m', n, false);
	WAIT_FOR(seen_all('m', count, from));
	WAIT_FOR(sent_all('m', count));
	TT_ASSERT(T.conn != NULL);
	links = T.links;
	T.mode = M_OK;
	net_conn_close(T.conn, 0);
	WAIT_FOR(T.links > links && T.welcomed > links);
	WAIT_FOR(taken_all('m', count));
	WAIT_FOR(metric("tern_fed_queued") == 0);
	check_sent('m', count);
	check_arrivals('m', count, 0);
	/* each was taken on the new link */
	for (n = 0; n < count; n++)
		TT_ASSERT(times_seen('m', n) >= 2);
	printf("link lost: FED_ENV received %d, tern_fed_writeback_total "
	    "%llu\n", T.nrec, metric("tern_fed_writeback_total"));
	TT_EQ(T.nnotice, 0);
	restart_nothing_resent();
	TT_EQ(T.nnotice, 0);
	teardown();
}

/* two.test is down: 10 SENT from the queue; it comes up and says so
 * (a link to the origin, FED_HELLO): the 10 arrive once each, in order,
 * and the queue empties. */
TT_CASE(fedwb__destination_down_then_up)
{
	const uint32_t count = 10;
	uint32_t n;

	setup(false);
	T.mode = M_OK;
	for (n = 0; n < count; n++)
		send_one('m', n, false);
	WAIT_FOR(sent_all('m', count));
	check_sent('m', count);
	TT_EQ(metric("tern_fed_queued"), count);
	TT_EQ(metric("tern_fed_writeback_total"), 0);
	TT_EQ(T.nrec, 0);
	d_listen();
	TT_OK(net_connect(&T.nl, "127.0.0.1", T.n.fed_port,
	    CHAN_KIND_FEDERATION, CHAN_IK, T.priv, NULL, T.origin_key, MSG_MAX,
	    &t_cbs, 0, &T.trig));
	WAIT_FOR(T.trig_welcomed || T.trig_closed);
	TT_ASSERT(T.trig_welcomed);
	WAIT_FOR(taken_all('m', count));
	WAIT_FOR(metric("tern_fed_queued") == 0);
	check_arrivals('m', count, 0);
	for (n = 0; n < count; n++)
		TT_EQ(times_seen('m', n), 1);
	TT_EQ(T.nrec, count);
	TT_EQ(T.nnotice, 0);
	teardown();
}
