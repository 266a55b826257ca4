/*
 * pt.c: the end-to-end plaintext codec (pt.h, SPEC.md 12.5).
 */
#include "pt.h"

#include <string.h>

#include "ident.h"

static int
pt_check(const struct pt *m)
{
	switch (m->kind) {
	case PT_TEXT:
		break;
	case PT_SYNC:
		if (m->peer.len == 0 || m->peer.len > IDENT_ADDR_MAX ||
		    ident_addr_check(m->peer.p, m->peer.len) != 0)
			return TERN_EFIELD;
		break;
	case PT_RECEIPT:
		if (m->what != PT_RCPT_DELIVERED && m->what != PT_RCPT_READ)
			return TERN_EFIELD;
		if (m->nids > PT_RCPT_IDS_MAX)
			return TERN_ETOOBIG;
		return 0;
	case PT_TYPING:
		return m->typing <= 1 ? 0 : TERN_EFIELD;
	default:
		return TERN_ETYPE;
	}
	if (m->text.len > PT_TEXT_MAX)
		return TERN_ETOOBIG;
	if (ident_utf8_check((const uint8_t *)m->text.p, m->text.len) != 0)
		return TERN_EUTF8;
	return 0;
}

int
pt_decode(const uint8_t *p, size_t len, struct pt *out)
{
	struct buf_reader r;
	uint8_t ver, alen;
	uint16_t n;
	const uint8_t *span;
	int e;

	memset(out, 0, sizeof(*out));
	buf_reader_init(&r, p, len);
	if (buf_get_u8(&r, &ver) != 0)
		return TERN_ETRUNC;
	if (ver != PT_VERSION)
		return TERN_EVERSION;
	if (buf_get_u8(&r, &out->kind) != 0)
		goto trunc;
	switch (out->kind) {
	case PT_TEXT:
	case PT_SYNC:
		if (buf_get_bytes(&r, out->id, MSG_ID_LEN) != 0 ||
		    buf_get_u64(&r, &out->sent_ms) != 0)
			goto trunc;
		if (out->kind == PT_SYNC) {
			if (buf_get_u8(&r, &alen) != 0 ||
			    buf_get_span(&r, alen, &span) != 0)
				goto trunc;
			out->peer.p = (const char *)span;
			out->peer.len = alen;
		}
		if (buf_get_u16(&r, &n) != 0)
			goto trunc;
		if (n > PT_TEXT_MAX) {
			e = TERN_ETOOBIG;
			goto fail;
		}
		if (buf_get_span(&r, n, &span) != 0)
			goto trunc;
		out->text.p = (const char *)span;
		out->text.len = n;
		break;
	case PT_RECEIPT:
		if (buf_get_u8(&r, &out->what) != 0 ||
		    buf_get_u16(&r, &out->nids) != 0)
			goto trunc;
		if (out->nids > PT_RCPT_IDS_MAX) {
			e = TERN_ETOOBIG;
			goto fail;
		}
		if (buf_get_span(&r, (size_t)out->nids * MSG_ID_LEN,
		    &out->ids) != 0)
			goto trunc;
		break;
	case PT_TYPING:
		if (buf_get_u8(&r, &out->typing) != 0)
			goto trunc;
		break;
	default:
		e = TERN_ETYPE;
		goto fail;
	}
	if (buf_reader_left(&r) != 0) {
		e = TERN_ETRAILING;
		goto fail;
	}
	if ((e = pt_check(out)) != 0)
		goto fail;
	return 0;
trunc:
	e = TERN_ETRUNC;
fail:
	memset(out, 0, sizeof(*out));
	return e;
}

int
pt_encode(const struct pt *m, struct buf_writer *w)
{
	int e;

	if ((e = pt_check(m)) != 0)
		return e;
	buf_put_u8(w, PT_VERSION);
	buf_put_u8(w, m->kind);
	switch (m->kind) {
	case PT_TEXT:
	case PT_SYNC:
		buf_put_bytes(w, m->id, MSG_ID_LEN);
		buf_put_u64(w, m->sent_ms);
		if (m->kind == PT_SYNC) {
			buf_put_u8(w, (uint8_t)m->peer.len);
			buf_put_bytes(w, m->peer.p, m->peer.len);
		}
		buf_put_u16(w, (uint16_t)m->text.len);
		buf_put_bytes(w, m->text.p, m->text.len);
		break;
	case PT_RECEIPT:
		buf_put_u8(w, m->what);
		buf_put_u16(w, m->nids);
		buf_put_bytes(w, m->ids, (size_t)m->nids * MSG_ID_LEN);
		break;
	case PT_TYPING:
		buf_put_u8(w, m->typing);
		break;
	}
	return buf_writer_err(w);
}

size_t
pt_encoded_size(const struct pt *m)
{
	struct buf_writer w;

	buf_writer_init_count(&w);
	if (pt_encode(m, &w) != 0)
		return 0;
	return w.len;
}
