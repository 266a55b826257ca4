/*
 * admin.c: operator actions (see admin.h).
 */
#include "admin.h"

#include <string.h>
#include <time.h>

#include <sodium.h>

/* 32 letters and digits without the ones people confuse (0 o 1 l). */
static const char admin_alphabet[] = "abcdefghijkmnpqrstuvwxyz23456789";

void
admin_invite_hash(const char *code, size_t len,
    uint8_t hash[STORE_INVITE_HASH_LEN])
{
	crypto_generichash(hash, STORE_INVITE_HASH_LEN, (const uint8_t *)code,
	    len, NULL, 0);
}

/* admin_invite_code: 16 random symbols (80 bits) in groups of four. */
static void
admin_invite_code(char code[ADMIN_INVITE_LEN + 1])
{
	uint8_t r[16];
	int i, o = 0;

	randombytes_buf(r, sizeof(r));
	for (i = 0; i < 16; i++) {
		if (i > 0 && i % 4 == 0)
			code[o++] = '-';
		code[o++] = admin_alphabet[r[i] & 31];
	}
	code[o] = '\0';
	sodium_memzero(r, sizeof(r));
}

int
admin_invite_create(struct store *st, unsigned count, uint64_t ttl_ms,
    struct buf_writer *out, store_cb cb, void *arg, unsigned *submitted)
{
	uint8_t h[STORE_INVITE_HASH_LEN];
	char code[ADMIN_INVITE_LEN + 1];
	struct timespec ts;
	int64_t now;
	unsigned i;
	int r = 0;

	*submitted = 0;
	if (count == 0 || count > ADMIN_INVITE_MAX || ttl_ms == 0)
		return TERN_EINVAL;
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
	for (i = 0; i < count; i++) {
		admin_invite_code(code);
		admin_invite_hash(code, strlen(code), h);
		r = store_invite_add(st, h, now + (int64_t)ttl_ms, now, cb, arg);
		if (r != 0)
			break;
		buf_put_bytes(out, code, strlen(code));
		buf_put_bytes(out, "\n", 1);
		(*submitted)++;
	}
	sodium_memzero(code, sizeof(code));
	return r;
}
