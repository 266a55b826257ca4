/*
 * adminctl.h: the ternd command line's side of the admin API: a small
 * blocking HTTP/1.1 client for the node's loopback metrics/admin address
 * (http.h).
 *
 * Blocking on purpose: the CLI does one request and exits, so plain POSIX
 * sockets with poll(2) timeouts are simpler than a loop. Each wait (for
 * the connection, for the request to be sent, for more of the answer) is
 * bounded by ADMINCTL_TIMEOUT_MS, and the answer by ADMINCTL_RESP_MAX.
 *
 * When nothing listens at the address the calls return TERN_EUNREACH, so
 * the CLI can tell "node not running" (and, for commands that allow it,
 * open the database itself) from every other failure.
 *
 * Written by hand: libcurl would do, but it is a large dependency for one
 * request to 127.0.0.1 against a server whose replies we wrote.
 */
#ifndef TERN_ADMINCTL_H
#define TERN_ADMINCTL_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "tern_err.h"

#define ADMINCTL_TIMEOUT_MS 2000 /* each wait */
#define ADMINCTL_RESP_MAX (HTTP_RESP_MAX + HTTP_HEAD_MAX) /* whole answer */

/*
 * adminctl_get: GET path_and_query (starting with '/', no spaces or
 * control characters, already percent-encoded) from host (numeric IPv4 or
 * IPv6, brackets optional) and port, with "Authorization: Bearer token"
 * unless token is NULL. On 0 an answer came: its status in *status_out
 * and its body, NUL-terminated, in *body_out (malloc'd: the caller frees
 * it; body_out may be NULL to discard it) with its length in *len_out
 * (may be NULL). Errors: TERN_EUNREACH (refused, no route: the node is not
 * running), TERN_ETIMEOUT, TERN_EIO, TERN_EFIELD (not an HTTP answer),
 * TERN_ETRUNC (answer cut short), TERN_ETOOBIG (answer over the cap),
 * TERN_EINVAL (bad arguments), TERN_ENOMEM. Nothing is allocated on error.
 */
int adminctl_get(const char *host, uint16_t port, const char *token,
    const char *path_and_query, char **body_out, size_t *len_out,
    int *status_out) TERN_WUR;

/* adminctl_post: as adminctl_get, with a POST of body_len bytes of body
 * (at most HTTP_BODY_MAX; body may be NULL when body_len is 0). */
int adminctl_post(const char *host, uint16_t port, const char *token,
    const char *path_and_query, const void *body, size_t body_len,
    char **body_out, size_t *len_out, int *status_out) TERN_WUR;

#endif
