/*
 * ratelimit.c: token buckets per key pair, bounded (see ratelimit.h).
 *
 * A chained hash table of individually allocated entries. Written by
 * hand: it is a few dozen lines, and no Debian library offers a bounded
 * keyed rate limiter.
 */
#include "ratelimit.h"

#include <stdlib.h>

struct rl_entry {
	uint64_t a, b;              /* the key pair */
	uint64_t tat;               /* when the bucket is full again (ms) */
	struct rl_entry *next;      /* hash chain */
};

struct ratelimit {
	uint64_t interval_ms;       /* one token per this long */
	uint64_t span_ms;           /* burst * interval_ms: a full bucket */
	uint32_t max_entries;       /* cap on entries */
	uint32_t nentries;          /* entries held */
	uint32_t mask;              /* buckets - 1 (a power of two) */
	struct rl_entry **heads;    /* chains */
};

static uint32_t
rl_hash(const struct ratelimit *rl, uint64_t a, uint64_t b)
{
	uint64_t x = a * 0x9E3779B97F4A7C15ull ^ b * 0xC2B2AE3D27D4EB4Full;

	return (uint32_t)(x >> 32 ^ x) & rl->mask;
}

int
ratelimit_new(uint32_t burst, uint64_t interval_ms, uint32_t max_entries,
    struct ratelimit **out)
{
	struct ratelimit *rl;
	uint32_t n = 1;

	*out = NULL;
	if (burst == 0 || interval_ms == 0 || max_entries == 0 ||
	    interval_ms > UINT64_MAX / 4 / burst)
		return TERN_EINVAL;
	/* About two entries per chain when the table is full. */
	while (n < max_entries / 2 && n < (1u << 30))
		n <<= 1;
	if ((rl = calloc(1, sizeof(*rl))) == NULL)
		return TERN_ENOMEM;
	if ((rl->heads = calloc(n, sizeof(*rl->heads))) == NULL) {
		free(rl);
		return TERN_ENOMEM;
	}
	rl->interval_ms = interval_ms;
	rl->span_ms = (uint64_t)burst * interval_ms;
	rl->max_entries = max_entries;
	rl->mask = n - 1;
	*out = rl;
	return 0;
}

void
ratelimit_free(struct ratelimit *rl)
{
	struct rl_entry *e, *next;
	uint32_t i;

	if (rl == NULL)
		return;
	for (i = 0; i <= rl->mask; i++)
		for (e = rl->heads[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(rl->heads);
	free(rl);
}

/*
 * rl_make_room drops every full bucket (they mean "no limit in force");
 * if there is none, the one closest to full.
 */
static void
rl_make_room(struct ratelimit *rl, uint64_t now)
{
	struct rl_entry **pp, *e, **oldest = NULL;
	uint32_t i;

	for (i = 0; i <= rl->mask; i++) {
		pp = &rl->heads[i];
		while ((e = *pp) != NULL) {
			if (e->tat <= now) {
				*pp = e->next;
				free(e);
				rl->nentries--;
				continue;
			}
			if (oldest == NULL || e->tat < (*oldest)->tat)
				oldest = pp;
			pp = &e->next;
		}
	}
	/* oldest still points at a live link: only other entries went. */
	if (rl->nentries >= rl->max_entries && oldest != NULL) {
		e = *oldest;
		*oldest = e->next;
		free(e);
		rl->nentries--;
	}
}

int
ratelimit_take(struct ratelimit *rl, uint64_t a, uint64_t b, uint64_t now_ms)
{
	uint32_t h = rl_hash(rl, a, b);
	struct rl_entry *e;
	uint64_t tat;

	for (e = rl->heads[h]; e != NULL; e = e->next)
		if (e->a == a && e->b == b)
			break;
	tat = e != NULL && e->tat > now_ms ? e->tat : now_ms;
	/* One more token drawn would leave the bucket below empty. */
	if (tat + rl->interval_ms - now_ms > rl->span_ms)
		return TERN_ERATE;
	if (e == NULL) {
		if (rl->nentries >= rl->max_entries)
			rl_make_room(rl, now_ms);
		if ((e = calloc(1, sizeof(*e))) == NULL)
			return TERN_ENOMEM;
		e->a = a;
		e->b = b;
		e->next = rl->heads[h];
		rl->heads[h] = e;
		rl->nentries++;
	}
	e->tat = tat + rl->interval_ms;
	return 0;
}

size_t
ratelimit_entries(const struct ratelimit *rl)
{
	return rl->nentries;
}
