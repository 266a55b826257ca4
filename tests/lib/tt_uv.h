/*
 * tt_uv.h: libuv helpers for tests. Every test that runs a loop ends with
 * tt_uv_close(loop), which fails the case if any handle is still open.
 */
#ifndef TERN_TT_UV_H
#define TERN_TT_UV_H

#include <uv.h>

#include "tt.h"

static void
tt_uv_walk_cb(uv_handle_t *h, void *arg)
{
	(void)arg;
	fprintf(stderr, "open handle left: %s (active %d)\n",
	    uv_handle_type_name(h->type), uv_is_active(h));
}

/* Runs the loop until nothing is left, then asserts it closes cleanly. */
static inline void
tt_uv_close(uv_loop_t *loop)
{
	int r;

	uv_run(loop, UV_RUN_DEFAULT);
	r = uv_loop_close(loop);
	if (r != 0) {
		uv_walk(loop, tt_uv_walk_cb, NULL);
		tt_fail(__FILE__, __LINE__, "loop did not close: %s",
		    uv_strerror(r));
	}
}

#endif
