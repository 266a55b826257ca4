/*
 * fuzz_http.c: libFuzzer target for the admin HTTP request parser
 * (node/http.h, http_parse_request).
 *
 * The parser sees whatever a local process sends to the metrics/admin
 * port, so any input must come back as 0 or one of the parser's codes,
 * without a crash or a read past the input. Beyond that the result must
 * hold together: on success every string is within its cap and
 * NUL-terminated, the body lies inside the input, the request does not
 * depend on bytes after it, and the same request cut short by one byte
 * needs more input; on failure there is a reason and a status to answer.
 * Seeds: tests/fuzz/corpus/http.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

/* Static: struct http_request is several KiB. */
static struct http_request fuzz_req, fuzz_req2;

static void
fuzz_check_ok(const char *buf, size_t size, const struct http_request *r)
{
	size_t end;
	unsigned i;

	if (r->method != HTTP_GET && r->method != HTTP_POST)
		abort();
	if (r->version_minor != 0 && r->version_minor != 1)
		abort();
	if (r->path[0] != '/' || strnlen(r->path, sizeof(r->path)) >
	    HTTP_PATH_MAX)
		abort();
	if (r->nquery > HTTP_QUERY_MAX)
		abort();
	for (i = 0; i < r->nquery; i++) {
		if (r->query[i].key[0] == '\0' ||
		    strnlen(r->query[i].key, sizeof(r->query[i].key)) >
		    HTTP_KEY_MAX ||
		    strnlen(r->query[i].value, sizeof(r->query[i].value)) >
		    HTTP_VALUE_MAX)
			abort();
		if (http_request_param(r, r->query[i].key) == NULL)
			abort();
	}
	if (strnlen(r->authorization, sizeof(r->authorization)) >
	    HTTP_AUTH_MAX)
		abort();
	if (r->content_length > HTTP_BODY_MAX ||
	    r->body_len != r->content_length)
		abort();
	if (r->head_len < 4 || r->head_len > HTTP_HEAD_MAX ||
	    memcmp(buf + r->head_len - 4, "\r\n\r\n", 4) != 0)
		abort();
	end = r->head_len + r->body_len;
	if (end > size)
		abort();
	if ((r->body_len == 0) != (r->body == NULL))
		abort();
	if (r->body != NULL && r->body != buf + r->head_len)
		abort();
	if (r->error != NULL)
		abort();

	/* Bytes after the request change nothing. */
	if (http_parse_request(buf, end, &fuzz_req2) != 0 ||
	    fuzz_req2.head_len != r->head_len ||
	    fuzz_req2.body_len != r->body_len ||
	    strcmp(fuzz_req2.path, r->path) != 0 ||
	    fuzz_req2.nquery != r->nquery)
		abort();
	/* One byte less is an incomplete request, never a different one. */
	if (http_parse_request(buf, end - 1, &fuzz_req2) != TERN_ETRUNC)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_request *r = &fuzz_req;
	int rc;

	rc = http_parse_request(buf, size, r);
	switch (rc) {
	case 0:
		fuzz_check_ok(buf, size, r);
		break;
	case TERN_ETRUNC:
		if (r->error != NULL || size >= HTTP_HEAD_MAX + HTTP_BODY_MAX)
			abort();
		/* A complete head promises a body that is not all there. */
		if (r->head_len != 0 &&
		    (r->head_len > size ||
		    size >= r->head_len + r->content_length))
			abort();
		break;
	case TERN_EFIELD:
	case TERN_ETOOBIG:
	case TERN_ETYPE:
	case TERN_EVERSION:
		if (r->error == NULL || r->error[0] == '\0')
			abort();
		if (r->error_status < 400 || r->error_status > 505)
			abort();
		break;
	default:
		abort();
	}
	return 0;
}
