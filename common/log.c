/*
 * log.c: log lines on stderr (log.h).
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Atomic because the store's writer thread logs too, while the loop
 * thread may change the level. */
static _Atomic int log_level_cur = LOG_LEVEL_INFO;
static char log_ident[LOG_IDENT_MAX + 1] = "ternd";

static const char *const log_names[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};

void
log_set_level(enum log_level level)
{
	if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
		return;
	atomic_store_explicit(&log_level_cur, (int)level,
	    memory_order_relaxed);
}

enum log_level
log_get_level(void)
{
	return (enum log_level)atomic_load_explicit(&log_level_cur,
	    memory_order_relaxed);
}

bool
log_enabled(enum log_level level)
{
	return (int)level <= atomic_load_explicit(&log_level_cur,
	    memory_order_relaxed);
}

int
log_level_parse(const char *s, enum log_level *out)
{
	int i;

	if (s == NULL || out == NULL)
		return TERN_EINVAL;
	for (i = LOG_LEVEL_ERROR; i <= LOG_LEVEL_DEBUG; i++) {
		if (strcmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return TERN_EINVAL;
}

const char *
log_level_name(enum log_level level)
{
	if (level < LOG_LEVEL_ERROR || level > LOG_LEVEL_DEBUG)
		return "?";
	return log_names[level];
}

void
log_set_ident(const char *ident)
{
	if (ident == NULL)
		return;
	snprintf(log_ident, sizeof(log_ident), "%s", ident);
}

/*
 * log_vmsg formats the whole line first and hands it to stdio in one
 * call: stdio locks the stream per call, so two threads' lines never mix.
 */
static void log_vmsg(enum log_level, const char *, va_list)
    LOG_PRINTF(2, 0);

static void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	size_t n, start, i;
	int r;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s[%ld] %s: ",
	    ts.tv_nsec / 1000000, log_ident, (long)getpid(),
	    log_level_name(level));
	if (r < 0)
		return;
	n += (size_t)r;
	start = n;
	/* One byte stays free for the newline. */
	r = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (r < 0)
		return;
	if ((size_t)r >= sizeof(line) - n - 1) {
		n = sizeof(line) - 1;
		memcpy(line + n - 3, "...", 3);
	} else
		n += (size_t)r;
	/* A peer-chosen string must not be able to start a forged line or
	 * drive the operator's terminal. */
	for (i = start; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			line[i] = '?';
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

#define LOG_FN(name, level)                                                \
	void                                                               \
	name(const char *fmt, ...)                                         \
	{                                                                  \
		va_list ap;                                                \
                                                                           \
		va_start(ap, fmt);                                         \
		log_vmsg(level, fmt, ap);                                  \
		va_end(ap);                                                \
	}

LOG_FN(log_error, LOG_LEVEL_ERROR)
LOG_FN(log_warn, LOG_LEVEL_WARN)
LOG_FN(log_info, LOG_LEVEL_INFO)
LOG_FN(log_debug, LOG_LEVEL_DEBUG)
