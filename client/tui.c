/*
 * tui.c: `tern` with no subcommand: a full-screen chat in the terminal,
 * on top of the messaging core (app.h) and ncursesw.
 *
 *   row 0            header: the open conversation's contact, verified
 *                    mark, online / last seen / typing...
 *   rows 1..H-3      left: conversations, most recent first, with the
 *                    contact's online dot and unread count; right: the
 *                    open conversation (or a page: /help, /search, /verify)
 *   row H-2          status: connection state, own account, last notice
 *   row H-1          the input line
 *
 * Everything runs on the loop thread: stdin is a uv_poll, SIGWINCH a
 * uv_signal and a one-second tick expires typing indicators and counts
 * down the reconnect. The screen is drawn whole after every event into
 * stdscr; ncurses sends only what changed, so that stays cheap, and a
 * resize needs nothing more than resizeterm() and the same drawing.
 *
 * Nothing the user types is held only here: app_send_text commits a
 * message as PENDING before it returns, and the core sends it again at
 * every login, so a message typed while the node is down survives a
 * crash of this process.
 *
 * The line editor, word wrapping and the list/conversation layout are
 * written by hand: readline and CDK don't fit a libuv loop that owns the
 * terminal together with ncurses, and the rest is ncurses' job.
 */
#ifndef _XOPEN_SOURCE
#define _XOPEN_SOURCE 600 /* wcwidth */
#endif
#include <curses.h>
#include <errno.h>
#include <locale.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <uv.h>

#include "app.h"
#include "ident.h"
#include "msg.h"
#include "tern_err.h"
#include "tui.h"

#define TUI_CONV_MAX 128          /* conversations listed */
#define TUI_CONTACT_MAX 256       /* contacts kept for Tab completion */
#define TUI_HIST_LOAD 400         /* messages of the open conversation */
#define TUI_NOTICE_MAX 64         /* notices kept (identity, decrypt) */
#define TUI_INPUT_MAX 4096        /* wide characters on the input line */
#define TUI_INHIST_MAX 50         /* input lines remembered (Up/Down) */
#define TUI_PAGE_MAX 400          /* lines on a page (/help, /search) */
#define TUI_SEARCH_MAX 100        /* /search results */
#define TUI_ITEM_ROWS 200         /* rows one message may take */
#define TUI_TICK_MS 1000          /* typing expiry, reconnect countdown */
#define TUI_TYPING_EVERY_MS 3000  /* at most one "typing" this often */
#define TUI_TYPING_IDLE_MS 5000   /* "stopped" after this long idle */
#define TUI_TYPING_SHOW_MS 6000   /* a peer's "typing" shown this long */
#define TUI_FLASH_MS 8000         /* a status notice stays this long */
#define TUI_FLASH_MAX 256         /* bytes of a status notice */
#define TUI_NOTICE_TEXT 256       /* bytes of a notice */
#define TUI_MIN_COLS 40
#define TUI_MIN_ROWS 8

/* Exit statuses, as main.c's. */
#define TUI_EX_OK 0
#define TUI_EX_FAIL 1
#define TUI_EX_USAGE 2
#define TUI_EX_NOTREG 4

/* Styles of characters in the conversation (see tui_attr). */
enum tui_style {
	TS_TEXT = 0,
	TS_TIME,        /* timestamps, dim */
	TS_ME,          /* our name */
	TS_PEER,        /* the contact's name */
	TS_MARK,        /* sent, delivered */
	TS_READ,        /* read: shown distinctly */
	TS_PENDING,     /* pending */
	TS_NOTICE,      /* identity changes, undecryptable messages */
	TS_FAILED,      /* failed */
	TS_DAY          /* day separator */
};

enum tui_link {
	TL_CONNECTING,  /* before the first login */
	TL_ONLINE,
	TL_RETRY,       /* down; the core retries at retry_at */
	TL_OFFLINE      /* down; no retry planned */
};

struct tui_conv {
	char peer[IDENT_ADDR_MAX + 1]; /* the other user */
	char name[MSG_NAME_MAX + 1];   /* their profile name, "" unknown */
	uint64_t last_ms;              /* newest message */
	uint32_t unread;               /* incoming not marked read */
	int presence;                  /* enum msg_presence_state, -1 unknown */
	uint64_t last_seen_ms;         /* when offline: since when */
	uint64_t typing_until;         /* loop time the "typing" expires */
	bool subscribed;               /* PRESENCE_SUB sent on this login */
	bool name_asked;               /* PROFILE_GET sent on this login */
};

/* A message of the open conversation (a copy of app_history's). */
struct tui_msg {
	bool outgoing;
	uint64_t ms;                   /* sent_ms */
	int state;                     /* enum app_state */
	char *text;                    /* owned */
};

/* A notice shown in a conversation; kept in memory only (the events are
 * in the history or come again: a held identity stays pending). */
struct tui_notice {
	char peer[IDENT_ADDR_MAX + 1];
	uint64_t ms;                   /* wall clock */
	char text[TUI_NOTICE_TEXT];
};

/* Wide characters with one style each: a message being laid out. */
struct tui_wbuf {
	wchar_t *w;
	unsigned char *st;             /* enum tui_style per character */
	size_t n, cap;
};

struct tui {
	uv_loop_t *loop;
	struct app *app;
	SCREEN *scr;                   /* NULL before/after curses */
	const char *profile;
	int exit;
	bool quitting;
	bool closed_app;               /* app_close's callback ran */

	uv_poll_t in;                  /* stdin readable */
	uv_signal_t sigwinch, sigterm, sighup, sigint;
	uv_timer_t tick;
	int handles;                   /* open handles, for the close */

	/* connection */
	int link;                      /* enum tui_link */
	int link_err;                  /* why it went down */
	uint64_t retry_at;             /* loop time of the next attempt */

	/* conversations */
	struct tui_conv conv[TUI_CONV_MAX];
	size_t nconv;
	char cur[IDENT_ADDR_MAX + 1];  /* open conversation, "" none */
	struct tui_msg *msgs;          /* its history, oldest first */
	size_t nmsgs;
	int scroll;                    /* rows scrolled up from the bottom */
	struct tui_notice notice[TUI_NOTICE_MAX];
	size_t nnotice;
	char contacts[TUI_CONTACT_MAX][IDENT_ADDR_MAX + 1];
	size_t ncontacts;

	/* page over the conversation: /help, /search, /verify */
	char page_title[128];
	char **page;                   /* lines, owned; NULL: no page */
	size_t npage;
	int page_scroll;

	/* input line */
	wchar_t input[TUI_INPUT_MAX + 1];
	size_t ilen, icur;             /* length, cursor (characters) */
	size_t ioff;                   /* first character shown */
	char *inhist[TUI_INHIST_MAX];  /* oldest first, owned */
	size_t ninhist;
	size_t inhist_pos;             /* == ninhist: the draft */
	wchar_t draft[TUI_INPUT_MAX + 1];

	/* our typing indicator */
	char typing_to[IDENT_ADDR_MAX + 1]; /* "" when not typing */
	uint64_t typing_sent;          /* loop time of the last "typing" */
	uint64_t typing_key;           /* loop time of the last keystroke */

	/* status line notice */
	char flash[TUI_FLASH_MAX];
	uint64_t flash_until;

	/* /profile name|status VALUE waits for our PROFILE */
	int profile_field;             /* 0 none, 1 name, 2 status */
	char profile_value[MSG_STATUS_MAX + 1];
	/* /verify USER waits for keys */
	char verify_user[IDENT_ADDR_MAX + 1];

	char notify[8];                /* "off", "on", "text" */
	bool colors;
};

static void tui_draw(struct tui *t);
static void tui_open_conv(struct tui *t, const char *peer);
static void tui_quit(struct tui *t, int code);

/* --- small helpers -------------------------------------------------- */

static uint64_t
tui_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* tui_flash: a one-line notice on the status line for a while. */
static void
tui_flash(struct tui *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
tui_flash(struct tui *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->flash, sizeof(t->flash), fmt, ap);
	va_end(ap);
	t->flash_until = uv_now(t->loop) + TUI_FLASH_MS;
}

static struct tui_conv *
tui_conv_find(struct tui *t, const char *peer, size_t len)
{
	size_t i;

	for (i = 0; i < t->nconv; i++)
		if (strlen(t->conv[i].peer) == len &&
		    memcmp(t->conv[i].peer, peer, len) == 0)
			return &t->conv[i];
	return NULL;
}

/* tui_clean: copies the UTF-8 text s into out with control characters
 * replaced (a profile name or a notification must not move the cursor or
 * end an escape sequence early); also ';' when semi is set (OSC 777
 * separates its fields with it). */
static void
tui_clean(char *out, size_t cap, const char *s, size_t len, bool semi)
{
	size_t i, n = len < cap - 1 ? len : cap - 1;

	if (n < len) {
		/* Cut on a character boundary. */
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (semi && c == ';')
			c = ',';
		else if (c < 0x20 || c == 0x7f)
			c = ' ';
		out[i] = (char)c;
	}
	out[n] = '\0';
}

static const char *
tui_local(const char *addr, char *out, size_t cap)
{
	const char *at = strchr(addr, '@');
	size_t n = at != NULL ? (size_t)(at - addr) : strlen(addr);

	if (n >= cap)
		n = cap - 1;
	memcpy(out, addr, n);
	out[n] = '\0';
	return out;
}

/* --- wide strings ------------------------------------------------------ */

static int
tui_wbuf_put(struct tui_wbuf *b, wchar_t c, int st)
{
	if (b->n == b->cap) {
		size_t cap = b->cap == 0 ? 256 : b->cap * 2;
		wchar_t *w = realloc(b->w, cap * sizeof(*w));
		unsigned char *s;
		if (w == NULL)
			return TERN_ENOMEM;
		b->w = w;
		if ((s = realloc(b->st, cap)) == NULL)
			return TERN_ENOMEM;
		b->st = s;
		b->cap = cap;
	}
	b->w[b->n] = c;
	b->st[b->n] = (unsigned char)st;
	b->n++;
	return 0;
}

/* tui_wbuf_utf8: appends UTF-8 text; bytes that are not UTF-8 and
 * characters that can't be shown become U+FFFD; newlines stay (they break
 * the line). */
static int
tui_wbuf_utf8(struct tui_wbuf *b, const char *s, int st)
{
	mbstate_t ms;
	size_t len = strlen(s), k;
	wchar_t c;
	int r;

	memset(&ms, 0, sizeof(ms));
	while (len > 0) {
		k = mbrtowc(&c, s, len, &ms);
		if (k == (size_t)-1 || k == (size_t)-2) {
			memset(&ms, 0, sizeof(ms));
			c = 0xfffd;
			k = 1;
		} else if (k == 0) {
			break;
		}
		if (c == '\t')
			c = ' ';
		else if (c != '\n' && (c < 0x20 || (c >= 0x7f && c < 0xa0) ||
		    wcwidth(c) < 0))
			c = 0xfffd;
		if ((r = tui_wbuf_put(b, c, st)) != 0)
			return r;
		s += k;
		len -= k;
	}
	return 0;
}

static void
tui_wbuf_free(struct tui_wbuf *b)
{
	free(b->w);
	free(b->st);
	memset(b, 0, sizeof(*b));
}

static int
tui_wcw(wchar_t c)
{
	int w = wcwidth(c);

	return w < 0 ? 1 : w;
}

static attr_t
tui_attr(struct tui *t, int st)
{
	switch (st) {
	case TS_TIME:
	case TS_DAY:
		return A_DIM;
	case TS_ME:
		return A_BOLD | (t->colors ? COLOR_PAIR(1) : 0);
	case TS_PEER:
		return A_BOLD | (t->colors ? COLOR_PAIR(2) : 0);
	case TS_READ:
		return A_BOLD | (t->colors ? COLOR_PAIR(3) : 0);
	case TS_PENDING:
		return A_DIM;
	case TS_NOTICE:
		return A_BOLD | (t->colors ? COLOR_PAIR(4) : 0);
	case TS_FAILED:
		return A_BOLD | (t->colors ? COLOR_PAIR(5) : 0);
	default:
		return A_NORMAL;
	}
}

/*
 * tui_layout: wraps b into rows of width columns (continuation rows start
 * at column indent), at spaces when a word fits, else anywhere. If draw,
 * rows whose screen line y falls in [top, bot) are drawn at column x0.
 * Returns the number of rows (at most TUI_ITEM_ROWS).
 */
static int
tui_layout(struct tui *t, const struct tui_wbuf *b, int width, int indent,
    bool draw, int y, int top, int bot, int x0)
{
	size_t i = 0, start, space, end, next, k;
	int rows = 0, col;

	if (width <= indent + 1)
		indent = 0;
	while (i <= b->n && rows < TUI_ITEM_ROWS) {
		start = i;
		col = rows == 0 ? 0 : indent;
		space = SIZE_MAX;
		end = b->n;
		next = b->n + 1;
		for (k = start; k < b->n; k++) {
			int w = tui_wcw(b->w[k]);
			if (b->w[k] == '\n') {
				end = k;
				next = k + 1;
				break;
			}
			if (col + w > width) {
				if (space != SIZE_MAX && space > start) {
					end = space;
					next = space + 1;
				} else {
					end = k > start ? k : k + 1;
					next = end;
				}
				break;
			}
			if (b->w[k] == ' ')
				space = k;
			col += w;
		}
		if (draw && y + rows >= top && y + rows < bot) {
			size_t s = start;
			int x = x0 + (rows == 0 ? 0 : indent);
			move(y + rows, x);
			while (s < end) {
				size_t e = s;
				while (e < end && b->st[e] == b->st[s])
					e++;
				attrset(tui_attr(t, b->st[s]));
				addnwstr(b->w + s, (int)(e - s));
				s = e;
			}
			attrset(A_NORMAL);
		}
		rows++;
		i = next;
		if (i > b->n)
			break;
	}
	return rows;
}

/* --- conversation view ------------------------------------------------ */

static void
tui_msgs_free(struct tui *t)
{
	size_t i;

	for (i = 0; i < t->nmsgs; i++)
		free(t->msgs[i].text);
	free(t->msgs);
	t->msgs = NULL;
	t->nmsgs = 0;
}

struct tui_load {
	struct tui *t;
	struct tui_msg *v;
	size_t n;
	bool oom;
};

static void
tui_load_one(void *arg, const struct app_msg *m)
{
	struct tui_load *l = arg;
	struct tui_msg *x;

	if (l->oom || l->n >= TUI_HIST_LOAD)
		return;
	x = &l->v[l->n];
	if ((x->text = strdup(m->text != NULL ? m->text : "")) == NULL) {
		l->oom = true;
		return;
	}
	x->outgoing = m->outgoing;
	x->ms = m->sent_ms;
	x->state = m->state;
	l->n++;
}

/* tui_load_view: reads the open conversation's history again (after a
 * message, a receipt, a send). */
static void
tui_load_view(struct tui *t)
{
	struct tui_load l;
	int r;

	tui_msgs_free(t);
	if (t->cur[0] == '\0')
		return;
	memset(&l, 0, sizeof(l));
	l.t = t;
	if ((l.v = calloc(TUI_HIST_LOAD, sizeof(*l.v))) == NULL) {
		tui_flash(t, "out of memory");
		return;
	}
	r = app_history(t->app, t->cur, TUI_HIST_LOAD, tui_load_one, &l);
	if (r != 0)
		tui_flash(t, "history: %s", tern_strerror(r));
	t->msgs = l.v;
	t->nmsgs = l.n;
}

static void tui_hhmm(uint64_t ms, char *out, size_t cap, const char *fmt)
    __attribute__((format(strftime, 4, 0)));

static void
tui_hhmm(uint64_t ms, char *out, size_t cap, const char *fmt)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	/* fmt is checked at each call (the format attribute above). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	if (strftime(out, cap, fmt, &tm) == 0 && cap > 0)
		out[0] = '\0';
#pragma GCC diagnostic pop
}

static int
tui_day(uint64_t ms)
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	return tm.tm_year * 400 + tm.tm_yday;
}

/* tui_item_msg: one message as styled wide text. */
static int
tui_item_msg(struct tui *t, const struct tui_msg *m, struct tui_wbuf *b)
{
	char when[16], who[IDENT_ADDR_MAX + 1];
	struct tui_conv *c;
	int r;

	tui_hhmm(m->ms, when, sizeof(when), "%H:%M ");
	if ((r = tui_wbuf_utf8(b, when, TS_TIME)) != 0)
		return r;
	if (m->state == APP_ST_UNDECRYPTABLE)
		return tui_wbuf_utf8(b, "\u26a0 a message that could not be "
		    "decrypted (ask them to send it again)", TS_NOTICE);
	if (m->outgoing) {
		r = tui_wbuf_utf8(b, "you", TS_ME);
	} else {
		c = tui_conv_find(t, t->cur, strlen(t->cur));
		r = tui_wbuf_utf8(b, c != NULL && c->name[0] != '\0' ?
		    c->name : tui_local(t->cur, who, sizeof(who)), TS_PEER);
	}
	if (r != 0 || (r = tui_wbuf_utf8(b, ": ", TS_TEXT)) != 0 ||
	    (r = tui_wbuf_utf8(b, m->text, TS_TEXT)) != 0)
		return r;
	if (!m->outgoing)
		return 0;
	switch (m->state) {
	case APP_ST_PENDING:
		return tui_wbuf_utf8(b, " \u2026 pending", TS_PENDING);
	case APP_ST_SENT:
		return tui_wbuf_utf8(b, " \u2713", TS_MARK);
	case APP_ST_DELIVERED:
		return tui_wbuf_utf8(b, " \u2713\u2713", TS_MARK);
	case APP_ST_READ:
		return tui_wbuf_utf8(b, " \u2713\u2713 read", TS_READ);
	case APP_ST_FAILED:
		return tui_wbuf_utf8(b, " \u2717 failed", TS_FAILED);
	default:
		return 0;
	}
}

/*
 * tui_draw_view: the conversation (or the page) in rows [top, bot),
 * columns [x0, x0 + width), newest at the bottom. Two passes: the first
 * counts rows so the second can place the last one on the bottom line.
 */
static void
tui_draw_view(struct tui *t, int top, int bot, int x0, int width)
{
	struct tui_wbuf b;
	int pass, total = 0, y = 0, height = bot - top, maxscroll;
	size_t i, ni;

	memset(&b, 0, sizeof(b));
	if (t->page != NULL) {
		for (pass = 0; pass < 2; pass++) {
			if (pass == 1) {
				maxscroll = total > height ? total - height : 0;
				if (t->page_scroll > maxscroll)
					t->page_scroll = maxscroll;
				/* A page reads from its top. */
				y = top - (maxscroll - t->page_scroll);
				if (total <= height)
					y = top;
			}
			for (i = 0; i < t->npage; i++) {
				int n;
				b.n = 0;
				if (tui_wbuf_utf8(&b, t->page[i], i == 0 ?
				    TS_PEER : TS_TEXT) != 0)
					break;
				n = tui_layout(t, &b, width, 2, pass == 1, y,
				    top, bot, x0);
				if (pass == 0)
					total += n;
				else
					y += n;
			}
		}
		tui_wbuf_free(&b);
		return;
	}
	if (t->cur[0] == '\0') {
		static const char *const hello[] = {
		    "No conversation open.",
		    "",
		    "/msg USER@DOMAIN opens one; Ctrl-N / Ctrl-P move through",
		    "the list on the left; /help lists every command and key.",
		};
		for (i = 0; i < sizeof(hello) / sizeof(hello[0]); i++) {
			b.n = 0;
			if (tui_wbuf_utf8(&b, hello[i], TS_TIME) == 0)
				y += tui_layout(t, &b, width, 0, true, top + 1 +
				    y, top, bot, x0);
		}
		tui_wbuf_free(&b);
		return;
	}
	for (pass = 0; pass < 2; pass++) {
		int lastday = -1;
		if (pass == 1) {
			maxscroll = total > height ? total - height : 0;
			if (t->scroll > maxscroll)
				t->scroll = maxscroll;
			if (t->scroll < 0)
				t->scroll = 0;
			y = bot - total + t->scroll;
		}
		ni = 0;
		for (i = 0; i <= t->nmsgs; i++) {
			int n, r = 0;
			/* Notices before this message (by time), then it. */
			while (ni < t->nnotice) {
				const struct tui_notice *no = &t->notice[ni];
				if (i < t->nmsgs && no->ms > t->msgs[i].ms)
					break;
				ni++;
				if (strcmp(no->peer, t->cur) != 0)
					continue;
				b.n = 0;
				{
					char when[16];
					tui_hhmm(no->ms, when, sizeof(when),
					    "%H:%M ");
					if (tui_wbuf_utf8(&b, when, TS_TIME) != 0 ||
					    tui_wbuf_utf8(&b, no->text,
					    TS_NOTICE) != 0)
						continue;
				}
				n = tui_layout(t, &b, width, 6, pass == 1, y,
				    top, bot, x0);
				if (pass == 0)
					total += n;
				else
					y += n;
			}
			if (i == t->nmsgs)
				break;
			if (tui_day(t->msgs[i].ms) != lastday) {
				char d[64];
				lastday = tui_day(t->msgs[i].ms);
				tui_hhmm(t->msgs[i].ms, d, sizeof(d),
				    "\u2500\u2500 %a %d %b %Y \u2500\u2500");
				b.n = 0;
				if (tui_wbuf_utf8(&b, d, TS_DAY) == 0) {
					n = tui_layout(t, &b, width, 0,
					    pass == 1, y, top, bot, x0);
					if (pass == 0)
						total += n;
					else
						y += n;
				}
			}
			b.n = 0;
			if ((r = tui_item_msg(t, &t->msgs[i], &b)) != 0)
				continue;
			n = tui_layout(t, &b, width, 6, pass == 1, y, top, bot,
			    x0);
			if (pass == 0)
				total += n;
			else
				y += n;
		}
	}
	tui_wbuf_free(&b);
}

/* --- drawing ------------------------------------------------------------- */

/* tui_put: UTF-8 text at (y, x), cut to at most cols columns. Returns the
 * columns used. */
static int
tui_put(struct tui *t, int y, int x, int cols, const char *s, attr_t a)
{
	struct tui_wbuf b;
	size_t i;
	int used = 0;

	memset(&b, 0, sizeof(b));
	if (cols <= 0 || tui_wbuf_utf8(&b, s, 0) != 0) {
		tui_wbuf_free(&b);
		return 0;
	}
	for (i = 0; i < b.n; i++) {
		int w = tui_wcw(b.w[i]);
		if (b.w[i] == '\n')
			b.w[i] = ' ';
		if (used + w > cols)
			break;
		used += w;
	}
	attrset(a);
	mvaddnwstr(y, x, b.w, (int)i);
	attrset(A_NORMAL);
	tui_wbuf_free(&b);
	return used;
}

static void
tui_fill(int y, int x, int cols, attr_t a)
{
	attrset(a);
	move(y, x);
	while (cols-- > 0)
		addch(' ');
	attrset(A_NORMAL);
}

static void
tui_header(struct tui *t, char *out, size_t cap)
{
	struct tui_conv *c;
	uint64_t now = uv_now(t->loop);
	char seen[64];
	size_t n;

	if (t->page != NULL) {
		snprintf(out, cap, "%s   (Esc: back)", t->page_title);
		return;
	}
	if (t->cur[0] == '\0') {
		snprintf(out, cap, "tern");
		return;
	}
	c = tui_conv_find(t, t->cur, strlen(t->cur));
	if (c != NULL && c->name[0] != '\0')
		n = (size_t)snprintf(out, cap, "%s <%s>", c->name, t->cur);
	else
		n = (size_t)snprintf(out, cap, "%s", t->cur);
	if (n >= cap)
		return;
	if (app_verified(t->app, t->cur) == 1)
		n += (size_t)snprintf(out + n, cap - n, " \u2714verified");
	if (n >= cap)
		return;
	if (app_identity_pending(t->app, t->cur) == 1)
		n += (size_t)snprintf(out + n, cap - n, " \u00b7 KEY CHANGED: "
		    "/verify, then /accept");
	if (n >= cap || c == NULL)
		return;
	if (c->typing_until > now) {
		snprintf(out + n, cap - n, " \u00b7 typing\u2026");
	} else if (c->presence == MSG_PRESENCE_ONLINE) {
		snprintf(out + n, cap - n, " \u00b7 online");
	} else if (c->presence == MSG_PRESENCE_OFFLINE) {
		if (c->last_seen_ms == 0)
			snprintf(seen, sizeof(seen), "offline");
		else if (tui_day(c->last_seen_ms) == tui_day(tui_wall_ms()))
			tui_hhmm(c->last_seen_ms, seen, sizeof(seen),
			    "last seen today %H:%M");
		else
			tui_hhmm(c->last_seen_ms, seen, sizeof(seen),
			    "last seen %Y-%m-%d %H:%M");
		snprintf(out + n, cap - n, " \u00b7 %s", seen);
	}
}

static void
tui_status(struct tui *t, char *out, size_t cap)
{
	uint64_t now = uv_now(t->loop);
	size_t n;

	switch (t->link) {
	case TL_ONLINE:
		n = (size_t)snprintf(out, cap, "\u25cf online");
		break;
	case TL_RETRY: {
		uint64_t left = t->retry_at > now ? t->retry_at - now : 0;
		n = (size_t)snprintf(out, cap, "\u25cb %s \u2014 reconnecting "
		    "in %u s", t->link_err != 0 ? tern_strerror(t->link_err) :
		    "offline", (unsigned)((left + 999) / 1000));
		break;
	}
	case TL_OFFLINE:
		n = (size_t)snprintf(out, cap, "\u25cb offline%s%s",
		    t->link_err != 0 ? ": " : "", t->link_err != 0 ?
		    tern_strerror(t->link_err) : "");
		break;
	default:
		n = (size_t)snprintf(out, cap, "\u25cb connecting\u2026");
		break;
	}
	if (n < cap)
		n += (size_t)snprintf(out + n, cap - n, " \u00b7 %s",
		    app_user(t->app));
	if (n < cap && t->flash[0] != '\0' && t->flash_until > now)
		snprintf(out + n, cap - n, " \u2502 %s", t->flash);
}

/* tui_draw_input: the input line, scrolled sideways to keep the cursor
 * in sight; leaves the terminal cursor on it. */
static void
tui_draw_input(struct tui *t, int y, int cols)
{
	int room = cols - 3, w = 0, x;
	size_t i;

	if (room < 4)
		return;
	if (t->ioff > t->icur)
		t->ioff = t->icur;
	for (;;) {
		w = 0;
		for (i = t->ioff; i < t->icur; i++)
			w += tui_wcw(t->input[i]);
		if (w < room || t->ioff >= t->icur)
			break;
		t->ioff++;
	}
	attrset(A_BOLD);
	mvaddstr(y, 0, t->page != NULL ? "? " : "> ");
	attrset(A_NORMAL);
	x = 2;
	for (i = t->ioff; i < t->ilen; i++) {
		int cw = tui_wcw(t->input[i]);
		if (x + cw > cols - 1)
			break;
		mvaddnwstr(y, x, &t->input[i], 1);
		x += cw;
	}
	move(y, 2 + w);
}

static void
tui_draw(struct tui *t)
{
	int rows, cols, lw, top, bot, i, mx;
	char line[1024];

	if (t->scr == NULL || t->quitting)
		return;
	getmaxyx(stdscr, rows, cols);
	erase();
	if (cols < TUI_MIN_COLS || rows < TUI_MIN_ROWS) {
		mvaddstr(0, 0, "terminal too small");
		refresh();
		return;
	}
	lw = cols >= 100 ? 26 : cols >= 70 ? 20 : 16;
	top = 1;
	bot = rows - 2;
	mx = lw + 1;

	/* header */
	tui_fill(0, 0, cols, A_REVERSE);
	tui_put(t, 0, 0, lw, " Chats", A_REVERSE | A_BOLD);
	tui_header(t, line, sizeof(line));
	tui_put(t, 0, mx, cols - mx, line, A_REVERSE | A_BOLD);

	/* conversations */
	for (i = top; i < bot; i++)
		mvaddnwstr(i, lw, L"\u2502", 1);
	for (i = 0; i < (int)t->nconv && top + i < bot; i++) {
		const struct tui_conv *c = &t->conv[i];
		char label[IDENT_ADDR_MAX + 1], cnt[16] = "";
		bool sel = strcmp(c->peer, t->cur) == 0;
		attr_t a = sel ? A_REVERSE : A_NORMAL;
		int used, cw = 0;
		if (sel)
			tui_fill(top + i, 0, lw, A_REVERSE);
		if (c->presence == MSG_PRESENCE_ONLINE)
			tui_put(t, top + i, 0, 2, "\u25cf", a |
			    (t->colors ? COLOR_PAIR(1) : 0) | A_BOLD);
		else
			tui_put(t, top + i, 0, 2, "\u25cb", a | A_DIM);
		if (c->unread > 0) {
			snprintf(cnt, sizeof(cnt), " %u", c->unread);
			cw = (int)strlen(cnt);
		}
		used = tui_put(t, top + i, 2, lw - 3 - cw, c->name[0] != '\0' ?
		    c->name : tui_local(c->peer, label, sizeof(label)),
		    a | (c->unread > 0 ? A_BOLD : 0));
		(void)used;
		if (cw > 0)
			tui_put(t, top + i, lw - cw - 1, cw, cnt, a | A_BOLD |
			    (t->colors ? COLOR_PAIR(4) : 0));
	}

	/* conversation or page */
	tui_draw_view(t, top, bot, mx + 1, cols - mx - 1);

	/* status */
	tui_fill(rows - 2, 0, cols, A_REVERSE);
	tui_status(t, line, sizeof(line));
	tui_put(t, rows - 2, 1, cols - 1, line, A_REVERSE);

	tui_draw_input(t, rows - 1, cols);
	refresh();
}

/* --- conversations list ------------------------------------------------- */

struct tui_convload {
	struct tui *t;
	struct tui_conv *v;
	size_t n;
};

static void
tui_conv_one(void *arg, const struct app_conv *c)
{
	struct tui_convload *l = arg;
	struct tui_conv *x, *old;
	size_t len = strlen(c->peer);

	if (l->n >= TUI_CONV_MAX || len > IDENT_ADDR_MAX)
		return;
	x = &l->v[l->n++];
	old = tui_conv_find(l->t, c->peer, len);
	if (old != NULL) {
		*x = *old;
	} else {
		memset(x, 0, sizeof(*x));
		memcpy(x->peer, c->peer, len + 1);
		x->presence = -1;
	}
	x->last_ms = c->last_ms;
	x->unread = c->unread;
}

static void tui_presence_cb(void *arg, const struct msg_presence *p);
static void tui_profile_resp(void *arg, int status, const struct msg *resp);

/* tui_conv_meet: presence and profile name of c, once per login. */
static void
tui_conv_meet(struct tui *t, struct tui_conv *c)
{
	struct msg m;

	if (t->link != TL_ONLINE)
		return;
	if (!c->subscribed && app_presence(t->app, c->peer, tui_presence_cb,
	    t) == 0)
		c->subscribed = true;
	if (!c->name_asked) {
		memset(&m, 0, sizeof(m));
		m.type = MSG_PROFILE_GET;
		m.u.profile_get.user.p = c->peer;
		m.u.profile_get.user.len = strlen(c->peer);
		if (app_request(t->app, &m, tui_profile_resp, t) == 0)
			c->name_asked = true;
	}
}

/* tui_load_convs: the list again, keeping what we know of each peer; the
 * open conversation is listed even before its first message. */
static void
tui_load_convs(struct tui *t)
{
	struct tui_convload l;
	size_t i;
	int r;

	l.t = t;
	l.n = 0;
	if ((l.v = calloc(TUI_CONV_MAX, sizeof(*l.v))) == NULL)
		return;
	r = app_conversations(t->app, tui_conv_one, &l);
	if (r != 0) {
		tui_flash(t, "conversations: %s", tern_strerror(r));
		free(l.v);
		return;
	}
	if (t->cur[0] != '\0' && l.n < TUI_CONV_MAX) {
		for (i = 0; i < l.n; i++)
			if (strcmp(l.v[i].peer, t->cur) == 0)
				break;
		if (i == l.n) {
			struct tui_conv *old = tui_conv_find(t, t->cur,
			    strlen(t->cur));
			memmove(&l.v[1], &l.v[0], l.n * sizeof(l.v[0]));
			if (old != NULL) {
				l.v[0] = *old;
			} else {
				memset(&l.v[0], 0, sizeof(l.v[0]));
				snprintf(l.v[0].peer, sizeof(l.v[0].peer), "%s",
				    t->cur);
				l.v[0].presence = -1;
			}
			l.n++;
		}
	}
	memcpy(t->conv, l.v, l.n * sizeof(l.v[0]));
	t->nconv = l.n;
	free(l.v);
	for (i = 0; i < t->nconv; i++)
		tui_conv_meet(t, &t->conv[i]);
}

/* --- network answers ------------------------------------------------------ */

static void
tui_presence_cb(void *arg, const struct msg_presence *p)
{
	struct tui *t = arg;
	struct tui_conv *c;

	if (t->quitting || p->state == 0xff) /* 0xff: a refused SUB */
		return;
	if ((c = tui_conv_find(t, p->user.p, p->user.len)) == NULL)
		return;
	c->presence = p->state;
	c->last_seen_ms = p->last_seen_ms;
	tui_draw(t);
}

static void
tui_profile_resp(void *arg, int status, const struct msg *resp)
{
	struct tui *t = arg;
	struct tui_conv *c;

	if (t->quitting || status != 0 || resp->type != MSG_PROFILE)
		return;
	if ((c = tui_conv_find(t, resp->u.profile.user.p,
	    resp->u.profile.user.len)) == NULL)
		return;
	tui_clean(c->name, sizeof(c->name), resp->u.profile.name.p,
	    resp->u.profile.name.len, false);
	tui_draw(t);
}

static void
tui_contacts_resp(void *arg, int status, const struct msg *resp)
{
	struct tui *t = arg;
	struct msg_str s;
	size_t pos = 0;

	if (t->quitting || status != 0 || resp->type != MSG_CONTACTS)
		return;
	t->ncontacts = 0;
	while (msg_addrlist_next(&resp->u.contacts.users, &pos, &s) == 1 &&
	    t->ncontacts < TUI_CONTACT_MAX) {
		if (s.len > IDENT_ADDR_MAX)
			continue;
		memcpy(t->contacts[t->ncontacts], s.p, s.len);
		t->contacts[t->ncontacts][s.len] = '\0';
		t->ncontacts++;
	}
}

static void
tui_contacts_load(struct tui *t)
{
	struct msg m;

	memset(&m, 0, sizeof(m));
	m.type = MSG_CONTACT_LIST;
	if (app_request(t->app, &m, tui_contacts_resp, t) != 0)
		return; /* offline: the list comes with the next login */
}

/* --- app callbacks ------------------------------------------------------ */

static void
tui_read_done(void *arg, int status)
{
	struct tui *t = arg;

	if (t->quitting)
		return;
	if (status != 0)
		tui_flash(t, "marking read: %s", tern_strerror(status));
	tui_load_convs(t);
	tui_draw(t);
}

/* tui_mark_read: the open conversation is on screen: READ receipts for
 * what it shows. */
static void
tui_mark_read(struct tui *t)
{
	struct tui_conv *c;
	int r;

	if (t->cur[0] == '\0' || t->page != NULL)
		return;
	c = tui_conv_find(t, t->cur, strlen(t->cur));
	if (c == NULL || c->unread == 0)
		return;
	c->unread = 0;
	if ((r = app_mark_read(t->app, t->cur, tui_read_done, t)) != 0)
		tui_flash(t, "marking read: %s", tern_strerror(r));
}

/* tui_notify: the bell and a desktop notification (OSC 777 and OSC 9)
 * for a message in a conversation not on screen. The text goes in only
 * with notify=text: notifications may show on a locked screen. */
static void
tui_notify(struct tui *t, const struct app_msg *m)
{
	char body[512], peer[IDENT_ADDR_MAX + 1], text[160], seq[1100];
	ssize_t w;
	int n;

	if (strcmp(t->notify, "off") == 0)
		return;
	beep();
	tui_clean(peer, sizeof(peer), m->peer, strlen(m->peer), true);
	if (strcmp(t->notify, "text") == 0 && m->state !=
	    APP_ST_UNDECRYPTABLE) {
		tui_clean(text, sizeof(text), m->text, strlen(m->text), true);
		snprintf(body, sizeof(body), "%s: %s", peer, text);
	} else {
		snprintf(body, sizeof(body), "new message from %s", peer);
	}
	n = snprintf(seq, sizeof(seq), "\033]777;notify;tern;%s\007"
	    "\033]9;%s\007", body, body);
	if (n > 0 && (size_t)n < sizeof(seq)) {
		/* ncurses has flushed its own output by now (tui_draw runs
		 * first), so the sequence lands between two updates. */
		refresh();
		w = write(STDOUT_FILENO, seq, (size_t)n);
		(void)w; /* a notification is best effort */
	}
}

static void
tui_on_message(struct app *a, const struct app_msg *m)
{
	struct tui *t = app_data(a);
	bool here;

	if (t->quitting)
		return;
	here = strcmp(m->peer, t->cur) == 0;
	if (!m->outgoing) {
		struct tui_conv *c = tui_conv_find(t, m->peer,
		    strlen(m->peer));
		if (c != NULL)
			c->typing_until = 0; /* the message ends the typing */
	}
	tui_load_convs(t);
	if (here)
		tui_load_view(t);
	if (here && t->page == NULL) {
		if (!m->outgoing)
			tui_mark_read(t);
	}
	tui_draw(t);
	if (!m->outgoing && (!here || t->page != NULL))
		tui_notify(t, m);
}

static void
tui_on_receipt(struct app *a, const uint8_t id[MSG_ID_LEN], const char *peer,
    int state)
{
	struct tui *t = app_data(a);

	if (t->quitting)
		return;
	if (strcmp(peer, t->cur) == 0)
		tui_load_view(t);
	tui_draw(t);
}

static void
tui_on_typing(struct app *a, const char *peer, int typing)
{
	struct tui *t = app_data(a);
	struct tui_conv *c;

	if (t->quitting || (c = tui_conv_find(t, peer, strlen(peer))) == NULL)
		return;
	c->typing_until = typing ? uv_now(t->loop) + TUI_TYPING_SHOW_MS : 0;
	tui_draw(t);
}

static void
tui_notice_add(struct tui *t, const char *peer, const char *text)
{
	struct tui_notice *n;

	if (t->nnotice == TUI_NOTICE_MAX) {
		memmove(&t->notice[0], &t->notice[1],
		    (TUI_NOTICE_MAX - 1) * sizeof(t->notice[0]));
		t->nnotice--;
	}
	n = &t->notice[t->nnotice++];
	snprintf(n->peer, sizeof(n->peer), "%s", peer);
	n->ms = tui_wall_ms();
	tui_clean(n->text, sizeof(n->text), text, strlen(text), false);
}

static void
tui_on_warn(struct app *a, int code, const char *peer, const char *text)
{
	struct tui *t = app_data(a);
	char line[TUI_NOTICE_TEXT];

	if (t->quitting)
		return;
	if (peer == NULL || peer[0] == '\0') {
		tui_flash(t, "%s", text);
		tui_draw(t);
		return;
	}
	switch (code) {
	case TERN_EIDENTITY:
		snprintf(line, sizeof(line), "\u26a0 The identity key of %s "
		    "changed. Their messages are held and nothing is sent "
		    "until you compare safety numbers (/verify) and /accept.",
		    peer);
		break;
	case TERN_EDECRYPT:
		snprintf(line, sizeof(line), "\u26a0 A message from %s could "
		    "not be decrypted.", peer);
		break;
	default:
		snprintf(line, sizeof(line), "\u26a0 %s", text);
		break;
	}
	tui_notice_add(t, peer, line);
	if (strcmp(peer, t->cur) != 0)
		tui_flash(t, "%s: see the conversation", peer);
	tui_load_convs(t);
	tui_draw(t);
}

static void
tui_on_link(struct app *a, int up, int err, uint32_t retry_ms)
{
	struct tui *t = app_data(a);
	size_t i;

	if (t->quitting)
		return;
	if (up) {
		t->link = TL_ONLINE;
		t->link_err = 0;
		for (i = 0; i < t->nconv; i++)
			tui_conv_meet(t, &t->conv[i]);
		tui_contacts_load(t);
		tui_load_view(t);
	} else {
		t->link = retry_ms > 0 ? TL_RETRY : TL_OFFLINE;
		t->link_err = err;
		t->retry_at = uv_now(t->loop) + retry_ms;
		for (i = 0; i < t->nconv; i++) {
			t->conv[i].subscribed = false;
			t->conv[i].name_asked = t->conv[i].name[0] != '\0';
			t->conv[i].presence = -1;
			t->conv[i].typing_until = 0;
		}
		t->typing_to[0] = '\0';
	}
	tui_draw(t);
}

static const struct app_cbs tui_cbs = {
	.message = tui_on_message,
	.receipt = tui_on_receipt,
	.typing = tui_on_typing,
	.warn = tui_on_warn,
	.link = tui_on_link,
};

static void
tui_started(void *arg, int status)
{
	struct tui *t = arg;

	if (t->quitting)
		return;
	if (status != 0) {
		t->link = TL_OFFLINE;
		t->link_err = status;
		tui_flash(t, "connecting: %s", status == TERN_EAUTH ?
		    "the node refused this device" : tern_strerror(status));
	}
	tui_draw(t);
}

/* --- typing indicator ---------------------------------------------------- */

static void
tui_typing_stop(struct tui *t)
{
	int r;

	if (t->typing_to[0] == '\0')
		return;
	/* A lost "stopped" is harmless: the peer's display expires on its
	 * own (TUI_TYPING_SHOW_MS). */
	r = app_send_typing(t->app, t->typing_to, 0);
	(void)r;
	t->typing_to[0] = '\0';
}

/* tui_typing_key: the user edited a message (not a command) in the open
 * conversation: "typing" at most every TUI_TYPING_EVERY_MS. */
static void
tui_typing_key(struct tui *t)
{
	uint64_t now = uv_now(t->loop);

	if (t->cur[0] == '\0' || t->link != TL_ONLINE)
		return;
	t->typing_key = now;
	if (t->ilen == 0 || t->input[0] == '/') {
		tui_typing_stop(t);
		return;
	}
	if (strcmp(t->typing_to, t->cur) == 0 &&
	    now - t->typing_sent < TUI_TYPING_EVERY_MS)
		return;
	if (t->typing_to[0] != '\0' && strcmp(t->typing_to, t->cur) != 0)
		tui_typing_stop(t);
	if (app_send_typing(t->app, t->cur, 1) == 0) {
		snprintf(t->typing_to, sizeof(t->typing_to), "%s", t->cur);
		t->typing_sent = now;
	}
}

static void
tui_tick_cb(uv_timer_t *h)
{
	struct tui *t = h->data;
	uint64_t now = uv_now(t->loop);

	size_t i;

	if (t->typing_to[0] != '\0' && now - t->typing_key >=
	    TUI_TYPING_IDLE_MS)
		tui_typing_stop(t);
	/* Messages the core sends again after a login (PENDING from an
	 * earlier run) change state with no callback: look again while
	 * any is pending. */
	for (i = 0; i < t->nmsgs; i++)
		if (t->msgs[i].outgoing && t->msgs[i].state == APP_ST_PENDING)
			break;
	if (i < t->nmsgs && t->link == TL_ONLINE)
		tui_load_view(t);
	tui_draw(t);
}

/* --- pages ---------------------------------------------------------------- */

static void
tui_page_close(struct tui *t)
{
	size_t i;

	for (i = 0; i < t->npage; i++)
		free(t->page[i]);
	free(t->page);
	t->page = NULL;
	t->npage = 0;
	t->page_scroll = 0;
}

/* tui_page_open: a new empty page; lines come with tui_page_add. */
static int
tui_page_open(struct tui *t, const char *title)
{
	tui_page_close(t);
	if ((t->page = calloc(TUI_PAGE_MAX, sizeof(*t->page))) == NULL)
		return TERN_ENOMEM;
	snprintf(t->page_title, sizeof(t->page_title), "%s", title);
	return 0;
}

static void
tui_page_add(struct tui *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
tui_page_add(struct tui *t, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (t->page == NULL || t->npage >= TUI_PAGE_MAX)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if ((t->page[t->npage] = strdup(line)) != NULL)
		t->npage++;
}

static const char *const tui_help[] = {
	"Commands",
	"  /msg USER@DOMAIN [TEXT]   open (and write to) a conversation",
	"  /add USER@DOMAIN          add a contact (sees your last seen)",
	"  /remove USER@DOMAIN       remove a contact",
	"  /verify [USER@DOMAIN]     the safety number to compare",
	"  /verify mark              you compared it: mark verified",
	"  /accept                   accept the contact's changed key",
	"  /search TEXT              search all conversations (lunch*)",
	"  /profile name|status VALUE  what others see of you",
	"  /privacy last-seen everyone|contacts|nobody",
	"  /notify on|off|text       bell and desktop notifications",
	"                            (text: with the message text)",
	"  /help                     this page",
	"  /quit                     leave (also Ctrl-C)",
	"  //TEXT                    send a message starting with /",
	"",
	"Keys",
	"  Enter                     send the message / run the command",
	"  Ctrl-N, Alt-Down          next conversation",
	"  Ctrl-P, Alt-Up            previous conversation",
	"  PgUp, PgDn                scroll the conversation or page",
	"  Left, Right, Home, End    move (also Ctrl-A, Ctrl-E)",
	"  Backspace, Delete         delete a character",
	"  Ctrl-W                    delete the word before the cursor",
	"  Ctrl-U                    delete to the start of the line",
	"  Ctrl-K                    delete to the end of the line",
	"  Up, Down                  earlier lines you typed",
	"  Tab                       complete a command or a contact",
	"  Esc                       close this page (or a search)",
	"  Ctrl-L                    redraw the screen",
	"",
	"Marks on your messages: \u2026 pending (not on the node yet),",
	"\u2713 sent, \u2713\u2713 delivered, \u2713\u2713 read.",
};

static void
tui_cmd_help(struct tui *t)
{
	size_t i;

	if (tui_page_open(t, "Help") != 0)
		return;
	for (i = 0; i < sizeof(tui_help) / sizeof(tui_help[0]); i++)
		tui_page_add(t, "%s", tui_help[i]);
}

/* --- commands ------------------------------------------------------------ */

struct tui_search {
	struct tui *t;
	size_t n;
};

static void
tui_search_one(void *arg, const struct app_msg *m)
{
	struct tui_search *s = arg;
	char when[32], text[400];

	tui_hhmm(m->sent_ms, when, sizeof(when), "%Y-%m-%d %H:%M");
	tui_clean(text, sizeof(text), m->text, strlen(m->text), false);
	tui_page_add(s->t, "%s  %s  %s: %s", when, m->peer, m->outgoing ?
	    "you" : m->from, text);
	s->n++;
}

static void
tui_cmd_search(struct tui *t, const char *q)
{
	struct tui_search s = {t, 0};
	char title[128], quoted[512];
	size_t i, o = 0;
	int r;

	if (q[0] == '\0') {
		tui_flash(t, "usage: /search TEXT");
		return;
	}
	snprintf(title, sizeof(title), "Search: %s", q);
	if (tui_page_open(t, title) != 0)
		return;
	tui_page_add(t, "Messages matching \u201c%s\u201d, newest first", q);
	r = app_search(t->app, q, TUI_SEARCH_MAX, tui_search_one, &s);
	if (r == TERN_EINVAL) {
		/* Not FTS5 syntax (a stray quote, a colon): search the words
		 * as one phrase instead. */
		quoted[o++] = '"';
		for (i = 0; q[i] != '\0' && o + 3 < sizeof(quoted); i++) {
			if (q[i] == '"')
				quoted[o++] = '"';
			quoted[o++] = q[i];
		}
		quoted[o++] = '"';
		quoted[o] = '\0';
		r = app_search(t->app, quoted, TUI_SEARCH_MAX, tui_search_one,
		    &s);
	}
	if (r != 0)
		tui_page_add(t, "search failed: %s", tern_strerror(r));
	else if (s.n == 0)
		tui_page_add(t, "no matches");
	else
		tui_page_add(t, "%zu match%s", s.n, s.n == 1 ? "" : "es");
}

static void
tui_req_done(void *arg, int status, const struct msg *resp)
{
	struct tui *t = arg;

	if (t->quitting)
		return;
	if (status != 0)
		tui_flash(t, "refused: %s", tern_strerror(status));
	else
		tui_flash(t, "done");
	tui_contacts_load(t);
	tui_draw(t);
}

static void
tui_profile_own(void *arg, int status, const struct msg *resp)
{
	struct tui *t = arg;
	struct msg m;
	int r;

	if (t->quitting || t->profile_field == 0)
		return;
	if (status != 0 || resp->type != MSG_PROFILE) {
		tui_flash(t, "profile: %s", tern_strerror(status != 0 ? status :
		    TERN_ETYPE));
		t->profile_field = 0;
		tui_draw(t);
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = MSG_PROFILE_SET;
	m.u.profile_set.name = resp->u.profile.name;
	m.u.profile_set.status = resp->u.profile.status;
	if (t->profile_field == 1) {
		m.u.profile_set.name.p = t->profile_value;
		m.u.profile_set.name.len = strlen(t->profile_value);
	} else {
		m.u.profile_set.status.p = t->profile_value;
		m.u.profile_set.status.len = strlen(t->profile_value);
	}
	t->profile_field = 0;
	if ((r = app_request(t->app, &m, tui_req_done, t)) != 0)
		tui_flash(t, "profile: %s", tern_strerror(r));
	tui_draw(t);
}

static int
tui_need_online(struct tui *t)
{
	if (t->link == TL_ONLINE)
		return 0;
	tui_flash(t, "offline: try again once connected");
	return -1;
}

static void
tui_verify_keys(void *arg, int status)
{
	struct tui *t = arg;
	char fp[61], title[IDENT_ADDR_MAX + 32];
	const char *u = t->verify_user;
	int r, i;

	if (t->quitting)
		return;
	if (status != 0 && status != TERN_ENOUSER) {
		tui_flash(t, "verify: %s", tern_strerror(status));
		tui_draw(t);
		return;
	}
	r = app_fingerprint(t->app, u, fp);
	if (r != 0) {
		tui_flash(t, "verify: %s", r == TERN_ENOTFOUND || status ==
		    TERN_ENOUSER ? "no keys known for that user" :
		    tern_strerror(r));
		tui_draw(t);
		return;
	}
	snprintf(title, sizeof(title), "Safety number with %s", u);
	if (tui_page_open(t, title) != 0)
		return;
	tui_page_add(t, "Safety number with %s", u);
	tui_page_add(t, "%s", "");
	for (i = 0; i < 12; i += 4)
		tui_page_add(t, "    %.5s %.5s %.5s %.5s", fp + 5 * i,
		    fp + 5 * (i + 1), fp + 5 * (i + 2), fp + 5 * (i + 3));
	tui_page_add(t, "%s", "");
	tui_page_add(t, "%s", app_verified(t->app, u) == 1 ?
	    "\u2714 verified" : "not verified: compare these digits with the "
	    "contact's screen (in person or on a call), then /verify mark");
	if (app_identity_pending(t->app, u) == 1)
		tui_page_add(t, "\u26a0 the identity key of %s changed and is "
		    "not accepted yet: /accept once the numbers match", u);
	tui_draw(t);
}

/* tui_arg_user: a normalized address from arg, else the open
 * conversation's; -1 (with a notice) if neither. */
static int
tui_arg_user(struct tui *t, const char *arg, char out[IDENT_ADDR_MAX + 1])
{
	if (arg[0] == '\0') {
		if (t->cur[0] == '\0') {
			tui_flash(t, "which user? (USER@DOMAIN)");
			return -1;
		}
		snprintf(out, IDENT_ADDR_MAX + 1, "%s", t->cur);
		return 0;
	}
	if (ident_addr_normalize(arg, out, IDENT_ADDR_MAX + 1) != 0) {
		tui_flash(t, "%s: not a user address (local@domain)", arg);
		return -1;
	}
	return 0;
}

static void tui_send(struct tui *t, const char *text);

static void
tui_command(struct tui *t, char *line)
{
	char *cmd = line + 1, *arg, user[IDENT_ADDR_MAX + 1];
	struct msg m;
	int r;

	arg = cmd + strcspn(cmd, " ");
	if (*arg != '\0')
		*arg++ = '\0';
	while (*arg == ' ')
		arg++;
	memset(&m, 0, sizeof(m));
	if (strcmp(cmd, "quit") == 0 || strcmp(cmd, "q") == 0) {
		tui_quit(t, TUI_EX_OK);
	} else if (strcmp(cmd, "help") == 0) {
		tui_cmd_help(t);
	} else if (strcmp(cmd, "msg") == 0) {
		char *text = arg + strcspn(arg, " ");
		if (*text != '\0')
			*text++ = '\0';
		if (arg[0] == '\0') {
			tui_flash(t, "usage: /msg USER@DOMAIN [TEXT]");
			return;
		}
		if (tui_arg_user(t, arg, user) != 0)
			return;
		tui_open_conv(t, user);
		if (*text != '\0')
			tui_send(t, text);
	} else if (strcmp(cmd, "add") == 0 || strcmp(cmd, "remove") == 0) {
		if (tui_arg_user(t, arg, user) != 0 || tui_need_online(t) != 0)
			return;
		if (cmd[0] == 'a') {
			m.type = MSG_CONTACT_ADD;
			m.u.contact_add.user.p = user;
			m.u.contact_add.user.len = strlen(user);
		} else {
			m.type = MSG_CONTACT_REMOVE;
			m.u.contact_remove.user.p = user;
			m.u.contact_remove.user.len = strlen(user);
		}
		if ((r = app_request(t->app, &m, tui_req_done, t)) != 0)
			tui_flash(t, "%s: %s", cmd, tern_strerror(r));
	} else if (strcmp(cmd, "verify") == 0) {
		if (strcmp(arg, "mark") == 0) {
			if (t->cur[0] == '\0') {
				tui_flash(t, "open a conversation first");
				return;
			}
			if ((r = app_verify_mark(t->app, t->cur)) != 0)
				tui_flash(t, "verify: %s", r == TERN_ENOTFOUND ?
				    "no keys known yet: /verify first" :
				    tern_strerror(r));
			else
				tui_flash(t, "%s marked verified", t->cur);
			return;
		}
		if (tui_arg_user(t, arg, user) != 0)
			return;
		snprintf(t->verify_user, sizeof(t->verify_user), "%s", user);
		if (t->link != TL_ONLINE) {
			/* The keys we have are enough to show the number. */
			tui_verify_keys(t, 0);
			return;
		}
		if ((r = app_fetch_keys(t->app, user, tui_verify_keys, t)) != 0)
			tui_flash(t, "verify: %s", tern_strerror(r));
	} else if (strcmp(cmd, "accept") == 0) {
		if (tui_arg_user(t, arg, user) != 0)
			return;
		if (app_identity_pending(t->app, user) != 1) {
			tui_flash(t, "no changed key to accept for %s", user);
			return;
		}
		if ((r = app_accept(t->app, user)) != 0) {
			tui_flash(t, "accept: %s", tern_strerror(r));
			return;
		}
		tui_notice_add(t, user, "\u2714 You accepted the new identity "
		    "key; held messages are decrypted.");
		tui_load_convs(t);
		tui_load_view(t);
	} else if (strcmp(cmd, "search") == 0) {
		tui_cmd_search(t, arg);
	} else if (strcmp(cmd, "profile") == 0) {
		char *val = arg + strcspn(arg, " ");
		int field;
		if (*val != '\0')
			*val++ = '\0';
		field = strcmp(arg, "name") == 0 ? 1 : strcmp(arg, "status") ==
		    0 ? 2 : 0;
		if (field == 0) {
			tui_flash(t, "usage: /profile name|status VALUE");
			return;
		}
		if (strlen(val) > (field == 1 ? MSG_NAME_MAX : MSG_STATUS_MAX)) {
			tui_flash(t, "profile: too long");
			return;
		}
		if (tui_need_online(t) != 0)
			return;
		snprintf(t->profile_value, sizeof(t->profile_value), "%s", val);
		t->profile_field = field;
		m.type = MSG_PROFILE_GET;
		m.u.profile_get.user.p = app_user(t->app);
		m.u.profile_get.user.len = strlen(app_user(t->app));
		if ((r = app_request(t->app, &m, tui_profile_own, t)) != 0) {
			t->profile_field = 0;
			tui_flash(t, "profile: %s", tern_strerror(r));
		}
	} else if (strcmp(cmd, "privacy") == 0) {
		char *val = arg + strcspn(arg, " ");
		if (*val != '\0')
			*val++ = '\0';
		while (*val == ' ')
			val++;
		if (strcmp(arg, "last-seen") != 0 ||
		    (strcmp(val, "everyone") != 0 &&
		    strcmp(val, "contacts") != 0 &&
		    strcmp(val, "nobody") != 0)) {
			tui_flash(t, "usage: /privacy last-seen "
			    "everyone|contacts|nobody");
			return;
		}
		if (tui_need_online(t) != 0)
			return;
		m.type = MSG_PRIVACY_SET;
		m.u.privacy_set.last_seen = strcmp(val, "everyone") == 0 ?
		    MSG_LAST_SEEN_EVERYONE : strcmp(val, "contacts") == 0 ?
		    MSG_LAST_SEEN_CONTACTS : MSG_LAST_SEEN_NOBODY;
		if ((r = app_request(t->app, &m, tui_req_done, t)) != 0)
			tui_flash(t, "privacy: %s", tern_strerror(r));
	} else if (strcmp(cmd, "notify") == 0) {
		if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0 &&
		    strcmp(arg, "text") != 0) {
			tui_flash(t, "notifications: %s (/notify on|off|text)",
			    t->notify);
			return;
		}
		if ((r = app_setting_set(t->app, "notify", arg)) != 0) {
			tui_flash(t, "notify: %s", tern_strerror(r));
			return;
		}
		snprintf(t->notify, sizeof(t->notify), "%s", arg);
		tui_flash(t, "notifications: %s", arg);
	} else {
		tui_flash(t, "/%s: no such command (/help)", cmd);
	}
}

/* --- sending ---------------------------------------------------------------- */

static void
tui_sent(void *arg, int status, const uint8_t id[MSG_ID_LEN])
{
	struct tui *t = arg;

	if (t->quitting)
		return;
	switch (status) {
	case 0:
	case TERN_ECLOSED:
	case TERN_EUNREACH:
	case TERN_ETIMEOUT:
	case TERN_ECANCELED:
		/* Sent, or still PENDING: it goes out at the next login. */
		break;
	case TERN_ENOUSER:
		tui_flash(t, "send: no such user");
		break;
	default:
		tui_flash(t, "send: %s", tern_strerror(status));
		break;
	}
	tui_load_view(t);
	tui_load_convs(t);
	tui_draw(t);
}

static void
tui_send(struct tui *t, const char *text)
{
	int r;

	if (t->cur[0] == '\0') {
		tui_flash(t, "no conversation open: /msg USER@DOMAIN");
		return;
	}
	tui_typing_stop(t);
	r = app_send_text(t->app, t->cur, text, tui_sent, t);
	if (r == TERN_EIDENTITY) {
		tui_notice_add(t, t->cur, "\u26a0 Not sent: the identity key "
		    "of this contact changed. Compare safety numbers (/verify) "
		    "and /accept first.");
	} else if (r != 0) {
		tui_flash(t, "send: %s", tern_strerror(r));
	}
	t->scroll = 0;
	tui_load_view(t);
	tui_load_convs(t);
}

/* --- input line -------------------------------------------------------------- */

static void
tui_inhist_add(struct tui *t, const char *s)
{
	char *c;

	if (t->ninhist > 0 && strcmp(t->inhist[t->ninhist - 1], s) == 0)
		return;
	if ((c = strdup(s)) == NULL)
		return;
	if (t->ninhist == TUI_INHIST_MAX) {
		free(t->inhist[0]);
		memmove(&t->inhist[0], &t->inhist[1],
		    (TUI_INHIST_MAX - 1) * sizeof(t->inhist[0]));
		t->ninhist--;
	}
	t->inhist[t->ninhist++] = c;
}

/* tui_input_set: the input line becomes UTF-8 s. */
static void
tui_input_set(struct tui *t, const char *s)
{
	size_t n = mbstowcs(t->input, s, TUI_INPUT_MAX);

	if (n == (size_t)-1)
		n = 0;
	t->input[n] = L'\0';
	t->ilen = t->icur = n;
	t->ioff = 0;
}

static void
tui_inhist_move(struct tui *t, int dir)
{
	char *line;
	size_t cap;

	if (dir < 0 && t->inhist_pos == 0)
		return;
	if (dir > 0 && t->inhist_pos >= t->ninhist)
		return;
	if (t->inhist_pos == t->ninhist) {
		wmemcpy(t->draft, t->input, t->ilen);
		t->draft[t->ilen] = L'\0';
	}
	t->inhist_pos = (size_t)((long)t->inhist_pos + dir);
	if (t->inhist_pos == t->ninhist) {
		cap = TUI_INPUT_MAX * MB_CUR_MAX + 1;
		if ((line = malloc(cap)) == NULL)
			return;
		if (wcstombs(line, t->draft, cap) == (size_t)-1)
			line[0] = '\0';
		tui_input_set(t, line);
		free(line);
		return;
	}
	tui_input_set(t, t->inhist[t->inhist_pos]);
}

static const char *const tui_cmds[] = {
	"/msg ", "/add ", "/remove ", "/verify ", "/accept", "/search ",
	"/profile ", "/privacy last-seen ", "/notify ", "/help", "/quit",
};

/* tui_complete: Tab: completes the word before the cursor: a command
 * at the start of the line, else a contact's address. */
static void
tui_complete(struct tui *t)
{
	char word[IDENT_ADDR_MAX + 1], cands[TUI_CONV_MAX + TUI_CONTACT_MAX +
	    16][IDENT_ADDR_MAX + 24];
	size_t ws = t->icur, wl, n = 0, i, j, common;
	const char *one;

	while (ws > 0 && t->input[ws - 1] != L' ')
		ws--;
	wl = t->icur - ws;
	if (wl > IDENT_ADDR_MAX / 4)
		return;
	{
		wchar_t tmp[IDENT_ADDR_MAX + 1];
		wmemcpy(tmp, t->input + ws, wl);
		tmp[wl] = L'\0';
		if (wcstombs(word, tmp, sizeof(word)) == (size_t)-1)
			return;
	}
	if (ws == 0 && word[0] == '/') {
		for (i = 0; i < sizeof(tui_cmds) / sizeof(tui_cmds[0]); i++)
			if (strncmp(tui_cmds[i], word, strlen(word)) == 0)
				snprintf(cands[n++], sizeof(cands[0]), "%s",
				    tui_cmds[i]);
	} else {
		for (i = 0; i < t->nconv + t->ncontacts; i++) {
			const char *p = i < t->nconv ? t->conv[i].peer :
			    t->contacts[i - t->nconv];
			if (strncmp(p, word, strlen(word)) != 0)
				continue;
			for (j = 0; j < n; j++)
				if (strncmp(cands[j], p, strlen(p)) == 0 &&
				    cands[j][strlen(p)] == ' ')
					break;
			if (j == n && n < sizeof(cands) / sizeof(cands[0]))
				snprintf(cands[n++], sizeof(cands[0]), "%s ",
				    p);
		}
	}
	if (n == 0)
		return;
	one = cands[0];
	common = strlen(one);
	for (i = 1; i < n; i++) {
		for (j = 0; j < common && cands[i][j] == one[j]; j++)
			;
		common = j;
	}
	if (n > 1) {
		char list[TUI_FLASH_MAX];
		size_t o = 0;
		for (i = 0; i < n && o + 2 < sizeof(list); i++)
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s",
			    cands[i]);
		if (o >= sizeof(list))
			o = sizeof(list) - 1;
		list[o] = '\0';
		tui_flash(t, "%s", list);
	}
	{
		wchar_t add[IDENT_ADDR_MAX + 24];
		char c[IDENT_ADDR_MAX + 24];
		size_t an;
		memcpy(c, one, common);
		c[common] = '\0';
		an = mbstowcs(add, c, sizeof(add) / sizeof(add[0]) - 1);
		if (an == (size_t)-1 || an < wl || t->ilen - wl + an >
		    TUI_INPUT_MAX)
			return;
		wmemmove(t->input + ws + an, t->input + t->icur,
		    t->ilen - t->icur);
		wmemcpy(t->input + ws, add, an);
		t->ilen = t->ilen - wl + an;
		t->icur = ws + an;
		t->input[t->ilen] = L'\0';
	}
}

static void
tui_enter(struct tui *t)
{
	size_t cap = TUI_INPUT_MAX * MB_CUR_MAX + 1;
	char *line;

	if (t->ilen == 0)
		return;
	if ((line = malloc(cap)) == NULL)
		return;
	t->input[t->ilen] = L'\0';
	if (wcstombs(line, t->input, cap) == (size_t)-1) {
		free(line);
		tui_flash(t, "the line is not valid text");
		return;
	}
	tui_inhist_add(t, line);
	t->inhist_pos = t->ninhist;
	t->ilen = t->icur = t->ioff = 0;
	t->input[0] = L'\0';
	if (line[0] == '/' && line[1] != '/')
		tui_command(t, line);
	else if (strlen(line) > APP_TEXT_MAX)
		tui_flash(t, "message over %d bytes", APP_TEXT_MAX);
	else
		tui_send(t, line[0] == '/' ? line + 1 : line);
	free(line);
}

/* tui_switch: the next (dir 1) or previous (-1) conversation. */
static void
tui_switch(struct tui *t, int dir)
{
	size_t i;

	if (t->nconv == 0)
		return;
	for (i = 0; i < t->nconv; i++)
		if (strcmp(t->conv[i].peer, t->cur) == 0)
			break;
	if (i == t->nconv)
		i = dir > 0 ? t->nconv - 1 : 0;
	i = (i + t->nconv + (size_t)(long)dir) % t->nconv;
	tui_open_conv(t, t->conv[i].peer);
}

/* tui_open_conv: peer's conversation on screen (read: READ receipts). */
static void
tui_open_conv(struct tui *t, const char *peer)
{
	struct tui_conv *c;

	if (strcmp(t->typing_to, peer) != 0)
		tui_typing_stop(t);
	tui_page_close(t);
	snprintf(t->cur, sizeof(t->cur), "%s", peer);
	t->scroll = 0;
	tui_load_convs(t);
	tui_load_view(t);
	if ((c = tui_conv_find(t, peer, strlen(peer))) != NULL)
		tui_conv_meet(t, c);
	tui_mark_read(t);
}

static void
tui_key_edit(struct tui *t, wint_t c)
{
	size_t i;

	switch (c) {
	case 1: /* Ctrl-A */
		t->icur = 0;
		return;
	case 5: /* Ctrl-E */
		t->icur = t->ilen;
		return;
	case 2: /* Ctrl-B */
		if (t->icur > 0)
			t->icur--;
		return;
	case 6: /* Ctrl-F */
		if (t->icur < t->ilen)
			t->icur++;
		return;
	case 8:
	case 127:
		if (t->icur == 0)
			return;
		wmemmove(t->input + t->icur - 1, t->input + t->icur,
		    t->ilen - t->icur);
		t->icur--;
		t->ilen--;
		break;
	case 4: /* Ctrl-D: delete under the cursor */
		if (t->icur == t->ilen)
			return;
		wmemmove(t->input + t->icur, t->input + t->icur + 1,
		    t->ilen - t->icur - 1);
		t->ilen--;
		break;
	case 23: /* Ctrl-W */
		i = t->icur;
		while (i > 0 && t->input[i - 1] == L' ')
			i--;
		while (i > 0 && t->input[i - 1] != L' ')
			i--;
		wmemmove(t->input + i, t->input + t->icur, t->ilen - t->icur);
		t->ilen -= t->icur - i;
		t->icur = i;
		break;
	case 21: /* Ctrl-U */
		wmemmove(t->input, t->input + t->icur, t->ilen - t->icur);
		t->ilen -= t->icur;
		t->icur = 0;
		break;
	case 11: /* Ctrl-K */
		t->ilen = t->icur;
		break;
	default:
		if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0) ||
		    wcwidth((wchar_t)c) < 0 || t->ilen >= TUI_INPUT_MAX)
			return;
		wmemmove(t->input + t->icur + 1, t->input + t->icur,
		    t->ilen - t->icur);
		t->input[t->icur++] = (wchar_t)c;
		t->ilen++;
		break;
	}
	t->input[t->ilen] = L'\0';
	tui_typing_key(t);
}

static void
tui_scroll(struct tui *t, int dir)
{
	int rows, cols, page;

	getmaxyx(stdscr, rows, cols);
	(void)cols;
	page = rows - 5 > 1 ? rows - 5 : 1;
	if (t->page != NULL) {
		t->page_scroll -= dir * page;
		if (t->page_scroll < 0)
			t->page_scroll = 0;
	} else {
		t->scroll += dir * page;
		if (t->scroll < 0)
			t->scroll = 0;
	}
}

static void
tui_resize(struct tui *t)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 &&
	    ws.ws_col > 0)
		/* resize_term, not resizeterm: that one queues KEY_RESIZE,
		 * which would bring us back here. */
		(void)resize_term(ws.ws_row, ws.ws_col);
	clearok(curscr, TRUE);
}

static void
tui_key_code(struct tui *t, int k)
{
	const char *name;

	switch (k) {
	case KEY_LEFT:
		if (t->icur > 0)
			t->icur--;
		return;
	case KEY_RIGHT:
		if (t->icur < t->ilen)
			t->icur++;
		return;
	case KEY_HOME:
		t->icur = 0;
		return;
	case KEY_END:
		t->icur = t->ilen;
		return;
	case KEY_BACKSPACE:
		tui_key_edit(t, 127);
		return;
	case KEY_DC:
		tui_key_edit(t, 4);
		return;
	case KEY_UP:
		tui_inhist_move(t, -1);
		return;
	case KEY_DOWN:
		tui_inhist_move(t, 1);
		return;
	case KEY_PPAGE:
		tui_scroll(t, 1);
		return;
	case KEY_NPAGE:
		tui_scroll(t, -1);
		return;
	case KEY_ENTER:
		tui_enter(t);
		return;
	case KEY_RESIZE:
		/* ncurses' own notice of a resize: SIGWINCH did the work. */
		clearok(curscr, TRUE);
		return;
	case KEY_F(1):
		tui_cmd_help(t);
		return;
	default:
		break;
	}
	/* Alt-Up/Down have no fixed KEY_ code: terminfo names them. */
	name = keyname(k);
	if (name == NULL)
		return;
	if (strcmp(name, "kUP3") == 0 || strcmp(name, "kUP5") == 0)
		tui_switch(t, -1);
	else if (strcmp(name, "kDN3") == 0 || strcmp(name, "kDN5") == 0)
		tui_switch(t, 1);
}

static void
tui_key(struct tui *t, int rc, wint_t c)
{
	wint_t c2;
	int rc2;

	if (rc == KEY_CODE_YES) {
		tui_key_code(t, (int)c);
		return;
	}
	switch (c) {
	case 3: /* Ctrl-C */
		tui_quit(t, TUI_EX_OK);
		return;
	case '\r':
	case '\n':
		tui_enter(t);
		return;
	case '\t':
		tui_complete(t);
		return;
	case 12: /* Ctrl-L */
		clearok(curscr, TRUE);
		return;
	case 14: /* Ctrl-N */
		tui_switch(t, 1);
		return;
	case 16: /* Ctrl-P */
		tui_switch(t, -1);
		return;
	case 27:
		/* Esc alone closes a page; Esc + arrow is Alt + arrow on
		 * terminals that send a meta prefix. */
		rc2 = get_wch(&c2);
		if (rc2 == KEY_CODE_YES && c2 == KEY_UP) {
			tui_switch(t, -1);
		} else if (rc2 == KEY_CODE_YES && c2 == KEY_DOWN) {
			tui_switch(t, 1);
		} else if (rc2 == ERR) {
			if (t->page != NULL) {
				tui_page_close(t);
				tui_mark_read(t);
			}
		}
		return;
	default:
		tui_key_edit(t, c);
		return;
	}
}

/* --- loop plumbing ------------------------------------------------------------ */

static void
tui_input_cb(uv_poll_t *h, int status, int events)
{
	struct tui *t = h->data;
	wint_t c;
	int rc, n = 0;

	if (status < 0 || (events & UV_DISCONNECT) != 0) {
		/* The terminal is gone (its SIGHUP may come too). */
		tui_quit(t, TUI_EX_FAIL);
		return;
	}
	while (!t->quitting && n++ < 4096 && (rc = get_wch(&c)) != ERR)
		tui_key(t, rc, c);
	tui_draw(t);
}

static void
tui_signal_cb(uv_signal_t *h, int signum)
{
	struct tui *t = h->data;

	if (signum == SIGWINCH) {
		tui_resize(t);
		tui_draw(t);
		return;
	}
	tui_quit(t, signum == SIGINT ? TUI_EX_OK : TUI_EX_FAIL);
}

static void
tui_handle_closed(uv_handle_t *h)
{
	struct tui *t = h->data;

	t->handles--;
}

static void
tui_app_closed(void *arg)
{
	struct tui *t = arg;

	t->closed_app = true;
}

/* tui_quit: closes everything; uv_run returns once it is closed. */
static void
tui_quit(struct tui *t, int code)
{
	if (t->quitting)
		return;
	tui_typing_stop(t);
	t->quitting = true;
	t->exit = code;
	if (t->handles > 0) {
		uv_close((uv_handle_t *)&t->in, tui_handle_closed);
		uv_close((uv_handle_t *)&t->tick, tui_handle_closed);
		uv_close((uv_handle_t *)&t->sigwinch, tui_handle_closed);
		uv_close((uv_handle_t *)&t->sigterm, tui_handle_closed);
		uv_close((uv_handle_t *)&t->sighup, tui_handle_closed);
		uv_close((uv_handle_t *)&t->sigint, tui_handle_closed);
	}
	if (t->app != NULL) {
		app_close(t->app, tui_app_closed, t);
		t->app = NULL;
	}
}

static int
tui_handles_init(struct tui *t)
{
	int r = 0;

	if (uv_poll_init(t->loop, &t->in, STDIN_FILENO) != 0)
		return TERN_EIO;
	t->in.data = t;
	uv_timer_init(t->loop, &t->tick);
	t->tick.data = t;
	uv_signal_init(t->loop, &t->sigwinch);
	uv_signal_init(t->loop, &t->sigterm);
	uv_signal_init(t->loop, &t->sighup);
	uv_signal_init(t->loop, &t->sigint);
	t->sigwinch.data = t->sigterm.data = t->sighup.data =
	    t->sigint.data = t;
	t->handles = 6;
	r |= uv_poll_start(&t->in, UV_READABLE | UV_DISCONNECT,
	    tui_input_cb);
	r |= uv_timer_start(&t->tick, tui_tick_cb, TUI_TICK_MS, TUI_TICK_MS);
	r |= uv_signal_start(&t->sigwinch, tui_signal_cb, SIGWINCH);
	r |= uv_signal_start(&t->sigterm, tui_signal_cb, SIGTERM);
	r |= uv_signal_start(&t->sighup, tui_signal_cb, SIGHUP);
	r |= uv_signal_start(&t->sigint, tui_signal_cb, SIGINT);
	return r != 0 ? TERN_EIO : 0;
}

static int
tui_curses_init(struct tui *t)
{
	if ((t->scr = newterm(NULL, stdout, stdin)) == NULL)
		return TERN_EIO;
	set_term(t->scr);
	raw();
	noecho();
	nonl();
	keypad(stdscr, TRUE);
	nodelay(stdscr, TRUE);
	intrflush(stdscr, FALSE);
	set_escdelay(25);
	if (has_colors() && start_color() == OK) {
		use_default_colors();
		init_pair(1, COLOR_GREEN, -1);
		init_pair(2, COLOR_CYAN, -1);
		init_pair(3, COLOR_BLUE, -1);
		init_pair(4, COLOR_YELLOW, -1);
		init_pair(5, COLOR_RED, -1);
		t->colors = true;
	}
	return 0;
}

static void
tui_curses_end(struct tui *t)
{
	if (t->scr == NULL)
		return;
	endwin();
	delscreen(t->scr);
	t->scr = NULL;
}

static void
tui_free(struct tui *t)
{
	size_t i;

	tui_msgs_free(t);
	tui_page_close(t);
	for (i = 0; i < t->ninhist; i++)
		free(t->inhist[i]);
	t->ninhist = 0;
}

int
tui_main(const char *dir, const char *nameserver)
{
	struct tui *t;
	uv_loop_t loop;
	int r, code;

	(void)nameserver; /* registration, the one DNS user, is the CLI's */
	setlocale(LC_ALL, "");
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return TUI_EX_FAIL;
	if (uv_loop_init(&loop) != 0) {
		free(t);
		return TUI_EX_FAIL;
	}
	t->loop = &loop;
	t->profile = dir;
	t->link = TL_CONNECTING;
	snprintf(t->notify, sizeof(t->notify), "on");
	if ((r = app_open(&loop, dir, &tui_cbs, t, &t->app)) != 0) {
		fprintf(stderr, "tern: cannot open the profile %s: %s\n", dir,
		    tern_strerror(r));
		t->app = NULL;
		t->exit = TUI_EX_FAIL;
		goto out;
	}
	if (!app_registered(t->app)) {
		fprintf(stderr, "tern: not registered: run `tern register "
		    "USER@DOMAIN` first (profile %s)\n", dir);
		tui_quit(t, TUI_EX_NOTREG);
		goto out;
	}
	if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
		fprintf(stderr, "tern: the chat needs a terminal; scripts "
		    "use the commands (tern --help)\n");
		tui_quit(t, TUI_EX_USAGE);
		goto out;
	}
	{
		char v[8];
		if (app_setting_get(t->app, "notify", v, sizeof(v)) == 0 &&
		    (strcmp(v, "off") == 0 || strcmp(v, "on") == 0 ||
		    strcmp(v, "text") == 0))
			snprintf(t->notify, sizeof(t->notify), "%s", v);
	}
	if ((r = tui_curses_init(t)) != 0) {
		fprintf(stderr, "tern: cannot use the terminal (TERM=%s)\n",
		    getenv("TERM") != NULL ? getenv("TERM") : "");
		tui_quit(t, TUI_EX_FAIL);
		goto out;
	}
	if ((r = tui_handles_init(t)) != 0) {
		tui_quit(t, TUI_EX_FAIL);
		goto out;
	}
	tui_load_convs(t);
	if (t->nconv > 0)
		tui_open_conv(t, t->conv[0].peer);
	tui_draw(t);
	if ((r = app_start(t->app, true, tui_started, t)) != 0) {
		tui_flash(t, "connecting: %s", tern_strerror(r));
		tui_draw(t);
	}
out:
	uv_run(&loop, UV_RUN_DEFAULT);
	tui_curses_end(t);
	if (uv_loop_close(&loop) != 0)
		fprintf(stderr, "tern: handles left open at exit\n");
	code = t->exit;
	tui_free(t);
	free(t);
	return code;
}
