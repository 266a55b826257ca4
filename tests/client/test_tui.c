/*
 * test_tui.c: the terminal chat (`tern` with no command, client/tui.c),
 * driven for real: a ternd process on a free loopback port and `tern`
 * processes in panes of a private tmux server (its own socket in the
 * case's directory), typed into with send-keys and read back with
 * capture-pane. Every wait polls the screen against a deadline.
 *
 * A case kills only what it started: the node by its PID (harness), a
 * client by its pane's PID, and its own tmux server with kill-server on
 * its socket (also from an atexit handler when an assertion fails).
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <locale.h>
#include <string.h>
#include <wchar.h>

/* The harness is header-only; this file uses part of it. */
#pragma GCC diagnostic ignored "-Wunused-function"
#include "../node/ternd_harness.h"

#define TERN_BIN TERN_BUILD_DIR "/client/tern"
#define SCREEN_MAX 65536
#define WAIT_MS 20000          /* for anything on screen */
#define RECONNECT_MS 40000     /* for a client to come back on its own */

struct tcase {
	struct ternd node;
	char dir[64];          /* profiles, pane logs, the tmux socket */
	char sock[128];        /* the private tmux server's socket */
	char server[64];       /* 127.0.0.1:PORT of the node */
	bool tmux_up;          /* our tmux server may be running */
};

static struct tcase T;

static int
rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
	(void)st;
	(void)flag;
	(void)f;
	return remove(p);
}

/* run: argv[0] (searched in PATH) to completion, stdout into out. */
static int
run(char *out, size_t cap, const char *const *argv)
{
	posix_spawn_file_actions_t fa;
	size_t len = 0;
	char junk[512];
	int pfd[2], st;
	ssize_t n;
	pid_t pid;

	/* Close-on-exec: the tmux server that new-session starts must not
	 * keep a copy of the pipe (we would wait for its EOF forever). */
	TT_EQ(pipe2(pfd, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	if (out != NULL)
		posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY,
		    0);
	if (T.dir[0] != '\0') {
		char log[160];
		snprintf(log, sizeof(log), "%s/commands.err", T.dir);
		posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY |
		    O_CREAT | O_APPEND, 0600);
	}
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv,
	    environ) != 0)
		tt_fail(__FILE__, __LINE__, "cannot run %s", argv[0]);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	for (;;) {
		bool keep = out != NULL && len + 1 < cap;
		n = read(pfd[0], keep ? out + len : junk, keep ? cap - 1 - len :
		    sizeof(junk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (keep)
			len += (size_t)n;
	}
	close(pfd[0]);
	if (out != NULL)
		out[len] = '\0';
	st = ternd_wait_exit(pid, 30000);
	TT_ASSERT(st != -1);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* tmux: one command to our server; its stdout into out (may be NULL). */
static int
tmux_v(char *out, size_t cap, const char *const *args)
{
	const char *argv[32];
	int n = 0, i;

	argv[n++] = "tmux";
	argv[n++] = "-S";
	argv[n++] = T.sock;
	argv[n++] = "-f";
	argv[n++] = "/dev/null";
	for (i = 0; args[i] != NULL; i++) {
		TT_ASSERT(n < 30);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	return run(out, cap, argv);
}

#define TMUX(out, cap, ...) \
	tmux_v((out), (cap), (const char *const[]){__VA_ARGS__, NULL})

static void
tc_atexit(void)
{
	if (T.tmux_up) {
		T.tmux_up = false;
		(void)TMUX(NULL, 0, "kill-server");
	}
}

static void
tc_start(bool node)
{
	static bool hooked;

	memset(&T, 0, sizeof(T));
	/* The panes and tmux itself speak UTF-8; no nesting in a tmux the
	 * test may run in. */
	setenv("LC_ALL", "C.UTF-8", 1);
	unsetenv("TMUX");
	TT_ASSERT(setlocale(LC_ALL, "") != NULL);
	snprintf(T.dir, sizeof(T.dir), "/tmp/tern-tui-XXXXXX");
	TT_ASSERT(mkdtemp(T.dir) != NULL);
	snprintf(T.sock, sizeof(T.sock), "%s/tmux.sock", T.dir);
	if (!hooked) {
		hooked = true;
		TT_EQ(atexit(tc_atexit), 0);
	}
	if (node) {
		ternd_init(&T.node, true);
		ternd_start(&T.node);
		snprintf(T.server, sizeof(T.server), "127.0.0.1:%u",
		    T.node.port);
	}
}

static void
tc_stop(bool node)
{
	if (T.tmux_up) {
		T.tmux_up = false;
		(void)TMUX(NULL, 0, "kill-server");
	}
	if (node) {
		(void)ternd_stop(&T.node);
		ternd_destroy(&T.node);
	}
	if (getenv("TERN_KEEP_DIRS") == NULL)
		(void)nftw(T.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "kept %s\n", T.dir);
}

static void
profile_of(const char *who, char *out, size_t cap)
{
	snprintf(out, cap, "%s/%s", T.dir, who);
}

/* reg: `tern register` for who with the CLI (the chat doesn't). */
static void
reg(const char *who, const char *addr)
{
	char prof[128], out[512];
	const char *argv[] = {TERN_BIN, "--profile", prof, "register", addr,
	    "--server", T.server, "--prekeys", "10", NULL};

	profile_of(who, prof, sizeof(prof));
	TT_EQ(run(out, sizeof(out), argv), 0);
	TT_ASSERT(strstr(out, "registered") != NULL);
}

/* chat: a session named who running `tern --profile DIR/who` in an 80x24
 * window; the client's stderr goes to DIR/who.err. */
static void
chat(const char *session, const char *who)
{
	char cmd[512], prof[128];

	profile_of(who, prof, sizeof(prof));
	snprintf(cmd, sizeof(cmd), "exec %s --profile %s 2>>%s/%s.err",
	    TERN_BIN, prof, T.dir, who);
	T.tmux_up = true;
	TT_EQ(TMUX(NULL, 0, "new-session", "-d", "-s", session, "-x", "80",
	    "-y", "24", cmd), 0);
}

static void
screen(const char *session, char *out, size_t cap)
{
	TT_EQ(TMUX(out, cap, "capture-pane", "-p", "-t", session), 0);
}

static void
keys(const char *session, const char *text)
{
	/* -l: literally, so "hello" is not taken for a key name. */
	TT_EQ(TMUX(NULL, 0, "send-keys", "-t", session, "-l", text), 0);
}

static void
key(const char *session, const char *name)
{
	TT_EQ(TMUX(NULL, 0, "send-keys", "-t", session, name), 0);
}

static void
say(const char *session, const char *line)
{
	keys(session, line);
	key(session, "Enter");
}

/* line_with: the screen line holding needle, right spaces trimmed, into
 * out; false if none. */
static bool
line_with(const char *scr, const char *needle, char *out, size_t cap)
{
	const char *p = strstr(scr, needle), *b, *e;
	size_t n;

	if (p == NULL)
		return false;
	for (b = p; b > scr && b[-1] != '\n'; b--)
		;
	e = strchr(p, '\n');
	if (e == NULL)
		e = p + strlen(p);
	while (e > b && e[-1] == ' ')
		e--;
	n = (size_t)(e - b) < cap - 1 ? (size_t)(e - b) : cap - 1;
	memcpy(out, b, n);
	out[n] = '\0';
	return true;
}

static bool
ends_with(const char *s, const char *tail)
{
	size_t a = strlen(s), b = strlen(tail);

	return a >= b && strcmp(s + a - b, tail) == 0;
}

/*
 * wait_line: polls the screen of session until the line holding needle
 * ends with tail (tail NULL: the needle is there at all; gone: it is not).
 */
static void
wait_line_(int line, const char *session, const char *needle,
    const char *tail, bool gone, uint32_t max_ms)
{
	uint64_t end = ternd_now_ms() + max_ms;
	char *scr = malloc(SCREEN_MAX), l[1024];
	bool have;

	TT_ASSERT(scr != NULL);
	for (;;) {
		screen(session, scr, SCREEN_MAX);
		have = line_with(scr, needle, l, sizeof(l));
		if (gone ? !have : have && (tail == NULL || ends_with(l, tail)))
			break;
		if (ternd_now_ms() >= end) {
			fprintf(stderr, "--- screen of %s ---\n%s--- end ---\n",
			    session, scr);
			free(scr);
			tt_fail(__FILE__, line, "%s: '%s'%s%s%s not seen in "
			    "%u ms", session, needle, tail != NULL ?
			    " ending in '" : "", tail != NULL ? tail : "",
			    tail != NULL ? "'" : gone ? " still there" : "",
			    max_ms);
		}
		ternd_nap(50);
	}
	free(scr);
}

#define WAIT_FOR(s, needle) wait_line_(__LINE__, (s), (needle), NULL, false, \
	WAIT_MS)
#define WAIT_LINE(s, needle, tail) wait_line_(__LINE__, (s), (needle), \
	(tail), false, WAIT_MS)
#define WAIT_GONE(s, needle) wait_line_(__LINE__, (s), (needle), NULL, true, \
	WAIT_MS)

static pid_t
pane_pid(const char *session)
{
	char out[64];

	TT_EQ(TMUX(out, sizeof(out), "display-message", "-p", "-t", session,
	    "#{pane_pid}"), 0);
	TT_ASSERT(atoi(out) > 1);
	return (pid_t)atoi(out);
}

/* quit: /quit, then the session must end on its own (the client closed
 * everything and exited) and its stderr be free of sanitizer reports. */
static void
quit(const char *session, const char *who)
{
	uint64_t end = ternd_now_ms() + 15000;
	char path[160], *err;

	say(session, "/quit");
	while (TMUX(NULL, 0, "has-session", "-t", session) == 0) {
		if (ternd_now_ms() >= end)
			tt_fail(__FILE__, __LINE__, "%s still running after "
			    "/quit", session);
		ternd_nap(50);
	}
	snprintf(path, sizeof(path), "%s/%s.err", T.dir, who);
	err = tt_read_file(path, NULL);
	TT_ASSERT(err != NULL);
	if (strstr(err, "Sanitizer") != NULL || strstr(err, "runtime error")
	    != NULL || strstr(err, "handles left open") != NULL)
		tt_fail(__FILE__, __LINE__, "%s: %s", who, err);
	free(err);
}

/* check_frame: the screen of session is rows lines of at most cols
 * columns, with the header on top, the status line above the input
 * line, and the last message on screen. */
static void
check_frame(const char *session, int rows, int cols, const char *last)
{
	char *scr = malloc(SCREEN_MAX), *p, *nl;
	char *lines[64];
	int n = 0;

	TT_ASSERT(scr != NULL);
	screen(session, scr, SCREEN_MAX);
	for (p = scr; *p != '\0' && n < 64; p = nl + 1) {
		size_t w = 0;
		mbstate_t ms;
		wchar_t c;
		size_t k;
		nl = strchr(p, '\n');
		TT_ASSERT(nl != NULL);
		*nl = '\0';
		lines[n++] = p;
		memset(&ms, 0, sizeof(ms));
		for (char *q = p; *q != '\0'; q += k) {
			k = mbrtowc(&c, q, strlen(q), &ms);
			TT_ASSERT(k != (size_t)-1 && k != (size_t)-2 && k > 0);
			w += (size_t)(wcwidth(c) > 0 ? wcwidth(c) : 0);
		}
		if ((int)w > cols)
			tt_fail(__FILE__, __LINE__, "line %d is %zu columns: %s",
			    n, w, p);
	}
	TT_EQ(n, rows);
	TT_ASSERT(strncmp(lines[0], " Chats", 6) == 0);
	TT_ASSERT(strstr(lines[0], "bob@one.test") != NULL);
	TT_ASSERT(strstr(lines[rows - 2], "online \u00b7 alice@one.test") !=
	    NULL);
	TT_ASSERT(strncmp(lines[rows - 1], ">", 1) == 0);
	TT_ASSERT(strstr(lines[rows - 3], last) != NULL);
	free(scr);
}

static void
resize(const char *session, int cols, int rows)
{
	char x[16], y[16];

	snprintf(x, sizeof(x), "%d", cols);
	snprintf(y, sizeof(y), "%d", rows);
	TT_EQ(TMUX(NULL, 0, "resize-window", "-t", session, "-x", x, "-y", y),
	    0);
}

/* An unregistered profile: the CLI's one-line error and exit 4, before
 * anything touches the terminal. */
TT_CASE(tui__start__unregistered_exits_4)
{
	char prof[128], errpath[160], *err;
	int fd, st;
	pid_t pid;
	posix_spawn_file_actions_t fa;
	const char *argv[] = {TERN_BIN, "--profile", prof, NULL};

	tc_start(false);
	profile_of("nobody", prof, sizeof(prof));
	snprintf(errpath, sizeof(errpath), "%s/nobody.err", T.dir);
	fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	TT_ASSERT(fd >= 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fd, 2);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	TT_EQ(posix_spawn(&pid, TERN_BIN, &fa, NULL, (char *const *)argv,
	    environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(fd);
	st = ternd_wait_exit(pid, 30000);
	TT_ASSERT(st != -1 && WIFEXITED(st));
	TT_EQ(WEXITSTATUS(st), 4);
	err = tt_read_file(errpath, NULL);
	TT_ASSERT(err != NULL);
	TT_ASSERT(strstr(err, "tern: not registered: run `tern register "
	    "USER@DOMAIN` first") != NULL);
	TT_ASSERT(strchr(err, '\n') == err + strlen(err) - 1); /* one line */
	free(err);
	tc_stop(false);
}

/*
 * Two clients and a node: a message typed in A shows in B; A's mark goes
 * sent (B not running) -> delivered (B got it, conversation not open) ->
 * read (B opened it); B's typing shows in A's header; /search finds the
 * message; a resize to 60x20 and back keeps the screen whole.
 */
TT_CASE(tui__chat__receipts_typing_search_resize)
{
	tc_start(true);
	reg("a", "alice@one.test");
	reg("b", "bob@one.test");

	chat("A", "a");
	WAIT_FOR("A", "\u25cf online \u00b7 alice@one.test");
	say("A", "/msg bob@one.test");
	WAIT_FOR("A", " Chats               bob@one.test");
	say("A", "hello bob, caf\u00e9 \U0001f44b");
	/* Bob's client is not running: the node has it, no device yet. */
	WAIT_LINE("A", "you: hello bob", "\U0001f44b \u2713");

	chat("B", "b");
	WAIT_FOR("B", "\u25cf online \u00b7 bob@one.test");
	WAIT_LINE("A", "you: hello bob", "\U0001f44b \u2713\u2713");
	/* In B's list, not on screen: unread, not read. */
	WAIT_LINE("B", "alice", "1 \u2502");
	{
		char scr[SCREEN_MAX], l[1024];
		screen("A", scr, sizeof(scr));
		TT_ASSERT(line_with(scr, "you: hello bob", l, sizeof(l)));
		TT_ASSERT(strstr(l, "read") == NULL);
	}
	key("B", "C-n");
	WAIT_FOR("B", "alice: hello bob, caf\u00e9 \U0001f44b");
	WAIT_LINE("A", "you: hello bob", "\u2713\u2713 read");

	/* Typing, then the message ends it. */
	keys("B", "hi al");
	WAIT_FOR("A", "bob@one.test \u00b7 typing\u2026");
	keys("B", "ice");
	key("B", "Enter");
	WAIT_FOR("A", "bob: hi alice");
	WAIT_GONE("A", "typing\u2026");
	WAIT_LINE("B", "you: hi alice", "\u2713\u2713 read");

	/* Search across the history. */
	say("A", "/search hello");
	WAIT_FOR("A", "Search: hello");
	WAIT_FOR("A", "bob@one.test  you: hello bob, caf\u00e9");
	WAIT_FOR("A", "1 match");
	key("A", "Escape");
	WAIT_GONE("A", "Search: hello");

	/* Resize and back. */
	resize("A", 60, 20);
	WAIT_FOR("A", " Chats           bob@one.test");
	check_frame("A", 20, 60, "bob: hi alice");
	resize("A", 80, 24);
	WAIT_FOR("A", " Chats               bob@one.test");
	check_frame("A", 24, 80, "bob: hi alice");
	/* Still taking keys after the resizes. */
	say("A", "after resize");
	WAIT_LINE("A", "you: after resize", "\u2713\u2713 read");

	quit("A", "a");
	quit("B", "b");
	tc_stop(true);
}

/* The node restarts: both clients reconnect on their own and what A typed
 * meanwhile, shown pending, goes out. */
TT_CASE(tui__reconnect__node_restart_delivers_queued)
{
	tc_start(true);
	reg("a", "alice@one.test");
	reg("b", "bob@one.test");
	chat("A", "a");
	chat("B", "b");
	WAIT_FOR("A", "\u25cf online \u00b7 alice@one.test");
	WAIT_FOR("B", "\u25cf online \u00b7 bob@one.test");
	say("A", "/msg bob@one.test before");
	WAIT_LINE("A", "you: before", "\u2713\u2713");
	key("B", "C-n");
	WAIT_FOR("B", "alice: before");

	(void)ternd_stop(&T.node);
	WAIT_FOR("A", "reconnecting in");
	WAIT_FOR("B", "reconnecting in");
	say("A", "while the node is down");
	WAIT_LINE("A", "you: while the node is down", "\u2026 pending");

	ternd_start(&T.node);
	wait_line_(__LINE__, "B", "alice: while the node is down", NULL, false,
	    RECONNECT_MS);
	WAIT_FOR("A", "\u25cf online \u00b7 alice@one.test");
	WAIT_FOR("B", "\u25cf online \u00b7 bob@one.test");
	WAIT_LINE("A", "you: while the node is down", "\u2713\u2713 read");

	quit("A", "a");
	quit("B", "b");
	tc_stop(true);
}

/* A client killed right after a message was typed while the node was
 * down still delivers it once restarted with the node back. */
TT_CASE(tui__crash__pending_survives_kill)
{
	pid_t pid;
	uint64_t end;

	tc_start(true);
	reg("a", "alice@one.test");
	reg("b", "bob@one.test");
	chat("A", "a");
	WAIT_FOR("A", "\u25cf online \u00b7 alice@one.test");
	/* A session with bob first: the common case of a conversation
	 * going on. (A first message to a new contact typed offline and
	 * resent by a restarted client ends FAILED in app.c: see the
	 * report of issue 6.) */
	say("A", "/msg bob@one.test first");
	WAIT_LINE("A", "you: first", "\u2713");

	(void)ternd_stop(&T.node);
	WAIT_FOR("A", "reconnecting in");
	say("A", "typed, then killed");
	WAIT_LINE("A", "you: typed, then killed", "\u2026 pending");
	pid = pane_pid("A");
	TT_EQ(kill(pid, SIGKILL), 0);
	end = ternd_now_ms() + 10000;
	while (kill(pid, 0) == 0) {
		TT_ASSERT(ternd_now_ms() < end);
		ternd_nap(20);
	}

	ternd_start(&T.node);
	chat("A2", "a");
	WAIT_FOR("A2", "\u25cf online \u00b7 alice@one.test");
	WAIT_LINE("A2", "you: typed, then killed", "\u2713");
	chat("B", "b");
	WAIT_LINE("B", "alice", "2 \u2502");
	key("B", "C-n");
	WAIT_FOR("B", "alice: first");
	WAIT_FOR("B", "alice: typed, then killed");
	WAIT_LINE("A2", "you: typed, then killed", "\u2713\u2713 read");

	quit("A2", "a");
	quit("B", "b");
	tc_stop(true);
}
