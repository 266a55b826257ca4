/*
 * noise.h: the Noise Protocol Framework (revision 34) for DH 25519,
 * cipher ChaChaPoly and hash BLAKE2b, on libsodium.
 *
 * The handshake is the spec's HandshakeState: a generic engine driven by the
 * tokens of a pattern (interactive, one-way, deferred and psk patterns). tern
 * itself speaks Noise_XX_25519_ChaChaPoly_BLAKE2b (first contact) and
 * Noise_IK_25519_ChaChaPoly_BLAKE2b (reconnect to a known responder); the
 * other patterns exist so the engine can be checked against every published
 * vector for this cipher suite.
 *
 * All structs may live on the stack; every one has a _wipe function that
 * zeroes its secrets, and the engine wipes on every failure path it owns.
 * Nothing here allocates.
 */
#ifndef TERN_NOISE_H
#define TERN_NOISE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tern_err.h"

#define NOISE_DHLEN 32         /* X25519 key and result size */
#define NOISE_HASHLEN 64       /* BLAKE2b output */
#define NOISE_BLOCKLEN 128     /* BLAKE2b block, for HMAC */
#define NOISE_KEYLEN 32        /* cipher key */
#define NOISE_TAGLEN 16        /* Poly1305 tag */
#define NOISE_PSKLEN 32        /* pre-shared key */
#define NOISE_MAX_MSG 65535    /* cap on any Noise message, spec section 3 */
#define NOISE_MAX_TOKENS 8     /* tokens in one message pattern */
#define NOISE_MAX_MESSAGES 8   /* message patterns in a handshake */
#define NOISE_MAX_PSKS 4       /* psk tokens in one pattern */
#define NOISE_MAX_NAME 64      /* protocol-name length cap */

/* The spec's CipherState. */
struct noise_cipher {
	uint8_t k[NOISE_KEYLEN]; /* key; meaningless unless has_key */
	uint64_t n;              /* next nonce */
	bool has_key;            /* InitializeKey ran with a key */
};

/*
 * noise_cipher_encrypt is EncryptWithAd: with no key it copies the plaintext.
 * out needs inlen + NOISE_TAGLEN bytes (inlen when there is no key); out may
 * equal in. Fails with TERN_ENONCE once n reaches 2^64-1, TERN_ETOOBIG if the
 * result would exceed NOISE_MAX_MSG or outcap.
 */
int noise_cipher_encrypt(struct noise_cipher *c, const uint8_t *ad,
    size_t adlen, const uint8_t *in, size_t inlen, uint8_t *out,
    size_t outcap, size_t *outlen) TERN_WUR;

/*
 * noise_cipher_decrypt is DecryptWithAd. On TERN_EDECRYPT the nonce is not
 * advanced (the spec's rule) and out holds nothing useful.
 */
int noise_cipher_decrypt(struct noise_cipher *c, const uint8_t *ad,
    size_t adlen, const uint8_t *in, size_t inlen, uint8_t *out,
    size_t outcap, size_t *outlen) TERN_WUR;

/* noise_cipher_rekey is the spec's Rekey(). */
void noise_cipher_rekey(struct noise_cipher *c);
void noise_cipher_wipe(struct noise_cipher *c);

/* What the handshake expects next. */
enum noise_action {
	NOISE_ACTION_WRITE_MESSAGE = 1, /* call noise_handshake_write */
	NOISE_ACTION_READ_MESSAGE = 2,  /* call noise_handshake_read */
	NOISE_ACTION_SPLIT = 3,         /* handshake done: call _split */
	NOISE_ACTION_FAILED = 4         /* a step failed; state is wiped */
};

/* Pattern tokens (internal, but the struct below needs the size). */
enum noise_token {
	NOISE_TOK_E = 1,
	NOISE_TOK_S,
	NOISE_TOK_EE,
	NOISE_TOK_ES,
	NOISE_TOK_SE,
	NOISE_TOK_SS,
	NOISE_TOK_PSK
};

/* The spec's HandshakeState, with its SymmetricState inside. */
struct noise_handshake {
	/* SymmetricState */
	struct noise_cipher cs;      /* the CipherState */
	uint8_t ck[NOISE_HASHLEN];   /* chaining key */
	uint8_t h[NOISE_HASHLEN];    /* handshake hash */
	/* keys */
	uint8_t s_priv[NOISE_DHLEN]; /* local static private key */
	uint8_t s_pub[NOISE_DHLEN];  /* local static public key */
	uint8_t e_priv[NOISE_DHLEN]; /* local ephemeral private key */
	uint8_t e_pub[NOISE_DHLEN];  /* local ephemeral public key */
	uint8_t rs[NOISE_DHLEN];     /* remote static public key */
	uint8_t re[NOISE_DHLEN];     /* remote ephemeral public key */
	uint8_t psks[NOISE_MAX_PSKS][NOISE_PSKLEN]; /* psks in token order */
	bool has_s, has_e, has_rs, has_re; /* which keys are set */
	bool fixed_e;                /* e was set by the caller (tests only) */
	uint8_t npsks;               /* psks added */
	uint8_t psk_used;            /* psk tokens processed */
	bool psk_mode;               /* pattern has psk: "e" also MixKeys */
	/* pattern */
	bool initiator;              /* our role */
	bool one_way;                /* one-way pattern (N, K, X) */
	bool started;                /* pre-messages mixed in */
	uint8_t pre_init;            /* initiator pre-message tokens: bit0 e, bit1 s */
	uint8_t pre_resp;            /* responder pre-message tokens */
	uint8_t nmsgs;               /* message patterns */
	uint8_t msg_idx;             /* next message pattern to process */
	uint8_t ntok[NOISE_MAX_MESSAGES]; /* tokens per message */
	uint8_t tok[NOISE_MAX_MESSAGES][NOISE_MAX_TOKENS]; /* the tokens */
	bool failed;                 /* a step failed; everything wiped */
};

/*
 * noise_handshake_init: Initialize() for protocol_name, which must be
 * "Noise_<pattern>_25519_ChaChaPoly_BLAKE2b" with a pattern from the spec's
 * sections 7.4, 7.5 and 18 (fundamental, one-way, deferred) and optional
 * psk modifiers. Keys are set afterwards with the setters below, before
 * the first write or read. Fails with TERN_EPATTERN for anything else.
 */
int noise_handshake_init(struct noise_handshake *hs, const char *protocol_name,
    bool initiator, const uint8_t *prologue, size_t prologue_len) TERN_WUR;

/* Sets the local static key pair from its private key. */
int noise_handshake_set_static(struct noise_handshake *hs,
    const uint8_t priv[NOISE_DHLEN]) TERN_WUR;
/* noise_handshake_set_static_pair: the same with the public key given, for
 * a key that serves many handshakes (a node's): computing it is an X25519
 * operation, a fifth of a responder's XX handshake. pub must be priv's; a
 * wrong one only makes the handshake fail. */
int noise_handshake_set_static_pair(struct noise_handshake *hs,
    const uint8_t priv[NOISE_DHLEN], const uint8_t pub[NOISE_DHLEN]) TERN_WUR;
/* Sets the remote static public key (pre-message or known responder). */
int noise_handshake_set_remote_static(struct noise_handshake *hs,
    const uint8_t pub[NOISE_DHLEN]) TERN_WUR;
/* Fixes the local ephemeral key: for test vectors only. */
int noise_handshake_set_ephemeral(struct noise_handshake *hs,
    const uint8_t priv[NOISE_DHLEN]) TERN_WUR;
/* Adds the next pre-shared key, in the order the pattern's psk tokens use
 * them. */
int noise_handshake_add_psk(struct noise_handshake *hs,
    const uint8_t psk[NOISE_PSKLEN]) TERN_WUR;

enum noise_action noise_handshake_action(const struct noise_handshake *hs);

/*
 * noise_handshake_write: WriteMessage(payload). out must hold the message:
 * at most payload_len + 2*NOISE_DHLEN + 3*NOISE_TAGLEN bytes; the result is
 * capped at NOISE_MAX_MSG. On failure the state is wiped and the action
 * becomes FAILED.
 */
int noise_handshake_write(struct noise_handshake *hs, const uint8_t *payload,
    size_t payload_len, uint8_t *out, size_t outcap, size_t *outlen) TERN_WUR;

/*
 * noise_handshake_read: ReadMessage(msg). payload gets the decrypted payload.
 * A message over NOISE_MAX_MSG, a short one, a failed decryption or an
 * all-zero DH result fails and wipes the state.
 */
int noise_handshake_read(struct noise_handshake *hs, const uint8_t *msg,
    size_t msg_len, uint8_t *payload, size_t payload_cap,
    size_t *payload_len) TERN_WUR;

/*
 * noise_handshake_split: Split() into the initiator-to-responder and the
 * responder-to-initiator ciphers, then wipes the handshake's secrets (the
 * hash, remote static key and local static public key stay readable).
 */
int noise_handshake_split(struct noise_handshake *hs,
    struct noise_cipher *i2r, struct noise_cipher *r2i) TERN_WUR;

/* The handshake hash h (valid during and after the handshake). */
const uint8_t *noise_handshake_hash(const struct noise_handshake *hs);
/* The remote static key, or NULL when not (yet) known. */
const uint8_t *noise_handshake_remote_static(const struct noise_handshake *hs);

void noise_handshake_wipe(struct noise_handshake *hs);

/* Key helpers. */
void noise_keypair_generate(uint8_t priv[NOISE_DHLEN], uint8_t pub[NOISE_DHLEN]);
int noise_public_key(const uint8_t priv[NOISE_DHLEN],
    uint8_t pub[NOISE_DHLEN]) TERN_WUR;

/* The primitives, exposed for tests. HMAC is RFC 2104 over BLAKE2b. */
void noise_hash(const uint8_t *in, size_t len, uint8_t out[NOISE_HASHLEN]);
void noise_hmac(const uint8_t *key, size_t keylen, const uint8_t *in,
    size_t len, uint8_t out[NOISE_HASHLEN]);
/* HKDF as the spec's section 4.3 defines it, producing 2 or 3 outputs. */
void noise_hkdf(const uint8_t ck[NOISE_HASHLEN], const uint8_t *ikm,
    size_t ikm_len, uint8_t out1[NOISE_HASHLEN], uint8_t out2[NOISE_HASHLEN],
    uint8_t out3[NOISE_HASHLEN]);

#endif
