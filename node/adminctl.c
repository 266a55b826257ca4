/*
 * adminctl.c: blocking HTTP/1.1 client for the admin API (adminctl.h).
 */
#include "adminctl.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#define AC_RECV_START 16384 /* first size of the answer buffer */

static int64_t
ac_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ac_wait: until fd is ready for events, at most ADMINCTL_TIMEOUT_MS. */
static int
ac_wait(int fd, short events)
{
	int64_t end = ac_now_ms() + ADMINCTL_TIMEOUT_MS, left;
	struct pollfd p = {.fd = fd, .events = events};
	int r;

	for (;;) {
		left = end - ac_now_ms();
		if (left <= 0)
			return TERN_ETIMEOUT;
		r = poll(&p, 1, (int)left);
		if (r > 0)
			return 0; /* errors show in the next call on fd */
		if (r == 0)
			return TERN_ETIMEOUT;
		if (errno != EINTR)
			return TERN_EIO;
	}
}

/* ac_conn_err: what a failed connect means to the CLI. */
static int
ac_conn_err(int e)
{
	switch (e) {
	case ECONNREFUSED:
	case ENETUNREACH:
	case EHOSTUNREACH:
	case EADDRNOTAVAIL:
	case ECONNRESET:
		return TERN_EUNREACH;
	case ETIMEDOUT:
		return TERN_ETIMEOUT;
	default:
		return TERN_EIO;
	}
}

static int
ac_connect(const char *host, uint16_t port, int *fd_out)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	char h[INET6_ADDRSTRLEN];
	size_t n = strlen(host);
	socklen_t sl, el = sizeof(int);
	int fd, r, e = 0;

	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		host++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(h))
		return TERN_EINVAL;
	memcpy(h, host, n);
	h[n] = '\0';
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, h, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		sl = sizeof(*sin);
	} else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		sl = sizeof(*sin6);
	} else
		return TERN_EINVAL;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd < 0)
		return TERN_EIO;
	r = connect(fd, (struct sockaddr *)&ss, sl);
	if (r != 0 && errno != EINPROGRESS) {
		r = ac_conn_err(errno);
		close(fd);
		return r;
	}
	if (r != 0) {
		if ((r = ac_wait(fd, POLLOUT)) != 0) {
			close(fd);
			return r;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) != 0)
			e = errno;
		if (e != 0) {
			close(fd);
			return ac_conn_err(e);
		}
	}
	*fd_out = fd;
	return 0;
}

static int
ac_send_all(int fd, const char *p, size_t len)
{
	ssize_t w;
	int r;

	while (len > 0) {
		/* MSG_NOSIGNAL: a node that hangs up must not kill the CLI
		 * with SIGPIPE. */
		w = send(fd, p, len, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			len -= (size_t)w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if ((r = ac_wait(fd, POLLOUT)) != 0)
				return r;
			continue;
		}
		return TERN_EIO;
	}
	return 0;
}

/*
 * ac_parse_head: the status and, if given, the Content-Length of the
 * answer in buf[0..len). TERN_ETRUNC while the head is incomplete,
 * TERN_EFIELD if it is not HTTP.
 */
static int
ac_parse_head(const char *buf, size_t len, int *status, size_t *head_len,
    bool *has_cl, size_t *cl)
{
	const char *end = NULL, *l, *nl, *v;
	size_t i, ln;

	for (i = 3; i < len; i++) {
		if (memcmp(buf + i - 3, "\r\n\r\n", 4) == 0) {
			end = buf + i + 1;
			break;
		}
	}
	if (end == NULL)
		return len > HTTP_HEAD_MAX ? TERN_EFIELD : TERN_ETRUNC;
	if (end - buf < 12 || memcmp(buf, "HTTP/1.", 7) != 0 ||
	    buf[8] != ' ' || buf[9] < '1' || buf[9] > '5' ||
	    buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9')
		return TERN_EFIELD;
	*status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 +
	    (buf[11] - '0');
	*has_cl = false;
	*cl = 0;
	for (l = (const char *)memchr(buf, '\n', (size_t)(end - buf)) + 1;
	    l < end - 2;
	    l = nl + 1) {
		nl = (const char *)memchr(l, '\n', (size_t)(end - l));
		ln = (size_t)(nl - l);
		if (ln < 15 || strncasecmp(l, "content-length:", 15) != 0)
			continue;
		for (v = l + 15; v < nl && (*v == ' ' || *v == '\t'); v++)
			;
		if (v == nl || *v < '0' || *v > '9')
			return TERN_EFIELD;
		for (*cl = 0; v < nl && *v >= '0' && *v <= '9'; v++) {
			*cl = *cl * 10 + (size_t)(*v - '0');
			if (*cl > ADMINCTL_RESP_MAX)
				return TERN_ETOOBIG;
		}
		*has_cl = true;
	}
	*head_len = (size_t)(end - buf);
	return 0;
}

/*
 * ac_recv_answer: reads until the answer is complete (Content-Length) or
 * the node closes. On 0, *out is malloc'd with *len bytes.
 */
static int
ac_recv_answer(int fd, char **out, size_t *len, int *status,
    size_t *head_len)
{
	size_t cap = AC_RECV_START, n = 0, cl = 0, hl = 0;
	bool has_cl = false, head = false;
	char *buf, *p;
	ssize_t r;
	int rc;

	if ((buf = malloc(cap)) == NULL)
		return TERN_ENOMEM;
	for (;;) {
		if (head && has_cl && n >= hl + cl)
			break;
		if (n == cap) {
			if (cap >= ADMINCTL_RESP_MAX) {
				rc = TERN_ETOOBIG;
				goto fail;
			}
			cap = cap * 2 > ADMINCTL_RESP_MAX ? ADMINCTL_RESP_MAX :
			    cap * 2;
			if ((p = realloc(buf, cap)) == NULL) {
				rc = TERN_ENOMEM;
				goto fail;
			}
			buf = p;
		}
		r = recv(fd, buf + n, cap - n, 0);
		if (r > 0) {
			n += (size_t)r;
			if (!head) {
				rc = ac_parse_head(buf, n, status, &hl,
				    &has_cl, &cl);
				if (rc == 0)
					head = true;
				else if (rc != TERN_ETRUNC)
					goto fail;
			}
			continue;
		}
		if (r == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			if ((rc = ac_wait(fd, POLLIN)) != 0)
				goto fail;
			continue;
		}
		/* A reset after the whole answer is only rude. */
		if (head && has_cl && n >= hl + cl)
			break;
		rc = TERN_EIO;
		goto fail;
	}
	if (!head) {
		rc = n == 0 ? TERN_ETRUNC : TERN_EFIELD;
		goto fail;
	}
	if (has_cl && n < hl + cl) {
		rc = TERN_ETRUNC;
		goto fail;
	}
	*out = buf;
	*len = has_cl ? hl + cl : n;
	*head_len = hl;
	return 0;
fail:
	free(buf);
	return rc;
}

/* ac_token_ok / ac_path_ok: nothing that could end a header line early
 * or split the request line. */
static bool
ac_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static int
ac_request(const char *method, const char *host, uint16_t port,
    const char *token, const char *path, const void *body, size_t body_len,
    bool send_len, char **body_out, size_t *len_out, int *status_out)
{
	char *req = NULL, *ans = NULL, *copy;
	size_t cap, alen = 0, hl = 0;
	int fd = -1, n, rc, status = 0;

	if (host == NULL || path == NULL || path[0] != '/' ||
	    !ac_printable(path) || strlen(path) > HTTP_HEAD_MAX / 2 ||
	    (token != NULL && (!ac_printable(token) ||
	    strlen(token) > HTTP_TOKEN_MAX)) || body_len > HTTP_BODY_MAX ||
	    (body == NULL && body_len > 0) || status_out == NULL)
		return TERN_EINVAL;
	cap = HTTP_HEAD_MAX + body_len;
	if ((req = malloc(cap)) == NULL)
		return TERN_ENOMEM;
	n = snprintf(req, cap,
	    "%s %s HTTP/1.1\r\n"
	    "Host: %s%s%s:%u\r\n"
	    "User-Agent: ternd\r\n"
	    "Connection: close\r\n"
	    "%s%s%s",
	    method, path,
	    strchr(host, ':') != NULL && host[0] != '[' ? "[" : "", host,
	    strchr(host, ':') != NULL && host[0] != '[' ? "]" : "",
	    (unsigned)port,
	    token != NULL ? "Authorization: Bearer " : "",
	    token != NULL ? token : "", token != NULL ? "\r\n" : "");
	if (n > 0 && (size_t)n < cap && send_len)
		n += snprintf(req + n, cap - (size_t)n,
		    "Content-Length: %zu\r\n", body_len);
	if (n > 0 && (size_t)n < cap)
		n += snprintf(req + n, cap - (size_t)n, "\r\n");
	/* The head has HTTP_HEAD_MAX bytes of room (the path was capped at
	 * half of that); anything else is a cut head. */
	if (n < 0 || (size_t)n >= HTTP_HEAD_MAX) {
		rc = TERN_EINVAL;
		goto out;
	}
	if (body_len > 0)
		memcpy(req + n, body, body_len);
	if ((rc = ac_connect(host, port, &fd)) != 0)
		goto out;
	if ((rc = ac_send_all(fd, req, (size_t)n + body_len)) != 0)
		goto out;
	if ((rc = ac_recv_answer(fd, &ans, &alen, &status, &hl)) != 0)
		goto out;
	if (body_out != NULL) {
		if ((copy = malloc(alen - hl + 1)) == NULL) {
			rc = TERN_ENOMEM;
			goto out;
		}
		memcpy(copy, ans + hl, alen - hl);
		copy[alen - hl] = '\0';
		*body_out = copy;
	}
	if (len_out != NULL)
		*len_out = alen - hl;
	*status_out = status;
out:
	if (fd >= 0)
		close(fd);
	if (req != NULL) {
		sodium_memzero(req, cap); /* it holds the token */
		free(req);
	}
	free(ans);
	return rc;
}

int
adminctl_get(const char *host, uint16_t port, const char *token,
    const char *path_and_query, char **body_out, size_t *len_out,
    int *status_out)
{
	return ac_request("GET", host, port, token, path_and_query, NULL, 0,
	    false, body_out, len_out, status_out);
}

int
adminctl_post(const char *host, uint16_t port, const char *token,
    const char *path_and_query, const void *body, size_t body_len,
    char **body_out, size_t *len_out, int *status_out)
{
	return ac_request("POST", host, port, token, path_and_query, body,
	    body_len, true, body_out, len_out, status_out);
}
