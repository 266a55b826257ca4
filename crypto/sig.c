/*
 * sig.c: the Signal protocol for tern, on libsignal-protocol-c 2.3.3
 * (Debian). Contract in sig.h; the SQLite stores are in sig_store.c.
 *
 * What is written here rather than taken from a library: the crypto
 * provider is glue (libsodium for random and SHA-512; OpenSSL EVP for
 * AES-CBC/CTR, which libsodium lacks, and for the SHA-256 under HMAC, for
 * speed: see prov_hmac), and the padding is
 * a dozen lines (ISO/IEC 7816-4 style: 0x80 then zeros to a multiple of
 * SIG_PAD_BLOCK, so message lengths leak only in 160-byte steps).
 *
 * Symbols: libsignal's .so exports its own crypto_hash_sha512 (from its
 * bundled ed25519 code) beside libsodium's. Both are complete SHA-512
 * with the same signature, so whichever the dynamic linker binds first,
 * results are the same; terncrypto lists libsodium first, and the tests
 * check SHA-512 and Ed25519 known answers with both loaded.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include <curve.h>
#include <fingerprint.h>
#include <key_helper.h>
#include <protocol.h>
#include <ratchet.h>
#include <session_builder.h>
#include <session_cipher.h>
#include <session_pre_key.h>

#include "ident.h"
#include "sig_internal.h"

/* Our decrypt callback's refusal (see dec_cb), below libsignal's codes. */
#define SIG_SG_ERR_CB (SG_ERR_MINIMUM - 2)
/* Plaintexts above this are refused before padding (TERN_ETOOBIG); far
 * above any message, it keeps the size arithmetic trivially safe. */
#define SIG_PT_MAX (16u << 20)
#define SIG_DJB_TYPE 0x05 /* libsignal's Curve25519 key type byte */

/* ---- crypto provider -------------------------------------------------- */

static int
prov_random(uint8_t *data, size_t len, void *ud)
{
	(void)ud;
	randombytes_buf(data, len);
	return 0;
}

/*
 * OpenSSL objects fetched once: an implicit fetch on every EVP init (what
 * EVP_sha256() and EVP_aes_256_cbc() cost in OpenSSL 3) is about half a
 * microsecond, and libsignal makes some fifteen HMACs and two AES calls per
 * message. Never freed: they live as long as the process.
 */
static pthread_once_t prov_once = PTHREAD_ONCE_INIT;
static EVP_CIPHER *prov_cbc[3], *prov_ctr[3]; /* AES-128, -192, -256 */

static void
prov_fetch(void)
{
	static const char *const cbc[3] = { "AES-128-CBC", "AES-192-CBC",
	    "AES-256-CBC" };
	static const char *const ctr[3] = { "AES-128-CTR", "AES-192-CTR",
	    "AES-256-CTR" };
	size_t i;

	for (i = 0; i < 3; i++) {
		prov_cbc[i] = EVP_CIPHER_fetch(NULL, cbc[i], NULL);
		prov_ctr[i] = EVP_CIPHER_fetch(NULL, ctr[i], NULL);
	}
}

static void
prov_init(void)
{
	if (pthread_once(&prov_once, prov_fetch) != 0)
		abort(); /* only fails on a broken once control */
}

/*
 * HMAC-SHA256 (RFC 2104) over OpenSSL's SHA-256, which uses the CPU's SHA
 * extensions: 0.6 us an HMAC against libsodium's portable 1.8 us, and the
 * HMACs were a third of the cost of a message. Written out because the
 * key changes with every call (chain keys), so no precomputed HMAC state
 * could be kept, and OpenSSL's EVP_MAC costs more per call than this.
 *
 * The hash is OpenSSL's low-level SHA256_CTX, not an EVP_MD_CTX: in
 * OpenSSL 3 every EVP digest init allocates and frees a provider context
 * (with reference counting and cleansing around it), and libsignal makes
 * some fifteen HMACs per message, each two digests; that bookkeeping cost
 * more than the hashing. The low-level functions are deprecated in
 * OpenSSL 3 (sig_sha.c includes them with the deprecation warnings off)
 * but exported and the same SHA-NI code underneath.
 */
struct prov_hmac {
	struct sig_sha256 sha;             /* the inner hash, then the outer */
	uint8_t opad[64];                  /* key ^ 0x5c, for final */
};

static int
prov_hmac_init(void **hctx, const uint8_t *key, size_t key_len, void *ud)
{
	struct prov_hmac *h;
	uint8_t k[64] = { 0 }, ipad[64];
	size_t i;

	(void)ud;
	if ((h = malloc(sizeof(*h))) == NULL)
		return SG_ERR_NOMEM;
	if (key_len > sizeof(k)) { /* RFC 2104: long keys are hashed first */
		sig_sha256_init(&h->sha);
		sig_sha256_update(&h->sha, key, key_len);
		sig_sha256_final(&h->sha, k);
	} else if (key_len > 0)
		memcpy(k, key, key_len);
	for (i = 0; i < sizeof(k); i++) {
		ipad[i] = k[i] ^ 0x36;
		h->opad[i] = k[i] ^ 0x5c;
	}
	sig_sha256_init(&h->sha);
	sig_sha256_update(&h->sha, ipad, sizeof(ipad));
	sodium_memzero(k, sizeof(k));
	sodium_memzero(ipad, sizeof(ipad));
	*hctx = h;
	return 0;
}

static int
prov_hmac_update(void *hctx, const uint8_t *data, size_t len, void *ud)
{
	struct prov_hmac *h = hctx;

	(void)ud;
	sig_sha256_update(&h->sha, data, len);
	return 0;
}

static int
prov_hmac_final(void *hctx, signal_buffer **out, void *ud)
{
	struct prov_hmac *h = hctx;
	uint8_t mac[32];
	signal_buffer *b;

	(void)ud;
	sig_sha256_final(&h->sha, mac);
	sig_sha256_init(&h->sha);
	sig_sha256_update(&h->sha, h->opad, sizeof(h->opad));
	sig_sha256_update(&h->sha, mac, sizeof(mac));
	sig_sha256_final(&h->sha, mac);
	b = signal_buffer_create(mac, sizeof(mac));
	sodium_memzero(mac, sizeof(mac));
	if (b == NULL)
		return SG_ERR_NOMEM;
	*out = b;
	return 0;
}

static void
prov_hmac_cleanup(void *hctx, void *ud)
{
	struct prov_hmac *h = hctx;

	(void)ud;
	if (h != NULL) {
		sodium_memzero(h, sizeof(*h));
		free(h);
	}
}

static int
prov_sha512_init(void **dctx, void *ud)
{
	crypto_hash_sha512_state *st;

	(void)ud;
	if ((st = malloc(sizeof(*st))) == NULL)
		return SG_ERR_NOMEM;
	if (crypto_hash_sha512_init(st) != 0) {
		free(st);
		return SG_ERR_UNKNOWN;
	}
	*dctx = st;
	return 0;
}

static int
prov_sha512_update(void *dctx, const uint8_t *data, size_t len, void *ud)
{
	(void)ud;
	return crypto_hash_sha512_update(dctx, data, len) == 0 ?
	    0 : SG_ERR_UNKNOWN;
}

/* libsignal's contract: final leaves the context ready for a new digest
 * (the fingerprint generator hashes 5200 times on one context). */
static int
prov_sha512_final(void *dctx, signal_buffer **out, void *ud)
{
	uint8_t md[crypto_hash_sha512_BYTES];
	signal_buffer *b;

	(void)ud;
	if (crypto_hash_sha512_final(dctx, md) != 0 ||
	    crypto_hash_sha512_init(dctx) != 0)
		return SG_ERR_UNKNOWN;
	b = signal_buffer_create(md, sizeof(md));
	sodium_memzero(md, sizeof(md));
	if (b == NULL)
		return SG_ERR_NOMEM;
	*out = b;
	return 0;
}

static void
prov_sha512_cleanup(void *dctx, void *ud)
{
	(void)ud;
	if (dctx != NULL) {
		sodium_memzero(dctx, sizeof(crypto_hash_sha512_state));
		free(dctx);
	}
}

static const EVP_CIPHER *
prov_evp(int cipher, size_t key_len)
{
	size_t i;

	prov_init();
	switch (key_len) {
	case 16: i = 0; break;
	case 24: i = 1; break;
	case 32: i = 2; break;
	default: return NULL;
	}
	if (cipher == SG_CIPHER_AES_CBC_PKCS5)
		return prov_cbc[i];
	if (cipher == SG_CIPHER_AES_CTR_NOPADDING)
		return prov_ctr[i];
	return NULL;
}

/*
 * One EVP pass. Encryption writes straight into the signal_buffer (its
 * length is known: CBC pads to the next whole block); decryption goes
 * through a scratch buffer that is wiped, since its length is known only
 * after the padding is checked and its bytes are plaintext.
 */
static int
prov_aes(signal_buffer **out, int cipher, const uint8_t *key, size_t key_len,
    const uint8_t *iv, size_t iv_len, const uint8_t *in, size_t in_len,
    int enc)
{
	const EVP_CIPHER *c = prov_evp(cipher, key_len);
	EVP_CIPHER_CTX *ctx = NULL;
	signal_buffer *b = NULL;
	uint8_t *dst, *tmp = NULL;
	size_t cap = 0, want = 0;
	int n1 = 0, n2 = 0, r = SG_ERR_UNKNOWN;

	if (c == NULL || iv_len != 16 || in_len > INT_MAX - 32)
		return SG_ERR_INVAL;
	if (enc) {
		want = cipher == SG_CIPHER_AES_CBC_PKCS5 ?
		    (in_len / 16 + 1) * 16 : in_len;
		if ((b = signal_buffer_alloc(want)) == NULL)
			return SG_ERR_NOMEM;
		dst = signal_buffer_data(b);
	} else {
		cap = in_len + 16;
		if ((tmp = malloc(cap)) == NULL)
			return SG_ERR_NOMEM;
		dst = tmp;
	}
	if ((ctx = EVP_CIPHER_CTX_new()) == NULL) {
		r = SG_ERR_NOMEM;
		goto out;
	}
	if (EVP_CipherInit_ex(ctx, c, NULL, key, iv, enc) != 1 ||
	    EVP_CipherUpdate(ctx, dst, &n1, in, (int)in_len) != 1 ||
	    EVP_CipherFinal_ex(ctx, dst + n1, &n2) != 1)
		goto out;
	if (enc) {
		if ((size_t)n1 + (size_t)n2 != want)
			goto out;
	} else if ((b = signal_buffer_create(tmp, (size_t)n1 + (size_t)n2)) ==
	    NULL) {
		r = SG_ERR_NOMEM;
		goto out;
	}
	*out = b;
	b = NULL;
	r = 0;
out:
	EVP_CIPHER_CTX_free(ctx); /* wipes the key schedule */
	signal_buffer_free(b);
	if (tmp != NULL) {
		sodium_memzero(tmp, cap);
		free(tmp);
	}
	return r;
}

static int
prov_encrypt(signal_buffer **out, int cipher, const uint8_t *key,
    size_t key_len, const uint8_t *iv, size_t iv_len, const uint8_t *pt,
    size_t pt_len, void *ud)
{
	(void)ud;
	return prov_aes(out, cipher, key, key_len, iv, iv_len, pt, pt_len, 1);
}

static int
prov_decrypt(signal_buffer **out, int cipher, const uint8_t *key,
    size_t key_len, const uint8_t *iv, size_t iv_len, const uint8_t *ct,
    size_t ct_len, void *ud)
{
	(void)ud;
	return prov_aes(out, cipher, key, key_len, iv, iv_len, ct, ct_len, 0);
}

const signal_crypto_provider sig_crypto_provider = {
	.random_func = prov_random,
	.hmac_sha256_init_func = prov_hmac_init,
	.hmac_sha256_update_func = prov_hmac_update,
	.hmac_sha256_final_func = prov_hmac_final,
	.hmac_sha256_cleanup_func = prov_hmac_cleanup,
	.sha512_digest_init_func = prov_sha512_init,
	.sha512_digest_update_func = prov_sha512_update,
	.sha512_digest_final_func = prov_sha512_final,
	.sha512_digest_cleanup_func = prov_sha512_cleanup,
	.encrypt_func = prov_encrypt,
	.decrypt_func = prov_decrypt,
	.user_data = NULL,
};

/*
 * X25519 for libsignal. Its .so computes every Diffie-Hellman and public
 * key with a portable curve25519-donna (~230 us here, 4-5x libsodium),
 * which alone put a session set-up over 2 ms. It calls that function
 * through its PLT, so this definition, in the program, is the one the
 * dynamic linker binds: libsignal gets libsodium's X25519 instead. The
 * results are the same (RFC 7748 both), except that libsodium refuses
 * low-order points, which libsignal then reports as a failed agreement
 * (curve.c checks the return value), and that is what we want anyway.
 * The name is libsignal's, not ours; the prototype is its
 * curve25519/curve25519-donna.h. The tests check known answers both ways.
 */
int curve25519_donna(uint8_t *out, const uint8_t *secret,
    const uint8_t *point);

int
curve25519_donna(uint8_t *out, const uint8_t *secret, const uint8_t *point)
{
	static const uint8_t base[crypto_scalarmult_BYTES] = { 9 };

	if (memcmp(point, base, sizeof(base)) == 0)
		return crypto_scalarmult_base(out, secret) == 0 ? 0 : -1;
	return crypto_scalarmult(out, secret, point) == 0 ? 0 : -1;
}

/* libsignal re-locks inside its own calls: the mutex is recursive. */
static void
sig_lock(void *ud)
{
	struct sig *s = ud;

	if (pthread_mutex_lock(&s->lock) != 0)
		abort(); /* a broken invariant, not input */
}

static void
sig_unlock(void *ud)
{
	struct sig *s = ud;

	if (pthread_mutex_unlock(&s->lock) != 0)
		abort();
}

/* ---- helpers ---------------------------------------------------------- */

/* A libsignal result as a tern error; dflt for whatever has no better
 * name (a bad message, a bad key). */
static int
sig_err(int sg, int dflt)
{
	switch (sg) {
	case SG_ERR_NOMEM: return TERN_ENOMEM;
	case SIG_SG_ERR_DB: return TERN_EDB;
	case SG_ERR_UNTRUSTED_IDENTITY: return TERN_EIDENTITY;
	case SG_ERR_DUPLICATE_MESSAGE: return TERN_EDUP;
	default: return dflt;
	}
}

/* Checks a user address string; its length in *len. */
static int
sig_user_ok(const char *user, size_t *len)
{
	size_t n;

	if (user == NULL)
		return TERN_EINVAL;
	n = strnlen(user, IDENT_ADDR_MAX + 1);
	if (n == 0 || n > IDENT_ADDR_MAX)
		return TERN_EINVAL;
	*len = n;
	return 0;
}

static int
sig_addr(signal_protocol_address *a, const char *user, uint32_t device)
{
	size_t n;
	int r;

	if ((r = sig_user_ok(user, &n)) < 0)
		return r;
	if (device < 1 || device > INT32_MAX)
		return TERN_EINVAL;
	a->name = user;
	a->name_len = n;
	a->device_id = (int32_t)device;
	return 0;
}

/* The 32 key bytes of an ec_public_key. */
static int
sig_pub_bytes(const ec_public_key *k, uint8_t out[SIG_KEY_LEN])
{
	signal_buffer *b = NULL;
	int r;

	if ((r = ec_public_key_serialize(&b, k)) < 0)
		return sig_err(r, TERN_EKEY);
	if (signal_buffer_len(b) != 1 + SIG_KEY_LEN) {
		signal_buffer_free(b);
		return TERN_EKEY;
	}
	memcpy(out, signal_buffer_data(b) + 1, SIG_KEY_LEN);
	signal_buffer_free(b);
	return 0;
}

/* Decodes 32 raw key bytes (ctx may be NULL: only errors log through it). */
static int
sig_pub_decode(const uint8_t key[SIG_KEY_LEN], ec_public_key **out,
    signal_context *ctx)
{
	uint8_t enc[1 + SIG_KEY_LEN];

	enc[0] = SIG_DJB_TYPE;
	memcpy(enc + 1, key, SIG_KEY_LEN);
	return curve_decode_point(out, enc, sizeof(enc), ctx) < 0 ?
	    TERN_EKEY : 0;
}

/* Our identity as libsignal's key pair (for signing signed prekeys). */
static int
sig_identity_pair(struct sig *s, ratchet_identity_key_pair **out)
{
	ec_public_key *pub = NULL;
	ec_private_key *priv = NULL;
	int r;

	if ((r = sig_pub_decode(s->id_pub, &pub, s->ctx)) < 0)
		return r;
	r = curve_decode_private_point(&priv, s->id_priv, SIG_KEY_LEN, s->ctx);
	if (r >= 0)
		r = ratchet_identity_key_pair_create(out, pub, priv);
	SIGNAL_UNREF(pub);
	SIGNAL_UNREF(priv);
	return r < 0 ? sig_err(r, TERN_EKEY) : 0;
}

struct sig_local_row {
	uint32_t next_prekey_id;    /* next one-time prekey id to make */
	uint32_t next_signed_id;    /* next signed prekey id to make */
	uint32_t current_signed_id; /* 0: none made yet */
};

/* Loads our identity into s (and the id counters into row, may be NULL):
 * 0, TERN_ENOTFOUND when there is none, TERN_EDB. */
static int
sig_local_load(struct sig *s, struct sig_local_row *row)
{
	sqlite3_stmt *st = s->st[SIG_ST_LOCAL_GET];
	int rc, r;

	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		r = TERN_ENOTFOUND;
	} else if (rc != SQLITE_ROW ||
	    sqlite3_column_bytes(st, 0) != SIG_KEY_LEN ||
	    sqlite3_column_bytes(st, 1) != SIG_KEY_LEN) {
		r = TERN_EDB;
	} else {
		memcpy(s->id_pub, sqlite3_column_blob(st, 0), SIG_KEY_LEN);
		memcpy(s->id_priv, sqlite3_column_blob(st, 1), SIG_KEY_LEN);
		s->registration_id = (uint32_t)sqlite3_column_int64(st, 2);
		if (row != NULL) {
			row->next_prekey_id =
			    (uint32_t)sqlite3_column_int64(st, 3);
			row->next_signed_id =
			    (uint32_t)sqlite3_column_int64(st, 4);
			row->current_signed_id =
			    (uint32_t)sqlite3_column_int64(st, 5);
		}
		s->have_identity = 1;
		r = 0;
	}
	sqlite3_reset(st);
	return r;
}

/* The id after id, wrapping within 1..SIG_PREKEY_ID_MAX. */
static uint32_t
sig_id_next(uint32_t id)
{
	if (id < 1 || id >= SIG_PREKEY_ID_MAX)
		return 1;
	return id + 1;
}

static int
sig_bind_user(sqlite3_stmt *st, const char *user, size_t len)
{
	return sqlite3_bind_text(st, 1, user, (int)len, SQLITE_STATIC) ==
	    SQLITE_OK ? 0 : TERN_EDB;
}

/* ---- open, close, identity -------------------------------------------- */

int
sig_open(sqlite3 *db, struct sig **out)
{
	struct sig *s;
	pthread_mutexattr_t ma;
	int r;

	*out = NULL;
	if (db == NULL)
		return TERN_EINVAL;
	if (sodium_init() < 0)
		return TERN_ENOMEM;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return TERN_ENOMEM;
	s->db = db;
	if (pthread_mutexattr_init(&ma) != 0) {
		free(s);
		return TERN_ENOMEM;
	}
	r = pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	if (r == 0)
		r = pthread_mutex_init(&s->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	if (r != 0) {
		free(s);
		return TERN_ENOMEM;
	}
	if (signal_context_create(&s->ctx, s) < 0 ||
	    signal_context_set_crypto_provider(s->ctx,
	    &sig_crypto_provider) < 0 ||
	    signal_context_set_locking_functions(s->ctx, sig_lock,
	    sig_unlock) < 0 ||
	    signal_protocol_store_context_create(&s->store, s->ctx) < 0) {
		r = TERN_ENOMEM;
		goto fail;
	}
	if ((r = sig_store_prepare(s)) < 0 ||
	    (r = sig_store_register(s)) < 0)
		goto fail;
	r = sig_local_load(s, NULL);
	if (r < 0 && r != TERN_ENOTFOUND)
		goto fail;
	*out = s;
	return 0;
fail:
	sig_close(s);
	return r;
}

void
sig_close(struct sig *s)
{
	if (s == NULL)
		return;
	if (s->store != NULL)
		signal_protocol_store_context_destroy(s->store);
	if (s->ctx != NULL)
		signal_context_destroy(s->ctx);
	sig_store_finalize(s);
	sig_cache_clear(s);
	pthread_mutex_destroy(&s->lock);
	sodium_memzero(s->id_priv, sizeof(s->id_priv));
	free(s);
}

signal_context *
sig_signal_context(struct sig *s)
{
	return s->ctx;
}

signal_protocol_store_context *
sig_store_context(struct sig *s)
{
	return s->store;
}

/* Makes and stores a new identity (inside the caller's savepoint). */
static int
sig_identity_make(struct sig *s)
{
	sqlite3_stmt *st = s->st[SIG_ST_LOCAL_PUT];
	ec_key_pair *kp = NULL;
	signal_buffer *priv = NULL;
	uint8_t pub[SIG_KEY_LEN];
	uint32_t reg = 0;
	int r;

	r = curve_generate_key_pair(s->ctx, &kp);
	if (r < 0)
		return sig_err(r, TERN_EKEY);
	if ((r = sig_pub_bytes(ec_key_pair_get_public(kp), pub)) < 0)
		goto out;
	if ((r = ec_private_key_serialize(&priv,
	    ec_key_pair_get_private(kp))) < 0 ||
	    signal_buffer_len(priv) != SIG_KEY_LEN) {
		r = r < 0 ? sig_err(r, TERN_EKEY) : TERN_EKEY;
		goto out;
	}
	if ((r = signal_protocol_key_helper_generate_registration_id(&reg, 0,
	    s->ctx)) < 0) {
		r = sig_err(r, TERN_EKEY);
		goto out;
	}
	if (sqlite3_bind_blob(st, 1, pub, SIG_KEY_LEN, SQLITE_STATIC) !=
	    SQLITE_OK ||
	    sqlite3_bind_blob(st, 2, signal_buffer_data(priv), SIG_KEY_LEN,
	    SQLITE_STATIC) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 3, reg) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE) {
		sqlite3_reset(st);
		r = TERN_EDB;
		goto out;
	}
	sqlite3_reset(st);
	memcpy(s->id_pub, pub, SIG_KEY_LEN);
	memcpy(s->id_priv, signal_buffer_data(priv), SIG_KEY_LEN);
	s->registration_id = reg;
	s->have_identity = 1;
	r = 0;
out:
	signal_buffer_bzero_free(priv);
	SIGNAL_UNREF(kp);
	return r;
}

int
sig_identity_init(struct sig *s)
{
	int r, e;

	if (s->have_identity)
		return 0;
	if ((r = sig_tx_begin(s)) < 0)
		return r;
	r = sig_local_load(s, NULL);
	if (r == TERN_ENOTFOUND) {
		r = sig_identity_make(s);
		if (r == 0)
			r = 1;
	}
	e = sig_tx_end(s, r < 0);
	return r < 0 ? r : (e < 0 ? e : r);
}

/* Constant SQL: no value is formatted in. */
static const char sig_wipe_sql[] =
    "DELETE FROM sig_local; DELETE FROM sig_prekey;"
    "DELETE FROM sig_signed_prekey; DELETE FROM sig_session;"
    "DELETE FROM sig_identity; DELETE FROM sig_user;"
    "DELETE FROM sig_sender_key;";

int
sig_identity_reset(struct sig *s)
{
	int r, e;

	if ((r = sig_tx_begin(s)) < 0)
		return r;
	s->have_identity = 0;
	sodium_memzero(s->id_priv, sizeof(s->id_priv));
	sig_cache_clear(s);
	if (sqlite3_exec(s->db, sig_wipe_sql, NULL, NULL, NULL) != SQLITE_OK)
		r = TERN_EDB;
	else
		r = sig_identity_make(s);
	e = sig_tx_end(s, r < 0);
	if (r < 0 || e < 0) {
		/* The old identity may be back after the rollback. */
		s->have_identity = 0;
		sodium_memzero(s->id_priv, sizeof(s->id_priv));
		if (sig_local_load(s, NULL) == TERN_EDB && r == 0)
			r = TERN_EDB;
	}
	return r < 0 ? r : e;
}

int
sig_local(struct sig *s, uint8_t identity[SIG_KEY_LEN],
    uint32_t *registration_id)
{
	if (!s->have_identity)
		return TERN_ENOTFOUND;
	memcpy(identity, s->id_pub, SIG_KEY_LEN);
	*registration_id = s->registration_id;
	return 0;
}

/* ---- prekeys ---------------------------------------------------------- */

/* Makes and stores prekey id; its public key in pub. */
static int
sig_prekey_make(struct sig *s, uint32_t id, uint8_t pub[SIG_KEY_LEN])
{
	ec_key_pair *kp = NULL;
	session_pre_key *pk = NULL;
	int r;

	r = curve_generate_key_pair(s->ctx, &kp);
	if (r >= 0)
		r = session_pre_key_create(&pk, id, kp);
	if (r >= 0)
		r = signal_protocol_pre_key_store_key(s->store, pk);
	if (r < 0)
		r = sig_err(r, TERN_EKEY);
	else
		r = sig_pub_bytes(ec_key_pair_get_public(kp), pub);
	SIGNAL_UNREF(pk);
	SIGNAL_UNREF(kp);
	return r;
}

int
sig_prekeys_new(struct sig *s, size_t n, struct sig_prekey *out)
{
	struct sig_local_row row;
	sqlite3_stmt *st = s->st[SIG_ST_LOCAL_PREKEY_NEXT];
	uint32_t id;
	size_t i;
	int r, e;

	if (n > SIG_PREKEYS_MAX || (n > 0 && out == NULL))
		return TERN_EINVAL;
	if (!s->have_identity)
		return TERN_ENOTFOUND;
	if (n == 0)
		return 0;
	if ((r = sig_tx_begin(s)) < 0)
		return r;
	if ((r = sig_local_load(s, &row)) < 0)
		goto out;
	id = row.next_prekey_id;
	if (id < 1 || id > SIG_PREKEY_ID_MAX)
		id = 1;
	for (i = 0; i < n; i++) {
		out[i].id = id;
		if ((r = sig_prekey_make(s, id, out[i].pub)) < 0)
			goto out;
		id = sig_id_next(id);
	}
	if (sqlite3_bind_int64(st, 1, id) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		r = TERN_EDB;
	sqlite3_reset(st);
out:
	e = sig_tx_end(s, r < 0);
	return r < 0 ? r : e;
}

int
sig_last_resort(struct sig *s, struct sig_prekey *out)
{
	session_pre_key *pk = NULL;
	int r;

	if (!s->have_identity)
		return TERN_ENOTFOUND;
	out->id = SIG_LAST_RESORT_ID;
	r = signal_protocol_pre_key_load_key(s->store, &pk, SIG_LAST_RESORT_ID);
	if (r == SG_ERR_INVALID_KEY_ID)
		return sig_prekey_make(s, SIG_LAST_RESORT_ID, out->pub);
	if (r < 0)
		return sig_err(r, TERN_EKEY);
	r = sig_pub_bytes(ec_key_pair_get_public(
	    session_pre_key_get_key_pair(pk)), out->pub);
	SIGNAL_UNREF(pk);
	return r;
}

/* Fills out from a signed prekey record. */
static int
sig_spk_out(const session_signed_pre_key *k, struct sig_signed_prekey *out)
{
	if (session_signed_pre_key_get_signature_len(k) != SIG_SIG_LEN)
		return TERN_EKEY;
	out->id = session_signed_pre_key_get_id(k);
	memcpy(out->signature, session_signed_pre_key_get_signature(k),
	    SIG_SIG_LEN);
	out->created_ms = session_signed_pre_key_get_timestamp(k);
	return sig_pub_bytes(ec_key_pair_get_public(
	    session_signed_pre_key_get_key_pair(k)), out->pub);
}

/* Makes, signs and stores signed prekey id, and makes it the current one. */
static int
sig_spk_make(struct sig *s, uint32_t id, uint64_t now_ms,
    session_signed_pre_key **out)
{
	sqlite3_stmt *st = s->st[SIG_ST_LOCAL_SIGNED];
	ratchet_identity_key_pair *ikp = NULL;
	int r;

	if ((r = sig_identity_pair(s, &ikp)) < 0)
		return r;
	r = signal_protocol_key_helper_generate_signed_pre_key(out, ikp, id,
	    now_ms, s->ctx);
	SIGNAL_UNREF(ikp);
	if (r < 0)
		return sig_err(r, TERN_EKEY);
	if ((r = signal_protocol_signed_pre_key_store_key(s->store, *out)) < 0)
		return sig_err(r, TERN_EKEY);
	if (sqlite3_bind_int64(st, 1, sig_id_next(id)) != SQLITE_OK ||
	    sqlite3_bind_int64(st, 2, id) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_DONE)
		r = TERN_EDB;
	sqlite3_reset(st);
	return r;
}

int
sig_signed_prekey(struct sig *s, uint64_t now_ms,
    struct sig_signed_prekey *out, int *rotated)
{
	struct sig_local_row row;
	session_signed_pre_key *k = NULL;
	sqlite3_stmt *st = s->st[SIG_ST_SPK_PRUNE];
	int r, e, made = 0;

	if (rotated != NULL)
		*rotated = 0;
	if (!s->have_identity)
		return TERN_ENOTFOUND;
	if (now_ms > INT64_MAX)
		return TERN_EINVAL;
	if ((r = sig_tx_begin(s)) < 0)
		return r;
	if ((r = sig_local_load(s, &row)) < 0)
		goto out;
	if (row.current_signed_id != 0) {
		r = signal_protocol_signed_pre_key_load_key(s->store, &k,
		    row.current_signed_id);
		if (r == SG_ERR_INVALID_KEY_ID) {
			r = 0;
		} else if (r < 0) {
			r = sig_err(r, TERN_EKEY);
			goto out;
		} else if (now_ms > session_signed_pre_key_get_timestamp(k) &&
		    now_ms - session_signed_pre_key_get_timestamp(k) >
		    SIG_ROTATE_MS) {
			SIGNAL_UNREF(k);
		}
	}
	if (k == NULL) {
		uint32_t id = row.next_signed_id;

		if (id < 1 || id > SIG_PREKEY_ID_MAX)
			id = 1;
		if ((r = sig_spk_make(s, id, now_ms, &k)) < 0)
			goto out;
		made = 1;
	}
	if ((r = sig_spk_out(k, out)) < 0)
		goto out;
	if (now_ms > SIG_KEEP_MS) {
		if (sqlite3_bind_int64(st, 1, out->id) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 2,
		    (sqlite3_int64)(now_ms - SIG_KEEP_MS)) != SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_DONE)
			r = TERN_EDB;
		sqlite3_reset(st);
	}
out:
	SIGNAL_UNREF(k);
	e = sig_tx_end(s, r < 0);
	if (r == 0 && e == 0 && rotated != NULL)
		*rotated = made;
	return r < 0 ? r : e;
}

int
sig_verify_signed(const uint8_t identity[SIG_KEY_LEN],
    const uint8_t pub[SIG_KEY_LEN], const uint8_t sig[SIG_SIG_LEN])
{
	ec_public_key *k = NULL;
	uint8_t msg[1 + SIG_KEY_LEN];
	int r;

	/* curve_decode_point only logs through its context, and only on
	 * bad input; curve_verify_signature takes none: no context needed. */
	if (sig_pub_decode(identity, &k, NULL) < 0)
		return TERN_EKEY;
	msg[0] = SIG_DJB_TYPE;
	memcpy(msg + 1, pub, SIG_KEY_LEN);
	r = curve_verify_signature(k, msg, sizeof(msg), sig, SIG_SIG_LEN);
	SIGNAL_UNREF(k);
	return r == 1 ? 0 : TERN_EKEY;
}

/* ---- sessions --------------------------------------------------------- */

int
sig_has_session(struct sig *s, const char *user, uint32_t device)
{
	signal_protocol_address a;
	int r;

	if ((r = sig_addr(&a, user, device)) < 0)
		return r;
	r = signal_protocol_session_contains_session(s->store, &a);
	return r < 0 ? sig_err(r, TERN_EDB) : r;
}

int
sig_session_build(struct sig *s, const char *user,
    const struct sig_bundle *b)
{
	signal_protocol_address a;
	ec_public_key *ik = NULL, *spk = NULL, *pk = NULL;
	session_pre_key_bundle *bundle = NULL;
	session_builder *builder = NULL;
	int r, e;

	if (b == NULL)
		return TERN_EINVAL;
	if ((r = sig_addr(&a, user, b->device_id)) < 0)
		return r;
	if (!s->have_identity)
		return TERN_ESTATE;
	if (b->signed_prekey_id < 1 || b->signed_prekey_id > SIG_PREKEY_ID_MAX ||
	    b->prekey_id > SIG_LAST_RESORT_ID)
		return TERN_EKEY;
	/*
	 * A forged bundle must not leave a pending identity behind, and
	 * libsignal records it (through is_trusted_identity) before it checks
	 * the signature. So when the key is not the trusted one, check the
	 * signature first. Otherwise libsignal's own check comes before any
	 * write, and a second one would only cost time (XEdDSA verification is
	 * a third of a set-up).
	 */
	if ((r = sig_identity_check(s, &a, b->identity)) < 0)
		return r;
	if (r == 0 &&
	    sig_verify_signed(b->identity, b->signed_prekey, b->signature) < 0)
		return TERN_EKEY;
	if ((r = sig_pub_decode(b->identity, &ik, s->ctx)) < 0 ||
	    (r = sig_pub_decode(b->signed_prekey, &spk, s->ctx)) < 0 ||
	    (b->prekey_id != 0 &&
	    (r = sig_pub_decode(b->prekey, &pk, s->ctx)) < 0))
		goto out;
	r = session_pre_key_bundle_create(&bundle, b->registration_id,
	    (int)b->device_id, b->prekey_id, pk, b->signed_prekey_id, spk,
	    b->signature, SIG_SIG_LEN, ik);
	if (r < 0) {
		r = sig_err(r, TERN_EKEY);
		goto out;
	}
	if ((r = session_builder_create(&builder, s->store, &a, s->ctx)) < 0) {
		r = sig_err(r, TERN_EKEY);
		goto out;
	}
	if ((r = sig_tx_begin(s)) < 0)
		goto out;
	r = session_builder_process_pre_key_bundle(builder, bundle);
	/* An untrusted identity wrote only its pending record: keep it. */
	e = sig_tx_end(s, r < 0 && r != SG_ERR_UNTRUSTED_IDENTITY);
	r = r < 0 ? sig_err(r, TERN_EKEY) : e;
out:
	session_builder_free(builder);
	SIGNAL_UNREF(bundle);
	SIGNAL_UNREF(ik);
	SIGNAL_UNREF(spk);
	SIGNAL_UNREF(pk);
	return r;
}

int
sig_encrypt(struct sig *s, const char *user, uint32_t device,
    const uint8_t *pt, size_t len, struct buf_writer *out)
{
	sqlite3_stmt *st = s->st[SIG_ST_SEND_CHECK];
	signal_protocol_address a;
	session_cipher *cipher = NULL;
	ciphertext_message *msg = NULL;
	signal_buffer *ser;
	struct buf_writer w;
	uint8_t *padded = NULL;
	size_t plen = 0;
	int r, pending, has, type;

	if ((r = sig_addr(&a, user, device)) < 0)
		return r;
	if (pt == NULL && len > 0)
		return TERN_EINVAL;
	if (len > SIG_PT_MAX)
		return TERN_ETOOBIG;
	if (!sig_cache_send_ok(s, &a)) {
		if (sqlite3_bind_text(st, 1, a.name, (int)a.name_len,
		    SQLITE_STATIC) != SQLITE_OK ||
		    sqlite3_bind_int64(st, 2, device) != SQLITE_OK ||
		    sqlite3_step(st) != SQLITE_ROW) {
			sqlite3_reset(st);
			return TERN_EDB;
		}
		pending = sqlite3_column_int(st, 0);
		has = sqlite3_column_int(st, 1);
		sqlite3_reset(st);
		if (pending)
			return TERN_EIDENTITY;
		if (!has)
			return TERN_ENOTFOUND;
	}

	plen = len + SIG_PAD_BLOCK - len % SIG_PAD_BLOCK;
	if ((padded = malloc(plen)) == NULL)
		return TERN_ENOMEM;
	buf_writer_init(&w, padded, plen);
	if ((r = sig_pad(pt, len, &w)) < 0)
		goto out;
	if ((r = session_cipher_create(&cipher, s->store, &a, s->ctx)) < 0) {
		r = sig_err(r, TERN_ENOMEM);
		goto out;
	}
	if ((r = session_cipher_encrypt(cipher, padded, plen, &msg)) < 0) {
		/* No sender chain: a record without a usable session. */
		r = sig_err(r, TERN_ENOTFOUND);
		goto out;
	}
	type = ciphertext_message_get_type(msg);
	if (type != CIPHERTEXT_PREKEY_TYPE && type != CIPHERTEXT_SIGNAL_TYPE) {
		r = TERN_ETYPE;
		goto out;
	}
	/* The check above held, and the session is now in the cache: the
	 * next message to this device can skip it. */
	sig_cache_send_ok_set(s, &a);
	ser = ciphertext_message_get_serialized(msg);
	buf_put_u8(out, type == CIPHERTEXT_PREKEY_TYPE ?
	    SIG_TYPE_PREKEY : SIG_TYPE_WHISPER);
	buf_put_bytes(out, signal_buffer_data(ser), signal_buffer_len(ser));
	r = buf_writer_err(out);
out:
	SIGNAL_UNREF(msg);
	session_cipher_free(cipher);
	sodium_memzero(padded, plen);
	free(padded);
	return r;
}

/* What dec_cb needs: where the plaintext goes, and why it refused. */
struct sig_dec {
	struct buf_writer *out;  /* the caller's writer */
	int err;                 /* tern error when dec_cb refused */
};

/*
 * Runs inside libsignal's decrypt, before the session is stored: a refusal
 * here (bad padding, no room in out) leaves the session as it was, so the
 * message can be decrypted again.
 */
static int
dec_cb(session_cipher *cipher, signal_buffer *pt, void *arg)
{
	struct sig_dec *d = arg;
	size_t n;
	int r;

	(void)cipher;
	if ((r = sig_unpad(signal_buffer_data(pt), signal_buffer_len(pt),
	    &n)) < 0) {
		d->err = r;
		return SIG_SG_ERR_CB;
	}
	if ((r = buf_writer_err(d->out)) == 0 && d->out->p != NULL &&
	    d->out->cap - d->out->len < n)
		r = TERN_ETOOBIG;
	if (r < 0) {
		d->err = r;
		return SIG_SG_ERR_CB;
	}
	buf_put_bytes(d->out, signal_buffer_data(pt), n);
	return 0;
}

int
sig_decrypt(struct sig *s, const char *user, uint32_t device,
    const uint8_t *in, size_t len, struct buf_writer *out)
{
	signal_protocol_address a;
	session_cipher *cipher = NULL;
	pre_key_signal_message *pkm = NULL;
	signal_message *sm = NULL;
	signal_buffer *pt = NULL;
	struct sig_dec d = { .out = out, .err = 0 };
	int r, e;

	if ((r = sig_addr(&a, user, device)) < 0)
		return r;
	if (!s->have_identity)
		return TERN_ESTATE;
	if (in == NULL || len < 2)
		return TERN_EDECRYPT;
	if (in[0] == SIG_TYPE_PREKEY)
		r = pre_key_signal_message_deserialize(&pkm, in + 1, len - 1,
		    s->ctx);
	else if (in[0] == SIG_TYPE_WHISPER)
		r = signal_message_deserialize(&sm, in + 1, len - 1, s->ctx);
	else
		return TERN_EDECRYPT;
	if (r < 0)
		return sig_err(r, TERN_EDECRYPT) == TERN_ENOMEM ?
		    TERN_ENOMEM : TERN_EDECRYPT;
	if ((r = session_cipher_create(&cipher, s->store, &a, s->ctx)) < 0) {
		r = sig_err(r, TERN_ENOMEM);
		goto out;
	}
	session_cipher_set_decryption_callback(cipher, dec_cb);
	if (pkm != NULL) {
		/* Session, identity and the prekey's removal land together. */
		if ((r = sig_tx_begin(s)) < 0)
			goto out;
		r = session_cipher_decrypt_pre_key_signal_message(cipher, pkm,
		    &d, &pt);
		e = sig_tx_end(s, r < 0 && r != SG_ERR_UNTRUSTED_IDENTITY);
		if (r >= 0 && e < 0)
			r = SIG_SG_ERR_DB;
	} else {
		r = session_cipher_decrypt_signal_message(cipher, sm, &d, &pt);
	}
	if (r == SIG_SG_ERR_CB)
		r = d.err;
	else if (r < 0)
		r = sig_err(r, TERN_EDECRYPT);
	else
		r = 0;
out:
	signal_buffer_bzero_free(pt);
	session_cipher_free(cipher);
	SIGNAL_UNREF(pkm);
	SIGNAL_UNREF(sm);
	return r;
}

/* ---- trust ------------------------------------------------------------ */

int
sig_identity_pending(struct sig *s, const char *user)
{
	sqlite3_stmt *st = s->st[SIG_ST_ID_PENDING_ANY];
	size_t n;
	int r, rc;

	if ((r = sig_user_ok(user, &n)) < 0)
		return r;
	if ((r = sig_bind_user(st, user, n)) < 0)
		return r;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : TERN_EDB;
}

static int
sig_user_exec(struct sig *s, enum sig_stmt i, const char *user, size_t n)
{
	sqlite3_stmt *st = s->st[i];
	int rc;

	if (sig_bind_user(st, user, n) < 0)
		return TERN_EDB;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : TERN_EDB;
}

static int
sig_verified_put(struct sig *s, const char *user, size_t n, int v)
{
	sqlite3_stmt *st = s->st[SIG_ST_USER_SET];
	int rc;

	if (sig_bind_user(st, user, n) < 0 ||
	    sqlite3_bind_int(st, 2, v) != SQLITE_OK) {
		sqlite3_reset(st);
		return TERN_EDB;
	}
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc == SQLITE_DONE ? 0 : TERN_EDB;
}

int
sig_identity_accept(struct sig *s, const char *user)
{
	size_t n;
	int r, e;

	if ((r = sig_user_ok(user, &n)) < 0)
		return r;
	if ((r = sig_tx_begin(s)) < 0)
		return r;
	sig_cache_clear(s);
	/* Sessions first: the statement finds the devices by their pending
	 * keys, which the accept below clears. */
	if ((r = sig_user_exec(s, SIG_ST_SESS_DEL_PENDING, user, n)) < 0)
		goto out;
	if ((r = sig_user_exec(s, SIG_ST_ID_ACCEPT, user, n)) < 0)
		goto out;
	if (sqlite3_changes(s->db) > 0)
		r = sig_verified_put(s, user, n, 0);
out:
	e = sig_tx_end(s, r < 0);
	return r < 0 ? r : e;
}

int
sig_verified_get(struct sig *s, const char *user)
{
	sqlite3_stmt *st = s->st[SIG_ST_USER_GET];
	size_t n;
	int r, rc;

	if ((r = sig_user_ok(user, &n)) < 0)
		return r;
	if ((r = sig_bind_user(st, user, n)) < 0)
		return r;
	rc = sqlite3_step(st);
	r = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) != 0 :
	    rc == SQLITE_DONE ? 0 : TERN_EDB;
	sqlite3_reset(st);
	return r;
}

int
sig_verified_set(struct sig *s, const char *user, int verified)
{
	sqlite3_stmt *st = s->st[SIG_ST_ID_KNOWN];
	size_t n;
	int r, rc;

	if ((r = sig_user_ok(user, &n)) < 0)
		return r;
	if ((r = sig_bind_user(st, user, n)) < 0)
		return r;
	rc = sqlite3_step(st);
	sqlite3_reset(st);
	if (rc == SQLITE_DONE)
		return TERN_ENOTFOUND;
	if (rc != SQLITE_ROW)
		return TERN_EDB;
	return sig_verified_put(s, user, n, verified != 0);
}

/*
 * Appends the trusted keys of user's devices to l, skipping one equal to
 * skip (may be NULL); *count gets how many were added.
 */
static int
sig_keys_of(struct sig *s, const char *user, size_t n,
    const uint8_t *skip, ec_public_key_list *l, unsigned *count)
{
	sqlite3_stmt *st = s->st[SIG_ST_ID_KEYS];
	ec_public_key *k;
	int rc, r = 0;

	*count = 0;
	if ((r = sig_bind_user(st, user, n)) < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *p = sqlite3_column_blob(st, 0);

		if (sqlite3_column_bytes(st, 0) != SIG_KEY_LEN) {
			r = TERN_EDB;
			break;
		}
		if (skip != NULL && memcmp(p, skip, SIG_KEY_LEN) == 0)
			continue;
		if ((r = sig_pub_decode(p, &k, s->ctx)) < 0)
			break;
		r = ec_public_key_list_push_back(l, k); /* takes a ref */
		SIGNAL_UNREF(k);
		if (r < 0) {
			r = TERN_ENOMEM;
			break;
		}
		(*count)++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = TERN_EDB;
	sqlite3_reset(st);
	return r;
}

int
sig_fingerprint(struct sig *s, const char *local_user, const char *user,
    char out[SIG_FINGERPRINT_LEN + 1])
{
	ec_public_key_list *mine = NULL, *theirs = NULL;
	ec_public_key *k = NULL;
	fingerprint_generator *g = NULL;
	fingerprint *fp = NULL;
	const char *text;
	size_t ln, un;
	unsigned cnt;
	int r;

	out[0] = '\0';
	if ((r = sig_user_ok(local_user, &ln)) < 0 ||
	    (r = sig_user_ok(user, &un)) < 0)
		return r;
	if (!s->have_identity)
		return TERN_ENOTFOUND;
	if ((mine = ec_public_key_list_alloc()) == NULL ||
	    (theirs = ec_public_key_list_alloc()) == NULL) {
		r = TERN_ENOMEM;
		goto out;
	}
	/* Our side: this device's key and those of our other devices we
	 * know, so both ends hash the same two sets of keys. */
	if ((r = sig_pub_decode(s->id_pub, &k, s->ctx)) < 0)
		goto out;
	if (ec_public_key_list_push_back(mine, k) < 0) {
		r = TERN_ENOMEM;
		goto out;
	}
	if ((r = sig_keys_of(s, local_user, ln, s->id_pub, mine, &cnt)) < 0)
		goto out;
	if ((r = sig_keys_of(s, user, un, NULL, theirs, &cnt)) < 0)
		goto out;
	if (cnt == 0) {
		r = TERN_ENOTFOUND;
		goto out;
	}
	/* Scannable version 1 (hashes, not keys, in the QR payload); the
	 * displayed digits do not depend on it. */
	if ((r = fingerprint_generator_create(&g, SIG_FINGERPRINT_ITER, 1,
	    s->ctx)) < 0 ||
	    (r = fingerprint_generator_create_for_list(g, local_user, mine,
	    user, theirs, &fp)) < 0) {
		r = sig_err(r, TERN_EKEY);
		goto out;
	}
	text = displayable_fingerprint_text(fingerprint_get_displayable(fp));
	if (text == NULL || strlen(text) != SIG_FINGERPRINT_LEN) {
		r = TERN_EKEY;
		goto out;
	}
	memcpy(out, text, SIG_FINGERPRINT_LEN + 1);
	r = 0;
out:
	SIGNAL_UNREF(fp);
	fingerprint_generator_free(g);
	SIGNAL_UNREF(k);
	ec_public_key_list_free(mine);
	ec_public_key_list_free(theirs);
	return r;
}

/* ---- padding ---------------------------------------------------------- */

int
sig_pad(const uint8_t *pt, size_t len, struct buf_writer *out)
{
	static const uint8_t zeros[SIG_PAD_BLOCK];
	size_t pad = SIG_PAD_BLOCK - len % SIG_PAD_BLOCK; /* 1..BLOCK */

	if (pt == NULL && len > 0)
		return TERN_EINVAL;
	buf_put_bytes(out, pt, len);
	buf_put_u8(out, 0x80);
	buf_put_bytes(out, zeros, pad - 1);
	return buf_writer_err(out);
}

int
sig_unpad(const uint8_t *in, size_t len, size_t *outlen)
{
	size_t i;

	if (in == NULL || len == 0 || len % SIG_PAD_BLOCK != 0)
		return TERN_EDECRYPT;
	/* The padding is 1..SIG_PAD_BLOCK bytes: look no further back. */
	for (i = len; i > len - SIG_PAD_BLOCK; i--) {
		if (in[i - 1] == 0x80) {
			*outlen = i - 1;
			return 0;
		}
		if (in[i - 1] != 0)
			return TERN_EDECRYPT;
	}
	return TERN_EDECRYPT;
}
