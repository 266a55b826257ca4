/*
 * fed_harness.h: what the federation tests share (test_fed.c,
 * test_relay.c), on top of ternd_harness.h: nodes with federation on
 * (struct fnode), the tern CLI as their users (tern_run, TERN), the
 * nodes' /metrics, and a fake node on the real transport (F, fk_*) for
 * what an honest node never sends. Include after ternd_harness.h, with
 * -Wunused-function off: not every test uses everything.
 */
#ifndef TERN_FED_HARNESS_H
#define TERN_FED_HARNESS_H

#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "msg.h"
#include "net.h"
#include "tt_uv.h"

#define TERN_BIN TERN_BUILD_DIR "/client/tern"

struct fnode {
	struct ternd t;
	char domain[32];
	uint16_t fed_port;
	char key[64];              /* base64 node key */
	char server[32];           /* client address, for tern --server */
};

static char pdir[TERND_PATH];           /* the tern profiles */

/* fconf_replace: the line that is exactly old becomes "listen = VALUE"
 * ([federation] listen is the only "listen = none": [node] listen
 * always has an address). */
static void
fconf_replace(struct ternd *t, const char *old, const char *value)
{
	size_t len = 0;
	char *s = tt_read_file(t->conf, &len), *at;
	FILE *f;

	TT_ASSERT(s != NULL);
	TT_ASSERT((at = strstr(s, old)) != NULL);
	TT_ASSERT((f = fopen(t->conf, "w")) != NULL);
	fwrite(s, 1, (size_t)(at - s), f);
	fprintf(f, "listen = %s", value);
	fputs(at + strlen(old), f);
	TT_EQ(fclose(f), 0);
	free(s);
}

/* fnode_init: ternd init for domain, with federation on a free port. */
static void
fnode_init(struct fnode *n, const char *domain)
{
	char listen[64], out[4096], *k;
	int st;

	memset(n, 0, sizeof(*n));
	snprintf(n->domain, sizeof(n->domain), "%s", domain);
	snprintf(n->t.dir, sizeof(n->t.dir), "/tmp/ternd-fed-XXXXXX");
	TT_ASSERT(mkdtemp(n->t.dir) != NULL);
	ternd_track(&n->t);
	snprintf(n->t.conf, sizeof(n->t.conf), "%s/ternd.conf", n->t.dir);
	snprintf(n->t.log, sizeof(n->t.log), "%s/ternd.log", n->t.dir);
	snprintf(n->t.runfile, sizeof(n->t.runfile), "%s/ternd.run",
	    n->t.dir);
	n->t.port = ternd_free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", n->t.port);
	snprintf(n->server, sizeof(n->server), "127.0.0.1:%u", n->t.port);
	{
		const char *args[] = {"init", "--domain", domain, "--dir",
		    n->t.dir, "--listen", listen, "--metrics-listen",
		    "127.0.0.1:0", "--open-registration", NULL};
		st = ternd_wait_exit(ternd_spawn(args, -1, -1), 10000);
		TT_ASSERT(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	{
		const char *args[] = {"dns-records", NULL};
		TT_EQ(ternd_cli(&n->t, out, sizeof(out), args), 0);
	}
	TT_ASSERT((k = strstr(out, "Node key (clients may pin it): ")) !=
	    NULL);
	snprintf(n->key, sizeof(n->key), "%.44s", k + 31);
	n->fed_port = ternd_free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", n->fed_port);
	fconf_replace(&n->t, "listen = none", listen);
}

struct run {
	int status;
	char *out;
	char err[4096];
};

static void
tern_run(struct run *res, const char *who, const char *const *args)
{
	posix_spawn_file_actions_t fa;
	char profile[TERND_PATH + 64], op[TERND_PATH + 8], ep[TERND_PATH + 8];
	char *argv[24], *e;
	size_t n = 0, len;
	pid_t pid;
	int i, st;

	snprintf(profile, sizeof(profile), "%s/%s", pdir, who);
	snprintf(op, sizeof(op), "%s/out", pdir);
	snprintf(ep, sizeof(ep), "%s/err", pdir);
	argv[n++] = (char *)TERN_BIN;
	argv[n++] = (char *)"--profile";
	argv[n++] = profile;
	for (i = 0; args[i] != NULL; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, op, O_WRONLY | O_CREAT |
	    O_TRUNC, 0600);
	posix_spawn_file_actions_addopen(&fa, 2, ep, O_WRONLY | O_CREAT |
	    O_TRUNC, 0600);
	TT_EQ(posix_spawn(&pid, TERN_BIN, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	st = ternd_wait_exit(pid, 120000);
	TT_ASSERT(st != -1);
	res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	res->out = tt_read_file(op, &len);
	TT_ASSERT(res->out != NULL);
	e = tt_read_file(ep, &len);
	TT_ASSERT(e != NULL);
	snprintf(res->err, sizeof(res->err), "%s", e);
	free(e);
	if (strstr(res->err, "Sanitizer") != NULL ||
	    strstr(res->err, "runtime error") != NULL)
		tt_fail(__FILE__, __LINE__, "tern: %s", res->err);
}

#define TERN(res, who, ...) do {                                        \
	const char *a_[] = {__VA_ARGS__, NULL};                          \
	tern_run((res), (who), a_);                                      \
} while (0)

static void
ok(struct run *r)
{
	if (r->status != 0)
		tt_fail(__FILE__, __LINE__, "tern exited %d: %s", r->status,
		    r->err);
}

static size_t
count_of(const char *hay, const char *needle)
{
	size_t n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* inbox_wait: runs `tern inbox` until want is in what it printed (all
 * runs together), for a node that needs a moment to hand over. */
static char *
inbox_wait(const char *who, const char *want, uint32_t max_ms)
{
	uint64_t end = ternd_now_ms() + max_ms;
	size_t cap = 1 << 16, len = 0;
	char *all = calloc(1, cap);
	struct run r;

	TT_ASSERT(all != NULL);
	for (;;) {
		TERN(&r, who, "inbox", "--json");
		ok(&r);
		if (len + strlen(r.out) + 1 < cap) {
			memcpy(all + len, r.out, strlen(r.out) + 1);
			len += strlen(r.out);
		}
		free(r.out);
		if (strstr(all, want) != NULL)
			return all;
		if (ternd_now_ms() >= end)
			tt_fail(__FILE__, __LINE__, "no '%s' after %u ms; got: "
			    "%s", want, max_ms, all);
		ternd_nap(200);
	}
}

/* metric: a value from the node's /metrics. */
static unsigned long long
metric_of(const struct fnode *n, const char *name)
{
	static char m[65536];
	char key[128];
	const char *p;
	unsigned long long v = 0;

	TT_ASSERT(ternd_http_get(&n->t, "/metrics", m, sizeof(m)) > 0);
	snprintf(key, sizeof(key), "\n%s ", name);
	TT_ASSERT((p = strstr(m, key)) != NULL);
	TT_EQ(sscanf(p + strlen(key), "%llu", &v), 1);
	return v;
}

struct fake {
	uv_loop_t loop;
	struct net_loop nl;
	struct net_conn *c;
	uint8_t priv[32], pub[32];
	bool open, closed;
	int err;
	struct msg last;            /* the last answer (fixed fields) */
	uint8_t type;
	uint16_t code;
	uint32_t answers;
};

static struct fake F;

/* Callbacks of an earlier connection (closing late) are ignored. */
static void
fk_open(struct net_conn *c)
{
	if (c == F.c)
		F.open = true;
}

static int
fk_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct msg m;

	if (c != F.c)
		return 0;
	TT_OK(msg_decode(buf, len, &m));
	F.type = m.type;
	F.code = m.type == MSG_ERROR ? m.u.error.code : 0;
	F.answers++;
	return 0;
}

static void
fk_closed(struct net_conn *c, int err)
{
	if (c != F.c)
		return;
	F.closed = true;
	F.err = err;
	F.c = NULL;
}

static const struct net_conn_cbs fk_cbs = {
	.open = fk_open, .message = fk_message, .closed = fk_closed,
};

static void
fk_send(const struct msg *m)
{
	uint8_t buf[MSG_MAX];
	size_t n;

	TT_OK(msg_encode(m, buf, sizeof(buf), &n));
	TT_OK(net_conn_send(F.c, buf, n));
}

static void
fk_wait_answer(uint32_t n)
{
	uint64_t end = ternd_now_ms() + 10000;

	while (F.answers < n && !F.closed) {
		uv_run(&F.loop, UV_RUN_NOWAIT);
		TT_ASSERT(ternd_now_ms() < end);
		ternd_nap(2);
	}
	TT_ASSERT(F.answers >= n);
}

static void
fk_connect(uint16_t port, const uint8_t *rs)
{
	F.open = F.closed = false;
	F.answers = 0;
	TT_OK(net_connect(&F.nl, "127.0.0.1", port, CHAN_KIND_FEDERATION,
	    CHAN_IK, F.priv, NULL, rs, MSG_MAX, &fk_cbs, 0, &F.c));
	{
		uint64_t end = ternd_now_ms() + 10000;
		while (!F.open && !F.closed) {
			uv_run(&F.loop, UV_RUN_NOWAIT);
			TT_ASSERT(ternd_now_ms() < end);
			ternd_nap(2);
		}
	}
	if (!F.open)
		tt_fail(__FILE__, __LINE__, "fake node: no handshake: %s",
		    tern_strerror(F.err));
}

static void
fk_hello(const char *domain, const char *to)
{
	struct msg m = {.type = MSG_FED_HELLO, .req = 1};

	m.u.fed_hello.domain.p = domain;
	m.u.fed_hello.domain.len = strlen(domain);
	m.u.fed_hello.to_domain.p = to;
	m.u.fed_hello.to_domain.len = strlen(to);
	m.u.fed_hello.time_ms = 1;
	fk_send(&m);
}

#endif
