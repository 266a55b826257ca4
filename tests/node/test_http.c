/*
 * test_http.c: the loopback HTTP server: its request parser on good and
 * bad input, and a real server on 127.0.0.1 with the blocking adminctl
 * client (and raw sockets) in a second thread: metrics without a token,
 * admin paths with and without one, deadlines, the connection cap, and
 * a clean close.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "adminctl.h"
#include "http.h"
#include "tt.h"
#include "tt_uv.h"

#define TOKEN "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

/* --- the parser ---------------------------------------------------------- */

static struct http_request R;

static int
parse(const char *s)
{
	return http_parse_request(s, strlen(s), &R);
}

TT_CASE(http__parse__simple_get)
{
	const char *s = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

	TT_OK(parse(s));
	TT_EQ(R.method, HTTP_GET);
	TT_EQ(R.version_minor, 1);
	TT_ASSERT(strcmp(R.path, "/metrics") == 0);
	TT_EQ(R.nquery, 0);
	TT_EQ(R.head_len, strlen(s));
	TT_ASSERT(R.body == NULL);
	TT_EQ(R.body_len, 0);
	TT_EQ(R.has_content_length, false);
	TT_ASSERT(strcmp(R.authorization, "") == 0);
	TT_ASSERT(R.error == NULL);
}

TT_CASE(http__parse__query_is_split_and_decoded)
{
	TT_OK(parse("GET /admin/users?name=al%20ice&x=a+b&flag&&empty=&"
	    "e%3Dq=%2B%2b&u=%C3%A9 HTTP/1.0\r\n\r\n"));
	TT_EQ(R.version_minor, 0);
	TT_ASSERT(strcmp(R.path, "/admin/users") == 0);
	TT_EQ(R.nquery, 6);
	TT_ASSERT(strcmp(R.query[0].key, "name") == 0);
	TT_ASSERT(strcmp(R.query[0].value, "al ice") == 0);
	TT_ASSERT(strcmp(R.query[1].value, "a b") == 0);
	TT_ASSERT(strcmp(R.query[2].key, "flag") == 0);
	TT_ASSERT(strcmp(R.query[2].value, "") == 0);
	TT_ASSERT(strcmp(R.query[3].key, "empty") == 0);
	TT_ASSERT(strcmp(R.query[4].key, "e=q") == 0);
	TT_ASSERT(strcmp(R.query[4].value, "++") == 0);
	TT_ASSERT(strcmp(R.query[5].value, "\xc3\xa9") == 0);
	TT_ASSERT(strcmp(http_request_param(&R, "x"), "a b") == 0);
	TT_ASSERT(http_request_param(&R, "nope") == NULL);
	/* In the path '+' stays, %2F decodes. */
	TT_OK(parse("GET /a+b/c%2Fd? HTTP/1.1\r\n\r\n"));
	TT_ASSERT(strcmp(R.path, "/a+b/c/d") == 0);
	TT_EQ(R.nquery, 0);
}

TT_CASE(http__parse__post_with_body_and_headers)
{
	const char *s = "POST /admin/x HTTP/1.1\r\n"
	    "authorization:   Bearer " TOKEN "  \r\n"
	    "content-LENGTH: 5\r\n"
	    "Expect: 100-Continue\r\n"
	    "X-Other: \tanything goes\t\r\n"
	    "\r\nhelloEXTRA";

	TT_OK(parse(s));
	TT_EQ(R.method, HTTP_POST);
	TT_ASSERT(strcmp(R.authorization, "Bearer " TOKEN) == 0);
	TT_EQ(R.has_content_length, true);
	TT_EQ(R.content_length, 5);
	TT_EQ(R.expect_continue, true);
	TT_EQ(R.body_len, 5);
	TT_ASSERT(R.body == s + R.head_len);
	TT_MEMEQ(R.body, "hello", 5);
}

TT_CASE(http__parse__incomplete_needs_more)
{
	const char *s = "POST /admin/x HTTP/1.1\r\nContent-Length: 10\r\n\r\n"
	    "0123456789";
	size_t len = strlen(s), head = len - 10, i;

	for (i = 0; i < len; i++) {
		TT_ERR(http_parse_request(s, i, &R), TERN_ETRUNC);
		/* Once the head is whole, the parser says how much is due. */
		if (i >= head) {
			TT_EQ(R.head_len, head);
			TT_EQ(R.content_length, 10);
		} else
			TT_EQ(R.head_len, 0);
	}
	TT_OK(http_parse_request(s, len, &R));
	TT_ERR(http_parse_request(NULL, 0, &R), TERN_ETRUNC);
}

TT_CASE(http__parse__caps_reached_exactly_are_fine)
{
	static char buf[HTTP_HEAD_MAX + HTTP_BODY_MAX + 64];
	char q[512] = "", path[HTTP_PATH_MAX + 1];
	size_t n;
	int i;

	for (i = 0; i < HTTP_QUERY_MAX; i++)
		snprintf(q + strlen(q), sizeof(q) - strlen(q), "%sk%d=v",
		    i ? "&" : "", i);
	snprintf(buf, sizeof(buf), "GET /?%s HTTP/1.1\r\n\r\n", q);
	TT_OK(parse(buf));
	TT_EQ(R.nquery, HTTP_QUERY_MAX);

	memset(path, 'p', HTTP_PATH_MAX);
	path[0] = '/';
	path[HTTP_PATH_MAX] = '\0';
	snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\n\r\n", path);
	TT_OK(parse(buf));
	TT_EQ(strlen(R.path), HTTP_PATH_MAX);

	/* A head of exactly HTTP_HEAD_MAX bytes. */
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
	memset(buf + n, 'x', HTTP_HEAD_MAX - n - 4);
	memcpy(buf + HTTP_HEAD_MAX - 4, "\r\n\r\n", 5);
	TT_OK(parse(buf));
	TT_EQ(R.head_len, HTTP_HEAD_MAX);

	/* A body of exactly HTTP_BODY_MAX bytes. */
	n = (size_t)snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\n"
	    "Content-Length: %d\r\n\r\n", HTTP_BODY_MAX);
	memset(buf + n, 'b', HTTP_BODY_MAX);
	TT_OK(http_parse_request(buf, n + HTTP_BODY_MAX, &R));
	TT_EQ(R.body_len, HTTP_BODY_MAX);
}

TT_CASE(http__request_authorized__bearer_token_only)
{
	TT_OK(parse("GET / HTTP/1.1\r\nAuthorization: Bearer " TOKEN
	    "\r\n\r\n"));
	TT_ASSERT(http_request_authorized(&R, TOKEN));
	TT_ASSERT(!http_request_authorized(&R, TOKEN "0"));
	TT_ASSERT(!http_request_authorized(&R, "0123"));
	TT_ASSERT(!http_request_authorized(&R, ""));
	TT_ASSERT(!http_request_authorized(&R, NULL));
	TT_OK(parse("GET / HTTP/1.1\r\nAuthorization: BEARER  " TOKEN
	    "\r\n\r\n"));
	TT_ASSERT(http_request_authorized(&R, TOKEN));
	TT_OK(parse("GET / HTTP/1.1\r\nAuthorization: Basic " TOKEN
	    "\r\n\r\n"));
	TT_ASSERT(!http_request_authorized(&R, TOKEN));
	TT_OK(parse("GET / HTTP/1.1\r\nAuthorization: " TOKEN "\r\n\r\n"));
	TT_ASSERT(!http_request_authorized(&R, TOKEN));
	TT_OK(parse("GET / HTTP/1.1\r\n\r\n"));
	TT_ASSERT(!http_request_authorized(&R, TOKEN));
}

struct bad {
	const char *in;     /* the request */
	int code;           /* what the parser returns */
	int status;         /* what the server answers */
	const char *why;    /* in R.error */
};

static const struct bad bads[] = {
	{"GET / HTTP/1.1\n\n", TERN_EFIELD, 400, "line not ended by CRLF"},
	{"GET / HTTP/1.1\r\nHost: x\n\r\n", TERN_EFIELD, 400,
	    "line not ended by CRLF"},
	{"GET / HTTP/1.1\rHost: x", TERN_EFIELD, 400,
	    "CR not followed by LF"},
	{"\r\n\r\n", TERN_EFIELD, 400, "malformed request line"},
	{"GET /\r\n\r\n", TERN_EFIELD, 400, "malformed request line"},
	{"G@T / HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "malformed request line"},
	{" GET / HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "malformed request line"},
	{"GET / HTTX/1.1\r\n\r\n", TERN_EFIELD, 400, "malformed request line"},
	{"GET / HTTP/1.1 \r\n\r\n", TERN_EFIELD, 400,
	    "malformed request line"},
	{"BREW / HTTP/1.1\r\n\r\n", TERN_ETYPE, 501, "method not implemented"},
	{"get / HTTP/1.1\r\n\r\n", TERN_ETYPE, 501, "method not implemented"},
	{"GET / HTTP/2.0\r\n\r\n", TERN_EVERSION, 505,
	    "only HTTP/1.0 and HTTP/1.1"},
	{"GET / HTTP/1.2\r\n\r\n", TERN_EVERSION, 505,
	    "only HTTP/1.0 and HTTP/1.1"},
	{"GET  / HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "malformed request line"},
	{"GET http://x/ HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "request target must be a path"},
	{"GET * HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "request target must be a path"},
	{"GET /a#b HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad character in the request target"},
	{"GET /\x7f HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad character in the request target"},
	{"GET /a%zz HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad percent-escape in the path"},
	{"GET /a%4 HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad percent-escape in the path"},
	{"GET /a% HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad percent-escape in the path"},
	{"GET /a%00 HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad percent-escape in the path"},
	{"GET /?a=%G1 HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad percent-escape in the query"},
	{"GET /?a=%00 HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad percent-escape in the query"},
	{"GET /?%zz=1 HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "bad percent-escape in the query"},
	{"GET /?=x HTTP/1.1\r\n\r\n", TERN_EFIELD, 400,
	    "query parameter without a name"},
	{"GET /?a&b&c&d&e&f&g&h&i&j&k&l&m&n&o&p&q HTTP/1.1\r\n\r\n",
	    TERN_ETOOBIG, 400, "more than 16 query parameters"},
	{"GET / HTTP/1.1\r\n folded: x\r\n\r\n", TERN_EFIELD, 400,
	    "folded header lines"},
	{"GET / HTTP/1.1\r\nHost x\r\n\r\n", TERN_EFIELD, 400,
	    "header line without ':'"},
	{"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", TERN_EFIELD, 400,
	    "malformed header name"},
	{"GET / HTTP/1.1\r\nHost : x\r\n\r\n", TERN_EFIELD, 400,
	    "malformed header name"},
	{"GET / HTTP/1.1\r\n: x\r\n\r\n", TERN_EFIELD, 400,
	    "malformed header name"},
	{"GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n", TERN_EFIELD, 400,
	    "control character in a header value"},
	{"POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n", TERN_EFIELD, 400,
	    "Content-Length is not a number"},
	{"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", TERN_EFIELD, 400,
	    "Content-Length is not a number"},
	{"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n", TERN_EFIELD, 400,
	    "Content-Length is not a number"},
	{"POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", TERN_EFIELD, 400,
	    "Content-Length is not a number"},
	{"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n", TERN_EFIELD, 400,
	    "Content-Length is not a number"},
	{"POST / HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n", TERN_EFIELD, 400,
	    "Content-Length is not a number"},
	{"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
	    TERN_EFIELD, 400, "Content-Length given twice"},
	{"POST / HTTP/1.1\r\nContent-Length: 65537\r\n\r\n", TERN_ETOOBIG,
	    413, "request body over 64 KiB"},
	{"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999999\r\n"
	    "\r\n", TERN_ETOOBIG, 413, "request body over 64 KiB"},
	{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", TERN_EFIELD,
	    411, "Transfer-Encoding is not supported"},
	{"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n", TERN_EFIELD, 417,
	    "unsupported expectation"},
	{"GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n",
	    TERN_EFIELD, 400, "Authorization given twice"},
};

#define WITH_NUL "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"

TT_CASE(http__parse__bad_requests_say_why)
{
	size_t i, len;
	int r;

	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		len = strlen(bads[i].in);
		r = http_parse_request(bads[i].in, len, &R);
		if (r != bads[i].code || R.error_status != bads[i].status ||
		    R.error == NULL || strstr(R.error, bads[i].why) == NULL)
			tt_fail(__FILE__, __LINE__, "request %zu: got %d %d "
			    "'%s', want %d %d '%s'", i, r, R.error_status,
			    R.error ? R.error : "(null)", bads[i].code,
			    bads[i].status, bads[i].why);
	}
	/* A NUL byte cannot sit in the table's C strings. */
	TT_ERR(http_parse_request(WITH_NUL, sizeof(WITH_NUL) - 1, &R),
	    TERN_EFIELD);
	TT_ASSERT(strcmp(R.error, "NUL byte in the request head") == 0);
}

TT_CASE(http__parse__oversized_parts)
{
	static char buf[HTTP_HEAD_MAX + 1024];
	char big[600];
	size_t n;

	/* A head that never ends within 8 KiB. */
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
	memset(buf + n, 'x', sizeof(buf) - n);
	TT_ERR(http_parse_request(buf, HTTP_HEAD_MAX - 1, &R), TERN_ETRUNC);
	TT_ERR(http_parse_request(buf, HTTP_HEAD_MAX, &R), TERN_ETOOBIG);
	TT_EQ(R.error_status, 431);
	TT_ERR(http_parse_request(buf, sizeof(buf), &R), TERN_ETOOBIG);
	TT_ASSERT(strcmp(R.error, "request head over 8 KiB") == 0);

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	snprintf(buf, sizeof(buf), "GET /%.300s HTTP/1.1\r\n\r\n", big);
	TT_ERR(parse(buf), TERN_ETOOBIG);
	TT_EQ(R.error_status, 414);
	TT_ASSERT(strcmp(R.error, "path too long") == 0);
	snprintf(buf, sizeof(buf), "GET /?%.65s=1 HTTP/1.1\r\n\r\n", big);
	TT_ERR(parse(buf), TERN_ETOOBIG);
	TT_EQ(R.error_status, 414);
	snprintf(buf, sizeof(buf), "GET /?k=%.257s HTTP/1.1\r\n\r\n", big);
	TT_ERR(parse(buf), TERN_ETOOBIG);
	TT_ASSERT(strcmp(R.error, "query parameter too long") == 0);
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nAuthorization: %.257s"
	    "\r\n\r\n", big);
	TT_ERR(parse(buf), TERN_ETOOBIG);
	TT_EQ(R.error_status, 431);
}

/* --- a real server ------------------------------------------------------- */

static struct {
	uv_loop_t loop;
	struct http_server *srv;   /* NULL once closing */
	uint16_t port;
	uv_async_t async;          /* client thread -> loop: close */
	atomic_int close_sent;     /* the async was sent */
	uv_thread_t thread;        /* runs the client */
	void (*client)(void);      /* what it runs */
	int closed;                /* server close callbacks */
	int calls;                 /* handler calls (loop thread) */
} T;

static void
srv_closed(void *arg)
{
	T.closed++;
}

static int
handler(void *arg, const struct http_request *req, struct http_response *r)
{
	const char *x;

	T.calls++;
	if (strcmp(req->path, "/metrics") == 0) {
		r->content_type = "text/plain; version=0.0.4";
		http_resp_printf(r, "tern_up 1\n");
		return 0;
	}
	if (strcmp(req->path, "/admin/echo") == 0) {
		x = http_request_param(req, "x");
		http_resp_printf(r, "%s authed=%d x=%s body=%.*s\n",
		    req->method == HTTP_GET ? "GET" : "POST", req->authed,
		    x ? x : "-", (int)req->body_len,
		    req->body ? req->body : "");
		return 0;
	}
	if (strcmp(req->path, "/admin/big") == 0) {
		for (int i = 0; i < 20000; i++)
			http_resp_printf(r, "%080d\n", i);
		return 0;
	}
	if (strcmp(req->path, "/admin/missing") == 0)
		return TERN_ENOTFOUND;
	if (strcmp(req->path, "/admin/conflict") == 0)
		return 409; /* a status: the body is its reason phrase */
	if (strcmp(req->path, "/admin/created") == 0) {
		http_resp_printf(r, "made\n");
		return 201;
	}
	if (strcmp(req->path, "/admin/close") == 0) {
		http_server_close(T.srv, srv_closed, NULL);
		T.srv = NULL;
		return 0;
	}
	r->status = 404;
	http_resp_printf(r, "no such path\n");
	return 0;
}

static void
async_cb(uv_async_t *a)
{
	if (T.srv != NULL) {
		http_server_close(T.srv, srv_closed, NULL);
		T.srv = NULL;
	}
	uv_close((uv_handle_t *)a, NULL);
}

/* request_close: from the client thread, once. */
static void
request_close(void)
{
	if (atomic_exchange(&T.close_sent, 1) == 0)
		uv_async_send(&T.async);
}

static void
client_main(void *arg)
{
	T.client();
	request_close();
}

static void
server_setup(uint32_t timeout_ms)
{
	memset(&T, 0, sizeof(T));
	TT_OK(uv_loop_init(&T.loop));
	TT_OK(http_server_start(&T.loop, "127.0.0.1", 0, handler, NULL,
	    &T.srv));
	TT_OK(http_server_set_token(T.srv, TOKEN));
	if (timeout_ms != 0)
		http_server_set_timeout(T.srv, timeout_ms);
	T.port = http_server_port(T.srv);
	TT_ASSERT(T.port != 0);
}

/* run: the loop here, fn in a thread; returns when all is closed. */
static void
run(void (*fn)(void))
{
	T.client = fn;
	TT_OK(uv_async_init(&T.loop, &T.async, async_cb));
	TT_OK(uv_thread_create(&T.thread, client_main, NULL));
	tt_uv_close(&T.loop);
	TT_OK(uv_thread_join(&T.thread));
	TT_EQ(T.closed, 1);
}

/* A blocking socket to the server, with a 3 s receive timeout so a
 * failing case cannot hang. */
static int
raw_connect(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	    .sin_port = htons(T.port)};
	struct timeval tv = {.tv_sec = 3};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	TT_ASSERT(fd >= 0);
	TT_OK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)));
	TT_OK(connect(fd, (struct sockaddr *)&a, sizeof(a)));
	return fd;
}

static void
raw_send(int fd, const char *s, size_t n)
{
	TT_EQ(send(fd, s, n, MSG_NOSIGNAL), (long long)n);
}

/* raw_read: until EOF (or want bytes, if want); NUL-terminated. */
static size_t
raw_read(int fd, char *buf, size_t cap, size_t want)
{
	size_t n = 0;
	ssize_t r;

	while (n < cap - 1 && (want == 0 || n < want)) {
		r = recv(fd, buf + n, cap - 1 - n, 0);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	return n;
}

/* raw_exchange: one request on a fresh connection; the whole answer. */
static void
raw_exchange(const char *req, size_t len, char *buf, size_t cap)
{
	int fd = raw_connect();

	raw_send(fd, req, len);
	raw_read(fd, buf, cap, 0);
	close(fd);
}

static void
get(const char *token, const char *path, int want_status,
    const char *want_body)
{
	char *body = NULL;
	size_t len = 0;
	int status = 0;

	TT_OK(adminctl_get("127.0.0.1", T.port, token, path, &body, &len,
	    &status));
	if (status != want_status || strcmp(body, want_body) != 0)
		tt_fail(__FILE__, __LINE__, "GET %s: %d '%s', want %d '%s'",
		    path, status, body, want_status, want_body);
	TT_EQ(len, strlen(body));
	free(body);
}

static void
client_metrics_and_auth(void)
{
	char *body = NULL;
	size_t len = 0;
	int status = 0;

	get(NULL, "/metrics", 200, "tern_up 1\n");
	get(TOKEN, "/metrics", 200, "tern_up 1\n");
	get(NULL, "/admin/echo", 401, "missing or wrong admin token\n");
	get("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeF",
	    "/admin/echo", 401, "missing or wrong admin token\n");
	get("0123", "/admin/echo", 401, "missing or wrong admin token\n");
	get(TOKEN "0", "/admin/echo", 401, "missing or wrong admin token\n");
	/* Even an unknown path needs the token: no probing for paths. */
	get(NULL, "/nope", 401, "missing or wrong admin token\n");
	get(TOKEN, "/admin/echo?x=hello+world%21", 200,
	    "GET authed=1 x=hello world! body=\n");
	get(TOKEN, "/nope", 404, "no such path\n");
	get(TOKEN, "/admin/missing", 404, "not found\n");
	get(TOKEN, "/admin/big", 500, "response too large\n");
	get(TOKEN, "/admin/conflict", 409, "Conflict\n");
	get(TOKEN, "/admin/created", 201, "made\n");
	TT_OK(adminctl_post("127.0.0.1", T.port, TOKEN, "/admin/echo", "ping",
	    4, &body, &len, &status));
	TT_EQ(status, 200);
	TT_ASSERT(strcmp(body, "POST authed=1 x=- body=ping\n") == 0);
	free(body);
	/* The body may be discarded. */
	TT_OK(adminctl_post("127.0.0.1", T.port, TOKEN, "/admin/echo", NULL,
	    0, NULL, NULL, &status));
	TT_EQ(status, 200);
}

TT_CASE(http__server__metrics_and_admin_auth)
{
	server_setup(0);
	run(client_metrics_and_auth);
	TT_EQ(T.calls, 10);
}

static void
client_raw_requests(void)
{
	static char buf[8192];
	const char *req;
	int fd;

	/* Bad requests are answered with the reason and closed. */
	raw_exchange("GET /metrics HTTP/1.1\n\n", 23, buf, sizeof(buf));
	TT_ASSERT(strncmp(buf, "HTTP/1.1 400 Bad Request\r\n", 26) == 0);
	TT_ASSERT(strstr(buf, "\r\nConnection: close\r\n") != NULL);
	TT_ASSERT(strstr(buf, "\r\n\r\nline not ended by CRLF\n") != NULL);
	req = "POST /admin/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
	raw_exchange(req, strlen(req), buf, sizeof(buf));
	TT_ASSERT(strncmp(buf, "HTTP/1.1 411 Length Required\r\n", 30) == 0);
	req = "POST /admin/echo HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
	raw_exchange(req, strlen(req), buf, sizeof(buf));
	TT_ASSERT(strncmp(buf, "HTTP/1.1 413 Content Too Large\r\n", 32) == 0);
	req = "DELETE /admin/echo HTTP/1.1\r\n\r\n";
	raw_exchange(req, strlen(req), buf, sizeof(buf));
	TT_ASSERT(strncmp(buf, "HTTP/1.1 501 Not Implemented\r\n", 30) == 0);
	req = "GET /admin/echo HTTP/1.1\r\n\r\n";
	raw_exchange(req, strlen(req), buf, sizeof(buf));
	TT_ASSERT(strncmp(buf, "HTTP/1.1 401 Unauthorized\r\n", 27) == 0);
	TT_ASSERT(strstr(buf, "\r\nWWW-Authenticate: Bearer\r\n") != NULL);

	/* One request per connection: a second one is never answered. */
	req = "GET /metrics HTTP/1.1\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n";
	raw_exchange(req, strlen(req), buf, sizeof(buf));
	TT_ASSERT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	TT_ASSERT(strstr(buf + 17, "HTTP/1.1") == NULL);
	TT_ASSERT(strstr(buf, "\r\nContent-Type: text/plain; version=0.0.4"
	    "\r\nContent-Length: 10\r\n") != NULL);

	/* Expect: 100-continue gets its interim answer before the body. */
	fd = raw_connect();
	req = "POST /admin/echo?x=1 HTTP/1.1\r\nAuthorization: bearer " TOKEN
	    "\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
	raw_send(fd, req, strlen(req));
	raw_read(fd, buf, sizeof(buf), 25);
	TT_ASSERT(strcmp(buf, "HTTP/1.1 100 Continue\r\n\r\n") == 0);
	raw_send(fd, "abc", 3);
	raw_read(fd, buf, sizeof(buf), 0);
	TT_ASSERT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	TT_ASSERT(strstr(buf, "\r\n\r\nPOST authed=1 x=1 body=abc\n") != NULL);
	close(fd);

	/* A body that comes in pieces. */
	fd = raw_connect();
	req = "POST /admin/echo HTTP/1.0\r\nAuthorization: Bearer " TOKEN
	    "\r\nContent-Length: 6\r\n\r\nab";
	raw_send(fd, req, strlen(req));
	usleep(20000);
	raw_send(fd, "cd", 2);
	usleep(20000);
	raw_send(fd, "efGARBAGE", 9);
	raw_read(fd, buf, sizeof(buf), 0);
	TT_ASSERT(strstr(buf, "\r\n\r\nPOST authed=1 x=- body=abcdef\n") !=
	    NULL);
	close(fd);
}

TT_CASE(http__server__raw_requests)
{
	server_setup(0);
	run(client_raw_requests);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
client_slow(void)
{
	char buf[256];
	int64_t t0;
	int fd;

	fd = raw_connect();
	t0 = now_ms();
	raw_send(fd, "GET /metrics HTTP/1.1\r\nHo", 25);
	/* Nothing is answered; the deadline closes the connection. */
	TT_EQ(raw_read(fd, buf, sizeof(buf), 0), 0);
	TT_ASSERT(now_ms() - t0 >= 250);
	TT_ASSERT(now_ms() - t0 < 2000);
	close(fd);
	/* A client that never sends anything meets the same end. */
	fd = raw_connect();
	TT_EQ(raw_read(fd, buf, sizeof(buf), 0), 0);
	close(fd);
}

TT_CASE(http__server__deadline_closes_slow_client)
{
	server_setup(300);
	run(client_slow);
}

static void
client_cap(void)
{
	static char buf[4096];
	int fds[HTTP_CONNS_MAX], fd, i;

	/* Fill every slot with a request that is not finished. */
	for (i = 0; i < HTTP_CONNS_MAX; i++) {
		fds[i] = raw_connect();
		raw_send(fds[i], "GET /metrics HTTP/1.1\r\n", 23);
	}
	/* The next one is told to come back later. */
	fd = raw_connect();
	raw_read(fd, buf, sizeof(buf), 0);
	TT_ASSERT(strncmp(buf, "HTTP/1.1 503 Service Unavailable\r\n", 34) ==
	    0);
	TT_ASSERT(strstr(buf, "\r\n\r\ntoo many connections; try again\n") !=
	    NULL);
	close(fd);
	/* The ones holding slots still work. */
	raw_send(fds[0], "\r\n", 2);
	raw_read(fds[0], buf, sizeof(buf), 0);
	TT_ASSERT(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0);
	for (i = 0; i < HTTP_CONNS_MAX; i++)
		close(fds[i]);
	/* Once they are gone there is room again (the server sees the
	 * hang-ups a moment later). */
	for (i = 0; i < 100; i++) {
		char *body = NULL;
		int status = 0;
		if (adminctl_get("127.0.0.1", T.port, NULL, "/metrics", &body,
		    NULL, &status) == 0 && status == 200) {
			free(body);
			break;
		}
		free(body);
		usleep(10000);
	}
	TT_ASSERT(i < 100);
}

TT_CASE(http__server__connection_cap_refuses_the_extra_one)
{
	server_setup(4000);
	run(client_cap);
}

static void
client_close_mid_request(void)
{
	char buf[256];
	int fd;

	fd = raw_connect();
	raw_send(fd, "GET /metrics HTTP/1.1\r\n", 23);
	usleep(50000); /* let the server accept it */
	request_close();
	/* The server's close cuts the connection. */
	TT_EQ(raw_read(fd, buf, sizeof(buf), 0), 0);
	close(fd);
}

TT_CASE(http__server__close_cuts_open_connections)
{
	server_setup(0);
	run(client_close_mid_request);
}

static void
client_close_from_handler(void)
{
	char *body = NULL;
	int status = 0;

	/* The handler closes the server: the answer is cut. */
	TT_ERR(adminctl_get("127.0.0.1", T.port, TOKEN, "/admin/close", &body,
	    NULL, &status), TERN_ETRUNC);
	TT_ASSERT(body == NULL);
	/* Nothing listens any more. */
	TT_ERR(adminctl_get("127.0.0.1", T.port, NULL, "/metrics", &body, NULL,
	    &status), TERN_EUNREACH);
}

TT_CASE(http__server__close_from_inside_a_handler)
{
	server_setup(0);
	run(client_close_from_handler);
}

static int
dummy_handler(void *arg, const struct http_request *req,
    struct http_response *resp)
{
	return 0;
}

TT_CASE(http__server__start_refuses_bad_addresses)
{
	struct http_server *s = NULL, *s2 = NULL;
	char longtok[HTTP_TOKEN_MAX + 2];
	uv_loop_t loop;
	int r;

	TT_OK(uv_loop_init(&loop));
	TT_ERR(http_server_start(&loop, "0.0.0.0", 0, dummy_handler, NULL,
	    &s), TERN_EINVAL);
	TT_ERR(http_server_start(&loop, "10.1.2.3", 0, dummy_handler, NULL,
	    &s), TERN_EINVAL);
	TT_ERR(http_server_start(&loop, "::", 0, dummy_handler, NULL, &s),
	    TERN_EINVAL);
	TT_ERR(http_server_start(&loop, "localhost", 0, dummy_handler, NULL,
	    &s), TERN_EINVAL);
	TT_ERR(http_server_start(&loop, "127.0.0.1", 0, NULL, NULL, &s),
	    TERN_EINVAL);
	/* A port in use. */
	TT_OK(http_server_start(&loop, "127.0.0.1", 0, dummy_handler, NULL,
	    &s));
	TT_ERR(http_server_start(&loop, "127.0.0.1", http_server_port(s),
	    dummy_handler, NULL, &s2), TERN_EIO);
	TT_ASSERT(s2 == NULL);
	memset(longtok, 'a', sizeof(longtok) - 1);
	longtok[sizeof(longtok) - 1] = '\0';
	TT_ERR(http_server_set_token(s, longtok), TERN_EINVAL);
	http_server_close(s, NULL, NULL);
	/* IPv6 loopback, where the host has it. */
	r = http_server_start(&loop, "::1", 0, dummy_handler, NULL, &s);
	TT_ASSERT(r == 0 || r == TERN_EIO);
	if (r == 0) {
		TT_ASSERT(http_server_port(s) != 0);
		http_server_close(s, NULL, NULL);
	}
	tt_uv_close(&loop);
}

TT_CASE(adminctl__get__closed_port_is_unreach)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	char *body = NULL;
	int fd, status = -1;
	uint16_t port;

	/* A port that was just free: bound, never listened on. */
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	TT_OK(bind(fd, (struct sockaddr *)&a, sizeof(a)));
	TT_OK(getsockname(fd, (struct sockaddr *)&a, &al));
	port = ntohs(a.sin_port);
	TT_ERR(adminctl_get("127.0.0.1", port, NULL, "/metrics", &body, NULL,
	    &status), TERN_EUNREACH);
	/* IPv6, bracketed or not (unreachable too where the host has no
	 * IPv6). */
	TT_ERR(adminctl_post("::1", port, TOKEN, "/x", "a", 1, &body, NULL,
	    &status), TERN_EUNREACH);
	TT_ERR(adminctl_post("[::1]", port, TOKEN, "/x", "a", 1, &body, NULL,
	    &status), TERN_EUNREACH);
	TT_ASSERT(body == NULL);
	TT_EQ(status, -1);
	close(fd);
}

TT_CASE(adminctl__request__bad_arguments)
{
	char *body = NULL;
	int status;

	TT_ERR(adminctl_get("127.0.0.1", 1, NULL, "metrics", &body, NULL,
	    &status), TERN_EINVAL);
	TT_ERR(adminctl_get("127.0.0.1", 1, NULL, "/a b", &body, NULL,
	    &status), TERN_EINVAL);
	TT_ERR(adminctl_get("127.0.0.1", 1, NULL, "/a\r\nX: y", &body, NULL,
	    &status), TERN_EINVAL);
	TT_ERR(adminctl_get("127.0.0.1", 1, "tok\r\nX: y", "/a", &body, NULL,
	    &status), TERN_EINVAL);
	TT_ERR(adminctl_get("localhost", 1, NULL, "/a", &body, NULL,
	    &status), TERN_EINVAL);
	TT_ERR(adminctl_post("127.0.0.1", 1, NULL, "/a", NULL, 5, &body, NULL,
	    &status), TERN_EINVAL);
	TT_ASSERT(body == NULL);
}

/* A listener that never accepts: the connection completes (the kernel's
 * backlog), the request goes out, and no answer ever comes. */
TT_CASE(adminctl__get__silent_server_times_out)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	char *body = NULL;
	int64_t t0;
	int fd, status;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	TT_OK(bind(fd, (struct sockaddr *)&a, sizeof(a)));
	TT_OK(listen(fd, 4));
	TT_OK(getsockname(fd, (struct sockaddr *)&a, &al));
	t0 = now_ms();
	TT_ERR(adminctl_get("127.0.0.1", ntohs(a.sin_port), NULL, "/metrics",
	    &body, NULL, &status), TERN_ETIMEOUT);
	TT_ASSERT(now_ms() - t0 >= ADMINCTL_TIMEOUT_MS - 100);
	TT_ASSERT(now_ms() - t0 < ADMINCTL_TIMEOUT_MS + 1000);
	close(fd);
}
