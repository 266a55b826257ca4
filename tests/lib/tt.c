/*
 * tt.c: the case registry and runner behind tt.h.
 */
#include "tt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* tt_bindable: whether 127.0.0.1:port can be bound for socktype now. */
static int
tt_bindable(int socktype, uint16_t port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, socktype | SOCK_CLOEXEC, 0), ok;

	if (fd < 0)
		return 0;
	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(port);
	ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

uint16_t
tt_free_port(void)
{
	/* Ports handed out before, by this process: a case draws several
	 * (a node's client and federation ports, a proxy's) before it binds
	 * any, so a draw must not repeat an earlier one. */
	enum { TT_GIVEN_MAX = 256 };
	static uint16_t given[TT_GIVEN_MAX];
	static size_t ngiven;
	unsigned lo = 32768, hi = 60999, base = 10000;
	uint16_t r;
	FILE *f;

	/* The kernel's range for port 0 and outgoing connections. */
	if ((f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) !=
	    NULL) {
		if (fscanf(f, "%u %u", &lo, &hi) != 2)
			lo = 32768;
		fclose(f);
	}
	if (lo <= base + 1000)
		tt_fail(__FILE__, __LINE__, "no ports below the ephemeral "
		    "range (it starts at %u)", lo);
	for (int i = 0; i < 1000; i++) {
		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			tt_fail(__FILE__, __LINE__, "getrandom failed");
		r = (uint16_t)(base + r % (lo - base));
		for (size_t k = 0; k < ngiven && k < TT_GIVEN_MAX; k++)
			if (given[k] == r)
				r = 0;
		/* Both kinds: a server may take the port for either (dnsmasq
		 * binds both). */
		if (r != 0 && tt_bindable(SOCK_STREAM, r) &&
		    tt_bindable(SOCK_DGRAM, r)) {
			given[ngiven++ % TT_GIVEN_MAX] = r;
			return r;
		}
	}
	tt_fail(__FILE__, __LINE__, "no free port found");
}
