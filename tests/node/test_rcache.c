/*
 * test_rcache.c: the table of recipients lately found in the store:
 * hits, expiry, replacement, names that share a slot, clearing.
 */
#include <stdio.h>
#include <string.h>

#include "rcache.h"
#include "tt.h"

TT_CASE(rcache__new__bad_arguments)
{
	struct rcache *rc = (struct rcache *)1;

	TT_ERR(rcache_new(0, 10, &rc), TERN_EINVAL);
	TT_ASSERT(rc == NULL);
	TT_ERR(rcache_new(3, 10, &rc), TERN_EINVAL);
	TT_ERR(rcache_new(4, 0, &rc), TERN_EINVAL);
	rcache_free(NULL);
}

TT_CASE(rcache__get__hit_until_the_ttl)
{
	struct rcache *rc;
	int64_t id = 0;

	TT_OK(rcache_new(16, 100, &rc));
	TT_ASSERT(!rcache_get(rc, "alice", 1, 1000, &id));
	rcache_put(rc, "alice", 1, 42, 1000);
	TT_ASSERT(rcache_get(rc, "alice", 1, 1000, &id));
	TT_EQ(id, 42);
	TT_ASSERT(rcache_get(rc, "alice", 1, 1099, &id));
	/* Expired at put time + ttl. */
	TT_ASSERT(!rcache_get(rc, "alice", 1, 1100, &id));
	/* Another device of the same user is not known. */
	rcache_put(rc, "alice", 1, 42, 2000);
	TT_ASSERT(!rcache_get(rc, "alice", 2, 2000, &id));
	/* Nor a name that only starts the same. */
	TT_ASSERT(!rcache_get(rc, "alic", 1, 2000, &id));
	TT_ASSERT(!rcache_get(rc, "alice2", 1, 2000, &id));
	rcache_free(rc);
}

TT_CASE(rcache__put__one_slot_keeps_the_newest)
{
	struct rcache *rc;
	char name[16];
	int64_t id;
	int known = 0;

	/* One slot: every put replaces the last, and no get ever returns
	 * another name's id. */
	TT_OK(rcache_new(1, 1000, &rc));
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		rcache_put(rc, name, 1, 100 + i, 10);
		TT_ASSERT(rcache_get(rc, name, 1, 10, &id));
		TT_EQ(id, 100 + i);
	}
	for (int i = 0; i < 49; i++) {
		snprintf(name, sizeof(name), "u%d", i);
		known += rcache_get(rc, name, 1, 10, &id);
	}
	TT_EQ(known, 0);
	rcache_free(rc);
}

TT_CASE(rcache__many__names_sharing_slots_never_mixed_up)
{
	struct rcache *rc;
	char name[16];
	int64_t id;
	int hits = 0;

	/* 1,000 users in 64 slots: whatever is found is right. */
	TT_OK(rcache_new(64, 1000, &rc));
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		rcache_put(rc, name, (uint32_t)(i % 3) + 1, i, 0);
	}
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		for (uint32_t d = 1; d <= 3; d++) {
			if (!rcache_get(rc, name, d, 1, &id))
				continue;
			TT_EQ(id, i);
			TT_EQ(d, (uint32_t)(i % 3) + 1);
			hits++;
		}
	}
	TT_ASSERT(hits > 0 && hits <= 64);
	rcache_free(rc);
}

TT_CASE(rcache__names__longest_kept_longer_not)
{
	struct rcache *rc;
	char n64[65], n65[66];
	int64_t id;

	memset(n64, 'a', 64);
	n64[64] = 0;
	memset(n65, 'b', 65);
	n65[65] = 0;
	TT_OK(rcache_new(16, 1000, &rc));
	rcache_put(rc, n64, 1, 7, 0);
	TT_ASSERT(rcache_get(rc, n64, 1, 0, &id));
	TT_EQ(id, 7);
	rcache_put(rc, n65, 1, 8, 0);
	TT_ASSERT(!rcache_get(rc, n65, 1, 0, &id));
	rcache_free(rc);
}

TT_CASE(rcache__clear__forgets_everything)
{
	struct rcache *rc;
	int64_t id;

	TT_OK(rcache_new(16, 1000, &rc));
	rcache_put(rc, "bob", 1, 5, 0);
	rcache_put(rc, "carol", 2, 6, 0);
	rcache_clear(rc);
	TT_ASSERT(!rcache_get(rc, "bob", 1, 0, &id));
	TT_ASSERT(!rcache_get(rc, "carol", 2, 0, &id));
	/* Usable again after. */
	rcache_put(rc, "bob", 1, 5, 0);
	TT_ASSERT(rcache_get(rc, "bob", 1, 0, &id));
	TT_EQ(id, 5);
	rcache_free(rc);
}
