/*
 * http.h: a tiny HTTP/1.1 server on libuv for the node's loopback
 * endpoint: Prometheus metrics at /metrics and the admin API that the
 * ternd command line talks to.
 *
 * It is deliberately small and strict, because it serves a single local
 * scraper and a single local CLI, never a browser or the internet:
 *   - one request per connection, answered with "Connection: close";
 *   - a request head of at most HTTP_HEAD_MAX bytes, lines ended by CRLF;
 *     a body of at most HTTP_BODY_MAX bytes, framed by Content-Length
 *     only (a Transfer-Encoding gets 411);
 *   - methods GET and POST (others get 501), versions 1.0 and 1.1;
 *   - at most HTTP_CONNS_MAX connections at once (the next gets 503) and
 *     a deadline of HTTP_TIMEOUT_MS for each, from accept to response.
 *
 * Authentication: every path except HTTP_PUBLIC_PATH ("/metrics") needs
 * "Authorization: Bearer <token>" with the token given to
 * http_server_set_token (compared in constant time). The server answers
 * 401 itself, before the handler runs, when it is missing or wrong, and
 * also when no token was set: admin paths fail closed.
 *
 * The request parser is a pure function (http_parse_request) so it can be
 * fuzzed apart from the sockets.
 *
 * Written by hand: the Debian HTTP server libraries (libmicrohttpd,
 * libevhtp, libh2o) bring their own threads or event loops; on our loop
 * with our caps the whole server is a few hundred lines. The parsing is
 * llhttp-like in spirit but much narrower.
 */
#ifndef TERN_HTTP_H
#define TERN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "buf.h"
#include "tern_err.h"

#define HTTP_HEAD_MAX 8192         /* request line and headers, CRLFCRLF */
#define HTTP_BODY_MAX 65536        /* request body */
#define HTTP_RESP_MAX (1u << 20)   /* response body */
#define HTTP_CONNS_MAX 64          /* connections at once */
#define HTTP_TIMEOUT_MS 5000       /* accept to response written */
#define HTTP_PATH_MAX 256          /* decoded path, without the NUL */
#define HTTP_QUERY_MAX 16          /* query parameters */
#define HTTP_KEY_MAX 64            /* decoded parameter name */
#define HTTP_VALUE_MAX 256         /* decoded parameter value */
#define HTTP_AUTH_MAX 256          /* Authorization header value */
#define HTTP_TOKEN_MAX 128         /* admin token */
#define HTTP_PUBLIC_PATH "/metrics" /* the only path without a token */

enum http_method {
	HTTP_GET = 1,
	HTTP_POST = 2
};

struct http_param {
	char key[HTTP_KEY_MAX + 1];     /* decoded, NUL-terminated */
	char value[HTTP_VALUE_MAX + 1]; /* decoded ('+' is a space) */
};

struct http_request {
	enum http_method method;        /* GET or POST */
	int version_minor;              /* HTTP/1.0 or HTTP/1.1 */
	char path[HTTP_PATH_MAX + 1];   /* percent-decoded, starts with '/' */
	unsigned nquery;                /* parameters in query */
	struct http_param query[HTTP_QUERY_MAX]; /* in order of appearance */
	char authorization[HTTP_AUTH_MAX + 1]; /* raw value, "" if none */
	bool has_content_length;        /* a Content-Length header came */
	size_t content_length;          /* its value (<= HTTP_BODY_MAX) */
	bool expect_continue;           /* "Expect: 100-continue" came */
	size_t head_len;                /* bytes up to and with CRLFCRLF */
	const char *body;               /* borrowed from the parsed buffer;
	                                   NULL when body_len is 0 */
	size_t body_len;                /* == content_length */
	bool authed;                    /* set by the server: a valid bearer
	                                   token came */
	const char *error;              /* on failure: why (static text) */
	int error_status;               /* on failure: the status to answer */
};

/*
 * http_parse_request: parses one request from buf[0..len). Returns
 *   0             a whole request (head and body) is there; bytes after
 *                 it are ignored;
 *   TERN_ETRUNC   more bytes are needed; if out->head_len is not 0 the
 *                 head is complete and the body needs head_len +
 *                 content_length bytes in all;
 *   TERN_EFIELD   malformed (bare LF, bad request line, header syntax,
 *                 bad percent-escape, decoded NUL, bad Content-Length);
 *   TERN_ETOOBIG  over a cap (head, path, parameter, count, body);
 *   TERN_ETYPE    a method other than GET and POST;
 *   TERN_EVERSION an HTTP version other than 1.0 and 1.1.
 * On an error out->error says why and out->error_status is the status to
 * answer (400, 411, 413, 414, 417, 431, 501, 505). Never reads past
 * buf[len - 1]; buf need not be NUL-terminated. out->body points into buf.
 */
int http_parse_request(const char *buf, size_t len, struct http_request *out)
    TERN_WUR;

/* http_request_param: the value of the first query parameter named key,
 * or NULL. */
const char *http_request_param(const struct http_request *req,
    const char *key);

/*
 * http_request_authorized: req carries "Authorization: Bearer <token>"
 * (scheme in any case) with exactly token, compared in constant time.
 * False for a NULL or empty token. The server applies this itself (see
 * above); handlers may read req->authed instead.
 */
bool http_request_authorized(const struct http_request *req,
    const char *token);

/* http_status_text: the reason phrase of a status ("Not Found"). */
const char *http_status_text(int status);

struct http_response {
	int status;                /* 200 unless the handler sets another */
	const char *content_type;  /* static text; default text/plain */
	struct buf_writer body;    /* up to HTTP_RESP_MAX bytes */
};

/* http_resp_printf: appends formatted text to resp->body; when it does
 * not fit, the writer's error latches (and the server answers 500). */
void http_resp_printf(struct http_response *resp, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * A handler answers one request, synchronously, on the loop thread, and
 * returns one of:
 *   0          answer resp->status (200 unless set) with resp's body;
 *   100..599   answer that status (if the body is empty and the status
 *              is an error, the body is the reason phrase);
 *   TERN_E*    answer a status for the code (404 for TERN_ENOTFOUND and
 *              TERN_ENOUSER, 400 for TERN_EINVAL and TERN_EFIELD, 403
 *              TERN_EDENIED, 409 TERN_EEXIST, 503 TERN_EBUSY, else 500)
 *              with the code's text as the body.
 * A body over HTTP_RESP_MAX (the writer's error latched) is answered 500.
 * req->authed tells whether the bearer token was valid; only
 * HTTP_PUBLIC_PATH reaches the handler without it. req and resp are
 * valid only during the call.
 */
typedef int (*http_handler)(void *arg, const struct http_request *req,
    struct http_response *resp);

struct http_server;

/*
 * http_server_start: listens on host (a numeric loopback address:
 * 127.0.0.0/8 or ::1; anything else is TERN_EINVAL) and port (0: any free
 * port, see http_server_port). Returns 0 and the server in *out, or
 * TERN_EINVAL, TERN_ENOMEM, TERN_EIO (cannot bind or listen). After a
 * failure nothing is left for the caller to close, though the loop may
 * need to run once to release a handle.
 */
int http_server_start(uv_loop_t *loop, const char *host, uint16_t port,
    http_handler handler, void *arg, struct http_server **out) TERN_WUR;

/* http_server_set_token: the admin token (copied; at most HTTP_TOKEN_MAX
 * bytes, else TERN_EINVAL). NULL or "" refuses every admin request. */
int http_server_set_token(struct http_server *s, const char *token)
    TERN_WUR;

/* http_server_set_timeout: the per-connection deadline for connections
 * accepted from now on (default HTTP_TIMEOUT_MS); for tests. */
void http_server_set_timeout(struct http_server *s, uint32_t ms);

/* http_server_port: the port listened on (useful after port 0). */
uint16_t http_server_port(const struct http_server *s);

/* http_server_conns: connections open now (refused ones not counted). */
uint32_t http_server_conns(const struct http_server *s);

/*
 * http_server_close: stops listening, closes every connection (answers
 * under way are cut), and calls cb(arg) (cb may be NULL) once every
 * handle is closed and the server is freed. s must not be used after the
 * call. Safe to call from inside a handler.
 */
void http_server_close(struct http_server *s, void (*cb)(void *arg),
    void *arg);

#endif
