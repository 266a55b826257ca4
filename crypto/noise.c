/*
 * noise.c: the Noise Protocol Framework, revision 34, for
 * Noise_<pattern>_25519_ChaChaPoly_BLAKE2b on libsodium.
 *
 * Written by hand: Debian packages no C Noise library, and libsodium gives
 * the primitives (X25519, ChaCha20-Poly1305 IETF, BLAKE2b) but neither HMAC
 * over BLAKE2b nor the protocol's state machines.
 *
 * tern speaks two patterns. Written out the way WireGuard's noise.c writes
 * its own, they are:
 *
 * Noise_XX, first contact:
 *
 * -> e
 * <- e, ee, s, es
 * -> s, se
 *
 * Noise_IK, reconnecting to a responder whose static key we know:
 *
 * <- s
 * ******
 * -> e, es, s, ss
 * <- e, ee, se
 *
 * The handshake below is generic: noise_patterns[] keeps every pattern of
 * the spec's sections 7.4, 7.5 and 18 in the spec's own notation, and
 * noise_handshake_init parses the one named into the token tables of
 * struct noise_handshake, adding the tokens of any psk modifiers. Reads and
 * writes then only walk those tables. Nothing here allocates.
 */
#include "noise.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define NOISE_NONCELEN 12             /* ChaChaPoly IETF nonce */
#define NOISE_PREFIX "Noise_"
#define NOISE_SUFFIX "_25519_ChaChaPoly_BLAKE2b"
#define NOISE_PRE_E 0x01              /* pre-message token e */
#define NOISE_PRE_S 0x02              /* pre-message token s */

/*
 * Every pattern the spec defines for two parties, in its notation: one
 * message per line, pre-messages above a "..." line. Messages alternate
 * starting with the initiator's; the parser checks that.
 */
struct noise_pattern {
	const char *name; /* as written in a protocol name */
	const char *text; /* the spec's notation */
};

static const struct noise_pattern noise_patterns[] = {
	/* One-way, section 7.4. */
	{ "N", "<- s\n...\n-> e, es" },
	{ "K", "-> s\n<- s\n...\n-> e, es, ss" },
	{ "X", "<- s\n...\n-> e, es, s, ss" },
	/* Interactive, section 7.5. */
	{ "NN", "-> e\n<- e, ee" },
	{ "NK", "<- s\n...\n-> e, es\n<- e, ee" },
	{ "NX", "-> e\n<- e, ee, s, es" },
	{ "KN", "-> s\n...\n-> e\n<- e, ee, se" },
	{ "KK", "-> s\n<- s\n...\n-> e, es, ss\n<- e, ee, se" },
	{ "KX", "-> s\n...\n-> e\n<- e, ee, se, s, es" },
	{ "XN", "-> e\n<- e, ee\n-> s, se" },
	{ "XK", "<- s\n...\n-> e, es\n<- e, ee\n-> s, se" },
	{ "XX", "-> e\n<- e, ee, s, es\n-> s, se" },
	{ "IN", "-> e, s\n<- e, ee, se" },
	{ "IK", "<- s\n...\n-> e, es, s, ss\n<- e, ee, se" },
	{ "IX", "-> e, s\n<- e, ee, se, s, es" },
	/* Deferred, section 18.2. */
	{ "NK1", "<- s\n...\n-> e\n<- e, ee, es" },
	{ "NX1", "-> e\n<- e, ee, s\n-> es" },
	{ "X1N", "-> e\n<- e, ee\n-> s\n<- se" },
	{ "X1K", "<- s\n...\n-> e, es\n<- e, ee\n-> s\n<- se" },
	{ "XK1", "<- s\n...\n-> e\n<- e, ee, es\n-> s, se" },
	{ "X1K1", "<- s\n...\n-> e\n<- e, ee, es\n-> s\n<- se" },
	{ "X1X", "-> e\n<- e, ee, s, es\n-> s\n<- se" },
	{ "XX1", "-> e\n<- e, ee, s\n-> es, s, se" },
	{ "X1X1", "-> e\n<- e, ee, s\n-> es, s\n<- se" },
	{ "K1N", "-> s\n...\n-> e\n<- e, ee\n-> se" },
	{ "K1K", "-> s\n<- s\n...\n-> e, es\n<- e, ee\n-> se" },
	{ "KK1", "-> s\n<- s\n...\n-> e\n<- e, ee, se, es" },
	{ "K1K1", "-> s\n<- s\n...\n-> e\n<- e, ee, es\n-> se" },
	{ "K1X", "-> s\n...\n-> e\n<- e, ee, s, es\n-> se" },
	{ "KX1", "-> s\n...\n-> e\n<- e, ee, se, s\n-> es" },
	{ "K1X1", "-> s\n...\n-> e\n<- e, ee, s\n-> se, es" },
	{ "I1N", "-> e, s\n<- e, ee\n-> se" },
	{ "I1K", "<- s\n...\n-> e, es, s\n<- e, ee\n-> se" },
	{ "IK1", "<- s\n...\n-> e, s\n<- e, ee, se, es" },
	{ "I1K1", "<- s\n...\n-> e, s\n<- e, ee, es\n-> se" },
	{ "I1X", "-> e, s\n<- e, ee, s, es\n-> se" },
	{ "IX1", "-> e, s\n<- e, ee, se, s\n-> es" },
	{ "I1X1", "-> e, s\n<- e, ee, s\n-> se, es" },
};

static const struct {
	const char *name;      /* as the spec writes the token */
	enum noise_token tok;  /* what the engine runs */
} noise_token_names[] = {
	{ "e", NOISE_TOK_E },
	{ "s", NOISE_TOK_S },
	{ "ee", NOISE_TOK_EE },
	{ "es", NOISE_TOK_ES },
	{ "se", NOISE_TOK_SE },
	{ "ss", NOISE_TOK_SS },
	{ "psk", NOISE_TOK_PSK },
};

#define NOISE_NELEM(a) (sizeof(a) / sizeof((a)[0]))

/*
 * sodium_init picks the fastest implementations and seeds the random
 * generator; it is idempotent and thread-safe. It only fails when the
 * system offers no randomness, and no key can be made safely then.
 */
static void
noise_sodium_ready(void)
{
	if (sodium_init() < 0)
		abort();
}

/* Primitives. */

void
noise_hash(const uint8_t *in, size_t len, uint8_t out[NOISE_HASHLEN])
{
	crypto_generichash_blake2b(out, NOISE_HASHLEN, in, len, NULL, 0);
}

/* noise_hash2 is HASH(a || b) without copying the two into one buffer. */
static void
noise_hash2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
    uint8_t out[NOISE_HASHLEN])
{
	crypto_generichash_blake2b_state st;

	crypto_generichash_blake2b_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_blake2b_update(&st, a, alen);
	crypto_generichash_blake2b_update(&st, b, blen);
	crypto_generichash_blake2b_final(&st, out, NOISE_HASHLEN);
	sodium_memzero(&st, sizeof st);
}

/*
 * RFC 2104 over BLAKE2b with its 128-byte block. libsodium's keyed BLAKE2b
 * is a different function, and Noise's HKDF is defined on HMAC. out may
 * alias key or in: both are consumed before out is written.
 */
void
noise_hmac(const uint8_t *key, size_t keylen, const uint8_t *in, size_t len,
    uint8_t out[NOISE_HASHLEN])
{
	crypto_generichash_blake2b_state st;
	uint8_t kb[NOISE_BLOCKLEN], pad[NOISE_BLOCKLEN];
	uint8_t inner[NOISE_HASHLEN];
	size_t i;

	memset(kb, 0, sizeof kb);
	if (keylen > NOISE_BLOCKLEN)
		noise_hash(key, keylen, kb);
	else if (keylen > 0)
		memcpy(kb, key, keylen);

	for (i = 0; i < NOISE_BLOCKLEN; i++)
		pad[i] = kb[i] ^ 0x36;
	crypto_generichash_blake2b_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof pad);
	crypto_generichash_blake2b_update(&st, in, len);
	crypto_generichash_blake2b_final(&st, inner, sizeof inner);

	for (i = 0; i < NOISE_BLOCKLEN; i++)
		pad[i] = kb[i] ^ 0x5c;
	crypto_generichash_blake2b_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_blake2b_update(&st, pad, sizeof pad);
	crypto_generichash_blake2b_update(&st, inner, sizeof inner);
	crypto_generichash_blake2b_final(&st, out, NOISE_HASHLEN);

	sodium_memzero(&st, sizeof st);
	sodium_memzero(kb, sizeof kb);
	sodium_memzero(pad, sizeof pad);
	sodium_memzero(inner, sizeof inner);
}

/*
 * HKDF of the spec's section 4.3; out3 NULL asks for two outputs. out1 may
 * alias ck, as MixKey needs: ck is read only for the temporary key.
 */
void
noise_hkdf(const uint8_t ck[NOISE_HASHLEN], const uint8_t *ikm,
    size_t ikm_len, uint8_t out1[NOISE_HASHLEN], uint8_t out2[NOISE_HASHLEN],
    uint8_t out3[NOISE_HASHLEN])
{
	uint8_t tk[NOISE_HASHLEN], buf[NOISE_HASHLEN + 1];

	noise_hmac(ck, NOISE_HASHLEN, ikm, ikm_len, tk);
	buf[0] = 0x01;
	noise_hmac(tk, sizeof tk, buf, 1, out1);
	memcpy(buf, out1, NOISE_HASHLEN);
	buf[NOISE_HASHLEN] = 0x02;
	noise_hmac(tk, sizeof tk, buf, sizeof buf, out2);
	if (out3 != NULL) {
		memcpy(buf, out2, NOISE_HASHLEN);
		buf[NOISE_HASHLEN] = 0x03;
		noise_hmac(tk, sizeof tk, buf, sizeof buf, out3);
	}
	sodium_memzero(tk, sizeof tk);
	sodium_memzero(buf, sizeof buf);
}

/*
 * DH() with the check the spec leaves to implementations: a zero or
 * low-order public key gives an all-zero result that anyone can compute,
 * so it must never key a cipher.
 */
static int
noise_dh(const uint8_t priv[NOISE_DHLEN], const uint8_t pub[NOISE_DHLEN],
    uint8_t out[NOISE_DHLEN])
{
	if (crypto_scalarmult_curve25519(out, priv, pub) != 0 ||
	    sodium_is_zero(out, NOISE_DHLEN)) {
		sodium_memzero(out, NOISE_DHLEN);
		return TERN_EDH;
	}
	return 0;
}

void
noise_keypair_generate(uint8_t priv[NOISE_DHLEN], uint8_t pub[NOISE_DHLEN])
{
	noise_sodium_ready();
	/* A clamped scalar never gives the zero point; the loop is a guard. */
	do
		randombytes_buf(priv, NOISE_DHLEN);
	while (crypto_scalarmult_curve25519_base(pub, priv) != 0);
}

int
noise_public_key(const uint8_t priv[NOISE_DHLEN], uint8_t pub[NOISE_DHLEN])
{
	if (crypto_scalarmult_curve25519_base(pub, priv) != 0)
		return TERN_EKEY;
	return 0;
}

/* CipherState. */

/* The spec's ChaChaPoly nonce: 32 zero bits, then n little-endian. */
static void
noise_nonce(uint8_t nonce[NOISE_NONCELEN], uint64_t n)
{
	int i;

	memset(nonce, 0, 4);
	for (i = 0; i < 8; i++)
		nonce[4 + i] = (uint8_t)(n >> (8 * i));
}

/* InitializeKey with the first NOISE_KEYLEN bytes of a hash output. */
static void
noise_cipher_init(struct noise_cipher *c, const uint8_t key[NOISE_HASHLEN])
{
	memcpy(c->k, key, NOISE_KEYLEN);
	c->n = 0;
	c->has_key = true;
}

/*
 * Without a key, handshake fields travel in clear; the caps still hold so
 * that a caller never gets more than NOISE_MAX_MSG back.
 */
static int
noise_cipher_copy(const uint8_t *in, size_t inlen, uint8_t *out,
    size_t outcap, size_t *outlen)
{
	if (inlen > NOISE_MAX_MSG || inlen > outcap)
		return TERN_ETOOBIG;
	if (inlen > 0)
		memmove(out, in, inlen);
	*outlen = inlen;
	return 0;
}

int
noise_cipher_encrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen,
    const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap,
    size_t *outlen)
{
	uint8_t nonce[NOISE_NONCELEN];
	unsigned long long clen;

	*outlen = 0;
	if (!c->has_key)
		return noise_cipher_copy(in, inlen, out, outcap, outlen);
	/* 2^64-1 is reserved for Rekey (spec 5.1). */
	if (c->n == UINT64_MAX)
		return TERN_ENONCE;
	if (inlen > NOISE_MAX_MSG - NOISE_TAGLEN ||
	    inlen + NOISE_TAGLEN > outcap)
		return TERN_ETOOBIG;
	noise_nonce(nonce, c->n);
	if (crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, in, inlen,
	    ad, adlen, NULL, nonce, c->k) != 0)
		return TERN_EINVAL; /* libsodium only refuses over-long input */
	c->n++;
	*outlen = (size_t)clen;
	return 0;
}

int
noise_cipher_decrypt(struct noise_cipher *c, const uint8_t *ad, size_t adlen,
    const uint8_t *in, size_t inlen, uint8_t *out, size_t outcap,
    size_t *outlen)
{
	uint8_t nonce[NOISE_NONCELEN];
	unsigned long long mlen;

	*outlen = 0;
	if (!c->has_key)
		return noise_cipher_copy(in, inlen, out, outcap, outlen);
	if (c->n == UINT64_MAX)
		return TERN_ENONCE;
	if (inlen > NOISE_MAX_MSG)
		return TERN_ETOOBIG;
	if (inlen < NOISE_TAGLEN)
		return TERN_ETRUNC;
	if (inlen - NOISE_TAGLEN > outcap)
		return TERN_ETOOBIG;
	noise_nonce(nonce, c->n);
	/* libsodium zeroes out when the tag does not verify. */
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &mlen, NULL, in,
	    inlen, ad, adlen, nonce, c->k) != 0)
		return TERN_EDECRYPT;
	/* Only an authentic message uses up a nonce (spec 5.1). */
	c->n++;
	*outlen = (size_t)mlen;
	return 0;
}

void
noise_cipher_rekey(struct noise_cipher *c)
{
	uint8_t nonce[NOISE_NONCELEN], zeros[NOISE_KEYLEN];
	uint8_t out[NOISE_KEYLEN + NOISE_TAGLEN];

	if (!c->has_key)
		return;
	/* REKEY(k) = ENCRYPT(k, maxnonce, zerolen, zeros), first 32 bytes. */
	memset(zeros, 0, sizeof zeros);
	noise_nonce(nonce, UINT64_MAX);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, NULL, zeros,
	    sizeof zeros, NULL, 0, NULL, nonce, c->k);
	memcpy(c->k, out, NOISE_KEYLEN);
	sodium_memzero(out, sizeof out);
}

void
noise_cipher_wipe(struct noise_cipher *c)
{
	sodium_memzero(c, sizeof *c);
}

/* SymmetricState. */

static void
noise_mix_hash(struct noise_handshake *hs, const uint8_t *data, size_t len)
{
	noise_hash2(hs->h, NOISE_HASHLEN, data, len, hs->h);
}

static void
noise_mix_key(struct noise_handshake *hs, const uint8_t *ikm, size_t len)
{
	uint8_t k[NOISE_HASHLEN];

	noise_hkdf(hs->ck, ikm, len, hs->ck, k, NULL);
	noise_cipher_init(&hs->cs, k);
	sodium_memzero(k, sizeof k);
}

static void
noise_mix_key_and_hash(struct noise_handshake *hs, const uint8_t *ikm,
    size_t len)
{
	uint8_t th[NOISE_HASHLEN], k[NOISE_HASHLEN];

	noise_hkdf(hs->ck, ikm, len, hs->ck, th, k);
	noise_mix_hash(hs, th, sizeof th);
	noise_cipher_init(&hs->cs, k);
	sodium_memzero(th, sizeof th);
	sodium_memzero(k, sizeof k);
}

static int
noise_encrypt_and_hash(struct noise_handshake *hs, const uint8_t *in,
    size_t inlen, uint8_t *out, size_t outcap, size_t *outlen)
{
	int r;

	r = noise_cipher_encrypt(&hs->cs, hs->h, NOISE_HASHLEN, in, inlen,
	    out, outcap, outlen);
	if (r != 0)
		return r;
	noise_mix_hash(hs, out, *outlen);
	return 0;
}

/*
 * The next h covers the ciphertext, so it is computed before decrypting:
 * that lets out overlap in.
 */
static int
noise_decrypt_and_hash(struct noise_handshake *hs, const uint8_t *in,
    size_t inlen, uint8_t *out, size_t outcap, size_t *outlen)
{
	uint8_t next[NOISE_HASHLEN];
	int r;

	noise_hash2(hs->h, NOISE_HASHLEN, in, inlen, next);
	r = noise_cipher_decrypt(&hs->cs, hs->h, NOISE_HASHLEN, in, inlen,
	    out, outcap, outlen);
	if (r == 0)
		memcpy(hs->h, next, NOISE_HASHLEN);
	sodium_memzero(next, sizeof next);
	return r;
}

/* Pattern parsing. */

static int
noise_token_lookup(const char *s, size_t len, enum noise_token *tok)
{
	size_t i;

	for (i = 0; i < NOISE_NELEM(noise_token_names); i++) {
		if (strlen(noise_token_names[i].name) == len &&
		    memcmp(noise_token_names[i].name, s, len) == 0) {
			*tok = noise_token_names[i].tok;
			return 0;
		}
	}
	return TERN_EPATTERN;
}

/*
 * A pre-message is "e", "s" or "e, s"; each side has at most one, the
 * initiator's first, as in the spec's section 7.1.
 */
static int
noise_parse_premessage(struct noise_handshake *hs, bool from_initiator,
    const enum noise_token *toks, size_t n)
{
	uint8_t bits;

	if (n == 1 && toks[0] == NOISE_TOK_E)
		bits = NOISE_PRE_E;
	else if (n == 1 && toks[0] == NOISE_TOK_S)
		bits = NOISE_PRE_S;
	else if (n == 2 && toks[0] == NOISE_TOK_E && toks[1] == NOISE_TOK_S)
		bits = NOISE_PRE_E | NOISE_PRE_S;
	else
		return TERN_EPATTERN;
	if (from_initiator) {
		if (hs->pre_init != 0 || hs->pre_resp != 0)
			return TERN_EPATTERN;
		hs->pre_init = bits;
	} else {
		if (hs->pre_resp != 0)
			return TERN_EPATTERN;
		hs->pre_resp = bits;
	}
	return 0;
}

/* Parses one line: an arrow, a space, then tokens separated by ", ". */
static int
noise_parse_line(struct noise_handshake *hs, const char *line, size_t len,
    bool pre)
{
	enum noise_token toks[NOISE_MAX_TOKENS];
	bool from_initiator;
	size_t n = 0, i, start;
	int r;

	if (len < 4 || line[2] != ' ')
		return TERN_EPATTERN;
	if (memcmp(line, "->", 2) == 0)
		from_initiator = true;
	else if (memcmp(line, "<-", 2) == 0)
		from_initiator = false;
	else
		return TERN_EPATTERN;

	for (start = i = 3; i <= len; i++) {
		if (i < len && line[i] != ',')
			continue;
		if (n == NOISE_MAX_TOKENS)
			return TERN_EPATTERN;
		if ((r = noise_token_lookup(line + start, i - start,
		    &toks[n++])) != 0)
			return r;
		if (i < len) {
			if (i + 1 >= len || line[i + 1] != ' ')
				return TERN_EPATTERN;
			i++;
			start = i + 1;
		}
	}

	if (pre)
		return noise_parse_premessage(hs, from_initiator, toks, n);
	/* Messages alternate, the initiator's first. */
	if (hs->nmsgs == NOISE_MAX_MESSAGES ||
	    from_initiator != (hs->nmsgs % 2 == 0))
		return TERN_EPATTERN;
	for (i = 0; i < n; i++)
		hs->tok[hs->nmsgs][i] = (uint8_t)toks[i];
	hs->ntok[hs->nmsgs] = (uint8_t)n;
	hs->nmsgs++;
	return 0;
}

static int
noise_parse_pattern(struct noise_handshake *hs, const char *text)
{
	const char *p = text, *eol;
	bool pre = strstr(text, "\n...\n") != NULL;
	size_t len;
	int r;

	while (*p != '\0') {
		eol = strchr(p, '\n');
		len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		if (len == 3 && memcmp(p, "...", 3) == 0) {
			if (!pre)
				return TERN_EPATTERN;
			pre = false;
		} else if ((r = noise_parse_line(hs, p, len, pre)) != 0)
			return r;
		p += len;
		if (*p == '\n')
			p++;
	}
	if (pre || hs->nmsgs == 0)
		return TERN_EPATTERN;
	return 0;
}

static size_t
noise_psk_tokens(const struct noise_handshake *hs)
{
	size_t n = 0;
	int m, t;

	for (m = 0; m < hs->nmsgs; m++)
		for (t = 0; t < hs->ntok[m]; t++)
			if (hs->tok[m][t] == NOISE_TOK_PSK)
				n++;
	return n;
}

/*
 * Modifiers "pskN" joined by '+', N strictly increasing so that every
 * name has one spelling: psk0 puts a psk token first in the first
 * message, pskN last in message N (spec section 9.3).
 */
static int
noise_parse_modifiers(struct noise_handshake *hs, const char *mod,
    size_t len)
{
	size_t i = 0, m;
	int n, last = -1;

	if (len == 0)
		return 0;
	for (;;) {
		if (len - i < 4 || memcmp(mod + i, "psk", 3) != 0 ||
		    mod[i + 3] < '0' || mod[i + 3] > '9')
			return TERN_EPATTERN;
		n = mod[i + 3] - '0';
		i += 4;
		if (n <= last || n > hs->nmsgs)
			return TERN_EPATTERN;
		m = n == 0 ? 0 : (size_t)n - 1;
		if (hs->ntok[m] == NOISE_MAX_TOKENS ||
		    noise_psk_tokens(hs) == NOISE_MAX_PSKS)
			return TERN_EPATTERN;
		if (n == 0) {
			memmove(&hs->tok[0][1], &hs->tok[0][0], hs->ntok[0]);
			hs->tok[0][0] = NOISE_TOK_PSK;
		} else
			hs->tok[m][hs->ntok[m]] = NOISE_TOK_PSK;
		hs->ntok[m]++;
		last = n;
		if (i == len)
			break;
		if (mod[i] != '+')
			return TERN_EPATTERN;
		i++;
	}
	hs->psk_mode = true;
	return 0;
}

/* Splits "Noise_<PATTERN><modifiers>_25519_ChaChaPoly_BLAKE2b". */
static int
noise_parse_name(struct noise_handshake *hs, const char *name, size_t len)
{
	const size_t plen = sizeof(NOISE_PREFIX) - 1;
	const size_t slen = sizeof(NOISE_SUFFIX) - 1;
	const char *field;
	size_t flen, blen, i;

	if (len <= plen + slen || memcmp(name, NOISE_PREFIX, plen) != 0 ||
	    memcmp(name + len - slen, NOISE_SUFFIX, slen) != 0)
		return TERN_EPATTERN;
	field = name + plen;
	flen = len - plen - slen;
	/* Pattern names are capitals and digits, modifiers lower case. */
	for (blen = 0; blen < flen; blen++)
		if (!((field[blen] >= 'A' && field[blen] <= 'Z') ||
		    (field[blen] >= '0' && field[blen] <= '9')))
			break;
	for (i = 0; i < NOISE_NELEM(noise_patterns); i++) {
		if (strlen(noise_patterns[i].name) != blen ||
		    memcmp(noise_patterns[i].name, field, blen) != 0)
			continue;
		if (noise_parse_pattern(hs, noise_patterns[i].text) != 0)
			abort(); /* the table above is broken */
		return noise_parse_modifiers(hs, field + blen, flen - blen);
	}
	return TERN_EPATTERN;
}

/* HandshakeState. */

/* Every failure wipes: a half-run handshake is never resumed. */
static int
noise_fail(struct noise_handshake *hs, int err)
{
	noise_handshake_wipe(hs);
	return err;
}

int
noise_handshake_init(struct noise_handshake *hs, const char *protocol_name,
    bool initiator, const uint8_t *prologue, size_t prologue_len)
{
	size_t len;
	int r;

	sodium_memzero(hs, sizeof *hs);
	noise_sodium_ready();
	if (protocol_name == NULL) {
		r = TERN_EPATTERN;
		goto out;
	}
	if (prologue == NULL && prologue_len > 0) {
		r = TERN_EINVAL;
		goto out;
	}
	len = strnlen(protocol_name, NOISE_MAX_NAME + 1);
	if (len > NOISE_MAX_NAME) {
		r = TERN_EPATTERN;
		goto out;
	}
	if ((r = noise_parse_name(hs, protocol_name, len)) != 0)
		goto out;
	hs->initiator = initiator;
	hs->one_way = hs->nmsgs == 1;

	/* InitializeSymmetric: a short name is padded, a long one hashed. */
	if (len <= NOISE_HASHLEN)
		memcpy(hs->h, protocol_name, len);
	else
		noise_hash((const uint8_t *)protocol_name, len, hs->h);
	memcpy(hs->ck, hs->h, NOISE_HASHLEN);
	noise_mix_hash(hs, prologue, prologue_len);
	return 0;
out:
	return noise_fail(hs, r);
}

/* Keys may only be given before the pre-messages have been hashed. */
static int
noise_settable(const struct noise_handshake *hs)
{
	return hs->failed || hs->started ? TERN_ESTATE : 0;
}

int
noise_handshake_set_static_pair(struct noise_handshake *hs,
    const uint8_t priv[NOISE_DHLEN], const uint8_t pub[NOISE_DHLEN])
{
	int r;

	if ((r = noise_settable(hs)) != 0)
		return noise_fail(hs, r);
	memcpy(hs->s_priv, priv, NOISE_DHLEN);
	memcpy(hs->s_pub, pub, NOISE_DHLEN);
	hs->has_s = true;
	return 0;
}

int
noise_handshake_set_static(struct noise_handshake *hs,
    const uint8_t priv[NOISE_DHLEN])
{
	uint8_t pub[NOISE_DHLEN];
	int r;

	if ((r = noise_settable(hs)) != 0 ||
	    (r = noise_public_key(priv, pub)) != 0)
		return noise_fail(hs, r);
	return noise_handshake_set_static_pair(hs, priv, pub);
}

int
noise_handshake_set_remote_static(struct noise_handshake *hs,
    const uint8_t pub[NOISE_DHLEN])
{
	int r;

	if ((r = noise_settable(hs)) != 0)
		return noise_fail(hs, r);
	memcpy(hs->rs, pub, NOISE_DHLEN);
	hs->has_rs = true;
	return 0;
}

int
noise_handshake_set_ephemeral(struct noise_handshake *hs,
    const uint8_t priv[NOISE_DHLEN])
{
	int r;

	if ((r = noise_settable(hs)) != 0 ||
	    (r = noise_public_key(priv, hs->e_pub)) != 0)
		return noise_fail(hs, r);
	memcpy(hs->e_priv, priv, NOISE_DHLEN);
	hs->has_e = true;
	hs->fixed_e = true;
	return 0;
}

int
noise_handshake_add_psk(struct noise_handshake *hs,
    const uint8_t psk[NOISE_PSKLEN])
{
	int r;

	if ((r = noise_settable(hs)) != 0)
		return noise_fail(hs, r);
	/* More psks than psk tokens is a caller's mistake, not a spare. */
	if (hs->npsks >= noise_psk_tokens(hs))
		return noise_fail(hs, TERN_EINVAL);
	memcpy(hs->psks[hs->npsks++], psk, NOISE_PSKLEN);
	return 0;
}

enum noise_action
noise_handshake_action(const struct noise_handshake *hs)
{
	if (hs->failed)
		return NOISE_ACTION_FAILED;
	if (hs->msg_idx >= hs->nmsgs)
		return NOISE_ACTION_SPLIT;
	/* Even messages are the initiator's. */
	if ((hs->msg_idx % 2 == 0) == hs->initiator)
		return NOISE_ACTION_WRITE_MESSAGE;
	return NOISE_ACTION_READ_MESSAGE;
}

/* MixHash one side's pre-message, ours from local keys, theirs from remote. */
static int
noise_premessage(struct noise_handshake *hs, uint8_t bits, bool local)
{
	const uint8_t *e = local ? hs->e_pub : hs->re;
	const uint8_t *s = local ? hs->s_pub : hs->rs;
	bool has_e = local ? hs->has_e : hs->has_re;
	bool has_s = local ? hs->has_s : hs->has_rs;

	if (bits & NOISE_PRE_E) {
		if (!has_e)
			return TERN_EKEY;
		noise_mix_hash(hs, e, NOISE_DHLEN);
		/* In psk mode a pre-message e keys the cipher too (9.2). */
		if (hs->psk_mode)
			noise_mix_key(hs, e, NOISE_DHLEN);
	}
	if (bits & NOISE_PRE_S) {
		if (!has_s)
			return TERN_EKEY;
		noise_mix_hash(hs, s, NOISE_DHLEN);
	}
	return 0;
}

/*
 * The rest of Initialize(): the pre-messages, hashed at the first write or
 * read because the keys they need are set after noise_handshake_init.
 */
static int
noise_start(struct noise_handshake *hs)
{
	int r;

	if (hs->started)
		return 0;
	if ((r = noise_premessage(hs, hs->pre_init, hs->initiator)) != 0 ||
	    (r = noise_premessage(hs, hs->pre_resp, !hs->initiator)) != 0)
		return r;
	hs->started = true;
	return 0;
}

/*
 * The DH tokens, the same for writer and reader: "es" is always the
 * initiator's ephemeral with the responder's static, whoever computes it.
 */
static int
noise_token_dh(struct noise_handshake *hs, uint8_t tok)
{
	uint8_t dh[NOISE_DHLEN];
	const uint8_t *priv, *pub;
	bool have;
	int r;

	switch (tok) {
	case NOISE_TOK_EE:
		priv = hs->e_priv;
		pub = hs->re;
		have = hs->has_e && hs->has_re;
		break;
	case NOISE_TOK_ES:
		if (hs->initiator) {
			priv = hs->e_priv;
			pub = hs->rs;
			have = hs->has_e && hs->has_rs;
		} else {
			priv = hs->s_priv;
			pub = hs->re;
			have = hs->has_s && hs->has_re;
		}
		break;
	case NOISE_TOK_SE:
		if (hs->initiator) {
			priv = hs->s_priv;
			pub = hs->re;
			have = hs->has_s && hs->has_re;
		} else {
			priv = hs->e_priv;
			pub = hs->rs;
			have = hs->has_e && hs->has_rs;
		}
		break;
	case NOISE_TOK_SS:
		priv = hs->s_priv;
		pub = hs->rs;
		have = hs->has_s && hs->has_rs;
		break;
	default:
		abort(); /* the parser only stores known tokens */
	}
	if (!have)
		return TERN_EKEY;
	if ((r = noise_dh(priv, pub, dh)) != 0)
		return r;
	noise_mix_key(hs, dh, sizeof dh);
	sodium_memzero(dh, sizeof dh);
	return 0;
}

/* psk: the next pre-shared key, in the order the tokens come (spec 9.1). */
static int
noise_token_psk(struct noise_handshake *hs)
{
	if (hs->psk_used >= hs->npsks)
		return TERN_EKEY;
	noise_mix_key_and_hash(hs, hs->psks[hs->psk_used], NOISE_PSKLEN);
	hs->psk_used++;
	return 0;
}

int
noise_handshake_write(struct noise_handshake *hs, const uint8_t *payload,
    size_t payload_len, uint8_t *out, size_t outcap, size_t *outlen)
{
	const uint8_t *toks;
	size_t cap, off = 0, n;
	int i, r;

	*outlen = 0;
	if (noise_handshake_action(hs) != NOISE_ACTION_WRITE_MESSAGE) {
		r = TERN_ESTATE;
		goto out;
	}
	if (out == NULL || (payload == NULL && payload_len > 0)) {
		r = TERN_EINVAL;
		goto out;
	}
	if ((r = noise_start(hs)) != 0)
		goto out;
	/* No Noise message may exceed NOISE_MAX_MSG (spec section 3). */
	cap = outcap < NOISE_MAX_MSG ? outcap : NOISE_MAX_MSG;
	toks = hs->tok[hs->msg_idx];

	for (i = 0; i < hs->ntok[hs->msg_idx]; i++) {
		switch (toks[i]) {
		case NOISE_TOK_E:
			/*
			 * e: a fresh ephemeral unless a test fixed one. In psk
			 * mode it also keys the cipher, so that nothing is
			 * encrypted under a psk alone (spec 9.2).
			 */
			if (!hs->has_e) {
				noise_keypair_generate(hs->e_priv, hs->e_pub);
				hs->has_e = true;
			}
			if (cap - off < NOISE_DHLEN) {
				r = TERN_ETOOBIG;
				goto out;
			}
			memcpy(out + off, hs->e_pub, NOISE_DHLEN);
			off += NOISE_DHLEN;
			noise_mix_hash(hs, hs->e_pub, NOISE_DHLEN);
			if (hs->psk_mode)
				noise_mix_key(hs, hs->e_pub, NOISE_DHLEN);
			break;
		case NOISE_TOK_S:
			/* s: our static public key, encrypted once keyed. */
			if (!hs->has_s) {
				r = TERN_EKEY;
				goto out;
			}
			if ((r = noise_encrypt_and_hash(hs, hs->s_pub,
			    NOISE_DHLEN, out + off, cap - off, &n)) != 0)
				goto out;
			off += n;
			break;
		case NOISE_TOK_PSK:
			/* psk */
			if ((r = noise_token_psk(hs)) != 0)
				goto out;
			break;
		default:
			/* ee, es, se, ss */
			if ((r = noise_token_dh(hs, toks[i])) != 0)
				goto out;
			break;
		}
	}

	/* payload */
	if ((r = noise_encrypt_and_hash(hs, payload, payload_len, out + off,
	    cap - off, &n)) != 0)
		goto out;
	off += n;
	hs->msg_idx++;
	*outlen = off;
	return 0;
out:
	return noise_fail(hs, r);
}

int
noise_handshake_read(struct noise_handshake *hs, const uint8_t *msg,
    size_t msg_len, uint8_t *payload, size_t payload_cap,
    size_t *payload_len)
{
	const uint8_t *toks;
	size_t off = 0, n, got;
	int i, r;

	*payload_len = 0;
	if (noise_handshake_action(hs) != NOISE_ACTION_READ_MESSAGE) {
		r = TERN_ESTATE;
		goto out;
	}
	if (msg == NULL) {
		r = TERN_EINVAL;
		goto out;
	}
	if (msg_len > NOISE_MAX_MSG) {
		r = TERN_ETOOBIG;
		goto out;
	}
	if ((r = noise_start(hs)) != 0)
		goto out;
	toks = hs->tok[hs->msg_idx];

	for (i = 0; i < hs->ntok[hs->msg_idx]; i++) {
		switch (toks[i]) {
		case NOISE_TOK_E:
			/*
			 * e: the peer's ephemeral, in clear; psk mode treats it
			 * as on write.
			 */
			if (msg_len - off < NOISE_DHLEN) {
				r = TERN_ETRUNC;
				goto out;
			}
			memcpy(hs->re, msg + off, NOISE_DHLEN);
			hs->has_re = true;
			off += NOISE_DHLEN;
			noise_mix_hash(hs, hs->re, NOISE_DHLEN);
			if (hs->psk_mode)
				noise_mix_key(hs, hs->re, NOISE_DHLEN);
			break;
		case NOISE_TOK_S:
			/* s: the peer's static, with a tag once keyed. */
			n = NOISE_DHLEN + (hs->cs.has_key ? NOISE_TAGLEN : 0);
			if (msg_len - off < n) {
				r = TERN_ETRUNC;
				goto out;
			}
			if ((r = noise_decrypt_and_hash(hs, msg + off, n,
			    hs->rs, sizeof hs->rs, &got)) != 0)
				goto out;
			hs->has_rs = true;
			off += n;
			break;
		case NOISE_TOK_PSK:
			/* psk */
			if ((r = noise_token_psk(hs)) != 0)
				goto out;
			break;
		default:
			/* ee, es, se, ss */
			if ((r = noise_token_dh(hs, toks[i])) != 0)
				goto out;
			break;
		}
	}

	/* payload: the rest of the message. */
	if ((r = noise_decrypt_and_hash(hs, msg + off, msg_len - off, payload,
	    payload_cap, payload_len)) != 0)
		goto out;
	hs->msg_idx++;
	return 0;
out:
	*payload_len = 0;
	return noise_fail(hs, r);
}

int
noise_handshake_split(struct noise_handshake *hs, struct noise_cipher *i2r,
    struct noise_cipher *r2i)
{
	uint8_t k1[NOISE_HASHLEN], k2[NOISE_HASHLEN];

	/* msg_idx goes past nmsgs once split: a second Split is refused. */
	if (noise_handshake_action(hs) != NOISE_ACTION_SPLIT ||
	    hs->msg_idx != hs->nmsgs)
		return noise_fail(hs, TERN_ESTATE);
	if (i2r == NULL || r2i == NULL)
		return noise_fail(hs, TERN_EINVAL);

	noise_hkdf(hs->ck, NULL, 0, k1, k2, NULL);
	noise_cipher_init(i2r, k1);
	noise_cipher_init(r2i, k2);
	if (hs->one_way) {
		/*
		 * One-way patterns only use the first cipher (spec 7.4); the
		 * second is handed back spent, so every use fails with
		 * TERN_ENONCE instead of sending under a key it must not use.
		 */
		noise_cipher_wipe(r2i);
		r2i->has_key = true;
		r2i->n = UINT64_MAX;
	}
	sodium_memzero(k1, sizeof k1);
	sodium_memzero(k2, sizeof k2);

	/* Keep h, rs and s_pub; everything that could derive a key goes. */
	sodium_memzero(hs->ck, sizeof hs->ck);
	noise_cipher_wipe(&hs->cs);
	sodium_memzero(hs->s_priv, sizeof hs->s_priv);
	sodium_memzero(hs->e_priv, sizeof hs->e_priv);
	sodium_memzero(hs->e_pub, sizeof hs->e_pub);
	sodium_memzero(hs->re, sizeof hs->re);
	sodium_memzero(hs->psks, sizeof hs->psks);
	hs->has_e = hs->has_re = hs->fixed_e = false;
	hs->npsks = hs->psk_used = 0;
	hs->msg_idx = hs->nmsgs + 1;
	return 0;
}

const uint8_t *
noise_handshake_hash(const struct noise_handshake *hs)
{
	return hs->h;
}

const uint8_t *
noise_handshake_remote_static(const struct noise_handshake *hs)
{
	return hs->has_rs ? hs->rs : NULL;
}

/* A wiped handshake reports FAILED, so it cannot be driven by mistake. */
void
noise_handshake_wipe(struct noise_handshake *hs)
{
	sodium_memzero(hs, sizeof *hs);
	hs->failed = true;
}
