/*
 * test_client.c: the client library against a fake node on loopback.
 *
 * The fake node is a few dozen lines of net_listen + msg: it registers and
 * logs in (refusing "mallory@"), answers SEND with SENT (ERROR EQUOTA for
 * "full@", ENOUSER for "nobody@"), PING with PONG, PROFILE_GET with
 * PROFILE, DEVICE_ADD with DEVICE_ADDED, records ACKs, pushes DELIVER and
 * NOTICE on demand, and can swallow answers, drop its client, stop
 * listening and listen again on the same port. Everything runs on one real
 * loop; waits are bounded by uv timers (a watchdog fails a case after
 * 4.5 s), never by sleeping.
 */
#include <sodium.h>

#include "client.h"
#include "msg.h"
#include "net.h"
#include "tt.h"
#include "tt_uv.h"

#define WATCHDOG_MS 4500
#define BACKOFF_MIN 10
#define BACKOFF_MAX 50
#define MAX_IDS 256

/* --- the fake node ----------------------------------------------------- */

struct fconn {
	bool authed;       /* REGISTERED or LOGIN_OK sent */
};

struct fseen {
	uint8_t id[MSG_ID_LEN]; /* a SEND's id */
	int count;              /* SENDs with it */
};

static struct {
	struct net_loop nl;          /* the node's own net loop */
	struct net_listener *l;      /* listening, or NULL when stopped */
	uint16_t port;               /* kept across restarts */
	uint8_t priv[32], pub[32];   /* the node's static key */
	struct net_conn *cur;        /* the latest logged-in connection */
	int opens, ik_opens, xx_opens; /* finished handshakes */
	int closed;                  /* connections gone */
	uint8_t remote[32];          /* the last client's static key */
	int registers, logins;       /* requests seen */
	uint32_t login_device;       /* the last LOGIN's device id */
	int sends;                   /* SENDs seen */
	struct fseen seen[MAX_IDS];  /* per id */
	int nseen;                   /* entries in seen */
	struct msg_send last_send;   /* the last SEND (texts copied below) */
	char last_to[256];           /* its recipient */
	uint8_t last_payload[64];    /* its payload's first bytes */
	int acks;                    /* ACKs seen */
	uint8_t ack_ids[64][MSG_ID_LEN]; /* their ids */
	uint64_t last_ack_ms;        /* uv_now when the last one came */
	int acks_before_send;        /* acks when the last SEND came */
	int pings;                   /* PINGs seen */
	int profile_gets;            /* PROFILE_GETs seen */
	int errors;                  /* ERRORs the client sent */
	int last_error;              /* -code of the last one */
	uint32_t held_req[4];        /* held PROFILE_GET reqs */
	char held_user[4][256];      /* and their users */
	int nheld;                   /* how many */
	bool swallow;                /* don't answer SEND */
	bool dup_sent;               /* answer every SEND twice */
	bool mute;                   /* don't answer PING */
	int hold;                    /* hold PROFILE_GETs until this many,
	                                then answer them newest first; -1:
	                                hold forever */
	uint8_t buf[MSG_MAX];        /* encoding buffer */
} F;

static void
fake_send(struct net_conn *nc, const struct msg *m)
{
	size_t n;

	TT_OK(msg_encode(m, F.buf, sizeof(F.buf), &n));
	TT_OK(net_conn_send(nc, F.buf, n));
}

static void
fake_error(struct net_conn *nc, uint32_t req, int code)
{
	struct msg m = {.type = MSG_ERROR, .req = req};

	m.u.error.code = (uint16_t)-code;
	fake_send(nc, &m);
}

static bool
str_is(const struct msg_str *s, const char *z)
{
	return s->len == strlen(z) && memcmp(s->p, z, s->len) == 0;
}

static bool
str_starts(const struct msg_str *s, const char *z)
{
	return s->len >= strlen(z) && memcmp(s->p, z, strlen(z)) == 0;
}

static int
fake_seen(const uint8_t id[MSG_ID_LEN])
{
	for (int i = 0; i < F.nseen; i++)
		if (memcmp(F.seen[i].id, id, MSG_ID_LEN) == 0)
			return F.seen[i].count;
	return 0;
}

static void
fake_login_ok(struct net_conn *nc)
{
	struct fconn *fc = net_conn_data(nc);

	fc->authed = true;
	F.cur = nc;
	chan_set_msg_cap(&nc->chan, MSG_MAX);
}

static void
fake_profile(struct net_conn *nc, uint32_t req, const char *user)
{
	struct msg m = {.type = MSG_PROFILE, .req = req};
	const char *at = strchr(user, '@');

	if (strncmp(user, "nobody@", 7) == 0) {
		fake_error(nc, req, TERN_ENOUSER);
		return;
	}
	m.u.profile.user.p = user;
	m.u.profile.user.len = strlen(user);
	m.u.profile.name.p = user;
	m.u.profile.name.len = (size_t)(at - user);
	fake_send(nc, &m);
}

static void
fake_on_send(struct net_conn *nc, const struct msg *m)
{
	struct msg a = {.type = MSG_SENT, .req = m->req};
	const struct msg_send *s = &m->u.send;
	int i;

	F.sends++;
	F.acks_before_send = F.acks;
	for (i = 0; i < F.nseen; i++)
		if (memcmp(F.seen[i].id, s->id, MSG_ID_LEN) == 0)
			break;
	if (i == F.nseen) {
		TT_ASSERT(F.nseen < MAX_IDS);
		memcpy(F.seen[F.nseen++].id, s->id, MSG_ID_LEN);
	}
	F.seen[i].count++;
	F.last_send = *s;
	memcpy(F.last_to, s->to.p, s->to.len);
	F.last_to[s->to.len] = '\0';
	memcpy(F.last_payload, s->payload.p,
	    s->payload.len < 64 ? s->payload.len : 64);
	if (str_starts(&s->to, "full@")) {
		fake_error(nc, m->req, TERN_EQUOTA);
		return;
	}
	if (str_starts(&s->to, "nobody@")) {
		fake_error(nc, m->req, TERN_ENOUSER);
		return;
	}
	if (F.swallow)
		return;
	memcpy(a.u.sent.id, s->id, MSG_ID_LEN);
	fake_send(nc, &a);
	if (F.dup_sent)
		fake_send(nc, &a);
}

static int
fake_message(struct net_conn *nc, const uint8_t *p, size_t n)
{
	struct fconn *fc = net_conn_data(nc);
	struct msg m, a = {0};

	TT_OK(msg_decode(p, n, &m));
	a.req = m.req;
	if (!fc->authed && m.type != MSG_REGISTER && m.type != MSG_LOGIN &&
	    m.type != MSG_PING) {
		fake_error(nc, m.req, TERN_EAUTH);
		return 0;
	}
	switch (m.type) {
	case MSG_REGISTER:
		F.registers++;
		if (str_starts(&m.u.reg.user, "taken@")) {
			fake_error(nc, m.req, TERN_EEXIST);
			return 0;
		}
		a.type = MSG_REGISTERED;
		a.u.registered.device_id = 1;
		fake_send(nc, &a);
		fake_login_ok(nc);
		break;
	case MSG_LOGIN:
		F.logins++;
		F.login_device = m.u.login.device_id;
		if (str_is(&m.u.login.user, "mallory@a.test")) {
			fake_error(nc, m.req, TERN_EAUTH);
			return 0;
		}
		if (str_is(&m.u.login.user, "busy@a.test")) {
			fake_error(nc, m.req, TERN_ERATE);
			return 0;
		}
		a.type = MSG_LOGIN_OK;
		a.u.login_ok.server_time_ms = 1700000000000ull;
		fake_send(nc, &a);
		fake_login_ok(nc);
		break;
	case MSG_PING:
		F.pings++;
		if (F.mute)
			break;
		a.type = MSG_PONG;
		a.u.pong.nonce = m.u.ping.nonce;
		fake_send(nc, &a);
		break;
	case MSG_SEND:
		fake_on_send(nc, &m);
		break;
	case MSG_ACK:
		TT_ASSERT(m.req == 0);
		TT_ASSERT(F.acks < 64);
		memcpy(F.ack_ids[F.acks++], m.u.ack.id, MSG_ID_LEN);
		F.last_ack_ms = uv_now(nc->nl->loop);
		break;
	case MSG_ERROR:
		F.errors++;
		F.last_error = -(int)m.u.error.code;
		break;
	case MSG_PRESENCE_SUB:
		a.type = MSG_OK;
		fake_send(nc, &a);
		/* SPEC 4.27: the current state at once. */
		a.type = MSG_PRESENCE;
		a.req = 0;
		a.u.presence.user = m.u.presence_sub.user;
		a.u.presence.state = MSG_PRESENCE_OFFLINE;
		a.u.presence.last_seen_ms = 1700000000000ull;
		fake_send(nc, &a);
		break;
	case MSG_DEVICE_ADD:
		a.type = MSG_DEVICE_ADDED;
		a.u.device_added.device_id = 2;
		fake_send(nc, &a);
		break;
	case MSG_PROFILE_GET: {
		char user[256];

		F.profile_gets++;
		memcpy(user, m.u.profile_get.user.p, m.u.profile_get.user.len);
		user[m.u.profile_get.user.len] = '\0';
		if (F.hold == 0) {
			fake_profile(nc, m.req, user);
			break;
		}
		TT_ASSERT(F.nheld < 4);
		F.held_req[F.nheld] = m.req;
		memcpy(F.held_user[F.nheld++], user, sizeof(user));
		if (F.nheld == F.hold) {
			while (F.nheld > 0) {
				F.nheld--;
				fake_profile(nc, F.held_req[F.nheld],
				    F.held_user[F.nheld]);
			}
		}
		break;
	}
	default:
		fake_error(nc, m.req, TERN_ETYPE);
		break;
	}
	return 0;
}

static void
fake_open(struct net_conn *nc)
{
	F.opens++;
	memcpy(F.remote, chan_remote_key(&nc->chan), 32);
	if (nc->chan.pattern == CHAN_IK)
		F.ik_opens++;
	else
		F.xx_opens++;
}

static void
fake_closed(struct net_conn *nc, int err)
{
	F.closed++;
	if (F.cur == nc)
		F.cur = NULL;
}

static const struct net_conn_cbs fake_cbs = {
	.open = fake_open,
	.message = fake_message,
	.closed = fake_closed,
};

static void
fake_listen(void)
{
	TT_OK(net_listen(&F.nl, "127.0.0.1", F.port, CHAN_KIND_CLIENT, F.priv,
	    MSG_MAX_UNAUTH, &fake_cbs, sizeof(struct fconn), NULL, &F.l));
	F.port = net_listener_port(F.l);
}

/* fake_drop: hangs up on the logged-in client. */
static void
fake_drop(void)
{
	TT_ASSERT(F.cur != NULL);
	net_conn_close(F.cur, 0);
	F.cur = NULL;
}

/* fake_stop: stops listening and hangs up; fake_listen starts again on
 * the same port. */
static void
fake_stop(void)
{
	net_listener_close(F.l);
	F.l = NULL;
	if (F.cur != NULL)
		fake_drop();
}

static void
fake_push_deliver(const uint8_t id[MSG_ID_LEN], const char *from,
    const char *payload)
{
	struct msg m = {.type = MSG_DELIVER};

	memcpy(m.u.deliver.id, id, MSG_ID_LEN);
	m.u.deliver.from.p = from;
	m.u.deliver.from.len = strlen(from);
	m.u.deliver.from_device = 3;
	m.u.deliver.class = MSG_CLASS_MESSAGE;
	m.u.deliver.timestamp_ms = 1700000000000ull;
	m.u.deliver.received_ms = 1700000000005ull;
	m.u.deliver.payload.p = (const uint8_t *)payload;
	m.u.deliver.payload.len = strlen(payload);
	fake_send(F.cur, &m);
}

static void
fake_push_notice(const uint8_t nid[MSG_ID_LEN], const uint8_t ref[MSG_ID_LEN])
{
	struct msg m = {.type = MSG_NOTICE};

	memcpy(m.u.notice.notice_id, nid, MSG_ID_LEN);
	m.u.notice.kind = MSG_NOTICE_EXPIRED;
	memcpy(m.u.notice.ref_id, ref, MSG_ID_LEN);
	m.u.notice.peer.p = "bob@b.test";
	m.u.notice.peer.len = 10;
	m.u.notice.peer_device = 2;
	fake_send(F.cur, &m);
}

/* --- what the client reports ------------------------------------------ */

struct sent_rec {
	uint8_t id[MSG_ID_LEN]; /* the envelope */
	int status;             /* what sent said */
};

static struct {
	uv_loop_t loop;              /* the one loop */
	uv_timer_t watchdog;         /* fails a case that hangs */
	uv_timer_t wait;             /* wait_ms */
	bool waited;                 /* wait fired */
	uint8_t cpriv[32], cpub[32]; /* the device's key */
	struct client *c;            /* the client under test */
	bool closed;                 /* client_close's callback ran */
	int nclosed;                 /* ... how many times */
	int nstates;                 /* state callbacks */
	int states[256];             /* their states */
	int errs[256];               /* their errors */
	uint32_t delays[256];        /* their delays */
	int online, waiting, closed_st; /* entries per state */
	int unreach;                 /* WAITING with TERN_EUNREACH */
	int last_err;                /* the last state's error */
	int wait_err;                /* the first WAITING's error */
	int nsent;                   /* sent callbacks */
	struct sent_rec sent[MAX_IDS]; /* in order */
	int delivers;                /* deliver callbacks */
	uint8_t deliver_id[MSG_ID_LEN]; /* the last one's id */
	char deliver_from[256];      /* its sender */
	char deliver_payload[64];    /* its payload */
	uint64_t deliver_ts;         /* its timestamps */
	uint64_t deliver_rcv;
	int presences;               /* presence callbacks */
	char presence_user[256];     /* the last one's user */
	int presence_state;          /* and state */
	int notices;                 /* notice callbacks */
	uint8_t notice_ref[MSG_ID_LEN]; /* the last one's ref_id */
	int reg_calls;               /* registration callbacks */
	int reg_status;              /* the last one's status */
	uint32_t reg_id;             /* and device id */
	bool eph_in_waiting;         /* try an ephemeral send in WAITING */
	int eph_result;              /* what client_send said */
} K;

static void
watchdog_cb(uv_timer_t *t)
{
	tt_fail(__FILE__, __LINE__, "case did not finish in %d ms",
	    WATCHDOG_MS);
}

/* WAIT_FOR: runs the loop until cond holds; the watchdog bounds it. */
#define WAIT_FOR(cond)                                                     \
	do {                                                               \
		while (!(cond))                                            \
			uv_run(&K.loop, UV_RUN_ONCE);                      \
	} while (0)

static void
wait_cb(uv_timer_t *t)
{
	K.waited = true;
}

/* wait_ms: lets the loop run for ms (to see that nothing happens). */
static void
wait_ms(uint64_t ms)
{
	K.waited = false;
	uv_timer_start(&K.wait, wait_cb, ms, 0);
	WAIT_FOR(K.waited);
}

static void
k_state(struct client *c, enum client_state st, int err, uint32_t delay)
{
	static const uint8_t eph_id[MSG_ID_LEN] = {0xee};

	TT_ASSERT(K.nstates < 256);
	K.states[K.nstates] = st;
	K.errs[K.nstates] = err;
	K.delays[K.nstates++] = delay;
	K.last_err = err;
	if (st == CLIENT_ONLINE)
		K.online++;
	if (st == CLIENT_WAITING) {
		if (K.waiting++ == 0)
			K.wait_err = err;
		if (err == TERN_EUNREACH)
			K.unreach++;
		if (K.eph_in_waiting)
			K.eph_result = client_send(c, eph_id, "bob@b.test", 2,
			    MSG_CLASS_EPHEMERAL, 1, (const uint8_t *)"x", 1);
	}
	if (st == CLIENT_CLOSED)
		K.closed_st++;
}

static void
k_sent(struct client *c, const uint8_t id[MSG_ID_LEN], int status)
{
	TT_ASSERT(K.nsent < MAX_IDS);
	memcpy(K.sent[K.nsent].id, id, MSG_ID_LEN);
	K.sent[K.nsent++].status = status;
}

static void
k_deliver(struct client *c, const struct msg_deliver *d)
{
	K.delivers++;
	memcpy(K.deliver_id, d->id, MSG_ID_LEN);
	memcpy(K.deliver_from, d->from.p, d->from.len);
	K.deliver_from[d->from.len] = '\0';
	memcpy(K.deliver_payload, d->payload.p, d->payload.len);
	K.deliver_payload[d->payload.len] = '\0';
	K.deliver_ts = d->timestamp_ms;
	K.deliver_rcv = d->received_ms;
}

static void
k_notice(struct client *c, const struct msg_notice *n)
{
	K.notices++;
	memcpy(K.notice_ref, n->ref_id, MSG_ID_LEN);
}

static void
k_presence(struct client *c, const struct msg_presence *p)
{
	K.presences++;
	memcpy(K.presence_user, p->user.p, p->user.len);
	K.presence_user[p->user.len] = '\0';
	K.presence_state = p->state;
}

static const struct client_cbs k_cbs = {
	.state = k_state,
	.sent = k_sent,
	.deliver = k_deliver,
	.notice = k_notice,
	.presence = k_presence,
};

static void
k_closed(void *arg)
{
	K.closed = true;
	K.nclosed++;
}

static void
k_reg(void *arg, int status, uint32_t device_id)
{
	K.reg_calls++;
	K.reg_status = status;
	K.reg_id = device_id;
}

/* A request's answer, as seen by its callback. */
struct answer {
	bool done;        /* the callback ran */
	int calls;        /* how often */
	int order;        /* 1 for the first answer of the case, ... */
	int status;       /* its status */
	uint8_t type;     /* the answer's type, or 0 for none */
	char name[64];    /* PROFILE: the name */
	uint64_t nonce;   /* PONG: the nonce */
	uint32_t id;      /* DEVICE_ADDED: the id */
};

static int answers;

static void
answer_cb(void *arg, int status, const struct msg *resp)
{
	struct answer *a = arg;

	a->done = true;
	a->calls++;
	a->order = ++answers;
	a->status = status;
	if (resp == NULL)
		return;
	a->type = resp->type;
	if (resp->type == MSG_PROFILE) {
		memcpy(a->name, resp->u.profile.name.p,
		    resp->u.profile.name.len);
		a->name[resp->u.profile.name.len] = '\0';
	}
	if (resp->type == MSG_PONG)
		a->nonce = resp->u.pong.nonce;
}

static void
id_cb(void *arg, int status, uint32_t device_id)
{
	struct answer *a = arg;

	a->done = true;
	a->calls++;
	a->status = status;
	a->id = device_id;
}

/* --- set-up ------------------------------------------------------------ */

static void
setup(void)
{
	TT_ASSERT(sodium_init() >= 0);
	memset(&F, 0, sizeof(F));
	memset(&K, 0, sizeof(K));
	answers = 0;
	noise_keypair_generate(F.priv, F.pub);
	noise_keypair_generate(K.cpriv, K.cpub);
	TT_OK(uv_loop_init(&K.loop));
	uv_timer_init(&K.loop, &K.watchdog);
	uv_timer_init(&K.loop, &K.wait);
	uv_timer_start(&K.watchdog, watchdog_cb, WATCHDOG_MS, 0);
	TT_OK(net_loop_init(&F.nl, &K.loop, NULL));
	fake_listen();
}

static void
config(struct client_config *cfg, const char *user, uint32_t device_id)
{
	client_config_init(cfg);
	cfg->host = "127.0.0.1";
	cfg->port = F.port;
	cfg->node_key = F.pub;
	cfg->device_key = K.cpriv;
	cfg->user = user;
	cfg->device_id = device_id;
	cfg->backoff_min_ms = BACKOFF_MIN;
	cfg->backoff_max_ms = BACKOFF_MAX;
}

/* online: a client logged in as alice, device 1, with cfg tweaked by the
 * caller beforehand if it passes one. */
static void
online(struct client_config *cfg)
{
	struct client_config def;

	if (cfg == NULL) {
		config(&def, "alice@a.test", 1);
		cfg = &def;
	}
	TT_OK(client_new(&K.loop, cfg, &k_cbs, NULL, &K.c));
	TT_OK(client_start(K.c));
	WAIT_FOR(K.online == 1);
	TT_EQ(client_state(K.c), CLIENT_ONLINE);
}

/* roundtrip: a PING answered, so everything sent before it either way has
 * been handled by the other side. */
static void
roundtrip(void)
{
	struct msg m = {.type = MSG_PING};
	struct answer a = {0};

	m.u.ping.nonce = 42;
	TT_OK(client_request(K.c, &m, answer_cb, &a));
	WAIT_FOR(a.done);
	TT_EQ(a.status, 0);
	TT_EQ(a.nonce, 42);
}

static void
close_client(void)
{
	K.closed = false;
	client_close(K.c, k_closed, NULL);
	WAIT_FOR(K.closed);
	K.c = NULL;
}

static void
teardown(void)
{
	if (K.c != NULL)
		close_client();
	net_loop_close(&F.nl, NULL, NULL);
	uv_close((uv_handle_t *)&K.watchdog, NULL);
	uv_close((uv_handle_t *)&K.wait, NULL);
	tt_uv_close(&K.loop);
}

static void
make_id(uint8_t id[MSG_ID_LEN], uint8_t n)
{
	memset(id, 0, MSG_ID_LEN);
	id[0] = 0xa5;
	id[15] = n;
}

/* sent_count: how often sent reported id, and the last status. */
static int
sent_count(const uint8_t id[MSG_ID_LEN], int *status)
{
	int n = 0;

	for (int i = 0; i < K.nsent; i++) {
		if (memcmp(K.sent[i].id, id, MSG_ID_LEN) == 0) {
			n++;
			if (status != NULL)
				*status = K.sent[i].status;
		}
	}
	return n;
}

static int
send_text(uint8_t n, const char *to, uint8_t cls)
{
	uint8_t id[MSG_ID_LEN];

	make_id(id, n);
	return client_send(K.c, id, to, 2, cls, 1700000000000ull + n,
	    (const uint8_t *)"hello", 5);
}

/* --- cases ------------------------------------------------------------- */

TT_CASE(client__register__then_login)
{
	struct client_config cfg;

	setup();
	config(&cfg, "alice@a.test", 0);
	cfg.node_key = NULL; /* first contact: learn it by XX */
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	TT_ERR(client_start(K.c), TERN_ESTATE); /* no device id yet */
	TT_OK(client_register(K.c, "invite-1", "phone", k_reg, NULL));
	TT_ERR(client_register(K.c, "invite-1", "phone", k_reg, NULL),
	    TERN_ESTATE);
	WAIT_FOR(K.online == 1);
	TT_EQ(K.reg_calls, 1);
	TT_EQ(K.reg_status, 0);
	TT_EQ(K.reg_id, 1);
	TT_EQ(client_device_id(K.c), 1);
	TT_EQ(F.registers, 1);
	TT_EQ(F.logins, 0);
	TT_EQ(F.xx_opens, 1);
	TT_MEMEQ(F.remote, K.cpub, 32);
	{
		uint8_t key[32];

		TT_OK(client_node_key(K.c, key));
		TT_MEMEQ(key, F.pub, 32);
	}
	/* The link drops: the next one logs in as device 1, by XX pinning
	 * the key learnt on first contact. */
	fake_drop();
	WAIT_FOR(K.online == 2);
	TT_EQ(F.registers, 1);
	TT_EQ(F.logins, 1);
	TT_EQ(F.login_device, 1);
	TT_EQ(F.ik_opens, 0);
	TT_EQ(F.xx_opens, 2);
	TT_EQ(K.reg_calls, 1);
	teardown();
}

TT_CASE(client__register__refused_closes)
{
	struct client_config cfg;

	setup();
	config(&cfg, "taken@a.test", 0);
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	TT_OK(client_register(K.c, NULL, "phone", k_reg, NULL));
	WAIT_FOR(K.closed_st == 1);
	TT_EQ(K.reg_calls, 1);
	TT_EQ(K.reg_status, TERN_EEXIST);
	TT_EQ(K.reg_id, 0);
	TT_EQ(K.last_err, TERN_EEXIST);
	TT_EQ(client_device_id(K.c), 0);
	wait_ms(3 * BACKOFF_MAX);
	TT_EQ(F.registers, 1);
	TT_EQ(K.waiting, 0);
	teardown();
	TT_EQ(K.reg_calls, 1);
	TT_EQ(K.closed_st, 1); /* already CLOSED: not reported again */
}

TT_CASE(client__device_add__returns_new_id)
{
	struct answer a = {0};
	uint8_t priv[32], pub[32];

	setup();
	online(NULL);
	noise_keypair_generate(priv, pub);
	TT_OK(client_device_add(K.c, pub, "laptop", id_cb, &a));
	WAIT_FOR(a.done);
	TT_EQ(a.status, 0);
	TT_EQ(a.id, 2);
	TT_EQ(a.calls, 1);
	teardown();
}

TT_CASE(client__send__sent_callback)
{
	uint8_t id[MSG_ID_LEN];

	setup();
	online(NULL);
	make_id(id, 1);
	TT_OK(client_send(K.c, id, "bob@b.test", 2, MSG_CLASS_MESSAGE,
	    1700000000001ull, (const uint8_t *)"hello", 5));
	TT_EQ(client_outbox_len(K.c), 1);
	WAIT_FOR(K.nsent == 1);
	TT_MEMEQ(K.sent[0].id, id, MSG_ID_LEN);
	TT_EQ(K.sent[0].status, 0);
	TT_EQ(client_outbox_len(K.c), 0);
	TT_EQ(F.sends, 1);
	TT_MEMEQ(F.last_send.id, id, MSG_ID_LEN);
	TT_ASSERT(strcmp(F.last_to, "bob@b.test") == 0);
	TT_EQ(F.last_send.to_device, 2);
	TT_EQ(F.last_send.class, MSG_CLASS_MESSAGE);
	TT_EQ(F.last_send.timestamp_ms, 1700000000001ull);
	TT_EQ(F.last_send.payload.len, 5);
	TT_MEMEQ(F.last_payload, "hello", 5);
	teardown();
	TT_EQ(K.nsent, 1); /* nothing more at close */
}

TT_CASE(client__send__mailbox_full_reaches_sent_callback)
{
	uint8_t id[MSG_ID_LEN];
	int st = 0;

	setup();
	online(NULL);
	TT_OK(send_text(1, "full@b.test", MSG_CLASS_MESSAGE));
	TT_OK(send_text(2, "nobody@b.test", MSG_CLASS_MESSAGE));
	TT_OK(send_text(3, "bob@b.test", MSG_CLASS_MESSAGE));
	WAIT_FOR(K.nsent == 3);
	make_id(id, 1);
	TT_EQ(sent_count(id, &st), 1);
	TT_EQ(st, TERN_EQUOTA);
	make_id(id, 2);
	TT_EQ(sent_count(id, &st), 1);
	TT_EQ(st, TERN_ENOUSER);
	make_id(id, 3);
	TT_EQ(sent_count(id, &st), 1);
	TT_EQ(st, 0);
	TT_EQ(client_outbox_len(K.c), 0);
	TT_EQ(K.online, 1); /* an ERROR for an envelope keeps the link */
	teardown();
}

TT_CASE(client__send__outbox_caps_and_checks)
{
	struct client_config cfg;
	uint8_t id[MSG_ID_LEN], big[200] = {0};

	setup();
	config(&cfg, "alice@a.test", 1);
	cfg.outbox_max = 2;
	cfg.outbox_max_bytes = 150;
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	/* Queued before the client even starts. */
	TT_OK(send_text(1, "bob@b.test", MSG_CLASS_MESSAGE));
	TT_ERR(send_text(1, "bob@b.test", MSG_CLASS_MESSAGE), TERN_EEXIST);
	make_id(id, 9);
	TT_ERR(client_send(K.c, id, "bob@b.test", 2, 1, 0, big, sizeof(big)),
	    TERN_EBUSY); /* bytes */
	TT_ERR(send_text(2, "Bob@b.test", MSG_CLASS_MESSAGE), TERN_EFIELD);
	TT_ERR(send_text(2, "bob@b.test", 0), TERN_EINVAL);
	TT_ERR(send_text(2, "bob@b.test", MSG_CLASS_EPHEMERAL), TERN_ECLOSED);
	TT_ERR(client_send(K.c, id, "bob@b.test", 2, 1, 0, big,
	    MSG_PAYLOAD_MAX + 1), TERN_ETOOBIG);
	TT_OK(send_text(2, "bob@b.test", MSG_CLASS_RECEIPT));
	TT_ERR(send_text(3, "bob@b.test", MSG_CLASS_MESSAGE), TERN_EBUSY);
	TT_EQ(client_outbox_len(K.c), 2);
	{
		struct msg m = {.type = MSG_PING};
		struct answer a = {0};

		TT_ERR(client_request(K.c, &m, answer_cb, &a), TERN_ESTATE);
	}
	TT_OK(client_start(K.c));
	TT_ERR(client_start(K.c), TERN_ESTATE);
	WAIT_FOR(K.nsent == 2);
	TT_EQ(K.sent[0].status, 0);
	TT_EQ(K.sent[1].status, 0);
	TT_EQ(K.sent[0].id[15], 1); /* in order */
	TT_EQ(K.sent[1].id[15], 2);
	TT_OK(send_text(3, "bob@b.test", MSG_CLASS_MESSAGE));
	{
		struct msg m = {.type = MSG_SEND};
		struct answer a = {0};

		TT_ERR(client_request(K.c, &m, answer_cb, &a), TERN_EINVAL);
		m.type = MSG_ACK;
		TT_ERR(client_request(K.c, &m, answer_cb, &a), TERN_EINVAL);
	}
	WAIT_FOR(K.nsent == 3);
	teardown();
}

TT_CASE(client__deliver__ack_reaches_node)
{
	uint8_t id[MSG_ID_LEN], nid[MSG_ID_LEN], ref[MSG_ID_LEN];

	setup();
	online(NULL);
	make_id(id, 7);
	fake_push_deliver(id, "bob@b.test", "hi alice");
	WAIT_FOR(K.delivers == 1);
	TT_MEMEQ(K.deliver_id, id, MSG_ID_LEN);
	TT_ASSERT(strcmp(K.deliver_from, "bob@b.test") == 0);
	TT_ASSERT(strcmp(K.deliver_payload, "hi alice") == 0);
	TT_EQ(K.deliver_ts, 1700000000000ull);
	TT_EQ(K.deliver_rcv, 1700000000005ull);
	roundtrip();
	TT_EQ(F.acks, 0); /* no auto_ack: the app decides */
	TT_OK(client_ack(K.c, id));
	roundtrip();
	TT_EQ(F.acks, 1);
	TT_MEMEQ(F.ack_ids[0], id, MSG_ID_LEN);
	/* A NOTICE is acknowledged once its callback returns. */
	make_id(nid, 8);
	make_id(ref, 9);
	fake_push_notice(nid, ref);
	WAIT_FOR(F.acks == 2);
	TT_EQ(K.notices, 1);
	TT_MEMEQ(K.notice_ref, ref, MSG_ID_LEN);
	TT_MEMEQ(F.ack_ids[1], nid, MSG_ID_LEN);
	teardown();
}

TT_CASE(client__deliver__auto_ack)
{
	struct client_config cfg;
	uint8_t a[MSG_ID_LEN], b[MSG_ID_LEN];

	setup();
	config(&cfg, "alice@a.test", 1);
	cfg.auto_ack = true;
	online(&cfg);
	make_id(a, 1);
	make_id(b, 2);
	fake_push_deliver(a, "bob@b.test", "one");
	fake_push_deliver(b, "carol@c.test", "two");
	WAIT_FOR(F.acks == 2);
	TT_EQ(K.delivers, 2);
	TT_MEMEQ(F.ack_ids[0], a, MSG_ID_LEN);
	TT_MEMEQ(F.ack_ids[1], b, MSG_ID_LEN);
	TT_ASSERT(strcmp(K.deliver_from, "carol@c.test") == 0);
	teardown();
}

/* ACKs are gathered (SPEC.md 7.3): written when the delay ends, when
 * CLIENT_ACK_GATHER_MAX wait, with the next thing the client writes, or
 * at client_close; a dropped link forgets them. */
TT_CASE(client__ack__gathered_by_delay_count_and_writes)
{
	struct client_config cfg;
	uint8_t id[MSG_ID_LEN];
	uint64_t t0;

	setup();
	config(&cfg, "alice@a.test", 1);
	cfg.ack_delay_ms = CLIENT_ACK_DELAY_MAX + 1;
	TT_ERR(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c), TERN_EINVAL);
	TT_ASSERT(K.c == NULL);
	cfg.ack_delay_ms = CLIENT_ACK_DELAY_MAX;
	cfg.auto_ack = true;
	online(&cfg);

	/* The delay: nothing for a while, then the ACK, no sooner. */
	make_id(id, 1);
	fake_push_deliver(id, "bob@b.test", "one");
	WAIT_FOR(K.delivers == 1);
	t0 = uv_now(&K.loop);
	wait_ms(CLIENT_ACK_DELAY_MAX / 5);
	TT_EQ(F.acks, 0);
	WAIT_FOR(F.acks == 1);
	TT_ASSERT(F.last_ack_ms >= t0 + CLIENT_ACK_DELAY_MAX - 1);
	TT_MEMEQ(F.ack_ids[0], id, MSG_ID_LEN);

	/* The count: 32 go at once, the 33rd waits for its delay. */
	for (uint8_t n = 0; n <= CLIENT_ACK_GATHER_MAX; n++) {
		make_id(id, (uint8_t)(10 + n));
		fake_push_deliver(id, "bob@b.test", "burst");
	}
	WAIT_FOR(F.acks > 1);
	TT_EQ(F.acks, 1 + CLIENT_ACK_GATHER_MAX);
	WAIT_FOR(K.delivers == 2 + CLIENT_ACK_GATHER_MAX);
	wait_ms(CLIENT_ACK_DELAY_MAX / 5);
	TT_EQ(F.acks, 1 + CLIENT_ACK_GATHER_MAX);
	WAIT_FOR(F.acks == 2 + CLIENT_ACK_GATHER_MAX);
	for (uint8_t n = 0; n <= CLIENT_ACK_GATHER_MAX; n++)
		TT_EQ(F.ack_ids[1 + n][15], 10 + n); /* in order */

	/* Anything written takes the gathered ACKs along, ahead of it. */
	make_id(id, 50);
	fake_push_deliver(id, "bob@b.test", "two");
	WAIT_FOR(K.delivers == 3 + CLIENT_ACK_GATHER_MAX);
	TT_OK(send_text(51, "bob@b.test", MSG_CLASS_MESSAGE));
	WAIT_FOR(K.nsent == 1);
	TT_EQ(F.acks_before_send, 3 + CLIENT_ACK_GATHER_MAX);
	TT_EQ(F.ack_ids[2 + CLIENT_ACK_GATHER_MAX][15], 50);

	/* A drop forgets them: the node delivers those again. A PING on
	 * the new link would carry any left over. */
	make_id(id, 60);
	fake_push_deliver(id, "bob@b.test", "three");
	WAIT_FOR(K.delivers == 4 + CLIENT_ACK_GATHER_MAX);
	fake_drop();
	WAIT_FOR(K.online == 2);
	roundtrip();
	wait_ms(CLIENT_ACK_DELAY_MAX + 20);
	TT_EQ(F.acks, 3 + CLIENT_ACK_GATHER_MAX);

	/* client_close writes them before it hangs up. */
	make_id(id, 70);
	fake_push_deliver(id, "bob@b.test", "four");
	WAIT_FOR(K.delivers == 5 + CLIENT_ACK_GATHER_MAX);
	close_client();
	WAIT_FOR(F.acks == 4 + CLIENT_ACK_GATHER_MAX);
	TT_EQ(F.ack_ids[3 + CLIENT_ACK_GATHER_MAX][15], 70);
	teardown();
}

TT_CASE(client__reconnect__backoff_until_node_returns)
{
	uint64_t cap = BACKOFF_MIN;
	int w = 0;

	setup();
	online(NULL);
	fake_stop();
	WAIT_FOR(K.unreach >= 4);
	fake_listen();
	WAIT_FOR(K.online == 2);
	TT_EQ(F.logins, 2);
	TT_EQ(client_state(K.c), CLIENT_ONLINE);
	/* ONLINE, then WAITING (the drop), then CONNECTING and WAITING
	 * (refused) until the node is back; the n-th window is at most
	 * min(max, min * 2^n). */
	for (int i = 0; i < K.nstates; i++) {
		if (K.states[i] != CLIENT_WAITING)
			continue;
		if (w++ == 0)
			TT_EQ(K.errs[i], TERN_ECLOSED);
		else
			TT_EQ(K.errs[i], TERN_EUNREACH);
		TT_ASSERT(K.delays[i] <= cap);
		TT_ASSERT(K.delays[i] <= BACKOFF_MAX);
		cap = cap * 2 > BACKOFF_MAX ? BACKOFF_MAX : cap * 2;
	}
	TT_EQ(w, K.waiting);
	TT_ASSERT(w >= 5);
	TT_EQ(K.states[K.nstates - 1], CLIENT_ONLINE);
	TT_EQ(K.states[K.nstates - 2], CLIENT_CONNECTING);
	teardown();
}

TT_CASE(client__send__resent_after_reconnect)
{
	uint8_t id[MSG_ID_LEN];
	int st;

	setup();
	online(NULL);
	TT_OK(send_text(0, "bob@b.test", MSG_CLASS_MESSAGE));
	WAIT_FOR(K.nsent == 1);
	/* The node takes three more but answers none before the drop. */
	F.swallow = true;
	TT_OK(send_text(1, "bob@b.test", MSG_CLASS_MESSAGE));
	TT_OK(send_text(2, "bob@b.test", MSG_CLASS_RECEIPT));
	TT_OK(send_text(3, "bob@b.test", MSG_CLASS_MESSAGE));
	WAIT_FOR(F.sends == 4);
	F.swallow = false;
	F.dup_sent = true; /* and then answers everything twice */
	fake_drop();
	WAIT_FOR(K.nsent == 4);
	roundtrip();
	TT_EQ(K.online, 2);
	TT_EQ(K.nsent, 4);
	for (uint8_t n = 0; n < 4; n++) {
		make_id(id, n);
		TT_EQ(sent_count(id, &st), 1);
		TT_EQ(st, 0);
		TT_EQ(fake_seen(id), n == 0 ? 1 : 2); /* same id again */
		TT_EQ(K.sent[n].id[15], n);           /* in order */
	}
	TT_EQ(F.sends, 7);
	TT_EQ(client_outbox_len(K.c), 0);
	teardown();
	TT_EQ(K.nsent, 4);
}

TT_CASE(client__send__ephemeral_not_resent)
{
	uint8_t eph[MSG_ID_LEN], msg[MSG_ID_LEN], late[MSG_ID_LEN] = {0xee};
	int st;

	setup();
	online(NULL);
	F.swallow = true;
	TT_OK(send_text(1, "bob@b.test", MSG_CLASS_EPHEMERAL));
	TT_OK(send_text(2, "bob@b.test", MSG_CLASS_MESSAGE));
	WAIT_FOR(F.sends == 2);
	F.swallow = false;
	K.eph_in_waiting = true;
	K.eph_result = 1;
	fake_drop();
	WAIT_FOR(K.online == 2 && K.nsent == 2);
	roundtrip();
	make_id(eph, 1);
	make_id(msg, 2);
	TT_EQ(sent_count(eph, &st), 1);
	TT_EQ(st, TERN_ECLOSED);
	TT_MEMEQ(K.sent[0].id, eph, MSG_ID_LEN); /* dropped with the link */
	TT_EQ(sent_count(msg, &st), 1);
	TT_EQ(st, 0);
	TT_EQ(fake_seen(eph), 1);
	TT_EQ(fake_seen(msg), 2);
	/* Offered while WAITING, an ephemeral is refused at once. */
	TT_EQ(K.eph_result, TERN_ECLOSED);
	TT_EQ(sent_count(late, NULL), 0);
	TT_EQ(fake_seen(late), 0);
	teardown();
}

TT_CASE(client__login__refused_closes_without_retry)
{
	struct client_config cfg;
	struct msg m = {.type = MSG_PING};
	struct answer a = {0};

	setup();
	config(&cfg, "mallory@a.test", 1);
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	TT_OK(client_start(K.c));
	WAIT_FOR(K.closed_st == 1);
	TT_EQ(K.last_err, TERN_EAUTH);
	TT_EQ(client_state(K.c), CLIENT_CLOSED);
	/* Several backoff windows later, still nothing new. */
	wait_ms(4 * BACKOFF_MAX);
	TT_EQ(F.logins, 1);
	TT_EQ(F.opens, 1);
	TT_EQ(K.waiting, 0);
	TT_EQ(K.online, 0);
	TT_ERR(client_request(K.c, &m, answer_cb, &a), TERN_ESTATE);
	TT_ERR(client_ack(K.c, (const uint8_t *)"0123456789abcdef"),
	    TERN_ECLOSED);
	teardown();
	TT_EQ(K.closed_st, 1);
	TT_ASSERT(!a.done);
}

TT_CASE(client__request__two_concurrent_matched)
{
	struct msg m1 = {.type = MSG_PROFILE_GET}, m2 = m1;
	struct answer a1 = {0}, a2 = {0};

	setup();
	online(NULL);
	F.hold = 2; /* the node answers both at once, the second first */
	m1.u.profile_get.user.p = "bob@b.test";
	m1.u.profile_get.user.len = 10;
	m2.u.profile_get.user.p = "nobody@b.test";
	m2.u.profile_get.user.len = 13;
	TT_OK(client_request(K.c, &m1, answer_cb, &a1));
	TT_OK(client_request(K.c, &m2, answer_cb, &a2));
	TT_ASSERT(m1.req != 0 && m2.req != 0 && m1.req != m2.req);
	WAIT_FOR(a1.done && a2.done);
	TT_EQ(a2.order, 1);
	TT_EQ(a1.order, 2);
	TT_EQ(a1.status, 0);
	TT_EQ(a1.type, MSG_PROFILE);
	TT_ASSERT(strcmp(a1.name, "bob") == 0);
	TT_EQ(a2.status, TERN_ENOUSER);
	TT_EQ(a2.type, MSG_ERROR);
	roundtrip();
	TT_EQ(a1.calls, 1);
	TT_EQ(a2.calls, 1);
	teardown();
}

TT_CASE(client__request__pending_fail_on_drop)
{
	struct msg m = {.type = MSG_PROFILE_GET};
	struct answer a1 = {0}, a2 = {0};

	setup();
	online(NULL);
	F.hold = -1; /* never answered */
	m.u.profile_get.user.p = "bob@b.test";
	m.u.profile_get.user.len = 10;
	TT_OK(client_request(K.c, &m, answer_cb, &a1));
	TT_OK(client_request(K.c, &m, answer_cb, &a2));
	WAIT_FOR(F.profile_gets == 2);
	fake_drop();
	WAIT_FOR(a1.done && a2.done);
	TT_EQ(a1.status, TERN_ECLOSED);
	TT_EQ(a2.status, TERN_ECLOSED);
	TT_EQ(a1.type, 0); /* no response */
	WAIT_FOR(K.online == 2);
	roundtrip();
	TT_EQ(F.profile_gets, 2); /* not sent again */
	TT_EQ(a1.calls, 1);
	TT_EQ(a2.calls, 1);
	teardown();
}

TT_CASE(client__close__everything_in_flight)
{
	struct msg m = {.type = MSG_PROFILE_GET};
	struct answer a = {0};
	uint8_t id[MSG_ID_LEN];

	setup();
	online(NULL);
	F.swallow = true;
	F.hold = -1;
	TT_OK(send_text(1, "bob@b.test", MSG_CLASS_MESSAGE));
	TT_OK(send_text(2, "bob@b.test", MSG_CLASS_EPHEMERAL));
	TT_OK(send_text(3, "bob@b.test", MSG_CLASS_RECEIPT));
	m.u.profile_get.user.p = "bob@b.test";
	m.u.profile_get.user.len = 10;
	TT_OK(client_request(K.c, &m, answer_cb, &a));
	make_id(id, 9);
	fake_push_deliver(id, "bob@b.test", "unacked");
	WAIT_FOR(F.sends == 3 && F.profile_gets == 1 && K.delivers == 1);
	client_close(K.c, k_closed, NULL);
	client_close(K.c, k_closed, NULL); /* a second call does nothing */
	TT_ERR(send_text(4, "bob@b.test", MSG_CLASS_MESSAGE), TERN_ESTATE);
	WAIT_FOR(K.closed);
	K.c = NULL;
	TT_EQ(K.nclosed, 1);
	TT_EQ(a.calls, 1);
	TT_EQ(a.status, TERN_ECLOSED);
	TT_EQ(K.nsent, 3);
	for (int i = 0; i < 3; i++)
		TT_EQ(K.sent[i].status, TERN_ECLOSED);
	TT_EQ(K.states[K.nstates - 1], CLIENT_CLOSED);
	TT_EQ(K.errs[K.nstates - 1], 0);
	teardown(); /* asserts that no handle is left open */
}

TT_CASE(client__close__while_connecting_and_waiting)
{
	struct client_config cfg;

	setup();
	config(&cfg, "alice@a.test", 1);
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	TT_OK(client_start(K.c));
	TT_EQ(client_state(K.c), CLIENT_CONNECTING);
	close_client();
	TT_EQ(K.online, 0);
	TT_EQ(K.states[K.nstates - 1], CLIENT_CLOSED);

	fake_stop();
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	TT_OK(client_start(K.c));
	WAIT_FOR(K.waiting >= 1);
	TT_ASSERT(client_state(K.c) == CLIENT_WAITING ||
	    client_state(K.c) == CLIENT_CONNECTING);
	close_client();

	/* A client that never started. */
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	close_client();
	TT_EQ(K.nclosed, 3);
	teardown();
}

TT_CASE(client__reconnect__xx_pinning_the_known_key)
{
	setup();
	online(NULL); /* setup's config knows the node's key */
	TT_EQ(F.ik_opens, 0);
	TT_EQ(F.xx_opens, 1);
	TT_MEMEQ(F.remote, K.cpub, 32);
	fake_drop();
	WAIT_FOR(K.online == 2);
	TT_EQ(F.ik_opens, 0);
	TT_EQ(F.xx_opens, 2);
	TT_EQ(F.logins, 2);
	/* The public key the client keeps is the one its handshake showed. */
	TT_MEMEQ(F.remote, K.cpub, 32);
	teardown();
}

TT_CASE(client__pin__changed_node_key_closes_with_ekey)
{
	struct client_config cfg;
	uint8_t other_priv[32], other_pub[32];

	setup();
	noise_keypair_generate(other_priv, other_pub);
	config(&cfg, "alice@a.test", 1);
	cfg.node_key = other_pub; /* pinned, but the node has another */
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	TT_OK(client_start(K.c));
	WAIT_FOR(K.closed_st == 1);
	TT_EQ(K.last_err, TERN_EKEY);
	TT_EQ(K.waiting, 0);
	WAIT_FOR(F.closed == 1); /* one XX attempt, stopped before message 3 */
	wait_ms(3 * BACKOFF_MAX);
	TT_EQ(F.closed, 1);
	TT_EQ(F.opens, 0);
	TT_EQ(F.logins, 0);
	teardown();
}

TT_CASE(client__keepalive__ping_when_idle)
{
	struct client_config cfg;

	setup();
	config(&cfg, "alice@a.test", 1);
	cfg.keepalive_ms = 40;
	online(&cfg);
	WAIT_FOR(F.pings >= 3);
	TT_EQ(K.online, 1);
	TT_EQ(K.waiting, 0);
	TT_EQ(client_state(K.c), CLIENT_ONLINE);
	teardown();
}

TT_CASE(client__keepalive__silent_node_times_out)
{
	struct client_config cfg;

	setup();
	config(&cfg, "alice@a.test", 1);
	cfg.keepalive_ms = 40;
	online(&cfg);
	F.mute = true;
	WAIT_FOR(K.waiting >= 1);
	TT_EQ(K.wait_err, TERN_ETIMEOUT);
	TT_ASSERT(F.pings >= 1);
	WAIT_FOR(K.online == 2); /* and comes back */
	teardown();
}

TT_CASE(client__protocol__bad_message_ends_link_unknown_type_does_not)
{
	static const uint8_t unknown[] = {1, 0x7e, 0, 0, 0, 9};
	static const uint8_t badver[] = {2, 0x22, 0, 0, 0, 0};

	setup();
	online(NULL);
	/* An unknown type is answered with ERROR ETYPE; the link stays. */
	TT_OK(net_conn_send(F.cur, unknown, sizeof(unknown)));
	roundtrip();
	TT_EQ(F.errors, 1);
	TT_EQ(F.last_error, TERN_ETYPE);
	TT_EQ(K.online, 1);
	TT_EQ(K.waiting, 0);
	/* Another version: ERROR EVERSION, then the link ends. */
	TT_OK(net_conn_send(F.cur, badver, sizeof(badver)));
	WAIT_FOR(K.waiting == 1 && F.errors == 2);
	TT_EQ(K.wait_err, TERN_EVERSION);
	TT_EQ(F.last_error, TERN_EVERSION);
	WAIT_FOR(K.online == 2);
	teardown();
}

TT_CASE(client__shared_net_loop__many_clients)
{
	enum { N = 50 };
	struct client *cs[N];
	struct net_loop nl;
	struct client_config cfg;
	char users[N][32];
	uint8_t id[MSG_ID_LEN];

	setup();
	TT_OK(net_loop_init(&nl, &K.loop, NULL));
	for (int i = 0; i < N; i++) {
		snprintf(users[i], sizeof(users[i]), "user%d@a.test", i);
		config(&cfg, users[i], 1);
		cfg.nl = &nl;
		TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &cs[i]));
		TT_OK(client_start(cs[i]));
	}
	WAIT_FOR(K.online == N);
	for (int i = 0; i < N; i++) {
		make_id(id, (uint8_t)i);
		TT_OK(client_send(cs[i], id, "bob@b.test", 2, 1, 0,
		    (const uint8_t *)"x", 1));
	}
	WAIT_FOR(K.nsent == N);
	for (int i = 0; i < N; i++)
		TT_EQ(K.sent[i].status, 0);
	for (int i = 0; i < N; i++)
		client_close(cs[i], k_closed, NULL);
	WAIT_FOR(K.nclosed == N);
	net_loop_close(&nl, NULL, NULL);
	teardown();
}

TT_CASE(client__presence__sub_ok_then_push)
{
	struct msg m = {.type = MSG_PRESENCE_SUB};
	struct answer a = {0};

	setup();
	online(NULL);
	m.u.presence_sub.user.p = "bob@b.test";
	m.u.presence_sub.user.len = 10;
	TT_OK(client_request(K.c, &m, answer_cb, &a));
	WAIT_FOR(a.done && K.presences == 1);
	TT_EQ(a.status, 0);
	TT_EQ(a.type, MSG_OK);
	TT_ASSERT(strcmp(K.presence_user, "bob@b.test") == 0);
	TT_EQ(K.presence_state, MSG_PRESENCE_OFFLINE);
	teardown();
}

TT_CASE(client__login__transient_error_retried)
{
	struct client_config cfg;

	setup();
	config(&cfg, "busy@a.test", 1);
	TT_OK(client_new(&K.loop, &cfg, &k_cbs, NULL, &K.c));
	TT_OK(client_start(K.c));
	WAIT_FOR(F.logins >= 3);
	TT_EQ(K.closed_st, 0);
	TT_EQ(K.online, 0);
	TT_ASSERT(K.waiting >= 2);
	TT_EQ(K.errs[1], TERN_ERATE); /* CONNECTING, then WAITING(ERATE) */
	teardown();
}

TT_CASE(client__reconnect__off_closes_on_drop)
{
	struct client_config cfg;

	setup();
	config(&cfg, "alice@a.test", 1);
	cfg.reconnect = false;
	online(&cfg);
	TT_OK(send_text(1, "bob@b.test", MSG_CLASS_MESSAGE));
	WAIT_FOR(K.nsent == 1);
	F.swallow = true;
	TT_OK(send_text(2, "bob@b.test", MSG_CLASS_MESSAGE));
	WAIT_FOR(F.sends == 2);
	fake_drop();
	WAIT_FOR(K.closed_st == 1);
	TT_EQ(K.last_err, TERN_ECLOSED);
	TT_EQ(K.waiting, 0);
	TT_EQ(client_outbox_len(K.c), 1); /* kept for a later start */
	F.swallow = false;
	TT_OK(client_start(K.c));
	WAIT_FOR(K.online == 2 && K.nsent == 2);
	TT_EQ(K.sent[1].status, 0);
	teardown();
}

/* Envelope ids in SPEC.md 4.15's form: the clock's milliseconds,
 * big-endian, then random bytes. */
TT_CASE(client__envelope_id__clock_then_random)
{
	uint8_t a[MSG_ID_LEN], b[MSG_ID_LEN];
	struct timespec ts;
	uint64_t before, after, ta = 0, tb = 0;

	clock_gettime(CLOCK_REALTIME, &ts);
	before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	client_envelope_id(a);
	client_envelope_id(b);
	clock_gettime(CLOCK_REALTIME, &ts);
	after = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (int i = 0; i < 6; i++) {
		ta = ta << 8 | a[i];
		tb = tb << 8 | b[i];
	}
	TT_ASSERT(ta >= before && ta <= after);
	TT_ASSERT(tb >= ta && tb <= after);
	/* The random parts differ (80 bits: equal with odds of 2^-80). */
	TT_ASSERT(memcmp(a + 6, b + 6, MSG_ID_LEN - 6) != 0);
}
