/*
 * tui_internal.h: what the terminal chat's files (tui.c: state, app
 * callbacks, typing, input and the loop; tui_view.c: layout and drawing;
 * tui_cmd.c: pages, commands, sending) share. Not an interface for
 * anything else: tui.h is.
 */
#ifndef TERN_TUI_INTERNAL_H
#define TERN_TUI_INTERNAL_H

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



/* Shared between the tui files (see each definition). */
uint64_t tui_wall_ms(void);
void tui_flash(struct tui *t, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
struct tui_conv *tui_conv_find(struct tui *t, const char *peer, size_t len);
void tui_clean(char *out, size_t cap, const char *s, size_t len, bool semi);
const char *tui_local(const char *addr, char *out, size_t cap);
void tui_msgs_free(struct tui *t);
void tui_load_view(struct tui *t);
void tui_hhmm(uint64_t ms, char *out, size_t cap, const char *fmt)
    __attribute__((format(strftime, 4, 0)));
void tui_draw(struct tui *t);
void tui_load_convs(struct tui *t);
void tui_contacts_load(struct tui *t);
void tui_notice_add(struct tui *t, const char *peer, const char *text);
void tui_typing_stop(struct tui *t);
void tui_page_close(struct tui *t);
void tui_cmd_help(struct tui *t);
void tui_command(struct tui *t, char *line);
void tui_send(struct tui *t, const char *text);
void tui_open_conv(struct tui *t, const char *peer);
void tui_quit(struct tui *t, int code);

#endif
