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
	char log[8192];           /* small messages in order, '|' after each */
	size_t log_len;           /* in log */
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
	if (n < 64 && p->log_len + n + 1 < sizeof(p->log)) {
		memcpy(p->log + p->log_len, m, n);
		p->log_len += n;
		p->log[p->log_len++] = '|';
		p->log[p->log_len] = 0;
	}
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
/* Public keys setup gives chan_init (NULL: computed); teardown resets. */
static const uint8_t *give_ini_pub, *give_res_pub;

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
	    give_res_pub, NULL, 4096, &peer_cbs, res));
	TT_OK(chan_init(&ini->c, CHAN_INITIATOR, CHAN_KIND_CLIENT, pat, ini_s,
	    give_ini_pub, pat == CHAN_IK ? res_pub : expect, 4096, &peer_cbs,
	    ini));
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
	give_ini_pub = give_res_pub = NULL;
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
	    ini_s, NULL, other_pub, 4096, &peer_cbs, ini));
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
	    res_s, NULL, NULL, 4096, &peer_cbs, res));
	TT_OK(chan_start(&ini->c));
	TT_OK(pump(ini, res, 0));
	TT_ERR(pump(res, ini, 0), TERN_EDECRYPT);
	teardown();
}

TT_CASE(chan__preamble__bad_magic_version_pattern)
{
	static const uint8_t bad[][4] = {
		{'X', 'N', 1, 1}, {'T', 'N', 3, 1}, {'T', 'N', 0, 1},
		{'T', 'N', 2, 3}, {'T', 'N', 1, 0},
	};
	static const int want[] = {TERN_EVERSION, TERN_EVERSION,
	    TERN_EVERSION, TERN_EPATTERN, TERN_EPATTERN};

	for (size_t i = 0; i < 5; i++) {
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
	 * the payload is not empty, which versions 1 and 2 forbid. */
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
	uint8_t plain[4] = {0x04, 'a', 'b', 'c'};
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
	    NULL, NULL, 10, &peer_cbs, NULL), TERN_EINVAL);
	TT_ERR(chan_init(&c, CHAN_INITIATOR, 9, CHAN_XX, k, NULL, NULL, 10,
	    &peer_cbs, NULL), TERN_EINVAL);
	TT_ERR(chan_init(&c, CHAN_RESPONDER, CHAN_KIND_CLIENT, 0, k, NULL, k,
	    10, &peer_cbs, NULL), TERN_EINVAL);
	chan_wipe(&c);
}

/* --- batches (transport version 2) ------------------------------------ */

/* forge: a frame with plaintext plain, sealed with the initiator's own
 * sending cipher, fed to the responder. Returns chan_feed's result. */
static int
forge(const uint8_t *plain, size_t n)
{
	static uint8_t f[2 + 70000];
	size_t wlen;

	TT_OK(noise_cipher_encrypt(&ini->c.tx, NULL, 0, plain, n, f + 2,
	    sizeof(f) - 2, &wlen));
	f[0] = (uint8_t)(wlen >> 8);
	f[1] = (uint8_t)wlen;
	return chan_feed(&res->c, f, 2 + wlen);
}

TT_CASE(chan__batch__messages_of_a_turn_share_one_frame)
{
	setup(CHAN_XX, NULL);
	handshake(0);
	TT_EQ(ini->c.version, CHAN_VERSION);
	TT_EQ(res->c.version, CHAN_VERSION);
	chan_set_batching(&ini->c, true);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"one", 3));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"two", 3));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"three", 5));
	/* Nothing on the wire until the flush. */
	TT_EQ(ini->out_len, 0);
	TT_EQ(chan_staged(&ini->c), 1 + 5 + 5 + 7);
	TT_OK(chan_flush(&ini->c));
	TT_EQ(chan_staged(&ini->c), 0);
	/* One frame: length, flags, three length-prefixed messages, tag. */
	TT_EQ(ini->out_len, 2 + 1 + (2 + 3) + (2 + 3) + (2 + 5) +
	    NOISE_TAGLEN);
	TT_EQ(((size_t)ini->out[0] << 8 | ini->out[1]), ini->out_len - 2);
	TT_OK(pump(ini, res, 7));
	TT_EQ(res->nmsgs, 3);
	TT_STREQ(res->log, "one|two|three|");
	/* A flush with nothing staged queues nothing. */
	TT_OK(chan_flush(&ini->c));
	TT_EQ(ini->out_len, 0);
	teardown();
}

TT_CASE(chan__batch__lone_message_is_a_plain_frame)
{
	setup(CHAN_XX, NULL);
	handshake(0);
	chan_set_batching(&ini->c, true);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"solo", 4));
	TT_OK(chan_flush(&ini->c));
	TT_EQ(ini->out_len, 2 + 1 + 4 + NOISE_TAGLEN);
	/* The responder reads it as version 1 would: flags 0. */
	struct noise_cipher rx = res->c.rx;
	uint8_t plain[32];
	size_t n;
	TT_OK(noise_cipher_decrypt(&rx, NULL, 0, ini->out + 2,
	    ini->out_len - 2, plain, sizeof(plain), &n));
	noise_cipher_wipe(&rx);
	TT_EQ(n, 5);
	TT_EQ(plain[0], 0);
	TT_MEMEQ(plain + 1, "solo", 4);
	TT_OK(pump(ini, res, 0));
	TT_STREQ(res->log, "solo|");
	teardown();
}

TT_CASE(chan__batch__big_message_goes_after_the_stage_in_order)
{
	static uint8_t big[20000];

	setup(CHAN_XX, NULL);
	handshake(0);
	chan_set_msg_cap(&res->c, sizeof(big));
	chan_set_batching(&ini->c, true);
	memset(big, 'x', sizeof(big));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"a", 1));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"b", 1));
	/* Too big for a batch: the stage is flushed, then the big one. */
	TT_OK(chan_send(&ini->c, big, sizeof(big)));
	TT_EQ(chan_staged(&ini->c), 0);
	TT_EQ(ini->out_len, (2 + 1 + 3 + 3 + NOISE_TAGLEN) +
	    (2 + 1 + sizeof(big) + NOISE_TAGLEN));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"c", 1));
	TT_OK(chan_flush(&ini->c));
	TT_OK(pump(ini, res, 333));
	TT_EQ(res->nmsgs, 4);
	TT_STREQ(res->log, "a|b|c|");
	TT_EQ(res->last_len, 1);
	teardown();
}

TT_CASE(chan__batch__full_stage_starts_a_new_frame)
{
	uint8_t m[1000];
	size_t off = 0, frames = 0, len;

	setup(CHAN_XX, NULL);
	handshake(0);
	chan_set_batching(&ini->c, true);
	for (int i = 0; i < 40; i++) {
		memset(m, 'a' + i % 26, sizeof(m));
		TT_OK(chan_send(&ini->c, m, sizeof(m)));
		TT_ASSERT(chan_staged(&ini->c) <= CHAN_BATCH_MAX);
	}
	TT_OK(chan_flush(&ini->c));
	/* 40 messages of 1,002 bytes staged: 16 to a frame of at most
	 * CHAN_BATCH_MAX plaintext, so three frames. */
	while (off < ini->out_len) {
		len = (size_t)ini->out[off] << 8 | ini->out[off + 1];
		TT_ASSERT(len <= CHAN_BATCH_MAX + NOISE_TAGLEN);
		off += 2 + len;
		frames++;
	}
	TT_EQ(off, ini->out_len);
	TT_EQ(frames, 3);
	TT_OK(pump(ini, res, 4000));
	TT_EQ(res->nmsgs, 40);
	TT_EQ(res->last[0], 'a' + 39 % 26);
	teardown();
}

TT_CASE(chan__batch__version_1_peer_gets_plain_frames)
{
	setup(CHAN_XX, NULL);
	TT_OK(chan_test_set_version(&ini->c, 1));
	handshake(0);
	TT_EQ(res->c.version, 1);
	TT_EQ(ini->c.version, 1);
	chan_set_batching(&ini->c, true);
	chan_set_batching(&res->c, true);
	/* Neither side stages: each message is a frame at once. */
	TT_OK(chan_send(&res->c, (const uint8_t *)"r1", 2));
	TT_OK(chan_send(&res->c, (const uint8_t *)"r2", 2));
	TT_EQ(chan_staged(&res->c), 0);
	TT_EQ(res->out_len, 2 * (2 + 1 + 2 + NOISE_TAGLEN));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"i1", 2));
	TT_EQ(chan_staged(&ini->c), 0);
	TT_OK(pump(res, ini, 0));
	TT_OK(pump(ini, res, 0));
	TT_STREQ(ini->log, "r1|r2|");
	TT_STREQ(res->log, "i1|");
	/* A batch frame is not version 1: refused. */
	uint8_t plain[] = {CHAN_FLAG_BATCH, 0, 1, 'x'};
	TT_ERR(forge(plain, sizeof(plain)), TERN_EFIELD);
	TT_EQ(res->nmsgs, 1);
	teardown();

	/* The hook's bounds. */
	setup(CHAN_XX, NULL);
	TT_ERR(chan_test_set_version(&ini->c, 0), TERN_EINVAL);
	TT_ERR(chan_test_set_version(&ini->c, CHAN_VERSION + 1), TERN_EINVAL);
	TT_ERR(chan_test_set_version(&res->c, 1), TERN_EINVAL);
	teardown();
}

TT_CASE(chan__batch__malformed_batches_rejected)
{
	static const struct {
		uint8_t plain[12];
		size_t n;
		int want;
	} bad[] = {
		{{CHAN_FLAG_BATCH}, 1, TERN_ETRUNC},              /* empty */
		{{CHAN_FLAG_BATCH, 0, 0}, 3, TERN_ETRUNC},        /* length 0 */
		{{CHAN_FLAG_BATCH, 0, 5, 'a', 'b'}, 5, TERN_ETRUNC}, /* short */
		{{CHAN_FLAG_BATCH, 0, 1, 'a', 0}, 5, TERN_ETRUNC}, /* 1 byte left */
		{{CHAN_FLAG_BATCH | CHAN_FLAG_MORE, 0, 1, 'a'}, 4, TERN_EFIELD},
		{{CHAN_FLAG_BATCH | 0x04, 0, 1, 'a'}, 4, TERN_EFIELD},
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setup(CHAN_XX, NULL);
		handshake(0);
		TT_ERR(forge(bad[i].plain, bad[i].n), bad[i].want);
		teardown();
	}

	/* A well-formed batch of one, then one whose second message is
	 * over the cap (4096): the first is handed over, then ETOOBIG. */
	setup(CHAN_XX, NULL);
	handshake(0);
	uint8_t ok[] = {CHAN_FLAG_BATCH, 0, 2, 'o', 'k'};
	TT_OK(forge(ok, sizeof(ok)));
	TT_STREQ(res->log, "ok|");
	static uint8_t over[1 + 2 + 1 + 2 + 4097];
	over[0] = CHAN_FLAG_BATCH;
	over[2] = 1;
	over[3] = 'y';
	over[4] = 4097 >> 8;
	over[5] = 4097 & 0xff;
	TT_ERR(forge(over, sizeof(over)), TERN_ETOOBIG);
	TT_STREQ(res->log, "ok|y|");
	teardown();

	/* A batch inside a message being reassembled. */
	setup(CHAN_XX, NULL);
	handshake(0);
	uint8_t part[] = {CHAN_FLAG_MORE, 'p'};
	TT_OK(forge(part, sizeof(part)));
	TT_ERR(forge(ok, sizeof(ok)), TERN_EFIELD);
	TT_EQ(res->nmsgs, 0);
	teardown();
}

TT_CASE(chan__batch__callback_result_stops_mid_batch)
{
	setup(CHAN_XX, NULL);
	handshake(0);
	chan_set_batching(&ini->c, true);
	TT_OK(chan_send(&ini->c, (const uint8_t *)"a", 1));
	TT_OK(chan_send(&ini->c, (const uint8_t *)"b", 1));
	TT_OK(chan_flush(&ini->c));
	res->stop_with = TERN_ECLOSED;
	TT_ERR(pump(ini, res, 0), TERN_ECLOSED);
	TT_EQ(res->nmsgs, 1);
	teardown();
}

TT_CASE(chan__batch__last_error_goes_out_after_a_receive_error)
{
	uint8_t junk[2 + 20] = {0, 20};

	setup(CHAN_XX, NULL);
	handshake(0);
	chan_set_batching(&res->c, true);
	TT_OK(chan_send(&res->c, (const uint8_t *)"before", 6));
	TT_ERR(chan_feed(&res->c, junk, sizeof(junk)), TERN_EDECRYPT);
	TT_OK(chan_send(&res->c, (const uint8_t *)"bye", 3));
	TT_OK(chan_flush(&res->c));
	TT_OK(pump(res, ini, 0));
	TT_STREQ(ini->log, "before|bye|");
	/* An empty stage buffer is given back on trim, a full one kept. */
	TT_ASSERT(res->c.stage != NULL);
	chan_trim(&res->c);
	TT_ASSERT(res->c.stage == NULL);
	teardown();
}

TT_CASE(chan__handshake__given_public_keys)
{
	static const enum chan_pattern pats[] = {CHAN_XX, CHAN_IK};
	uint8_t other_s[32], wrong[32];

	/* The right keys, given to both sides: the same handshakes, one
	 * X25519 operation fewer on each side. */
	for (size_t i = 0; i < 2; i++) {
		give_ini_pub = ini_pub;
		give_res_pub = res_pub;
		setup(pats[i], NULL);
		handshake(1);
		TT_OK(chan_send(&ini->c, (const uint8_t *)"hi", 2));
		TT_OK(pump(ini, res, 0));
		TT_STREQ(res->log, "hi|");
		TT_MEMEQ(chan_remote_key(&res->c), ini_pub, 32);
		TT_MEMEQ(chan_remote_key(&ini->c), res_pub, 32);
		teardown();
	}

	/* A wrong one (another key's) on the responder: the initiator can't
	 * read message 2. */
	noise_keypair_generate(other_s, wrong);
	give_res_pub = wrong;
	setup(CHAN_XX, NULL);
	TT_OK(chan_start(&ini->c));
	TT_OK(pump(ini, res, 0));
	TT_ERR(pump(res, ini, 0), TERN_EDECRYPT);
	TT_EQ(ini->opened, 0);
	teardown();

	/* A wrong one on the initiator: the responder can't read message 3
	 * (its se would not match), so nobody is let in under that key. */
	give_ini_pub = wrong;
	setup(CHAN_XX, NULL);
	TT_OK(chan_start(&ini->c));
	TT_OK(pump(ini, res, 0));
	TT_OK(pump(res, ini, 0));
	TT_ERR(pump(ini, res, 0), TERN_EDECRYPT);
	TT_EQ(res->opened, 0);
	teardown();
}
