/*
 * test_store.c: the store (node/store.h) against a real SQLite file and a
 * real libuv loop. Every case makes its database in a fresh mkdtemp
 * directory under /tmp, removes it at the end, and asserts that the loop
 * closes with no handle left open.
 */
#define _GNU_SOURCE /* unshare(), CLONE_NEWNS for the tmpfs case */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>
#include <uv.h>

#include "store.h"
#include "tt.h"

#define DOMAIN "example.org"

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
fx_dir(struct fx *f)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-store-XXXXXX");
	TT_ASSERT(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/node.db", f->dir);
	TT_EQ(uv_loop_init(&f->loop), 0);
	f->cfg.path = f->path;
	f->cfg.domain = DOMAIN;
	f->cfg.durability = STORE_DURABILITY_FULL;
}

static void
fx_open(struct fx *f)
{
	TT_OK(store_open(&f->s, &f->loop, &f->cfg));
}

/* fx_start: a fresh directory, a new database, the store open. */
static void
fx_start(struct fx *f, const struct store_config *cfg)
{
	fx_dir(f);
	if (cfg != NULL) {
		f->cfg = *cfg;
		f->cfg.path = f->path;
		if (f->cfg.domain == NULL)
			f->cfg.domain = DOMAIN;
	}
	TT_OK(store_create(f->path));
	fx_open(f);
}

static void
fx_closed_cb(void *arg)
{
	struct fx *f = arg;

	f->closed++;
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

struct fetched {
	int64_t seq;
	uint8_t env_id[STORE_ENV_ID_LEN];
	uint8_t cls;
	char sender[STORE_ADDR_MAX + 1];
	uint32_t sender_device;
	int64_t expires_ms;
	uint8_t payload[STORE_NOTICE_HDR_LEN + 256];
	size_t payload_len;
};

struct w {
	int called;                         /* times the callback ran */
	int status;
	struct store_result res;            /* envs cleared: borrowed */
	struct fetched env[64];             /* fetch: copies */
	size_t n;
};

static void
w_cb(void *arg, int status, const struct store_result *res)
{
	struct w *w = arg;
	size_t i;

	TT_ASSERT(res != NULL);
	w->called++;
	w->status = status;
	w->res = *res;
	w->res.envs = NULL;
	w->n = 0;
	for (i = 0; i < res->n_envs && i < 64; i++) {
		const struct store_env *e = &res->envs[i];
		struct fetched *c = &w->env[w->n++];
		c->seq = e->seq;
		memcpy(c->env_id, e->env_id, STORE_ENV_ID_LEN);
		c->cls = e->cls;
		snprintf(c->sender, sizeof(c->sender), "%s", e->sender_addr);
		c->sender_device = e->sender_device;
		c->expires_ms = e->expires_ms;
		c->payload_len = e->payload_len;
		memcpy(c->payload, e->payload,
		    e->payload_len < sizeof(c->payload) ? e->payload_len :
		    sizeof(c->payload));
	}
}

static struct w *
w_reset(struct w *w)
{
	memset(w, 0, sizeof(*w));
	return w;
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

/* SYNC(f, w, call): submit (must be accepted), run, give the status. */
#define SYNC(f, w, call) (w_reset(w), wait_((f), (w), (call)))

static void
key_of(uint8_t key[STORE_KEY_LEN], int i)
{
	memset(key, i, STORE_KEY_LEN);
}

/* reg registers name (open registration) with key_of(k); returns its id. */
static int64_t
reg(struct fx *f, const char *name, int k)
{
	uint8_t key[STORE_KEY_LEN];
	struct w w;

	key_of(key, k);
	TT_OK(SYNC(f, &w, store_register(f->s, name, NULL, key, "phone", 1000,
	    w_cb, &w)));
	TT_EQ(w.res.device_id, 1);
	TT_ASSERT(w.res.user_id > 0);
	return w.res.user_id;
}

static void
env_make(struct store_env_in *e, int64_t user, uint32_t dev, int id,
    const uint8_t *payload, size_t len)
{
	memset(e, 0, sizeof(*e));
	e->rcpt_user = user;
	e->rcpt_device = dev;
	memset(e->env_id, 0, STORE_ENV_ID_LEN);
	e->env_id[0] = (uint8_t)(id >> 24);
	e->env_id[1] = (uint8_t)(id >> 16);
	e->env_id[2] = (uint8_t)(id >> 8);
	e->env_id[3] = (uint8_t)id;
	e->cls = STORE_CLASS_MESSAGE;
	e->sender_addr = "carol@remote.example";
	e->sender_user = 0;
	e->sender_device = 7;
	e->sent_ms = 5000 + id;
	e->received_ms = 6000 + id;
	e->expires_ms = INT64_C(1) << 50;
	e->payload = payload;
	e->payload_len = len;
}

static int
enqueue(struct fx *f, int64_t user, uint32_t dev, int id, size_t len,
    struct w *w)
{
	static uint8_t payload[STORE_PAYLOAD_MAX];
	struct store_env_in e;

	memset(payload, id & 0xff, len);
	env_make(&e, user, dev, id, payload, len);
	return SYNC(f, w, store_enqueue(f->s, &e, w_cb, w));
}

static size_t
fetch_all(struct fx *f, int64_t user, uint32_t dev, struct w *w)
{
	TT_OK(SYNC(f, w, store_fetch(f->s, user, dev, 0, 64, w_cb, w)));
	return w->n;
}

static uint64_t
queued_of(struct fx *f, int64_t user)
{
	uint64_t n, bytes;

	TT_OK(store_queue_usage(f->s, user, &n, &bytes));
	return n;
}

/* --- Lifecycle ------------------------------------------------------------ */

TT_CASE(store__create__refuses_existing)
{
	struct fx f;
	int fd;

	fx_dir(&f);
	TT_OK(store_create(f.path));
	TT_ERR(store_create(f.path), TERN_EEXIST);
	fx_open(&f);
	fx_close(&f);
	TT_ERR(store_create(f.path), TERN_EEXIST);

	/* Any file at all, even an empty one. */
	snprintf(f.path, sizeof(f.path), "%s/other.db", f.dir);
	fd = open(f.path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	TT_ASSERT(fd >= 0);
	close(fd);
	TT_ERR(store_create(f.path), TERN_EEXIST);
	fx_end(&f);
}

TT_CASE(store__open__missing_file_and_second_open)
{
	struct fx f;
	struct store *second;
	int fd;

	fx_dir(&f);
	TT_ERR(store_open(&f.s, &f.loop, &f.cfg), TERN_ENOTFOUND);
	TT_ASSERT(f.s == NULL);
	TT_OK(store_create(f.path));
	fx_open(&f);
	/* One writer per file: a second store on it is refused. */
	TT_ERR(store_open(&second, &f.loop, &f.cfg), TERN_EBUSY);
	fx_close(&f);

	/* Something that is not a tern database. */
	snprintf(f.path, sizeof(f.path), "%s/junk.db", f.dir);
	fd = open(f.path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	TT_ASSERT(fd >= 0);
	TT_EQ(write(fd, "this is not sqlite, not at all, no.........", 44), 44);
	close(fd);
	TT_ERR(store_open(&f.s, &f.loop, &f.cfg), TERN_ECONFIG);
	f.s = NULL;
	fx_end(&f);
}

/* --- Registration --------------------------------------------------------- */

TT_CASE(store__register__invite_ok_then_reused_denied)
{
	struct fx f;
	uint8_t hash[STORE_INVITE_HASH_LEN], key[STORE_KEY_LEN];
	struct store_user_info u;
	struct w w;

	fx_start(&f, NULL);
	memset(hash, 0xab, sizeof(hash));
	TT_OK(SYNC(&f, &w, store_invite_add(f.s, hash, 100000, 1000, w_cb, &w)));
	TT_ERR(SYNC(&f, &w, store_invite_add(f.s, hash, 100000, 1000, w_cb,
	    &w)), TERN_EEXIST);

	key_of(key, 1);
	TT_OK(SYNC(&f, &w, store_register(f.s, "alice", hash, key, "phone",
	    2000, w_cb, &w)));
	TT_EQ(w.res.device_id, 1);
	TT_OK(store_user_lookup(f.s, "alice", &u));
	TT_EQ(u.user_id, w.res.user_id);
	TT_EQ(u.state, STORE_USER_ACTIVE);
	TT_EQ(u.devices, 1);

	/* The same invite again, for another name: used. */
	key_of(key, 2);
	TT_ERR(SYNC(&f, &w, store_register(f.s, "bob", hash, key, "phone",
	    3000, w_cb, &w)), TERN_EDENIED);
	TT_ERR(store_user_lookup(f.s, "bob", &u), TERN_ENOUSER);

	/* An invite nobody made. */
	memset(hash, 0xcd, sizeof(hash));
	TT_ERR(SYNC(&f, &w, store_register(f.s, "bob", hash, key, "phone",
	    3000, w_cb, &w)), TERN_EDENIED);
	fx_end(&f);
}

TT_CASE(store__register__invite_expired_denied)
{
	struct fx f;
	uint8_t hash[STORE_INVITE_HASH_LEN], key[STORE_KEY_LEN];
	struct w w;

	fx_start(&f, NULL);
	memset(hash, 0x11, sizeof(hash));
	key_of(key, 1);
	TT_OK(SYNC(&f, &w, store_invite_add(f.s, hash, 5000, 1000, w_cb, &w)));
	TT_ERR(SYNC(&f, &w, store_register(f.s, "alice", hash, key, "phone",
	    5000, w_cb, &w)), TERN_EDENIED);
	TT_ERR(SYNC(&f, &w, store_register(f.s, "alice", hash, key, "phone",
	    9000, w_cb, &w)), TERN_EDENIED);
	/* Before the expiry it works (and the failures consumed nothing). */
	TT_OK(SYNC(&f, &w, store_register(f.s, "alice", hash, key, "phone",
	    4999, w_cb, &w)));
	fx_end(&f);
}

TT_CASE(store__register__invite_kept_when_name_taken)
{
	struct fx f;
	uint8_t hash[STORE_INVITE_HASH_LEN], key[STORE_KEY_LEN];
	struct w w;

	fx_start(&f, NULL);
	reg(&f, "alice", 1);
	memset(hash, 0x22, sizeof(hash));
	TT_OK(SYNC(&f, &w, store_invite_add(f.s, hash, 100000, 1000, w_cb, &w)));
	key_of(key, 2);
	TT_ERR(SYNC(&f, &w, store_register(f.s, "alice", hash, key, "phone",
	    2000, w_cb, &w)), TERN_EEXIST);
	/* The failed request was rolled back: the invite is still good. */
	TT_OK(SYNC(&f, &w, store_register(f.s, "bob", hash, key, "phone",
	    2000, w_cb, &w)));
	fx_end(&f);
}

TT_CASE(store__register__open_and_duplicates)
{
	struct fx f;
	uint8_t key[STORE_KEY_LEN], got[STORE_KEY_LEN];
	struct store_device_info d;
	struct w w;
	int64_t alice;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	key_of(key, 2);
	TT_ERR(SYNC(&f, &w, store_register(f.s, "alice", NULL, key, "phone",
	    1000, w_cb, &w)), TERN_EEXIST);
	key_of(key, 1);
	TT_ERR(SYNC(&f, &w, store_register(f.s, "bob", NULL, key, "phone",
	    1000, w_cb, &w)), TERN_EKEY);

	TT_OK(store_device_lookup(f.s, "alice", 1, got));
	TT_MEMEQ(got, key, STORE_KEY_LEN);
	TT_ERR(store_device_lookup(f.s, "alice", 2, got), TERN_ENOUSER);
	TT_ERR(store_device_lookup(f.s, "nobody", 1, got), TERN_ENOUSER);
	TT_OK(store_device_by_key(f.s, key, &d));
	TT_EQ(d.user_id, alice);
	TT_EQ(d.device_id, 1);
	TT_ASSERT(strcmp(d.user_name, "alice") == 0);
	TT_ASSERT(strcmp(d.name, "phone") == 0);
	key_of(key, 9);
	TT_ERR(store_device_by_key(f.s, key, &d), TERN_ENOUSER);

	/* Synchronous argument errors: the callback is never called. */
	memset(&w, 0, sizeof(w));
	TT_ERR(store_register(f.s, "", NULL, key, "x", 1, w_cb, &w), TERN_EINVAL);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_EQ(w.called, 0);
	fx_end(&f);
}

TT_CASE(store__register__name_reuse_after_delete_refused)
{
	struct fx f;
	uint8_t key[STORE_KEY_LEN];
	struct store_user_info u;
	struct w w;
	int64_t alice, bob;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	bob = reg(&f, "bob", 2);
	TT_OK(SYNC(&f, &w, store_contact_add(f.s, alice, "bob@" DOMAIN, 1, w_cb,
	    &w)));
	TT_OK(enqueue(&f, alice, 1, 1, 100, &w));
	TT_OK(enqueue(&f, bob, 1, 1, 100, &w));

	TT_OK(SYNC(&f, &w, store_user_delete(f.s, "alice", w_cb, &w)));
	TT_EQ(w.res.user_id, alice);
	TT_ERR(store_user_lookup(f.s, "alice", &u), TERN_ENOUSER);
	TT_ERR(store_contact_has(f.s, alice, "bob@" DOMAIN), TERN_ENOTFOUND);
	TT_EQ(queued_of(&f, alice), 0);
	TT_EQ(queued_of(&f, bob), 1);
	TT_ERR(SYNC(&f, &w, store_user_delete(f.s, "alice", w_cb, &w)),
	    TERN_ENOUSER);

	/* The name stays taken; the old key is free again. */
	key_of(key, 1);
	TT_ERR(SYNC(&f, &w, store_register(f.s, "alice", NULL, key, "phone",
	    1000, w_cb, &w)), TERN_EEXIST);
	TT_ERR(enqueue(&f, alice, 1, 2, 100, &w), TERN_ENOUSER);
	TT_OK(SYNC(&f, &w, store_register(f.s, "alice2", NULL, key, "phone",
	    1000, w_cb, &w)));

	/* Disabled: name kept, logins and deliveries refused. */
	TT_OK(SYNC(&f, &w, store_user_disable(f.s, "bob", w_cb, &w)));
	TT_OK(store_user_lookup(f.s, "bob", &u));
	TT_EQ(u.state, STORE_USER_DISABLED);
	key_of(key, 2);
	TT_ERR(store_device_lookup(f.s, "bob", 1, key), TERN_EDENIED);
	TT_ERR(enqueue(&f, bob, 1, 2, 100, &w), TERN_EDENIED);
	TT_EQ(queued_of(&f, bob), 1);
	key_of(key, 3);
	TT_ERR(SYNC(&f, &w, store_register(f.s, "bob", NULL, key, "phone",
	    1000, w_cb, &w)), TERN_EEXIST);
	fx_end(&f);
}

TT_CASE(store__device_add__numbers_never_reused_keys_unique)
{
	struct fx f;
	struct store_device_info devs[8];
	uint8_t key[STORE_KEY_LEN];
	struct w w;
	int64_t alice;
	size_t n;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	key_of(key, 2);
	TT_OK(SYNC(&f, &w, store_device_add(f.s, alice, key, "laptop", 1, w_cb,
	    &w)));
	TT_EQ(w.res.device_id, 2);
	key_of(key, 3);
	TT_OK(SYNC(&f, &w, store_device_add(f.s, alice, key, "tablet", 1, w_cb,
	    &w)));
	TT_EQ(w.res.device_id, 3);
	/* A key already in use, by this user or anyone. */
	TT_ERR(SYNC(&f, &w, store_device_add(f.s, alice, key, "x", 1, w_cb,
	    &w)), TERN_EKEY);
	reg(&f, "bob", 4);
	key_of(key, 4);
	TT_ERR(SYNC(&f, &w, store_device_add(f.s, alice, key, "x", 1, w_cb,
	    &w)), TERN_EKEY);
	TT_ERR(SYNC(&f, &w, store_device_add(f.s, 999, key, "x", 1, w_cb,
	    &w)), TERN_ENOUSER);

	/* Remove 3; the next device is 4, not 3 again. */
	TT_OK(enqueue(&f, alice, 3, 1, 10, &w));
	TT_OK(SYNC(&f, &w, store_device_remove(f.s, alice, 3, w_cb, &w)));
	TT_EQ(queued_of(&f, alice), 0);
	TT_ERR(SYNC(&f, &w, store_device_remove(f.s, alice, 3, w_cb, &w)),
	    TERN_ENOUSER);
	key_of(key, 5);
	TT_OK(SYNC(&f, &w, store_device_add(f.s, alice, key, "watch", 1, w_cb,
	    &w)));
	TT_EQ(w.res.device_id, 4);

	TT_OK(store_device_list(f.s, alice, devs, 8, &n));
	TT_EQ(n, 3);
	TT_EQ(devs[0].device_id, 1);
	TT_EQ(devs[1].device_id, 2);
	TT_EQ(devs[2].device_id, 4);
	TT_ASSERT(strcmp(devs[2].name, "watch") == 0);
	fx_end(&f);
}

TT_CASE(store__device_add__cap)
{
	struct fx f;
	struct store_config cfg = {.devices_max = 3};
	uint8_t key[STORE_KEY_LEN];
	struct w w;
	int64_t alice;

	fx_start(&f, &cfg);
	alice = reg(&f, "alice", 1);
	for (int i = 2; i <= 3; i++) {
		key_of(key, i);
		TT_OK(SYNC(&f, &w, store_device_add(f.s, alice, key, "d", 1, w_cb,
		    &w)));
	}
	key_of(key, 4);
	TT_ERR(SYNC(&f, &w, store_device_add(f.s, alice, key, "d", 1, w_cb,
	    &w)), TERN_EQUOTA);
	fx_end(&f);
}

/* --- The queue ------------------------------------------------------------ */

TT_CASE(store__enqueue__fetch_in_order)
{
	struct fx f;
	struct w w;
	int64_t bob;
	int64_t seq[5];
	int i;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	/* Ids deliberately out of order: delivery follows receipt. */
	for (i = 0; i < 5; i++) {
		TT_OK(enqueue(&f, bob, 1, 50 - i, 10 + (size_t)i, &w));
		TT_EQ(w.res.duplicate, 0);
		seq[i] = w.res.seq;
		if (i > 0)
			TT_ASSERT(seq[i] > seq[i - 1]);
	}
	TT_EQ(fetch_all(&f, bob, 1, &w), 5);
	TT_EQ(w.res.more, 0);
	for (i = 0; i < 5; i++) {
		TT_EQ(w.env[i].seq, seq[i]);
		TT_EQ(w.env[i].env_id[3], 50 - i);
		TT_EQ(w.env[i].payload_len, 10 + i);
		TT_EQ(w.env[i].payload[0], 50 - i);
		TT_ASSERT(strcmp(w.env[i].sender, "carol@remote.example") == 0);
		TT_EQ(w.env[i].sender_device, 7);
	}
	/* Paging: after the second, two at a time. */
	TT_OK(SYNC(&f, &w, store_fetch(f.s, bob, 1, seq[1], 2, w_cb, &w)));
	TT_EQ(w.n, 2);
	TT_EQ(w.res.more, 1);
	TT_EQ(w.env[0].seq, seq[2]);
	TT_EQ(w.env[1].seq, seq[3]);
	/* Another device of the same user has its own queue. */
	TT_OK(SYNC(&f, &w, store_fetch(f.s, bob, 2, 0, 10, w_cb, &w)));
	TT_EQ(w.n, 0);
	/* No such device: refused, nothing stored. */
	TT_ERR(enqueue(&f, bob, 2, 99, 10, &w), TERN_ENOUSER);
	TT_EQ(queued_of(&f, bob), 5);
	fx_end(&f);
}

TT_CASE(store__enqueue__duplicate_id_one_copy)
{
	struct fx f;
	struct w w;
	int64_t bob, first;
	uint64_t n, bytes;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	TT_OK(enqueue(&f, bob, 1, 7, 100, &w));
	TT_EQ(w.res.duplicate, 0);
	first = w.res.seq;
	TT_OK(enqueue(&f, bob, 1, 7, 100, &w));
	TT_EQ(w.res.duplicate, 1);
	TT_EQ(w.res.seq, first);
	TT_EQ(fetch_all(&f, bob, 1, &w), 1);
	TT_OK(store_queue_usage(f.s, bob, &n, &bytes));
	TT_EQ(n, 1);
	TT_EQ(bytes, 100);

	/* Same id in one batch: still one copy. */
	{
		static uint8_t p[10];
		struct store_env_in e;
		struct w a, b;
		env_make(&e, bob, 1, 8, p, sizeof(p));
		memset(&a, 0, sizeof(a));
		memset(&b, 0, sizeof(b));
		TT_OK(store_enqueue(f.s, &e, w_cb, &a));
		TT_OK(store_enqueue(f.s, &e, w_cb, &b));
		uv_run(&f.loop, UV_RUN_DEFAULT);
		TT_EQ(a.status, 0);
		TT_EQ(b.status, 0);
		TT_EQ(a.res.duplicate + b.res.duplicate, 1);
		TT_EQ(a.res.seq, b.res.seq);
	}
	TT_EQ(fetch_all(&f, bob, 1, &w), 2);
	fx_end(&f);
}

TT_CASE(store__enqueue__quota_count)
{
	struct fx f;
	struct store_config cfg = {.quota_count = 3};
	struct w w;
	int64_t bob, carol;
	int i;

	fx_start(&f, &cfg);
	bob = reg(&f, "bob", 1);
	carol = reg(&f, "carol", 2);
	for (i = 0; i < 3; i++)
		TT_OK(enqueue(&f, bob, 1, i, 10, &w));
	TT_ERR(enqueue(&f, bob, 1, 3, 10, &w), TERN_EQUOTA);
	TT_EQ(fetch_all(&f, bob, 1, &w), 3);
	TT_EQ(queued_of(&f, bob), 3);
	/* A retry of a stored one is still reported as stored. */
	TT_OK(enqueue(&f, bob, 1, 2, 10, &w));
	TT_EQ(w.res.duplicate, 1);
	/* Others are not affected. */
	TT_OK(enqueue(&f, carol, 1, 3, 10, &w));
	/* An ack makes room. */
	TT_OK(SYNC(&f, &w, store_ack(f.s, bob, 1, (const uint8_t[16]){0}, w_cb,
	    &w)));
	TT_OK(enqueue(&f, bob, 1, 3, 10, &w));
	TT_EQ(queued_of(&f, bob), 3);
	fx_end(&f);
}

TT_CASE(store__enqueue__quota_bytes)
{
	struct fx f;
	struct store_config cfg = {.quota_bytes = 1000};
	struct w w;
	int64_t bob;
	uint64_t n, bytes;

	fx_start(&f, &cfg);
	bob = reg(&f, "bob", 1);
	TT_OK(enqueue(&f, bob, 1, 1, 600, &w));
	TT_ERR(enqueue(&f, bob, 1, 2, 401, &w), TERN_EQUOTA);
	TT_OK(enqueue(&f, bob, 1, 3, 400, &w));
	TT_ERR(enqueue(&f, bob, 1, 4, 1, &w), TERN_EQUOTA);
	TT_OK(store_queue_usage(f.s, bob, &n, &bytes));
	TT_EQ(n, 2);
	TT_EQ(bytes, 1000);
	TT_EQ(fetch_all(&f, bob, 1, &w), 2);
	TT_EQ(w.env[0].env_id[3], 1);
	TT_EQ(w.env[1].env_id[3], 3);
	fx_end(&f);
}

TT_CASE(store__enqueue__bad_arguments_refused_synchronously)
{
	struct fx f;
	static uint8_t p[STORE_PAYLOAD_MAX + 1];
	struct store_env_in e;
	struct w w;
	int64_t bob;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	memset(&w, 0, sizeof(w));
	env_make(&e, bob, 1, 1, p, 10);
	e.cls = STORE_CLASS_EPHEMERAL;
	TT_ERR(store_enqueue(f.s, &e, w_cb, &w), TERN_EINVAL);
	e.cls = STORE_CLASS_NOTICE;
	TT_ERR(store_enqueue(f.s, &e, w_cb, &w), TERN_EINVAL);
	env_make(&e, bob, 1, 1, p, STORE_PAYLOAD_MAX + 1);
	TT_ERR(store_enqueue(f.s, &e, w_cb, &w), TERN_EINVAL);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_EQ(w.called, 0);
	/* The biggest payload is fine. */
	TT_OK(enqueue(&f, bob, 1, 2, STORE_PAYLOAD_MAX, &w));
	fx_end(&f);
}

TT_CASE(store__ack__deletes)
{
	struct fx f;
	uint8_t id[STORE_ENV_ID_LEN];
	struct w w;
	int64_t bob;
	uint64_t n, bytes;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	TT_OK(enqueue(&f, bob, 1, 1, 100, &w));
	TT_OK(enqueue(&f, bob, 1, 2, 200, &w));
	TT_EQ(fetch_all(&f, bob, 1, &w), 2);
	memcpy(id, w.env[0].env_id, sizeof(id));
	TT_OK(SYNC(&f, &w, store_ack(f.s, bob, 1, id, w_cb, &w)));
	TT_ERR(SYNC(&f, &w, store_ack(f.s, bob, 1, id, w_cb, &w)),
	    TERN_ENOTFOUND);
	TT_EQ(fetch_all(&f, bob, 1, &w), 1);
	TT_EQ(w.env[0].env_id[3], 2);
	TT_OK(store_queue_usage(f.s, bob, &n, &bytes));
	TT_EQ(n, 1);
	TT_EQ(bytes, 200);
	/* Without a callback. */
	TT_OK(store_ack(f.s, bob, 1, w.env[0].env_id, NULL, NULL));
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_EQ(fetch_all(&f, bob, 1, &w), 0);
	TT_EQ(queued_of(&f, bob), 0);
	fx_end(&f);
}

/* ephemeral_tables counts the OpenEphemeral steps in sql's program. */
static int
ephemeral_tables(sqlite3 *db, const char *sql)
{
	char explain[1024];
	sqlite3_stmt *st;
	int n = 0;

	snprintf(explain, sizeof(explain), "EXPLAIN %s", sql);
	TT_EQ(sqlite3_prepare_v2(db, explain, -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW)
		if (strcmp((const char *)sqlite3_column_text(st, 1),
		    "OpenEphemeral") == 0)
			n++;
	TT_EQ(sqlite3_finalize(st), SQLITE_OK);
	return n;
}

/*
 * Queue inserts build no ephemeral table. A CHECK with a constant IN list
 * of three or more values did (SQLite builds the list's table on every
 * execution): a quarter of the writer's CPU per envelope. The schema's
 * constraints still refuse what they refused.
 */
TT_CASE(store__schema__queue_inserts_build_no_ephemeral_table)
{
	struct fx f;
	sqlite3 *db;

	fx_start(&f, NULL);
	fx_close(&f);
	TT_EQ(sqlite3_open(f.path, &db), SQLITE_OK);
	TT_EQ(ephemeral_tables(db, "INSERT INTO envelopes(rcpt_user, "
	    "rcpt_device, env_id, class, sender_addr, sender_user, "
	    "sender_device, sent_ms, received_ms, expires_ms, payload) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) "
	    "ON CONFLICT (rcpt_user, rcpt_device, env_id) DO NOTHING"), 0);
	TT_EQ(ephemeral_tables(db, "INSERT INTO fed_queue(dest_domain, "
	    "env_id, to_addr, to_device, class, sender_user, sender_addr, "
	    "sender_device, sent_ms, received_ms, expires_ms, payload, sig) "
	    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
	    0);
	/* A control: the test would see one. */
	TT_EQ(ephemeral_tables(db, "SELECT 1 WHERE ?1 IN (1, 2, 4)"), 1);
	/* Class 1, 2 and 4 go in; 3 and 0 do not, nor a short id. */
	TT_EQ(sqlite3_exec(db, "PRAGMA foreign_keys = OFF;"
	    "INSERT INTO envelopes(rcpt_user, rcpt_device, env_id, class, "
	    "sender_addr, sender_device, sent_ms, received_ms, expires_ms, "
	    "payload) VALUES (1, 1, zeroblob(16), 4, '', 0, 0, 0, 0, x'')",
	    NULL, NULL, NULL), SQLITE_OK);
	TT_EQ(sqlite3_exec(db, "INSERT INTO envelopes(rcpt_user, rcpt_device, "
	    "env_id, class, sender_addr, sender_device, sent_ms, received_ms, "
	    "expires_ms, payload) VALUES (1, 1, randomblob(16), 3, '', 0, 0, "
	    "0, 0, x'')", NULL, NULL, NULL), SQLITE_CONSTRAINT);
	TT_EQ(sqlite3_exec(db, "INSERT INTO envelopes(rcpt_user, rcpt_device, "
	    "env_id, class, sender_addr, sender_device, sent_ms, received_ms, "
	    "expires_ms, payload) VALUES (1, 1, randomblob(16), 0, '', 0, 0, "
	    "0, 0, x'')", NULL, NULL, NULL), SQLITE_CONSTRAINT);
	TT_EQ(sqlite3_exec(db, "INSERT INTO envelopes(rcpt_user, rcpt_device, "
	    "env_id, class, sender_addr, sender_device, sent_ms, received_ms, "
	    "expires_ms, payload) VALUES (1, 1, randomblob(15), 1, '', 0, 0, "
	    "0, 0, x'')", NULL, NULL, NULL), SQLITE_CONSTRAINT);
	TT_EQ(sqlite3_close(db), SQLITE_OK);
	fx_end(&f);
}

/*
 * Version 5 to 6 rebuilds the envelopes table: queued envelopes, their
 * seqs and the seq high mark survive (the acked last one's seq is not
 * reused, or a device paging with "seq > after" could miss the next).
 */
TT_CASE(store__migrate__version_5_envelopes_kept)
{
	struct fx f;
	struct w w;
	sqlite3 *db;
	sqlite3_stmt *st;
	uint8_t id[STORE_ENV_ID_LEN];
	int64_t bob, s1, s2, s3;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	TT_OK(enqueue(&f, bob, 1, 1, 10, &w));
	s1 = w.res.seq;
	TT_OK(enqueue(&f, bob, 1, 2, 20, &w));
	s2 = w.res.seq;
	TT_OK(enqueue(&f, bob, 1, 3, 30, &w));
	s3 = w.res.seq;
	TT_ASSERT(s1 < s2 && s2 < s3);
	TT_EQ(fetch_all(&f, bob, 1, &w), 3);
	memcpy(id, w.env[2].env_id, sizeof(id)); /* SYNC clears w */
	TT_OK(SYNC(&f, &w, store_ack(f.s, bob, 1, id, w_cb, &w)));
	fx_close(&f);

	/* Back to version 5's table, with its IN list. */
	TT_EQ(sqlite3_open(f.path, &db), SQLITE_OK);
	TT_EQ(sqlite3_exec(db, "BEGIN;"
	    "CREATE TABLE e5(seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	    " rcpt_user INTEGER NOT NULL, rcpt_device INTEGER NOT NULL,"
	    " env_id BLOB NOT NULL CHECK (length(env_id) = 16),"
	    " class INTEGER NOT NULL CHECK (class IN (1, 2, 4)),"
	    " sender_addr TEXT NOT NULL, sender_user INTEGER,"
	    " sender_device INTEGER NOT NULL, sent_ms INTEGER NOT NULL,"
	    " received_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,"
	    " payload BLOB NOT NULL, FOREIGN KEY (rcpt_user, rcpt_device)"
	    " REFERENCES devices(user_id, device_id));"
	    "INSERT INTO sqlite_sequence(name, seq) SELECT 'e5', seq"
	    " FROM sqlite_sequence WHERE name = 'envelopes';"
	    "INSERT INTO e5 SELECT * FROM envelopes;"
	    "DROP TABLE envelopes; ALTER TABLE e5 RENAME TO envelopes;"
	    "CREATE UNIQUE INDEX envelopes_by_id"
	    " ON envelopes(rcpt_user, rcpt_device, env_id);"
	    "CREATE INDEX envelopes_by_rcpt ON envelopes(rcpt_user, rcpt_device);"
	    "CREATE INDEX envelopes_by_expiry ON envelopes(expires_ms);"
	    "PRAGMA user_version = 5; COMMIT;", NULL, NULL, NULL), SQLITE_OK);
	TT_EQ(sqlite3_close(db), SQLITE_OK);

	fx_open(&f);
	TT_EQ(fetch_all(&f, bob, 1, &w), 2);
	TT_EQ(w.env[0].seq, s1);
	TT_EQ(w.env[0].env_id[3], 1);
	TT_EQ(w.env[0].payload_len, 10);
	TT_EQ(w.env[1].seq, s2);
	TT_EQ(w.env[1].env_id[3], 2);
	TT_EQ(queued_of(&f, bob), 2);
	/* Dedupe still works across the rebuild, and seqs go on above s3. */
	TT_OK(enqueue(&f, bob, 1, 2, 20, &w));
	TT_ASSERT(w.res.duplicate);
	TT_EQ(w.res.seq, s2);
	TT_OK(enqueue(&f, bob, 1, 4, 40, &w));
	TT_ASSERT(w.res.seq > s3);
	fx_close(&f);

	TT_EQ(sqlite3_open(f.path, &db), SQLITE_OK);
	TT_EQ(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL),
	    SQLITE_OK);
	TT_EQ(sqlite3_step(st), SQLITE_ROW);
	TT_EQ(sqlite3_column_int(st, 0), 6);
	TT_EQ(sqlite3_finalize(st), SQLITE_OK);
	TT_EQ(ephemeral_tables(db, "INSERT INTO envelopes(rcpt_user, "
	    "rcpt_device, env_id, class, sender_addr, sender_device, sent_ms, "
	    "received_ms, expires_ms, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, "
	    "?7, ?8, ?9, ?10)"), 0);
	TT_EQ(sqlite3_close(db), SQLITE_OK);
	fx_end(&f);
}

TT_CASE(store__expire__notice_to_local_sender)
{
	struct fx f;
	static uint8_t p[50];
	struct store_env_in e;
	struct store_notice nt;
	uint8_t id[STORE_ENV_ID_LEN];
	struct w w;
	int64_t alice, bob;
	uint64_t n, bytes;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	bob = reg(&f, "bob", 2);
	/* 1: from alice (local), expires at 1000. */
	env_make(&e, bob, 1, 1, p, sizeof(p));
	e.sender_addr = "alice@" DOMAIN;
	e.sender_user = alice;
	e.sender_device = 1;
	e.expires_ms = 1000;
	TT_OK(SYNC(&f, &w, store_enqueue(f.s, &e, w_cb, &w)));
	/* 2: from a remote sender, expires at 1000: no notice. */
	env_make(&e, bob, 1, 2, p, sizeof(p));
	e.expires_ms = 1000;
	TT_OK(SYNC(&f, &w, store_enqueue(f.s, &e, w_cb, &w)));
	/* 3: from alice, not expired yet. */
	env_make(&e, bob, 1, 3, p, sizeof(p));
	e.sender_user = alice;
	e.sender_device = 1;
	e.expires_ms = 3000;
	TT_OK(SYNC(&f, &w, store_enqueue(f.s, &e, w_cb, &w)));

	TT_OK(SYNC(&f, &w, store_expire(f.s, 2000, w_cb, &w)));
	TT_EQ(w.res.expired, 2);
	TT_EQ(w.res.notices, 1);
	TT_EQ(w.res.more, 0);
	TT_EQ(fetch_all(&f, bob, 1, &w), 1);
	TT_EQ(w.env[0].env_id[3], 3);
	TT_EQ(queued_of(&f, bob), 1);

	TT_EQ(fetch_all(&f, alice, 1, &w), 1);
	TT_EQ(w.env[0].cls, STORE_CLASS_NOTICE);
	TT_ASSERT(strcmp(w.env[0].sender, "") == 0);
	TT_EQ(w.env[0].sender_device, 0);
	TT_OK(store_notice_parse(w.env[0].payload, w.env[0].payload_len, &nt));
	TT_EQ(nt.kind, STORE_NOTICE_EXPIRED);
	TT_EQ(nt.ref_cls, STORE_CLASS_MESSAGE);
	TT_EQ(nt.ref_env_id[3], 1);
	TT_EQ(nt.peer_device, 1);
	TT_EQ(nt.peer_len, strlen("bob@" DOMAIN));
	TT_ASSERT(memcmp(nt.peer_addr, "bob@" DOMAIN, nt.peer_len) == 0);
	TT_OK(store_queue_usage(f.s, alice, &n, &bytes));
	TT_EQ(n, 1);
	TT_EQ(bytes, w.env[0].payload_len);

	/* Notices are acked like envelopes. */
	memcpy(id, w.env[0].env_id, sizeof(id));
	TT_OK(SYNC(&f, &w, store_ack(f.s, alice, 1, id, w_cb, &w)));
	TT_EQ(fetch_all(&f, alice, 1, &w), 0);
	TT_EQ(queued_of(&f, alice), 0);

	/* Nothing more to do before 3000; a sender device gone: no notice. */
	TT_OK(SYNC(&f, &w, store_expire(f.s, 2500, w_cb, &w)));
	TT_EQ(w.res.expired, 0);
	{
		uint8_t key[STORE_KEY_LEN];
		key_of(key, 9);
		TT_OK(SYNC(&f, &w, store_device_add(f.s, alice, key, "x", 1,
		    w_cb, &w)));
	}
	TT_OK(SYNC(&f, &w, store_device_remove(f.s, alice, 1, w_cb, &w)));
	TT_OK(SYNC(&f, &w, store_expire(f.s, 4000, w_cb, &w)));
	TT_EQ(w.res.expired, 1);
	TT_EQ(w.res.notices, 0);
	TT_EQ(queued_of(&f, bob), 0);
	fx_end(&f);
}

TT_CASE(store__expire__pass_is_capped)
{
	struct fx f;
	struct store_config cfg = {.expire_max = 4};
	struct store_env_in e;
	static uint8_t p[4];
	struct w w;
	int64_t bob;
	int i;

	fx_start(&f, &cfg);
	bob = reg(&f, "bob", 1);
	for (i = 0; i < 6; i++) {
		env_make(&e, bob, 1, i, p, sizeof(p));
		e.expires_ms = 10;
		TT_OK(SYNC(&f, &w, store_enqueue(f.s, &e, w_cb, &w)));
	}
	TT_OK(SYNC(&f, &w, store_expire(f.s, 100, w_cb, &w)));
	TT_EQ(w.res.expired, 4);
	TT_EQ(w.res.more, 1);
	TT_OK(SYNC(&f, &w, store_expire(f.s, 100, w_cb, &w)));
	TT_EQ(w.res.expired, 2);
	TT_EQ(w.res.more, 0);
	TT_EQ(queued_of(&f, bob), 0);
	fx_end(&f);
}

/* --- Group commit ---------------------------------------------------------- */

struct many {
	int done;                           /* callbacks run */
	int ok;                             /* with status 0 */
};

static void
many_cb(void *arg, int status, const struct store_result *res)
{
	struct many *m = arg;

	m->done++;
	if (status == 0 && !res->duplicate)
		m->ok++;
}

TT_CASE(store__enqueue__group_commit)
{
	enum { N = 10000 };
	struct fx f;
	static uint8_t p[100];
	struct store_env_in e;
	struct store_stats st;
	struct many m = {0};
	int64_t bob;
	uint64_t commits0;
	int i;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	TT_OK(store_stats(f.s, &st));
	commits0 = st.commits;
	for (i = 0; i < N; i++) {
		env_make(&e, bob, 1, i, p, sizeof(p));
		TT_OK(store_enqueue(f.s, &e, many_cb, &m));
	}
	TT_EQ(store_pending(f.s), N);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_EQ(m.done, N);
	TT_EQ(m.ok, N);
	TT_EQ(store_pending(f.s), 0);
	TT_OK(store_stats(f.s, &st));
	printf("group commit: %d enqueues in %" PRIu64 " commits\n", N,
	    st.commits - commits0);
	TT_ASSERT(st.commits - commits0 <= N / 100);
	TT_EQ(st.queued, N);
	TT_EQ(st.queued_bytes, N * sizeof(p));
	TT_EQ(st.pending, 0);
	TT_EQ(st.failed_batches, 0);
	fx_end(&f);
}

/* --- Quota within one batch (the writer's usage cache) --------------------- */

/* One request's outcome, for requests submitted together. */
struct slot {
	int done;
	int status;
};

static void
slot_cb(void *arg, int status, const struct store_result *res)
{
	struct slot *s = arg;

	(void)res;
	s->done++;
	s->status = status;
}

/* usage_is asserts user's queue usage: n envelopes of bytes in all. */
#define usage_is(f, user, n_, bytes_) usage_is_((f), (user), (n_), (bytes_), \
    __LINE__)

static void
usage_is_(struct fx *f, int64_t user, uint64_t n_want, uint64_t b_want,
    int line)
{
	uint64_t n, bytes;

	TT_OK(store_queue_usage(f->s, user, &n, &bytes));
	if (n != n_want || bytes != b_want)
		tt_fail(__FILE__, line, "usage %llu envelopes, %llu bytes; "
		    "want %llu, %llu", (unsigned long long)n,
		    (unsigned long long)bytes, (unsigned long long)n_want,
		    (unsigned long long)b_want);
}

/* submit_env: enqueue envelope id (len bytes) to user's device 1 without
 * running the loop, so that requests submitted together share a batch. */
static void
submit_env(struct fx *f, int64_t user, int id, size_t len, struct slot *s)
{
	static uint8_t p[STORE_PAYLOAD_MAX];
	struct store_env_in e;

	env_make(&e, user, 1, id, p, len);
	TT_OK(store_enqueue(f->s, &e, slot_cb, s));
}

/*
 * Enqueues submitted together (one transaction, counted in the writer's
 * cache and written back once) meet the same quota as enqueues one by
 * one: the first ones in, the rest refused, the counts exact after a
 * reopen.
 */
TT_CASE(store__quota__counted_within_one_batch)
{
	struct fx f;
	struct store_config cfg = {.quota_count = 5, .quota_bytes = 10000};
	struct slot s[10];
	struct w w;
	int64_t bob, carol;
	int i;

	fx_start(&f, &cfg);
	bob = reg(&f, "bob", 1);
	carol = reg(&f, "carol", 2);
	memset(s, 0, sizeof(s));
	for (i = 0; i < 8; i++)
		submit_env(&f, bob, i, 100, &s[i]);
	submit_env(&f, carol, 100, 600, &s[8]);
	submit_env(&f, carol, 101, 600, &s[9]);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	for (i = 0; i < 10; i++)
		TT_EQ(s[i].done, 1);
	for (i = 0; i < 5; i++)
		TT_OK(s[i].status);
	for (; i < 8; i++)
		TT_ERR(s[i].status, TERN_EQUOTA);
	TT_OK(s[8].status);
	TT_OK(s[9].status);
	usage_is(&f, bob, 5, 500);
	usage_is(&f, carol, 2, 1200);
	fx_close(&f);
	fx_open(&f);
	usage_is(&f, bob, 5, 500);
	TT_EQ(fetch_all(&f, bob, 1, &w), 5);
	TT_EQ(w.env[4].env_id[3], 4);
	/* And the byte bound, counted the same way. */
	memset(s, 0, sizeof(s));
	submit_env(&f, carol, 102, 1000, &s[0]);   /* 2,200 */
	submit_env(&f, carol, 103, 1000, &s[1]);   /* ... */
	for (i = 2; i < 10; i++)
		submit_env(&f, carol, 102 + i, 1000, &s[i]);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	/* Five in all: the two queued before and three of these (the count
	 * bound), 4,200 bytes, under the 10,000-byte bound. */
	for (i = 0; i < 3; i++)
		TT_OK(s[i].status);
	for (; i < 10; i++)
		TT_ERR(s[i].status, TERN_EQUOTA);
	usage_is(&f, carol, 5, 4200);
	fx_end(&f);
}

/* An ACK in the same batch makes room for the enqueue after it, not for
 * the one before; a retry of a queued id is still a duplicate. */
TT_CASE(store__quota__ack_and_enqueue_in_one_batch)
{
	struct fx f;
	struct store_config cfg = {.quota_count = 3};
	struct slot s[5];
	struct w w;
	uint8_t id[STORE_ENV_ID_LEN];
	int64_t bob;
	int i;

	fx_start(&f, &cfg);
	bob = reg(&f, "bob", 1);
	for (i = 0; i < 3; i++)
		TT_OK(enqueue(&f, bob, 1, i, 10, &w));
	TT_EQ(fetch_all(&f, bob, 1, &w), 3);
	memcpy(id, w.env[0].env_id, sizeof(id));
	memset(s, 0, sizeof(s));
	submit_env(&f, bob, 10, 20, &s[0]);         /* full: refused */
	TT_OK(store_ack(f.s, bob, 1, id, slot_cb, &s[1]));
	submit_env(&f, bob, 11, 20, &s[2]);         /* the room */
	submit_env(&f, bob, 12, 20, &s[3]);         /* full again */
	submit_env(&f, bob, 2, 10, &s[4]);          /* a retry */
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_ERR(s[0].status, TERN_EQUOTA);
	TT_OK(s[1].status);
	TT_OK(s[2].status);
	TT_ERR(s[3].status, TERN_EQUOTA);
	TT_OK(s[4].status);
	usage_is(&f, bob, 3, 40);
	TT_EQ(fetch_all(&f, bob, 1, &w), 3);
	TT_EQ(w.env[2].env_id[3], 11);
	fx_end(&f);
}

/* A user disabled in the middle of a batch takes no more envelopes after
 * it; deleted, none at all, and its counts start again from nothing. */
TT_CASE(store__quota__disable_and_delete_in_one_batch)
{
	struct fx f;
	struct slot s[6];
	int64_t bob, carol;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	carol = reg(&f, "carol", 2);
	memset(s, 0, sizeof(s));
	submit_env(&f, bob, 1, 10, &s[0]);
	TT_OK(store_user_disable(f.s, "bob", slot_cb, &s[1]));
	submit_env(&f, bob, 2, 10, &s[2]);
	submit_env(&f, carol, 1, 10, &s[3]);
	TT_OK(store_user_delete(f.s, "carol", slot_cb, &s[4]));
	submit_env(&f, carol, 2, 10, &s[5]);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_OK(s[0].status);
	TT_OK(s[1].status);
	TT_ERR(s[2].status, TERN_EDENIED);
	TT_OK(s[3].status);
	TT_OK(s[4].status);
	TT_ASSERT(s[5].status != 0);
	usage_is(&f, bob, 1, 10);
	usage_is(&f, carol, 0, 0);
	fx_end(&f);
}

/* --- Durability and close --------------------------------------------------- */

TT_CASE(store__close__queued_writes_finish_then_reopen)
{
	enum { N = 100 };
	struct fx f;
	static uint8_t p[32];
	struct store_env_in e;
	struct store_stats st;
	struct many m = {0};
	struct w w;
	int64_t bob;
	int i;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	for (i = 0; i < N; i++) {
		env_make(&e, bob, 1, i, p, sizeof(p));
		TT_OK(store_enqueue(f.s, &e, many_cb, &m));
	}
	/* Close at once: everything queued is committed, then reported. */
	f.closed = 0;
	store_close(f.s, fx_closed_cb, &f);
	env_make(&e, bob, 1, N, p, sizeof(p));
	TT_ERR(store_enqueue(f.s, &e, many_cb, &m), TERN_ECLOSED);
	TT_ERR(store_stats(f.s, &st), TERN_ECLOSED);
	f.s = NULL;
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_EQ(f.closed, 1);
	TT_EQ(m.done, N);
	TT_EQ(m.ok, N);

	fx_open(&f);
	TT_OK(store_stats(f.s, &st));
	TT_EQ(st.queued, N);
	TT_EQ(st.users, 1);
	TT_EQ(st.devices, 1);
	TT_EQ(fetch_all(&f, bob, 1, &w), 64);
	TT_EQ(w.env[0].env_id[3], 0);
	TT_EQ(w.env[63].env_id[3], 63);
	fx_end(&f);
}

static void
kill_after(void *arg, int status, const struct store_result *res)
{
	int *left = arg;

	if (status != 0)
		_exit(3);
	if (--*left == 0)
		raise(SIGKILL); /* reported durable: now crash */
}

TT_CASE(store__enqueue__durable_when_reported_survives_kill)
{
	enum { N = 50 };
	struct fx f;
	struct w w;
	int64_t bob;
	pid_t pid;
	int wst;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	fx_close(&f);

	pid = fork();
	TT_ASSERT(pid >= 0);
	if (pid == 0) {
		static uint8_t p[64];
		struct store_env_in e;
		uv_loop_t loop;
		struct store *s;
		int left = N;

		if (uv_loop_init(&loop) != 0 || store_open(&s, &loop, &f.cfg) != 0)
			_exit(2);
		for (int i = 0; i < N; i++) {
			env_make(&e, bob, 1, i, p, sizeof(p));
			if (store_enqueue(s, &e, kill_after, &left) != 0)
				_exit(2);
		}
		uv_run(&loop, UV_RUN_DEFAULT);
		_exit(4); /* not reached */
	}
	TT_EQ(waitpid(pid, &wst, 0), pid);
	TT_ASSERT(WIFSIGNALED(wst));
	TT_EQ(WTERMSIG(wst), SIGKILL);

	/* The killed process left its WAL behind; reopening recovers it. */
	fx_open(&f);
	TT_EQ(queued_of(&f, bob), N);
	TT_EQ(fetch_all(&f, bob, 1, &w), N);
	fx_end(&f);
}

struct reentrant {
	struct store *s;
	int status;                         /* of the call made in the callback */
	int called;
};

static void
reentrant_cb(void *arg, int status, const struct store_result *res)
{
	struct reentrant *r = arg;
	static uint8_t p[1];
	struct store_env_in e;

	r->called++;
	env_make(&e, 1, 1, 99, p, sizeof(p));
	r->status = store_enqueue(r->s, &e, NULL, NULL);
}

TT_CASE(store__close__callbacks_during_close_get_eclosed)
{
	struct fx f;
	struct reentrant r = {0};
	int64_t bob;

	fx_start(&f, NULL);
	bob = reg(&f, "bob", 1);
	r.s = f.s;
	TT_OK(store_last_seen(f.s, bob, 1234, reentrant_cb, &r));
	fx_close(&f);
	TT_EQ(r.called, 1);
	TT_EQ(r.status, TERN_ECLOSED);
	fx_end(&f);
}

/* --- Disk full -------------------------------------------------------------- */

/*
 * fill enqueues one envelope of len bytes at a time until one fails;
 * returns how many succeeded and the failing status in *err.
 */
static int
fill(struct fx *f, int64_t user, int first, size_t len, int *err)
{
	struct w w;
	int i;

	for (i = 0; i < 100000; i++) {
		*err = enqueue(f, user, 1, first + i, len, &w);
		if (*err != 0)
			return i;
	}
	return i;
}

/*
 * A batch that fails after some of its enqueues were counted (in the
 * writer's usage cache) counts nothing: the next batch starts from what
 * the database holds.
 */
TT_CASE(store__quota__failed_batch_counts_nothing)
{
	struct fx f;
	/* A long commit delay: the two requests submitted together are
	 * surely taken in one batch. */
	struct store_config cfg = {.max_page_count = 64,
	    .commit_delay_us = 50000};
	struct slot s[2];
	uint64_t n0, b0;
	int64_t bob;
	int stored, err, i, small_ok = 0;

	fx_start(&f, &cfg);
	bob = reg(&f, "bob", 1);
	stored = fill(&f, bob, 0, 8000, &err);
	TT_ERR(err, TERN_EDISK);
	TT_OK(store_queue_usage(f.s, bob, &n0, &b0));
	TT_EQ(n0, (uint64_t)stored);
	/* A small one still fits beside the large ones (it is counted in the
	 * cache), a large one after it does not: the batch fails whole. Try
	 * a few times: whether the small one fits depends on the pages. */
	for (i = 0; i < 8 && small_ok == 0; i++) {
		memset(s, 0, sizeof(s));
		submit_env(&f, bob, 50000 + 2 * i, 10, &s[0]);
		submit_env(&f, bob, 50001 + 2 * i, STORE_PAYLOAD_MAX, &s[1]);
		uv_run(&f.loop, UV_RUN_DEFAULT);
		TT_ERR(s[1].status, TERN_EDISK);
		TT_ERR(s[0].status, TERN_EDISK);  /* the batch's error */
		usage_is(&f, bob, n0, b0);
		/* The small one alone: does it fit? */
		memset(s, 0, sizeof(s));
		submit_env(&f, bob, 60000 + i, 10, &s[0]);
		uv_run(&f.loop, UV_RUN_DEFAULT);
		if (s[0].status == 0)
			small_ok = 1;
		else
			TT_ERR(s[0].status, TERN_EDISK);
	}
	TT_ASSERT(small_ok);
	/* Exactly one more, not two: nothing of the failed batches stayed. */
	usage_is(&f, bob, n0 + 1, b0 + 10);
	fx_close(&f);
	f.cfg.max_page_count = 0;
	fx_open(&f);
	usage_is(&f, bob, n0 + 1, b0 + 10);
	fx_end(&f);
}

TT_CASE(store__enqueue__disk_full_page_limit_recovers)
{
	struct fx f;
	struct store_config cfg = {.max_page_count = 64};
	struct store_stats st;
	struct w w;
	int64_t bob;
	int stored, more, err, i, j, ok;

	fx_start(&f, &cfg);
	bob = reg(&f, "bob", 1);
	stored = fill(&f, bob, 0, 8000, &err);
	TT_ERR(err, TERN_EDISK);
	TT_ASSERT(stored > 0);
	TT_OK(store_stats(f.s, &st));
	TT_ASSERT(st.failed_batches >= 1);
	TT_EQ(st.queued, stored);

	/* Still full: fails again, but the store keeps answering. */
	TT_ERR(enqueue(&f, bob, 1, 100000, 8000, &w), TERN_EDISK);
	TT_EQ(fetch_all(&f, bob, 1, &w), stored < 64 ? stored : 64);
	TT_OK(SYNC(&f, &w, store_last_seen(f.s, bob, 5, w_cb, &w)));

	/* A whole batch fails together: nothing in it is stored. */
	{
		static uint8_t p[8000];
		struct store_env_in e;
		struct many m = {0};
		for (i = 0; i < 20; i++) {
			env_make(&e, bob, 1, 200000 + i, p, sizeof(p));
			TT_OK(store_enqueue(f.s, &e, many_cb, &m));
		}
		uv_run(&f.loop, UV_RUN_DEFAULT);
		TT_EQ(m.done, 20);
		TT_EQ(m.ok, 0);
	}

	/* Free space by acking half; new writes succeed again. */
	for (i = 0; i < stored / 2; i++) {
		uint8_t id[STORE_ENV_ID_LEN] = {0};
		id[2] = (uint8_t)(i >> 8);
		id[3] = (uint8_t)i;
		TT_OK(SYNC(&f, &w, store_ack(f.s, bob, 1, id, w_cb, &w)));
	}
	more = fill(&f, bob, 1000, 8000, &err);
	TT_ERR(err, TERN_EDISK);
	TT_ASSERT(more >= stored / 2 - 1);

	/* Nothing reported durable was lost. */
	fx_close(&f);
	f.cfg.max_page_count = 0;
	fx_open(&f);
	TT_EQ(queued_of(&f, bob), (uint64_t)(stored - stored / 2 + more));
	ok = 0;
	{
		int64_t after = 0;
		do {
			TT_OK(SYNC(&f, &w, store_fetch(f.s, bob, 1, after, 64, w_cb,
			    &w)));
			for (j = 0; j < (int)w.n; j++) {
				int id = w.env[j].env_id[2] << 8 | w.env[j].env_id[3];
				TT_ASSERT((id >= stored / 2 && id < stored) ||
				    (id >= 1000 && id < 1000 + more));
				ok++;
			}
			if (w.n > 0)
				after = w.env[w.n - 1].seq;
		} while (w.res.more);
	}
	TT_EQ(ok, stored - stored / 2 + more);
	fx_end(&f);
}

/*
 * The real thing: the database on a 1 MiB tmpfs, in a private mount
 * namespace. Needs CAP_SYS_ADMIN; without it the case says so and passes.
 */
TT_CASE(store__enqueue__disk_full_tmpfs_recovers)
{
	struct fx f;
	char filler[192];
	static uint8_t junk[64 * 1024];
	struct w w;
	int64_t bob;
	int stored, more, err, fd, i;

	fx_dir(&f);
	if (unshare(CLONE_NEWNS) != 0 ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", f.dir, "tmpfs", 0, "size=1m,mode=0700") != 0) {
		printf("skip: no private tmpfs (%s)\n", strerror(errno));
		fx_end(&f);
		return;
	}
	/* Leave about 400 KiB free for the database. */
	snprintf(filler, sizeof(filler), "%s/filler", f.dir);
	fd = open(filler, O_WRONLY | O_CREAT | O_EXCL, 0600);
	TT_ASSERT(fd >= 0);
	for (i = 0; i < 9; i++)
		TT_EQ(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
	close(fd);

	TT_OK(store_create(f.path));
	fx_open(&f);
	bob = reg(&f, "bob", 1);
	stored = fill(&f, bob, 0, 16000, &err);
	printf("tmpfs: %d envelopes of 16000 bytes before %s\n", stored,
	    tern_errname(err));
	TT_ERR(err, TERN_EDISK);
	TT_ASSERT(stored > 0);
	TT_ERR(enqueue(&f, bob, 1, 5000, 16000, &w), TERN_EDISK);
	TT_EQ(queued_of(&f, bob), stored);

	/* Space comes back: the store carries on by itself. */
	TT_EQ(unlink(filler), 0);
	more = fill(&f, bob, 1000, 16000, &err);
	printf("tmpfs: %d more after freeing space\n", more);
	TT_ERR(err, TERN_EDISK);
	TT_ASSERT(more > 5);
	fx_close(&f);
	fx_open(&f);
	TT_EQ(queued_of(&f, bob), (uint64_t)(stored + more));
	fx_close(&f);
	TT_EQ(umount(f.dir), 0);
	fx_end(&f);
}

/* --- Profile, contacts, listing ---------------------------------------------- */

static int
collect_contact(void *arg, const char *address)
{
	char *buf = arg;

	strcat(buf, address);
	strcat(buf, ";");
	return 0;
}

TT_CASE(store__profile__set_get_privacy_last_seen)
{
	struct fx f;
	struct store_profile pr;
	struct w w;
	int64_t alice;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	TT_OK(store_profile_get(f.s, alice, &pr));
	TT_ASSERT(strcmp(pr.display_name, "") == 0);
	TT_EQ(pr.last_seen_privacy, STORE_LASTSEEN_EVERYONE);
	TT_EQ(pr.last_seen_ms, 0);

	TT_OK(SYNC(&f, &w, store_profile_set(f.s, alice, "Alice A.", "busy",
	    w_cb, &w)));
	TT_OK(SYNC(&f, &w, store_privacy_set(f.s, alice,
	    STORE_LASTSEEN_CONTACTS, w_cb, &w)));
	/* Many last-seen updates, one batch; never backwards. */
	TT_OK(store_last_seen(f.s, alice, 500, NULL, NULL));
	TT_OK(store_last_seen(f.s, alice, 900, NULL, NULL));
	TT_OK(store_last_seen(f.s, alice, 700, NULL, NULL));
	uv_run(&f.loop, UV_RUN_DEFAULT);
	TT_OK(store_profile_get(f.s, alice, &pr));
	TT_ASSERT(strcmp(pr.display_name, "Alice A.") == 0);
	TT_ASSERT(strcmp(pr.status_text, "busy") == 0);
	TT_EQ(pr.last_seen_privacy, STORE_LASTSEEN_CONTACTS);
	TT_EQ(pr.last_seen_ms, 900);

	TT_ERR(store_privacy_set(f.s, alice, 3, w_cb, &w), TERN_EINVAL);
	TT_ERR(SYNC(&f, &w, store_profile_set(f.s, 999, "x", "y", w_cb, &w)),
	    TERN_ENOUSER);
	TT_ERR(store_profile_get(f.s, 999, &pr), TERN_ENOUSER);
	fx_end(&f);
}

TT_CASE(store__contacts__add_remove_list)
{
	struct fx f;
	struct store_config cfg = {.contacts_max = 2};
	char buf[256] = "";
	struct w w;
	int64_t alice;

	fx_start(&f, &cfg);
	alice = reg(&f, "alice", 1);
	TT_OK(SYNC(&f, &w, store_contact_add(f.s, alice, "zed@b.example", 1,
	    w_cb, &w)));
	TT_EQ(w.res.duplicate, 0);
	TT_OK(SYNC(&f, &w, store_contact_add(f.s, alice, "bob@" DOMAIN, 1,
	    w_cb, &w)));
	TT_OK(SYNC(&f, &w, store_contact_add(f.s, alice, "bob@" DOMAIN, 1,
	    w_cb, &w)));
	TT_EQ(w.res.duplicate, 1);
	TT_ERR(SYNC(&f, &w, store_contact_add(f.s, alice, "eve@" DOMAIN, 1,
	    w_cb, &w)), TERN_EQUOTA);
	TT_OK(store_contacts_list(f.s, alice, collect_contact, buf));
	TT_ASSERT(strcmp(buf, "bob@" DOMAIN ";zed@b.example;") == 0);
	TT_OK(store_contact_has(f.s, alice, "bob@" DOMAIN));
	TT_ERR(store_contact_has(f.s, alice, "eve@" DOMAIN), TERN_ENOTFOUND);
	TT_OK(SYNC(&f, &w, store_contact_remove(f.s, alice, "bob@" DOMAIN,
	    w_cb, &w)));
	TT_ERR(SYNC(&f, &w, store_contact_remove(f.s, alice, "bob@" DOMAIN,
	    w_cb, &w)), TERN_ENOTFOUND);
	TT_ERR(store_contact_has(f.s, alice, "bob@" DOMAIN), TERN_ENOTFOUND);
	fx_end(&f);
}

struct listed {
	int n;
	struct store_user_info u[4];
};

static int
collect_user(void *arg, const struct store_user_info *u)
{
	struct listed *l = arg;

	if (l->n < 4)
		l->u[l->n] = *u;
	l->n++;
	return 0;
}

TT_CASE(store__user_list__counts_and_stats)
{
	struct fx f;
	uint8_t key[STORE_KEY_LEN];
	struct store_stats st;
	struct listed l = {0};
	struct w w;
	int64_t alice, bob;

	fx_start(&f, NULL);
	alice = reg(&f, "alice", 1);
	bob = reg(&f, "bob", 2);
	reg(&f, "carol", 3);
	key_of(key, 4);
	TT_OK(SYNC(&f, &w, store_device_add(f.s, alice, key, "laptop", 1, w_cb,
	    &w)));
	TT_OK(enqueue(&f, alice, 2, 1, 10, &w));
	TT_OK(enqueue(&f, bob, 1, 1, 20, &w));
	TT_OK(enqueue(&f, bob, 1, 2, 30, &w));
	TT_OK(SYNC(&f, &w, store_user_delete(f.s, "carol", w_cb, &w)));

	TT_OK(store_user_list(f.s, collect_user, &l));
	TT_EQ(l.n, 3);
	TT_ASSERT(strcmp(l.u[0].name, "alice") == 0);
	TT_EQ(l.u[0].devices, 2);
	TT_EQ(l.u[0].queued, 1);
	TT_EQ(l.u[1].queued, 2);
	TT_EQ(l.u[1].queued_bytes, 50);
	TT_EQ(l.u[2].state, STORE_USER_DELETED);
	TT_EQ(l.u[2].devices, 0);

	TT_OK(store_stats(f.s, &st));
	TT_EQ(st.users, 2);
	TT_EQ(st.devices, 3);
	TT_EQ(st.queued, 3);
	TT_EQ(st.queued_bytes, 60);
	fx_end(&f);
}
