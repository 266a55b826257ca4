/*
 * fuzz_chan_peers.h: two in-memory channel peers with fixed keys, shared
 * by the channel fuzz targets and their seed generator. Fixed keys make a
 * run deterministic, so a recorded transcript replays exactly.
 */
#ifndef TERN_FUZZ_CHAN_PEERS_H
#define TERN_FUZZ_CHAN_PEERS_H

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "chan.h"

#define FP_CAP (1u << 18)

struct fp_peer {
	struct chan c;       /* the channel */
	uint8_t *out;        /* what it queued (FP_CAP bytes) */
	size_t out_len;      /* in out */
	int msgs;            /* messages received */
	int opened;          /* handshakes finished */
};

static const uint8_t fp_ini_s[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
static const uint8_t fp_ini_e[32] = {11, 12, 13, 14, 15, 16, 17};
static const uint8_t fp_res_s[32] = {21, 22, 23, 24, 25, 26, 27, 28};
static const uint8_t fp_res_e[32] = {31, 32, 33, 34, 35, 36, 37};

static uint8_t *
fp_reserve(void *arg, size_t n)
{
	struct fp_peer *p = arg;
	uint8_t *r;

	if (p->out_len + n > FP_CAP)
		return NULL;
	r = p->out + p->out_len;
	p->out_len += n;
	return r;
}

static int
fp_open(void *arg)
{
	((struct fp_peer *)arg)->opened++;
	return 0;
}

static int
fp_message(void *arg, const uint8_t *m, size_t n)
{
	struct fp_peer *p = arg;
	volatile uint8_t sink = 0;

	/* Touch every byte so the sanitizers see any overread. */
	for (size_t i = 0; i < n; i++)
		sink ^= m[i];
	(void)sink;
	p->msgs++;
	return 0;
}

static const struct chan_cbs fp_cbs = {
	.reserve = fp_reserve,
	.open = fp_open,
	.message = fp_message,
};

/* fp_init: an initiator (XX or IK) and a responder, not started. */
static int
fp_init(struct fp_peer *ini, struct fp_peer *res, enum chan_pattern pat,
    uint8_t *ini_buf, uint8_t *res_buf)
{
	uint8_t res_pub[32];
	int r;

	memset(ini, 0, sizeof(*ini));
	memset(res, 0, sizeof(*res));
	ini->out = ini_buf;
	res->out = res_buf;
	if (noise_public_key(fp_res_s, res_pub) != 0)
		return TERN_EKEY;
	r = chan_init(&res->c, CHAN_RESPONDER, CHAN_KIND_CLIENT, 0, fp_res_s,
	    NULL, NULL, 70000, &fp_cbs, res);
	if (r == 0)
		r = chan_test_set_ephemeral(&res->c, fp_res_e);
	if (r == 0)
		r = chan_init(&ini->c, CHAN_INITIATOR, CHAN_KIND_CLIENT, pat,
		    fp_ini_s, NULL, pat == CHAN_IK ? res_pub : NULL, 70000,
		    &fp_cbs, ini);
	if (r == 0)
		r = chan_test_set_ephemeral(&ini->c, fp_ini_e);
	return r;
}

/* fp_move: hands what from queued to to; returns chan_feed's result. */
static int
fp_move(struct fp_peer *from, struct fp_peer *to)
{
	size_t n = from->out_len;

	from->out_len = 0;
	return chan_feed(&to->c, from->out, n);
}

#endif
