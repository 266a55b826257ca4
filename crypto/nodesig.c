/*
 * nodesig.c: XEdDSA signatures by a node's static key (nodesig.h), with
 * libsignal-protocol-c's curve_calculate_signature/curve_verify_signature.
 *
 * Signing needs a signal_context only for its random source (XEdDSA
 * mixes 64 random bytes into the nonce); a context is made per signature
 * with a provider whose one useful function is libsodium's randombytes.
 * libsignal insists on HMAC callbacks being present, so they are there
 * and refuse. Nothing here keeps state, so any thread may call it.
 */
#include "nodesig.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <curve.h>
#include <signal_protocol.h>

#define NODESIG_DJB_TYPE 0x05 /* libsignal's Curve25519 key type byte */
#define NODESIG_CTX_LEN (sizeof(NODESIG_ENV_CONTEXT) - 1)

static int
ns_random(uint8_t *data, size_t len, void *ud)
{
	(void)ud;
	randombytes_buf(data, len);
	return 0;
}

/* Never used by signing; present because libsignal checks for them. */
static int
ns_hmac_init(void **ctx, const uint8_t *key, size_t len, void *ud)
{
	(void)ctx, (void)key, (void)len, (void)ud;
	return SG_ERR_UNKNOWN;
}

static int
ns_hmac_update(void *ctx, const uint8_t *data, size_t len, void *ud)
{
	(void)ctx, (void)data, (void)len, (void)ud;
	return SG_ERR_UNKNOWN;
}

static int
ns_hmac_final(void *ctx, signal_buffer **out, void *ud)
{
	(void)ctx, (void)out, (void)ud;
	return SG_ERR_UNKNOWN;
}

static void
ns_hmac_cleanup(void *ctx, void *ud)
{
	(void)ctx, (void)ud;
}

static const signal_crypto_provider ns_provider = {
	.random_func = ns_random,
	.hmac_sha256_init_func = ns_hmac_init,
	.hmac_sha256_update_func = ns_hmac_update,
	.hmac_sha256_final_func = ns_hmac_final,
	.hmac_sha256_cleanup_func = ns_hmac_cleanup,
};

int
nodesig_sign(const uint8_t priv[NODESIG_KEY_LEN], const uint8_t *msg,
    size_t len, uint8_t sig[NODESIG_LEN])
{
	signal_context *ctx = NULL;
	ec_private_key *k = NULL;
	signal_buffer *out = NULL;
	uint8_t scalar[NODESIG_KEY_LEN];
	int r = TERN_EKEY;

	if (sodium_init() < 0)
		return TERN_EKEY;
	/* X25519 clamps inside; XEdDSA takes the scalar as given, so clamp
	 * it here to sign for the public key X25519 derives. */
	memcpy(scalar, priv, sizeof(scalar));
	scalar[0] &= 248;
	scalar[31] &= 127;
	scalar[31] |= 64;
	if (signal_context_create(&ctx, NULL) < 0) {
		r = TERN_ENOMEM;
		goto out;
	}
	if (signal_context_set_crypto_provider(ctx, &ns_provider) < 0 ||
	    curve_decode_private_point(&k, scalar, sizeof(scalar), ctx) < 0)
		goto out;
	if (curve_calculate_signature(ctx, &out, k, msg, len) < 0 ||
	    signal_buffer_len(out) != NODESIG_LEN)
		goto out;
	memcpy(sig, signal_buffer_data(out), NODESIG_LEN);
	r = 0;
out:
	sodium_memzero(scalar, sizeof(scalar));
	signal_buffer_free(out);
	/* libsignal frees its own copy of the scalar without wiping it and
	 * gives no way to reach it; sig.c's identity key has the same
	 * limit. Ours is wiped above. */
	SIGNAL_UNREF(k);
	if (ctx != NULL)
		signal_context_destroy(ctx);
	return r;
}

int
nodesig_verify(const uint8_t pub[NODESIG_KEY_LEN], const uint8_t *msg,
    size_t len, const uint8_t sig[NODESIG_LEN])
{
	uint8_t enc[1 + NODESIG_KEY_LEN];
	ec_public_key *k = NULL;
	int r;

	enc[0] = NODESIG_DJB_TYPE;
	memcpy(enc + 1, pub, NODESIG_KEY_LEN);
	/* curve_decode_point logs through its context only on bad input;
	 * curve_verify_signature takes none. */
	if (curve_decode_point(&k, enc, sizeof(enc), NULL) < 0)
		return TERN_EAUTH;
	r = curve_verify_signature(k, msg, len, sig, NODESIG_LEN);
	SIGNAL_UNREF(k);
	return r == 1 ? 0 : TERN_EAUTH;
}

/* env_bytes: NODESIG_ENV_CONTEXT || FED_ENV body, in a new buffer. */
static int
env_bytes(const struct msg_fed_env *e, uint8_t **out, size_t *outlen)
{
	struct msg m = {.type = MSG_FED_ENV};
	size_t need, n;
	uint8_t *buf;
	int r;

	m.u.fed_env = *e;
	if ((need = msg_encoded_size(&m)) < MSG_HDR_LEN)
		return TERN_EFIELD;
	/* The header's 6 bytes become room for the context's 24. */
	if ((buf = malloc(need + NODESIG_CTX_LEN)) == NULL)
		return TERN_ENOMEM;
	if ((r = msg_encode(&m, buf + NODESIG_CTX_LEN - MSG_HDR_LEN,
	    need, &n)) != 0) {
		free(buf);
		return r;
	}
	memcpy(buf, NODESIG_ENV_CONTEXT, NODESIG_CTX_LEN);
	*out = buf;
	*outlen = NODESIG_CTX_LEN - MSG_HDR_LEN + n;
	return 0;
}

int
nodesig_env_sign(const uint8_t priv[NODESIG_KEY_LEN],
    const struct msg_fed_env *e, uint8_t sig[NODESIG_LEN])
{
	uint8_t *b;
	size_t n;
	int r;

	if ((r = env_bytes(e, &b, &n)) != 0)
		return r;
	r = nodesig_sign(priv, b, n, sig);
	free(b);
	return r;
}

int
nodesig_env_verify(const uint8_t pub[NODESIG_KEY_LEN],
    const struct msg_fed_env *e, const uint8_t sig[NODESIG_LEN])
{
	uint8_t *b;
	size_t n;
	int r;

	if ((r = env_bytes(e, &b, &n)) != 0)
		return r == TERN_ENOMEM ? r : TERN_EAUTH;
	r = nodesig_verify(pub, b, n, sig);
	free(b);
	return r;
}
