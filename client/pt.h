/*
 * pt.h: the plaintext inside an end-to-end envelope (SPEC.md 12.5),
 * before padding. What a peer's device decrypted is still untrusted
 * input: pt_decode checks every byte and never reads outside it.
 */
#ifndef TERN_PT_H
#define TERN_PT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "msg.h"
#include "tern_err.h"

#define PT_VERSION 1
#define PT_TEXT_MAX 32768          /* bytes of UTF-8 in one message */
#define PT_RCPT_IDS_MAX 256        /* message ids in one receipt */

enum pt_kind {
	PT_TEXT = 1,     /* a message */
	PT_RECEIPT = 2,  /* delivered / read */
	PT_TYPING = 3,   /* typing indicator */
	PT_SYNC = 4      /* a message we sent, for our other devices */
};

enum pt_receipt {
	PT_RCPT_DELIVERED = 1,
	PT_RCPT_READ = 2
};

/* A decoded plaintext; spans borrow from the input. */
struct pt {
	uint8_t kind;                  /* enum pt_kind */
	uint8_t id[MSG_ID_LEN];        /* TEXT, SYNC: the message id */
	uint64_t sent_ms;              /* TEXT, SYNC */
	struct msg_str peer;           /* SYNC: the conversation's peer */
	struct msg_str text;           /* TEXT, SYNC: strict UTF-8 */
	uint8_t what;                  /* RECEIPT: enum pt_receipt */
	uint16_t nids;                 /* RECEIPT: ids in ids */
	const uint8_t *ids;            /* RECEIPT: nids * MSG_ID_LEN bytes */
	uint8_t typing;                /* TYPING: 1 typing, 0 stopped */
};

/*
 * pt_decode: p[0..len) into out. TERN_ETRUNC (ends inside a field),
 * TERN_EVERSION, TERN_ETYPE (unknown kind), TERN_EFIELD (a value out of
 * range, a bad address), TERN_EUTF8, TERN_ETOOBIG (a count over its cap),
 * TERN_ETRAILING. On failure out is zeroed.
 */
int pt_decode(const uint8_t *p, size_t len, struct pt *out) TERN_WUR;

/*
 * pt_encode: writes in (kind and the fields of that kind) to w, with the
 * same checks as pt_decode. pt_encoded_size: bytes needed, 0 if refused.
 */
int pt_encode(const struct pt *in, struct buf_writer *w) TERN_WUR;
size_t pt_encoded_size(const struct pt *in);

#endif
