/*
 * keytrust.h: whether a peer node's static key is acceptable for the
 * domain it claims, from three sources (SPEC.md, "Federation trust"):
 *
 *   pinned      keys the operator wrote into the config for a domain. If a
 *               domain has any, they alone count; DNS is not consulted.
 *   published   the domain's TXT _tern-key records (fdisc_keys), fresh or
 *               stale.
 *   remembered  keys this node accepted for the domain before (trust on
 *               first use), kept by a storage the caller provides.
 *
 * The rules, in order (first match wins):
 *   1. Pinned keys exist: accept iff the key is one of them.
 *   2. DNS (fresh or stale) lists the key: accept, and remember it.
 *   3. DNS gives no usable answer now (failing, stale, or no key record
 *      published) and the key was remembered: accept.
 *   4. Otherwise refuse: TERN_EAUTH, or TERN_EUNREACH when DNS is failing
 *      and nothing is remembered (nothing to check against: try later).
 * Every refusal is logged with the domain, the offered key's fingerprint
 * (the first 8 bytes in hex) and what DNS and memory said.
 *
 * Single-threaded: one loop uses a ktrust.
 */
#ifndef TERN_KTRUST_H
#define TERN_KTRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "discover.h"
#include "log.h"
#include "tern_err.h"

#define KTRUST_KEY_LEN FDISC_KEY_LEN
#define KTRUST_MAX_KEYS 8        /* remembered or pinned keys per domain */
#define KTRUST_MAX_PINS 1024     /* pinned (domain, key) pairs in all */
#define KTRUST_FP_LEN 8          /* key bytes shown in a fingerprint */
#define KTRUST_WHY_MAX 512       /* a decision's text, with its NUL */

/*
 * The storage for remembered keys; the node backs it with its database.
 * Both return 0 or a TERN_E* code; domain is lowercase, no final dot.
 * load writes at most cap keys of domain to keys and their count to *n
 * (0 for a domain never seen). save adds key to domain's keys (a no-op if
 * present); when a domain has KTRUST_MAX_KEYS already the storage drops
 * its oldest.
 */
struct ktrust_store {
	int (*load)(void *ctx, const char *domain,
	    uint8_t (*keys)[KTRUST_KEY_LEN], size_t cap, size_t *n);
	int (*save)(void *ctx, const char *domain,
	    const uint8_t key[KTRUST_KEY_LEN]);
	void *ctx; /* theirs */
};

/* Log sink: one line per refusal (warn) or newly remembered key (info).
 * NULL: log_msg (common/log.h). */
typedef void (*ktrust_log_fn)(void *arg, enum log_level level,
    const char *line);

struct ktrust_config {
	struct ktrust_store store; /* required */
	ktrust_log_fn log;         /* may be NULL */
	void *log_arg;             /* its argument */
};

/* What fdisc_keys answered for the domain, as ktrust_check reads it. */
struct ktrust_dns {
	int err;                                /* 0 or the fdisc error */
	const uint8_t (*keys)[KTRUST_KEY_LEN];  /* err == 0: n keys */
	size_t n;                               /* keys */
	bool stale;                             /* FDISC_STALE was set */
};

struct ktrust;

/* ktrust_new: TERN_EINVAL without store.load and store.save; ENOMEM. */
int ktrust_new(const struct ktrust_config *cfg, struct ktrust **out)
    TERN_WUR;
void ktrust_free(struct ktrust *kt);

/*
 * ktrust_pin: adds a pinned key for domain (case and a final dot do not
 * matter). b64 is the key as in a TXT record's k= (44 characters of
 * padded base64). TERN_EINVAL for a bad domain, TERN_EKEY for a bad key,
 * TERN_ETOOBIG past KTRUST_MAX_KEYS for a domain or KTRUST_MAX_PINS.
 */
int ktrust_pin(struct ktrust *kt, const char *domain, const char *b64)
    TERN_WUR;

/*
 * ktrust_check: 0 if key may speak for domain, by the rules above;
 * TERN_EAUTH or TERN_EUNREACH if not; TERN_EINVAL for a bad domain; the
 * storage's error if it fails to load (fails closed). A failing save
 * after an accepted key is logged and does not refuse. why (whylen, may
 * be NULL) gets the decision as a sentence.
 */
int ktrust_check(struct ktrust *kt, const char *domain,
    const uint8_t key[KTRUST_KEY_LEN], const struct ktrust_dns *dns,
    char *why, size_t whylen) TERN_WUR;

/* ktrust_fingerprint: the first KTRUST_FP_LEN bytes of key in hex. */
void ktrust_fingerprint(const uint8_t key[KTRUST_KEY_LEN],
    char out[2 * KTRUST_FP_LEN + 1]);

/*
 * An in-memory struct ktrust_store, for tests and for nodes without a
 * database: forgets everything at exit. saves counts successful adds.
 */
struct ktrust_memstore;
int ktrust_memstore_new(struct ktrust_memstore **out) TERN_WUR;
void ktrust_memstore_free(struct ktrust_memstore *m);
struct ktrust_store ktrust_memstore_ops(struct ktrust_memstore *m);

#endif
