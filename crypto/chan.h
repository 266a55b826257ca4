/*
 * chan.h: tern's secure channel without I/O.
 *
 * One chan is one side of one connection: it turns the bytes that arrive
 * into whole, authenticated messages and turns messages into the bytes to
 * send. The caller owns the socket; the chan never reads, writes or sleeps,
 * so the same code runs in the node, the client, federation links, tests
 * and fuzzers (SPEC.md, "Transport").
 *
 * Wire, in order:
 *   initiator: preamble "TN" <version> <pattern> (4 bytes; version 2, a
 *              responder also takes 1; pattern 1 XX, 2 IK)
 *   both:      handshake messages, each behind a u16 big-endian length
 *   both:      transport frames: u16 big-endian length, then a Noise
 *              transport message whose plaintext is <u8 flags><body>;
 *              flags bit 0 (CHAN_FLAG_MORE) says the message continues in
 *              the next frame. A message is reassembled up to a cap.
 *              Version 2: flags bit 1 (CHAN_FLAG_BATCH) says the body is
 *              whole messages, each behind a u16 big-endian length, so
 *              that one AEAD call carries many small messages.
 */
#ifndef TERN_CHAN_H
#define TERN_CHAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "noise.h"
#include "tern_err.h"

#define CHAN_PREAMBLE_LEN 4
#define CHAN_MAGIC0 'T'
#define CHAN_MAGIC1 'N'
#define CHAN_VERSION 2             /* what we send: batches allowed */
#define CHAN_VERSION_MIN 1         /* oldest a responder takes */
#define CHAN_HS_MAX 1024          /* cap on one handshake message */
#define CHAN_FRAME_MAX 65535      /* cap on one transport frame (Noise) */
#define CHAN_FRAME_MIN (NOISE_TAGLEN + 1) /* tag plus the flags byte */
#define CHAN_FRAGMENT_MAX (CHAN_FRAME_MAX - NOISE_TAGLEN - 1)
#define CHAN_FLAG_MORE 0x01       /* message continues in the next frame */
#define CHAN_FLAG_BATCH 0x02      /* body: u16-length-prefixed messages */
/* Largest plaintext (flags included) of a batch frame we build. Bigger
 * saves little per AEAD call and costs a bigger buffer per busy
 * connection; a message that does not fit goes out in frames of its own. */
#define CHAN_BATCH_MAX 16384
#define CHAN_HANDSHAKE_TIMEOUT_MS 10000 /* responder's handshake deadline */

enum chan_pattern {
	CHAN_XX = 1, /* first contact: the responder's key is learnt */
	CHAN_IK = 2  /* fast reconnect: the responder's key is known */
};

enum chan_role {
	CHAN_INITIATOR = 1, /* connects */
	CHAN_RESPONDER = 2  /* accepts */
};

/* What the connection is for; it goes into the Noise prologue, so a
 * client handshake can never be replayed to a federation port. */
enum chan_kind {
	CHAN_KIND_CLIENT = 1,     /* device <-> its home node */
	CHAN_KIND_FEDERATION = 2  /* node <-> node */
};

enum chan_state {
	CHAN_S_PREAMBLE = 1, /* responder waits for the preamble */
	CHAN_S_HANDSHAKE,    /* Noise handshake under way */
	CHAN_S_OPEN,         /* transport frames flow */
	CHAN_S_FAILED        /* an error ended the channel */
};

struct chan_cbs {
	/*
	 * reserve: room for n bytes of outgoing wire data, appended to what
	 * is queued for the peer. The pointer is used at once and not kept.
	 * NULL means the bytes can't be queued (memory, or the peer's output
	 * cap): the chan fails the call with TERN_ENOMEM.
	 */
	uint8_t *(*reserve)(void *arg, size_t n);
	/* open: the handshake finished; chan_remote_key() is the peer's
	 * static key. Nonzero stops feeding and is returned by chan_feed. */
	int (*open)(void *arg);
	/* message: one whole message, borrowed until return. Nonzero stops
	 * feeding and is returned by chan_feed. */
	int (*message)(void *arg, const uint8_t *msg, size_t len);
};

struct chan {
	const struct chan_cbs *cbs;  /* callbacks */
	void *arg;                   /* their argument */
	struct noise_handshake *hs;  /* heap, only during the handshake (with
	                              * the key the peer must have: chan.c) */
	struct noise_cipher tx;      /* our sending cipher once open */
	struct noise_cipher rx;      /* our receiving cipher once open */
	uint8_t rs[NOISE_DHLEN];     /* peer's static key once known */
	uint8_t state;               /* enum chan_state */
	uint8_t role;                /* enum chan_role */
	uint8_t pattern;             /* enum chan_pattern */
	uint8_t kind;                /* enum chan_kind */
	uint8_t version;             /* transport version of this connection */
	bool batching;               /* chan_send may stage (chan_set_batching) */
	bool has_s_pub;              /* responder: our public key is in tx.k */
	uint8_t hdr[CHAN_PREAMBLE_LEN]; /* partial preamble or length */
	uint8_t hdr_len;             /* bytes in hdr */
	uint8_t *pend;               /* partial frame body (heap) or NULL */
	uint32_t pend_len;           /* bytes in pend */
	uint32_t pend_need;          /* frame length pend is filling up to */
	uint8_t *msg;                /* message being reassembled, or NULL */
	uint32_t msg_len;            /* bytes in msg */
	uint32_t msg_cap;            /* largest message accepted */
	int err;                     /* first error, once failed */
	uint16_t stage_len;          /* bytes in stage, flags byte included */
	uint16_t stage_cap;          /* allocated */
	uint8_t *stage;              /* batch being built (plaintext) or NULL */
	const uint8_t *test_e;       /* fixed ephemeral (tests), borrowed */
};

/*
 * chan_init: a channel for role and kind with our static private key and,
 * if not NULL, its public key (which must match it): a caller that keeps
 * the pair saves each handshake an X25519 operation (NULL: computed).
 * Initiators choose the pattern; for IK, rs is the responder's key and is
 * required; for XX, rs (if not NULL) is the key the responder must prove,
 * else any key is accepted and the caller checks chan_remote_key().
 * Responders pass pattern 0 (the initiator's preamble picks it) and rs NULL.
 * msg_cap is the largest message the peer may send; it can be raised later
 * (after authentication) with chan_set_msg_cap.
 */
int chan_init(struct chan *c, enum chan_role role, enum chan_kind kind,
    enum chan_pattern pattern, const uint8_t s_priv[NOISE_DHLEN],
    const uint8_t *s_pub, const uint8_t *rs, uint32_t msg_cap,
    const struct chan_cbs *cbs, void *arg) TERN_WUR;

/* chan_start: the initiator queues its preamble and first handshake
 * message. Responders don't call it. */
int chan_start(struct chan *c) TERN_WUR;

/*
 * chan_feed: processes bytes received from the peer. in is modified
 * (frames are decrypted in place). Calls open and message as they
 * complete; a partial frame is kept until more bytes come. Returns 0, a
 * callback's nonzero result, or an error after which the chan is FAILED:
 * TERN_EVERSION / TERN_EPATTERN (preamble), TERN_ETOOBIG (frame or message
 * over its cap), TERN_ETRUNC (frame too short), TERN_EFIELD (unknown
 * flags, non-empty handshake payload), TERN_EDECRYPT (tampered, replayed
 * or reordered frame), TERN_EAUTH (responder's key not the expected one),
 * TERN_ENOMEM.
 */
int chan_feed(struct chan *c, uint8_t *in, size_t len) TERN_WUR;

/* chan_send: queues msg (callers keep to the peer's cap, MSG_MAX) as one
 * or more encrypted frames. Works when open, and after a receive error
 * (so one last ERROR message can go out before the close). With batching
 * on, a small message is staged instead, to go out with the others of
 * this turn at chan_flush; bigger ones flush the stage first, so order
 * holds. */
int chan_send(struct chan *c, const uint8_t *msg, size_t len) TERN_WUR;

/*
 * chan_set_batching: lets chan_send stage small messages (off by default).
 * Only a version 2 connection batches; the owner must call chan_flush
 * before it writes what reserve gave it, at least once per loop turn.
 */
void chan_set_batching(struct chan *c, bool on);
/* chan_flush: encrypts the staged messages as one frame (a lone message
 * as a plain frame) into reserve's space. Errors fail the chan. */
int chan_flush(struct chan *c) TERN_WUR;
/* chan_staged: plaintext bytes waiting for chan_flush. */
size_t chan_staged(const struct chan *c);
/* chan_trim: gives back an empty stage buffer (a quiet connection). */
void chan_trim(struct chan *c);

void chan_set_msg_cap(struct chan *c, uint32_t msg_cap);
bool chan_is_open(const struct chan *c);
/* The peer's static key once the handshake has revealed it, else NULL. */
const uint8_t *chan_remote_key(const struct chan *c);

/* chan_wipe: wipes keys and frees buffers; the chan can be dropped. */
void chan_wipe(struct chan *c);

/* Test hook: an initiator speaks transport version v (1 or 2) instead of
 * CHAN_VERSION, to test a responder with an older peer. Before chan_start. */
int chan_test_set_version(struct chan *c, uint8_t v) TERN_WUR;

/* Test hook: fix the ephemeral key (vectors, fuzz seeds). Not for use in
 * the node or the client. */
int chan_test_set_ephemeral(struct chan *c,
    const uint8_t e_priv[NOISE_DHLEN]) TERN_WUR;

/* chan_prologue: the Noise prologue for a kind and preamble (SPEC.md). */
size_t chan_prologue(enum chan_kind kind,
    const uint8_t preamble[CHAN_PREAMBLE_LEN], uint8_t *out, size_t cap);

#endif
