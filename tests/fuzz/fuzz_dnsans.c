/*
 * fuzz_dnsans.c: the parsers of DNS data that tern writes itself: the TTL
 * walk over a raw answer (net/dnsans.c) and the _tern-key TXT record
 * (federation/discover.c, fdisc_key_parse) and the _tern-relay TXT record
 * (fdisc_relay_parse). The first input byte picks
 * the record type the walk looks for; the rest is the message, and the
 * whole input is also read as one TXT record's text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discover.h"
#include "dnsans.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint16_t types[] = { 33, 16, 1, 28, 5 };
	uint8_t key[FDISC_KEY_LEN];
	struct fdisc_relay rl;
	uint32_t ttl = 0;
	char *text;
	int r;

	if (size == 0)
		return 0;
	r = dnsans_min_ttl(data + 1, size - 1,
	    types[data[0] % (sizeof(types) / sizeof(types[0]))], &ttl);
	if (r == 0 && ttl > DNSANS_TTL_CAP)
		abort();
	/* A copy of exactly size bytes, so ASan sees any read past it. */
	text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data, size);
	if (fdisc_key_parse(text, size, key) == 0 &&
	    memcmp(text, FDISC_KEY_VERSION, strlen(FDISC_KEY_VERSION)) != 0 &&
	    text[0] != ' ')
		abort(); /* a key record starts with its version */
	if (fdisc_relay_parse(text, size, &rl) == 0 &&
	    (fdisc_key_parse(text, size, key) != 0 ||
	    memcmp(key, rl.key, FDISC_KEY_LEN) != 0 ||
	    rl.domain[0] == '\0' ||
	    strnlen(rl.domain, sizeof(rl.domain)) == sizeof(rl.domain)))
		abort(); /* a relay record is a key record with a domain */
	free(text);
	return 0;
}
