/*
 * bench_e2e.c: the client side of end-to-end encryption, for tern-bench's
 * "e2e" scenario: Signal encrypt+decrypt pairs per second on one core,
 * and session set-up time (build from a bundle, first encrypt, first
 * decrypt), through crypto/sig.h exactly as the client uses it: SQLite
 * stores, work batched in transactions of 100 as a receive burst is.
 */
#include "bench_e2e.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "sig.h"

struct peer {
	sqlite3 *db;
	struct sig *s;
};

static void
e2e_die(const char *what, int r)
{
	fprintf(stderr, "tern-bench e2e: %s: %s\n", what, tern_strerror(r));
	exit(1);
}

static double
mono(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double
cpu(void)
{
	struct timespec t;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
exec_sql(struct peer *p, const char *sql)
{
	if (sqlite3_exec(p->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		e2e_die(sql, TERN_EDB);
}

static void
peer_open(struct peer *p, const char *path)
{
	int r;

	if (sqlite3_open(path, &p->db) != SQLITE_OK)
		e2e_die("sqlite open", TERN_EDB);
	/* As the client's profile database. */
	exec_sql(p, "PRAGMA journal_mode=WAL");
	exec_sql(p, "PRAGMA synchronous=FULL");
	if ((r = sig_open(p->db, &p->s)) != 0)
		e2e_die("sig_open", r);
	if ((r = sig_identity_init(p->s)) < 0)
		e2e_die("identity", r);
}

static void
peer_close(struct peer *p)
{
	sig_close(p->s);
	sqlite3_close(p->db);
}

/* bundle: b's keys with one-time prekey k of pks. */
static void
bundle(struct peer *b, uint32_t dev, const struct sig_prekey *pk,
    struct sig_bundle *out)
{
	struct sig_signed_prekey spk;
	int r;

	memset(out, 0, sizeof(*out));
	if ((r = sig_local(b->s, out->identity, &out->registration_id)) != 0 ||
	    (r = sig_signed_prekey(b->s, (uint64_t)time(NULL) * 1000, &spk,
	    NULL)) != 0)
		e2e_die("bundle", r);
	out->device_id = dev;
	out->signed_prekey_id = spk.id;
	memcpy(out->signed_prekey, spk.pub, SIG_KEY_LEN);
	memcpy(out->signature, spk.signature, SIG_SIG_LEN);
	out->prekey_id = pk->id;
	memcpy(out->prekey, pk->pub, SIG_KEY_LEN);
}

static int
cmp_d(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;

	return a < b ? -1 : a > b;
}

/* pairs: n encrypt+decrypt pairs a -> b over an established session, in
 * transactions of 100 on each side; returns pairs per CPU second. */
static double
pairs(struct peer *a, struct peer *b, int n)
{
	static const char text[] = "a typical short chat message, about "
	    "sixty bytes of it";
	uint8_t ct[1024], pt[1024];
	struct buf_writer w;
	double c0;
	int i, r;

	c0 = cpu();
	for (i = 0; i < n; i++) {
		if (i % 100 == 0) {
			exec_sql(a, "BEGIN IMMEDIATE");
			exec_sql(b, "BEGIN IMMEDIATE");
		}
		buf_writer_init(&w, ct, sizeof(ct));
		if ((r = sig_encrypt(a->s, "b@bench.test", 1,
		    (const uint8_t *)text, sizeof(text) - 1, &w)) != 0)
			e2e_die("encrypt", r);
		{
			struct buf_writer o;
			size_t len = w.len;
			buf_writer_init(&o, pt, sizeof(pt));
			if ((r = sig_decrypt(b->s, "a@bench.test", 1, ct, len,
			    &o)) != 0)
				e2e_die("decrypt", r);
			if (o.len != sizeof(text) - 1)
				e2e_die("decrypt length", TERN_EDECRYPT);
		}
		if (i % 100 == 99 || i == n - 1) {
			exec_sql(a, "COMMIT");
			exec_sql(b, "COMMIT");
		}
	}
	return n / (cpu() - c0);
}

/* setup: sessions a builds with b from bundles (one per device id, so
 * each is new), timing the build, a's first encrypt and b's first
 * decrypt, each alone in its transaction. */
static void
setup(struct peer *a, struct peer *b, int n, double *build_p50,
    double *total_p50, double *total_mean)
{
	struct sig_prekey *pks = calloc((size_t)n, sizeof(*pks));
	double *tb = calloc((size_t)n, sizeof(double));
	double *tt = calloc((size_t)n, sizeof(double));
	uint8_t ct[2048], pt[256];
	double sum = 0;
	int i, r, done = 0;

	if (pks == NULL || tb == NULL || tt == NULL)
		e2e_die("setup", TERN_ENOMEM);
	while (done < n) {
		int k = n - done > SIG_PREKEYS_MAX ? SIG_PREKEYS_MAX : n - done;
		exec_sql(b, "BEGIN");
		if ((r = sig_prekeys_new(b->s, (size_t)k, pks + done)) != 0)
			e2e_die("prekeys", r);
		exec_sql(b, "COMMIT");
		done += k;
	}
	for (i = 0; i < n; i++) {
		struct sig_bundle bd;
		struct buf_writer w, o;
		double t0, t1, t2;
		uint32_t dev = (uint32_t)i + 2;

		bundle(b, dev, &pks[i], &bd);
		t0 = mono();
		exec_sql(a, "BEGIN IMMEDIATE");
		if ((r = sig_session_build(a->s, "b@bench.test", &bd)) != 0)
			e2e_die("build", r);
		exec_sql(a, "COMMIT");
		t1 = mono();
		exec_sql(a, "BEGIN IMMEDIATE");
		buf_writer_init(&w, ct, sizeof(ct));
		if ((r = sig_encrypt(a->s, "b@bench.test", dev,
		    (const uint8_t *)"hi", 2, &w)) != 0)
			e2e_die("first encrypt", r);
		exec_sql(a, "COMMIT");
		exec_sql(b, "BEGIN IMMEDIATE");
		buf_writer_init(&o, pt, sizeof(pt));
		/* A distinct sender device per session on b's side too. */
		if ((r = sig_decrypt(b->s, "a@bench.test", dev, ct, w.len,
		    &o)) != 0)
			e2e_die("first decrypt", r);
		exec_sql(b, "COMMIT");
		t2 = mono();
		tb[i] = (t1 - t0) * 1e3;
		tt[i] = (t2 - t0) * 1e3;
		sum += tt[i];
	}
	qsort(tb, (size_t)n, sizeof(double), cmp_d);
	qsort(tt, (size_t)n, sizeof(double), cmp_d);
	*build_p50 = tb[n / 2];
	*total_p50 = tt[n / 2];
	*total_mean = sum / n;
	free(pks);
	free(tb);
	free(tt);
}

static void
establish(struct peer *a, struct peer *b)
{
	struct sig_prekey pk;
	struct sig_bundle bd;
	uint8_t ct[2048], pt[256];
	struct buf_writer w, o;
	int r;

	exec_sql(b, "BEGIN");
	if ((r = sig_prekeys_new(b->s, 1, &pk)) != 0)
		e2e_die("prekeys", r);
	exec_sql(b, "COMMIT");
	bundle(b, 1, &pk, &bd);
	if ((r = sig_session_build(a->s, "b@bench.test", &bd)) != 0)
		e2e_die("build", r);
	buf_writer_init(&w, ct, sizeof(ct));
	if ((r = sig_encrypt(a->s, "b@bench.test", 1, (const uint8_t *)"x", 1,
	    &w)) != 0)
		e2e_die("encrypt", r);
	buf_writer_init(&o, pt, sizeof(pt));
	if ((r = sig_decrypt(b->s, "a@bench.test", 1, ct, w.len, &o)) != 0)
		e2e_die("decrypt", r);
}

void
bench_e2e(bool quick, void (*report)(const char *, double, const char *,
    const char *))
{
	char dir[] = "/tmp/tern-bench-e2e-XXXXXX", pa[128], pb[128];
	struct peer a, b;
	double mem, file, bp50, tp50, tmean;
	int n = quick ? 5000 : 50000, ns = quick ? 50 : 300;

	/* In memory: the cost of the cryptography and the stores' SQL. */
	peer_open(&a, ":memory:");
	peer_open(&b, ":memory:");
	establish(&a, &b);
	mem = pairs(&a, &b, n);
	setup(&a, &b, ns, &bp50, &tp50, &tmean);
	peer_close(&a);
	peer_close(&b);
	printf("e2e: %d encrypt+decrypt pairs (60-byte text), one core, "
	    "in-memory stores\n", n);
	report("e2e_pairs_per_s_memory", mem, "pairs/s", ">= 20000");
	report("e2e_setup_build_p50_ms", bp50, "ms", "<= 1");
	report("e2e_setup_total_p50_ms", tp50, "ms", "");
	report("e2e_setup_total_mean_ms", tmean, "ms", "");

	/* On WAL files with synchronous=FULL, as a profile is. */
	if (mkdtemp(dir) == NULL)
		e2e_die("mkdtemp", TERN_EIO);
	snprintf(pa, sizeof(pa), "%s/a.db", dir);
	snprintf(pb, sizeof(pb), "%s/b.db", dir);
	peer_open(&a, pa);
	peer_open(&b, pb);
	establish(&a, &b);
	file = pairs(&a, &b, n / 5);
	peer_close(&a);
	peer_close(&b);
	report("e2e_pairs_per_s_wal_file", file, "pairs/s", ">= 20000");
	{
		static const char *const f[] = {"a.db", "a.db-wal", "a.db-shm",
		    "b.db", "b.db-wal", "b.db-shm"};
		size_t i;
		for (i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
			snprintf(pa, sizeof(pa), "%s/%s", dir, f[i]);
			(void)unlink(pa);
		}
		if (rmdir(dir) != 0)
			fprintf(stderr, "tern-bench e2e: could not remove "
			    "%s\n", dir);
	}
}
