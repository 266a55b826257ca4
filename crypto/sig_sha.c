/*
 * sig_sha.c: SHA-256 for sig.c's HMAC provider on OpenSSL's low-level
 * SHA256_* functions. OpenSSL 3 marks them deprecated in favour of EVP,
 * whose per-digest provider context costs more than hashing the few dozen
 * bytes libsignal's HMACs cover (sig.c). They stay exported by libcrypto
 * 3 and run the same SHA-NI code, so this one file turns the deprecation
 * warnings off and nothing else sees the old API.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <stddef.h>

#include <openssl/sha.h>

#include "sig_internal.h"

_Static_assert(sizeof(SHA256_CTX) <= sizeof(struct sig_sha256),
    "struct sig_sha256 must hold a SHA256_CTX");
_Static_assert(_Alignof(SHA256_CTX) <= _Alignof(struct sig_sha256),
    "struct sig_sha256 must be aligned for a SHA256_CTX");

/* SHA256_Init/Update/Final only fail on a NULL context: ours never is. */
void
sig_sha256_init(struct sig_sha256 *c)
{
	(void)SHA256_Init((SHA256_CTX *)(void *)c);
}

void
sig_sha256_update(struct sig_sha256 *c, const uint8_t *p, size_t n)
{
	(void)SHA256_Update((SHA256_CTX *)(void *)c, p, n);
}

void
sig_sha256_final(struct sig_sha256 *c, uint8_t md[32])
{
	(void)SHA256_Final(md, (SHA256_CTX *)(void *)c);
}
