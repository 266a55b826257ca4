/*
 * test_keys.c: the node's prekey service (SPEC.md 4.29-4.33, section 12).
 *
 * Three layers, each against the real thing: the store's key operations
 * on a real SQLite file and loop (upload, quota, identity change, bundle
 * fetches that consume prekeys, exhaustion, removal, persistence,
 * migration of a version-1 database); the bounded rate limiter with a
 * clock of the test's own; and the running node (server_start in this
 * process, on the same loop as real clients from client.h) with
 * signatures made by libsignal through crypto/sig.h.
 *
 * Waits end on callbacks, bounded by a watchdog; no case depends on the
 * passage of time (the rate limit's refill is driven by
 * server_clock_advance).
 */
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>
#include <uv.h>

#include "client.h"
#include "config.h"
#include "keyfile.h"
#include "msg.h"
#include "noise.h"
#include "ratelimit.h"
#include "server.h"
#include "sig.h"
#include "store.h"
#include "tt.h"
#include "tt_uv.h"

#define DOMAIN "one.test"
#define WATCHDOG_MS 20000

/* --- Common ----------------------------------------------------------------- */

static void
rm_dir(const char *dir)
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

static void
key_of(uint8_t key[32], int i)
{
	memset(key, i, 32);
}

/* --- Store fixture ------------------------------------------------------------ */

struct fx {
	char dir[64];                       /* mkdtemp directory */
	char path[128];                     /* database file in it */
	uv_loop_t loop;
	struct store *s;
	struct store_config cfg;
	int closed;                         /* close callback ran */
};

static void
fx_closed_cb(void *arg)
{
	((struct fx *)arg)->closed++;
}

static void
fx_start(struct fx *f, uint32_t batch_max)
{
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/tern-keys-XXXXXX");
	TT_ASSERT(mkdtemp(f->dir) != NULL);
	snprintf(f->path, sizeof(f->path), "%s/node.db", f->dir);
	TT_EQ(uv_loop_init(&f->loop), 0);
	f->cfg.path = f->path;
	f->cfg.domain = DOMAIN;
	f->cfg.durability = STORE_DURABILITY_NORMAL;
	f->cfg.batch_max = batch_max;
	TT_OK(store_create(f->path));
	TT_OK(store_open(&f->s, &f->loop, &f->cfg));
}

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
	TT_OK(store_open(&f->s, &f->loop, &f->cfg));
}

static void
fx_end(struct fx *f)
{
	if (f->s != NULL)
		fx_close(f);
	TT_EQ(uv_loop_close(&f->loop), 0);
	rm_dir(f->dir);
}

/* One request's outcome, with copies of what it returned. */
struct w {
	int called;
	int status;
	struct store_result res;            /* pointers cleared: borrowed */
	struct store_bundle b[STORE_BUNDLES_MAX];
	size_t nb;
};

static void
w_cb(void *arg, int status, const struct store_result *res)
{
	struct w *w = arg;

	w->called++;
	w->status = status;
	w->res = *res;
	w->res.bundles = NULL;
	w->res.envs = NULL;
	w->nb = res->n_bundles;
	if (w->nb > 0)
		memcpy(w->b, res->bundles, w->nb * sizeof(w->b[0]));
}

static int
wait_(struct fx *f, struct w *w, int submitted)
{
	TT_OK(submitted);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	TT_EQ(w->called, 1);
	return w->status;
}

#define SYNC(f, w, call) (memset((w), 0, sizeof(*(w))), \
	wait_((f), (w), (call)))

static int64_t
reg(struct fx *f, const char *name, int k)
{
	uint8_t key[32];
	struct w w;

	key_of(key, k);
	TT_OK(SYNC(f, &w, store_register(f->s, name, NULL, key, "phone", 1000,
	    w_cb, &w)));
	return w.res.user_id;
}

static uint32_t
dev_add(struct fx *f, int64_t uid, int k)
{
	uint8_t key[32];
	struct w w;

	key_of(key, k);
	TT_OK(SYNC(f, &w, store_device_add(f->s, uid, key, "laptop", 1000,
	    w_cb, &w)));
	return w.res.device_id;
}

/*
 * keys_in: an upload for (uid, dev) with identity byte ident, signed
 * prekey spk, and prekeys ids first..first+n-1 whose keys are byte
 * (id & 0xff). The store does not check signatures: any bytes do.
 */
static struct store_prekey g_pk[STORE_PREKEYS_MAX + 8];

static struct store_keys_in
keys_in(int64_t uid, uint32_t dev, int ident, uint32_t spk, uint32_t first,
    size_t n)
{
	struct store_keys_in k;
	size_t i;

	memset(&k, 0, sizeof(k));
	k.user_id = uid;
	k.device_id = dev;
	key_of(k.identity, ident);
	k.registration_id = 4242;
	k.signed_prekey_id = spk;
	key_of(k.signed_prekey, 0x50 + (int)spk);
	memset(k.signature, 0x5a, sizeof(k.signature));
	key_of(k.last_resort, 0xee);
	TT_ASSERT(n <= sizeof(g_pk) / sizeof(g_pk[0]));
	for (i = 0; i < n; i++) {
		g_pk[i].id = first + (uint32_t)i;
		key_of(g_pk[i].key, (int)(g_pk[i].id & 0xff));
	}
	k.prekeys = g_pk;
	k.n_prekeys = n;
	return k;
}

static int
put(struct fx *f, const struct store_keys_in *k, struct w *w)
{
	return SYNC(f, w, store_keys_put(f->s, k, w_cb, w));
}

static void
count_is(struct fx *f, int64_t uid, uint32_t dev, uint32_t want_n,
    uint32_t want_spk)
{
	uint32_t n = 99, spk = 99;

	TT_OK(store_keys_count(f->s, uid, dev, &n, &spk));
	TT_EQ(n, want_n);
	TT_EQ(spk, want_spk);
}

/* --- Store cases -------------------------------------------------------------- */

TT_CASE(keys__put__stores_and_counts)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	count_is(&f, a, 1, 0, 0);
	k = keys_in(a, 1, 0x11, 7, 1, 5);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 5);
	TT_EQ(w.res.signed_prekey_id, 7);
	count_is(&f, a, 1, 5, 7);
	/* More, same identity, a new signed prekey; id 5 is replaced. */
	k = keys_in(a, 1, 0x11, 8, 5, 4);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 8);
	count_is(&f, a, 1, 8, 8);
	/* No prekeys at all: only the keys are replaced. */
	k = keys_in(a, 1, 0x11, 9, 1, 0);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 8);
	count_is(&f, a, 1, 8, 9);
	fx_end(&f);
}

TT_CASE(keys__put__refuses_bad_input_synchronously)
{
	struct fx f;
	struct store_keys_in k;
	int64_t a;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	k = keys_in(a, 1, 0x11, 7, 1, 3);
	g_pk[2].id = 1; /* repeated */
	TT_ERR(store_keys_put(f.s, &k, w_cb, NULL), TERN_EINVAL);
	k = keys_in(a, 1, 0x11, 7, 0, 3); /* id 0 */
	TT_ERR(store_keys_put(f.s, &k, w_cb, NULL), TERN_EINVAL);
	k = keys_in(a, 1, 0x11, 7, STORE_LAST_RESORT_ID, 1);
	TT_ERR(store_keys_put(f.s, &k, w_cb, NULL), TERN_EINVAL);
	k = keys_in(a, 1, 0x11, 0, 1, 1); /* signed prekey id 0 */
	TT_ERR(store_keys_put(f.s, &k, w_cb, NULL), TERN_EINVAL);
	k = keys_in(a, 1, 0x11, 7, 1, STORE_PREKEYS_MAX + 1);
	TT_ERR(store_keys_put(f.s, &k, w_cb, NULL), TERN_EINVAL);
	count_is(&f, a, 1, 0, 0);
	fx_end(&f);
}

TT_CASE(keys__put__over_100_held_is_equota_and_changes_nothing)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	k = keys_in(a, 1, 0x11, 7, 1, 60);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 60);
	/* 60 + 41 new = 101: refused whole, the new signed prekey too. */
	k = keys_in(a, 1, 0x11, 8, 61, 41);
	TT_ERR(put(&f, &k, &w), TERN_EQUOTA);
	TT_EQ(w.res.prekeys, 0);
	count_is(&f, a, 1, 60, 7);
	/* Exactly 100 is fine; replacing held ids does not add. */
	k = keys_in(a, 1, 0x11, 8, 31, 70);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 100);
	k = keys_in(a, 1, 0x11, 8, 101, 1);
	TT_ERR(put(&f, &k, &w), TERN_EQUOTA);
	count_is(&f, a, 1, 100, 8);
	fx_end(&f);
}

TT_CASE(keys__put__identity_change_wipes_old_prekeys)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	k = keys_in(a, 1, 0x11, 7, 1, 90);
	TT_OK(put(&f, &k, &w));
	/* A restored device: new identity, ids from 1 again. 90 + 20
	 * would pass the quota; the old ones are gone first. */
	k = keys_in(a, 1, 0x22, 1, 1, 20);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 20);
	count_is(&f, a, 1, 20, 1);
	/* Another new identity without prekeys: none are left. */
	k = keys_in(a, 1, 0x33, 2, 1, 0);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 0);
	count_is(&f, a, 1, 0, 2);
	/* The same identity again keeps what it has. */
	k = keys_in(a, 1, 0x33, 2, 1, 4);
	TT_OK(put(&f, &k, &w));
	k = keys_in(a, 1, 0x33, 3, 5, 4);
	TT_OK(put(&f, &k, &w));
	TT_EQ(w.res.prekeys, 8);
	fx_end(&f);
}

TT_CASE(keys__put__unknown_device_or_user)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	k = keys_in(a, 2, 0x11, 7, 1, 3);
	TT_ERR(put(&f, &k, &w), TERN_ENOUSER);
	k = keys_in(a + 100, 1, 0x11, 7, 1, 3);
	TT_ERR(put(&f, &k, &w), TERN_ENOUSER);
	TT_OK(SYNC(&f, &w, store_user_disable(f.s, "alice", w_cb, &w)));
	k = keys_in(a, 1, 0x11, 7, 1, 3);
	TT_ERR(put(&f, &k, &w), TERN_EDENIED);
	fx_end(&f);
}

TT_CASE(keys__bundle__all_devices_in_order_each_consumes_one)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;
	uint32_t d2, d3;
	uint8_t key[32];

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	d2 = dev_add(&f, a, 2);
	d3 = dev_add(&f, a, 3); /* never uploads keys */
	TT_EQ(d2, 2);
	TT_EQ(d3, 3);
	/* Device 2 first, so that order is the store's doing. */
	k = keys_in(a, d2, 0x22, 20, 200, 3);
	TT_OK(put(&f, &k, &w));
	k = keys_in(a, 1, 0x11, 10, 100, 4);
	TT_OK(put(&f, &k, &w));

	TT_OK(SYNC(&f, &w, store_bundle_get(f.s, a, 0, w_cb, &w)));
	TT_EQ(w.nb, 2);
	TT_EQ(w.b[0].device_id, 1);
	TT_EQ(w.b[1].device_id, 2);
	TT_EQ(w.b[0].registration_id, 4242);
	key_of(key, 0x11);
	TT_MEMEQ(w.b[0].identity, key, 32);
	key_of(key, 0x22);
	TT_MEMEQ(w.b[1].identity, key, 32);
	TT_EQ(w.b[0].signed_prekey_id, 10);
	TT_EQ(w.b[1].signed_prekey_id, 20);
	key_of(key, 0x50 + 20);
	TT_MEMEQ(w.b[1].signed_prekey, key, 32);
	memset(key, 0x5a, 32);
	TT_MEMEQ(w.b[1].signature, key, 32);
	TT_EQ(w.b[0].prekey_id, 100);
	key_of(key, 100);
	TT_MEMEQ(w.b[0].prekey, key, 32);
	TT_EQ(w.b[1].prekey_id, 200);
	TT_EQ(w.b[0].prekeys_left, 3);
	TT_EQ(w.b[1].prekeys_left, 2);
	count_is(&f, a, 1, 3, 10);
	count_is(&f, a, d2, 2, 20);

	/* One device: only it, and only its prekey goes. */
	TT_OK(SYNC(&f, &w, store_bundle_get(f.s, a, d2, w_cb, &w)));
	TT_EQ(w.nb, 1);
	TT_EQ(w.b[0].device_id, 2);
	TT_EQ(w.b[0].prekey_id, 201);
	count_is(&f, a, 1, 3, 10);
	count_is(&f, a, d2, 1, 20);

	/* A device that exists without keys: no record, no error. */
	TT_OK(SYNC(&f, &w, store_bundle_get(f.s, a, d3, w_cb, &w)));
	TT_EQ(w.nb, 0);
	fx_end(&f);
}

TT_CASE(keys__bundle__unknown_user_or_device_is_enouser)
{
	struct fx f;
	struct w w;
	int64_t a, b;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	b = reg(&f, "bob", 2);
	TT_ERR(SYNC(&f, &w, store_bundle_get(f.s, a, 9, w_cb, &w)),
	    TERN_ENOUSER);
	TT_ERR(SYNC(&f, &w, store_bundle_get(f.s, b + 10, 0, w_cb, &w)),
	    TERN_ENOUSER);
	/* A user with no keys at all: zero records. */
	TT_OK(SYNC(&f, &w, store_bundle_get(f.s, b, 0, w_cb, &w)));
	TT_EQ(w.nb, 0);
	TT_OK(SYNC(&f, &w, store_user_disable(f.s, "bob", w_cb, &w)));
	TT_ERR(SYNC(&f, &w, store_bundle_get(f.s, b, 0, w_cb, &w)),
	    TERN_ENOUSER);
	fx_end(&f);
}

TT_CASE(keys__bundle__last_resort_after_exhaustion_is_kept)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	uint8_t lr[32];
	int64_t a;
	int i;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	k = keys_in(a, 1, 0x11, 7, 1, 2);
	TT_OK(put(&f, &k, &w));
	key_of(lr, 0xee);
	for (i = 0; i < 4; i++) {
		TT_OK(SYNC(&f, &w, store_bundle_get(f.s, a, 0, w_cb, &w)));
		TT_EQ(w.nb, 1);
		if (i < 2) {
			TT_EQ(w.b[0].prekey_id, (uint32_t)i + 1);
			TT_EQ(w.b[0].prekeys_left, 1 - i);
		} else {
			TT_EQ(w.b[0].prekey_id, STORE_LAST_RESORT_ID);
			TT_MEMEQ(w.b[0].prekey, lr, 32);
			TT_EQ(w.b[0].prekeys_left, 0);
		}
	}
	count_is(&f, a, 1, 0, 7);
	fx_end(&f);
}

/* Many fetches in flight at once, over several batches: each one-time
 * prekey is served exactly once. */
#define CONC_FETCHES 150
#define CONC_PREKEYS 100

TT_CASE(keys__bundle__never_served_twice_under_concurrent_fetches)
{
	static struct w ws[CONC_FETCHES];
	uint8_t seen[CONC_PREKEYS + 1];
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;
	int i, last_resort = 0;

	fx_start(&f, 7); /* small batches: many transactions */
	a = reg(&f, "alice", 1);
	k = keys_in(a, 1, 0x11, 7, 1, CONC_PREKEYS);
	TT_OK(put(&f, &k, &w));
	memset(ws, 0, sizeof(ws));
	for (i = 0; i < CONC_FETCHES; i++)
		TT_OK(store_bundle_get(f.s, a, (uint32_t)(i % 2), w_cb, &ws[i]));
	uv_run(&f.loop, UV_RUN_DEFAULT);
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < CONC_FETCHES; i++) {
		uint32_t id;
		TT_EQ(ws[i].called, 1);
		TT_OK(ws[i].status);
		TT_EQ(ws[i].nb, 1);
		id = ws[i].b[0].prekey_id;
		if (id == STORE_LAST_RESORT_ID) {
			last_resort++;
			continue;
		}
		TT_ASSERT(id >= 1 && id <= CONC_PREKEYS);
		TT_EQ(seen[id], 0);
		seen[id] = 1;
	}
	TT_EQ(last_resort, CONC_FETCHES - CONC_PREKEYS);
	count_is(&f, a, 1, 0, 7);
	fx_end(&f);
}

TT_CASE(keys__device_remove_deletes_its_keys)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;
	uint32_t d2;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	d2 = dev_add(&f, a, 2);
	k = keys_in(a, 1, 0x11, 7, 1, 5);
	TT_OK(put(&f, &k, &w));
	k = keys_in(a, d2, 0x22, 8, 1, 5);
	TT_OK(put(&f, &k, &w));
	TT_OK(SYNC(&f, &w, store_device_remove(f.s, a, d2, w_cb, &w)));
	count_is(&f, a, d2, 0, 0);
	count_is(&f, a, 1, 5, 7);
	TT_OK(SYNC(&f, &w, store_bundle_get(f.s, a, 0, w_cb, &w)));
	TT_EQ(w.nb, 1);
	TT_EQ(w.b[0].device_id, 1);
	TT_ERR(SYNC(&f, &w, store_bundle_get(f.s, a, d2, w_cb, &w)),
	    TERN_ENOUSER);
	fx_end(&f);
}

TT_CASE(keys__user_disable_and_delete_delete_keys)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a, b;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	b = reg(&f, "bob", 2);
	k = keys_in(a, 1, 0x11, 7, 1, 5);
	TT_OK(put(&f, &k, &w));
	k = keys_in(b, 1, 0x22, 7, 1, 5);
	TT_OK(put(&f, &k, &w));
	TT_OK(SYNC(&f, &w, store_user_disable(f.s, "alice", w_cb, &w)));
	count_is(&f, a, 1, 0, 0);
	TT_OK(SYNC(&f, &w, store_user_delete(f.s, "bob", w_cb, &w)));
	count_is(&f, b, 1, 0, 0);
	fx_end(&f);
}

TT_CASE(keys__persist_over_close_and_reopen)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	int64_t a;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	k = keys_in(a, 1, 0x11, 7, 1, 3);
	TT_OK(put(&f, &k, &w));
	TT_OK(SYNC(&f, &w, store_bundle_get(f.s, a, 0, w_cb, &w)));
	TT_EQ(w.b[0].prekey_id, 1);
	fx_reopen(&f);
	count_is(&f, a, 1, 2, 7);
	TT_OK(SYNC(&f, &w, store_bundle_get(f.s, a, 0, w_cb, &w)));
	TT_EQ(w.nb, 1);
	TT_EQ(w.b[0].prekey_id, 2);
	TT_EQ(w.b[0].signed_prekey_id, 7);
	fx_end(&f);
}

/* A database made before the key tables existed (schema 1) opens, is
 * migrated, and keeps its users. */
TT_CASE(keys__store__migrates_a_version_1_database)
{
	struct fx f;
	struct w w;
	struct store_keys_in k;
	sqlite3 *db;
	int64_t a;

	fx_start(&f, 0);
	a = reg(&f, "alice", 1);
	fx_close(&f);
	TT_EQ(sqlite3_open(f.path, &db), SQLITE_OK);
	/* Later migrations' tables go too: a version-1 file had none. */
	TT_EQ(sqlite3_exec(db, "DROP TABLE prekeys; DROP TABLE device_keys; "
	    "DROP TABLE fed_queue; DROP TABLE fed_usage; DROP TABLE fed_total; "
	    "DROP TABLE peer_keys; PRAGMA user_version = 1;", NULL, NULL, NULL),
	    SQLITE_OK);
	TT_EQ(sqlite3_close(db), SQLITE_OK);
	TT_OK(store_open(&f.s, &f.loop, &f.cfg));
	k = keys_in(a, 1, 0x11, 7, 1, 3);
	TT_OK(put(&f, &k, &w));
	count_is(&f, a, 1, 3, 7);
	fx_end(&f);
}

/* --- Rate limiter --------------------------------------------------------------- */

TT_CASE(ratelimit__take__burst_then_one_per_interval)
{
	struct ratelimit *rl;
	uint64_t t = 5000000;
	int i;

	TT_OK(ratelimit_new(6, 100000, 16, &rl));
	for (i = 0; i < 6; i++)
		TT_OK(ratelimit_take(rl, 1, 2, t));
	TT_ERR(ratelimit_take(rl, 1, 2, t), TERN_ERATE);
	/* Other pairs, either way round, are not affected. */
	TT_OK(ratelimit_take(rl, 2, 1, t));
	TT_OK(ratelimit_take(rl, 1, 3, t));
	TT_ERR(ratelimit_take(rl, 1, 2, t + 99999), TERN_ERATE);
	TT_OK(ratelimit_take(rl, 1, 2, t + 100000));
	TT_ERR(ratelimit_take(rl, 1, 2, t + 100000), TERN_ERATE);
	/* A clock that steps back counts as standing still. */
	TT_ERR(ratelimit_take(rl, 1, 2, t), TERN_ERATE);
	/* Long idle: full again, but never more than full. */
	for (i = 0; i < 6; i++)
		TT_OK(ratelimit_take(rl, 1, 2, t + 10000000));
	TT_ERR(ratelimit_take(rl, 1, 2, t + 10000000), TERN_ERATE);
	ratelimit_free(rl);
	TT_ERR(ratelimit_new(0, 1, 1, &rl), TERN_EINVAL);
	TT_ERR(ratelimit_new(1, 0, 1, &rl), TERN_EINVAL);
	TT_ERR(ratelimit_new(1, 1, 0, &rl), TERN_EINVAL);
}

TT_CASE(ratelimit__table__bounded_evicts_full_then_oldest)
{
	struct ratelimit *rl;
	uint64_t i;

	TT_OK(ratelimit_new(2, 1000, 4, &rl));
	for (i = 0; i < 4; i++)
		TT_OK(ratelimit_take(rl, 1, i, 0));
	TT_EQ(ratelimit_entries(rl), 4);
	/* Full of live buckets: the oldest one makes room. */
	TT_OK(ratelimit_take(rl, 1, 100, 10));
	TT_EQ(ratelimit_entries(rl), 4);
	/* Later all have refilled: the sweep empties the table. */
	TT_OK(ratelimit_take(rl, 1, 200, 1000000));
	TT_EQ(ratelimit_entries(rl), 1);
	for (i = 0; i < 1000; i++)
		TT_OK(ratelimit_take(rl, 2, i, 2000000));
	TT_ASSERT(ratelimit_entries(rl) <= 4);
	ratelimit_free(rl);
}

/* --- The running node with real clients ---------------------------------------- */

#define MAX_PEERS 8
#define MAX_PUSH 16

struct answer {
	bool done;                  /* the callback ran */
	int status;                 /* its status */
	uint8_t type;               /* the answer's type */
	uint16_t code;              /* ERROR: its code */
	struct msg_keys_count kc;   /* KEYS_COUNT */
	uint32_t id;                /* DEVICE_ADDED: the new device's id */
	char user[64];              /* BUNDLE: user */
	size_t nrec;                /* BUNDLE: records */
	uint8_t rec[4][MSG_BUNDLE_REC_LEN]; /* the first few */
};

struct peer {
	char addr[64];              /* local@one.test */
	uint8_t priv[32], pub[32];  /* Noise device key */
	uint32_t device_id;         /* 0 until registered */
	struct client *c;           /* its client */
	int online;                 /* ONLINE reports */
	bool gone;                  /* client_close's callback ran */
	bool reg_done;              /* REGISTER answered */
	int reg_status;
	int npush;                  /* KEYS_COUNT pushes */
	struct msg_keys_count push[MAX_PUSH];
	sqlite3 *db;                /* the device's Signal store */
	struct sig *sig;
};

static struct {
	uv_loop_t loop;
	uv_timer_t watchdog;
	char dir[64];               /* the node's directory */
	struct server *srv;
	bool stopped;               /* server done callback ran */
	const char *what;           /* WAIT_FOR's condition */
	int line;
	struct peer *peers[MAX_PEERS];
	int npeers;
} T;

static void
watchdog_cb(uv_timer_t *t)
{
	(void)t;
	tt_fail(__FILE__, T.line, "still waiting after %d ms for %s",
	    WATCHDOG_MS, T.what ? T.what : "(nothing)");
}

#define WAIT_FOR(cond)                                                     \
	do {                                                               \
		T.what = #cond;                                            \
		T.line = __LINE__;                                         \
		while (!(cond))                                            \
			uv_run(&T.loop, UV_RUN_ONCE);                      \
		T.what = NULL;                                             \
	} while (0)

static void
srv_done(void *arg, int status)
{
	(void)arg;
	(void)status;
	T.stopped = true;
}

static void
node_start(void)
{
	struct node_config cfg;
	char path[512];
	uint8_t priv[32], pub[32];

	memset(&T, 0, sizeof(T));
	TT_ASSERT(sodium_init() >= 0);
	log_set_level(LOG_LEVEL_WARN);
	TT_EQ(uv_loop_init(&T.loop), 0);
	TT_EQ(uv_timer_init(&T.loop, &T.watchdog), 0);
	TT_EQ(uv_timer_start(&T.watchdog, watchdog_cb, WATCHDOG_MS, 0), 0);
	uv_unref((uv_handle_t *)&T.watchdog);
	snprintf(T.dir, sizeof(T.dir), "/tmp/tern-keysrv-XXXXXX");
	TT_ASSERT(mkdtemp(T.dir) != NULL);

	config_defaults(&cfg);
	snprintf(cfg.dir, sizeof(cfg.dir), "%s", T.dir);
	snprintf(cfg.domain, sizeof(cfg.domain), "%s", DOMAIN);
	snprintf(cfg.listen_host, sizeof(cfg.listen_host), "127.0.0.1");
	cfg.listen_port = 0;
	snprintf(cfg.metrics_host, sizeof(cfg.metrics_host), "127.0.0.1");
	cfg.metrics_port = 0;
	cfg.open_registration = true;
	cfg.durability = STORE_DURABILITY_NORMAL;
	TT_OK(config_path_join(&cfg, cfg.admin_token_file, path,
	    sizeof(path)));
	TT_OK(keyfile_token_create(path));
	TT_OK(config_path_join(&cfg, cfg.database, path, sizeof(path)));
	TT_OK(store_create(path));
	noise_keypair_generate(priv, pub);
	TT_OK(server_start(&T.loop, &cfg, priv, srv_done, NULL, &T.srv));
}

static void
p_state(struct client *c, enum client_state st, int err, uint32_t delay)
{
	struct peer *p = client_data(c);

	(void)err;
	(void)delay;
	if (st == CLIENT_ONLINE)
		p->online++;
}

static void
p_keys_count(struct client *c, const struct msg_keys_count *k)
{
	struct peer *p = client_data(c);

	TT_ASSERT(p->npush < MAX_PUSH);
	p->push[p->npush++] = *k;
}

static const struct client_cbs p_cbs = {
	.state = p_state,
	.keys_count = p_keys_count,
};

static void
p_gone(void *arg)
{
	((struct peer *)arg)->gone = true;
}

static void
p_reg(void *arg, int status, uint32_t device_id)
{
	struct peer *p = arg;

	p->reg_done = true;
	p->reg_status = status;
	p->device_id = device_id;
}

static void
answer_cb(void *arg, int status, const struct msg *resp)
{
	struct answer *a = arg;
	size_t i;

	a->done = true;
	a->status = status;
	if (resp == NULL)
		return;
	a->type = resp->type;
	if (resp->type == MSG_ERROR)
		a->code = resp->u.error.code;
	if (resp->type == MSG_KEYS_COUNT)
		a->kc = resp->u.keys_count;
	if (resp->type == MSG_BUNDLE) {
		const struct msg_bundle *b = &resp->u.bundle;
		snprintf(a->user, sizeof(a->user), "%.*s", (int)b->user.len,
		    b->user.p);
		a->nrec = b->devices.count;
		for (i = 0; i < a->nrec && i < 4; i++)
			memcpy(a->rec[i], msg_record(&b->devices,
			    MSG_BUNDLE_REC_LEN, i), MSG_BUNDLE_REC_LEN);
	}
}

/* peer_new: a device of local with a fresh Noise key and Signal store. */
static struct peer *
peer_new(const char *local)
{
	struct peer *p = calloc(1, sizeof(*p));

	TT_ASSERT(p != NULL);
	TT_ASSERT(T.npeers < MAX_PEERS);
	T.peers[T.npeers++] = p;
	snprintf(p->addr, sizeof(p->addr), "%s@%s", local, DOMAIN);
	noise_keypair_generate(p->priv, p->pub);
	TT_EQ(sqlite3_open(":memory:", &p->db), SQLITE_OK);
	TT_OK(sig_open(p->db, &p->sig));
	TT_ASSERT(sig_identity_init(p->sig) >= 0);
	return p;
}

static void
peer_client(struct peer *p)
{
	struct client_config cfg;

	client_config_init(&cfg);
	cfg.host = "127.0.0.1";
	cfg.port = server_port(T.srv);
	cfg.device_key = p->priv;
	cfg.user = p->addr;
	cfg.device_id = p->device_id;
	cfg.reconnect = false;
	TT_OK(client_new(&T.loop, &cfg, &p_cbs, p, &p->c));
}

/* peer_register: a new user with p as its device 1, ONLINE. */
static void
peer_register(struct peer *p)
{
	peer_client(p);
	TT_OK(client_register(p->c, NULL, "phone", p_reg, p));
	WAIT_FOR(p->reg_done);
	TT_OK(p->reg_status);
	WAIT_FOR(p->online > 0);
}

static void
dev_added(void *arg, int status, uint32_t id)
{
	struct answer *a = arg;

	a->done = true;
	a->status = status;
	a->id = id;
}

static void
peer_second_device(struct peer *p1, struct peer *p2)
{
	struct answer a = {0};

	snprintf(p2->addr, sizeof(p2->addr), "%s", p1->addr);
	TT_OK(client_device_add(p1->c, p2->pub, "laptop", dev_added, &a));
	WAIT_FOR(a.done);
	TT_OK(a.status);
	p2->device_id = a.id;
	peer_client(p2);
	TT_OK(client_start(p2->c));
	WAIT_FOR(p2->online > 0);
}

static int
request(struct peer *p, struct msg *m, struct answer *a)
{
	memset(a, 0, sizeof(*a));
	TT_OK(client_request(p->c, m, answer_cb, a));
	WAIT_FOR(a->done);
	return a->status;
}

/*
 * keys_put_msg: p's KEYS_PUT with n fresh one-time prekeys (built in
 * recs, at least n * 36 bytes), exactly as the device would send it.
 */
static void
keys_put_msg(struct peer *p, size_t n, struct msg *m, uint8_t *recs,
    uint32_t first_ids[], struct sig_signed_prekey *spk_out)
{
	struct sig_prekey pk[SIG_PREKEYS_MAX], lr;
	struct sig_signed_prekey spk;
	struct buf_writer w;
	uint8_t rec[MSG_PREKEY_REC_LEN];
	size_t i;

	memset(m, 0, sizeof(*m));
	m->type = MSG_KEYS_PUT;
	TT_OK(sig_local(p->sig, m->u.keys_put.identity_key,
	    &m->u.keys_put.registration_id));
	TT_OK(sig_signed_prekey(p->sig, 1700000000000ull, &spk, NULL));
	TT_OK(sig_last_resort(p->sig, &lr));
	TT_EQ(lr.id, MSG_LAST_RESORT_ID);
	m->u.keys_put.signed_prekey_id = spk.id;
	memcpy(m->u.keys_put.signed_prekey, spk.pub, 32);
	memcpy(m->u.keys_put.signature, spk.signature, 64);
	memcpy(m->u.keys_put.last_resort, lr.pub, 32);
	if (n > 0)
		TT_OK(sig_prekeys_new(p->sig, n, pk));
	buf_writer_init(&w, recs, n * MSG_PREKEY_REC_LEN + 1);
	for (i = 0; i < n; i++) {
		buf_store_be32(rec, pk[i].id);
		memcpy(rec + 4, pk[i].pub, 32);
		TT_OK(msg_record_add(&m->u.keys_put.prekeys, &w, rec,
		    sizeof(rec)));
		if (first_ids != NULL)
			first_ids[i] = pk[i].id;
	}
	if (spk_out != NULL)
		*spk_out = spk;
}

/*
 * keys_put: uploads n fresh prekeys for p, in KEYS_PUTs of at most
 * PUT_CHUNK (client_request encodes into a 1,024-byte buffer, which holds
 * 23 prekeys, not 100); returns the last status.
 */
#define PUT_CHUNK 20

static int
keys_put(struct peer *p, size_t n, struct answer *a)
{
	static uint8_t recs[SIG_PREKEYS_MAX * MSG_PREKEY_REC_LEN + 1];
	struct msg m;
	size_t k;
	int r;

	do {
		k = n < PUT_CHUNK ? n : PUT_CHUNK;
		keys_put_msg(p, k, &m, recs, NULL, NULL);
		if ((r = request(p, &m, a)) != 0)
			return r;
		n -= k;
	} while (n > 0);
	return 0;
}

static int
keys_status(struct peer *p, struct answer *a)
{
	struct msg m = {.type = MSG_KEYS_STATUS};

	return request(p, &m, a);
}

static struct msg
bundle_get_msg(const char *user, uint32_t device_id)
{
	struct msg m = {.type = MSG_BUNDLE_GET};

	m.u.bundle_get.user.p = user;
	m.u.bundle_get.user.len = strlen(user);
	m.u.bundle_get.device_id = device_id;
	return m;
}

static int
bundle_get(struct peer *p, const char *user, uint32_t device_id,
    struct answer *a)
{
	struct msg m = bundle_get_msg(user, device_id);

	return request(p, &m, a);
}

static uint32_t
rec_u32(const uint8_t *rec, size_t off)
{
	return buf_load_be32(rec + off);
}

static void
node_end(void)
{
	int i;

	for (i = 0; i < T.npeers; i++) {
		struct peer *p = T.peers[i];
		if (p->c != NULL) {
			client_close(p->c, p_gone, p);
			WAIT_FOR(p->gone);
		}
		sig_close(p->sig);
		TT_EQ(sqlite3_close(p->db), SQLITE_OK);
		free(p);
	}
	server_stop(T.srv);
	WAIT_FOR(T.stopped);
	uv_close((uv_handle_t *)&T.watchdog, NULL);
	tt_uv_close(&T.loop);
	rm_dir(T.dir);
}

TT_CASE(keys__server__put_status_and_refusals)
{
	struct peer *al;
	struct answer a;
	struct msg m;
	static uint8_t recs[SIG_PREKEYS_MAX * MSG_PREKEY_REC_LEN + 1];
	struct sig_signed_prekey spk;
	uint32_t ids[SIG_PREKEYS_MAX];

	node_start();
	al = peer_new("alice");
	peer_register(al);
	TT_OK(keys_status(al, &a));
	TT_EQ(a.type, MSG_KEYS_COUNT);
	TT_EQ(a.kc.prekeys, 0);
	TT_EQ(a.kc.signed_prekey_id, 0);

	/* A bad signature: EKEY, nothing stored. */
	keys_put_msg(al, 5, &m, recs, NULL, &spk);
	m.u.keys_put.signature[10] ^= 0x01;
	TT_ERR(request(al, &m, &a), TERN_EKEY);
	TT_EQ(a.code, -TERN_EKEY);
	TT_OK(keys_status(al, &a));
	TT_EQ(a.kc.prekeys, 0);
	TT_EQ(a.kc.signed_prekey_id, 0);

	/* A repeated id within the message: EKEY, nothing stored. */
	keys_put_msg(al, 3, &m, recs, ids, &spk);
	memcpy(recs + 2 * MSG_PREKEY_REC_LEN, recs, 4);
	TT_ERR(request(al, &m, &a), TERN_EKEY);
	TT_OK(keys_status(al, &a));
	TT_EQ(a.kc.prekeys, 0);

	/* Good: KEYS_COUNT with the count and the signed prekey id. */
	keys_put_msg(al, PUT_CHUNK, &m, recs, ids, &spk);
	TT_OK(request(al, &m, &a));
	TT_EQ(a.type, MSG_KEYS_COUNT);
	TT_EQ(a.kc.prekeys, PUT_CHUNK);
	TT_EQ(a.kc.signed_prekey_id, spk.id);
	TT_OK(keys_put(al, 100 - PUT_CHUNK, &a));
	TT_EQ(a.kc.prekeys, 100);

	/* More than 100 held: EQUOTA for the whole message. */
	TT_ERR(keys_put(al, 1, &a), TERN_EQUOTA);
	TT_OK(keys_status(al, &a));
	TT_EQ(a.kc.prekeys, 100);
	TT_EQ(a.kc.signed_prekey_id, spk.id);

	/* A one-time id out of range in a record. */
	keys_put_msg(al, 1, &m, recs, ids, &spk);
	buf_store_be32(recs, MSG_LAST_RESORT_ID);
	TT_ERR(request(al, &m, &a), TERN_EFIELD);
	node_end();
}

TT_CASE(keys__server__bundles_of_two_devices)
{
	struct peer *al, *al2, *bob;
	struct answer a;
	uint8_t ident[32];
	uint32_t reg;
	const uint8_t *r;

	node_start();
	al = peer_new("alice");
	al2 = peer_new("alice");
	bob = peer_new("bob");
	peer_register(al);
	peer_second_device(al, al2);
	peer_register(bob);
	TT_OK(keys_put(al2, 3, &a));
	TT_OK(keys_put(al, 3, &a));

	/* All devices, ascending ids, each with one one-time prekey. */
	TT_OK(bundle_get(bob, "alice@" DOMAIN, 0, &a));
	TT_EQ(a.type, MSG_BUNDLE);
	TT_ASSERT(strcmp(a.user, "alice@" DOMAIN) == 0);
	TT_EQ(a.nrec, 2);
	TT_EQ(rec_u32(a.rec[0], 0), 1);
	TT_EQ(rec_u32(a.rec[1], 0), 2);
	TT_OK(sig_local(al->sig, ident, &reg));
	r = a.rec[0];
	TT_EQ(rec_u32(r, 4), reg);
	TT_MEMEQ(r + 8, ident, 32);
	/* The record's signature verifies as uploaded. */
	TT_OK(sig_verify_signed(r + 8, r + 44, r + 76));
	TT_OK(sig_verify_signed(a.rec[1] + 8, a.rec[1] + 44, a.rec[1] + 76));
	TT_ASSERT(rec_u32(r, 140) != MSG_LAST_RESORT_ID);
	TT_OK(keys_status(al, &a));
	TT_EQ(a.kc.prekeys, 2);
	TT_OK(keys_status(al2, &a));
	TT_EQ(a.kc.prekeys, 2);

	/* One device. */
	TT_OK(bundle_get(bob, "alice@" DOMAIN, 2, &a));
	TT_EQ(a.nrec, 1);
	TT_EQ(rec_u32(a.rec[0], 0), 2);
	TT_OK(keys_status(al, &a));
	TT_EQ(a.kc.prekeys, 2);
	TT_OK(keys_status(al2, &a));
	TT_EQ(a.kc.prekeys, 1);

	/* A user without keys: zero records. */
	TT_OK(bundle_get(al, "bob@" DOMAIN, 0, &a));
	TT_EQ(a.type, MSG_BUNDLE);
	TT_EQ(a.nrec, 0);

	/* Unknown user or device; another domain. */
	TT_ERR(bundle_get(bob, "carol@" DOMAIN, 0, &a), TERN_ENOUSER);
	TT_ERR(bundle_get(bob, "alice@" DOMAIN, 9, &a), TERN_ENOUSER);
	TT_ERR(bundle_get(bob, "alice@two.test", 0, &a), TERN_EUNREACH);

	/* Removing device 2 deletes its keys. */
	{
		struct msg m = {.type = MSG_DEVICE_REMOVE};
		m.u.device_remove.device_id = 2;
		TT_OK(request(al, &m, &a));
	}
	TT_OK(bundle_get(al, "alice@" DOMAIN, 0, &a));
	TT_EQ(a.nrec, 1);
	TT_EQ(rec_u32(a.rec[0], 0), 1);
	node_end();
}

TT_CASE(keys__server__exhaustion_serves_last_resort_and_pushes_low_count)
{
	struct peer *al, *bob;
	struct answer a;
	struct sig_prekey lr;
	int i;

	node_start();
	al = peer_new("alice");
	bob = peer_new("bob");
	peer_register(al);
	peer_register(bob);
	TT_OK(keys_put(al, 11, &a));
	TT_EQ(a.kc.prekeys, 11);

	/* 11 -> 10 left: not low yet. alice's KEYS_STATUS is answered
	 * after any push the fetch made on her connection. */
	TT_OK(bundle_get(bob, "alice@" DOMAIN, 0, &a));
	TT_OK(keys_status(al, &a));
	TT_EQ(a.kc.prekeys, 10);
	TT_EQ(al->npush, 0);

	/* 10 -> 9: pushed, req 0, with the signed prekey id. */
	TT_OK(bundle_get(bob, "alice@" DOMAIN, 0, &a));
	WAIT_FOR(al->npush == 1);
	TT_EQ(al->push[0].prekeys, 9);
	TT_OK(keys_status(al, &a));
	TT_EQ(al->push[0].signed_prekey_id, a.kc.signed_prekey_id);
	TT_ASSERT(a.kc.signed_prekey_id != 0);

	/* Own fetches are not rate limited: drain the rest, then two
	 * more get the last-resort key, which stays. */
	TT_OK(sig_last_resort(al->sig, &lr));
	for (i = 0; i < 11; i++) {
		TT_OK(bundle_get(al, "alice@" DOMAIN, 1, &a));
		TT_EQ(a.nrec, 1);
		if (i < 9) {
			TT_ASSERT(rec_u32(a.rec[0], 140) != MSG_LAST_RESORT_ID);
		} else {
			TT_EQ(rec_u32(a.rec[0], 140), MSG_LAST_RESORT_ID);
			TT_MEMEQ(a.rec[0] + 144, lr.pub, 32);
		}
	}
	WAIT_FOR(al->npush == 12);
	TT_EQ(al->push[11].prekeys, 0);
	node_end();
}

TT_CASE(keys__server__rate_limit_per_pair_refills)
{
	struct peer *al, *bob, *carol;
	struct answer a;
	int i;

	node_start();
	al = peer_new("alice");
	bob = peer_new("bob");
	carol = peer_new("carol");
	peer_register(al);
	peer_register(bob);
	peer_register(carol);
	TT_OK(keys_put(al, 50, &a));
	for (i = 0; i < 6; i++)
		TT_OK(bundle_get(bob, "alice@" DOMAIN, 0, &a));
	TT_ERR(bundle_get(bob, "alice@" DOMAIN, 0, &a), TERN_ERATE);
	/* ERATE consumed nothing. */
	TT_OK(keys_status(al, &a));
	TT_EQ(a.kc.prekeys, 44);
	/* Other pairs are not affected; one's own user is unlimited. */
	TT_OK(bundle_get(carol, "alice@" DOMAIN, 0, &a));
	TT_OK(bundle_get(bob, "carol@" DOMAIN, 0, &a));
	for (i = 0; i < 10; i++)
		TT_OK(bundle_get(al, "alice@" DOMAIN, 0, &a));
	/* 99 s later still nothing; at 100 s one token. */
	server_clock_advance(T.srv, 99000);
	TT_ERR(bundle_get(bob, "alice@" DOMAIN, 0, &a), TERN_ERATE);
	server_clock_advance(T.srv, 1000);
	TT_OK(bundle_get(bob, "alice@" DOMAIN, 0, &a));
	TT_ERR(bundle_get(bob, "alice@" DOMAIN, 0, &a), TERN_ERATE);
	node_end();
}

/* Several requesters on their own connections, all their fetches in
 * flight at once: every one-time prekey is served at most once. */
TT_CASE(keys__server__concurrent_fetches_never_serve_a_prekey_twice)
{
	enum { NREQ = 4, PER = 6, PREKEYS = 20 };
	static struct answer as[NREQ * PER];
	struct peer *al, *req[NREQ];
	struct answer a;
	uint32_t ids[NREQ * PER];
	char name[16];
	int i, j, n = 0, lr = 0;

	node_start();
	al = peer_new("alice");
	peer_register(al);
	for (i = 0; i < NREQ; i++) {
		snprintf(name, sizeof(name), "req%d", i);
		req[i] = peer_new(name);
		peer_register(req[i]);
	}
	TT_OK(keys_put(al, PREKEYS, &a));
	memset(as, 0, sizeof(as));
	for (j = 0; j < PER; j++) {
		for (i = 0; i < NREQ; i++) {
			struct msg m = bundle_get_msg("alice@" DOMAIN, 0);
			TT_OK(client_request(req[i]->c, &m, answer_cb,
			    &as[j * NREQ + i]));
		}
	}
	for (i = 0; i < NREQ * PER; i++) {
		WAIT_FOR(as[i].done);
		TT_OK(as[i].status);
		TT_EQ(as[i].nrec, 1);
		if (rec_u32(as[i].rec[0], 140) == MSG_LAST_RESORT_ID) {
			lr++;
			continue;
		}
		ids[n++] = rec_u32(as[i].rec[0], 140);
	}
	TT_EQ(n, PREKEYS);
	TT_EQ(lr, NREQ * PER - PREKEYS);
	for (i = 0; i < n; i++)
		for (j = 0; j < i; j++)
			TT_ASSERT(ids[i] != ids[j]);
	node_end();
}
