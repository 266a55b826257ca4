/*
 * store.c: the backend-neutral front of the store (see store.h): request
 * validation and copying, the writer thread with its group commit, the
 * completions handed back to the loop thread, close, and the dispatch of
 * synchronous lookups to the backend.
 *
 * Queues. The loop thread appends requests to `in` and signals `cv`; the
 * writer takes up to batch_max of them at once, runs them in one
 * transaction, and appends them to `done`, then wakes the loop with
 * uv_async_send (which coalesces: the async callback drains `done` until
 * empty). Both lists are guarded by `mu`. While the writer is busy
 * committing, new requests pile up in `in` and form the next, larger
 * batch: the batch size adapts to the load by itself, no timer needed.
 */
#include "store_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STORE_DEF_QUOTA_COUNT 20000u
#define STORE_DEF_QUOTA_BYTES (64ull << 20)
#define STORE_DEF_DEVICES_MAX 8u
#define STORE_DEF_CONTACTS_MAX 5000u
#define STORE_DEF_BATCH_MAX 4096u
#define STORE_DEF_QUEUE_MAX 65536u
#define STORE_DEF_BUSY_MS 5000u
#define STORE_DEF_EXPIRE_MAX 1024u
#define STORE_DEF_FETCH_BYTES (1u << 20)
#define STORE_DEF_NOTICE_TTL_MS (30ll * 24 * 3600 * 1000)
#define STORE_DEF_FED_QUEUE_MAX 1000000u
#define STORE_DEF_FED_QUEUE_BYTES (4ull << 30)
#define STORE_COMMIT_RING 4096u     /* commit times kept for the loop */

struct store {
	uv_loop_t *loop;                    /* the loop thread's loop */
	uv_async_t async;                   /* writer -> loop: completions */
	uv_thread_t thread;                 /* the writer */
	uv_mutex_t mu;                      /* guards the fields marked [mu] */
	uv_cond_t cv;                       /* writer waits here for work */

	const struct store_backend_ops *ops;
	struct store_backend *be;
	struct store_limits lim;            /* defaults applied */
	char *domain;                       /* lim.domain points here */
	uint32_t batch_max;
	uint32_t queue_max;

	struct store_req *in_head;          /* [mu] submitted, not yet taken */
	struct store_req *in_tail;          /* [mu] */
	size_t in_count;                    /* [mu] */
	uint64_t submit_seq;                /* [mu] last qseq given */
	int writer_waiting;                 /* [mu] writer sleeps on cv */
	uint32_t commit_delay_us;           /* wait before taking a batch */
	uint64_t taken_seq;                 /* [mu] last qseq the writer took */
	struct store_req *done_head;        /* [mu] finished, not yet called */
	struct store_req *done_tail;        /* [mu] */
	int stop;                           /* [mu] writer exits when idle */
	int thread_done;                    /* [mu] writer has closed the db */
	uint64_t commits;                   /* [mu] */
	uint64_t batches;                   /* [mu] */
	uint64_t failed_batches;            /* [mu] */
	uint64_t requests;                  /* [mu] */
	uint32_t commit_us[STORE_COMMIT_RING]; /* [mu] recent commits' times,
	                                       a ring: store_commit_times */
	uint32_t commit_next;               /* [mu] where the next goes */
	uint32_t commit_n;                  /* [mu] how many are kept */

	/* Loop thread only. */
	uint64_t outstanding;               /* submitted, callback not yet run */
	int closing;                        /* store_close was called */
	int finishing;                      /* join and uv_close under way */
	void (*close_cb)(void *arg);
	void *close_arg;
};

static const struct {
	const char *name;
	const struct store_backend_ops *ops;
} store_backends[] = {
	{"sqlite", &store_sqlite_ops},
};

static const struct store_backend_ops *
store_backend_find(const char *name)
{
	size_t i;

	if (name == NULL)
		return store_backends[0].ops;
	for (i = 0; i < sizeof(store_backends) / sizeof(store_backends[0]); i++)
		if (strcmp(name, store_backends[i].name) == 0)
			return store_backends[i].ops;
	return NULL;
}

/* --- The writer thread ---------------------------------------------------- */

static int
store_op_is_read(enum store_op op)
{
	return op == STORE_OP_FETCH || op == STORE_OP_FED_FETCH ||
	    op == STORE_OP_FED_DOMAINS;
}

/*
 * store_batch_run executes one batch: every write in one transaction, then
 * the reads against the committed state. Runs on the writer thread.
 */
static void
store_batch_run(struct store *s, struct store_req *batch, int *committed,
    int *failed)
{
	struct store_req *r;
	int writes = 0, rc;

	*committed = *failed = 0;
	for (r = batch; r != NULL; r = r->next) {
		if (r->canceled)
			r->status = TERN_ECANCELED;
		else if (!store_op_is_read(r->op))
			writes = 1;
	}
	if (writes) {
		rc = s->ops->begin(s->be);
		for (r = batch; rc == 0 && r != NULL; r = r->next)
			if (!r->canceled && !store_op_is_read(r->op))
				rc = s->ops->exec(s->be, r);
		if (rc == 0)
			rc = s->ops->commit(s->be);
		if (rc == 0) {
			*committed = 1;
		} else {
			/*
			 * Nothing of the batch is stored: every write reports the
			 * batch's error, whatever it had computed before.
			 */
			s->ops->rollback(s->be);
			*failed = 1;
			for (r = batch; r != NULL; r = r->next) {
				if (r->canceled || store_op_is_read(r->op))
					continue;
				r->status = rc;
				memset(&r->res, 0, sizeof(r->res));
			}
		}
	}
	for (r = batch; r != NULL; r = r->next)
		if (!r->canceled && store_op_is_read(r->op))
			r->status = s->ops->fetch(s->be, r);
}

static void
store_writer_main(void *arg)
{
	struct store *s = arg;
	struct store_req *batch, *tail;
	uint32_t n;
	int committed, failed;
	uint64_t t0, t1;

	uv_mutex_lock(&s->mu);
	for (;;) {
		while (s->in_head == NULL && !s->stop) {
			s->writer_waiting = 1;
			uv_cond_wait(&s->cv, &s->mu);
			s->writer_waiting = 0;
		}
		if (s->in_head == NULL)
			break; /* stop, and everything queued is done */
		/*
		 * Commit delay: let a batch gather for a moment. Requests keep
		 * coming meanwhile (one fsync covers more), and an enqueue whose
		 * recipient acknowledges it within the delay is withdrawn
		 * (store_cancel) and never written at all.
		 */
		if (s->commit_delay_us > 0 && !s->stop &&
		    s->in_count < s->batch_max) {
			struct timespec ts = {0, (long)s->commit_delay_us * 1000};
			uv_mutex_unlock(&s->mu);
			nanosleep(&ts, NULL);
			uv_mutex_lock(&s->mu);
		}

		/* Take up to batch_max requests, oldest first. */
		batch = tail = s->in_head;
		for (n = 1; n < s->batch_max && tail->next != NULL; n++)
			tail = tail->next;
		s->in_head = tail->next;
		if (s->in_head == NULL)
			s->in_tail = NULL;
		s->in_count -= n;
		s->taken_seq = tail->qseq;
		tail->next = NULL;
		uv_mutex_unlock(&s->mu);

		t0 = uv_hrtime();
		store_batch_run(s, batch, &committed, &failed);
		t1 = uv_hrtime();

		uv_mutex_lock(&s->mu);
		if (committed) {
			/* The oldest goes when the loop has not taken them. */
			uint64_t us = (t1 - t0) / 1000;
			s->commit_us[s->commit_next] = us > UINT32_MAX ?
			    UINT32_MAX : (uint32_t)us;
			s->commit_next = (s->commit_next + 1) % STORE_COMMIT_RING;
			if (s->commit_n < STORE_COMMIT_RING)
				s->commit_n++;
		}
		if (s->done_tail != NULL)
			s->done_tail->next = batch;
		else
			s->done_head = batch;
		s->done_tail = tail;
		s->commits += (uint64_t)committed;
		s->batches += (uint64_t)(committed | failed);
		s->failed_batches += (uint64_t)failed;
		s->requests += n;
		uv_mutex_unlock(&s->mu);
		uv_async_send(&s->async);
		uv_mutex_lock(&s->mu);
	}
	uv_mutex_unlock(&s->mu);

	/* The reader was closed by store_close: this is the last connection. */
	s->ops->close(s->be);
	s->be = NULL;

	uv_mutex_lock(&s->mu);
	s->thread_done = 1;
	uv_mutex_unlock(&s->mu);
	uv_async_send(&s->async);
}

/* --- Completions on the loop thread --------------------------------------- */

static void
store_req_free(struct store_req *r)
{
	free(r->out_envs);
	free(r->out_buf);
	free(r->out_bundles);
	free(r->out_fed);
	free(r);
}

static void
store_freed_cb(uv_handle_t *h)
{
	struct store *s = h->data;
	void (*cb)(void *) = s->close_cb;
	void *arg = s->close_arg;

	uv_cond_destroy(&s->cv);
	uv_mutex_destroy(&s->mu);
	free(s->domain);
	free(s);
	if (cb != NULL)
		cb(arg);
}

static void
store_async_cb(uv_async_t *h)
{
	struct store *s = h->data;
	struct store_req *list, *r;
	int done;

	for (;;) {
		uv_mutex_lock(&s->mu);
		list = s->done_head;
		s->done_head = s->done_tail = NULL;
		done = s->thread_done;
		uv_mutex_unlock(&s->mu);
		if (list == NULL)
			break;
		while (list != NULL) {
			r = list;
			list = r->next;
			if (r->cb != NULL)
				r->cb(r->arg, r->status, &r->res);
			store_req_free(r);
			/*
			 * The async handle holds the loop only while work is
			 * outstanding (as a libuv request would).
			 */
			if (--s->outstanding == 0 && !s->closing)
				uv_unref((uv_handle_t *)&s->async);
		}
	}
	/*
	 * thread_done was read together with an empty done list: every
	 * completion has been delivered and the database is closed.
	 */
	if (done && s->closing && !s->finishing) {
		s->finishing = 1;
		uv_thread_join(&s->thread);
		uv_close((uv_handle_t *)&s->async, store_freed_cb);
	}
}

/* --- Submission ----------------------------------------------------------- */

/*
 * store_req_new allocates a request with extra bytes for copied inputs.
 * Returns NULL on allocation failure.
 */
static struct store_req *
store_req_new(enum store_op op, size_t extra, store_cb cb, void *arg)
{
	struct store_req *r = calloc(1, sizeof(*r) + extra);

	if (r == NULL)
		return NULL;
	r->op = op;
	r->cb = cb;
	r->arg = arg;
	return r;
}

/* store_req_copy copies n bytes to *cur and advances it; returns the copy. */
static void *
store_req_copy(char **cur, const void *src, size_t n)
{
	void *dst = *cur;

	if (n > 0)
		memcpy(dst, src, n);
	*cur += n;
	return dst;
}

static const char *
store_req_str(char **cur, const char *str, size_t len)
{
	char *dst = store_req_copy(cur, str, len);

	dst[len] = '\0';
	*cur += 1;
	return dst;
}

/*
 * store_submit queues r for the writer, or frees it and fails: the
 * callback is then never called.
 */
static int
store_submit(struct store *s, struct store_req *r)
{
	if (r == NULL)
		return TERN_ENOMEM;
	uv_mutex_lock(&s->mu);
	if (s->in_count >= s->queue_max) {
		uv_mutex_unlock(&s->mu);
		free(r);
		return TERN_EBUSY;
	}
	if (s->in_tail != NULL)
		s->in_tail->next = r;
	else
		s->in_head = r;
	s->in_tail = r;
	s->in_count++;
	r->qseq = ++s->submit_seq;
	if (!s->writer_waiting) {
		/* The writer is busy or in its commit delay: it will look. */
		uv_mutex_unlock(&s->mu);
		if (s->outstanding++ == 0)
			uv_ref((uv_handle_t *)&s->async);
		return 0;
	}
	uv_cond_signal(&s->cv);
	uv_mutex_unlock(&s->mu);
	if (s->outstanding++ == 0)
		uv_ref((uv_handle_t *)&s->async);
	return 0;
}

/* store_strlen: 0 and the length if str is 1..max bytes (0..max if
 * may_be_empty), else TERN_EINVAL. */
static int
store_strlen(const char *str, size_t max, int may_be_empty, size_t *len)
{
	if (str == NULL)
		return TERN_EINVAL;
	*len = strnlen(str, max + 1);
	if (*len > max || (*len == 0 && !may_be_empty))
		return TERN_EINVAL;
	return 0;
}

/* --- Lifecycle ------------------------------------------------------------ */

int
store_create(const char *path)
{
	if (path == NULL || path[0] == '\0')
		return TERN_EINVAL;
	return store_backends[0].ops->create(path);
}

#define STORE_DEF(v, d) ((v) != 0 ? (v) : (d))

int
store_open(struct store **out, uv_loop_t *loop, const struct store_config *cfg)
{
	struct store *s;
	int rc;

	*out = NULL;
	if (loop == NULL || cfg == NULL || cfg->path == NULL ||
	    cfg->path[0] == '\0' ||
	    (cfg->durability != STORE_DURABILITY_FULL &&
	    cfg->durability != STORE_DURABILITY_NORMAL) ||
	    cfg->notice_ttl_ms < 0)
		return TERN_ECONFIG;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return TERN_ENOMEM;
	s->ops = store_backend_find(cfg->backend);
	if (s->ops == NULL) {
		free(s);
		return TERN_ECONFIG;
	}
	s->loop = loop;
	s->lim.quota_count = STORE_DEF(cfg->quota_count, STORE_DEF_QUOTA_COUNT);
	if (cfg->quota_count == UINT32_MAX)
		s->lim.quota_count = UINT64_MAX;
	s->lim.quota_bytes = STORE_DEF(cfg->quota_bytes, STORE_DEF_QUOTA_BYTES);
	s->lim.devices_max = STORE_DEF(cfg->devices_max, STORE_DEF_DEVICES_MAX);
	s->lim.contacts_max =
	    STORE_DEF(cfg->contacts_max, STORE_DEF_CONTACTS_MAX);
	s->lim.expire_max = STORE_DEF(cfg->expire_max, STORE_DEF_EXPIRE_MAX);
	s->lim.fetch_bytes_max =
	    STORE_DEF(cfg->fetch_bytes_max, STORE_DEF_FETCH_BYTES);
	s->lim.notice_ttl_ms =
	    STORE_DEF(cfg->notice_ttl_ms, STORE_DEF_NOTICE_TTL_MS);
	s->lim.busy_timeout_ms =
	    STORE_DEF(cfg->busy_timeout_ms, STORE_DEF_BUSY_MS);
	s->lim.max_page_count = cfg->max_page_count;
	s->lim.fed_queue_max =
	    STORE_DEF(cfg->fed_queue_max, STORE_DEF_FED_QUEUE_MAX);
	if (cfg->fed_queue_max == UINT32_MAX)
		s->lim.fed_queue_max = UINT64_MAX;
	s->lim.fed_queue_bytes =
	    STORE_DEF(cfg->fed_queue_bytes, STORE_DEF_FED_QUEUE_BYTES);
	s->lim.durability = cfg->durability;
	s->batch_max = STORE_DEF(cfg->batch_max, STORE_DEF_BATCH_MAX);
	s->commit_delay_us = cfg->commit_delay_us == UINT32_MAX ? 0 :
	    STORE_DEF(cfg->commit_delay_us, 500);
	s->queue_max = STORE_DEF(cfg->queue_max, STORE_DEF_QUEUE_MAX);
	if (cfg->domain != NULL) {
		size_t dlen;
		if (store_strlen(cfg->domain, STORE_ADDR_MAX - 2, 0, &dlen) != 0) {
			free(s);
			return TERN_ECONFIG;
		}
		if ((s->domain = strdup(cfg->domain)) == NULL) {
			free(s);
			return TERN_ENOMEM;
		}
		s->lim.domain = s->domain;
	}

	rc = s->ops->open(&s->be, cfg->path, &s->lim);
	if (rc != 0)
		goto fail;
	if (uv_mutex_init(&s->mu) != 0) {
		rc = TERN_ENOMEM;
		goto fail_be;
	}
	if (uv_cond_init(&s->cv) != 0) {
		rc = TERN_ENOMEM;
		goto fail_mu;
	}
	if (uv_async_init(loop, &s->async, store_async_cb) != 0) {
		rc = TERN_ENOMEM;
		goto fail_cv;
	}
	s->async.data = s;
	if (uv_thread_create(&s->thread, store_writer_main, s) != 0) {
		/* The handle is closed later; s is freed in its close callback. */
		s->ops->close_reader(s->be);
		s->ops->close(s->be);
		s->closing = s->finishing = 1;
		uv_close((uv_handle_t *)&s->async, store_freed_cb);
		return TERN_ENOMEM;
	}
	uv_unref((uv_handle_t *)&s->async);
	*out = s;
	return 0;

fail_cv:
	uv_cond_destroy(&s->cv);
fail_mu:
	uv_mutex_destroy(&s->mu);
fail_be:
	s->ops->close_reader(s->be);
	s->ops->close(s->be);
fail:
	free(s->domain);
	free(s);
	return rc;
}

void
store_close(struct store *s, void (*cb)(void *arg), void *arg)
{
	if (s->closing)
		abort(); /* closed twice: a broken invariant in the caller */
	s->closing = 1;
	s->close_cb = cb;
	s->close_arg = arg;
	/* Hold the loop until the handle is closed. */
	uv_ref((uv_handle_t *)&s->async);
	/* Lookups now fail with TERN_ECLOSED; the writer's is the last conn. */
	s->ops->close_reader(s->be);
	uv_mutex_lock(&s->mu);
	s->stop = 1;
	uv_cond_signal(&s->cv);
	uv_mutex_unlock(&s->mu);
}

/* --- Asynchronous requests ------------------------------------------------ */

int
store_invite_add(struct store *s,
    const uint8_t invite_hash[STORE_INVITE_HASH_LEN], int64_t expires_ms,
    int64_t now_ms, store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (invite_hash == NULL)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_INVITE_ADD, 0, cb, arg);
	if (r != NULL) {
		memcpy(r->u.invite.hash, invite_hash, STORE_INVITE_HASH_LEN);
		r->u.invite.expires_ms = expires_ms;
		r->u.invite.now_ms = now_ms;
	}
	return store_submit(s, r);
}

int
store_register(struct store *s, const char *name, const uint8_t *invite_hash,
    const uint8_t device_key[STORE_KEY_LEN], const char *device_name,
    int64_t now_ms, store_cb cb, void *arg)
{
	struct store_req *r;
	size_t nlen, dlen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(name, STORE_NAME_MAX, 0, &nlen) != 0 ||
	    store_strlen(device_name, STORE_DEVNAME_MAX, 1, &dlen) != 0 ||
	    device_key == NULL)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_REGISTER, nlen + dlen + 2, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.reg.name = store_req_str(&cur, name, nlen);
		r->u.reg.dev_name = store_req_str(&cur, device_name, dlen);
		if (invite_hash != NULL) {
			r->u.reg.has_invite = 1;
			memcpy(r->u.reg.invite, invite_hash,
			    STORE_INVITE_HASH_LEN);
		}
		memcpy(r->u.reg.key, device_key, STORE_KEY_LEN);
		r->u.reg.now_ms = now_ms;
	}
	return store_submit(s, r);
}

int
store_device_add(struct store *s, int64_t user_id,
    const uint8_t device_key[STORE_KEY_LEN], const char *device_name,
    int64_t now_ms, store_cb cb, void *arg)
{
	struct store_req *r;
	size_t dlen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0 || device_key == NULL ||
	    store_strlen(device_name, STORE_DEVNAME_MAX, 1, &dlen) != 0)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_DEVICE_ADD, dlen + 1, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.dev.user_id = user_id;
		memcpy(r->u.dev.key, device_key, STORE_KEY_LEN);
		r->u.dev.dev_name = store_req_str(&cur, device_name, dlen);
		r->u.dev.now_ms = now_ms;
	}
	return store_submit(s, r);
}

int
store_device_remove(struct store *s, int64_t user_id, uint32_t device_id,
    store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0 || device_id == 0)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_DEVICE_REMOVE, 0, cb, arg);
	if (r != NULL) {
		r->u.dev.user_id = user_id;
		r->u.dev.device_id = device_id;
	}
	return store_submit(s, r);
}

static int
store_admin(struct store *s, enum store_op op, const char *name, store_cb cb,
    void *arg)
{
	struct store_req *r;
	size_t nlen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(name, STORE_NAME_MAX, 0, &nlen) != 0)
		return TERN_EINVAL;
	r = store_req_new(op, nlen + 1, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.admin.name = store_req_str(&cur, name, nlen);
	}
	return store_submit(s, r);
}

int
store_user_disable(struct store *s, const char *name, store_cb cb, void *arg)
{
	return store_admin(s, STORE_OP_USER_DISABLE, name, cb, arg);
}

int
store_user_delete(struct store *s, const char *name, store_cb cb, void *arg)
{
	return store_admin(s, STORE_OP_USER_DELETE, name, cb, arg);
}

int
store_profile_set(struct store *s, int64_t user_id, const char *display_name,
    const char *status_text, store_cb cb, void *arg)
{
	struct store_req *r;
	size_t dlen, slen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0 ||
	    store_strlen(display_name, STORE_DISPLAY_MAX, 1, &dlen) != 0 ||
	    store_strlen(status_text, STORE_STATUS_MAX, 1, &slen) != 0)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_PROFILE_SET, dlen + slen + 2, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.prof.user_id = user_id;
		r->u.prof.display_name = store_req_str(&cur, display_name, dlen);
		r->u.prof.status_text = store_req_str(&cur, status_text, slen);
	}
	return store_submit(s, r);
}

int
store_privacy_set(struct store *s, int64_t user_id, int last_seen_privacy,
    store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0 || last_seen_privacy < STORE_LASTSEEN_EVERYONE ||
	    last_seen_privacy > STORE_LASTSEEN_NOBODY)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_PRIVACY_SET, 0, cb, arg);
	if (r != NULL) {
		r->u.prof.user_id = user_id;
		r->u.prof.privacy = last_seen_privacy;
	}
	return store_submit(s, r);
}

int
store_last_seen(struct store *s, int64_t user_id, int64_t seen_ms, store_cb cb,
    void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_LAST_SEEN, 0, cb, arg);
	if (r != NULL) {
		r->u.prof.user_id = user_id;
		r->u.prof.seen_ms = seen_ms;
	}
	return store_submit(s, r);
}

static int
store_contact_req(struct store *s, enum store_op op, int64_t user_id,
    const char *address, int64_t now_ms, store_cb cb, void *arg)
{
	struct store_req *r;
	size_t alen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0 || store_strlen(address, STORE_ADDR_MAX, 0, &alen) != 0)
		return TERN_EINVAL;
	r = store_req_new(op, alen + 1, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.contact.user_id = user_id;
		r->u.contact.address = store_req_str(&cur, address, alen);
		r->u.contact.now_ms = now_ms;
	}
	return store_submit(s, r);
}

int
store_contact_add(struct store *s, int64_t user_id, const char *address,
    int64_t now_ms, store_cb cb, void *arg)
{
	return store_contact_req(s, STORE_OP_CONTACT_ADD, user_id, address,
	    now_ms, cb, arg);
}

int
store_contact_remove(struct store *s, int64_t user_id, const char *address,
    store_cb cb, void *arg)
{
	return store_contact_req(s, STORE_OP_CONTACT_REMOVE, user_id, address, 0,
	    cb, arg);
}

int
store_enqueue(struct store *s, const struct store_env_in *env, store_cb cb,
    void *arg)
{
	return store_enqueue_h(s, env, cb, arg, NULL);
}

int
store_cancel(struct store *s, struct store_req *r)
{
	int ok;

	uv_mutex_lock(&s->mu);
	ok = r->qseq > s->taken_seq && !r->canceled;
	if (ok)
		r->canceled = 1;
	uv_mutex_unlock(&s->mu);
	return ok ? 0 : TERN_EBUSY;
}

int
store_enqueue_h(struct store *s, const struct store_env_in *env, store_cb cb,
    void *arg, struct store_req **handle)
{
	struct store_req *r;
	int rc;
	size_t alen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	/* Ephemeral (3) is never stored; notices (4) are the store's own. */
	if (env == NULL || env->rcpt_user <= 0 || env->rcpt_device == 0 ||
	    (env->cls != STORE_CLASS_MESSAGE && env->cls != STORE_CLASS_RECEIPT) ||
	    env->sender_user < 0 ||
	    store_strlen(env->sender_addr, STORE_ADDR_MAX, 0, &alen) != 0 ||
	    env->payload_len > STORE_PAYLOAD_MAX ||
	    (env->payload == NULL && env->payload_len != 0))
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_ENQUEUE, alen + 1 + env->payload_len, cb,
	    arg);
	if (r != NULL) {
		cur = r->data;
		r->u.enq = *env;
		r->u.enq.sender_addr = store_req_str(&cur, env->sender_addr, alen);
		r->u.enq.payload = store_req_copy(&cur, env->payload,
		    env->payload_len);
	}
	rc = store_submit(s, r);
	if (rc == 0 && handle != NULL)
		*handle = r;
	return rc;
}

int
store_ack(struct store *s, int64_t user_id, uint32_t device_id,
    const uint8_t env_id[STORE_ENV_ID_LEN], store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0 || device_id == 0 || env_id == NULL)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_ACK, 0, cb, arg);
	if (r != NULL) {
		r->u.ack.user_id = user_id;
		r->u.ack.device_id = device_id;
		memcpy(r->u.ack.env_id, env_id, STORE_ENV_ID_LEN);
	}
	return store_submit(s, r);
}

int
store_fetch(struct store *s, int64_t user_id, uint32_t device_id,
    int64_t after_seq, uint32_t limit, store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0 || device_id == 0 || limit == 0 ||
	    limit > STORE_FETCH_MAX || cb == NULL)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_FETCH, 0, cb, arg);
	if (r != NULL) {
		r->u.fetch.user_id = user_id;
		r->u.fetch.device_id = device_id;
		r->u.fetch.after_seq = after_seq;
		r->u.fetch.limit = limit;
	}
	return store_submit(s, r);
}

int
store_expire(struct store *s, int64_t now_ms, store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	r = store_req_new(STORE_OP_EXPIRE, 0, cb, arg);
	if (r != NULL)
		r->u.expire.now_ms = now_ms;
	return store_submit(s, r);
}

/* store_prekey_id_ok: a one-time or signed prekey id in range. */
static int
store_prekey_id_ok(uint32_t id)
{
	return id >= 1 && id <= STORE_PREKEY_ID_MAX;
}

int
store_keys_put(struct store *s, const struct store_keys_in *k, store_cb cb,
    void *arg)
{
	struct store_req *r;
	size_t i, j, bytes;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (k == NULL || k->user_id <= 0 || k->device_id == 0 ||
	    !store_prekey_id_ok(k->signed_prekey_id) ||
	    k->n_prekeys > STORE_PREKEYS_MAX ||
	    (k->prekeys == NULL && k->n_prekeys != 0))
		return TERN_EINVAL;
	/* At most 100 of them: the quadratic check costs nothing. */
	for (i = 0; i < k->n_prekeys; i++) {
		if (!store_prekey_id_ok(k->prekeys[i].id))
			return TERN_EINVAL;
		for (j = 0; j < i; j++)
			if (k->prekeys[j].id == k->prekeys[i].id)
				return TERN_EINVAL;
	}
	bytes = k->n_prekeys * sizeof(*k->prekeys);
	r = store_req_new(STORE_OP_KEYS_PUT, bytes, cb, arg);
	if (r != NULL) {
		/* data[] follows the 8-aligned union: aligned for the array. */
		cur = r->data;
		r->u.keys = *k;
		r->u.keys.prekeys = store_req_copy(&cur, k->prekeys, bytes);
	}
	return store_submit(s, r);
}

int
store_bundle_get(struct store *s, int64_t user_id, uint32_t device_id,
    store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (user_id <= 0)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_BUNDLE_GET, 0, cb, arg);
	if (r != NULL) {
		r->u.bundle.user_id = user_id;
		r->u.bundle.device_id = device_id;
	}
	return store_submit(s, r);
}

/* --- The outbound federation queue ---------------------------------------- */

/*
 * store_addr_in_domain: addr is "local@domain" with a non-empty local part
 * and exactly domain after its last '@'. The link sends an entry to
 * dest_domain's node, which accepts only its own users: an entry whose
 * address says otherwise could never be delivered.
 */
static int
store_addr_in_domain(const char *addr, size_t alen, const char *domain,
    size_t dlen)
{
	size_t at = alen;

	while (at > 0 && addr[at - 1] != '@')
		at--;
	/* at is now one past the last '@', or 0 if there is none. */
	return at > 1 && alen - at == dlen &&
	    memcmp(addr + at, domain, dlen) == 0;
}

int
store_fed_enqueue(struct store *s, const struct store_fed_in *e, store_cb cb,
    void *arg)
{
	return store_fed_enqueue_h(s, e, cb, arg, NULL);
}

int
store_fed_enqueue_h(struct store *s, const struct store_fed_in *e,
    store_cb cb, void *arg, struct store_req **handle)
{
	int rc;
	struct store_req *r;
	size_t dlen, tlen, alen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (e == NULL ||
	    store_strlen(e->dest_domain, STORE_DOMAIN_MAX, 0, &dlen) != 0 ||
	    store_strlen(e->to_addr, STORE_ADDR_MAX, 0, &tlen) != 0 ||
	    !store_addr_in_domain(e->to_addr, tlen, e->dest_domain, dlen) ||
	    store_strlen(e->sender_addr, STORE_ADDR_MAX, 0, &alen) != 0 ||
	    e->to_device == 0 || e->sender_device == 0 ||
	    /* A relayed entry has no local sender, and must be signed. */
	    (e->sig == NULL ? e->sender_user <= 0 : e->sender_user != 0) ||
	    (e->cls != STORE_CLASS_MESSAGE && e->cls != STORE_CLASS_RECEIPT) ||
	    e->payload_len > STORE_PAYLOAD_MAX ||
	    (e->payload == NULL && e->payload_len != 0))
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_FED_ENQUEUE,
	    dlen + tlen + alen + 3 + e->payload_len +
	    (e->sig != NULL ? STORE_FED_SIG_LEN : 0), cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.fed_enq = *e;
		r->u.fed_enq.dest_domain = store_req_str(&cur, e->dest_domain,
		    dlen);
		r->u.fed_enq.to_addr = store_req_str(&cur, e->to_addr, tlen);
		r->u.fed_enq.sender_addr = store_req_str(&cur, e->sender_addr,
		    alen);
		r->u.fed_enq.payload = store_req_copy(&cur, e->payload,
		    e->payload_len);
		if (e->sig != NULL)
			r->u.fed_enq.sig = store_req_copy(&cur, e->sig,
			    STORE_FED_SIG_LEN);
	}
	rc = store_submit(s, r);
	if (rc == 0 && handle != NULL)
		*handle = r;
	return rc;
}

int
store_fed_fetch(struct store *s, const char *dest_domain, int64_t after_seq,
    uint32_t limit, store_cb cb, void *arg)
{
	struct store_req *r;
	size_t dlen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(dest_domain, STORE_DOMAIN_MAX, 0, &dlen) != 0 ||
	    limit == 0 || limit > STORE_FED_FETCH_MAX || cb == NULL)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_FED_FETCH, dlen + 1, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.fed_fetch.domain = store_req_str(&cur, dest_domain, dlen);
		r->u.fed_fetch.after_seq = after_seq;
		r->u.fed_fetch.limit = limit;
	}
	return store_submit(s, r);
}

int
store_fed_done(struct store *s, const int64_t *seqs, size_t n, store_cb cb,
    void *arg)
{
	struct store_req *r;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (seqs == NULL || n == 0 || n > STORE_FED_DONE_MAX)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_FED_DONE, n * sizeof(*seqs), cb, arg);
	if (r != NULL) {
		/* data[] follows the 8-aligned union: aligned for int64_t. */
		cur = r->data;
		r->u.fed_done.seqs = store_req_copy(&cur, seqs, n * sizeof(*seqs));
		r->u.fed_done.n = n;
	}
	return store_submit(s, r);
}

/*
 * store_wall_ms: the wall clock in ms, for the refusal notice's timestamps
 * (the caller of store_fed_refuse has no time of its own to give).
 */
static int64_t
store_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
store_fed_refuse(struct store *s, int64_t seq, uint8_t kind, store_cb cb,
    void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	if (kind != STORE_NOTICE_EXPIRED && kind != STORE_NOTICE_REFUSED)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_FED_REFUSE, 0, cb, arg);
	if (r != NULL) {
		r->u.fed_one.seq = seq;
		r->u.fed_one.kind = kind;
		r->u.fed_one.now_ms = store_wall_ms();
	}
	return store_submit(s, r);
}

int
store_fed_attempt(struct store *s, int64_t seq, store_cb cb, void *arg)
{
	struct store_req *r;

	if (s->closing)
		return TERN_ECLOSED;
	r = store_req_new(STORE_OP_FED_ATTEMPT, 0, cb, arg);
	if (r != NULL)
		r->u.fed_one.seq = seq;
	return store_submit(s, r);
}

int
store_peer_key_save(struct store *s, const char *domain,
    const uint8_t key[32], int64_t now_ms, store_cb cb, void *arg)
{
	struct store_req *r;
	size_t dlen;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(domain, STORE_DOMAIN_MAX, 0, &dlen) != 0 ||
	    key == NULL)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_PEER_KEY_SAVE, dlen + 1, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.peer.domain = store_req_str(&cur, domain, dlen);
		memcpy(r->u.peer.key, key, 32);
		r->u.peer.now_ms = now_ms;
	}
	return store_submit(s, r);
}

int
store_peer_keys_load(struct store *s, const char *domain,
    uint8_t (*keys)[32], size_t cap, size_t *n)
{
	size_t dlen;

	*n = 0;
	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(domain, STORE_DOMAIN_MAX, 0, &dlen) != 0)
		return TERN_EINVAL;
	return s->ops->peer_keys(s->be, domain, keys, cap, n);
}

int
store_fed_domains(struct store *s, const char *after, store_cb cb, void *arg)
{
	struct store_req *r;
	size_t alen = 0;
	char *cur;

	if (s->closing)
		return TERN_ECLOSED;
	if (after == NULL)
		after = "";
	if (store_strlen(after, STORE_DOMAIN_MAX, 1, &alen) != 0 || cb == NULL)
		return TERN_EINVAL;
	r = store_req_new(STORE_OP_FED_DOMAINS, alen + 1, cb, arg);
	if (r != NULL) {
		cur = r->data;
		r->u.fed_fetch.domain = store_req_str(&cur, after, alen);
		r->u.fed_fetch.limit = STORE_FED_DOMAINS_MAX;
	}
	return store_submit(s, r);
}

/* --- Synchronous lookups -------------------------------------------------- */

int
store_user_lookup(struct store *s, const char *name,
    struct store_user_info *out)
{
	size_t nlen;

	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(name, STORE_NAME_MAX, 0, &nlen) != 0)
		return TERN_ENOUSER; /* no such name can exist */
	return s->ops->user_lookup(s->be, name, out);
}

int
store_user_list(struct store *s,
    int (*each)(void *arg, const struct store_user_info *u), void *arg)
{
	if (s->closing)
		return TERN_ECLOSED;
	if (each == NULL)
		return TERN_EINVAL;
	return s->ops->user_list(s->be, each, arg);
}

int
store_device_lookup(struct store *s, const char *name, uint32_t device_id,
    uint8_t key_out[STORE_KEY_LEN])
{
	size_t nlen;

	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(name, STORE_NAME_MAX, 0, &nlen) != 0 || device_id == 0)
		return TERN_ENOUSER;
	return s->ops->device_lookup(s->be, name, device_id, key_out);
}

int
store_device_by_key(struct store *s, const uint8_t key[STORE_KEY_LEN],
    struct store_device_info *out)
{
	if (s->closing)
		return TERN_ECLOSED;
	return s->ops->device_by_key(s->be, key, out);
}

int
store_device_list(struct store *s, int64_t user_id,
    struct store_device_info *out, size_t cap, size_t *n)
{
	if (s->closing)
		return TERN_ECLOSED;
	if (out == NULL && cap != 0)
		return TERN_EINVAL;
	return s->ops->device_list(s->be, user_id, out, cap, n);
}

int
store_queue_usage(struct store *s, int64_t user_id, uint64_t *count,
    uint64_t *bytes)
{
	if (s->closing)
		return TERN_ECLOSED;
	return s->ops->queue_usage(s->be, user_id, count, bytes);
}

int
store_profile_get(struct store *s, int64_t user_id, struct store_profile *out)
{
	if (s->closing)
		return TERN_ECLOSED;
	return s->ops->profile_get(s->be, user_id, out);
}

int
store_contacts_list(struct store *s, int64_t user_id,
    int (*each)(void *arg, const char *address), void *arg)
{
	if (s->closing)
		return TERN_ECLOSED;
	if (each == NULL)
		return TERN_EINVAL;
	return s->ops->contacts_list(s->be, user_id, each, arg);
}

int
store_contact_has(struct store *s, int64_t user_id, const char *address)
{
	size_t alen;

	if (s->closing)
		return TERN_ECLOSED;
	if (store_strlen(address, STORE_ADDR_MAX, 0, &alen) != 0)
		return TERN_ENOTFOUND;
	return s->ops->contact_has(s->be, user_id, address);
}

int
store_keys_count(struct store *s, int64_t user_id, uint32_t device_id,
    uint32_t *prekeys, uint32_t *signed_prekey_id)
{
	if (s->closing)
		return TERN_ECLOSED;
	if (prekeys == NULL || signed_prekey_id == NULL)
		return TERN_EINVAL;
	return s->ops->keys_count(s->be, user_id, device_id, prekeys,
	    signed_prekey_id);
}

void
store_counters(struct store *s, struct store_stats *out)
{
	memset(out, 0, sizeof(*out));
	uv_mutex_lock(&s->mu);
	out->commits = s->commits;
	out->batches = s->batches;
	out->failed_batches = s->failed_batches;
	out->requests = s->requests;
	uv_mutex_unlock(&s->mu);
	out->pending = s->outstanding;
}

size_t
store_commit_times(struct store *s, uint32_t *out, size_t cap)
{
	size_t n, i, first;

	uv_mutex_lock(&s->mu);
	n = s->commit_n < cap ? s->commit_n : cap;
	first = (s->commit_next + STORE_COMMIT_RING - s->commit_n) %
	    STORE_COMMIT_RING;
	for (i = 0; i < n; i++)
		out[i] = s->commit_us[(first + i) % STORE_COMMIT_RING];
	s->commit_n -= (uint32_t)n;
	uv_mutex_unlock(&s->mu);
	return n;
}

uint64_t
store_pending(const struct store *s)
{
	return s->outstanding;
}

int
store_stats(struct store *s, struct store_stats *out)
{
	struct store_stats db;
	int rc;

	if (s->closing)
		return TERN_ECLOSED;
	memset(&db, 0, sizeof(db));
	rc = s->ops->stats(s->be, &db);
	if (rc != 0)
		return rc;
	store_counters(s, out);
	out->users = db.users;
	out->devices = db.devices;
	out->queued = db.queued;
	out->queued_bytes = db.queued_bytes;
	out->fed_queued = db.fed_queued;
	out->fed_queued_bytes = db.fed_queued_bytes;
	out->memory = db.memory;
	return 0;
}

/* --- Notices -------------------------------------------------------------- */

size_t
store_notice_build(uint8_t *buf, uint8_t kind, uint8_t ref_cls,
    const uint8_t ref_env_id[STORE_ENV_ID_LEN], uint32_t peer_device,
    const char *peer_addr, size_t peer_len)
{
	if (peer_len > 255)
		peer_len = 255; /* cannot happen: addresses are capped lower */
	buf[0] = kind;
	buf[1] = ref_cls;
	memcpy(buf + 2, ref_env_id, STORE_ENV_ID_LEN);
	buf[18] = (uint8_t)(peer_device >> 24);
	buf[19] = (uint8_t)(peer_device >> 16);
	buf[20] = (uint8_t)(peer_device >> 8);
	buf[21] = (uint8_t)peer_device;
	buf[22] = (uint8_t)peer_len;
	memcpy(buf + STORE_NOTICE_HDR_LEN, peer_addr, peer_len);
	return STORE_NOTICE_HDR_LEN + peer_len;
}

int
store_notice_parse(const uint8_t *p, size_t len, struct store_notice *out)
{
	size_t n;

	if (len < STORE_NOTICE_HDR_LEN)
		return TERN_ETRUNC;
	n = p[22];
	if (len < STORE_NOTICE_HDR_LEN + n)
		return TERN_ETRUNC;
	if (len > STORE_NOTICE_HDR_LEN + n)
		return TERN_ETRAILING;
	out->kind = p[0];
	out->ref_cls = p[1];
	memcpy(out->ref_env_id, p + 2, STORE_ENV_ID_LEN);
	out->peer_device = (uint32_t)p[18] << 24 | (uint32_t)p[19] << 16 |
	    (uint32_t)p[20] << 8 | (uint32_t)p[21];
	out->peer_len = n;
	out->peer_addr = (const char *)(p + STORE_NOTICE_HDR_LEN);
	return 0;
}
