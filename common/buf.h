/*
 * buf.h: bounded readers and writers of big-endian wire data.
 *
 * A reader walks borrowed bytes and never looks past their end: every get
 * checks what is left first and fails with TERN_ETRUNC, leaving the reader
 * where it was. A writer fills a caller's buffer and latches its first
 * error (TERN_ETOOBIG when the buffer is full); every later put is a no-op,
 * so an encoder makes its puts unchecked and looks at buf_writer_err() once
 * at the end. Nothing here allocates.
 *
 * Written by hand: the whole module is a few dozen lines, and no Debian
 * library offers a bounds-checked cursor with a latched error.
 */
#ifndef TERN_BUF_H
#define TERN_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "tern_err.h"

struct buf_reader {
	const uint8_t *p; /* the bytes, borrowed; NULL only when len is 0 */
	size_t len;       /* how many there are */
	size_t off;       /* next byte to read; never above len */
};

struct buf_writer {
	uint8_t *p;       /* the buffer, borrowed; NULL for a counting writer */
	size_t cap;       /* its size */
	size_t len;       /* bytes written so far */
	int err;          /* first error, 0 while none; later puts do nothing */
};

/* Readers. */
void buf_reader_init(struct buf_reader *r, const uint8_t *p, size_t len);
/* Bytes not yet read. */
size_t buf_reader_left(const struct buf_reader *r);

int buf_get_u8(struct buf_reader *r, uint8_t *v) TERN_WUR;
int buf_get_u16(struct buf_reader *r, uint16_t *v) TERN_WUR;
int buf_get_u32(struct buf_reader *r, uint32_t *v) TERN_WUR;
int buf_get_u64(struct buf_reader *r, uint64_t *v) TERN_WUR;
/* Copies the next n bytes into out. */
int buf_get_bytes(struct buf_reader *r, uint8_t *out, size_t n) TERN_WUR;
/*
 * buf_get_span: *out points at the next n bytes inside the reader's input
 * (borrowed, zero-copy: valid as long as that input is) and the reader
 * moves past them.
 */
int buf_get_span(struct buf_reader *r, size_t n, const uint8_t **out)
    TERN_WUR;

/*
 * Writers. buf_writer_init_count makes a writer with no buffer that only
 * counts: its puts never fail, and len ends as the size the same puts need
 * in a real buffer.
 */
void buf_writer_init(struct buf_writer *w, uint8_t *p, size_t cap);
void buf_writer_init_count(struct buf_writer *w);
/* The first error (TERN_ETOOBIG on overflow), or 0. */
int buf_writer_err(const struct buf_writer *w);

void buf_put_u8(struct buf_writer *w, uint8_t v);
void buf_put_u16(struct buf_writer *w, uint16_t v);
void buf_put_u32(struct buf_writer *w, uint32_t v);
void buf_put_u64(struct buf_writer *w, uint64_t v);
/* Copies n bytes from p; p may be NULL when n is 0. */
void buf_put_bytes(struct buf_writer *w, const void *p, size_t n);
/* buf_printf: formatted text (no NUL); over capacity latches TERN_ETOOBIG. */
void buf_printf(struct buf_writer *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Loads and stores on raw memory the caller has already bounds-checked
 * (fixed-size records, keys of known length). */
uint16_t buf_load_be16(const uint8_t *p);
uint32_t buf_load_be32(const uint8_t *p);
uint64_t buf_load_be64(const uint8_t *p);
void buf_store_be16(uint8_t *p, uint16_t v);
void buf_store_be32(uint8_t *p, uint32_t v);
void buf_store_be64(uint8_t *p, uint64_t v);

#endif
