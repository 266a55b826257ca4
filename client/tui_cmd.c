/*
 * tui_cmd.c: the terminal chat's pages (/help, /search, /verify) and
 * commands, and sending what is typed (tui_internal.h).
 */
#include "tui_internal.h"

/* --- pages ---------------------------------------------------------------- */

void
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
	/* A title is one screen line: cut, never overflow. */
	snprintf(t->page_title, sizeof(t->page_title), "%.*s",
	    (int)sizeof(t->page_title) - 1, title);
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

void
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


void
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

void
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

