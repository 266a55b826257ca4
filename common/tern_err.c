/*
 * tern_err.c: texts for the error codes in tern_err.h.
 */
#include "tern_err.h"

#include <stddef.h>

struct err_text {
	const char *name; /* symbolic name */
	const char *text; /* what a person reads */
};

/* Indexed by -code. */
static const struct err_text err_texts[] = {
	[0] = {"TERN_OK", "success"},
	[1] = {"TERN_EINVAL", "invalid argument"},
	[2] = {"TERN_ENOMEM", "out of memory"},
	[3] = {"TERN_ETRUNC", "input truncated"},
	[4] = {"TERN_ETOOBIG", "declared length over its limit"},
	[5] = {"TERN_EVERSION", "unknown protocol version"},
	[6] = {"TERN_ETYPE", "unknown message type"},
	[7] = {"TERN_ETRAILING", "trailing bytes after message"},
	[8] = {"TERN_EUTF8", "text is not valid UTF-8"},
	[9] = {"TERN_EFIELD", "field value out of range"},
	[10] = {"TERN_EDECRYPT", "decryption failed (tampered, replayed or reordered data)"},
	[11] = {"TERN_ENONCE", "cipher nonce exhausted"},
	[12] = {"TERN_EDH", "invalid Diffie-Hellman result"},
	[13] = {"TERN_ESTATE", "operation not valid in this state"},
	[14] = {"TERN_EPATTERN", "unsupported Noise protocol"},
	[15] = {"TERN_EKEY", "missing or invalid key"},
	[16] = {"TERN_ETIMEOUT", "timed out"},
	[17] = {"TERN_EIO", "I/O error"},
	[18] = {"TERN_ECLOSED", "connection closed"},
	[19] = {"TERN_EAUTH", "authentication failed"},
	[20] = {"TERN_ENOUSER", "no such user or device"},
	[21] = {"TERN_EEXIST", "already exists"},
	[22] = {"TERN_EQUOTA", "recipient mailbox full"},
	[23] = {"TERN_ERATE", "rate limit reached"},
	[24] = {"TERN_EDISK", "storage full or failing"},
	[25] = {"TERN_EDB", "database error"},
	[26] = {"TERN_EDENIED", "not allowed"},
	[27] = {"TERN_EBUSY", "node overloaded, try later"},
	[28] = {"TERN_EUNREACH", "node unreachable"},
	[29] = {"TERN_EEXPIRED", "expired"},
	[30] = {"TERN_ECONFIG", "invalid configuration"},
	[31] = {"TERN_ENOTFOUND", "not found"},
	[32] = {"TERN_ECANCELED", "canceled"},
	[33] = {"TERN_EIDENTITY", "identity key changed; accept it first"},
	[34] = {"TERN_EDUP", "duplicate"},
	[35] = {"TERN_ENOSERVICE", "the domain offers no such service"},
};

static const struct err_text *
err_lookup(int code)
{
	if (code > 0 || code < TERN_E_LAST)
		return NULL;
	return &err_texts[-code];
}

const char *
tern_strerror(int code)
{
	const struct err_text *e = err_lookup(code);
	return e ? e->text : "unknown error";
}

const char *
tern_errname(int code)
{
	const struct err_text *e = err_lookup(code);
	return e ? e->name : "TERN_E?";
}
