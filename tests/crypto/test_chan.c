/*
 * test_chan.c: the secure channel between two in-memory peers: handshakes,
 * framing, reassembly and every way a peer's bytes can be bad.
 */
#include <sodium.h>

#include "chan.h"
#include "tt.h"

#define PIPE_CAP (1u << 20)

/* One direction of an in-memory connection plus what arrived. */
struct peer {
	struct chan c;            /* the channel */
	uint8_t out[PIPE_CAP];    /* bytes it queued for the other side */
	size_t out_len;           /* in out */
	int opened;               /* open callbacks */
	int nmsgs;                /* messages received */
	uint8_t last[80000];      /* the last message */
	size_t last_len;          /* its length */
	int stop_with;            /* nonzero: message cb returns it */
};

static uint8_t *
peer_reserve(void *arg, size_t n)
{
	struct peer *p = arg;
	uint8_t *r;

	if (p->out_len + n > PIPE_CAP)
		return NULL;
	r = p->out + p->out_len;
	p->out_len += n;
	return r;
}

static int
peer_open(void *arg)
{
	((struct peer *)arg)->opened++;
	return 0;
}

static int
peer_message(void *arg, const uint8_t *m, size_t n)
{
	struct peer *p = arg;

	TT_ASSERT(n <= sizeof(p->last));
	memcpy(p->last, m, n);
	p->last_len = n;
	p->nmsgs++;
	return p->stop_with;
}

static const struct chan_cbs peer_cbs = {
	.reserve = peer_reserve,
	.open = peer_open,
	.message = peer_message,
};

/* Moves what from queued into to's channel, in pieces of step bytes
 * (0: all at once). Returns chan_feed's first nonzero result. */
static int
pump(struct peer *from, struct peer *to, size_t step)
{
	uint8_t buf[PIPE_CAP];
	size_t n = from->out_len, off = 0, k;
	int r;

	memcpy(buf, from->out, n);
	from->out_len = 0;
	while (off < n) {
		k = step == 0 ? n - off : step;
		if (k > n - off)
			k = n - off;
		if ((r = chan_feed(&to->c, buf + off, k)) != 0)
			return r;
		off += k;
	}
	return 0;
}

static struct peer *ini, *res;
static uint8_t ini_s[32], ini_pub[32], res_s[32], res_pub[32];

static void
setup(enum chan_pattern pat, const uint8_t *expect)
{
	TT_ASSERT(sodium_init() >= 0);
	ini = calloc(1, sizeof(*ini));
	res = calloc(1, sizeof(*res));
	TT_ASSERT(ini && res);
	noise_keypair_generate(ini_s, ini_pub);
	noise_keypair_generate(res_s, res_pub);
	TT_OK(chan_init(&res->c, CHAN_RESPONDER, CHAN_KIND_CLIENT, 0, res_s,
	    NULL, 4096, &peer_cbs, res));
	TT_OK(chan_init(&ini->c, CHAN_INITIATOR, CHAN_KIND_CLIENT, pat, ini_s,
	    pat == CHAN_IK ? res_pub : expect, 4096, &peer_cbs, ini));
}

static void
handshake(size_t step)
{
	TT_OK(chan_start(&ini->c));
	while (ini->out_len > 0 || res->out_len > 0) {
		TT_OK(pump(ini, res, step));
		TT_OK(pump(res, ini, step));
	}
	TT_EQ(ini->opened, 1);
	TT_EQ(res->opened, 1);
	TT_ASSERT(chan_is_open(&ini->c) && chan_is_open(&res->c));
	TT_MEMEQ(chan_remote_key(&res->c), ini_pub, 32);
	TT_MEMEQ(chan_remote_key(&ini->c), res_pub, 32);
}

static void
teardown(void)
{
	chan_wipe(&ini->c);
	chan_wipe(&res->c);
	free(ini);
	free(res);
}

TT_CASE(chan__handshake__xx_then_messages_both_ways)
{
	setup(CHAN_XX, NULL);
	handshake(0);
	for (int i = 0; i < 1000; i++) {
		uint8_t m[100];
		memset(m, i & 0xff, sizeof(m));
		TT_OK(chan_send(&ini->c, m, (size_t)(i % 100) + 1));
		TT_OK(chan_send(&res->c, m, 3));
	}
	TT_OK(pump(ini, res, 0));
	TT_OK(pump(res, ini, 0));
	TT_EQ(res->nmsgs, 1000);
	TT_EQ(ini->nmsgs, 1000);
	TT_EQ(res->last_len, 100);
	TT_EQ(res->last[0], 999 & 0xff);
	teardown();
}

TT_CASE(chan__handshake__ik_one_byte_at_a_time)
{
	setup(CHAN_IK, NULL);
	handshake(1);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"hello", 5));
	TT_OK(pump(ini, res, 1));
	TT_EQ(res->nmsgs, 1);
	TT_MEMEQ(res->last, "hello", 5);
	teardown();
}

TT_CASE(chan__handshake__ik_wrong_responder_key_fails)
{
	uint8_t other_s[32], other_pub[32];

	TT_ASSERT(sodium_init() >= 0);
	noise_keypair_generate(other_s, other_pub);
	setup(CHAN_XX, NULL);
	chan_wipe(&ini->c);
	/* The initiator believes the responder has other_pub. */
	TT_OK(chan_init(&ini->c, CHAN_INITIATOR, CHAN_KIND_CLIENT, CHAN_IK,
	    ini_s, other_pub, 4096, &peer_cbs, ini));
	TT_OK(chan_start(&ini->c));
	TT_ERR(pump(ini, res, 0), TERN_EDECRYPT);
	TT_EQ(res->opened, 0);
	teardown();
}

TT_CASE(chan__handshake__xx_unexpected_responder_key_is_eauth)
{
	uint8_t other_s[32], other_pub[32];

	TT_ASSERT(sodium_init() >= 0);
	noise_keypair_generate(other_s, other_pub);
	setup(CHAN_XX, other_pub);
	TT_OK(chan_start(&ini->c));
	TT_OK(pump(ini, res, 0));
	TT_ERR(pump(res, ini, 0), TERN_EAUTH);
	TT_EQ(ini->opened, 0);
	/* Message 3 (our static key) was never queued for the impostor. */
	TT_EQ(ini->out_len, 0);
	TT_ASSERT(!chan_is_open(&ini->c));
	teardown();
}

TT_CASE(chan__handshake__kinds_do_not_mix)
{
	/* A client handshake can't complete against a federation port: the
	 * kinds are bound into the prologue. */
	setup(CHAN_XX, NULL);
	chan_wipe(&res->c);
	TT_OK(chan_init(&res->c, CHAN_RESPONDER, CHAN_KIND_FEDERATION, 0,
	    res_s, NULL, 4096, &peer_cbs, res));
	TT_OK(chan_start(&ini->c));
	TT_OK(pump(ini, res, 0));
	TT_ERR(pump(res, ini, 0), TERN_EDECRYPT);
	teardown();
}

TT_CASE(chan__preamble__bad_magic_version_pattern)
{
	static const uint8_t bad[][4] = {
		{'X', 'N', 1, 1}, {'T', 'N', 2, 1}, {'T', 'N', 1, 3},
		{'T', 'N', 1, 0},
	};
	static const int want[] = {TERN_EVERSION, TERN_EVERSION,
	    TERN_EPATTERN, TERN_EPATTERN};

	for (size_t i = 0; i < 4; i++) {
		uint8_t b[4];
		setup(CHAN_XX, NULL);
		memcpy(b, bad[i], 4);
		TT_ERR(chan_feed(&res->c, b, 4), want[i]);
		/* Failed stays failed. */
		TT_ERR(chan_feed(&res->c, b, 4), want[i]);
		teardown();
	}
}

TT_CASE(chan__handshake__oversized_and_short_messages)
{
	uint8_t b[8] = {'T', 'N', 1, 1, 0x04, 0x01}; /* len 1025 */

	setup(CHAN_XX, NULL);
	TT_ERR(chan_feed(&res->c, b, 6), TERN_ETOOBIG);
	teardown();
	setup(CHAN_XX, NULL);
	b[4] = 0;
	b[5] = 5; /* shorter than an ephemeral key */
	TT_ERR(chan_feed(&res->c, b, 6), TERN_ETRUNC);
	teardown();
}

TT_CASE(chan__handshake__deadline_is_callers_but_garbage_fails)
{
	uint8_t b[2 + 100] = {0, 100};

	setup(CHAN_XX, NULL);
	/* A well-formed preamble then 100 random bytes as message 1: XX
	 * message 1 is a cleartext ephemeral plus payload, so it parses;
	 * the payload is not empty, which version 1 forbids. */
	uint8_t pre[4] = {'T', 'N', 1, CHAN_XX};
	TT_OK(chan_feed(&res->c, pre, 4));
	randombytes_buf(b + 2, 100);
	TT_ERR(chan_feed(&res->c, b, sizeof(b)), TERN_EFIELD);
	teardown();
}

TT_CASE(chan__transport__fragmented_message_reassembled)
{
	static uint8_t big[70000];

	setup(CHAN_XX, NULL);
	handshake(0);
	chan_set_msg_cap(&res->c, sizeof(big));
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 31);
	TT_OK(chan_send(&ini->c, big, sizeof(big)));
	TT_OK(pump(ini, res, 1000));
	TT_EQ(res->nmsgs, 1);
	TT_EQ(res->last_len, sizeof(big));
	TT_MEMEQ(res->last, big, sizeof(big));
	teardown();
}

TT_CASE(chan__transport__message_over_cap_is_etoobig)
{
	static uint8_t big[5000];

	setup(CHAN_XX, NULL);
	handshake(0);
	TT_OK(chan_send(&ini->c, big, sizeof(big))); /* res cap is 4096 */
	TT_ERR(pump(ini, res, 0), TERN_ETOOBIG);
	/* After a receive error we can still send one last message. */
	TT_OK(chan_send(&res->c, (const uint8_t *)"bye", 3));
	TT_OK(pump(res, ini, 0));
	TT_EQ(ini->nmsgs, 1);
	teardown();
}

TT_CASE(chan__transport__reassembly_over_cap_is_etoobig)
{
	static uint8_t big[70000];

	setup(CHAN_XX, NULL);
	handshake(0);
	chan_set_msg_cap(&res->c, 65600);
	TT_OK(chan_send(&ini->c, big, sizeof(big)));
	TT_ERR(pump(ini, res, 0), TERN_ETOOBIG);
	teardown();
}

TT_CASE(chan__transport__tampered_replayed_reordered_rejected)
{
	uint8_t f1[64], f2[64];
	size_t n1, n2;

	/* Tampered. */
	setup(CHAN_XX, NULL);
	handshake(0);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"abc", 3));
	ini->out[5] ^= 1;
	TT_ERR(pump(ini, res, 0), TERN_EDECRYPT);
	TT_EQ(res->nmsgs, 0);
	teardown();

	/* Replayed. */
	setup(CHAN_XX, NULL);
	handshake(0);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"abc", 3));
	n1 = ini->out_len;
	memcpy(f1, ini->out, n1);
	TT_OK(pump(ini, res, 0));
	TT_EQ(res->nmsgs, 1);
	TT_ERR(chan_feed(&res->c, f1, n1), TERN_EDECRYPT);
	teardown();

	/* Reordered. */
	setup(CHAN_XX, NULL);
	handshake(0);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"one", 3));
	n1 = ini->out_len;
	memcpy(f1, ini->out, n1);
	ini->out_len = 0;
	TT_OK(chan_send(&ini->c, (const uint8_t *)"two", 3));
	n2 = ini->out_len;
	memcpy(f2, ini->out, n2);
	TT_ERR(chan_feed(&res->c, f2, n2), TERN_EDECRYPT);
	TT_EQ(res->nmsgs, 0);
	teardown();
}

TT_CASE(chan__transport__short_frame_and_unknown_flags)
{
	uint8_t b[2 + 10] = {0, 10};
	struct noise_cipher tx;

	setup(CHAN_XX, NULL);
	handshake(0);
	TT_ERR(chan_feed(&res->c, b, sizeof(b)), TERN_ETRUNC);
	teardown();

	/* A frame whose flags byte has an unknown bit: forge it with the
	 * initiator's own sending cipher. */
	setup(CHAN_XX, NULL);
	handshake(0);
	uint8_t f[2 + 1 + 3 + NOISE_TAGLEN];
	size_t n;
	uint8_t plain[4] = {0x02, 'a', 'b', 'c'};
	tx = ini->c.tx;
	TT_OK(noise_cipher_encrypt(&tx, NULL, 0, plain, 4, f + 2,
	    sizeof(f) - 2, &n));
	f[0] = 0;
	f[1] = (uint8_t)n;
	TT_ERR(chan_feed(&res->c, f, 2 + n), TERN_EFIELD);
	noise_cipher_wipe(&tx);
	teardown();
}

TT_CASE(chan__transport__callback_result_stops_feeding)
{
	setup(CHAN_XX, NULL);
	handshake(0);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"a", 1));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"b", 1));
	res->stop_with = TERN_ECLOSED;
	TT_ERR(pump(ini, res, 0), TERN_ECLOSED);
	TT_EQ(res->nmsgs, 1);
	teardown();
}

TT_CASE(chan__send__before_open_is_estate)
{
	setup(CHAN_XX, NULL);
	TT_ERR(chan_send(&ini->c, (const uint8_t *)"a", 1), TERN_ESTATE);
	TT_ERR(chan_start(&res->c), TERN_ESTATE);
	teardown();
}

TT_CASE(chan__init__bad_arguments)
{
	struct chan c;
	uint8_t k[32] = {1};

	TT_ERR(chan_init(&c, CHAN_INITIATOR, CHAN_KIND_CLIENT, CHAN_IK, k,
	    NULL, 10, &peer_cbs, NULL), TERN_EINVAL);
	TT_ERR(chan_init(&c, CHAN_INITIATOR, 9, CHAN_XX, k, NULL, 10,
	    &peer_cbs, NULL), TERN_EINVAL);
	TT_ERR(chan_init(&c, CHAN_RESPONDER, CHAN_KIND_CLIENT, 0, k, k, 10,
	    &peer_cbs, NULL), TERN_EINVAL);
	chan_wipe(&c);
}
