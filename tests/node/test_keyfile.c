/*
 * test_keyfile.c: the node key and admin token files: round trip, the
 * mode and ownership checks, malformed files, no overwriting, base64 and
 * hex.
 */
#define _GNU_SOURCE /* nftw's FTW_PHYS */
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "keyfile.h"
#include "tt.h"

static char tdir[64];

static void
setup(void)
{
	TT_ASSERT(sodium_init() >= 0);
	snprintf(tdir, sizeof(tdir), "/tmp/tern-keyfile-XXXXXX");
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

/* write_secret: path with exactly text, mode 0600 (replacing it). */
static void
write_secret(const char *path, const char *text, size_t len)
{
	int fd;

	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	TT_ASSERT(fd >= 0);
	TT_EQ(write(fd, text, len), (long long)len);
	TT_OK(close(fd));
}

/* load_fails: keyfile_load gives code and an err containing want. */
static void
load_fails(const char *path, int code, const char *want)
{
	uint8_t priv[32], pub[32];
	char err[KEYFILE_ERR_MAX];

	memset(priv, 0xaa, sizeof(priv));
	err[0] = '\0';
	TT_ERR(keyfile_load(path, priv, pub, err, sizeof(err)), code);
	if (strstr(err, want) == NULL)
		tt_fail(__FILE__, __LINE__, "error '%s' lacks '%s'", err, want);
	/* Nothing secret is left behind on failure. */
	for (size_t i = 0; i < sizeof(priv); i++)
		TT_EQ(priv[i], 0);
}

static const char hex64[] =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

TT_CASE(keyfile__create_load__round_trip)
{
	uint8_t pub[32], priv[32], pub2[32], pub3[32];
	char err[KEYFILE_ERR_MAX], *text;
	struct stat st;
	size_t len;

	setup();
	TT_OK(keyfile_create("node.key", pub));
	TT_OK(stat("node.key", &st));
	TT_EQ(st.st_mode & 0777, 0600);
	text = tt_read_file("node.key", &len);
	TT_ASSERT(text != NULL);
	TT_EQ(len, 65);
	TT_EQ(text[64], '\n');
	for (int i = 0; i < 64; i++)
		TT_ASSERT((text[i] >= '0' && text[i] <= '9') ||
		    (text[i] >= 'a' && text[i] <= 'f'));
	free(text);
	TT_OK(keyfile_load("node.key", priv, pub2, err, sizeof(err)));
	TT_MEMEQ(pub, pub2, 32);
	TT_OK(crypto_scalarmult_base(pub3, priv));
	TT_MEMEQ(pub, pub3, 32);
	/* A read-only file is fine too. */
	TT_OK(chmod("node.key", 0400));
	TT_OK(keyfile_load("node.key", priv, pub2, NULL, 0));
	TT_MEMEQ(pub, pub2, 32);
	/* Two keys differ. */
	TT_OK(keyfile_create("other.key", pub2));
	TT_ASSERT(memcmp(pub, pub2, 32) != 0);
	sodium_memzero(priv, sizeof(priv));
	teardown();
}

TT_CASE(keyfile__load__known_key)
{
	uint8_t priv[32], pub[32], want[32];

	setup();
	write_secret("k", hex64, 64); /* no newline: accepted */
	TT_OK(keyfile_load("k", priv, pub, NULL, 0));
	for (int i = 0; i < 32; i++)
		TT_EQ(priv[i], i);
	TT_OK(crypto_scalarmult_base(want, priv));
	TT_MEMEQ(pub, want, 32);
	teardown();
}

TT_CASE(keyfile__load__open_modes_refused)
{
	static const mode_t bad[] = {0644, 0640, 0604, 0620, 0602, 0610,
	    0601, 0660, 0666};
	uint8_t pub[32];
	char want[64];

	setup();
	TT_OK(keyfile_create("node.key", pub));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		TT_OK(chmod("node.key", bad[i]));
		snprintf(want, sizeof(want), "permissions %04o for node key "
		    "node.key are too open", (unsigned)bad[i]);
		load_fails("node.key", TERN_EKEY, want);
		load_fails("node.key", TERN_EKEY, "chmod 600 node.key");
	}
	teardown();
}

TT_CASE(keyfile__load__malformed_refused)
{
	char buf[80];

	setup();
	write_secret("k", hex64, 63);
	load_fails("k", TERN_EKEY, "malformed: expected 64 hex characters "
	    "and a newline, found 63 bytes");
	write_secret("k", "", 0);
	load_fails("k", TERN_EKEY, "found 0 bytes");
	snprintf(buf, sizeof(buf), "%s\n\n", hex64);
	write_secret("k", buf, 66);
	load_fails("k", TERN_EKEY, "found at least 66 bytes");
	snprintf(buf, sizeof(buf), "%s\r\n", hex64);
	write_secret("k", buf, 66);
	load_fails("k", TERN_EKEY, "malformed");
	snprintf(buf, sizeof(buf), "%s ", hex64);
	write_secret("k", buf, 65);
	load_fails("k", TERN_EKEY, "malformed");
	memcpy(buf, hex64, 65);
	buf[4] = 'g';
	write_secret("k", buf, 64);
	load_fails("k", TERN_EKEY, "character 5 is not a hex digit");
	memcpy(buf, hex64, 65);
	buf[63] = ' ';
	write_secret("k", buf, 64);
	load_fails("k", TERN_EKEY, "character 64 is not a hex digit");
	load_fails("missing.key", TERN_EIO, "cannot open node key "
	    "missing.key");
	TT_OK(mkdir("d", 0700));
	load_fails("d", TERN_EKEY, "is not a regular file");
	teardown();
}

TT_CASE(keyfile__load__foreign_owner_refused)
{
	uint8_t pub[32];

	if (geteuid() != 0) {
		printf("skipped: needs root to give a file away\n");
		return;
	}
	setup();
	TT_OK(keyfile_create("node.key", pub));
	TT_OK(chown("node.key", 12345, (gid_t)-1));
	load_fails("node.key", TERN_EKEY, "is owned by uid 12345");
	teardown();
}

TT_CASE(keyfile__create__refuses_existing)
{
	uint8_t pub[32];
	char *text;

	setup();
	write_secret("node.key", hex64, 64);
	TT_ERR(keyfile_create("node.key", pub), TERN_EEXIST);
	text = tt_read_file("node.key", NULL);
	TT_ASSERT(text != NULL && strcmp(text, hex64) == 0);
	free(text);
	/* A dangling symlink is not followed either. */
	TT_OK(symlink("target.key", "link.key"));
	TT_ERR(keyfile_create("link.key", pub), TERN_EEXIST);
	TT_ASSERT(access("target.key", F_OK) != 0);
	TT_ERR(keyfile_token_create("node.key"), TERN_EEXIST);
	TT_ERR(keyfile_create("no/such/dir/k", pub), TERN_EIO);
	teardown();
}

TT_CASE(keyfile__pub_base64__standard_with_padding)
{
	uint8_t pub[32];
	char out[KEYFILE_B64_MAX];

	for (int i = 0; i < 32; i++)
		pub[i] = (uint8_t)i;
	TT_OK(keyfile_pub_base64(pub, out, sizeof(out)));
	TT_ASSERT(strcmp(out, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	    == 0);
	memset(pub, 0xff, sizeof(pub));
	TT_OK(keyfile_pub_base64(pub, out, sizeof(out)));
	TT_ASSERT(strcmp(out, "//////////////////////////////////////////8=")
	    == 0);
	TT_ERR(keyfile_pub_base64(pub, out, 44), TERN_ETOOBIG);
}

TT_CASE(keyfile__hex__helpers)
{
	uint8_t b[4] = {0xde, 0xad, 0xbe, 0xef}, o[4];
	char h[9];

	TT_OK(keyfile_hex(b, 4, h, sizeof(h)));
	TT_ASSERT(strcmp(h, "deadbeef") == 0);
	TT_ERR(keyfile_hex(b, 4, h, 8), TERN_ETOOBIG);
	TT_OK(keyfile_unhex("DEADbeef", 8, o, 4));
	TT_MEMEQ(o, b, 4);
	TT_ERR(keyfile_unhex("deadbee", 7, o, 4), TERN_EFIELD);
	TT_ERR(keyfile_unhex("deadbeef00", 10, o, 4), TERN_EFIELD);
	TT_ERR(keyfile_unhex("deadbeeg", 8, o, 4), TERN_EFIELD);
	TT_ERR(keyfile_unhex("dead:eef", 8, o, 4), TERN_EFIELD);
}

TT_CASE(keyfile__token__create_load)
{
	char tok[KEYFILE_HEX_LEN + 1], tok2[KEYFILE_HEX_LEN + 1];
	char err[KEYFILE_ERR_MAX];
	struct stat st;

	setup();
	TT_OK(keyfile_token_create("admin.token"));
	TT_OK(stat("admin.token", &st));
	TT_EQ(st.st_mode & 0777, 0600);
	TT_OK(keyfile_token_load("admin.token", tok, sizeof(tok), err,
	    sizeof(err)));
	TT_EQ(strlen(tok), 64);
	for (int i = 0; i < 64; i++)
		TT_ASSERT((tok[i] >= '0' && tok[i] <= '9') ||
		    (tok[i] >= 'a' && tok[i] <= 'f'));
	TT_OK(keyfile_token_create("b.token"));
	TT_OK(keyfile_token_load("b.token", tok2, sizeof(tok2), NULL, 0));
	TT_ASSERT(strcmp(tok, tok2) != 0);
	TT_ERR(keyfile_token_load("admin.token", tok2, 64, NULL, 0),
	    TERN_EINVAL);
	TT_OK(chmod("admin.token", 0640));
	err[0] = '\0';
	TT_ERR(keyfile_token_load("admin.token", tok2, sizeof(tok2), err,
	    sizeof(err)), TERN_EKEY);
	TT_ASSERT(strstr(err, "permissions 0640 for admin token "
	    "admin.token are too open") != NULL);
	TT_ASSERT(strcmp(tok2, "") == 0);
	teardown();
}
