/*
 * dns.h: asynchronous DNS on a libuv loop (c-ares underneath), and the one
 * DNS policy tern has: find where a domain offers a service from its SRV
 * records (RFC 2782).
 *
 * The same lookup serves clients ("_tern._tcp", where does example.org's
 * node listen?) and, later, node-to-node federation ("_tern-fed._tcp").
 *
 * A struct dns is a long-lived object on one loop, like a libuv handle: it
 * owns one c-ares channel, one uv_poll_t per socket c-ares opens and one
 * uv_timer_t that drives c-ares' retransmissions and each lookup's deadline.
 * dns_srv, dns_txt and dns_addrs calls are one-shot requests.
 *
 * Every answer carries the TTLs DNS gave it (seconds), so that a caller
 * can cache it: c-ares does not cache, and neither does this file.
 *
 * Callback rules (libuv's):
 *  - If a function that takes a callback fails synchronously (returns
 *    nonzero), the callback is never called.
 *  - Otherwise the callback is called exactly once, never from inside the
 *    dns_srv call that started it: with the result, with an error, or with
 *    TERN_ECANCELED when dns_close runs first.
 *  - Callbacks may call dns_srv, dns_txt, dns_addrs and dns_close.
 *
 * Errors a callback sees, and what a caller should do with them (dns_txt
 * and dns_addrs the same, for their record types; DNS_ENOSERVICE is
 * dns_srv's only):
 *   0               targets to try, in order
 *   TERN_ENOTFOUND  the domain publishes no SRV record for the service
 *                   (NXDOMAIN or no data). RFC 2782 leaves the fallback to
 *                   the caller (e.g. the domain's own address, or asking
 *                   the user for --server).
 *   DNS_ENOSERVICE  the domain publishes a single SRV record with target
 *                   ".": it says it decidedly does not offer the service.
 *                   Do not fall back.
 *   TERN_ETIMEOUT   no answer within cfg.timeout_ms.
 *   TERN_EUNREACH   the DNS server failed (SERVFAIL, REFUSED, unreachable,
 *                   malformed reply) or none of the SRV targets has an
 *                   address. Try again later.
 *   TERN_ENOMEM     allocation failed.
 *   TERN_ECANCELED  dns_close ran before the answer came.
 * Every callback also gets a short text for operators that names the
 * query and the server ("DNS timeout after 5000 ms asking 10.0.0.1:53 for
 * SRV _tern._tcp.example.org"); it is never NULL.
 */
#ifndef TERN_DNS_H
#define TERN_DNS_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "tern_err.h"

/* The "." target error: the domain says it does not offer the service,
 * so a caller must not fall back to another way of finding it. */
#define DNS_ENOSERVICE TERN_ENOSERVICE

#define DNS_NAME_MAX 253         /* a domain name in text, no final dot */
#define DNS_LABEL_MAX 63         /* one label */
#define DNS_ADDR_MAX 46          /* an IPv6 literal and its NUL */
#define DNS_MAX_TARGETS 32       /* entries one dns_srv returns */
#define DNS_MAX_SRV 32           /* SRV records one dns_srv considers */
#define DNS_MAX_ADDRS_PER_HOST 8 /* addresses kept per SRV target */
#define DNS_DETAIL_MAX 320       /* the operator text, with its NUL */
#define DNS_MAX_ADDRS 16         /* addresses one dns_addrs returns */
#define DNS_MAX_TXT 16           /* TXT records one dns_txt returns */
#define DNS_TXT_LEN_MAX 1024     /* bytes of one TXT record's text */
#define DNS_TIMEOUT_MS_DEFAULT 5000
#define DNS_TRIES_DEFAULT 2

struct dns;

struct dns_config {
	/* The DNS server to ask instead of resolv.conf's, as "IP:PORT",
	 * "IP" (port 53) or "[IPv6]:PORT"; several may be separated by
	 * commas. NULL: the system's (resolv.conf, hosts file first). With
	 * an override, the hosts file is not read either. Copied. */
	const char *nameserver;
	/* The budget of one dns_srv, SRV and address queries together,
	 * enforced by a deadline; c-ares' per-try timeout is derived from
	 * it (budget / (2^tries - 1), as c-ares doubles it per round). */
	uint32_t timeout_ms; /* 0: DNS_TIMEOUT_MS_DEFAULT */
	uint32_t tries;      /* rounds over the servers, 1..5; 0: default */
};

/* One place to connect to: an SRV target and one of its addresses. */
struct dns_target {
	char host[DNS_NAME_MAX + 3]; /* the SRV target, no final dot */
	uint16_t port;               /* from the SRV record */
	uint16_t priority;           /* lower is tried first */
	uint16_t weight;             /* share within a priority */
	char addr[DNS_ADDR_MAX];     /* IPv4 or IPv6 literal */
	uint32_t ttl;                /* seconds: min of the SRV record's
	                                and the address's TTL */
};

/* One address of a name (dns_addrs). */
struct dns_addr {
	char addr[DNS_ADDR_MAX];     /* IPv4 or IPv6 literal */
	uint32_t ttl;                /* seconds, from its A/AAAA record */
};

/* One TXT record (dns_txt): its character-strings joined, as RFC 7208
 * 3.3 and DKIM do, so a long value may be split into 255-byte pieces. */
struct dns_txt_rec {
	char text[DNS_TXT_LEN_MAX + 1]; /* the bytes, then a NUL */
	size_t len;                     /* bytes before the NUL */
};

/*
 * dns_srv_cb: the result of dns_srv. targets (n entries, borrowed, valid
 * only during the call) are in the order to try them: one entry per
 * (SRV record, address). On error n is 0. detail is a short text for
 * logs and operators; on success it notes what was skipped (a target
 * without address), else it is "".
 */
typedef void (*dns_srv_cb)(void *arg, int err,
    const struct dns_target *targets, size_t n, const char *detail);

/*
 * dns_addrs_cb: the result of dns_addrs: n addresses (borrowed, valid
 * only during the call), in the order c-ares sorts them (RFC 6724).
 */
typedef void (*dns_addrs_cb)(void *arg, int err,
    const struct dns_addr *addrs, size_t n, const char *detail);

/*
 * dns_txt_cb: the result of dns_txt: n records (borrowed, valid only
 * during the call) in the order of the answer, and the smallest TTL among
 * them (seconds). Records holding a NUL byte or longer than
 * DNS_TXT_LEN_MAX, and any after the first DNS_MAX_TXT, are left out and
 * counted in detail. A name with TXT records none of which fits answers
 * 0 with n == 0.
 */
typedef void (*dns_txt_cb)(void *arg, int err, const struct dns_txt_rec *recs,
    size_t n, uint32_t ttl, const char *detail);

/* dns_close_cb: everything dns_new allocated is released. */
typedef void (*dns_close_cb)(void *arg);

/*
 * dns_new: creates a resolver on loop. cfg may be NULL (all defaults).
 * On success *out is owned by the caller until dns_close. Fails with
 * TERN_ECONFIG for a bad cfg.nameserver, TERN_EIO when c-ares cannot
 * start (e.g. an unreadable resolv.conf), TERN_ENOMEM.
 */
int dns_new(uv_loop_t *loop, const struct dns_config *cfg,
    struct dns **out) TERN_WUR;

/*
 * dns_srv: looks up SRV records for service.domain (service is one or
 * more labels such as "_tern._tcp"; domain is a host name, a final dot
 * allowed), orders them per RFC 2782 (priority ascending; within a
 * priority a weighted random order), resolves each target's A and AAAA
 * records and calls cb once with the result (see the top of this file).
 * Returns TERN_EINVAL, without sending anything, for an empty or
 * malformed name or one longer than DNS_NAME_MAX; TERN_ESTATE after
 * dns_close; TERN_ENOMEM.
 */
int dns_srv(struct dns *d, const char *service, const char *domain,
    dns_srv_cb cb, void *arg) TERN_WUR;

/*
 * dns_addrs: looks up host's A and AAAA records (no hosts file when
 * cfg.nameserver is set; exactly host, no search domains) and calls cb
 * once. Up to DNS_MAX_ADDRS addresses, each with its TTL. TERN_ENOTFOUND
 * when host has neither. Returns as dns_srv.
 */
int dns_addrs(struct dns *d, const char *host, dns_addrs_cb cb, void *arg)
    TERN_WUR;

/*
 * dns_txt: looks up the TXT records of name (e.g. "_tern-key.example.org")
 * and calls cb once. TERN_ENOTFOUND when there are none. Returns as
 * dns_srv.
 */
int dns_txt(struct dns *d, const char *name, dns_txt_cb cb, void *arg)
    TERN_WUR;

/*
 * dns_close: cancels pending lookups, closes the handles and frees d; cb
 * (may be NULL) runs once all of it is released, never synchronously.
 * Every lookup not yet answered gets its callback with TERN_ECANCELED,
 * even one whose answer arrives in the same loop turn: before dns_close
 * returns, or, when called from a dns callback, right after that
 * callback's turn of c-ares processing. Calling it again is a no-op until
 * cb; d must not be used after cb. dns_srv fails with TERN_ESTATE
 * meanwhile.
 */
void dns_close(struct dns *d, dns_close_cb cb, void *arg);

/* dns_servers: the servers d asks, as text ("127.0.0.53:53"), for logs. */
const char *dns_servers(const struct dns *d);

#endif
