/*
 * store.h: ternd's durable state: users, devices, invites, contacts,
 * profiles, the devices' public end-to-end keys (SPEC.md section 12), the
 * queue of opaque encrypted envelopes kept for offline devices, and the
 * outbound queue of envelopes waiting for other domains' nodes (SPEC.md
 * 13.2).
 *
 * Storage sits behind a small backend interface (store_internal.h) so that
 * a PostgreSQL backend can serve one domain from several nodes later;
 * SQLite is the embedded default and the only backend today. Callers use
 * the store_* functions below and never see the backend.
 *
 * Threading. Every store_* function is called on the loop thread (the
 * thread running the uv_loop_t given to store_open). The store owns one
 * writer thread holding the only read-write database connection. Writes
 * are requests queued to that thread; it takes everything pending (up to
 * store_config.batch_max requests), runs the batch in ONE transaction,
 * commits it, and only then hands the completions back; each request's
 * callback then runs on the loop thread. One fsync thus covers a whole
 * batch ("group commit"), which is how the store reaches high durable
 * rates (RESEARCH.md: 5.6k commits/s but 172k rows/s at 1,000 rows per
 * commit).
 *
 * Asynchronous requests follow libuv's grammar: if a function that takes a
 * callback fails synchronously (bad argument, store closing, queue full),
 * the callback is never called. Otherwise the callback is called exactly
 * once, on the loop thread, with status 0 or a negative TERN_E* code
 * (every callback may be NULL, except store_fetch's: fire and forget). A
 * status of 0 on a write means the change is committed (durable when
 * durability is STORE_DURABILITY_FULL). All inputs are copied before the
 * function returns: the caller may reuse its buffers at once.
 *
 * If a batch cannot be committed (disk full, I/O error) the whole batch is
 * rolled back and every write in it completes with TERN_EDISK (TERN_EDB for
 * other database failures): nothing in it was stored, and the caller may
 * retry. The next batch tries again, so the node recovers by itself once
 * space is freed. Enqueue is idempotent per envelope id, which makes such
 * retries safe.
 *
 * Synchronous lookups (store_user_lookup, store_device_by_key, ...) read on
 * the loop thread through a separate read-only connection. WAL lets that
 * reader run beside the writer: each lookup sees the last committed state,
 * never a batch in progress, so a write is visible to lookups no later
 * than when its callback runs. Lookups hit indexes only and normally come
 * from the page cache (microseconds), which is why they do not go through
 * the writer queue; fetching queued envelopes (large payloads) does.
 */
#ifndef TERN_STORE_H
#define TERN_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "tern_err.h"

/* Sizes and caps. Lengths of strings are in bytes, without the NUL. */
#define STORE_KEY_LEN 32          /* device Noise static public key */
#define STORE_ENV_ID_LEN 16       /* envelope (and notice) id */
#define STORE_INVITE_HASH_LEN 32  /* hash of an invite code, by the caller */
#define STORE_NAME_MAX 64         /* user name (local part of the address) */
#define STORE_ADDR_MAX 255        /* user@domain address */
#define STORE_DEVNAME_MAX 64      /* device name */
#define STORE_DISPLAY_MAX 128     /* profile display name */
#define STORE_STATUS_MAX 256      /* profile status text */
#define STORE_PAYLOAD_MAX 65536   /* envelope payload */
#define STORE_FETCH_MAX 256       /* envelopes per store_fetch */
#define STORE_SIG_LEN 64          /* XEdDSA signature of a signed prekey */
#define STORE_PREKEYS_MAX 100     /* one-time prekeys held per device */
#define STORE_PREKEY_ID_MAX 0xFFFFFEu /* one-time and signed prekey ids */
#define STORE_LAST_RESORT_ID 0xFFFFFFu /* the last-resort prekey's id */
#define STORE_BUNDLES_MAX 64      /* devices in one bundle fetch */
#define STORE_DOMAIN_MAX 253      /* a destination domain name */
#define STORE_FED_FETCH_MAX 4096  /* entries per store_fed_fetch: half
                                     a link window (FED_WINDOW) */
#define STORE_FED_SIG_LEN 64      /* a relayed entry's origin signature */
#define STORE_FED_DONE_MAX 1024   /* seqs per store_fed_done */
#define STORE_FED_DOMAINS_MAX 256 /* domains per store_fed_domains */
#define STORE_FED_ATTEMPTS_MAX 10 /* failed sends before an entry is set
                                     aside (SPEC.md 13.2): the caller's rule */

/* Envelope classes. Class 3 (ephemeral: typing, presence) is never stored. */
#define STORE_CLASS_MESSAGE 1
#define STORE_CLASS_RECEIPT 2
#define STORE_CLASS_EPHEMERAL 3   /* refused by store_enqueue */
#define STORE_CLASS_NOTICE 4      /* made by the store itself, see below */

/*
 * Notices are queued by the store (class 4) to a local sender's device and
 * fetched and acknowledged exactly like envelopes, so delivery order, ack
 * and quota accounting share one code path. Sender address is "" and
 * sender device 0 (the node). The payload is plaintext from the node:
 *
 *   offset  size  field
 *   0       1     kind          STORE_NOTICE_EXPIRED: never delivered;
 *                               STORE_NOTICE_REFUSED: another domain's
 *                               node refused it (store_fed_refuse)
 *   1       1     ref class     class of the envelope concerned (1 or 2)
 *   2       16    ref env id    id of the envelope concerned
 *   18      4     peer device   recipient device, big-endian
 *   22      1     peer length   n, bytes of the peer address
 *   23      n     peer address  recipient "name@domain" (or "name" when the
 *                               store has no domain configured), no NUL
 *
 * The kind is the NOTICE message's kind (SPEC.md 4.19) unchanged.
 */
#define STORE_NOTICE_EXPIRED 1
#define STORE_NOTICE_REFUSED 2
#define STORE_NOTICE_HDR_LEN 23

/* User states. A name is never registered twice, whatever its state. */
#define STORE_USER_ACTIVE 0
#define STORE_USER_DISABLED 1
#define STORE_USER_DELETED 2

/* Who may see a user's last-seen time. */
#define STORE_LASTSEEN_EVERYONE 0
#define STORE_LASTSEEN_CONTACTS 1
#define STORE_LASTSEEN_NOBODY 2

enum store_durability {
	STORE_DURABILITY_FULL = 0,   /* fsync at every commit */
	STORE_DURABILITY_NORMAL = 1, /* survives a process crash, not a power
	                                cut (WAL synchronous=NORMAL) */
};

/*
 * Configuration for store_open. Zero in a numeric field means "the
 * default" given in its comment; UINT32_MAX / UINT64_MAX in a quota means
 * no limit. The struct and its strings are copied by store_open.
 */
struct store_config {
	const char *path;            /* database file (made by store_create) */
	const char *backend;         /* NULL or "sqlite" */
	const char *domain;          /* this node's domain, for notice
	                                addresses; or NULL */
	enum store_durability durability;
	uint32_t quota_count;        /* queued envelopes per user; 20,000 */
	uint64_t quota_bytes;        /* queued payload bytes per user; 64 MiB */
	uint32_t devices_max;        /* devices per user; 8 */
	uint32_t contacts_max;       /* contacts per user; 5,000 */
	uint32_t batch_max;          /* requests per transaction; 4,096 */
	uint32_t queue_max;          /* requests waiting for the writer before
	                                submissions fail with TERN_EBUSY; 65,536 */
	uint32_t busy_timeout_ms;    /* SQLite busy timeout; 5,000 */
	uint32_t expire_max;         /* envelopes removed per store_expire; 1,024 */
	uint32_t fetch_bytes_max;    /* payload bytes per store_fetch (at least
	                                one envelope is returned); 1 MiB */
	int64_t notice_ttl_ms;       /* how long notices stay queued; 30 days */
	uint32_t commit_delay_us;    /* how long the writer lets a batch gather
	                                before taking it; 500 (UINT32_MAX: none) */
	uint32_t max_page_count;     /* TESTS ONLY: cap the database at this many
	                                pages so writes fail with SQLITE_FULL */
	uint32_t fed_queue_max;      /* outbound federation entries, all
	                                domains together; 1,000,000 */
	uint64_t fed_queue_bytes;    /* their payload bytes; 4 GiB */
};

struct store; /* opaque */

/*
 * One queued envelope as fetch returns it. All pointers are borrowed: they
 * are valid only during the callback that received them.
 */
struct store_env {
	int64_t seq;                        /* queue position; delivery order */
	uint8_t env_id[STORE_ENV_ID_LEN];   /* sender-chosen id */
	uint8_t cls;                        /* STORE_CLASS_* */
	const char *sender_addr;            /* "" for notices */
	uint32_t sender_device;             /* 0 for notices */
	int64_t sent_ms;                    /* sender's timestamp */
	int64_t received_ms;                /* when the sender's node took it */
	int64_t expires_ms;                 /* removed (and noticed) after this */
	const uint8_t *payload;             /* opaque ciphertext / notice */
	size_t payload_len;
};

/* An envelope to queue: input of store_enqueue, copied by it. */
struct store_env_in {
	int64_t rcpt_user;                  /* recipient user id (local) */
	uint32_t rcpt_device;               /* recipient device id */
	uint8_t env_id[STORE_ENV_ID_LEN];   /* sender-chosen id; retries reuse it */
	uint8_t cls;                        /* STORE_CLASS_MESSAGE or _RECEIPT */
	const char *sender_addr;            /* "name@domain", may be remote */
	int64_t sender_user;                /* sender's user id if local, else 0:
	                                       only local senders get notices */
	uint32_t sender_device;
	int64_t sent_ms;
	int64_t received_ms;
	int64_t expires_ms;
	const uint8_t *payload;
	size_t payload_len;                 /* <= STORE_PAYLOAD_MAX */
};

struct store_bundle; /* below, with the keys */
struct store_fed_env; /* below, with the outbound queue */
struct store_fed_domain;

/*
 * What an asynchronous request produced. Which fields are set depends on
 * the request (see each function); the rest are zero. On a non-zero status
 * every field is zero. The struct and everything it points to belong to
 * the store and are valid only during the callback.
 */
struct store_result {
	int64_t user_id;                    /* register, user_disable/_delete */
	uint32_t device_id;                 /* register (always 1), device_add */
	int64_t seq;                        /* enqueue: the envelope's seq */
	int duplicate;                      /* enqueue: already queued, not stored
	                                       twice; contact_add: already there */
	const struct store_env *envs;       /* fetch: in seq order */
	size_t n_envs;
	int more;                           /* fetch, expire: call again, more
	                                       is waiting */
	uint32_t expired;                   /* expire: envelopes removed */
	uint32_t notices;                   /* expire: notices queued */
	uint32_t prekeys;                   /* keys_put: one-time prekeys now
	                                       held for the device */
	uint32_t signed_prekey_id;          /* keys_put: the device's current */
	const struct store_bundle *bundles; /* bundle_get: in device order */
	size_t n_bundles;
	const struct store_fed_env *fed_envs; /* fed_fetch: in seq order */
	size_t n_fed_envs;
	const struct store_fed_domain *fed_domains; /* fed_domains: by name */
	size_t n_fed_domains;
	uint32_t fed_expired;               /* expire: outbound entries removed
	                                       (their notices are in notices) */
	uint32_t fed_deleted;               /* fed_done: entries removed */
	uint32_t attempts;                  /* fed_attempt: the new count */
	int64_t notice_user;                /* fed_refuse: the local user whose
	                                       device got the notice, or 0 */
	uint32_t notice_device;             /* fed_refuse: that device, or 0 */
};

typedef void (*store_cb)(void *arg, int status, const struct store_result *res);

/* --- Lifecycle ----------------------------------------------------------- */

/*
 * store_create makes a new database file at path with the current schema
 * (for `ternd init`). Refuses with TERN_EEXIST if anything exists at path.
 * The file is created with mode 0600.
 */
int store_create(const char *path) TERN_WUR;

/*
 * store_open opens an existing database (migrating its schema forward if
 * it is older), starts the writer thread and registers a uv_async_t on
 * loop. The async handle keeps the loop alive only while requests are
 * outstanding or the store is closing, so uv_run returns once all
 * callbacks have run. Only one store may have a database file open at a
 * time (TERN_EBUSY otherwise): SQLite 3.40 must see exactly one writer
 * connection per file. Errors: TERN_ENOTFOUND (no file), TERN_EVERSION
 * (schema newer than this build), TERN_ECONFIG (not a tern database or bad
 * config), TERN_EDB, TERN_ENOMEM. On success *out is freed by store_close.
 */
int store_open(struct store **out, uv_loop_t *loop,
    const struct store_config *cfg) TERN_WUR;

/*
 * store_close stops taking requests (later submissions fail synchronously
 * with TERN_ECLOSED), lets the writer commit everything already queued
 * (their callbacks run as usual), stops the thread, closes the database
 * and the async handle, and finally calls cb(arg) on the loop thread
 * (cb may be NULL). Nothing reported durable is lost. The store is freed
 * before cb runs; s must not be used after store_close returns.
 */
void store_close(struct store *s, void (*cb)(void *arg), void *arg);

/* --- Accounts (asynchronous writes) -------------------------------------- */

/*
 * store_invite_add stores a one-time invite by the hash of its code. The
 * caller hashes the code (the store never sees it). TERN_EEXIST if the
 * hash is already stored.
 */
int store_invite_add(struct store *s,
    const uint8_t invite_hash[STORE_INVITE_HASH_LEN], int64_t expires_ms,
    int64_t now_ms, store_cb cb, void *arg) TERN_WUR;

/*
 * store_register creates user name with device 1 holding device_key, and
 * consumes the invite, all in one transaction. invite_hash NULL means open
 * registration (the caller decides whether that is allowed). Result:
 * res->user_id and res->device_id == 1. Errors: TERN_EDENIED (invite
 * unknown, used or expired: checked first, so a bad invite learns nothing
 * about names), TERN_EEXIST (name taken now or ever before), TERN_EKEY
 * (device_key already belongs to a device). Name normalisation (case,
 * allowed characters) is the caller's: the store compares bytes.
 */
int store_register(struct store *s, const char *name,
    const uint8_t *invite_hash, const uint8_t device_key[STORE_KEY_LEN],
    const char *device_name, int64_t now_ms, store_cb cb, void *arg) TERN_WUR;

/*
 * store_device_add adds a device, authorised by an existing device of the
 * same user (the caller checks that). Device ids count up from 1 per user
 * and are never reused. Result: res->device_id. Errors: TERN_ENOUSER,
 * TERN_EDENIED (user disabled), TERN_EKEY (key in use), TERN_EQUOTA
 * (devices_max reached).
 */
int store_device_add(struct store *s, int64_t user_id,
    const uint8_t device_key[STORE_KEY_LEN], const char *device_name,
    int64_t now_ms, store_cb cb, void *arg) TERN_WUR;

/*
 * store_device_remove removes a device, its keys and the envelopes queued
 * for it.
 * TERN_ENOUSER if there is no such device.
 */
int store_device_remove(struct store *s, int64_t user_id, uint32_t device_id,
    store_cb cb, void *arg) TERN_WUR;

/*
 * store_user_disable stops a user: lookups of its devices fail with
 * TERN_EDENIED and enqueues to it with TERN_EDENIED; its queue is kept.
 * Disabling a disabled user succeeds and deletes the user's end-to-end
 * keys (there is no way back, and nobody may fetch them any more).
 * store_user_delete removes the user's devices, keys, contacts, profile
 * and queued envelopes; the name stays
 * reserved forever. Both: TERN_ENOUSER if no such (undeleted) user;
 * res->user_id is set.
 */
int store_user_disable(struct store *s, const char *name, store_cb cb,
    void *arg) TERN_WUR;
int store_user_delete(struct store *s, const char *name, store_cb cb,
    void *arg) TERN_WUR;

/* --- Profile, privacy, contacts, last seen (asynchronous writes) --------- */

/* TERN_ENOUSER if the user does not exist or is deleted. */
int store_profile_set(struct store *s, int64_t user_id,
    const char *display_name, const char *status_text, store_cb cb,
    void *arg) TERN_WUR;
int store_privacy_set(struct store *s, int64_t user_id, int last_seen_privacy,
    store_cb cb, void *arg) TERN_WUR;
/* Never moves last_seen backwards. cb may be NULL (fire and forget). */
int store_last_seen(struct store *s, int64_t user_id, int64_t seen_ms,
    store_cb cb, void *arg) TERN_WUR;

/*
 * store_contact_add is idempotent (res->duplicate set if already there);
 * TERN_EQUOTA at contacts_max. store_contact_remove: TERN_ENOTFOUND if the
 * address was not a contact.
 */
int store_contact_add(struct store *s, int64_t user_id, const char *address,
    int64_t now_ms, store_cb cb, void *arg) TERN_WUR;
int store_contact_remove(struct store *s, int64_t user_id, const char *address,
    store_cb cb, void *arg) TERN_WUR;

/* --- The envelope queue -------------------------------------------------- */

/*
 * store_enqueue queues one envelope for one recipient device. Result:
 * res->seq. If an envelope with the same (recipient user, device, env_id)
 * is already queued, nothing is stored and the request succeeds with
 * res->duplicate = 1 and the existing seq: a sender's retry is reported
 * durable again without a second copy. Errors: TERN_EQUOTA (recipient
 * user over quota_count or quota_bytes; nothing stored), TERN_ENOUSER (no
 * such recipient device), TERN_EDENIED (recipient disabled), TERN_EINVAL
 * (synchronously: class not 1 or 2, payload too big).
 */
int store_enqueue(struct store *s, const struct store_env_in *env,
    store_cb cb, void *arg) TERN_WUR;

/*
 * store_enqueue_h is store_enqueue that also gives a handle for
 * store_cancel, valid until the callback has run.
 *
 * store_cancel withdraws an enqueue the writer has not taken yet, so that
 * an envelope its recipient acknowledged before the commit never reaches
 * the disk (the write-back of RESEARCH.md). Returns 0 if withdrawn: the
 * callback then runs with TERN_ECANCELED and nothing was stored.
 * TERN_EBUSY if the writer already has it: it will be stored (and the
 * caller's store_ack, queued after it, deletes it).
 */
struct store_req;
int store_enqueue_h(struct store *s, const struct store_env_in *env,
    store_cb cb, void *arg, struct store_req **handle) TERN_WUR;
int store_cancel(struct store *s, struct store_req *r) TERN_WUR;

/*
 * store_ack removes a delivered envelope or notice. cb may be NULL. Acks
 * are batched like every write. TERN_ENOTFOUND if it was not queued (a
 * repeated ack).
 */
int store_ack(struct store *s, int64_t user_id, uint32_t device_id,
    const uint8_t env_id[STORE_ENV_ID_LEN], store_cb cb, void *arg) TERN_WUR;

/*
 * store_fetch returns up to limit (1..STORE_FETCH_MAX) envelopes queued for
 * the device with seq > after_seq, in seq order (order of receipt), and
 * res->more if there are more. The writer serves it right after its
 * batch commits, so it sees every write submitted before it. res->envs and
 * all it points to are valid only during the callback.
 */
int store_fetch(struct store *s, int64_t user_id, uint32_t device_id,
    int64_t after_seq, uint32_t limit, store_cb cb, void *arg) TERN_WUR;

/*
 * store_expire runs one expiry pass: up to expire_max envelopes with
 * expires_ms < now_ms are removed, and for each message or receipt whose
 * sender is local (sender_user != 0 at enqueue) and whose sending device
 * still exists, a STORE_NOTICE_EXPIRED notice with a random id is queued
 * to that device (notices bypass the quota; expired notices vanish
 * silently). The same pass removes outbound federation entries with
 * expires_ms < now_ms (within the same expire_max budget) and notices
 * their senders the same way. res->expired (local envelopes),
 * res->fed_expired (outbound entries), res->notices (all notices queued),
 * res->more (run again soon). The caller runs it on a timer.
 */
int store_expire(struct store *s, int64_t now_ms, store_cb cb,
    void *arg) TERN_WUR;

/* --- The outbound federation queue (SPEC.md 13.2) ---------------------- */

/*
 * Envelopes that local users sent to users of other domains wait here,
 * per destination domain in the order accepted, until the destination's
 * node answers OK (store_fed_done), refuses them for good
 * (store_fed_refuse) or they expire (store_expire). This queue is apart
 * from the local one: its entries have no local recipient, are bounded by
 * fed_queue_max / fed_queue_bytes for the whole node rather than by a
 * user's quota, and stay queued when their sender is disabled or deleted
 * (SPEC.md 6.6). Seqs count up across the whole queue and are never
 * reused, so a link may page with "seq > after_seq" across restarts.
 */

/* An outbound envelope to queue: input of store_fed_enqueue, copied. */
struct store_fed_in {
	const char *dest_domain;            /* destination domain, 1..253 bytes;
	                                       to_addr's domain part, byte for
	                                       byte */
	uint8_t env_id[STORE_ENV_ID_LEN];   /* sender-chosen id; retries reuse it */
	const char *to_addr;                /* remote recipient "name@domain" */
	uint32_t to_device;                 /* its device, >= 1 */
	uint8_t cls;                        /* STORE_CLASS_MESSAGE or _RECEIPT */
	int64_t sender_user;                /* local sender's user id, > 0: gets
	                                       the notices; 0 for an envelope
	                                       this node relays (sig set) */
	const char *sender_addr;            /* "name@ourdomain" */
	uint32_t sender_device;             /* sending device, >= 1 */
	int64_t sent_ms;                    /* sender's timestamp */
	int64_t received_ms;                /* when this node took it */
	int64_t expires_ms;                 /* received_ms + [federation]
	                                       retention */
	const uint8_t *payload;             /* opaque ciphertext */
	size_t payload_len;                 /* <= STORE_PAYLOAD_MAX */
	const uint8_t *sig;                 /* relayed (backup relay, SPEC.md
	                                       13.5): the origin node's
	                                       STORE_FED_SIG_LEN-byte signature,
	                                       sent on unchanged; else NULL */
};

/*
 * One queued outbound envelope as store_fed_fetch returns it. All
 * pointers are borrowed: valid only during the callback.
 */
struct store_fed_env {
	int64_t seq;                        /* queue position; sending order */
	const char *dest_domain;
	uint8_t env_id[STORE_ENV_ID_LEN];
	const char *to_addr;
	uint32_t to_device;
	uint8_t cls;                        /* STORE_CLASS_MESSAGE or _RECEIPT */
	int64_t sender_user;
	const char *sender_addr;
	uint32_t sender_device;
	int64_t sent_ms;
	int64_t received_ms;
	int64_t expires_ms;
	uint32_t attempts;                  /* failed sends so far */
	const uint8_t *payload;
	size_t payload_len;
	bool has_sig;                       /* a relayed entry: sig is set */
	uint8_t sig[STORE_FED_SIG_LEN];     /* the origin's signature */
};

/* A destination domain with queued entries (store_fed_domains). */
struct store_fed_domain {
	const char *domain;                 /* borrowed: valid during the cb */
	uint64_t count;                     /* entries queued for it */
	uint64_t bytes;                     /* their payload bytes */
};

/*
 * store_fed_enqueue queues one envelope for a remote recipient device. It
 * goes through the writer and its group commit like store_enqueue: cb(0)
 * means committed. Result: res->seq. If an entry with the same (env_id,
 * to_addr, to_device) is queued, nothing is stored and the request
 * succeeds with res->duplicate = 1 and the existing seq. Errors:
 * TERN_EBUSY (the outbound queue holds fed_queue_max entries or would
 * exceed fed_queue_bytes; nothing stored), TERN_EDISK (disk full; the
 * whole batch failed, retry later), TERN_ENOUSER (sender_user is no user
 * of this node); synchronously TERN_EINVAL (class not
 * 1 or 2, payload too big, empty or too long strings, to_addr not ending
 * in "@" dest_domain, sender_user or a device 0).
 */
int store_fed_enqueue(struct store *s, const struct store_fed_in *e,
    store_cb cb, void *arg) TERN_WUR;

/* store_fed_enqueue_h also gives a handle for store_cancel, valid until
 * the callback has run: the origin's write-back withdraws an entry whose
 * destination answered OK before the writer took it (SPEC.md 13.2). */
int store_fed_enqueue_h(struct store *s, const struct store_fed_in *e,
    store_cb cb, void *arg, struct store_req **handle) TERN_WUR;

/*
 * store_fed_fetch returns up to limit (1..STORE_FED_FETCH_MAX) entries
 * queued for dest_domain with seq > after_seq, in seq order, and
 * res->more if there are more (also when fetch_bytes_max cut the list
 * short; at least one entry is returned). Like store_fetch it is served
 * by the writer right after its batch commits, so it sees every write
 * submitted before it. res->fed_envs is borrowed for the callback. cb
 * must not be NULL.
 */
int store_fed_fetch(struct store *s, const char *dest_domain,
    int64_t after_seq, uint32_t limit, store_cb cb, void *arg) TERN_WUR;

/*
 * store_fed_done removes entries the destination accepted (answered OK),
 * n (1..STORE_FED_DONE_MAX) seqs in one request, hence one transaction.
 * A seq no longer queued (done twice, expired meanwhile) is skipped, not
 * an error. Result: res->fed_deleted. cb may be NULL.
 */
int store_fed_done(struct store *s, const int64_t *seqs, size_t n,
    store_cb cb, void *arg) TERN_WUR;

/*
 * store_fed_refuse removes one entry and, in the same transaction, queues
 * a notice of kind (STORE_NOTICE_REFUSED for a final refusal or for an
 * entry set aside after STORE_FED_ATTEMPTS_MAX failures;
 * STORE_NOTICE_EXPIRED if the caller finds it expired) to the sending
 * device, whose peer is the remote recipient (to_addr, to_device). As with
 * expiry, no notice is queued if that device no longer exists (removed,
 * or its user deleted); the notice bypasses the quota and lives
 * notice_ttl_ms. Result: res->notices (0 or 1), res->notice_user and
 * res->notice_device (the device to wake so that it fetches the notice;
 * 0 if none). Errors: TERN_ENOTFOUND (seq not queued); synchronously
 * TERN_EINVAL for another kind. The notice's timestamps come from the
 * wall clock when the request is submitted.
 */
int store_fed_refuse(struct store *s, int64_t seq, uint8_t kind,
    store_cb cb, void *arg) TERN_WUR;

/*
 * store_fed_attempt counts one failed send of the entry (persisted).
 * Result: res->attempts, the new count; the caller sets the entry aside
 * with store_fed_refuse when it reaches STORE_FED_ATTEMPTS_MAX. Errors:
 * TERN_ENOTFOUND (seq not queued).
 */
int store_fed_attempt(struct store *s, int64_t seq, store_cb cb,
    void *arg) TERN_WUR;

/*
 * store_fed_domains lists the destination domains that have entries
 * queued, with their counts, in name (byte) order: up to
 * STORE_FED_DOMAINS_MAX domains sorting after `after` ("" or NULL: from
 * the first), and res->more if there are more (call again with the last
 * name). For startup (open a link to each) and metrics. Served after the
 * writer's commit like store_fed_fetch; cb must not be NULL.
 * res->fed_domains is borrowed for the callback.
 */
int store_fed_domains(struct store *s, const char *after, store_cb cb,
    void *arg) TERN_WUR;

/*
 * Keys this node accepted for other domains' nodes (SPEC.md 13.4), so a
 * restart remembers them. store_peer_key_save records key for domain
 * (lowercase, 1..253 bytes) as seen at now_ms, keeping the 8 most
 * recently seen per domain; through the writer like the other writes (cb
 * may be NULL). store_peer_keys_load: at most cap keys of domain, most
 * recently seen first, into keys; *n how many (0: none, not an error).
 */
int store_peer_key_save(struct store *s, const char *domain,
    const uint8_t key[32], int64_t now_ms, store_cb cb, void *arg) TERN_WUR;
int store_peer_keys_load(struct store *s, const char *domain,
    uint8_t (*keys)[32], size_t cap, size_t *n) TERN_WUR;

/* --- End-to-end keys (SPEC.md section 12) ------------------------------- */

/* A one-time prekey: input of store_keys_put. */
struct store_prekey {
	uint32_t id;                        /* 1..STORE_PREKEY_ID_MAX */
	uint8_t key[STORE_KEY_LEN];         /* Curve25519 public key */
};

/* A device's public keys as KEYS_PUT carries them: copied by
 * store_keys_put. The store does not verify the signature: the caller
 * does (it stores and serves keys, it does not judge them). */
struct store_keys_in {
	int64_t user_id;                    /* owner */
	uint32_t device_id;                 /* the uploading device */
	uint8_t identity[STORE_KEY_LEN];    /* identity public key */
	uint32_t registration_id;           /* libsignal's */
	uint32_t signed_prekey_id;          /* 1..STORE_PREKEY_ID_MAX */
	uint8_t signed_prekey[STORE_KEY_LEN];
	uint8_t signature[STORE_SIG_LEN];   /* by identity, over the above */
	uint8_t last_resort[STORE_KEY_LEN]; /* prekey STORE_LAST_RESORT_ID */
	const struct store_prekey *prekeys; /* one-time prekeys to add */
	size_t n_prekeys;                   /* <= STORE_PREKEYS_MAX */
};

/* One device's bundle as store_bundle_get serves it (SPEC.md 4.33). */
struct store_bundle {
	uint32_t device_id;
	uint32_t registration_id;
	uint8_t identity[STORE_KEY_LEN];
	uint32_t signed_prekey_id;
	uint8_t signed_prekey[STORE_KEY_LEN];
	uint8_t signature[STORE_SIG_LEN];
	uint32_t prekey_id;                 /* a one-time prekey's id (now
	                                       deleted), or STORE_LAST_RESORT_ID */
	uint8_t prekey[STORE_KEY_LEN];
	uint32_t prekeys_left;              /* one-time prekeys still held */
};

/*
 * store_keys_put replaces the device's identity key, registration id,
 * signed prekey and last-resort key and adds its one-time prekeys (an id
 * already held is replaced), in one transaction (SPEC.md 12.1). When the
 * identity key differs from the stored one, the old one-time prekeys are
 * deleted first: they belong to keys the device no longer has. If the
 * device would then hold more than STORE_PREKEYS_MAX one-time prekeys,
 * nothing changes and the request fails with TERN_EQUOTA. Result:
 * res->prekeys and res->signed_prekey_id. Errors: TERN_ENOUSER (no such
 * device), TERN_EDENIED (user not active); synchronously TERN_EINVAL for
 * an id out of range, a repeated one-time id or too many prekeys.
 */
int store_keys_put(struct store *s, const struct store_keys_in *k,
    store_cb cb, void *arg) TERN_WUR;

/*
 * store_bundle_get serves the bundles of user_id's devices that have keys
 * (device_id 0), or of the one device device_id, in ascending device id
 * order, at most STORE_BUNDLES_MAX. Each carries one one-time prekey,
 * deleted in the same transaction that reads it: the writer runs requests
 * one after the other, so no prekey is ever served twice. A device with
 * none left gets its last-resort key, which is never deleted. Result:
 * res->bundles (n_bundles may be 0: no device has keys), borrowed for
 * the callback. Errors: TERN_ENOUSER (user not active, or device_id not
 * 0 and no such device).
 */
int store_bundle_get(struct store *s, int64_t user_id, uint32_t device_id,
    store_cb cb, void *arg) TERN_WUR;

/* --- Synchronous lookups (loop thread, read-only connection) ------------- */

struct store_user_info {
	int64_t user_id;
	char name[STORE_NAME_MAX + 1];
	int state;                          /* STORE_USER_* */
	int64_t created_ms;
	uint32_t devices;                   /* current devices */
	uint64_t queued;                    /* envelopes + notices waiting */
	uint64_t queued_bytes;              /* their payload bytes */
};

struct store_device_info {
	int64_t user_id;
	uint32_t device_id;
	uint8_t key[STORE_KEY_LEN];
	char user_name[STORE_NAME_MAX + 1];
	char name[STORE_DEVNAME_MAX + 1];   /* device name */
	int64_t created_ms;
};

struct store_profile {
	char display_name[STORE_DISPLAY_MAX + 1];
	char status_text[STORE_STATUS_MAX + 1];
	int last_seen_privacy;              /* STORE_LASTSEEN_* */
	int64_t last_seen_ms;               /* 0: never */
};

struct store_stats {
	uint64_t users;                     /* not deleted */
	uint64_t devices;
	uint64_t queued;                    /* envelopes + notices waiting */
	uint64_t queued_bytes;
	uint64_t fed_queued;                /* outbound federation entries */
	uint64_t fed_queued_bytes;          /* their payload bytes */
	uint64_t memory;                    /* bytes the backend holds now */
	uint64_t commits;                   /* since open: transactions committed */
	uint64_t batches;                   /* batches with writes, incl. failed */
	uint64_t failed_batches;            /* rolled back (disk full, ...) */
	uint64_t requests;                  /* completed */
	uint64_t pending;                   /* submitted, callback not yet run */
};

/*
 * store_user_lookup finds an active or disabled user by name.
 * TERN_ENOUSER if missing or deleted.
 */
int store_user_lookup(struct store *s, const char *name,
    struct store_user_info *out) TERN_WUR;

/*
 * store_device_lookup gives the public key of name's device_id, and
 * store_device_by_key the device (and its user) owning key: the login
 * check. Both: TERN_ENOUSER if missing, TERN_EDENIED if the user is
 * disabled.
 */
int store_device_lookup(struct store *s, const char *name, uint32_t device_id,
    uint8_t key_out[STORE_KEY_LEN]) TERN_WUR;
int store_device_by_key(struct store *s, const uint8_t key[STORE_KEY_LEN],
    struct store_device_info *out) TERN_WUR;

/*
 * store_device_list fills out[0..cap) with the user's devices in id order
 * and sets *n to how many there are (which may exceed cap).
 */
int store_device_list(struct store *s, int64_t user_id,
    struct store_device_info *out, size_t cap, size_t *n) TERN_WUR;

/* Queued envelopes and bytes of a user. TERN_ENOUSER if unknown. */
int store_queue_usage(struct store *s, int64_t user_id, uint64_t *count,
    uint64_t *bytes) TERN_WUR;

/* Profile and last-seen privacy. TERN_ENOUSER if missing or deleted. */
int store_profile_get(struct store *s, int64_t user_id,
    struct store_profile *out) TERN_WUR;

/*
 * store_keys_count: the device's one-time prekeys held and its current
 * signed prekey id; both 0 when it has uploaded no keys (not an error).
 */
int store_keys_count(struct store *s, int64_t user_id, uint32_t device_id,
    uint32_t *prekeys, uint32_t *signed_prekey_id) TERN_WUR;

/*
 * store_contacts_list calls each(arg, address) for every contact of the
 * user in address order; address is borrowed for the call. A non-zero
 * return from each stops the walk and is returned. each must not call the
 * store. store_contact_has: 0 if address is a contact, else TERN_ENOTFOUND.
 */
int store_contacts_list(struct store *s, int64_t user_id,
    int (*each)(void *arg, const char *address), void *arg) TERN_WUR;
int store_contact_has(struct store *s, int64_t user_id,
    const char *address) TERN_WUR;

/*
 * store_user_list calls each(arg, info) for every user, deleted ones
 * included, in id order (for `ternd users`). Same rules as
 * store_contacts_list.
 */
int store_user_list(struct store *s,
    int (*each)(void *arg, const struct store_user_info *u), void *arg) TERN_WUR;

/*
 * Totals for `ternd status`, plus the writer's counters. This runs SQL
 * (counts over users, devices and queue_usage): not for a hot path.
 */
int store_stats(struct store *s, struct store_stats *out) TERN_WUR;

/*
 * store_commit_times: takes the durations (µs) of the transactions
 * committed since the last call, oldest first, at most cap of them (the
 * rest stay for the next call); the store keeps the latest 4,096. For
 * the node's commit-time histogram. Loop thread.
 */
size_t store_commit_times(struct store *s, uint32_t *out, size_t cap);

/*
 * store_counters fills only the writer's counters (commits, batches,
 * failed_batches, requests, pending) and zeroes the rest: no SQL, for
 * metrics. store_pending is the number of requests submitted whose
 * callbacks have not run yet: the backlog to shed load on, O(1).
 */
void store_counters(struct store *s, struct store_stats *out);
uint64_t store_pending(const struct store *s);

/* --- Notices ------------------------------------------------------------- */

struct store_notice {
	uint8_t kind;                       /* STORE_NOTICE_* */
	uint8_t ref_cls;                    /* class of the envelope concerned */
	uint8_t ref_env_id[STORE_ENV_ID_LEN];
	uint32_t peer_device;
	const char *peer_addr;              /* borrowed from the payload, NOT
	                                       NUL-terminated: use peer_len */
	size_t peer_len;
};

/* store_notice_parse decodes a class-4 payload. TERN_ETRUNC / _ETRAILING. */
int store_notice_parse(const uint8_t *p, size_t len,
    struct store_notice *out) TERN_WUR;

#endif
