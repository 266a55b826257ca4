/*
 * chan.c: the secure channel (see chan.h and SPEC.md, "Transport").
 *
 * Bytes arrive in arbitrary pieces. A frame that is whole inside one piece
 * is decrypted where it lies (the caller's read buffer), so an idle
 * connection holds no buffer at all; only a frame split across reads is
 * copied into a heap buffer sized exactly for it, after its declared
 * length has been checked against the cap of the current state.
 */
#include "chan.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

static const char *const chan_protocols[] = {
	[CHAN_XX] = "Noise_XX_25519_ChaChaPoly_BLAKE2b",
	[CHAN_IK] = "Noise_IK_25519_ChaChaPoly_BLAKE2b",
};

static const char *const chan_kind_labels[] = {
	[CHAN_KIND_CLIENT] = "tern client",
	[CHAN_KIND_FEDERATION] = "tern federation",
};

size_t
chan_prologue(enum chan_kind kind, const uint8_t preamble[CHAN_PREAMBLE_LEN],
    uint8_t *out, size_t cap)
{
	const char *label;
	size_t n;

	if (kind != CHAN_KIND_CLIENT && kind != CHAN_KIND_FEDERATION)
		return 0;
	label = chan_kind_labels[kind];
	n = strlen(label);
	if (cap < n + CHAN_PREAMBLE_LEN)
		return 0;
	memcpy(out, label, n);
	memcpy(out + n, preamble, CHAN_PREAMBLE_LEN);
	return n + CHAN_PREAMBLE_LEN;
}

/* What only the handshake needs, in one allocation with it and freed
 * when it ends, so that an open channel does not carry it. The handshake
 * comes first: c->hs points at it, and so at the whole. */
struct chan_hs {
	struct noise_handshake hs;        /* the Noise handshake */
	uint8_t expect_rs[NOISE_DHLEN];   /* key the peer must have, if set */
	bool has_expect;                  /* expect_rs is set */
};

static struct chan_hs *
chan_hsx(const struct chan *c)
{
	return (struct chan_hs *)c->hs;
}

static void
chan_hs_free(struct chan *c)
{
	if (c->hs == NULL)
		return;
	noise_handshake_wipe(c->hs);
	sodium_memzero(chan_hsx(c), sizeof(struct chan_hs));
	free(chan_hsx(c));
	c->hs = NULL;
}

static int
chan_fail(struct chan *c, int err)
{
	if (c->state != CHAN_S_FAILED) {
		c->state = CHAN_S_FAILED;
		c->err = err;
	}
	chan_hs_free(c);
	/* tx stays usable (unless it was the cause) so that the owner can
	 * send one last ERROR message before it closes; chan_wipe wipes it. */
	noise_cipher_wipe(&c->rx);
	return err;
}

static int
chan_fail_tx(struct chan *c, int err)
{
	noise_cipher_wipe(&c->tx);
	return chan_fail(c, err);
}

/* chan_hs_begin: allocates the handshake for the pattern now known and
 * sets the keys its pre-messages need; s_pub NULL: computed from s_priv;
 * expect (or NULL): the key the responder must have. */
static int
chan_hs_begin(struct chan *c, const uint8_t s_priv[NOISE_DHLEN],
    const uint8_t *s_pub, const uint8_t *expect)
{
	struct chan_hs *ch;
	uint8_t preamble[CHAN_PREAMBLE_LEN] = {CHAN_MAGIC0, CHAN_MAGIC1,
	    c->version, c->pattern};
	uint8_t prologue[64];
	size_t plen;
	int r;

	plen = chan_prologue(c->kind, preamble, prologue, sizeof(prologue));
	if (plen == 0)
		return TERN_EINVAL;
	if ((ch = calloc(1, sizeof(*ch))) == NULL)
		return TERN_ENOMEM;
	c->hs = &ch->hs;
	if (expect != NULL) {
		memcpy(ch->expect_rs, expect, NOISE_DHLEN);
		ch->has_expect = true;
	}
	r = noise_handshake_init(c->hs, chan_protocols[c->pattern],
	    c->role == CHAN_INITIATOR, prologue, plen);
	if (r != 0)
		return r;
	r = s_pub != NULL ?
	    noise_handshake_set_static_pair(c->hs, s_priv, s_pub) :
	    noise_handshake_set_static(c->hs, s_priv);
	if (r != 0)
		return r;
	if (c->role == CHAN_INITIATOR && c->pattern == CHAN_IK &&
	    (r = noise_handshake_set_remote_static(c->hs, ch->expect_rs)) != 0)
		return r;
	if (c->test_e != NULL &&
	    (r = noise_handshake_set_ephemeral(c->hs, c->test_e)) != 0)
		return r;
	return 0;
}

int
chan_init(struct chan *c, enum chan_role role, enum chan_kind kind,
    enum chan_pattern pattern, const uint8_t s_priv[NOISE_DHLEN],
    const uint8_t *s_pub, const uint8_t *rs, uint32_t msg_cap,
    const struct chan_cbs *cbs, void *arg)
{
	int r;

	memset(c, 0, sizeof(*c));
	if (cbs == NULL || cbs->reserve == NULL || cbs->message == NULL ||
	    (kind != CHAN_KIND_CLIENT && kind != CHAN_KIND_FEDERATION))
		return TERN_EINVAL;
	c->cbs = cbs;
	c->arg = arg;
	c->role = (uint8_t)role;
	c->kind = (uint8_t)kind;
	c->msg_cap = msg_cap;
	c->version = CHAN_VERSION;
	if (role == CHAN_RESPONDER) {
		if (rs != NULL)
			return TERN_EINVAL;
		/* The static key is needed once the preamble has come: keep
		 * it in the (not yet used) rx key slot until then, and wipe
		 * it there as soon as the handshake holds its own copy. */
		memcpy(c->rx.k, s_priv, NOISE_DHLEN);
		/* Like the private key, the public one waits in a key slot
		 * not used before the handshake ends (tx's), and is wiped
		 * there once it is copied. */
		if (s_pub != NULL) {
			memcpy(c->tx.k, s_pub, NOISE_DHLEN);
			c->has_s_pub = true;
		}
		c->state = CHAN_S_PREAMBLE;
		return 0;
	}
	if (role != CHAN_INITIATOR ||
	    (pattern != CHAN_XX && pattern != CHAN_IK) ||
	    (pattern == CHAN_IK && rs == NULL))
		return TERN_EINVAL;
	c->pattern = (uint8_t)pattern;
	if ((r = chan_hs_begin(c, s_priv, s_pub, rs)) != 0)
		return chan_fail(c, r);
	c->state = CHAN_S_HANDSHAKE;
	return 0;
}

int
chan_test_set_version(struct chan *c, uint8_t v)
{
	uint8_t s_priv[NOISE_DHLEN], expect[NOISE_DHLEN];
	bool has_expect;
	int r;

	if (c->role != CHAN_INITIATOR || c->hs == NULL ||
	    c->hs->msg_idx != 0 || v < CHAN_VERSION_MIN || v > CHAN_VERSION)
		return TERN_EINVAL;
	/* The version is in the prologue: begin the handshake again. */
	memcpy(s_priv, c->hs->s_priv, NOISE_DHLEN);
	memcpy(expect, chan_hsx(c)->expect_rs, NOISE_DHLEN);
	has_expect = chan_hsx(c)->has_expect;
	chan_hs_free(c);
	c->version = v;
	r = chan_hs_begin(c, s_priv, NULL, has_expect ? expect : NULL);
	sodium_memzero(s_priv, sizeof(s_priv));
	return r != 0 ? chan_fail(c, r) : 0;
}

int
chan_test_set_ephemeral(struct chan *c, const uint8_t e_priv[NOISE_DHLEN])
{
	c->test_e = e_priv;
	if (c->hs != NULL)
		return noise_handshake_set_ephemeral(c->hs, e_priv);
	return 0;
}

void
chan_set_msg_cap(struct chan *c, uint32_t msg_cap)
{
	c->msg_cap = msg_cap;
}

bool
chan_is_open(const struct chan *c)
{
	return c->state == CHAN_S_OPEN;
}

const uint8_t *
chan_remote_key(const struct chan *c)
{
	if (c->state == CHAN_S_OPEN)
		return c->rs;
	if (c->hs != NULL)
		return noise_handshake_remote_static(c->hs);
	return NULL;
}

/* chan_hs_write: queues the next handshake message (empty payload). */
static int
chan_hs_write(struct chan *c)
{
	uint8_t buf[CHAN_HS_MAX];
	uint8_t *p;
	size_t n;
	int r;

	r = noise_handshake_write(c->hs, NULL, 0, buf, sizeof(buf), &n);
	if (r != 0)
		return r;
	if ((p = c->cbs->reserve(c->arg, 2 + n)) == NULL)
		return TERN_ENOMEM;
	p[0] = (uint8_t)(n >> 8);
	p[1] = (uint8_t)n;
	memcpy(p + 2, buf, n);
	return 0;
}

/* chan_hs_finish: Split, check the peer's key, drop the handshake. */
static int
chan_hs_finish(struct chan *c)
{
	const uint8_t *rs = noise_handshake_remote_static(c->hs);
	struct noise_cipher i2r, r2i;
	int r;

	if (rs == NULL)
		return TERN_EKEY;
	memcpy(c->rs, rs, NOISE_DHLEN);
	if (chan_hsx(c)->has_expect && sodium_memcmp(c->rs,
	    chan_hsx(c)->expect_rs, NOISE_DHLEN) != 0)
		return TERN_EAUTH;
	if ((r = noise_handshake_split(c->hs, &i2r, &r2i)) != 0)
		return r;
	if (c->role == CHAN_INITIATOR) {
		c->tx = i2r;
		c->rx = r2i;
	} else {
		c->tx = r2i;
		c->rx = i2r;
	}
	sodium_memzero(&i2r, sizeof(i2r));
	sodium_memzero(&r2i, sizeof(r2i));
	chan_hs_free(c);
	c->state = CHAN_S_OPEN;
	if (c->cbs->open != NULL)
		return c->cbs->open(c->arg);
	return 0;
}

int
chan_start(struct chan *c)
{
	uint8_t *p;
	int r;

	if (c->role != CHAN_INITIATOR || c->state != CHAN_S_HANDSHAKE ||
	    noise_handshake_action(c->hs) != NOISE_ACTION_WRITE_MESSAGE)
		return TERN_ESTATE;
	if ((p = c->cbs->reserve(c->arg, CHAN_PREAMBLE_LEN)) == NULL)
		return chan_fail(c, TERN_ENOMEM);
	p[0] = CHAN_MAGIC0;
	p[1] = CHAN_MAGIC1;
	p[2] = c->version;
	p[3] = c->pattern;
	if ((r = chan_hs_write(c)) != 0)
		return chan_fail(c, r);
	return 0;
}

/* chan_preamble: the responder learns the initiator's pattern. */
static int
chan_preamble(struct chan *c)
{
	uint8_t s_priv[NOISE_DHLEN];
	int r;

	if (c->hdr[0] != CHAN_MAGIC0 || c->hdr[1] != CHAN_MAGIC1 ||
	    c->hdr[2] < CHAN_VERSION_MIN || c->hdr[2] > CHAN_VERSION)
		return TERN_EVERSION;
	if (c->hdr[3] != CHAN_XX && c->hdr[3] != CHAN_IK)
		return TERN_EPATTERN;
	/* We speak the initiator's version; it is in the prologue, so a
	 * version changed on the way makes the handshake fail. */
	c->version = c->hdr[2];
	c->pattern = c->hdr[3];
	memcpy(s_priv, c->rx.k, NOISE_DHLEN);
	sodium_memzero(c->rx.k, sizeof(c->rx.k));
	r = chan_hs_begin(c, s_priv, c->has_s_pub ? c->tx.k : NULL, NULL);
	sodium_memzero(s_priv, sizeof(s_priv));
	sodium_memzero(c->tx.k, sizeof(c->tx.k));
	c->has_s_pub = false;
	if (r != 0)
		return r;
	c->state = CHAN_S_HANDSHAKE;
	c->hdr_len = 0;
	return 0;
}

/* chan_hs_frame: one handshake message from the peer. */
static int
chan_hs_frame(struct chan *c, const uint8_t *f, size_t n)
{
	uint8_t payload[CHAN_HS_MAX];
	const uint8_t *rs;
	size_t plen;
	int r;

	if (noise_handshake_action(c->hs) != NOISE_ACTION_READ_MESSAGE)
		return TERN_ESTATE;
	r = noise_handshake_read(c->hs, f, n, payload, sizeof(payload),
	    &plen);
	if (r != 0)
		return r;
	/* Handshake payloads are empty in transport versions 1 and 2. */
	if (plen != 0)
		return TERN_EFIELD;
	/* A pinned responder key is checked as soon as it is revealed, so
	 * that our own static key (XX message 3) never goes to an impostor. */
	rs = noise_handshake_remote_static(c->hs);
	if (chan_hsx(c)->has_expect && rs != NULL &&
	    sodium_memcmp(rs, chan_hsx(c)->expect_rs, NOISE_DHLEN) != 0)
		return TERN_EAUTH;
	if (noise_handshake_action(c->hs) == NOISE_ACTION_WRITE_MESSAGE &&
	    (r = chan_hs_write(c)) != 0)
		return r;
	if (noise_handshake_action(c->hs) == NOISE_ACTION_SPLIT)
		return chan_hs_finish(c);
	return 0;
}

/* chan_deliver: appends a fragment, hands over whole messages. */
static int
chan_deliver(struct chan *c, const uint8_t *frag, size_t n, bool more)
{
	uint8_t *m;
	int r;

	if (c->msg == NULL && !more) {
		if (n > c->msg_cap)
			return TERN_ETOOBIG;
		return c->cbs->message(c->arg, frag, n);
	}
	if ((size_t)c->msg_len + n > c->msg_cap)
		return TERN_ETOOBIG;
	if (n > 0 || c->msg == NULL) {
		m = realloc(c->msg, (size_t)c->msg_len + n + 1);
		if (m == NULL)
			return TERN_ENOMEM;
		c->msg = m;
		memcpy(c->msg + c->msg_len, frag, n);
		c->msg_len += (uint32_t)n;
	}
	if (more)
		return 0;
	r = c->cbs->message(c->arg, c->msg, c->msg_len);
	sodium_memzero(c->msg, c->msg_len);
	free(c->msg);
	c->msg = NULL;
	c->msg_len = 0;
	return r;
}

/* chan_batch: the body of a batch frame, whole messages each behind a
 * u16 length (SPEC.md 2.5), handed over in order. */
static int
chan_batch(struct chan *c, const uint8_t *p, size_t n)
{
	size_t len;
	int r;

	if (n == 0)
		return TERN_ETRUNC;
	while (n > 0) {
		if (n < 2)
			return TERN_ETRUNC;
		len = ((size_t)p[0] << 8) | p[1];
		p += 2;
		n -= 2;
		if (len == 0 || len > n)
			return TERN_ETRUNC;
		if (len > c->msg_cap)
			return TERN_ETOOBIG;
		if ((r = c->cbs->message(c->arg, p, len)) != 0)
			return r;
		p += len;
		n -= len;
	}
	return 0;
}

/* chan_frame: one whole frame body f of n bytes (decrypted in place). */
static int
chan_frame(struct chan *c, uint8_t *f, size_t n)
{
	size_t plen;
	int r;

	if (c->state == CHAN_S_HANDSHAKE)
		return chan_hs_frame(c, f, n);
	r = noise_cipher_decrypt(&c->rx, NULL, 0, f, n, f, n, &plen);
	if (r != 0)
		return r;
	if (plen < 1)
		return TERN_ETRUNC;
	if (f[0] & CHAN_FLAG_BATCH) {
		/* Not in version 1; never with MORE, nor inside a message
		 * that is being reassembled. */
		if (c->version < 2 || (f[0] & CHAN_FLAG_MORE) ||
		    c->msg != NULL)
			return TERN_EFIELD;
		if ((f[0] & ~CHAN_FLAG_BATCH) != 0)
			return TERN_EFIELD;
		return chan_batch(c, f + 1, plen - 1);
	}
	if ((f[0] & ~CHAN_FLAG_MORE) != 0)
		return TERN_EFIELD;
	return chan_deliver(c, f + 1, plen - 1, (f[0] & CHAN_FLAG_MORE) != 0);
}

/* chan_frame_len: checks a declared frame length against the state's
 * bounds, before anything is allocated for it. */
static int
chan_frame_len(const struct chan *c, size_t n)
{
	if (c->state == CHAN_S_HANDSHAKE)
		return n > CHAN_HS_MAX ? TERN_ETOOBIG :
		    n < NOISE_DHLEN ? TERN_ETRUNC : 0;
	if (n < CHAN_FRAME_MIN)
		return TERN_ETRUNC;
	return 0; /* a u16 can't exceed CHAN_FRAME_MAX */
}

int
chan_feed(struct chan *c, uint8_t *in, size_t len)
{
	size_t need, take;
	int r = 0;

	if (c->state == CHAN_S_FAILED)
		return c->err;
	while (len > 0) {
		if (c->state == CHAN_S_PREAMBLE) {
			take = CHAN_PREAMBLE_LEN - c->hdr_len;
			if (take > len)
				take = len;
			memcpy(c->hdr + c->hdr_len, in, take);
			c->hdr_len += (uint8_t)take;
			in += take;
			len -= take;
			if (c->hdr_len == CHAN_PREAMBLE_LEN &&
			    (r = chan_preamble(c)) != 0)
				goto fail;
			continue;
		}
		if (c->pend != NULL) {
			take = c->pend_need - c->pend_len;
			if (take > len)
				take = len;
			memcpy(c->pend + c->pend_len, in, take);
			c->pend_len += (uint32_t)take;
			in += take;
			len -= take;
			if (c->pend_len < c->pend_need)
				break;
			r = chan_frame(c, c->pend, c->pend_need);
			sodium_memzero(c->pend, c->pend_need);
			free(c->pend);
			c->pend = NULL;
			c->pend_len = c->pend_need = 0;
			if (r != 0)
				goto fail;
			continue;
		}
		if (c->hdr_len < 2) {
			c->hdr[c->hdr_len++] = *in++;
			len--;
			if (c->hdr_len < 2)
				continue;
		}
		need = ((size_t)c->hdr[0] << 8) | c->hdr[1];
		c->hdr_len = 0;
		if ((r = chan_frame_len(c, need)) != 0)
			goto fail;
		if (len >= need) {
			r = chan_frame(c, in, need);
			in += need;
			len -= need;
			if (r != 0)
				goto fail;
			continue;
		}
		if ((c->pend = malloc(need)) == NULL) {
			r = TERN_ENOMEM;
			goto fail;
		}
		c->pend_need = (uint32_t)need;
		memcpy(c->pend, in, len);
		c->pend_len = (uint32_t)len;
		len = 0;
	}
	return 0;
fail:
	/* A callback's own result (a connection being closed by its owner)
	 * is passed through; the chan is done either way. */
	return chan_fail(c, r);
}

/* chan_stage_drop: forgets the staged messages (wiped). */
static void
chan_stage_drop(struct chan *c)
{
	if (c->stage != NULL)
		sodium_memzero(c->stage, c->stage_len);
	c->stage_len = 0;
}

int
chan_flush(struct chan *c)
{
	uint8_t *p, *pt;
	size_t n, wlen, first;
	int r;

	if (c->stage_len == 0)
		return 0;
	/* With no key, encrypt would copy the plaintext: never send that. */
	if (!c->tx.has_key) {
		chan_stage_drop(c);
		return TERN_ESTATE;
	}
	pt = c->stage;
	n = c->stage_len;
	first = ((size_t)c->stage[1] << 8) | c->stage[2];
	if (3 + first == n) {
		/* One message: a plain frame, as a version 1 peer would
		 * send it. Its flags byte goes over its length's low byte. */
		pt += 2;
		n -= 2;
		pt[0] = 0;
	}
	p = c->cbs->reserve(c->arg, 2 + n + NOISE_TAGLEN);
	if (p == NULL) {
		chan_stage_drop(c);
		return chan_fail_tx(c, TERN_ENOMEM);
	}
	r = noise_cipher_encrypt(&c->tx, NULL, 0, pt, n, p + 2,
	    n + NOISE_TAGLEN, &wlen);
	chan_stage_drop(c);
	if (r != 0)
		return chan_fail_tx(c, r);
	p[0] = (uint8_t)(wlen >> 8);
	p[1] = (uint8_t)wlen;
	/* A busy connection keeps a small buffer from turn to turn; a big
	 * one goes back at once, a small one when the owner trims. */
	if (c->stage_cap > 4096)
		chan_trim(c);
	return 0;
}

/* chan_stage: appends msg to the batch; 1 if it was staged, 0 if it must
 * go out in frames of its own, or an error. */
static int
chan_stage(struct chan *c, const uint8_t *msg, size_t len)
{
	size_t need, cap;
	uint8_t *p;
	int r;

	if (!c->batching || c->version < 2 || len == 0 ||
	    1 + 2 + len > CHAN_BATCH_MAX)
		return 0;
	if (c->stage_len > 0 && c->stage_len + 2 + len > CHAN_BATCH_MAX &&
	    (r = chan_flush(c)) != 0)
		return r;
	need = (c->stage_len == 0 ? 1 : c->stage_len) + 2 + len;
	if (need > c->stage_cap) {
		cap = c->stage_cap ? c->stage_cap : 256;
		while (cap < need)
			cap *= 2;
		if (cap > CHAN_BATCH_MAX)
			cap = CHAN_BATCH_MAX;
		/* Not realloc: the old buffer holds plaintext to wipe. */
		if ((p = malloc(cap)) == NULL)
			return chan_fail_tx(c, TERN_ENOMEM);
		if (c->stage != NULL) {
			memcpy(p, c->stage, c->stage_len);
			sodium_memzero(c->stage, c->stage_len);
			free(c->stage);
		}
		c->stage = p;
		c->stage_cap = (uint16_t)cap;
	}
	if (c->stage_len == 0) {
		c->stage[0] = CHAN_FLAG_BATCH;
		c->stage_len = 1;
	}
	p = c->stage + c->stage_len;
	p[0] = (uint8_t)(len >> 8);
	p[1] = (uint8_t)len;
	memcpy(p + 2, msg, len);
	c->stage_len = (uint16_t)(c->stage_len + 2 + len);
	return 1;
}

int
chan_send(struct chan *c, const uint8_t *msg, size_t len)
{
	size_t off = 0, n, wlen;
	uint8_t *p;
	int r;

	if (c->state != CHAN_S_OPEN &&
	    !(c->state == CHAN_S_FAILED && c->tx.has_key))
		return TERN_ESTATE;
	if ((r = chan_stage(c, msg, len)) != 0)
		return r < 0 ? r : 0;
	/* In frames of its own, after what is staged. */
	if ((r = chan_flush(c)) != 0)
		return r;
	do {
		n = len - off;
		if (n > CHAN_FRAGMENT_MAX)
			n = CHAN_FRAGMENT_MAX;
		/* A frame that can't be queued whole leaves the stream
		 * unusable (earlier fragments may be queued): fail. */
		p = c->cbs->reserve(c->arg, 2 + 1 + n + NOISE_TAGLEN);
		if (p == NULL)
			return chan_fail_tx(c, TERN_ENOMEM);
		p[2] = (off + n < len) ? CHAN_FLAG_MORE : 0;
		if (n > 0)
			memcpy(p + 3, msg + off, n);
		r = noise_cipher_encrypt(&c->tx, NULL, 0, p + 2, 1 + n, p + 2,
		    1 + n + NOISE_TAGLEN, &wlen);
		if (r != 0)
			return chan_fail_tx(c, r);
		p[0] = (uint8_t)(wlen >> 8);
		p[1] = (uint8_t)wlen;
		off += n;
	} while (off < len);
	return 0;
}

void
chan_set_batching(struct chan *c, bool on)
{
	c->batching = on;
}

size_t
chan_staged(const struct chan *c)
{
	return c->stage_len;
}

void
chan_trim(struct chan *c)
{
	if (c->stage == NULL || c->stage_len != 0)
		return;
	free(c->stage);
	c->stage = NULL;
	c->stage_cap = 0;
}

void
chan_wipe(struct chan *c)
{
	chan_hs_free(c);
	if (c->pend != NULL) {
		sodium_memzero(c->pend, c->pend_need);
		free(c->pend);
	}
	if (c->msg != NULL) {
		sodium_memzero(c->msg, c->msg_len);
		free(c->msg);
	}
	if (c->stage != NULL) {
		sodium_memzero(c->stage, c->stage_len);
		free(c->stage);
	}
	sodium_memzero(c, sizeof(*c));
}
