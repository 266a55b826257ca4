/*
 * rcache.h: recipients recently found in the store, so that a SEND to a
 * device that is not online does not cost the loop thread two SQLite
 * reads (user, then device) every time.
 *
 * Only "this user has this device, and this is its user id" is kept, for
 * ttl_ms, in a direct-mapped table of fixed size: a new entry replaces
 * whatever held its slot. Nothing negative is kept, so a user or device
 * that appears is seen at once.
 *
 * A stale entry can't deliver anything the store would refuse: the
 * writer checks again when it enqueues (a removed device fails its
 * foreign key, a disabled or deleted user the quota update), and the
 * sender gets the same error, only from the writer. The node still
 * clears the table when it removes a device or disables or deletes a
 * user itself, so that the usual error comes at once.
 *
 * Time is the caller's (milliseconds, monotonic). Loop thread only.
 */
#ifndef TERN_RCACHE_H
#define TERN_RCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "tern_err.h"

struct rcache;

/* rcache_new: an empty table of nslots (a power of two, >= 1) entries
 * kept ttl_ms (>= 1). TERN_EINVAL, TERN_ENOMEM. */
int rcache_new(uint32_t nslots, uint64_t ttl_ms, struct rcache **out) TERN_WUR;
void rcache_free(struct rcache *rc);

/* rcache_get: true and *user_id if name's device is known at now_ms. */
bool rcache_get(struct rcache *rc, const char *name, uint32_t device,
    uint64_t now_ms, int64_t *user_id);
/* rcache_put: name (at most 64 bytes; longer is not kept) has device and
 * user id user_id, as the store said at now_ms. */
void rcache_put(struct rcache *rc, const char *name, uint32_t device,
    int64_t user_id, uint64_t now_ms);
/* rcache_clear: forgets everything. */
void rcache_clear(struct rcache *rc);

#endif
