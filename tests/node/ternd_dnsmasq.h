/*
 * ternd_dnsmasq.h: a dnsmasq on loopback for tests that need DNS (SRV,
 * TXT, A records of .test names), started with the records given and
 * stopped by its PID (also by an atexit handler when a case fails).
 * Header-only; include after ternd_harness.h.
 */
#ifndef TERN_TERND_DNSMASQ_H
#define TERN_TERND_DNSMASQ_H

#define DNSMASQ "/usr/sbin/dnsmasq"

static pid_t dm_pid = -1;

static void
dm_stop(void)
{
	int st;

	if (dm_pid > 0) {
		kill(dm_pid, SIGTERM);
		(void)waitpid(dm_pid, &st, 0);
		dm_pid = -1;
	}
}

static int
udp_taken(uint16_t port)
{
	struct sockaddr_in a = {0};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), r;

	TT_ASSERT(fd >= 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons(port);
	r = bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 &&
	    errno == EADDRINUSE;
	close(fd);
	return r;
}

/* dm_start: dnsmasq on 127.0.0.1:port answering for *.test with the
 * records in recs (dnsmasq options, NULL-terminated); returns once it
 * has bound its port. */
static void
dm_start(uint16_t port, const char *const *recs)
{
	char portarg[32];
	const char *argv[32];
	posix_spawn_file_actions_t fa;
	int i, n = 0;

	TT_ASSERT(access(DNSMASQ, X_OK) == 0);
	snprintf(portarg, sizeof(portarg), "--port=%u", port);
	argv[n++] = DNSMASQ;
	argv[n++] = "--no-daemon";
	argv[n++] = "--conf-file=/dev/null";
	argv[n++] = "--no-resolv";
	argv[n++] = "--no-hosts";
	argv[n++] = "--listen-address=127.0.0.1";
	argv[n++] = "--bind-interfaces";
	argv[n++] = portarg;
	argv[n++] = "--pid-file=";
	argv[n++] = "--local=/test/";
	argv[n++] = "--log-facility=/dev/null";
	for (i = 0; recs[i] != NULL; i++) {
		TT_ASSERT(n < 30);
		argv[n++] = recs[i];
	}
	argv[n] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	TT_EQ(posix_spawn(&dm_pid, DNSMASQ, &fa, NULL, (char *const *)argv,
	    environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	atexit(dm_stop);
	for (i = 0; i < 500 && !udp_taken(port); i++)
		ternd_nap(10);
	TT_ASSERT(udp_taken(port));
}

#endif
