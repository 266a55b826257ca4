/*
 * test_sig.c: the Signal protocol wiring (crypto/sig.c): the crypto
 * provider against published vectors, padding, sessions between in-memory
 * devices (prekeys, last resort, reordering, duplicates, simultaneous
 * starts), trust (identity changes, verified marks, fingerprints), signed
 * prekey rotation and the sender key store through libsignal's group API.
 * Rough timings go to stderr; nothing asserts on them.
 */
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <curve.h>
#include <fingerprint.h>
#include <group_cipher.h>
#include <group_session_builder.h>
#include <protocol.h>
#include <signal_protocol.h>

#include "sig.h"
#include "sig_internal.h"
#include "tt.h"

#define T0_MS 1700000000000ull     /* a fixed "now" */
#define DAY_MS (24ull * 3600 * 1000)
#define CT_CAP 4096

/* One device: its database and its struct sig. */
struct dev {
	sqlite3 *db;            /* in-memory */
	struct sig *s;          /* on db */
	const char *user;       /* its user's address */
	uint32_t device;        /* its device id */
};

static void
dev_open(struct dev *d, const char *user, uint32_t device)
{
	memset(d, 0, sizeof(*d));
	TT_EQ(sqlite3_open(":memory:", &d->db), SQLITE_OK);
	TT_OK(sig_open(d->db, &d->s));
	TT_EQ(sig_identity_init(d->s), 1);
	TT_EQ(sig_identity_init(d->s), 0);
	d->user = user;
	d->device = device;
}

static void
dev_close(struct dev *d)
{
	sig_close(d->s);
	TT_EQ(sqlite3_close(d->db), SQLITE_OK);
	d->s = NULL;
	d->db = NULL;
}

/* A bundle of d as the node would serve it: a fresh one-time prekey when
 * one_time, else the last-resort key; the signed prekey current at now. */
static void
dev_bundle(struct dev *d, int one_time, uint64_t now, struct sig_bundle *b)
{
	struct sig_signed_prekey spk;
	struct sig_prekey pk;

	memset(b, 0, sizeof(*b));
	b->device_id = d->device;
	TT_OK(sig_local(d->s, b->identity, &b->registration_id));
	TT_OK(sig_signed_prekey(d->s, now, &spk, NULL));
	b->signed_prekey_id = spk.id;
	memcpy(b->signed_prekey, spk.pub, SIG_KEY_LEN);
	memcpy(b->signature, spk.signature, SIG_SIG_LEN);
	if (one_time)
		TT_OK(sig_prekeys_new(d->s, 1, &pk));
	else
		TT_OK(sig_last_resort(d->s, &pk));
	b->prekey_id = pk.id;
	memcpy(b->prekey, pk.pub, SIG_KEY_LEN);
}

/* Encrypts pt from a to b into ct; returns the length. */
static size_t
enc(struct dev *a, struct dev *b, const void *pt, size_t len, uint8_t *ct)
{
	struct buf_writer w;

	buf_writer_init(&w, ct, CT_CAP);
	TT_OK(sig_encrypt(a->s, b->user, b->device, pt, len, &w));
	TT_ASSERT(w.len > 1);
	return w.len;
}

/* Decrypts ct at b (from a); the result code; the plaintext in pt, its length in *ptlen. */
static int
dec(struct dev *b, struct dev *a, const uint8_t *ct, size_t len,
    uint8_t *pt, size_t cap, size_t *ptlen)
{
	struct buf_writer w;
	int r;

	buf_writer_init(&w, pt, cap);
	r = sig_decrypt(b->s, a->user, a->device, ct, len, &w);
	*ptlen = w.len;
	return r;
}

/* Sends one text a -> b and checks it arrives intact. */
static void
roundtrip(struct dev *a, struct dev *b, const char *text)
{
	uint8_t ct[CT_CAP], pt[CT_CAP];
	size_t n, m;

	n = enc(a, b, text, strlen(text), ct);
	TT_OK(dec(b, a, ct, n, pt, sizeof(pt), &m));
	TT_EQ(m, strlen(text));
	TT_MEMEQ(pt, text, m);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
unhex(const char *hex, uint8_t *out, size_t n)
{
	TT_EQ(tt_unhex(hex, strlen(hex), out, n), (long)n);
}

/* ---- provider --------------------------------------------------------- */

TT_CASE(sig__sha512__known_answer_and_reuse)
{
	const signal_crypto_provider *p = &sig_crypto_provider;
	uint8_t want_abc[64], want_empty[64], md[64];
	signal_buffer *out = NULL;
	void *c = NULL;
	int i;

	unhex("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
	    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
	    want_abc, 64);
	unhex("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
	    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
	    want_empty, 64);
	TT_EQ(sodium_init() >= 0, 1);
	TT_OK(p->sha512_digest_init_func(&c, NULL));
	/* The same context three times: final must leave it reusable. */
	for (i = 0; i < 3; i++) {
		TT_OK(p->sha512_digest_update_func(c, (const uint8_t *)"ab", 2,
		    NULL));
		TT_OK(p->sha512_digest_update_func(c, (const uint8_t *)"c", 1,
		    NULL));
		TT_OK(p->sha512_digest_final_func(c, &out, NULL));
		TT_EQ(signal_buffer_len(out), 64);
		TT_MEMEQ(signal_buffer_data(out), want_abc, 64);
		signal_buffer_free(out);
		out = NULL;
	}
	TT_OK(p->sha512_digest_final_func(c, &out, NULL));
	TT_MEMEQ(signal_buffer_data(out), want_empty, 64);
	signal_buffer_free(out);
	p->sha512_digest_cleanup_func(c, NULL);

	/* libsignal's .so exports its own crypto_hash_sha512: whichever the
	 * linker bound, this name must still compute SHA-512. */
	TT_OK(crypto_hash_sha512(md, (const uint8_t *)"abc", 3));
	TT_MEMEQ(md, want_abc, 64);
}

TT_CASE(sig__ed25519__rfc8032_with_libsignal_loaded)
{
	uint8_t seed[32], pk[32], sk[64], sig[64], want_pk[32], want_sig[64];

	TT_EQ(sodium_init() >= 0, 1);
	unhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
	    seed, 32);
	unhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
	    want_pk, 32);
	unhex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
	    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
	    want_sig, 64);
	TT_OK(crypto_sign_seed_keypair(pk, sk, seed));
	TT_MEMEQ(pk, want_pk, 32);
	TT_OK(crypto_sign_detached(sig, NULL, (const uint8_t *)"", 0, sk));
	TT_MEMEQ(sig, want_sig, 64);
	TT_OK(crypto_sign_verify_detached(sig, (const uint8_t *)"", 0, pk));
	sig[7] ^= 1;
	TT_ASSERT(crypto_sign_verify_detached(sig, (const uint8_t *)"", 0,
	    pk) != 0);
}

/* libsignal's X25519 (its curve25519_donna, which sig.c overrides with
 * libsodium's) against RFC 7748 section 6.1. */
TT_CASE(sig__x25519__rfc7748_through_libsignal)
{
	struct dev d;
	signal_context *ctx;
	ec_private_key *priv = NULL;
	ec_public_key *pub = NULL, *gen = NULL, *low = NULL;
	signal_buffer *ser = NULL;
	uint8_t a_priv[32], a_pub[32], b_pub[33], want[32], zero[33] = { 5 };
	uint8_t *shared = NULL;

	dev_open(&d, "x@x.test", 1);
	ctx = sig_signal_context(d.s);
	unhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
	    a_priv, 32);
	unhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
	    a_pub, 32);
	b_pub[0] = 5;
	unhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
	    b_pub + 1, 32);
	unhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
	    want, 32);
	TT_OK(curve_decode_private_point(&priv, a_priv, 32, ctx));
	TT_OK(curve_generate_public_key(&gen, priv));
	TT_OK(ec_public_key_serialize(&ser, gen));
	TT_MEMEQ(signal_buffer_data(ser) + 1, a_pub, 32);
	TT_OK(curve_decode_point(&pub, b_pub, sizeof(b_pub), ctx));
	TT_EQ(curve_calculate_agreement(&shared, pub, priv), 32);
	TT_MEMEQ(shared, want, 32);
	free(shared);
	shared = NULL;
	/* A low-order point: libsodium refuses it, so libsignal fails the
	 * agreement (its own donna would have returned zeros). */
	TT_OK(curve_decode_point(&low, zero, sizeof(zero), ctx));
	TT_ASSERT(curve_calculate_agreement(&shared, low, priv) < 0);
	TT_ASSERT(shared == NULL);
	signal_buffer_free(ser);
	SIGNAL_UNREF(priv);
	SIGNAL_UNREF(pub);
	SIGNAL_UNREF(gen);
	SIGNAL_UNREF(low);
	dev_close(&d);
}

static void
hmac_check(const uint8_t *key, size_t klen, const char *data,
    const char *want_hex)
{
	const signal_crypto_provider *p = &sig_crypto_provider;
	signal_buffer *out = NULL;
	uint8_t want[32];
	void *c = NULL;

	unhex(want_hex, want, 32);
	TT_OK(p->hmac_sha256_init_func(&c, key, klen, NULL));
	TT_OK(p->hmac_sha256_update_func(c, (const uint8_t *)data, 5, NULL));
	TT_OK(p->hmac_sha256_update_func(c, (const uint8_t *)data + 5,
	    strlen(data) - 5, NULL));
	TT_OK(p->hmac_sha256_final_func(c, &out, NULL));
	TT_EQ(signal_buffer_len(out), 32);
	TT_MEMEQ(signal_buffer_data(out), want, 32);
	signal_buffer_free(out);
	p->hmac_sha256_cleanup_func(c, NULL);
}

TT_CASE(sig__hmac__rfc4231)
{
	uint8_t big[131];

	TT_EQ(sodium_init() >= 0, 1);
	/* RFC 4231 test cases 2 and 6 (a key longer than the block). */
	hmac_check((const uint8_t *)"Jefe", 4, "what do ya want for nothing?",
	    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
	memset(big, 0xaa, sizeof(big));
	hmac_check(big, sizeof(big),
	    "Test Using Larger Than Block-Size Key - Hash Key First",
	    "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TT_CASE(sig__aes__sp800_38a_cbc_ctr)
{
	const signal_crypto_provider *p = &sig_crypto_provider;
	uint8_t key[32], iv[16], ctr[16], pt[64], cbc[64], ctrct[64];
	signal_buffer *out = NULL, *back = NULL;

	unhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
	    key, 32);
	unhex("000102030405060708090a0b0c0d0e0f", iv, 16);
	unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", ctr, 16);
	unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51"
	    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
	    pt, 64);
	/* F.2.5 CBC-AES256.Encrypt; PKCS#5 adds one whole block after it. */
	unhex("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d"
	    "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
	    cbc, 64);
	/* F.5.5 CTR-AES256.Encrypt. */
	unhex("601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
	    "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6",
	    ctrct, 64);

	TT_OK(p->encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, key, 32, iv, 16,
	    pt, 64, NULL));
	TT_EQ(signal_buffer_len(out), 80);
	TT_MEMEQ(signal_buffer_data(out), cbc, 64);
	TT_OK(p->decrypt_func(&back, SG_CIPHER_AES_CBC_PKCS5, key, 32, iv, 16,
	    signal_buffer_data(out), signal_buffer_len(out), NULL));
	TT_EQ(signal_buffer_len(back), 64);
	TT_MEMEQ(signal_buffer_data(back), pt, 64);
	signal_buffer_free(back);
	back = NULL;
	/* A flipped last byte breaks the padding. */
	signal_buffer_data(out)[79] ^= 1;
	TT_ASSERT(p->decrypt_func(&back, SG_CIPHER_AES_CBC_PKCS5, key, 32, iv,
	    16, signal_buffer_data(out), 80, NULL) < 0);
	signal_buffer_free(out);
	out = NULL;

	TT_OK(p->encrypt_func(&out, SG_CIPHER_AES_CTR_NOPADDING, key, 32, ctr,
	    16, pt, 64, NULL));
	TT_EQ(signal_buffer_len(out), 64);
	TT_MEMEQ(signal_buffer_data(out), ctrct, 64);
	TT_OK(p->decrypt_func(&back, SG_CIPHER_AES_CTR_NOPADDING, key, 32, ctr,
	    16, ctrct, 64, NULL));
	TT_MEMEQ(signal_buffer_data(back), pt, 64);
	signal_buffer_free(out);
	signal_buffer_free(back);
	out = back = NULL;

	/* Bad key and IV lengths, unknown cipher. */
	TT_ASSERT(p->encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, key, 31, iv,
	    16, pt, 64, NULL) < 0);
	TT_ASSERT(p->encrypt_func(&out, SG_CIPHER_AES_CBC_PKCS5, key, 32, iv,
	    12, pt, 64, NULL) < 0);
	TT_ASSERT(p->encrypt_func(&out, 99, key, 32, iv, 16, pt, 64,
	    NULL) < 0);
	TT_ASSERT(out == NULL);
}

/* ---- padding ---------------------------------------------------------- */

TT_CASE(sig__pad__edges)
{
	static const size_t lens[] = { 0, 1, 159, 160, 161, 319, 320 };
	static const size_t want[] = { 160, 160, 160, 320, 320, 320, 480 };
	uint8_t pt[400], buf[600];
	struct buf_writer w;
	size_t i, n;

	for (i = 0; i < sizeof(pt); i++)
		pt[i] = (uint8_t)(i * 7 + 1);
	pt[158] = 0x80; /* plaintext may end in what looks like padding */
	pt[159] = 0;
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		buf_writer_init(&w, buf, sizeof(buf));
		TT_OK(sig_pad(pt, lens[i], &w));
		TT_EQ(w.len, want[i]);
		TT_EQ(buf[lens[i]], 0x80);
		TT_OK(sig_unpad(buf, w.len, &n));
		TT_EQ(n, lens[i]);
		TT_MEMEQ(buf, pt, n);
	}
	/* Too small a writer. */
	buf_writer_init(&w, buf, 159);
	TT_ERR(sig_pad(pt, 0, &w), TERN_ETOOBIG);

	/* Bad padding: no marker, junk after it, wrong sizes. */
	memset(buf, 0, sizeof(buf));
	TT_ERR(sig_unpad(buf, 160, &n), TERN_EDECRYPT);
	buf[10] = 0x80;
	buf[100] = 1;
	TT_ERR(sig_unpad(buf, 160, &n), TERN_EDECRYPT);
	buf[100] = 0;
	TT_OK(sig_unpad(buf, 160, &n));
	TT_EQ(n, 10);
	TT_ERR(sig_unpad(buf, 159, &n), TERN_EDECRYPT);
	TT_ERR(sig_unpad(buf, 0, &n), TERN_EDECRYPT);
	/* The marker more than a block back is not padding. */
	memset(buf, 0, sizeof(buf));
	buf[100] = 0x80;
	TT_ERR(sig_unpad(buf, 320, &n), TERN_EDECRYPT);
	buf[160] = 0x80;
	TT_OK(sig_unpad(buf, 320, &n));
	TT_EQ(n, 160);
}

/* ---- sessions --------------------------------------------------------- */

/* Sends count messages a -> b, delivered shuffled within windows of 16,
 * with every tenth one delivered twice (the second time TERN_EDUP). */
static void
stream(struct dev *a, struct dev *b, int count)
{
	enum { WIN = 16 };
	uint8_t ct[WIN][CT_CAP], pt[CT_CAP];
	size_t ctlen[WIN], m;
	char text[WIN][64];
	int base, i, j, k, n, order[WIN];

	for (base = 0; base < count; base += WIN) {
		n = count - base < WIN ? count - base : WIN;
		for (i = 0; i < n; i++) {
			snprintf(text[i], sizeof(text[i]), "%s -> %s #%d",
			    a->user, b->user, base + i);
			ctlen[i] = enc(a, b, text[i], strlen(text[i]), ct[i]);
			order[i] = i;
		}
		for (i = n - 1; i > 0; i--) {
			j = (int)randombytes_uniform((uint32_t)i + 1);
			k = order[i];
			order[i] = order[j];
			order[j] = k;
		}
		for (i = 0; i < n; i++) {
			k = order[i];
			TT_OK(dec(b, a, ct[k], ctlen[k], pt, sizeof(pt), &m));
			TT_EQ(m, strlen(text[k]));
			TT_MEMEQ(pt, text[k], m);
			if ((base + k) % 10 == 0)
				TT_ERR(dec(b, a, ct[k], ctlen[k], pt,
				    sizeof(pt), &m), TERN_EDUP);
		}
	}
}

static void
session_pair(int one_time)
{
	struct dev alice, bob;
	struct sig_bundle b;
	uint8_t ct[CT_CAP], pt[CT_CAP];
	size_t n, m;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 7);
	dev_bundle(&bob, one_time, T0_MS, &b);
	TT_EQ(sig_has_session(alice.s, bob.user, 7), 0);
	TT_OK(sig_session_build(alice.s, bob.user, &b));
	TT_EQ(sig_has_session(alice.s, bob.user, 7), 1);

	/* The first messages carry the prekey until Bob answers. */
	n = enc(&alice, &bob, "hello", 5, ct);
	TT_EQ(ct[0], SIG_TYPE_PREKEY);
	TT_EQ((n - 1) > 160, 1);
	TT_OK(dec(&bob, &alice, ct, n, pt, sizeof(pt), &m));
	TT_EQ(m, 5);
	TT_MEMEQ(pt, "hello", 5);
	TT_ERR(dec(&bob, &alice, ct, n, pt, sizeof(pt), &m), TERN_EDUP);
	TT_EQ(sig_has_session(bob.s, alice.user, 1), 1);
	n = enc(&bob, &alice, "hi", 2, ct);
	TT_EQ(ct[0], SIG_TYPE_WHISPER);
	TT_OK(dec(&alice, &bob, ct, n, pt, sizeof(pt), &m));
	n = enc(&alice, &bob, "now whisper", 11, ct);
	TT_EQ(ct[0], SIG_TYPE_WHISPER);
	TT_OK(dec(&bob, &alice, ct, n, pt, sizeof(pt), &m));

	stream(&alice, &bob, 1000);
	stream(&bob, &alice, 1000);
	roundtrip(&alice, &bob, "still talking");
	roundtrip(&bob, &alice, "yes");
	dev_close(&alice);
	dev_close(&bob);
}

TT_CASE(sig__session__one_time_prekey_1000_each_way)
{
	session_pair(1);
}

TT_CASE(sig__session__last_resort_1000_each_way)
{
	session_pair(0);
}

TT_CASE(sig__session__simultaneous_first_messages)
{
	struct dev alice, bob;
	struct sig_bundle ba, bb;
	uint8_t c1[CT_CAP], c2[CT_CAP], pt[CT_CAP];
	size_t n1, n2, m;
	int i;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	dev_bundle(&alice, 1, T0_MS, &ba);
	dev_bundle(&bob, 1, T0_MS, &bb);
	TT_OK(sig_session_build(alice.s, bob.user, &bb));
	TT_OK(sig_session_build(bob.s, alice.user, &ba));
	n1 = enc(&alice, &bob, "from alice", 10, c1);
	n2 = enc(&bob, &alice, "from bob", 8, c2);
	TT_EQ(c1[0], SIG_TYPE_PREKEY);
	TT_EQ(c2[0], SIG_TYPE_PREKEY);
	TT_OK(dec(&bob, &alice, c1, n1, pt, sizeof(pt), &m));
	TT_MEMEQ(pt, "from alice", 10);
	TT_OK(dec(&alice, &bob, c2, n2, pt, sizeof(pt), &m));
	TT_MEMEQ(pt, "from bob", 8);
	for (i = 0; i < 5; i++) {
		roundtrip(&alice, &bob, "a->b");
		roundtrip(&bob, &alice, "b->a");
	}
	/* Both send before either receives, again. */
	for (i = 0; i < 3; i++) {
		n1 = enc(&alice, &bob, "x", 1, c1);
		n2 = enc(&bob, &alice, "y", 1, c2);
		TT_OK(dec(&bob, &alice, c1, n1, pt, sizeof(pt), &m));
		TT_OK(dec(&alice, &bob, c2, n2, pt, sizeof(pt), &m));
	}
	dev_close(&alice);
	dev_close(&bob);
}

TT_CASE(sig__session__bad_bundle_and_no_session)
{
	struct dev alice, bob;
	struct sig_bundle b;
	uint8_t ct[CT_CAP], pt[CT_CAP];
	struct buf_writer w;
	size_t n, m;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	buf_writer_init(&w, ct, sizeof(ct));
	TT_ERR(sig_encrypt(alice.s, bob.user, 1, (const uint8_t *)"x", 1, &w),
	    TERN_ENOTFOUND);
	dev_bundle(&bob, 1, T0_MS, &b);
	b.signature[3] ^= 0x10;
	TT_ERR(sig_session_build(alice.s, bob.user, &b), TERN_EKEY);
	b.signature[3] ^= 0x10;
	b.device_id = 0;
	TT_ERR(sig_session_build(alice.s, bob.user, &b), TERN_EINVAL);
	b.device_id = 1;
	TT_EQ(sig_identity_pending(alice.s, bob.user), 0);
	TT_EQ(sig_has_session(alice.s, bob.user, 1), 0);
	TT_OK(sig_session_build(alice.s, bob.user, &b));

	/* Whisper bytes with no session, garbage, unknown type, bad MAC. */
	n = enc(&alice, &bob, "one", 3, ct);
	TT_OK(dec(&bob, &alice, ct, n, pt, sizeof(pt), &m));
	n = enc(&bob, &alice, "two", 3, ct);
	TT_ERR(dec(&bob, &bob, ct, n, pt, sizeof(pt), &m), TERN_EDECRYPT);
	ct[0] = 9;
	TT_ERR(dec(&alice, &bob, ct, n, pt, sizeof(pt), &m), TERN_EDECRYPT);
	ct[0] = SIG_TYPE_PREKEY;
	TT_ERR(dec(&alice, &bob, ct, n, pt, sizeof(pt), &m), TERN_EDECRYPT);
	ct[0] = SIG_TYPE_WHISPER;
	TT_ERR(dec(&alice, &bob, ct, 1, pt, sizeof(pt), &m), TERN_EDECRYPT);
	TT_ERR(dec(&alice, &bob, ct, 20, pt, sizeof(pt), &m), TERN_EDECRYPT);
	ct[n - 3] ^= 1; /* inside the MAC */
	TT_ERR(dec(&alice, &bob, ct, n, pt, sizeof(pt), &m), TERN_EDECRYPT);
	ct[n - 3] ^= 1;
	/* No room for the plaintext: refused and not consumed. */
	TT_ERR(dec(&alice, &bob, ct, n, pt, 2, &m), TERN_ETOOBIG);
	TT_OK(dec(&alice, &bob, ct, n, pt, sizeof(pt), &m));
	TT_EQ(m, 3);
	TT_MEMEQ(pt, "two", 3);
	/* Encrypt into too small a buffer. */
	buf_writer_init(&w, ct, 10);
	TT_ERR(sig_encrypt(alice.s, bob.user, 1, (const uint8_t *)"x", 1, &w),
	    TERN_ETOOBIG);
	dev_close(&alice);
	dev_close(&bob);
}

TT_CASE(sig__prekey__removed_after_use_last_resort_kept)
{
	struct dev alice, carol, bob;
	struct sig_bundle b;
	uint8_t ct[CT_CAP], pt[CT_CAP];
	size_t n, m;
	uint32_t id;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&carol, "carol@c.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	dev_bundle(&bob, 1, T0_MS, &b);
	id = b.prekey_id;
	TT_EQ(signal_protocol_pre_key_contains_key(sig_store_context(bob.s),
	    id), 1);
	TT_OK(sig_session_build(alice.s, bob.user, &b));
	TT_OK(sig_session_build(carol.s, bob.user, &b));
	n = enc(&alice, &bob, "first", 5, ct);
	TT_OK(dec(&bob, &alice, ct, n, pt, sizeof(pt), &m));
	TT_EQ(signal_protocol_pre_key_contains_key(sig_store_context(bob.s),
	    id), 0);
	/* The same one-time prekey a second time: gone. */
	n = enc(&carol, &bob, "second", 6, ct);
	TT_ERR(dec(&bob, &carol, ct, n, pt, sizeof(pt), &m), TERN_EDECRYPT);
	TT_EQ(sig_has_session(bob.s, carol.user, 1), 0);

	/* The last-resort key serves both. */
	dev_bundle(&bob, 0, T0_MS, &b);
	TT_EQ(b.prekey_id, SIG_LAST_RESORT_ID);
	TT_OK(sig_session_build(carol.s, bob.user, &b));
	TT_OK(sig_session_build(alice.s, "bob2@b.test", &b));
	n = enc(&carol, &bob, "third", 5, ct);
	TT_OK(dec(&bob, &carol, ct, n, pt, sizeof(pt), &m));
	TT_EQ(signal_protocol_pre_key_contains_key(sig_store_context(bob.s),
	    SIG_LAST_RESORT_ID), 1);
	/* Removing it by hand is ignored too. */
	TT_OK(signal_protocol_pre_key_remove_key(sig_store_context(bob.s),
	    SIG_LAST_RESORT_ID));
	TT_EQ(signal_protocol_pre_key_contains_key(sig_store_context(bob.s),
	    SIG_LAST_RESORT_ID), 1);
	roundtrip(&bob, &carol, "ok");
	dev_close(&alice);
	dev_close(&carol);
	dev_close(&bob);
}

TT_CASE(sig__prekeys__ids_follow_on)
{
	struct dev d;
	struct sig_prekey pk[SIG_PREKEYS_MAX], lr1, lr2;
	uint32_t i;

	dev_open(&d, "dora@d.test", 1);
	TT_OK(sig_prekeys_new(d.s, 3, pk));
	TT_EQ(pk[0].id, 1);
	TT_EQ(pk[2].id, 3);
	TT_OK(sig_prekeys_new(d.s, SIG_PREKEYS_MAX, pk));
	TT_EQ(pk[0].id, 4);
	TT_EQ(pk[SIG_PREKEYS_MAX - 1].id, 3 + SIG_PREKEYS_MAX);
	for (i = 1; i < SIG_PREKEYS_MAX; i++)
		TT_ASSERT(memcmp(pk[i].pub, pk[0].pub, SIG_KEY_LEN) != 0);
	TT_ERR(sig_prekeys_new(d.s, SIG_PREKEYS_MAX + 1, pk), TERN_EINVAL);
	/* Wrap-around from the top of the range. */
	TT_EQ(sqlite3_exec(d.db, "UPDATE sig_local SET next_prekey_id ="
	    " 16777213", NULL, NULL, NULL), SQLITE_OK);
	TT_OK(sig_prekeys_new(d.s, 3, pk));
	TT_EQ(pk[0].id, SIG_PREKEY_ID_MAX - 1);
	TT_EQ(pk[1].id, SIG_PREKEY_ID_MAX);
	TT_EQ(pk[2].id, 1);
	TT_OK(sig_last_resort(d.s, &lr1));
	TT_OK(sig_last_resort(d.s, &lr2));
	TT_EQ(lr1.id, SIG_LAST_RESORT_ID);
	TT_MEMEQ(lr1.pub, lr2.pub, SIG_KEY_LEN);
	dev_close(&d);
}

TT_CASE(sig__open__state_survives_reopen)
{
	char path[] = "/tmp/test_sig_XXXXXX";
	struct dev alice, bob;
	struct sig_bundle b;
	uint8_t id1[SIG_KEY_LEN], id2[SIG_KEY_LEN];
	uint32_t reg1, reg2;
	int fd;

	fd = mkstemp(path);
	TT_ASSERT(fd >= 0);
	close(fd);
	dev_open(&alice, "alice@a.test", 1);
	memset(&bob, 0, sizeof(bob));
	TT_EQ(sqlite3_open(path, &bob.db), SQLITE_OK);
	TT_OK(sig_open(bob.db, &bob.s));
	TT_ERR(sig_local(bob.s, id1, &reg1), TERN_ENOTFOUND);
	TT_EQ(sig_identity_init(bob.s), 1);
	bob.user = "bob@b.test";
	bob.device = 1;
	TT_OK(sig_local(bob.s, id1, &reg1));
	TT_ASSERT(reg1 >= 1 && reg1 <= 16380);
	dev_bundle(&bob, 1, T0_MS, &b);
	TT_OK(sig_session_build(alice.s, bob.user, &b));
	roundtrip(&alice, &bob, "before");
	dev_close(&bob);

	TT_EQ(sqlite3_open(path, &bob.db), SQLITE_OK);
	TT_OK(sig_open(bob.db, &bob.s));
	TT_EQ(sig_identity_init(bob.s), 0);
	TT_OK(sig_local(bob.s, id2, &reg2));
	TT_MEMEQ(id1, id2, SIG_KEY_LEN);
	TT_EQ(reg1, reg2);
	roundtrip(&bob, &alice, "after");
	roundtrip(&alice, &bob, "again");
	dev_close(&bob);
	dev_close(&alice);
	unlink(path);
}

/* ---- trust ------------------------------------------------------------ */

TT_CASE(sig__identity__reset_pending_then_accept)
{
	struct dev alice, bob;
	struct sig_bundle ba, bb;
	uint8_t ct[CT_CAP], held[CT_CAP], pt[CT_CAP];
	struct buf_writer w;
	char fp1[SIG_FINGERPRINT_LEN + 1], fp2[SIG_FINGERPRINT_LEN + 1];
	char fpb[SIG_FINGERPRINT_LEN + 1];
	size_t n, hn, m;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	dev_bundle(&bob, 1, T0_MS, &bb);
	TT_OK(sig_session_build(alice.s, bob.user, &bb));
	roundtrip(&alice, &bob, "hi");
	roundtrip(&bob, &alice, "hello");
	TT_OK(sig_verified_set(alice.s, bob.user, 1));
	TT_EQ(sig_verified_get(alice.s, bob.user), 1);
	TT_OK(sig_fingerprint(alice.s, alice.user, bob.user, fp1));

	/* Bob loses his keys. */
	TT_OK(sig_identity_reset(bob.s));
	TT_EQ(sig_has_session(bob.s, alice.user, 1), 0);
	dev_bundle(&bob, 1, T0_MS, &bb);
	TT_ERR(sig_session_build(alice.s, bob.user, &bb), TERN_EIDENTITY);
	TT_EQ(sig_identity_pending(alice.s, bob.user), 1);
	buf_writer_init(&w, ct, sizeof(ct));
	TT_ERR(sig_encrypt(alice.s, bob.user, 1, (const uint8_t *)"x", 1, &w),
	    TERN_EIDENTITY);
	TT_EQ(sig_verified_get(alice.s, bob.user), 1);
	/* The fingerprint still shows the trusted key. */
	TT_OK(sig_fingerprint(alice.s, alice.user, bob.user, fp2));
	TT_ASSERT(strcmp(fp1, fp2) == 0);

	/* New Bob writes first: held until Alice accepts. */
	dev_bundle(&alice, 1, T0_MS, &ba);
	TT_OK(sig_session_build(bob.s, alice.user, &ba));
	hn = enc(&bob, &alice, "new me", 6, held);
	TT_ERR(dec(&alice, &bob, held, hn, pt, sizeof(pt), &m),
	    TERN_EIDENTITY);
	TT_ERR(dec(&alice, &bob, held, hn, pt, sizeof(pt), &m),
	    TERN_EIDENTITY);

	TT_OK(sig_identity_accept(alice.s, bob.user));
	TT_EQ(sig_identity_pending(alice.s, bob.user), 0);
	TT_EQ(sig_verified_get(alice.s, bob.user), 0);
	TT_EQ(sig_has_session(alice.s, bob.user, 1), 0);
	TT_OK(dec(&alice, &bob, held, hn, pt, sizeof(pt), &m));
	TT_EQ(m, 6);
	TT_MEMEQ(pt, "new me", 6);
	roundtrip(&alice, &bob, "welcome back");
	roundtrip(&bob, &alice, "thanks");
	n = enc(&alice, &bob, "x", 1, ct);
	TT_EQ(ct[0], SIG_TYPE_WHISPER);
	TT_OK(dec(&bob, &alice, ct, n, pt, sizeof(pt), &m));

	/* The safety number changed, and both sides agree on the new one. */
	TT_OK(sig_fingerprint(alice.s, alice.user, bob.user, fp2));
	TT_ASSERT(strcmp(fp1, fp2) != 0);
	TT_OK(sig_fingerprint(bob.s, bob.user, alice.user, fpb));
	TT_ASSERT(strcmp(fp2, fpb) == 0);
	dev_close(&alice);
	dev_close(&bob);
}

TT_CASE(sig__identity__accept_after_rebuild_from_bundle)
{
	struct dev alice, bob;
	struct sig_bundle bb;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	dev_bundle(&bob, 1, T0_MS, &bb);
	TT_OK(sig_session_build(alice.s, bob.user, &bb));
	roundtrip(&alice, &bob, "hi");
	TT_OK(sig_identity_reset(bob.s));
	dev_bundle(&bob, 1, T0_MS, &bb);
	TT_ERR(sig_session_build(alice.s, bob.user, &bb), TERN_EIDENTITY);
	TT_OK(sig_identity_accept(alice.s, bob.user));
	TT_OK(sig_session_build(alice.s, bob.user, &bb));
	roundtrip(&alice, &bob, "hi again");
	roundtrip(&bob, &alice, "hello again");
	dev_close(&alice);
	dev_close(&bob);
}

TT_CASE(sig__verified__cleared_by_new_device)
{
	struct dev alice, bob1, bob2;
	struct sig_bundle b;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob1, "bob@b.test", 1);
	dev_open(&bob2, "bob@b.test", 2);
	TT_ERR(sig_verified_set(alice.s, bob1.user, 1), TERN_ENOTFOUND);
	TT_EQ(sig_verified_get(alice.s, bob1.user), 0);
	dev_bundle(&bob1, 1, T0_MS, &b);
	TT_OK(sig_session_build(alice.s, bob1.user, &b));
	TT_OK(sig_verified_set(alice.s, bob1.user, 1));
	TT_EQ(sig_verified_get(alice.s, bob1.user), 1);
	/* Rebuilding with the same key keeps the mark. */
	dev_bundle(&bob1, 1, T0_MS, &b);
	TT_OK(sig_session_build(alice.s, bob1.user, &b));
	TT_EQ(sig_verified_get(alice.s, bob1.user), 1);
	/* A second device: trusted at once, but the mark is gone. */
	dev_bundle(&bob2, 1, T0_MS, &b);
	TT_OK(sig_session_build(alice.s, bob2.user, &b));
	TT_EQ(sig_identity_pending(alice.s, bob2.user), 0);
	TT_EQ(sig_verified_get(alice.s, bob1.user), 0);
	roundtrip(&alice, &bob2, "hi 2");
	roundtrip(&alice, &bob1, "hi 1");
	TT_OK(sig_verified_set(alice.s, bob1.user, 0));
	TT_EQ(sig_verified_get(alice.s, bob1.user), 0);
	dev_close(&alice);
	dev_close(&bob1);
	dev_close(&bob2);
}

static int
all_digits(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return s[n] == '\0';
}

TT_CASE(sig__fingerprint__same_on_both_sides)
{
	struct dev alice, bob, bob2;
	struct sig_bundle b;
	char fa[SIG_FINGERPRINT_LEN + 1], fb[SIG_FINGERPRINT_LEN + 1];
	char fc[SIG_FINGERPRINT_LEN + 1];
	double t;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	TT_ERR(sig_fingerprint(alice.s, alice.user, bob.user, fa),
	    TERN_ENOTFOUND);
	dev_bundle(&bob, 1, T0_MS, &b);
	TT_OK(sig_session_build(alice.s, bob.user, &b));
	roundtrip(&alice, &bob, "hi");
	t = now_s();
	TT_OK(sig_fingerprint(alice.s, alice.user, bob.user, fa));
	fprintf(stderr, "fingerprint: %.1f ms\n", (now_s() - t) * 1e3);
	TT_OK(sig_fingerprint(bob.s, bob.user, alice.user, fb));
	TT_EQ(strlen(fa), SIG_FINGERPRINT_LEN);
	TT_ASSERT(all_digits(fa, SIG_FINGERPRINT_LEN));
	TT_ASSERT(strcmp(fa, fb) == 0);

	/* Another device of Bob's changes Alice's view of the number. */
	dev_open(&bob2, "bob@b.test", 2);
	dev_bundle(&bob2, 1, T0_MS, &b);
	TT_OK(sig_session_build(alice.s, bob.user, &b));
	TT_OK(sig_fingerprint(alice.s, alice.user, bob.user, fc));
	TT_ASSERT(strcmp(fa, fc) != 0);
	dev_close(&alice);
	dev_close(&bob);
	dev_close(&bob2);
}

/* libsignal-protocol-c's tests/test_fingerprint.c vector: fixed identity
 * keys and the displayable digits for 5200 iterations. */
static const uint8_t fp_alice[33] = {
	0x05, 0x06, 0x86, 0x3b, 0xc6, 0x6d, 0x02, 0xb4, 0x0d, 0x27, 0xb8,
	0xd4, 0x9c, 0xa7, 0xc0, 0x9e, 0x92, 0x39, 0x23, 0x6f, 0x9d, 0x7d,
	0x25, 0xd6, 0xfc, 0xca, 0x5c, 0xe1, 0x3c, 0x70, 0x64, 0xd8, 0x68,
};
static const uint8_t fp_bob[33] = {
	0x05, 0xf7, 0x81, 0xb6, 0xfb, 0x32, 0xfe, 0xd9, 0xba, 0x1c, 0xf2,
	0xde, 0x97, 0x8d, 0x4d, 0x5d, 0xa2, 0x8d, 0xc3, 0x40, 0x46, 0xae,
	0x81, 0x44, 0x02, 0xb5, 0xc0, 0xdb, 0xd9, 0x6f, 0xda, 0x90, 0x7b,
};
static const char fp_digits[] =
    "300354477692869396892869876765458257569162576843440918079131";

TT_CASE(sig__fingerprint__libsignal_vector)
{
	struct dev d;
	ec_public_key *ka = NULL, *kb = NULL;
	ec_public_key_list *la, *lb;
	fingerprint_generator *g = NULL;
	fingerprint *fa = NULL, *fb = NULL;
	signal_context *ctx;

	dev_open(&d, "x@x.test", 1);
	ctx = sig_signal_context(d.s);
	TT_OK(curve_decode_point(&ka, fp_alice, sizeof(fp_alice), ctx));
	TT_OK(curve_decode_point(&kb, fp_bob, sizeof(fp_bob), ctx));
	TT_OK(fingerprint_generator_create(&g, SIG_FINGERPRINT_ITER, 1, ctx));
	TT_OK(fingerprint_generator_create_for(g, "+14152222222", ka,
	    "+14153333333", kb, &fa));
	TT_ASSERT(strcmp(displayable_fingerprint_text(
	    fingerprint_get_displayable(fa)), fp_digits) == 0);
	/* One-key lists, as sig_fingerprint builds them, hash the same. */
	la = ec_public_key_list_alloc();
	lb = ec_public_key_list_alloc();
	TT_ASSERT(la != NULL && lb != NULL);
	TT_OK(ec_public_key_list_push_back(la, ka));
	TT_OK(ec_public_key_list_push_back(lb, kb));
	TT_OK(fingerprint_generator_create_for_list(g, "+14153333333", lb,
	    "+14152222222", la, &fb));
	TT_ASSERT(strcmp(displayable_fingerprint_text(
	    fingerprint_get_displayable(fb)), fp_digits) == 0);
	SIGNAL_UNREF(fa);
	SIGNAL_UNREF(fb);
	ec_public_key_list_free(la);
	ec_public_key_list_free(lb);
	fingerprint_generator_free(g);
	SIGNAL_UNREF(ka);
	SIGNAL_UNREF(kb);
	dev_close(&d);
}

/* ---- signed prekeys --------------------------------------------------- */

TT_CASE(sig__signed_prekey__rotation_keep_and_delete)
{
	struct dev alice, carol, bob;
	struct sig_signed_prekey s1, s2, s3, s4;
	struct sig_bundle b_old;
	uint8_t c1[CT_CAP], c2[CT_CAP], pt[CT_CAP], id[SIG_KEY_LEN];
	uint32_t reg;
	size_t n1, n2, m;
	int rot = -1;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&carol, "carol@c.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	TT_OK(sig_signed_prekey(bob.s, T0_MS, &s1, &rot));
	TT_EQ(rot, 1);
	TT_EQ(s1.created_ms, T0_MS);
	TT_OK(sig_local(bob.s, id, &reg));
	TT_OK(sig_verify_signed(id, s1.pub, s1.signature));
	TT_OK(sig_signed_prekey(bob.s, T0_MS + DAY_MS, &s2, &rot));
	TT_EQ(rot, 0);
	TT_EQ(s2.id, s1.id);
	TT_MEMEQ(s2.pub, s1.pub, SIG_KEY_LEN);

	/* Alice and Carol fetch bundles with the first signed prekey. */
	dev_bundle(&bob, 1, T0_MS + DAY_MS, &b_old);
	TT_EQ(b_old.signed_prekey_id, s1.id);
	TT_OK(sig_session_build(alice.s, bob.user, &b_old));
	dev_bundle(&bob, 1, T0_MS + DAY_MS, &b_old);
	TT_OK(sig_session_build(carol.s, bob.user, &b_old));
	n1 = enc(&alice, &bob, "late", 4, c1);
	n2 = enc(&carol, &bob, "too late", 8, c2);

	/* Day 8: rotated; the old one is kept. */
	TT_OK(sig_signed_prekey(bob.s, T0_MS + 8 * DAY_MS, &s3, &rot));
	TT_EQ(rot, 1);
	TT_ASSERT(s3.id != s1.id);
	TT_ASSERT(memcmp(s3.pub, s1.pub, SIG_KEY_LEN) != 0);
	TT_EQ(s3.created_ms, T0_MS + 8 * DAY_MS);
	TT_OK(dec(&bob, &alice, c1, n1, pt, sizeof(pt), &m));
	TT_MEMEQ(pt, "late", 4);
	TT_EQ(signal_protocol_signed_pre_key_contains_key(
	    sig_store_context(bob.s), s1.id), 1);

	/* Day 31: the first is over 30 days old and goes; the second
	 * (23 days) is rotated out but kept. */
	TT_OK(sig_signed_prekey(bob.s, T0_MS + 31 * DAY_MS, &s4, &rot));
	TT_EQ(rot, 1);
	TT_ASSERT(s4.id != s3.id);
	TT_EQ(signal_protocol_signed_pre_key_contains_key(
	    sig_store_context(bob.s), s1.id), 0);
	TT_EQ(signal_protocol_signed_pre_key_contains_key(
	    sig_store_context(bob.s), s3.id), 1);
	TT_ERR(dec(&bob, &carol, c2, n2, pt, sizeof(pt), &m), TERN_EDECRYPT);
	roundtrip(&bob, &alice, "alice still fine");
	dev_close(&alice);
	dev_close(&carol);
	dev_close(&bob);
}

TT_CASE(sig__verify_signed__good_and_flipped)
{
	struct dev d;
	struct sig_signed_prekey spk;
	uint8_t id[SIG_KEY_LEN], bad[SIG_SIG_LEN];
	uint32_t reg;
	size_t i;

	dev_open(&d, "d@d.test", 1);
	TT_OK(sig_local(d.s, id, &reg));
	TT_OK(sig_signed_prekey(d.s, T0_MS, &spk, NULL));
	TT_OK(sig_verify_signed(id, spk.pub, spk.signature));
	for (i = 0; i < SIG_SIG_LEN * 8; i += 37) {
		memcpy(bad, spk.signature, SIG_SIG_LEN);
		bad[i / 8] ^= (uint8_t)(1u << (i % 8));
		TT_ERR(sig_verify_signed(id, spk.pub, bad), TERN_EKEY);
	}
	spk.pub[0] ^= 1;
	TT_ERR(sig_verify_signed(id, spk.pub, spk.signature), TERN_EKEY);
	dev_close(&d);
}

/* ---- sender keys ------------------------------------------------------ */

TT_CASE(sig__sender_key__group_roundtrip)
{
	struct dev alice, bob;
	signal_protocol_sender_key_name name = {
		.group_id = "group-1", .group_id_len = 7,
		.sender = { .name = "alice@a.test", .name_len = 12,
		    .device_id = 1 },
	};
	group_session_builder *ga = NULL, *gb = NULL;
	sender_key_distribution_message *skdm = NULL, *skdm_in = NULL;
	group_cipher *ca = NULL, *cb = NULL;
	ciphertext_message *ct = NULL;
	sender_key_message *in = NULL;
	signal_buffer *ser, *pt = NULL;
	int i;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	TT_OK(group_session_builder_create(&ga, sig_store_context(alice.s),
	    sig_signal_context(alice.s)));
	TT_OK(group_session_builder_create(&gb, sig_store_context(bob.s),
	    sig_signal_context(bob.s)));
	TT_OK(group_session_builder_create_session(ga, &skdm, &name));
	ser = ciphertext_message_get_serialized((ciphertext_message *)skdm);
	TT_OK(sender_key_distribution_message_deserialize(&skdm_in,
	    signal_buffer_data(ser), signal_buffer_len(ser),
	    sig_signal_context(bob.s)));
	TT_OK(group_session_builder_process_session(gb, &name, skdm_in));
	TT_OK(group_cipher_create(&ca, sig_store_context(alice.s), &name,
	    sig_signal_context(alice.s)));
	TT_OK(group_cipher_create(&cb, sig_store_context(bob.s), &name,
	    sig_signal_context(bob.s)));
	for (i = 0; i < 20; i++) {
		char text[32];

		snprintf(text, sizeof(text), "group message %d", i);
		TT_OK(group_cipher_encrypt(ca, (const uint8_t *)text,
		    strlen(text), &ct));
		ser = ciphertext_message_get_serialized(ct);
		TT_OK(sender_key_message_deserialize(&in,
		    signal_buffer_data(ser), signal_buffer_len(ser),
		    sig_signal_context(bob.s)));
		TT_OK(group_cipher_decrypt(cb, in, NULL, &pt));
		TT_EQ(signal_buffer_len(pt), strlen(text));
		TT_MEMEQ(signal_buffer_data(pt), text, strlen(text));
		/* Once more: the stored record has moved past it. */
		signal_buffer_free(pt);
		pt = NULL;
		TT_ERR(group_cipher_decrypt(cb, in, NULL, &pt),
		    SG_ERR_DUPLICATE_MESSAGE);
		SIGNAL_UNREF(in);
		SIGNAL_UNREF(ct);
	}
	group_cipher_free(ca);
	group_cipher_free(cb);
	SIGNAL_UNREF(skdm);
	SIGNAL_UNREF(skdm_in);
	group_session_builder_free(ga);
	group_session_builder_free(gb);
	dev_close(&alice);
	dev_close(&bob);
}

/* ---- rough figures (printed, never asserted) -------------------------- */

TT_CASE(sig__bench__rough_figures)
{
	enum { MSGS = 4000, BUILDS = 200 };
	struct dev alice, bob;
	struct sig_bundle b;
	uint8_t ct[CT_CAP], pt[CT_CAP];
	char user[64];
	size_t n, m;
	double t, te = 0, td = 0, tb = 0, te1 = 0, td1 = 0;
	int i;

	dev_open(&alice, "alice@a.test", 1);
	dev_open(&bob, "bob@b.test", 1);
	dev_bundle(&bob, 1, T0_MS, &b);
	TT_OK(sig_session_build(alice.s, bob.user, &b));
	roundtrip(&alice, &bob, "start");
	roundtrip(&bob, &alice, "ack");
	for (i = 0; i < MSGS; i++) {
		struct dev *a = (i / 100) % 2 ? &bob : &alice;
		struct dev *z = a == &bob ? &alice : &bob;

		t = now_s();
		n = enc(a, z, "a typical short chat message, 60 bytes long.....",
		    48, ct);
		te += now_s() - t;
		t = now_s();
		TT_OK(dec(z, a, ct, n, pt, sizeof(pt), &m));
		td += now_s() - t;
	}
	fprintf(stderr, "encrypt %.1f us, decrypt %.1f us, pair %.0f msgs/s"
	    " (in-memory SQLite, direction flips every 100)\n",
	    te / MSGS * 1e6, td / MSGS * 1e6, MSGS / (te + td));

	/* Set-up with fresh peers each time: Alice builds to "bobN" from
	 * Bob's last-resort bundle and Bob receives as from "aliceN". */
	dev_bundle(&bob, 0, T0_MS, &b);
	for (i = 0; i < BUILDS; i++) {
		struct dev a2 = alice, b2 = bob;
		char user2[64];

		snprintf(user, sizeof(user), "bob%d@b.test", i);
		snprintf(user2, sizeof(user2), "alice%d@a.test", i);
		b2.user = user;
		a2.user = user2;
		t = now_s();
		TT_OK(sig_session_build(alice.s, user, &b));
		tb += now_s() - t;
		t = now_s();
		n = enc(&alice, &b2, "x", 1, ct);
		te1 += now_s() - t;
		t = now_s();
		TT_OK(dec(&bob, &a2, ct, n, pt, sizeof(pt), &m));
		td1 += now_s() - t;
	}
	fprintf(stderr, "set-up: build %.1f us, first encrypt %.1f us,"
	    " first (prekey) decrypt %.1f us, total %.1f us\n",
	    tb / BUILDS * 1e6, te1 / BUILDS * 1e6, td1 / BUILDS * 1e6,
	    (tb + te1 + td1) / BUILDS * 1e6);
	dev_close(&alice);
	dev_close(&bob);
}
