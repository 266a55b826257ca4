/*
 * tt.c: the case registry and runner behind tt.h.
 */
#include "tt.h"

#include <stdarg.h>

#define TT_MAX_CASES 512

struct tt_case {
	const char *name; /* as written in TT_CASE */
	tt_fn fn;         /* the case body */
};

static struct tt_case tt_cases[TT_MAX_CASES];
static int tt_ncases;

void
tt_register(const char *name, tt_fn fn)
{
	if (tt_ncases == TT_MAX_CASES) {
		fprintf(stderr, "tt: too many cases\n");
		abort();
	}
	tt_cases[tt_ncases].name = name;
	tt_cases[tt_ncases].fn = fn;
	tt_ncases++;
}

void
tt_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "FAIL %s:%d: ", file, line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stdout);
	exit(1);
}

long
tt_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t cap)
{
	size_t i;

	if (hexlen % 2 != 0 || hexlen / 2 > cap)
		return -1;
	for (i = 0; i < hexlen / 2; i++) {
		unsigned v = 0;
		for (int j = 0; j < 2; j++) {
			char c = hex[2 * i + j];
			v <<= 4;
			if (c >= '0' && c <= '9')
				v |= (unsigned)(c - '0');
			else if (c >= 'a' && c <= 'f')
				v |= (unsigned)(c - 'a' + 10);
			else if (c >= 'A' && c <= 'F')
				v |= (unsigned)(c - 'A' + 10);
			else
				return -1;
		}
		out[i] = (uint8_t)v;
	}
	return (long)(hexlen / 2);
}

char *
tt_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (f == NULL)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto out;
	buf = malloc((size_t)n + 1);
	if (buf == NULL)
		goto out;
	if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
		goto out;
	}
	buf[n] = '\0';
	if (len)
		*len = (size_t)n;
out:
	fclose(f);
	return buf;
}

int
main(int argc, char **argv)
{
	int i;

	if (argc == 2 && strcmp(argv[1], "--list") == 0) {
		for (i = 0; i < tt_ncases; i++)
			printf("%s\n", tt_cases[i].name);
		return 0;
	}
	if (argc == 2) {
		for (i = 0; i < tt_ncases; i++) {
			if (strcmp(argv[1], tt_cases[i].name) == 0) {
				tt_cases[i].fn();
				printf("ok %s\n", tt_cases[i].name);
				return 0;
			}
		}
		fprintf(stderr, "tt: no case named %s\n", argv[1]);
		return 2;
	}
	for (i = 0; i < tt_ncases; i++) {
		tt_cases[i].fn();
		printf("ok %s\n", tt_cases[i].name);
	}
	return 0;
}
