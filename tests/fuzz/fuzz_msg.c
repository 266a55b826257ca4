/*
 * fuzz_msg.c: libFuzzer target for the message decoder (common/msg.h).
 *
 * Bytes from the network go straight into msg_decode, so any input must
 * come back as 0 or a TERN_E* code without a crash, a read out of bounds
 * or an allocation. When an input decodes, the encoding must be canonical:
 * re-encoding gives back exactly the input (else two byte strings would
 * mean one message, and signatures or dedup over bytes could be fooled),
 * and the re-encoding decodes again. Seeds: tests/fuzz/corpus/msg, made by
 * tests/fuzz/gen_msg_seeds.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

/* Static: MSG_MAX bytes are too many for a fuzzer's stack frame. */
static uint8_t fuzz_out[MSG_MAX];

/* Walks a decoded list so its iterator runs on fuzzed spans too. */
static void
fuzz_walk(const struct msg *m)
{
	struct msg_str a;
	size_t pos = 0, i;
	int rc;

	if (m->type == MSG_CONTACTS) {
		for (i = 0; (rc = msg_addrlist_next(&m->u.contacts.users, &pos,
		    &a)) == 1; i++)
			if (a.len == 0)
				abort();
		if (rc != 0 || i != m->u.contacts.users.count)
			abort();
	}
	if (m->type == MSG_DEVICES) {
		for (i = 0; i < m->u.devices.device_ids.count; i++)
			if (msg_record(&m->u.devices.device_ids,
			    MSG_DEVICE_REC_LEN, i) == NULL)
				abort();
		if (msg_record(&m->u.devices.device_ids, MSG_DEVICE_REC_LEN,
		    i) != NULL)
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg m, m2;
	size_t len = 0;
	uint32_t req;
	uint8_t type;
	int rc;

	rc = msg_decode(data, size, &m);
	if (rc != 0) {
		/* Only codes, and only the decoder's. */
		if (rc != TERN_ETRUNC && rc != TERN_ETOOBIG &&
		    rc != TERN_EVERSION && rc != TERN_ETYPE &&
		    rc != TERN_ETRAILING && rc != TERN_EUTF8 &&
		    rc != TERN_EFIELD)
			abort();
		return 0;
	}
	fuzz_walk(&m);
	/* The header peek must agree with the full decode. */
	if (msg_peek_header(data, size, &type, &req) != 0 || type != m.type ||
	    req != m.req)
		abort();
	if (msg_encode(&m, fuzz_out, sizeof(fuzz_out), &len) != 0)
		abort();
	if (len != size || memcmp(fuzz_out, data, size) != 0)
		abort();
	if (msg_encoded_size(&m) != size)
		abort();
	if (msg_decode(fuzz_out, len, &m2) != 0)
		abort();
	if (m2.type != m.type || m2.req != m.req)
		abort();
	return 0;
}
