/*
 * dnsans.h: the one thing tern reads from a raw DNS answer itself: the
 * time-to-live of the records it asked for.
 *
 * c-ares 1.18 parses SRV and TXT answers (ares_parse_srv_reply,
 * ares_parse_txt_reply_ext) but drops their TTLs, and caching by TTL is
 * what federation discovery needs. This is a bounded, read-only walk over
 * the message (RFC 1035 section 4): it never allocates, never follows a
 * compression pointer (a name is only skipped) and stops at the first
 * byte that does not fit.
 */
#ifndef TERN_DNSANS_H
#define TERN_DNSANS_H

#include <stddef.h>
#include <stdint.h>

#include "tern_err.h"

#define DNSANS_HEADER_LEN 12      /* fixed DNS message header */
#define DNSANS_MAX_RR 512         /* records walked at most */
#define DNSANS_TTL_CAP 2147483647u /* RFC 2181 8: a TTL with the top bit
                                      set is read as 0 */

/*
 * dnsans_min_ttl: the smallest TTL among the answer section's records of
 * type rtype (e.g. 33 for SRV, 16 for TXT) and of the CNAMEs that led to
 * them, in seconds, to *ttl. Returns 0; TERN_ENOTFOUND when the answer
 * holds no record of rtype; TERN_ETRUNC when the message ends inside a
 * field; TERN_EFIELD for a malformed name or more than DNSANS_MAX_RR
 * records. *ttl is written only on success.
 */
int dnsans_min_ttl(const uint8_t *msg, size_t len, uint16_t rtype,
    uint32_t *ttl) TERN_WUR;

#endif
