/*
 * client.h: one device's connection to its home node (SPEC.md, sections
 * 2-4), shared by the tests, the benchmark tool, the tern CLI and the
 * terminal UI.
 *
 * A client connects to its node (Noise XX, pinning the node's key once
 * known), logs in (or registers a new user), and then keeps the link up:
 * it sends PING when it has sent nothing for a while, notices a silent
 * node, and reconnects after a drop with exponential backoff and full
 * jitter. Envelopes given to client_send wait in an in-memory outbox until
 * the node answers SENT or ERROR; those the node has not answered when the
 * link drops are written again, with the same id, after the next login (the
 * node drops duplicates by id). Other requests are not repeated: they fail
 * with TERN_ECLOSED when their connection ends.
 *
 * Everything runs on the loop thread and every callback is called from it.
 * Callbacks may call any client function, client_close included; the
 * client is freed later, from a close callback of its own handles, just
 * before client_close's callback runs: never in the middle of a callback
 * chain. As in libuv, a function that
 * takes a callback and fails synchronously never calls that callback.
 *
 * Memory: an idle client holds its struct (a few hundred bytes), one timer
 * and, while connected, one net connection (no buffers of its own while
 * idle). Many clients should share one struct net_loop (client_config.nl):
 * that is where the read buffer lives.
 */
#ifndef TERN_CLIENT_H
#define TERN_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "msg.h"
#include "net.h"
#include "noise.h"
#include "tern_err.h"

#define CLIENT_PORT_DEFAULT 7370           /* SPEC.md section 1 */
#define CLIENT_BACKOFF_MIN_DEFAULT 250     /* ms: first reconnect window */
#define CLIENT_BACKOFF_MAX_DEFAULT 30000   /* ms: largest window */
#define CLIENT_KEEPALIVE_DEFAULT 30000     /* ms without sending: PING */
#define CLIENT_OUTBOX_MAX_DEFAULT 1024     /* envelopes waiting for SENT */
/* ACKs are gathered for up to this long (SPEC.md 7.3), so that a burst of
 * DELIVERs costs one frame of ACKs, not one each. */
#define CLIENT_ACK_DELAY_DEFAULT 10        /* ms */
/* ... and at most this many: half the node's fetch window (64
 * unacknowledged, SPEC.md 7.4), so gathering never stalls a drain. */
#define CLIENT_ACK_GATHER_MAX 32
/* Longer would outlast the reference node's write-back hold (SPEC.md 7.3),
 * so it would write to disk what a prompt ACK withdraws. */
#define CLIENT_ACK_DELAY_MAX 250           /* ms */
/* Bytes of encoded SENDs in the outbox. Kept well under net's per-
 * connection output cap (NET_OUT_LIMIT_DEFAULT), so that writing the whole
 * outbox again after a reconnect always fits. */
#define CLIENT_OUTBOX_BYTES_DEFAULT (1024u * 1024)

struct client;

/* What the state callback reports. */
enum client_state {
	CLIENT_IDLE = 0,     /* created, not started */
	CLIENT_CONNECTING,   /* TCP, handshake, then LOGIN or REGISTER */
	CLIENT_ONLINE,       /* logged in: envelopes and requests flow */
	CLIENT_WAITING,      /* link lost; reconnecting after delay_ms */
	CLIENT_CLOSED        /* stopped; client_start may start it again */
};

struct client_config {
	const char *host;           /* node's IP address, a literal (name
	                               resolution belongs to the caller);
	                               copied */
	uint16_t port;              /* node's client port */
	const uint8_t *node_key;    /* node's static public key (32 bytes,
	                               copied) or NULL: learnt by XX on first
	                               contact, then pinned */
	const uint8_t *device_key;  /* our static private key (32 bytes,
	                               copied, wiped when the client goes) */
	const char *user;           /* our address, local@domain; copied */
	uint32_t device_id;         /* ours; 0: not registered yet */
	uint32_t backoff_min_ms;    /* first reconnect window; 0: default */
	uint32_t backoff_max_ms;    /* largest window; 0: default */
	uint32_t keepalive_ms;      /* PING after this long without sending;
	                               the node is dead after twice this long
	                               without a byte; 0: default */
	uint32_t outbox_max;        /* envelopes; 0: default */
	uint32_t outbox_max_bytes;  /* encoded bytes; 0: default */
	bool reconnect;             /* reconnect after a drop */
	bool auto_ack;              /* ACK each DELIVER once deliver returns */
	uint32_t ack_delay_ms;      /* ACKs gathered at most this long before
	                               they are written (they also go with
	                               anything else we write); 0: at once.
	                               client_config_init sets the default;
	                               at most CLIENT_ACK_DELAY_MAX */
	struct net_loop *nl;        /* shared net loop on the same uv loop, or
	                               NULL: the client makes its own */
};

/*
 * Callbacks, all optional. Borrowed pointers are valid only during the
 * call; c may be used (client_ack, client_send, client_close, ...).
 */
struct client_cbs {
	/* state: st entered because of err (0: none; e.g. TERN_EAUTH when
	 * the node refused LOGIN, TERN_EUNREACH when it could not be
	 * reached). delay_ms: for CLIENT_WAITING, the wait before the next
	 * attempt; else 0. Called for every entry into WAITING, otherwise
	 * when the state changes. */
	void (*state)(struct client *c, enum client_state st, int err,
	    uint32_t delay_ms);
	/* sent: the envelope id (borrowed) left the outbox: 0 when the node
	 * answered SENT, else -code of its ERROR (TERN_EQUOTA, TERN_ENOUSER,
	 * ...), or TERN_ECLOSED for an ephemeral envelope whose link dropped
	 * or for any envelope still waiting at client_close. Exactly once per
	 * envelope client_send accepted. */
	void (*sent)(struct client *c, const uint8_t id[MSG_ID_LEN],
	    int status);
	/* deliver: an envelope for us; its texts and payload are borrowed.
	 * Acknowledge it with client_ack (or set auto_ack); until then the
	 * node may deliver it again (drop duplicates by id). */
	void (*deliver)(struct client *c, const struct msg_deliver *d);
	/* notice: something happened to an envelope we sent; acknowledged
	 * automatically when notice returns. */
	void (*notice)(struct client *c, const struct msg_notice *n);
	/* presence: a user we subscribed to (PRESENCE_SUB) changed. */
	void (*presence)(struct client *c, const struct msg_presence *p);
	/* keys_count: the node pushed KEYS_COUNT (SPEC.md 12.2): a bundle
	 * fetch left this device few one-time prekeys; time to upload. */
	void (*keys_count)(struct client *c, const struct msg_keys_count *k);
};

/* Answer to client_request: status 0 and the response (OK, PROFILE,
 * ...), or -code and the ERROR, or TERN_ETYPE and the unexpected message,
 * or TERN_ECLOSED and NULL (the link dropped or the client closed). resp
 * is borrowed. Called exactly once. */
typedef void (*client_resp_cb)(void *arg, int status,
    const struct msg *resp);
/* Answer carrying a device id (REGISTERED, DEVICE_ADDED); id is 0 on
 * failure. Called exactly once. */
typedef void (*client_id_cb)(void *arg, int status, uint32_t device_id);

/* client_config_init: zeroes cfg and sets the defaults (reconnect on,
 * default port); the caller then fills host, keys and user. */
void client_config_init(struct client_config *cfg);

/*
 * client_new: a client on loop with the given configuration (copied) and
 * callbacks (cbs is borrowed and must outlive the client; may be NULL).
 * data is the owner's, see client_data. Nothing happens on the network
 * until client_start or client_register. TERN_EINVAL for a host that is
 * not an IP literal, a missing key or a bad address; TERN_ENOMEM.
 * On success the caller owns *out and releases it with client_close.
 */
int client_new(uv_loop_t *loop, const struct client_config *cfg,
    const struct client_cbs *cbs, void *data, struct client **out) TERN_WUR;

/* client_start: connect and LOGIN, and keep doing so. Needs a device id
 * (else TERN_ESTATE: register first) and an IDLE or CLOSED client. */
int client_start(struct client *c) TERN_WUR;

/*
 * client_register: like client_start for a device with no id yet: the
 * first connection that opens sends REGISTER(user, invite, device_name)
 * instead of LOGIN. On REGISTERED the device id is kept (later reconnects
 * use LOGIN) and cb gets it; the client is ONLINE. On ERROR (TERN_EEXIST,
 * TERN_EDENIED, ...) or if that connection drops before the answer, cb
 * gets the error and the client goes CLOSED with it: a REGISTER whose
 * outcome is unknown is not repeated. invite may be NULL or "" (open
 * registration); both texts are copied (at most 64 bytes of UTF-8).
 */
int client_register(struct client *c, const char *invite,
    const char *device_name, client_id_cb cb, void *arg) TERN_WUR;

/*
 * client_close: stops everything. Envelopes still in the outbox get sent
 * with TERN_ECLOSED, pending requests their callback with TERN_ECLOSED,
 * and the state callback reports CLOSED (if it was not already); then,
 * once every handle the client opened is closed, cb(arg) runs (cb may be
 * NULL) and the client is gone. Safe from callbacks; a second call does
 * nothing.
 */
void client_close(struct client *c, void (*cb)(void *), void *arg);

/*
 * client_send: copies one envelope into the outbox; it is written when the
 * client is ONLINE and leaves through the sent callback. id is the
 * sender's envelope id (client_envelope_id), to the recipient's address (NUL-
 * terminated), cls an enum msg_class. Errors: TERN_EBUSY when the outbox
 * is full, TERN_EEXIST when id is already in it, TERN_EFIELD for a bad
 * address, TERN_ETOOBIG for a payload over MSG_PAYLOAD_MAX, TERN_EINVAL
 * for device 0 or an unknown class, TERN_ECLOSED for an ephemeral
 * envelope while the client is neither CONNECTING nor ONLINE (it would be
 * dropped anyway), TERN_ESTATE after client_close, TERN_ENOMEM.
 */
int client_send(struct client *c, const uint8_t id[MSG_ID_LEN],
    const char *to, uint32_t to_device, uint8_t cls, uint64_t ts_ms,
    const uint8_t *payload, size_t len) TERN_WUR;

/*
 * client_envelope_id: a new envelope id in SPEC.md 4.15's form: the
 * clock's Unix milliseconds in bytes 0-5 (big-endian), then 10 random
 * bytes. Ids in time order keep the node's index of queued ids
 * append-mostly; random ones cost its writer a quarter more per envelope
 * (BENCHMARKS.md, fourth session). The time says nothing the SEND's
 * timestamp_ms does not.
 */
void client_envelope_id(uint8_t id[MSG_ID_LEN]);

/* client_ack: sends ACK(id) for a DELIVER (or a NOTICE), gathered with
 * others for up to ack_delay_ms. TERN_ECLOSED when not ONLINE: the node
 * will deliver the envelope again anyway; so it does for gathered ACKs
 * that a dropped link never carried. client_close writes them first. */
int client_ack(struct client *c, const uint8_t id[MSG_ID_LEN]) TERN_WUR;

/*
 * client_request: sends m, a client request (PING, DEVICE_ADD,
 * DEVICE_LIST, DEVICE_REMOVE, PROFILE_SET, PROFILE_GET, PRIVACY_SET,
 * CONTACT_ADD, CONTACT_REMOVE, CONTACT_LIST, PRESENCE_SUB,
 * PRESENCE_UNSUB, KEYS_PUT, KEYS_STATUS, BUNDLE_GET), with a fresh non-zero req written into m->req; cb
 * gets the answer matched by req. m's pointers are only read during the
 * call. Errors: TERN_ESTATE when not ONLINE (requests are not queued),
 * TERN_EINVAL for another type (SEND goes through client_send, ACK
 * through client_ack), an encoding error from msg_encode, TERN_ENOMEM.
 */
int client_request(struct client *c, struct msg *m, client_resp_cb cb,
    void *arg) TERN_WUR;

/* client_device_add: DEVICE_ADD for another device of ours, by its Noise
 * static public key; cb gets its device id. As client_request. */
int client_device_add(struct client *c, const uint8_t key[NOISE_DHLEN],
    const char *device_name, client_id_cb cb, void *arg) TERN_WUR;

/* Accessors. */
void *client_data(const struct client *c);
enum client_state client_state(const struct client *c);
uint32_t client_device_id(const struct client *c); /* 0: none yet */
size_t client_outbox_len(const struct client *c);  /* envelopes */
/* client_node_key: copies the node's key (configured or learnt) to out;
 * TERN_ENOTFOUND if none is known yet. */
int client_node_key(const struct client *c, uint8_t out[NOISE_DHLEN])
    TERN_WUR;

#endif
