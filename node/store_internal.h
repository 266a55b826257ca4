/*
 * store_internal.h: what the backend-neutral front (store.c) and the
 * storage backends (store_sqlite.c; later a PostgreSQL one) share. Only
 * node/store*.c include it.
 *
 * The front owns everything about threads and the loop: it copies and
 * validates requests, queues them, runs the writer thread, groups requests
 * into batches and hands completions back through a uv_async_t. A backend
 * only knows how to run one request inside a transaction it was told to
 * open, how to commit or roll back, how to serve a fetch, and how to answer
 * the synchronous lookups.
 */
#ifndef TERN_STORE_INTERNAL_H
#define TERN_STORE_INTERNAL_H

#include "store.h"

enum store_op {
	STORE_OP_INVITE_ADD,
	STORE_OP_REGISTER,
	STORE_OP_DEVICE_ADD,
	STORE_OP_DEVICE_REMOVE,
	STORE_OP_USER_DISABLE,
	STORE_OP_USER_DELETE,
	STORE_OP_PROFILE_SET,
	STORE_OP_PRIVACY_SET,
	STORE_OP_LAST_SEEN,
	STORE_OP_CONTACT_ADD,
	STORE_OP_CONTACT_REMOVE,
	STORE_OP_ENQUEUE,
	STORE_OP_ACK,
	STORE_OP_EXPIRE,
	STORE_OP_KEYS_PUT,
	STORE_OP_BUNDLE_GET,
	STORE_OP_FED_ENQUEUE,
	STORE_OP_FED_DONE,
	STORE_OP_FED_REFUSE,
	STORE_OP_FED_ATTEMPT,
	STORE_OP_PEER_KEY_SAVE,
	/* Reads: served after the batch's commit, outside its transaction. */
	STORE_OP_FETCH,
	STORE_OP_FED_FETCH,
	STORE_OP_FED_DOMAINS,
};

/*
 * A request. The front allocates it with its variable-size inputs (strings,
 * payload) copied into data[], so the pointers in u point into the same
 * allocation. The writer fills status and res; the loop thread calls cb and
 * frees the request together with out_buf/out_envs.
 */
struct store_req {
	struct store_req *next;          /* queue link */
	uint64_t qseq;                   /* [mu] submission order, from 1 */
	int canceled;                    /* [mu] withdrawn before taken */
	enum store_op op;
	store_cb cb;                     /* may be NULL */
	void *arg;
	int status;                      /* set by the writer */
	struct store_result res;         /* set by the writer */
	struct store_env *out_envs;      /* fetch: malloc'd, freed by the front */
	uint8_t *out_buf;                /* fetch: strings and payloads */
	struct store_bundle *out_bundles; /* bundle_get: malloc'd, freed by
	                                    the front */
	void *out_fed;                   /* fed_fetch, fed_domains: their
	                                    malloc'd array, freed by the front */
	union {
		struct {
			uint8_t hash[STORE_INVITE_HASH_LEN];
			int64_t expires_ms;
			int64_t now_ms;
		} invite;
		struct {
			const char *name;
			int has_invite;
			uint8_t invite[STORE_INVITE_HASH_LEN];
			uint8_t key[STORE_KEY_LEN];
			const char *dev_name;
			int64_t now_ms;
		} reg;
		struct {
			int64_t user_id;
			uint32_t device_id;      /* device_remove */
			uint8_t key[STORE_KEY_LEN];
			const char *dev_name;
			int64_t now_ms;
		} dev;
		struct {
			const char *name;
		} admin;                         /* user_disable, user_delete */
		struct {
			int64_t user_id;
			const char *display_name;
			const char *status_text;
			int privacy;
			int64_t seen_ms;
		} prof;                          /* profile, privacy, last seen */
		struct {
			int64_t user_id;
			const char *address;
			int64_t now_ms;
		} contact;
		struct store_env_in enq;         /* pointers into data[] */
		struct {
			int64_t user_id;
			uint32_t device_id;
			uint8_t env_id[STORE_ENV_ID_LEN];
		} ack;
		struct {
			int64_t now_ms;
		} expire;
		struct {
			int64_t user_id;
			uint32_t device_id;
			int64_t after_seq;
			uint32_t limit;
		} fetch;
		struct store_keys_in keys;       /* prekeys point into data[] */
		struct {
			int64_t user_id;
			uint32_t device_id;      /* 0: every device */
		} bundle;
		struct store_fed_in fed_enq;     /* pointers into data[] */
		struct {
			const char *domain;      /* fed_fetch; fed_domains: the
			                            name to list after ("") */
			int64_t after_seq;
			uint32_t limit;
		} fed_fetch;
		struct {
			const int64_t *seqs;     /* into data[] */
			size_t n;
		} fed_done;
		struct {
			int64_t seq;
			uint8_t kind;            /* fed_refuse: STORE_NOTICE_* */
			int64_t now_ms;          /* fed_refuse: the notice's time */
		} fed_one;                       /* fed_refuse, fed_attempt */
		struct {
			const char *domain;      /* into data[] */
			uint8_t key[32];
			int64_t now_ms;
		} peer;                          /* peer_key_save */
	} u;
	char data[];                     /* copies of variable-size inputs */
};

/* Limits after defaults are applied: what the backend enforces. */
struct store_limits {
	uint64_t quota_count;
	uint64_t quota_bytes;
	uint32_t devices_max;
	uint32_t contacts_max;
	uint32_t expire_max;
	uint32_t fetch_bytes_max;
	int64_t notice_ttl_ms;
	uint32_t busy_timeout_ms;
	uint32_t max_page_count;         /* 0: leave SQLite's default */
	enum store_durability durability;
	const char *domain;              /* owned by the front, or NULL */
	uint64_t fed_queue_max;          /* outbound entries, all domains */
	uint64_t fed_queue_bytes;        /* their payload bytes */
};

struct store_backend; /* defined by each backend */

/*
 * The backend interface. Which thread calls what:
 *   create, open                 the loop thread (before the writer starts)
 *   begin, exec, commit,
 *   rollback, fetch, close       the writer thread (close is its last act;
 *                                if open fails, or the thread never
 *                                started, the loop thread calls close)
 *   close_reader and the
 *   lookups                      the loop thread
 * close_reader is called once, before the writer closes, so that the
 * writer's connection is the last one and can checkpoint on close.
 */
struct store_backend_ops {
	const char *name;

	int (*create)(const char *path);
	int (*open)(struct store_backend **out, const char *path,
	    const struct store_limits *lim);
	void (*close)(struct store_backend *be);
	void (*close_reader)(struct store_backend *be);

	/*
	 * exec runs one write inside the open transaction. It returns 0 when
	 * the request is settled, its outcome in req->status (which may be a
	 * request-level error such as TERN_EQUOTA, in which case the request
	 * changed nothing). It returns a negative code when the batch cannot go
	 * on (TERN_EDISK, TERN_EDB, TERN_ENOMEM): the front then rolls back
	 * and fails every write of the batch with that code.
	 */
	int (*begin)(struct store_backend *be);
	int (*exec)(struct store_backend *be, struct store_req *req);
	int (*commit)(struct store_backend *be);
	void (*rollback)(struct store_backend *be);
	/*
	 * fetch serves the reads (STORE_OP_FETCH, _FED_FETCH, _FED_DOMAINS)
	 * outside any transaction; returns the request's status.
	 */
	int (*fetch)(struct store_backend *be, struct store_req *req);

	int (*user_lookup)(struct store_backend *be, const char *name,
	    struct store_user_info *out);
	int (*user_list)(struct store_backend *be,
	    int (*each)(void *arg, const struct store_user_info *u), void *arg);
	int (*device_lookup)(struct store_backend *be, const char *name,
	    uint32_t device_id, uint8_t key_out[STORE_KEY_LEN]);
	int (*device_by_key)(struct store_backend *be,
	    const uint8_t key[STORE_KEY_LEN], struct store_device_info *out);
	int (*device_list)(struct store_backend *be, int64_t user_id,
	    struct store_device_info *out, size_t cap, size_t *n);
	int (*queue_usage)(struct store_backend *be, int64_t user_id,
	    uint64_t *count, uint64_t *bytes);
	int (*profile_get)(struct store_backend *be, int64_t user_id,
	    struct store_profile *out);
	int (*contacts_list)(struct store_backend *be, int64_t user_id,
	    int (*each)(void *arg, const char *address), void *arg);
	int (*contact_has)(struct store_backend *be, int64_t user_id,
	    const char *address);
	int (*keys_count)(struct store_backend *be, int64_t user_id,
	    uint32_t device_id, uint32_t *prekeys, uint32_t *signed_prekey_id);
	int (*peer_keys)(struct store_backend *be, const char *domain,
	    uint8_t (*keys)[32], size_t cap, size_t *n);
	/* Fills users, devices, queued, queued_bytes, fed_queued,
	 * fed_queued_bytes. */
	int (*stats)(struct store_backend *be, struct store_stats *out);
};

extern const struct store_backend_ops store_sqlite_ops;

/* Writes a notice payload; returns its length (buf >= HDR + 255 bytes). */
size_t store_notice_build(uint8_t *buf, uint8_t kind, uint8_t ref_cls,
    const uint8_t ref_env_id[STORE_ENV_ID_LEN], uint32_t peer_device,
    const char *peer_addr, size_t peer_len);

#endif
