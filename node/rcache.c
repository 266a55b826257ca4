/*
 * rcache.c: recipients recently found in the store (see rcache.h).
 *
 * One array of fixed slots, allocated once; the memory is touched only
 * as slots are used, so a node that never sends to offline devices pays
 * nothing for it. Written by hand: a dozen lines of hashing and a
 * compare.
 */
#include "rcache.h"

#include <stdlib.h>
#include <string.h>

#define RC_NAME_MAX 64              /* STORE_NAME_MAX: local parts */

struct rc_slot {
	uint64_t expires;           /* 0: empty */
	uint32_t gen;               /* rcache.gen when put; else forgotten */
	int64_t user_id;            /* the user's id in the store */
	uint32_t device;            /* the device that exists */
	uint32_t h;                 /* hash of name and device */
	char name[RC_NAME_MAX + 1]; /* the user's local part */
};

struct rcache {
	uint64_t ttl_ms;            /* how long an entry is trusted */
	uint32_t gen;               /* bumped by rcache_clear */
	uint32_t mask;              /* slots - 1 */
	struct rc_slot *slots;      /* the table */
};

/* FNV-1a over the name, then the device mixed in. */
static uint32_t
rc_hash(const char *name, uint32_t device, size_t *len)
{
	uint32_t h = 2166136261u;
	const char *p = name;

	while (*p)
		h = (h ^ (uint8_t)*p++) * 16777619u;
	*len = (size_t)(p - name);
	return h ^ (device * 0x9E3779B1u);
}

int
rcache_new(uint32_t nslots, uint64_t ttl_ms, struct rcache **out)
{
	struct rcache *rc;

	*out = NULL;
	if (nslots == 0 || (nslots & (nslots - 1)) != 0 || ttl_ms == 0)
		return TERN_EINVAL;
	if ((rc = calloc(1, sizeof(*rc))) == NULL)
		return TERN_ENOMEM;
	if ((rc->slots = calloc(nslots, sizeof(*rc->slots))) == NULL) {
		free(rc);
		return TERN_ENOMEM;
	}
	rc->ttl_ms = ttl_ms;
	rc->mask = nslots - 1;
	*out = rc;
	return 0;
}

void
rcache_free(struct rcache *rc)
{
	if (rc == NULL)
		return;
	free(rc->slots);
	free(rc);
}

bool
rcache_get(struct rcache *rc, const char *name, uint32_t device,
    uint64_t now_ms, int64_t *user_id)
{
	size_t len;
	uint32_t h = rc_hash(name, device, &len);
	struct rc_slot *s = &rc->slots[h & rc->mask];

	if (s->expires == 0 || s->expires <= now_ms || s->gen != rc->gen ||
	    s->h != h ||
	    s->device != device || len > RC_NAME_MAX ||
	    memcmp(s->name, name, len + 1) != 0)
		return false;
	*user_id = s->user_id;
	return true;
}

void
rcache_put(struct rcache *rc, const char *name, uint32_t device,
    int64_t user_id, uint64_t now_ms)
{
	size_t len;
	uint32_t h = rc_hash(name, device, &len);
	struct rc_slot *s = &rc->slots[h & rc->mask];

	if (len > RC_NAME_MAX)
		return;
	s->expires = now_ms + rc->ttl_ms;
	s->gen = rc->gen;
	s->user_id = user_id;
	s->device = device;
	s->h = h;
	memcpy(s->name, name, len + 1);
}

void
rcache_clear(struct rcache *rc)
{
	/* A new generation empties every slot without touching one (a
	 * memset would bring the whole table into memory). After 2^32
	 * clears an old slot could match again, so then it is wiped. */
	if (++rc->gen == 0)
		memset(rc->slots, 0, ((size_t)rc->mask + 1) *
		    sizeof(*rc->slots));
}
