/*
 * sig_internal.h: what sig.c and sig_store.c share, and what the tests
 * reach past the public interface for (the crypto provider's callbacks,
 * the signal contexts for driving libsignal's group API directly).
 * Nothing outside crypto/ and tests/crypto/ includes this.
 */
#ifndef TERN_SIG_INTERNAL_H
#define TERN_SIG_INTERNAL_H

#include <pthread.h>
#include <stdint.h>

#include <sqlite3.h>
#include <signal_protocol.h>

#include "ident.h"
#include "sig.h"

/* Store callbacks report a database failure with this code, below every
 * code libsignal uses, so sig.c can tell it from a bad message. */
#define SIG_SG_ERR_DB (SG_ERR_MINIMUM - 1)

/* The prepared statements, made once in sig_open. */
enum sig_stmt {
	SIG_ST_BEGIN,          /* SAVEPOINT */
	SIG_ST_COMMIT,         /* RELEASE */
	SIG_ST_ROLLBACK,       /* ROLLBACK TO */
	SIG_ST_LOCAL_GET,
	SIG_ST_LOCAL_PUT,
	SIG_ST_LOCAL_PREKEY_NEXT,
	SIG_ST_LOCAL_SIGNED,
	SIG_ST_PREKEY_GET,
	SIG_ST_PREKEY_PUT,
	SIG_ST_PREKEY_HAS,
	SIG_ST_PREKEY_DEL,
	SIG_ST_SPK_GET,
	SIG_ST_SPK_PUT,
	SIG_ST_SPK_HAS,
	SIG_ST_SPK_DEL,
	SIG_ST_SPK_PRUNE,
	SIG_ST_SESS_GET,
	SIG_ST_SESS_PUT,
	SIG_ST_SESS_UPDATE,
	SIG_ST_SESS_HAS,
	SIG_ST_SESS_DEL,
	SIG_ST_SESS_DEVICES,
	SIG_ST_SESS_DEL_ALL,
	SIG_ST_ID_GET,
	SIG_ST_ID_PUT,
	SIG_ST_ID_PEND,
	SIG_ST_ID_DEL,
	SIG_ST_ID_KNOWN,
	SIG_ST_ID_PENDING_ANY,
	SIG_ST_SESS_DEL_PENDING,
	SIG_ST_ID_ACCEPT,
	SIG_ST_ID_KEYS,
	SIG_ST_USER_GET,
	SIG_ST_USER_SET,
	SIG_ST_SEND_CHECK,
	SIG_ST_SK_GET,
	SIG_ST_SK_PUT,
	SIG_ST_COUNT
};

/*
 * A few session records kept in memory, so a message costs one SQLite
 * write and no read: libsignal loads a session (and asks whether it
 * exists) before every encrypt and decrypt. Write-through: the database
 * stays the truth, and anything that deletes sessions or rolls back a
 * savepoint empties the cache. Records hold chain keys: wiped on eviction.
 */
#define SIG_CACHE_N 8

struct sig_cache_ent {
	char user[IDENT_ADDR_MAX];          /* not NUL-terminated */
	size_t user_len;                    /* 0: the entry is free */
	int32_t device;                     /* libsignal's device id */
	uint8_t *rec;                       /* serialized session record */
	size_t len;                         /* bytes in rec */
	size_t cap;                         /* allocated for rec */
	int send_ok;                        /* no pending identity: checked */
};

struct sig {
	sqlite3 *db;                        /* borrowed from the caller */
	signal_context *ctx;                /* provider, lock, no logging */
	signal_protocol_store_context *store; /* the sig_* tables */
	pthread_mutex_t lock;               /* recursive, for libsignal */
	int have_identity;                  /* the three below are loaded */
	uint8_t id_pub[SIG_KEY_LEN];        /* our identity, cached */
	uint8_t id_priv[SIG_KEY_LEN];       /* secret: wiped in sig_close */
	uint32_t registration_id;           /* libsignal's, 1..16380 */
	sqlite3_stmt *st[SIG_ST_COUNT];     /* prepared once */
	struct sig_cache_ent cache[SIG_CACHE_N]; /* recent sessions */
	unsigned cache_next;                /* round-robin victim */
};

/* tern's crypto provider (libsodium and OpenSSL EVP); user_data unused. */
extern const signal_crypto_provider sig_crypto_provider;

/* sig_store.c: creates the tables and prepares the statements (TERN_EDB),
 * finalizes them, and registers the five stores on s->store. */
int sig_store_prepare(struct sig *s) TERN_WUR;
void sig_store_finalize(struct sig *s);
int sig_store_register(struct sig *s) TERN_WUR;

/* Empties the session cache (wiping it); sig_close calls it too. */
void sig_cache_clear(struct sig *s);
/* sig_encrypt's shortcut: whether a's identity is known not to be pending
 * (1) or must be looked up (0); sig_cache_send_ok_set records that it was
 * (no-op when a has no entry). Recording a pending key forgets them all. */
int sig_cache_send_ok(struct sig *s, const signal_protocol_address *a);
void sig_cache_send_ok_set(struct sig *s, const signal_protocol_address *a);

/* Whether key may be used for a without a question: 1 when a has no
 * identity yet or key is its trusted one, 0 when it differs, else
 * negative. Records nothing. */
int sig_identity_check(struct sig *s, const signal_protocol_address *a,
    const uint8_t key[SIG_KEY_LEN]) TERN_WUR;

/* Savepoints around work that writes more than one row. sig_tx_end
 * releases the savepoint, first rolling back to it when rollback is set. */
int sig_tx_begin(struct sig *s) TERN_WUR;
int sig_tx_end(struct sig *s, int rollback) TERN_WUR;

/*
 * sig_sha.c: SHA-256 on OpenSSL's low-level SHA256_CTX, for the HMAC that
 * libsignal asks of its provider (sig.c says why not EVP). The state is
 * plain memory: callers wipe it. The functions cannot fail.
 */
struct sig_sha256 {
	/* SHA256_CTX, without pulling OpenSSL's deprecated header in here:
	 * sig_sha.c checks the size at compile time. */
	uint64_t st[14];
};
void sig_sha256_init(struct sig_sha256 *c);
void sig_sha256_update(struct sig_sha256 *c, const uint8_t *p, size_t n);
void sig_sha256_final(struct sig_sha256 *c, uint8_t md[32]);

/* For tests: the contexts of s, owned by s. */
signal_context *sig_signal_context(struct sig *s);
signal_protocol_store_context *sig_store_context(struct sig *s);

#endif
