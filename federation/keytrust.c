/*
 * keytrust.c: the key trust decision for federation (see keytrust.h) and
 * an in-memory store of remembered keys.
 */
#include "keytrust.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define KTRUST_NAME_CAP (DNS_NAME_MAX + 1)

struct ktrust_pin {
	char domain[KTRUST_NAME_CAP];  /* lowercase, no final dot */
	uint8_t key[KTRUST_KEY_LEN];   /* the pinned key */
};

struct ktrust {
	struct ktrust_config cfg;      /* copied */
	struct ktrust_pin *pins;       /* npins entries */
	size_t npins;                  /* pinned pairs */
};

/* ktrust_norm: the same name form fdisc uses for its cache. */
static int
ktrust_norm(const char *in, char out[KTRUST_NAME_CAP])
{
	size_t len;

	if (!in)
		return TERN_EINVAL;
	len = strlen(in);
	if (len > 1 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return TERN_EINVAL;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (!isalnum(c) && c != '-' && c != '_' && c != '.')
			return TERN_EINVAL;
		if (c == '.' && (i == 0 || in[i - 1] == '.'))
			return TERN_EINVAL;
		out[i] = (char)tolower(c);
	}
	out[len] = '\0';
	return 0;
}

void
ktrust_fingerprint(const uint8_t key[KTRUST_KEY_LEN],
    char out[2 * KTRUST_FP_LEN + 1])
{
	sodium_bin2hex(out, 2 * KTRUST_FP_LEN + 1, key, KTRUST_FP_LEN);
}

static bool
ktrust_has(const uint8_t (*keys)[KTRUST_KEY_LEN], size_t n,
    const uint8_t key[KTRUST_KEY_LEN])
{
	for (size_t i = 0; i < n; i++)
		if (memcmp(keys[i], key, KTRUST_KEY_LEN) == 0)
			return true;
	return false;
}

/* ktrust_list: "fp1, fp2" of up to 4 keys, for messages. */
static void
ktrust_list(const uint8_t (*keys)[KTRUST_KEY_LEN], size_t n, char *out,
    size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && i < 4 && len + 20 < cap; i++) {
		char fp[2 * KTRUST_FP_LEN + 1];

		ktrust_fingerprint(keys[i], fp);
		len += (size_t)snprintf(out + len, cap - len, "%s%s",
		    i ? ", " : "", fp);
	}
	if (n > 4 && len + 5 < cap)
		snprintf(out + len, cap - len, ", ...");
}

static void LOG_PRINTF(3, 4)
ktrust_log(struct ktrust *kt, enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (kt->cfg.log)
		kt->cfg.log(kt->cfg.log_arg, level, line);
	else
		log_msg(level, "%s", line);
}

int
ktrust_new(const struct ktrust_config *cfg, struct ktrust **out)
{
	struct ktrust *kt;

	*out = NULL;
	if (!cfg || !cfg->store.load || !cfg->store.save)
		return TERN_EINVAL;
	kt = calloc(1, sizeof(*kt));
	if (!kt)
		return TERN_ENOMEM;
	kt->cfg = *cfg;
	*out = kt;
	return 0;
}

void
ktrust_free(struct ktrust *kt)
{
	if (!kt)
		return;
	free(kt->pins);
	free(kt);
}

int
ktrust_pin(struct ktrust *kt, const char *domain, const char *b64)
{
	char name[KTRUST_NAME_CAP], rec[FDISC_KEY_TEXT_MAX + 8];
	uint8_t key[KTRUST_KEY_LEN];
	struct ktrust_pin *p;
	size_t same = 0;

	if (ktrust_norm(domain, name) != 0)
		return TERN_EINVAL;
	/* One parser for the key text: the TXT record's. */
	if (!b64 || strlen(b64) != FDISC_KEY_B64_LEN)
		return TERN_EKEY;
	snprintf(rec, sizeof(rec), "%s k=%s", FDISC_KEY_VERSION, b64);
	if (fdisc_key_parse(rec, strlen(rec), key) != 0)
		return TERN_EKEY;
	for (size_t i = 0; i < kt->npins; i++) {
		if (strcmp(kt->pins[i].domain, name) != 0)
			continue;
		if (memcmp(kt->pins[i].key, key, sizeof(key)) == 0)
			return 0;
		same++;
	}
	if (same >= KTRUST_MAX_KEYS || kt->npins >= KTRUST_MAX_PINS)
		return TERN_ETOOBIG;
	p = realloc(kt->pins, (kt->npins + 1) * sizeof(*p));
	if (!p)
		return TERN_ENOMEM;
	kt->pins = p;
	memcpy(p[kt->npins].domain, name, sizeof(name));
	memcpy(p[kt->npins].key, key, sizeof(key));
	kt->npins++;
	return 0;
}

/* ktrust_dns_text: what DNS said, for the log line. */
static void
ktrust_dns_text(const struct ktrust_dns *dns, char *out, size_t cap)
{
	char list[128];

	if (dns->err == 0) {
		ktrust_list(dns->keys, dns->n, list, sizeof(list));
		snprintf(out, cap, "DNS %slists %zu key(s): %s",
		    dns->stale ? "is failing; its last answer " : "", dns->n,
		    list);
	} else if (dns->err == TERN_ENOTFOUND) {
		snprintf(out, cap, "DNS publishes no key record");
	} else {
		snprintf(out, cap, "DNS is failing (%s)",
		    tern_errname(dns->err));
	}
}

int
ktrust_check(struct ktrust *kt, const char *domain,
    const uint8_t key[KTRUST_KEY_LEN], const struct ktrust_dns *dns,
    char *why, size_t whylen)
{
	static const struct ktrust_dns none = { .err = TERN_EUNREACH };
	char name[KTRUST_NAME_CAP], fp[2 * KTRUST_FP_LEN + 1];
	char said[256], mem[128], buf[KTRUST_WHY_MAX];
	uint8_t pinned[KTRUST_MAX_KEYS][KTRUST_KEY_LEN];
	uint8_t known[KTRUST_MAX_KEYS][KTRUST_KEY_LEN];
	size_t npinned = 0, nknown = 0;
	bool listed, remembered;
	int r, err;

	if (!why) {
		why = buf;
		whylen = sizeof(buf);
	}
	if (whylen)
		why[0] = '\0';
	if (!kt || !key || ktrust_norm(domain, name) != 0)
		return TERN_EINVAL;
	if (!dns)
		dns = &none;
	ktrust_fingerprint(key, fp);

	/* 1. Pinned keys alone count. */
	for (size_t i = 0; i < kt->npins; i++)
		if (strcmp(kt->pins[i].domain, name) == 0)
			memcpy(pinned[npinned++], kt->pins[i].key,
			    KTRUST_KEY_LEN);
	if (npinned > 0) {
		if (ktrust_has((const uint8_t (*)[KTRUST_KEY_LEN])pinned,
		    npinned, key)) {
			snprintf(why, whylen, "key %s for %s is pinned", fp,
			    name);
			return 0;
		}
		ktrust_list((const uint8_t (*)[KTRUST_KEY_LEN])pinned,
		    npinned, said, sizeof(said));
		snprintf(why, whylen, "refused key %s for %s: not among its "
		    "%zu pinned key(s) (%s); DNS not consulted", fp, name,
		    npinned, said);
		ktrust_log(kt, LOG_LEVEL_WARN, "federation: %s", why);
		return TERN_EAUTH;
	}

	r = kt->cfg.store.load(kt->cfg.store.ctx, name, known,
	    KTRUST_MAX_KEYS, &nknown);
	if (r != 0) {
		snprintf(why, whylen, "refused key %s for %s: the remembered "
		    "keys cannot be read (%s)", fp, name, tern_errname(r));
		ktrust_log(kt, LOG_LEVEL_ERROR, "federation: %s", why);
		return r;
	}
	if (nknown > KTRUST_MAX_KEYS)
		nknown = KTRUST_MAX_KEYS;
	remembered = ktrust_has((const uint8_t (*)[KTRUST_KEY_LEN])known,
	    nknown, key);
	listed = dns->err == 0 && ktrust_has(dns->keys, dns->n, key);

	/* 2. DNS lists it. */
	if (listed) {
		snprintf(why, whylen, "key %s for %s is published in DNS%s", fp,
		    name, dns->stale ? " (stale answer)" : "");
		if (!remembered) {
			r = kt->cfg.store.save(kt->cfg.store.ctx, name, key);
			if (r != 0)
				ktrust_log(kt, LOG_LEVEL_ERROR, "federation: "
				    "cannot remember key %s for %s (%s)", fp,
				    name, tern_errname(r));
			else
				ktrust_log(kt, LOG_LEVEL_INFO, "federation: "
				    "remembered key %s for %s (published in "
				    "DNS)", fp, name);
		}
		return 0;
	}

	/* 3. DNS cannot say now, and we have seen this key before. A fresh
	 * answer that lists other keys is the one case that overrides
	 * memory: the domain rotated its key away. */
	if (remembered && (dns->err != 0 || dns->stale)) {
		snprintf(why, whylen, "key %s for %s was seen before and DNS "
		    "does not answer with keys now", fp, name);
		return 0;
	}

	/* 4. Refuse. */
	ktrust_dns_text(dns, said, sizeof(said));
	ktrust_list((const uint8_t (*)[KTRUST_KEY_LEN])known, nknown, mem,
	    sizeof(mem));
	err = TERN_EAUTH;
	if (dns->err != 0 && dns->err != TERN_ENOTFOUND && nknown == 0)
		err = TERN_EUNREACH;
	snprintf(why, whylen, "refused key %s for %s: %s; remembered: %s",
	    fp, name, said, nknown ? mem : "none");
	ktrust_log(kt, LOG_LEVEL_WARN, "federation: %s", why);
	return err;
}

/* --- in-memory store ----------------------------------------------------- */

struct ktrust_mem_entry {
	char domain[KTRUST_NAME_CAP];              /* whose */
	uint8_t keys[KTRUST_MAX_KEYS][KTRUST_KEY_LEN]; /* oldest first */
	size_t n;                                  /* keys */
	struct ktrust_mem_entry *next;             /* list */
};

struct ktrust_memstore {
	struct ktrust_mem_entry *head; /* all domains */
};

static struct ktrust_mem_entry *
ktrust_mem_find(struct ktrust_memstore *m, const char *domain)
{
	struct ktrust_mem_entry *e = m->head;

	while (e && strcmp(e->domain, domain) != 0)
		e = e->next;
	return e;
}

static int
ktrust_mem_load(void *ctx, const char *domain,
    uint8_t (*keys)[KTRUST_KEY_LEN], size_t cap, size_t *n)
{
	struct ktrust_mem_entry *e = ktrust_mem_find(ctx, domain);

	*n = 0;
	for (size_t i = 0; e && i < e->n && i < cap; i++)
		memcpy(keys[(*n)++], e->keys[i], KTRUST_KEY_LEN);
	return 0;
}

static int
ktrust_mem_save(void *ctx, const char *domain,
    const uint8_t key[KTRUST_KEY_LEN])
{
	struct ktrust_memstore *m = ctx;
	struct ktrust_mem_entry *e = ktrust_mem_find(m, domain);

	if (!e) {
		if (strlen(domain) >= KTRUST_NAME_CAP)
			return TERN_EINVAL;
		e = calloc(1, sizeof(*e));
		if (!e)
			return TERN_ENOMEM;
		memcpy(e->domain, domain, strlen(domain) + 1);
		e->next = m->head;
		m->head = e;
	}
	if (ktrust_has((const uint8_t (*)[KTRUST_KEY_LEN])e->keys, e->n, key))
		return 0;
	if (e->n == KTRUST_MAX_KEYS) {
		memmove(e->keys[0], e->keys[1],
		    (KTRUST_MAX_KEYS - 1) * KTRUST_KEY_LEN);
		e->n--;
	}
	memcpy(e->keys[e->n++], key, KTRUST_KEY_LEN);
	return 0;
}

int
ktrust_memstore_new(struct ktrust_memstore **out)
{
	*out = calloc(1, sizeof(**out));
	return *out ? 0 : TERN_ENOMEM;
}

void
ktrust_memstore_free(struct ktrust_memstore *m)
{
	if (!m)
		return;
	while (m->head) {
		struct ktrust_mem_entry *e = m->head;

		m->head = e->next;
		free(e);
	}
	free(m);
}

struct ktrust_store
ktrust_memstore_ops(struct ktrust_memstore *m)
{
	struct ktrust_store s = {
		.load = ktrust_mem_load,
		.save = ktrust_mem_save,
		.ctx = m,
	};

	return s;
}
