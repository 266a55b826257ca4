/*
 * test_fedq.c: the store's outbound federation queue (node/store.h,
 * SPEC.md 13.2) against a real SQLite file and a real libuv loop: order
 * and isolation per destination domain, idempotent enqueue, delivery
 * (done), refusal and expiry with their notices to the sender's device,
 * persisted attempt counts, the node-wide bound, a full disk, restarts,
 * the domain list, and the migration of a version-2 database.
 *
 * Every case makes its database in a fresh mkdtemp directory under /tmp,
 * removes it at the end, and asserts that the loop closes with no handle
 * left open. No case depends on the passage of time.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "store.h"
#include "tt.h"

#define DOMAIN "here.test"

/* --- Fixture -------------------------------------------------------------- */

struct fx {
	char dir[64];                       /* mkdtemp directory */
	char path[128];                     /* database file in it */
	uv_loop_t loop;
	struct store *s;
	struct store_config cfg;
	int closed;                         /* close callback ran */
};

static void
fx_open(struct fx *f)
{
	TT_OK(store_open(&f->s, &f->loop, &f->cfg));
}

/* fx_start: a fresh directory, a new database, the store open with cfg. */
static void
fx_start(struct fx *f, const struct store_config *cfg)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-fedq-XXXXXX");
	TT_ASSERT(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/node.db", f->dir);
	TT_EQ(uv_loop_init(&f->loop), 0);
	if (cfg != NULL)
		f->cfg = *cfg;
	f->cfg.path = f->path;
	f->cfg.domain = DOMAIN;
	f->cfg.durability = STORE_DURABILITY_FULL;
	TT_OK(store_create(f->path));
	fx_open(f);
}

static void
fx_closed_cb(void *arg)
{
	((struct fx *)arg)->closed++;
}

/* fx_close closes the store and runs the loop until it is released. */
static void
fx_close(struct fx *f)
{
	f->closed = 0;
	store_close(f->s, fx_closed_cb, f);
	f->s = NULL;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	TT_EQ(f->closed, 1);
}

static void
fx_reopen(struct fx *f)
{
	fx_close(f);
	fx_open(f);
}

static void
fx_rmdir(const char *dir)
{
	char p[512];
	struct dirent *de;
	DIR *d = opendir(dir);

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	TT_EQ(rmdir(dir), 0);
}

/* fx_end closes everything and checks that nothing was left open. */
static void
fx_end(struct fx *f)
{
	if (f->s != NULL)
		fx_close(f);
	TT_EQ(uv_loop_close(&f->loop), 0);
	fx_rmdir(f->dir);
}

/* --- Waiting for one request ---------------------------------------------- */

/* A copy of one fetched outbound entry (the result's are borrowed). */
struct fcopy {
	struct store_fed_env e;             /* pointers cleared */
	char dest[STORE_DOMAIN_MAX + 1];
	char to[STORE_ADDR_MAX + 1];
	char from[STORE_ADDR_MAX + 1];
	uint8_t payload[2048];              /* the first bytes */
};

/* A copy of one local envelope (for the notices). */
struct ecopy {
	uint8_t env_id[STORE_ENV_ID_LEN];
	uint8_t cls;
	uint8_t payload[STORE_NOTICE_HDR_LEN + 256];
	size_t payload_len;
};

struct dcopy {
	char name[STORE_DOMAIN_MAX + 1];
	uint64_t count;
	uint64_t bytes;
};

/* Entries kept per answer: a page may hold STORE_FED_FETCH_MAX, far
 * more than a test fetches and too big for a struct w on the stack. */
#define W_FE_MAX 256

struct w {
	int called;                         /* times the callback ran */
	int status;
	struct store_result res;            /* pointers cleared: borrowed */
	struct fcopy fe[W_FE_MAX];
	size_t nfe;
	struct ecopy env[16];
	size_t nenv;
	struct dcopy dom[STORE_FED_DOMAINS_MAX];
	size_t ndom;
};

static void
w_cb(void *arg, int status, const struct store_result *res)
{
	struct w *w = arg;
	size_t i, n;

	TT_ASSERT(res != NULL);
	w->called++;
	w->status = status;
	w->res = *res;
	w->res.envs = NULL;
	w->res.fed_envs = NULL;
	w->res.fed_domains = NULL;
	w->res.bundles = NULL;
	for (i = 0; i < res->n_fed_envs && i < W_FE_MAX; i++) {
		const struct store_fed_env *e = &res->fed_envs[i];
		struct fcopy *c = &w->fe[w->nfe++];
		c->e = *e;
		c->e.dest_domain = c->e.to_addr = c->e.sender_addr = NULL;
		c->e.payload = NULL;
		snprintf(c->dest, sizeof(c->dest), "%s", e->dest_domain);
		snprintf(c->to, sizeof(c->to), "%s", e->to_addr);
		snprintf(c->from, sizeof(c->from), "%s", e->sender_addr);
		n = e->payload_len < sizeof(c->payload) ? e->payload_len :
		    sizeof(c->payload);
		memcpy(c->payload, e->payload, n);
	}
	for (i = 0; i < res->n_envs && i < 16; i++) {
		const struct store_env *e = &res->envs[i];
		struct ecopy *c = &w->env[w->nenv++];
		memcpy(c->env_id, e->env_id, STORE_ENV_ID_LEN);
		c->cls = e->cls;
		c->payload_len = e->payload_len;
		n = e->payload_len < sizeof(c->payload) ? e->payload_len :
		    sizeof(c->payload);
		memcpy(c->payload, e->payload, n);
	}
	for (i = 0; i < res->n_fed_domains && i < STORE_FED_DOMAINS_MAX; i++) {
		struct dcopy *c = &w->dom[w->ndom++];
		snprintf(c->name, sizeof(c->name), "%s",
		    res->fed_domains[i].domain);
		c->count = res->fed_domains[i].count;
		c->bytes = res->fed_domains[i].bytes;
	}
}

/*
 * wait_ checks that the request was accepted, runs the loop until w's
 * callback ran and returns its status.
 */
static int
wait_(struct fx *f, struct w *w, int submitted)
{
	TT_OK(submitted);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	TT_EQ(w->called, 1);
	return w->status;
}

static struct w *
w_reset(struct w *w)
{
	memset(w, 0, sizeof(*w));
	return w;
}

/* SYNC(f, w, call): submit (must be accepted), run, give the status. */
#define SYNC(f, w, call) (w_reset(w), wait_((f), (w), (call)))

/* Big: every case keeps one in static storage. */
static struct w W;

/* reg registers name (open registration) with a key of k; returns its id. */
static int64_t
reg(struct fx *f, const char *name, int k)
{
	uint8_t key[STORE_KEY_LEN];

	memset(key, k, sizeof(key));
	TT_OK(SYNC(f, &W, store_register(f->s, name, NULL, key, "phone", 1000,
	    w_cb, &W)));
	TT_ASSERT(W.res.user_id > 0);
	return W.res.user_id;
}

/* --- Entries ---------------------------------------------------------------- */

static uint8_t payload_buf[STORE_PAYLOAD_MAX];

/*
 * fed_make describes entry id from sender (user, device 1) to
 * "rcpt@domain" device 2, expiring at expires, with len payload bytes
 * whose first byte is id.
 */
static void
fed_make(struct store_fed_in *e, char *to, size_t to_cap, const char *domain,
    int64_t sender, int id, size_t len, int64_t expires)
{
	memset(e, 0, sizeof(*e));
	snprintf(to, to_cap, "rcpt@%s", domain);
	e->dest_domain = domain;
	e->env_id[0] = (uint8_t)(id >> 24);
	e->env_id[1] = (uint8_t)(id >> 16);
	e->env_id[2] = (uint8_t)(id >> 8);
	e->env_id[3] = (uint8_t)id;
	e->env_id[15] = 0xee;
	e->to_addr = to;
	e->to_device = 2;
	e->cls = STORE_CLASS_MESSAGE;
	e->sender_user = sender;
	e->sender_addr = "alice@" DOMAIN;
	e->sender_device = 1;
	e->sent_ms = 5000 + id;
	e->received_ms = 6000 + id;
	e->expires_ms = expires;
	memset(payload_buf, 0x5a, len);
	if (len > 0)
		payload_buf[0] = (uint8_t)id;
	e->payload = payload_buf;
	e->payload_len = len;
}

#define FAR (INT64_C(1) << 50) /* an expiry no case reaches */

/* fenq enqueues entry id to domain and returns its status; seq in W. */
static int
fenq(struct fx *f, const char *domain, int64_t sender, int id, size_t len,
    int64_t expires)
{
	struct store_fed_in e;
	char to[STORE_ADDR_MAX + 1];

	fed_make(&e, to, sizeof(to), domain, sender, id, len, expires);
	return SYNC(f, &W, store_fed_enqueue(f->s, &e, w_cb, &W));
}

/* fseq enqueues entry id (it must succeed, stored anew) and returns seq. */
static int64_t
fseq(struct fx *f, const char *domain, int64_t sender, int id, size_t len)
{
	TT_OK(fenq(f, domain, sender, id, len, FAR));
	TT_EQ(W.res.duplicate, 0);
	TT_ASSERT(W.res.seq > 0);
	return W.res.seq;
}

/* ffetch fetches into W and returns how many entries came. */
static size_t
ffetch(struct fx *f, const char *domain, int64_t after, uint32_t limit)
{
	TT_OK(SYNC(f, &W, store_fed_fetch(f->s, domain, after, limit, w_cb,
	    &W)));
	return W.nfe;
}

static int
id_of(const struct fcopy *c)
{
	return c->e.env_id[2] << 8 | c->e.env_id[3];
}

/* --- Cases ------------------------------------------------------------------ */

TT_CASE(fedq__fetch__order_per_domain_and_isolation)
{
	struct fx f;
	int64_t alice, seq[6];
	const struct fcopy *c;
	int i;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	/* Interleaved: even ids to a.test, odd ids to b.test. */
	for (i = 0; i < 6; i++)
		seq[i] = fseq(&f, i % 2 == 0 ? "a.test" : "b.test", alice, i,
		    100 + (size_t)i);
	for (i = 1; i < 6; i++)
		TT_ASSERT(seq[i] > seq[i - 1]);

	TT_EQ(ffetch(&f, "a.test", 0, STORE_FED_FETCH_MAX), 3);
	TT_EQ(W.res.more, 0);
	for (i = 0; i < 3; i++) {
		c = &W.fe[i];
		TT_EQ(c->e.seq, seq[2 * i]);
		TT_EQ(id_of(c), 2 * i);
		TT_ASSERT(strcmp(c->dest, "a.test") == 0);
	}
	/* Every field comes back as it went in. */
	c = &W.fe[1];
	TT_ASSERT(strcmp(c->to, "rcpt@a.test") == 0);
	TT_ASSERT(strcmp(c->from, "alice@" DOMAIN) == 0);
	TT_EQ(c->e.env_id[15], 0xee);
	TT_EQ(c->e.to_device, 2);
	TT_EQ(c->e.cls, STORE_CLASS_MESSAGE);
	TT_EQ(c->e.sender_user, alice);
	TT_EQ(c->e.sender_device, 1);
	TT_EQ(c->e.sent_ms, 5002);
	TT_EQ(c->e.received_ms, 6002);
	TT_EQ(c->e.expires_ms, FAR);
	TT_EQ(c->e.attempts, 0);
	TT_EQ(c->e.payload_len, 102);
	TT_EQ(c->payload[0], 2);
	TT_EQ(c->payload[101], 0x5a);

	TT_EQ(ffetch(&f, "b.test", 0, STORE_FED_FETCH_MAX), 3);
	for (i = 0; i < 3; i++) {
		TT_EQ(W.fe[i].e.seq, seq[2 * i + 1]);
		TT_ASSERT(strcmp(W.fe[i].to, "rcpt@b.test") == 0);
	}
	TT_EQ(ffetch(&f, "c.test", 0, STORE_FED_FETCH_MAX), 0);
	TT_EQ(W.res.more, 0);
	fx_end(&f);
}

TT_CASE(fedq__enqueue__rejects_bad_input)
{
	struct fx f;
	struct store_fed_in e;
	char to[STORE_ADDR_MAX + 1];
	int64_t alice, seqs[1] = {1};

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	fed_make(&e, to, sizeof(to), "a.test", alice, 1, 10, FAR);
	e.to_addr = "rcpt@b.test"; /* another domain than dest_domain */
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	e.to_addr = "rcpt@xa.test"; /* a suffix is not the domain */
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	e.to_addr = "@a.test";
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	fed_make(&e, to, sizeof(to), "a.test", alice, 1, 10, FAR);
	e.cls = STORE_CLASS_EPHEMERAL;
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	fed_make(&e, to, sizeof(to), "a.test", alice, 1, 10, FAR);
	e.payload_len = STORE_PAYLOAD_MAX + 1;
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	fed_make(&e, to, sizeof(to), "a.test", 0, 1, 10, FAR);
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	fed_make(&e, to, sizeof(to), "a.test", alice, 1, 10, FAR);
	e.to_device = 0;
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	TT_ERR(store_fed_fetch(f.s, "a.test", 0, 0, w_cb, &W), TERN_EINVAL);
	TT_ERR(store_fed_fetch(f.s, "a.test", 0, STORE_FED_FETCH_MAX + 1, w_cb,
	    &W), TERN_EINVAL);
	TT_ERR(store_fed_fetch(f.s, "a.test", 0, 1, NULL, NULL), TERN_EINVAL);
	TT_ERR(store_fed_done(f.s, seqs, 0, NULL, NULL), TERN_EINVAL);
	TT_ERR(store_fed_done(f.s, seqs, STORE_FED_DONE_MAX + 1, NULL, NULL),
	    TERN_EINVAL);
	TT_ERR(store_fed_refuse(f.s, 1, 3, NULL, NULL), TERN_EINVAL);
	TT_ERR(store_fed_domains(f.s, NULL, NULL, NULL), TERN_EINVAL);
	/* A sender the store does not know is caught by the writer. */
	TT_ERR(fenq(&f, "a.test", alice + 100, 1, 10, FAR), TERN_ENOUSER);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 0);
	fx_end(&f);
}

TT_CASE(fedq__enqueue__duplicate_stored_once)
{
	struct fx f;
	struct store_fed_in e;
	char to[STORE_ADDR_MAX + 1];
	int64_t alice, s1;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	s1 = fseq(&f, "a.test", alice, 1, 50);
	TT_OK(fenq(&f, "a.test", alice, 1, 50, FAR));
	TT_EQ(W.res.duplicate, 1);
	TT_EQ(W.res.seq, s1);
	/* Same id to another device of the recipient: a separate entry. */
	fed_make(&e, to, sizeof(to), "a.test", alice, 1, 50, FAR);
	e.to_device = 3;
	TT_OK(SYNC(&f, &W, store_fed_enqueue(f.s, &e, w_cb, &W)));
	TT_EQ(W.res.duplicate, 0);
	TT_ASSERT(W.res.seq > s1);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 2);
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, NULL, w_cb, &W)));
	TT_EQ(W.ndom, 1);
	TT_EQ(W.dom[0].count, 2);
	TT_EQ(W.dom[0].bytes, 100);
	/* Two copies of one request in the same batch: still one entry. */
	{
		struct w w2;
		fed_make(&e, to, sizeof(to), "a.test", alice, 9, 50, FAR);
		w_reset(&W);
		w_reset(&w2);
		TT_OK(store_fed_enqueue(f.s, &e, w_cb, &W));
		TT_OK(store_fed_enqueue(f.s, &e, w_cb, &w2));
		uv_run(&f.loop, UV_RUN_DEFAULT);
		TT_OK(W.status);
		TT_OK(w2.status);
		TT_EQ(W.res.duplicate + w2.res.duplicate, 1);
		TT_EQ(W.res.seq, w2.res.seq);
	}
	TT_EQ(ffetch(&f, "a.test", 0, 16), 3);
	fx_end(&f);
}

TT_CASE(fedq__done__deletes_in_one_request)
{
	struct fx f;
	int64_t alice, seq[5], done[4];
	int i;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	for (i = 0; i < 5; i++)
		seq[i] = fseq(&f, "a.test", alice, i, 10);
	(void)fseq(&f, "b.test", alice, 100, 10);
	done[0] = seq[0];
	done[1] = seq[2];
	done[2] = seq[4];
	done[3] = 999999; /* never queued: skipped */
	TT_OK(SYNC(&f, &W, store_fed_done(f.s, done, 4, w_cb, &W)));
	TT_EQ(W.res.fed_deleted, 3);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 2);
	TT_EQ(W.fe[0].e.seq, seq[1]);
	TT_EQ(W.fe[1].e.seq, seq[3]);
	/* Done twice (a repeated OK): nothing more goes. */
	TT_OK(SYNC(&f, &W, store_fed_done(f.s, done, 3, w_cb, &W)));
	TT_EQ(W.res.fed_deleted, 0);
	/* Emptying a domain drops it from the list. */
	done[0] = seq[1];
	done[1] = seq[3];
	TT_OK(SYNC(&f, &W, store_fed_done(f.s, done, 2, w_cb, &W)));
	TT_EQ(W.res.fed_deleted, 2);
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, "", w_cb, &W)));
	TT_EQ(W.ndom, 1);
	TT_ASSERT(strcmp(W.dom[0].name, "b.test") == 0);
	TT_EQ(ffetch(&f, "b.test", 0, 16), 1);
	/* cb may be NULL: fire and forget. */
	done[0] = W.fe[0].e.seq;
	TT_OK(store_fed_done(f.s, done, 1, NULL, NULL));
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_EQ(ffetch(&f, "b.test", 0, 16), 0);
	fx_end(&f);
}

TT_CASE(fedq__fetch__pages_with_after_seq)
{
	struct fx f;
	struct store_config cfg = {.fetch_bytes_max = 2500};
	int64_t alice, seq[10], after;
	int i, seen;

	fx_start(&f, &cfg);
	alice = reg(&f, "alice", 1);
	for (i = 0; i < 10; i++)
		seq[i] = fseq(&f, "a.test", alice, i, 100);
	after = 0;
	seen = 0;
	do {
		TT_ASSERT(ffetch(&f, "a.test", after, 4) > 0);
		for (i = 0; i < (int)W.nfe; i++) {
			TT_EQ(W.fe[i].e.seq, seq[seen]);
			seen++;
		}
		after = W.fe[W.nfe - 1].e.seq;
		TT_EQ(W.res.more, seen < 10);
	} while (W.res.more);
	TT_EQ(seen, 10);
	TT_EQ(ffetch(&f, "a.test", seq[7], 4), 2);
	TT_EQ(W.res.more, 0);

	/* The byte cap cuts a fetch short, but never below one entry. */
	after = seq[9];
	(void)fseq(&f, "a.test", alice, 20, 2000);
	(void)fseq(&f, "a.test", alice, 21, 2000);
	TT_EQ(ffetch(&f, "a.test", after, 16), 1);
	TT_EQ(W.res.more, 1);
	TT_EQ(ffetch(&f, "a.test", W.fe[0].e.seq, 16), 1);
	TT_EQ(W.res.more, 0);
	fx_end(&f);
}

/* fetch_notice fetches user's device queue and parses its only notice. */
static void
fetch_notice(struct fx *f, int64_t user, uint32_t dev, struct store_notice *n,
    struct ecopy *copy)
{
	TT_OK(SYNC(f, &W, store_fetch(f->s, user, dev, 0, 16, w_cb, &W)));
	TT_EQ(W.nenv, 1);
	TT_EQ(W.env[0].cls, STORE_CLASS_NOTICE);
	*copy = W.env[0];
	TT_OK(store_notice_parse(copy->payload, copy->payload_len, n));
}

TT_CASE(fedq__refuse__queues_kind_2_notice_to_sender_device)
{
	struct fx f;
	struct store_notice n;
	struct ecopy c;
	uint8_t key[STORE_KEY_LEN];
	int64_t alice, s1, s2;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	s1 = fseq(&f, "a.test", alice, 1, 10);
	s2 = fseq(&f, "a.test", alice, 2, 10);
	TT_OK(SYNC(&f, &W, store_fed_refuse(f.s, s1, STORE_NOTICE_REFUSED,
	    w_cb, &W)));
	TT_EQ(W.res.notices, 1);
	TT_EQ(W.res.notice_user, alice);
	TT_EQ(W.res.notice_device, 1);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 1);
	TT_EQ(W.fe[0].e.seq, s2);

	fetch_notice(&f, alice, 1, &n, &c);
	TT_EQ(n.kind, STORE_NOTICE_REFUSED);
	TT_EQ(n.ref_cls, STORE_CLASS_MESSAGE);
	TT_EQ(n.ref_env_id[3], 1);
	TT_EQ(n.ref_env_id[15], 0xee);
	TT_EQ(n.peer_device, 2);
	TT_EQ(n.peer_len, strlen("rcpt@a.test"));
	TT_MEMEQ(n.peer_addr, "rcpt@a.test", n.peer_len);
	/* Fetched and acked like any notice. */
	TT_OK(SYNC(&f, &W, store_ack(f.s, alice, 1, c.env_id, w_cb, &W)));

	/* Refused twice (two answers raced): the second finds nothing. */
	TT_ERR(SYNC(&f, &W, store_fed_refuse(f.s, s1, STORE_NOTICE_REFUSED,
	    w_cb, &W)), TERN_ENOTFOUND);

	/* A sending device removed meanwhile: the entry goes, no notice. */
	memset(key, 2, sizeof(key));
	TT_OK(SYNC(&f, &W, store_device_add(f.s, alice, key, "laptop", 1000,
	    w_cb, &W)));
	TT_EQ(W.res.device_id, 2);
	TT_OK(SYNC(&f, &W, store_device_remove(f.s, alice, 1, w_cb, &W)));
	TT_OK(SYNC(&f, &W, store_fed_refuse(f.s, s2, STORE_NOTICE_REFUSED,
	    w_cb, &W)));
	TT_EQ(W.res.notices, 0);
	TT_EQ(W.res.notice_device, 0);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 0);
	TT_OK(SYNC(&f, &W, store_fetch(f.s, alice, 2, 0, 16, w_cb, &W)));
	TT_EQ(W.nenv, 0);
	fx_end(&f);
}

TT_CASE(fedq__attempt__count_persists_over_reopen)
{
	struct fx f;
	int64_t alice, s1;
	uint32_t i;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	s1 = fseq(&f, "a.test", alice, 1, 10);
	for (i = 1; i <= 3; i++) {
		TT_OK(SYNC(&f, &W, store_fed_attempt(f.s, s1, w_cb, &W)));
		TT_EQ(W.res.attempts, i);
	}
	fx_reopen(&f);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 1);
	TT_EQ(W.fe[0].e.attempts, 3);
	TT_OK(SYNC(&f, &W, store_fed_attempt(f.s, s1, w_cb, &W)));
	TT_EQ(W.res.attempts, 4);
	TT_ERR(SYNC(&f, &W, store_fed_attempt(f.s, s1 + 1000, w_cb, &W)),
	    TERN_ENOTFOUND);
	fx_end(&f);
}

TT_CASE(fedq__expire__removes_and_queues_kind_1_notice)
{
	struct fx f;
	struct store_notice n;
	struct ecopy c;
	int64_t alice, bob, keep;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	bob = reg(&f, "bob", 2);
	TT_OK(fenq(&f, "a.test", alice, 1, 10, 2000));
	keep = fseq(&f, "a.test", alice, 2, 10);
	TT_OK(fenq(&f, "b.test", bob, 3, 10, 2000));

	/* Not yet due. */
	TT_OK(SYNC(&f, &W, store_expire(f.s, 1999, w_cb, &W)));
	TT_EQ(W.res.fed_expired, 0);
	TT_EQ(W.res.notices, 0);

	TT_OK(SYNC(&f, &W, store_expire(f.s, 2001, w_cb, &W)));
	TT_EQ(W.res.expired, 0);
	TT_EQ(W.res.fed_expired, 2);
	TT_EQ(W.res.notices, 2);
	TT_EQ(W.res.more, 0);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 1);
	TT_EQ(W.fe[0].e.seq, keep);
	TT_EQ(ffetch(&f, "b.test", 0, 16), 0);

	fetch_notice(&f, alice, 1, &n, &c);
	TT_EQ(n.kind, STORE_NOTICE_EXPIRED);
	TT_EQ(n.ref_env_id[3], 1);
	TT_EQ(n.peer_device, 2);
	TT_MEMEQ(n.peer_addr, "rcpt@a.test", n.peer_len);
	fetch_notice(&f, bob, 1, &n, &c);
	TT_EQ(n.kind, STORE_NOTICE_EXPIRED);
	TT_EQ(n.ref_env_id[3], 3);
	TT_MEMEQ(n.peer_addr, "rcpt@b.test", n.peer_len);
	fx_end(&f);
}

TT_CASE(fedq__expire__shares_the_pass_budget)
{
	struct fx f;
	struct store_config cfg = {.expire_max = 3};
	int64_t alice;
	int i;

	fx_start(&f, &cfg);
	alice = reg(&f, "alice", 1);
	for (i = 0; i < 5; i++)
		TT_OK(fenq(&f, "a.test", alice, i, 10, 2000));
	TT_OK(SYNC(&f, &W, store_expire(f.s, 3000, w_cb, &W)));
	TT_EQ(W.res.fed_expired, 3);
	TT_EQ(W.res.more, 1);
	TT_OK(SYNC(&f, &W, store_expire(f.s, 3000, w_cb, &W)));
	TT_EQ(W.res.fed_expired, 2);
	TT_EQ(W.res.more, 0);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 0);
	fx_end(&f);
}

TT_CASE(fedq__user_delete__entries_stay_and_get_no_notice)
{
	struct fx f;
	int64_t alice, bob;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	bob = reg(&f, "bob", 2);
	TT_OK(fenq(&f, "a.test", bob, 1, 10, 2000));
	TT_OK(fenq(&f, "a.test", alice, 2, 10, 2000));
	TT_OK(SYNC(&f, &W, store_user_delete(f.s, "bob", w_cb, &W)));
	TT_OK(SYNC(&f, &W, store_user_disable(f.s, "alice", w_cb, &W)));
	/* SPEC.md 6.6: what they sent stays queued for its recipients. */
	TT_EQ(ffetch(&f, "a.test", 0, 16), 2);
	TT_EQ(W.fe[0].e.sender_user, bob);
	/* Expiry: a deleted sender has no device left to tell; a disabled
	 * one keeps its devices and its notice (as for local envelopes). */
	TT_OK(SYNC(&f, &W, store_expire(f.s, 3000, w_cb, &W)));
	TT_EQ(W.res.fed_expired, 2);
	TT_EQ(W.res.notices, 1);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 0);
	fx_end(&f);
}

TT_CASE(fedq__enqueue__bound_gives_ebusy)
{
	struct fx f;
	struct store_config cfg = {.fed_queue_max = 3, .fed_queue_bytes = 2500};
	int64_t alice, s1;

	fx_start(&f, &cfg);
	alice = reg(&f, "alice", 1);
	/* Count bound, across domains. */
	s1 = fseq(&f, "a.test", alice, 1, 10);
	(void)fseq(&f, "b.test", alice, 2, 10);
	(void)fseq(&f, "c.test", alice, 3, 10);
	TT_ERR(fenq(&f, "d.test", alice, 4, 10, FAR), TERN_EBUSY);
	TT_ERR(fenq(&f, "a.test", alice, 5, 10, FAR), TERN_EBUSY);
	/* A retry of a queued entry is still answered: it is there. */
	TT_OK(fenq(&f, "a.test", alice, 1, 10, FAR));
	TT_EQ(W.res.duplicate, 1);
	TT_EQ(W.res.seq, s1);
	TT_EQ(ffetch(&f, "d.test", 0, 16), 0);
	/* Room again once one is delivered. */
	TT_OK(SYNC(&f, &W, store_fed_done(f.s, &s1, 1, w_cb, &W)));
	(void)fseq(&f, "d.test", alice, 4, 10);
	TT_ERR(fenq(&f, "d.test", alice, 6, 10, FAR), TERN_EBUSY);
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, NULL, w_cb, &W)));
	TT_EQ(W.ndom, 3); /* b, c, d: a is empty */
	fx_end(&f);

	/* Byte bound: 2 x 1000 fit in 2500, a third does not. */
	cfg.fed_queue_max = 0;
	fx_start(&f, &cfg);
	alice = reg(&f, "alice", 1);
	(void)fseq(&f, "a.test", alice, 1, 1000);
	(void)fseq(&f, "a.test", alice, 2, 1000);
	TT_ERR(fenq(&f, "a.test", alice, 3, 1000, FAR), TERN_EBUSY);
	(void)fseq(&f, "a.test", alice, 4, 500);
	TT_ERR(fenq(&f, "a.test", alice, 5, 1, FAR), TERN_EBUSY);
	fx_end(&f);
}

TT_CASE(fedq__enqueue__disk_full_edisk_recovers)
{
	struct fx f;
	struct store_config cfg = {.max_page_count = 64};
	int64_t alice, seqs[STORE_FED_DONE_MAX];
	int stored = 0, err = 0, i, n;

	fx_start(&f, &cfg);
	alice = reg(&f, "alice", 1);
	/* 64 pages of 4 KiB cannot hold 100 entries of 8000 bytes. */
	for (i = 0; i < 100 && err == 0; i++) {
		err = fenq(&f, "a.test", alice, i, 8000, FAR);
		if (err == 0)
			seqs[stored++] = W.res.seq;
	}
	TT_ERR(err, TERN_EDISK);
	TT_ASSERT(stored > 0);
	/* Still full, and the store keeps answering. */
	TT_ERR(fenq(&f, "a.test", alice, 1000, 8000, FAR), TERN_EDISK);
	TT_EQ(ffetch(&f, "a.test", 0, 64), (size_t)stored);
	/* Delivering frees room: writes succeed again. */
	n = stored / 2;
	TT_OK(SYNC(&f, &W, store_fed_done(f.s, seqs, (size_t)n, w_cb, &W)));
	TT_EQ(W.res.fed_deleted, (uint32_t)n);
	TT_OK(fenq(&f, "a.test", alice, 2000, 8000, FAR));
	/* Nothing reported durable was lost, nothing failed was stored. */
	fx_close(&f);
	f.cfg.max_page_count = 0;
	fx_open(&f);
	TT_EQ(ffetch(&f, "a.test", 0, 64), (size_t)(stored - n + 1));
	for (i = 0; i < (int)W.nfe; i++)
		TT_ASSERT((id_of(&W.fe[i]) >= n && id_of(&W.fe[i]) < stored) ||
		    id_of(&W.fe[i]) == 2000);
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, NULL, w_cb, &W)));
	TT_EQ(W.ndom, 1);
	TT_EQ(W.dom[0].count, (uint64_t)(stored - n + 1));
	TT_EQ(W.dom[0].bytes, (uint64_t)(stored - n + 1) * 8000);
	fx_end(&f);
}

TT_CASE(fedq__store__survives_reopen_and_never_reuses_seq)
{
	struct fx f;
	struct store_stats st;
	int64_t alice, seq[3], last;
	int i;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	for (i = 0; i < 3; i++)
		seq[i] = fseq(&f, "a.test", alice, i, 300);
	fx_reopen(&f);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 3);
	for (i = 0; i < 3; i++) {
		TT_EQ(W.fe[i].e.seq, seq[i]);
		TT_EQ(id_of(&W.fe[i]), i);
		TT_EQ(W.fe[i].e.payload_len, 300);
		TT_ASSERT(strcmp(W.fe[i].from, "alice@" DOMAIN) == 0);
	}
	/* Deliver the newest and restart: its seq is not given again, so a
	 * link paging with "seq > after" cannot skip a new entry. */
	last = seq[2];
	TT_OK(SYNC(&f, &W, store_fed_done(f.s, &last, 1, w_cb, &W)));
	fx_reopen(&f);
	TT_ASSERT(fseq(&f, "a.test", alice, 10, 1) > last);
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, NULL, w_cb, &W)));
	TT_EQ(W.ndom, 1);
	TT_EQ(W.dom[0].count, 3);
	TT_EQ(W.dom[0].bytes, 601);
	/* Counted apart from the local queue (and no user's quota). */
	TT_OK(store_stats(f.s, &st));
	TT_EQ(st.fed_queued, 3);
	TT_EQ(st.fed_queued_bytes, 601);
	TT_EQ(st.queued, 0);
	fx_end(&f);
}

TT_CASE(fedq__domains__counts_in_name_order_and_pages)
{
	enum { N = STORE_FED_DOMAINS_MAX + 44 };
	struct fx f;
	char name[32], last[STORE_DOMAIN_MAX + 1];
	int64_t alice;
	int i, total;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, NULL, w_cb, &W)));
	TT_EQ(W.ndom, 0);
	TT_EQ(W.res.more, 0);
	/* Many at once: one group commit, not N round trips. */
	{
		struct store_fed_in e;
		char to[STORE_ADDR_MAX + 1];
		struct w *many = calloc(N, sizeof(*many));
		TT_ASSERT(many != NULL);
		for (i = 0; i < N; i++) {
			snprintf(name, sizeof(name), "d%03d.test", i);
			fed_make(&e, to, sizeof(to), name, alice, i,
			    (size_t)(i % 7), FAR);
			TT_OK(store_fed_enqueue(f.s, &e, w_cb, &many[i]));
		}
		uv_run(&f.loop, UV_RUN_DEFAULT);
		for (i = 0; i < N; i++) {
			TT_EQ(many[i].called, 1);
			TT_OK(many[i].status);
		}
		free(many);
	}
	/* And a second entry for d007. */
	(void)fseq(&f, "d007.test", alice, 9999, 100);

	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, NULL, w_cb, &W)));
	TT_EQ(W.ndom, STORE_FED_DOMAINS_MAX);
	TT_EQ(W.res.more, 1);
	TT_ASSERT(strcmp(W.dom[0].name, "d000.test") == 0);
	TT_EQ(W.dom[0].count, 1);
	TT_EQ(W.dom[0].bytes, 0);
	TT_ASSERT(strcmp(W.dom[7].name, "d007.test") == 0);
	TT_EQ(W.dom[7].count, 2);
	TT_EQ(W.dom[7].bytes, 100);
	TT_EQ(W.dom[13].bytes, 6);
	for (i = 1; i < (int)W.ndom; i++)
		TT_ASSERT(strcmp(W.dom[i - 1].name, W.dom[i].name) < 0);
	total = (int)W.ndom;
	memcpy(last, W.dom[STORE_FED_DOMAINS_MAX - 1].name, sizeof(last));
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, last, w_cb, &W)));
	TT_EQ(W.ndom, 44);
	TT_EQ(W.res.more, 0);
	TT_ASSERT(strcmp(W.dom[0].name, last) > 0);
	total += (int)W.ndom;
	TT_EQ(total, N);
	fx_end(&f);
}

TT_CASE(fedq__enqueue__group_commit)
{
	enum { N = 2000 };
	struct fx f;
	struct store_fed_in e;
	struct store_stats st;
	char to[STORE_ADDR_MAX + 1];
	int64_t alice;
	uint64_t commits0;
	int i;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	store_counters(f.s, &st);
	commits0 = st.commits;
	for (i = 0; i < N; i++) {
		fed_make(&e, to, sizeof(to), "a.test", alice, i, 100, FAR);
		TT_OK(store_fed_enqueue(f.s, &e, NULL, NULL));
	}
	TT_EQ(store_pending(f.s), N);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_EQ(store_pending(f.s), 0);
	store_counters(f.s, &st);
	/* Batched: far fewer transactions than entries. */
	TT_ASSERT(st.commits - commits0 < N / 4);
	TT_OK(SYNC(&f, &W, store_fed_domains(f.s, NULL, w_cb, &W)));
	TT_EQ(W.dom[0].count, N);
	fx_end(&f);
}

TT_CASE(fedq__store__migrates_a_version_2_database)
{
	struct fx f;
	sqlite3 *db;
	sqlite3_stmt *st;
	int64_t alice;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	fx_close(&f);
	/* What a version-2 file looks like: none of version 3's tables. */
	TT_EQ(sqlite3_open(f.path, &db), SQLITE_OK);
	TT_EQ(sqlite3_exec(db, "DROP TABLE fed_queue; DROP TABLE fed_usage; "
	    "DROP TABLE fed_total; DROP TABLE peer_keys; "
	    "PRAGMA user_version = 2;", NULL, NULL, NULL),
	    SQLITE_OK);
	TT_EQ(sqlite3_close(db), SQLITE_OK);

	fx_open(&f);
	(void)fseq(&f, "a.test", alice, 1, 10);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 1);
	fx_close(&f);

	TT_EQ(sqlite3_open(f.path, &db), SQLITE_OK);
	TT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
	    SQLITE_OK);
	TT_EQ(sqlite3_step(st), SQLITE_ROW);
	TT_EQ(sqlite3_column_int(st, 0), 6);
	sqlite3_finalize(st);
	TT_EQ(sqlite3_close(db), SQLITE_OK);
	fx_end(&f);
}

/* An entry this node relays for another domain (SPEC.md 13.5): no local
 * sender, the origin's signature kept and fetched back; refusing it
 * queues no notice; unsigned entries need a sender, signed ones none. */
TT_CASE(fedq__relayed__signature_kept_no_sender_no_notice)
{
	struct fx f;
	struct store_fed_in e;
	char to[STORE_ADDR_MAX + 1];
	uint8_t sig[STORE_FED_SIG_LEN];
	int64_t alice, s1, s2;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	memset(sig, 0x77, sizeof(sig));
	fed_make(&e, to, sizeof(to), "b.test", 0, 1, 20, FAR);
	e.sender_addr = "carol@o.test";
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	e.sig = sig;
	TT_OK(SYNC(&f, &W, store_fed_enqueue(f.s, &e, w_cb, &W)));
	s1 = W.res.seq;
	e.sender_user = alice; /* signed and with a local sender: no */
	TT_ERR(store_fed_enqueue(f.s, &e, w_cb, &W), TERN_EINVAL);
	s2 = fseq(&f, "b.test", alice, 2, 20);
	TT_EQ(ffetch(&f, "b.test", 0, 16), 2);
	TT_EQ(W.fe[0].e.seq, s1);
	TT_ASSERT(W.fe[0].e.has_sig);
	TT_MEMEQ(W.fe[0].e.sig, sig, STORE_FED_SIG_LEN);
	TT_EQ(W.fe[0].e.sender_user, 0);
	TT_ASSERT(strcmp(W.fe[0].from, "carol@o.test") == 0);
	TT_EQ(W.fe[1].e.seq, s2);
	TT_ASSERT(!W.fe[1].e.has_sig);
	TT_OK(SYNC(&f, &W, store_fed_refuse(f.s, s1, STORE_NOTICE_REFUSED,
	    w_cb, &W)));
	TT_EQ(W.res.notices, 0);
	TT_EQ(W.res.notice_device, 0);
	TT_EQ(ffetch(&f, "b.test", 0, 16), 1);
	/* Kept over a reopen, and counted like any entry. */
	fed_make(&e, to, sizeof(to), "b.test", 0, 3, 20, FAR);
	e.sig = sig;
	TT_OK(SYNC(&f, &W, store_fed_enqueue(f.s, &e, w_cb, &W)));
	fx_reopen(&f);
	TT_EQ(ffetch(&f, "b.test", 0, 16), 2);
	TT_ASSERT(W.fe[1].e.has_sig);
	fx_end(&f);
}

/* Version 4 to 5 rebuilds the queue: entries, their seqs and the seq
 * high mark survive (a deleted last entry's seq is not reused). */
TT_CASE(fedq__store__migrates_a_version_4_queue)
{
	struct fx f;
	sqlite3 *db;
	int64_t alice, s1, s2, s3;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	s1 = fseq(&f, "a.test", alice, 1, 10);
	s2 = fseq(&f, "a.test", alice, 2, 10);
	TT_OK(SYNC(&f, &W, store_fed_done(f.s, &s2, 1, w_cb, &W)));
	fx_close(&f);
	/* Back to version 4's table: sender_user NOT NULL, no sig. */
	TT_EQ(sqlite3_open(f.path, &db), SQLITE_OK);
	TT_EQ(sqlite3_exec(db, "BEGIN;"
	    "CREATE TABLE q4(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	    " dest_domain TEXT NOT NULL, env_id BLOB NOT NULL, to_addr TEXT "
	    " NOT NULL, to_device INTEGER NOT NULL, class INTEGER NOT NULL,"
	    " sender_user INTEGER NOT NULL REFERENCES users(id), sender_addr "
	    " TEXT NOT NULL, sender_device INTEGER NOT NULL, sent_ms INTEGER "
	    " NOT NULL, received_ms INTEGER NOT NULL, expires_ms INTEGER NOT "
	    " NULL, attempts INTEGER NOT NULL DEFAULT 0, payload BLOB NOT "
	    " NULL);"
	    "INSERT INTO sqlite_sequence(name, seq) SELECT 'q4', seq "
	    " FROM sqlite_sequence WHERE name = 'fed_queue';"
	    "INSERT INTO q4 SELECT seq, dest_domain, env_id, to_addr, "
	    " to_device, class, sender_user, sender_addr, sender_device, "
	    " sent_ms, received_ms, expires_ms, attempts, payload "
	    " FROM fed_queue;"
	    "DROP TABLE fed_queue; ALTER TABLE q4 RENAME TO fed_queue;"
	    "CREATE UNIQUE INDEX fed_queue_by_id"
	    " ON fed_queue(env_id, to_addr, to_device);"
	    "CREATE INDEX fed_queue_by_domain ON fed_queue(dest_domain, seq);"
	    "CREATE INDEX fed_queue_by_expiry ON fed_queue(expires_ms);"
	    "PRAGMA user_version = 4; COMMIT;", NULL, NULL, NULL), SQLITE_OK);
	TT_EQ(sqlite3_close(db), SQLITE_OK);

	fx_open(&f);
	TT_EQ(ffetch(&f, "a.test", 0, 16), 1);
	TT_EQ(W.fe[0].e.seq, s1);
	TT_ASSERT(!W.fe[0].e.has_sig);
	s3 = fseq(&f, "a.test", alice, 3, 10);
	TT_ASSERT(s3 > s2);
	fx_end(&f);
}

/* Federation keys remembered for other domains (SPEC.md 13.4): most
 * recently seen first, 8 per domain at most, kept over a reopen. */
TT_CASE(fedq__peer_keys__saved_trimmed_and_kept)
{
	uint8_t k[12][32], got[16][32];
	struct fx f;
	size_t n, i;

	fx_start(&f, NULL);
	TT_OK(store_peer_keys_load(f.s, "a.test", got, 16, &n));
	TT_EQ(n, 0);
	for (i = 0; i < 12; i++) {
		memset(k[i], (int)i + 1, 32);
		TT_OK(SYNC(&f, &W, store_peer_key_save(f.s, "a.test", k[i],
		    (int64_t)(1000 + i), w_cb, &W)));
	}
	/* Seeing an old key again makes it recent. */
	TT_OK(SYNC(&f, &W, store_peer_key_save(f.s, "a.test", k[11], 5000,
	    w_cb, &W)));
	TT_OK(SYNC(&f, &W, store_peer_key_save(f.s, "b.test", k[0], 1, w_cb,
	    &W)));
	fx_reopen(&f);
	TT_OK(store_peer_keys_load(f.s, "a.test", got, 16, &n));
	TT_EQ(n, 8);
	TT_ASSERT(memcmp(got[0], k[11], 32) == 0);
	TT_ASSERT(memcmp(got[1], k[10], 32) == 0);
	TT_ASSERT(memcmp(got[7], k[4], 32) == 0);
	TT_OK(store_peer_keys_load(f.s, "b.test", got, 16, &n));
	TT_EQ(n, 1);
	TT_OK(store_peer_keys_load(f.s, "a.test", got, 2, &n));
	TT_EQ(n, 2);
	TT_ERR(store_peer_keys_load(f.s, "", got, 2, &n), TERN_EINVAL);
	TT_ERR(store_peer_key_save(f.s, "", k[0], 1, NULL, NULL), TERN_EINVAL);
	fx_end(&f);
}
