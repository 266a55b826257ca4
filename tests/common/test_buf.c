/*
 * test_buf.c: bounded big-endian readers and writers (common/buf.h).
 */
#include "tt.h"

#include "buf.h"

static const uint8_t seq[15] = {
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f
};

TT_CASE(buf__get__big_endian)
{
	struct buf_reader r;
	uint8_t v8;
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;

	buf_reader_init(&r, seq, sizeof(seq));
	TT_OK(buf_get_u8(&r, &v8));
	TT_EQ(v8, 0x01);
	TT_OK(buf_get_u16(&r, &v16));
	TT_EQ(v16, 0x0203);
	TT_OK(buf_get_u32(&r, &v32));
	TT_EQ(v32, 0x04050607);
	TT_OK(buf_get_u64(&r, &v64));
	TT_ASSERT(v64 == UINT64_C(0x08090a0b0c0d0e0f));
	TT_EQ(buf_reader_left(&r), 0);
	TT_EQ(r.off, sizeof(seq));
}

TT_CASE(buf__get__high_bits_unsigned)
{
	static const uint8_t ff[8] = {
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe
	};
	struct buf_reader r;
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;

	/* No sign extension from uint8_t promotion anywhere. */
	buf_reader_init(&r, ff, 2);
	TT_OK(buf_get_u16(&r, &v16));
	TT_EQ(v16, 0xffff);
	buf_reader_init(&r, ff, 4);
	TT_OK(buf_get_u32(&r, &v32));
	TT_ASSERT(v32 == UINT32_C(0xffffffff));
	buf_reader_init(&r, ff, 8);
	TT_OK(buf_get_u64(&r, &v64));
	TT_ASSERT(v64 == UINT64_C(0xfffffffffffffffe));
}

TT_CASE(buf__get__truncated_keeps_offset)
{
	struct buf_reader r;
	uint8_t v8, out[4];
	uint16_t v16;
	uint32_t v32;
	uint64_t v64;

	buf_reader_init(&r, seq, 3);
	TT_ERR(buf_get_u32(&r, &v32), TERN_ETRUNC);
	TT_ERR(buf_get_u64(&r, &v64), TERN_ETRUNC);
	TT_ERR(buf_get_bytes(&r, out, 4), TERN_ETRUNC);
	TT_EQ(r.off, 0);
	TT_OK(buf_get_u16(&r, &v16));
	TT_ERR(buf_get_u16(&r, &v16), TERN_ETRUNC);
	TT_EQ(r.off, 2);
	TT_OK(buf_get_u8(&r, &v8));
	TT_EQ(v8, 0x03);
	TT_ERR(buf_get_u8(&r, &v8), TERN_ETRUNC);
	TT_EQ(r.off, 3);
	TT_EQ(buf_reader_left(&r), 0);
}

TT_CASE(buf__get__empty_reader)
{
	struct buf_reader r;
	const uint8_t *p = seq;
	uint8_t v8;

	buf_reader_init(&r, NULL, 0);
	TT_ERR(buf_get_u8(&r, &v8), TERN_ETRUNC);
	TT_OK(buf_get_span(&r, 0, &p));
	TT_ASSERT(p == NULL);
	TT_EQ(buf_reader_left(&r), 0);
}

TT_CASE(buf__get_span__huge_length_no_overflow)
{
	struct buf_reader r;
	const uint8_t *p = NULL;

	buf_reader_init(&r, seq, sizeof(seq));
	TT_OK(buf_get_span(&r, 1, &p));
	/* off + SIZE_MAX would wrap to off - 1 and pass a naive check. */
	TT_ERR(buf_get_span(&r, SIZE_MAX, &p), TERN_ETRUNC);
	TT_ERR(buf_get_span(&r, SIZE_MAX - 1, &p), TERN_ETRUNC);
	TT_ERR(buf_get_span(&r, sizeof(seq), &p), TERN_ETRUNC);
	TT_EQ(r.off, 1);
}

TT_CASE(buf__get_span__borrows)
{
	struct buf_reader r;
	const uint8_t *p = NULL;
	uint8_t out[3];

	buf_reader_init(&r, seq, sizeof(seq));
	TT_OK(buf_get_span(&r, 2, &p));
	TT_ASSERT(p == seq);
	TT_OK(buf_get_span(&r, 3, &p));
	TT_ASSERT(p == seq + 2);
	TT_OK(buf_get_bytes(&r, out, 3));
	TT_MEMEQ(out, seq + 5, 3);
	TT_OK(buf_get_span(&r, sizeof(seq) - 8, &p));
	TT_EQ(buf_reader_left(&r), 0);
}

TT_CASE(buf__put__big_endian)
{
	uint8_t out[15];
	struct buf_writer w;

	buf_writer_init(&w, out, sizeof(out));
	buf_put_u8(&w, 0x01);
	buf_put_u16(&w, 0x0203);
	buf_put_u32(&w, 0x04050607);
	buf_put_u64(&w, UINT64_C(0x08090a0b0c0d0e0f));
	TT_OK(buf_writer_err(&w));
	TT_EQ(w.len, sizeof(seq));
	TT_MEMEQ(out, seq, sizeof(seq));
}

TT_CASE(buf__put__exact_fit)
{
	uint8_t out[4];
	struct buf_writer w;

	buf_writer_init(&w, out, sizeof(out));
	buf_put_u32(&w, 0xdeadbeef);
	TT_OK(buf_writer_err(&w));
	TT_EQ(w.len, 4);
	buf_put_bytes(&w, NULL, 0);
	TT_OK(buf_writer_err(&w));
}

TT_CASE(buf__put__overflow_latches)
{
	uint8_t out[8];
	struct buf_writer w;

	memset(out, 0xee, sizeof(out));
	buf_writer_init(&w, out, 5);
	buf_put_u32(&w, 0x01020304);
	TT_OK(buf_writer_err(&w));
	buf_put_u16(&w, 0x0506);
	TT_ERR(buf_writer_err(&w), TERN_ETOOBIG);
	TT_EQ(w.len, 4);
	/* This one would fit, but the writer is already failed: a later
	 * success must not hide the hole an earlier failure left. */
	buf_put_u8(&w, 0x07);
	TT_ERR(buf_writer_err(&w), TERN_ETOOBIG);
	TT_EQ(w.len, 4);
	TT_EQ(out[4], 0xee);
	buf_put_u64(&w, 1);
	buf_put_bytes(&w, seq, 1);
	TT_ERR(buf_writer_err(&w), TERN_ETOOBIG);
	TT_EQ(w.len, 4);
}

TT_CASE(buf__put__null_buffer_overflows)
{
	struct buf_writer w;

	buf_writer_init(&w, NULL, 100);
	TT_EQ(w.cap, 0);
	buf_put_u8(&w, 1);
	TT_ERR(buf_writer_err(&w), TERN_ETOOBIG);
}

TT_CASE(buf__put__huge_length_no_overflow)
{
	uint8_t out[4];
	struct buf_writer w;

	buf_writer_init(&w, out, sizeof(out));
	buf_put_u8(&w, 1);
	buf_put_bytes(&w, seq, SIZE_MAX);
	TT_ERR(buf_writer_err(&w), TERN_ETOOBIG);
	TT_EQ(w.len, 1);
}

TT_CASE(buf__writer__count_only)
{
	struct buf_writer w;

	buf_writer_init_count(&w);
	buf_put_u8(&w, 1);
	buf_put_u16(&w, 1);
	buf_put_u32(&w, 1);
	buf_put_u64(&w, 1);
	buf_put_bytes(&w, seq, sizeof(seq));
	TT_OK(buf_writer_err(&w));
	TT_EQ(w.len, 15 + sizeof(seq));
}

TT_CASE(buf__load_store__round_trip)
{
	uint8_t b[8];

	buf_store_be16(b, 0xa1b2);
	TT_EQ(b[0], 0xa1);
	TT_EQ(b[1], 0xb2);
	TT_EQ(buf_load_be16(b), 0xa1b2);
	buf_store_be32(b, 0xa1b2c3d4);
	TT_EQ(b[0], 0xa1);
	TT_EQ(b[3], 0xd4);
	TT_ASSERT(buf_load_be32(b) == UINT32_C(0xa1b2c3d4));
	buf_store_be64(b, UINT64_C(0xa1b2c3d4e5f60718));
	TT_EQ(b[0], 0xa1);
	TT_EQ(b[7], 0x18);
	TT_ASSERT(buf_load_be64(b) == UINT64_C(0xa1b2c3d4e5f60718));
}
