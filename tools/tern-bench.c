/*
 * tern-bench: measures a real ternd with the real protocol.
 *
 *     tern-bench [--ternd PATH] [--json FILE] [--quick] [--window N]
 *                [--ack-delay MS] [--arrivals poisson|even]
 *                [--rates R1,R2,...] [SCENARIO...]
 *
 * It makes a fresh node in a temporary directory (ternd init, open
 * registration, durability full), starts it, registers the users it needs
 * and runs the scenarios (all by default):
 *
 *   deliver   paired online users, each sender keeps a window of messages
 *             in flight to its partner: delivered messages/s
 *   latency   the same pairs at a fixed offered rate (20,000 and 50,000/s;
 *             --rates to choose), arriving at random (Poisson;
 *             --arrivals even for an even beat); latency from
 *             the time each message was DUE to be sent (not when it was),
 *             so a stalled node cannot hide its stall (coordinated
 *             omission)
 *   idle      15,000 authenticated idle connections: node RSS per
 *             connection (from /proc)
 *   logins    handshake + LOGIN per second over fresh connections
 *   offline   envelopes to offline devices: SENT (durable) per second,
 *             then the recipients log in and drain: delivered per second
 *   fed       two nodes with federation between them: senders on one,
 *             recipients on the other; delivered/s and latency at 20k/s
 *   e2e       the client's Signal encryption (no node involved):
 *             encrypt+decrypt pairs per second on one core and session
 *             set-up time (bench_e2e.c)
 *
 * Its devices gather their ACKs as the client library does (client.h:
 * up to 10 ms or 32 ACKs, or ahead of anything else they write);
 * --ack-delay 0 ACKs each DELIVER at once, as the library did before it
 * gathered them.
 *
 * Node CPU time per delivered message comes from /proc/PID/stat, system
 * calls from /proc/PID/io, the host's stolen time from /proc/stat. The
 * node runs in its own process; this tool uses one loop on one thread.
 * Results print as a table and, with --json, as JSON.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "bench_e2e.h"
#include <uv.h>

#include "client.h"
#include "config.h"
#include "msg.h"
#include "net.h"

extern char **environ;

#define BENCH_DOMAIN "bench.test"
#define LAT_BUCKETS 4096 /* log-linear: 64 sub-buckets per power of 2 */

struct bench_conn;

/* One benchmark device: a user with device 1 and its connection. */
struct dev {
	uint8_t priv[32], pub[32];  /* device key */
	char addr[64];              /* user address */
	struct net_conn *conn;      /* when connected */
	struct dev *peer;           /* whom it sends to */
	uint32_t inflight;          /* sent, not yet delivered */
	uint64_t sent, got;         /* counters */
	uint64_t next_due_ns;       /* latency: next scheduled send */
	uint8_t state;              /* 0 idle 1 connecting 2 online */
	uint8_t want;               /* what to do on open: 1 register 2 login */
	uint32_t req;               /* request counter */
	uint16_t port;              /* its node's client port */
	/* ACKs gathered as the client library gathers them (client.h): */
	struct dev *ack_prev, *ack_next; /* in B's list while nack > 0 */
	uint64_t ack_since;         /* now_ns of the oldest */
	uint8_t nack;               /* ids in acks */
	uint8_t acks[CLIENT_ACK_GATHER_MAX][MSG_ID_LEN];
};

struct lat {
	uint64_t n;                    /* samples */
	uint64_t b[LAT_BUCKETS];       /* counts */
	uint64_t max;                  /* ns */
};

static struct {
	uv_loop_t loop;
	struct net_loop nl;
	char ternd[4096];           /* path of the ternd binary */
	char dir[256];              /* the node's temporary directory */
	pid_t node_pid;             /* the node */
	uint16_t port;              /* its client port */
	pid_t node2_pid;            /* fed: the second node */
	uint16_t port2;             /* its client port */
	uint8_t id_base[2];         /* envelope ids: time, id_next mixed,
	                               then this */
	uint64_t id_next;
	struct dev *devs;           /* all devices */
	uint32_t ndevs;
	uint32_t online;            /* devices logged in */
	uint32_t pending;           /* operations under way */
	int mode;                   /* what the callbacks do */
	uint32_t window;            /* deliver: in flight per sender */
	uint64_t deadline_ns;       /* end of the measuring phase */
	uint64_t delivered;         /* messages delivered in the phase */
	uint64_t sent_ok;           /* SENT received in the phase */
	uint64_t errors;            /* ERROR received */
	struct lat lat;             /* latency from the due time */
	struct lat raw;             /* latency from the actual send */
	uv_poll_t pace;             /* latency: the pacing timer's fd */
	int pace_fd;                /* a timerfd, -1 when none */
	uint64_t pace_next;         /* the index of the next message due */
	uint64_t pace_t0;           /* when the run's first is due */
	double pace_off;            /* the next one's due time - t0, ns */
	double pace_gap_ns;         /* mean gap between messages: 1e9 / rate */
	bool poisson;               /* arrivals at random (default) or even */
	double rates[8];            /* latency: offered rates, messages/s */
	int nrates;
	uint64_t rng;               /* xorshift64 state for the arrivals */
	uint32_t ack_delay_ms;      /* devices gather ACKs this long; 0: none */
	struct dev *ack_head;       /* devices with ACKs gathered: oldest */
	struct dev *ack_tail;       /* and newest */
	uv_timer_t ack_timer;       /* due when the head's delay ends */
	double rate;                /* latency: offered messages/s */
	bool quick;                 /* shorter runs */
	FILE *json;                 /* --json output */
	int json_first;             /* comma placement */
} B;

enum { M_NONE, M_DELIVER, M_LATENCY, M_OFFLINE_SEND, M_DRAIN };

static uint64_t
now_ns(void)
{
	return uv_hrtime();
}

/* wall_ms: the Unix clock in milliseconds, as a client stamps ids. */
static uint64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
die(const char *what)
{
	fprintf(stderr, "tern-bench: %s\n", what);
	if (B.node_pid > 0)
		kill(B.node_pid, SIGTERM);
	exit(1);
}

/* --- the node -------------------------------------------------------- */

/* stat_cpu: user + system ticks from a /proc stat file. */
static void
stat_cpu(const char *path, uint64_t *ticks)
{
	char buf[1024], *p;
	unsigned long ut = 0, st = 0;
	FILE *f;

	*ticks = 0;
	if ((f = fopen(path, "r")) == NULL)
		return;
	if (fgets(buf, sizeof(buf), f) != NULL && (p = strrchr(buf, ')'))) {
		/* Fields after the command: state is 3rd; utime 14, stime 15. */
		if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
		    "%lu %lu", &ut, &st) == 2)
			*ticks = ut + st;
	}
	fclose(f);
}

static void
pid_cpu(pid_t pid, uint64_t *ticks)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	stat_cpu(path, ticks);
}

/* node_main_cpu: the node's loop thread alone (its tid is the pid); the
 * rest of the node's CPU is the store's writer and reader threads. */
static void
node_main_cpu(uint64_t *ticks)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat",
	    (int)B.node_pid, (int)B.node_pid);
	stat_cpu(path, ticks);
}

/* self_cpu_us: this process's CPU time (user + system), µs. */
static uint64_t
self_cpu_us(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return 0;
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
	    (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* host_ticks: from /proc/stat, the machine's CPU ticks in all and those
 * stolen by the hypervisor. A virtual machine's neighbours take its cores
 * for milliseconds at a time; a phase with steal has latency figures that
 * tell more about them than about the node. */
static void
host_ticks(uint64_t *all, uint64_t *steal)
{
	unsigned long long v[8] = {0};
	FILE *f;

	*all = *steal = 0;
	if ((f = fopen("/proc/stat", "r")) == NULL)
		return;
	if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
	    &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
		for (int i = 0; i < 8; i++)
			*all += v[i];
		*steal = v[7];
	}
	fclose(f);
}

struct steal_mark {
	uint64_t all, steal;
};

static void
steal_begin(struct steal_mark *m)
{
	host_ticks(&m->all, &m->steal);
}

/* steal_pct: the share of the machine's CPU time stolen since m. */
static double
steal_pct(const struct steal_mark *m)
{
	uint64_t all, steal;

	host_ticks(&all, &steal);
	if (all <= m->all)
		return 0;
	return 100.0 * (double)(steal - m->steal) / (double)(all - m->all);
}

/* io_calls: read and write system calls of a process so far (syscr +
 * syscw in /proc/PID/io). Unlike its CPU time, the count does not depend
 * on what else the machine is doing. */
static uint64_t
io_calls(pid_t pid)
{
	char path[64], line[128];
	unsigned long long v, sum = 0;
	FILE *f;

	if (pid > 0)
		snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/io");
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "syscr: %llu", &v) == 1 ||
		    sscanf(line, "syscw: %llu", &v) == 1)
			sum += v;
	fclose(f);
	return sum;
}

/* node_cpu: the node's CPU time (user + system, all threads) in ticks. */
static void
node_cpu(uint64_t *ticks)
{
	pid_cpu(B.node_pid, ticks);
}

static uint64_t
node_rss_kib(void)
{
	char path[64], line[256];
	uint64_t kib = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)B.node_pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %lu kB", (unsigned long *)&kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* node_rss_split: prints what the node's RSS is made of: its own memory
 * (anonymous), files mapped (the binary, libraries) and shared memory
 * (SQLite's WAL index), so that a change in one is not read as the
 * connections' cost. */
static void
node_rss_split(const char *label)
{
	char path[64], line[256];
	unsigned long anon = 0, file = 0, shmem = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)B.node_pid);
	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		(void)sscanf(line, "RssAnon: %lu kB", &anon);
		(void)sscanf(line, "RssFile: %lu kB", &file);
		(void)sscanf(line, "RssShmem: %lu kB", &shmem);
	}
	fclose(f);
	printf("  %s rss: %lu KiB anonymous, %lu KiB files, %lu KiB shared\n",
	    label, anon, file, shmem);
}

static int
run_wait(char *const argv[], const char *out_path)
{
	posix_spawn_file_actions_t fa;
	pid_t pid;
	int st;

	posix_spawn_file_actions_init(&fa);
	if (out_path != NULL)
		posix_spawn_file_actions_addopen(&fa, 1, out_path,
		    O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
		return -1;
	posix_spawn_file_actions_destroy(&fa);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

/* conf_set: sets one option of the bench node's config. */
static void
conf_set(const char *path, const char *key, const char *value)
{
	if (config_file_set(path, key, value) != 0)
		die("cannot edit the node's config");
}

static void node_run(void);

/* port_bindable: nothing holds TCP port p on 127.0.0.1 now. */
static bool
port_bindable(uint16_t p)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(p)};
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	if (s < 0)
		return false;
	a.sin_addr.s_addr = htonl(0x7f000001);
	ok = bind(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(s);
	return ok;
}

static void
node_start(void)
{
	char conf[512], listen[64], cmd[1024];

	snprintf(B.dir, sizeof(B.dir), "/tmp/tern-bench-XXXXXX");
	if (mkdtemp(B.dir) == NULL)
		die("mkdtemp");
	snprintf(cmd, sizeof(cmd), "%s/node", B.dir);
	/* A free port: bind 0 in a throwaway socket would race; pick one
	 * from the pid instead, in a range nothing else here uses: below
	 * Linux's default ephemeral range (32768 up), where the idle
	 * scenario's 30,000 closed connections leave their local ports in
	 * TIME_WAIT and a node started next could not listen. The fed
	 * scenario uses the next three ports too. The readiness check below
	 * connects to the port, so it must be nobody else's: the test suite
	 * runs this tool beside servers of its own. */
	B.port = (uint16_t)(20000 + getpid() % 12000);
	for (int i = 0; i < 1000; i++) {
		if (port_bindable(B.port) && port_bindable(B.port + 1) &&
		    port_bindable(B.port + 2) && port_bindable(B.port + 3))
			break;
		B.port = (uint16_t)(20000 + (B.port - 20000 + 4) % 12000);
	}
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", B.port);
	char *init[] = {B.ternd, "init", "--domain", BENCH_DOMAIN, "--dir", cmd,
	    "--listen", listen, "--open-registration", "--metrics-listen",
	    "127.0.0.1:0", NULL};
	if (run_wait(init, "/dev/null") != 0)
		die("ternd init failed");
	snprintf(conf, sizeof(conf), "%s/node/ternd.conf", B.dir);
	/* A load test: lift the per-user send limits (they would measure
	 * the rate limiter) and allow every connection in at once. */
	conf_set(conf, "send_rate", "1000000");
	conf_set(conf, "send_burst", "1000000");
	conf_set(conf, "max_unauth", "100000");
	conf_set(conf, "quota_count", "10000000");
	conf_set(conf, "log_level", "warn");
	node_run();
}

/* node_run: starts ternd on the bench's node directory, waits for it. */
static void
node_run(void)
{
	char conf[512], log[512];
	posix_spawn_file_actions_t fa;
	int fd;

	snprintf(conf, sizeof(conf), "%s/node/ternd.conf", B.dir);
	snprintf(log, sizeof(log), "%s/ternd.log", B.dir);
	char *run[] = {B.ternd, "run", "-c", conf, NULL};
	posix_spawn_file_actions_init(&fa);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, fd, 2);
	if (posix_spawn(&B.node_pid, B.ternd, &fa, NULL, run, environ) != 0)
		die("cannot start ternd");
	posix_spawn_file_actions_destroy(&fa);
	close(fd);
	/* Wait for the port to answer. */
	for (int i = 0; i < 200; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET,
		    .sin_port = htons(B.port)};
		int s = socket(AF_INET, SOCK_STREAM, 0);
		a.sin_addr.s_addr = htonl(0x7f000001);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(s);
			return;
		}
		close(s);
		usleep(25000);
	}
	die("ternd did not start (see its log in the bench directory)");
}

/* node_restart: a fresh node process on the same data. */
static void
node_restart(void)
{
	int st;

	kill(B.node_pid, SIGTERM);
	waitpid(B.node_pid, &st, 0);
	node_run();
	printf("  (node restarted: pid %d)\n", (int)B.node_pid);
}

static void
node_stop(void)
{
	int st;
	char cmd[512];

	if (B.node_pid <= 0)
		return;
	kill(B.node_pid, SIGTERM);
	waitpid(B.node_pid, &st, 0);
	B.node_pid = 0;
	snprintf(cmd, sizeof(cmd), "%s", B.dir);
	char *rm[] = {"/bin/rm", "-rf", cmd, NULL};
	(void)run_wait(rm, NULL);
}

/* --- connections ----------------------------------------------------- */

static void
dev_put(struct dev *d, const struct msg *m)
{
	uint8_t buf[MSG_MAX];
	size_t n;
	int r = TERN_ECLOSED;

	if (d->conn != NULL && (r = msg_encode(m, buf, sizeof(buf), &n)) == 0 &&
	    (r = net_conn_send(d->conn, buf, n)) == 0)
		return;
	/* Not sent: a closed connection, or output past its cap (offered
	 * more than the node takes). The run measured something else. */
	if (++B.errors <= 10)
		fprintf(stderr, "tern-bench: %s: not sent: %s\n", d->addr,
		    tern_strerror(r));
}

/* --- ACKs, gathered as client.c gathers them: written when the oldest
 * has waited ack_delay_ms, when CLIENT_ACK_GATHER_MAX wait, or ahead of
 * anything else the device writes. */

static void
ack_unlink(struct dev *d)
{
	if (d->ack_prev != NULL)
		d->ack_prev->ack_next = d->ack_next;
	else
		B.ack_head = d->ack_next;
	if (d->ack_next != NULL)
		d->ack_next->ack_prev = d->ack_prev;
	else
		B.ack_tail = d->ack_prev;
	d->ack_prev = d->ack_next = NULL;
}

static void
ack_flush(struct dev *d)
{
	struct msg m = {.type = MSG_ACK};
	uint8_t n = d->nack;

	if (n == 0)
		return;
	d->nack = 0;
	ack_unlink(d);
	for (uint8_t i = 0; i < n; i++) {
		memcpy(m.u.ack.id, d->acks[i], MSG_ID_LEN);
		dev_put(d, &m);
	}
}

/* ack_drop: the connection is gone; the node delivers those again. */
static void
ack_drop(struct dev *d)
{
	if (d->nack > 0) {
		d->nack = 0;
		ack_unlink(d);
	}
}

static void ack_timer_cb(uv_timer_t *t);

static void
ack_arm(void)
{
	uint64_t now = now_ns(), due, ms;

	if (B.ack_head == NULL) {
		uv_timer_stop(&B.ack_timer);
		return;
	}
	due = B.ack_head->ack_since + (uint64_t)B.ack_delay_ms * 1000000;
	ms = due > now ? (due - now + 999999) / 1000000 : 0;
	uv_timer_start(&B.ack_timer, ack_timer_cb, ms, 0);
}

static void
ack_timer_cb(uv_timer_t *t)
{
	/* libuv's clock is in whole milliseconds: allow for its rounding. */
	uint64_t edge = now_ns() + 1000000 -
	    (uint64_t)B.ack_delay_ms * 1000000;

	while (B.ack_head != NULL && B.ack_head->ack_since <= edge)
		ack_flush(B.ack_head);
	ack_arm();
}

static void
ack_gather(struct dev *d, const uint8_t id[MSG_ID_LEN])
{
	struct msg m = {.type = MSG_ACK};

	if (B.ack_delay_ms == 0) {
		memcpy(m.u.ack.id, id, MSG_ID_LEN);
		dev_put(d, &m);
		return;
	}
	memcpy(d->acks[d->nack++], id, MSG_ID_LEN);
	if (d->nack == CLIENT_ACK_GATHER_MAX) {
		ack_flush(d);
		return;
	}
	if (d->nack > 1)
		return;
	d->ack_since = now_ns();
	d->ack_prev = B.ack_tail;
	d->ack_next = NULL;
	if (B.ack_tail != NULL)
		B.ack_tail->ack_next = d;
	else
		B.ack_head = d;
	B.ack_tail = d;
	if (B.ack_head == d)
		ack_arm();
}

static void
dev_send_msg(struct dev *d, const struct msg *m)
{
	ack_flush(d);
	dev_put(d, m);
}

static void
dev_open(struct net_conn *c)
{
	struct dev *d = *(struct dev **)net_conn_data(c);
	struct msg m = {0};

	m.req = ++d->req;
	if (d->want == 1) {
		m.type = MSG_REGISTER;
		m.u.reg.user.p = d->addr;
		m.u.reg.user.len = strlen(d->addr);
	} else {
		m.type = MSG_LOGIN;
		m.u.login.user.p = d->addr;
		m.u.login.user.len = strlen(d->addr);
		m.u.login.device_id = 1;
	}
	dev_send_msg(d, &m);
}

static void
dev_send_envelope(struct dev *d, uint8_t cls)
{
	struct msg m = {.type = MSG_SEND};
	uint8_t payload[100];
	uint64_t t = d->next_due_ns ? d->next_due_ns : now_ns();

	uint64_t now = now_ns();

	memset(payload, 0x5a, sizeof(payload));
	memcpy(payload, &t, sizeof(t));
	memcpy(payload + 8, &now, sizeof(now));
	m.req = ++d->req;
	/* Ids in the client library's form (client_envelope_id: the clock's
	 * milliseconds, then random bytes), but without a getrandom call
	 * each (one cost a third of a microsecond here, charged to the
	 * node's share of the cores): the counter times an odd constant (a
	 * bijection, so still unique), then two bytes chosen once. Bytes
	 * that vary as a real client's do matter: with a fixed prefix, the
	 * node's tables keyed by id looked faster than they are (BENCHMARKS,
	 * fourth session). */
	if (B.id_next == 0)
		randombytes_buf(B.id_base, sizeof(B.id_base));
	B.id_next++;
	{
		uint64_t x = B.id_next * UINT64_C(0x9e3779b97f4a7c15);
		uint64_t ms = wall_ms();

		for (int k = 0; k < 6; k++)
			m.u.send.id[k] = (uint8_t)(ms >> (40 - 8 * k));
		memcpy(m.u.send.id + 6, &x, sizeof(x));
		memcpy(m.u.send.id + 14, B.id_base, 2);
	}
	m.u.send.to.p = d->peer->addr;
	m.u.send.to.len = strlen(d->peer->addr);
	m.u.send.to_device = 1;
	m.u.send.class = cls;
	m.u.send.timestamp_ms = t / 1000000;
	m.u.send.payload.p = payload;
	m.u.send.payload.len = sizeof(payload);
	dev_send_msg(d, &m);
	d->sent++;
	d->inflight++;
}

static void
lat_add(struct lat *l, uint64_t ns)
{
	uint64_t us = ns / 1000 + 1;
	int e = 63 - __builtin_clzll(us);
	size_t i = e < 6 ? (size_t)us : (size_t)((e - 5) * 64 +
	    ((us >> (e - 6)) & 63));

	if (i >= LAT_BUCKETS)
		i = LAT_BUCKETS - 1;
	l->b[i]++;
	l->n++;
	if (ns > l->max)
		l->max = ns;
}

static double
lat_pct(const struct lat *l, double p)
{
	uint64_t want = (uint64_t)ceil(p * (double)l->n), acc = 0;

	for (size_t i = 0; i < LAT_BUCKETS; i++) {
		acc += l->b[i];
		if (acc >= want && l->n > 0) {
			/* Upper edge of the bucket, in microseconds. */
			if (i < 64)
				return (double)i;
			int e = (int)(i / 64) + 5;
			uint64_t sub = i % 64;
			return (double)(((uint64_t)64 + sub + 1) << (e - 6));
		}
	}
	return 0;
}

static int
dev_message(struct net_conn *c, const uint8_t *buf, size_t len)
{
	struct dev *d = *(struct dev **)net_conn_data(c);
	struct msg m;
	uint64_t t;

	if (msg_decode(buf, len, &m) != 0) {
		B.errors++;
		return 0;
	}
	switch (m.type) {
	case MSG_REGISTERED:
	case MSG_LOGIN_OK:
		chan_set_msg_cap(&c->chan, MSG_MAX);
		d->state = 2;
		B.online++;
		B.pending--;
		break;
	case MSG_SENT:
		B.sent_ok++;
		if (B.mode == M_OFFLINE_SEND) {
			d->inflight--;
			if (now_ns() < B.deadline_ns)
				dev_send_envelope(d, MSG_CLASS_MESSAGE);
		}
		break;
	case MSG_DELIVER:
		ack_gather(d, m.u.deliver.id);
		d->got++;
		if (B.mode == M_DELIVER || B.mode == M_LATENCY ||
		    B.mode == M_DRAIN) {
			if (now_ns() < B.deadline_ns || B.mode == M_DRAIN)
				B.delivered++;
		}
		if (B.mode == M_LATENCY && m.u.deliver.payload.len >= 16) {
			uint64_t now = now_ns();
			memcpy(&t, m.u.deliver.payload.p, sizeof(t));
			lat_add(&B.lat, now - t);
			memcpy(&t, m.u.deliver.payload.p + 8, sizeof(t));
			lat_add(&B.raw, now - t);
		}
		/* The sender of this one may send the next. */
		{
			struct dev *s = d->peer;
			if (s->inflight > 0)
				s->inflight--;
			if (B.mode == M_DELIVER && now_ns() < B.deadline_ns)
				dev_send_envelope(s, MSG_CLASS_MESSAGE);
		}
		break;
	case MSG_ERROR:
		B.errors++;
		if (B.errors <= 10)
			fprintf(stderr, "tern-bench: %s: error %u: %.*s\n",
			    d->addr, m.u.error.code,
			    (int)m.u.error.detail.len, m.u.error.detail.p);
		if (d->state == 1) {
			/* Login refused: counted once, here; the close that
			 * follows finds state 3 and counts nothing. */
			d->state = 3;
			B.pending--;
			net_conn_close(c, 0);
		}
		break;
	default:
		break;
	}
	return 0;
}

static void
dev_closed(struct net_conn *c, int err)
{
	struct dev *d = *(struct dev **)net_conn_data(c);

	ack_drop(d);
	if (d->state == 2)
		B.online--;
	else if (d->state == 1)
		B.pending--;
	d->state = 0;
	d->conn = NULL;
}

static const struct net_conn_cbs dev_cbs = {
	.open = dev_open,
	.message = dev_message,
	.closed = dev_closed,
};

static void
dev_connect(struct dev *d, int want)
{
	int r;

	d->want = (uint8_t)want;
	d->state = 1;
	B.pending++;
	r = net_connect(&B.nl, "127.0.0.1", d->port != 0 ? d->port : B.port,
	    CHAN_KIND_CLIENT, CHAN_XX,
	    d->priv, d->pub, NULL, MSG_MAX_UNAUTH, &dev_cbs,
	    sizeof(struct dev *),
	    &d->conn);
	if (r != 0) {
		B.pending--;
		d->state = 0;
		B.errors++;
		return;
	}
	*(struct dev **)net_conn_data(d->conn) = d;
}

/* Runs the loop until pending reaches 0 or the timeout passes. */
static void
run_until_settled(double timeout_s)
{
	uint64_t end = now_ns() + (uint64_t)(timeout_s * 1e9);

	while (B.pending > 0 && now_ns() < end)
		uv_run(&B.loop, UV_RUN_ONCE);
}

/* Runs the loop until fewer than limit are pending (a sliding window:
 * a new login starts as soon as one finishes, as independent clients'
 * would, instead of waves that leave one side idle while the other works). */
static void
run_until_below(uint32_t limit, double timeout_s)
{
	uint64_t end = now_ns() + (uint64_t)(timeout_s * 1e9);

	while (B.pending >= limit && now_ns() < end)
		uv_run(&B.loop, UV_RUN_ONCE);
}

static void
run_for(double seconds)
{
	uint64_t end = now_ns() + (uint64_t)(seconds * 1e9);

	while (now_ns() < end)
		uv_run(&B.loop, UV_RUN_NOWAIT), usleep(0);
}

static void
devs_make(uint32_t n, const char *prefix)
{
	B.devs = calloc(n, sizeof(*B.devs));
	B.ndevs = n;
	if (B.devs == NULL)
		die("out of memory");
	for (uint32_t i = 0; i < n; i++) {
		noise_keypair_generate(B.devs[i].priv, B.devs[i].pub);
		snprintf(B.devs[i].addr, sizeof(B.devs[i].addr), "%s%u@%s",
		    prefix, i, BENCH_DOMAIN);
		B.devs[i].peer = &B.devs[i ^ 1];
	}
}

/* devs_offline: closes every connection, keeping the devices' keys. */
static void
devs_offline(void)
{
	uint64_t end = now_ns() + 30000000000ull;

	for (uint32_t i = 0; i < B.ndevs; i++)
		if (B.devs[i].conn != NULL)
			net_conn_close(B.devs[i].conn, 0);
	while ((B.online > 0 || B.pending > 0) && now_ns() < end)
		uv_run(&B.loop, UV_RUN_ONCE);
	if (B.online > 0 || B.pending > 0) {
		fprintf(stderr, "online %u pending %u\n", B.online, B.pending);
		die("connections did not close");
	}
}

static void
devs_free(void)
{
	devs_offline();
	free(B.devs);
	B.devs = NULL;
	B.ndevs = 0;
}

/* Connects (registering the first time) devices [0, n) in waves. */
static void
devs_online(uint32_t n, int want)
{
	for (uint32_t i = 0; i < n; i++) {
		if (B.devs[i].state == 2)
			continue; /* online already (a second wave) */
		dev_connect(&B.devs[i], want);
		if (B.pending >= 256)
			run_until_settled(30);
	}
	run_until_settled(60);
	if (B.online < n)
		die("not every device came online (see the node log)");
}

/* --- output ---------------------------------------------------------- */

static void
report(const char *name, double value, const char *unit, const char *target)
{
	printf("  %-38s %14.1f %-10s %s\n", name, value, unit,
	    target ? target : "");
	if (B.json) {
		fprintf(B.json, "%s\n  \"%s\": %.3f", B.json_first ? "" : ",",
		    name, value);
		B.json_first = 0;
	}
}

/*
 * host_calibrate: how long one X25519 takes here, now. This host's speed
 * drifts by a fifth or more within an hour with no steal to show for it
 * (BENCHMARKS.md), and logins are X25519-bound: the figure lets runs of
 * different hours be compared.
 */
static double
x25519_us(void)
{
	uint8_t k[32], p[32], q[32];
	uint64_t t0;
	double us;
	int i, n = 2000;

	randombytes_buf(k, sizeof(k));
	if (crypto_scalarmult_curve25519_base(p, k) != 0)
		die("X25519");
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		k[i % 32] ^= (uint8_t)i;
		if (crypto_scalarmult_curve25519(q, k, p) != 0)
			die("X25519");
	}
	us = (double)(now_ns() - t0) / 1e3 / n;
	sodium_memzero(k, sizeof(k));
	return us;
}

static void
host_calibrate(void)
{
	report("host_x25519_us", x25519_us(), "us",
	    "(calibration: one X25519 here, now)");
}

/* --- scenarios ------------------------------------------------------- */

/* node_status_line: the line of one node's `ternd status` that starts
 * with prefix, printed after label. */
static void
node_status_line(const char *conf, const char *prefix, const char *label)
{
	char out[600], line[512];
	FILE *fp;

	snprintf(out, sizeof(out), "%s/status.txt", B.dir);
	char *argv[] = {B.ternd, "status", "-c", (char *)conf, NULL};
	if (run_wait(argv, out) != 0 || (fp = fopen(out, "r")) == NULL) {
		printf("  (ternd status failed)\n");
		return;
	}
	while (fgets(line, sizeof(line), fp) != NULL)
		if (strncmp(line, prefix, strlen(prefix)) == 0)
			printf("  %s %s", label, line);
	fclose(fp);
}

static void
sc_deliver(void)
{
	uint32_t pairs = 200;
	double secs = B.quick ? 3 : 10;
	uint64_t c0, c1, b0, b1;
	uint64_t t0;
	struct steal_mark sm;

	printf("deliver: %u pairs of online users, window %u per sender\n",
	    pairs, B.window);
	devs_make(pairs * 2, "d");
	devs_online(pairs * 2, 1);
	B.mode = M_DELIVER;
	B.delivered = 0;
	B.deadline_ns = now_ns() + (uint64_t)(secs * 1e9);
	node_cpu(&c0);
	b0 = self_cpu_us();
	steal_begin(&sm);
	t0 = now_ns();
	for (uint32_t i = 0; i < pairs * 2; i += 2)
		for (uint32_t w = 0; w < B.window; w++)
			dev_send_envelope(&B.devs[i], MSG_CLASS_MESSAGE);
	while (now_ns() < B.deadline_ns)
		uv_run(&B.loop, UV_RUN_ONCE);
	node_cpu(&c1);
	b1 = self_cpu_us();
	double el = (double)(now_ns() - t0) / 1e9;
	report("delivered_msgs_per_s", (double)B.delivered / el, "msg/s",
	    "target >= 150000");
	report("node_cpu_us_per_delivered",
	    (double)(c1 - c0) * 1e6 / (double)sysconf(_SC_CLK_TCK) /
	    (double)(B.delivered ? B.delivered : 1), "us", "");
	/* The benchmark's own share of the two cores (its clients' work:
	 * Noise, framing, ACKs): what the node has left. */
	report("bench_cpu_us_per_delivered", (double)(b1 - b0) /
	    (double)(B.delivered ? B.delivered : 1), "us", "");
	report("deliver_host_steal_pct", steal_pct(&sm), "%", "");
	B.mode = M_NONE;
	run_for(1.0); /* let the tail drain */
	devs_free();
	{
		char conf[512];
		snprintf(conf, sizeof(conf), "%s/node/ternd.conf", B.dir);
		node_status_line(conf, "delivered:", "node");
	}
}

/*
 * Pacing. The run offers B.rate messages/s in all, message k from sender
 * k mod pairs. By default the gaps between messages are drawn from an
 * exponential distribution of mean 1e9 / rate ns: arrivals at random, as
 * from many users who don't take turns (a Poisson process, which bunches
 * now and then and so queues more than an even beat). --arrivals even
 * spaces them exactly 1e9 / rate ns apart.
 *
 * A timerfd armed for the next due time wakes the loop; each wake sends
 * everything due by then (several when this loop was busy, so a late wake
 * costs its lateness as latency, never a message).
 *
 * A libuv timer can't do it: its clock and timeouts are whole
 * milliseconds, so the first version sent a burst of rate / 1000
 * messages once a millisecond. The first of a burst went up to a
 * millisecond late, and the node and this loop queued the burst behind
 * itself: at 50,000/s, 50 messages at once. The figures measured that
 * pacer as much as the node (BENCHMARKS, fifth session). A timerfd
 * expires on the nanosecond clock, and its expiry is not stretched by the
 * thread's timer slack.
 */
static void
pace_stop(void)
{
	if (B.pace_fd < 0)
		return;
	uv_poll_stop(&B.pace);
	uv_close((uv_handle_t *)&B.pace, NULL);
	close(B.pace_fd);
	B.pace_fd = -1;
}

/* pace_gap: the gap before the next message, ns. */
static double
pace_gap(void)
{
	double u;

	if (!B.poisson)
		return B.pace_gap_ns;
	B.rng ^= B.rng << 13;
	B.rng ^= B.rng >> 7;
	B.rng ^= B.rng << 17;
	/* u in (0, 1]: 53 random bits, never 0, so the log is finite. */
	u = (double)((B.rng >> 11) + 1) * 0x1.0p-53;
	return -log(u) * B.pace_gap_ns;
}

/* pace_arm: the timerfd fires once, at the next message's due time. */
static void
pace_arm(void)
{
	struct itimerspec its = {0};
	uint64_t due = B.pace_t0 + (uint64_t)B.pace_off;

	/* uv_hrtime is CLOCK_MONOTONIC too, so due is an absolute time. A
	 * zero it_value would disarm the timer. */
	if (due == 0)
		due = 1;
	its.it_value.tv_sec = (time_t)(due / 1000000000u);
	its.it_value.tv_nsec = (long)(due % 1000000000u);
	if (timerfd_settime(B.pace_fd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
		die("timerfd_settime failed");
}

static void
pace_cb(uv_poll_t *h, int status, int events)
{
	uint32_t pairs = B.ndevs / 2;
	uint64_t now = now_ns();

	(void)h;
	(void)status;
	(void)events;
	/* No read of the expiry count: pace_arm's timerfd_settime resets it,
	 * and with it the readiness, one system call fewer per wake. */
	for (;;) {
		uint64_t due = B.pace_t0 + (uint64_t)B.pace_off;
		struct dev *d;

		if (due >= B.deadline_ns) {
			pace_stop();
			return;
		}
		if (due > now) {
			pace_arm();
			return;
		}
		/* Stamped with the time it was due: a late send counts its
		 * lateness as latency. */
		d = &B.devs[(B.pace_next % pairs) * 2];
		d->next_due_ns = due;
		dev_send_envelope(d, MSG_CLASS_MESSAGE);
		B.pace_next++;
		B.pace_off += pace_gap();
	}
}

/* pace_start: from t0 on, at B.rate messages/s until B.deadline_ns. */
static void
pace_start(uint64_t t0)
{
	B.pace_next = 0;
	B.pace_gap_ns = 1e9 / B.rate;
	B.pace_t0 = t0;
	B.pace_off = 0;
	while (B.rng == 0)
		randombytes_buf(&B.rng, sizeof(B.rng));
	B.pace_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (B.pace_fd < 0)
		die("timerfd_create failed");
	pace_arm();
	if (uv_poll_init(&B.loop, &B.pace, B.pace_fd) != 0 ||
	    uv_poll_start(&B.pace, UV_READABLE, pace_cb) != 0)
		die("uv_poll on the timerfd failed");
}

/*
 * latency_run: the devices (pairs, online) send at rate messages/s
 * offered for secs; reports under names starting with what ("" or
 * "fed_").
 */
/* pairs_got: envelopes the recipients (odd devices) have received. */
static uint32_t
pairs_got(uint32_t pairs)
{
	uint32_t n = 0;

	for (uint32_t i = 1; i < pairs * 2; i += 2)
		n += (uint32_t)B.devs[i].got;
	return n;
}

/*
 * warm_pairs: one envelope per pair, all delivered, then half a second:
 * the paths are up and every recipient's session is live (it turns live
 * once a fetch after its login finds nothing more; until then envelopes
 * to it go through the store), as on a node that has been running. The
 * scenarios measure the steady state at a rate, not the logins before.
 */
static void
warm_pairs(uint32_t pairs, const char *what)
{
	uint32_t base = pairs_got(pairs);
	uint64_t t0 = now_ns();

	for (uint32_t i = 0; i < pairs * 2; i += 2)
		dev_send_envelope(&B.devs[i], MSG_CLASS_MESSAGE);
	while (pairs_got(pairs) < base + pairs && now_ns() - t0 < 10e9)
		uv_run(&B.loop, UV_RUN_ONCE);
	if (pairs_got(pairs) < base + pairs) {
		fprintf(stderr, "tern-bench: %s: ", what);
		die("the warm-up envelopes were not delivered in 10 s");
	}
	run_for(0.5);
}

static void
latency_run(double rate, double secs, const char *what)
{
	char name[96];
	uint64_t c0, c1, b0, b1, io0, io1, bio0, bio1;
	struct steal_mark sm;
	double n;

	memset(&B.lat, 0, sizeof(B.lat));
	memset(&B.raw, 0, sizeof(B.raw));
	B.rate = rate;
	B.mode = M_LATENCY;
	B.deadline_ns = now_ns() + (uint64_t)(secs * 1e9);
	uint64_t t0 = now_ns();
	node_cpu(&c0);
	b0 = self_cpu_us();
	io0 = io_calls(B.node_pid);
	bio0 = io_calls(0);
	steal_begin(&sm);
	pace_start(t0);
	while (now_ns() < B.deadline_ns + 500000000ull)
		uv_run(&B.loop, UV_RUN_ONCE);
	pace_stop();
	node_cpu(&c1);
	b1 = self_cpu_us();
	io1 = io_calls(B.node_pid);
	bio1 = io_calls(0);
	/* CPU per message at a paced rate: steadier than a p99 on a shared
	 * machine, so it is what an A/B of the paced path compares. */
	n = B.lat.n > 0 ? (double)B.lat.n : 1;
	if (what[0] == '\0') {
		snprintf(name, sizeof(name), "node_cpu_us_per_msg_at_%.0f",
		    rate);
		report(name, (double)(c1 - c0) * 1e6 /
		    (double)sysconf(_SC_CLK_TCK) / n, "us", "");
		snprintf(name, sizeof(name), "node_io_calls_per_msg_at_%.0f",
		    rate);
		report(name, (double)(io1 - io0) / n, "calls", "");
	}
	snprintf(name, sizeof(name), "%sbench_cpu_us_per_msg_at_%.0f", what,
	    rate);
	report(name, (double)(b1 - b0) / n, "us", "");
	snprintf(name, sizeof(name), "%sbench_io_calls_per_msg_at_%.0f",
	    what, rate);
	report(name, (double)(bio1 - bio0) / n, "calls", "");
	snprintf(name, sizeof(name), "%shost_steal_pct_at_%.0f", what, rate);
	report(name, steal_pct(&sm), "%", "");
	snprintf(name, sizeof(name), "%slatency_p50_us_at_%.0f", what, rate);
	report(name, lat_pct(&B.lat, 0.50), "us", "");
	snprintf(name, sizeof(name), "%slatency_p99_us_at_%.0f", what, rate);
	report(name, lat_pct(&B.lat, 0.99), "us", what[0] == '\0' ?
	    "target p99 <= 2000 at 50000" :
	    "target at 20000: single-node p99 + 2000");
	snprintf(name, sizeof(name), "%slatency_p999_us_at_%.0f", what, rate);
	report(name, lat_pct(&B.lat, 0.999), "us", "");
	snprintf(name, sizeof(name), "%slatency_p9999_us_at_%.0f", what, rate);
	report(name, lat_pct(&B.lat, 0.9999), "us", "");
	snprintf(name, sizeof(name), "%sraw_send_to_deliver_p50_us_at_%.0f",
	    what, rate);
	report(name, lat_pct(&B.raw, 0.50), "us", "");
	snprintf(name, sizeof(name), "%sraw_send_to_deliver_p99_us_at_%.0f",
	    what, rate);
	report(name, lat_pct(&B.raw, 0.99), "us", "");
	snprintf(name, sizeof(name), "%slatency_samples_at_%.0f", what, rate);
	report(name, (double)B.lat.n, "msgs", "");
	/* What the pacer sent in the phase: rate * secs, give or take the
	 * arrivals' randomness (a standard deviation of its square root). */
	snprintf(name, sizeof(name), "%slatency_offered_at_%.0f", what, rate);
	report(name, (double)B.pace_next, "msgs", "");
	B.mode = M_NONE;
	for (uint32_t i = 0; i < B.ndevs; i++)
		B.devs[i].next_due_ns = 0;
}

static void
sc_latency(double rate)
{
	uint32_t pairs = 100;
	double secs = B.quick ? 3 : 10;
	char prefix[32];

	printf("latency: %u pairs at %.0f messages/s offered, %s arrivals\n",
	    pairs, rate, B.poisson ? "poisson" : "even");
	snprintf(prefix, sizeof(prefix), "l%.0f-", rate);
	devs_make(pairs * 2, prefix);
	devs_online(pairs * 2, 1);
	warm_pairs(pairs, "latency");
	latency_run(rate, secs, "");
	devs_free();
}

/* --- two nodes: federation (SPEC.md section 13) ------------------------ */

#define BENCH_DOMAIN2 "two.bench.test"

/* node_key: the base64 node key `ternd dns-records` prints for conf. */
static void
node_key(const char *conf, char *out, size_t cap)
{
	char path[600], line[512];
	FILE *f = NULL;

	snprintf(path, sizeof(path), "%s/records.txt", B.dir);
	char *args[] = {B.ternd, "dns-records", "-c", (char *)conf, NULL};
	if (run_wait(args, path) != 0 || (f = fopen(path, "r")) == NULL)
		die("ternd dns-records");
	out[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "Node key (clients may pin it): ", 31) == 0)
			snprintf(out, cap, "%.44s", line + 31);
	fclose(f);
	if (out[0] == '\0')
		die("no node key in ternd dns-records");
}

static void
wait_port(uint16_t port, pid_t pid)
{
	for (int i = 0; i < 200; i++) {
		struct sockaddr_in a = {.sin_family = AF_INET,
		    .sin_port = htons(port)};
		int s = socket(AF_INET, SOCK_STREAM, 0);
		a.sin_addr.s_addr = htonl(0x7f000001);
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0) {
			close(s);
			return;
		}
		close(s);
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		usleep(25000);
	}
	die("a node did not start (see its log in the bench directory)");
}

/*
 * fed_nodes: a second node for BENCH_DOMAIN2, and federation between it
 * and the first one (static routes with pinned keys), both restarted.
 */
static void
fed_nodes(void)
{
	char conf1[512], conf2[600], dir2[512], listen[64], k1[64], k2[64];
	char v[256], log[600];
	uint16_t f1 = (uint16_t)(B.port + 1), f2 = (uint16_t)(B.port + 2);
	posix_spawn_file_actions_t fa;
	int fd;

	B.port2 = (uint16_t)(B.port + 3);
	snprintf(conf1, sizeof(conf1), "%s/node/ternd.conf", B.dir);
	snprintf(dir2, sizeof(dir2), "%s/node2", B.dir);
	snprintf(conf2, sizeof(conf2), "%s/ternd.conf", dir2);
	snprintf(listen, sizeof(listen), "127.0.0.1:%u", B.port2);
	char *init[] = {B.ternd, "init", "--domain", BENCH_DOMAIN2, "--dir",
	    dir2, "--listen", listen, "--open-registration",
	    "--metrics-listen", "127.0.0.1:0", NULL};
	if (run_wait(init, "/dev/null") != 0)
		die("ternd init (second node) failed");
	conf_set(conf2, "send_rate", "1000000");
	conf_set(conf2, "send_burst", "1000000");
	conf_set(conf2, "max_unauth", "100000");
	conf_set(conf2, "quota_count", "10000000");
	conf_set(conf2, "log_level", "warn");
	node_key(conf1, k1, sizeof(k1));
	node_key(conf2, k2, sizeof(k2));
	snprintf(v, sizeof(v), "127.0.0.1:%u", f1);
	conf_set(conf1, "federation.listen", v);
	snprintf(v, sizeof(v), "%s=127.0.0.1:%u/%s", BENCH_DOMAIN2, f2, k2);
	conf_set(conf1, "federation.peers", v);
	snprintf(v, sizeof(v), "127.0.0.1:%u", f2);
	conf_set(conf2, "federation.listen", v);
	/* The links' inbound limit is policy, like send_rate above: the
	 * bench measures what one link carries, so it lifts both. */
	conf_set(conf1, "federation.inbound_rate", "10000000");
	conf_set(conf1, "federation.inbound_burst", "10000000");
	conf_set(conf2, "federation.inbound_rate", "10000000");
	conf_set(conf2, "federation.inbound_burst", "10000000");
	snprintf(v, sizeof(v), "%s=127.0.0.1:%u/%s", BENCH_DOMAIN, f1, k1);
	conf_set(conf2, "federation.peers", v);
	node_restart();
	snprintf(log, sizeof(log), "%s/ternd2.log", B.dir);
	char *run[] = {B.ternd, "run", "-c", conf2, NULL};
	posix_spawn_file_actions_init(&fa);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, fd, 2);
	if (posix_spawn(&B.node2_pid, B.ternd, &fa, NULL, run, environ) != 0)
		die("cannot start the second ternd");
	posix_spawn_file_actions_destroy(&fa);
	close(fd);
	wait_port(B.port2, B.node2_pid);
}

static void
fed_nodes_stop(void)
{
	int st;

	if (B.node2_pid > 0) {
		kill(B.node2_pid, SIGTERM);
		waitpid(B.node2_pid, &st, 0);
		B.node2_pid = 0;
	}
}

/* devs_make_fed: pairs whose senders are on the first node and whose
 * recipients are on the second. */
static void
devs_make_fed(uint32_t pairs, const char *prefix)
{
	devs_make(pairs * 2, prefix);
	for (uint32_t i = 1; i < pairs * 2; i += 2) {
		snprintf(B.devs[i].addr, sizeof(B.devs[i].addr), "%s%u@%s",
		    prefix, i, BENCH_DOMAIN2);
		B.devs[i].port = B.port2;
	}
}

/* fed_latency: pairs across the nodes at rate messages/s offered. */
static void
fed_latency(uint32_t pairs, double rate, double secs, const char *prefix)
{
	printf("fed: latency, %u pairs at %.0f messages/s offered, %s "
	    "arrivals\n", pairs, rate, B.poisson ? "poisson" : "even");
	devs_make_fed(pairs, prefix);
	devs_online(pairs * 2, 1);
	warm_pairs(pairs, "fed");
	latency_run(rate, secs, "fed_");
	devs_free();
}

/* fed_origin_status: both nodes' own account of the run: how many
 * envelopes the destination took before the origin wrote them (the
 * write-back), and how many the destination refused as over its inbound
 * limit (each sent again after a pause). */
static void
fed_origin_status(void)
{
	char conf[600];

	snprintf(conf, sizeof(conf), "%s/node/ternd.conf", B.dir);
	node_status_line(conf, "federation:", "origin");
	snprintf(conf, sizeof(conf), "%s/node2/ternd.conf", B.dir);
	node_status_line(conf, "federation:", "destination");
	node_status_line(conf, "delivered:", "destination");
}

static void
sc_fed(void)
{
	uint32_t pairs = 100;
	double secs = B.quick ? 3 : 10, rate = 20000;
	uint64_t t0, c0, c1, d0, d1, b0, b1;

	fed_nodes();
	printf("fed: %u pairs across two nodes (senders on %s, recipients "
	    "on %s), window %u per sender\n", pairs, BENCH_DOMAIN,
	    BENCH_DOMAIN2, B.window);
	devs_make_fed(pairs, "f");
	devs_online(pairs * 2, 1);
	/* The link is up and its queue empty when the clock starts (else
	 * the first second measures the link's set-up, with everything sent
	 * meanwhile going through the origin's store). */
	warm_pairs(pairs, "fed");
	B.mode = M_DELIVER;
	B.delivered = 0;
	B.deadline_ns = now_ns() + (uint64_t)(secs * 1e9);
	node_cpu(&c0);
	pid_cpu(B.node2_pid, &d0);
	b0 = self_cpu_us();
	t0 = now_ns();
	for (uint32_t i = 0; i < pairs * 2; i += 2)
		for (uint32_t w = 0; w < B.window; w++)
			dev_send_envelope(&B.devs[i], MSG_CLASS_MESSAGE);
	while (now_ns() < B.deadline_ns)
		uv_run(&B.loop, UV_RUN_ONCE);
	node_cpu(&c1);
	pid_cpu(B.node2_pid, &d1);
	b1 = self_cpu_us();
	report("fed_delivered_msgs_per_s",
	    (double)B.delivered / ((double)(now_ns() - t0) / 1e9), "msg/s",
	    "target >= 100000 over one link");
	/* CPU time counts only what ran: steady when the machine is not
	 * (another guest's load shows as steal, not here). */
	report("fed_origin_cpu_us_per_delivered",
	    (double)(c1 - c0) * 1e6 / (double)sysconf(_SC_CLK_TCK) /
	    (double)(B.delivered ? B.delivered : 1), "us", "");
	report("fed_destination_cpu_us_per_delivered",
	    (double)(d1 - d0) * 1e6 / (double)sysconf(_SC_CLK_TCK) /
	    (double)(B.delivered ? B.delivered : 1), "us", "");
	report("fed_bench_cpu_us_per_delivered", (double)(b1 - b0) /
	    (double)(B.delivered ? B.delivered : 1), "us", "");
	B.mode = M_NONE;
	run_for(2.0);
	devs_free();
	fed_origin_status();

	/* Prefixes of their own: the logins scenario registers "g" names on
	 * the same first node when every scenario runs. */
	fed_latency(pairs, 5000, secs, "fg");
	fed_latency(pairs, rate, secs, "fh");
	fed_origin_status();
	fed_nodes_stop();
}

static void
sc_idle(void)
{
	uint32_t n = B.quick ? 2000 : 15000, half = n / 2;
	uint64_t rss0, rssh, rss1;
	char conf[512];

	printf("idle: %u authenticated idle connections\n", n);
	devs_make(n, "i");
	devs_online(n, 1);      /* register them all once */
	devs_offline();
	/* A fresh process, so memory freed by the registrations can't be
	 * reused and hide what the idle connections cost. */
	node_restart();
	run_for(1.0);
	rss0 = node_rss_kib();
	node_rss_split("no connections:");
	/* Where the memory is, by the node's own count (after each RSS
	 * reading: the status request allocates a little). */
	snprintf(conf, sizeof(conf), "%s/node/ternd.conf", B.dir);
	node_status_line(conf, "memory:", "no connections:");
	/* Then log them all in and leave them idle, in two halves: the
	 * second half's cost is the marginal one, without what fills once
	 * and stays bounded (SQLite's page cache, warmed by the logins'
	 * lookups, is capped per database connection). */
	devs_online(half, 2);
	run_for(2.0);
	rssh = node_rss_kib();
	node_rss_split("half:");
	node_status_line(conf, "memory:", "half:");
	devs_online(n, 2);
	run_for(2.0);
	rss1 = node_rss_kib();
	node_rss_split("all:");
	node_status_line(conf, "memory:", "all:");
	report("node_rss_per_idle_conn_bytes",
	    (double)(rss1 - rss0) * 1024.0 / n, "bytes",
	    "target <= 1024 userspace");
	report("node_rss_per_idle_conn_marginal_bytes",
	    (double)(rss1 - rssh) * 1024.0 / (n - half), "bytes",
	    "(second half only)");
	report("idle_connections", (double)B.online, "conns", "");
	devs_free();
}

static void
sc_logins(void)
{
	uint32_t n = B.quick ? 1000 : 5000, i;
	uint64_t t0, c0, c1, m0, m1, b0, b1;

	printf("logins: %u registered devices log in over fresh "
	    "connections (handshake + LOGIN)\n", n);
	devs_make(n, "g");
	devs_online(n, 1);
	devs_offline();
	node_cpu(&c0);
	node_main_cpu(&m0);
	b0 = self_cpu_us();
	t0 = now_ns();
	for (i = 0; i < n; i++) {
		dev_connect(&B.devs[i], 2);
		run_until_below(512, 30);
	}
	run_until_settled(60);
	node_cpu(&c1);
	node_main_cpu(&m1);
	b1 = self_cpu_us();
	report("logins_per_s", (double)B.online / ((double)(now_ns() - t0) /
	    1e9), "logins/s", "target >= 5000");
	/* Each side's CPU per login: the handshake's X25519 operations
	 * are most of it (BENCHMARKS.md). */
	report("node_cpu_us_per_login", (double)(c1 - c0) * 1e6 /
	    (double)sysconf(_SC_CLK_TCK) / (double)(B.online ? B.online : 1),
	    "us", "");
	report("node_loop_cpu_us_per_login", (double)(m1 - m0) * 1e6 /
	    (double)sysconf(_SC_CLK_TCK) / (double)(B.online ? B.online : 1),
	    "us", "");
	report("bench_cpu_us_per_login", (double)(b1 - b0) /
	    (double)(B.online ? B.online : 1), "us", "");
	/* The ceiling the crypto alone sets: an XX login is 4 X25519
	 * operations on each side (both know their own public keys), and
	 * the host's speed drifts, so it is timed again right after. */
	{
		double x = x25519_us();

		report("logins_x25519_us", x, "us", "(one X25519, just after)");
		report("logins_x25519_ceiling_per_s",
		    (double)sysconf(_SC_NPROCESSORS_ONLN) * 1e6 / (8 * x),
		    "logins/s", "(all cores on a login's 8 X25519, nothing "
		    "else)");
	}
	devs_free();
}

static void
sc_offline(void)
{
	uint32_t pairs = 100;
	double secs = B.quick ? 2 : 5;
	uint64_t t0, c0, c1, m0, m1, b0, b1;

	printf("offline: %u senders to %u offline devices\n", pairs, pairs);
	devs_make(pairs * 2, "o");
	devs_online(pairs * 2, 1);
	/* Recipients (odd) go offline. */
	for (uint32_t i = 1; i < pairs * 2; i += 2)
		net_conn_close(B.devs[i].conn, 0);
	while (B.online > pairs)
		uv_run(&B.loop, UV_RUN_ONCE);
	B.mode = M_OFFLINE_SEND;
	B.sent_ok = 0;
	B.deadline_ns = now_ns() + (uint64_t)(secs * 1e9);
	node_cpu(&c0);
	node_main_cpu(&m0);
	b0 = self_cpu_us();
	t0 = now_ns();
	for (uint32_t i = 0; i < pairs * 2; i += 2)
		for (uint32_t w = 0; w < B.window; w++)
			dev_send_envelope(&B.devs[i], MSG_CLASS_MESSAGE);
	while (now_ns() < B.deadline_ns)
		uv_run(&B.loop, UV_RUN_ONCE);
	node_cpu(&c1);
	node_main_cpu(&m1);
	b1 = self_cpu_us();
	double el = (double)(now_ns() - t0) / 1e9;
	uint64_t queued = B.sent_ok;
	double per = (double)(queued ? queued : 1);
	double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
	report("offline_enqueue_durable_per_s", (double)queued / el, "env/s",
	    "target >= 100000");
	/* Where an enqueue's CPU goes, per envelope: the node's loop thread
	 * (protocol, recipient lookup), its other threads (mostly the
	 * store's writer: SQLite and the commit), this benchmark. */
	report("offline_node_loop_cpu_us_per_env",
	    (double)(m1 - m0) * tick_us / per, "us", "");
	report("offline_node_other_cpu_us_per_env",
	    (double)((c1 - c0) - (m1 - m0)) * tick_us / per, "us", "");
	report("offline_bench_cpu_us_per_env", (double)(b1 - b0) / per, "us",
	    "");
	B.mode = M_NONE;
	run_for(1.0);
	queued = B.sent_ok;
	/* Drain: recipients log in. */
	B.mode = M_DRAIN;
	B.delivered = 0;
	node_cpu(&c0);
	node_main_cpu(&m0);
	t0 = now_ns();
	for (uint32_t i = 1; i < pairs * 2; i += 2)
		dev_connect(&B.devs[i], 2);
	while (B.delivered < queued && now_ns() - t0 < 120e9)
		uv_run(&B.loop, UV_RUN_ONCE);
	report("offline_drain_per_s", (double)B.delivered /
	    ((double)(now_ns() - t0) / 1e9), "env/s", "");
	if (B.delivered < queued) {
		/* SENT said durable: one missing is a lost envelope. */
		fprintf(stderr, "tern-bench: offline: not every queued envelope "
		    "was drained in 120 s: %llu of %llu\n",
		    (unsigned long long)B.delivered, (unsigned long long)queued);
		B.errors++;
	}
	B.mode = M_NONE;
	/* The last ACKs (gathered) and their deletes, then the node's CPU
	 * per drained envelope: the writer's share is the ACKs' deletes,
	 * steadier from run to run than the rate. */
	run_for(1.0);
	node_cpu(&c1);
	node_main_cpu(&m1);
	per = B.delivered > 0 ? (double)B.delivered : 1;
	report("offline_drain_node_loop_cpu_us_per_env",
	    (double)(m1 - m0) * tick_us / per, "us", "");
	report("offline_drain_node_other_cpu_us_per_env",
	    (double)((c1 - c0) - (m1 - m0)) * tick_us / per, "us", "");
	devs_free();
}

/* rates_parse: "R1,R2,..." into B.rates; -1 if anything is off. */
static int
rates_parse(const char *arg)
{
	const char *p = arg;
	int n = 0;

	while (*p != '\0') {
		char *end;
		double r = strtod(p, &end);

		if (end == p || !(r >= 1 && r <= 1e6) || n == 8 ||
		    (*end != ',' && *end != '\0'))
			return -1;
		B.rates[n++] = r;
		p = *end == ',' ? end + 1 : end;
		if (*end == ',' && *p == '\0')
			return -1;
	}
	if (n == 0)
		return -1;
	B.nrates = n;
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"ternd", required_argument, NULL, 't'},
		{"json", required_argument, NULL, 'j'},
		{"quick", no_argument, NULL, 'q'},
		{"window", required_argument, NULL, 'w'},
		{"ack-delay", required_argument, NULL, 'a'},
		{"arrivals", required_argument, NULL, 'r'},
		{"rates", required_argument, NULL, 'R'},
		{NULL, 0, NULL, 0},
	};
	struct rlimit rl;
	int c, all;
	char self[4096];
	ssize_t n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	B.window = 32;
	B.ack_delay_ms = CLIENT_ACK_DELAY_DEFAULT;
	B.pace_fd = -1;
	B.poisson = true;
	B.rates[0] = 20000;
	B.rates[1] = 50000;
	B.nrates = 2;
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	self[n > 0 ? n : 0] = '\0';
	/* Default: ternd beside this binary's build tree (build/x/tools). */
	snprintf(B.ternd, sizeof(B.ternd), "%.*s/../node/ternd",
	    (int)(strrchr(self, '/') ? strrchr(self, '/') - self : 1), self);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 't':
			snprintf(B.ternd, sizeof(B.ternd), "%s", optarg);
			break;
		case 'j':
			if ((B.json = fopen(optarg, "w")) == NULL)
				die("cannot write the JSON file");
			break;
		case 'q':
			B.quick = true;
			break;
		case 'w':
			B.window = (uint32_t)atoi(optarg);
			break;
		case 'R':
			if (rates_parse(optarg) != 0)
				die("--rates: up to 8 rates of 1 to 1000000 "
				    "messages/s, comma-separated");
			break;
		case 'r':
			if (strcmp(optarg, "even") == 0)
				B.poisson = false;
			else if (strcmp(optarg, "poisson") == 0)
				B.poisson = true;
			else
				die("--arrivals: poisson or even");
			break;
		case 'a':
			B.ack_delay_ms = (uint32_t)atoi(optarg);
			if (B.ack_delay_ms > CLIENT_ACK_DELAY_MAX)
				die("--ack-delay: at most 250 ms");
			break;
		default:
			fprintf(stderr, "usage: tern-bench [--ternd PATH] "
			    "[--json FILE] [--quick] [--window N] "
			    "[--ack-delay MS] [--arrivals poisson|even] "
			    "[--rates R1,R2,...] "
			    "[deliver|latency|idle|logins|offline|e2e|fed]...\n");
			return 2;
		}
	}
	if (sodium_init() < 0)
		die("libsodium");
	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	uv_loop_init(&B.loop);
	if (net_loop_init(&B.nl, &B.loop, NULL) != 0)
		die("net");
	uv_timer_init(&B.loop, &B.ack_timer);
	node_start();
	printf("tern-bench: node pid %d on 127.0.0.1:%u, %ld cores, ACKs "
	    "gathered up to %u ms\n", (int)B.node_pid, B.port,
	    sysconf(_SC_NPROCESSORS_ONLN), B.ack_delay_ms);
	if (B.json) {
		fprintf(B.json, "{");
		B.json_first = 1;
	}
	host_calibrate();
	all = optind == argc;
	for (int i = optind; i <= argc; i++) {
		const char *s = i < argc ? argv[i] : NULL;
		if (!all && s == NULL)
			break;
		if (all && i > optind)
			break;
		if (all || strcmp(s, "deliver") == 0)
			sc_deliver();
		if (all || strcmp(s, "latency") == 0)
			for (int k = 0; k < B.nrates; k++)
				sc_latency(B.rates[k]);
		if (all || strcmp(s, "logins") == 0)
			sc_logins();
		if (all || strcmp(s, "offline") == 0)
			sc_offline();
		if (all || strcmp(s, "idle") == 0)
			sc_idle();
		if (all || strcmp(s, "e2e") == 0)
			bench_e2e(B.quick, report);
		/* Last: it reconfigures the node for federation. */
		if (all || strcmp(s, "fed") == 0)
			sc_fed();
	}
	if (B.json) {
		fprintf(B.json, "\n}\n");
		fclose(B.json);
	}
	printf("errors: %llu\n", (unsigned long long)B.errors);
	node_stop();
	uv_close((uv_handle_t *)&B.ack_timer, NULL);
	net_loop_close(&B.nl, NULL, NULL);
	uv_run(&B.loop, UV_RUN_DEFAULT);
	uv_loop_close(&B.loop);
	/* A run with protocol errors measured something else: say so. */
	return B.errors != 0 ? 1 : 0;
}
