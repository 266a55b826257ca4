/*
 * fuzz_noise_responder.c: a tern responder against an initiator whose
 * bytes are replaced by fuzz input (the shape of OpenSSH's kex_fuzz).
 *
 * Input: byte 0 picks the pattern (bit 0: XX or IK) and the step at which
 * the initiator's real bytes are replaced (bits 1-2: 0 the preamble and
 * first message, 1 the last handshake message, 2 the first transport
 * frames, 3 after one good frame). Byte 1 is the size of the pieces the
 * replacement is fed in (0: all at once). The rest replaces the bytes.
 * Keys are fixed, so seeds recorded from a real run replay exactly.
 */
#include "fuzz_chan_peers.h"

static uint8_t ini_buf[FP_CAP], res_buf[FP_CAP];

static void
feed_pieces(struct fp_peer *res, const uint8_t *data, size_t size,
    size_t step)
{
	static uint8_t copy[FP_CAP];
	size_t off = 0, k;

	if (size > sizeof(copy))
		size = sizeof(copy);
	memcpy(copy, data, size);
	while (off < size) {
		k = step == 0 ? size - off : step;
		if (k > size - off)
			k = size - off;
		if (chan_feed(&res->c, copy + off, k) != 0)
			break;
		off += k;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fp_peer ini, res;
	enum chan_pattern pat;
	unsigned step;

	if (size < 2)
		return 0;
	pat = (data[0] & 1) ? CHAN_IK : CHAN_XX;
	step = (data[0] >> 1) & 3;
	if (sodium_init() < 0 ||
	    fp_init(&ini, &res, pat, ini_buf, res_buf) != 0)
		abort();
	if (chan_start(&ini.c) != 0)
		abort();
	if (step >= 1) {
		/* The real first message goes through. */
		if (fp_move(&ini, &res) != 0 || fp_move(&res, &ini) != 0)
			abort();
		ini.out_len = 0; /* XX: drop the real message 3 */
	}
	if (step >= 2 && pat == CHAN_XX) {
		/* Let the real message 3 through: regenerate it. */
		chan_wipe(&ini.c);
		chan_wipe(&res.c);
		if (fp_init(&ini, &res, pat, ini_buf, res_buf) != 0 ||
		    chan_start(&ini.c) != 0 || fp_move(&ini, &res) != 0 ||
		    fp_move(&res, &ini) != 0 || fp_move(&ini, &res) != 0)
			abort();
	}
	if (step >= 2 && !chan_is_open(&res.c))
		abort();
	if (step == 3) {
		if (chan_send(&ini.c, (const uint8_t *)"good", 4) != 0 ||
		    fp_move(&ini, &res) != 0 || res.msgs != 1)
			abort();
	}
	ini.out_len = 0;
	feed_pieces(&res, data + 2, size - 2, data[1]);
	chan_wipe(&ini.c);
	chan_wipe(&res.c);
	return 0;
}
