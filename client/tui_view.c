/*
 * tui_view.c: the terminal chat's layout and drawing: wide-character line
 * breaking, the conversation view, the list, header, status and input
 * rows (tui_internal.h).
 */
#include "tui_internal.h"

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

void
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
void
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

void
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

void
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

