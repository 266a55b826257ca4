/*
 * ternd_harness.h: a real ternd process for integration tests.
 *
 * A test makes a node in a fresh directory under /tmp with `ternd init`,
 * edits its config file, starts `ternd run` with posix_spawn (stdout and
 * stderr appended to DIR/ternd.log), and waits until the run file names
 * the new process and the client port accepts a TCP connection. It stops
 * the node by its PID only: SIGTERM and a bounded waitpid (a graceful stop
 * must exit 0), or SIGKILL for crash tests. Operator commands (`ternd
 * invite`, `ternd user`, `ternd status`) run as child processes whose
 * stdout the test reads.
 *
 * Every stop checks the log for sanitizer reports, so under
 * -DTERN_SANITIZE=ON (ASAN_OPTIONS=detect_leaks=1) a leak or a UB report
 * in ternd fails the case even when the node exits as it should.
 *
 * A failing assertion exits the test process; an atexit handler then
 * kills any node still running (SIGKILL, by PID), prints the end of its
 * log and removes its directory (kept if TERN_KEEP_DIRS is set).
 * TERN_SHOW_LOG prints the node's log at the end of a passing case too.
 *
 * Header-only (static functions): one test file includes it.
 */
#ifndef TERN_TERND_HARNESS_H
#define TERN_TERND_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "tt.h"

#define TERND_BIN TERN_BUILD_DIR "/node/ternd"
#define TERND_DOMAIN "one.test"
#define TERND_READY_MS 10000   /* start to accepting connections */
#define TERND_STOP_MS 5000     /* SIGTERM to exit */
#define TERND_MAX_LIVE 4       /* nodes one case may run */
#define TERND_PATH 512         /* bytes in our paths */

extern char **environ;

struct ternd {
	char dir[64];              /* the node's directory (mkdtemp) */
	char conf[TERND_PATH];     /* DIR/ternd.conf */
	char log[TERND_PATH];      /* DIR/ternd.log: the node's stderr */
	char runfile[TERND_PATH];  /* DIR/ternd.run: pid and admin address */
	uint16_t port;             /* client port */
	uint16_t admin_port;       /* metrics and admin API (from the run
	                              file) */
	pid_t pid;                 /* the running node, or 0 */
	int starts;                /* ternd run started so far */
	bool registered;           /* in ternd_live, for the atexit handler */
	bool tmpfs;                /* dir is a tmpfs mounted by ternd_init_on */
};

static struct ternd *ternd_live[TERND_MAX_LIVE];

static uint64_t
ternd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
ternd_nap(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ternd_log_tail: the last bytes of the node's log, to stderr. */
static void
ternd_log_tail(const struct ternd *t, size_t max)
{
	size_t len = 0;
	char *s = tt_read_file(t->log, &len);

	if (s == NULL)
		return;
	fprintf(stderr, "--- %s (last %zu bytes) ---\n%s\n--- end ---\n",
	    t->log, len > max ? max : len, len > max ? s + len - max : s);
	free(s);
}

/* ternd_rmdir_depth: removes what dir holds, and dir; subdirectories
 * (the client tests keep device profiles in DIR/profiles/NAME) down to
 * depth levels, never following a symbolic link. */
static void
ternd_rmdir_depth(const char *dir, int depth)
{
	char path[TERND_PATH + 256];
	struct dirent *e;
	struct stat st;
	DIR *d;

	if ((d = opendir(dir)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (depth > 0 && lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			ternd_rmdir_depth(path, depth - 1);
		else
			(void)unlink(path);
	}
	closedir(d);
	(void)rmdir(dir);
}

/* ternd_rmdir: removes a node directory, what tests put in it, and the
 * directory itself. Only under /tmp. */
static void
ternd_rmdir(const char *dir)
{
	if (dir[0] == '\0' || strncmp(dir, "/tmp/", 5) != 0)
		return;
	ternd_rmdir_depth(dir, 3);
}

/* ternd_atexit: a failed assertion left nodes running; end them. */
static void
ternd_atexit(void)
{
	int i, st;

	for (i = 0; i < TERND_MAX_LIVE; i++) {
		struct ternd *t = ternd_live[i];
		if (t == NULL)
			continue;
		ternd_live[i] = NULL;
		if (t->pid > 0) {
			kill(t->pid, SIGKILL);
			(void)waitpid(t->pid, &st, 0);
			t->pid = 0;
			ternd_log_tail(t, 4000);
		}
		if (getenv("TERN_KEEP_DIRS") == NULL) {
			/* A tmpfs goes with the process's mount namespace;
			 * the mount point under it must go first. */
			if (t->tmpfs)
				(void)umount(t->dir);
			ternd_rmdir(t->dir);
		} else
			fprintf(stderr, "kept %s\n", t->dir);
	}
}

static void
ternd_track(struct ternd *t)
{
	static bool hooked;
	int i;

	if (!hooked) {
		hooked = true;
		TT_EQ(atexit(ternd_atexit), 0);
	}
	for (i = 0; i < TERND_MAX_LIVE; i++) {
		if (ternd_live[i] == NULL) {
			ternd_live[i] = t;
			t->registered = true;
			return;
		}
	}
	tt_fail(__FILE__, __LINE__, "more than %d nodes", TERND_MAX_LIVE);
}

static void
ternd_untrack(struct ternd *t)
{
	for (int i = 0; i < TERND_MAX_LIVE; i++)
		if (ternd_live[i] == t)
			ternd_live[i] = NULL;
	t->registered = false;
}

/* ternd_free_port: a free port on 127.0.0.1 outside the kernel's
 * ephemeral range (tt_free_port says why). */
static uint16_t
ternd_free_port(void)
{
	return tt_free_port();
}

/* ternd_tcp_connect: a blocking TCP socket to 127.0.0.1:port, or -1. */
static int
ternd_tcp_connect(uint16_t port)
{
	struct sockaddr_in a = {0};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	TT_ASSERT(fd >= 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(port);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * ternd_spawn: runs TERND_BIN with args (args[0] is the subcommand; the
 * list ends with NULL). The child's stdout goes to out_fd, its stderr to
 * err_fd; -1 means /dev/null for stdout and our own stderr for stderr.
 */
static pid_t
ternd_spawn(const char *const *args, int out_fd, int err_fd)
{
	posix_spawn_file_actions_t fa;
	char *argv[32];
	pid_t pid;
	int i, r;

	argv[0] = (char *)TERND_BIN;
	for (i = 0; args[i] != NULL; i++) {
		TT_ASSERT(i < 30);
		argv[i + 1] = (char *)args[i];
	}
	argv[i + 1] = NULL;
	posix_spawn_file_actions_init(&fa);
	if (out_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
	else
		posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY,
		    0);
	if (err_fd >= 0)
		posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
	r = posix_spawn(&pid, TERND_BIN, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0)
		tt_fail(__FILE__, __LINE__, "posix_spawn %s: %s", TERND_BIN,
		    strerror(r));
	return pid;
}

/* ternd_wait_exit: waitpid(pid) for at most max_ms; the wait status, or
 * -1 if it is still running then. */
static int
ternd_wait_exit(pid_t pid, uint32_t max_ms)
{
	uint64_t end = ternd_now_ms() + max_ms;
	int st;
	pid_t r;

	for (;;) {
		r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		TT_ASSERT(r == 0 || (r < 0 && errno == EINTR));
		if (ternd_now_ms() >= end)
			return -1;
		ternd_nap(5);
	}
}

/*
 * ternd_cli: runs `ternd ARGS... -c CONF` to completion, its stdout into
 * out (cap bytes, NUL-terminated; may be NULL). Returns its exit status
 * (or 128 + signal).
 */
static int
ternd_cli(const struct ternd *t, char *out, size_t cap,
    const char *const *args)
{
	const char *argv[32];
	char junk[512];
	size_t len = 0;
	ssize_t n;
	int pfd[2], i, st;
	pid_t pid;

	for (i = 0; args[i] != NULL; i++) {
		TT_ASSERT(i < 28);
		argv[i] = args[i];
	}
	argv[i++] = "-c";
	argv[i++] = t->conf;
	argv[i] = NULL;
	TT_EQ(pipe(pfd), 0);
	TT_EQ(fcntl(pfd[0], F_SETFD, FD_CLOEXEC), 0);
	TT_EQ(fcntl(pfd[1], F_SETFD, FD_CLOEXEC), 0);
	pid = ternd_spawn(argv, pfd[1], -1);
	close(pfd[1]);
	for (;;) {
		char *dst = out != NULL && len + 1 < cap ? out + len : junk;
		size_t room = out != NULL && len + 1 < cap ? cap - 1 - len :
		    sizeof(junk);
		n = read(pfd[0], dst, room);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (dst != junk)
			len += (size_t)n;
	}
	close(pfd[0]);
	if (out != NULL && cap > 0)
		out[len] = '\0';
	st = ternd_wait_exit(pid, 10000);
	TT_ASSERT(st != -1);
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + WTERMSIG(st);
}

/*
 * ternd_conf_set: replaces the line "key = ..." in the node's config file
 * (ternd init writes every option at its default, one per line).
 */
static void
ternd_conf_set(struct ternd *t, const char *key, const char *value)
{
	size_t len = 0, klen = strlen(key);
	char *s = tt_read_file(t->conf, &len), *line, *eol;
	FILE *f;
	bool done = false;

	TT_ASSERT(s != NULL);
	TT_ASSERT((f = fopen(t->conf, "w")) != NULL);
	for (line = s; *line != '\0'; line = eol) {
		eol = strchr(line, '\n');
		eol = eol != NULL ? eol + 1 : line + strlen(line);
		if (!done && strncmp(line, key, klen) == 0 &&
		    strncmp(line + klen, " = ", 3) == 0) {
			fprintf(f, "%s = %s\n", key, value);
			done = true;
		} else {
			fwrite(line, 1, (size_t)(eol - line), f);
		}
	}
	TT_EQ(fclose(f), 0);
	free(s);
	if (!done)
		tt_fail(__FILE__, __LINE__, "no '%s = ' line in %s", key,
		    t->conf);
}

/*
 * ternd_init_on: a new node directory under /tmp and `ternd init` in it,
 * listening for clients on a free loopback port, the admin API on a port
 * the kernel picks (found later in the run file). With tmpfs_opts, the
 * directory is first made a tmpfs with those options (a small disk that
 * can fill up): the caller has made its mount namespace its own
 * (unshare(CLONE_NEWNS)), so the mount is seen by this process and the
 * nodes it starts only; ternd_destroy unmounts it.
 */
static void
ternd_init_on(struct ternd *t, bool open_reg, const char *tmpfs_opts)
{
	char listen[64];
	int st;

	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/ternd-test-XXXXXX");
	TT_ASSERT(mkdtemp(t->dir) != NULL);
	ternd_track(t);
	if (tmpfs_opts != NULL) {
		if (mount("tmpfs", t->dir, "tmpfs", 0, tmpfs_opts) != 0)
			tt_fail(__FILE__, __LINE__, "mount tmpfs on %s: %s",
			    t->dir, strerror(errno));
		t->tmpfs = true;
	}
	snprintf(t->conf, sizeof(t->conf), "%s/ternd.conf", t->dir);
	snprintf(t->log, sizeof(t->log), "%s/ternd.log", t->dir);
	snprintf(t->runfile, sizeof(t->runfile), "%s/ternd.run", t->dir);
	t->port = ternd_free_port();
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", t->port);
	const char *args[] = {"init", "--domain", TERND_DOMAIN, "--dir",
	    t->dir, "--listen", listen, "--metrics-listen", "127.0.0.1:0",
	    open_reg ? "--open-registration" : NULL, NULL};
	st = ternd_wait_exit(ternd_spawn(args, -1, -1), 10000);
	TT_ASSERT(st != -1 && WIFEXITED(st));
	TT_EQ(WEXITSTATUS(st), 0);
}

static void
ternd_init(struct ternd *t, bool open_reg)
{
	ternd_init_on(t, open_reg, NULL);
}

/* ternd_read_runfile: the admin port if the run file names pid. */
static bool
ternd_read_runfile(struct ternd *t)
{
	char *s = tt_read_file(t->runfile, NULL), *a;
	unsigned pid = 0, port = 0;
	bool ok = false;

	if (s == NULL)
		return false;
	if (sscanf(s, "pid=%u", &pid) == 1 && (pid_t)pid == t->pid &&
	    (a = strstr(s, "\nadmin=")) != NULL &&
	    (a = strchr(a + 1, ':')) != NULL && sscanf(a + 1, "%u",
	    &port) == 1 && port > 0 && port < 65536) {
		t->admin_port = (uint16_t)port;
		ok = true;
	}
	free(s);
	return ok;
}

/*
 * ternd_start: `ternd run`, then waits (bounded) until the run file names
 * the new process and the client port accepts a connection. Fails the
 * case, with the log, if the node exits or is not ready in time.
 */
static void
ternd_start(struct ternd *t)
{
	uint64_t end = ternd_now_ms() + TERND_READY_MS;
	const char *args[] = {"run", "-c", t->conf, NULL};
	int fd, st;

	TT_ASSERT(t->pid == 0);
	fd = open(t->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	TT_ASSERT(fd >= 0);
	t->pid = ternd_spawn(args, fd, fd);
	close(fd);
	t->starts++;
	for (;;) {
		if (waitpid(t->pid, &st, WNOHANG) == t->pid) {
			t->pid = 0;
			ternd_log_tail(t, 4000);
			tt_fail(__FILE__, __LINE__, "ternd run exited at start "
			    "(status %#x)", st);
		}
		if (ternd_read_runfile(t) &&
		    (fd = ternd_tcp_connect(t->port)) >= 0) {
			close(fd);
			return;
		}
		if (ternd_now_ms() >= end)
			tt_fail(__FILE__, __LINE__, "ternd not ready after "
			    "%d ms", TERND_READY_MS);
		ternd_nap(10); /* then look again: the real check is above */
	}
}

/* ternd_check_log: no sanitizer report in the node's log. */
static void
ternd_check_log(const struct ternd *t)
{
	static const char *const bad[] = {"AddressSanitizer",
	    "LeakSanitizer", "runtime error:", "handles left open"};
	char *s = tt_read_file(t->log, NULL);
	size_t i;

	TT_ASSERT(s != NULL);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (strstr(s, bad[i]) != NULL) {
			free(s);
			ternd_log_tail(t, 8000);
			tt_fail(__FILE__, __LINE__, "'%s' in %s", bad[i],
			    t->log);
		}
	}
	free(s);
}

/*
 * ternd_stop: SIGTERM to the node's PID; it must exit with status 0
 * within TERND_STOP_MS and leave a clean log. Returns how long it took.
 */
static uint64_t
ternd_stop(struct ternd *t)
{
	uint64_t t0 = ternd_now_ms();
	int st;

	TT_ASSERT(t->pid > 0);
	TT_EQ(kill(t->pid, SIGTERM), 0);
	st = ternd_wait_exit(t->pid, TERND_STOP_MS);
	if (st == -1)
		tt_fail(__FILE__, __LINE__, "ternd still running %d ms after "
		    "SIGTERM", TERND_STOP_MS);
	t->pid = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		ternd_log_tail(t, 8000);
		tt_fail(__FILE__, __LINE__, "ternd stopped with status %#x, "
		    "want exit 0", st);
	}
	ternd_check_log(t);
	/* A graceful stop removes its run file. */
	TT_ASSERT(access(t->runfile, F_OK) != 0);
	return ternd_now_ms() - t0;
}

/* ternd_kill: SIGKILL, as a crash would. */
static void
ternd_kill(struct ternd *t)
{
	int st;

	TT_ASSERT(t->pid > 0);
	TT_EQ(kill(t->pid, SIGKILL), 0);
	st = ternd_wait_exit(t->pid, TERND_STOP_MS);
	TT_ASSERT(st != -1);
	t->pid = 0;
	TT_ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	ternd_check_log(t);
}

/* ternd_destroy: stops a node still running and removes its directory. */
static void
ternd_destroy(struct ternd *t)
{
	if (t->pid > 0)
		(void)ternd_stop(t);
	if (getenv("TERN_SHOW_LOG") != NULL)
		ternd_log_tail(t, 1u << 20);
	ternd_untrack(t);
	if (t->tmpfs) {
		/* Its files go with it; then the (empty) mount point. */
		TT_EQ(umount(t->dir), 0);
		t->tmpfs = false;
	}
	ternd_rmdir(t->dir);
}

/*
 * ternd_http_get: one HTTP/1.1 GET to the admin port, the whole response
 * (head and body) into out. Blocking, with a 5 s receive deadline.
 */
static size_t
ternd_http_get(const struct ternd *t, const char *path, char *out,
    size_t cap)
{
	struct timeval tv = {5, 0};
	char req[512];
	size_t len = 0;
	ssize_t n;
	int fd = ternd_tcp_connect(t->admin_port);

	TT_ASSERT(fd >= 0);
	TT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
	    "Connection: close\r\n\r\n", path);
	TT_EQ(send(fd, req, (size_t)n, MSG_NOSIGNAL), n);
	while (len + 1 < cap) {
		n = recv(fd, out + len, cap - 1 - len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		TT_ASSERT(n >= 0); /* not the 5 s deadline */
		if (n == 0)
			break;
		len += (size_t)n;
	}
	out[len] = '\0';
	close(fd);
	return len;
}

#endif
