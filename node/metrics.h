/*
 * metrics.h: the node's counters, gauges and latency histograms, and
 * their two renderings: Prometheus text for /metrics and a short summary
 * for `ternd status`.
 *
 * Everything is a plain uint64_t field that the loop thread updates
 * directly (srv->m.logins_total++): the node is single-threaded, so no
 * atomics, locks or registration are needed, and a counter costs one
 * increment. To add a metric: add the field here and one row to the
 * table at the top of metrics.c, which names it and says what it counts.
 *
 * Histograms have fixed buckets, log-spaced from 10 µs to 10 s (1, 1.5,
 * 2, 3, 5 and 7.5 per decade), recorded in microseconds and exported in
 * seconds, as Prometheus expects. Percentiles are estimated from the
 * buckets by interpolation, so they are good to about the width of a
 * bucket (at most 1.67x), and are clamped to the smallest and largest
 * value seen.
 *
 * Written by hand: the Prometheus C client (libprom) is not in Debian,
 * and the text format is a few printf lines.
 */
#ifndef TERN_METRICS_H
#define TERN_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "tern_err.h"

#define METRICS_HIST_BOUNDS 37  /* finite bucket bounds, 10us..10s */
#define METRICS_CLASSES 4       /* envelope class index (msg.h) */
#define METRICS_SAMPLES 64      /* 1 Hz samples kept: over a minute */

struct metrics_hist {
	uint64_t buckets[METRICS_HIST_BOUNDS + 1]; /* non-cumulative; the last
	                                              is above 10 s (+Inf) */
	uint64_t count;          /* observations */
	uint64_t sum_us;         /* their sum */
	uint64_t min_us;         /* smallest (valid when count > 0) */
	uint64_t max_us;         /* largest */
};

/* One sample of the delivery counter, for rates. */
struct metrics_sample {
	uint64_t t_ms;           /* when (any monotonic clock) */
	uint64_t delivered;      /* envelopes_delivered_total then */
};

struct metrics {
	/* Connections. */
	uint64_t connections_current;    /* gauge: open client connections */
	uint64_t connections_total;      /* accepted since start */
	uint64_t unauth_current;         /* gauge: not logged in yet */
	uint64_t logins_total;           /* successful logins */
	uint64_t login_failures_total;   /* refused logins */
	uint64_t registrations_total;    /* accounts created */

	/* Envelopes. */
	uint64_t envelopes_in_total[METRICS_CLASSES]; /* SENDs by class:
	                                    1 message, 2 receipt, 3 ephemeral;
	                                    0 anything else */
	uint64_t envelopes_delivered_total; /* DELIVERs written to devices */
	uint64_t envelopes_acked_total;  /* ACKs from devices */
	uint64_t envelopes_unwritten_total; /* acked before being written */
	uint64_t envelopes_queued;       /* gauge: stored, not yet acked */
	uint64_t queued_bytes;           /* gauge: their payload bytes */
	uint64_t ephemeral_dropped_total; /* ephemeral to offline devices */
	uint64_t receipts_deferred_total; /* receipts held under load */
	uint64_t expired_total;          /* deleted undelivered (queue_ttl) */

	/* Refusals and errors. */
	uint64_t quota_refusals_total;   /* SENDs refused: mailbox full */
	uint64_t rate_limited_total;     /* SENDs refused: send_rate */
	uint64_t protocol_errors_total;  /* peers closed for bad bytes */
	uint64_t disk_errors_total;      /* commits failed for the disk */
	uint64_t accept_retries_total;   /* accepts put off: no memory */

	/* End-to-end keys (SPEC.md section 12). */
	uint64_t keys_put_total;         /* KEYS_PUT stored */
	uint64_t bundles_served_total;   /* BUNDLE records (devices) served */
	uint64_t prekeys_exhausted_total; /* of them, with the last-resort key:
	                                    the device had no one-time left */
	uint64_t bundle_rate_limited_total; /* BUNDLE_GETs refused: ERATE */

	/* Federation (SPEC.md section 13). */
	uint64_t fed_links_up;           /* outbound links established */
	uint64_t fed_inbound_up;         /* inbound links established */
	uint64_t fed_queued;             /* envelopes for other domains */
	uint64_t fed_sent_total;         /* taken by their destination */
	uint64_t fed_refused_total;      /* refused for good or set aside */
	uint64_t fed_received_total;     /* envelopes from other nodes */
	uint64_t fed_auth_refused_total; /* links refused: key or domain */
	uint64_t fed_rate_limited_total; /* inbound envelopes refused: EBUSY */
	uint64_t fed_presence_watchers;  /* other domains' users watching ours */
	uint64_t fed_presence_pushed_total; /* FED_PRESENCE sent */
	uint64_t fed_relayed_in_total;   /* envelopes held as a backup relay */
	uint64_t fed_writeback_total;    /* outbound envelopes taken before
	                                    their enqueue was written */
	uint64_t fed_relay_refused_total; /* FED_RENV refused */

	/* Store. */
	uint64_t store_batches_total;    /* transactions committed */
	uint64_t store_requests_total;   /* requests in them */
	uint64_t store_memory_bytes;     /* gauge: the backend's own (SQLite:
	                                    page caches, statements) */

	/* Memory, from the allocator (glibc's mallinfo2). */
	uint64_t memory_heap_bytes;      /* gauge: allocated and in use, the
	                                    store's included */
	uint64_t memory_heap_free_bytes; /* gauge: freed but kept by the
	                                    allocator for reuse */
	uint64_t memory_slab_bytes;      /* gauge: mapped for connections,
	                                    sessions and users (slab.h),
	                                    outside the heap */

	/* Latencies. */
	struct metrics_hist send_to_sent_us; /* SEND in -> SENT written */
	struct metrics_hist send_to_push_us; /* SEND in -> DELIVER written
	                                        to an online recipient */
	struct metrics_hist store_commit_us; /* one batch's commit */

	/* Delivery-rate samples (metrics_sample), a ring. */
	struct metrics_sample samples[METRICS_SAMPLES]; /* the ring */
	uint32_t nsamples;               /* valid entries, <= METRICS_SAMPLES */
	uint32_t sample_next;            /* where the next one goes */
	uint64_t start_ms;               /* first sample's time: uptime */
};

/* metrics_init: all zero. */
void metrics_init(struct metrics *m);

/* metrics_observe: one observation of us microseconds. */
void metrics_observe(struct metrics_hist *h, uint64_t us);

/* metrics_hist_quantile: the estimated q-quantile (0 < q <= 1) in
 * microseconds; 0 for an empty histogram. */
uint64_t metrics_hist_quantile(const struct metrics_hist *h, double q);

/* metrics_hist_bound: the upper bound of finite bucket i in
 * microseconds (i < METRICS_HIST_BOUNDS), else UINT64_MAX. */
uint64_t metrics_hist_bound(unsigned i);

/*
 * metrics_sample: records envelopes_delivered_total at now_ms. Call once a
 * second from a timer; a sample not later than the previous one is
 * ignored.
 */
void metrics_sample(struct metrics *m, uint64_t now_ms);

/*
 * metrics_delivery_rate: envelopes delivered per second over the last
 * window_ms, measured between the newest sample and the newest one at
 * least window_ms older (or the oldest kept, if none is that old).
 * TERN_ENOTFOUND until two samples exist.
 */
int metrics_delivery_rate(const struct metrics *m, uint64_t window_ms,
    double *rate) TERN_WUR;

/*
 * metrics_render_prometheus: all metrics in the Prometheus text
 * exposition format 0.0.4 (every name with a tern_ prefix). Returns 0, or
 * the writer's error (TERN_ETOOBIG when it is full; what was written is
 * then incomplete and must not be served). Not warn_unused_result: the
 * result is buf_writer_err(w), which a caller may check later instead,
 * as the HTTP server does.
 */
int metrics_render_prometheus(const struct metrics *m, struct buf_writer *w);

/* metrics_render_status: a few lines for a person: connections, queue,
 * delivery rates over 10 s and 60 s, latencies. Errors as above. */
int metrics_render_status(const struct metrics *m, struct buf_writer *w);

#endif
