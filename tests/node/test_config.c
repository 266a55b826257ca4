/*
 * test_config.c: ternd's configuration file: defaults, every option,
 * value syntax and ranges, errors that name the line, the loopback rule
 * for metrics, paths relative to the file, and the default file.
 */
#define _GNU_SOURCE /* nftw's FTW_PHYS */
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tt.h"

static char tdir[64];

/* Each case works in a fresh directory under /tmp, removed at the end. */
static void
setup(void)
{
	snprintf(tdir, sizeof(tdir), "/tmp/tern-config-XXXXXX");
	TT_ASSERT(mkdtemp(tdir) != NULL);
	TT_OK(chdir(tdir));
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *f)
{
	return remove(path);
}

static void
teardown(void)
{
	TT_OK(chdir("/"));
	TT_OK(nftw(tdir, rm_one, 8, FTW_DEPTH | FTW_PHYS));
}

static void
write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	TT_ASSERT(f != NULL);
	TT_EQ(fwrite(text, 1, strlen(text), f), strlen(text));
	TT_OK(fclose(f));
}

/* load_text: text as ./ternd.conf, loaded; err holds the message. */
static int
load_text(const char *text, struct node_config *cfg, char *err)
{
	write_file("ternd.conf", text);
	err[0] = '\0';
	return config_load("ternd.conf", cfg, err, CONFIG_ERR_MAX);
}

/* load_err: loading text must fail with exactly want. */
static void
load_err(const char *text, const char *want)
{
	struct node_config cfg;
	char err[CONFIG_ERR_MAX];

	TT_ERR(load_text(text, &cfg, err), TERN_ECONFIG);
	if (strcmp(err, want) != 0)
		tt_fail(__FILE__, __LINE__, "error\n  got  '%s'\n  want '%s'",
		    err, want);
}

/* load_err_has: loading text must fail with a message containing want. */
static void
load_err_has(const char *text, const char *want)
{
	struct node_config cfg;
	char err[CONFIG_ERR_MAX];

	TT_ERR(load_text(text, &cfg, err), TERN_ECONFIG);
	if (strstr(err, want) == NULL)
		tt_fail(__FILE__, __LINE__, "error '%s' lacks '%s'", err, want);
}

/* Everything except dir, domain and listen is at its default. */
static void
assert_defaults(const struct node_config *c)
{
	TT_ASSERT(strcmp(c->key_file, "node.key") == 0);
	TT_ASSERT(strcmp(c->database, "ternd.db") == 0);
	TT_EQ(c->durability, STORE_DURABILITY_FULL);
	TT_EQ(c->log_level, LOG_LEVEL_INFO);
	TT_EQ(c->open_registration, false);
	TT_ASSERT(strcmp(c->metrics_host, "127.0.0.1") == 0);
	TT_EQ(c->metrics_port, 7380);
	TT_ASSERT(strcmp(c->admin_token_file, "admin.token") == 0);
	TT_EQ(c->queue_ttl_ms, 30ull * 24 * 3600 * 1000);
	TT_EQ(c->expire_interval_ms, 60000);
	TT_EQ(c->quota_count, 10000);
	TT_EQ(c->quota_bytes, 256ull << 20);
	TT_EQ(c->max_unauth, 1024);
	TT_EQ(c->handshake_timeout_ms, 10000);
	TT_EQ(c->idle_timeout_ms, 90000);
	TT_EQ(c->send_rate, 100);
	TT_EQ(c->send_burst, 200);
	TT_EQ(c->online_threshold_ms, 10000);
}

TT_CASE(config__defaults__every_field)
{
	struct node_config c;

	config_defaults(&c);
	assert_defaults(&c);
	TT_ASSERT(strcmp(c.domain, "") == 0);
	TT_ASSERT(strcmp(c.dir, ".") == 0);
	TT_ASSERT(strcmp(c.listen_host, "0.0.0.0") == 0);
	TT_EQ(c.listen_port, 7370);
}

TT_CASE(config__load__domain_only_gives_defaults)
{
	struct node_config c;
	char err[CONFIG_ERR_MAX], real[PATH_MAX];

	setup();
	TT_OK(load_text("[node]\ndomain = example.org\n", &c, err));
	TT_ASSERT(strcmp(c.domain, "example.org") == 0);
	TT_ASSERT(strcmp(c.listen_host, "0.0.0.0") == 0);
	TT_EQ(c.listen_port, 7370);
	assert_defaults(&c);
	/* dir is absolute, whatever path the file was named by. */
	TT_ASSERT(realpath(tdir, real) != NULL);
	TT_ASSERT(strcmp(c.dir, real) == 0);
	teardown();
}

TT_CASE(config__load__every_option_parsed)
{
	struct node_config c;
	char err[CONFIG_ERR_MAX];

	setup();
	TT_OK(load_text(
	    "# a comment\n"
	    "; another\n"
	    "[node]\n"
	    "domain = chat.example.org\n"
	    "listen = [::]:443\n"
	    "key_file = /etc/tern/key\n"
	    "database = data/t.db\n"
	    "durability = normal\n"
	    "log_level = debug\n"
	    "open_registration = yes\n"
	    "metrics_listen = [::1]:9100\n"
	    "admin_token_file = tok\n"
	    "\n"
	    "[limits]\n"
	    "queue_ttl = 7d\n"
	    "expire_interval = 5m\n"
	    "quota_count = 5000\n"
	    "quota_bytes = 1GiB\n"
	    "max_unauth = 64\n"
	    "handshake_timeout = 500ms\n"
	    "idle_timeout = 2h\n"
	    "send_rate = 10\n"
	    "send_burst = 20\n"
	    "[presence]\n"
	    "online_threshold = 0s\n", &c, err));
	TT_ASSERT(strcmp(c.domain, "chat.example.org") == 0);
	TT_ASSERT(strcmp(c.listen_host, "::") == 0);
	TT_EQ(c.listen_port, 443);
	TT_ASSERT(strcmp(c.key_file, "/etc/tern/key") == 0);
	TT_ASSERT(strcmp(c.database, "data/t.db") == 0);
	TT_EQ(c.durability, STORE_DURABILITY_NORMAL);
	TT_EQ(c.log_level, LOG_LEVEL_DEBUG);
	TT_EQ(c.open_registration, true);
	TT_ASSERT(strcmp(c.metrics_host, "::1") == 0);
	TT_EQ(c.metrics_port, 9100);
	TT_ASSERT(strcmp(c.admin_token_file, "tok") == 0);
	TT_EQ(c.queue_ttl_ms, 7ull * 24 * 3600 * 1000);
	TT_EQ(c.expire_interval_ms, 300000);
	TT_EQ(c.quota_count, 5000);
	TT_EQ(c.quota_bytes, 1ull << 30);
	TT_EQ(c.max_unauth, 64);
	TT_EQ(c.handshake_timeout_ms, 500);
	TT_EQ(c.idle_timeout_ms, 2 * 3600 * 1000);
	TT_EQ(c.send_rate, 10);
	TT_EQ(c.send_burst, 20);
	TT_EQ(c.online_threshold_ms, 0);
	teardown();
}

TT_CASE(config__load__crlf_bom_and_inline_comments)
{
	struct node_config c;
	char err[CONFIG_ERR_MAX];

	setup();
	TT_OK(load_text("\xef\xbb\xbf[node]\r\ndomain = a.b ; ours\r\n"
	    "  # an indented comment is fine\r\n"
	    "[limits] ; the limits\r\nsend_rate=7\r\n", &c, err));
	TT_ASSERT(strcmp(c.domain, "a.b") == 0);
	TT_EQ(c.send_rate, 7);
	teardown();
}

TT_CASE(config__duration__units_and_bad_ones)
{
	static const char *const bad[] = {"", "10", "10 s", " 10s", "-1s",
	    "+1s", "1.5s", "10S", "s", "10sec", "10s ", "0x10s",
	    "99999999999999999999ms", "999999999999999999d"};
	uint64_t v = 42;

	TT_OK(config_duration_parse("500ms", &v));
	TT_EQ(v, 500);
	TT_OK(config_duration_parse("10s", &v));
	TT_EQ(v, 10000);
	TT_OK(config_duration_parse("5m", &v));
	TT_EQ(v, 300000);
	TT_OK(config_duration_parse("2h", &v));
	TT_EQ(v, 7200000);
	TT_OK(config_duration_parse("30d", &v));
	TT_EQ(v, 2592000000ull);
	TT_OK(config_duration_parse("0s", &v));
	TT_EQ(v, 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 42;
		if (config_duration_parse(bad[i], &v) != TERN_EFIELD)
			tt_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
		TT_EQ(v, 42); /* untouched on failure */
	}
}

TT_CASE(config__size__units_and_bad_ones)
{
	static const char *const bad[] = {"", "1k", "1KB", "1kib", "1 KiB",
	    "-1", "1.5MiB", "MiB", "1MiBs", "99999999999999999999",
	    "17179869184GiB"};
	uint64_t v = 42;

	TT_OK(config_size_parse("512", &v));
	TT_EQ(v, 512);
	TT_OK(config_size_parse("64KiB", &v));
	TT_EQ(v, 65536);
	TT_OK(config_size_parse("256MiB", &v));
	TT_EQ(v, 256ull << 20);
	TT_OK(config_size_parse("1GiB", &v));
	TT_EQ(v, 1ull << 30);
	TT_OK(config_size_parse("2TiB", &v));
	TT_EQ(v, 2ull << 40);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 42;
		if (config_size_parse(bad[i], &v) != TERN_EFIELD)
			tt_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
		TT_EQ(v, 42);
	}
}

TT_CASE(config__bool__words_and_bad_ones)
{
	static const char *const bad[] = {"", "1", "0", "True", "YES", "y",
	    "enabled", "on "};
	bool b;

	b = false;
	TT_OK(config_bool_parse("true", &b));
	TT_EQ(b, true);
	TT_OK(config_bool_parse("no", &b));
	TT_EQ(b, false);
	TT_OK(config_bool_parse("on", &b));
	TT_EQ(b, true);
	TT_OK(config_bool_parse("off", &b));
	TT_EQ(b, false);
	TT_OK(config_bool_parse("yes", &b));
	TT_EQ(b, true);
	TT_OK(config_bool_parse("false", &b));
	TT_EQ(b, false);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_bool_parse(bad[i], &b) != TERN_EFIELD)
			tt_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
}

TT_CASE(config__addr__forms_and_bad_ones)
{
	static const char *const bad[] = {"", "1.2.3.4", "1.2.3.4:",
	    ":80", "::1:80", "[::1]80", "[::1]", "[::1:80", "localhost:80",
	    "1.2.3.4:65536", "1.2.3.4:+80", "1.2.3.4:123456", "1.2.3:80",
	    "[1.2.3.4]:80", "1.2.3.4: 80", "[fe80::1%lo]:80"};
	struct config_addr a;
	char s[CONFIG_ADDR_MAX];

	TT_OK(config_addr_parse("0.0.0.0:7370", &a));
	TT_ASSERT(strcmp(a.host, "0.0.0.0") == 0);
	TT_EQ(a.port, 7370);
	TT_EQ(config_addr_is_loopback(&a), false);
	TT_OK(config_addr_parse("[::1]:7370", &a));
	TT_ASSERT(strcmp(a.host, "::1") == 0);
	TT_EQ(a.port, 7370);
	TT_EQ(config_addr_is_loopback(&a), true);
	TT_OK(config_addr_format(&a, s, sizeof(s)));
	TT_ASSERT(strcmp(s, "[::1]:7370") == 0);
	TT_ERR(config_addr_format(&a, s, 5), TERN_ETOOBIG);
	TT_OK(config_addr_parse("127.8.9.10:0", &a));
	TT_EQ(a.port, 0);
	TT_EQ(config_addr_is_loopback(&a), true);
	TT_OK(config_addr_format(&a, s, sizeof(s)));
	TT_ASSERT(strcmp(s, "127.8.9.10:0") == 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (config_addr_parse(bad[i], &a) != TERN_EFIELD)
			tt_fail(__FILE__, __LINE__, "accepted '%s'", bad[i]);
}

TT_CASE(config__load__unknown_key_names_line)
{
	setup();
	load_err(
	    "[node]\n"                    /* 1 */
	    "domain = example.org\n"      /* 2 */
	    "\n"                          /* 3 */
	    "[limits]\n"                  /* 4 */
	    "# comments count too\n"      /* 5 */
	    "queue_ttl = 30d\n"           /* 6 */
	    "\n"                          /* 7 */
	    "\n"                          /* 8 */
	    "max_unauth = 10\n"           /* 9 */
	    "\n"                          /* 10 */
	    "; and this\n"                /* 11 */
	    "quota_cont = 5\n"            /* 12 */
	    "send_rate = 5\n",            /* 13 */
	    "ternd.conf:12: unknown key 'quota_cont' in [limits]");
	teardown();
}

TT_CASE(config__load__unknown_section_names_line)
{
	setup();
	load_err("[node]\ndomain = example.org\n[limit]\nsend_rate = 5\n",
	    "ternd.conf:3: unknown section [limit] (the sections are [node], "
	    "[limits], [presence] and [federation])");
	/* An empty unknown section is an error too. */
	load_err("[node]\ndomain = example.org\n\n[federated]\n",
	    "ternd.conf:4: unknown section [federated] (the sections are "
	    "[node], [limits], [presence] and [federation])");
	teardown();
}

TT_CASE(config__load__key_in_wrong_section_says_where)
{
	setup();
	load_err("[node]\ndomain = example.org\nsend_rate = 5\n",
	    "ternd.conf:3: 'send_rate' belongs in [limits], not [node]");
	load_err("domain = example.org\n[node]\n",
	    "ternd.conf:1: 'domain' is outside any section; put it under "
	    "[node]");
	load_err("inbound_rate = 5\n[node]\ndomain = example.org\n",
	    "ternd.conf:1: 'inbound_rate' is outside any section; put it "
	    "under [federation]");
	load_err("speed = 5\n[node]\ndomain = example.org\n",
	    "ternd.conf:1: 'speed' is outside any section (the sections are "
	    "[node], [limits], [presence] and [federation])");
	teardown();
}

TT_CASE(config__load__duplicate_key_refused)
{
	setup();
	load_err("[node]\ndomain = example.org\n[limits]\nsend_rate = 5\n"
	    "[node]\n[limits]\nsend_rate = 6\n",
	    "ternd.conf:7: 'send_rate' set twice (first on line 4)");
	teardown();
}

TT_CASE(config__load__syntax_errors_name_line)
{
	char longline[400];

	setup();
	/* libinih would glue this onto domain's value. */
	load_err("[node]\ndomain = example.org\n  log_level = debug\n",
	    "ternd.conf:3: indented line; keys and [sections] must start at "
	    "the beginning of the line");
	load_err("[node]\ndomain = example.org\nlog_level\n",
	    "ternd.conf:3: expected 'key = value', a [section] or a # "
	    "comment");
	load_err("[node\ndomain = example.org\n",
	    "ternd.conf:1: section header without ']'");
	load_err("[node] x\ndomain = example.org\n",
	    "ternd.conf:1: text after a section header");
	memset(longline, 'a', sizeof(longline));
	memcpy(longline, "[node]\ndomain = example.org\ndatabase = ", 39);
	memcpy(longline + sizeof(longline) - 2, "\n", 2);
	load_err_has(longline, "ternd.conf:3: line longer than");
	teardown();
}

TT_CASE(config__load__bad_values_name_line_and_reason)
{
	setup();
	load_err("[node]\ndomain = example.org\n[limits]\nqueue_ttl = 30x\n",
	    "ternd.conf:4: queue_ttl: '30x' is not a duration (a number and a "
	    "unit: 500ms, 10s, 5m, 2h, 30d)");
	load_err("[node]\ndomain = example.org\n[limits]\n"
	    "handshake_timeout = 1h\n",
	    "ternd.conf:4: handshake_timeout: '1h' is out of range (100ms to "
	    "5m)");
	load_err("[node]\ndomain = example.org\n[limits]\n"
	    "quota_bytes = 1KiB\n",
	    "ternd.conf:4: quota_bytes: '1KiB' is out of range (64KiB to "
	    "1TiB)");
	load_err("[node]\ndomain = example.org\n[limits]\nquota_count = 0\n",
	    "ternd.conf:4: quota_count: '0' is out of range (1 to 10000000)");
	load_err("[node]\ndomain = example.org\n[limits]\nsend_rate = ten\n",
	    "ternd.conf:4: send_rate: 'ten' is not a whole number");
	load_err("[node]\ndomain = example.org\nopen_registration = maybe\n",
	    "ternd.conf:3: open_registration: 'maybe' is not a boolean "
	    "(true/false, yes/no, on/off)");
	load_err("[node]\ndomain = example.org\ndurability = sometimes\n",
	    "ternd.conf:3: durability: 'sometimes' is neither full nor "
	    "normal");
	load_err("[node]\ndomain = example.org\nlog_level = loud\n",
	    "ternd.conf:3: log_level: 'loud' is not one of error, warn, "
	    "info, debug");
	load_err("[node]\ndomain = example.org\nlisten = example.org:1\n",
	    "ternd.conf:3: listen: 'example.org:1' is not a numeric address "
	    "and port such as 127.0.0.1:7370 or [::1]:7370");
	load_err("[node]\ndomain = Example.org\n",
	    "ternd.conf:2: domain: 'Example.org' is not a domain name "
	    "(lowercase letters, digits, '-' and dots, at most 253 bytes)");
	load_err("[node]\ndomain =\n", "ternd.conf:2: domain: no value given");
	teardown();
}

TT_CASE(config__load__non_loopback_metrics_refused)
{
	struct node_config c;
	char err[CONFIG_ERR_MAX];

	setup();
	load_err("[node]\ndomain = example.org\n"
	    "metrics_listen = 0.0.0.0:7380\n",
	    "ternd.conf:3: metrics_listen: '0.0.0.0:7380' is not a loopback "
	    "address; metrics and the admin API are served on 127.0.0.1 or "
	    "[::1] only");
	load_err_has("[node]\ndomain = example.org\n"
	    "metrics_listen = [::]:7380\n", "is not a loopback address");
	load_err_has("[node]\ndomain = example.org\n"
	    "metrics_listen = 10.0.0.1:7380\n", "is not a loopback address");
	TT_OK(load_text("[node]\ndomain = example.org\n"
	    "metrics_listen = 127.0.0.2:9000\n", &c, err));
	TT_ASSERT(strcmp(c.metrics_host, "127.0.0.2") == 0);
	TT_EQ(c.metrics_port, 9000);
	teardown();
}

TT_CASE(config__load__missing_domain_or_file)
{
	struct node_config c;
	char err[CONFIG_ERR_MAX];

	setup();
	load_err("[node]\nlog_level = warn\n",
	    "ternd.conf: 'domain' is required in [node]");
	TT_ERR(config_load("nope.conf", &c, err, sizeof(err)), TERN_ECONFIG);
	TT_ASSERT(strncmp(err, "nope.conf: cannot open:", 23) == 0);
	/* A NULL err buffer is fine. */
	TT_ERR(config_load("nope.conf", &c, NULL, 0), TERN_ECONFIG);
	/* A tiny one is cut, not overrun. */
	TT_ERR(config_load("nope.conf", &c, err, 5), TERN_ECONFIG);
	TT_ASSERT(strcmp(err, "nope") == 0);
	teardown();
}

TT_CASE(config__path_join__relative_to_config_dir)
{
	struct node_config c;
	char err[CONFIG_ERR_MAX], real[PATH_MAX], want[PATH_MAX + 32];
	char out[CONFIG_PATH_MAX];

	setup();
	TT_OK(mkdir("sub", 0755));
	write_file("sub/ternd.conf", "[node]\ndomain = example.org\n"
	    "database = db/ternd.db\nkey_file = /etc/tern/node.key\n");
	TT_OK(config_load("sub/ternd.conf", &c, err, sizeof(err)));
	TT_ASSERT(realpath("sub", real) != NULL);
	TT_ASSERT(strcmp(c.dir, real) == 0);
	TT_OK(config_path_join(&c, c.database, out, sizeof(out)));
	snprintf(want, sizeof(want), "%s/db/ternd.db", real);
	TT_ASSERT(strcmp(out, want) == 0);
	TT_OK(config_path_join(&c, c.admin_token_file, out, sizeof(out)));
	snprintf(want, sizeof(want), "%s/admin.token", real);
	TT_ASSERT(strcmp(out, want) == 0);
	/* Absolute paths stay as they are. */
	TT_OK(config_path_join(&c, c.key_file, out, sizeof(out)));
	TT_ASSERT(strcmp(out, "/etc/tern/node.key") == 0);
	/* From another working directory the answer is the same. */
	TT_OK(chdir("sub"));
	TT_OK(config_load("./ternd.conf", &c, err, sizeof(err)));
	TT_ASSERT(strcmp(c.dir, real) == 0);
	TT_ERR(config_path_join(&c, c.database, out, 8), TERN_ETOOBIG);
	TT_ASSERT(strcmp(out, "") == 0);
	TT_ERR(config_path_join(&c, "", out, sizeof(out)), TERN_EINVAL);
	teardown();
}

TT_CASE(config__write_default__loads_as_defaults)
{
	static const char *const keys[] = {"domain", "listen", "key_file",
	    "database", "durability", "log_level", "open_registration",
	    "metrics_listen", "admin_token_file", "queue_ttl",
	    "expire_interval", "quota_count", "quota_bytes", "max_unauth",
	    "handshake_timeout", "idle_timeout", "send_rate", "send_burst",
	    "online_threshold"};
	struct node_config c;
	char err[CONFIG_ERR_MAX], want[64], *text;
	struct stat st;
	size_t lines = 0, comments = 0;

	setup();
	TT_OK(config_write_default("ternd.conf", "example.org",
	    "[::]:7000"));
	TT_OK(config_load("ternd.conf", &c, err, sizeof(err)));
	TT_ASSERT(strcmp(c.domain, "example.org") == 0);
	TT_ASSERT(strcmp(c.listen_host, "::") == 0);
	TT_EQ(c.listen_port, 7000);
	assert_defaults(&c);
	TT_OK(stat("ternd.conf", &st));
	TT_EQ(st.st_mode & 0777, 0644);

	/* Every option is written out, under a comment. */
	text = tt_read_file("ternd.conf", NULL);
	TT_ASSERT(text != NULL);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(want, sizeof(want), "\n%s = ", keys[i]);
		if (strstr(text, want) == NULL)
			tt_fail(__FILE__, __LINE__, "no '%s' in:\n%s", keys[i],
			    text);
	}
	TT_ASSERT(strstr(text, "\n[node]\n") != NULL);
	TT_ASSERT(strstr(text, "\n[limits]\n") != NULL);
	TT_ASSERT(strstr(text, "\n[presence]\n") != NULL);
	for (char *p = text; *p != '\0'; p++) {
		if (p == text || p[-1] == '\n') {
			lines++;
			comments += *p == '#';
			/* Comments wrap at 76 columns. */
			TT_ASSERT(strcspn(p, "\n") <= 76);
		}
	}
	TT_ASSERT(comments > 2 * (sizeof(keys) / sizeof(keys[0])));
	free(text);

	/* NULL listen is the default one. */
	TT_OK(config_write_default("b.conf", "example.org", NULL));
	TT_OK(config_load("b.conf", &c, err, sizeof(err)));
	TT_ASSERT(strcmp(c.listen_host, "0.0.0.0") == 0);
	TT_EQ(c.listen_port, 7370);
	teardown();
}

TT_CASE(config__write_default__refuses_to_overwrite)
{
	char *text;

	setup();
	write_file("ternd.conf", "mine\n");
	TT_ERR(config_write_default("ternd.conf", "example.org", NULL),
	    TERN_EEXIST);
	text = tt_read_file("ternd.conf", NULL);
	TT_ASSERT(text != NULL && strcmp(text, "mine\n") == 0);
	free(text);
	/* Not even through a symlink. */
	TT_OK(symlink("elsewhere", "link.conf"));
	TT_ERR(config_write_default("link.conf", "example.org", NULL),
	    TERN_EEXIST);
	TT_ASSERT(access("elsewhere", F_OK) != 0);
	teardown();
}

TT_CASE(config__write_default__bad_arguments_write_nothing)
{
	setup();
	TT_ERR(config_write_default("a.conf", "Bad_Domain", NULL),
	    TERN_EINVAL);
	TT_ERR(config_write_default("a.conf", "example.org", "somewhere:1"),
	    TERN_EINVAL);
	TT_ERR(config_write_default("a.conf", "example.org", "1.2.3.4"),
	    TERN_EINVAL);
	TT_ASSERT(access("a.conf", F_OK) != 0);
	TT_ERR(config_write_default("no/such/dir/a.conf", "example.org",
	    NULL), TERN_EIO);
	teardown();
}

TT_CASE(config__file_set__replaces_one_option)
{
	struct node_config c;
	char err[CONFIG_ERR_MAX];

	setup();
	TT_OK(config_write_default("ternd.conf", "example.org", NULL));
	TT_OK(config_file_set("ternd.conf", "open_registration", "true"));
	TT_OK(config_file_set("ternd.conf", "send_rate", "5"));
	TT_OK(config_load("ternd.conf", &c, err, sizeof(err)));
	TT_ASSERT(c.open_registration);
	TT_EQ(c.send_rate, 5);
	/* A key the file doesn't have is refused, and the file is intact. */
	TT_ERR(config_file_set("ternd.conf", "no_such_key", "1"),
	    TERN_ENOTFOUND);
	TT_OK(config_load("ternd.conf", &c, err, sizeof(err)));
	TT_EQ(c.send_rate, 5);
	TT_ERR(config_file_set("missing.conf", "send_rate", "1"), TERN_EIO);
	teardown();
}

/* [federation] inbound_rate and inbound_burst: defaults, a value, and
 * bad input named with its line (zero, not a number, over the range). */
TT_CASE(config__load__federation_inbound_limit)
{
	struct node_config cfg;
	char err[CONFIG_ERR_MAX];

	setup();
	TT_OK(load_text("[node]\ndomain = example.org\n", &cfg, err));
	TT_EQ(cfg.fed_inbound_rate, 50000);
	TT_EQ(cfg.fed_inbound_burst, 100000);
	TT_OK(load_text("[node]\ndomain = example.org\n[federation]\n"
	    "inbound_rate = 200000\ninbound_burst = 400000\n", &cfg, err));
	TT_EQ(cfg.fed_inbound_rate, 200000);
	TT_EQ(cfg.fed_inbound_burst, 400000);
	load_err_has("[node]\ndomain = example.org\n[federation]\n"
	    "inbound_rate = 0\n", "ternd.conf:4");
	load_err_has("[node]\ndomain = example.org\n[federation]\n"
	    "inbound_rate = fast\n", "inbound_rate");
	load_err_has("[node]\ndomain = example.org\n[federation]\n"
	    "inbound_burst = 99999999999\n", "inbound_burst");
	load_err_has("[node]\ndomain = example.org\n[limits]\n"
	    "inbound_rate = 5\n", "belongs in [federation]");
	teardown();
}
