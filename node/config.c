/*
 * config.c: ternd's configuration file (config.h).
 *
 * One table (cfg_opts) says everything about an option: its section, its
 * type, where it goes, its default, its range and its help text. Defaults
 * are applied by parsing the default text with the same code that parses
 * the file, and the default file is written from the same table, so the
 * three can never disagree.
 *
 * libinih does the INI syntax. It does not tell a handler its line number
 * (that is a compile-time option of the library) and it keeps parsing
 * after an error, so the file is fed to it through our own line reader
 * (ini_parse_stream): the reader counts lines, so the handler knows where
 * it is, and it also refuses what libinih would accept silently (indented
 * continuation lines, unknown section headers, over-long lines that
 * libinih would split in two).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#define CFG_S 1000ull
#define CFG_M (60 * CFG_S)
#define CFG_H (60 * CFG_M)
#define CFG_D (24 * CFG_H)
#define CFG_KIB 1024ull
#define CFG_MIB (1024 * CFG_KIB)
#define CFG_GIB (1024 * CFG_MIB)
#define CFG_TIB (1024 * CFG_GIB)
#define CFG_DEFAULT_MAX 16384   /* bytes of the default file */
#define CFG_WRAP 76             /* columns of its comments */

enum cfg_type {
	CT_DOMAIN,          /* a DNS name (ident_domain_check) */
	CT_ADDR,            /* host char[CONFIG_HOST_MAX] and port uint16_t */
	CT_ADDR_LOOPBACK,   /* the same, on a loopback address */
	CT_PATH,            /* char[CONFIG_PATH_MAX] */
	CT_DURABILITY,      /* enum store_durability */
	CT_LOGLEVEL,        /* enum log_level */
	CT_BOOL,            /* bool */
	CT_DURATION,        /* milliseconds, uint32_t or uint64_t */
	CT_SIZE,            /* bytes, uint32_t or uint64_t */
	CT_UINT,            /* a count, uint32_t or uint64_t */
	CT_TEXT             /* char[CONFIG_TEXT_MAX], checked by its user */
};

struct cfg_opt {
	const char *section; /* without brackets */
	const char *key;     /* as written in the file */
	enum cfg_type type;  /* how the value is read */
	size_t off;          /* of the field in struct node_config */
	size_t width;        /* of the field, in bytes */
	size_t port_off;     /* CT_ADDR*: of the port field (off: the host) */
	const char *def;     /* default, as written in the file; NULL: none */
	uint64_t min;        /* numbers: smallest value (ms, bytes, count) */
	uint64_t max;        /* numbers: largest value */
	const char *help;    /* what the option does, for the default file */
};

#define CFG_FIELD(f) offsetof(struct node_config, f), \
	sizeof(((struct node_config *)0)->f), 0
#define CFG_ADDR(h, p) offsetof(struct node_config, h), \
	sizeof(((struct node_config *)0)->h), offsetof(struct node_config, p)

static const struct cfg_opt cfg_opts[] = {
	{"node", "domain", CT_DOMAIN, CFG_FIELD(domain), NULL, 0, 0,
	    "The DNS domain this node serves: its users' addresses are "
	    "name@domain. Lowercase letters, digits, '-' and dots. Required."},
	{"node", "listen", CT_ADDR, CFG_ADDR(listen_host, listen_port),
	    "0.0.0.0:7370", 0, 0,
	    "Where clients connect: a numeric IPv4 address and port, or "
	    "[IPv6]:port. 0.0.0.0 means every IPv4 interface, [::] every "
	    "IPv6 one."},
	{"node", "key_file", CT_PATH, CFG_FIELD(key_file), "node.key", 0, 0,
	    "The node's X25519 static key for the encrypted channel (Noise), "
	    "64 hex characters. It must be readable by the node's user only "
	    "(mode 0600); whoever has it can impersonate the node."},
	{"node", "database", CT_PATH, CFG_FIELD(database), "ternd.db", 0, 0,
	    "The SQLite database holding accounts, devices and the envelopes "
	    "queued for offline devices."},
	{"node", "durability", CT_DURABILITY, CFG_FIELD(durability), "full",
	    0, 0,
	    "full: every commit reaches the disk (fsync) before a sender is "
	    "told SENT, so a power cut loses nothing that was acknowledged. "
	    "normal: faster; a crash of ternd loses nothing, a power cut may "
	    "lose the last commits."},
	{"node", "log_level", CT_LOGLEVEL, CFG_FIELD(log_level), "info", 0, 0,
	    "How much ternd logs on stderr: error, warn, info or debug. "
	    "Message contents and keys are never logged."},
	{"node", "open_registration", CT_BOOL, CFG_FIELD(open_registration),
	    "false", 0, 0,
	    "Whether anyone who can reach the node may create an account. "
	    "When false, a new account needs an invite from the operator."},
	{"node", "metrics_listen", CT_ADDR_LOOPBACK,
	    CFG_ADDR(metrics_host, metrics_port), "127.0.0.1:7380", 0, 0,
	    "Where Prometheus metrics (/metrics) and the admin API used by "
	    "the ternd command are served, over plain HTTP. Only a loopback "
	    "address is accepted (127.0.0.1 or [::1]): the admin API must not "
	    "be reachable from the network."},
	{"node", "admin_token_file", CT_PATH, CFG_FIELD(admin_token_file),
	    "admin.token", 0, 0,
	    "The bearer token the admin API requires, 64 hex characters, "
	    "mode 0600. /metrics needs no token."},

	{"limits", "queue_ttl", CT_DURATION, CFG_FIELD(queue_ttl_ms), "30d",
	    CFG_S, 365 * CFG_D,
	    "How long an envelope waits for an offline device before it is "
	    "deleted undelivered."},
	{"limits", "expire_interval", CT_DURATION,
	    CFG_FIELD(expire_interval_ms),
	    "60s", CFG_S, CFG_D,
	    "How often the node looks for expired envelopes and deletes "
	    "them."},
	{"limits", "quota_count", CT_UINT, CFG_FIELD(quota_count), "10000",
	    1, 10000000,
	    "Envelopes queued for one user (all devices together) before "
	    "further senders are refused with a quota error."},
	{"limits", "quota_bytes", CT_SIZE, CFG_FIELD(quota_bytes), "256MiB",
	    64 * CFG_KIB, CFG_TIB,
	    "Payload bytes queued for one user before further senders are "
	    "refused with a quota error."},
	{"limits", "max_unauth", CT_UINT, CFG_FIELD(max_unauth), "1024",
	    1, 1000000,
	    "Connections still in their handshake at once; further new "
	    "connections are closed until some finish. Bounds what "
	    "unauthenticated peers can cost."},
	{"limits", "handshake_timeout", CT_DURATION,
	    CFG_FIELD(handshake_timeout_ms), "10s", 100, 5 * CFG_M,
	    "Time a new connection has to complete the encrypted handshake "
	    "before it is closed."},
	{"limits", "idle_timeout", CT_DURATION, CFG_FIELD(idle_timeout_ms),
	    "90s", CFG_S, CFG_D,
	    "A connection from which nothing (not even a ping) arrives for "
	    "this long is closed."},
	{"limits", "send_rate", CT_UINT, CFG_FIELD(send_rate), "100",
	    1, 1000000,
	    "Envelopes per second one user (all devices together) may send, "
	    "on average; more are refused with a rate-limit error."},
	{"limits", "send_burst", CT_UINT, CFG_FIELD(send_burst), "200",
	    1, 1000000,
	    "How many envelopes a user may send in a burst before send_rate "
	    "applies."},

	{"presence", "online_threshold", CT_DURATION,
	    CFG_FIELD(online_threshold_ms), "10s", 0, CFG_H,
	    "How long a user whose last device disconnected still shows as "
	    "online, so that a quick reconnect does not flicker to their "
	    "contacts."},

	{"federation", "listen", CT_TEXT, CFG_FIELD(fed_listen), "none", 0, 0,
	    "Where other domains' nodes connect (numeric HOST:PORT; the "
	    "standard port is 7371), or none: federation off, and envelopes "
	    "for other domains are refused as unreachable."},
	{"federation", "peers", CT_TEXT, CFG_FIELD(fed_peers), "none", 0, 0,
	    "Static routes, checked before DNS: DOMAIN=HOST:PORT, or "
	    "DOMAIN=HOST:PORT/KEY to pin that node's key (base64, as in its "
	    "_tern-key TXT record), separated by commas; or none."},
	{"federation", "dns_servers", CT_TEXT, CFG_FIELD(fed_dns), "system",
	    0, 0,
	    "The DNS servers asked for _tern-fed._tcp and _tern-key records "
	    "(IP or IP:PORT, comma-separated), or system for resolv.conf."},
	{"federation", "relay_for", CT_TEXT, CFG_FIELD(fed_relay_for), "none",
	    0, 0,
	    "Domains this node is a backup relay for (comma-separated), or "
	    "none. While such a domain's own node is unreachable, this node "
	    "takes signed envelopes for it from other domains, keeps them "
	    "and hands them over when that node is back. The domain must "
	    "list this node's key in its TXT _tern-relay record."},
	{"federation", "relays", CT_TEXT, CFG_FIELD(fed_relays), "none", 0, 0,
	    "The backup relays authorized for our domain, as DOMAIN/KEY "
	    "(the relay node's domain and its key in base64), "
	    "comma-separated; or none: those our TXT _tern-relay records "
	    "list. When set, only these count and DNS is not asked."},
	{"federation", "retention", CT_DURATION, CFG_FIELD(fed_retention_ms),
	    "7d", CFG_S, 365 * CFG_D,
	    "How long an envelope for another domain waits for that domain's "
	    "node before its sender is told it expired undelivered."},
	{"federation", "inbound_rate", CT_UINT, CFG_FIELD(fed_inbound_rate),
	    "50000", 1, 10000000,
	    "Envelopes per second one other domain's node may bring over "
	    "its link, on average; beyond it the envelope is refused as busy "
	    "and that node sends it again after a pause. Keeps one domain "
	    "from taking all of this node."},
	{"federation", "inbound_burst", CT_UINT, CFG_FIELD(fed_inbound_burst),
	    "100000", 1, 100000000,
	    "How many envelopes one other domain's node may bring at once "
	    "before inbound_rate applies."},
};

#define CFG_NOPTS (sizeof(cfg_opts) / sizeof(cfg_opts[0]))

static const char *const cfg_sections[] = {"node", "limits", "presence",
    "federation"};

/* State of one config_load, shared by the line reader and the handler. */
struct cfg_parse {
	const char *path;         /* the file, for messages */
	const char *text;         /* its bytes */
	size_t len;               /* how many */
	size_t pos;               /* where the next line starts */
	int lineno;               /* the line handed to libinih last */
	struct node_config cfg;   /* being filled */
	int seen[CFG_NOPTS];      /* line each option was set on; 0: not */
	char err[CONFIG_ERR_MAX]; /* the first error */
	int failed;               /* an error is in err */
};

/* --- values -------------------------------------------------------------- */

/* cfg_digits: the leading decimal digits of s into *v, *end after them;
 * TERN_EFIELD for no digit or a value over UINT64_MAX. */
static int
cfg_digits(const char *s, uint64_t *v, const char **end)
{
	uint64_t x = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return TERN_EFIELD;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (x > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return TERN_EFIELD;
		x = x * 10 + (uint64_t)(*p - '0');
	}
	*v = x;
	*end = p;
	return 0;
}

struct cfg_unit {
	const char *name; /* suffix as written */
	uint64_t mult;    /* its value in the base unit */
};

/* cfg_scaled: digits followed by one of units (the suffix is required
 * unless a unit has the empty name). */
static int
cfg_scaled(const char *s, const struct cfg_unit *units, size_t n,
    uint64_t *out)
{
	const char *end;
	uint64_t v;
	size_t i;

	if (s == NULL || cfg_digits(s, &v, &end) != 0)
		return TERN_EFIELD;
	for (i = 0; i < n; i++) {
		if (strcmp(end, units[i].name) != 0)
			continue;
		if (v > UINT64_MAX / units[i].mult)
			return TERN_EFIELD;
		*out = v * units[i].mult;
		return 0;
	}
	return TERN_EFIELD;
}

static const struct cfg_unit cfg_dur_units[] = {
	{"ms", 1}, {"s", CFG_S}, {"m", CFG_M}, {"h", CFG_H}, {"d", CFG_D},
};

static const struct cfg_unit cfg_size_units[] = {
	{"", 1}, {"KiB", CFG_KIB}, {"MiB", CFG_MIB}, {"GiB", CFG_GIB},
	{"TiB", CFG_TIB},
};

int
config_duration_parse(const char *s, uint64_t *ms)
{
	return cfg_scaled(s, cfg_dur_units,
	    sizeof(cfg_dur_units) / sizeof(cfg_dur_units[0]), ms);
}

int
config_size_parse(const char *s, uint64_t *bytes)
{
	return cfg_scaled(s, cfg_size_units,
	    sizeof(cfg_size_units) / sizeof(cfg_size_units[0]), bytes);
}

int
config_bool_parse(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	size_t i;

	if (s == NULL)
		return TERN_EFIELD;
	for (i = 0; i < 3; i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return TERN_EFIELD;
}

int
config_addr_parse(const char *s, struct config_addr *out)
{
	struct config_addr a;
	unsigned char bin[16];
	const char *host, *port, *e, *end;
	size_t hlen;
	uint64_t p;
	int af;

	if (s == NULL)
		return TERN_EFIELD;
	if (s[0] == '[') {
		if ((e = strchr(s, ']')) == NULL || e[1] != ':')
			return TERN_EFIELD;
		host = s + 1;
		hlen = (size_t)(e - host);
		port = e + 2;
		af = AF_INET6;
	} else {
		/* A bare IPv6 address would make the port ambiguous. */
		if ((e = strchr(s, ':')) == NULL || strchr(e + 1, ':') != NULL)
			return TERN_EFIELD;
		host = s;
		hlen = (size_t)(e - s);
		port = e + 1;
		af = AF_INET;
	}
	if (hlen == 0 || hlen >= sizeof(a.host))
		return TERN_EFIELD;
	memset(&a, 0, sizeof(a));
	memcpy(a.host, host, hlen);
	if (inet_pton(af, a.host, bin) != 1)
		return TERN_EFIELD;
	if (cfg_digits(port, &p, &end) != 0 || *end != '\0' ||
	    end - port > 5 || p > 65535)
		return TERN_EFIELD;
	a.port = (uint16_t)p;
	*out = a;
	return 0;
}

int
config_addr_format(const struct config_addr *a, char *out, size_t cap)
{
	int r;

	if (strchr(a->host, ':') != NULL)
		r = snprintf(out, cap, "[%s]:%u", a->host, (unsigned)a->port);
	else
		r = snprintf(out, cap, "%s:%u", a->host, (unsigned)a->port);
	if (r < 0 || (size_t)r >= cap)
		return TERN_ETOOBIG;
	return 0;
}

bool
config_addr_is_loopback(const struct config_addr *a)
{
	unsigned char bin[16];

	if (inet_pton(AF_INET, a->host, bin) == 1)
		return bin[0] == 127;
	if (inet_pton(AF_INET6, a->host, bin) == 1)
		return memcmp(bin, &in6addr_loopback, 16) == 0;
	return false;
}

/* cfg_fmt_num: a number as the file writes it: the largest unit that
 * divides it exactly ("30d", "256MiB"), or plain digits. */
static void
cfg_fmt_num(enum cfg_type t, uint64_t v, char *out, size_t cap)
{
	const struct cfg_unit *u;
	size_t i;

	if (t == CT_DURATION) {
		u = cfg_dur_units;
		i = sizeof(cfg_dur_units) / sizeof(cfg_dur_units[0]);
	} else if (t == CT_SIZE) {
		u = cfg_size_units;
		i = sizeof(cfg_size_units) / sizeof(cfg_size_units[0]);
	} else {
		snprintf(out, cap, "%llu", (unsigned long long)v);
		return;
	}
	if (v == 0) {
		snprintf(out, cap, "0%s", t == CT_DURATION ? "s" : "");
		return;
	}
	/* The smallest unit has mult 1, so the loop always prints. */
	while (i-- > 0) {
		if (v % u[i].mult == 0) {
			snprintf(out, cap, "%llu%s",
			    (unsigned long long)(v / u[i].mult), u[i].name);
			return;
		}
	}
}

static void
cfg_store_num(const struct cfg_opt *o, struct node_config *cfg, uint64_t v)
{
	unsigned char *f = (unsigned char *)cfg + o->off;

	if (o->width == sizeof(uint32_t)) {
		uint32_t x = (uint32_t)v;
		memcpy(f, &x, sizeof(x));
	} else {
		memcpy(f, &v, sizeof(v));
	}
}

/*
 * cfg_set: parses value for option o into cfg. On failure returns
 * TERN_EFIELD with a reason in why.
 */
static int
cfg_set(const struct cfg_opt *o, struct node_config *cfg, const char *value,
    char *why, size_t whylen)
{
	void *f = (unsigned char *)cfg + o->off;
	char lo[32], hi[32];
	struct config_addr a;
	enum log_level lvl;
	const char *end;
	uint64_t v = 0;
	size_t len = strlen(value);
	bool b;
	int r;

	if (len == 0) {
		snprintf(why, whylen, "no value given");
		return TERN_EFIELD;
	}
	switch (o->type) {
	case CT_DOMAIN:
		if (len > IDENT_DOMAIN_MAX ||
		    ident_domain_check(value, len) != 0) {
			snprintf(why, whylen, "'%s' is not a domain name "
			    "(lowercase letters, digits, '-' and dots, at most "
			    "253 bytes)", value);
			return TERN_EFIELD;
		}
		memcpy(f, value, len + 1);
		return 0;
	case CT_ADDR:
	case CT_ADDR_LOOPBACK:
		if (config_addr_parse(value, &a) != 0) {
			snprintf(why, whylen, "'%s' is not a numeric address "
			    "and port such as 127.0.0.1:7370 or [::1]:7370",
			    value);
			return TERN_EFIELD;
		}
		if (o->type == CT_ADDR_LOOPBACK &&
		    !config_addr_is_loopback(&a)) {
			snprintf(why, whylen, "'%s' is not a loopback "
			    "address; metrics and the admin API are served on "
			    "127.0.0.1 or [::1] only", value);
			return TERN_EFIELD;
		}
		memcpy(f, a.host, sizeof(a.host));
		memcpy((unsigned char *)cfg + o->port_off, &a.port,
		    sizeof(a.port));
		return 0;
	case CT_TEXT:
		if (len >= CONFIG_TEXT_MAX) {
			snprintf(why, whylen, "longer than %d bytes",
			    CONFIG_TEXT_MAX - 1);
			return TERN_EFIELD;
		}
		memcpy(f, value, len + 1);
		return 0;
	case CT_PATH:
		if (len >= CONFIG_PATH_MAX) {
			snprintf(why, whylen, "path longer than %d bytes",
			    CONFIG_PATH_MAX - 1);
			return TERN_EFIELD;
		}
		memcpy(f, value, len + 1);
		return 0;
	case CT_DURABILITY:
		if (strcmp(value, "full") == 0)
			*(enum store_durability *)f = STORE_DURABILITY_FULL;
		else if (strcmp(value, "normal") == 0)
			*(enum store_durability *)f = STORE_DURABILITY_NORMAL;
		else {
			snprintf(why, whylen, "'%s' is neither full nor "
			    "normal", value);
			return TERN_EFIELD;
		}
		return 0;
	case CT_LOGLEVEL:
		if (log_level_parse(value, &lvl) != 0) {
			snprintf(why, whylen, "'%s' is not one of error, "
			    "warn, info, debug", value);
			return TERN_EFIELD;
		}
		*(enum log_level *)f = lvl;
		return 0;
	case CT_BOOL:
		if (config_bool_parse(value, &b) != 0) {
			snprintf(why, whylen, "'%s' is not a boolean "
			    "(true/false, yes/no, on/off)", value);
			return TERN_EFIELD;
		}
		*(bool *)f = b;
		return 0;
	case CT_DURATION:
		if ((r = config_duration_parse(value, &v)) != 0) {
			snprintf(why, whylen, "'%s' is not a duration (a "
			    "number and a unit: 500ms, 10s, 5m, 2h, 30d)",
			    value);
			return r;
		}
		break;
	case CT_SIZE:
		if ((r = config_size_parse(value, &v)) != 0) {
			snprintf(why, whylen, "'%s' is not a size (bytes, or "
			    "a number and KiB, MiB, GiB, TiB)", value);
			return r;
		}
		break;
	case CT_UINT:
		if (cfg_digits(value, &v, &end) != 0 || *end != '\0') {
			snprintf(why, whylen, "'%s' is not a whole number",
			    value);
			return TERN_EFIELD;
		}
		break;
	}
	if (v < o->min || v > o->max) {
		cfg_fmt_num(o->type, o->min, lo, sizeof(lo));
		cfg_fmt_num(o->type, o->max, hi, sizeof(hi));
		snprintf(why, whylen, "'%s' is out of range (%s to %s)", value,
		    lo, hi);
		return TERN_EFIELD;
	}
	cfg_store_num(o, cfg, v);
	return 0;
}

void
config_defaults(struct node_config *cfg)
{
	char why[CONFIG_ERR_MAX];
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->dir, sizeof(cfg->dir), ".");
	for (i = 0; i < CFG_NOPTS; i++) {
		if (cfg_opts[i].def == NULL)
			continue;
		/* The table's own defaults must parse; anything else is a bug
		 * in this file. */
		if (cfg_set(&cfg_opts[i], cfg, cfg_opts[i].def, why,
		    sizeof(why)) != 0)
			abort();
	}
}

/* --- the file -------------------------------------------------------- */

static void cfg_fail(struct cfg_parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* cfg_fail records the first error only: later ones are often echoes of
 * it (a key under an unknown section, say). */
static void
cfg_fail(struct cfg_parse *p, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->failed)
		return;
	p->failed = 1;
	if (line > 0)
		n = snprintf(p->err, sizeof(p->err), "%s:%d: ", p->path, line);
	else
		n = snprintf(p->err, sizeof(p->err), "%s: ", p->path);
	if (n < 0 || (size_t)n >= sizeof(p->err))
		return;
	va_start(ap, fmt);
	vsnprintf(p->err + n, sizeof(p->err) - (size_t)n, fmt, ap);
	va_end(ap);
}

static bool
cfg_section_known(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < sizeof(cfg_sections) / sizeof(cfg_sections[0]); i++)
		if (strlen(cfg_sections[i]) == n &&
		    memcmp(cfg_sections[i], s, n) == 0)
			return true;
	return false;
}

/*
 * cfg_line_check: what libinih would accept but we refuse, on one raw
 * line (no newline). 0 if the line may go on to libinih.
 */
static int
cfg_line_check(struct cfg_parse *p, const char *s, size_t n)
{
	const char *e, *rb;

	if (p->lineno == 1 && n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0) {
		s += 3; /* a UTF-8 byte order mark, which libinih skips */
		n -= 3;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || s[0] == '#' || s[0] == ';')
		return 0;
	e = s + n;
	if (s[0] == ' ' || s[0] == '\t') {
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		if (*s == '#' || *s == ';')
			return 0;
		/* libinih would append it to the previous key's value. */
		cfg_fail(p, p->lineno, "indented line; keys and [sections] "
		    "must start at the beginning of the line");
		return -1;
	}
	if (s[0] == '[') {
		rb = memchr(s, ']', n);
		if (rb == NULL) {
			cfg_fail(p, p->lineno, "section header without ']'");
			return -1;
		}
		if (!cfg_section_known(s + 1, (size_t)(rb - s - 1))) {
			cfg_fail(p, p->lineno, "unknown section [%.*s] (the "
			    "sections are [node], [limits], [presence] and "
			    "[federation])",
			    (int)(rb - s - 1), s + 1);
			return -1;
		}
		for (rb++; rb < e && (*rb == ' ' || *rb == '\t'); rb++)
			;
		if (rb < e && *rb != '#' && *rb != ';') {
			cfg_fail(p, p->lineno, "text after a section header");
			return -1;
		}
		return 0;
	}
	if (memchr(s, '=', n) == NULL && memchr(s, ':', n) == NULL) {
		cfg_fail(p, p->lineno, "expected 'key = value', a [section] "
		    "or a # comment");
		return -1;
	}
	return 0;
}

/*
 * cfg_reader: libinih's fgets, over the file in memory. A line we refuse
 * is handed on as an empty line, so libinih does not report it again.
 */
static char *
cfg_reader(char *str, int num, void *stream)
{
	struct cfg_parse *p = stream;
	const char *line, *nl;
	size_t n;

	if (p->pos >= p->len || num < 3)
		return NULL;
	line = p->text + p->pos;
	nl = memchr(line, '\n', p->len - p->pos);
	n = nl != NULL ? (size_t)(nl - line) : p->len - p->pos;
	p->pos += n + (nl != NULL);
	p->lineno++;
	if (n > 0 && line[n - 1] == '\r')
		n--;
	if (memchr(line, '\0', n) != NULL) {
		cfg_fail(p, p->lineno, "NUL byte in line");
		goto blank;
	}
	/* libinih's buffer holds num bytes: the line, "\n" and a NUL. */
	if (n > (size_t)num - 3) {
		cfg_fail(p, p->lineno, "line longer than %d bytes", num - 3);
		goto blank;
	}
	if (cfg_line_check(p, line, n) != 0)
		goto blank;
	memcpy(str, line, n);
	str[n] = '\n';
	str[n + 1] = '\0';
	return str;
blank:
	str[0] = '\n';
	str[1] = '\0';
	return str;
}

static int
cfg_find(const char *section, const char *key)
{
	size_t i;

	for (i = 0; i < CFG_NOPTS; i++)
		if ((section == NULL ||
		    strcmp(cfg_opts[i].section, section) == 0) &&
		    strcmp(cfg_opts[i].key, key) == 0)
			return (int)i;
	return -1;
}

/* cfg_handler: one key = value from libinih; nonzero means accepted. */
static int
cfg_handler(void *user, const char *section, const char *name,
    const char *value)
{
	struct cfg_parse *p = user;
	char why[CONFIG_ERR_MAX];
	int i, j;

	if (section[0] == '\0') {
		/* Say where it goes when the key is known (the list of
		 * sections named here once forgot [federation]). */
		if ((j = cfg_find(NULL, name)) >= 0)
			cfg_fail(p, p->lineno, "'%s' is outside any section; "
			    "put it under [%s]", name, cfg_opts[j].section);
		else
			cfg_fail(p, p->lineno, "'%s' is outside any section "
			    "(the sections are [node], [limits], [presence] "
			    "and [federation])", name);
		return 0;
	}
	if (!cfg_section_known(section, strlen(section))) {
		cfg_fail(p, p->lineno, "unknown section [%s]", section);
		return 0;
	}
	if ((i = cfg_find(section, name)) < 0) {
		if ((j = cfg_find(NULL, name)) >= 0)
			cfg_fail(p, p->lineno, "'%s' belongs in [%s], not "
			    "[%s]", name, cfg_opts[j].section, section);
		else
			cfg_fail(p, p->lineno, "unknown key '%s' in [%s]",
			    name, section);
		return 0;
	}
	if (p->seen[i] != 0) {
		cfg_fail(p, p->lineno, "'%s' set twice (first on line %d)",
		    name, p->seen[i]);
		return 0;
	}
	p->seen[i] = p->lineno;
	if (cfg_set(&cfg_opts[i], &p->cfg, value, why, sizeof(why)) != 0) {
		cfg_fail(p, p->lineno, "%s: %s", name, why);
		return 0;
	}
	return 1;
}

/* cfg_read_file: the whole file, at most CONFIG_FILE_MAX bytes, into a
 * malloc'd buffer. */
static int
cfg_read_file(struct cfg_parse *p, char **out, size_t *len)
{
	FILE *f;
	char *buf;
	size_t n;

	if ((f = fopen(p->path, "rb")) == NULL) {
		cfg_fail(p, 0, "cannot open: %s", strerror(errno));
		return TERN_ECONFIG;
	}
	if ((buf = malloc(CONFIG_FILE_MAX + 1)) == NULL) {
		fclose(f);
		cfg_fail(p, 0, "out of memory");
		return TERN_ECONFIG;
	}
	n = fread(buf, 1, CONFIG_FILE_MAX + 1, f);
	if (ferror(f)) {
		cfg_fail(p, 0, "cannot read: %s", strerror(errno));
		goto fail;
	}
	if (n > CONFIG_FILE_MAX) {
		cfg_fail(p, 0, "larger than %d bytes", CONFIG_FILE_MAX);
		goto fail;
	}
	fclose(f);
	*out = buf;
	*len = n;
	return 0;
fail:
	fclose(f);
	free(buf);
	return TERN_ECONFIG;
}

/* cfg_set_dir: cfg->dir is the absolute directory of path, so relative
 * paths keep working after the node changes its working directory. */
static int
cfg_set_dir(struct cfg_parse *p)
{
	char dir[CONFIG_PATH_MAX], *real;
	const char *slash = strrchr(p->path, '/');
	size_t n;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == p->path)
		snprintf(dir, sizeof(dir), "/");
	else {
		n = (size_t)(slash - p->path);
		if (n >= sizeof(dir)) {
			cfg_fail(p, 0, "path too long");
			return TERN_ECONFIG;
		}
		memcpy(dir, p->path, n);
		dir[n] = '\0';
	}
	if ((real = realpath(dir, NULL)) == NULL) {
		cfg_fail(p, 0, "cannot resolve its directory: %s",
		    strerror(errno));
		return TERN_ECONFIG;
	}
	n = strlen(real);
	if (n >= sizeof(p->cfg.dir)) {
		free(real);
		cfg_fail(p, 0, "directory path too long");
		return TERN_ECONFIG;
	}
	memcpy(p->cfg.dir, real, n + 1);
	free(real);
	return 0;
}

int
config_load(const char *path, struct node_config *out, char *err,
    size_t errlen)
{
	struct cfg_parse *p;
	char *text = NULL;
	int r, rc = TERN_ECONFIG;

	if (path == NULL || out == NULL)
		return TERN_EINVAL;
	/* A few KiB: kept off the stack. */
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return TERN_ENOMEM;
	p->path = path;
	config_defaults(&p->cfg);
	if (cfg_read_file(p, &text, &p->len) != 0 || cfg_set_dir(p) != 0)
		goto out;
	p->text = text;
	r = ini_parse_stream(cfg_reader, p, cfg_handler, p);
	if (p->failed)
		goto out;
	if (r > 0) {
		cfg_fail(p, r, "syntax error");
		goto out;
	}
	if (r < 0) {
		cfg_fail(p, 0, "cannot parse (error %d)", r);
		goto out;
	}
	if (p->seen[cfg_find("node", "domain")] == 0) {
		cfg_fail(p, 0, "'domain' is required in [node]");
		goto out;
	}
	*out = p->cfg;
	rc = 0;
out:
	if (rc != 0 && err != NULL && errlen > 0)
		snprintf(err, errlen, "%s", p->err);
	free(text);
	free(p);
	return rc;
}

int
config_path_join(const struct node_config *cfg, const char *rel, char *out,
    size_t cap)
{
	int r;

	if (rel == NULL || rel[0] == '\0' || cap == 0)
		return TERN_EINVAL;
	if (rel[0] == '/')
		r = snprintf(out, cap, "%s", rel);
	else if (strcmp(cfg->dir, "/") == 0)
		r = snprintf(out, cap, "/%s", rel);
	else
		r = snprintf(out, cap, "%s/%s", cfg->dir, rel);
	if (r < 0 || (size_t)r >= cap) {
		out[0] = '\0';
		return TERN_ETOOBIG;
	}
	return 0;
}

/* --- the default file ---------------------------------------------------- */

/* A bounded text being built; overflow latches. */
struct cfg_text {
	char buf[CFG_DEFAULT_MAX]; /* the text */
	size_t len;                /* bytes used */
	bool over;                 /* it did not fit */
};

static void cfg_put(struct cfg_text *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cfg_put(struct cfg_text *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (t->over)
		return;
	va_start(ap, fmt);
	n = vsnprintf(t->buf + t->len, sizeof(t->buf) - t->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(t->buf) - t->len)
		t->over = true;
	else
		t->len += (size_t)n;
}

/* cfg_put_wrapped: text as "# " comment lines of at most CFG_WRAP
 * columns, broken at spaces. */
static void
cfg_put_wrapped(struct cfg_text *t, const char *text)
{
	const char *s = text, *brk, *p;
	size_t width = CFG_WRAP - 2;

	while (*s != '\0') {
		if (strlen(s) <= width) {
			cfg_put(t, "# %s\n", s);
			return;
		}
		brk = NULL;
		for (p = s; p <= s + width; p++)
			if (*p == ' ')
				brk = p;
		if (brk == NULL) /* one long word: let it overflow */
			brk = strchr(s, ' ');
		if (brk == NULL) {
			cfg_put(t, "# %s\n", s);
			return;
		}
		cfg_put(t, "# %.*s\n", (int)(brk - s), s);
		s = brk + 1;
	}
}

static const char cfg_header[] =
    "# ternd configuration: a tern relay node.\n"
    "#\n"
    "# Every option is listed with its default value. Lines starting with\n"
    "# '#' or ';' are comments. Keys and [sections] start at the beginning\n"
    "# of a line; an unknown key or section is an error, so a typo stops\n"
    "# the node instead of passing unnoticed. Relative paths are relative\n"
    "# to the directory of this file.\n"
    "#\n"
    "# Durations take a unit: 500ms, 10s, 5m, 2h, 30d. Sizes are bytes or\n"
    "# a number with KiB, MiB, GiB or TiB: 64KiB, 256MiB. Booleans are\n"
    "# true/false, yes/no or on/off.\n";

int
config_write_default(const char *path, const char *domain,
    const char *listen)
{
	struct cfg_text *t;
	struct config_addr a;
	char lo[32], hi[32], addr[CONFIG_ADDR_MAX];
	const char *sec = "", *val;
	size_t i, off;
	ssize_t w;
	int fd, rc = TERN_EIO;

	if (path == NULL || domain == NULL || strlen(domain) > IDENT_DOMAIN_MAX
	    || ident_domain_check(domain, strlen(domain)) != 0)
		return TERN_EINVAL;
	if (config_addr_parse(listen != NULL ? listen : "0.0.0.0:7370",
	    &a) != 0 || config_addr_format(&a, addr, sizeof(addr)) != 0)
		return TERN_EINVAL;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return TERN_ENOMEM;
	cfg_put(t, "%s", cfg_header);
	for (i = 0; i < CFG_NOPTS; i++) {
		const struct cfg_opt *o = &cfg_opts[i];
		if (strcmp(o->section, sec) != 0) {
			sec = o->section;
			cfg_put(t, "\n[%s]\n", sec);
		}
		cfg_put(t, "\n");
		cfg_put_wrapped(t, o->help);
		if (o->type == CT_DURATION || o->type == CT_SIZE ||
		    o->type == CT_UINT) {
			cfg_fmt_num(o->type, o->min, lo, sizeof(lo));
			cfg_fmt_num(o->type, o->max, hi, sizeof(hi));
			cfg_put(t, "# Default %s; from %s to %s.\n", o->def,
			    lo, hi);
		} else if (o->def != NULL)
			cfg_put(t, "# Default %s.\n", o->def);
		if (o->type == CT_DOMAIN)
			val = domain;
		else if (o->type == CT_ADDR)
			val = addr;
		else
			val = o->def;
		cfg_put(t, "%s = %s\n", o->key, val);
	}
	if (t->over)
		abort(); /* CFG_DEFAULT_MAX is too small for the table */

	/* Config is not secret, but it names where the secrets are: 0644
	 * like other daemons' configuration. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0644);
	if (fd < 0) {
		rc = errno == EEXIST ? TERN_EEXIST : TERN_EIO;
		goto out;
	}
	for (off = 0; off < t->len; off += (size_t)w) {
		w = write(fd, t->buf + off, t->len - off);
		if (w < 0 && errno == EINTR)
			w = 0;
		else if (w <= 0)
			break;
	}
	if (off == t->len && fsync(fd) == 0)
		rc = 0;
	if (close(fd) != 0)
		rc = TERN_EIO;
	if (rc != 0)
		unlink(path);
out:
	free(t);
	return rc;
}

int
config_file_set(const char *path, const char *key, const char *value)
{
	char tmp[CONFIG_PATH_MAX + 8], line[1024], sect[64] = "";
	const char *dot = strchr(key, '.');
	size_t klen, slen = 0;
	FILE *in, *out;
	int done = 0, in_sect = dot == NULL;

	/* "section.key" names a key of one section ([node] and
	 * [federation] both have a listen). */
	if (dot != NULL) {
		slen = (size_t)(dot - key);
		if (slen == 0 || slen >= sizeof(sect))
			return TERN_EINVAL;
		memcpy(sect, key, slen);
		sect[slen] = '\0';
		key = dot + 1;
	}
	klen = strlen(key);
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new", path) >= sizeof(tmp))
		return TERN_EINVAL;
	if ((in = fopen(path, "r")) == NULL)
		return TERN_EIO;
	if ((out = fopen(tmp, "w")) == NULL) {
		fclose(in);
		return TERN_EIO;
	}
	while (fgets(line, sizeof(line), in) != NULL) {
		if (dot != NULL && line[0] == '[')
			in_sect = strncmp(line + 1, sect, slen) == 0 &&
			    line[1 + slen] == ']';
		if (!done && in_sect && strncmp(line, key, klen) == 0 &&
		    strncmp(line + klen, " = ", 3) == 0) {
			fprintf(out, "%s = %s\n", key, value);
			done = 1;
		} else {
			fputs(line, out);
		}
	}
	fclose(in);
	if (fclose(out) != 0 || !done || rename(tmp, path) != 0) {
		unlink(tmp);
		return done ? TERN_EIO : TERN_ENOTFOUND;
	}
	return 0;
}
