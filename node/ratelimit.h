/*
 * ratelimit.h: token buckets per pair of 64-bit keys (for bundle fetches:
 * requesting user, target user; SPEC.md 12.3), kept in memory in a table
 * of bounded size.
 *
 * Each bucket holds up to `burst` tokens and gains one every `interval_ms`.
 * It is stored as the single time at which it will be full again (the
 * "theoretical arrival time" of GCRA), so a bucket that is full carries no
 * information and its entry can be dropped: the table holds only buckets
 * that were drawn from recently. When the table is full, full buckets are
 * swept out; if none is, the bucket closest to full is evicted, which at
 * worst hands a few tokens back to one pair: the cap on memory matters
 * more than exactness under such load.
 *
 * Time is whatever the caller passes (milliseconds, monotonic): the node
 * gives its loop's clock, tests a clock of their own. Loop thread only.
 */
#ifndef TERN_RATELIMIT_H
#define TERN_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

#include "tern_err.h"

struct ratelimit;

/*
 * ratelimit_new: an empty table (every bucket full) of at most
 * max_entries buckets (>= 1). burst >= 1, interval_ms >= 1. TERN_EINVAL,
 * TERN_ENOMEM. *out is freed with ratelimit_free.
 */
int ratelimit_new(uint32_t burst, uint64_t interval_ms, uint32_t max_entries,
    struct ratelimit **out) TERN_WUR;
void ratelimit_free(struct ratelimit *rl);

/*
 * ratelimit_take: takes one token from the bucket of (a, b) at now_ms: 0,
 * or TERN_ERATE when it is empty (then nothing is taken). A clock that
 * goes backwards counts as standing still. TERN_ENOMEM only if a new
 * entry cannot be allocated (the caller decides whether to let it pass).
 */
int ratelimit_take(struct ratelimit *rl, uint64_t a, uint64_t b,
    uint64_t now_ms) TERN_WUR;

/* ratelimit_entries: buckets currently held (for tests and metrics). */
size_t ratelimit_entries(const struct ratelimit *rl);

#endif
