/*
 * test_pt.c: the end-to-end plaintext codec (client/pt.h, SPEC.md 12.5):
 * golden bytes for every kind, round trips, and every refusal.
 */
#include "tt.h"

#include "pt.h"

static const uint8_t ID[MSG_ID_LEN] = {
	0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
};

static size_t
enc(const struct pt *m, uint8_t *out, size_t cap)
{
	struct buf_writer w;

	buf_writer_init(&w, out, cap);
	TT_OK(pt_encode(m, &w));
	TT_EQ(w.len, pt_encoded_size(m));
	return w.len;
}

TT_CASE(pt__text__golden_and_round_trip)
{
	static const uint8_t want[] = {
		0x01, 0x01,
		0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
		0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,
		0x00, 0x03, 'h', 'e', 'y'
	};
	struct pt m = {0}, d;
	uint8_t out[64];
	size_t n;

	m.kind = PT_TEXT;
	memcpy(m.id, ID, MSG_ID_LEN);
	m.sent_ms = 1700000000000ull;
	m.text.p = "hey";
	m.text.len = 3;
	n = enc(&m, out, sizeof(out));
	TT_EQ(n, sizeof(want));
	TT_ASSERT(memcmp(out, want, n) == 0);
	TT_OK(pt_decode(out, n, &d));
	TT_EQ(d.kind, PT_TEXT);
	TT_ASSERT(memcmp(d.id, ID, MSG_ID_LEN) == 0);
	TT_EQ(d.sent_ms, 1700000000000ull);
	TT_EQ(d.text.len, 3);
	TT_ASSERT(memcmp(d.text.p, "hey", 3) == 0);
}

TT_CASE(pt__sync_receipt_typing__round_trip)
{
	uint8_t ids[3 * MSG_ID_LEN], out[256];
	struct pt m = {0}, d;
	size_t n;

	memset(ids, 0x5a, sizeof(ids));
	m.kind = PT_SYNC;
	memcpy(m.id, ID, MSG_ID_LEN);
	m.sent_ms = 5;
	m.peer.p = "bob@b.test";
	m.peer.len = 10;
	m.text.p = "h\xc3\xa9";
	m.text.len = 3;
	n = enc(&m, out, sizeof(out));
	TT_EQ(n, 2 + 16 + 8 + 1 + 10 + 2 + 3);
	TT_OK(pt_decode(out, n, &d));
	TT_EQ(d.kind, PT_SYNC);
	TT_EQ(d.peer.len, 10);
	TT_ASSERT(memcmp(d.peer.p, "bob@b.test", 10) == 0);

	memset(&m, 0, sizeof(m));
	m.kind = PT_RECEIPT;
	m.what = PT_RCPT_READ;
	m.nids = 3;
	m.ids = ids;
	n = enc(&m, out, sizeof(out));
	TT_EQ(n, 5 + 48);
	TT_EQ(out[2], 2);
	TT_OK(pt_decode(out, n, &d));
	TT_EQ(d.nids, 3);
	TT_ASSERT(memcmp(d.ids, ids, sizeof(ids)) == 0);

	memset(&m, 0, sizeof(m));
	m.kind = PT_TYPING;
	m.typing = 1;
	n = enc(&m, out, sizeof(out));
	TT_EQ(n, 3);
	TT_OK(pt_decode(out, n, &d));
	TT_EQ(d.typing, 1);
}

TT_CASE(pt__decode__refusals)
{
	uint8_t b[64];
	struct pt d;
	size_t i, n;

	/* Every prefix of a valid text is truncated. */
	{
		struct pt m = {0};
		m.kind = PT_TEXT;
		m.text.p = "abc";
		m.text.len = 3;
		n = enc(&m, b, sizeof(b));
		for (i = 0; i < n; i++)
			TT_ERR(pt_decode(b, i, &d), i < 2 && i == 0 ?
			    TERN_ETRUNC : TERN_ETRUNC);
		b[n] = 0;
		TT_ERR(pt_decode(b, n + 1, &d), TERN_ETRAILING);
		b[0] = 2;
		TT_ERR(pt_decode(b, n, &d), TERN_EVERSION);
		b[0] = 1;
		b[1] = 9;
		TT_ERR(pt_decode(b, n, &d), TERN_ETYPE);
		b[1] = PT_TEXT;
		b[28] = 0xff; /* 'a' -> invalid UTF-8 */
		TT_ERR(pt_decode(b, n, &d), TERN_EUTF8);
	}
	/* Receipt: bad what, too many ids. */
	{
		static const uint8_t bad_what[] = {1, 2, 3, 0, 0};
		static const uint8_t too_many[] = {1, 2, 1, 0x01, 0x01};
		static const uint8_t bad_typing[] = {1, 3, 2};
		uint8_t long_text[28], bad_peer[30];
		/* version, kind, 16-byte id, 8-byte time: 26 bytes. */
		memset(long_text, 0, sizeof(long_text));
		long_text[0] = 1;
		long_text[1] = PT_TEXT;
		long_text[26] = 0x80; /* 32769 bytes of text */
		long_text[27] = 0x01;
		memset(bad_peer, 0, sizeof(bad_peer));
		bad_peer[0] = 1;
		bad_peer[1] = PT_SYNC;
		bad_peer[26] = 1;     /* a one-byte address: "x" */
		bad_peer[27] = 'x';
		TT_ERR(pt_decode(bad_what, sizeof(bad_what), &d), TERN_EFIELD);
		TT_ERR(pt_decode(too_many, sizeof(too_many), &d),
		    TERN_ETOOBIG);
		TT_ERR(pt_decode(bad_typing, sizeof(bad_typing), &d),
		    TERN_EFIELD);
		TT_ERR(pt_decode(long_text, sizeof(long_text), &d),
		    TERN_ETOOBIG);
		TT_ERR(pt_decode(bad_peer, sizeof(bad_peer), &d), TERN_EFIELD);
	}
	TT_ERR(pt_decode(NULL, 0, &d), TERN_ETRUNC);
}
