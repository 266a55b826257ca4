/*
 * main.c: the ternd command.
 *
 *   ternd init --domain D --dir DIR [--listen HOST:PORT]
 *              [--metrics-listen HOST:PORT] [--open-registration]
 *   ternd run -c DIR/ternd.conf
 *   ternd invite -c CONF [--count N] [--ttl DURATION]
 *   ternd user list|disable NAME|delete NAME -c CONF
 *   ternd status -c CONF
 *   ternd dns-records -c CONF
 *   ternd doctor -c CONF DOMAIN
 *
 * Operator commands talk to the running node over its loopback admin API
 * (so the node stays the only writer of its database); when no node is
 * running, invite and user open the database themselves.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "admin.h"
#include "adminctl.h"
#include "config.h"
#include "doctor.h"
#include "discover.h"
#include "keyfile.h"
#include "log.h"
#include "server.h"
#include "store.h"

#define RUNFILE "ternd.run" /* in the config dir: pid and admin address */

static void
usage(void)
{
	fprintf(stderr,
	    "usage: ternd init --domain DOMAIN --dir DIR [--listen HOST:PORT]\n"
	    "                  [--federation-listen HOST:PORT]\n"
	    "                  [--metrics-listen HOST:PORT] [--open-registration]\n"
	    "       ternd run -c CONF\n"
	    "       ternd invite -c CONF [--count N] [--ttl DURATION]\n"
	    "       ternd user list|disable NAME|delete NAME -c CONF\n"
	    "       ternd status -c CONF\n"
	    "       ternd dns-records -c CONF\n"
	    "       ternd doctor -c CONF DOMAIN\n");
	exit(2);
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ternd: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/*
 * print_records: every DNS record the operator must publish, in zone-file
 * syntax so that it can be pasted (lines starting ";" are comments):
 * the clients' SRV, the federation SRV and the node key TXT that peers
 * check a node against (federation/discover.h, SPEC.md "Federation").
 */
static void
print_records(const char *domain, uint16_t port, const char *fed_listen,
    const uint8_t pub[32])
{
	char b64[64], txt[FDISC_KEY_TEXT_MAX];
	const char *colon = strrchr(fed_listen, ':');
	unsigned long fport = FDISC_DEFAULT_PORT;
	bool fed_on = strcmp(fed_listen, "none") != 0;

	if (fed_on && colon != NULL && strtoul(colon + 1, NULL, 10) > 0 &&
	    strtoul(colon + 1, NULL, 10) < 65536)
		fport = strtoul(colon + 1, NULL, 10);

	if (keyfile_pub_base64(pub, b64, sizeof(b64)) != 0)
		b64[0] = '\0';
	if (fdisc_key_format(pub, txt, sizeof(txt)) != 0)
		txt[0] = '\0';
	printf("; DNS records to publish for %s (replace HOST with this "
	    "node's host name):\n", domain);
	printf("; clients find the node here:\n");
	printf("_tern._tcp.%s. 3600 IN SRV 10 10 %u HOST.\n", domain, port);
	if (fed_on)
		printf("; other nodes find it here (federation, [federation] "
		    "listen):\n");
	else
		printf("; other nodes find it here once [federation] listen is "
		    "set (federation\n; is off; %u is the standard port):\n",
		    FDISC_DEFAULT_PORT);
	printf("%s.%s. 3600 IN SRV 10 10 %lu HOST.\n", FDISC_SERVICE, domain,
	    fport);
	printf("; other nodes check this node's key against this record "
	    "(keep the old\n; one next to a new one while rotating keys):\n");
	printf("%s.%s. 3600 IN TXT \"%s\"\n", FDISC_KEY_LABEL, domain, txt);
	printf("; and HOST. needs A and/or AAAA records with the node's "
	    "public addresses:\n");
	printf(";   HOST. 3600 IN A <IPv4>\n;   HOST. 3600 IN AAAA <IPv6>\n");
	printf("; To refuse federation instead, publish a target of \".\":\n");
	printf(";   %s.%s. 3600 IN SRV 0 0 0 .\n", FDISC_SERVICE, domain);
	printf("Node key (clients may pin it): %s\n", b64);
}

/*
 * print_relay_records: the backup relay records (SPEC.md 13.5) that go
 * with [federation] relays (ours to publish) and relay_for (each of
 * those domains publishes ours). Items that do not parse are skipped
 * here: `ternd run` names them.
 */
static void
print_relay_records(const struct node_config *cfg, const uint8_t pub[32])
{
	char item[512], raw[1100], txt[FDISC_RELAY_TEXT_MAX], *slash;
	const char *p;
	unsigned long fport = FDISC_DEFAULT_PORT;
	const char *colon = strrchr(cfg->fed_listen, ':');
	struct fdisc_relay rl;
	size_t n;

	if (colon != NULL && strtoul(colon + 1, NULL, 10) > 0 &&
	    strtoul(colon + 1, NULL, 10) < 65536)
		fport = strtoul(colon + 1, NULL, 10);
	for (p = cfg->fed_relays; strcmp(cfg->fed_relays, "none") != 0 &&
	    *p != '\0'; p += n) {
		p += strspn(p, " ,");
		n = strcspn(p, ",");
		snprintf(item, sizeof(item), "%.*s", (int)n, p);
		if ((slash = strchr(item, '/')) == NULL)
			continue;
		*slash = '\0';
		snprintf(raw, sizeof(raw), "v=tern1 k=%s d=%s", slash + 1, item);
		if (fdisc_relay_parse(raw, strlen(raw), &rl) != 0 ||
		    fdisc_relay_format(rl.key, rl.domain, txt, sizeof(txt)) != 0)
			continue;
		printf("; a backup relay of ours ([federation] relays), with an "
		    "SRV record above\n; at a higher priority number pointing "
		    "at it:\n%s.%s. 3600 IN TXT \"%s\"\n", FDISC_RELAY_LABEL,
		    cfg->domain, txt);
	}
	for (p = cfg->fed_relay_for; strcmp(cfg->fed_relay_for, "none") != 0 &&
	    *p != '\0'; p += n) {
		p += strspn(p, " ,");
		n = strcspn(p, ",");
		snprintf(item, sizeof(item), "%.*s", (int)n, p);
		while (strlen(item) > 0 && item[strlen(item) - 1] == ' ')
			item[strlen(item) - 1] = '\0';
		if (item[0] == '\0' ||
		    fdisc_relay_format(pub, cfg->domain, txt, sizeof(txt)) != 0)
			continue;
		printf("; this node is a backup relay for %s ([federation] "
		    "relay_for): %s\n; publishes these (HOST: this node's host "
		    "name):\n", item, item);
		printf("%s.%s. 3600 IN TXT \"%s\"\n", FDISC_RELAY_LABEL, item,
		    txt);
		printf("%s.%s. 3600 IN SRV 20 10 %lu HOST.\n", FDISC_SERVICE,
		    item, fport);
	}
}

static int
cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{"domain", required_argument, NULL, 'd'},
		{"dir", required_argument, NULL, 'D'},
		{"listen", required_argument, NULL, 'l'},
		{"metrics-listen", required_argument, NULL, 'm'},
		{"open-registration", no_argument, NULL, 'o'},
		{"federation-listen", required_argument, NULL, 'f'},
		{NULL, 0, NULL, 0},
	};
	const char *domain = NULL, *dir = NULL, *listen = NULL, *mlisten = NULL;
	const char *flisten = NULL;
	char conf[4096], key[4096], db[4096], tok[4096];
	struct node_config cfg;
	uint8_t pub[32];
	struct stat st;
	int c, r, open_reg = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': domain = optarg; break;
		case 'D': dir = optarg; break;
		case 'l': listen = optarg; break;
		case 'm': mlisten = optarg; break;
		case 'o': open_reg = 1; break;
		case 'f': flisten = optarg; break;
		default: usage();
		}
	}
	if (domain == NULL || dir == NULL)
		usage();
	snprintf(conf, sizeof(conf), "%s/ternd.conf", dir);
	if (stat(conf, &st) == 0)
		return fail("%s exists: refusing to overwrite a node", conf);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return fail("cannot create %s: %s", dir, strerror(errno));
	if ((r = config_write_default(conf, domain, listen)) != 0)
		return fail("cannot write %s: %s", conf, tern_strerror(r));
	if (open_reg && config_file_set(conf, "open_registration", "true") != 0)
		return fail("cannot edit %s", conf);
	if (mlisten != NULL && config_file_set(conf, "metrics_listen", mlisten) != 0)
		return fail("cannot edit %s", conf);
	if (flisten != NULL &&
	    config_file_set(conf, "federation.listen", flisten) != 0)
		return fail("cannot edit %s", conf);
	if (config_load(conf, &cfg, tok, sizeof(tok)) != 0) {
		unlink(conf);
		return fail("%s", tok);
	}
	if (config_path_join(&cfg, cfg.key_file, key, sizeof(key)) != 0 ||
	    config_path_join(&cfg, cfg.database, db, sizeof(db)) != 0 ||
	    config_path_join(&cfg, cfg.admin_token_file, tok,
	    sizeof(tok)) != 0)
		return fail("paths too long in %s", conf);
	if ((r = keyfile_create(key, pub)) != 0)
		return fail("cannot create %s: %s", key, tern_strerror(r));
	if ((r = keyfile_token_create(tok)) != 0)
		return fail("cannot create %s: %s", tok, tern_strerror(r));
	if ((r = store_create(db)) != 0)
		return fail("cannot create %s: %s", db, tern_strerror(r));
	printf("Created a node for %s in %s\n", domain, dir);
	printf("  config:   %s\n  key:      %s (mode 0600)\n  database: %s\n",
	    conf, key, db);
	print_records(domain, cfg.listen_port, cfg.fed_listen, pub);
	printf("Start it with: ternd run -c %s\n", conf);
	return 0;
}

static int
load_conf(const char *path, struct node_config *cfg)
{
	char err[CONFIG_ERR_MAX];

	if (path == NULL) {
		fprintf(stderr, "ternd: -c CONF is required\n");
		return 2;
	}
	if (config_load(path, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "ternd: %s\n", err);
		return 1;
	}
	return 0;
}

/* --- run ------------------------------------------------------------- */

struct run_state {
	int status;      /* exit status */
	int stopped;     /* done ran */
	char runfile[4096]; /* written while running */
};

static void
run_done(void *arg, int status)
{
	struct run_state *rs = arg;

	rs->status = status == 0 ? 0 : 1;
	rs->stopped = 1;
	unlink(rs->runfile);
}

static int
cmd_run(const char *confpath)
{
	struct node_config cfg;
	struct run_state rs = {0};
	struct server *srv;
	uv_loop_t loop;
	uint8_t priv[32], pub[32];
	char key[4096], err[512];
	FILE *f;
	int r;

	if ((r = load_conf(confpath, &cfg)) != 0)
		return r;
	log_set_level(cfg.log_level);
	log_set_ident("ternd");
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Fixed allocator thresholds, glibc's defaults. Left dynamic, the
	 * first admin request (its 1 MiB response buffer is mmapped, then
	 * unmapped) raises them to 1 and 2 MiB for the process's life: then
	 * every buffer under 1 MiB comes from the heap and the heap keeps up
	 * to 2 MiB of free top, which an idle node carries for good.
	 */
	(void)mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	(void)mallopt(M_TRIM_THRESHOLD, 128 * 1024);
	if (config_path_join(&cfg, cfg.key_file, key, sizeof(key)) != 0 ||
	    keyfile_load(key, priv, pub, err, sizeof(err)) != 0) {
		log_error("%s", err);
		return 1;
	}
	uv_loop_init(&loop);
	r = server_start(&loop, &cfg, priv, run_done, &rs, &srv);
	sodium_memzero(priv, sizeof(priv));
	if (r != 0) {
		log_error("cannot start: %s", tern_strerror(r));
		uv_run(&loop, UV_RUN_DEFAULT);
		(void)uv_loop_close(&loop);
		return 1;
	}
	/* The run file tells operator commands where the admin API is when
	 * metrics_listen uses port 0. */
	snprintf(rs.runfile, sizeof(rs.runfile), "%s/%s", cfg.dir, RUNFILE);
	if ((f = fopen(rs.runfile, "w")) != NULL) {
		fprintf(f, "pid=%d\nadmin=%s:%u\n", (int)getpid(),
		    cfg.metrics_host, server_admin_port(srv));
		fclose(f);
	}
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0)
		log_warn("handles left open at exit");
	return rs.status;
}

/* --- operator commands ----------------------------------------------- */

/* admin_addr: where the running node's admin API is. */
static void
admin_addr(const struct node_config *cfg, uint16_t *port)
{
	char path[4200], line[256];
	unsigned p;
	FILE *f;

	*port = cfg->metrics_port;
	snprintf(path, sizeof(path), "%s/%s", cfg->dir, RUNFILE);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *c = strrchr(line, ':');
		if (strncmp(line, "admin=", 6) == 0 && c != NULL &&
		    sscanf(c + 1, "%u", &p) == 1)
			*port = (uint16_t)p;
	}
	fclose(f);
}

/* admin_call: GET or POST to the running node. TERN_EUNREACH when none. */
static int
admin_call(const struct node_config *cfg, int post, const char *path,
    int quiet)
{
	char tokpath[4096], tok[128], err[256];
	char *body = NULL;
	size_t len = 0;
	uint16_t port;
	int status = 0, r;

	if (config_path_join(cfg, cfg->admin_token_file, tokpath,
	    sizeof(tokpath)) != 0 ||
	    keyfile_token_load(tokpath, tok, sizeof(tok), err,
	    sizeof(err)) != 0) {
		fprintf(stderr, "ternd: %s\n", err);
		return TERN_EKEY;
	}
	admin_addr(cfg, &port);
	r = post ? adminctl_post(cfg->metrics_host, port, tok, path, NULL, 0,
	    &body, &len, &status) : adminctl_get(cfg->metrics_host, port, tok,
	    path, &body, &len, &status);
	sodium_memzero(tok, sizeof(tok));
	if (r != 0) {
		if (!quiet || r != TERN_EUNREACH)
			fprintf(stderr, "ternd: node at %s:%u: %s\n",
			    cfg->metrics_host, port, tern_strerror(r));
		return r;
	}
	if (status != 200) {
		fprintf(stderr, "ternd: %d: %.*s\n", status, (int)len,
		    body ? body : "");
		free(body);
		return TERN_EINVAL;
	}
	fwrite(body, 1, len, stdout);
	free(body);
	return 0;
}

/* The offline path: no node runs, so this process opens the database. */
struct offline {
	int outstanding;    /* requests not yet completed */
	int failed;         /* first failure */
	int closed;         /* store closed */
};

static void
offline_cb(void *arg, int status, const struct store_result *res)
{
	struct offline *o = arg;

	(void)res;
	o->outstanding--;
	if (status != 0 && o->failed == 0)
		o->failed = status;
}

static void
offline_closed(void *arg)
{
	((struct offline *)arg)->closed = 1;
}

static int
offline_open(const struct node_config *cfg, uv_loop_t *loop,
    struct store **st)
{
	struct store_config sc = {0};
	char db[4096];
	int r;

	if (config_path_join(cfg, cfg->database, db, sizeof(db)) != 0)
		return TERN_EINVAL;
	sc.path = db;
	sc.domain = cfg->domain;
	uv_loop_init(loop);
	if ((r = store_open(st, loop, &sc)) != 0) {
		fprintf(stderr, "ternd: %s: %s%s\n", db, tern_strerror(r),
		    r == TERN_EBUSY ? " (is the node running? its admin API "
		    "did not answer)" : "");
		(void)uv_loop_close(loop);
	}
	return r;
}

static int
offline_finish(uv_loop_t *loop, struct store *st, struct offline *o)
{
	while (o->outstanding > 0)
		uv_run(loop, UV_RUN_ONCE);
	store_close(st, offline_closed, o);
	uv_run(loop, UV_RUN_DEFAULT);
	(void)uv_loop_close(loop);
	if (o->failed != 0) {
		fprintf(stderr, "ternd: %s\n", tern_strerror(o->failed));
		return 1;
	}
	return 0;
}

static int
cmd_invite(const char *confpath, unsigned count, const char *ttl)
{
	struct node_config cfg;
	struct offline o = {0};
	char path[128], out[ADMIN_INVITE_MAX * (ADMIN_INVITE_LEN + 1)];
	struct buf_writer w;
	struct store *st;
	uv_loop_t loop;
	uint64_t ttl_ms = 7 * 86400000ull;
	unsigned n;
	int r;

	if ((r = load_conf(confpath, &cfg)) != 0)
		return r;
	if (ttl != NULL && config_duration_parse(ttl, &ttl_ms) != 0)
		return fail("bad --ttl %s (e.g. 12h, 7d)", ttl);
	if (count == 0 || count > ADMIN_INVITE_MAX)
		return fail("--count must be 1..1000");
	snprintf(path, sizeof(path), "/admin/invite?count=%u&ttl=%llums",
	    count, (unsigned long long)ttl_ms);
	r = admin_call(&cfg, 1, path, 1);
	if (r != TERN_EUNREACH)
		return r == 0 ? 0 : 1;
	if (offline_open(&cfg, &loop, &st) != 0)
		return 1;
	buf_writer_init(&w, (uint8_t *)out, sizeof(out));
	r = admin_invite_create(st, count, ttl_ms, &w, offline_cb, &o, &n);
	o.outstanding = (int)n;
	if (r != 0)
		o.failed = r;
	r = offline_finish(&loop, st, &o);
	if (r == 0)
		fwrite(out, 1, w.len, stdout);
	sodium_memzero(out, sizeof(out));
	return r;
}

static int
user_list_print(void *arg, const struct store_user_info *u)
{
	static const char *const states[] = {"active", "disabled", "deleted"};

	(void)arg;
	printf("%-24s %-8s devices=%u queued=%llu bytes=%llu\n", u->name,
	    states[u->state < 3 ? u->state : 0], u->devices,
	    (unsigned long long)u->queued, (unsigned long long)u->queued_bytes);
	return 0;
}

static int
cmd_user(const char *confpath, const char *what, const char *name)
{
	struct node_config cfg;
	struct offline o = {0};
	struct store *st;
	uv_loop_t loop;
	char path[256];
	int r;

	if ((r = load_conf(confpath, &cfg)) != 0)
		return r;
	if (strcmp(what, "list") == 0) {
		r = admin_call(&cfg, 0, "/admin/users", 1);
	} else if ((strcmp(what, "disable") == 0 ||
	    strcmp(what, "delete") == 0) && name != NULL) {
		/* Names are plain local parts: nothing to escape. */
		if (strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789._-+") !=
		    strlen(name) || strlen(name) > STORE_NAME_MAX)
			return fail("bad user name %s", name);
		/* '+' means a space in a query: escape it. */
		int k = snprintf(path, sizeof(path), "/admin/user/%s?name=",
		    what);
		for (const char *p = name; *p && k < (int)sizeof(path) - 4; p++)
			k += *p == '+' ? snprintf(path + k, sizeof(path) - k,
			    "%%2B") : snprintf(path + k, sizeof(path) - k, "%c",
			    *p);
		r = admin_call(&cfg, 1, path, 1);
	} else {
		usage();
	}
	if (r != TERN_EUNREACH)
		return r == 0 ? 0 : 1;
	if (offline_open(&cfg, &loop, &st) != 0)
		return 1;
	if (strcmp(what, "list") == 0) {
		if (store_user_list(st, user_list_print, NULL) != 0)
			o.failed = TERN_EDB;
	} else {
		r = strcmp(what, "delete") == 0 ?
		    store_user_delete(st, name, offline_cb, &o) :
		    store_user_disable(st, name, offline_cb, &o);
		if (r == 0)
			o.outstanding = 1;
		else
			o.failed = r;
	}
	r = offline_finish(&loop, st, &o);
	if (r == 0 && strcmp(what, "list") != 0)
		printf("%s %sd\n", name, what);
	return r;
}

static int
cmd_status(const char *confpath)
{
	struct node_config cfg;
	int r;

	if ((r = load_conf(confpath, &cfg)) != 0)
		return r;
	r = admin_call(&cfg, 0, "/status", 0);
	return r == 0 ? 0 : 1;
}

static int
cmd_dns_records(const char *confpath)
{
	struct node_config cfg;
	uint8_t priv[32], pub[32];
	char key[4096], err[512];
	int r;

	if ((r = load_conf(confpath, &cfg)) != 0)
		return r;
	if (config_path_join(&cfg, cfg.key_file, key, sizeof(key)) != 0 ||
	    keyfile_load(key, priv, pub, err, sizeof(err)) != 0)
		return fail("%s", err);
	sodium_memzero(priv, sizeof(priv));
	print_records(cfg.domain, cfg.listen_port, cfg.fed_listen, pub);
	print_relay_records(&cfg, pub);
	return 0;
}

static int
cmd_doctor(const char *confpath, const char *domain)
{
	struct node_config cfg;
	uint8_t priv[32], pub[32];
	char key[4096], err[512];
	int r;

	if ((r = load_conf(confpath, &cfg)) != 0)
		return r;
	if (config_path_join(&cfg, cfg.key_file, key, sizeof(key)) != 0 ||
	    keyfile_load(key, priv, pub, err, sizeof(err)) != 0)
		return fail("%s", err);
	r = doctor_run(&cfg, priv, domain);
	sodium_memzero(priv, sizeof(priv));
	return r;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"count", required_argument, NULL, 'n'},
		{"ttl", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	const char *cmd, *conf = NULL, *ttl = NULL;
	unsigned count = 1;
	int c;

	if (sodium_init() < 0) {
		fprintf(stderr, "ternd: libsodium failed to initialise\n");
		return 1;
	}
	if (argc < 2)
		usage();
	cmd = argv[1];
	if (strcmp(cmd, "init") == 0)
		return cmd_init(argc - 1, argv + 1);
	optind = 2;
	while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		switch (c) {
		case 'c': conf = optarg; break;
		case 'n': count = (unsigned)strtoul(optarg, NULL, 10); break;
		case 't': ttl = optarg; break;
		default: usage();
		}
	}
	if (strcmp(cmd, "run") == 0)
		return cmd_run(conf);
	if (strcmp(cmd, "invite") == 0)
		return cmd_invite(conf, count, ttl);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(conf);
	if (strcmp(cmd, "dns-records") == 0)
		return cmd_dns_records(conf);
	if (strcmp(cmd, "doctor") == 0) {
		if (optind >= argc)
			usage();
		return cmd_doctor(conf, argv[optind]);
	}
	if (strcmp(cmd, "user") == 0 && optind < argc)
		return cmd_user(conf, argv[optind],
		    optind + 1 < argc ? argv[optind + 1] : NULL);
	usage();
	return 2;
}
