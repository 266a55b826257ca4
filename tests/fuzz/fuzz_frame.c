/*
 * fuzz_frame.c: the frame decoder (length prefix, flags, reassembly,
 * caps) of an open channel. The fuzzer writes frame PLAINTEXTS; the
 * harness encrypts them with the peer's real key, so every frame passes
 * authentication and the decoder behind it is what gets explored.
 *
 * Input: records of <u8 op><u16 len BE><len bytes>:
 *   op 0: the bytes are one frame's plaintext (flags byte first)
 *   op 1: the bytes go to the decoder raw (headers, garbage)
 *   op 2: like 0, but fed one byte at a time
 *   op 3: the first byte (times 512) becomes the message cap
 */
#include "fuzz_chan_peers.h"

static uint8_t ini_buf[FP_CAP], res_buf[FP_CAP];
static struct chan open_res, open_ini; /* pristine open pair */
static int ready;

static int
frame_setup(void)
{
	struct fp_peer ini, res;

	if (sodium_init() < 0 ||
	    fp_init(&ini, &res, CHAN_XX, ini_buf, res_buf) != 0 ||
	    chan_start(&ini.c) != 0 || fp_move(&ini, &res) != 0 ||
	    fp_move(&res, &ini) != 0 || fp_move(&ini, &res) != 0 ||
	    !chan_is_open(&res.c) || !chan_is_open(&ini.c))
		return -1;
	/* An open chan owns no heap memory, so a copy is a snapshot. */
	open_res = res.c;
	open_ini = ini.c;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[2 + 65535];
	struct fp_peer res = {0};
	struct noise_cipher tx;
	size_t off = 0, n, clen;
	int r = 0;

	if (!ready) {
		if (frame_setup() != 0)
			abort();
		ready = 1;
	}
	res.c = open_res;
	res.c.arg = &res;
	res.out = res_buf;
	tx = open_ini.tx;
	while (r == 0 && off + 3 <= size) {
		uint8_t op = data[off] & 3;
		n = ((size_t)data[off + 1] << 8) | data[off + 2];
		off += 3;
		if (n > size - off)
			n = size - off;
		switch (op) {
		case 0:
		case 2:
			if (n > 65535 - NOISE_TAGLEN)
				n = 65535 - NOISE_TAGLEN;
			memcpy(frame + 2, data + off, n);
			if (noise_cipher_encrypt(&tx, NULL, 0, frame + 2, n,
			    frame + 2, sizeof(frame) - 2, &clen) != 0)
				abort();
			frame[0] = (uint8_t)(clen >> 8);
			frame[1] = (uint8_t)clen;
			if (op == 0) {
				r = chan_feed(&res.c, frame, 2 + clen);
			} else {
				for (size_t i = 0; r == 0 && i < 2 + clen; i++)
					r = chan_feed(&res.c, frame + i, 1);
			}
			break;
		case 1:
			memcpy(frame, data + off, n);
			r = chan_feed(&res.c, frame, n);
			break;
		case 3:
			if (n > 0)
				chan_set_msg_cap(&res.c, (uint32_t)data[off] *
				    512);
			break;
		}
		off += n;
	}
	/* A failed channel stays failed with the same error. */
	if (r != 0 && chan_feed(&res.c, frame, 1) != r)
		abort();
	chan_wipe(&res.c);
	noise_cipher_wipe(&tx);
	return 0;
}
