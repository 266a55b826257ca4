/*
 * test_nodesig.c: node signatures (crypto/nodesig.c): XEdDSA by a node's
 * static X25519 key over relayed envelopes (SPEC.md 13.5).
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "noise.h"
#include "nodesig.h"
#include "sig.h"
#include "tt.h"

static uint8_t payload[MSG_PAYLOAD_MAX];

static void
env_fill(struct msg_fed_env *e, size_t plen)
{
	static const uint8_t id[MSG_ID_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
	    11, 12, 13, 14, 15, 16};

	memset(e, 0, sizeof(*e));
	memcpy(e->id, id, MSG_ID_LEN);
	e->from.p = "alice@one.test";
	e->from.len = strlen(e->from.p);
	e->from_device = 1;
	e->to.p = "bob@two.test";
	e->to.len = strlen(e->to.p);
	e->to_device = 2;
	e->class = MSG_CLASS_MESSAGE;
	e->timestamp_ms = 1700000000000ull;
	e->received_ms = 1700000000005ull;
	randombytes_buf(payload, plen);
	e->payload.p = payload;
	e->payload.len = plen;
}

/* A signature by a Noise key pair verifies under its public key, for a
 * tiny and a largest envelope; another key does not verify it. */
TT_CASE(nodesig__sign_verify__round_trip)
{
	uint8_t priv[32], pub[32], priv2[32], pub2[32], sig[NODESIG_LEN];
	struct msg_fed_env e;
	size_t sizes[] = {0, 1, 100, MSG_PAYLOAD_MAX};

	TT_ASSERT(sodium_init() >= 0);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		noise_keypair_generate(priv, pub);
		noise_keypair_generate(priv2, pub2);
		env_fill(&e, sizes[i]);
		TT_OK(nodesig_env_sign(priv, &e, sig));
		TT_OK(nodesig_env_verify(pub, &e, sig));
		TT_ERR(nodesig_env_verify(pub2, &e, sig), TERN_EAUTH);
	}
	/* Two signatures of one envelope differ (random nonce) and both
	 * verify. */
	{
		uint8_t sig2[NODESIG_LEN];
		TT_OK(nodesig_env_sign(priv, &e, sig2));
		TT_ASSERT(memcmp(sig, sig2, NODESIG_LEN) != 0);
		TT_OK(nodesig_env_verify(pub, &e, sig2));
	}
}

/* Changing any signed field, or the signature, fails verification. */
TT_CASE(nodesig__verify__altered_refused)
{
	uint8_t priv[32], pub[32], sig[NODESIG_LEN], bad[NODESIG_LEN];
	struct msg_fed_env e, x;
	uint8_t other[MSG_ID_LEN] = {0};

	TT_ASSERT(sodium_init() >= 0);
	noise_keypair_generate(priv, pub);
	env_fill(&e, 300);
	TT_OK(nodesig_env_sign(priv, &e, sig));
	TT_OK(nodesig_env_verify(pub, &e, sig));

	x = e;
	memcpy(x.id, other, MSG_ID_LEN);
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	x.from.p = "mallory@one.test";
	x.from.len = strlen(x.from.p);
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	x.from_device = 3;
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	x.to.p = "carol@two.test";
	x.to.len = strlen(x.to.p);
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	x.to_device = 1;
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	x.class = MSG_CLASS_RECEIPT;
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	x.timestamp_ms++;
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	x.received_ms--;
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	x = e;
	payload[7] ^= 1;
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	payload[7] ^= 1;
	x.payload.len--;
	TT_ERR(nodesig_env_verify(pub, &x, sig), TERN_EAUTH);
	memcpy(bad, sig, NODESIG_LEN);
	bad[0] ^= 0x80;
	TT_ERR(nodesig_env_verify(pub, &e, bad), TERN_EAUTH);
	memset(bad, 0, NODESIG_LEN);
	TT_ERR(nodesig_env_verify(pub, &e, bad), TERN_EAUTH);
	/* A signature of the same bytes without the context is another
	 * message. */
	{
		struct msg m = {.type = MSG_FED_ENV};
		uint8_t buf[1024];
		size_t n;
		m.u.fed_env = e;
		TT_OK(msg_encode(&m, buf, sizeof(buf), &n));
		TT_OK(nodesig_sign(priv, buf + MSG_HDR_LEN, n - MSG_HDR_LEN,
		    bad));
		TT_ERR(nodesig_env_verify(pub, &e, bad), TERN_EAUTH);
	}
	TT_OK(nodesig_env_verify(pub, &e, sig));
}

/* The signed bytes are the context then the FED_ENV body as encoded:
 * a signature of exactly those bytes verifies as an envelope's. */
TT_CASE(nodesig__env__signed_bytes_are_context_and_body)
{
	uint8_t priv[32], pub[32], sig[NODESIG_LEN], buf[2048];
	struct msg m = {.type = MSG_FED_ENV, .req = 77};
	size_t n, cl = strlen(NODESIG_ENV_CONTEXT);

	TT_ASSERT(sodium_init() >= 0);
	TT_EQ(cl, 24);
	noise_keypair_generate(priv, pub);
	env_fill(&m.u.fed_env, 200);
	memcpy(buf, NODESIG_ENV_CONTEXT, cl);
	TT_OK(msg_encode(&m, buf + cl, sizeof(buf) - cl, &n));
	memmove(buf + cl, buf + cl + MSG_HDR_LEN, n - MSG_HDR_LEN);
	TT_OK(nodesig_sign(priv, buf, cl + n - MSG_HDR_LEN, sig));
	TT_OK(nodesig_env_verify(pub, &m.u.fed_env, sig));
}

/* The same XEdDSA as libsignal's: sig.c's verifier of signed prekeys
 * (identity key over 0x05 || prekey) accepts our signature of those
 * bytes, and refuses it for another prekey. */
TT_CASE(nodesig__sign__verifies_with_sig_verify_signed)
{
	uint8_t priv[32], pub[32], spk_priv[32], spk[32], msg[33];
	uint8_t sig[NODESIG_LEN];

	TT_ASSERT(sodium_init() >= 0);
	noise_keypair_generate(priv, pub);
	noise_keypair_generate(spk_priv, spk);
	msg[0] = 0x05;
	memcpy(msg + 1, spk, 32);
	TT_OK(nodesig_sign(priv, msg, sizeof(msg), sig));
	TT_OK(nodesig_verify(pub, msg, sizeof(msg), sig));
	TT_OK(sig_verify_signed(pub, spk, sig));
	spk[3] ^= 4;
	TT_ERR(sig_verify_signed(pub, spk, sig), TERN_EKEY);
}
