/*
 * config.h: ternd's configuration file.
 *
 * An INI file, parsed with libinih, with three sections: [node] (who the
 * node is, where it listens, where its files are), [limits] (what one
 * user or one peer may cost the node) and [presence]. config_write_default
 * writes a file with every option at its default and a sentence on each;
 * that file is the reference for what an option means.
 *
 * Strictness is the point: an unknown key or section, a key given twice,
 * an indented line (libinih would silently glue it onto the previous
 * value) or a value out of range is an error naming the file and line, so
 * a typo never passes as "the default applies". Durations take a unit
 * ("500ms", "10s", "5m", "2h", "30d"); sizes are bytes or KiB/MiB/GiB/TiB
 * ("64KiB"); booleans are true/false, yes/no or on/off.
 *
 * The file's "listen" and "metrics_listen" ("host:port", "[v6]:port")
 * become the *_host and *_port fields. Paths in the file (key_file,
 * database, admin_token_file) are kept as
 * written; config_path_join resolves a relative one against the directory
 * the file is in, so a node directory can be moved as a whole.
 */
#ifndef TERN_CONFIG_H
#define TERN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ident.h"
#include "log.h"
#include "store.h"
#include "tern_err.h"

#define CONFIG_PATH_MAX 1024      /* bytes in a path, with its NUL */
#define CONFIG_HOST_MAX 46        /* a numeric IPv6 address and its NUL */
#define CONFIG_TEXT_MAX 1024      /* a free-form value, with its NUL */
#define CONFIG_ADDR_MAX 56        /* "[host]:port" and its NUL */
#define CONFIG_FILE_MAX 65536     /* bytes in a config file */
#define CONFIG_ERR_MAX 512        /* enough for any error message */
#define CONFIG_DEFAULT_PORT 7370  /* clients */
#define CONFIG_METRICS_PORT 7380  /* metrics and admin, loopback only */

/* A numeric address to listen on. Host names are refused: what a node
 * binds to must not depend on a resolver at start-up. */
struct config_addr {
	char host[CONFIG_HOST_MAX]; /* IPv4 or IPv6 text, no brackets */
	uint16_t port;              /* 0 lets the kernel pick (tests) */
};

struct node_config {
	/* [node] */
	char dir[CONFIG_PATH_MAX];       /* absolute directory of the file */
	char domain[IDENT_DOMAIN_MAX + 1]; /* users are name@domain */
	char listen_host[CONFIG_HOST_MAX]; /* clients; 0.0.0.0 (numeric) */
	uint16_t listen_port;            /* 7370; 0: any free port */
	char key_file[CONFIG_PATH_MAX];  /* Noise static key; "node.key" */
	char database[CONFIG_PATH_MAX];  /* SQLite file; "ternd.db" */
	enum store_durability durability; /* full (fsync each commit) */
	enum log_level log_level;        /* info */
	bool open_registration;          /* anyone may register; false */
	char metrics_host[CONFIG_HOST_MAX]; /* loopback; 127.0.0.1 */
	uint16_t metrics_port;           /* 7380 */
	char admin_token_file[CONFIG_PATH_MAX]; /* "admin.token" */

	/* [limits] */
	uint64_t queue_ttl_ms;           /* undelivered envelopes kept; 30d */
	uint32_t expire_interval_ms;     /* how often expiry runs; 60s */
	uint32_t quota_count;            /* queued envelopes per user; 10000 */
	uint64_t quota_bytes;            /* queued bytes per user; 256MiB */
	uint32_t max_unauth;             /* connections not logged in; 1024 */
	uint32_t handshake_timeout_ms;   /* connect to logged in; 10s */
	uint32_t idle_timeout_ms;        /* silence before closing; 90s */
	uint32_t send_rate;              /* envelopes/s per user; 100 */
	uint32_t send_burst;             /* bucket size of send_rate; 200 */

	/* [presence] */
	uint32_t online_threshold_ms;    /* grace before "offline"; 10s */

	/* [federation] (SPEC.md section 13) */
	char fed_listen[CONFIG_TEXT_MAX]; /* "HOST:PORT" or "none" (off) */
	char fed_peers[CONFIG_TEXT_MAX];  /* "D=HOST:PORT[/KEY],..." or
	                                    "none" */
	char fed_dns[CONFIG_TEXT_MAX];    /* "IP[:PORT],..." or "system" */
	uint64_t fed_retention_ms;       /* outbound queue lifetime; 7d */
	uint32_t fed_inbound_rate;       /* FED_ENV/s per inbound link */
	uint32_t fed_inbound_burst;      /* and in a burst */
	char fed_relay_for[CONFIG_TEXT_MAX]; /* "D1,D2": we relay for them, or
	                                       "none" (SPEC.md 13.5) */
	char fed_relays[CONFIG_TEXT_MAX]; /* "DOMAIN/KEY,...": our backup
	                                    relays, or "none": DNS's */
};

/*
 * config_defaults: every field at its default; domain empty (it has no
 * default) and dir ".".
 */
void config_defaults(struct node_config *cfg);

/*
 * config_load: reads and checks the file at path into *out. Returns 0, or
 * TERN_ECONFIG with a message in err (errlen bytes, CONFIG_ERR_MAX is
 * enough; err may be NULL) such as
 *   "ternd.conf:12: unknown key 'quota_cont' in [limits]".
 * *out is written only on success.
 */
int config_load(const char *path, struct node_config *out, char *err,
    size_t errlen) TERN_WUR;

/*
 * config_write_default: writes a new config file at path with every
 * option at its default, each explained, and domain and listen (a
 * "host:port" as config_addr_parse takes; NULL for 0.0.0.0:7370) set.
 * Never overwrites: TERN_EEXIST if path exists. TERN_EINVAL for a bad
 * domain or listen, TERN_EIO if the file cannot be written (a partial
 * file is removed).
 */
int config_write_default(const char *path, const char *domain,
    const char *listen) TERN_WUR;

/*
 * config_file_set: in the config file at path, replaces the first line
 * "key = ..." with "key = value" (the form config_write_default writes),
 * through a temporary file and rename. TERN_ENOTFOUND if no such line,
 * TERN_EIO if the file cannot be rewritten. key may be "section.key" to
 * look only in that [section] (both [node] and [federation] have a
 * listen). For `ternd init` options and tools that make throwaway nodes.
 */
int config_file_set(const char *path, const char *key, const char *value)
    TERN_WUR;

/*
 * config_path_join: a path from the file (rel) as the node must open it:
 * unchanged if absolute, else cfg->dir + "/" + rel. TERN_ETOOBIG if it
 * does not fit out (cap bytes), TERN_EINVAL for an empty rel.
 */
int config_path_join(const struct node_config *cfg, const char *rel,
    char *out, size_t cap) TERN_WUR;

/*
 * Value parsers, shared with the command line. Each returns 0 or
 * TERN_EFIELD and writes its out-parameter only on success. Numbers are
 * plain decimal digits: no sign, no spaces, no hex.
 *   duration  "<n>ms", "<n>s", "<n>m", "<n>h", "<n>d" -> milliseconds
 *   size      "<n>", "<n>KiB", "<n>MiB", "<n>GiB", "<n>TiB" -> bytes
 *   bool      true/false, yes/no, on/off
 *   addr      "a.b.c.d:port" or "[v6]:port", numeric only
 */
int config_duration_parse(const char *s, uint64_t *ms) TERN_WUR;
int config_size_parse(const char *s, uint64_t *bytes) TERN_WUR;
int config_bool_parse(const char *s, bool *out) TERN_WUR;
int config_addr_parse(const char *s, struct config_addr *out) TERN_WUR;

/* config_addr_format: "host:port", IPv6 in brackets. TERN_ETOOBIG if it
 * does not fit (CONFIG_ADDR_MAX always does). */
int config_addr_format(const struct config_addr *a, char *out, size_t cap)
    TERN_WUR;

/* config_addr_is_loopback: 127.0.0.0/8 or ::1. */
bool config_addr_is_loopback(const struct config_addr *a);

#endif
