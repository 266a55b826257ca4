/*
 * client.c: one device's connection to its home node (see client.h).
 *
 * Life of a client (c->st):
 *
 *   IDLE --start--> CONNECTING --open--> LOGIN --LOGIN_OK--> ONLINE
 *                       ^                  |                   |
 *                       |    (link lost)   v                   v
 *                       +-----timer----- WAITING <-------------+
 *
 *   CLOSED: the node refused us (EAUTH, EDENIED, ENOUSER on LOGIN; any
 *   error on REGISTER), its key is not the pinned one (EKEY), or the link
 *   dropped with reconnect off. client_start may leave it again.
 *
 * CONNECTING covers TCP and the Noise handshake, whose deadline net
 * enforces. LOGIN is the time between the handshake and the node's answer
 * to LOGIN or REGISTER; the state callback reports it as CONNECTING too.
 * One timer serves both waiting states: in WAITING it ends the backoff,
 * in LOGIN and ONLINE it is the keepalive (PING after keepalive_ms without
 * sending; the node counts as dead after twice that without a message).
 *
 * Outbox: each envelope is kept as its encoded SEND, so writing it again
 * after a reconnect only patches the req (bytes 2-5) and costs no
 * encoding; the envelope id is at bytes 6-21. An entry's req is nonzero
 * once it has been written on the current connection: that is how an
 * ERROR, which names only the req, finds its envelope, and how a drop
 * knows what to write again. SENT is matched by id.
 */
#include "client.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "ident.h"

/* Client requests are small (the largest, KEYS_PUT with 100 prekeys, is
 * 3,776 bytes), so they are encoded on the stack. */
#define CLIENT_REQ_BUF 4096
#define CLIENT_SEND_ID_OFF MSG_HDR_LEN /* SEND: the id follows the header */
#define CLIENT_BACKOFF_CEIL 3600000    /* ms: an hour, so cap + 1 can't wrap */
/* A SEND refused with ERATE (the node's per-user send rate, SPEC.md 7.7)
 * waits in the outbox and is written again, after 250 ms doubling to 8 s,
 * at most CLIENT_RATE_TRIES times in a row without a SENT between; then
 * the owner hears ERATE. */
#define CLIENT_RATE_WAIT_MIN 250
#define CLIENT_RATE_WAIT_MAX 8000
#define CLIENT_RATE_TRIES 10

enum client_st {
	ST_IDLE = 0,   /* not started */
	ST_CONNECTING, /* TCP and handshake */
	ST_LOGIN,      /* LOGIN or REGISTER sent */
	ST_ONLINE,     /* logged in */
	ST_WAITING,    /* backoff timer running */
	ST_CLOSED      /* stopped */
};

/* One envelope waiting for SENT; one allocation with its wire bytes. */
struct client_env {
	struct client_env *next; /* next in the outbox, oldest first */
	uint32_t req;            /* its SEND's req on this connection; 0:
	                            not written on it */
	uint32_t len;            /* bytes in wire */
	uint8_t cls;             /* enum msg_class */
	uint8_t wire[];          /* the encoded SEND */
};

/* One request waiting for its answer. */
struct client_req {
	struct client_req *next; /* next pending request */
	uint32_t req;            /* its req */
	uint8_t want;            /* type of a successful answer */
	client_resp_cb cb;       /* owner's callback, or NULL */
	void *arg;               /* its argument */
};

/* client_device_add's adapter from a response to a device id. */
struct client_id_req {
	client_id_cb cb;         /* owner's callback */
	void *arg;               /* its argument */
};

struct client {
	uv_loop_t *loop;              /* everything runs on it */
	struct net_loop *nl;          /* the connections' shared state */
	struct net_loop *own_nl;      /* nl when we made it, else NULL */
	const struct client_cbs *cbs; /* owner's callbacks, borrowed */
	void *data;                   /* owner's pointer */
	char *host;                   /* node's IP literal, owned */
	char *user;                   /* our address, owned */
	size_t user_len;              /* its length */
	uint16_t port;                /* node's port */
	uint32_t device_id;           /* ours; 0 until registered */
	uint8_t s_priv[NOISE_DHLEN];  /* our static key (wiped at free) */
	uint8_t s_pub[NOISE_DHLEN];   /* its public key, computed once */
	uint8_t node_key[NOISE_DHLEN]; /* node's key, when has_node_key */
	bool has_node_key;            /* configured or learnt by XX */
	bool reconnect;               /* reconnect after a drop */
	bool auto_ack;                /* ACK each DELIVER after the callback */
	uint32_t ack_delay;           /* ms: longest an ACK waits; 0: none */
	uint32_t backoff_min;         /* ms: first backoff window */
	uint32_t backoff_max;         /* ms: largest window */
	uint32_t keepalive;           /* ms without sending before a PING */
	uint32_t outbox_max;          /* envelopes */
	uint32_t outbox_max_bytes;    /* encoded bytes */

	struct net_conn *conn;        /* current connection, or NULL */
	uv_timer_t timer;             /* backoff or keepalive */
	uint8_t st;                   /* enum client_st */
	uint8_t reported;             /* last enum client_state reported */
	bool closing;                 /* client_close ran */
	bool conn_open;               /* conn's handshake finished */
	int stop_err;                 /* nonzero: stop with CLOSED and this
	                                 error once conn is gone */
	int peer_err;                 /* -code of an ERROR (req 0) the node
	                                 sent on conn, the reason it closes */
	uint32_t attempt;             /* failed attempts since last login */
	uint32_t next_req;            /* last req handed out */
	uint32_t login_req;           /* req of LOGIN/REGISTER in flight */
	uint64_t last_sent;           /* uv_now of our last message */
	uint64_t last_recv;           /* uv_now of the node's last message */

	bool ob_paused;               /* ERATE: write nothing new until */
	uint64_t ob_resume_at;        /* uv_now of the next try */
	uint32_t rate_wait;           /* ms: the last wait */
	uint32_t rate_tries;          /* ERATEs since the last SENT */
	struct client_env *ob_head;   /* outbox, oldest first */
	struct client_env *ob_tail;   /* newest */
	uint32_t ob_count;            /* envelopes in it */
	size_t ob_bytes;              /* their encoded bytes */
	struct client_req *reqs;      /* pending requests */

	/* ACKs not yet written, for the current connection only: a new one
	 * fetches again what these would have acknowledged. */
	uv_timer_t ack_timer;         /* runs while ack_n > 0 */
	uint8_t ack_n;                /* ids in ack_ids */
	uint8_t ack_ids[CLIENT_ACK_GATHER_MAX][MSG_ID_LEN];

	bool reg_pending;             /* client_register awaits its answer */
	char *reg_invite;             /* REGISTER's invite, owned */
	char *reg_name;               /* REGISTER's device name, owned */
	client_id_cb reg_cb;          /* owner's registration callback */
	void *reg_arg;                /* its argument */

	uint8_t close_pending;        /* handles still closing */
	void (*close_cb)(void *);     /* client_close's callback */
	void *close_arg;              /* its argument */
};

static void client_timer_cb(uv_timer_t *t);
static void client_lost(struct client *c, int err);

/* --- helpers ---------------------------------------------------------- */

static struct client *
client_of(struct net_conn *conn)
{
	struct client *c;

	memcpy(&c, net_conn_data(conn), sizeof(c));
	return c;
}

static bool
client_is_online(const struct client *c)
{
	return c->st == ST_ONLINE && c->conn != NULL && !c->closing;
}

static uint32_t
client_req_next(struct client *c)
{
	if (++c->next_req == 0)
		c->next_req = 1;
	return c->next_req;
}

static enum client_state
client_public(uint8_t st)
{
	switch (st) {
	case ST_CONNECTING:
	case ST_LOGIN:
		return CLIENT_CONNECTING;
	case ST_ONLINE:
		return CLIENT_ONLINE;
	case ST_WAITING:
		return CLIENT_WAITING;
	case ST_CLOSED:
		return CLIENT_CLOSED;
	default:
		return CLIENT_IDLE;
	}
}

/* client_report: tells the owner about a change of public state. Every
 * WAITING is reported, because each carries a new delay. */
static void
client_report(struct client *c, int err, uint32_t delay_ms)
{
	enum client_state pub = client_public(c->st);

	if (pub == c->reported && pub != CLIENT_WAITING)
		return;
	c->reported = (uint8_t)pub;
	if (c->cbs != NULL && c->cbs->state != NULL)
		c->cbs->state(c, pub, err, delay_ms);
}

static int client_acks_write(struct client *c);

/* client_write: queues encoded bytes on the connection, after the ACKs
 * gathered so far: they share its frame (SPEC.md 2.5) for nothing. A
 * failed write may have queued part of a message, so the caller closes
 * the link. */
static int
client_write(struct client *c, const uint8_t *p, size_t n)
{
	int r;

	if (c->conn == NULL)
		return TERN_ECLOSED;
	if (c->ack_n > 0 && (r = client_acks_write(c)) != 0)
		return r;
	if ((r = net_conn_send(c->conn, p, n)) != 0)
		return r;
	c->last_sent = uv_now(c->loop);
	return 0;
}

/* client_write_msg: encodes m (a small message) and queues it. Encoding
 * errors come back before anything is queued. */
static int
client_write_msg(struct client *c, const struct msg *m)
{
	uint8_t buf[CLIENT_REQ_BUF];
	size_t n;
	int r;

	if ((r = msg_encode(m, buf, sizeof(buf), &n)) != 0)
		return r;
	return client_write(c, buf, n);
}

/* client_drop: ends the current link with err. Writing after a failed
 * write could interleave half a message with the next. */
static void
client_drop(struct client *c, int err)
{
	if (c->conn != NULL)
		net_conn_close(c->conn, err);
}

static void
client_send_error(struct client *c, uint32_t req, int code)
{
	const char *detail = tern_strerror(code);
	struct msg m = {.type = MSG_ERROR, .req = req};

	m.u.error.code = (uint16_t)-code;
	m.u.error.detail.p = detail;
	m.u.error.detail.len = strlen(detail);
	/* Best effort: the link is about to close or the peer misbehaved. */
	(void)client_write_msg(c, &m);
}

static char *
client_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p;

	if ((p = malloc(n)) != NULL)
		memcpy(p, s, n);
	return p;
}

/* --- registration ------------------------------------------------------ */

/* client_reg_done: the registration's single answer. */
static void
client_reg_done(struct client *c, int status)
{
	client_id_cb cb = c->reg_cb;
	void *arg = c->reg_arg;

	if (!c->reg_pending)
		return;
	c->reg_pending = false;
	c->reg_cb = NULL;
	free(c->reg_invite);
	free(c->reg_name);
	c->reg_invite = c->reg_name = NULL;
	if (cb != NULL)
		cb(arg, status, status == 0 ? c->device_id : 0);
}

/* --- outbox ------------------------------------------------------------ */

static uint8_t *
client_env_id(struct client_env *e)
{
	return e->wire + CLIENT_SEND_ID_OFF;
}

/* client_ob_unlink: takes e (after prev, or the head when prev is NULL)
 * out of the outbox. The caller then owns e. */
static void
client_ob_unlink(struct client *c, struct client_env *prev,
    struct client_env *e)
{
	if (prev != NULL)
		prev->next = e->next;
	else
		c->ob_head = e->next;
	if (c->ob_tail == e)
		c->ob_tail = prev;
	e->next = NULL;
	c->ob_count--;
	c->ob_bytes -= e->len;
}

/* client_env_done: reports e's outcome and frees it; e is unlinked. */
static void
client_env_done(struct client *c, struct client_env *e, int status)
{
	if (c->cbs != NULL && c->cbs->sent != NULL)
		c->cbs->sent(c, client_env_id(e), status);
	free(e);
}

static int
client_env_write(struct client *c, struct client_env *e)
{
	uint32_t req = client_req_next(c);

	e->req = req;
	e->wire[2] = (uint8_t)(req >> 24);
	e->wire[3] = (uint8_t)(req >> 16);
	e->wire[4] = (uint8_t)(req >> 8);
	e->wire[5] = (uint8_t)req;
	return client_write(c, e->wire, e->len);
}

/* client_ob_flush: writes every envelope not yet written on this link. */
static void
client_ob_flush(struct client *c)
{
	struct client_env *e;
	int r;

	if (c->ob_paused)
		return; /* the node asked us to slow down */
	for (e = c->ob_head; e != NULL; e = e->next) {
		if (e->req != 0)
			continue;
		if ((r = client_env_write(c, e)) != 0) {
			e->req = 0;
			client_drop(c, r);
			return;
		}
	}
}

/*
 * client_ob_unwrite: the link is gone. What it carried gets written again
 * on the next one, except ephemeral envelopes: they are dropped, since a
 * typing indicator that arrives late is worse than none.
 */
static void
client_ob_unwrite(struct client *c)
{
	struct client_env *e, *prev = NULL, *next, *dropped = NULL, **tail;

	/* A wait the node asked for ends with its link: the next one starts
	 * after a reconnect's own backoff. */
	c->ob_paused = false;
	tail = &dropped;
	for (e = c->ob_head; e != NULL; e = next) {
		next = e->next;
		e->req = 0;
		if (e->cls == MSG_CLASS_EPHEMERAL) {
			client_ob_unlink(c, prev, e);
			*tail = e;
			tail = &e->next;
			continue;
		}
		prev = e;
	}
	/* Callbacks last: they may add to the outbox. */
	while ((e = dropped) != NULL) {
		dropped = e->next;
		client_env_done(c, e, TERN_ECLOSED);
	}
}

/* --- requests ---------------------------------------------------------- */

/* client_answer_type: what answers a client request of this type, or 0 if
 * client_request does not send it. */
static uint8_t
client_answer_type(uint8_t type)
{
	switch (type) {
	case MSG_PING:
		return MSG_PONG;
	case MSG_DEVICE_ADD:
		return MSG_DEVICE_ADDED;
	case MSG_DEVICE_LIST:
		return MSG_DEVICES;
	case MSG_PROFILE_GET:
		return MSG_PROFILE;
	case MSG_CONTACT_LIST:
		return MSG_CONTACTS;
	case MSG_KEYS_PUT:
	case MSG_KEYS_STATUS:
		return MSG_KEYS_COUNT;
	case MSG_BUNDLE_GET:
		return MSG_BUNDLE;
	case MSG_DEVICE_REMOVE:
	case MSG_PROFILE_SET:
	case MSG_PRIVACY_SET:
	case MSG_CONTACT_ADD:
	case MSG_CONTACT_REMOVE:
	case MSG_PRESENCE_SUB:
	case MSG_PRESENCE_UNSUB:
		return MSG_OK;
	default:
		return 0;
	}
}

/* client_req_take: unlinks and returns the pending request req, or NULL.
 * The caller owns it. */
static struct client_req *
client_req_take(struct client *c, uint32_t req)
{
	struct client_req **pp, *r;

	if (req == 0)
		return NULL;
	for (pp = &c->reqs; (r = *pp) != NULL; pp = &r->next) {
		if (r->req == req) {
			*pp = r->next;
			return r;
		}
	}
	return NULL;
}

static void
client_req_done(struct client_req *r, int status, const struct msg *resp)
{
	if (r->cb != NULL)
		r->cb(r->arg, status, resp);
	free(r);
}

/* client_reqs_fail: every pending request ends with err; the list is
 * detached first, so callbacks may issue new requests. */
static void
client_reqs_fail(struct client *c, int err)
{
	struct client_req *r, *list = c->reqs;

	c->reqs = NULL;
	while ((r = list) != NULL) {
		list = r->next;
		client_req_done(r, err, NULL);
	}
}

/* --- connecting -------------------------------------------------------- */

static void client_net_open(struct net_conn *conn);
static int client_net_message(struct net_conn *conn, const uint8_t *p,
    size_t n);
static void client_net_closed(struct net_conn *conn, int err);
static void client_net_error(struct net_conn *conn, int err);

static const struct net_conn_cbs client_net_cbs = {
	.open = client_net_open,
	.message = client_net_message,
	.closed = client_net_closed,
	.error = client_net_error,
};

/*
 * client_connect: one attempt, always XX (SPEC 9.1): with the node's key
 * known, XX pins it, so a changed key is caught, not learnt. IK would
 * take the same two round trips to LOGIN_OK (handshake payloads are
 * empty) for one X25519 operation more on each side, and would send our
 * static key under a key that is not forward secret. Our own public key
 * is given, not computed again. Until the handshake ends the node may
 * send MSG_MAX_UNAUTH.
 */
static int
client_connect(struct client *c)
{
	struct net_conn *conn;
	int r;

	r = net_connect(c->nl, c->host, c->port, CHAN_KIND_CLIENT, CHAN_XX,
	    c->s_priv, c->s_pub, c->has_node_key ? c->node_key : NULL,
	    MSG_MAX_UNAUTH, &client_net_cbs, sizeof(c), &conn);
	if (r != 0)
		return r;
	memcpy(net_conn_data(conn), &c, sizeof(c));
	c->conn = conn;
	c->conn_open = false;
	c->peer_err = 0;
	c->login_req = 0;
	c->st = ST_CONNECTING;
	client_report(c, 0, 0);
	return 0;
}

/* client_backoff: full jitter: uniform over [0, min(max, min * 2^n)]
 * for the n-th failed attempt since the last login. */
static uint32_t
client_backoff(struct client *c)
{
	uint64_t cap = c->backoff_min;
	uint32_t i;

	for (i = 0; i < c->attempt && cap < c->backoff_max; i++)
		cap *= 2;
	if (cap > c->backoff_max)
		cap = c->backoff_max;
	if (c->attempt < UINT32_MAX)
		c->attempt++;
	return randombytes_uniform((uint32_t)cap + 1);
}

/* client_lost: there is no link; stop, or try again after a while. */
static void
client_lost(struct client *c, int err)
{
	uint32_t delay;

	if (c->stop_err != 0 || !c->reconnect) {
		if (c->stop_err != 0)
			err = c->stop_err;
		c->stop_err = 0;
		c->st = ST_CLOSED;
		client_reg_done(c, err != 0 ? err : TERN_ECLOSED);
		if (!c->closing)
			client_report(c, err, 0);
		return;
	}
	delay = client_backoff(c);
	c->st = ST_WAITING;
	uv_timer_start(&c->timer, client_timer_cb, delay, 0);
	client_report(c, err, delay);
}

static void
client_attempt(struct client *c)
{
	int r;

	if ((r = client_connect(c)) != 0)
		client_lost(c, r);
}

/* --- keepalive --------------------------------------------------------- */

static void
client_ka_arm(struct client *c)
{
	uint64_t now = uv_now(c->loop), due, dead;

	due = c->last_sent + c->keepalive;
	dead = c->last_recv + 2 * (uint64_t)c->keepalive;
	if (dead < due)
		due = dead;
	if (c->ob_paused && c->st == ST_ONLINE && c->ob_resume_at < due)
		due = c->ob_resume_at;
	uv_timer_start(&c->timer, client_timer_cb, due > now ? due - now : 0,
	    0);
}

static void
client_keepalive(struct client *c)
{
	uint64_t now = uv_now(c->loop);
	struct msg m = {.type = MSG_PING};
	int r;

	if (now >= c->last_recv + 2 * (uint64_t)c->keepalive) {
		/* A dead node may never read what is queued for it. */
		net_conn_abort(c->conn, TERN_ETIMEOUT);
		return;
	}
	if (c->ob_paused && now >= c->ob_resume_at && c->st == ST_ONLINE) {
		c->ob_paused = false;
		client_ob_flush(c);
		if (c->conn == NULL)
			return; /* the write failed: the link is gone */
	}
	if (now >= c->last_sent + c->keepalive) {
		m.u.ping.nonce = now;
		if ((r = client_write_msg(c, &m)) != 0) {
			client_drop(c, r);
			return;
		}
	}
	client_ka_arm(c);
}

static void
client_timer_cb(uv_timer_t *t)
{
	struct client *c = t->data;

	if (c->closing)
		return;
	if (c->st == ST_WAITING)
		client_attempt(c);
	else if ((c->st == ST_LOGIN || c->st == ST_ONLINE) && c->conn != NULL)
		client_keepalive(c);
}

/* --- the link's events ------------------------------------------------- */

/* client_net_open: the handshake is done; introduce ourselves. */
static void
client_net_open(struct net_conn *conn)
{
	struct client *c = client_of(conn);
	const uint8_t *rs;
	struct msg m = {0};
	int r;

	if (c->closing || c->conn != conn)
		return;
	c->conn_open = true;
	if (!c->has_node_key && (rs = chan_remote_key(&conn->chan)) != NULL) {
		/* Trust on first use: pinned for this client's lifetime;
		 * client_node_key lets the owner keep it. */
		memcpy(c->node_key, rs, NOISE_DHLEN);
		c->has_node_key = true;
	}
	c->last_sent = c->last_recv = uv_now(c->loop);
	c->login_req = client_req_next(c);
	m.req = c->login_req;
	if (c->reg_pending) {
		m.type = MSG_REGISTER;
		m.u.reg.user.p = c->user;
		m.u.reg.user.len = c->user_len;
		m.u.reg.invite.p = c->reg_invite;
		m.u.reg.invite.len = strlen(c->reg_invite);
		m.u.reg.device_name.p = c->reg_name;
		m.u.reg.device_name.len = strlen(c->reg_name);
	} else {
		m.type = MSG_LOGIN;
		m.u.login.user.p = c->user;
		m.u.login.user.len = c->user_len;
		m.u.login.device_id = c->device_id;
	}
	c->st = ST_LOGIN;
	if ((r = client_write_msg(c, &m)) != 0) {
		client_drop(c, r);
		return;
	}
	client_ka_arm(c);
}

/* client_login_ok: LOGIN_OK or REGISTERED for our LOGIN/REGISTER. */
static int
client_login_ok(struct client *c, const struct msg *m)
{
	uint8_t want = c->reg_pending ? MSG_REGISTERED : MSG_LOGIN_OK;

	if (c->st != ST_LOGIN || m->req != c->login_req)
		return 0; /* stray answer: nothing waits for it */
	if (m->type != want)
		return TERN_ETYPE;
	c->login_req = 0;
	c->st = ST_ONLINE;
	c->attempt = 0;
	chan_set_msg_cap(&c->conn->chan, MSG_MAX);
	if (m->type == MSG_REGISTERED) {
		c->device_id = m->u.registered.device_id;
		client_reg_done(c, 0);
		if (!client_is_online(c))
			return 0;
	}
	client_ob_flush(c);
	if (client_is_online(c))
		client_report(c, 0, 0);
	return 0;
}

/* client_login_refused: ERROR for our LOGIN/REGISTER. A refusal that a
 * retry can't change stops the client; others (ERATE, EBUSY, ...) only
 * end this link. Returns the code, which closes the link. */
static int
client_login_refused(struct client *c, int code)
{
	c->login_req = 0;
	if (c->reg_pending) {
		/* The device has no id to LOGIN with, and REGISTER is not
		 * repeated behind the owner's back. */
		c->stop_err = code;
		client_reg_done(c, code);
	} else if (code == TERN_EAUTH || code == TERN_EDENIED ||
	    code == TERN_ENOUSER) {
		c->stop_err = code;
	}
	return code;
}

/*
 * client_rate_wait: the node refused e for our send rate. e stays in the
 * outbox, unwritten, and nothing new is written until the wait is over:
 * a sender that waits for each SENT (tern send --lines) keeps its order.
 * Envelopes already written behind e may still be taken meanwhile; the
 * recipient orders by the sender's timestamps.
 */
static void
client_rate_wait(struct client *c, struct client_env *e)
{
	uint32_t w;

	e->req = 0;
	c->rate_tries++;
	w = c->rate_wait == 0 ? CLIENT_RATE_WAIT_MIN : c->rate_wait * 2;
	if (w > CLIENT_RATE_WAIT_MAX)
		w = CLIENT_RATE_WAIT_MAX;
	c->rate_wait = w;
	/* Half fixed, half random: senders limited together spread out. */
	c->ob_paused = true;
	c->ob_resume_at = uv_now(c->loop) + w / 2 + randombytes_uniform(
	    w / 2 + 1);
	client_ka_arm(c);
}

static int
client_on_error(struct client *c, const struct msg *m)
{
	int code = -(int)m->u.error.code;
	struct client_env *e, *prev = NULL;
	struct client_req *r;

	if (m->req == 0) {
		/* The node names the reason it is about to close. */
		c->peer_err = code;
		return 0;
	}
	if (c->st == ST_LOGIN && m->req == c->login_req)
		return client_login_refused(c, code);
	if ((r = client_req_take(c, m->req)) != NULL) {
		client_req_done(r, code, m);
		return 0;
	}
	for (e = c->ob_head; e != NULL; prev = e, e = e->next) {
		if (e->req == m->req) {
			if (code == TERN_ERATE && e->cls != MSG_CLASS_EPHEMERAL &&
			    c->st == ST_ONLINE &&
			    c->rate_tries < CLIENT_RATE_TRIES) {
				client_rate_wait(c, e);
				return 0;
			}
			client_ob_unlink(c, prev, e);
			client_env_done(c, e, code);
			return 0;
		}
	}
	return 0; /* an answer to nothing we wait for */
}

static int
client_on_sent(struct client *c, const struct msg *m)
{
	struct client_env *e, *prev = NULL;

	/* By id, not req: after a reconnect the node may answer a SEND it
	 * had already stored. Only envelopes written on this link count. */
	for (e = c->ob_head; e != NULL; prev = e, e = e->next) {
		if (e->req != 0 && sodium_memcmp(client_env_id(e),
		    m->u.sent.id, MSG_ID_LEN) == 0) {
			c->rate_wait = 0;
			c->rate_tries = 0;
			client_ob_unlink(c, prev, e);
			client_env_done(c, e, 0);
			return 0;
		}
	}
	return 0; /* a duplicate answer: already reported */
}

static int
client_on_answer(struct client *c, const struct msg *m)
{
	struct client_req *r;

	if ((r = client_req_take(c, m->req)) == NULL)
		return 0;
	client_req_done(r, m->type == r->want ? 0 : TERN_ETYPE, m);
	return 0;
}

/* client_acks_write: writes the gathered ACKs. They stay gathered only
 * while connected: the caller has checked c->conn. */
static int
client_acks_write(struct client *c)
{
	struct msg m = {.type = MSG_ACK};
	uint8_t buf[MSG_HDR_LEN + MSG_ID_LEN];
	size_t n;
	uint8_t i;
	int r;

	for (i = 0; i < c->ack_n; i++) {
		memcpy(m.u.ack.id, c->ack_ids[i], MSG_ID_LEN);
		if ((r = msg_encode(&m, buf, sizeof(buf), &n)) != 0 ||
		    (r = net_conn_send(c->conn, buf, n)) != 0) {
			c->ack_n = 0;
			(void)uv_timer_stop(&c->ack_timer);
			return r;
		}
	}
	c->ack_n = 0;
	(void)uv_timer_stop(&c->ack_timer);
	c->last_sent = uv_now(c->loop);
	return 0;
}

/* client_acks_forget: the link that would carry them is gone. The node
 * delivers those envelopes again on the next one. */
static void
client_acks_forget(struct client *c)
{
	c->ack_n = 0;
	(void)uv_timer_stop(&c->ack_timer);
}

static void
client_ack_timer_cb(uv_timer_t *t)
{
	struct client *c = t->data;
	int r;

	if (c->closing || c->ack_n == 0)
		return;
	if (!client_is_online(c)) {
		client_acks_forget(c);
		return;
	}
	if ((r = client_acks_write(c)) != 0)
		client_drop(c, r);
}

/* client_ack_id: gathers an ACK (SPEC.md 7.3): written when the delay
 * ends, when CLIENT_ACK_GATHER_MAX are waiting, or with the next thing we
 * write, whichever comes first. */
static int
client_ack_id(struct client *c, const uint8_t id[MSG_ID_LEN])
{
	struct msg m = {.type = MSG_ACK};

	if (c->ack_delay == 0) {
		memcpy(m.u.ack.id, id, MSG_ID_LEN);
		return client_write_msg(c, &m);
	}
	if (c->conn == NULL)
		return TERN_ECLOSED;
	memcpy(c->ack_ids[c->ack_n++], id, MSG_ID_LEN);
	if (c->ack_n == CLIENT_ACK_GATHER_MAX)
		return client_acks_write(c);
	if (c->ack_n == 1)
		(void)uv_timer_start(&c->ack_timer, client_ack_timer_cb,
		    c->ack_delay, 0);
	return 0;
}

/* client_bad_msg: a message that did not decode (SPEC 3.7). An unknown
 * type is answered and forgiven; anything else ends the link. */
static int
client_bad_msg(struct client *c, const uint8_t *p, size_t n, int err)
{
	uint8_t type;
	uint32_t req;

	if (msg_peek_header(p, n, &type, &req) != 0) {
		type = 0;
		req = 0;
	}
	if (type == MSG_ERROR)
		return err; /* an ERROR is never answered */
	client_send_error(c, req, err);
	return err == TERN_ETYPE ? 0 : err;
}

/* client_net_message: one message from the node. A nonzero result closes
 * the link with that error. */
static int
client_net_message(struct net_conn *conn, const uint8_t *p, size_t n)
{
	struct client *c = client_of(conn);
	struct msg m;
	int r;

	if (c->closing || c->conn != conn)
		return 0;
	c->last_recv = uv_now(c->loop);
	if ((r = msg_decode(p, n, &m)) != 0)
		return client_bad_msg(c, p, n, r);
	switch (m.type) {
	case MSG_ERROR:
		return client_on_error(c, &m);
	case MSG_PING: {
		struct msg pong = {.type = MSG_PONG, .req = m.req};

		pong.u.pong.nonce = m.u.ping.nonce;
		return client_write_msg(c, &pong);
	}
	case MSG_PONG:
		return client_on_answer(c, &m);
	case MSG_LOGIN_OK:
	case MSG_REGISTERED:
		return client_login_ok(c, &m);
	default:
		break;
	}
	/* The rest only makes sense once logged in. */
	if (c->st != ST_ONLINE) {
		client_send_error(c, m.req, TERN_ESTATE);
		return TERN_ESTATE;
	}
	switch (m.type) {
	case MSG_SENT:
		return client_on_sent(c, &m);
	case MSG_OK:
	case MSG_DEVICE_ADDED:
	case MSG_DEVICES:
	case MSG_PROFILE:
	case MSG_CONTACTS:
	case MSG_BUNDLE:
		return client_on_answer(c, &m);
	case MSG_KEYS_COUNT:
		if (m.req != 0)
			return client_on_answer(c, &m);
		/* A push: a bundle fetch left us few one-time prekeys. */
		if (c->cbs != NULL && c->cbs->keys_count != NULL)
			c->cbs->keys_count(c, &m.u.keys_count);
		return 0;
	case MSG_DELIVER:
		if (c->cbs != NULL && c->cbs->deliver != NULL)
			c->cbs->deliver(c, &m.u.deliver);
		if (c->auto_ack && client_is_online(c))
			return client_ack_id(c, m.u.deliver.id);
		return 0;
	case MSG_NOTICE:
		if (c->cbs != NULL && c->cbs->notice != NULL)
			c->cbs->notice(c, &m.u.notice);
		if (client_is_online(c))
			return client_ack_id(c, m.u.notice.notice_id);
		return 0;
	case MSG_PRESENCE:
		if (c->cbs != NULL && c->cbs->presence != NULL)
			c->cbs->presence(c, &m.u.presence);
		return 0;
	default:
		/* A client-to-node type: we don't serve it, as for an
		 * unknown type. */
		client_send_error(c, m.req, TERN_ETYPE);
		return 0;
	}
}

/*
 * client_net_error: the node's bytes were bad. Once open, say so before
 * the close. During the handshake nothing queued is worth sending: when
 * XX shows an unexpected node key, the chan has already queued our last
 * handshake message, which would hand our static key to that node.
 */
static void
client_net_error(struct net_conn *conn, int err)
{
	struct client *c = client_of(conn);

	if (c->conn != conn)
		return;
	if (c->conn_open)
		client_send_error(c, 0, err);
	else
		net_conn_abort(conn, err);
}

static void client_close_step(struct client *c);

/* client_net_closed: the link is gone (net frees conn after this). */
static void
client_net_closed(struct net_conn *conn, int err)
{
	struct client *c = client_of(conn);
	bool was_closing = c->closing;
	bool opened = c->conn_open;

	if (c->conn != conn)
		return;
	c->conn = NULL;
	c->conn_open = false;
	client_acks_forget(c);
	if (err == TERN_ECLOSED && c->peer_err != 0)
		err = c->peer_err;
	if (err == 0)
		err = TERN_ECLOSED;
	if (!c->closing)
		uv_timer_stop(&c->timer);
	if (c->st == ST_LOGIN && c->reg_pending) {
		/* REGISTER went out and its outcome is unknown. */
		c->stop_err = err;
	}
	c->st = ST_WAITING; /* until client_lost decides */
	/* Callbacks from here on may call client_close: c->conn is already
	 * NULL, so it won't wait for this conn. */
	client_reqs_fail(c, TERN_ECLOSED);
	client_ob_unwrite(c);
	if (c->stop_err != 0)
		client_reg_done(c, c->stop_err);
	if (c->closing) {
		if (was_closing)
			client_close_step(c);
		return;
	}
	if (!opened && err == TERN_EAUTH && c->stop_err == 0) {
		/* XX showed a key other than the pinned one. The owner
		 * decides whether the node's key may change. */
		c->stop_err = TERN_EKEY;
	}
	client_lost(c, err);
}

/* --- closing ----------------------------------------------------------- */

static void
client_free(struct client *c)
{
	sodium_memzero(c->s_priv, sizeof(c->s_priv));
	free(c->host);
	free(c->user);
	free(c->reg_invite);
	free(c->reg_name);
	free(c->own_nl);
	free(c);
}

/* client_finish: every handle is closed; report what never got an answer
 * and free the client. */
static void
client_finish(struct client *c)
{
	void (*cb)(void *) = c->close_cb;
	void *arg = c->close_arg;
	struct client_env *e;

	client_reqs_fail(c, TERN_ECLOSED);
	while ((e = c->ob_head) != NULL) {
		client_ob_unlink(c, NULL, e);
		client_env_done(c, e, TERN_ECLOSED);
	}
	client_reg_done(c, TERN_ECLOSED);
	c->st = ST_CLOSED;
	client_report(c, 0, 0);
	client_free(c);
	if (cb != NULL)
		cb(arg);
}

static void
client_nl_closed(void *arg)
{
	client_finish(arg);
}

static void
client_close_step(struct client *c)
{
	if (--c->close_pending > 0)
		return;
	if (c->own_nl != NULL)
		net_loop_close(c->own_nl, client_nl_closed, c);
	else
		client_finish(c);
}

static void
client_timer_closed(uv_handle_t *h)
{
	client_close_step(h->data);
}

void
client_close(struct client *c, void (*cb)(void *), void *arg)
{
	if (c->closing)
		return;
	c->closing = true;
	c->close_cb = cb;
	c->close_arg = arg;
	c->close_pending = 2;
	uv_close((uv_handle_t *)&c->timer, client_timer_closed);
	uv_close((uv_handle_t *)&c->ack_timer, client_timer_closed);
	if (c->conn != NULL) {
		/* Gathered ACKs go with what is queued, which the close
		 * flushes. */
		if (c->ack_n > 0 && c->conn_open && c->st == ST_ONLINE &&
		    client_acks_write(c) != 0)
			c->ack_n = 0;
		c->close_pending++;
		net_conn_close(c->conn, 0);
	}
}

/* --- public API -------------------------------------------------------- */

void
client_config_init(struct client_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->port = CLIENT_PORT_DEFAULT;
	cfg->reconnect = true;
	cfg->ack_delay_ms = CLIENT_ACK_DELAY_DEFAULT;
}

static int
client_host_check(const char *host, uint16_t port)
{
	struct sockaddr_in a4;
	struct sockaddr_in6 a6;

	if (uv_ip4_addr(host, port, &a4) == 0 ||
	    uv_ip6_addr(host, port, &a6) == 0)
		return 0;
	return TERN_EINVAL;
}

int
client_new(uv_loop_t *loop, const struct client_config *cfg,
    const struct client_cbs *cbs, void *data, struct client **out)
{
	struct client *c;
	size_t ulen;
	int r;

	if (loop == NULL || cfg == NULL || out == NULL || cfg->host == NULL ||
	    cfg->user == NULL || cfg->device_key == NULL || cfg->port == 0)
		return TERN_EINVAL;
	if (client_host_check(cfg->host, cfg->port) != 0)
		return TERN_EINVAL;
	ulen = strlen(cfg->user);
	if (ulen > IDENT_ADDR_MAX || ident_addr_check(cfg->user, ulen) != 0)
		return TERN_EINVAL;
	if (cfg->nl != NULL && cfg->nl->loop != loop)
		return TERN_EINVAL;
	if (cfg->ack_delay_ms > CLIENT_ACK_DELAY_MAX)
		return TERN_EINVAL;
	/* Idempotent; seeds the generator the backoff jitter draws from. */
	if (sodium_init() < 0)
		return TERN_EIO;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return TERN_ENOMEM;
	c->loop = loop;
	c->cbs = cbs;
	c->data = data;
	c->port = cfg->port;
	c->user_len = ulen;
	c->device_id = cfg->device_id;
	memcpy(c->s_priv, cfg->device_key, NOISE_DHLEN);
	if (noise_public_key(c->s_priv, c->s_pub) != 0) {
		sodium_memzero(c->s_priv, sizeof(c->s_priv));
		free(c);
		return TERN_EINVAL;
	}
	if (cfg->node_key != NULL) {
		memcpy(c->node_key, cfg->node_key, NOISE_DHLEN);
		c->has_node_key = true;
	}
	c->reconnect = cfg->reconnect;
	c->auto_ack = cfg->auto_ack;
	c->ack_delay = cfg->ack_delay_ms;
	c->backoff_min = cfg->backoff_min_ms ? cfg->backoff_min_ms :
	    CLIENT_BACKOFF_MIN_DEFAULT;
	c->backoff_max = cfg->backoff_max_ms ? cfg->backoff_max_ms :
	    CLIENT_BACKOFF_MAX_DEFAULT;
	if (c->backoff_max > CLIENT_BACKOFF_CEIL)
		c->backoff_max = CLIENT_BACKOFF_CEIL;
	if (c->backoff_min > c->backoff_max)
		c->backoff_min = c->backoff_max;
	c->keepalive = cfg->keepalive_ms ? cfg->keepalive_ms :
	    CLIENT_KEEPALIVE_DEFAULT;
	c->outbox_max = cfg->outbox_max ? cfg->outbox_max :
	    CLIENT_OUTBOX_MAX_DEFAULT;
	c->outbox_max_bytes = cfg->outbox_max_bytes ? cfg->outbox_max_bytes :
	    CLIENT_OUTBOX_BYTES_DEFAULT;
	c->reported = CLIENT_IDLE;
	c->st = ST_IDLE;
	if ((c->host = client_strdup(cfg->host)) == NULL ||
	    (c->user = client_strdup(cfg->user)) == NULL) {
		client_free(c);
		return TERN_ENOMEM;
	}
	if (cfg->nl != NULL) {
		c->nl = cfg->nl;
	} else {
		if ((c->own_nl = malloc(sizeof(*c->own_nl))) == NULL) {
			client_free(c);
			return TERN_ENOMEM;
		}
		/* net_loop_init fails only before it opens a handle. */
		if ((r = net_loop_init(c->own_nl, loop, NULL)) != 0) {
			client_free(c);
			return r;
		}
		c->nl = c->own_nl;
	}
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	uv_timer_init(loop, &c->ack_timer);
	c->ack_timer.data = c;
	*out = c;
	return 0;
}

int
client_start(struct client *c)
{
	if (c->closing || (c->st != ST_IDLE && c->st != ST_CLOSED))
		return TERN_ESTATE;
	if (c->device_id == 0)
		return TERN_ESTATE;
	c->attempt = 0;
	c->stop_err = 0;
	return client_connect(c);
}

int
client_register(struct client *c, const char *invite,
    const char *device_name, client_id_cb cb, void *arg)
{
	struct msg m = {.type = MSG_REGISTER};
	uint8_t buf[CLIENT_REQ_BUF];
	size_t n;
	int r;

	if (c->closing || (c->st != ST_IDLE && c->st != ST_CLOSED) ||
	    c->device_id != 0 || c->reg_pending)
		return TERN_ESTATE;
	if (invite == NULL)
		invite = "";
	if (device_name == NULL)
		return TERN_EINVAL;
	/* Refuse now what the encoder would refuse at the open. */
	m.u.reg.user.p = c->user;
	m.u.reg.user.len = c->user_len;
	m.u.reg.invite.p = invite;
	m.u.reg.invite.len = strlen(invite);
	m.u.reg.device_name.p = device_name;
	m.u.reg.device_name.len = strlen(device_name);
	if ((r = msg_encode(&m, buf, sizeof(buf), &n)) != 0)
		return r;
	if ((c->reg_invite = client_strdup(invite)) == NULL ||
	    (c->reg_name = client_strdup(device_name)) == NULL) {
		free(c->reg_invite);
		c->reg_invite = NULL;
		return TERN_ENOMEM;
	}
	c->reg_pending = true;
	c->reg_cb = cb;
	c->reg_arg = arg;
	c->attempt = 0;
	c->stop_err = 0;
	if ((r = client_connect(c)) != 0) {
		/* No callback after a synchronous failure. */
		c->reg_cb = NULL;
		client_reg_done(c, r);
	}
	return r;
}

int
client_send(struct client *c, const uint8_t id[MSG_ID_LEN], const char *to,
    uint32_t to_device, uint8_t cls, uint64_t ts_ms, const uint8_t *payload,
    size_t len)
{
	struct msg m = {.type = MSG_SEND};
	struct client_env *e;
	size_t tolen, n;
	int r;

	if (c->closing)
		return TERN_ESTATE;
	if (id == NULL || to == NULL || (payload == NULL && len > 0) ||
	    to_device == 0 || cls < MSG_CLASS_MESSAGE ||
	    cls > MSG_CLASS_EPHEMERAL)
		return TERN_EINVAL;
	tolen = strlen(to);
	if (tolen > IDENT_ADDR_MAX || ident_addr_check(to, tolen) != 0)
		return TERN_EFIELD;
	if (len > MSG_PAYLOAD_MAX)
		return TERN_ETOOBIG;
	if (cls == MSG_CLASS_EPHEMERAL && c->st != ST_CONNECTING &&
	    c->st != ST_LOGIN && c->st != ST_ONLINE)
		return TERN_ECLOSED;
	if (c->ob_count >= c->outbox_max)
		return TERN_EBUSY;
	for (e = c->ob_head; e != NULL; e = e->next)
		if (memcmp(client_env_id(e), id, MSG_ID_LEN) == 0)
			return TERN_EEXIST;
	memcpy(m.u.send.id, id, MSG_ID_LEN);
	m.u.send.to.p = to;
	m.u.send.to.len = tolen;
	m.u.send.to_device = to_device;
	m.u.send.class = cls;
	m.u.send.timestamp_ms = ts_ms;
	m.u.send.payload.p = payload;
	m.u.send.payload.len = len;
	if ((n = msg_encoded_size(&m)) == 0)
		return TERN_EINVAL;
	if (c->ob_bytes + n > c->outbox_max_bytes)
		return TERN_EBUSY;
	if ((e = malloc(sizeof(*e) + n)) == NULL)
		return TERN_ENOMEM;
	if ((r = msg_encode(&m, e->wire, n, &n)) != 0) {
		free(e);
		return r;
	}
	e->next = NULL;
	e->req = 0;
	e->len = (uint32_t)n;
	e->cls = cls;
	if (c->ob_tail != NULL)
		c->ob_tail->next = e;
	else
		c->ob_head = e;
	c->ob_tail = e;
	c->ob_count++;
	c->ob_bytes += n;
	if (client_is_online(c) && (r = client_env_write(c, e)) != 0) {
		/* It stays in the outbox for the next link. */
		e->req = 0;
		client_drop(c, r);
	}
	return 0;
}

void
client_envelope_id(uint8_t id[MSG_ID_LEN])
{
	struct timespec ts;
	uint64_t ms = 0;

	if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && ts.tv_sec > 0)
		ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	/* 48 bits of milliseconds last until the year 10889. */
	for (int i = 0; i < 6; i++)
		id[i] = (uint8_t)(ms >> (40 - 8 * i));
	randombytes_buf(id + 6, MSG_ID_LEN - 6);
}

int
client_ack(struct client *c, const uint8_t id[MSG_ID_LEN])
{
	int r;

	if (!client_is_online(c))
		return TERN_ECLOSED;
	if ((r = client_ack_id(c, id)) != 0)
		client_drop(c, r);
	return r;
}

int
client_request(struct client *c, struct msg *m, client_resp_cb cb,
    void *arg)
{
	struct client_req *r;
	uint8_t buf[CLIENT_REQ_BUF];
	size_t n;
	int err;

	if (!client_is_online(c))
		return TERN_ESTATE;
	if (m == NULL || client_answer_type(m->type) == 0)
		return TERN_EINVAL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return TERN_ENOMEM;
	r->req = m->req = client_req_next(c);
	r->want = client_answer_type(m->type);
	r->cb = cb;
	r->arg = arg;
	if ((err = msg_encode(m, buf, sizeof(buf), &n)) != 0) {
		free(r);
		return err;
	}
	if ((err = client_write(c, buf, n)) != 0) {
		free(r);
		client_drop(c, err);
		return err;
	}
	r->next = c->reqs;
	c->reqs = r;
	return 0;
}

static void
client_device_added(void *arg, int status, const struct msg *resp)
{
	struct client_id_req *ir = arg;
	uint32_t id = 0;

	if (status == 0)
		id = resp->u.device_added.device_id;
	if (ir->cb != NULL)
		ir->cb(ir->arg, status, id);
	free(ir);
}

int
client_device_add(struct client *c, const uint8_t key[NOISE_DHLEN],
    const char *device_name, client_id_cb cb, void *arg)
{
	struct msg m = {.type = MSG_DEVICE_ADD};
	struct client_id_req *ir;
	int r;

	if (key == NULL || device_name == NULL)
		return TERN_EINVAL;
	memcpy(m.u.device_add.new_device_key, key, NOISE_DHLEN);
	m.u.device_add.device_name.p = device_name;
	m.u.device_add.device_name.len = strlen(device_name);
	if ((ir = malloc(sizeof(*ir))) == NULL)
		return TERN_ENOMEM;
	ir->cb = cb;
	ir->arg = arg;
	if ((r = client_request(c, &m, client_device_added, ir)) != 0)
		free(ir);
	return r;
}

void *
client_data(const struct client *c)
{
	return c->data;
}

enum client_state
client_state(const struct client *c)
{
	return client_public(c->st);
}

uint32_t
client_device_id(const struct client *c)
{
	return c->device_id;
}

size_t
client_outbox_len(const struct client *c)
{
	return c->ob_count;
}

int
client_node_key(const struct client *c, uint8_t out[NOISE_DHLEN])
{
	if (!c->has_node_key)
		return TERN_ENOTFOUND;
	memcpy(out, c->node_key, NOISE_DHLEN);
	return 0;
}
