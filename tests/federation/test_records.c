/*
 * test_records.c: `ternd dns-records` prints every record an operator
 * publishes, with the node's own key in the _tern-key TXT record. Runs
 * the built ternd in a fresh directory under /tmp.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sodium.h>

#include "keyfile.h"
#include "tt.h"

#define TERND_BIN TERN_BUILD_DIR "/node/ternd"

static char top[64];   /* mkdtemp */
static char dir[96];   /* TOP/node: ternd init makes it */

static void
rm_dir(void)
{
	DIR *d;
	struct dirent *e;
	char path[sizeof(dir) + 256 + 2];

	if (!top[0])
		return;
	if (!(d = opendir(dir))) {
		rmdir(top);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
	rmdir(top);
}

/* run: a command's stdout into out; its exit status is returned. */
static int
run(const char *cmd, char *out, size_t cap)
{
	FILE *p = popen(cmd, "r");
	size_t n = 0, r;

	TT_ASSERT(p != NULL);
	while (n + 1 < cap && (r = fread(out + n, 1, cap - 1 - n, p)) > 0)
		n += r;
	out[n] = '\0';
	return pclose(p);
}

TT_CASE(ternd_dns_records__prints_srv_fed_and_key)
{
	char cmd[512], out[8192], path[256], err[KEYFILE_ERR_MAX];
	char b64[KEYFILE_B64_MAX], want[256];
	uint8_t priv[32], pub[32];
	int st;

	TT_ASSERT(sodium_init() >= 0);
	snprintf(top, sizeof(top), "/tmp/tern-records-XXXXXX");
	TT_ASSERT(mkdtemp(top) != NULL);
	snprintf(dir, sizeof(dir), "%s/node", top);
	atexit(rm_dir);
	snprintf(cmd, sizeof(cmd), "%s init --domain rec.test --dir %s "
	    "--listen 127.0.0.1:7390 2>&1", TERND_BIN, dir);
	st = run(cmd, out, sizeof(out));
	if (st != 0)
		tt_fail(__FILE__, __LINE__, "ternd init: %s", out);
	snprintf(cmd, sizeof(cmd), "%s dns-records -c %s/ternd.conf",
	    TERND_BIN, dir);
	st = run(cmd, out, sizeof(out));
	TT_EQ(st, 0);

	snprintf(path, sizeof(path), "%s/node.key", dir);
	TT_OK(keyfile_load(path, priv, pub, err, sizeof(err)));
	sodium_memzero(priv, sizeof(priv));
	TT_OK(keyfile_pub_base64(pub, b64, sizeof(b64)));

	TT_ASSERT(strstr(out, " IN SRV 10 10 7390 HOST.\n"));
	TT_ASSERT(strstr(out, "_tern._tcp.rec.test. 3600 IN SRV"));
	TT_ASSERT(strstr(out, "_tern-fed._tcp.rec.test. 3600 IN SRV"));
	TT_ASSERT(strstr(out, " IN SRV 10 10 7371 HOST.\n"));
	TT_ASSERT(strstr(out, "federation\n; is off; 7371 is the standard port"));
	snprintf(want, sizeof(want),
	    "_tern-key.rec.test. 3600 IN TXT \"v=tern1 k=%s\"\n", b64);
	if (!strstr(out, want))
		tt_fail(__FILE__, __LINE__, "no \"%s\" in:\n%s", want, out);
	TT_ASSERT(strstr(out, "IN AAAA"));
}
