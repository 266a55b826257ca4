/*
 * ident.h: the shapes of tern identifiers, and strict UTF-8.
 *
 * A user address is local@domain (SPEC.md, "Message encoding"):
 *   local   1..64 bytes of a-z 0-9 . _ - +   ('+' so phone numbers fit)
 *   domain  1..253 bytes of dot-separated labels; a label is 1..63 bytes
 *           of a-z 0-9 -, neither starting nor ending with '-'; no empty
 *           label, no trailing dot
 *   whole   at most 255 bytes, so every address fits the u8 length that
 *           carries it on the wire
 * Only lowercase is valid: an address is compared byte for byte everywhere
 * (store keys, federation routing), so two spellings of one user must not
 * exist. User input goes through ident_addr_normalize first.
 *
 * The checks take a pointer and a length, never a C string, because they
 * run on bytes borrowed from network input; a NUL byte is just an invalid
 * character. Nothing here allocates.
 *
 * Written by hand: the rules are tern's own (IDNA and RFC 5322 libraries
 * accept far more), and the UTF-8 check is one table-shaped function.
 */
#ifndef TERN_IDENT_H
#define TERN_IDENT_H

#include <stddef.h>
#include <stdint.h>

#include "tern_err.h"

#define IDENT_LOCAL_MAX 64   /* bytes in a local part */
#define IDENT_DOMAIN_MAX 253 /* bytes in a domain name (DNS limit) */
#define IDENT_LABEL_MAX 63   /* bytes in one domain label (DNS limit) */
/*
 * Bytes in a whole address. Not IDENT_LOCAL_MAX + 1 + IDENT_DOMAIN_MAX
 * (318): addresses travel behind a u8 length, so the whole is capped at
 * 255, as mail caps its paths; a 64-byte local part then leaves 190 bytes
 * for the domain. A buffer of IDENT_ADDR_MAX + 1 holds any address and a
 * NUL.
 */
#define IDENT_ADDR_MAX 255

/* An address split into its parts; both point into the checked input. */
struct ident_addr {
	const char *local;  /* local part, borrowed, not NUL-terminated */
	size_t local_len;   /* its length, 1..IDENT_LOCAL_MAX */
	const char *domain; /* domain, borrowed, not NUL-terminated */
	size_t domain_len;  /* its length, 1..IDENT_DOMAIN_MAX */
};

/* Each returns 0 when s[0..len) is valid, else TERN_EFIELD. */
int ident_local_check(const char *s, size_t len) TERN_WUR;
int ident_domain_check(const char *s, size_t len) TERN_WUR;
int ident_addr_check(const char *s, size_t len) TERN_WUR;

/*
 * ident_addr_split checks s[0..len) like ident_addr_check and points out's
 * fields into s (so s must outlive out). TERN_EFIELD if invalid, and then
 * out is zeroed.
 */
int ident_addr_split(const char *s, size_t len, struct ident_addr *out)
    TERN_WUR;

/*
 * ident_addr_normalize: for addresses a person typed. Lowercases ASCII
 * letters of the NUL-terminated in, checks the result, and writes it
 * NUL-terminated to out (cap bytes; IDENT_ADDR_MAX + 1 always suffices).
 * Nothing else is folded: non-ASCII, spaces and the like stay and fail.
 * Returns 0, TERN_EFIELD for an invalid address, TERN_ETOOBIG if out is
 * too small, TERN_EINVAL for NULL arguments; on failure out (if cap > 0)
 * holds the empty string.
 */
int ident_addr_normalize(const char *in, char *out, size_t cap) TERN_WUR;

/*
 * ident_utf8_check: 0 when p[0..len) is strict UTF-8 (RFC 3629: shortest
 * form only, no surrogates U+D800..U+DFFF, nothing above U+10FFFF, no
 * sequence cut short) with no NUL byte, else TERN_EUTF8. NUL is refused
 * because text fields end up in C strings, logs and terminals, where an
 * embedded NUL silently cuts what a user sees.
 */
int ident_utf8_check(const uint8_t *p, size_t len) TERN_WUR;

#endif
