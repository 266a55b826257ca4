/*
 * log.h: the daemon's log lines on stderr.
 *
 * One line per event, in the form
 *
 *   2026-11-22T10:00:00.123Z ternd[4242] info: listening on 0.0.0.0:7370
 *
 * (UTC, milliseconds), so that journald, docker and a terminal all show
 * something sortable and greppable without a logging library. Each line
 * is formatted into a bounded buffer and written with one call, so lines
 * from the store's writer thread and the loop thread never interleave
 * inside a line. Control characters in the text are replaced by '?', so a
 * peer-chosen string can never forge a second line.
 *
 * What never goes to the log: keys, tokens, message payloads, plaintext,
 * full SQL. Log what happened and to whom (an address, a device id), not
 * what was said. Lines longer than LOG_LINE_MAX are cut and end in "...".
 *
 * Written by hand: syslog(3) is not wanted inside containers, and the
 * Debian logging libraries (zlog, log4c) bring config files of their own
 * for what is here some sixty lines.
 */
#ifndef TERN_LOG_H
#define TERN_LOG_H

#include <stdbool.h>

#include "tern_err.h"

#define LOG_LINE_MAX 1024 /* bytes in one line, with its newline */
#define LOG_IDENT_MAX 31  /* bytes in the program name shown */

/* Not LOG_INFO etc.: <syslog.h> takes those names for macros. */
enum log_level {
	LOG_LEVEL_ERROR = 0, /* the node cannot do something it must */
	LOG_LEVEL_WARN = 1,  /* something is wrong but handled */
	LOG_LEVEL_INFO = 2,  /* start, stop, and rare notable events */
	LOG_LEVEL_DEBUG = 3  /* per-connection detail, for development */
};

#define LOG_PRINTF(f, a) __attribute__((format(printf, f, a)))

/* log_set_level: lines above level are dropped (default: info). Safe to
 * call from any thread. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* log_enabled: whether a line at level would be written; for callers
 * that must do work to prepare arguments. */
bool log_enabled(enum log_level level);

/*
 * log_level_parse: "error", "warn", "info" or "debug" (exactly, lowercase)
 * to *out. 0, or TERN_EINVAL (and *out untouched) for anything else.
 */
int log_level_parse(const char *s, enum log_level *out) TERN_WUR;

/* log_level_name: the name log_level_parse accepts ("?" if out of range). */
const char *log_level_name(enum log_level level);

/* log_set_ident: the program name shown before [pid] (default "ternd");
 * copied, cut at LOG_IDENT_MAX bytes. Call before other threads start. */
void log_set_ident(const char *ident);

/* log_msg: writes one line at level (if enabled). */
void log_msg(enum log_level level, const char *fmt, ...) LOG_PRINTF(2, 3);

void log_error(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_warn(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_info(const char *fmt, ...) LOG_PRINTF(1, 2);
void log_debug(const char *fmt, ...) LOG_PRINTF(1, 2);

#endif
