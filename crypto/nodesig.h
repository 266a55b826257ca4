/*
 * nodesig.h: a node signs with its static X25519 key (SPEC.md 13.5).
 *
 * XEdDSA (as Signal signs prekeys with identity keys), so the key a node
 * already publishes in TXT _tern-key and proves in every Noise handshake
 * is also its signing key: nothing new to publish, pin or rotate. A
 * signature is 64 bytes; verification needs only the 32-byte public key.
 *
 * What is signed for a relayed envelope (FED_RENV) is
 *
 *   NODESIG_ENV_CONTEXT (24 ASCII bytes, no NUL)
 *   || the FED_ENV body: id, from, from_device, to, to_device, class,
 *      timestamp_ms, received_ms, payload, encoded exactly as in a
 *      FED_ENV message after its 6-byte header (SPEC.md 13.1)
 *
 * so a relay can neither forge an envelope nor change any field of one
 * without the home node noticing.
 */
#ifndef TERN_NODESIG_H
#define TERN_NODESIG_H

#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "tern_err.h"

#define NODESIG_KEY_LEN 32
#define NODESIG_LEN 64
#define NODESIG_ENV_CONTEXT "tern relayed envelope v1"

/*
 * nodesig_sign: sig = XEdDSA signature of msg[0..len) by the X25519
 * private key priv (any 32 bytes: it is clamped as X25519 clamps, so the
 * signature verifies under the public key X25519 derives from priv).
 * TERN_ENOMEM, TERN_EKEY (libsignal refused). Wipes its copies of priv.
 */
int nodesig_sign(const uint8_t priv[NODESIG_KEY_LEN], const uint8_t *msg,
    size_t len, uint8_t sig[NODESIG_LEN]) TERN_WUR;

/* nodesig_verify: 0 if sig is pub's signature of msg[0..len), else
 * TERN_EAUTH (also for a key that is not a valid point). */
int nodesig_verify(const uint8_t pub[NODESIG_KEY_LEN], const uint8_t *msg,
    size_t len, const uint8_t sig[NODESIG_LEN]) TERN_WUR;

/* nodesig_env_sign / nodesig_env_verify: the same over an envelope's
 * signed bytes (above). TERN_EFIELD (or the codec's error) for an
 * envelope the codec would refuse. */
int nodesig_env_sign(const uint8_t priv[NODESIG_KEY_LEN],
    const struct msg_fed_env *e, uint8_t sig[NODESIG_LEN]) TERN_WUR;
int nodesig_env_verify(const uint8_t pub[NODESIG_KEY_LEN],
    const struct msg_fed_env *e, const uint8_t sig[NODESIG_LEN]) TERN_WUR;

#endif
