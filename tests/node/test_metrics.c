/*
 * test_metrics.c: histogram buckets and percentile estimates, the
 * Prometheus text, the status summary with its delivery rates, and
 * bounded output.
 */
#include "metrics.h"
#include "tt.h"

static struct metrics M;

/* The estimate is within tol of want. */
#define TT_NEAR(got, want, tol)                                            \
	do {                                                               \
		long long g_ = (long long)(got), w_ = (long long)(want);   \
		long long t_ = (long long)(tol);                           \
		if (g_ < w_ - t_ || g_ > w_ + t_)                          \
			tt_fail(__FILE__, __LINE__, "%s = %lld, want %lld" \
			    " +- %lld", #got, g_, w_, t_);                 \
	} while (0)

static const char *
render(char *buf, size_t cap, int status)
{
	struct buf_writer w;

	buf_writer_init(&w, (uint8_t *)buf, cap - 1);
	if (status)
		TT_OK(metrics_render_status(&M, &w));
	else
		TT_OK(metrics_render_prometheus(&M, &w));
	buf[w.len] = '\0';
	return buf;
}

static void
has(const char *text, const char *want)
{
	if (strstr(text, want) == NULL)
		tt_fail(__FILE__, __LINE__, "missing:\n%s\nin:\n%s", want,
		    text);
}

TT_CASE(metrics__hist__bucket_edges_are_inclusive)
{
	struct metrics_hist h = {0};

	metrics_observe(&h, 0);
	metrics_observe(&h, 10);
	metrics_observe(&h, 11);
	metrics_observe(&h, 15);
	metrics_observe(&h, 10000000);
	metrics_observe(&h, 10000001);
	TT_EQ(h.buckets[0], 2);
	TT_EQ(h.buckets[1], 2);
	TT_EQ(h.buckets[METRICS_HIST_BOUNDS - 1], 1);
	TT_EQ(h.buckets[METRICS_HIST_BOUNDS], 1);
	TT_EQ(h.count, 6);
	TT_EQ(h.min_us, 0);
	TT_EQ(h.max_us, 10000001);
	TT_EQ(metrics_hist_bound(0), 10);
	TT_EQ(metrics_hist_bound(METRICS_HIST_BOUNDS - 1), 10000000);
	TT_EQ(metrics_hist_bound(METRICS_HIST_BOUNDS), UINT64_MAX);
	/* Bounds rise, by at most 1.67x. */
	for (unsigned i = 1; i < METRICS_HIST_BOUNDS; i++) {
		TT_ASSERT(metrics_hist_bound(i) > metrics_hist_bound(i - 1));
		TT_ASSERT(metrics_hist_bound(i) * 3 <=
		    metrics_hist_bound(i - 1) * 5);
	}
}

TT_CASE(metrics__hist__percentiles_of_uniform_data)
{
	struct metrics_hist h = {0};

	TT_EQ(metrics_hist_quantile(&h, 0.5), 0);
	for (uint64_t us = 1; us <= 10000; us++)
		metrics_observe(&h, us);
	TT_EQ(h.count, 10000);
	TT_EQ(h.sum_us, 50005000);
	/* Uniform data fills each bucket evenly: the interpolation is
	 * exact up to rounding. */
	TT_NEAR(metrics_hist_quantile(&h, 0.5), 5000, 1);
	TT_NEAR(metrics_hist_quantile(&h, 0.99), 9900, 1);
	TT_NEAR(metrics_hist_quantile(&h, 0.999), 9990, 1);
	TT_NEAR(metrics_hist_quantile(&h, 0.1), 1000, 1);
	TT_EQ(metrics_hist_quantile(&h, 1.0), 10000);
	TT_EQ(metrics_hist_quantile(&h, 0.0), 1);
}

TT_CASE(metrics__hist__percentiles_of_skewed_data)
{
	struct metrics_hist h = {0};
	uint64_t p;
	int i;

	/* All the same: every percentile is that value. */
	for (i = 0; i < 1000; i++)
		metrics_observe(&h, 100);
	TT_EQ(metrics_hist_quantile(&h, 0.5), 100);
	TT_EQ(metrics_hist_quantile(&h, 0.999), 100);

	/* 99% fast, 1% slow: p99 is fast, p99.9 is slow. */
	memset(&h, 0, sizeof(h));
	for (i = 0; i < 990; i++)
		metrics_observe(&h, 50);
	for (i = 0; i < 10; i++)
		metrics_observe(&h, 2000000);
	TT_EQ(metrics_hist_quantile(&h, 0.5), 50);
	TT_EQ(metrics_hist_quantile(&h, 0.99), 50);
	p = metrics_hist_quantile(&h, 0.999);
	TT_ASSERT(p > 1500000 && p <= 2000000);

	/* Beyond the last bound: the estimate reaches the largest value. */
	memset(&h, 0, sizeof(h));
	metrics_observe(&h, 5);
	metrics_observe(&h, 30000000);
	TT_ASSERT(metrics_hist_quantile(&h, 0.5) <= 10); /* first bucket */
	TT_EQ(metrics_hist_quantile(&h, 0.99), 30000000);
}

TT_CASE(metrics__prometheus__expected_lines)
{
	static char buf[65536];
	const char *t, *p;
	uint64_t last = 0, v;
	int types = 0;

	metrics_init(&M);
	M.connections_current = 3;
	M.logins_total = 7;
	M.queued_bytes = 1536;
	M.envelopes_in_total[1] = 5;
	M.envelopes_in_total[3] = 2;
	metrics_observe(&M.send_to_sent_us, 10);
	metrics_observe(&M.send_to_sent_us, 1000);
	metrics_observe(&M.send_to_sent_us, 20000000);
	t = render(buf, sizeof(buf), 0);

	has(t, "# HELP tern_connections_current Open client connections.\n"
	    "# TYPE tern_connections_current gauge\n"
	    "tern_connections_current 3\n");
	has(t, "# TYPE tern_logins_total counter\ntern_logins_total 7\n");
	has(t, "# TYPE tern_queued_bytes gauge\ntern_queued_bytes 1536\n");
	has(t, "# TYPE tern_memory_heap_bytes gauge\n"
	    "tern_memory_heap_bytes 0\n");
	has(t, "# TYPE tern_store_memory_bytes gauge\n");
	has(t, "\ntern_disk_errors_total 0\n");
	has(t, "# TYPE tern_envelopes_in_total counter\n"
	    "tern_envelopes_in_total{class=\"other\"} 0\n"
	    "tern_envelopes_in_total{class=\"message\"} 5\n"
	    "tern_envelopes_in_total{class=\"receipt\"} 0\n"
	    "tern_envelopes_in_total{class=\"ephemeral\"} 2\n");
	has(t, "# TYPE tern_send_to_sent_seconds histogram\n"
	    "tern_send_to_sent_seconds_bucket{le=\"0.00001\"} 1\n"
	    "tern_send_to_sent_seconds_bucket{le=\"0.000015\"} 1\n");
	has(t, "tern_send_to_sent_seconds_bucket{le=\"0.00075\"} 1\n"
	    "tern_send_to_sent_seconds_bucket{le=\"0.001\"} 2\n");
	has(t, "tern_send_to_sent_seconds_bucket{le=\"7.5\"} 2\n"
	    "tern_send_to_sent_seconds_bucket{le=\"10\"} 2\n"
	    "tern_send_to_sent_seconds_bucket{le=\"+Inf\"} 3\n"
	    "tern_send_to_sent_seconds_sum 20.00101\n"
	    "tern_send_to_sent_seconds_count 3\n");
	has(t, "# TYPE tern_send_to_push_seconds histogram\n");
	has(t, "tern_store_commit_seconds_bucket{le=\"+Inf\"} 0\n"
	    "tern_store_commit_seconds_sum 0\n"
	    "tern_store_commit_seconds_count 0\n");

	/* Every line is a comment on a tern_ metric or a tern_ sample with
	 * a value, and the commit histogram's buckets never decrease. */
	TT_ASSERT(t[strlen(t) - 1] == '\n');
	for (p = t; *p != '\0'; p = strchr(p, '\n') + 1) {
		size_t n = strcspn(p, "\n");
		if (strncmp(p, "# TYPE ", 7) == 0)
			types++;
		if (p[0] == '#') {
			TT_ASSERT(strncmp(p, "# HELP tern_", 12) == 0 ||
			    strncmp(p, "# TYPE tern_", 12) == 0);
			continue;
		}
		TT_ASSERT(strncmp(p, "tern_", 5) == 0);
		TT_ASSERT(memchr(p, ' ', n) != NULL);
		if (strncmp(p, "tern_send_to_sent_seconds_bucket", 32) == 0) {
			v = strtoull(strrchr(p, ' ') + 1, NULL, 10);
			TT_ASSERT(v >= last);
			last = v;
		}
	}
	/* 42 counters and gauges, 1 labelled, 3 histograms. */
	TT_EQ(types, 42 + 1 + 3);
}

TT_CASE(metrics__render__bounded_output)
{
	static uint8_t buf[65536];
	struct buf_writer w;
	size_t need;

	metrics_init(&M);
	metrics_observe(&M.store_commit_us, 1234);
	/* A tiny buffer: the error, and nothing written past its end. */
	memset(buf, 0xAA, sizeof(buf));
	buf_writer_init(&w, buf, 100);
	TT_ERR(metrics_render_prometheus(&M, &w), TERN_ETOOBIG);
	TT_ASSERT(w.len <= 100);
	for (size_t i = 100; i < 4096; i++)
		TT_EQ(buf[i], 0xAA);
	buf_writer_init(&w, buf, 50);
	TT_ERR(metrics_render_status(&M, &w), TERN_ETOOBIG);
	for (size_t i = 50; i < 4096; i++)
		TT_ASSERT(i < 100 || buf[i] == 0xAA);

	/* A counting writer gives the exact size: it fits, one less not. */
	buf_writer_init_count(&w);
	TT_OK(metrics_render_prometheus(&M, &w));
	need = w.len;
	TT_ASSERT(need > 1000 && need < sizeof(buf));
	buf_writer_init(&w, buf, need);
	TT_OK(metrics_render_prometheus(&M, &w));
	TT_EQ(w.len, need);
	buf_writer_init(&w, buf, need - 1);
	TT_ERR(metrics_render_prometheus(&M, &w), TERN_ETOOBIG);
}

TT_CASE(metrics__status__rates_from_samples)
{
	static char buf[4096];
	const char *t;
	double r;
	uint64_t t0 = 1000000, s;

	metrics_init(&M);
	TT_ERR(metrics_delivery_rate(&M, 10000, &r), TERN_ENOTFOUND);
	t = render(buf, sizeof(buf), 1);
	has(t, "delivered:     n/a over 10 s, n/a over 60 s; 0 in all");
	has(t, "send->sent:    no data\n");

	/* 50 s at 10 per second, then 10 s at 100 per second. */
	for (s = 0; s <= 60; s++) {
		metrics_sample(&M, t0 + s * 1000);
		M.envelopes_delivered_total += s < 50 ? 10 : 100;
	}
	/* The last increment came after the last sample. */
	M.envelopes_delivered_total -= 100;
	TT_OK(metrics_delivery_rate(&M, 10000, &r));
	TT_NEAR(r * 10, 1000, 0);
	TT_OK(metrics_delivery_rate(&M, 60000, &r));
	TT_NEAR(r * 10, 250, 0);
	/* A window longer than the history uses all of it. */
	TT_OK(metrics_delivery_rate(&M, 3600000, &r));
	TT_NEAR(r * 10, 250, 0);

	/* A sample from the past is ignored. */
	metrics_sample(&M, t0);
	TT_OK(metrics_delivery_rate(&M, 10000, &r));
	TT_NEAR(r * 10, 1000, 0);

	M.connections_current = 3;
	M.unauth_current = 1;
	M.connections_total = 10;
	M.envelopes_queued = 5;
	M.queued_bytes = 1536;
	M.envelopes_in_total[1] = 4;
	M.envelopes_unwritten_total = 3;
	metrics_observe(&M.send_to_sent_us, 800);
	metrics_observe(&M.send_to_sent_us, 2500);
	t = render(buf, sizeof(buf), 1);
	has(t, "connections:   3 open (1 not logged in), 10 since start\n");
	has(t, "queued:        5 envelopes, 1.5 KiB\n");
	has(t, "delivered:     100.0/s over 10 s, 25.0/s over 60 s; 1500 in "
	    "all (4 received, 3 acknowledged before they were written)\n");
	/* One observation per bucket: the estimate is the bucket's top. */
	has(t, "send->sent:    p50 1.0 ms, p99 2.5 ms, p99.9 2.5 ms "
	    "(2 samples)\n");
	has(t, "refused:       0 over quota, 0 rate-limited; 0 protocol "
	    "errors, 0 disk errors\n");
	/* A line about accepts put off only when there were some. */
	TT_ASSERT(strstr(t, "memory short:") == NULL);
	/* No memory line until the node has read its allocator. */
	TT_ASSERT(strstr(t, "memory:") == NULL);
	M.memory_heap_bytes = 3 * 1048576;
	M.memory_heap_free_bytes = 512;
	M.store_memory_bytes = 1048576 + 524288;
	M.memory_slab_bytes = 3 * 65536;
	t = render(buf, sizeof(buf), 1);
	t = render(buf, sizeof(buf), 1);
	has(t, "memory:        heap 3.0 MiB in use (the store's 1.5 MiB), "
	    "512 B free in the allocator; 192.0 KiB mapped for "
	    "connections\n");
	M.accept_retries_total = 7;
	t = render(buf, sizeof(buf), 1);
	has(t, "memory short:  7 accepted connections put off for lack of "
	    "memory\n");

	/* The ring wraps: after many more samples only the last minute
	 * counts. */
	for (s = 61; s <= 300; s++) {
		metrics_sample(&M, t0 + s * 1000);
		M.envelopes_delivered_total += 1;
	}
	TT_OK(metrics_delivery_rate(&M, 60000, &r));
	TT_NEAR(r * 10, 10, 0);
	TT_EQ(M.nsamples, METRICS_SAMPLES);
}
