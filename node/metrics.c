/*
 * metrics.c: counters, histograms and their renderings (metrics.h).
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_LINE_MAX 256 /* one rendered line; names are ours */

/* Bucket upper bounds in microseconds: 1, 1.5, 2, 3, 5, 7.5 per decade,
 * which keeps neighbours within 1.67x of each other. */
static const uint64_t metrics_bounds[METRICS_HIST_BOUNDS] = {
	10, 15, 20, 30, 50, 75,
	100, 150, 200, 300, 500, 750,
	1000, 1500, 2000, 3000, 5000, 7500,
	10000, 15000, 20000, 30000, 50000, 75000,
	100000, 150000, 200000, 300000, 500000, 750000,
	1000000, 1500000, 2000000, 3000000, 5000000, 7500000,
	10000000,
};

enum metrics_kind {
	MK_COUNTER,  /* only goes up */
	MK_GAUGE     /* goes up and down */
};

/* A plain metric: one uint64_t field of struct metrics. */
struct metrics_def {
	const char *name;       /* without the tern_ prefix */
	enum metrics_kind kind; /* its Prometheus type */
	size_t off;             /* of the field */
	const char *help;       /* the # HELP text */
};

#define MD(f, k, h) {#f, k, offsetof(struct metrics, f), h}

static const struct metrics_def metrics_defs[] = {
	MD(connections_current, MK_GAUGE, "Open client connections."),
	MD(connections_total, MK_COUNTER, "Client connections accepted."),
	MD(unauth_current, MK_GAUGE,
	    "Client connections not logged in yet."),
	MD(logins_total, MK_COUNTER, "Successful logins."),
	MD(login_failures_total, MK_COUNTER, "Refused logins."),
	MD(registrations_total, MK_COUNTER, "Accounts created."),
	MD(envelopes_delivered_total, MK_COUNTER,
	    "Envelopes written to recipient devices."),
	MD(envelopes_acked_total, MK_COUNTER,
	    "Envelopes acknowledged by recipient devices."),
	MD(envelopes_unwritten_total, MK_COUNTER,
	    "Envelopes acknowledged by their recipient device before they "
	    "were written, so never stored."),
	MD(envelopes_queued, MK_GAUGE,
	    "Envelopes stored and not yet acknowledged."),
	MD(queued_bytes, MK_GAUGE, "Payload bytes of the queued envelopes."),
	MD(ephemeral_dropped_total, MK_COUNTER,
	    "Ephemeral envelopes dropped (recipient offline or node "
	    "overloaded)."),
	MD(receipts_deferred_total, MK_COUNTER,
	    "Receipts held in memory while the store was overloaded."),
	MD(expired_total, MK_COUNTER,
	    "Envelopes deleted undelivered after queue_ttl."),
	MD(quota_refusals_total, MK_COUNTER,
	    "Envelopes refused because the recipient's queue was full."),
	MD(rate_limited_total, MK_COUNTER,
	    "Envelopes refused by the per-user send rate limit."),
	MD(protocol_errors_total, MK_COUNTER,
	    "Connections closed for protocol errors."),
	MD(disk_errors_total, MK_COUNTER,
	    "Store commits that failed for the disk."),
	MD(accept_retries_total, MK_COUNTER,
	    "Accepted connections put off for lack of memory (tried "
	    "again every 100 ms)."),
	MD(keys_put_total, MK_COUNTER, "Device key uploads stored."),
	MD(bundles_served_total, MK_COUNTER,
	    "Prekey bundles served, one per device."),
	MD(prekeys_exhausted_total, MK_COUNTER,
	    "Bundles served with the last-resort key: no one-time prekey "
	    "was left."),
	MD(bundle_rate_limited_total, MK_COUNTER,
	    "Bundle fetches refused by the per-pair rate limit."),
	MD(fed_links_up, MK_GAUGE,
	    "Federation links to other domains' nodes established now."),
	MD(fed_inbound_up, MK_GAUGE,
	    "Federation links from other domains' nodes established now."),
	MD(fed_queued, MK_GAUGE,
	    "Envelopes waiting in the outbound queues for other domains."),
	MD(fed_sent_total, MK_COUNTER,
	    "Envelopes other domains' nodes accepted from this one."),
	MD(fed_refused_total, MK_COUNTER,
	    "Envelopes for other domains refused for good or set aside "
	    "(their senders got a notice)."),
	MD(fed_received_total, MK_COUNTER,
	    "Envelopes received from other domains' nodes."),
	MD(fed_auth_refused_total, MK_COUNTER,
	    "Federation links refused: a key that does not serve its "
	    "domain, or a sender outside it."),
	MD(fed_rate_limited_total, MK_COUNTER,
	    "Envelopes from other domains refused by the per-link rate "
	    "limit (their node retries)."),
	MD(fed_presence_watchers, MK_GAUGE,
	    "Users of other domains watching the presence of users here."),
	MD(fed_presence_pushed_total, MK_COUNTER,
	    "Presence changes pushed to other domains' nodes."),
	MD(fed_relayed_in_total, MK_COUNTER,
	    "Envelopes for other domains taken and held here as their "
	    "backup relay."),
	MD(fed_relay_refused_total, MK_COUNTER,
	    "Relayed envelopes (FED_RENV) refused: unauthorized relay or "
	    "bad origin signature."),
	MD(fed_writeback_total, MK_COUNTER,
	    "Envelopes for other domains their node took before the "
	    "outbound enqueue was written here: never stored."),
	MD(store_batches_total, MK_COUNTER, "Store transactions committed."),
	MD(store_requests_total, MK_COUNTER,
	    "Store requests in those transactions."),
	MD(store_memory_bytes, MK_GAUGE,
	    "Memory the store's backend holds (SQLite: page caches and "
	    "statements) after its last commit; part of memory_heap_bytes."),
	MD(memory_heap_bytes, MK_GAUGE,
	    "Heap memory allocated and in use (glibc's allocator)."),
	MD(memory_heap_free_bytes, MK_GAUGE,
	    "Heap memory freed but kept by the allocator for reuse: "
	    "mostly holes between live objects."),
	MD(memory_slab_bytes, MK_GAUGE,
	    "Memory mapped for connections, sessions and users, outside "
	    "the heap: pools of 64 KiB chunks."),
};

struct metrics_hdef {
	const char *name;       /* without tern_ and _seconds */
	size_t off;             /* of the struct metrics_hist */
	const char *help;       /* the # HELP text */
};

static const struct metrics_hdef metrics_hdefs[] = {
	{"send_to_sent", offsetof(struct metrics, send_to_sent_us),
	    "Time from a SEND received to its SENT written."},
	{"send_to_push", offsetof(struct metrics, send_to_push_us),
	    "Time from a SEND received to the DELIVER written to an online "
	    "recipient."},
	{"store_commit", offsetof(struct metrics, store_commit_us),
	    "Time to commit one store transaction."},
};

static const char *const metrics_class_names[METRICS_CLASSES] = {
	"other", "message", "receipt", "ephemeral",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

void
metrics_init(struct metrics *m)
{
	memset(m, 0, sizeof(*m));
}

uint64_t
metrics_hist_bound(unsigned i)
{
	return i < METRICS_HIST_BOUNDS ? metrics_bounds[i] : UINT64_MAX;
}

void
metrics_observe(struct metrics_hist *h, uint64_t us)
{
	unsigned lo = 0, hi = METRICS_HIST_BOUNDS, mid;

	/* The first bound >= us (Prometheus buckets are "le"). */
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (metrics_bounds[mid] < us)
			lo = mid + 1;
		else
			hi = mid;
	}
	h->buckets[lo]++;
	if (h->count == 0 || us < h->min_us)
		h->min_us = us;
	if (us > h->max_us)
		h->max_us = us;
	h->count++;
	h->sum_us += us;
}

uint64_t
metrics_hist_quantile(const struct metrics_hist *h, double q)
{
	uint64_t target, cum = 0, lower, upper;
	double v;
	unsigned i;

	if (h->count == 0)
		return 0;
	if (!(q > 0.0))
		return h->min_us;
	if (q >= 1.0)
		return h->max_us;
	/* The rank of the wanted observation, 1-based. */
	v = q * (double)h->count;
	target = (uint64_t)v;
	if ((double)target < v)
		target++;
	if (target == 0)
		target = 1;
	for (i = 0; i <= METRICS_HIST_BOUNDS; i++) {
		if (cum + h->buckets[i] >= target)
			break;
		cum += h->buckets[i];
	}
	if (i > METRICS_HIST_BOUNDS) /* counts disagree with count */
		return h->max_us;
	lower = i == 0 ? 0 : metrics_bounds[i - 1];
	upper = i < METRICS_HIST_BOUNDS ? metrics_bounds[i] : h->max_us;
	if (upper < lower)
		upper = lower;
	/* Assume the bucket's observations spread evenly over it. */
	v = (double)lower + (double)(upper - lower) *
	    (double)(target - cum) / (double)h->buckets[i];
	if (v < (double)h->min_us)
		return h->min_us;
	if (v > (double)h->max_us)
		return h->max_us;
	return (uint64_t)(v + 0.5);
}

void
metrics_sample(struct metrics *m, uint64_t now_ms)
{
	const struct metrics_sample *last;

	if (m->nsamples > 0) {
		last = &m->samples[(m->sample_next + METRICS_SAMPLES - 1) %
		    METRICS_SAMPLES];
		if (now_ms <= last->t_ms)
			return;
	} else
		m->start_ms = now_ms;
	m->samples[m->sample_next].t_ms = now_ms;
	m->samples[m->sample_next].delivered = m->envelopes_delivered_total;
	m->sample_next = (m->sample_next + 1) % METRICS_SAMPLES;
	if (m->nsamples < METRICS_SAMPLES)
		m->nsamples++;
}

int
metrics_delivery_rate(const struct metrics *m, uint64_t window_ms,
    double *rate)
{
	const struct metrics_sample *newest, *old = NULL;
	uint32_t k, newest_i;

	if (m->nsamples < 2)
		return TERN_ENOTFOUND;
	newest_i = (m->sample_next + METRICS_SAMPLES - 1) % METRICS_SAMPLES;
	newest = &m->samples[newest_i];
	for (k = 1; k < m->nsamples; k++) {
		old = &m->samples[(newest_i + METRICS_SAMPLES - k) %
		    METRICS_SAMPLES];
		if (newest->t_ms - old->t_ms >= window_ms)
			break;
	}
	if (newest->delivered < old->delivered) {
		*rate = 0.0; /* a counter never goes back; be safe anyway */
		return 0;
	}
	*rate = (double)(newest->delivered - old->delivered) * 1000.0 /
	    (double)(newest->t_ms - old->t_ms);
	return 0;
}

/* --- rendering --------------------------------------------------------- */

static void metrics_put(struct buf_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* metrics_put: one formatted piece into the writer. Every format here is
 * ours and short, so a piece longer than METRICS_LINE_MAX is a bug. */
static void
metrics_put(struct buf_writer *w, const char *fmt, ...)
{
	char line[METRICS_LINE_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line))
		abort();
	buf_put_bytes(w, line, (size_t)n);
}

/* metrics_seconds: us as decimal seconds without trailing zeros, the way
 * Prometheus clients write bucket bounds ("0.00001", "1.5", "10"). */
static void
metrics_seconds(uint64_t us, char *out, size_t cap)
{
	size_t n;

	snprintf(out, cap, "%llu.%06llu", (unsigned long long)(us / 1000000),
	    (unsigned long long)(us % 1000000));
	n = strlen(out);
	while (n > 0 && out[n - 1] == '0')
		out[--n] = '\0';
	if (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
}

static void
metrics_render_hist(struct buf_writer *w, const struct metrics_hdef *d,
    const struct metrics_hist *h)
{
	char le[32];
	uint64_t cum = 0;
	unsigned i;

	metrics_put(w, "# HELP tern_%s_seconds %s\n", d->name, d->help);
	metrics_put(w, "# TYPE tern_%s_seconds histogram\n", d->name);
	for (i = 0; i < METRICS_HIST_BOUNDS; i++) {
		cum += h->buckets[i];
		metrics_seconds(metrics_bounds[i], le, sizeof(le));
		metrics_put(w, "tern_%s_seconds_bucket{le=\"%s\"} %llu\n",
		    d->name, le, (unsigned long long)cum);
	}
	metrics_put(w, "tern_%s_seconds_bucket{le=\"+Inf\"} %llu\n", d->name,
	    (unsigned long long)h->count);
	metrics_seconds(h->sum_us, le, sizeof(le));
	metrics_put(w, "tern_%s_seconds_sum %s\n", d->name, le);
	metrics_put(w, "tern_%s_seconds_count %llu\n", d->name,
	    (unsigned long long)h->count);
}

int
metrics_render_prometheus(const struct metrics *m, struct buf_writer *w)
{
	const unsigned char *base = (const unsigned char *)m;
	uint64_t v;
	size_t i;

	for (i = 0; i < NELEM(metrics_defs); i++) {
		const struct metrics_def *d = &metrics_defs[i];
		memcpy(&v, base + d->off, sizeof(v));
		metrics_put(w, "# HELP tern_%s %s\n", d->name, d->help);
		metrics_put(w, "# TYPE tern_%s %s\n", d->name,
		    d->kind == MK_COUNTER ? "counter" : "gauge");
		metrics_put(w, "tern_%s %llu\n", d->name,
		    (unsigned long long)v);
	}
	metrics_put(w, "# HELP tern_envelopes_in_total Envelopes received "
	    "from senders, by class.\n");
	metrics_put(w, "# TYPE tern_envelopes_in_total counter\n");
	for (i = 0; i < METRICS_CLASSES; i++)
		metrics_put(w, "tern_envelopes_in_total{class=\"%s\"} %llu\n",
		    metrics_class_names[i],
		    (unsigned long long)m->envelopes_in_total[i]);
	for (i = 0; i < NELEM(metrics_hdefs); i++)
		metrics_render_hist(w, &metrics_hdefs[i],
		    (const struct metrics_hist *)(const void *)(base +
		    metrics_hdefs[i].off));
	return buf_writer_err(w);
}

/* metrics_human_us: a latency for a person ("850 us", "1.2 ms"). */
static void
metrics_human_us(uint64_t us, char *out, size_t cap)
{
	if (us < 1000)
		snprintf(out, cap, "%llu us", (unsigned long long)us);
	else if (us < 1000000)
		snprintf(out, cap, "%.1f ms", (double)us / 1e3);
	else
		snprintf(out, cap, "%.2f s", (double)us / 1e6);
}

/* metrics_human_bytes: a size for a person ("12.3 MiB"). */
static void
metrics_human_bytes(uint64_t b, char *out, size_t cap)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double v = (double)b;
	int u = -1;

	if (b < 1024) {
		snprintf(out, cap, "%llu B", (unsigned long long)b);
		return;
	}
	while (v >= 1024.0 && u < 3) {
		v /= 1024.0;
		u++;
	}
	snprintf(out, cap, "%.1f %s", v, units[u]);
}

static void
metrics_status_rate(const struct metrics *m, struct buf_writer *w,
    uint64_t window_ms)
{
	double r;

	if (metrics_delivery_rate(m, window_ms, &r) == 0)
		metrics_put(w, "%.1f/s over %llu s", r,
		    (unsigned long long)(window_ms / 1000));
	else
		metrics_put(w, "n/a over %llu s",
		    (unsigned long long)(window_ms / 1000));
}

static void
metrics_status_hist(struct buf_writer *w, const char *what,
    const struct metrics_hist *h)
{
	char p50[32], p99[32], p999[32];

	if (h->count == 0) {
		metrics_put(w, "%-14s no data\n", what);
		return;
	}
	metrics_human_us(metrics_hist_quantile(h, 0.5), p50, sizeof(p50));
	metrics_human_us(metrics_hist_quantile(h, 0.99), p99, sizeof(p99));
	metrics_human_us(metrics_hist_quantile(h, 0.999), p999,
	    sizeof(p999));
	metrics_put(w, "%-14s p50 %s, p99 %s, p99.9 %s (%llu samples)\n",
	    what, p50, p99, p999, (unsigned long long)h->count);
}

int
metrics_render_status(const struct metrics *m, struct buf_writer *w)
{
	char bytes[32];
	uint64_t in = 0;
	size_t i;

	for (i = 0; i < METRICS_CLASSES; i++)
		in += m->envelopes_in_total[i];
	metrics_human_bytes(m->queued_bytes, bytes, sizeof(bytes));
	metrics_put(w, "connections:   %llu open (%llu not logged in), "
	    "%llu since start\n", (unsigned long long)m->connections_current,
	    (unsigned long long)m->unauth_current,
	    (unsigned long long)m->connections_total);
	metrics_put(w, "queued:        %llu envelopes, %s\n",
	    (unsigned long long)m->envelopes_queued, bytes);
	metrics_put(w, "delivered:     ");
	metrics_status_rate(m, w, 10000);
	metrics_put(w, ", ");
	metrics_status_rate(m, w, 60000);
	metrics_put(w, "; %llu in all (%llu received, %llu acknowledged "
	    "before they were written)\n",
	    (unsigned long long)m->envelopes_delivered_total,
	    (unsigned long long)in,
	    (unsigned long long)m->envelopes_unwritten_total);
	metrics_status_hist(w, "send->sent:", &m->send_to_sent_us);
	metrics_status_hist(w, "send->push:", &m->send_to_push_us);
	metrics_status_hist(w, "store commit:", &m->store_commit_us);
	metrics_put(w, "refused:       %llu over quota, %llu rate-limited; "
	    "%llu protocol errors, %llu disk errors\n",
	    (unsigned long long)m->quota_refusals_total,
	    (unsigned long long)m->rate_limited_total,
	    (unsigned long long)m->protocol_errors_total,
	    (unsigned long long)m->disk_errors_total);
	if (m->accept_retries_total > 0)
		metrics_put(w, "memory short:  %llu accepted connections put "
		    "off for lack of memory\n",
		    (unsigned long long)m->accept_retries_total);
	if (m->memory_heap_bytes > 0) {
		char heap[32], hfree[32], st[32], slab[32];

		metrics_human_bytes(m->memory_heap_bytes, heap, sizeof(heap));
		metrics_human_bytes(m->memory_heap_free_bytes, hfree,
		    sizeof(hfree));
		metrics_human_bytes(m->store_memory_bytes, st, sizeof(st));
		metrics_human_bytes(m->memory_slab_bytes, slab, sizeof(slab));
		metrics_put(w, "memory:        heap %s in use (the store's "
		    "%s), %s free in the allocator; %s mapped for "
		    "connections\n", heap, st, hfree, slab);
	}
	if (m->fed_links_up + m->fed_inbound_up + m->fed_sent_total +
	    m->fed_received_total + m->fed_queued > 0)
		metrics_put(w, "federation:    %llu links out, %llu in; "
		    "%llu queued out; %llu sent (%llu taken before they "
		    "were written here), %llu refused; %llu received, "
		    "%llu over the inbound limit\n",
		    (unsigned long long)m->fed_links_up,
		    (unsigned long long)m->fed_inbound_up,
		    (unsigned long long)m->fed_queued,
		    (unsigned long long)m->fed_sent_total,
		    (unsigned long long)m->fed_writeback_total,
		    (unsigned long long)m->fed_refused_total,
		    (unsigned long long)m->fed_received_total,
		    (unsigned long long)m->fed_rate_limited_total);
	return buf_writer_err(w);
}
