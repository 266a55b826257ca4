/*
 * app.h: the messaging core of one device, shared by the `tern` CLI and
 * the terminal UI (SPEC.md section 12).
 *
 * A profile is a directory holding one SQLite database (tern.db, mode
 * 0600): the device's account (address, device id, node address and pinned
 * node key, Noise key), its Signal keys and sessions (crypto/sig.h), the
 * local history and the ids of envelopes already handled. Several
 * processes may open one profile: every change is one IMMEDIATE
 * transaction and SQLite serialises them.
 *
 * The core connects through client.h, keeps the node stocked with prekeys,
 * encrypts each message once per device of the recipient and of our own
 * other devices, and turns what arrives into messages, receipts and typing
 * events. An envelope is acknowledged to the node only after what it
 * carried is committed locally, so nothing acknowledged is lost.
 *
 * Everything runs on the loop thread; every callback is called once.
 */
#ifndef TERN_APP_H
#define TERN_APP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "msg.h"
#include "tern_err.h"

#define APP_TEXT_MAX 32768          /* bytes of UTF-8 in one message */
#define APP_PREKEYS_TARGET 100      /* one-time prekeys kept on the node */
#define APP_PREKEYS_LOW 10          /* refill below this */
#define APP_PROFILE_PATH 4096

/* What a message's state is, as `tern status` prints it. */
enum app_state {
	APP_ST_PENDING = 0,    /* outgoing: not yet stored by the node */
	APP_ST_SENT = 1,       /* outgoing: stored by our node */
	APP_ST_DELIVERED = 2,  /* outgoing: a device of the peer has it;
	                          incoming: received */
	APP_ST_READ = 3,       /* outgoing: the peer read it; incoming: we
	                          marked it read */
	APP_ST_FAILED = 4,     /* outgoing: no device could be reached */
	APP_ST_UNDECRYPTABLE = 5 /* incoming: could not be decrypted */
};

/* A message, as stored and as reported. Texts borrowed in callbacks. */
struct app_msg {
	uint8_t id[MSG_ID_LEN];     /* end-to-end message id */
	const char *peer;           /* the conversation's other user */
	const char *from;           /* who wrote it (us for outgoing) */
	uint32_t from_device;
	bool outgoing;
	uint64_t sent_ms;           /* the writer's clock */
	uint64_t received_ms;       /* our node's or the sender's node's clock */
	const char *text;           /* NUL-terminated UTF-8 */
	int state;                  /* enum app_state */
};

struct app;

struct app_cbs {
	/* A new message arrived (or a copy of one we sent from another
	 * device), already committed. */
	void (*message)(struct app *a, const struct app_msg *m);
	/* The state of our message id changed (receipt). */
	void (*receipt)(struct app *a, const uint8_t id[MSG_ID_LEN],
	    const char *peer, int state);
	/* peer is typing (1) or stopped (0). */
	void (*typing)(struct app *a, const char *peer, int typing);
	/* Something the user must hear about: code TERN_EIDENTITY (peer's
	 * key changed: messages held until `tern accept`), TERN_EDECRYPT (a
	 * message could not be decrypted), ...; text is one line. */
	void (*warn)(struct app *a, int code, const char *peer,
	    const char *text);
	/* The connection went down/up (ONLINE 1, else 0); err why;
	 * retry_ms: when down, the wait before the next attempt (0 when
	 * not known or not retrying). */
	void (*link)(struct app *a, int up, int err, uint32_t retry_ms);
};

/* One conversation, for a list of them. Texts borrowed in callbacks. */
struct app_conv {
	const char *peer;           /* the other user */
	uint64_t last_ms;           /* time of the newest message */
	const char *last_text;      /* the newest message's text ("" if it
	                               could not be decrypted) */
	bool last_outgoing;         /* the newest message is ours */
	uint32_t unread;            /* incoming messages not marked read */
};

typedef void (*app_done_cb)(void *arg, int status);
typedef void (*app_send_cb)(void *arg, int status,
    const uint8_t id[MSG_ID_LEN]);

/*
 * app_open: opens (creating if needed) the profile in dir. cbs borrowed,
 * may be NULL. TERN_EIO (directory), TERN_EDB.
 */
int app_open(uv_loop_t *loop, const char *dir, const struct app_cbs *cbs,
    void *data, struct app **out) TERN_WUR;
/* app_close: disconnects and frees; cb(arg) once everything is closed. */
void app_close(struct app *a, void (*cb)(void *), void *arg);
void *app_data(const struct app *a);

/* app_registered: 1 if the profile holds a registered device. */
int app_registered(const struct app *a);
/* app_user: our address ("" before registration). */
const char *app_user(const struct app *a);
uint32_t app_device_id(const struct app *a);

/*
 * app_register: creates this device's keys, registers user at the node
 * host:port (IP literal), learns and pins the node key, uploads prekeys.
 * TERN_EEXIST if the profile is already registered. cb gets 0 once the
 * keys are on the node (the client stays online).
 */
int app_register(struct app *a, const char *user, const char *invite,
    const char *host, uint16_t port, app_done_cb cb, void *arg) TERN_WUR;

/*
 * Linking another device of a user (SPEC.md 6.4): on the new device,
 * app_link_key makes (or, asked again, repeats) its Noise key and keeps
 * user and node; the user authorizes that key from a registered device
 * with app_device_add, which answers the new device id; back on the new
 * device app_link_device stores that id, and app_start then logs in and
 * uploads the new device's own Signal keys.
 */
typedef void (*app_id_cb)(void *arg, int status, uint32_t device_id);
int app_link_key(struct app *a, const char *user, const char *host,
    uint16_t port, uint8_t pub[32]) TERN_WUR;
int app_link_device(struct app *a, uint32_t device_id) TERN_WUR;
int app_device_add(struct app *a, const uint8_t key[32], const char *name,
    app_id_cb cb, void *arg) TERN_WUR;

/* app_set_prekeys: how many one-time prekeys register and refills
 * upload (1..100; default APP_PREKEYS_TARGET). */
void app_set_prekeys(struct app *a, uint32_t n);

/*
 * app_reset_keys: a device restored without its Signal keys: makes a new
 * identity and prekeys and uploads them (needs app_start first). Peers
 * see an identity change. cb(0) once the node has them.
 */
int app_reset_keys(struct app *a, app_done_cb cb, void *arg) TERN_WUR;

/*
 * app_start: connects and logs in with the stored account; then checks
 * the node's prekey count and signed prekey age and uploads what is
 * missing. cb(0) when that is done. With reconnect false, a failure to
 * connect or log in ends in cb(error) (TERN_EUNREACH, TERN_EAUTH, ...);
 * with reconnect true the core keeps retrying and cb runs on the first
 * success. TERN_ESTATE if not registered.
 */
int app_start(struct app *a, bool reconnect, app_done_cb cb, void *arg)
    TERN_WUR;

/*
 * app_send_text: one message to user: fetches device lists and bundles as
 * needed, encrypts for each device of user and each of our other devices,
 * commits, sends; cb(0, id) once the node stored it for at least one
 * device of user (the message is then SENT), else an error: TERN_ENOUSER,
 * TERN_EIDENTITY (a key of user changed: nothing was sent), TERN_EQUOTA,
 * ... Text is UTF-8, at most APP_TEXT_MAX bytes.
 */
int app_send_text(struct app *a, const char *user, const char *text,
    app_send_cb cb, void *arg) TERN_WUR;

/* app_send_typing: an ephemeral typing indicator (1 started, 0 stopped). */
int app_send_typing(struct app *a, const char *user, int typing) TERN_WUR;

/* app_mark_read: every received message from user not yet read is marked
 * read and a READ receipt goes to user's devices; cb(0) when stored. */
int app_mark_read(struct app *a, const char *user, app_done_cb cb,
    void *arg) TERN_WUR;

/* app_msg_state: the state of message id; TERN_ENOTFOUND. */
int app_msg_state(struct app *a, const uint8_t id[MSG_ID_LEN], int *state)
    TERN_WUR;

/*
 * Trust. app_fingerprint: the safety number with user (fetching user's
 * keys first if none are known; cb-less: call after app_known_keys).
 * app_accept: accept user's changed identity key and decrypt the messages
 * held meanwhile. app_verify_mark: store that the user compared the
 * numbers.
 */
int app_fetch_keys(struct app *a, const char *user, app_done_cb cb,
    void *arg) TERN_WUR;
int app_fingerprint(struct app *a, const char *user, char out[61])
    TERN_WUR;
int app_verified(struct app *a, const char *user);
int app_verify_mark(struct app *a, const char *user) TERN_WUR;
int app_identity_pending(struct app *a, const char *user);
int app_accept(struct app *a, const char *user) TERN_WUR;

/* app_request: a plain node request (PROFILE_SET, CONTACT_ADD, ...), as
 * client_request. */
int app_request(struct app *a, struct msg *m,
    void (*cb)(void *arg, int status, const struct msg *resp), void *arg)
    TERN_WUR;
/* app_presence_sub: PRESENCE_SUB; the pushes go to cb (borrowed). */
int app_presence(struct app *a, const char *user,
    void (*cb)(void *arg, const struct msg_presence *p), void *arg)
    TERN_WUR;

/* app_busy: 1 while something is being sent, received or committed. */
int app_busy(const struct app *a);
/* app_activity: envelopes received since app_open (to tell quiet). */
uint64_t app_activity(const struct app *a);
/* app_unshown: calls fn for every incoming message not yet shown (oldest
 * first) and marks them shown. */
int app_unshown(struct app *a,
    void (*fn)(void *arg, const struct app_msg *m), void *arg) TERN_WUR;
/* app_msg_find: the id of our message whose hex prefix is hex (at least
 * 8 digits); TERN_ENOTFOUND, TERN_EEXIST if ambiguous. */
int app_msg_find(struct app *a, const char *hex, uint8_t id[MSG_ID_LEN])
    TERN_WUR;

/* app_conversations: every conversation, most recent first. */
int app_conversations(struct app *a,
    void (*fn)(void *arg, const struct app_conv *c), void *arg) TERN_WUR;

/*
 * app_search: messages whose text matches query (SQLite FTS5 syntax on
 * words: "lunch", "lunch tomorrow", "lun*"), newest first, at most limit.
 * TERN_EINVAL for a query FTS5 refuses.
 */
int app_search(struct app *a, const char *query, size_t limit,
    void (*fn)(void *arg, const struct app_msg *m), void *arg) TERN_WUR;

/*
 * Messages typed while offline: app_send_text commits the message as
 * PENDING before anything else, so it survives a crash; every login
 * sends again those still PENDING (same message id: the receiver drops a
 * second copy). app_send_text works in any state after app_start.
 */

/* Settings of the profile (UI preferences): short text values by key
 * ("notify", ...). app_setting_get copies the value NUL-terminated into
 * out (cap bytes); TERN_ENOTFOUND when unset. */
int app_setting_get(struct app *a, const char *key, char *out, size_t cap)
    TERN_WUR;
int app_setting_set(struct app *a, const char *key, const char *value)
    TERN_WUR;

/* app_history: calls fn for the last limit messages with peer (oldest
 * first); peer NULL: all conversations. */
int app_history(struct app *a, const char *peer, size_t limit,
    void (*fn)(void *arg, const struct app_msg *m), void *arg) TERN_WUR;

#endif
