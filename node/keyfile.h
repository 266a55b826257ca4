/*
 * keyfile.h: the node's secret files: its X25519 static key (Noise) and
 * the admin API token.
 *
 * Both are one line of 64 lowercase hex characters and a newline, so an
 * operator can back them up, diff or paste them without a tool. They are
 * created once (O_EXCL: never overwritten, since a new node key makes the
 * node a stranger to every peer that knew it), with mode 0600, and synced
 * together with their directory so that a crash right after `ternd init`
 * cannot leave a name pointing at an empty file.
 *
 * Loading refuses, like ssh does for its keys, a file that is not a
 * regular file, not owned by the user running the node, or readable or
 * writable by group or others: a leaked key cannot be recalled, so a
 * careless mode is an error to fix, not a warning to scroll past.
 *
 * Secrets are wiped (sodium_memzero) from every buffer here before
 * return. Callers wipe what they are handed.
 */
#ifndef TERN_KEYFILE_H
#define TERN_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#include "tern_err.h"

#define KEYFILE_KEY_LEN 32     /* X25519 private and public key */
#define KEYFILE_TOKEN_LEN 32   /* random bytes in the admin token */
#define KEYFILE_HEX_LEN 64     /* hex characters in either file */
#define KEYFILE_B64_MAX 45     /* base64 of a key with padding and NUL */
#define KEYFILE_ERR_MAX 512    /* enough for any error message */

/*
 * keyfile_create: makes a new X25519 key pair and writes the private key
 * to path (must not exist), mode 0600, synced with its directory. The
 * public key goes to pub_out. TERN_EEXIST if path exists, TERN_EIO if it
 * cannot be written (a partial file is removed).
 */
int keyfile_create(const char *path, uint8_t pub_out[KEYFILE_KEY_LEN])
    TERN_WUR;

/*
 * keyfile_load: reads the private key at path and derives its public key.
 * Returns 0, TERN_EIO if the file cannot be opened or read, or TERN_EKEY
 * if it is unsafe (see above) or malformed (not exactly 64 hex characters
 * and an optional newline); err (errlen bytes, may be NULL) then says why
 * in a sentence naming the file. priv_out is secret: the caller wipes it.
 */
int keyfile_load(const char *path, uint8_t priv_out[KEYFILE_KEY_LEN],
    uint8_t pub_out[KEYFILE_KEY_LEN], char *err, size_t errlen) TERN_WUR;

/*
 * keyfile_token_create: writes a new admin token (KEYFILE_TOKEN_LEN random
 * bytes as hex) to path, like keyfile_create. The caller reads it back
 * with keyfile_token_load when it needs it.
 */
int keyfile_token_create(const char *path) TERN_WUR;

/*
 * keyfile_token_load: the token at path as 64 hex characters and a NUL in
 * out (cap >= KEYFILE_HEX_LEN + 1, else TERN_EINVAL). Checks and errors as
 * keyfile_load. The token is secret: the caller wipes out.
 */
int keyfile_token_load(const char *path, char *out, size_t cap, char *err,
    size_t errlen) TERN_WUR;

/* keyfile_pub_base64: pub in standard base64 with padding (44 characters
 * and a NUL) in out; TERN_ETOOBIG if cap < KEYFILE_B64_MAX. */
int keyfile_pub_base64(const uint8_t pub[KEYFILE_KEY_LEN], char *out,
    size_t cap) TERN_WUR;

/* keyfile_hex: n bytes as 2n lowercase hex characters and a NUL in out;
 * TERN_ETOOBIG if cap < 2n + 1. */
int keyfile_hex(const uint8_t *bin, size_t n, char *out, size_t cap)
    TERN_WUR;

/* keyfile_unhex: exactly 2n hex characters (either case) of hex[0..len)
 * into n bytes; TERN_EFIELD for any other length or a non-hex byte. */
int keyfile_unhex(const char *hex, size_t len, uint8_t *out, size_t n)
    TERN_WUR;

#endif
