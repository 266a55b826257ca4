/*
 * gen_chan_seeds.c: writes the seed corpora of fuzz_noise_responder and
 * fuzz_frame from real, deterministic runs (fixed keys), so the fuzzers
 * start from transcripts that reach every state of the channel.
 *
 *     gen_chan_seeds OUT_RESPONDER_DIR OUT_FRAME_DIR
 */
#include <stdio.h>

#include "fuzz_chan_peers.h"

static uint8_t ini_buf[FP_CAP], res_buf[FP_CAP];

static void
write_file(const char *dir, const char *name, const uint8_t *hdr,
    size_t hlen, const uint8_t *p, size_t n)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "wb")) == NULL) {
		perror(path);
		exit(1);
	}
	fwrite(hdr, 1, hlen, f);
	fwrite(p, 1, n, f);
	fclose(f);
}

/* Appends the initiator's next bytes to a transcript. */
static void
take(struct fp_peer *ini, uint8_t *t, size_t *tlen)
{
	memcpy(t + *tlen, ini->out, ini->out_len);
	*tlen += ini->out_len;
}

/* Transcripts of an initiator speaking transport version v; with
 * version 2 the last messages go out as one batch frame. */
static void
transcripts(const char *dir, enum chan_pattern pat, uint8_t v)
{
	static uint8_t t[4][FP_CAP];
	static uint8_t big[300];
	size_t tl[4] = {0};
	struct fp_peer ini, res;
	const char *pn = pat == CHAN_XX ? "xx" : "ik";
	char name[64];

	if (fp_init(&ini, &res, pat, ini_buf, res_buf) != 0 ||
	    chan_test_set_version(&ini.c, v) != 0 || chan_start(&ini.c) != 0)
		exit(1);
	take(&ini, t[0], &tl[0]);
	if (fp_move(&ini, &res) != 0 || fp_move(&res, &ini) != 0)
		exit(1);
	if (pat == CHAN_XX) {
		take(&ini, t[0], &tl[0]);
		take(&ini, t[1], &tl[1]);
		if (fp_move(&ini, &res) != 0)
			exit(1);
	}
	if (!chan_is_open(&res.c) || chan_send(&ini.c,
	    (const uint8_t *)"good", 4) != 0)
		exit(1);
	for (int i = 0; i < 3; i++)
		take(&ini, t[i], &tl[i]);
	if (fp_move(&ini, &res) != 0)
		exit(1);
	memset(big, 'x', sizeof(big));
	chan_set_batching(&ini.c, true);
	if (chan_send(&ini.c, (const uint8_t *)"hello", 5) != 0 ||
	    chan_send(&ini.c, big, sizeof(big)) != 0 ||
	    chan_flush(&ini.c) != 0)
		exit(1);
	for (int i = 0; i < 4; i++)
		take(&ini, t[i], &tl[i]);
	for (unsigned step = 0; step < 4; step++) {
		uint8_t hdr[2] = {(uint8_t)((pat == CHAN_IK) | (step << 1)),
		    0};
		if (pat == CHAN_IK && step == 1)
			continue; /* IK has no third handshake message */
		snprintf(name, sizeof(name), "%s%s-step%u", pn,
		    v == 1 ? "" : "-v2", step);
		write_file(dir, name, hdr, 2, t[step], tl[step]);
		hdr[1] = 7;
		snprintf(name, sizeof(name), "%s%s-step%u-pieces", pn,
		    v == 1 ? "" : "-v2", step);
		write_file(dir, name, hdr, 2, t[step], tl[step]);
	}
	chan_wipe(&ini.c);
	chan_wipe(&res.c);
}

static void
frames(const char *dir)
{
	static const uint8_t one[] = {0, 0, 6, 0, 'h', 'e', 'l', 'l', 'o'};
	static const uint8_t two[] = {0, 0, 4, 1, 'a', 'b', 'c', 0, 0, 4, 0,
	    'd', 'e', 'f', 2, 0, 3, 0, 'x', 'y'};
	static const uint8_t raw[] = {1, 0, 4, 0xff, 0xff, 0, 1, 3, 0, 1, 1,
	    0, 0, 2, 1, 'a'};
	static const uint8_t flags[] = {0, 0, 2, 0x80, 'z', 0, 0, 1, 1, 0, 0,
	    1, 0};
	/* A batch of two, a batch of one, a fragment, then a batch inside
	 * the message being reassembled. */
	static const uint8_t batch[] = {0, 0, 13, 2, 0, 5, 'h', 'e', 'l', 'l',
	    'o', 0, 3, 'a', 'b', 'c', 0, 0, 4, 2, 0, 1, 'z', 0, 0, 2, 1, 'p',
	    0, 0, 4, 2, 0, 1, 'q'};
	/* Lengths past the end, zero, and BATCH with MORE. */
	static const uint8_t batch_bad[] = {0, 0, 5, 2, 0, 9, 'a', 'b', 0, 0,
	    3, 2, 0, 0, 0, 0, 4, 3, 0, 1, 'm'};

	write_file(dir, "one", one, sizeof(one), NULL, 0);
	write_file(dir, "two-fragments-then-cap", two, sizeof(two), NULL, 0);
	write_file(dir, "raw", raw, sizeof(raw), NULL, 0);
	write_file(dir, "flags", flags, sizeof(flags), NULL, 0);
	write_file(dir, "batch", batch, sizeof(batch), NULL, 0);
	write_file(dir, "batch-bad", batch_bad, sizeof(batch_bad), NULL, 0);
}

int
main(int argc, char **argv)
{
	if (argc != 3 || sodium_init() < 0) {
		fprintf(stderr, "usage: gen_chan_seeds RESPONDER_DIR FRAME_DIR\n");
		return 2;
	}
	for (uint8_t v = 1; v <= CHAN_VERSION; v++) {
		transcripts(argv[1], CHAN_XX, v);
		transcripts(argv[1], CHAN_IK, v);
	}
	frames(argv[2]);
	return 0;
}
