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

static void
transcripts(const char *dir, enum chan_pattern pat)
{
	static uint8_t t[4][FP_CAP];
	static uint8_t big[300];
	size_t tl[4] = {0};
	struct fp_peer ini, res;
	const char *pn = pat == CHAN_XX ? "xx" : "ik";
	char name[64];

	if (fp_init(&ini, &res, pat, ini_buf, res_buf) != 0 ||
	    chan_start(&ini.c) != 0)
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
	if (chan_send(&ini.c, (const uint8_t *)"hello", 5) != 0 ||
	    chan_send(&ini.c, big, sizeof(big)) != 0)
		exit(1);
	for (int i = 0; i < 4; i++)
		take(&ini, t[i], &tl[i]);
	for (unsigned step = 0; step < 4; step++) {
		uint8_t hdr[2] = {(uint8_t)((pat == CHAN_IK) | (step << 1)),
		    0};
		if (pat == CHAN_IK && step == 1)
			continue; /* IK has no third handshake message */
		snprintf(name, sizeof(name), "%s-step%u", pn, step);
		write_file(dir, name, hdr, 2, t[step], tl[step]);
		hdr[1] = 7;
		snprintf(name, sizeof(name), "%s-step%u-pieces", pn, step);
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

	write_file(dir, "one", one, sizeof(one), NULL, 0);
	write_file(dir, "two-fragments-then-cap", two, sizeof(two), NULL, 0);
	write_file(dir, "raw", raw, sizeof(raw), NULL, 0);
	write_file(dir, "flags", flags, sizeof(flags), NULL, 0);
}

int
main(int argc, char **argv)
{
	if (argc != 3 || sodium_init() < 0) {
		fprintf(stderr, "usage: gen_chan_seeds RESPONDER_DIR FRAME_DIR\n");
		return 2;
	}
	transcripts(argv[1], CHAN_XX);
	transcripts(argv[1], CHAN_IK);
	frames(argv[2]);
	return 0;
}
