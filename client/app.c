/*
 * app.c: the messaging core of one device (app.h, SPEC.md section 12).
 *
 * Three flows:
 *   - sending: a FIFO of send operations; the head one learns the device
 *     lists it needs (ours and the peer's), fetches bundles for devices
 *     without a session, then encrypts for every device, commits the new
 *     session states with the history row in one transaction, and only
 *     then hands the envelopes to the client library (a ciphertext must
 *     never leave before the ratchet step that made it is durable, or a
 *     crash would reuse a message key);
 *   - receiving: every DELIVER of one read burst is handled inside one
 *     IMMEDIATE transaction; a zero-delay timer commits it and only then
 *     acknowledges the envelopes and sends the receipts they called for;
 *   - keys: after each login, KEYS_STATUS, then KEYS_PUT when the node
 *     holds fewer than APP_PREKEYS_LOW one-time prekeys or an older signed
 *     prekey than ours.
 */
#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>
#include <sqlite3.h>

#include "buf.h"
#include "client.h"
#include "ident.h"
#include "noise.h"
#include "pt.h"
#include "sig.h"

#define RCPT_DELIVERED PT_RCPT_DELIVERED
#define RCPT_READ PT_RCPT_READ
#define RCPT_IDS_MAX PT_RCPT_IDS_MAX

#define DEVCACHE_MS (5 * 60 * 1000) /* device lists are refetched after */
/* A device that stays connected for days still rotates its signed
 * prekey and tops up its prekeys: the check a login makes, every few
 * hours. */
#define APP_KEYS_CHECK_MS (6u * 3600 * 1000)
#define ENV_MAX (2 * MSG_DEVICES_MAX) /* envelopes of one operation */
#define CT_MAX (MSG_PAYLOAD_MAX)

enum op_kind { OP_TEXT, OP_RECEIPT, OP_TYPING };
enum op_step { STEP_PEER_DEVS, STEP_OWN_DEVS, STEP_BUNDLES, STEP_SEND,
	STEP_WAIT };

struct env {
	uint8_t id[MSG_ID_LEN];
	uint32_t dev;
	bool to_peer;              /* else one of our own devices */
	bool answered;
};

struct op {
	struct app *a;
	int kind;                  /* enum op_kind */
	int step;                  /* enum op_step */
	char to[IDENT_ADDR_MAX + 1];
	uint8_t msg_id[MSG_ID_LEN];
	uint64_t ts;
	uint8_t *pt;               /* plaintext for the peer's devices */
	size_t ptlen;
	uint8_t *sync;             /* plaintext for our other devices */
	size_t synclen;
	bool fetch;                /* may fetch device lists and bundles */
	uint32_t peer_devs[MSG_DEVICES_MAX];
	size_t npeer;
	uint32_t own_devs[MSG_DEVICES_MAX];
	size_t nown;
	size_t bi;                 /* next peer device to check for a bundle */
	bool peer_done;            /* the peer's bundles are fetched */
	size_t own_bi;             /* next own device to check for a bundle */
	bool asking;               /* a request for this op is out: pumping
	                              again must not send a second one */
	struct env envs[ENV_MAX];
	size_t nenv, nanswered;
	int peer_ok;               /* envelopes the node took for the peer */
	int first_err;
	app_send_cb cb;
	void *arg;
	struct op *next;
};

struct devcache {
	char user[IDENT_ADDR_MAX + 1];
	uint32_t ids[MSG_DEVICES_MAX];
	size_t n;
	uint64_t at;
	struct devcache *next;
};

/* A receipt waiting for the commit of the burst that called for it. */
struct rcpt {
	char to[IDENT_ADDR_MAX + 1];
	int what;
	uint8_t ids[RCPT_IDS_MAX][MSG_ID_LEN];
	size_t n;
	struct rcpt *next;
};

/* Something to tell the owner once its transaction is committed. */
enum ev_kind { EV_MESSAGE, EV_RECEIPT, EV_TYPING, EV_WARN };
struct ev {
	int kind;
	uint8_t id[MSG_ID_LEN];
	char peer[IDENT_ADDR_MAX + 1];
	int val;
	char text[512];
	struct ev *next;
};

struct app {
	uv_loop_t *loop;
	sqlite3 *db;
	struct sig *sig;
	struct client *c;
	const struct app_cbs *cbs;
	void *data;

	char user[IDENT_ADDR_MAX + 1];
	uint32_t device_id;
	char host[64];
	uint16_t port;
	uint8_t node_key[NOISE_DHLEN];
	bool have_node_key;
	uint8_t noise_priv[NOISE_DHLEN];
	bool have_noise;

	sqlite3_stmt *st_kv_get, *st_kv_set, *st_seen_get, *st_seen_put,
	    *st_msg_put, *st_msg_get, *st_msg_state, *st_msg_upd,
	    *st_held_put, *st_held_list, *st_held_del, *st_unread,
	    *st_mark_read, *st_hist, *st_hist_all, *st_msg_sent;

	/* start / register */
	app_done_cb start_cb;
	void *start_arg;
	bool registering;
	bool reconnect;
	bool ready;                /* keys checked after this login */
	char reg_invite[MSG_INVITE_MAX + 1];

	/* receiving */
	bool in_txn;
	uint8_t (*acks)[MSG_ID_LEN];
	size_t nacks, capacks;
	uv_timer_t flush;
	bool flush_armed;
	uv_timer_t keys_timer;      /* a long-lived session checks its keys */
	struct rcpt *rcpts;
	struct ev *evs, **evs_tail;

	/* sending */
	struct op *ops, **ops_tail; /* FIFO; the head is being prepared */
	struct op *waiting;         /* sent, waiting for SENT */
	struct devcache *devs;

	uint64_t activity;          /* envelopes seen */
	uint32_t prekeys;           /* one-time prekeys to keep on the node */

	/* presence */
	void (*pres_cb)(void *, const struct msg_presence *);
	void *pres_arg;

	bool closing;
	bool client_closing;
	int handles;
	void (*close_cb)(void *);
	void *close_arg;
};

static void app_pump(struct app *a);

/* has_session: 1 only for a session known to exist (errors: no). */
#define HAS_SESSION(a, u, d) (sig_has_session((a)->sig, (u), (d)) == 1)
static void app_op_finish(struct op *op, int status);
static void app_keys_check(struct app *a);
static void app_keys_timer_cb(uv_timer_t *t);

/* --- small helpers ----------------------------------------------------- */

static uint64_t
app_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
app_copy(char *dst, size_t cap, const char *p, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, p, len);
	dst[len] = '\0';
}

static void
app_ev(struct app *a, int kind, const uint8_t *id, const char *peer,
    int val, const char *text)
{
	struct ev *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return; /* an event lost to OOM; the history still has it */
	e->kind = kind;
	if (id != NULL)
		memcpy(e->id, id, MSG_ID_LEN);
	if (peer != NULL)
		app_copy(e->peer, sizeof(e->peer), peer, strlen(peer));
	e->val = val;
	if (text != NULL)
		app_copy(e->text, sizeof(e->text), text, strlen(text));
	*a->evs_tail = e;
	a->evs_tail = &e->next;
}

static void
app_warn(struct app *a, int code, const char *peer, const char *text)
{
	app_ev(a, EV_WARN, NULL, peer, code, text);
}

/* --- database ---------------------------------------------------------- */

static const char app_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS app_kv(k TEXT PRIMARY KEY, v BLOB);"
    "CREATE TABLE IF NOT EXISTS app_msg("
    " id BLOB PRIMARY KEY, peer TEXT NOT NULL, sender TEXT NOT NULL,"
    " sender_dev INTEGER NOT NULL, outgoing INTEGER NOT NULL,"
    " sent_ms INTEGER NOT NULL, recv_ms INTEGER NOT NULL,"
    " text TEXT NOT NULL, state INTEGER NOT NULL,"
    " shown INTEGER NOT NULL DEFAULT 0,"
    " seq INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS app_msg_peer ON app_msg(peer, seq);"
    "CREATE TABLE IF NOT EXISTS app_seen(id BLOB PRIMARY KEY,"
    " at INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS app_held(id BLOB PRIMARY KEY,"
    " sender TEXT NOT NULL, dev INTEGER NOT NULL, cls INTEGER NOT NULL,"
    " sent_ms INTEGER NOT NULL, recv_ms INTEGER NOT NULL,"
    " payload BLOB NOT NULL);"
    /* Full-text index of the history (external content: the text is
     * stored once, in app_msg). History rows are never updated in
     * their text nor deleted yet; the trigger keeps inserts indexed. */
    "CREATE VIRTUAL TABLE IF NOT EXISTS app_fts USING fts5(text,"
    " content='app_msg', content_rowid='rowid');"
    "CREATE TRIGGER IF NOT EXISTS app_fts_ins AFTER INSERT ON app_msg"
    " BEGIN INSERT INTO app_fts(rowid, text) VALUES (new.rowid, new.text);"
    " END;";

static int
app_prep(struct app *a, sqlite3_stmt **st, const char *sql)
{
	return sqlite3_prepare_v3(a->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
	    st, NULL) == SQLITE_OK ? 0 : TERN_EDB;
}

static int
app_prepare_all(struct app *a)
{
	struct {
		sqlite3_stmt **st;
		const char *sql;
	} t[] = {
		{&a->st_kv_get, "SELECT v FROM app_kv WHERE k=?1"},
		{&a->st_kv_set, "INSERT OR REPLACE INTO app_kv(k,v) "
		    "VALUES(?1,?2)"},
		{&a->st_seen_get, "SELECT 1 FROM app_seen WHERE id=?1"},
		{&a->st_seen_put, "INSERT OR IGNORE INTO app_seen(id,at) "
		    "VALUES(?1,?2)"},
		{&a->st_msg_put, "INSERT OR IGNORE INTO app_msg(id,peer,"
		    "sender,sender_dev,outgoing,sent_ms,recv_ms,text,state,"
		    "shown,seq) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,"
		    "(SELECT IFNULL(MAX(seq),0)+1 FROM app_msg))"},
		{&a->st_msg_get, "SELECT id,peer,sender,sender_dev,outgoing,"
		    "sent_ms,recv_ms,text,state FROM app_msg WHERE id=?1"},
		{&a->st_msg_state, "SELECT state FROM app_msg WHERE id=?1"},
		{&a->st_msg_upd, "UPDATE app_msg SET state=?2 WHERE id=?1 "
		    "AND outgoing=1 AND peer=?3 AND state<?2 AND state<>4"},
		{&a->st_held_put, "INSERT OR IGNORE INTO app_held(id,sender,"
		    "dev,cls,sent_ms,recv_ms,payload) VALUES(?1,?2,?3,?4,?5,"
		    "?6,?7)"},
		{&a->st_held_list, "SELECT id,dev,cls,sent_ms,recv_ms,payload "
		    "FROM app_held WHERE sender=?1 ORDER BY rowid"},
		{&a->st_held_del, "DELETE FROM app_held WHERE id=?1"},
		{&a->st_unread, "SELECT id FROM app_msg WHERE peer=?1 AND "
		    "outgoing=0 AND state=2 ORDER BY seq LIMIT 256"},
		{&a->st_mark_read, "UPDATE app_msg SET state=3 WHERE id=?1 "
		    "AND outgoing=0"},
		{&a->st_hist, "SELECT id,peer,sender,sender_dev,outgoing,"
		    "sent_ms,recv_ms,text,state FROM (SELECT * FROM app_msg "
		    "WHERE peer=?1 ORDER BY seq DESC LIMIT ?2) ORDER BY seq"},
		{&a->st_hist_all, "SELECT id,peer,sender,sender_dev,outgoing,"
		    "sent_ms,recv_ms,text,state FROM (SELECT * FROM app_msg "
		    "ORDER BY seq DESC LIMIT ?1) ORDER BY seq"},
		{&a->st_msg_sent, "UPDATE app_msg SET state=?2 WHERE id=?1 AND "
		    "state<?2"},
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (app_prep(a, t[i].st, t[i].sql) != 0)
			return TERN_EDB;
	return 0;
}

/* app_finalize_all: our prepared statements (not sqlite3_next_stmt:
 * that would also take those FTS5 owns). */
static void
app_finalize_all(struct app *a)
{
	sqlite3_stmt **all[] = {
		&a->st_kv_get, &a->st_kv_set, &a->st_seen_get, &a->st_seen_put,
		&a->st_msg_put, &a->st_msg_get, &a->st_msg_state,
		&a->st_msg_upd, &a->st_held_put, &a->st_held_list,
		&a->st_held_del, &a->st_unread, &a->st_mark_read, &a->st_hist,
		&a->st_hist_all, &a->st_msg_sent,
	};
	size_t i;

	for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		sqlite3_finalize(*all[i]);
		*all[i] = NULL;
	}
}

static int
app_exec(struct app *a, const char *sql)
{
	return sqlite3_exec(a->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 :
	    TERN_EDB;
}

static int
app_step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	if (rc == SQLITE_DONE || rc == SQLITE_ROW)
		return 0;
	return rc == SQLITE_FULL ? TERN_EDISK : TERN_EDB;
}

static int
app_kv_set(struct app *a, const char *k, const void *v, size_t len)
{
	sqlite3_bind_text(a->st_kv_set, 1, k, -1, SQLITE_STATIC);
	sqlite3_bind_blob(a->st_kv_set, 2, v, (int)len, SQLITE_STATIC);
	return app_step_done(a->st_kv_set);
}

/* app_kv_get: copies the value into out (cap bytes), its length to *len;
 * TERN_ENOTFOUND. */
static int
app_kv_get(struct app *a, const char *k, void *out, size_t cap,
    size_t *len)
{
	int rc, r = TERN_ENOTFOUND;

	sqlite3_bind_text(a->st_kv_get, 1, k, -1, SQLITE_STATIC);
	rc = sqlite3_step(a->st_kv_get);
	if (rc == SQLITE_ROW) {
		size_t n = (size_t)sqlite3_column_bytes(a->st_kv_get, 0);
		const void *p = sqlite3_column_blob(a->st_kv_get, 0);
		if (n > cap) {
			r = TERN_ETOOBIG;
		} else {
			if (n > 0)
				memcpy(out, p, n);
			*len = n;
			r = 0;
		}
	} else if (rc != SQLITE_DONE) {
		r = TERN_EDB;
	}
	sqlite3_reset(a->st_kv_get);
	return r;
}

static void app_flush_now(struct app *a);
static void app_flush_cb(uv_timer_t *t);
static int app_receipt(struct app *a, const char *to, int what,
    const uint8_t (*ids)[MSG_ID_LEN], size_t n, bool sync_own,
    app_send_cb cb, void *arg);

/* app_begin: every change is one IMMEDIATE transaction. A receive batch
 * still open is committed (and its envelopes acknowledged) first: SQLite
 * has one transaction per connection. */
static int
app_begin(struct app *a)
{
	if (a->in_txn) {
		app_flush_now(a);
		if (!a->flush_armed) {
			/* Its events are told from the loop, later. */
			a->flush_armed = true;
			(void)uv_timer_start(&a->flush, app_flush_cb, 0, 0);
		}
	}
	return app_exec(a, "BEGIN IMMEDIATE");
}

static int
app_commit(struct app *a)
{
	if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return 0;
	(void)sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
	return sqlite3_errcode(a->db) == SQLITE_FULL ? TERN_EDISK : TERN_EDB;
}

static void
app_rollback(struct app *a)
{
	(void)sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
}

static int
app_load_account(struct app *a)
{
	size_t n;
	uint8_t v[8];
	int r;

	r = app_kv_get(a, "user", a->user, sizeof(a->user) - 1, &n);
	if (r == TERN_ENOTFOUND)
		return 0;
	if (r != 0)
		return r;
	a->user[n] = '\0';
	/* No device id yet: a device being linked (app_link_key). */
	r = app_kv_get(a, "device_id", v, 4, &n);
	if (r == 0 && n == 4)
		a->device_id = buf_load_be32(v);
	else if (r != TERN_ENOTFOUND)
		return r != 0 ? r : TERN_EDB;
	if ((r = app_kv_get(a, "host", a->host, sizeof(a->host) - 1,
	    &n)) != 0)
		return r;
	a->host[n] = '\0';
	if ((r = app_kv_get(a, "port", v, 2, &n)) != 0 || n != 2)
		return r != 0 ? r : TERN_EDB;
	a->port = buf_load_be16(v);
	if (app_kv_get(a, "node_key", a->node_key, NOISE_DHLEN, &n) == 0 &&
	    n == NOISE_DHLEN)
		a->have_node_key = true;
	if ((r = app_kv_get(a, "noise_key", a->noise_priv, NOISE_DHLEN,
	    &n)) != 0 || n != NOISE_DHLEN)
		return r != 0 ? r : TERN_EDB;
	a->have_noise = true;
	return 0;
}

/* --- open / close ------------------------------------------------------ */

int
app_open(uv_loop_t *loop, const char *dir, const struct app_cbs *cbs,
    void *data, struct app **out)
{
	char path[APP_PROFILE_PATH];
	struct app *a;
	int r;

	*out = NULL;
	if (strlen(dir) + 16 > sizeof(path))
		return TERN_EINVAL;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return TERN_EIO;
	if (sodium_init() < 0)
		return TERN_ENOMEM;
	snprintf(path, sizeof(path), "%s/tern.db", dir);
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return TERN_ENOMEM;
	a->loop = loop;
	a->cbs = cbs;
	a->data = data;
	a->evs_tail = &a->evs;
	a->ops_tail = &a->ops;
	a->prekeys = APP_PREKEYS_TARGET;
	if (sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
		r = TERN_EIO;
		goto fail;
	}
	/* The profile holds private keys: owner only. */
	(void)chmod(path, 0600);
	sqlite3_busy_timeout(a->db, 10000);
	{
		/* A profile from before the full-text index gets it built
		 * from its history once. */
		int had = app_exec(a, "SELECT 1 FROM app_fts LIMIT 0") == 0;
		if ((r = app_exec(a, app_schema)) != 0)
			goto fail;
		if (!had && (r = app_exec(a, "INSERT INTO app_fts(app_fts) "
		    "VALUES('rebuild')")) != 0)
			goto fail;
	}
	if ((r = app_exec(a, app_schema)) != 0 ||
	    (r = app_prepare_all(a)) != 0 ||
	    (r = sig_open(a->db, &a->sig)) != 0 ||
	    (r = app_load_account(a)) != 0)
		goto fail;
	if (uv_timer_init(loop, &a->flush) != 0) {
		r = TERN_EIO;
		goto fail;
	}
	if (uv_timer_init(loop, &a->keys_timer) != 0) {
		uv_close((uv_handle_t *)&a->flush, NULL);
		r = TERN_EIO;
		goto fail;
	}
	a->flush.data = a;
	a->keys_timer.data = a;
	/* Not what keeps a loop alive. */
	uv_unref((uv_handle_t *)&a->keys_timer);
	a->handles = 2;
	*out = a;
	return 0;
fail:
	sig_close(a->sig);
	if (a->db != NULL) {
		app_finalize_all(a);
		sqlite3_close(a->db);
	}
	free(a);
	return r;
}

void *
app_data(const struct app *a)
{
	return a->data;
}

int
app_registered(const struct app *a)
{
	return a->device_id != 0;
}

const char *
app_user(const struct app *a)
{
	return a->user;
}

uint32_t
app_device_id(const struct app *a)
{
	return a->device_id;
}

static void
app_free(struct app *a)
{
	struct devcache *d;
	struct rcpt *rc;
	struct ev *e;

	while ((d = a->devs) != NULL) {
		a->devs = d->next;
		free(d);
	}
	while ((rc = a->rcpts) != NULL) {
		a->rcpts = rc->next;
		free(rc);
	}
	while ((e = a->evs) != NULL) {
		a->evs = e->next;
		free(e);
	}
	free(a->acks);
	sig_close(a->sig);
	app_finalize_all(a);
	if (sqlite3_close(a->db) != SQLITE_OK)
		(void)sqlite3_close_v2(a->db); /* a statement left open: the
		                                  handle goes with it */
	sodium_memzero(a->noise_priv, sizeof(a->noise_priv));
	if (a->close_cb != NULL)
		a->close_cb(a->close_arg);
	free(a);
}

static void
app_handle_gone(uv_handle_t *h)
{
	struct app *a = h->data;

	if (--a->handles == 0)
		app_free(a);
}

static void
app_client_gone(void *arg)
{
	struct app *a = arg;

	a->c = NULL;
	a->client_closing = false;
	if (--a->handles == 0)
		app_free(a);
}

/* app_client_close: closes the client once; it is forgotten when its
 * close callback runs. */
static void
app_client_close(struct app *a)
{
	if (a->c == NULL || a->client_closing)
		return;
	a->client_closing = true;
	a->handles++;
	client_close(a->c, app_client_gone, a);
}

static void
app_fail_ops(struct app *a, int err)
{
	struct op *op;

	while ((op = a->ops) != NULL) {
		a->ops = op->next;
		if (a->ops == NULL)
			a->ops_tail = &a->ops;
		app_op_finish(op, err);
	}
	while ((op = a->waiting) != NULL) {
		a->waiting = op->next;
		app_op_finish(op, err);
	}
}

void
app_close(struct app *a, void (*cb)(void *), void *arg)
{
	if (a->closing)
		return;
	a->closing = true;
	a->close_cb = cb;
	a->close_arg = arg;
	if (a->in_txn) {
		/* Not acknowledged: the node delivers them again. */
		app_rollback(a);
		a->in_txn = false;
		a->nacks = 0;
	}
	app_fail_ops(a, TERN_ECLOSED);
	if (a->start_cb != NULL) {
		app_done_cb cb2 = a->start_cb;
		a->start_cb = NULL;
		cb2(a->start_arg, TERN_ECLOSED);
	}
	if (a->c != NULL) {
		app_client_close(a);
	}
	uv_close((uv_handle_t *)&a->flush, app_handle_gone);
	uv_close((uv_handle_t *)&a->keys_timer, app_handle_gone);
}

/* --- events ------------------------------------------------------------ */

static int
app_row_msg(sqlite3_stmt *st, struct app_msg *m)
{
	const void *id = sqlite3_column_blob(st, 0);

	if (id == NULL || sqlite3_column_bytes(st, 0) != MSG_ID_LEN)
		return TERN_EDB;
	memcpy(m->id, id, MSG_ID_LEN);
	m->peer = (const char *)sqlite3_column_text(st, 1);
	m->from = (const char *)sqlite3_column_text(st, 2);
	m->from_device = (uint32_t)sqlite3_column_int64(st, 3);
	m->outgoing = sqlite3_column_int(st, 4) != 0;
	m->sent_ms = (uint64_t)sqlite3_column_int64(st, 5);
	m->received_ms = (uint64_t)sqlite3_column_int64(st, 6);
	m->text = (const char *)sqlite3_column_text(st, 7);
	m->state = sqlite3_column_int(st, 8);
	if (m->peer == NULL || m->from == NULL || m->text == NULL)
		return TERN_EDB;
	return 0;
}

/* app_fire: tells the owner what the last commit made true. */
static void
app_fire(struct app *a)
{
	struct ev *e;

	while ((e = a->evs) != NULL && !a->closing) {
		a->evs = e->next;
		if (a->evs == NULL)
			a->evs_tail = &a->evs;
		switch (e->kind) {
		case EV_MESSAGE: {
			struct app_msg m;
			sqlite3_bind_blob(a->st_msg_get, 1, e->id, MSG_ID_LEN,
			    SQLITE_STATIC);
			if (sqlite3_step(a->st_msg_get) == SQLITE_ROW &&
			    app_row_msg(a->st_msg_get, &m) == 0 &&
			    a->cbs != NULL && a->cbs->message != NULL)
				a->cbs->message(a, &m);
			sqlite3_reset(a->st_msg_get);
			break;
		}
		case EV_RECEIPT:
			if (a->cbs != NULL && a->cbs->receipt != NULL)
				a->cbs->receipt(a, e->id, e->peer, e->val);
			break;
		case EV_TYPING:
			if (a->cbs != NULL && a->cbs->typing != NULL)
				a->cbs->typing(a, e->peer, e->val);
			break;
		case EV_WARN:
			if (a->cbs != NULL && a->cbs->warn != NULL)
				a->cbs->warn(a, e->val, e->peer, e->text);
			break;
		}
		free(e);
	}
}

/* --- device lists ------------------------------------------------------ */

static struct devcache *
app_devs_find(struct app *a, const char *user)
{
	struct devcache *d;

	for (d = a->devs; d != NULL; d = d->next)
		if (strcmp(d->user, user) == 0)
			return d;
	return NULL;
}

static void
app_devs_forget(struct app *a, const char *user)
{
	struct devcache *d = app_devs_find(a, user);

	if (d != NULL)
		d->at = 0;
}

static struct devcache *
app_devs_fresh(struct app *a, const char *user)
{
	struct devcache *d = app_devs_find(a, user);

	if (d == NULL || d->at == 0 || uv_now(a->loop) - d->at > DEVCACHE_MS)
		return NULL;
	return d;
}

static int
app_devs_store(struct app *a, const struct msg_devices *m)
{
	char user[IDENT_ADDR_MAX + 1];
	struct devcache *d;
	size_t i;

	app_copy(user, sizeof(user), m->user.p, m->user.len);
	if ((d = app_devs_find(a, user)) == NULL) {
		if ((d = calloc(1, sizeof(*d))) == NULL)
			return TERN_ENOMEM;
		memcpy(d->user, user, sizeof(d->user));
		d->next = a->devs;
		a->devs = d;
	}
	d->n = 0;
	for (i = 0; i < m->device_ids.count && i < MSG_DEVICES_MAX; i++)
		d->ids[d->n++] = buf_load_be32(msg_record(&m->device_ids,
		    MSG_DEVICE_REC_LEN, i));
	d->at = uv_now(a->loop);
	if (d->at == 0)
		d->at = 1;
	return 0;
}

/* --- sending ------------------------------------------------------------ */

static void
app_op_free(struct op *op)
{
	if (op->pt != NULL) {
		sodium_memzero(op->pt, op->ptlen);
		free(op->pt);
	}
	if (op->sync != NULL) {
		sodium_memzero(op->sync, op->synclen);
		free(op->sync);
	}
	free(op);
}

static void
app_op_finish(struct op *op, int status)
{
	if (op->cb != NULL)
		op->cb(op->arg, status, op->msg_id);
	app_op_free(op);
}

/* Fails the head operation and moves on. */
/* app_transient: an error after which a PENDING message is tried again
 * at the next login rather than marked failed. */
static bool
app_transient(int err)
{
	return err == TERN_ECLOSED || err == TERN_EUNREACH ||
	    err == TERN_ETIMEOUT || err == TERN_EBUSY || err == TERN_EDB ||
	    err == TERN_ENOMEM || err == TERN_EDISK;
}

static void
app_mark_failed(struct app *a, const uint8_t id[MSG_ID_LEN])
{
	sqlite3_stmt *st = NULL;

	if (app_begin(a) != 0)
		return;
	if (app_prep(a, &st, "UPDATE app_msg SET state=4 WHERE id=?1 AND "
	    "state=0") == 0) {
		sqlite3_bind_blob(st, 1, id, MSG_ID_LEN, SQLITE_STATIC);
		(void)app_step_done(st);
	}
	sqlite3_finalize(st);
	(void)app_commit(a);
}

static void
app_head_fail(struct app *a, int err)
{
	struct op *op = a->ops;

	a->ops = op->next;
	if (a->ops == NULL)
		a->ops_tail = &a->ops;
	if (op->kind == OP_TEXT && !app_transient(err))
		app_mark_failed(a, op->msg_id);
	app_op_finish(op, err);
	app_pump(a);
}

static void
app_resp_devs(void *arg, int status, const struct msg *resp)
{
	struct app *a = arg;
	struct op *op = a->ops;

	if (op == NULL || a->closing)
		return;
	op->asking = false;
	if (status == 0 && resp->type == MSG_DEVICES)
		status = app_devs_store(a, &resp->u.devices);
	else if (status == 0)
		status = TERN_ETYPE;
	if (status == TERN_EUNREACH || status == TERN_ETIMEOUT) {
		/* The user's node (another domain) is down. Our node still
		 * queues envelopes for it: send to the devices we already
		 * have sessions with. */
		const char *user = op->step == STEP_PEER_DEVS ? op->to :
		    a->user;
		struct msg_devices d;
		uint8_t recs[MSG_DEVICES_MAX * MSG_DEVICE_REC_LEN];
		struct buf_writer w;
		uint32_t i;

		memset(&d, 0, sizeof(d));
		d.user.p = user;
		d.user.len = strlen(user);
		buf_writer_init(&w, recs, sizeof(recs));
		for (i = 1; i <= MSG_DEVICES_MAX; i++) {
			uint8_t rec[4];
			if (!HAS_SESSION(a, user, i))
				continue;
			buf_store_be32(rec, i);
			if (msg_record_add(&d.device_ids, &w, rec, 4) != 0)
				break;
		}
		if (d.device_ids.count > 0 || op->step == STEP_OWN_DEVS)
			status = app_devs_store(a, &d);
	}
	if (status != 0) {
		app_head_fail(a, status);
		return;
	}
	/* The step finds the list in the cache now. */
	app_pump(a);
}

/*
 * app_sessions_from: builds a session with every device in a BUNDLE we
 * have none with (never with ourselves), in one transaction. A device
 * whose keys are unusable is reported and skipped, so it does not
 * silence the others. A changed identity is recorded as pending by sig
 * (and committed); with stop_on_identity it ends the walk and is
 * returned. Returns 0, TERN_EIDENTITY, or a storage error (rolled back).
 */
static int
app_sessions_from(struct app *a, const struct msg_bundle *bm,
    bool stop_on_identity)
{
	char user[IDENT_ADDR_MAX + 1];
	bool identity = false;
	size_t i;
	int r = 0, c;

	app_copy(user, sizeof(user), bm->user.p, bm->user.len);
	if ((r = app_begin(a)) != 0)
		return r;
	for (i = 0; i < bm->devices.count; i++) {
		const uint8_t *p = msg_record(&bm->devices, MSG_BUNDLE_REC_LEN,
		    i);
		struct sig_bundle b;

		/* The record layout of SPEC.md 4.33. */
		b.device_id = buf_load_be32(p);
		if (HAS_SESSION(a, user, b.device_id) ||
		    (strcmp(user, a->user) == 0 &&
		    b.device_id == a->device_id))
			continue;
		b.registration_id = buf_load_be32(p + 4);
		memcpy(b.identity, p + 8, SIG_KEY_LEN);
		b.signed_prekey_id = buf_load_be32(p + 40);
		memcpy(b.signed_prekey, p + 44, SIG_KEY_LEN);
		memcpy(b.signature, p + 76, SIG_SIG_LEN);
		b.prekey_id = buf_load_be32(p + 140);
		memcpy(b.prekey, p + 144, SIG_KEY_LEN);
		r = sig_session_build(a->sig, user, &b);
		if (r == TERN_EIDENTITY) {
			identity = true;
			r = 0;
			if (stop_on_identity)
				break;
		} else if (r == TERN_EDB || r == TERN_ENOMEM ||
		    r == TERN_EDISK) {
			app_rollback(a);
			return r;
		} else if (r != 0) {
			char t[512];
			snprintf(t, sizeof(t), "device %u of %s published "
			    "unusable keys: %s", b.device_id, user,
			    tern_strerror(r));
			app_warn(a, r, user, t);
			r = 0;
		}
	}
	if ((c = app_commit(a)) != 0)
		return c;
	return identity && stop_on_identity ? TERN_EIDENTITY : 0;
}

static void
app_resp_bundle(void *arg, int status, const struct msg *resp)
{
	struct app *a = arg;
	struct op *op = a->ops;
	int r;

	if (op == NULL || a->closing)
		return;
	op->asking = false;
	if (status != 0) {
		app_head_fail(a, status);
		return;
	}
	if (resp->type != MSG_BUNDLE) {
		app_head_fail(a, TERN_ETYPE);
		return;
	}
	r = app_sessions_from(a, &resp->u.bundle, true);
	app_fire(a);
	if (r != 0) {
		app_head_fail(a, r);
		return;
	}
	app_pump(a);
}

static int
app_request_raw(struct app *a, struct msg *m, client_resp_cb cb)
{
	if (a->c == NULL || client_state(a->c) != CLIENT_ONLINE)
		return TERN_ECLOSED;
	return client_request(a->c, m, cb, a);
}

/* app_list_has / whether a session exists for every listed device. */
static int
app_need_bundle(struct app *a, const char *user, const uint32_t *ids,
    size_t n, uint32_t skip, size_t *first_missing, size_t *missing)
{
	size_t i;

	*missing = 0;
	*first_missing = n;
	for (i = 0; i < n; i++) {
		if (ids[i] == skip)
			continue;
		if (!HAS_SESSION(a, user, ids[i])) {
			if (*missing == 0)
				*first_missing = i;
			(*missing)++;
		}
	}
	return 0;
}

static void app_sent(struct client *c, const uint8_t id[MSG_ID_LEN],
    int status);

/* app_encrypt_for: encrypts pt for (user, dev) and queues the SEND. */
static int
app_encrypt_env(struct app *a, struct op *op, const char *user,
    uint32_t dev, const uint8_t *pt, size_t len, bool to_peer,
    uint8_t *ct, size_t cap, size_t *ctlen)
{
	struct buf_writer w;
	int r;

	if (op->nenv >= ENV_MAX)
		return TERN_ETOOBIG;
	buf_writer_init(&w, ct, cap);
	if ((r = sig_encrypt(a->sig, user, dev, pt, len, &w)) != 0)
		return r;
	*ctlen = w.len;
	client_envelope_id(op->envs[op->nenv].id);
	op->envs[op->nenv].dev = dev;
	op->envs[op->nenv].to_peer = to_peer;
	op->envs[op->nenv].answered = false;
	return 0;
}

/*
 * app_send_now: encrypts the head operation for every device, commits,
 * then hands the envelopes over. Ciphertexts are kept until the commit
 * so that none leaves before its session state is durable.
 */
static void
app_send_now(struct app *a)
{
	struct op *op = a->ops;
	uint8_t *cts = NULL;
	size_t lens[ENV_MAX];
	size_t i, n = 0, slot;
	uint8_t cls;
	int r;

	if (sig_identity_pending(a->sig, op->to) == 1) {
		app_head_fail(a, TERN_EIDENTITY);
		return;
	}
	/* One slot per envelope, sized for the padded plaintext plus
	 * libsignal's overhead (a prekey message adds under 200 bytes). */
	slot = ((op->ptlen > op->synclen ? op->ptlen : op->synclen) /
	    SIG_PAD_BLOCK + 1) * SIG_PAD_BLOCK + 512;
	if (slot > CT_MAX)
		slot = CT_MAX;
	if ((cts = malloc(slot * (op->npeer + op->nown + 1))) == NULL) {
		app_head_fail(a, TERN_ENOMEM);
		return;
	}
	if ((r = app_begin(a)) != 0)
		goto fail;
	op->nenv = 0;
	for (i = 0; i < op->npeer && r == 0; i++) {
		if (strcmp(op->to, a->user) == 0 &&
		    op->peer_devs[i] == a->device_id)
			continue;
		if (!HAS_SESSION(a, op->to, op->peer_devs[i]))
			continue;
		r = app_encrypt_env(a, op, op->to, op->peer_devs[i], op->pt,
		    op->ptlen, true, cts + op->nenv * slot, slot,
		    &lens[op->nenv]);
		if (r == 0)
			op->nenv++;
	}
	for (i = 0; i < op->nown && r == 0 && op->sync != NULL; i++) {
		if (op->own_devs[i] == a->device_id ||
		    !HAS_SESSION(a, a->user, op->own_devs[i]))
			continue;
		r = app_encrypt_env(a, op, a->user, op->own_devs[i], op->sync,
		    op->synclen, false, cts + op->nenv * slot, slot,
		    &lens[op->nenv]);
		if (r == 0)
			op->nenv++;
	}
	if (r == 0 && op->nenv == 0 && op->kind == OP_TEXT)
		r = TERN_ENOUSER; /* no device of the peer has keys */
	if (r != 0) {
		app_rollback(a);
		goto fail;
	}
	if ((r = app_commit(a)) != 0)
		goto fail;
	/* Durable: now the envelopes may leave. */
	a->ops = op->next;
	if (a->ops == NULL)
		a->ops_tail = &a->ops;
	op->next = a->waiting;
	a->waiting = op;
	op->step = STEP_WAIT;
	cls = op->kind == OP_TEXT ? MSG_CLASS_MESSAGE :
	    op->kind == OP_RECEIPT ? MSG_CLASS_RECEIPT : MSG_CLASS_EPHEMERAL;
	for (i = 0; i < op->nenv; i++) {
		struct env *e = &op->envs[i];
		const char *to = e->to_peer ? op->to : a->user;
		int s = client_send(a->c, e->id, to, e->dev, cls, op->ts,
		    cts + i * slot, lens[i]);
		if (s != 0) {
			e->answered = true;
			op->nanswered++;
			if (op->first_err == 0)
				op->first_err = s;
		}
		n++;
	}
	free(cts);
	if (op->nanswered == op->nenv) {
		/* Nothing in flight (all refused at once, or nothing to
		 * send): finish now. */
		a->waiting = op->next;
		app_op_finish(op, op->nenv == 0 ? 0 : op->first_err);
	}
	app_pump(a);
	return;
fail:
	free(cts);
	app_head_fail(a, r);
}

static void
app_sent_done(struct app *a, struct op *op)
{
	struct op **pp;
	int status;

	for (pp = &a->waiting; *pp != NULL; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			break;
		}
	if (op->kind == OP_TEXT) {
		int st = op->peer_ok > 0 ? APP_ST_SENT : APP_ST_FAILED;
		status = op->peer_ok > 0 ? 0 :
		    op->first_err != 0 ? op->first_err : TERN_ENOUSER;
		/* Cut off (the client closed with it in flight): it stays
		 * pending and goes out again at the next login. */
		if (op->peer_ok == 0 && app_transient(status))
			st = APP_ST_PENDING;
		if (st != APP_ST_PENDING && app_begin(a) == 0) {
			sqlite3_bind_blob(a->st_msg_sent, 1, op->msg_id,
			    MSG_ID_LEN, SQLITE_STATIC);
			sqlite3_bind_int(a->st_msg_sent, 2, st);
			if (app_step_done(a->st_msg_sent) == 0)
				(void)app_commit(a);
			else
				app_rollback(a);
		}
	} else {
		status = op->peer_ok > 0 || op->nenv == 0 ? 0 : op->first_err;
	}
	app_op_finish(op, status);
}

static void
app_sent(struct client *c, const uint8_t id[MSG_ID_LEN], int status)
{
	struct app *a = client_data(c);
	struct op *op;
	size_t i;

	for (op = a->waiting; op != NULL; op = op->next)
		for (i = 0; i < op->nenv; i++) {
			struct env *e = &op->envs[i];
			if (e->answered || memcmp(e->id, id, MSG_ID_LEN) != 0)
				continue;
			e->answered = true;
			op->nanswered++;
			if (status == 0 && e->to_peer)
				op->peer_ok++;
			else if (status != 0) {
				if (op->first_err == 0 && e->to_peer)
					op->first_err = status;
				/* A device the node no longer knows: its
				 * session is stale. */
				if (status == TERN_ENOUSER)
					app_devs_forget(a, e->to_peer ?
					    op->to : a->user);
			}
			if (op->nanswered == op->nenv)
				app_sent_done(a, op);
			return;
		}
}

/* app_pump: advances the head operation as far as it can go without
 * waiting for the node. */
static void
app_pump(struct app *a)
{
	struct op *op;
	struct devcache *d;
	struct msg m;
	size_t first, missing;
	int r;

again:
	if ((op = a->ops) == NULL || a->closing || !a->ready || op->asking)
		return;
	switch (op->step) {
	case STEP_PEER_DEVS:
		if (!op->fetch) {
			op->step = STEP_SEND;
			goto again;
		}
		if ((d = app_devs_fresh(a, op->to)) == NULL) {
			memset(&m, 0, sizeof(m));
			m.type = MSG_DEVICE_LIST;
			m.u.device_list.user.p = op->to;
			m.u.device_list.user.len = strlen(op->to);
			if ((r = app_request_raw(a, &m, app_resp_devs)) != 0)
				app_head_fail(a, r);
			else
				op->asking = true;
			return;
		}
		memcpy(op->peer_devs, d->ids, d->n * sizeof(d->ids[0]));
		op->npeer = d->n;
		op->step = STEP_OWN_DEVS;
		goto again;
	case STEP_OWN_DEVS:
		if (op->sync == NULL || strcmp(op->to, a->user) == 0) {
			op->step = STEP_BUNDLES;
			goto again;
		}
		if ((d = app_devs_fresh(a, a->user)) == NULL) {
			memset(&m, 0, sizeof(m));
			m.type = MSG_DEVICE_LIST;
			m.u.device_list.user.p = a->user;
			m.u.device_list.user.len = strlen(a->user);
			if ((r = app_request_raw(a, &m, app_resp_devs)) != 0)
				app_head_fail(a, r);
			else
				op->asking = true;
			return;
		}
		memcpy(op->own_devs, d->ids, d->n * sizeof(d->ids[0]));
		op->nown = d->n;
		op->step = STEP_BUNDLES;
		goto again;
	case STEP_BUNDLES:
		if (sig_identity_pending(a->sig, op->to) == 1) {
			app_head_fail(a, TERN_EIDENTITY);
			return;
		}
		if (!op->peer_done) {
			size_t i;
			uint32_t self = strcmp(op->to, a->user) == 0 ?
			    a->device_id : 0;
			(void)app_need_bundle(a, op->to, op->peer_devs,
			    op->npeer, self, &first, &missing);
			memset(&m, 0, sizeof(m));
			m.type = MSG_BUNDLE_GET;
			m.u.bundle_get.user.p = op->to;
			m.u.bundle_get.user.len = strlen(op->to);
			if (missing > 0 && op->bi == 0 && self == 0 &&
			    missing == op->npeer) {
				/* None known: all at once, one round trip
				 * for a first message. */
				op->bi = op->npeer;
				m.u.bundle_get.device_id = 0;
				if ((r = app_request_raw(a, &m,
				    app_resp_bundle)) != 0)
					app_head_fail(a, r);
				else
					op->asking = true;
				return;
			}
			for (i = op->bi; i < op->npeer; i++)
				if (op->peer_devs[i] != self &&
				    !HAS_SESSION(a, op->to,
				    op->peer_devs[i]))
					break;
			if (i < op->npeer) {
				op->bi = i + 1;
				m.u.bundle_get.device_id = op->peer_devs[i];
				if ((r = app_request_raw(a, &m,
				    app_resp_bundle)) != 0)
					app_head_fail(a, r);
				else
					op->asking = true;
				return;
			}
			/* Devices still without a session have no keys on
			 * the node: they are skipped. */
			op->peer_done = true;
		}
		if (op->sync != NULL && strcmp(op->to, a->user) != 0) {
			size_t i;
			/* Our other devices one at a time: a fetch for all
			 * of them would take a prekey of this one too. */
			for (i = op->own_bi; i < op->nown; i++)
				if (op->own_devs[i] != a->device_id &&
				    !HAS_SESSION(a, a->user, op->own_devs[i]))
					break;
			if (i < op->nown) {
				op->own_bi = i + 1;
				memset(&m, 0, sizeof(m));
				m.type = MSG_BUNDLE_GET;
				m.u.bundle_get.user.p = a->user;
				m.u.bundle_get.user.len = strlen(a->user);
				m.u.bundle_get.device_id = op->own_devs[i];
				if ((r = app_request_raw(a, &m,
				    app_resp_bundle)) != 0)
					app_head_fail(a, r);
				else
					op->asking = true;
				return;
			}
		}
		op->step = STEP_SEND;
		goto again;
	case STEP_SEND:
		app_send_now(a);
		return;
	default:
		return;
	}
}

static struct op *
app_op_new(struct app *a, int kind, const char *to)
{
	struct op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->a = a;
	op->kind = kind;
	app_copy(op->to, sizeof(op->to), to, strlen(to));
	op->ts = app_now_ms();
	randombytes_buf(op->msg_id, MSG_ID_LEN);
	return op;
}

static void
app_op_queue(struct app *a, struct op *op)
{
	*a->ops_tail = op;
	a->ops_tail = &op->next;
	if (a->ops == op)
		app_pump(a);
}

static int
app_norm(const char *in, char out[IDENT_ADDR_MAX + 1])
{
	return ident_addr_normalize(in, out, IDENT_ADDR_MAX + 1) == 0 ? 0 :
	    TERN_EFIELD;
}

static int app_store_msg(struct app *a, const uint8_t id[MSG_ID_LEN],
    const char *peer, const char *from, uint32_t dev, bool outgoing,
    uint64_t sent_ms, uint64_t recv_ms, const char *text, size_t tlen,
    int state);

/*
 * app_text_op: queues the sending of message (id, ts) to user. With
 * store, first commits it to the history as PENDING, so that a crash or
 * a lost link cannot lose it (it goes out again at the next login).
 */
static int
app_text_op(struct app *a, const char *to, const char *text,
    const uint8_t *id, uint64_t ts, bool store, app_send_cb cb, void *arg)
{
	size_t tlen = strlen(text);
	struct op *op;
	int r;

	if ((op = app_op_new(a, OP_TEXT, to)) == NULL)
		return TERN_ENOMEM;
	if (id != NULL) {
		memcpy(op->msg_id, id, MSG_ID_LEN);
		op->ts = ts;
	}
	if (store) {
		if ((r = app_begin(a)) != 0) {
			app_op_free(op);
			return r;
		}
		r = app_store_msg(a, op->msg_id, to, a->user, a->device_id,
		    true, op->ts, op->ts, text, tlen, APP_ST_PENDING);
		if (r != 0) {
			app_rollback(a);
			app_op_free(op);
			return r;
		}
		if ((r = app_commit(a)) != 0) {
			app_op_free(op);
			return r;
		}
	}
	op->fetch = true;
	{
		struct pt m;
		struct buf_writer w;

		memset(&m, 0, sizeof(m));
		m.kind = PT_TEXT;
		memcpy(m.id, op->msg_id, MSG_ID_LEN);
		m.sent_ms = op->ts;
		m.text.p = text;
		m.text.len = tlen;
		op->ptlen = pt_encoded_size(&m);
		m.kind = PT_SYNC;
		m.peer.p = to;
		m.peer.len = strlen(to);
		op->synclen = pt_encoded_size(&m);
		if (op->ptlen == 0 || op->synclen == 0) {
			app_op_free(op);
			return TERN_EINVAL;
		}
		if ((op->pt = malloc(op->ptlen)) == NULL ||
		    (op->sync = malloc(op->synclen)) == NULL) {
			app_op_free(op);
			return TERN_ENOMEM;
		}
		buf_writer_init(&w, op->sync, op->synclen);
		if (pt_encode(&m, &w) != 0) {
			app_op_free(op);
			return TERN_EINVAL;
		}
		m.kind = PT_TEXT;
		buf_writer_init(&w, op->pt, op->ptlen);
		if (pt_encode(&m, &w) != 0) {
			app_op_free(op);
			return TERN_EINVAL;
		}
	}
	op->cb = cb;
	op->arg = arg;
	app_op_queue(a, op);
	return 0;
}

int
app_send_text(struct app *a, const char *user, const char *text,
    app_send_cb cb, void *arg)
{
	char to[IDENT_ADDR_MAX + 1];
	size_t tlen = strlen(text);

	if (a->closing || !app_registered(a))
		return TERN_ESTATE;
	if (app_norm(user, to) != 0)
		return TERN_EFIELD;
	if (tlen > APP_TEXT_MAX)
		return TERN_ETOOBIG;
	if (ident_utf8_check((const uint8_t *)text, tlen) != 0)
		return TERN_EUTF8;
	if (sig_identity_pending(a->sig, to) == 1)
		return TERN_EIDENTITY;
	return app_text_op(a, to, text, NULL, 0, true, cb, arg);
}

/* app_op_known: 1 if message id is being sent already. */
static int
app_op_known(struct app *a, const uint8_t id[MSG_ID_LEN])
{
	struct op *op;

	for (op = a->ops; op != NULL; op = op->next)
		if (op->kind == OP_TEXT &&
		    memcmp(op->msg_id, id, MSG_ID_LEN) == 0)
			return 1;
	for (op = a->waiting; op != NULL; op = op->next)
		if (op->kind == OP_TEXT &&
		    memcmp(op->msg_id, id, MSG_ID_LEN) == 0)
			return 1;
	return 0;
}

/* app_resend_pending: after a login, what is still PENDING (typed while
 * offline, or cut off by a lost link or a crash) goes out again. */
static void
app_resend_pending(struct app *a)
{
	sqlite3_stmt *st = NULL;
	int rc;

	if (app_prep(a, &st, "SELECT id,peer,text,sent_ms FROM app_msg "
	    "WHERE outgoing=1 AND state=0 AND sender=?1 AND sender_dev=?2 "
	    "ORDER BY seq LIMIT 1000") != 0)
		return;
	sqlite3_bind_text(st, 1, a->user, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->device_id);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const void *id = sqlite3_column_blob(st, 0);
		const char *peer = (const char *)sqlite3_column_text(st, 1);
		const char *text = (const char *)sqlite3_column_text(st, 2);
		if (id == NULL || sqlite3_column_bytes(st, 0) != MSG_ID_LEN ||
		    peer == NULL || text == NULL || app_op_known(a, id))
			continue;
		if (app_text_op(a, peer, text, id, (uint64_t)
		    sqlite3_column_int64(st, 3), false, NULL, NULL) != 0)
			break;
	}
	sqlite3_finalize(st);
}

/* app_small_op: a receipt or typing indicator to every device of user we
 * have a session with (no fetching: they came from there). */
static int
app_small_op(struct app *a, int kind, const char *to, const uint8_t *pt,
    size_t len, bool sync_own, app_send_cb cb, void *arg)
{
	struct op *op = app_op_new(a, kind, to);
	struct devcache *d;

	if (op == NULL)
		return TERN_ENOMEM;
	if ((op->pt = malloc(len)) == NULL) {
		app_op_free(op);
		return TERN_ENOMEM;
	}
	memcpy(op->pt, pt, len);
	op->ptlen = len;
	if (sync_own) {
		if ((op->sync = malloc(len)) == NULL) {
			app_op_free(op);
			return TERN_ENOMEM;
		}
		memcpy(op->sync, pt, len);
		op->synclen = len;
		if ((d = app_devs_find(a, a->user)) != NULL) {
			memcpy(op->own_devs, d->ids, d->n * sizeof(d->ids[0]));
			op->nown = d->n;
		}
	}
	/* Devices: those in the cache, else 1..64 that have sessions. */
	if ((d = app_devs_find(a, to)) != NULL) {
		memcpy(op->peer_devs, d->ids, d->n * sizeof(d->ids[0]));
		op->npeer = d->n;
	} else {
		uint32_t i;
		for (i = 1; i <= MSG_DEVICES_MAX; i++)
			if (HAS_SESSION(a, to, i))
				op->peer_devs[op->npeer++] = i;
	}
	op->step = STEP_SEND;
	op->cb = cb;
	op->arg = arg;
	app_op_queue(a, op);
	return 0;
}

int
app_send_typing(struct app *a, const char *user, int typing)
{
	char to[IDENT_ADDR_MAX + 1];
	/* SPEC.md 12.5: version, kind, state. */
	uint8_t pt[3] = {PT_VERSION, PT_TYPING, typing ? 1 : 0};

	if (a->closing || !app_registered(a))
		return TERN_ESTATE;
	if (app_norm(user, to) != 0)
		return TERN_EFIELD;
	if (sig_identity_pending(a->sig, to) == 1)
		return TERN_EIDENTITY;
	return app_small_op(a, OP_TYPING, to, pt, sizeof(pt), false, NULL,
	    NULL);
}

static int
app_receipt(struct app *a, const char *to, int what,
    const uint8_t (*ids)[MSG_ID_LEN], size_t n, bool sync_own,
    app_send_cb cb, void *arg)
{
	uint8_t pt[5 + RCPT_IDS_MAX * MSG_ID_LEN];
	struct buf_writer w;
	struct pt m;

	if (n > RCPT_IDS_MAX)
		return TERN_EINVAL;
	memset(&m, 0, sizeof(m));
	m.kind = PT_RECEIPT;
	m.what = (uint8_t)what;
	m.nids = (uint16_t)n;
	m.ids = (const uint8_t *)ids;
	buf_writer_init(&w, pt, sizeof(pt));
	if (pt_encode(&m, &w) != 0)
		return TERN_EINVAL;
	return app_small_op(a, OP_RECEIPT, to, pt, w.len, sync_own, cb, arg);
}

/* --- read receipts -------------------------------------------------- */

struct readop {
	app_done_cb cb;
	void *arg;
};

static void
app_read_sent(void *arg, int status, const uint8_t id[MSG_ID_LEN])
{
	struct readop *ro = arg;

	ro->cb(ro->arg, status);
	free(ro);
}

int
app_mark_read(struct app *a, const char *user, app_done_cb cb, void *arg)
{
	char peer[IDENT_ADDR_MAX + 1];
	uint8_t (*ids)[MSG_ID_LEN];
	struct readop *ro;
	size_t n = 0, i;
	int r, rc;

	if (a->closing || !app_registered(a))
		return TERN_ESTATE;
	if (app_norm(user, peer) != 0)
		return TERN_EFIELD;
	if ((ids = malloc(RCPT_IDS_MAX * MSG_ID_LEN)) == NULL)
		return TERN_ENOMEM;
	sqlite3_bind_text(a->st_unread, 1, peer, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(a->st_unread)) == SQLITE_ROW &&
	    n < RCPT_IDS_MAX) {
		if (sqlite3_column_bytes(a->st_unread, 0) == MSG_ID_LEN)
			memcpy(ids[n++], sqlite3_column_blob(a->st_unread, 0),
			    MSG_ID_LEN);
	}
	sqlite3_reset(a->st_unread);
	if (n == 0) {
		free(ids);
		cb(arg, 0);
		return 0;
	}
	if ((r = app_begin(a)) != 0) {
		free(ids);
		return r;
	}
	for (i = 0; i < n && r == 0; i++) {
		sqlite3_bind_blob(a->st_mark_read, 1, ids[i], MSG_ID_LEN,
		    SQLITE_STATIC);
		r = app_step_done(a->st_mark_read);
	}
	if (r != 0 || (r = app_commit(a)) != 0) {
		if (r != TERN_EDB && r != TERN_EDISK)
			app_rollback(a);
		free(ids);
		return r;
	}
	if ((ro = malloc(sizeof(*ro))) == NULL) {
		free(ids);
		return TERN_ENOMEM;
	}
	ro->cb = cb;
	ro->arg = arg;
	r = app_receipt(a, peer, RCPT_READ, (const uint8_t (*)[MSG_ID_LEN])
	    ids, n, true, app_read_sent, ro);
	free(ids);
	if (r != 0)
		free(ro);
	return r;
}

int
app_msg_state(struct app *a, const uint8_t id[MSG_ID_LEN], int *state)
{
	int rc, r = TERN_ENOTFOUND;

	sqlite3_bind_blob(a->st_msg_state, 1, id, MSG_ID_LEN, SQLITE_STATIC);
	rc = sqlite3_step(a->st_msg_state);
	if (rc == SQLITE_ROW) {
		*state = sqlite3_column_int(a->st_msg_state, 0);
		r = 0;
	} else if (rc != SQLITE_DONE) {
		r = TERN_EDB;
	}
	sqlite3_reset(a->st_msg_state);
	return r;
}

/* --- receiving ------------------------------------------------------ */

static void
app_rcpt_stage(struct app *a, const char *to, int what,
    const uint8_t id[MSG_ID_LEN])
{
	struct rcpt *r;

	for (r = a->rcpts; r != NULL; r = r->next)
		if (r->what == what && r->n < RCPT_IDS_MAX &&
		    strcmp(r->to, to) == 0)
			break;
	if (r == NULL) {
		if ((r = calloc(1, sizeof(*r))) == NULL)
			return; /* the receipt is lost, not the message */
		app_copy(r->to, sizeof(r->to), to, strlen(to));
		r->what = what;
		r->next = a->rcpts;
		a->rcpts = r;
	}
	memcpy(r->ids[r->n++], id, MSG_ID_LEN);
}

static int
app_store_msg(struct app *a, const uint8_t id[MSG_ID_LEN], const char *peer,
    const char *from, uint32_t dev, bool outgoing, uint64_t sent_ms,
    uint64_t recv_ms, const char *text, size_t tlen, int state)
{
	sqlite3_stmt *st = a->st_msg_put;
	int r;

	sqlite3_bind_blob(st, 1, id, MSG_ID_LEN, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, peer, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, from, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, dev);
	sqlite3_bind_int(st, 5, outgoing);
	sqlite3_bind_int64(st, 6, (sqlite3_int64)sent_ms);
	sqlite3_bind_int64(st, 7, (sqlite3_int64)recv_ms);
	sqlite3_bind_text(st, 8, text, (int)tlen, SQLITE_STATIC);
	sqlite3_bind_int(st, 9, state);
	sqlite3_bind_int(st, 10, outgoing ? 1 : 0);
	r = app_step_done(st);
	if (r == 0 && sqlite3_changes(a->db) > 0)
		app_ev(a, EV_MESSAGE, id, peer, 0, NULL);
	return r;
}

/* app_plain: acts on one decrypted plaintext from (from, dev). */
static int
app_plain(struct app *a, const char *from, uint32_t dev, uint64_t recv_ms,
    const uint8_t *p, size_t len)
{
	bool own = strcmp(from, a->user) == 0;
	char peer[IDENT_ADDR_MAX + 1];
	struct pt m;
	uint16_t i;
	int r;

	if ((r = pt_decode(p, len, &m)) != 0)
		return r;
	switch (m.kind) {
	case PT_TEXT:
		if (app_store_msg(a, m.id, from, from, dev, false, m.sent_ms,
		    recv_ms, m.text.p, m.text.len, APP_ST_DELIVERED) != 0)
			return TERN_EDB;
		if (!own)
			app_rcpt_stage(a, from, RCPT_DELIVERED, m.id);
		return 0;
	case PT_SYNC:
		if (!own)
			return TERN_EAUTH; /* only our devices speak for us */
		app_copy(peer, sizeof(peer), m.peer.p, m.peer.len);
		return app_store_msg(a, m.id, peer, a->user, dev, true,
		    m.sent_ms, recv_ms, m.text.p, m.text.len, APP_ST_SENT);
	case PT_RECEIPT:
		for (i = 0; i < m.nids; i++) {
			const uint8_t *id = m.ids + (size_t)i * MSG_ID_LEN;
			int st = m.what == PT_RCPT_READ ? APP_ST_READ :
			    APP_ST_DELIVERED;
			if (own) {
				/* Another device of ours read these: our
				 * copies are read too. */
				sqlite3_bind_blob(a->st_mark_read, 1, id,
				    MSG_ID_LEN, SQLITE_STATIC);
				if (m.what == PT_RCPT_READ &&
				    app_step_done(a->st_mark_read) != 0)
					return TERN_EDB;
				continue;
			}
			sqlite3_bind_blob(a->st_msg_upd, 1, id, MSG_ID_LEN,
			    SQLITE_STATIC);
			sqlite3_bind_int(a->st_msg_upd, 2, st);
			sqlite3_bind_text(a->st_msg_upd, 3, from, -1,
			    SQLITE_STATIC);
			if (app_step_done(a->st_msg_upd) != 0)
				return TERN_EDB;
			if (sqlite3_changes(a->db) > 0)
				app_ev(a, EV_RECEIPT, id, from, st, NULL);
		}
		return 0;
	case PT_TYPING:
		if (!own)
			app_ev(a, EV_TYPING, NULL, from, m.typing, NULL);
		return 0;
	default:
		return TERN_ETYPE;
	}
}

/*
 * app_envelope: one envelope, inside the burst's transaction. Returns 0
 * when it may be acknowledged (handled, held or reported), else an error
 * that keeps it unacknowledged (a database failure: it comes back).
 */
static int
app_envelope(struct app *a, const uint8_t id[MSG_ID_LEN], const char *from,
    uint32_t dev, uint8_t cls, uint64_t sent_ms, uint64_t recv_ms,
    const uint8_t *payload, size_t plen, bool from_held)
{
	uint8_t *pt;
	struct buf_writer w;
	int r, seen;

	if (!from_held) {
		sqlite3_bind_blob(a->st_seen_get, 1, id, MSG_ID_LEN,
		    SQLITE_STATIC);
		seen = sqlite3_step(a->st_seen_get);
		sqlite3_reset(a->st_seen_get);
		if (seen == SQLITE_ROW)
			return 0; /* a redelivery of what we handled */
		if (seen != SQLITE_DONE)
			return TERN_EDB;
		sqlite3_bind_blob(a->st_seen_put, 1, id, MSG_ID_LEN,
		    SQLITE_STATIC);
		sqlite3_bind_int64(a->st_seen_put, 2,
		    (sqlite3_int64)app_now_ms());
		if ((r = app_step_done(a->st_seen_put)) != 0)
			return r;
	}
	if ((pt = malloc(MSG_PAYLOAD_MAX)) == NULL)
		return TERN_ENOMEM;
	buf_writer_init(&w, pt, MSG_PAYLOAD_MAX);
	r = sig_decrypt(a->sig, from, dev, payload, plen, &w);
	if (r == 0) {
		int pr = app_plain(a, from, dev, recv_ms, pt, w.len);
		if (pr == TERN_EDB || pr == TERN_EDISK) {
			r = pr;
		} else if (pr != 0) {
			char t[512];
			snprintf(t, sizeof(t), "a message from %s (device %u) "
			    "is malformed: %s", from, dev, tern_strerror(pr));
			app_warn(a, TERN_EDECRYPT, from, t);
		}
	} else if (r == TERN_EDUP) {
		r = 0;
	} else if (r == TERN_EIDENTITY) {
		char t[512];
		sqlite3_stmt *st = a->st_held_put;
		sqlite3_bind_blob(st, 1, id, MSG_ID_LEN, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, from, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, dev);
		sqlite3_bind_int(st, 4, cls);
		sqlite3_bind_int64(st, 5, (sqlite3_int64)sent_ms);
		sqlite3_bind_int64(st, 6, (sqlite3_int64)recv_ms);
		sqlite3_bind_blob(st, 7, payload, (int)plen, SQLITE_STATIC);
		r = app_step_done(st);
		if (from_held)
			r = TERN_EIDENTITY;
		snprintf(t, sizeof(t), "the identity key of %s (device %u) "
		    "changed; messages are held until you accept it", from,
		    dev);
		app_warn(a, TERN_EIDENTITY, from, t);
	} else if (cls == MSG_CLASS_MESSAGE) {
		/* Never dropped without a word: a placeholder in the
		 * history and a warning. */
		char t[512];
		snprintf(t, sizeof(t), "a message from %s (device %u) could "
		    "not be decrypted", from, dev);
		r = app_store_msg(a, id, from, from, dev, false, sent_ms,
		    recv_ms, "", 0, APP_ST_UNDECRYPTABLE);
		app_warn(a, TERN_EDECRYPT, from, t);
	} else {
		r = 0; /* an undecryptable receipt or typing: nothing lost */
	}
	sodium_memzero(pt, w.len);
	free(pt);
	return r;
}

/*
 * app_flush_now: ends the receive batch: commits it, then acknowledges
 * its envelopes and queues the receipts they called for. The owner's
 * callbacks run later (app_flush_cb), never from inside another
 * operation.
 */
static void
app_flush_now(struct app *a)
{
	struct rcpt *rc;
	size_t i;
	int r;

	if (!a->in_txn)
		return;
	a->in_txn = false;
	r = app_commit(a);
	if (r != 0) {
		/* Nothing acknowledged: the node delivers them again. */
		a->nacks = 0;
		while ((rc = a->rcpts) != NULL) {
			a->rcpts = rc->next;
			free(rc);
		}
		app_warn(a, r, a->user, "could not store received messages; "
		    "they will be delivered again");
		return;
	}
	for (i = 0; i < a->nacks && a->c != NULL; i++)
		if (client_ack(a->c, a->acks[i]) != 0)
			break; /* offline: the node delivers again, we drop
			          them as seen */
	a->nacks = 0;
	while ((rc = a->rcpts) != NULL) {
		a->rcpts = rc->next;
		if (!a->closing)
			(void)app_receipt(a, rc->to, rc->what,
			    (const uint8_t (*)[MSG_ID_LEN])rc->ids, rc->n,
			    false, NULL, NULL);
		free(rc);
	}
}

static void
app_flush_cb(uv_timer_t *t)
{
	struct app *a = t->data;

	a->flush_armed = false;
	app_flush_now(a);
	app_fire(a);
}

static void
app_deliver(struct client *c, const struct msg_deliver *d)
{
	struct app *a = client_data(c);
	char from[IDENT_ADDR_MAX + 1];
	int r;

	if (a->closing)
		return;
	app_copy(from, sizeof(from), d->from.p, d->from.len);
	a->activity++;
	if (!a->in_txn) {
		if (app_begin(a) != 0)
			return; /* not acknowledged: comes back */
		a->in_txn = true;
	}
	if (!a->flush_armed) {
		a->flush_armed = true;
		(void)uv_timer_start(&a->flush, app_flush_cb, 0, 0);
	}
	{
		struct devcache *dc = app_devs_find(a, from);
		size_t i;
		bool known = false;
		if (dc != NULL)
			for (i = 0; i < dc->n; i++)
				known |= dc->ids[i] == d->from_device;
		if (dc != NULL && !known)
			app_devs_forget(a, from);
	}
	r = app_envelope(a, d->id, from, d->from_device, d->class,
	    d->timestamp_ms, d->received_ms, d->payload.p, d->payload.len,
	    false);
	if (r != 0)
		return; /* left unacknowledged */
	if (a->nacks == a->capacks) {
		size_t n = a->capacks ? a->capacks * 2 : 64;
		void *p = realloc(a->acks, n * MSG_ID_LEN);
		if (p == NULL)
			return;
		a->acks = p;
		a->capacks = n;
	}
	memcpy(a->acks[a->nacks++], d->id, MSG_ID_LEN);
}

/* --- keys ---------------------------------------------------------- */

static void
app_start_done(struct app *a, int status)
{
	app_done_cb cb = a->start_cb;

	a->start_cb = NULL;
	if (status == 0) {
		a->ready = true;
		if (!uv_is_active((uv_handle_t *)&a->keys_timer))
			(void)uv_timer_start(&a->keys_timer, app_keys_timer_cb,
			    APP_KEYS_CHECK_MS, APP_KEYS_CHECK_MS);
		app_resend_pending(a);
		app_pump(a);
	}
	if (cb != NULL)
		cb(a->start_arg, status);
}

static void
app_resp_put(void *arg, int status, const struct msg *resp)
{
	struct app *a = arg;

	if (status == 0 && resp->type != MSG_KEYS_COUNT)
		status = TERN_ETYPE;
	app_start_done(a, status);
}

/* app_keys_put: uploads the current signed and last-resort prekeys and n
 * new one-time prekeys. */
static int
app_keys_put(struct app *a, size_t n)
{
	uint8_t recs[SIG_PREKEYS_MAX * MSG_PREKEY_REC_LEN];
	struct sig_prekey pks[SIG_PREKEYS_MAX], lr;
	struct sig_signed_prekey spk;
	struct buf_writer w;
	struct msg m;
	uint32_t reg;
	size_t i;
	int r;

	if (n > SIG_PREKEYS_MAX)
		n = SIG_PREKEYS_MAX;
	memset(&m, 0, sizeof(m));
	m.type = MSG_KEYS_PUT;
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = sig_identity_init(a->sig)) < 0 ||
	    (r = sig_local(a->sig, m.u.keys_put.identity_key, &reg)) != 0 ||
	    (r = sig_signed_prekey(a->sig, app_now_ms(), &spk, NULL)) != 0 ||
	    (r = sig_last_resort(a->sig, &lr)) != 0 ||
	    (n > 0 && (r = sig_prekeys_new(a->sig, n, pks)) != 0)) {
		app_rollback(a);
		return r;
	}
	if ((r = app_commit(a)) != 0)
		return r;
	m.u.keys_put.registration_id = reg;
	m.u.keys_put.signed_prekey_id = spk.id;
	memcpy(m.u.keys_put.signed_prekey, spk.pub, SIG_KEY_LEN);
	memcpy(m.u.keys_put.signature, spk.signature, SIG_SIG_LEN);
	memcpy(m.u.keys_put.last_resort, lr.pub, SIG_KEY_LEN);
	buf_writer_init(&w, recs, sizeof(recs));
	for (i = 0; i < n; i++) {
		uint8_t rec[MSG_PREKEY_REC_LEN];
		buf_store_be32(rec, pks[i].id);
		memcpy(rec + 4, pks[i].pub, SIG_KEY_LEN);
		if ((r = msg_record_add(&m.u.keys_put.prekeys, &w, rec,
		    sizeof(rec))) != 0)
			return r;
	}
	return app_request_raw(a, &m, app_resp_put);
}

static void
app_resp_status(void *arg, int status, const struct msg *resp)
{
	struct app *a = arg;
	struct sig_signed_prekey spk;
	size_t need = 0;
	int rotated = 0, r;

	if (status == 0 && resp->type != MSG_KEYS_COUNT)
		status = TERN_ETYPE;
	if (status != 0) {
		app_start_done(a, status);
		return;
	}
	if ((r = app_begin(a)) != 0) {
		app_start_done(a, r);
		return;
	}
	r = sig_signed_prekey(a->sig, app_now_ms(), &spk, &rotated);
	if (r == 0)
		r = app_commit(a);
	else
		app_rollback(a);
	if (r != 0) {
		app_start_done(a, r);
		return;
	}
	if (resp->u.keys_count.prekeys < APP_PREKEYS_LOW &&
	    resp->u.keys_count.prekeys < a->prekeys)
		need = a->prekeys - resp->u.keys_count.prekeys;
	if (need == 0 && resp->u.keys_count.signed_prekey_id == spk.id) {
		app_start_done(a, 0);
		return;
	}
	if ((r = app_keys_put(a, need)) != 0)
		app_start_done(a, r);
}

static void
app_keys_check(struct app *a)
{
	struct msg m;
	int r;

	memset(&m, 0, sizeof(m));
	m.type = MSG_KEYS_STATUS;
	if ((r = app_request_raw(a, &m, app_resp_status)) != 0)
		app_start_done(a, r);
}


static void
app_keys_timer_cb(uv_timer_t *t)
{
	struct app *a = t->data;

	if (a->ready && a->start_cb == NULL && !a->closing)
		app_keys_check(a);
}

static void
app_keys_count_push(struct client *c, const struct msg_keys_count *k)
{
	struct app *a = client_data(c);

	if (a->ready && k->prekeys < APP_PREKEYS_LOW &&
	    k->prekeys < a->prekeys)
		(void)app_keys_put(a, a->prekeys - k->prekeys);
}

static void
app_state(struct client *c, enum client_state st, int err, uint32_t delay)
{
	struct app *a = client_data(c);

	if (a->closing)
		return;
	if (st == CLIENT_ONLINE) {
		uint8_t nk[NOISE_DHLEN];
		if (!a->have_node_key && client_node_key(c, nk) == 0) {
			/* Learnt by XX on first contact: pinned from now
			 * on. */
			if (app_begin(a) == 0) {
				if (app_kv_set(a, "node_key", nk, NOISE_DHLEN)
				    == 0 && app_commit(a) == 0) {
					memcpy(a->node_key, nk, NOISE_DHLEN);
					a->have_node_key = true;
				} else {
					app_rollback(a);
				}
			}
		}
		if (a->cbs != NULL && a->cbs->link != NULL)
			a->cbs->link(a, 1, 0, 0);
		if (!a->registering)
			app_keys_check(a);
		return;
	}
	a->ready = false;
	if ((st == CLIENT_WAITING || st == CLIENT_CLOSED) && a->cbs != NULL &&
	    a->cbs->link != NULL)
		a->cbs->link(a, 0, err, st == CLIENT_WAITING ? delay : 0);
	if ((st == CLIENT_WAITING || st == CLIENT_CLOSED) &&
	    a->start_cb != NULL && (!a->reconnect || st == CLIENT_CLOSED)) {
		app_start_done(a, err != 0 ? err : TERN_EUNREACH);
		if (!a->reconnect && a->c != NULL && st == CLIENT_WAITING) {
			app_client_close(a);
		}
	}
	/* Operations being prepared wait for the next login (app_pump
	 * checks ready); envelopes in the outbox are resent by the
	 * client library. */
}

static void
app_presence_cb(struct client *c, const struct msg_presence *p)
{
	struct app *a = client_data(c);

	if (a->pres_cb != NULL)
		a->pres_cb(a->pres_arg, p);
}

static const struct client_cbs app_client_cbs = {
	.state = app_state,
	.sent = app_sent,
	.deliver = app_deliver,
	.presence = app_presence_cb,
	.keys_count = app_keys_count_push,
};

static int
app_client(struct app *a, bool reconnect)
{
	struct client_config cfg;
	int r;

	client_config_init(&cfg);
	cfg.host = a->host;
	cfg.port = a->port;
	cfg.node_key = a->have_node_key ? a->node_key : NULL;
	cfg.device_key = a->noise_priv;
	cfg.user = a->user;
	cfg.device_id = a->device_id;
	cfg.reconnect = reconnect;
	cfg.auto_ack = false;
	if ((r = client_new(a->loop, &cfg, &app_client_cbs, a, &a->c)) != 0)
		return r;
	return 0;
}

int
app_start(struct app *a, bool reconnect, app_done_cb cb, void *arg)
{
	int r;

	if (!app_registered(a))
		return TERN_ESTATE;
	if (a->c != NULL || a->closing)
		return TERN_ESTATE;
	a->reconnect = reconnect;
	if ((r = app_client(a, true)) != 0)
		return r;
	a->start_cb = cb;
	a->start_arg = arg;
	if ((r = client_start(a->c)) != 0) {
		a->start_cb = NULL;
		app_client_close(a);
		return r;
	}
	return 0;
}

static void
app_reg_id(void *arg, int status, uint32_t device_id)
{
	struct app *a = arg;
	uint8_t v[4], p[2];
	int r;

	a->registering = false;
	if (status != 0) {
		app_start_done(a, status);
		return;
	}
	a->device_id = device_id;
	buf_store_be32(v, device_id);
	buf_store_be16(p, a->port);
	if ((r = app_begin(a)) != 0) {
		app_start_done(a, r);
		return;
	}
	if ((r = app_kv_set(a, "user", a->user, strlen(a->user))) != 0 ||
	    (r = app_kv_set(a, "device_id", v, 4)) != 0 ||
	    (r = app_kv_set(a, "host", a->host, strlen(a->host))) != 0 ||
	    (r = app_kv_set(a, "port", p, 2)) != 0 ||
	    (r = app_kv_set(a, "noise_key", a->noise_priv, NOISE_DHLEN))
	    != 0) {
		app_rollback(a);
		app_start_done(a, r);
		return;
	}
	if ((r = app_commit(a)) != 0) {
		app_start_done(a, r);
		return;
	}
	if ((r = app_keys_put(a, a->prekeys)) != 0)
		app_start_done(a, r);
}

void
app_set_prekeys(struct app *a, uint32_t n)
{
	if (n >= 1 && n <= APP_PREKEYS_TARGET)
		a->prekeys = n;
}

int
app_reset_keys(struct app *a, app_done_cb cb, void *arg)
{
	int r;

	if (!a->ready || a->start_cb != NULL)
		return TERN_ESTATE;
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = sig_identity_reset(a->sig)) != 0) {
		app_rollback(a);
		return r;
	}
	if ((r = app_commit(a)) != 0)
		return r;
	a->start_cb = cb;
	a->start_arg = arg;
	if ((r = app_keys_put(a, a->prekeys)) != 0)
		a->start_cb = NULL;
	return r;
}

int
app_register(struct app *a, const char *user, const char *invite,
    const char *host, uint16_t port, app_done_cb cb, void *arg)
{
	uint8_t pub[NOISE_DHLEN];
	int r;

	if (app_registered(a))
		return TERN_EEXIST;
	if (a->c != NULL || a->closing)
		return TERN_ESTATE;
	if (app_norm(user, a->user) != 0)
		return TERN_EFIELD;
	if (strlen(host) >= sizeof(a->host))
		return TERN_EINVAL;
	app_copy(a->host, sizeof(a->host), host, strlen(host));
	a->port = port;
	/* A profile that never finished registering starts afresh. */
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = sig_identity_reset(a->sig)) != 0) {
		app_rollback(a);
		return r;
	}
	if ((r = app_commit(a)) != 0)
		return r;
	noise_keypair_generate(a->noise_priv, pub);
	a->have_noise = true;
	a->have_node_key = false;
	a->reconnect = false;
	a->registering = true;
	if ((r = app_client(a, false)) != 0)
		return r;
	a->start_cb = cb;
	a->start_arg = arg;
	r = client_register(a->c, invite, "tern", app_reg_id, a);
	if (r != 0) {
		a->start_cb = NULL;
		app_client_close(a);
	}
	return r;
}

/* --- trust ------------------------------------------------------------ */

struct fetchop {
	struct app *a;
	app_done_cb cb;
	void *arg;
	char user[IDENT_ADDR_MAX + 1];
};

static void
app_fetch_bundle(void *arg, int status, const struct msg *resp)
{
	struct fetchop *f = arg;
	struct app *a = f->a;
	int r = status;

	if (r == 0 && resp->type != MSG_BUNDLE)
		r = TERN_ETYPE;
	/* For a safety number: a changed key is recorded (pending), the
	 * others still count. */
	if (r == 0)
		r = app_sessions_from(a, &resp->u.bundle, false);
	app_fire(a);
	f->cb(f->arg, r);
	free(f);
}

int
app_fetch_keys(struct app *a, const char *user, app_done_cb cb, void *arg)
{
	struct fetchop *f;
	struct msg m;
	int r;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return TERN_ENOMEM;
	if (app_norm(user, f->user) != 0) {
		free(f);
		return TERN_EFIELD;
	}
	f->a = a;
	f->cb = cb;
	f->arg = arg;
	memset(&m, 0, sizeof(m));
	m.type = MSG_BUNDLE_GET;
	m.u.bundle_get.user.p = f->user;
	m.u.bundle_get.user.len = strlen(f->user);
	if (a->c == NULL || client_state(a->c) != CLIENT_ONLINE) {
		free(f);
		return TERN_ECLOSED;
	}
	if ((r = client_request(a->c, &m, app_fetch_bundle, f)) != 0)
		free(f);
	return r;
}

int
app_fingerprint(struct app *a, const char *user, char out[61])
{
	char u[IDENT_ADDR_MAX + 1];

	if (app_norm(user, u) != 0)
		return TERN_EFIELD;
	return sig_fingerprint(a->sig, a->user, u, out);
}

int
app_verified(struct app *a, const char *user)
{
	char u[IDENT_ADDR_MAX + 1];

	if (app_norm(user, u) != 0)
		return 0;
	return sig_verified_get(a->sig, u);
}

int
app_verify_mark(struct app *a, const char *user)
{
	char u[IDENT_ADDR_MAX + 1];
	int r;

	if (app_norm(user, u) != 0)
		return TERN_EFIELD;
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = sig_verified_set(a->sig, u, 1)) != 0) {
		app_rollback(a);
		return r;
	}
	return app_commit(a);
}

int
app_identity_pending(struct app *a, const char *user)
{
	char u[IDENT_ADDR_MAX + 1];

	if (app_norm(user, u) != 0)
		return 0;
	return sig_identity_pending(a->sig, u) == 1;
}

int
app_accept(struct app *a, const char *user)
{
	char u[IDENT_ADDR_MAX + 1];
	struct held {
		uint8_t id[MSG_ID_LEN];
		uint32_t dev;
		int cls;
		uint64_t sent, recv;
		uint8_t *p;
		size_t len;
		struct held *next;
	} *list = NULL, **tail = &list, *h;
	int r, rc;

	if (app_norm(user, u) != 0)
		return TERN_EFIELD;
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = sig_identity_accept(a->sig, u)) != 0) {
		app_rollback(a);
		return r;
	}
	app_devs_forget(a, u);
	/* The held messages, in arrival order, decrypted now. */
	sqlite3_bind_text(a->st_held_list, 1, u, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(a->st_held_list)) == SQLITE_ROW) {
		if ((h = calloc(1, sizeof(*h))) == NULL)
			break;
		if (sqlite3_column_bytes(a->st_held_list, 0) == MSG_ID_LEN)
			memcpy(h->id, sqlite3_column_blob(a->st_held_list, 0),
			    MSG_ID_LEN);
		h->dev = (uint32_t)sqlite3_column_int64(a->st_held_list, 1);
		h->cls = sqlite3_column_int(a->st_held_list, 2);
		h->sent = (uint64_t)sqlite3_column_int64(a->st_held_list, 3);
		h->recv = (uint64_t)sqlite3_column_int64(a->st_held_list, 4);
		h->len = (size_t)sqlite3_column_bytes(a->st_held_list, 5);
		if ((h->p = malloc(h->len + 1)) == NULL) {
			free(h);
			break;
		}
		memcpy(h->p, sqlite3_column_blob(a->st_held_list, 5), h->len);
		*tail = h;
		tail = &h->next;
	}
	sqlite3_reset(a->st_held_list);
	r = 0;
	while ((h = list) != NULL) {
		list = h->next;
		if (r == 0) {
			int e = app_envelope(a, h->id, u, h->dev, (uint8_t)
			    h->cls, h->sent, h->recv, h->p, h->len, true);
			if (e == TERN_EDB || e == TERN_EDISK)
				r = e;
			sqlite3_bind_blob(a->st_held_del, 1, h->id, MSG_ID_LEN,
			    SQLITE_STATIC);
			if (r == 0 && e != TERN_EIDENTITY)
				r = app_step_done(a->st_held_del);
		}
		free(h->p);
		free(h);
	}
	if (r != 0) {
		app_rollback(a);
		return r;
	}
	if ((r = app_commit(a)) != 0)
		return r;
	/* Receipts for what was held. */
	{
		struct rcpt *rc2;
		while ((rc2 = a->rcpts) != NULL) {
			a->rcpts = rc2->next;
			if (a->ready)
				(void)app_receipt(a, rc2->to, rc2->what,
				    (const uint8_t (*)[MSG_ID_LEN])rc2->ids,
				    rc2->n, false, NULL, NULL);
			free(rc2);
		}
	}
	app_fire(a);
	return 0;
}

/* --- plain requests ------------------------------------------------ */

int
app_request(struct app *a, struct msg *m,
    void (*cb)(void *arg, int status, const struct msg *resp), void *arg)
{
	if (a->c == NULL || client_state(a->c) != CLIENT_ONLINE)
		return TERN_ECLOSED;
	return client_request(a->c, m, cb, arg);
}

static void
app_pres_ok(void *arg, int status, const struct msg *resp)
{
	struct app *a = arg;

	if (status != 0 && a->pres_cb != NULL) {
		struct msg_presence p;
		memset(&p, 0, sizeof(p));
		p.state = 0xff; /* marks a failure: status in last_seen_ms */
		p.last_seen_ms = (uint64_t)(-status);
		a->pres_cb(a->pres_arg, &p);
	}
}

int
app_presence(struct app *a, const char *user,
    void (*cb)(void *arg, const struct msg_presence *p), void *arg)
{
	char u[IDENT_ADDR_MAX + 1];
	struct msg m;

	if (app_norm(user, u) != 0)
		return TERN_EFIELD;
	a->pres_cb = cb;
	a->pres_arg = arg;
	memset(&m, 0, sizeof(m));
	m.type = MSG_PRESENCE_SUB;
	m.u.presence_sub.user.p = u;
	m.u.presence_sub.user.len = strlen(u);
	return app_request(a, &m, app_pres_ok, a);
}

int
app_history(struct app *a, const char *peer, size_t limit,
    void (*fn)(void *arg, const struct app_msg *m), void *arg)
{
	char u[IDENT_ADDR_MAX + 1];
	sqlite3_stmt *st;
	struct app_msg m;
	int rc;

	if (peer != NULL) {
		if (app_norm(peer, u) != 0)
			return TERN_EFIELD;
		st = a->st_hist;
		sqlite3_bind_text(st, 1, u, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	} else {
		st = a->st_hist_all;
		sqlite3_bind_int64(st, 1, (sqlite3_int64)limit);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (app_row_msg(st, &m) == 0)
			fn(arg, &m);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : TERN_EDB;
}

int
app_busy(const struct app *a)
{
	return a->ops != NULL || a->waiting != NULL || a->in_txn ||
	    a->start_cb != NULL;
}

uint64_t
app_activity(const struct app *a)
{
	return a->activity;
}

int
app_unshown(struct app *a, void (*fn)(void *arg, const struct app_msg *m),
    void *arg)
{
	sqlite3_stmt *st = NULL, *up = NULL;
	struct app_msg m;
	int rc, r;

	if ((r = app_prep(a, &st, "SELECT id,peer,sender,sender_dev,outgoing,"
	    "sent_ms,recv_ms,text,state FROM app_msg WHERE shown=0 ORDER BY "
	    "seq")) != 0 || (r = app_prep(a, &up, "UPDATE app_msg SET "
	    "shown=1 WHERE shown=0")) != 0)
		goto out;
	if ((r = app_begin(a)) != 0)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (app_row_msg(st, &m) == 0)
			fn(arg, &m);
	sqlite3_reset(st);
	if (rc != SQLITE_DONE || (r = app_step_done(up)) != 0) {
		app_rollback(a);
		r = r != 0 ? r : TERN_EDB;
		goto out;
	}
	r = app_commit(a);
out:
	sqlite3_finalize(st);
	sqlite3_finalize(up);
	return r;
}

int
app_msg_find(struct app *a, const char *hex, uint8_t id[MSG_ID_LEN])
{
	sqlite3_stmt *st = NULL;
	size_t n = strlen(hex), found = 0, i;
	char lo[2 * MSG_ID_LEN + 1];
	int rc;

	if (n < 8 || n > 2 * MSG_ID_LEN)
		return TERN_EINVAL;
	for (i = 0; i < n; i++) {
		char ch = hex[i];
		if (ch >= 'A' && ch <= 'F')
			ch = (char)(ch - 'A' + 'a');
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
			return TERN_EINVAL;
		lo[i] = ch;
	}
	lo[n] = '\0';
	if (app_prep(a, &st, "SELECT id FROM app_msg WHERE "
	    "substr(lower(hex(id)),1,?2)=?1 LIMIT 2") != 0)
		return TERN_EDB;
	sqlite3_bind_text(st, 1, lo, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, (int)n);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(st, 0) == MSG_ID_LEN && found == 0)
			memcpy(id, sqlite3_column_blob(st, 0), MSG_ID_LEN);
		found++;
	}
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return TERN_EDB;
	return found == 0 ? TERN_ENOTFOUND : found > 1 ? TERN_EEXIST : 0;
}

int
app_conversations(struct app *a,
    void (*fn)(void *arg, const struct app_conv *c), void *arg)
{
	sqlite3_stmt *st = NULL;
	struct app_conv c;
	int rc;

	if (app_prep(a, &st, "SELECT m.peer, m.sent_ms, m.text, m.outgoing,"
	    " (SELECT COUNT(*) FROM app_msg u WHERE u.peer=m.peer AND"
	    " u.outgoing=0 AND u.state=2) FROM app_msg m WHERE m.seq ="
	    " (SELECT MAX(seq) FROM app_msg x WHERE x.peer=m.peer)"
	    " ORDER BY m.seq DESC") != 0)
		return TERN_EDB;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		c.peer = (const char *)sqlite3_column_text(st, 0);
		c.last_ms = (uint64_t)sqlite3_column_int64(st, 1);
		c.last_text = (const char *)sqlite3_column_text(st, 2);
		c.last_outgoing = sqlite3_column_int(st, 3) != 0;
		c.unread = (uint32_t)sqlite3_column_int64(st, 4);
		if (c.peer != NULL && c.last_text != NULL)
			fn(arg, &c);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : TERN_EDB;
}

int
app_search(struct app *a, const char *query, size_t limit,
    void (*fn)(void *arg, const struct app_msg *m), void *arg)
{
	sqlite3_stmt *st = NULL;
	struct app_msg m;
	int rc;

	if (app_prep(a, &st, "SELECT m.id,m.peer,m.sender,m.sender_dev,"
	    "m.outgoing,m.sent_ms,m.recv_ms,m.text,m.state FROM app_fts f"
	    " JOIN app_msg m ON m.rowid=f.rowid WHERE app_fts MATCH ?1"
	    " ORDER BY m.seq DESC LIMIT ?2") != 0)
		return TERN_EDB;
	sqlite3_bind_text(st, 1, query, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (app_row_msg(st, &m) == 0)
			fn(arg, &m);
	sqlite3_finalize(st);
	if (rc == SQLITE_DONE)
		return 0;
	return rc == SQLITE_ERROR ? TERN_EINVAL : TERN_EDB;
}

int
app_setting_get(struct app *a, const char *key, char *out, size_t cap)
{
	char k[80];
	size_t n;
	int r;

	if (cap == 0 || snprintf(k, sizeof(k), "set.%s", key) >= (int)sizeof(k))
		return TERN_EINVAL;
	if ((r = app_kv_get(a, k, out, cap - 1, &n)) != 0)
		return r;
	out[n] = '\0';
	return 0;
}

int
app_setting_set(struct app *a, const char *key, const char *value)
{
	char k[80];
	int r;

	if (snprintf(k, sizeof(k), "set.%s", key) >= (int)sizeof(k) ||
	    strlen(value) > 1024)
		return TERN_EINVAL;
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = app_kv_set(a, k, value, strlen(value))) != 0) {
		app_rollback(a);
		return r;
	}
	return app_commit(a);
}

/* --- more devices ------------------------------------------------------ */

int
app_link_key(struct app *a, const char *user, const char *host,
    uint16_t port, uint8_t pub[32])
{
	uint8_t p[2];
	int r;

	if (app_registered(a))
		return TERN_EEXIST;
	if (a->c != NULL || a->closing)
		return TERN_ESTATE;
	if (strlen(host) >= sizeof(a->host))
		return TERN_EINVAL;
	if (a->have_noise && a->user[0] != '\0' &&
	    strcmp(a->user, user) == 0) {
		/* Asked again: the same key, so the one already shown to
		 * the other device stays valid. */
		return noise_public_key(a->noise_priv, pub);
	}
	if (app_norm(user, a->user) != 0)
		return TERN_EFIELD;
	app_copy(a->host, sizeof(a->host), host, strlen(host));
	a->port = port;
	noise_keypair_generate(a->noise_priv, pub);
	a->have_noise = true;
	a->have_node_key = false;
	buf_store_be16(p, port);
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = sig_identity_reset(a->sig)) != 0 ||
	    (r = app_kv_set(a, "user", a->user, strlen(a->user))) != 0 ||
	    (r = app_kv_set(a, "host", a->host, strlen(a->host))) != 0 ||
	    (r = app_kv_set(a, "port", p, 2)) != 0 ||
	    (r = app_kv_set(a, "noise_key", a->noise_priv, NOISE_DHLEN))
	    != 0) {
		app_rollback(a);
		return r;
	}
	return app_commit(a);
}

int
app_link_device(struct app *a, uint32_t device_id)
{
	uint8_t v[4];
	int r;

	if (app_registered(a))
		return TERN_EEXIST;
	if (!a->have_noise || a->user[0] == '\0' || device_id == 0)
		return TERN_ESTATE;
	buf_store_be32(v, device_id);
	if ((r = app_begin(a)) != 0)
		return r;
	if ((r = app_kv_set(a, "device_id", v, 4)) != 0) {
		app_rollback(a);
		return r;
	}
	if ((r = app_commit(a)) != 0)
		return r;
	a->device_id = device_id;
	return 0;
}

struct addop {
	app_id_cb cb;
	void *arg;
};

static void
app_device_added(void *arg, int status, uint32_t id)
{
	struct addop *o = arg;

	o->cb(o->arg, status, id);
	free(o);
}

int
app_device_add(struct app *a, const uint8_t key[32], const char *name,
    app_id_cb cb, void *arg)
{
	struct addop *o;
	int r;

	if (a->c == NULL || client_state(a->c) != CLIENT_ONLINE)
		return TERN_ECLOSED;
	if ((o = malloc(sizeof(*o))) == NULL)
		return TERN_ENOMEM;
	o->cb = cb;
	o->arg = arg;
	/* Our own device list changes: fetch it again before sending. */
	app_devs_forget(a, a->user);
	if ((r = client_device_add(a->c, key, name, app_device_added, o)) != 0)
		free(o);
	return r;
}
