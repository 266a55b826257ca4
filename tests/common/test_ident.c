/*
 * test_ident.c: address and domain shapes, strict UTF-8 (common/ident.h).
 */
#include "tt.h"

#include "ident.h"

/* Checks a C-string address (no embedded NUL). */
static int
addr(const char *s)
{
	return ident_addr_check(s, strlen(s));
}

static int
domain(const char *s)
{
	return ident_domain_check(s, strlen(s));
}

static int
utf8(const char *s, size_t len)
{
	return ident_utf8_check((const uint8_t *)s, len);
}

/* Fills out with a local part of n bytes, '@', and a domain of m bytes
 * made of labels of at most 62 bytes; returns the length. */
static size_t
make_addr(char *out, size_t n, size_t m)
{
	size_t i, len = 0, label = 0;

	for (i = 0; i < n; i++)
		out[len++] = 'a' + (char)(i % 26);
	out[len++] = '@';
	for (i = 0; i < m; i++) {
		/* A dot after every 62 letters, but never last. */
		if (label == 62 && i + 1 < m) {
			out[len++] = '.';
			label = 0;
			continue;
		}
		out[len++] = 'x';
		label++;
	}
	out[len] = '\0';
	return len;
}

TT_CASE(ident__addr_check__good)
{
	TT_OK(addr("alice@example.test"));
	TT_OK(addr("a@b"));
	TT_OK(addr("a@localhost"));
	TT_OK(addr("+15551234@tel.test"));
	TT_OK(addr("first.last_x-y+z@sub.domain-1.test"));
	TT_OK(addr("0@0.0"));
	TT_OK(addr("..@x-y.z"));
}

TT_CASE(ident__addr_check__bad)
{
	TT_ERR(addr(""), TERN_EFIELD);
	TT_ERR(addr("@"), TERN_EFIELD);
	TT_ERR(addr("alice"), TERN_EFIELD);
	TT_ERR(addr("@example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@"), TERN_EFIELD);
	TT_ERR(addr("Alice@example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@Example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@@example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@bob@example.test"), TERN_EFIELD);
	TT_ERR(addr("al ice@example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@example.test."), TERN_EFIELD);
	TT_ERR(addr("alice@.example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@example..test"), TERN_EFIELD);
	TT_ERR(addr("alice@-example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@example-.test"), TERN_EFIELD);
	TT_ERR(addr("alice@example.test-"), TERN_EFIELD);
	TT_ERR(addr("alice@exa_mple.test"), TERN_EFIELD);
	TT_ERR(addr("alice@ex+ample.test"), TERN_EFIELD);
	TT_ERR(addr("al/ice@example.test"), TERN_EFIELD);
	TT_ERR(addr("al\xc3\xa9@example.test"), TERN_EFIELD);
	TT_ERR(addr("alice@ex\xc3\xa9.test"), TERN_EFIELD);
	TT_ERR(ident_addr_check(NULL, 0), TERN_EFIELD);
}

TT_CASE(ident__addr_check__nul_inside)
{
	TT_ERR(ident_addr_check("al\0ce@example.test", 18), TERN_EFIELD);
	TT_ERR(ident_addr_check("alice@exa\0ple.test", 18), TERN_EFIELD);
	TT_ERR(ident_addr_check("alice@example.test\0", 19), TERN_EFIELD);
	/* The length, not a NUL, ends the input. */
	TT_OK(ident_addr_check("alice@example.test\0", 18));
}

TT_CASE(ident__local_check__lengths)
{
	char b[IDENT_ADDR_MAX + 2];
	size_t len;

	len = make_addr(b, 64, 5);
	TT_EQ(len, 70);
	TT_OK(ident_addr_check(b, len));
	TT_OK(ident_local_check(b, 64));
	len = make_addr(b, 65, 5);
	TT_ERR(ident_addr_check(b, len), TERN_EFIELD);
	TT_ERR(ident_local_check(b, 65), TERN_EFIELD);
	TT_ERR(ident_local_check(b, 0), TERN_EFIELD);
	TT_OK(ident_local_check("+", 1));
}

TT_CASE(ident__domain_check__lengths)
{
	char b[300];
	size_t len;

	/* 253 bytes: the DNS limit, and with a 1-byte local part exactly
	 * IDENT_ADDR_MAX (255). */
	len = make_addr(b, 1, 253);
	TT_EQ(len, 255);
	TT_OK(ident_domain_check(b + 2, 253));
	TT_OK(ident_addr_check(b, len));
	len = make_addr(b, 1, 254);
	TT_ERR(ident_domain_check(b + 2, 254), TERN_EFIELD);
	TT_ERR(ident_addr_check(b, len), TERN_EFIELD);
	TT_ERR(ident_domain_check("", 0), TERN_EFIELD);
	TT_ERR(ident_domain_check(NULL, 0), TERN_EFIELD);
}

TT_CASE(ident__domain_check__labels)
{
	char b[80];

	/* 63-byte label fine, 64 not, wherever it sits. */
	memset(b, 'q', 63);
	TT_OK(ident_domain_check(b, 63));
	memset(b, 'q', 64);
	TT_ERR(ident_domain_check(b, 64), TERN_EFIELD);
	memcpy(b, "a.", 2);
	memset(b + 2, 'q', 63);
	TT_OK(ident_domain_check(b, 65));
	memset(b + 2, 'q', 64);
	TT_ERR(ident_domain_check(b, 66), TERN_EFIELD);
	memset(b, 'q', 63);
	memcpy(b + 63, ".a", 2);
	TT_OK(ident_domain_check(b, 65));

	TT_OK(domain("localhost"));
	TT_OK(domain("a-b.c--d.test"));
	TT_OK(domain("1.2.3.4"));
	TT_ERR(domain("-a.test"), TERN_EFIELD);
	TT_ERR(domain("a-.test"), TERN_EFIELD);
	TT_ERR(domain("a.-test"), TERN_EFIELD);
	TT_ERR(domain("a.test-"), TERN_EFIELD);
	TT_ERR(domain("-"), TERN_EFIELD);
	TT_ERR(domain("."), TERN_EFIELD);
	TT_ERR(domain("a."), TERN_EFIELD);
	TT_ERR(domain(".a"), TERN_EFIELD);
	TT_ERR(domain("a..b"), TERN_EFIELD);
	TT_ERR(domain("A.test"), TERN_EFIELD);
	TT_ERR(domain("a@b"), TERN_EFIELD);
}

TT_CASE(ident__addr_check__whole_cap)
{
	char b[IDENT_ADDR_MAX + 8];
	size_t len;

	/* Both parts valid on their own, the whole over 255: refused, or it
	 * could not travel behind a u8 length. */
	len = make_addr(b, 64, 190);
	TT_EQ(len, IDENT_ADDR_MAX);
	TT_OK(ident_addr_check(b, len));
	len = make_addr(b, 64, 191);
	TT_EQ(len, IDENT_ADDR_MAX + 1);
	TT_OK(ident_domain_check(b + 65, 191));
	TT_ERR(ident_addr_check(b, len), TERN_EFIELD);
}

TT_CASE(ident__addr_split__parts)
{
	const char *s = "bob+x@chat.example.test";
	struct ident_addr a;

	TT_OK(ident_addr_split(s, strlen(s), &a));
	TT_ASSERT(a.local == s);
	TT_EQ(a.local_len, 5);
	TT_ASSERT(a.domain == s + 6);
	TT_EQ(a.domain_len, strlen("chat.example.test"));
	TT_ERR(ident_addr_split("bob@", 4, &a), TERN_EFIELD);
	TT_ASSERT(a.local == NULL && a.domain == NULL);
	TT_EQ(a.local_len + a.domain_len, 0);
}

TT_CASE(ident__addr_normalize__lowercases)
{
	char out[IDENT_ADDR_MAX + 1];
	char big[IDENT_ADDR_MAX + 8];

	TT_OK(ident_addr_normalize("Alice@Example.TEST", out, sizeof(out)));
	TT_ASSERT(strcmp(out, "alice@example.test") == 0);
	TT_OK(ident_addr_normalize("+1555@tel.test", out, 15));
	TT_ASSERT(strcmp(out, "+1555@tel.test") == 0);
	/* One byte short for the NUL. */
	TT_ERR(ident_addr_normalize("+1555@tel.test", out, 14), TERN_ETOOBIG);
	TT_ASSERT(out[0] == '\0');
	TT_ERR(ident_addr_normalize(" alice@example.test", out, sizeof(out)),
	    TERN_EFIELD);
	TT_ASSERT(out[0] == '\0');
	TT_ERR(ident_addr_normalize("ALİCE@example.test", out, sizeof(out)),
	    TERN_EFIELD);
	TT_ERR(ident_addr_normalize("alice", out, sizeof(out)), TERN_EFIELD);
	TT_ERR(ident_addr_normalize(NULL, out, sizeof(out)), TERN_EINVAL);
	make_addr(big, 64, 192);
	TT_ERR(ident_addr_normalize(big, out, sizeof(out)), TERN_EFIELD);
	make_addr(big, 64, 190);
	TT_OK(ident_addr_normalize(big, out, sizeof(out)));
	TT_EQ(strlen(out), IDENT_ADDR_MAX);
}

TT_CASE(ident__utf8_check__good)
{
	TT_OK(utf8("", 0));
	TT_OK(ident_utf8_check(NULL, 0));
	TT_OK(utf8("hello", 5));
	TT_OK(utf8("\x7f", 1));
	TT_OK(utf8("h\xc3\xa9llo", 6));           /* é */
	TT_OK(utf8("\xc2\x80", 2));               /* U+0080, smallest 2 */
	TT_OK(utf8("\xdf\xbf", 2));               /* U+07FF */
	TT_OK(utf8("\xe0\xa0\x80", 3));           /* U+0800, smallest 3 */
	TT_OK(utf8("\xed\x9f\xbf", 3));           /* U+D7FF, below surrogates */
	TT_OK(utf8("\xee\x80\x80", 3));           /* U+E000, above them */
	TT_OK(utf8("\xef\xbf\xbf", 3));           /* U+FFFF */
	TT_OK(utf8("\xf0\x90\x80\x80", 4));       /* U+10000, smallest 4 */
	TT_OK(utf8("\xf0\x9f\x98\x80", 4));       /* emoji */
	TT_OK(utf8("\xf4\x8f\xbf\xbf", 4));       /* U+10FFFF, the last */
	TT_OK(utf8("\xe2\x82\xac\xf0\x9f\x98\x80x", 8));
}

TT_CASE(ident__utf8_check__bad)
{
	/* NUL */
	TT_ERR(utf8("\0", 1), TERN_EUTF8);
	TT_ERR(utf8("ab\0cd", 5), TERN_EUTF8);
	/* Overlong forms */
	TT_ERR(utf8("\xc0\x80", 2), TERN_EUTF8);  /* NUL, overlong */
	TT_ERR(utf8("\xc1\xbf", 2), TERN_EUTF8);
	TT_ERR(utf8("\xe0\x80\x80", 3), TERN_EUTF8);
	TT_ERR(utf8("\xe0\x9f\xbf", 3), TERN_EUTF8);
	TT_ERR(utf8("\xf0\x80\x80\x80", 4), TERN_EUTF8);
	TT_ERR(utf8("\xf0\x8f\xbf\xbf", 4), TERN_EUTF8);
	/* Surrogates */
	TT_ERR(utf8("\xed\xa0\x80", 3), TERN_EUTF8);  /* U+D800 */
	TT_ERR(utf8("\xed\xbf\xbf", 3), TERN_EUTF8);  /* U+DFFF */
	TT_ERR(utf8("\xed\xa0\xbd\xed\xb8\x80", 6), TERN_EUTF8); /* CESU-8 */
	/* Above U+10FFFF */
	TT_ERR(utf8("\xf4\x90\x80\x80", 4), TERN_EUTF8);
	TT_ERR(utf8("\xf5\x80\x80\x80", 4), TERN_EUTF8);
	TT_ERR(utf8("\xf7\xbf\xbf\xbf", 4), TERN_EUTF8);
	TT_ERR(utf8("\xf8\x88\x80\x80\x80", 5), TERN_EUTF8);
	TT_ERR(utf8("\xff", 1), TERN_EUTF8);
	TT_ERR(utf8("\xfe", 1), TERN_EUTF8);
	/* Stray continuation bytes */
	TT_ERR(utf8("\x80", 1), TERN_EUTF8);
	TT_ERR(utf8("a\xbf", 2), TERN_EUTF8);
	TT_ERR(utf8("\xc3\xa9\xa9", 3), TERN_EUTF8);
	/* Truncated sequences, at the end and before another character */
	TT_ERR(utf8("\xc3", 1), TERN_EUTF8);
	TT_ERR(utf8("\xe2\x82", 2), TERN_EUTF8);
	TT_ERR(utf8("\xf0\x9f\x98", 3), TERN_EUTF8);
	TT_ERR(utf8("\xf0\x9f", 2), TERN_EUTF8);
	TT_ERR(utf8("\xf0", 1), TERN_EUTF8);
	TT_ERR(utf8("\xc3x", 2), TERN_EUTF8);
	TT_ERR(utf8("\xe2\x82x", 3), TERN_EUTF8);
	TT_ERR(utf8("\xf0\x9f\x98x", 4), TERN_EUTF8);
	/* A valid sequence whose length runs past len */
	TT_ERR(utf8("h\xc3\xa9", 2), TERN_EUTF8);
	TT_ERR(ident_utf8_check(NULL, 1), TERN_EUTF8);
}

TT_CASE(ident__utf8_check__every_two_byte_lead)
{
	uint8_t b[2];
	unsigned c;

	/* Exhaustive over two bytes: only C2..DF followed by 80..BF, and
	 * single ASCII bytes other than NUL, may pass. */
	for (c = 0; c < 0x10000; c++) {
		int want;
		b[0] = (uint8_t)(c >> 8);
		b[1] = (uint8_t)c;
		if (b[0] >= 0xc2 && b[0] <= 0xdf)
			want = b[1] >= 0x80 && b[1] <= 0xbf;
		else
			want = b[0] >= 0x01 && b[0] <= 0x7f &&
			    b[1] >= 0x01 && b[1] <= 0x7f;
		TT_EQ(ident_utf8_check(b, 2) == 0, want);
	}
}
