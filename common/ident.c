/*
 * ident.c: identifier shapes and strict UTF-8 (ident.h).
 */
#include "ident.h"

#include <string.h>

/* Not <ctype.h>: its answers depend on the locale, and these rules must
 * not. */
static int
ident_is_lower_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

int
ident_local_check(const char *s, size_t len)
{
	size_t i;

	if (s == NULL || len < 1 || len > IDENT_LOCAL_MAX)
		return TERN_EFIELD;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!ident_is_lower_alnum(c) && c != '.' && c != '_' &&
		    c != '-' && c != '+')
			return TERN_EFIELD;
	}
	return 0;
}

int
ident_domain_check(const char *s, size_t len)
{
	size_t i, label = 0; /* label: bytes in the current label so far */

	if (s == NULL || len < 1 || len > IDENT_DOMAIN_MAX)
		return TERN_EFIELD;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '.') {
			/* Closes a label: it must be non-empty and not end
			 * with '-'. */
			if (label == 0 || s[i - 1] == '-')
				return TERN_EFIELD;
			label = 0;
			continue;
		}
		if (c == '-') {
			if (label == 0)
				return TERN_EFIELD;
		} else if (!ident_is_lower_alnum(c))
			return TERN_EFIELD;
		if (++label > IDENT_LABEL_MAX)
			return TERN_EFIELD;
	}
	/* The last label: this also refuses a trailing dot. */
	if (label == 0 || s[len - 1] == '-')
		return TERN_EFIELD;
	return 0;
}

int
ident_addr_split(const char *s, size_t len, struct ident_addr *out)
{
	const char *at;

	memset(out, 0, sizeof(*out));
	if (s == NULL || len > IDENT_ADDR_MAX)
		return TERN_EFIELD;
	/* The first '@' splits: a second one lands in the domain, which
	 * refuses it. */
	if ((at = memchr(s, '@', len)) == NULL)
		return TERN_EFIELD;
	if (ident_local_check(s, (size_t)(at - s)) != 0 ||
	    ident_domain_check(at + 1, len - (size_t)(at - s) - 1) != 0)
		return TERN_EFIELD;
	out->local = s;
	out->local_len = (size_t)(at - s);
	out->domain = at + 1;
	out->domain_len = len - out->local_len - 1;
	return 0;
}

int
ident_addr_check(const char *s, size_t len)
{
	struct ident_addr a;

	return ident_addr_split(s, len, &a);
}

int
ident_addr_normalize(const char *in, char *out, size_t cap)
{
	size_t i, n;

	if (in == NULL || out == NULL)
		return TERN_EINVAL;
	if (cap > 0)
		out[0] = '\0';
	/* Bounded: user input may be any length, and we never need to look
	 * past the first byte that makes it too long. */
	n = strnlen(in, IDENT_ADDR_MAX + 1);
	if (n > IDENT_ADDR_MAX)
		return TERN_EFIELD;
	if (n >= cap)
		return TERN_ETOOBIG;
	for (i = 0; i < n; i++) {
		char c = in[i];
		out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
	}
	out[n] = '\0';
	if (ident_addr_check(out, n) != 0) {
		out[0] = '\0';
		return TERN_EFIELD;
	}
	return 0;
}

/*
 * Well-formed byte sequences, as Table 3-7 of the Unicode Standard lists
 * them. The second byte's range depends on the first: that is where the
 * overlong forms (E0, F0), the surrogates (ED) and the code points above
 * U+10FFFF (F4) are cut out; every later byte is 80..BF.
 */
int
ident_utf8_check(const uint8_t *p, size_t len)
{
	size_t i = 0, need, k;
	uint8_t c, lo, hi;

	if (p == NULL && len > 0)
		return TERN_EUTF8;
	while (i < len) {
		c = p[i];
		if (c == 0x00)
			return TERN_EUTF8;
		if (c < 0x80) {
			i++;
			continue;
		}
		lo = 0x80;
		hi = 0xBF;
		if (c >= 0xC2 && c <= 0xDF)
			need = 1;
		else if (c == 0xE0) {
			need = 2;
			lo = 0xA0;
		} else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
			need = 2;
		else if (c == 0xED) {
			need = 2;
			hi = 0x9F;
		} else if (c == 0xF0) {
			need = 3;
			lo = 0x90;
		} else if (c >= 0xF1 && c <= 0xF3)
			need = 3;
		else if (c == 0xF4) {
			need = 3;
			hi = 0x8F;
		} else
			return TERN_EUTF8; /* 80..C1, F5..FF: never a lead */
		if (need > len - i - 1)
			return TERN_EUTF8;
		if (p[i + 1] < lo || p[i + 1] > hi)
			return TERN_EUTF8;
		for (k = 2; k <= need; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xBF)
				return TERN_EUTF8;
		i += need + 1;
	}
	return 0;
}
