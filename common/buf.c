/*
 * buf.c: bounded big-endian readers and writers (buf.h).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>

#include <string.h>

void
buf_reader_init(struct buf_reader *r, const uint8_t *p, size_t len)
{
	r->p = p;
	r->len = p != NULL ? len : 0;
	r->off = 0;
}

size_t
buf_reader_left(const struct buf_reader *r)
{
	return r->len - r->off;
}

/*
 * Every get funnels through here: comparing against what is left (rather
 * than computing off + n) cannot overflow, whatever n a peer declared.
 */
int
buf_get_span(struct buf_reader *r, size_t n, const uint8_t **out)
{
	if (n > r->len - r->off)
		return TERN_ETRUNC;
	/* Even NULL + 0 is undefined behaviour, so an empty reader hands out
	 * NULL for an empty span. */
	*out = r->p != NULL ? r->p + r->off : NULL;
	r->off += n;
	return 0;
}

int
buf_get_bytes(struct buf_reader *r, uint8_t *out, size_t n)
{
	const uint8_t *p;
	int rc;

	if ((rc = buf_get_span(r, n, &p)) != 0)
		return rc;
	if (n > 0)
		memcpy(out, p, n);
	return 0;
}

int
buf_get_u8(struct buf_reader *r, uint8_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = buf_get_span(r, 1, &p)) != 0)
		return rc;
	*v = p[0];
	return 0;
}

int
buf_get_u16(struct buf_reader *r, uint16_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = buf_get_span(r, 2, &p)) != 0)
		return rc;
	*v = buf_load_be16(p);
	return 0;
}

int
buf_get_u32(struct buf_reader *r, uint32_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = buf_get_span(r, 4, &p)) != 0)
		return rc;
	*v = buf_load_be32(p);
	return 0;
}

int
buf_get_u64(struct buf_reader *r, uint64_t *v)
{
	const uint8_t *p;
	int rc;

	if ((rc = buf_get_span(r, 8, &p)) != 0)
		return rc;
	*v = buf_load_be64(p);
	return 0;
}

void
buf_writer_init(struct buf_writer *w, uint8_t *p, size_t cap)
{
	w->p = p;
	w->cap = p != NULL ? cap : 0;
	w->len = 0;
	w->err = 0;
}

void
buf_writer_init_count(struct buf_writer *w)
{
	w->p = NULL;
	w->cap = SIZE_MAX;
	w->len = 0;
	w->err = 0;
}

int
buf_writer_err(const struct buf_writer *w)
{
	return w->err;
}

void
buf_put_bytes(struct buf_writer *w, const void *p, size_t n)
{
	if (w->err != 0)
		return;
	if (n > w->cap - w->len) {
		w->err = TERN_ETOOBIG;
		return;
	}
	if (w->p != NULL && n > 0)
		memcpy(w->p + w->len, p, n);
	w->len += n;
}

void
buf_put_u8(struct buf_writer *w, uint8_t v)
{
	buf_put_bytes(w, &v, 1);
}

void
buf_put_u16(struct buf_writer *w, uint16_t v)
{
	uint8_t b[2];

	buf_store_be16(b, v);
	buf_put_bytes(w, b, sizeof(b));
}

void
buf_put_u32(struct buf_writer *w, uint32_t v)
{
	uint8_t b[4];

	buf_store_be32(b, v);
	buf_put_bytes(w, b, sizeof(b));
}

void
buf_put_u64(struct buf_writer *w, uint64_t v)
{
	uint8_t b[8];

	buf_store_be64(b, v);
	buf_put_bytes(w, b, sizeof(b));
}

uint16_t
buf_load_be16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

uint32_t
buf_load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	    (uint32_t)p[2] << 8 | p[3];
}

uint64_t
buf_load_be64(const uint8_t *p)
{
	return (uint64_t)buf_load_be32(p) << 32 | buf_load_be32(p + 4);
}

void
buf_store_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void
buf_store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void
buf_store_be64(uint8_t *p, uint64_t v)
{
	buf_store_be32(p, (uint32_t)(v >> 32));
	buf_store_be32(p + 4, (uint32_t)v);
}

void
buf_printf(struct buf_writer *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->err != 0)
		return;
	va_start(ap, fmt);
	n = vsnprintf(w->p != NULL ? (char *)w->p + w->len : NULL,
	    w->p != NULL ? w->cap - w->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		w->err = TERN_EINVAL;
		return;
	}
	if (w->p != NULL && (size_t)n >= w->cap - w->len) {
		w->err = TERN_ETOOBIG;
		return;
	}
	w->len += (size_t)n;
}
