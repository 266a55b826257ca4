/*
 * fuzz_pt.c: the end-to-end plaintext decoder (client/pt.h) on arbitrary
 * bytes. What decodes must encode back to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t out[70000];
	struct buf_writer w;
	struct pt m;

	if (pt_decode(data, size, &m) != 0)
		return 0;
	buf_writer_init(&w, out, sizeof(out));
	if (pt_encode(&m, &w) != 0 || w.len != size ||
	    memcmp(out, data, size) != 0)
		abort();
	return 0;
}
