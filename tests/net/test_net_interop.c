/*
 * test_net_interop.c: tern's transport against a second implementation,
 * tests/crypto/noise_peer.py on Debian's python3-dissononce, over loopback
 * TCP, with tern as initiator and as responder.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "net.h"
#include "tt.h"
#include "tt_uv.h"

#define INTEROP_COUNT 150
#define INTEROP_PYTHON "/usr/bin/python3"

extern char **environ;

struct interop {
	uv_loop_t loop;           /* the test's loop */
	struct net_loop nl;       /* tern's transport */
	uint8_t s[32], pub[32];   /* tern's static key */
	uint8_t ps[32], ppub[32]; /* the python peer's */
	pid_t pid;                /* the python peer */
	int sent, received;       /* messages */
	int closed;               /* closed callbacks */
	int close_err;            /* their error */
	char me, peer;            /* 'I' or 'R' */
	int version;              /* the connection's transport version */
};

static struct interop T;

/* The same bytes as interop_message() in noise_peer.py. */
static size_t
interop_message(int i, char sender, uint8_t *out)
{
	size_t n = i == 42 ? 70000 : (size_t)((i * 37) % 1000 + 1);
	uint8_t seed = (uint8_t)((i * 7 + (sender == 'I' ? 1 : 101)) & 0xff);

	for (size_t j = 0; j < n; j++)
		out[j] = (uint8_t)(seed + j);
	return n;
}

static void
interop_open(struct net_conn *c)
{
	static uint8_t m[70000];

	TT_MEMEQ(chan_remote_key(&c->chan), T.ppub, 32);
	T.version = c->chan.version;
	chan_set_msg_cap(&c->chan, 80000);
	for (int i = 0; i < INTEROP_COUNT; i++) {
		size_t n = interop_message(i, T.me, m);
		TT_OK(net_conn_send(c, m, n));
		T.sent++;
	}
}

static int
interop_message_cb(struct net_conn *c, const uint8_t *msg, size_t len)
{
	static uint8_t want[70000];
	size_t n = interop_message(T.received, T.peer, want);

	TT_EQ(len, n);
	TT_MEMEQ(msg, want, n);
	if (++T.received == INTEROP_COUNT)
		net_conn_close(c, 0);
	return 0;
}

static void
interop_closed(struct net_conn *c, int err)
{
	T.closed++;
	T.close_err = err;
	net_loop_close(&T.nl, NULL, NULL);
}

static const struct net_conn_cbs interop_cbs = {
	.open = interop_open,
	.message = interop_message_cb,
	.closed = interop_closed,
};

static void
hex(const uint8_t *b, size_t n, char *out)
{
	sodium_bin2hex(out, 2 * n + 1, b, n);
}

/* Starts the python peer; for a responder, reads the port it prints. */
static uint16_t
interop_spawn(const char *role, uint16_t port, const char *pattern,
    const char *version)
{
	char s_hex[65], rs_hex[65], port_s[16], count[16], line[64];
	char script[512];
	posix_spawn_file_actions_t fa;
	int pfd[2];
	FILE *f;
	unsigned p = 0;

	snprintf(script, sizeof(script), "%s/crypto/noise_peer.py",
	    TERN_TEST_DATA);
	hex(T.ps, 32, s_hex);
	hex(T.pub, 32, rs_hex);
	snprintf(port_s, sizeof(port_s), "%u", port);
	snprintf(count, sizeof(count), "%d", INTEROP_COUNT);
	char *argv[] = {INTEROP_PYTHON, script, (char *)role, "127.0.0.1",
	    port_s, (char *)pattern, s_hex, rs_hex, count, (char *)version,
	    NULL};
	TT_OK(pipe(pfd));
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	posix_spawn_file_actions_addclose(&fa, pfd[0]);
	TT_EQ(posix_spawn(&T.pid, INTEROP_PYTHON, &fa, NULL, argv, environ),
	    0);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	f = fdopen(pfd[0], "r");
	TT_ASSERT(f != NULL);
	if (strcmp(role, "responder") == 0) {
		TT_ASSERT(fgets(line, sizeof(line), f) != NULL);
		TT_EQ(sscanf(line, "port %u", &p), 1);
	}
	/* The rest of its output (one summary line) goes to our stdout. */
	if (fork() == 0) {
		while (fgets(line, sizeof(line), f) != NULL)
			fputs(line, stdout);
		fflush(stdout);
		_exit(0);
	}
	fclose(f);
	return (uint16_t)p;
}

static void
interop_wait(void)
{
	int status;

	TT_EQ(waitpid(T.pid, &status, 0), T.pid);
	TT_ASSERT(WIFEXITED(status));
	TT_EQ(WEXITSTATUS(status), 0);
	while (wait(NULL) > 0)
		;
}

static void
interop_setup(char me)
{
	TT_ASSERT(sodium_init() >= 0);
	memset(&T, 0, sizeof(T));
	T.me = me;
	T.peer = me == 'I' ? 'R' : 'I';
	noise_keypair_generate(T.s, T.pub);
	noise_keypair_generate(T.ps, T.ppub);
	TT_OK(uv_loop_init(&T.loop));
	TT_OK(net_loop_init(&T.nl, &T.loop, NULL));
}

static void
interop_tern_initiator(enum chan_pattern pat, const char *name)
{
	struct net_conn *c;
	uint16_t port;

	interop_setup('I');
	port = interop_spawn("responder", 0, "-", "2");
	TT_OK(net_connect(&T.nl, "127.0.0.1", port, CHAN_KIND_CLIENT, pat,
	    T.s, NULL, T.ppub, 4096, &interop_cbs, 0, &c));
	tt_uv_close(&T.loop);
	interop_wait();
	TT_EQ(T.sent, INTEROP_COUNT);
	TT_EQ(T.received, INTEROP_COUNT);
	TT_EQ(T.closed, 1);
	TT_EQ(T.version, CHAN_VERSION);
	printf("interop %s, tern initiator: %d messages each way\n", name,
	    INTEROP_COUNT);
}

/* The python initiator speaks transport version (1 or 2); as responder
 * tern follows it: batch frames only with 2 (noise_peer.py checks). */
static void
interop_tern_responder(const char *pattern, int version)
{
	struct net_listener *l;
	char v[8];

	interop_setup('R');
	TT_OK(net_listen(&T.nl, "127.0.0.1", 0, CHAN_KIND_CLIENT, T.s, 4096,
	    &interop_cbs, 0, NULL, &l));
	snprintf(v, sizeof(v), "%d", version);
	interop_spawn("initiator", net_listener_port(l), pattern, v);
	tt_uv_close(&T.loop);
	interop_wait();
	TT_EQ(T.sent, INTEROP_COUNT);
	TT_EQ(T.received, INTEROP_COUNT);
	TT_EQ(T.version, version);
	printf("interop %s, tern responder, version %d: %d messages each way\n",
	    pattern, version, INTEROP_COUNT);
}

TT_CASE(interop__xx__tern_initiator)
{
	interop_tern_initiator(CHAN_XX, "XX");
}

TT_CASE(interop__xx__tern_responder)
{
	interop_tern_responder("XX", CHAN_VERSION);
}

TT_CASE(interop__ik__tern_initiator)
{
	interop_tern_initiator(CHAN_IK, "IK");
}

TT_CASE(interop__ik__tern_responder)
{
	interop_tern_responder("IK", CHAN_VERSION);
}

TT_CASE(interop__xx__tern_responder_version_1_peer)
{
	interop_tern_responder("XX", 1);
}

TT_CASE(interop__ik__tern_responder_version_1_peer)
{
	interop_tern_responder("IK", 1);
}
