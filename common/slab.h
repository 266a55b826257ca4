/*
 * slab.h: pools of same-size objects that live as long as a connection.
 *
 * Why not malloc: glibc's heap interleaves such objects with the short-
 * lived allocations of a login (handshake state, buffers, store requests).
 * When a storm of logins ends, those leave small holes between the live
 * connections that the allocator can neither reuse nor give back: at
 * 15,000 idle connections that was about 160 B per connection, on top of
 * the connection itself (BENCHMARKS.md, 2026-12-03 fourth session). Kept
 * apart here, the heap's freed memory coalesces and malloc_trim can return
 * it, and an object costs its size rounded up to 8, without malloc's
 * header (malloc adds 8 bytes, then rounds up to 16).
 *
 * Objects come from 64 KiB chunks mapped from the kernel, aligned to their
 * size so that an object finds its chunk by masking its address. A chunk
 * with nothing in use is unmapped, except one kept as a spare so that a
 * connection that comes and goes does not map and unmap each time.
 *
 * Not thread-safe: a slab belongs to one loop. slab_free does not wipe;
 * callers wipe what held secrets, as they would before free().
 */
#ifndef TERN_SLAB_H
#define TERN_SLAB_H

#include <stddef.h>
#include <stdint.h>

#define SLAB_CHUNK (64u * 1024)  /* bytes per chunk, and their alignment */
#define SLAB_ALIGN 8u            /* every object's alignment: enough for
                                    pointers and 64-bit integers, not for
                                    long double or vector types */
#define SLAB_OBJ_MAX 4096u       /* largest object: 15 or more per chunk */

struct slab_chunk;

struct slab {
	size_t size;               /* object size, a multiple of SLAB_ALIGN */
	uint32_t per_chunk;        /* objects in one chunk */
	struct slab_chunk *avail;  /* chunks with room, most recent first */
	struct slab_chunk *full;   /* chunks without (for slab_fini) */
	struct slab_chunk *spare;  /* one empty chunk kept mapped, or NULL */
	size_t chunks;             /* chunks mapped, the spare included */
	size_t in_use;             /* objects handed out, not yet freed */
};

/* slab_init: an empty pool of objects of size bytes (1..SLAB_OBJ_MAX);
 * maps nothing yet. TERN_EINVAL for a size out of range. */
int slab_init(struct slab *s, size_t size);

/* slab_alloc: a zeroed object aligned to SLAB_ALIGN, or NULL when the
 * kernel refuses a new chunk. */
void *slab_alloc(struct slab *s);

/* slab_free: gives p (from slab_alloc on s, or NULL) back. */
void slab_free(struct slab *s, void *p);

/* slab_mapped_bytes: what the pool has mapped (resident or not). */
size_t slab_mapped_bytes(const struct slab *s);

/* slab_fini: unmaps every chunk. Objects still in use are lost with
 * them: the caller frees its objects first. */
void slab_fini(struct slab *s);

#endif /* TERN_SLAB_H */
