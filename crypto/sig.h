/*
 * sig.h: the Signal protocol (libsignal-protocol-c), wired once for tern
 * (SPEC.md, "End-to-end encryption").
 *
 * One struct sig per device profile. It owns a signal_context with tern's
 * crypto provider (random, HMAC-SHA256 and SHA-512 from libsodium; AES-CBC
 * and AES-CTR from OpenSSL EVP; a recursive lock) and a store context whose
 * identity, prekey, signed prekey, session and sender key stores live in
 * tables "sig_*" of the caller's SQLite database (prepared statements
 * only). Nothing here does I/O beyond that database.
 *
 * Keys cross this interface as 32-byte Curve25519 public keys, without
 * libsignal's 0x05 type byte; signatures are XEdDSA over the 33-byte
 * encoding (0x05 || key), as libsignal makes them.
 *
 * Trust is per (user, device): the first identity key seen for a device
 * is trusted (trust on first use). A different key for a device already
 * known is recorded as pending and refused (TERN_EIDENTITY) until
 * sig_identity_accept; accepting clears the user's "verified" mark. A
 * first key for a new device of a known user is trusted but also clears
 * "verified" (the safety number changes).
 *
 * Not thread-safe beyond what libsignal needs: one thread uses a struct sig.
 * A struct sig owns the sig_* tables while it is open (it keeps a few
 * session records in memory, written through): nothing else writes them.
 * Each sig_encrypt and sig_decrypt writes one row (a session); callers
 * that handle many messages at once should wrap them in one transaction
 * (sig.c's own savepoints nest inside it).
 *
 * Functions documented as returning 1 or 0 return a negative TERN_E* code
 * instead on a bad argument (TERN_EINVAL) or a database error (TERN_EDB).
 */
#ifndef TERN_SIG_H
#define TERN_SIG_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "buf.h"
#include "tern_err.h"

#define SIG_KEY_LEN 32                 /* Curve25519 public key */
#define SIG_SIG_LEN 64                 /* XEdDSA signature */
#define SIG_PREKEYS_MAX 100            /* one-time prekeys per upload */
#define SIG_PREKEY_ID_MAX 0xFFFFFEu    /* one-time ids: 1..this */
#define SIG_LAST_RESORT_ID 0xFFFFFFu   /* libsignal never removes it */
#define SIG_PAD_BLOCK 160              /* plaintext padded to multiples */
#define SIG_FINGERPRINT_LEN 60         /* digits of a safety number */
#define SIG_FINGERPRINT_ITER 5200      /* fingerprint hash iterations */
#define SIG_ROTATE_MS (7ull * 24 * 3600 * 1000)  /* signed prekey age */
#define SIG_KEEP_MS (30ull * 24 * 3600 * 1000)   /* old ones kept */

/* The first byte of sig_encrypt's output: libsignal's ciphertext type,
 * which its bytes do not describe themselves. */
#define SIG_TYPE_WHISPER 2             /* within an established session */
#define SIG_TYPE_PREKEY 3              /* starts a session */

struct sig;

struct sig_prekey {
	uint32_t id;                       /* 1..SIG_PREKEY_ID_MAX or
	                                      SIG_LAST_RESORT_ID */
	uint8_t pub[SIG_KEY_LEN];
};

struct sig_signed_prekey {
	uint32_t id;                       /* 1..SIG_PREKEY_ID_MAX */
	uint8_t pub[SIG_KEY_LEN];
	uint8_t signature[SIG_SIG_LEN];    /* by the identity key */
	uint64_t created_ms;               /* Unix ms */
};

/* One device's published keys, as a bundle fetch returns them. */
struct sig_bundle {
	uint32_t device_id;                /* >= 1 */
	uint32_t registration_id;          /* libsignal's, 1..16380 */
	uint8_t identity[SIG_KEY_LEN];
	uint32_t signed_prekey_id;
	uint8_t signed_prekey[SIG_KEY_LEN];
	uint8_t signature[SIG_SIG_LEN];
	uint32_t prekey_id;                /* 0: none served */
	uint8_t prekey[SIG_KEY_LEN];       /* when prekey_id != 0 */
};

/*
 * sig_open: a struct sig on db (borrowed; must outlive it). Creates the
 * sig_* tables if missing. Does not create an identity (sig_identity_init).
 * TERN_EDB, TERN_ENOMEM.
 */
int sig_open(sqlite3 *db, struct sig **out) TERN_WUR;
/* sig_close: frees s (NULL is fine); key material in memory is wiped. */
void sig_close(struct sig *s);

/*
 * sig_identity_init: creates this device's identity key pair and
 * registration id if there are none (1), or leaves them (0).
 * sig_identity_reset deletes every key, session and trust record and
 * creates a new identity: a device restored without its keys.
 */
int sig_identity_init(struct sig *s) TERN_WUR;
int sig_identity_reset(struct sig *s) TERN_WUR;
/* sig_local: our identity public key and registration id. TERN_ENOTFOUND
 * before sig_identity_init. */
int sig_local(struct sig *s, uint8_t identity[SIG_KEY_LEN],
    uint32_t *registration_id) TERN_WUR;

/*
 * sig_prekeys_new: n (<= SIG_PREKEYS_MAX) fresh one-time prekeys, stored,
 * with ids following the last ones made (wrapping within
 * 1..SIG_PREKEY_ID_MAX). sig_last_resort: the last-resort prekey (id
 * SIG_LAST_RESORT_ID), created on first call.
 */
int sig_prekeys_new(struct sig *s, size_t n, struct sig_prekey *out)
    TERN_WUR;
int sig_last_resort(struct sig *s, struct sig_prekey *out) TERN_WUR;

/*
 * sig_signed_prekey: the current signed prekey. Creates the first one;
 * when the current one is older than SIG_ROTATE_MS at now_ms, makes a new
 * one. *rotated (may be NULL) is 1 whenever a new one was made, the first
 * included (publish it), else 0. Signed prekeys other than the current one
 * whose created_ms is older than SIG_KEEP_MS are deleted; younger ones
 * are kept so late prekey messages still decrypt.
 */
int sig_signed_prekey(struct sig *s, uint64_t now_ms,
    struct sig_signed_prekey *out, int *rotated) TERN_WUR;

/* sig_verify_signed: 0 if sig is identity's XEdDSA signature of the
 * signed prekey pub, else TERN_EKEY. Used by the node too. */
int sig_verify_signed(const uint8_t identity[SIG_KEY_LEN],
    const uint8_t pub[SIG_KEY_LEN], const uint8_t sig[SIG_SIG_LEN])
    TERN_WUR;

/* sig_has_session: 1 if there is a session with (user, device), else 0. */
int sig_has_session(struct sig *s, const char *user, uint32_t device);

/*
 * sig_session_build: starts a session with (user, b->device_id) from a
 * fetched bundle. TERN_EKEY for a bad signature or key (checked before
 * anything is recorded), TERN_EIDENTITY when the device's identity differs
 * from the trusted one (recorded as pending; nothing else changes),
 * TERN_EINVAL for a bad user or device 0, TERN_ESTATE before
 * sig_identity_init.
 */
int sig_session_build(struct sig *s, const char *user,
    const struct sig_bundle *b) TERN_WUR;

/*
 * sig_encrypt: pads pt to a multiple of SIG_PAD_BLOCK (0x80 then zeros;
 * always at least one byte of padding) and encrypts it for (user,
 * device). out gets the type byte (SIG_TYPE_*) then libsignal's
 * serialized ciphertext, appended (TERN_ETOOBIG when it does not fit;
 * the session has then still advanced, so size out for the worst case:
 * padded length + 256). The padded copy is wiped. TERN_ENOTFOUND without
 * a session, TERN_EIDENTITY when the device has a pending identity.
 */
int sig_encrypt(struct sig *s, const char *user, uint32_t device,
    const uint8_t *pt, size_t len, struct buf_writer *out) TERN_WUR;

/*
 * sig_decrypt: the inverse, from (user, device); out gets the unpadded
 * plaintext, appended (TERN_ETOOBIG if it does not fit). TERN_EDUP for a
 * message already decrypted (drop it silently), TERN_EIDENTITY for a prekey message under an identity
 * that is not trusted (its key is recorded as pending and the message is
 * not consumed: keep it and decrypt again after sig_identity_accept),
 * TERN_EDECRYPT for anything else that fails (bad MAC, no session, bad
 * padding, malformed bytes, unknown type byte). TERN_ETOOBIG (out has no
 * room for the plaintext) and bad padding leave the session untouched:
 * the same bytes decrypt again with a larger out. TERN_EDB and
 * TERN_ENOMEM are not the message's fault: keep it and retry.
 */
int sig_decrypt(struct sig *s, const char *user, uint32_t device,
    const uint8_t *in, size_t len, struct buf_writer *out) TERN_WUR;

/*
 * Trust. sig_identity_pending: 1 if some device of user has a pending
 * identity key, else 0. sig_identity_accept: every pending key of user
 * becomes the trusted one, the old sessions with those devices are
 * deleted, and "verified" is cleared. sig_verified_get/set: the user's
 * verified mark (set only if user has trusted keys: else TERN_ENOTFOUND).
 */
int sig_identity_pending(struct sig *s, const char *user);
int sig_identity_accept(struct sig *s, const char *user) TERN_WUR;
int sig_verified_get(struct sig *s, const char *user);
int sig_verified_set(struct sig *s, const char *user, int verified)
    TERN_WUR;

/*
 * sig_fingerprint: the 60-digit safety number (NUL-terminated in out)
 * between us (local_user: our identity key plus the trusted keys of
 * local_user's other devices we know) and user (the trusted keys of all
 * its known devices), libsignal's fingerprint generator with
 * SIG_FINGERPRINT_ITER iterations over the sorted key lists. Same digits
 * on both sides when both know the same devices. TERN_ENOTFOUND when no
 * key of user is known.
 */
int sig_fingerprint(struct sig *s, const char *local_user,
    const char *user, char out[SIG_FINGERPRINT_LEN + 1]) TERN_WUR;

/* Padding, exposed for tests: sig_pad appends pt and its padding to out;
 * sig_unpad returns the unpadded length of in, or TERN_EDECRYPT. */
int sig_pad(const uint8_t *pt, size_t len, struct buf_writer *out) TERN_WUR;
int sig_unpad(const uint8_t *in, size_t len, size_t *outlen) TERN_WUR;

#endif
