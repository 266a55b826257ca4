/*
 * slab.c: pools of same-size objects in aligned 64 KiB chunks (slab.h).
 */
#include "slab.h"

#include <assert.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "tern_err.h"

/*
 * Under AddressSanitizer, objects not handed out are poisoned, so that a
 * use after slab_free is caught as it would be after free(); and each
 * chunk is a root region for LeakSanitizer, which otherwise does not scan
 * mapped memory and would call the buffers our objects point to leaks.
 */
#if defined(__SANITIZE_ADDRESS__)
#define SLAB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SLAB_ASAN 1
#endif
#endif

#ifdef SLAB_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/lsan_interface.h>
#define SLAB_POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define SLAB_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define SLAB_ROOT_ADD(p, n) __lsan_register_root_region((p), (n))
#define SLAB_ROOT_DEL(p, n) __lsan_unregister_root_region((p), (n))
#else
#define SLAB_POISON(p, n) ((void)(p), (void)(n))
#define SLAB_UNPOISON(p, n) ((void)(p), (void)(n))
#define SLAB_ROOT_ADD(p, n) ((void)(p), (void)(n))
#define SLAB_ROOT_DEL(p, n) ((void)(p), (void)(n))
#endif

/* At the start of each chunk; the objects follow. */
struct slab_chunk {
	struct slab *owner;          /* the pool (checked on free) */
	struct slab_chunk *prev;     /* in the owner's avail or full list */
	struct slab_chunk *next;
	void *free;                  /* freed objects, a list through them */
	uint32_t used;               /* objects handed out */
	uint32_t fresh;              /* objects never handed out start here */
};

#define SLAB_HDR \
	((sizeof(struct slab_chunk) + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1))

static void
slab_unlink(struct slab_chunk **head, struct slab_chunk *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void
slab_push(struct slab_chunk **head, struct slab_chunk *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head != NULL)
		(*head)->prev = c;
	*head = c;
}

/*
 * slab_map: a fresh chunk aligned to SLAB_CHUNK. The kernel aligns only
 * to pages. It places a mapping just below the last one, though, so once
 * one chunk is aligned the next one usually is too: try that first, and
 * adjacent chunks merge into one kernel mapping (vm.max_map_count). Else
 * map twice the size and give back what sticks out.
 */
static struct slab_chunk *
slab_map(void)
{
	const int prot = PROT_READ | PROT_WRITE;
	const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
	uint8_t *p, *a;
	size_t head, tail;

	p = mmap(NULL, SLAB_CHUNK, prot, flags, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	if (((uintptr_t)p & (SLAB_CHUNK - 1)) == 0) {
		a = p;
		goto mapped;
	}
	(void)munmap(p, SLAB_CHUNK);
	p = mmap(NULL, 2 * SLAB_CHUNK, prot, flags, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	a = (uint8_t *)(((uintptr_t)p + SLAB_CHUNK - 1) &
	    ~(uintptr_t)(SLAB_CHUNK - 1));
	head = (size_t)(a - p);
	tail = SLAB_CHUNK - head;
	if (head > 0)
		(void)munmap(p, head);
	if (tail > 0)
		(void)munmap(a + SLAB_CHUNK, tail);
mapped:
	SLAB_ROOT_ADD(a, SLAB_CHUNK);
	SLAB_POISON(a + SLAB_HDR, SLAB_CHUNK - SLAB_HDR);
	return (struct slab_chunk *)a;
}

static void
slab_unmap(struct slab_chunk *c)
{
	SLAB_UNPOISON((uint8_t *)c + SLAB_HDR, SLAB_CHUNK - SLAB_HDR);
	SLAB_ROOT_DEL(c, SLAB_CHUNK);
	(void)munmap(c, SLAB_CHUNK);
}

int
slab_init(struct slab *s, size_t size)
{
	if (size == 0 || size > SLAB_OBJ_MAX)
		return TERN_EINVAL;
	memset(s, 0, sizeof(*s));
	s->size = (size + SLAB_ALIGN - 1) & ~(size_t)(SLAB_ALIGN - 1);
	s->per_chunk = (uint32_t)((SLAB_CHUNK - SLAB_HDR) / s->size);
	return 0;
}

void *
slab_alloc(struct slab *s)
{
	struct slab_chunk *c = s->avail;
	uint8_t *p;

	if (c == NULL) {
		if ((c = s->spare) != NULL) {
			s->spare = NULL;
		} else {
			if ((c = slab_map()) == NULL)
				return NULL;
			s->chunks++;
		}
		c->owner = s;
		c->free = NULL;
		c->used = 0;
		c->fresh = 0;
		slab_push(&s->avail, c);
	}
	if (c->free != NULL) {
		p = c->free;
		SLAB_UNPOISON(p, s->size);
		memcpy(&c->free, p, sizeof(void *));
	} else {
		assert(c->fresh < s->per_chunk);
		p = (uint8_t *)c + SLAB_HDR + (size_t)c->fresh * s->size;
		c->fresh++;
		SLAB_UNPOISON(p, s->size);
	}
	memset(p, 0, s->size);
	if (++c->used == s->per_chunk) {
		slab_unlink(&s->avail, c);
		slab_push(&s->full, c);
	}
	s->in_use++;
	return p;
}

void
slab_free(struct slab *s, void *p)
{
	struct slab_chunk *c;

	if (p == NULL)
		return;
	c = (struct slab_chunk *)((uintptr_t)p & ~(uintptr_t)(SLAB_CHUNK - 1));
	assert(c->owner == s && c->used > 0);
	assert(((uintptr_t)p - (uintptr_t)c - SLAB_HDR) % s->size == 0);
	memcpy(p, &c->free, sizeof(void *));
	c->free = p;
	SLAB_POISON(p, s->size);
	s->in_use--;
	if (c->used-- == s->per_chunk) {
		slab_unlink(&s->full, c);
		slab_push(&s->avail, c);
	}
	if (c->used > 0)
		return;
	slab_unlink(&s->avail, c);
	/* Its memory was touched; the spare keeps one such chunk warm. */
	if (s->spare == NULL) {
		s->spare = c;
		return;
	}
	slab_unmap(c);
	s->chunks--;
}

size_t
slab_mapped_bytes(const struct slab *s)
{
	return s->chunks * SLAB_CHUNK;
}

void
slab_fini(struct slab *s)
{
	struct slab_chunk *c;

	while ((c = s->avail) != NULL) {
		slab_unlink(&s->avail, c);
		slab_unmap(c);
	}
	while ((c = s->full) != NULL) {
		slab_unlink(&s->full, c);
		slab_unmap(c);
	}
	if (s->spare != NULL)
		slab_unmap(s->spare);
	s->spare = NULL;
	s->chunks = 0;
	s->in_use = 0;
}
