/*
 * discover.h: where a federating domain's nodes are, and which node keys
 * it publishes, from DNS, with a cache.
 *
 * Nodes (SPEC.md, "Federation discovery"):
 *   SRV _tern-fed._tcp.DOMAIN, ordered per RFC 2782 (net/dns.c). No SRV
 *   record (NXDOMAIN or no data): DOMAIN's own A/AAAA records on port
 *   FDISC_DEFAULT_PORT. Neither: TERN_ENOTFOUND. A lone SRV target "."
 *   says the domain does not federate: TERN_ENOSERVICE, no fallback.
 * Keys:
 *   TXT _tern-key.DOMAIN, one record per key (several during a rotation):
 *     v=tern1 k=<standard base64, padded, of the 32-byte X25519 key>
 *   Records that do not parse are ignored; none that parses is
 *   TERN_ENOTFOUND.
 * Backup relays (SPEC.md 13.5):
 *   TXT _tern-relay.DOMAIN, one record per relay authorized for DOMAIN:
 *     v=tern1 k=<the relay node's key, as above> d=<the relay's domain>
 *   Same token rules as a key record, plus exactly one d= naming a
 *   domain. Cached like the keys.
 *
 * Cache. An answer is kept for its DNS TTL (the smallest among the
 * records it came from), clamped to [ttl_min_s, ttl_max_s]; a negative
 * answer (ENOTFOUND, ENOSERVICE) for neg_ttl_s. When DNS fails (timeout,
 * SERVFAIL, unreachable) no query is sent again for fail_ttl_s, and an
 * expired positive answer younger than stale_max_s past its expiry is
 * served instead, flagged FDISC_STALE. At most max_domains domains are
 * kept; the least recently used goes first. Concurrent lookups of one
 * domain share one DNS query.
 *
 * Callback rules are libuv's, as in net/dns.h: a call that fails
 * synchronously never calls back; otherwise the callback runs exactly
 * once and never inside the call that started it (a cache hit is
 * answered on the next loop turn), with TERN_ECANCELED after fdisc_close.
 */
#ifndef TERN_FDISC_H
#define TERN_FDISC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "dns.h"
#include "tern_err.h"

#define FDISC_SERVICE "_tern-fed._tcp" /* SRV labels before the domain */
#define FDISC_KEY_LABEL "_tern-key"     /* TXT label before the domain */
#define FDISC_RELAY_LABEL "_tern-relay" /* TXT: a domain's backup relays */
#define FDISC_KEY_VERSION "v=tern1"     /* first token of a key record */
#define FDISC_DEFAULT_PORT 7371         /* federation, without SRV */
#define FDISC_KEY_LEN 32                /* X25519 public key */
#define FDISC_KEY_B64_LEN 44            /* its padded base64 */
#define FDISC_KEY_TEXT_MAX 64           /* "v=tern1 k=..." and a NUL */
#define FDISC_MAX_KEYS 8                /* keys kept per domain */
#define FDISC_MAX_RELAYS 8              /* relays kept per domain */
#define FDISC_DOMAIN_CAP 254            /* a domain and its NUL */
/* "v=tern1 k=... d=DOMAIN" and a NUL */
#define FDISC_RELAY_TEXT_MAX (FDISC_KEY_TEXT_MAX + 3 + FDISC_DOMAIN_CAP)
#define FDISC_TTL_MIN_S 30
#define FDISC_TTL_MAX_S 86400
#define FDISC_NEG_TTL_S 60
#define FDISC_FAIL_TTL_S 10
#define FDISC_STALE_MAX_S 86400
#define FDISC_MAX_DOMAINS 4096

/* Flags of an answer. */
#define FDISC_FROM_SRV 0x1u  /* the targets come from SRV records */
#define FDISC_FALLBACK 0x2u  /* from the domain's A/AAAA, default port */
#define FDISC_STALE 0x4u     /* DNS is failing; an expired answer */

struct fdisc;

struct fdisc_config {
	uint16_t default_port;  /* 0: FDISC_DEFAULT_PORT */
	uint32_t ttl_min_s;     /* 0: FDISC_TTL_MIN_S */
	uint32_t ttl_max_s;     /* 0: FDISC_TTL_MAX_S */
	uint32_t neg_ttl_s;     /* 0: FDISC_NEG_TTL_S */
	uint32_t fail_ttl_s;    /* 0: FDISC_FAIL_TTL_S */
	uint32_t stale_max_s;   /* 0: FDISC_STALE_MAX_S */
	uint32_t max_domains;   /* 0: FDISC_MAX_DOMAINS */
	/* The clock in ms (monotonic); NULL: uv_now(loop). Tests set it to
	 * move time without waiting. */
	uint64_t (*now_ms)(void *arg);
	void *now_arg;          /* its argument */
};

/*
 * fdisc_lookup_cb: targets (n, borrowed, valid only during the call) in
 * the order to try them; host is the SRV target (or the domain itself
 * with FDISC_FALLBACK); priority, weight and ttl are as DNS gave them.
 * flags: FDISC_FROM_SRV or FDISC_FALLBACK, maybe FDISC_STALE. detail: an
 * operator text, never NULL.
 */
typedef void (*fdisc_lookup_cb)(void *arg, int err,
    const struct dns_target *t, size_t n, unsigned flags,
    const char *detail);

/* fdisc_keys_cb: the domain's published keys (n, borrowed), flags 0 or
 * FDISC_STALE. */
typedef void (*fdisc_keys_cb)(void *arg, int err,
    const uint8_t (*keys)[FDISC_KEY_LEN], size_t n, unsigned flags,
    const char *detail);

/* One authorized backup relay of a domain (TXT _tern-relay). */
struct fdisc_relay {
	uint8_t key[FDISC_KEY_LEN];        /* the relay node's static key */
	char domain[FDISC_DOMAIN_CAP];     /* its own domain (lowercase, no
	                                      final dot) */
};

/* fdisc_relays_cb: the domain's authorized relays (n, borrowed), flags 0
 * or FDISC_STALE. */
typedef void (*fdisc_relays_cb)(void *arg, int err,
    const struct fdisc_relay *relays, size_t n, unsigned flags,
    const char *detail);

typedef void (*fdisc_close_cb)(void *arg);

/*
 * fdisc_new: a discovery cache on loop asking dns (borrowed: it must
 * outlive the fdisc; close the fdisc first, see fdisc_close). cfg may be
 * NULL. TERN_EINVAL, TERN_ENOMEM, TERN_EIO.
 */
int fdisc_new(uv_loop_t *loop, struct dns *dns,
    const struct fdisc_config *cfg, struct fdisc **out) TERN_WUR;

/*
 * fdisc_lookup: the federation targets of domain (a final dot allowed;
 * case does not matter). Errors the callback sees: TERN_ENOTFOUND (no
 * SRV, no address), TERN_ENOSERVICE (the domain does not federate),
 * TERN_ETIMEOUT / TERN_EUNREACH (DNS failing, nothing stale to serve),
 * TERN_ENOMEM, TERN_ECANCELED. Returns TERN_EINVAL for a malformed name,
 * TERN_ESTATE after fdisc_close, TERN_ENOMEM.
 */
int fdisc_lookup(struct fdisc *d, const char *domain, fdisc_lookup_cb cb,
    void *arg) TERN_WUR;

/* fdisc_keys: the keys domain publishes; errors as fdisc_lookup, without
 * TERN_ENOSERVICE. */
int fdisc_keys(struct fdisc *d, const char *domain, fdisc_keys_cb cb,
    void *arg) TERN_WUR;

/* fdisc_relays: the backup relays domain authorizes (TXT _tern-relay);
 * errors as fdisc_keys (TERN_ENOTFOUND: none published). */
int fdisc_relays(struct fdisc *d, const char *domain, fdisc_relays_cb cb,
    void *arg) TERN_WUR;

/*
 * fdisc_close: every lookup not yet answered gets TERN_ECANCELED before
 * this returns; cb (may be NULL) runs, never synchronously, once the
 * memory is released, which waits for the DNS queries still out: close
 * the dns (dns_close cancels them) or let them finish. Then d is gone.
 */
void fdisc_close(struct fdisc *d, fdisc_close_cb cb, void *arg);

/* fdisc_queries: DNS queries started so far (SRV, A/AAAA and TXT each
 * count one), for metrics and tests. */
uint64_t fdisc_queries(const struct fdisc *d);

/*
 * fdisc_key_parse: one TXT record's text (len bytes, no NUL needed) as a
 * key record: tokens separated by spaces, the first exactly "v=tern1",
 * exactly one "k=" token whose value is FDISC_KEY_B64_LEN characters of
 * standard padded base64 decoding to FDISC_KEY_LEN bytes; any other token
 * must be NAME=VALUE and is ignored (room for later fields). 0 and the
 * key in key; TERN_EVERSION for another "v="; TERN_EFIELD otherwise.
 */
int fdisc_key_parse(const char *text, size_t len,
    uint8_t key[FDISC_KEY_LEN]) TERN_WUR;

/* fdisc_key_format: the record text for key, "v=tern1 k=BASE64", in out
 * (cap >= FDISC_KEY_TEXT_MAX, else TERN_ETOOBIG). */
int fdisc_key_format(const uint8_t key[FDISC_KEY_LEN], char *out,
    size_t cap) TERN_WUR;

/*
 * fdisc_relay_parse: one TXT record's text (len bytes) as a relay record:
 * the rules of fdisc_key_parse, and exactly one "d=" token naming a valid
 * domain (a final dot allowed; stored lowercase without it). 0 and the
 * relay in out; TERN_EVERSION for another "v="; TERN_EFIELD otherwise.
 */
int fdisc_relay_parse(const char *text, size_t len,
    struct fdisc_relay *out) TERN_WUR;

/* fdisc_relay_format: "v=tern1 k=BASE64 d=DOMAIN" in out (cap >=
 * FDISC_RELAY_TEXT_MAX, else TERN_ETOOBIG); TERN_EINVAL for a bad
 * domain. */
int fdisc_relay_format(const uint8_t key[FDISC_KEY_LEN], const char *domain,
    char *out, size_t cap) TERN_WUR;

#endif
