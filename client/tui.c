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
#include "tui_internal.h"

/* --- small helpers -------------------------------------------------- */

uint64_t
tui_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* tui_flash: a one-line notice on the status line for a while. */
void
tui_flash(struct tui *t, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(t->flash, sizeof(t->flash), fmt, ap);
	va_end(ap);
	t->flash_until = uv_now(t->loop) + TUI_FLASH_MS;
}

struct tui_conv *
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
void
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

const char *
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
void
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

void
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

void
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

void
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
void
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
void
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
