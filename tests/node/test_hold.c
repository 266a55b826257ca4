/*
 * test_hold.c: the hold on the write of a pushed envelope (SPEC.md 7.3,
 * write-back; commit 47a2a8e). A real ternd serves one.test; alice and
 * bob are its users, online through the client library on one uv loop in
 * this process. When bob's device is live, an envelope alice sends is
 * pushed to it at once and its store write waits in the node (up to
 * SRV_HOLD_MS, 250 ms) for bob's ACK: an ACK that comes meanwhile answers
 * alice SENT and nothing is written (tern_envelopes_unwritten_total);
 * otherwise the write is submitted when the time is up, when bob's
 * session turns draining or closes, or when the node stops, and SENT
 * follows the commit.
 *
 * Each case checks what must hold whichever way the node's timing goes:
 * every envelope reaches bob in the order alice sent it, each SENT comes
 * exactly once, a SENT envelope survives a crash, and nothing is left in
 * the queue at the end. The only timing assertion is a lower bound the
 * hold itself guarantees (no SENT for an unacknowledged push before
 * 250 ms). Moments are made, not raced for: a PONG proves the node has
 * read everything sent before it on that connection, and a marker
 * envelope sent last proves everything queued before it has arrived.
 *
 * Waits end on conditions, each with its own deadline (WAIT_MS), never
 * on the passage of time.
 */
#include <stdarg.h>
#include <string.h>

#pragma GCC diagnostic ignored "-Wunused-function"
#include "ternd_harness.h"

#include <sodium.h>
#include <sqlite3.h>
#include <uv.h>

#include "client.h"
#include "msg.h"
#include "net.h"
#include "noise.h"
#include "tt_uv.h"

#define WAIT_MS 20000      /* any one wait */
#define HOLD_MS 250        /* the node's SRV_HOLD_MS */
/* What the node's clock may lag ours: libuv's loop time is in whole
 * milliseconds of CLOCK_MONOTONIC_COARSE (used only when its resolution
 * is 1 ms or better), and ours is truncated to milliseconds too. */
#define CLOCK_SLACK_MS 3
#define CAP 4096           /* the node's SRV_INFLIGHT_LIVE_MAX */
#define MAXN 8192          /* envelopes of one tag in a case */
#define MAX_DEL 16384      /* deliveries bob keeps */
#define ID_TAG 0x68        /* first byte of every envelope id we make */
#define ALICE "alice@" TERND_DOMAIN
#define BOB "bob@" TERND_DOMAIN
#define TS_BASE 1700000000000ull /* timestamp_ms of envelope 0 */

/* Tags: the envelopes under test, the warm-up, markers, and the
 * ephemeral probes that show bob's session is live (not kept in del). */
enum { TA, TW, TZ, TP, NTAGS };

static const uint8_t tag_char[NTAGS] = {'a', 'w', 'z', 'p'};

/* One device as the test drives it. */
struct dev {
	const char *addr;
	uint8_t priv[32], pub[32];  /* its device key */
	uint32_t device_id;         /* 0 until registered */
	bool reconnect;             /* its clients reconnect after a drop */
	struct client *c;           /* current client, or NULL */
	bool gone;                  /* client_close's callback ran */
	int online;                 /* ONLINE reports, all its clients: bob's
	                               connection number */
	int waiting;                /* WAITING reports */
	int closed;                 /* CLOSED reports */
	bool reg_done;
	int reg_status;
	int pongs;                  /* PONG answers */
};

/* One DELIVER as bob got it. */
struct del {
	uint8_t tag;                /* TA, TW, TZ; NTAGS: not one of ours */
	uint32_t n;
	int conn;                   /* bob's connection it came on, from 1 */
	bool acked;                 /* bob sent ACK for it */
	uint64_t at_ms;             /* when (ternd_now_ms) */
};

static struct {
	uv_loop_t loop;
	uv_timer_t tick;            /* wakes UV_RUN_ONCE for the deadlines */
	struct ternd node;
	struct dev alice, bob;

	/* bob */
	bool auto_ack;              /* ACK each DELIVER as it comes */
	int close_at;               /* close bob's client in the deliver
	                               callback of this many 'a's (0: no) */
	uint64_t closed_at_ms;      /* when it did */
	int ndel;
	struct del del[MAX_DEL];
	int ndl_tag[NTAGS];         /* deliveries by tag */
	int acks;                   /* ACKs bob sent */
	int acks0;                  /* of which before the node's last start */
	int probes;                 /* ephemeral probes bob got (and acked) */
	bool restarted;             /* the node started again in the case */
	uint16_t ndl[NTAGS][MAXN];  /* deliveries by envelope */

	/* alice's sent callbacks */
	int nsent_tag[NTAGS];
	uint16_t nsent[NTAGS][MAXN];
	int sent_st[NTAGS][MAXN];   /* the last status */
	uint64_t sent_ms[NTAGS][MAXN]; /* the last one's time */
	uint64_t send_ms[NTAGS][MAXN]; /* when client_send took it */

	int wrong;                  /* what the node should never do */
	char wrong_what[160];
} T;

/* --- ids and payloads -------------------------------------------------- */

static void
make_id(uint8_t id[MSG_ID_LEN], int tag, uint32_t n)
{
	memset(id, 0, MSG_ID_LEN);
	id[0] = ID_TAG;
	id[1] = tag_char[tag];
	id[12] = (uint8_t)(n >> 24);
	id[13] = (uint8_t)(n >> 16);
	id[14] = (uint8_t)(n >> 8);
	id[15] = (uint8_t)n;
}

/* id_split: tag and n of an id make_id made; false for any other. */
static bool
id_split(const uint8_t id[MSG_ID_LEN], uint8_t *tag, uint32_t *n)
{
	static const uint8_t zero[10];
	int t;

	if (id[0] != ID_TAG || memcmp(id + 2, zero, sizeof(zero)) != 0)
		return false;
	for (t = 0; t < NTAGS && tag_char[t] != id[1]; t++)
		;
	*n = (uint32_t)id[12] << 24 | (uint32_t)id[13] << 16 |
	    (uint32_t)id[14] << 8 | id[15];
	if (t == NTAGS || *n >= MAXN)
		return false;
	*tag = (uint8_t)t;
	return true;
}

static int
payload_of(char *buf, size_t cap, int tag, uint32_t n)
{
	return snprintf(buf, cap, "%c-%u", tag_char[tag], n);
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

/* --- the node's metrics and database ----------------------------------- */

static unsigned long long
metric(const char *name)
{
	static char m[1 << 17];
	char key[128];
	const char *p;
	unsigned long long v = 0;

	TT_ASSERT(ternd_http_get(&T.node, "/metrics", m, sizeof(m)) > 0);
	snprintf(key, sizeof(key), "\n%s ", name);
	if ((p = strstr(m, key)) == NULL)
		tt_fail(__FILE__, __LINE__, "no sample %s", name);
	TT_EQ(sscanf(p + strlen(key), "%llu", &v), 1);
	return v;
}

#define QUEUED "tern_envelopes_queued"
#define UNWRITTEN "tern_envelopes_unwritten_total"
#define ACKED "tern_envelopes_acked_total"

/*
 * db_int: one number from the node's database, read beside the running
 * node through a connection of our own (WAL: we see the last commit and
 * hold nothing up).
 */
static long long
db_int(const char *sql)
{
	char path[TERND_PATH + 16];
	sqlite3_stmt *st;
	sqlite3 *db;
	long long v;

	snprintf(path, sizeof(path), "%s/ternd.db", T.node.dir);
	TT_EQ(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
	    SQLITE_OK);
	TT_EQ(sqlite3_busy_timeout(db, 5000), SQLITE_OK);
	TT_EQ(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	TT_EQ(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	TT_EQ(sqlite3_finalize(st), SQLITE_OK);
	TT_EQ(sqlite3_close(db), SQLITE_OK);
	return v;
}

/* db_rows: envelope rows stored now. */
static long long
db_rows(void)
{
	return db_int("SELECT count(*) FROM envelopes");
}

/* db_seq: the highest seq ever given to an envelope (AUTOINCREMENT: never
 * reused, so its growth counts the rows ever written). */
static long long
db_seq(void)
{
	return db_int("SELECT coalesce((SELECT seq FROM sqlite_sequence "
	    "WHERE name = 'envelopes'), 0)");
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

	fprintf(stderr, "alice: online %d waiting %d closed %d, SENT a %d "
	    "w %d z %d; bob: online %d closed %d, deliveries %d (a %d w %d "
	    "z %d); wrong %d (%s)\n", T.alice.online, T.alice.waiting,
	    T.alice.closed, T.nsent_tag[TA], T.nsent_tag[TW], T.nsent_tag[TZ],
	    T.bob.online, T.bob.closed, T.ndel, T.ndl_tag[TA], T.ndl_tag[TW],
	    T.ndl_tag[TZ], T.wrong, T.wrong_what);
	for (i = T.ndel > 10 ? T.ndel - 10 : 0; i < T.ndel; i++)
		fprintf(stderr, "  delivery %d: %c-%u on connection %d\n", i,
		    T.del[i].tag < NTAGS ? tag_char[T.del[i].tag] : '?',
		    T.del[i].n, T.del[i].conn);
	if (T.node.pid > 0)
		fprintf(stderr, "node: %s %llu, %s %llu, %s %llu\n", QUEUED,
		    metric(QUEUED), UNWRITTEN, metric(UNWRITTEN), ACKED,
		    metric(ACKED));
	ternd_log_tail(&T.node, 4000);
}

static void
wait_failed(const char *what, int line)
{
	state_dump();
	tt_fail(__FILE__, line, "after %u ms still waiting for %s", WAIT_MS,
	    what);
}

/* WAIT_FOR: runs the loop until cond holds, for at most WAIT_MS. */
#define WAIT_FOR(cond)                                                     \
	do {                                                               \
		uint64_t end_ = ternd_now_ms() + WAIT_MS;                  \
		while (!(cond)) {                                          \
			if (ternd_now_ms() >= end_)                        \
				wait_failed(#cond, __LINE__);              \
			uv_run(&T.loop, UV_RUN_ONCE);                      \
		}                                                          \
	} while (0)

/* --- devices ------------------------------------------------------------- */

static void
d_state(struct client *c, enum client_state st, int err, uint32_t delay)
{
	struct dev *d = client_data(c);

	(void)err;
	(void)delay;
	if (st == CLIENT_ONLINE)
		d->online++;
	else if (st == CLIENT_WAITING)
		d->waiting++;
	else if (st == CLIENT_CLOSED)
		d->closed++;
}

static void
d_gone(void *arg)
{
	((struct dev *)arg)->gone = true;
}

/* d_gone_flag: a client the case keeps aside is freed. */
static void
d_gone_flag(void *arg)
{
	*(bool *)arg = true;
}

static void
b_ack(int i)
{
	uint8_t id[MSG_ID_LEN];

	if (T.del[i].acked || T.del[i].tag >= NTAGS || T.bob.c == NULL ||
	    client_state(T.bob.c) != CLIENT_ONLINE)
		return;
	make_id(id, T.del[i].tag, T.del[i].n);
	TT_OK(client_ack(T.bob.c, id));
	T.del[i].acked = true;
	T.acks++;
}

/* b_ack_all: bob acknowledges everything it got so far. */
static void
b_ack_all(void)
{
	for (int i = 0; i < T.ndel; i++)
		b_ack(i);
}

/* d_deliver: records what bob got, in order, and checks it is what alice
 * sent (all but received_ms, which the node sets). */
static void
d_deliver(struct client *c, const struct msg_deliver *d)
{
	char want[32];
	struct del *r;
	int len;

	if (client_data(c) != &T.bob || c != T.bob.c) {
		wrong("a DELIVER to alice, or to a client bob closed");
		return;
	}
	{
		uint8_t tag;
		uint32_t n;
		/* A probe: pushed only to a live session. Acknowledged (an
		 * unacknowledged one would count against the push cap), not
		 * kept with the envelopes under test. */
		if (id_split(d->id, &tag, &n) && tag == TP) {
			if (d->class != MSG_CLASS_EPHEMERAL)
				wrong("probe p-%u with class %u", n, d->class);
			TT_OK(client_ack(c, d->id));
			T.probes++;
			return;
		}
	}
	TT_ASSERT(T.ndel < MAX_DEL);
	r = &T.del[T.ndel++];
	r->conn = T.bob.online;
	r->at_ms = ternd_now_ms();
	if (!id_split(d->id, &r->tag, &r->n)) {
		r->tag = NTAGS;
		wrong("a DELIVER with an id we never sent");
		return;
	}
	T.ndl_tag[r->tag]++;
	T.ndl[r->tag][r->n]++;
	len = payload_of(want, sizeof(want), r->tag, r->n);
	if (d->from.len != strlen(ALICE) ||
	    memcmp(d->from.p, ALICE, d->from.len) != 0 ||
	    d->from_device != 1 || d->class != MSG_CLASS_MESSAGE ||
	    d->timestamp_ms != TS_BASE + r->n ||
	    d->payload.len != (size_t)len ||
	    memcmp(d->payload.p, want, (size_t)len) != 0)
		wrong("%c-%u delivered with other fields than sent",
		    tag_char[r->tag], r->n);
	if (T.auto_ack)
		b_ack(T.ndel - 1);
	if (T.close_at > 0 && r->tag == TA && T.ndl_tag[TA] == T.close_at) {
		/* At once, long before the hold is over. */
		T.close_at = 0;
		T.closed_at_ms = ternd_now_ms();
		client_close(c, d_gone, &T.bob);
	}
}

static void
d_sent(struct client *c, const uint8_t id[MSG_ID_LEN], int status)
{
	uint8_t tag;
	uint32_t n;

	if (client_data(c) != &T.alice) {
		wrong("a sent report to bob");
		return;
	}
	if (!id_split(id, &tag, &n)) {
		wrong("a sent report for an id we never sent");
		return;
	}
	T.nsent_tag[tag]++;
	T.nsent[tag][n]++;
	T.sent_st[tag][n] = status;
	T.sent_ms[tag][n] = ternd_now_ms();
}

static const struct client_cbs d_cbs = {
	.state = d_state,
	.sent = d_sent,
	.deliver = d_deliver,
};

static void
d_reg(void *arg, int status, uint32_t device_id)
{
	struct dev *d = arg;

	d->reg_done = true;
	d->reg_status = status;
	if (status == 0)
		d->device_id = device_id;
}

/* d_client: a new client for d (its previous one must be gone). Acks are
 * the test's (b_ack), never the library's. */
static void
d_client(struct dev *d)
{
	struct client_config cfg;

	TT_ASSERT(d->c == NULL);
	client_config_init(&cfg);
	cfg.host = "127.0.0.1";
	cfg.port = T.node.port;
	cfg.device_key = d->priv;
	cfg.user = d->addr;
	cfg.device_id = d->device_id;
	cfg.backoff_min_ms = 10;
	cfg.backoff_max_ms = 100;
	cfg.outbox_max = MAXN;
	cfg.auto_ack = false;
	cfg.reconnect = d->reconnect;
	d->gone = false;
	TT_OK(client_new(&T.loop, &cfg, &d_cbs, d, &d->c));
}

static void
d_register(struct dev *d)
{
	d_client(d);
	TT_OK(client_register(d->c, NULL, "phone", d_reg, d));
	WAIT_FOR(d->reg_done);
	TT_EQ(d->reg_status, 0);
	TT_EQ(d->device_id, 1);
	WAIT_FOR(d->online > 0);
}

/* d_login: a new client for d, online (one more connection). */
static void
d_login(struct dev *d)
{
	int online = d->online, closed = d->closed;

	d_client(d);
	TT_OK(client_start(d->c));
	WAIT_FOR(d->online > online || d->closed > closed);
	TT_ASSERT(d->online > online);
}

/* d_drop: closes d's client and waits until it is freed. */
static void
d_drop(struct dev *d)
{
	if (d->c == NULL)
		return;
	client_close(d->c, d_gone, d);
	WAIT_FOR(d->gone);
	d->c = NULL;
}

static void
d_pong(void *arg, int status, const struct msg *resp)
{
	(void)resp;
	TT_EQ(status, 0);
	((struct dev *)arg)->pongs++;
}

/* d_ping: PING on d's connection, answered. The node answers a PING when
 * it reads it, and reads a connection in order: it has handled all d
 * sent before (ACK and SEND have no answer of their own yet), and d has
 * all the node wrote to it before (DELIVERs pushed meanwhile). */
static void
d_ping(struct dev *d)
{
	struct msg m = {.type = MSG_PING};
	int pongs = d->pongs;

	m.u.ping.nonce = 0x686f6c64;
	TT_OK(client_request(d->c, &m, d_pong, d));
	WAIT_FOR(d->pongs > pongs || T.wrong > 0);
	TT_EQ(T.wrong, 0);
}

static void a_send_cls(int tag, uint32_t n, uint8_t cls);

/* a_send: alice sends (tag, n) to bob's device 1. */
static void
a_send(int tag, uint32_t n)
{
	a_send_cls(tag, n, MSG_CLASS_MESSAGE);
}

/* a_send_cls: the same, of class cls. */
static void
a_send_cls(int tag, uint32_t n, uint8_t cls)
{
	uint8_t id[MSG_ID_LEN];
	char payload[32];
	int len = payload_of(payload, sizeof(payload), tag, n);

	TT_ASSERT(n < MAXN);
	make_id(id, tag, n);
	T.send_ms[tag][n] = ternd_now_ms();
	TT_OK(client_send(T.alice.c, id, BOB, 1, cls, TS_BASE + n,
	    (const uint8_t *)payload, (size_t)len));
}

/* --- checks --------------------------------------------------------------- */

/* check_sent: alice got exactly one SENT, status 0, for each of the
 * first n of tag. */
static void
check_sent(int tag, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		if (T.nsent[tag][i] != 1 || T.sent_st[tag][i] != 0) {
			state_dump();
			tt_fail(__FILE__, __LINE__, "%c-%u: %u sent reports, "
			    "the last with status %d (%s)", tag_char[tag], i,
			    T.nsent[tag][i], T.sent_st[tag][i],
			    tern_errname(T.sent_st[tag][i]));
		}
	}
}

/*
 * check_conn: bob's deliveries on connection conn are exactly a-0 ..
 * a-(n-1) in order, then the marker z-mark if mark >= 0, and nothing
 * else. The warm-up (w-0, first on connection 1) is skipped.
 */
static void
check_conn(int conn, uint32_t n, int mark)
{
	uint32_t k = 0;
	bool z = false;

	for (int i = 0; i < T.ndel; i++) {
		const struct del *r = &T.del[i];
		bool ok;

		if (r->conn != conn)
			continue;
		if (conn == 1 && r->tag == TW && r->n == 0 && k == 0)
			continue;
		if (k < n)
			ok = r->tag == TA && r->n == k++;
		else
			ok = !z && mark >= 0 && r->tag == TZ &&
			    r->n == (uint32_t)mark && (z = true);
		if (!ok) {
			state_dump();
			tt_fail(__FILE__, __LINE__, "delivery %d on connection "
			    "%d is %c-%u; want a-0..a-%u in order, then z-%d",
			    i, conn, r->tag < NTAGS ? tag_char[r->tag] : '?',
			    r->n, n - 1, mark);
		}
	}
	TT_EQ(k, n);
	TT_EQ(z, mark >= 0);
}

/* marker: alice sends z-n and bob gets it. The node keeps a device's
 * envelopes in the order it accepted them, so whatever was queued or
 * pushed for bob before it has arrived too. */
static void
marker(uint32_t n)
{
	a_send(TZ, n);
	WAIT_FOR(T.ndl[TZ][n] >= 1 || T.wrong > 0);
	TT_EQ(T.wrong, 0);
	WAIT_FOR(T.nsent[TZ][n] == 1);
	TT_EQ(T.sent_st[TZ][n], 0);
}

/* node_acks: the ACKs the node has counted since it last started: bob's
 * acks of envelopes, and of the probes unless the node started again
 * after them. */
static unsigned long long
node_acks(void)
{
	return (unsigned long long)(T.acks - T.acks0) +
	    (T.restarted ? 0 : (unsigned long long)T.probes);
}

/* done: bob acknowledges everything; the node's queue ends empty. */
static void
done(void)
{
	T.auto_ack = true;
	b_ack_all();
	d_ping(&T.bob); /* the node has read every ACK */
	TT_EQ(metric(ACKED), node_acks());
	WAIT_FOR(metric(QUEUED) == 0);
	TT_EQ(db_rows(), 0);
	TT_EQ(T.wrong, 0);
}

/*
 * ack_all_count_dups: bob acknowledges everything from now on, gets all
 * of a-0..a-(n-1) and the marker z-0; the first arrival of each id is in
 * send order, all on connection 1. Returns the repeats of ids bob already
 * had.
 */
static int
ack_all_count_dups(uint32_t n)
{
	uint32_t next = 0;
	int dups = 0;

	T.auto_ack = true;
	b_ack_all();
	WAIT_FOR(T.ndl_tag[TA] >= (int)n || T.wrong > 0);
	marker(0);
	d_ping(&T.bob);
	for (int i = 0; i < T.ndel; i++) {
		const struct del *r = &T.del[i];
		if (r->tag != TA)
			continue;
		TT_EQ(r->conn, 1);
		if (r->n == next)
			next++;
		else if (r->n < next)
			dups++; /* an id bob already had */
		else
			tt_fail(__FILE__, __LINE__, "delivery %d is a-%u, "
			    "before a-%u", i, r->n, next);
	}
	TT_EQ(next, n);
	return dups;
}

/* --- a case's start and end ----------------------------------------------- */

/*
 * setup: one.test with the per-user send limits out of the way, alice and
 * bob registered and online, a warm-up envelope w-0 from alice that bob
 * has acknowledged, and an ephemeral probe that reached bob: his session
 * is live, so every envelope alice sends next is pushed at once.
 */
static void
setup(void)
{
	memset(&T, 0, sizeof(T));
	TT_ASSERT(sodium_init() >= 0);
	signal(SIGPIPE, SIG_IGN);
	TT_OK(uv_loop_init(&T.loop));
	TT_OK(uv_timer_init(&T.loop, &T.tick));
	TT_OK(uv_timer_start(&T.tick, tick_cb, 20, 20));
	ternd_init(&T.node, true);
	ternd_conf_set(&T.node, "send_rate", "1000000");
	ternd_conf_set(&T.node, "send_burst", "1000000");
	ternd_start(&T.node);

	T.alice.addr = ALICE;
	T.alice.reconnect = true;
	noise_keypair_generate(T.alice.priv, T.alice.pub);
	T.bob.addr = BOB;
	T.bob.reconnect = false; /* a second connection is the case's doing */
	noise_keypair_generate(T.bob.priv, T.bob.pub);
	d_register(&T.alice);
	d_register(&T.bob);

	T.auto_ack = true;
	a_send(TW, 0);
	WAIT_FOR(T.ndl[TW][0] == 1 && T.nsent[TW][0] == 1);
	TT_EQ(T.sent_st[TW][0], 0);
	T.auto_ack = false;
	d_ping(&T.bob);
	/* w-0 may have come by a fetch, after which the session turns live
	 * only when a later fetch finds nothing more: until then alice's next
	 * envelopes would be queued, not pushed. Probes (ephemeral: pushed to
	 * a live session, else dropped) until one arrives. The node pushes
	 * one before its SENT, and bob's PONG comes after what was pushed. */
	for (uint32_t k = 0; T.probes == 0; k++) {
		TT_ASSERT(k < MAXN);
		a_send_cls(TP, k, MSG_CLASS_EPHEMERAL);
		WAIT_FOR(T.nsent[TP][k] == 1);
		d_ping(&T.bob);
	}
	WAIT_FOR(metric(QUEUED) == 0);
}

static void
teardown(void)
{
	TT_EQ(T.wrong, 0);
	d_drop(&T.alice);
	d_drop(&T.bob);
	ternd_destroy(&T.node); /* SIGTERM: exit 0, clean log */
	uv_close((uv_handle_t *)&T.tick, NULL);
	tt_uv_close(&T.loop);
}

/* --- cases --------------------------------------------------------------- */

/*
 * bob acknowledges each push at once: alice's SENT comes with the ACK,
 * and the envelopes the ACK found held (or still waiting for the writer)
 * are never written. Every envelope is written or unwritten, never both:
 * the rows the database ever got plus the unwritten ones make 200.
 */
TT_CASE(hold__acked_pushes_never_written)
{
	enum { N = 200 };
	unsigned long long uw0, uw;
	long long seq0, written;
	uint64_t t0;

	setup();
	uw0 = metric(UNWRITTEN);
	seq0 = db_seq();
	T.auto_ack = true;
	t0 = ternd_now_ms();
	for (uint32_t n = 0; n < N; n++)
		a_send(TA, n);
	WAIT_FOR((T.nsent_tag[TA] == N && T.ndl_tag[TA] == N) ||
	    T.wrong > 0);
	TT_EQ(T.wrong, 0);
	d_ping(&T.bob);
	check_conn(1, N, -1);
	TT_EQ(metric(ACKED), node_acks());
	TT_EQ(T.acks, T.ndel);
	WAIT_FOR(metric(QUEUED) == 0);
	TT_EQ(db_rows(), 0);
	check_sent(TA, N); /* still one each */
	uw = metric(UNWRITTEN) - uw0;
	written = db_seq() - seq0;
	printf("%d envelopes acked as pushed: %llu never written, %lld "
	    "written (and deleted by the ACK), %llu ms\n", N, uw, written,
	    (unsigned long long)(ternd_now_ms() - t0));
	TT_EQ((long long)uw + written, N);
	/* Not all 200: on a loaded machine an ACK may come after 250 ms. */
	TT_ASSERT(uw >= N / 2);
	teardown();
}

/*
 * bob does not acknowledge: the write waits out the hold, so alice's
 * SENT comes no sooner than 250 ms after the send, and then the envelope
 * is on disk: after kill -9 and a restart bob's new connection gets it
 * again. alice's retry with the same id is answered SENT and stores no
 * second copy.
 */
TT_CASE(hold__unacked_sent_after_hold_and_durable)
{
	unsigned long long uw0;
	uint64_t t0, t_sent, t_del;
	int alice_online;

	setup();
	uw0 = metric(UNWRITTEN);
	a_send(TA, 0);
	t0 = T.send_ms[TA][0];
	WAIT_FOR(T.ndl[TA][0] == 1 || T.wrong > 0);
	TT_EQ(T.wrong, 0);
	t_del = T.del[T.ndel - 1].at_ms - t0;
	WAIT_FOR(T.nsent[TA][0] == 1);
	TT_EQ(T.sent_st[TA][0], 0);
	t_sent = T.sent_ms[TA][0] - t0;
	printf("unacknowledged push: DELIVER after %llu ms, SENT after %llu "
	    "ms (hold %d ms)\n", (unsigned long long)t_del,
	    (unsigned long long)t_sent, HOLD_MS);
	TT_ASSERT(t_sent + CLOCK_SLACK_MS >= HOLD_MS);
	/* SENT follows the commit: the envelope is stored, once. */
	TT_EQ(metric(QUEUED), 1);
	TT_EQ(db_rows(), 1);
	TT_EQ(metric(UNWRITTEN), uw0);
	check_conn(1, 1, -1);
	/* That commit (and the warm-up's registrations) were timed. */
	TT_ASSERT(metric("tern_store_commit_seconds_count") > 0);

	/* A crash, and the node back on the same database. */
	alice_online = T.alice.online;
	ternd_kill(&T.node);
	WAIT_FOR(T.bob.closed > 0 && T.alice.waiting > 0);
	d_drop(&T.bob);
	ternd_start(&T.node);
	T.acks0 = T.acks;
	T.restarted = true;
	WAIT_FOR(T.alice.online > alice_online);
	TT_EQ(metric(QUEUED), 1);

	/* alice sends a-0 again (as after a SENT she never read): SENT, and
	 * still one copy. */
	a_send(TA, 0);
	WAIT_FOR(T.nsent[TA][0] == 2);
	TT_EQ(T.sent_st[TA][0], 0);
	TT_EQ(metric(QUEUED), 1);
	TT_EQ(db_rows(), 1);

	/* bob's new connection gets it from the store, once. */
	d_login(&T.bob);
	marker(0);
	check_conn(2, 1, 0);
	TT_EQ(T.ndl[TA][0], 2);
	done();
	teardown();
}

/*
 * bob's client closes right after the 50th push, well within the hold:
 * the node writes the 50 held envelopes when the session closes, alice
 * gets SENT for each, and bob's next connection gets all 50 by fetch,
 * once each, in order.
 */
TT_CASE(hold__disconnect_while_held_then_drained_in_order)
{
	enum { N = 50 };
	unsigned long long uw0;
	long long seq0;
	uint64_t t0, first_sent = UINT64_MAX;

	setup();
	uw0 = metric(UNWRITTEN);
	seq0 = db_seq();
	T.close_at = N;
	for (uint32_t n = 0; n < N; n++)
		a_send(TA, n);
	t0 = T.send_ms[TA][0];
	WAIT_FOR(T.bob.gone || T.wrong > 0);
	TT_EQ(T.wrong, 0);
	T.bob.c = NULL;
	WAIT_FOR(T.nsent_tag[TA] == N);
	check_sent(TA, N);
	check_conn(1, N, -1);
	for (uint32_t n = 0; n < N; n++)
		if (T.sent_ms[TA][n] < first_sent)
			first_sent = T.sent_ms[TA][n];
	printf("bob closed %llu ms after the first send; alice's first SENT "
	    "after %llu ms (hold %d ms)\n",
	    (unsigned long long)(T.closed_at_ms - t0),
	    (unsigned long long)(first_sent - t0), HOLD_MS);
	/* All 50 stored, none withdrawn: bob acknowledged nothing. */
	TT_EQ(metric(QUEUED), N);
	TT_EQ(db_rows(), N);
	TT_EQ(db_seq() - seq0, N);
	TT_EQ(metric(UNWRITTEN), uw0);

	/* The node has seen bob's close (alice's is the only connection);
	 * bob's new client logs in with the same device key. */
	WAIT_FOR(metric("tern_connections_current") == 1);
	d_login(&T.bob);
	WAIT_FOR(T.ndl_tag[TA] >= 2 * N || T.wrong > 0);
	marker(0);
	check_conn(2, N, 0);
	for (uint32_t n = 0; n < N; n++)
		TT_EQ(T.ndl[TA][n], 2);
	done();
	teardown();
}

/*
 * bob acknowledges nothing: the first 4,096 envelopes are pushed and
 * held; the 4,097th finds bob at the cap of unacknowledged pushes, so bob
 * turns draining, the held writes are submitted first and the rest go to
 * the store behind them. Every SENT comes without any ACK. Then bob
 * acknowledges everything as it comes: the 100 not pushed arrive by
 * fetch, after the 4,096, in order, on the same connection.
 *
 * Duplicates: a fetch asks for the envelopes above the session's
 * last_seq, which learns the seq of a pushed envelope only at its commit
 * (enqueue_done). bob acks only after every SENT, i.e. after every
 * commit, so the first fetch starts above a-4095 and no pushed envelope
 * can come again: none is allowed. (Were bob to ack while those commits
 * are still running, the fetch submitted when fewer than 64 pushes are
 * unacknowledged would start below them and could repeat the pushed
 * envelopes still unacknowledged, on the same connection: with the
 * commits held back by a lock on the database, all 63 of them come
 * again.)
 */
TT_CASE(hold__unlive_flushes_in_order)
{
	enum { N = CAP + 100 };
	unsigned long long uw0;
	int dups = 0;
	uint64_t t0 = ternd_now_ms();

	setup();
	uw0 = metric(UNWRITTEN);
	for (uint32_t n = 0; n < N; n++)
		a_send(TA, n);
	d_ping(&T.alice); /* the node has read every SEND */
	d_ping(&T.bob);   /* bob has every push */
	TT_EQ(T.ndl_tag[TA], CAP);
	check_conn(1, CAP, -1);
	WAIT_FOR(T.nsent_tag[TA] == N || T.wrong > 0);
	check_sent(TA, N);
	TT_EQ(metric(QUEUED), N);
	TT_EQ(metric(UNWRITTEN), uw0);
	TT_EQ(T.ndl_tag[TA], CAP); /* nothing fetched: bob is at the cap */

	dups = ack_all_count_dups(N);
	printf("%d envelopes: %d pushed, %d fetched after bob turned "
	    "draining, %d duplicates, %llu ms\n", N, CAP, N - CAP, dups,
	    (unsigned long long)(ternd_now_ms() - t0));
	TT_EQ(dups, 0);
	check_conn(1, N, 0);
	done();
	teardown();
}

/*
 * bob does not acknowledge; right after the 20th push the node gets
 * SIGTERM: it writes what it holds as the sessions close, and exits 0.
 * alice never sends again (her client is closed before the restart), yet
 * bob's next connection gets all 20 from the store, in order.
 */
TT_CASE(hold__stop_writes_held)
{
	enum { N = 20 };
	int ok = 0;

	setup();
	for (uint32_t n = 0; n < N; n++)
		a_send(TA, n);
	WAIT_FOR(T.ndl_tag[TA] == N || T.wrong > 0);
	TT_EQ(T.wrong, 0);
	(void)ternd_stop(&T.node);
	d_drop(&T.alice); /* what is still unanswered is not sent again */
	d_drop(&T.bob);
	for (uint32_t n = 0; n < N; n++) {
		TT_ASSERT(T.nsent[TA][n] <= 1);
		if (T.nsent[TA][n] == 1) {
			TT_ASSERT(T.sent_st[TA][n] == 0 ||
			    T.sent_st[TA][n] == TERN_ECLOSED);
			ok += T.sent_st[TA][n] == 0;
		}
	}
	printf("stopped with %d held; alice read SENT for %d before her "
	    "link closed\n", N, ok);
	check_conn(1, N, -1);

	ternd_start(&T.node);
	T.acks0 = T.acks;
	T.restarted = true;
	TT_EQ(metric(QUEUED), N);
	TT_EQ(db_rows(), N);
	d_login(&T.bob);
	WAIT_FOR(T.ndl_tag[TA] >= 2 * N || T.wrong > 0);
	d_login(&T.alice);
	marker(0);
	check_conn(2, N, 0);
	done();
	teardown();
}

/*
 * bob's device logs in again (a second connection with the same key)
 * while the first still has a push held: a-0..a-199 are stored (bob acked
 * nothing, their holds ran out), a-200 was pushed to the first connection
 * and is held. The login submits it before the new session's first fetch,
 * and its commit must not move the new session's position: the new
 * connection gets a-0..a-200 (fetched 128 at a time) in order, then the
 * marker. (Before, the commit moved the new session past a-200, so after
 * its first page of 128 the next fetch started above a-200 and
 * a-128..a-199 were skipped until a later login.)
 */
TT_CASE(hold__relogin_finds_every_stored_envelope)
{
	enum { N = 200 };
	struct client *first;
	int online;

	setup();
	for (uint32_t n = 0; n < N; n++)
		a_send(TA, n);
	WAIT_FOR(T.nsent_tag[TA] == N); /* stored: nothing acknowledged */
	check_sent(TA, N);
	a_send(TA, N);
	WAIT_FOR(T.ndl[TA][N] == 1 || T.wrong > 0);
	TT_EQ(T.wrong, 0);
	TT_EQ(T.nsent[TA][N], 0); /* held: no SENT yet */

	/* The same device again; the node closes the first connection. */
	first = T.bob.c;
	T.bob.c = NULL;
	T.auto_ack = true;
	online = T.bob.online;
	d_client(&T.bob); /* not d_login: the first one's close counts */
	TT_OK(client_start(T.bob.c));
	WAIT_FOR(T.bob.online > online || T.wrong > 0);
	WAIT_FOR(T.ndl_tag[TA] >= 2 * (N + 1) || T.wrong > 0);
	marker(0);
	check_conn(2, N + 1, 0);
	for (uint32_t n = 0; n <= N; n++)
		TT_EQ(T.ndl[TA][n], 2);
	WAIT_FOR(T.nsent[TA][N] == 1);
	TT_EQ(T.sent_st[TA][N], 0);
	done();
	{
		bool gone = false;
		client_close(first, d_gone_flag, &gone);
		WAIT_FOR(gone);
	}
	teardown();
}

/*
 * As hold__unlive_flushes_in_order, but bob acknowledges all but 63 of
 * the pushes while no commit can happen (a write lock of ours on the
 * node's database): acks, cancels and fetches for bob's device pile up
 * behind the writes. When the lock goes, bob must still get every
 * envelope exactly once, in order, on his one connection, and alice a
 * SENT for each. (A fetch asked for before the pushes' commits starts
 * below them; fetch_done skips what this connection has already had,
 * SPEC.md 7.4. This case did not produce such a fetch when run against
 * the code without that skip, so it checks the outcome, not that path.)
 */
TT_CASE(hold__acks_before_commits_no_duplicate)
{
	enum { N = CAP + 100, LEFT = 63 };
	char path[TERND_PATH + 16];
	int dups = 0;
	sqlite3 *lock;

	setup();
	snprintf(path, sizeof(path), "%s/ternd.db", T.node.dir);
	TT_EQ(sqlite3_open_v2(path, &lock, SQLITE_OPEN_READWRITE, NULL),
	    SQLITE_OK);
	TT_EQ(sqlite3_busy_timeout(lock, 5000), SQLITE_OK);
	TT_EQ(sqlite3_exec(lock, "BEGIN IMMEDIATE", NULL, NULL, NULL),
	    SQLITE_OK);
	for (uint32_t n = 0; n < N; n++)
		a_send(TA, n);
	d_ping(&T.alice); /* the node has read every SEND */
	d_ping(&T.bob);   /* bob has every push */
	TT_EQ(T.ndl_tag[TA], CAP);
	for (int i = 0; i < T.ndel; i++)
		if (T.del[i].tag == TA && T.del[i].n < CAP - LEFT)
			b_ack(i);
	d_ping(&T.bob);   /* the node has read the acks: it asked to fetch */
	TT_EQ(db_rows(), 0); /* nothing committed yet: the lock holds */
	TT_EQ(sqlite3_exec(lock, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	TT_EQ(sqlite3_close(lock), SQLITE_OK);

	dups = ack_all_count_dups(N);
	printf("%d duplicates; node delivered %llu\n", dups,
	    metric("tern_envelopes_delivered_total"));
	TT_EQ(dups, 0);
	check_conn(1, N, 0);
	WAIT_FOR(T.nsent_tag[TA] == N);
	check_sent(TA, N);
	done();
	teardown();
}
