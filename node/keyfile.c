/*
 * keyfile.c: the node key and admin token files (keyfile.h).
 */
#include "keyfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

static void kf_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
kf_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

int
keyfile_hex(const uint8_t *bin, size_t n, char *out, size_t cap)
{
	if (n > (SIZE_MAX - 1) / 2 || cap < 2 * n + 1)
		return TERN_ETOOBIG;
	sodium_bin2hex(out, cap, bin, n);
	return 0;
}

int
keyfile_unhex(const char *hex, size_t len, uint8_t *out, size_t n)
{
	const char *end;
	size_t got;

	if (n > SIZE_MAX / 2 || len != 2 * n)
		return TERN_EFIELD;
	/* No ignore set: a space or colon is as wrong as any other byte. */
	if (sodium_hex2bin(out, n, hex, len, NULL, &got, &end) != 0 ||
	    got != n || end != hex + len) {
		sodium_memzero(out, n);
		return TERN_EFIELD;
	}
	return 0;
}

int
keyfile_pub_base64(const uint8_t pub[KEYFILE_KEY_LEN], char *out, size_t cap)
{
	if (cap < KEYFILE_B64_MAX)
		return TERN_ETOOBIG;
	sodium_bin2base64(out, cap, pub, KEYFILE_KEY_LEN,
	    sodium_base64_VARIANT_ORIGINAL);
	return 0;
}

/* kf_sync_dir: makes the new directory entry for path durable; without
 * it a crash can lose the name even though the file's data was synced. */
static int
kf_sync_dir(const char *path)
{
	char dir[4096];
	const char *slash = strrchr(path, '/');
	size_t n;
	int fd, r;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else {
		n = (size_t)(slash - path);
		if (n >= sizeof(dir))
			return TERN_EIO;
		memcpy(dir, path, n);
		dir[n] = '\0';
	}
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return TERN_EIO;
	r = fsync(fd);
	close(fd);
	return r == 0 ? 0 : TERN_EIO;
}

/*
 * kf_write_secret: creates path with the 64 hex characters in hex and a
 * newline; never overwrites. A failure removes what was made, so a retry
 * does not meet a half-written file.
 */
static int
kf_write_secret(const char *path, const char hex[KEYFILE_HEX_LEN])
{
	char line[KEYFILE_HEX_LEN + 1];
	size_t off = 0;
	ssize_t w;
	int fd, rc = TERN_EIO;

	/* O_EXCL also refuses a symlink planted at path. */
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    0600);
	if (fd < 0)
		return errno == EEXIST ? TERN_EEXIST : TERN_EIO;
	memcpy(line, hex, KEYFILE_HEX_LEN);
	line[KEYFILE_HEX_LEN] = '\n';
	/* The umask may have taken the owner's bits; it cannot have added
	 * any, but say exactly what we want. */
	if (fchmod(fd, 0600) != 0)
		goto out;
	while (off < sizeof(line)) {
		w = write(fd, line + off, sizeof(line) - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			goto out;
		off += (size_t)w;
	}
	if (fsync(fd) != 0)
		goto out;
	rc = 0;
out:
	sodium_memzero(line, sizeof(line));
	if (close(fd) != 0)
		rc = TERN_EIO;
	if (rc == 0)
		rc = kf_sync_dir(path);
	if (rc != 0)
		unlink(path);
	return rc;
}

/*
 * kf_read_secret: the 64 hex characters of the secret file at path, after
 * the ownership and mode checks. hex is secret: the caller wipes it.
 */
static int
kf_read_secret(const char *path, const char *what,
    char hex[KEYFILE_HEX_LEN], char *err, size_t errlen)
{
	char buf[KEYFILE_HEX_LEN + 2];
	struct stat st;
	size_t n = 0;
	ssize_t r;
	int fd, rc = TERN_EKEY, i;

	/* Symlinks are followed (secret stores mount them so); the checks
	 * below apply to the file they lead to. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		kf_err(err, errlen, "cannot open %s %s: %s", what, path,
		    strerror(errno));
		return TERN_EIO;
	}
	if (fstat(fd, &st) != 0) {
		kf_err(err, errlen, "cannot stat %s %s: %s", what, path,
		    strerror(errno));
		rc = TERN_EIO;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		kf_err(err, errlen, "%s %s is not a regular file", what, path);
		goto out;
	}
	if (st.st_uid != geteuid()) {
		kf_err(err, errlen, "%s %s is owned by uid %u, not by the "
		    "user running ternd (uid %u)", what, path,
		    (unsigned)st.st_uid, (unsigned)geteuid());
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		kf_err(err, errlen, "permissions %04o for %s %s are too open: "
		    "it must not be accessible by group or others "
		    "(chmod 600 %s)", (unsigned)(st.st_mode & 07777), what,
		    path, path);
		goto out;
	}
	/* One byte more than a valid file has, to notice a longer one. */
	while (n < sizeof(buf)) {
		r = read(fd, buf + n, sizeof(buf) - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			kf_err(err, errlen, "cannot read %s %s: %s", what,
			    path, strerror(errno));
			rc = TERN_EIO;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (!(n == KEYFILE_HEX_LEN ||
	    (n == KEYFILE_HEX_LEN + 1 && buf[KEYFILE_HEX_LEN] == '\n'))) {
		kf_err(err, errlen, "%s %s is malformed: expected %d hex "
		    "characters and a newline, found %s%zu bytes", what, path,
		    KEYFILE_HEX_LEN, n == sizeof(buf) ? "at least " : "", n);
		goto out;
	}
	for (i = 0; i < KEYFILE_HEX_LEN; i++) {
		char c = buf[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F'))) {
			/* Say where, not what: the byte is part of a secret. */
			kf_err(err, errlen, "%s %s is malformed: character "
			    "%d is not a hex digit", what, path, i + 1);
			goto out;
		}
	}
	memcpy(hex, buf, KEYFILE_HEX_LEN);
	rc = 0;
out:
	sodium_memzero(buf, sizeof(buf));
	close(fd);
	return rc;
}

int
keyfile_create(const char *path, uint8_t pub_out[KEYFILE_KEY_LEN])
{
	uint8_t priv[KEYFILE_KEY_LEN];
	char hex[KEYFILE_HEX_LEN + 1];
	int rc;

	if (path == NULL || pub_out == NULL)
		return TERN_EINVAL;
	if (sodium_init() < 0)
		return TERN_ENOMEM;
	randombytes_buf(priv, sizeof(priv));
	/* X25519 clamps the scalar when it is used, as Noise expects, so
	 * the file holds the 32 random bytes as drawn. */
	if (crypto_scalarmult_base(pub_out, priv) != 0) {
		rc = TERN_EKEY;
		goto out;
	}
	if ((rc = keyfile_hex(priv, sizeof(priv), hex, sizeof(hex))) != 0)
		goto out;
	rc = kf_write_secret(path, hex);
out:
	sodium_memzero(priv, sizeof(priv));
	sodium_memzero(hex, sizeof(hex));
	if (rc != 0)
		sodium_memzero(pub_out, KEYFILE_KEY_LEN);
	return rc;
}

int
keyfile_load(const char *path, uint8_t priv_out[KEYFILE_KEY_LEN],
    uint8_t pub_out[KEYFILE_KEY_LEN], char *err, size_t errlen)
{
	char hex[KEYFILE_HEX_LEN];
	int rc;

	if (path == NULL || priv_out == NULL || pub_out == NULL)
		return TERN_EINVAL;
	if (sodium_init() < 0)
		return TERN_ENOMEM;
	if ((rc = kf_read_secret(path, "node key", hex, err, errlen)) != 0)
		goto out;
	if (keyfile_unhex(hex, sizeof(hex), priv_out, KEYFILE_KEY_LEN) != 0 ||
	    crypto_scalarmult_base(pub_out, priv_out) != 0) {
		kf_err(err, errlen, "node key %s is not a usable X25519 key",
		    path);
		rc = TERN_EKEY;
	}
out:
	sodium_memzero(hex, sizeof(hex));
	if (rc != 0) {
		sodium_memzero(priv_out, KEYFILE_KEY_LEN);
		sodium_memzero(pub_out, KEYFILE_KEY_LEN);
	}
	return rc;
}

int
keyfile_token_create(const char *path)
{
	uint8_t tok[KEYFILE_TOKEN_LEN];
	char hex[KEYFILE_HEX_LEN + 1];
	int rc;

	if (path == NULL)
		return TERN_EINVAL;
	if (sodium_init() < 0)
		return TERN_ENOMEM;
	randombytes_buf(tok, sizeof(tok));
	if ((rc = keyfile_hex(tok, sizeof(tok), hex, sizeof(hex))) == 0)
		rc = kf_write_secret(path, hex);
	sodium_memzero(tok, sizeof(tok));
	sodium_memzero(hex, sizeof(hex));
	return rc;
}

int
keyfile_token_load(const char *path, char *out, size_t cap, char *err,
    size_t errlen)
{
	char hex[KEYFILE_HEX_LEN];
	int rc;

	if (path == NULL || out == NULL || cap < KEYFILE_HEX_LEN + 1)
		return TERN_EINVAL;
	out[0] = '\0';
	if ((rc = kf_read_secret(path, "admin token", hex, err, errlen)) != 0)
		return rc;
	memcpy(out, hex, KEYFILE_HEX_LEN);
	out[KEYFILE_HEX_LEN] = '\0';
	sodium_memzero(hex, sizeof(hex));
	return 0;
}
