/*
 * test_slab.c: pools of same-size objects (common/slab.h).
 */
#include "tt.h"

#include <stdlib.h>
#include <string.h>

#include "slab.h"
#include "tern_err.h"

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#ifdef T_ASAN
#include <sanitizer/asan_interface.h>
#endif

TT_CASE(slab__init__sizes)
{
	struct slab s;

	TT_ERR(slab_init(&s, 0), TERN_EINVAL);
	TT_ERR(slab_init(&s, SLAB_OBJ_MAX + 1), TERN_EINVAL);
	TT_OK(slab_init(&s, 1));
	TT_EQ(s.size, SLAB_ALIGN);
	TT_OK(slab_init(&s, 583));
	TT_EQ(s.size, 584);
	TT_ASSERT(s.per_chunk * s.size <= SLAB_CHUNK);
	TT_ASSERT((s.per_chunk + 1) * s.size > SLAB_CHUNK - 64);
	TT_OK(slab_init(&s, SLAB_OBJ_MAX));
	TT_ASSERT(s.per_chunk >= 15);
	TT_EQ(slab_mapped_bytes(&s), 0);   /* nothing mapped before use */
	slab_fini(&s);
}

/* Objects across several chunks: zeroed, aligned, apart; all freed, one
 * chunk stays as the spare and the others are unmapped. */
TT_CASE(slab__alloc__zeroed_aligned_apart_and_given_back)
{
	struct slab s;
	uint32_t n, i, j;
	uint8_t **p;

	TT_OK(slab_init(&s, 100));
	n = s.per_chunk * 3 + 7;
	TT_ASSERT((p = calloc(n, sizeof(*p))) != NULL);
	for (i = 0; i < n; i++) {
		TT_ASSERT((p[i] = slab_alloc(&s)) != NULL);
		TT_EQ((uintptr_t)p[i] % SLAB_ALIGN, 0);
		for (j = 0; j < 100; j++)
			TT_EQ(p[i][j], 0);
		memset(p[i], (int)(i & 0xff), 100);
	}
	TT_EQ(s.in_use, n);
	TT_EQ(s.chunks, 4);
	TT_EQ(slab_mapped_bytes(&s), 4 * SLAB_CHUNK);
	/* Nothing overlapped: each still holds its own pattern. */
	for (i = 0; i < n; i++)
		for (j = 0; j < 100; j++)
			TT_EQ(p[i][j], i & 0xff);
	/* Free every other one, then the rest, from the end. */
	for (i = 0; i < n; i += 2)
		slab_free(&s, p[i]);
	TT_EQ(s.chunks, 4);
	for (i = n; i-- > 0;)
		if (i % 2 == 1)
			slab_free(&s, p[i]);
	TT_EQ(s.in_use, 0);
	TT_EQ(s.chunks, 1);
	TT_EQ(slab_mapped_bytes(&s), SLAB_CHUNK);
	slab_free(&s, NULL);
	/* The spare serves again, zeroed despite the old patterns. */
	TT_ASSERT((p[0] = slab_alloc(&s)) != NULL);
	for (j = 0; j < 100; j++)
		TT_EQ(p[0][j], 0);
	TT_EQ(s.chunks, 1);
	slab_free(&s, p[0]);
	slab_fini(&s);
	TT_EQ(s.chunks, 0);
	free(p);
}

/* A full chunk that gets room again is used before a new one is mapped;
 * a freed object is handed out again. */
TT_CASE(slab__free__room_reused_before_mapping)
{
	struct slab s;
	uint32_t i;
	void **p, *again;

	TT_OK(slab_init(&s, SLAB_OBJ_MAX));
	TT_ASSERT((p = calloc(s.per_chunk, sizeof(*p))) != NULL);
	for (i = 0; i < s.per_chunk; i++)
		TT_ASSERT((p[i] = slab_alloc(&s)) != NULL);
	TT_EQ(s.chunks, 1);
	slab_free(&s, p[3]);
#ifdef T_ASAN
	/* Under ASan a freed object is poisoned, as after free(), and the
	 * others are not. */
	TT_ASSERT(__asan_address_is_poisoned(p[3]));
	TT_ASSERT(__asan_address_is_poisoned((uint8_t *)p[3] + s.size - 1));
	TT_EQ(__asan_address_is_poisoned(p[4]), 0);
#endif
	TT_ASSERT((again = slab_alloc(&s)) == p[3]);
#ifdef T_ASAN
	TT_EQ(__asan_address_is_poisoned(again), 0);
#endif
	TT_EQ(s.chunks, 1);
	TT_ASSERT(slab_alloc(&s) != NULL);   /* now a second chunk */
	TT_EQ(s.chunks, 2);
	/* slab_fini takes chunks with objects still in use too. */
	slab_fini(&s);
	TT_EQ(s.chunks, 0);
	TT_EQ(s.in_use, 0);
	free(p);
}

/* Two pools never mix objects, and churn keeps at most one spare. */
TT_CASE(slab__churn__bounded)
{
	struct slab a, b;
	void *pa[64], *pb[64];
	uint32_t round, i;

	TT_OK(slab_init(&a, 592));
	TT_OK(slab_init(&b, 112));
	for (round = 0; round < 50; round++) {
		for (i = 0; i < 64; i++) {
			TT_ASSERT((pa[i] = slab_alloc(&a)) != NULL);
			TT_ASSERT((pb[i] = slab_alloc(&b)) != NULL);
			memset(pa[i], 0xa5, 592);
			memset(pb[i], 0x5a, 112);
		}
		for (i = 0; i < 64; i++) {
			TT_EQ(((uint8_t *)pa[i])[591], 0xa5);
			TT_EQ(((uint8_t *)pb[i])[111], 0x5a);
			slab_free(&a, pa[i]);
			slab_free(&b, pb[i]);
		}
		TT_EQ(a.in_use, 0);
		TT_EQ(b.in_use, 0);
		TT_ASSERT(a.chunks <= 1 && b.chunks <= 1);
	}
	slab_fini(&a);
	slab_fini(&b);
}
