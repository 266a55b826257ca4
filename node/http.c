/*
 * http.c: the loopback HTTP/1.1 server and its request parser (http.h).
 *
 * A connection goes READING -> WRITING -> LINGERING -> CLOSING. In
 * READING its bytes collect in one buffer, which starts at HTTP_HEAD_MAX
 * and grows once, to exactly head + Content-Length, when the head is
 * complete; the buffer is parsed again after every read (a head is at
 * most 8 KiB, and one request per connection makes that cheap and keeps
 * the parser stateless). Once the answer is written the server sends FIN
 * and keeps reading, throwing the bytes away, until the client closes or
 * HTTP_LINGER_MS pass: closing with unread bytes in the socket would
 * send a RST, and a RST can destroy the answer before the client reads
 * it.
 */
#include "http.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>

#define HTTP_LINGER_MS 1000      /* wait for the client's FIN */
#define HTTP_RESP_HEAD_MAX 512   /* response status line and headers */
#define HTTP_ERRBODY_MAX 128     /* body of an error answer */
#define HTTP_BACKLOG 128         /* listen(2) queue */
#define HTTP_DISCARD 4096        /* read buffer for ignored bytes */

/* --- the parser ---------------------------------------------------------- */

/* Per-call state that struct http_request does not need to keep. */
struct hp_state {
	bool has_auth;       /* Authorization seen */
};

static int
hp_fail(struct http_request *out, int code, int status, const char *why)
{
	out->error = why;
	out->error_status = status;
	return code;
}

/* hp_tchar: a token character (RFC 9110 5.6.2), for methods and header
 * names. */
static bool
hp_tchar(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int
hp_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * hp_decode: percent-decodes s[0..n) into out (cap bytes, NUL added);
 * with plus, '+' is a space (form encoding in queries). TERN_EFIELD for a
 * bad escape or an encoded NUL (the result is used as a C string),
 * TERN_ETOOBIG when it does not fit.
 */
static int
hp_decode(const char *s, size_t n, bool plus, char *out, size_t cap)
{
	size_t i, o = 0;
	unsigned char c;
	int hi, lo;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c == '%') {
			if (n - i < 3 ||
			    (hi = hp_hex((unsigned char)s[i + 1])) < 0 ||
			    (lo = hp_hex((unsigned char)s[i + 2])) < 0)
				return TERN_EFIELD;
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0)
				return TERN_EFIELD;
			i += 2;
		} else if (plus && c == '+')
			c = ' ';
		if (o + 1 >= cap)
			return TERN_ETOOBIG;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static int
hp_query(const char *q, size_t n, struct http_request *out)
{
	struct http_param *p;
	const char *seg, *eq;
	size_t start = 0, end, klen;
	int r;

	for (;;) {
		for (end = start; end < n && q[end] != '&'; end++)
			;
		if (end > start) {
			if (out->nquery == HTTP_QUERY_MAX)
				return hp_fail(out, TERN_ETOOBIG, 400,
				    "more than 16 query parameters");
			p = &out->query[out->nquery];
			seg = q + start;
			eq = memchr(seg, '=', end - start);
			klen = eq != NULL ? (size_t)(eq - seg) : end - start;
			if (klen == 0)
				return hp_fail(out, TERN_EFIELD, 400,
				    "query parameter without a name");
			r = hp_decode(seg, klen, true, p->key, sizeof(p->key));
			if (r == 0 && eq != NULL)
				r = hp_decode(eq + 1, end - start - klen - 1,
				    true, p->value, sizeof(p->value));
			if (r == TERN_EFIELD)
				return hp_fail(out, r, 400,
				    "bad percent-escape in the query");
			if (r != 0)
				return hp_fail(out, r, 414,
				    "query parameter too long");
			out->nquery++;
		}
		if (end >= n)
			return 0;
		start = end + 1;
	}
}

static int
hp_target(const char *t, size_t n, struct http_request *out)
{
	const char *q;
	size_t i, plen;
	int r;

	if (n == 0 || t[0] != '/')
		return hp_fail(out, TERN_EFIELD, 400,
		    "request target must be a path starting with '/'");
	for (i = 0; i < n; i++)
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f
		    || t[i] == '#')
			return hp_fail(out, TERN_EFIELD, 400,
			    "bad character in the request target");
	q = memchr(t, '?', n);
	plen = q != NULL ? (size_t)(q - t) : n;
	r = hp_decode(t, plen, false, out->path, sizeof(out->path));
	if (r == TERN_EFIELD)
		return hp_fail(out, r, 400, "bad percent-escape in the path");
	if (r != 0)
		return hp_fail(out, r, 414, "path too long");
	if (q == NULL)
		return 0;
	return hp_query(q + 1, n - plen - 1, out);
}

static int
hp_request_line(const char *l, size_t n, struct http_request *out)
{
	const char *sp1, *sp2, *v;
	size_t i, mlen, vlen;

	if ((sp1 = memchr(l, ' ', n)) == NULL ||
	    (sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - l))) == NULL)
		return hp_fail(out, TERN_EFIELD, 400,
		    "malformed request line");
	mlen = (size_t)(sp1 - l);
	if (mlen == 0)
		return hp_fail(out, TERN_EFIELD, 400,
		    "malformed request line");
	for (i = 0; i < mlen; i++)
		if (!hp_tchar((unsigned char)l[i]))
			return hp_fail(out, TERN_EFIELD, 400,
			    "malformed request line");
	v = sp2 + 1;
	vlen = n - (size_t)(v - l);
	if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' ||
	    v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
		return hp_fail(out, TERN_EFIELD, 400,
		    "malformed request line");
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return hp_fail(out, TERN_EVERSION, 505,
		    "only HTTP/1.0 and HTTP/1.1 are supported");
	out->version_minor = v[7] - '0';
	if (mlen == 3 && memcmp(l, "GET", 3) == 0)
		out->method = HTTP_GET;
	else if (mlen == 4 && memcmp(l, "POST", 4) == 0)
		out->method = HTTP_POST;
	else
		return hp_fail(out, TERN_ETYPE, 501,
		    "method not implemented (GET and POST only)");
	return hp_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), out);
}

static bool
hp_name_is(const char *name, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(name, want, n) == 0;
}

static int
hp_header(const char *l, size_t n, struct http_request *out,
    struct hp_state *st)
{
	const char *colon, *v;
	size_t i, nlen, vlen;
	size_t cl = 0;

	if (l[0] == ' ' || l[0] == '\t')
		return hp_fail(out, TERN_EFIELD, 400,
		    "folded header lines are not accepted");
	if ((colon = memchr(l, ':', n)) == NULL)
		return hp_fail(out, TERN_EFIELD, 400,
		    "header line without ':'");
	nlen = (size_t)(colon - l);
	if (nlen == 0)
		return hp_fail(out, TERN_EFIELD, 400, "malformed header name");
	for (i = 0; i < nlen; i++)
		if (!hp_tchar((unsigned char)l[i]))
			return hp_fail(out, TERN_EFIELD, 400,
			    "malformed header name");
	v = colon + 1;
	vlen = n - nlen - 1;
	while (vlen > 0 && (v[0] == ' ' || v[0] == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	for (i = 0; i < vlen; i++)
		if (((unsigned char)v[i] < 0x20 && v[i] != '\t') ||
		    v[i] == 0x7f)
			return hp_fail(out, TERN_EFIELD, 400,
			    "control character in a header value");

	if (hp_name_is(l, nlen, "authorization")) {
		if (st->has_auth)
			return hp_fail(out, TERN_EFIELD, 400,
			    "Authorization given twice");
		if (vlen > HTTP_AUTH_MAX)
			return hp_fail(out, TERN_ETOOBIG, 431,
			    "Authorization header too long");
		st->has_auth = true;
		memcpy(out->authorization, v, vlen);
		out->authorization[vlen] = '\0';
	} else if (hp_name_is(l, nlen, "content-length")) {
		/* A second one, even equal, is how requests get smuggled. */
		if (out->has_content_length)
			return hp_fail(out, TERN_EFIELD, 400,
			    "Content-Length given twice");
		if (vlen == 0)
			return hp_fail(out, TERN_EFIELD, 400,
			    "Content-Length is not a number");
		for (i = 0; i < vlen; i++) {
			if (v[i] < '0' || v[i] > '9')
				return hp_fail(out, TERN_EFIELD, 400,
				    "Content-Length is not a number");
			/* Checked per digit, so it cannot overflow. */
			cl = cl * 10 + (size_t)(v[i] - '0');
			if (cl > HTTP_BODY_MAX)
				return hp_fail(out, TERN_ETOOBIG, 413,
				    "request body over 64 KiB");
		}
		out->has_content_length = true;
		out->content_length = cl;
	} else if (hp_name_is(l, nlen, "transfer-encoding")) {
		return hp_fail(out, TERN_EFIELD, 411,
		    "Transfer-Encoding is not supported; send Content-Length");
	} else if (hp_name_is(l, nlen, "expect")) {
		if (!hp_name_is(v, vlen, "100-continue"))
			return hp_fail(out, TERN_EFIELD, 417,
			    "unsupported expectation");
		out->expect_continue = true;
	}
	return 0;
}

int
http_parse_request(const char *buf, size_t len, struct http_request *out)
{
	struct hp_state st = {0};
	const char *l, *cr;
	size_t i, lim, head_end = 0, pos, n;
	int r;

	memset(out, 0, sizeof(*out));
	if (buf == NULL)
		len = 0;
	/* Find the end of the head, refusing bare LF and CR on the way: a
	 * parser that accepts them reads a head differently from one that
	 * does not, which is the root of request smuggling. */
	lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
	for (i = 0; i < lim; i++) {
		if (buf[i] == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				return hp_fail(out, TERN_EFIELD, 400,
				    "line not ended by CRLF");
			if (i >= 3 && buf[i - 2] == '\n' &&
			    buf[i - 3] == '\r') {
				head_end = i + 1;
				break;
			}
		} else if (buf[i] == '\r') {
			if (i + 1 < len && buf[i + 1] != '\n')
				return hp_fail(out, TERN_EFIELD, 400,
				    "CR not followed by LF");
		} else if (buf[i] == '\0')
			return hp_fail(out, TERN_EFIELD, 400,
			    "NUL byte in the request head");
	}
	if (head_end == 0) {
		if (len >= HTTP_HEAD_MAX)
			return hp_fail(out, TERN_ETOOBIG, 431,
			    "request head over 8 KiB");
		return TERN_ETRUNC;
	}

	/* Every CR in the head is followed by LF, so a line ends at a CR. */
	cr = memchr(buf, '\r', head_end);
	if ((r = hp_request_line(buf, (size_t)(cr - buf), out)) != 0)
		return r;
	for (pos = (size_t)(cr - buf) + 2; pos + 2 < head_end; pos += n + 2) {
		l = buf + pos;
		cr = memchr(l, '\r', head_end - pos);
		n = (size_t)(cr - l);
		if ((r = hp_header(l, n, out, &st)) != 0)
			return r;
	}
	out->head_len = head_end;
	if (len - head_end < out->content_length)
		return TERN_ETRUNC;
	out->body_len = out->content_length;
	out->body = out->body_len > 0 ? buf + head_end : NULL;
	return 0;
}

const char *
http_request_param(const struct http_request *req, const char *key)
{
	unsigned i;

	for (i = 0; i < req->nquery && i < HTTP_QUERY_MAX; i++)
		if (strcmp(req->query[i].key, key) == 0)
			return req->query[i].value;
	return NULL;
}

const char *
http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

void
http_resp_printf(struct http_response *resp, const char *fmt, ...)
{
	struct buf_writer *w = &resp->body;
	va_list ap;
	size_t room;
	int n;

	if (w->err != 0)
		return;
	room = w->cap - w->len;
	va_start(ap, fmt);
	if (w->p == NULL)
		n = vsnprintf(NULL, 0, fmt, ap); /* a counting writer */
	else
		n = vsnprintf((char *)w->p + w->len, room, fmt, ap);
	va_end(ap);
	/* Formatting straight into the writer's buffer saves a copy of up
	 * to a megabyte; the writer's fields are public for that. */
	if (n < 0)
		w->err = TERN_EINVAL;
	else if (w->p != NULL && (size_t)n >= room)
		w->err = TERN_ETOOBIG;
	else
		w->len += (size_t)n;
}

/* --- the server ---------------------------------------------------------- */

enum hc_state {
	HC_READING = 0,  /* collecting the request */
	HC_WRITING,      /* the answer is being written */
	HC_LINGERING,    /* answered; waiting for the client's FIN */
	HC_CLOSING       /* uv_close called */
};

struct http_conn {
	struct http_server *srv;      /* owner */
	uv_tcp_t tcp;                 /* the connection */
	uv_timer_t timer;             /* deadline, then linger */
	uv_write_t wreq;              /* the answer */
	uv_write_t creq;              /* "100 Continue" */
	uv_shutdown_t sreq;           /* FIN after the answer */
	enum hc_state state;          /* see the top of the file */
	int handles;                  /* open handles; freed at 0 */
	bool continued;               /* "100 Continue" was sent */
	bool eof;                     /* the client closed its side */
	char *in;                     /* request bytes */
	size_t in_len;                /* bytes in it */
	size_t in_cap;                /* its size */
	struct http_request req;      /* parsed request */
	char head[HTTP_RESP_HEAD_MAX]; /* answer's status line, headers */
	char errbody[HTTP_ERRBODY_MAX]; /* body of an error answer */
	uint8_t *body;                /* handler's body, HTTP_RESP_MAX */
	struct http_conn *prev;       /* in srv->conns */
	struct http_conn *next;       /* in srv->conns */
};

/* A connection over the cap, accepted only to be told 503 and closed. */
struct http_refused {
	struct http_server *srv;      /* owner */
	uv_tcp_t tcp;                 /* the connection */
};

struct http_server {
	uv_loop_t *loop;              /* everything runs here */
	uv_tcp_t listener;            /* the listening socket */
	http_handler handler;         /* answers requests */
	void *arg;                    /* its argument */
	char token[HTTP_TOKEN_MAX + 1]; /* admin token (secret) */
	size_t token_len;             /* 0: admin paths refused */
	uint32_t timeout_ms;          /* per-connection deadline */
	uint16_t port;                /* listened on */
	struct http_conn *conns;      /* open connections */
	uint32_t nconns;              /* how many */
	uint32_t nrefused;            /* refused ones still closing */
	bool listener_open;           /* listener not yet closed */
	bool closing;                 /* http_server_close ran */
	void (*close_cb)(void *);     /* called when all is closed */
	void *close_arg;              /* its argument */
	char discard[HTTP_DISCARD];   /* ignored bytes land here */
};

static const char http_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void
srv_maybe_done(struct http_server *s)
{
	void (*cb)(void *);
	void *arg;

	if (!s->closing || s->listener_open || s->nconns > 0 ||
	    s->nrefused > 0)
		return;
	cb = s->close_cb;
	arg = s->close_arg;
	sodium_memzero(s->token, sizeof(s->token));
	free(s);
	if (cb != NULL)
		cb(arg);
}

static void
conn_closed_cb(uv_handle_t *h)
{
	struct http_conn *c = h->data;
	struct http_server *s = c->srv;

	if (--c->handles > 0)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	s->nconns--;
	/* The request may hold the token. */
	sodium_memzero(c->req.authorization, sizeof(c->req.authorization));
	if (c->in != NULL) {
		sodium_memzero(c->in, c->in_len);
		free(c->in);
	}
	free(c->body);
	free(c);
	srv_maybe_done(s);
}

/* conn_close: closes both handles; pending writes fail with ECANCELED
 * first, and the memory goes in conn_closed_cb. */
static void
conn_close(struct http_conn *c)
{
	if (c->state == HC_CLOSING)
		return;
	c->state = HC_CLOSING;
	uv_close((uv_handle_t *)&c->tcp, conn_closed_cb);
	uv_close((uv_handle_t *)&c->timer, conn_closed_cb);
}

static void
conn_timeout_cb(uv_timer_t *t)
{
	conn_close(t->data);
}

static void
conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct http_conn *c = req->data;

	if (status < 0 && c->state != HC_CLOSING)
		conn_close(c);
}

static void
conn_write_cb(uv_write_t *req, int status)
{
	struct http_conn *c = req->data;

	if (c->state == HC_CLOSING)
		return;
	if (status < 0 || c->eof) {
		conn_close(c);
		return;
	}
	c->state = HC_LINGERING;
	c->sreq.data = c;
	if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp,
	    conn_shutdown_cb) != 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, conn_timeout_cb, HTTP_LINGER_MS, 0);
}

static void
conn_continue_cb(uv_write_t *req, int status)
{
	struct http_conn *c = req->data;

	if (status < 0 && c->state != HC_CLOSING)
		conn_close(c);
}

/* conn_respond: writes the answer; body must live until the write is
 * done (it is c->body or c->errbody). */
static void
conn_respond(struct http_conn *c, int status, const char *ctype,
    const char *body, size_t len)
{
	uv_buf_t bufs[2];
	int n;

	if (status < 100 || status > 599)
		status = 500;
	c->state = HC_WRITING;
	n = snprintf(c->head, sizeof(c->head),
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Content-Length: %zu\r\n"
	    "Connection: close\r\n"
	    "Cache-Control: no-store\r\n"
	    "%s"
	    "\r\n",
	    status, http_status_text(status), ctype, len,
	    status == 401 ? "WWW-Authenticate: Bearer\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(c->head)) {
		conn_close(c); /* only a runaway content type gets here */
		return;
	}
	bufs[0] = uv_buf_init(c->head, (unsigned)n);
	bufs[1] = uv_buf_init((char *)body, (unsigned)len);
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, len > 0 ? 2 : 1,
	    conn_write_cb) != 0)
		conn_close(c);
}

static void
conn_respond_text(struct http_conn *c, int status, const char *text)
{
	int n;

	n = snprintf(c->errbody, sizeof(c->errbody), "%s\n", text);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(c->errbody))
		n = (int)sizeof(c->errbody) - 1;
	conn_respond(c, status, "text/plain; charset=utf-8", c->errbody,
	    (size_t)n);
}

static int
http_status_for(int code)
{
	switch (code) {
	case TERN_ENOTFOUND:
	case TERN_ENOUSER:
		return 404;
	case TERN_EINVAL:
	case TERN_EFIELD:
		return 400;
	case TERN_EDENIED:
		return 403;
	case TERN_EEXIST:
		return 409;
	case TERN_EBUSY:
		return 503;
	default:
		return 500;
	}
}

/* Only the token's bytes are compared in constant time: its length is no
 * secret (admin tokens are all KEYFILE_HEX_LEN characters). */
bool
http_request_authorized(const struct http_request *req, const char *token)
{
	const char *auth = req->authorization;
	size_t n, tn;

	if (token == NULL || (tn = strlen(token)) == 0 ||
	    strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	for (auth += 7; *auth == ' '; auth++)
		;
	n = strnlen(auth, HTTP_AUTH_MAX + 1);
	return n == tn && sodium_memcmp(auth, token, n) == 0;
}

static void
conn_dispatch(struct http_conn *c)
{
	struct http_server *s = c->srv;
	struct http_response resp;
	int r;

	c->state = HC_WRITING; /* from now on, read bytes are ignored */
	c->req.authed = s->token_len > 0 &&
	    http_request_authorized(&c->req, s->token);
	if (!c->req.authed && strcmp(c->req.path, HTTP_PUBLIC_PATH) != 0) {
		conn_respond_text(c, 401, "missing or wrong admin token");
		return;
	}
	if ((c->body = malloc(HTTP_RESP_MAX)) == NULL) {
		conn_respond_text(c, 503, tern_strerror(TERN_ENOMEM));
		return;
	}
	memset(&resp, 0, sizeof(resp));
	resp.status = 200;
	resp.content_type = "text/plain; charset=utf-8";
	buf_writer_init(&resp.body, c->body, HTTP_RESP_MAX);
	r = s->handler(s->arg, &c->req, &resp);
	if (c->state == HC_CLOSING)
		return; /* the handler closed the server */
	if (r < 0) {
		conn_respond_text(c, http_status_for(r), tern_strerror(r));
		return;
	}
	if (r >= 100 && r <= 599)
		resp.status = r;
	else if (r != 0)
		resp.status = 500;
	if (buf_writer_err(&resp.body) != 0)
		conn_respond_text(c, 500, "response too large");
	else if (resp.body.len == 0 && resp.status >= 400)
		conn_respond_text(c, resp.status,
		    http_status_text(resp.status));
	else
		conn_respond(c, resp.status, resp.content_type != NULL ?
		    resp.content_type : "text/plain; charset=utf-8",
		    (const char *)c->body, resp.body.len);
}

static void
conn_try_request(struct http_conn *c)
{
	uv_buf_t b;
	size_t need;
	char *p;
	int r;

	r = http_parse_request(c->in, c->in_len, &c->req);
	if (r == 0) {
		conn_dispatch(c);
		return;
	}
	if (r != TERN_ETRUNC) {
		conn_respond_text(c, c->req.error_status, c->req.error);
		return;
	}
	if (c->req.head_len == 0)
		return;
	/* The head is complete: room for exactly the declared body (the
	 * parser capped it at HTTP_BODY_MAX). */
	need = c->req.head_len + c->req.content_length;
	if (need > c->in_cap) {
		if ((p = realloc(c->in, need)) == NULL) {
			conn_respond_text(c, 503, tern_strerror(TERN_ENOMEM));
			return;
		}
		c->in = p;
		c->in_cap = need;
	}
	if (c->req.expect_continue && !c->continued) {
		c->continued = true;
		b = uv_buf_init((char *)http_continue,
		    (unsigned)(sizeof(http_continue) - 1));
		c->creq.data = c;
		if (uv_write(&c->creq, (uv_stream_t *)&c->tcp, &b, 1,
		    conn_continue_cb) != 0)
			conn_close(c);
	}
}

static void
conn_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct http_conn *c = h->data;

	if (c->state == HC_READING) {
		/* Full while reading cannot happen (the parser answers
		 * first); a zero buffer would end the read with ENOBUFS. */
		*b = uv_buf_init(c->in + c->in_len,
		    (unsigned)(c->in_cap - c->in_len));
	} else
		*b = uv_buf_init(c->srv->discard, sizeof(c->srv->discard));
}

static void
conn_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct http_conn *c = st->data;

	if (nread == 0 || c->state == HC_CLOSING)
		return;
	if (nread < 0) {
		if (nread == UV_EOF && c->state == HC_WRITING) {
			/* Half-closed after its request: answer, then close. */
			c->eof = true;
			uv_read_stop(st);
			return;
		}
		conn_close(c);
		return;
	}
	if (c->state != HC_READING)
		return;
	c->in_len += (size_t)nread;
	conn_try_request(c);
}

/* srv_refuse: over HTTP_CONNS_MAX. The connection must still be accepted,
 * or libuv stops watching the listener until it is; it is told 503 with
 * one non-blocking write and closed. */
static void
refused_closed_cb(uv_handle_t *h)
{
	struct http_refused *f = h->data;
	struct http_server *s = f->srv;

	s->nrefused--;
	free(f);
	srv_maybe_done(s);
}

static void
srv_refuse(struct http_server *s)
{
	static const char body[] = "too many connections; try again\n";
	struct http_refused *f;
	char msg[256];
	uv_buf_t b;
	int n;

	if ((f = calloc(1, sizeof(*f))) == NULL)
		return;
	f->srv = s;
	if (uv_tcp_init(s->loop, &f->tcp) != 0) {
		free(f);
		return;
	}
	f->tcp.data = f;
	s->nrefused++;
	if (uv_accept((uv_stream_t *)&s->listener,
	    (uv_stream_t *)&f->tcp) == 0) {
		n = snprintf(msg, sizeof(msg), "HTTP/1.1 503 %s\r\n"
		    "Content-Type: text/plain; charset=utf-8\r\n"
		    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		    http_status_text(503), sizeof(body) - 1, body);
		b = uv_buf_init(msg, (unsigned)n);
		(void)uv_try_write((uv_stream_t *)&f->tcp, &b, 1);
	}
	uv_close((uv_handle_t *)&f->tcp, refused_closed_cb);
}

static void
srv_connection_cb(uv_stream_t *ls, int status)
{
	struct http_server *s = ls->data;
	struct http_conn *c;

	if (status < 0 || s->closing)
		return;
	if (s->nconns >= HTTP_CONNS_MAX ||
	    (c = calloc(1, sizeof(*c))) == NULL) {
		srv_refuse(s);
		return;
	}
	if ((c->in = malloc(HTTP_HEAD_MAX)) == NULL ||
	    uv_tcp_init(s->loop, &c->tcp) != 0) {
		free(c->in);
		free(c);
		srv_refuse(s);
		return;
	}
	c->srv = s;
	c->in_cap = HTTP_HEAD_MAX;
	c->tcp.data = c;
	c->timer.data = c;
	uv_timer_init(s->loop, &c->timer);
	c->handles = 2;
	c->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0 ||
	    uv_read_start((uv_stream_t *)&c->tcp, conn_alloc_cb,
	    conn_read_cb) != 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, conn_timeout_cb, s->timeout_ms, 0);
}

static void
listener_closed_cb(uv_handle_t *h)
{
	struct http_server *s = h->data;

	s->listener_open = false;
	srv_maybe_done(s);
}

int
http_server_start(uv_loop_t *loop, const char *host, uint16_t port,
    http_handler handler, void *arg, struct http_server **out)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct http_server *s;
	int len = (int)sizeof(ss);

	if (loop == NULL || host == NULL || handler == NULL || out == NULL)
		return TERN_EINVAL;
	memset(&ss, 0, sizeof(ss));
	/* Loopback only: the admin API is plain HTTP. */
	if (uv_ip4_addr(host, port, sin) == 0) {
		if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127)
			return TERN_EINVAL;
	} else if (uv_ip6_addr(host, port, sin6) == 0) {
		if (memcmp(&sin6->sin6_addr, &in6addr_loopback, 16) != 0)
			return TERN_EINVAL;
	} else
		return TERN_EINVAL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return TERN_ENOMEM;
	s->loop = loop;
	s->handler = handler;
	s->arg = arg;
	s->timeout_ms = HTTP_TIMEOUT_MS;
	if (uv_tcp_init(loop, &s->listener) != 0) {
		free(s);
		return TERN_EIO;
	}
	s->listener.data = s;
	s->listener_open = true;
	if (uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0) != 0 ||
	    uv_listen((uv_stream_t *)&s->listener, HTTP_BACKLOG,
	    srv_connection_cb) != 0 ||
	    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss,
	    &len) != 0) {
		s->closing = true;
		uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
		return TERN_EIO;
	}
	s->port = ntohs(ss.ss_family == AF_INET ? sin->sin_port :
	    sin6->sin6_port);
	*out = s;
	return 0;
}

int
http_server_set_token(struct http_server *s, const char *token)
{
	size_t n = token != NULL ? strlen(token) : 0;

	if (n > HTTP_TOKEN_MAX)
		return TERN_EINVAL;
	sodium_memzero(s->token, sizeof(s->token));
	if (n > 0)
		memcpy(s->token, token, n);
	s->token_len = n;
	return 0;
}

void
http_server_set_timeout(struct http_server *s, uint32_t ms)
{
	s->timeout_ms = ms > 0 ? ms : HTTP_TIMEOUT_MS;
}

uint16_t
http_server_port(const struct http_server *s)
{
	return s->port;
}

uint32_t
http_server_conns(const struct http_server *s)
{
	return s->nconns;
}

void
http_server_close(struct http_server *s, void (*cb)(void *arg), void *arg)
{
	struct http_conn *c;

	if (s->closing)
		return;
	s->closing = true;
	s->close_cb = cb;
	s->close_arg = arg;
	uv_close((uv_handle_t *)&s->listener, listener_closed_cb);
	/* conn_close unlinks nothing (that waits for the close callbacks),
	 * so the list can be walked as it is. */
	for (c = s->conns; c != NULL; c = c->next)
		conn_close(c);
}
