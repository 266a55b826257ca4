/*
 * net.c: libuv connections speaking the secure channel (see net.h).
 */
#include "net.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define NET_F_CLOSING 0x01    /* close requested */
#define NET_F_UV_CLOSED 0x02  /* uv_close called */
#define NET_F_READING 0x04    /* uv_read_start ran */
#define NET_F_DIRTY 0x08      /* in nl->dirty */
#define NET_F_CONNECTED 0x10  /* TCP connected (initiator) */
#define NET_F_ABORT 0x20      /* close without flushing */
#define NET_F_HEAP 0x40       /* from malloc: no slab for its size */

#define NET_LIST_NONE 0
#define NET_LIST_HS 1
#define NET_LIST_IDLE 2
#define NET_TICK_MS 250
/* A connection that has sent us nothing for this long gives its output
 * buffer back at the next sweep (every NET_BUF_SWEEP_TICKS ticks). */
#define NET_BUF_QUIET_MS 1000
#define NET_BUF_SWEEP_TICKS 4
/* Wire bytes a message may cost beyond its own: a u16 length in a batch,
 * plus a frame's length, flags and tag. */
#define NET_FRAME_OVERHEAD (2 + 2 + 1 + NOISE_TAGLEN)

struct net_listener {
	uv_tcp_t tcp;                   /* listening socket */
	struct net_loop *nl;            /* shared state */
	const struct net_conn_cbs *cbs; /* given to each connection */
	uint8_t s_priv[NOISE_DHLEN];    /* our static key (wiped at close) */
	uint8_t s_pub[NOISE_DHLEN];     /* its public key, computed once */
	enum chan_kind kind;            /* client or federation */
	uint32_t msg_cap;               /* first message cap */
	size_t app_size;                /* owner data per connection */
	void *data;                     /* owner's listener data */
	struct net_listener *next;      /* in nl->listeners */
	uv_timer_t retry;               /* accepts again after a failure */
	uint8_t closing;                /* handles not yet closed */
};

struct net_wreq {
	uv_write_t req;      /* libuv request */
	struct net_conn *c;  /* the connection */
	uint8_t *buf;        /* owned bytes being written */
	uint32_t len;        /* their length */
};

struct net_creq {
	uv_connect_t req;    /* libuv request */
	struct net_conn *c;  /* the connection */
};

static void net_flush(struct net_conn *c);
static void net_conn_finish(struct net_conn *c);
static void net_mark_dirty(struct net_conn *c);

/* --- deadline lists -------------------------------------------------- */

static struct net_list *
net_list_of(struct net_loop *nl, uint8_t which)
{
	return which == NET_LIST_HS ? &nl->hs : &nl->idle;
}

static void
net_list_remove(struct net_conn *c)
{
	struct net_list *l;

	if (c->list == NET_LIST_NONE)
		return;
	l = net_list_of(c->nl, c->list);
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->prev = c->next = NULL;
	c->list = NET_LIST_NONE;
}

/* net_list_append: every entry of a list gets the same timeout, so
 * appending with "now" keeps the list in deadline order. */
static void
net_list_append(struct net_conn *c, uint8_t which)
{
	struct net_list *l = net_list_of(c->nl, which);

	net_list_remove(c);
	c->list = which;
	c->deadline = uv_now(c->nl->loop);
	c->prev = l->tail;
	c->next = NULL;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
}

static void
net_tick_cb(uv_timer_t *t)
{
	struct net_loop *nl = t->data;
	uint64_t now = uv_now(nl->loop);
	struct net_conn *c, *next;

	for (c = nl->hs.head; c != NULL; c = next) {
		next = c->next;
		if (c->deadline + nl->cfg.handshake_timeout_ms > now)
			break;
		/* It leaves the list when it really closes (flush). */
		net_conn_abort(c, TERN_ETIMEOUT);
	}
	/* Quiet connections (least recently heard first) give their output
	 * buffers back: most connections are idle most of the time, and a
	 * kept buffer is half of what an idle one costs. A busy one keeps
	 * its buffer from one loop turn to the next (net_flush). The buffer
	 * is never in flight: a partial write hands it to its request. */
	if (++nl->ticks % NET_BUF_SWEEP_TICKS == 0) {
		for (c = nl->idle.head; c != NULL &&
		    c->deadline + NET_BUF_QUIET_MS <= now; c = c->next) {
			if (c->out != NULL && c->out_len == 0) {
				free(c->out);
				c->out = NULL;
				c->out_cap = 0;
			}
			chan_trim(&c->chan);
		}
	}
	if (nl->cfg.idle_timeout_ms == 0)
		return;
	for (c = nl->idle.head; c != NULL; c = next) {
		next = c->next;
		if (c->deadline + nl->cfg.idle_timeout_ms > now)
			break;
		if (c->flags & NET_F_CLOSING) {
			/* Closing, and still not done an idle timeout after
			 * it was last heard: its peer takes nothing (a write
			 * stuck in flight). Closed now, output dropped. */
			c->flags |= NET_F_ABORT;
			net_mark_dirty(c);
		} else
			net_conn_close(c, TERN_ETIMEOUT);
	}
}

/* --- output ---------------------------------------------------------- */

static void
net_mark_dirty(struct net_conn *c)
{
	if (c->flags & NET_F_DIRTY)
		return;
	/* While output or a close waits, the flush handle must keep the
	 * loop running: a closing connection has stopped reading, and it
	 * may be the last thing the loop has. */
	if (c->nl->dirty == NULL && !c->nl->closing)
		uv_ref((uv_handle_t *)&c->nl->flush_prepare);
	c->flags |= NET_F_DIRTY;
	c->dirty_next = c->nl->dirty;
	c->nl->dirty = c;
}

static uint8_t *
net_reserve(void *arg, size_t n)
{
	struct net_conn *c = arg;
	size_t need = (size_t)c->out_len + n, cap;
	uint8_t *p;

	if (c->flags & NET_F_ABORT)
		return NULL;
	if (need + c->inflight > c->nl->cfg.out_limit)
		return NULL;
	if (need > c->out_cap) {
		cap = c->out_cap ? c->out_cap : 512;
		while (cap < need)
			cap *= 2;
		if ((p = realloc(c->out, cap)) == NULL)
			return NULL;
		c->out = p;
		c->out_cap = (uint32_t)cap;
	}
	p = c->out + c->out_len;
	c->out_len += (uint32_t)n;
	net_mark_dirty(c);
	return p;
}

static void
net_write_cb(uv_write_t *req, int status)
{
	struct net_wreq *w = (struct net_wreq *)req;
	struct net_conn *c = w->c;

	c->inflight -= w->len;
	free(w->buf);
	free(w);
	if (status < 0 && !(c->flags & NET_F_CLOSING)) {
		net_conn_abort(c, TERN_EIO);
		return;
	}
	if (c->flags & NET_F_UV_CLOSED)
		return;
	net_flush(c);
}

/*
 * net_flush: writes what is queued. A write the kernel takes at once
 * costs no allocation; the rest moves, buffer and all, into one uv_write.
 */
static void
net_flush(struct net_conn *c)
{
	struct net_wreq *w;
	uv_buf_t b;
	int n, r;

	if (c->flags & NET_F_UV_CLOSED)
		return;
	/* The messages staged this turn become one frame, queued after
	 * what is there. net_flush_all has done it already; a write's
	 * callback may find new ones (then this reserve marks the
	 * connection dirty again, and a later pass finds nothing to do). */
	if (chan_staged(&c->chan) > 0 && !(c->flags & NET_F_ABORT) &&
	    (r = chan_flush(&c->chan)) != 0) {
		net_conn_abort(c, r);
		goto check;
	}
	if (c->out_len > 0 && c->inflight == 0 &&
	    (c->flags & NET_F_CONNECTED) && !(c->flags & NET_F_ABORT)) {
		b = uv_buf_init((char *)c->out, c->out_len);
		n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (n == UV_EAGAIN || n == UV_ENOSYS)
			n = 0;
		if (n < 0) {
			/* Gone: closed below at once (also when it was
			 * already closing, waiting for this write). */
			net_conn_abort(c, TERN_EIO);
			goto check;
		}
		if ((uint32_t)n == c->out_len) {
			c->out_len = 0;
			/* Keep a small buffer for the next turn (growing one
			 * again each turn costs reallocs and copies); a large
			 * one goes back. A quiet connection's goes back at the
			 * next sweep (net_tick_cb). */
			if (c->out_cap > 4096) {
				free(c->out);
				c->out = NULL;
				c->out_cap = 0;
			}
		} else {
			if ((w = calloc(1, sizeof(*w))) == NULL) {
				net_conn_abort(c, TERN_ENOMEM);
				goto check;
			}
			if (n > 0)
				memmove(c->out, c->out + n, c->out_len - n);
			w->c = c;
			w->buf = c->out;
			w->len = c->out_len - (uint32_t)n;
			c->out = NULL;
			c->out_len = c->out_cap = 0;
			b = uv_buf_init((char *)w->buf, w->len);
			if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1,
			    net_write_cb) != 0) {
				free(w->buf);
				free(w);
				net_conn_abort(c, TERN_EIO);
				goto check;
			}
			c->inflight = w->len;
		}
	}
check:
	if ((c->flags & NET_F_CLOSING) &&
	    ((c->out_len == 0 && c->inflight == 0) ||
	    (c->flags & NET_F_ABORT) || !(c->flags & NET_F_CONNECTED)))
		net_conn_finish(c);
}

static void
net_flush_all(struct net_loop *nl)
{
	struct net_conn *c;
	int r;

	if (nl->dirty == NULL)
		return;
	while ((c = nl->dirty) != NULL) {
		/* Seal the staged messages while the connection is still
		 * marked dirty, so that their reserve does not put it on the
		 * list a second time. */
		if (chan_staged(&c->chan) > 0 && !(c->flags & NET_F_ABORT) &&
		    (r = chan_flush(&c->chan)) != 0)
			net_conn_abort(c, r);
		nl->dirty = c->dirty_next;
		c->dirty_next = NULL;
		c->flags &= (uint8_t)~NET_F_DIRTY;
		net_flush(c);
	}
	if (!nl->closing)
		uv_unref((uv_handle_t *)&nl->flush_prepare);
}

static void
net_prepare_cb(uv_prepare_t *h)
{
	net_flush_all(h->data);
}

static void
net_check_cb(uv_check_t *h)
{
	net_flush_all(h->data);
}

/* --- closing --------------------------------------------------------- */

/* open_handles counts handles between uv_close and their close callback
 * (plus one reference held by net_loop_close while it runs). */
static void
net_handle_closed(struct net_loop *nl)
{
	if (--nl->open_handles != 0 || !nl->closing)
		return;
	/* Every connection is gone: give their chunks back. */
	for (size_t i = 0; i < NET_CONN_SLABS; i++)
		slab_fini(&nl->conn_slabs[i]);
	if (nl->close_cb != NULL)
		nl->close_cb(nl->close_arg);
}

/* net_conn_slab: the pool for connections of size bytes, taking a free
 * slot for a new size; NULL when every slot has another size. */
static struct slab *
net_conn_slab(struct net_loop *nl, size_t size)
{
	size_t want = (size + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1);

	for (size_t i = 0; i < NET_CONN_SLABS; i++) {
		struct slab *s = &nl->conn_slabs[i];

		if (s->size == want)
			return s;
		if (s->size == 0)
			return slab_init(s, size) == 0 ? s : NULL;
	}
	return NULL;
}

static void
net_conn_free(struct net_conn *c)
{
	if (c->flags & NET_F_HEAP)
		free(c);
	else
		slab_free(net_conn_slab(c->nl, sizeof(*c) + c->app_size), c);
}

static void
net_conn_close_cb(uv_handle_t *h)
{
	struct net_conn *c = h->data;
	struct net_loop *nl = c->nl;

	if (c->cbs->closed != NULL)
		c->cbs->closed(c, c->close_err);
	chan_wipe(&c->chan);
	free(c->out);
	nl->nconns--;
	sodium_memzero(c->app, c->app_size);
	net_conn_free(c);
	net_handle_closed(nl);
}

/* net_conn_finish: the safe point where the socket really closes. */
static void
net_conn_finish(struct net_conn *c)
{
	if (c->flags & NET_F_UV_CLOSED)
		return;
	c->flags |= NET_F_UV_CLOSED;
	if (c->list == NET_LIST_HS)
		c->nl->nunauth--;
	net_list_remove(c);
	c->nl->open_handles++;
	uv_close((uv_handle_t *)&c->tcp, net_conn_close_cb);
}

void
net_conn_close(struct net_conn *c, int err)
{
	if (c->flags & NET_F_CLOSING)
		return;
	c->flags |= NET_F_CLOSING;
	c->close_err = err;
	if (c->flags & NET_F_READING) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->flags &= (uint8_t)~NET_F_READING;
	}
	/* Finish at the next flush, after what is queued is written. */
	net_mark_dirty(c);
}

void
net_conn_abort(struct net_conn *c, int err)
{
	net_conn_close(c, err);
	c->flags |= NET_F_ABORT;
}

/* --- input ----------------------------------------------------------- */

static void
net_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct net_conn *c = h->data;

	/* libuv reads one connection at a time, then calls read_cb at once,
	 * so one buffer serves every connection of the loop. */
	*buf = uv_buf_init((char *)c->nl->rbuf, NET_READ_BUF);
}

static int
net_chan_open(void *arg)
{
	struct net_conn *c = arg;

	c->nl->nunauth--;
	net_list_remove(c);
	net_list_append(c, NET_LIST_IDLE);
	if (c->cbs->open != NULL)
		c->cbs->open(c);
	return (c->flags & NET_F_CLOSING) ? TERN_ECLOSED : 0;
}

static int
net_chan_message(void *arg, const uint8_t *msg, size_t len)
{
	struct net_conn *c = arg;
	int r;

	if (c->flags & NET_F_CLOSING)
		return TERN_ECLOSED;
	r = c->cbs->message(c, msg, len);
	if (r != 0)
		net_conn_close(c, r);
	return (c->flags & NET_F_CLOSING) ? TERN_ECLOSED : 0;
}

static const struct chan_cbs net_chan_cbs = {
	.reserve = net_reserve,
	.open = net_chan_open,
	.message = net_chan_message,
};

static void
net_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct net_conn *c = s->data;
	int r;

	if (nread == 0 || (c->flags & NET_F_CLOSING))
		return;
	if (nread < 0) {
		net_conn_abort(c, nread == UV_EOF ? TERN_ECLOSED : TERN_EIO);
		return;
	}
	if (c->list == NET_LIST_IDLE)
		net_list_append(c, NET_LIST_IDLE);
	r = chan_feed(&c->chan, (uint8_t *)buf->base, (size_t)nread);
	if (r != 0 && !(c->flags & NET_F_CLOSING)) {
		/* The peer's bytes were bad: tell the owner (who may send a
		 * last ERROR message), then close after flushing it. */
		if (c->cbs->error != NULL)
			c->cbs->error(c, r);
		net_conn_close(c, r);
	}
}

/* --- set-up ---------------------------------------------------------- */

static struct net_conn *
net_conn_new(struct net_loop *nl, const struct net_conn_cbs *cbs,
    size_t app_size)
{
	struct slab *s = net_conn_slab(nl, sizeof(struct net_conn) + app_size);
	struct net_conn *c;

	if (nl->test_fail_conns > 0) {
		nl->test_fail_conns--;
		return NULL;
	}
	if (s != NULL)
		c = slab_alloc(s);
	else if ((c = calloc(1, sizeof(*c) + app_size)) != NULL)
		c->flags |= NET_F_HEAP;
	if (c == NULL)
		return NULL;
	c->nl = nl;
	c->cbs = cbs;
	c->app_size = (uint32_t)app_size; /* <= NET_APP_MAX */
	if (uv_tcp_init(nl->loop, &c->tcp) != 0) {
		net_conn_free(c);
		return NULL;
	}
	c->tcp.data = c;
	nl->nconns++;
	nl->nunauth++;
	net_list_append(c, NET_LIST_HS);
	return c;
}

static void net_accept_cb(uv_stream_t *server, int status);

static void
net_accept_retry_cb(uv_timer_t *t)
{
	struct net_listener *l = t->data;

	net_accept_cb((uv_stream_t *)&l->tcp, 0);
}

static void
net_accept_cb(uv_stream_t *server, int status)
{
	struct net_listener *l = server->data;
	struct net_loop *nl = l->nl;
	struct net_conn *c;
	int r;

	if (status < 0)
		return;
	if ((c = net_conn_new(nl, l->cbs, l->app_size)) == NULL) {
		/*
		 * libuv has accepted the socket and stops listening until
		 * uv_accept takes it: returning now would stall this
		 * listener for good. Try again once memory may have come
		 * back; the peer waits meanwhile.
		 */
		nl->accept_retries++;
		if (!uv_is_active((uv_handle_t *)&l->retry))
			uv_timer_start(&l->retry, net_accept_retry_cb,
			    NET_ACCEPT_RETRY_MS, 0);
		return;
	}
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		net_conn_abort(c, TERN_EIO);
		return;
	}
	c->flags |= NET_F_CONNECTED;
	c->listener = l;
	/* Past the cap on unauthenticated connections, the newest waits
	 * for nothing: it is closed at once, and the older ones finish. */
	if (nl->cfg.max_unauth != 0 && nl->nunauth > nl->cfg.max_unauth) {
		net_conn_abort(c, TERN_EBUSY);
		return;
	}
	r = chan_init(&c->chan, CHAN_RESPONDER, l->kind, 0, l->s_priv,
	    l->s_pub, NULL, l->msg_cap, &net_chan_cbs, c);
	if (r != 0) {
		net_conn_abort(c, r);
		return;
	}
	/* The messages of one turn share frames (net_flush seals them). */
	chan_set_batching(&c->chan, true);
	if (uv_tcp_nodelay(&c->tcp, 1) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, net_alloc_cb,
	    net_read_cb) != 0) {
		net_conn_abort(c, TERN_EIO);
		return;
	}
	c->flags |= NET_F_READING;
}

int
net_loop_init(struct net_loop *nl, uv_loop_t *loop,
    const struct net_config *cfg)
{
	memset(nl, 0, sizeof(*nl));
	nl->loop = loop;
	if (cfg != NULL)
		nl->cfg = *cfg;
	if (nl->cfg.handshake_timeout_ms == 0)
		nl->cfg.handshake_timeout_ms = CHAN_HANDSHAKE_TIMEOUT_MS;
	if (nl->cfg.out_limit == 0)
		nl->cfg.out_limit = NET_OUT_LIMIT_DEFAULT;
	if ((nl->rbuf = malloc(NET_READ_BUF)) == NULL)
		return TERN_ENOMEM;
	uv_prepare_init(loop, &nl->flush_prepare);
	uv_check_init(loop, &nl->flush_check);
	uv_timer_init(loop, &nl->tick);
	nl->flush_prepare.data = nl->flush_check.data = nl->tick.data = nl;
	uv_prepare_start(&nl->flush_prepare, net_prepare_cb);
	uv_check_start(&nl->flush_check, net_check_cb);
	uv_timer_start(&nl->tick, net_tick_cb, NET_TICK_MS, NET_TICK_MS);
	/* The tick alone must not keep a loop alive. */
	uv_unref((uv_handle_t *)&nl->tick);
	uv_unref((uv_handle_t *)&nl->flush_prepare);
	uv_unref((uv_handle_t *)&nl->flush_check);
	return 0;
}

static void
net_own_handle_closed(uv_handle_t *h)
{
	net_handle_closed(h->data);
}

static void
net_listener_close_cb(uv_handle_t *h)
{
	struct net_listener *l = h->data;
	struct net_loop *nl = l->nl;

	if (--l->closing == 0) {
		sodium_memzero(l->s_priv, sizeof(l->s_priv));
		free(l);
	}
	net_handle_closed(nl);
}

/* net_listener_release: closes the listener's two handles; the last
 * close callback frees it. */
static void
net_listener_release(struct net_listener *l)
{
	l->closing = 2;
	l->nl->open_handles += 2;
	uv_close((uv_handle_t *)&l->tcp, net_listener_close_cb);
	uv_close((uv_handle_t *)&l->retry, net_listener_close_cb);
}

void
net_listener_close(struct net_listener *l)
{
	struct net_listener **pp;

	for (pp = &l->nl->listeners; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	}
	net_listener_release(l);
}

static void
net_close_list(struct net_list *l)
{
	struct net_conn *c, *next;

	for (c = l->head; c != NULL; c = next) {
		next = c->next;
		net_conn_abort(c, TERN_ECLOSED);
	}
}

void
net_loop_close(struct net_loop *nl, void (*cb)(void *), void *arg)
{
	if (nl->closing)
		return;
	nl->closing = true;
	nl->close_cb = cb;
	nl->close_arg = arg;
	/* One reference for this call, dropped at the end, so the callback
	 * can't run before everything below has been asked to close. */
	nl->open_handles++;
	while (nl->listeners != NULL)
		net_listener_close(nl->listeners);
	net_close_list(&nl->hs);
	net_close_list(&nl->idle);
	/* Aborted conns finish in net_flush: do it now. */
	net_flush_all(nl);
	nl->open_handles += 3;
	uv_close((uv_handle_t *)&nl->flush_prepare, net_own_handle_closed);
	uv_close((uv_handle_t *)&nl->flush_check, net_own_handle_closed);
	uv_close((uv_handle_t *)&nl->tick, net_own_handle_closed);
	free(nl->rbuf);
	nl->rbuf = NULL;
	net_handle_closed(nl);
}

static int
net_addr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
	if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
		return 0;
	if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
		return 0;
	return TERN_EINVAL;
}

int
net_listen(struct net_loop *nl, const char *host, uint16_t port,
    enum chan_kind kind, const uint8_t s_priv[NOISE_DHLEN], uint32_t msg_cap,
    const struct net_conn_cbs *cbs, size_t app_size, void *listener_data,
    struct net_listener **out)
{
	struct sockaddr_storage ss;
	struct net_listener *l;
	int r;

	if (nl->closing)
		return TERN_ESTATE;
	if (app_size > NET_APP_MAX)
		return TERN_EINVAL;
	if ((r = net_addr(host, port, &ss)) != 0)
		return r;
	if ((l = calloc(1, sizeof(*l))) == NULL)
		return TERN_ENOMEM;
	if ((r = noise_public_key(s_priv, l->s_pub)) != 0) {
		free(l);
		return r;
	}
	l->nl = nl;
	l->cbs = cbs;
	l->kind = kind;
	l->msg_cap = msg_cap;
	l->app_size = app_size;
	l->data = listener_data;
	memcpy(l->s_priv, s_priv, NOISE_DHLEN);
	uv_tcp_init(nl->loop, &l->tcp);
	uv_timer_init(nl->loop, &l->retry);
	l->tcp.data = l->retry.data = l;
	if (uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0) != 0 ||
	    uv_listen((uv_stream_t *)&l->tcp, 4096, net_accept_cb) != 0) {
		l->next = NULL;
		net_listener_release(l);
		return TERN_EIO;
	}
	l->next = nl->listeners;
	nl->listeners = l;
	*out = l;
	return 0;
}

uint16_t
net_listener_port(const struct net_listener *l)
{
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	if (uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len) != 0)
		return 0;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

void *
net_listener_data(const struct net_listener *l)
{
	return l->data;
}

struct net_listener *
net_conn_listener(const struct net_conn *c)
{
	return c->listener;
}

static void
net_connect_cb(uv_connect_t *req, int status)
{
	struct net_creq *cr = (struct net_creq *)req;
	struct net_conn *c = cr->c;

	free(cr);
	if (c->flags & NET_F_CLOSING) {
		net_flush(c);
		return;
	}
	if (status < 0) {
		net_conn_abort(c, TERN_EUNREACH);
		return;
	}
	c->flags |= NET_F_CONNECTED;
	if (uv_tcp_nodelay(&c->tcp, 1) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, net_alloc_cb,
	    net_read_cb) != 0) {
		net_conn_abort(c, TERN_EIO);
		return;
	}
	c->flags |= NET_F_READING;
	net_mark_dirty(c);
}

int
net_connect(struct net_loop *nl, const char *host, uint16_t port,
    enum chan_kind kind, enum chan_pattern pattern,
    const uint8_t s_priv[NOISE_DHLEN], const uint8_t *s_pub, const uint8_t *rs,
    uint32_t msg_cap, const struct net_conn_cbs *cbs, size_t app_size,
    struct net_conn **out)
{
	struct sockaddr_storage ss;
	struct net_creq *cr;
	struct net_conn *c;
	int r;

	if (nl->closing)
		return TERN_ESTATE;
	if (app_size > NET_APP_MAX)
		return TERN_EINVAL;
	if ((r = net_addr(host, port, &ss)) != 0)
		return r;
	if ((cr = calloc(1, sizeof(*cr))) == NULL)
		return TERN_ENOMEM;
	if ((c = net_conn_new(nl, cbs, app_size)) == NULL) {
		free(cr);
		return TERN_ENOMEM;
	}
	/* Until the connect callback, nothing may reach the owner: a
	 * synchronous failure below closes with no callback at all. */
	r = chan_init(&c->chan, CHAN_INITIATOR, kind, pattern, s_priv, s_pub,
	    rs, msg_cap, &net_chan_cbs, c);
	if (r == 0) {
		chan_set_batching(&c->chan, true);
		r = chan_start(&c->chan);
	}
	if (r == 0) {
		cr->c = c;
		if (uv_tcp_connect(&cr->req, &c->tcp, (struct sockaddr *)&ss,
		    net_connect_cb) != 0)
			r = TERN_EUNREACH;
	}
	if (r != 0) {
		static const struct net_conn_cbs silent = {0};
		free(cr);
		c->cbs = &silent;
		net_conn_abort(c, r);
		return r;
	}
	*out = c;
	return 0;
}

int
net_conn_send(struct net_conn *c, const uint8_t *msg, size_t len)
{
	size_t queued;
	int r;

	if (c->flags & NET_F_CLOSING)
		return TERN_ECLOSED;
	/* The output cap, checked here for what is staged (reserve checks
	 * the rest): a frame's framing included, so that the flush at the
	 * end of the turn can't go over. */
	queued = (size_t)c->out_len + c->inflight + chan_staged(&c->chan);
	if (queued + len + NET_FRAME_OVERHEAD > c->nl->cfg.out_limit) {
		/* The peer takes too little: the connection is done, as when
		 * reserve refuses part of a message. */
		net_conn_abort(c, TERN_ENOMEM);
		return TERN_ENOMEM;
	}
	if ((r = chan_send(&c->chan, msg, len)) != 0)
		return r;
	if (chan_staged(&c->chan) > 0)
		net_mark_dirty(c);
	return 0;
}

bool
net_conn_is_open(const struct net_conn *c)
{
	return chan_is_open(&c->chan) && !(c->flags & NET_F_CLOSING);
}

uint32_t
net_conn_queued(const struct net_conn *c)
{
	return c->out_len + c->inflight + (uint32_t)chan_staged(&c->chan);
}
