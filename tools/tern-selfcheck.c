/*
 * tern-selfcheck: checks this machine's build of tern's transport end to
 * end on loopback: a responder and an initiator in one process complete
 * an XX and an IK handshake and exchange messages both ways through the
 * real sockets, framing and ciphers. Prints what it did; exit 0 if all
 * arrived intact.
 *
 *     tern-selfcheck [COUNT]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <uv.h>

#include "net.h"

struct check {
	uv_loop_t loop;             /* the loop */
	struct net_loop nl;         /* transport */
	uint8_t ss[32], spub[32];   /* responder key */
	uint8_t cs[32], cpub[32];   /* initiator key */
	int count;                  /* messages each way */
	int srv_got, cli_got;       /* received */
	int sent;                   /* sent by the initiator */
	int bad;                    /* corrupted or unexpected */
	int closed;                 /* connections closed */
	uint64_t t0;                /* start, ns */
};

static struct check C;

static int
srv_message(struct net_conn *c, const uint8_t *m, size_t n)
{
	if (n != 64 || m[0] != (uint8_t)C.srv_got)
		C.bad++;
	C.srv_got++;
	return net_conn_send(c, m, n);
}

/* Keeps at most WINDOW messages unanswered, as a real client would, so
 * output never piles up past the connection's cap. */
#define WINDOW 1024

static void
cli_send_next(struct net_conn *c)
{
	uint8_t m[64];

	while (C.sent < C.count && C.sent - C.cli_got < WINDOW) {
		memset(m, C.sent & 0xff, sizeof(m));
		if (net_conn_send(c, m, sizeof(m)) != 0)
			C.bad++;
		C.sent++;
	}
}

static int
cli_message(struct net_conn *c, const uint8_t *m, size_t n)
{
	if (n != 64 || m[0] != (uint8_t)C.cli_got)
		C.bad++;
	if (++C.cli_got == C.count)
		net_conn_close(c, 0);
	else
		cli_send_next(c);
	return 0;
}

static void
cli_open(struct net_conn *c)
{
	if (memcmp(chan_remote_key(&c->chan), C.spub, 32) != 0)
		C.bad++;
	cli_send_next(c);
}

static void
any_closed(struct net_conn *c, int err)
{
	if (++C.closed == 2)
		net_loop_close(&C.nl, NULL, NULL);
}

static const struct net_conn_cbs srv_cbs = {
	.message = srv_message, .closed = any_closed};
static const struct net_conn_cbs cli_cbs = {
	.open = cli_open, .message = cli_message, .closed = any_closed};

static int
run(enum chan_pattern pat, const char *name)
{
	struct net_listener *l;
	struct net_conn *c;
	double secs;
	int r;

	C.srv_got = C.cli_got = C.bad = C.closed = C.sent = 0;
	uv_loop_init(&C.loop);
	if ((r = net_loop_init(&C.nl, &C.loop, NULL)) != 0 ||
	    (r = net_listen(&C.nl, "127.0.0.1", 0, CHAN_KIND_CLIENT, C.ss,
	    4096, &srv_cbs, 0, NULL, &l)) != 0 ||
	    (r = net_connect(&C.nl, "127.0.0.1", net_listener_port(l),
	    CHAN_KIND_CLIENT, pat, C.cs, NULL, C.spub, 4096, &cli_cbs, 0, &c)) != 0) {
		fprintf(stderr, "selfcheck: %s\n", tern_strerror(r));
		return 1;
	}
	C.t0 = uv_hrtime();
	uv_run(&C.loop, UV_RUN_DEFAULT);
	secs = (double)(uv_hrtime() - C.t0) / 1e9;
	if (uv_loop_close(&C.loop) != 0) {
		fprintf(stderr, "selfcheck: handles left open\n");
		return 1;
	}
	printf("%s handshake, %d messages each way over loopback: %s "
	    "(%.0f round trips/s)\n", name, C.count,
	    (C.bad == 0 && C.srv_got == C.count && C.cli_got == C.count) ?
	    "ok" : "FAILED", C.count / secs);
	return C.bad == 0 && C.srv_got == C.count && C.cli_got == C.count ?
	    0 : 1;
}

int
main(int argc, char **argv)
{
	C.count = argc > 1 ? atoi(argv[1]) : 100000;
	if (C.count <= 0 || sodium_init() < 0)
		return 2;
	noise_keypair_generate(C.ss, C.spub);
	noise_keypair_generate(C.cs, C.cpub);
	if (run(CHAN_XX, "Noise_XX_25519_ChaChaPoly_BLAKE2b") != 0 ||
	    run(CHAN_IK, "Noise_IK_25519_ChaChaPoly_BLAKE2b") != 0)
		return 1;
	printf("transport self-check passed\n");
	return 0;
}
