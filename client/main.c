/*
 * main.c: `tern`, the client. With a subcommand it is a plain CLI for
 * people and scripts (this file); without one it is the terminal chat
 * (tui.c).
 *
 * Every command opens the profile, does one thing and exits. Commands that
 * talk to the node connect, log in, top up the node's prekeys, take in
 * whatever envelopes are waiting (they are stored and acknowledged, and
 * `tern inbox` prints them) and then do their work. Errors are one line on
 * stderr and a distinct exit status (see usage()).
 */
#include <errno.h>
#include <signal.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <uv.h>

#include "app.h"
#include "buf.h"
#include "client.h"
#include "dns.h"
#include "ident.h"
#include "msg.h"
#include "tern_err.h"
#include "tui.h"

/* Exit statuses: one per thing a script may want to tell apart. */
#define EX_OK 0
#define EX_FAIL 1          /* anything else */
#define EX_USAGE 2         /* bad command line */
#define EX_NOUSER 3        /* no such user or device */
#define EX_NOTREG 4        /* this profile is not registered */
#define EX_IDENTITY 5      /* a peer's identity key changed */
#define EX_UNREACH 6       /* the node could not be reached */
#define EX_QUOTA 7         /* the recipient's mailbox is full */
#define EX_RATE 8          /* rate limited; try later */
#define EX_DENIED 9        /* refused: bad invite, name taken, login */

#define QUIET_MS 400       /* inbox: this long without envelopes = done */
#define DRAIN_MAX_MS 30000 /* ... but never longer than this */
#define TEXT_STDIN_MAX (APP_TEXT_MAX + 1)

enum cmd {
	CMD_REGISTER, CMD_SEND, CMD_INBOX, CMD_READ, CMD_STATUS, CMD_VERIFY,
	CMD_ACCEPT, CMD_PROFILE, CMD_PRIVACY, CMD_CONTACTS, CMD_LASTSEEN,
	CMD_HISTORY, CMD_RESET_KEYS, CMD_KEYS, CMD_TYPING, CMD_SEARCH,
	CMD_LINK, CMD_DEVICES
};

struct job {
	uv_loop_t *loop;
	struct app *app;
	struct dns *dns;
	int cmd;
	int exit;
	bool done;
	/* options */
	const char *profile;
	const char *server;
	const char *invite;
	const char *nameserver;
	bool json, follow, mark, lines;
	uint32_t quiet_ms;
	uint32_t prekeys;
	uint32_t link_device;      /* link --device N */
	char *argv[4];
	int argc;
	/* send --lines */
	FILE *in;
	char *text;
	size_t nsent, ninflight;
	bool eof;
	/* lastseen --follow: subscribed; connections made so far */
	bool watching;
	uint32_t links_up;
	/* Ctrl-C and SIGTERM end inbox --follow cleanly. */
	uv_signal_t sigint, sigterm;
	bool sig_open;
	/* drain */
	uv_timer_t quiet;
	uint64_t last_activity;
	uint64_t drain_start;
	bool draining;
	bool quiet_open;
	/* profile */
	struct msg profile_msg;
	char pname[MSG_NAME_MAX + 1], pstatus[MSG_STATUS_MAX + 1];
	char user[IDENT_ADDR_MAX + 1];
};

static void job_after_start(struct job *j);
static void presence_cb(void *arg, const struct msg_presence *p);
static void job_finish(struct job *j, int code);
static void device_added(void *arg, int status, uint32_t id);
static void resp_devices(void *arg, int status, const struct msg *resp);
static int unhex32(const char *s, uint8_t out[32]);

static void
usage(FILE *f)
{
	fprintf(f,
"usage: tern [--profile DIR] COMMAND [ARGS]\n"
"\n"
"  register USER@DOMAIN [--invite CODE] [--server HOST:PORT] [--dns IP:PORT]\n"
"  send USER@DOMAIN [TEXT]       text from the argument or stdin; waits for SENT\n"
"       [--lines]                each stdin line is a message\n"
"  inbox [--follow] [--json]     receive, decrypt, acknowledge, print\n"
"  read USER@DOMAIN              mark the conversation read (READ receipts)\n"
"  status ID                     sent / delivered / read of a message we sent\n"
"  history [USER@DOMAIN] [--json] the local history\n"
"  search TEXT [--json]          full-text search of the local history\n"
"  verify USER@DOMAIN [--mark]   the safety number; --mark: compared, verified\n"
"  accept USER@DOMAIN            accept a changed identity key\n"
"  profile set name|status VALUE\n"
"  privacy last-seen everyone|contacts|nobody\n"
"  contacts add|remove USER@DOMAIN | contacts list\n"
"  lastseen USER@DOMAIN [--follow] online / last seen; --follow: each change\n"
"  typing USER@DOMAIN [on|off]   a typing indicator (not stored anywhere)\n"
"  keys                          this device's prekeys on the node\n"
"  link USER@DOMAIN [--server H:P] then, with the id, link USER@DOMAIN --device N\n"
"                                make this profile another device of USER\n"
"  devices [add KEY [NAME] | remove N]  list, authorize or revoke our devices\n"
"  reset-keys                    new identity (a device restored without keys)\n"
"  register ... [--prekeys N]    one-time prekeys kept on the node (1..100)\n"
"\n"
"The profile (default ~/.local/share/tern) holds this device's keys and\n"
"history. Without --server the node is found by DNS SRV _tern._tcp.DOMAIN.\n"
"\n"
"exit status: 0 ok, 1 error, 2 usage, 3 no such user, 4 not registered,\n"
"5 identity changed, 6 node unreachable, 7 mailbox full, 8 rate limited,\n"
"9 refused\n");
}

static int
exit_for(int err)
{
	switch (err) {
	case 0:
		return EX_OK;
	case TERN_ENOUSER:
		return EX_NOUSER;
	case TERN_EIDENTITY:
		return EX_IDENTITY;
	case TERN_EUNREACH:
	case TERN_ETIMEOUT:
	case TERN_ECLOSED:
	case TERN_EIO:
	case TERN_ENOTFOUND:
	case TERN_ENOSERVICE:
		return EX_UNREACH;
	case TERN_EQUOTA:
		return EX_QUOTA;
	case TERN_ERATE:
		return EX_RATE;
	case TERN_EDENIED:
	case TERN_EAUTH:
	case TERN_EEXIST:
		return EX_DENIED;
	default:
		return EX_FAIL;
	}
}

/* fail: one line on stderr, the exit status for err, and the end. */
static void
fail(struct job *j, int err, const char *what)
{
	const char *hint = "";

	switch (err) {
	case TERN_ENOUSER:
		hint = "no such user";
		break;
	case TERN_EIDENTITY:
		hint = "identity key changed; compare with `tern verify`, "
		    "then `tern accept`";
		break;
	case TERN_EUNREACH:
	case TERN_ETIMEOUT:
	case TERN_ECLOSED:
		hint = "node unreachable";
		break;
	case TERN_EQUOTA:
		hint = "mailbox full";
		break;
	case TERN_EAUTH:
		hint = "the node refused this device";
		break;
	default:
		hint = tern_strerror(err);
		break;
	}
	fprintf(stderr, "tern: %s: %s (%s)\n", what, hint, tern_errname(err));
	job_finish(j, exit_for(err));
}

static void
app_gone(void *arg)
{
	(void)arg;
}

static void
job_finish(struct job *j, int code)
{
	if (j->done)
		return;
	j->done = true;
	j->exit = code;
	if (uv_is_active((uv_handle_t *)&j->quiet))
		uv_timer_stop(&j->quiet);
	if (j->quiet_open) {
		j->quiet_open = false;
		uv_close((uv_handle_t *)&j->quiet, NULL);
	}
	if (j->sig_open) {
		j->sig_open = false;
		uv_close((uv_handle_t *)&j->sigint, NULL);
		uv_close((uv_handle_t *)&j->sigterm, NULL);
	}
	if (j->dns != NULL) {
		dns_close(j->dns, NULL, NULL);
		j->dns = NULL;
	}
	if (j->app != NULL) {
		app_close(j->app, app_gone, j);
		j->app = NULL;
	}
}

/* --- output -------------------------------------------------------- */

static void
hex16(const uint8_t id[MSG_ID_LEN], char out[33])
{
	static const char d[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < MSG_ID_LEN; i++) {
		out[2 * i] = d[id[i] >> 4];
		out[2 * i + 1] = d[id[i] & 15];
	}
	out[32] = '\0';
}

static void
json_str(FILE *f, const char *s)
{
	const unsigned char *p;

	fputc('"', f);
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static const char *
state_name(int st)
{
	switch (st) {
	case APP_ST_PENDING:
		return "pending";
	case APP_ST_SENT:
		return "sent";
	case APP_ST_DELIVERED:
		return "delivered";
	case APP_ST_READ:
		return "read";
	case APP_ST_FAILED:
		return "failed";
	case APP_ST_UNDECRYPTABLE:
		return "undecryptable";
	default:
		return "unknown";
	}
}

static void
print_msg(void *arg, const struct app_msg *m)
{
	struct job *j = arg;
	char id[33];

	hex16(m->id, id);
	if (j->json) {
		printf("{\"id\":\"%s\",\"from\":", id);
		json_str(stdout, m->from);
		printf(",\"peer\":");
		json_str(stdout, m->peer);
		printf(",\"device\":%" PRIu32 ",\"timestamp\":%" PRIu64
		    ",\"received\":%" PRIu64 ",\"outgoing\":%s,\"text\":",
		    m->from_device, m->sent_ms, m->received_ms,
		    m->outgoing ? "true" : "false");
		json_str(stdout, m->text);
		printf(",\"state\":\"%s\"}\n", state_name(m->state));
	} else {
		time_t t = (time_t)(m->sent_ms / 1000);
		struct tm tm;
		char when[32];
		localtime_r(&t, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		if (m->state == APP_ST_UNDECRYPTABLE)
			printf("[%s] %s: (a message that could not be "
			    "decrypted)\n", when, m->from);
		else if (m->outgoing)
			printf("[%s] -> %s: %s\n", when, m->peer, m->text);
		else
			printf("[%s] %s: %s\n", when, m->from, m->text);
	}
	fflush(stdout);
}

/* --- app callbacks ------------------------------------------------- */

static void
on_message(struct app *a, const struct app_msg *m)
{
	struct job *j = app_data(a);

	/* inbox --follow prints as they come; the rest print at the end
	 * (app_unshown), so nothing is printed twice. */
	if (j->cmd == CMD_INBOX && j->follow && !j->draining) {
		int r = app_unshown(a, print_msg, j);
		if (r != 0)
			fprintf(stderr, "tern: history: %s\n",
			    tern_strerror(r));
	}
}

static void
on_receipt(struct app *a, const uint8_t id[MSG_ID_LEN], const char *peer,
    int state)
{
	struct job *j = app_data(a);
	char h[33];

	if (j->cmd != CMD_INBOX || !j->follow)
		return;
	hex16(id, h);
	if (j->json) {
		printf("{\"receipt\":\"%s\",\"peer\":", h);
		json_str(stdout, peer);
		printf(",\"state\":\"%s\"}\n", state_name(state));
	} else {
		printf("%s: message %s %s\n", peer, h, state_name(state));
	}
	fflush(stdout);
}

static void
on_typing(struct app *a, const char *peer, int typing)
{
	struct job *j = app_data(a);

	if (j->cmd == CMD_INBOX && j->follow && !j->json)
		fprintf(stderr, "%s %s\n", peer, typing ? "is typing" :
		    "stopped typing");
}

static void
on_warn(struct app *a, int code, const char *peer, const char *text)
{
	fprintf(stderr, "tern: warning: %s\n", text);
}

static void
on_link(struct app *a, int up, int err, uint32_t retry_ms)
{
	struct job *j = app_data(a);

	if (j->follow && !up && retry_ms > 0)
		fprintf(stderr, "tern: connection lost (%s); reconnecting in "
		    "%u ms\n", tern_strerror(err), retry_ms);
	/* A subscription lives as long as its connection: lastseen
	 * --follow subscribes again on the new one. */
	if (up && j->links_up++ > 0 && j->watching &&
	    app_presence(a, j->argv[0], presence_cb, j) != 0)
		fprintf(stderr, "tern: cannot watch %s again\n", j->argv[0]);
}

static const struct app_cbs job_cbs = {
	.message = on_message,
	.receipt = on_receipt,
	.typing = on_typing,
	.warn = on_warn,
	.link = on_link,
};

/* --- draining what waits --------------------------------------------- */

static void drain_done(struct job *j);

static void
quiet_cb(uv_timer_t *t)
{
	struct job *j = t->data;
	uint64_t act;

	if (j->done || j->app == NULL)
		return;
	act = app_activity(j->app);
	if (act == j->last_activity && !app_busy(j->app)) {
		j->draining = false;
		drain_done(j);
		return;
	}
	j->last_activity = act;
	if (uv_now(j->loop) - j->drain_start > DRAIN_MAX_MS) {
		j->draining = false;
		drain_done(j);
		return;
	}
	uv_timer_start(&j->quiet, quiet_cb, j->quiet_ms, 0);
}

/* drain: waits until the node has stopped handing us envelopes (none for
 * quiet_ms) and everything they called for is sent. */
static void
drain(struct job *j)
{
	j->draining = true;
	j->drain_start = uv_now(j->loop);
	j->last_activity = app_activity(j->app);
	uv_timer_start(&j->quiet, quiet_cb, j->quiet_ms, 0);
}

/* --- commands ---------------------------------------------------------- */

static void
send_next(struct job *j);

static void
sent_cb(void *arg, int status, const uint8_t id[MSG_ID_LEN])
{
	struct job *j = arg;
	char h[33];

	if (j->done)
		return;
	j->ninflight--;
	if (status != 0) {
		fail(j, status, "send");
		return;
	}
	hex16(id, h);
	if (j->json)
		printf("{\"id\":\"%s\",\"state\":\"sent\"}\n", h);
	else
		printf("%s\n", h);
	fflush(stdout);
	j->nsent++;
	send_next(j);
}

/* send_next: with --lines, one message per stdin line, each once the
 * previous one is encrypted and queued (order is kept). */
static void
send_next(struct job *j)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int r;

	if (j->done)
		return;
	if (!j->lines) {
		if (j->nsent == 1 && j->ninflight == 0)
			drain(j);
		return;
	}
	if (j->ninflight > 0)
		return;
	n = getline(&line, &cap, j->in);
	if (n <= 0) {
		free(line);
		j->eof = true;
		if (j->ninflight == 0)
			drain(j);
		return;
	}
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	r = app_send_text(j->app, j->argv[0], line, sent_cb, j);
	free(line);
	if (r != 0) {
		fail(j, r, "send");
		return;
	}
	j->ninflight++;
}

static void
read_done(void *arg, int status)
{
	struct job *j = arg;

	if (status != 0) {
		fail(j, status, j->cmd == CMD_READ ? "read" : "reset-keys");
		return;
	}
	drain(j);
}

static void
keys_done(void *arg, int status)
{
	struct job *j = arg;
	char fp[61];
	int r;

	if (j->done)
		return;
	if (status != 0 && status != TERN_ENOUSER) {
		fail(j, status, "fetching keys");
		return;
	}
	r = app_fingerprint(j->app, j->argv[0], fp);
	if (r == TERN_ENOTFOUND || status == TERN_ENOUSER) {
		fail(j, status != 0 ? status : TERN_ENOUSER,
		    "no keys known for that user");
		return;
	}
	if (r != 0) {
		fail(j, r, "safety number");
		return;
	}
	if (j->mark && (r = app_verify_mark(j->app, j->argv[0])) != 0) {
		fail(j, r, "verify");
		return;
	}
	{
		int i;
		printf("safety number with %s:\n", j->argv[0]);
		for (i = 0; i < 12; i++)
			printf("%.5s%s", fp + 5 * i, i == 5 ? "\n" :
			    i == 11 ? "\n" : " ");
		printf("%s\n", app_verified(j->app, j->argv[0]) ?
		    "verified" : "not verified");
		if (app_identity_pending(j->app, j->argv[0]))
			printf("warning: the identity key of %s changed and "
			    "is not accepted yet\n", j->argv[0]);
	}
	job_finish(j, EX_OK);
}

static void
resp_ok(void *arg, int status, const struct msg *resp)
{
	struct job *j = arg;

	if (status != 0) {
		fail(j, status, j->argv[0] != NULL ? j->argv[0] : "request");
		return;
	}
	drain(j);
}

static void
resp_contacts(void *arg, int status, const struct msg *resp)
{
	struct job *j = arg;
	struct msg_str s;
	size_t pos = 0;

	if (status != 0 || resp->type != MSG_CONTACTS) {
		fail(j, status != 0 ? status : TERN_ETYPE, "contacts");
		return;
	}
	while (msg_addrlist_next(&resp->u.contacts.users, &pos, &s) == 1)
		printf("%.*s\n", (int)s.len, s.p);
	drain(j);
}

static void
resp_profile(void *arg, int status, const struct msg *resp)
{
	struct job *j = arg;
	struct msg m;
	int r;

	if (status != 0 || resp->type != MSG_PROFILE) {
		fail(j, status != 0 ? status : TERN_ETYPE, "profile");
		return;
	}
	memset(&m, 0, sizeof(m));
	m.type = MSG_PROFILE_SET;
	if (strcmp(j->argv[1], "name") == 0) {
		m.u.profile_set.name.p = j->argv[2];
		m.u.profile_set.name.len = strlen(j->argv[2]);
		m.u.profile_set.status = resp->u.profile.status;
	} else {
		m.u.profile_set.name = resp->u.profile.name;
		m.u.profile_set.status.p = j->argv[2];
		m.u.profile_set.status.len = strlen(j->argv[2]);
	}
	j->argv[0] = "profile";
	if ((r = app_request(j->app, &m, resp_ok, j)) != 0)
		fail(j, r, "profile");
}

static void
resp_keys(void *arg, int status, const struct msg *resp)
{
	struct job *j = arg;

	if (status != 0 || resp->type != MSG_KEYS_COUNT) {
		fail(j, status != 0 ? status : TERN_ETYPE, "keys");
		return;
	}
	printf("one-time prekeys on the node: %" PRIu32 "\n"
	    "signed prekey id: %" PRIu32 "\n", resp->u.keys_count.prekeys,
	    resp->u.keys_count.signed_prekey_id);
	job_finish(j, EX_OK);
}

static void
presence_cb(void *arg, const struct msg_presence *p)
{
	struct job *j = arg;

	if (j->done)
		return;
	if (p->state == 0xff) {
		fail(j, -(int)p->last_seen_ms, "lastseen");
		return;
	}
	switch (p->state) {
	case MSG_PRESENCE_ONLINE:
		printf("online\n");
		break;
	case MSG_PRESENCE_OFFLINE:
		if (p->last_seen_ms == 0) {
			printf("never seen\n");
		} else {
			time_t t = (time_t)(p->last_seen_ms / 1000);
			struct tm tm;
			char when[32];
			localtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S %Z",
			    &tm);
			printf("last seen %s\n", when);
		}
		break;
	default:
		printf("hidden\n");
		break;
	}
	/* --follow: each change, as the node pushes it, until interrupted
	 * (a script watching someone come online). */
	if (j->follow) {
		fflush(stdout);
		return;
	}
	job_finish(j, EX_OK);
}

/* drain_done: the node has given us what was waiting. */
static void
drain_done(struct job *j)
{
	int r, st;
	uint8_t id[MSG_ID_LEN];

	switch (j->cmd) {
	case CMD_INBOX:
		if ((r = app_unshown(j->app, print_msg, j)) != 0) {
			fail(j, r, "inbox");
			return;
		}
		if (j->follow)
			return; /* keeps going until interrupted */
		job_finish(j, EX_OK);
		return;
	case CMD_STATUS:
		if ((r = app_msg_find(j->app, j->argv[0], id)) != 0 ||
		    (r = app_msg_state(j->app, id, &st)) != 0) {
			fail(j, r, r == TERN_EEXIST ? "ambiguous message id" :
			    "no such message");
			return;
		}
		printf("%s\n", state_name(st));
		job_finish(j, EX_OK);
		return;
	default:
		job_finish(j, EX_OK);
		return;
	}
}

static void
job_after_start(struct job *j)
{
	struct msg m;
	int r = 0;

	memset(&m, 0, sizeof(m));
	switch (j->cmd) {
	case CMD_REGISTER:
		printf("registered %s, device %" PRIu32 "\n",
		    app_user(j->app), app_device_id(j->app));
		drain(j);
		return;
	case CMD_SEND:
		if (j->lines) {
			send_next(j);
			return;
		}
		r = app_send_text(j->app, j->argv[0], j->text, sent_cb, j);
		if (r == 0)
			j->ninflight++;
		break;
	case CMD_INBOX:
	case CMD_STATUS:
		drain(j);
		return;
	case CMD_READ:
		r = app_mark_read(j->app, j->argv[0], read_done, j);
		break;
	case CMD_VERIFY:
		r = app_fetch_keys(j->app, j->argv[0], keys_done, j);
		break;
	case CMD_ACCEPT:
		if (!app_identity_pending(j->app, j->argv[0])) {
			fprintf(stderr, "tern: no changed key to accept for "
			    "%s\n", j->argv[0]);
			job_finish(j, EX_FAIL);
			return;
		}
		if ((r = app_accept(j->app, j->argv[0])) == 0) {
			printf("accepted the new identity key of %s\n",
			    j->argv[0]);
			drain(j);
			return;
		}
		break;
	case CMD_PROFILE:
		m.type = MSG_PROFILE_GET;
		m.u.profile_get.user.p = app_user(j->app);
		m.u.profile_get.user.len = strlen(app_user(j->app));
		r = app_request(j->app, &m, resp_profile, j);
		break;
	case CMD_PRIVACY:
		m.type = MSG_PRIVACY_SET;
		m.u.privacy_set.last_seen =
		    strcmp(j->argv[1], "everyone") == 0 ?
		    MSG_LAST_SEEN_EVERYONE :
		    strcmp(j->argv[1], "contacts") == 0 ?
		    MSG_LAST_SEEN_CONTACTS : MSG_LAST_SEEN_NOBODY;
		j->argv[0] = "privacy";
		r = app_request(j->app, &m, resp_ok, j);
		break;
	case CMD_CONTACTS:
		if (strcmp(j->argv[0], "list") == 0) {
			m.type = MSG_CONTACT_LIST;
			r = app_request(j->app, &m, resp_contacts, j);
			break;
		}
		if (ident_addr_normalize(j->argv[1], j->user,
		    sizeof(j->user)) != 0) {
			r = TERN_EFIELD;
			break;
		}
		if (strcmp(j->argv[0], "add") == 0) {
			m.type = MSG_CONTACT_ADD;
			m.u.contact_add.user.p = j->user;
			m.u.contact_add.user.len = strlen(j->user);
		} else {
			m.type = MSG_CONTACT_REMOVE;
			m.u.contact_remove.user.p = j->user;
			m.u.contact_remove.user.len = strlen(j->user);
		}
		j->argv[0] = "contacts";
		r = app_request(j->app, &m, resp_ok, j);
		break;
	case CMD_LASTSEEN:
		r = app_presence(j->app, j->argv[0], presence_cb, j);
		j->watching = r == 0 && j->follow;
		break;
	case CMD_LINK:
		printf("linked %s as device %" PRIu32 "\n", app_user(j->app),
		    app_device_id(j->app));
		drain(j);
		return;
	case CMD_DEVICES:
		if (j->argc == 0) {
			m.type = MSG_DEVICE_LIST;
			m.u.device_list.user.p = app_user(j->app);
			m.u.device_list.user.len = strlen(app_user(j->app));
			r = app_request(j->app, &m, resp_devices, j);
		} else if (strcmp(j->argv[0], "add") == 0) {
			uint8_t key[32];
			if (unhex32(j->argv[1], key) != 0) {
				fprintf(stderr, "tern: devices add: want the "
				    "64 hex digits `tern link` printed\n");
				job_finish(j, EX_USAGE);
				return;
			}
			r = app_device_add(j->app, key, j->argc == 3 ?
			    j->argv[2] : "linked", device_added, j);
		} else {
			char *end;
			unsigned long id = strtoul(j->argv[1], &end, 10);
			if (*end != '\0' || id == 0 || id > UINT32_MAX) {
				job_finish(j, EX_USAGE);
				return;
			}
			m.type = MSG_DEVICE_REMOVE;
			m.u.device_remove.device_id = (uint32_t)id;
			j->argv[0] = "devices remove";
			r = app_request(j->app, &m, resp_ok, j);
		}
		break;
	case CMD_KEYS:
		m.type = MSG_KEYS_STATUS;
		r = app_request(j->app, &m, resp_keys, j);
		break;
	case CMD_TYPING:
		r = app_send_typing(j->app, j->argv[0], j->argc < 2 ||
		    strcmp(j->argv[1], "on") == 0);
		if (r == 0) {
			drain(j);
			return;
		}
		break;
	case CMD_RESET_KEYS:
		r = app_reset_keys(j->app, read_done, j);
		if (r == 0)
			printf("new identity key uploaded; your contacts will "
			    "be asked to accept it\n");
		break;
	default:
		r = TERN_EINVAL;
	}
	if (r != 0)
		fail(j, r, j->argv[0] != NULL ? j->argv[0] : "tern");
}

static void
started(void *arg, int status)
{
	struct job *j = arg;

	if (j->done)
		return;
	if (status != 0) {
		fail(j, status, j->cmd == CMD_REGISTER ? "register" :
		    "connecting to the node");
		return;
	}
	job_after_start(j);
}

/* --- finding the node -------------------------------------------------- */

static int
split_hostport(const char *s, char *host, size_t cap, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	const char *h = s;
	size_t hl;
	char *end;
	unsigned long p = CLIENT_PORT_DEFAULT;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL)
			return TERN_EINVAL;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb[1] == ':' ? rb + 1 : NULL;
	} else if (colon != NULL && strchr(s, ':') != colon) {
		colon = NULL; /* a bare IPv6 literal */
		hl = strlen(s);
	} else {
		hl = colon != NULL ? (size_t)(colon - s) : strlen(s);
	}
	if (colon != NULL) {
		errno = 0;
		p = strtoul(colon + 1, &end, 10);
		if (errno != 0 || *end != '\0' || p == 0 || p > 65535)
			return TERN_EINVAL;
	}
	if (hl == 0 || hl >= cap)
		return TERN_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static void
do_register(struct job *j, const char *ip, uint16_t port)
{
	uint8_t pub[32];
	char hex[65];
	size_t i;
	int r;

	if (j->cmd == CMD_LINK) {
		if ((r = app_link_key(j->app, j->argv[0], ip, port, pub)) != 0) {
			fail(j, r, "link");
			return;
		}
		for (i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", pub[i]);
		printf("this device's key: %s\n"
		    "On a device already registered as %s, run:\n"
		    "  tern devices add %s\n"
		    "then here: tern link %s --device N (N: the id it "
		    "prints)\n", hex, j->argv[0], hex, j->argv[0]);
		job_finish(j, EX_OK);
		return;
	}
	r = app_register(j->app, j->argv[0], j->invite, ip, port, started,
	    j);
	if (r != 0)
		fail(j, r, "register");
}

static void
device_added(void *arg, int status, uint32_t id)
{
	struct job *j = arg;

	if (status != 0) {
		fail(j, status, "devices add");
		return;
	}
	printf("%" PRIu32 "\n", id);
	drain(j);
}

static void
resp_devices(void *arg, int status, const struct msg *resp)
{
	struct job *j = arg;
	size_t i;

	if (status != 0 || resp->type != MSG_DEVICES) {
		fail(j, status != 0 ? status : TERN_ETYPE, "devices");
		return;
	}
	for (i = 0; i < resp->u.devices.device_ids.count; i++) {
		uint32_t id = buf_load_be32(msg_record(
		    &resp->u.devices.device_ids, MSG_DEVICE_REC_LEN, i));
		printf("%" PRIu32 "%s\n", id, id == app_device_id(j->app) ?
		    " (this device)" : "");
	}
	job_finish(j, EX_OK);
}

static int
unhex32(const char *s, uint8_t out[32])
{
	size_t i;

	if (strlen(s) != 64)
		return TERN_EINVAL;
	for (i = 0; i < 32; i++) {
		unsigned v;
		if (sscanf(s + 2 * i, "%2x", &v) != 1)
			return TERN_EINVAL;
		out[i] = (uint8_t)v;
	}
	return 0;
}

static void
getaddr_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct job *j = req->data;
	char ip[INET6_ADDRSTRLEN];
	uint16_t port = (uint16_t)(uintptr_t)req->reserved[0];

	free(req);
	if (status != 0 || res == NULL) {
		fprintf(stderr, "tern: cannot resolve the server: %s\n",
		    uv_strerror(status));
		if (res != NULL)
			uv_freeaddrinfo(res);
		job_finish(j, EX_UNREACH);
		return;
	}
	if (res->ai_family == AF_INET6)
		uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip,
		    sizeof(ip));
	else
		uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip,
		    sizeof(ip));
	uv_freeaddrinfo(res);
	do_register(j, ip, port);
}

static void
srv_cb(void *arg, int err, const struct dns_target *t, size_t n,
    const char *detail)
{
	struct job *j = arg;

	if (j->done)
		return;
	if (err != 0 || n == 0) {
		fprintf(stderr, "tern: finding the node for %s: %s%s%s%s\n",
		    j->argv[0], tern_strerror(err != 0 ? err :
		    TERN_ENOTFOUND), detail[0] != '\0' ? ": " : "", detail,
		    err == TERN_ENOTFOUND ? " (or give --server HOST:PORT)" :
		    "");
		job_finish(j, EX_UNREACH);
		return;
	}
	/* The first target in RFC 2782 order; the client library's
	 * reconnects stay with it (the profile stores the address). */
	do_register(j, t[0].addr, t[0].port);
}

static void
find_node(struct job *j)
{
	char host[256];
	uint16_t port;
	unsigned char buf[sizeof(struct in6_addr)];
	struct ident_addr ia;
	char domain[IDENT_DOMAIN_MAX + 1];
	struct dns_config dc;
	int r;

	if (j->server != NULL) {
		if (split_hostport(j->server, host, sizeof(host), &port) != 0) {
			fprintf(stderr, "tern: --server: want HOST:PORT\n");
			job_finish(j, EX_USAGE);
			return;
		}
		if (inet_pton(AF_INET, host, buf) == 1 ||
		    inet_pton(AF_INET6, host, buf) == 1) {
			do_register(j, host, port);
			return;
		}
		{
			uv_getaddrinfo_t *req = calloc(1, sizeof(*req));
			struct addrinfo hints;
			if (req == NULL) {
				fail(j, TERN_ENOMEM, "register");
				return;
			}
			memset(&hints, 0, sizeof(hints));
			hints.ai_socktype = SOCK_STREAM;
			req->data = j;
			req->reserved[0] = (void *)(uintptr_t)port;
			if (uv_getaddrinfo(j->loop, req, getaddr_cb, host, NULL,
			    &hints) != 0) {
				free(req);
				fail(j, TERN_EUNREACH, "resolving the server");
			}
			return;
		}
	}
	if (ident_addr_split(j->argv[0], strlen(j->argv[0]), &ia) != 0) {
		fail(j, TERN_EFIELD, "register");
		return;
	}
	memcpy(domain, ia.domain, ia.domain_len);
	domain[ia.domain_len] = '\0';
	memset(&dc, 0, sizeof(dc));
	dc.nameserver = j->nameserver;
	if ((r = dns_new(j->loop, &dc, &j->dns)) != 0 ||
	    (r = dns_srv(j->dns, "_tern._tcp", domain, srv_cb, j)) != 0)
		fail(j, r, "DNS");
}

/* --- main ------------------------------------------------------------ */

static void
signal_cb(uv_signal_t *h, int signum)
{
	job_finish(h->data, EX_OK);
}

static int
default_profile(char *out, size_t cap)
{
	const char *home = getenv("HOME");
	const char *xdg = getenv("XDG_DATA_HOME");
	char tmp[APP_PROFILE_PATH];

	if (xdg != NULL && xdg[0] == '/') {
		snprintf(tmp, sizeof(tmp), "%s", xdg);
		(void)mkdir(tmp, 0700);
		return snprintf(out, cap, "%s/tern", xdg) < (int)cap ? 0 : -1;
	}
	if (home == NULL || home[0] != '/')
		return -1;
	snprintf(tmp, sizeof(tmp), "%s/.local", home);
	(void)mkdir(tmp, 0700);
	snprintf(tmp, sizeof(tmp), "%s/.local/share", home);
	(void)mkdir(tmp, 0700);
	return snprintf(out, cap, "%s/.local/share/tern", home) < (int)cap ?
	    0 : -1;
}

static int
read_stdin_text(struct job *j)
{
	size_t n;

	if ((j->text = malloc(TEXT_STDIN_MAX + 1)) == NULL)
		return TERN_ENOMEM;
	n = fread(j->text, 1, TEXT_STDIN_MAX, stdin);
	if (n > APP_TEXT_MAX)
		return TERN_ETOOBIG;
	/* One trailing newline is the shell's, not the message's. */
	if (n > 0 && j->text[n - 1] == '\n')
		n--;
	j->text[n] = '\0';
	if (strlen(j->text) != n)
		return TERN_EUTF8; /* a NUL byte */
	return 0;
}

static const struct option main_opts[] = {
	{"profile", required_argument, NULL, 'p'},
	{"server", required_argument, NULL, 's'},
	{"invite", required_argument, NULL, 'i'},
	{"dns", required_argument, NULL, 'd'},
	{"json", no_argument, NULL, 'j'},
	{"follow", no_argument, NULL, 'f'},
	{"mark", no_argument, NULL, 'm'},
	{"lines", no_argument, NULL, 'l'},
	{"quiet-ms", required_argument, NULL, 'q'},
	{"prekeys", required_argument, NULL, 'k'},
	{"device", required_argument, NULL, 'D'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0}
};
#define MAIN_OPTSTR "+p:s:i:d:jfmlq:k:D:h"

/*
 * main_opt: one option getopt_long returned, into j. -1 to go on, else
 * the exit status (help, or a bad value with one line on stderr).
 */
static int
main_opt(struct job *j, int c)
{
	switch (c) {
	case 'p':
		j->profile = optarg;
		return -1;
	case 's':
		j->server = optarg;
		return -1;
	case 'i':
		j->invite = optarg;
		return -1;
	case 'd':
		j->nameserver = optarg;
		return -1;
	case 'j':
		j->json = true;
		return -1;
	case 'f':
		j->follow = true;
		return -1;
	case 'm':
		j->mark = true;
		return -1;
	case 'l':
		j->lines = true;
		return -1;
	case 'q':
		j->quiet_ms = (uint32_t)strtoul(optarg, NULL, 10);
		if (j->quiet_ms == 0 || j->quiet_ms > 60000) {
			fprintf(stderr, "tern: --quiet-ms: 1..60000\n");
			return EX_USAGE;
		}
		return -1;
	case 'k':
		j->prekeys = (uint32_t)strtoul(optarg, NULL, 10);
		if (j->prekeys == 0 || j->prekeys > APP_PREKEYS_TARGET) {
			fprintf(stderr, "tern: --prekeys: 1..100\n");
			return EX_USAGE;
		}
		return -1;
	case 'D':
		j->link_device = (uint32_t)strtoul(optarg, NULL, 10);
		if (j->link_device == 0) {
			fprintf(stderr, "tern: --device: a device id\n");
			return EX_USAGE;
		}
		return -1;
	case 'h':
		usage(stdout);
		return EX_OK;
	default:
		usage(stderr);
		return EX_USAGE;
	}
}

int
main(int argc, char **argv)
{
	char profile[APP_PROFILE_PATH];
	struct job j;
	const char *cmd;
	int c, r, nargs = 0, need;
	uv_loop_t loop;

	memset(&j, 0, sizeof(j));
	j.quiet_ms = QUIET_MS;
	j.nameserver = getenv("TERN_DNS");
	while ((c = getopt_long(argc, argv, MAIN_OPTSTR, main_opts, NULL)) !=
	    -1)
		if ((r = main_opt(&j, c)) >= 0)
			return r;
	if (optind >= argc) {
		/* No command: the terminal chat (tui.c). */
		if (j.profile == NULL) {
			if (default_profile(profile, sizeof(profile)) != 0) {
				fprintf(stderr, "tern: no HOME: use --profile "
				    "DIR\n");
				return EX_USAGE;
			}
			j.profile = profile;
		}
		return tui_main(j.profile, j.nameserver);
	}
	cmd = argv[optind++];
	/* Options may also follow the command. */
	while (optind < argc) {
		c = getopt_long(argc, argv, MAIN_OPTSTR, main_opts, NULL);
		if (c == -1) {
			if (nargs < 4)
				j.argv[nargs] = argv[optind];
			nargs++;
			optind++;
			continue;
		}
		if ((r = main_opt(&j, c)) >= 0)
			return r;
	}
	j.argc = nargs;

	struct {
		const char *name;
		int cmd;
		int min, max;
	} table[] = {
		{"register", CMD_REGISTER, 1, 1},
		{"send", CMD_SEND, 1, 2},
		{"inbox", CMD_INBOX, 0, 0},
		{"read", CMD_READ, 1, 1},
		{"status", CMD_STATUS, 1, 1},
		{"verify", CMD_VERIFY, 1, 1},
		{"accept", CMD_ACCEPT, 1, 1},
		{"profile", CMD_PROFILE, 3, 3},
		{"privacy", CMD_PRIVACY, 2, 2},
		{"contacts", CMD_CONTACTS, 1, 2},
		{"lastseen", CMD_LASTSEEN, 1, 1},
		{"history", CMD_HISTORY, 0, 1},
		{"reset-keys", CMD_RESET_KEYS, 0, 0},
		{"keys", CMD_KEYS, 0, 0},
		{"typing", CMD_TYPING, 1, 2},
		{"search", CMD_SEARCH, 1, 1},
		{"link", CMD_LINK, 1, 1},
		{"devices", CMD_DEVICES, 0, 3},
	};
	size_t i;
	for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
		if (strcmp(cmd, table[i].name) == 0)
			break;
	if (i == sizeof(table) / sizeof(table[0]) || nargs < table[i].min ||
	    nargs > table[i].max) {
		usage(stderr);
		return EX_USAGE;
	}
	j.cmd = table[i].cmd;
	need = j.cmd;
	/* Argument checks that need no profile. */
	switch (need) {
	case CMD_PROFILE:
		if (strcmp(j.argv[0], "set") != 0 ||
		    (strcmp(j.argv[1], "name") != 0 &&
		    strcmp(j.argv[1], "status") != 0)) {
			usage(stderr);
			return EX_USAGE;
		}
		if (ident_utf8_check((const uint8_t *)j.argv[2],
		    strlen(j.argv[2])) != 0 || strlen(j.argv[2]) >
		    (strcmp(j.argv[1], "name") == 0 ? MSG_NAME_MAX :
		    MSG_STATUS_MAX)) {
			fprintf(stderr, "tern: profile: value too long or not "
			    "UTF-8\n");
			return EX_USAGE;
		}
		break;
	case CMD_PRIVACY:
		if (strcmp(j.argv[0], "last-seen") != 0 ||
		    (strcmp(j.argv[1], "everyone") != 0 &&
		    strcmp(j.argv[1], "contacts") != 0 &&
		    strcmp(j.argv[1], "nobody") != 0)) {
			usage(stderr);
			return EX_USAGE;
		}
		break;
	case CMD_CONTACTS:
		if (!((strcmp(j.argv[0], "list") == 0 && nargs == 1) ||
		    ((strcmp(j.argv[0], "add") == 0 ||
		    strcmp(j.argv[0], "remove") == 0) && nargs == 2))) {
			usage(stderr);
			return EX_USAGE;
		}
		break;
	case CMD_DEVICES:
		if (!(nargs == 0 || (strcmp(j.argv[0], "add") == 0 &&
		    (nargs == 2 || nargs == 3)) ||
		    (strcmp(j.argv[0], "remove") == 0 && nargs == 2))) {
			usage(stderr);
			return EX_USAGE;
		}
		break;
	case CMD_LINK:
	case CMD_REGISTER:
	case CMD_SEND:
	case CMD_READ:
	case CMD_VERIFY:
	case CMD_ACCEPT:
	case CMD_LASTSEEN:
	case CMD_TYPING: {
		char norm[IDENT_ADDR_MAX + 1];
		if (j.cmd == CMD_TYPING && nargs == 2 &&
		    strcmp(j.argv[1], "on") != 0 &&
		    strcmp(j.argv[1], "off") != 0) {
			usage(stderr);
			return EX_USAGE;
		}
		if (ident_addr_normalize(j.argv[0], norm, sizeof(norm)) != 0) {
			fprintf(stderr, "tern: %s: not a user address "
			    "(local@domain)\n", j.argv[0]);
			return EX_USAGE;
		}
		break;
	}
	default:
		break;
	}
	if (j.cmd == CMD_SEND && !j.lines) {
		if (nargs == 2) {
			if (strlen(j.argv[1]) > APP_TEXT_MAX) {
				fprintf(stderr, "tern: send: text over %d "
				    "bytes\n", APP_TEXT_MAX);
				return EX_USAGE;
			}
			if ((j.text = strdup(j.argv[1])) == NULL)
				return EX_FAIL;
		} else if ((r = read_stdin_text(&j)) != 0) {
			fprintf(stderr, "tern: send: %s\n", r == TERN_ETOOBIG ?
			    "text over 32768 bytes" : tern_strerror(r));
			free(j.text);
			return EX_USAGE;
		}
	}
	if (j.cmd == CMD_SEND && j.lines)
		j.in = stdin;

	if (j.profile == NULL) {
		if (default_profile(profile, sizeof(profile)) != 0) {
			fprintf(stderr, "tern: no HOME: use --profile DIR\n");
			return EX_USAGE;
		}
		j.profile = profile;
	}
	if (uv_loop_init(&loop) != 0)
		return EX_FAIL;
	j.loop = &loop;
	if (uv_timer_init(&loop, &j.quiet) != 0)
		return EX_FAIL;
	j.quiet.data = &j;
	j.quiet_open = true;
	if (uv_signal_init(&loop, &j.sigint) != 0 ||
	    uv_signal_init(&loop, &j.sigterm) != 0)
		return EX_FAIL;
	j.sigint.data = j.sigterm.data = &j;
	j.sig_open = true;
	(void)uv_signal_start(&j.sigint, signal_cb, SIGINT);
	(void)uv_signal_start(&j.sigterm, signal_cb, SIGTERM);
	/* Signals must not keep a finished job alive. */
	uv_unref((uv_handle_t *)&j.sigint);
	uv_unref((uv_handle_t *)&j.sigterm);
	if ((r = app_open(&loop, j.profile, &job_cbs, &j, &j.app)) == 0 &&
	    j.prekeys != 0)
		app_set_prekeys(j.app, j.prekeys);
	if (r != 0) {
		fprintf(stderr, "tern: cannot open the profile %s: %s\n",
		    j.profile, tern_strerror(r));
		j.app = NULL;
		job_finish(&j, EX_FAIL);
		goto run;
	}
	if (j.cmd == CMD_LINK) {
		if (app_registered(j.app)) {
			fprintf(stderr, "tern: this profile is already "
			    "registered as %s\n", app_user(j.app));
			job_finish(&j, EX_DENIED);
		} else if (j.link_device != 0) {
			if ((r = app_link_device(j.app, j.link_device)) != 0 ||
			    (r = app_start(j.app, false, started, &j)) != 0)
				fail(&j, r == TERN_ESTATE ? TERN_ESTATE : r,
				    "link: run `tern link USER@DOMAIN` first");
		} else {
			find_node(&j);
		}
	} else if (j.cmd == CMD_REGISTER) {
		if (app_registered(j.app)) {
			fprintf(stderr, "tern: this profile is already "
			    "registered as %s\n", app_user(j.app));
			job_finish(&j, EX_DENIED);
		} else {
			find_node(&j);
		}
	} else if (j.cmd == CMD_SEARCH) {
		r = app_search(j.app, j.argv[0], 100, print_msg, &j);
		if (r != 0)
			fail(&j, r, r == TERN_EINVAL ? "search: not a valid query" :
			    "search");
		else
			job_finish(&j, EX_OK);
	} else if (j.cmd == CMD_HISTORY) {
		r = app_history(j.app, nargs == 1 ? j.argv[0] : NULL, 1000,
		    print_msg, &j);
		if (r != 0)
			fail(&j, r, "history");
		else
			job_finish(&j, EX_OK);
	} else if (!app_registered(j.app)) {
		fprintf(stderr, "tern: not registered: run `tern register "
		    "USER@DOMAIN` first (profile %s)\n", j.profile);
		job_finish(&j, EX_NOTREG);
	} else if ((r = app_start(j.app, j.follow, started, &j)) != 0) {
		fail(&j, r, "connecting to the node");
	}
run:
	uv_run(&loop, UV_RUN_DEFAULT);
	if (uv_loop_close(&loop) != 0) {
		uv_walk(&loop, NULL, NULL);
	}
	free(j.text);
	return j.exit;
}
