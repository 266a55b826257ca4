/*
 * dnsans.c: the TTL walk over a raw DNS answer (see dnsans.h).
 *
 * Written by hand because c-ares 1.18, the resolver we use, exposes no
 * TTL for SRV and TXT records, and no other Debian library parses DNS
 * messages without also wanting to own the sockets.
 */
#include "dnsans.h"

#include <stdbool.h>

#define DNSANS_T_CNAME 5 /* RFC 1035 3.2.2 */

static uint16_t
dnsans_u16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

/* dnsans_skip_name: moves *off past one encoded name: labels of up to 63
 * bytes ending in a zero byte or in a 2-byte compression pointer. */
static int
dnsans_skip_name(const uint8_t *msg, size_t len, size_t *off)
{
	size_t o = *off, total = 0;

	for (;;) {
		uint8_t c;

		if (o >= len)
			return TERN_ETRUNC;
		c = msg[o];
		if (c == 0) {
			*off = o + 1;
			return 0;
		}
		if ((c & 0xc0) == 0xc0) {
			if (o + 2 > len)
				return TERN_ETRUNC;
			*off = o + 2;
			return 0;
		}
		if (c & 0xc0)
			return TERN_EFIELD; /* 0x40 and 0x80: reserved */
		total += (size_t)c + 1;
		if (total > 255)
			return TERN_EFIELD; /* RFC 1035 2.3.4 */
		o += (size_t)c + 1;
	}
}

int
dnsans_min_ttl(const uint8_t *msg, size_t len, uint16_t rtype,
    uint32_t *ttl)
{
	size_t off = DNSANS_HEADER_LEN;
	uint32_t qd, an, best = UINT32_MAX;
	bool found = false;
	int r;

	if (!msg || len < DNSANS_HEADER_LEN)
		return TERN_ETRUNC;
	qd = dnsans_u16(msg + 4);
	an = dnsans_u16(msg + 6);
	if (qd + an > DNSANS_MAX_RR)
		return TERN_EFIELD;
	for (uint32_t i = 0; i < qd; i++) {
		if ((r = dnsans_skip_name(msg, len, &off)) != 0)
			return r;
		if (len - off < 4)
			return TERN_ETRUNC;
		off += 4; /* QTYPE, QCLASS */
	}
	for (uint32_t i = 0; i < an; i++) {
		uint16_t type, rdlen;
		uint32_t t;

		if ((r = dnsans_skip_name(msg, len, &off)) != 0)
			return r;
		if (len - off < 10)
			return TERN_ETRUNC;
		type = dnsans_u16(msg + off);
		t = (uint32_t)msg[off + 4] << 24 | (uint32_t)msg[off + 5] << 16 |
		    (uint32_t)msg[off + 6] << 8 | msg[off + 7];
		rdlen = dnsans_u16(msg + off + 8);
		off += 10;
		if (len - off < rdlen)
			return TERN_ETRUNC;
		off += rdlen;
		if (t > DNSANS_TTL_CAP)
			t = 0;
		if (type == rtype)
			found = true;
		if ((type == rtype || type == DNSANS_T_CNAME) && t < best)
			best = t;
	}
	if (!found)
		return TERN_ENOTFOUND;
	*ttl = best;
	return 0;
}
