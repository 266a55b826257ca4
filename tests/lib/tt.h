/*
 * tt.h: tern's test harness. A test file declares cases with TT_CASE(name);
 * the binary runs one case named on its command line (ctest runs each case
 * in its own process with a timeout), or lists them with --list, or runs all
 * of them in turn with no argument (for a quick local run).
 *
 * Assertions print file, line and both values, then exit(1).
 */
#ifndef TERN_TT_H
#define TERN_TT_H

#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tern_err.h"

typedef void (*tt_fn)(void);
void tt_register(const char *name, tt_fn fn);

/*
 * tt_free_port: a port on 127.0.0.1 that is free now for TCP and UDP
 * and that the kernel never hands out by itself. A port asked of the kernel (bind to port 0) comes from its
 * ephemeral range, the same one every outgoing connection takes its
 * local port from: between the test closing it and the server binding
 * it, or while a stopped node is down, a connection of a test running
 * beside it may take it. So it is drawn at random below that range and
 * checked by binding it.
 */
uint16_t tt_free_port(void);
void tt_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

/* Test-data paths: TERN_TEST_DATA is the tests/ folder of the source tree. */
#ifndef TERN_TEST_DATA
#define TERN_TEST_DATA "tests"
#endif
#ifndef TERN_BUILD_DIR
#define TERN_BUILD_DIR "."
#endif

#define TT_CASE(name)                                                      \
	static void name(void);                                            \
	__attribute__((constructor)) static void name##__reg(void)         \
	{                                                                  \
		tt_register(#name, name);                                  \
	}                                                                  \
	static void name(void)

#define TT_ASSERT(cond)                                                    \
	do {                                                               \
		if (!(cond))                                               \
			tt_fail(__FILE__, __LINE__, "assertion failed: %s", \
			    #cond);                                        \
	} while (0)

#define TT_EQ(a, b)                                                        \
	do {                                                               \
		long long tt_a_ = (long long)(a), tt_b_ = (long long)(b);  \
		if (tt_a_ != tt_b_)                                        \
			tt_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", \
			    #a, #b, tt_a_, tt_b_);                         \
	} while (0)

/* TT_OK(expr): expr must return 0; on failure shows the tern error. */
#define TT_OK(expr)                                                        \
	do {                                                               \
		int tt_r_ = (expr);                                        \
		if (tt_r_ != 0)                                            \
			tt_fail(__FILE__, __LINE__, "%s returned %d (%s: %s)", \
			    #expr, tt_r_, tern_errname(tt_r_),             \
			    tern_strerror(tt_r_));                         \
	} while (0)

/* TT_ERR(expr, code): expr must return exactly code. */
#define TT_ERR(expr, code)                                                 \
	do {                                                               \
		int tt_r_ = (expr);                                        \
		if (tt_r_ != (code))                                       \
			tt_fail(__FILE__, __LINE__,                        \
			    "%s returned %d (%s), want %d (%s)", #expr,    \
			    tt_r_, tern_errname(tt_r_), (int)(code),       \
			    tern_errname(code));                           \
	} while (0)

#define TT_MEMEQ(a, b, n)                                                  \
	do {                                                               \
		if (memcmp((a), (b), (n)) != 0)                            \
			tt_fail(__FILE__, __LINE__, "bytes differ: %s vs %s", \
			    #a, #b);                                       \
	} while (0)

#define TT_STREQ(a, b)                                                     \
	do {                                                               \
		const char *tt_sa_ = (a), *tt_sb_ = (b);                   \
		if (strcmp(tt_sa_, tt_sb_) != 0)                           \
			tt_fail(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", \
			    #a, #b, tt_sa_, tt_sb_);                       \
	} while (0)

/* Hex helpers for vectors: returns bytes written or -1. */
long tt_unhex(const char *hex, size_t hexlen, uint8_t *out, size_t cap);
/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL on error. */
char *tt_read_file(const char *path, size_t *len);

#endif
