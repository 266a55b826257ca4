/*
 * test_bench.c: tools/tern-bench, run short (--quick) against a real node
 * it starts itself on loopback. These cases check that the tool works and
 * reports what it says, not how fast anything is: its figures depend on
 * the machine, and speed is checked with the tool, never with a test.
 * What is checked is what does not depend on speed: the pacer offers the
 * rate it is asked for (exactly for even arrivals, within a tolerance far
 * outside chance for random ones), every latency sample is of a message
 * that was offered, every envelope queued for offline devices is drained,
 * and a run without protocol errors exits 0.
 *
 * The rates are low (--rates 2000,5000): the suite also runs under
 * AddressSanitizer, beside other tests, where the node cannot take the
 * default 50,000/s. Offered beyond what the node takes, the benchmark's
 * sends overflow their buffers, which it rightly counts as errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tt.h"

struct run {
	char dir[64];       /* mkdtemp: the JSON and the output */
	char json[128];
	char out[128];
	char *text;         /* the JSON */
	char *log;          /* what the tool printed */
};

/* bench runs tern-bench with args (NULL-terminated) and returns its exit
 * status; r holds what it wrote. */
static int
bench(struct run *r, const char *const *args)
{
	char bin[512];
	const char *argv[16];
	size_t n = 0, len;
	pid_t pid;
	int st, fd;

	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/tmp/tern-bench-test-XXXXXX");
	TT_ASSERT(mkdtemp(r->dir) != NULL);
	snprintf(r->json, sizeof(r->json), "%s/b.json", r->dir);
	snprintf(r->out, sizeof(r->out), "%s/out.txt", r->dir);
	snprintf(bin, sizeof(bin), "%s/tools/tern-bench", TERN_BUILD_DIR);
	argv[n++] = bin;
	argv[n++] = "--quick";
	argv[n++] = "--json";
	argv[n++] = r->json;
	while (*args != NULL && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;

	pid = fork();
	TT_ASSERT(pid >= 0);
	if (pid == 0) {
		fd = open(r->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(127);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		TT_ASSERT(errno == EINTR);
	r->log = tt_read_file(r->out, &len);
	TT_ASSERT(r->log != NULL);
	r->text = tt_read_file(r->json, &len);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fprintf(stderr, "tern-bench said:\n%s\n", r->log);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void
run_end(struct run *r)
{
	free(r->text);
	free(r->log);
	TT_EQ(unlink(r->json), 0);
	TT_EQ(unlink(r->out), 0);
	TT_EQ(rmdir(r->dir), 0);
}

/* figure: the value of "name" in the JSON; fails the case if absent. */
static double
figure(const struct run *r, const char *name)
{
	char key[128];
	const char *p;
	char *end;
	double v;

	TT_ASSERT(r->text != NULL);
	snprintf(key, sizeof(key), "\"%s\":", name);
	p = strstr(r->text, key);
	if (p == NULL)
		tt_fail(__FILE__, __LINE__, "no %s in the report", name);
	v = strtod(p + strlen(key), &end);
	TT_ASSERT(end != p + strlen(key));
	return v;
}

/* Random (Poisson) arrivals, the default: the offered count is rate * 3 s
 * within seven standard deviations (the square root of the count); the
 * offline pass drains every envelope it queued. */
TT_CASE(bench__quick_latency_offline__offers_the_rate_and_drains)
{
	static const char *const args[] = {"--rates", "2000,5000", "latency",
	    "offline", NULL};
	struct run r;
	double offered, samples;

	TT_EQ(bench(&r, args), 0);
	TT_ASSERT(strstr(r.log, "poisson arrivals") != NULL);
	TT_ASSERT(strstr(r.log, "errors: 0\n") != NULL);
	offered = figure(&r, "latency_offered_at_2000");
	TT_ASSERT(offered > 6000 - 542 && offered < 6000 + 542);
	samples = figure(&r, "latency_samples_at_2000");
	TT_ASSERT(samples > 0 && samples <= offered);
	offered = figure(&r, "latency_offered_at_5000");
	TT_ASSERT(offered > 15000 - 857 && offered < 15000 + 857);
	samples = figure(&r, "latency_samples_at_5000");
	TT_ASSERT(samples > 0 && samples <= offered);
	TT_ASSERT(figure(&r, "latency_p99_us_at_5000") > 0);
	TT_ASSERT(figure(&r, "offline_enqueue_durable_per_s") > 0);
	TT_ASSERT(figure(&r, "offline_drain_per_s") > 0);
	/* The drain phase waits for every queued envelope (or gives up after
	 * two minutes and says so). */
	TT_ASSERT(strstr(r.log, "not every") == NULL);
	run_end(&r);
}

/* Even arrivals: exactly one message per 1/rate s of the phase. */
TT_CASE(bench__quick_latency_even__offers_exactly_the_rate)
{
	static const char *const args[] = {"--arrivals", "even", "--rates",
	    "2000,5000", "latency", NULL};
	struct run r;
	double offered;

	TT_EQ(bench(&r, args), 0);
	TT_ASSERT(strstr(r.log, "even arrivals") != NULL);
	offered = figure(&r, "latency_offered_at_2000");
	TT_ASSERT(offered >= 5990 && offered <= 6000);
	offered = figure(&r, "latency_offered_at_5000");
	TT_ASSERT(offered >= 14990 && offered <= 15000);
	run_end(&r);
}

/* bad_option: a run with args is refused with a line containing what,
 * before any node starts. */
static void
bad_option(const char *const *args, const char *what)
{
	struct run r;

	TT_EQ(bench(&r, args), 1);
	TT_ASSERT(strstr(r.log, what) != NULL);
	TT_ASSERT(strstr(r.log, "node pid") == NULL);
	free(r.text);
	free(r.log);
	/* The report may have been opened (empty) before the option was. */
	(void)unlink(r.json);
	TT_EQ(unlink(r.out), 0);
	TT_EQ(rmdir(r.dir), 0);
}

/* Mistyped options are refused before any node starts. */
TT_CASE(bench__bad_options__refused)
{
	static const char *const a1[] = {"--arrivals", "bursty", "latency",
	    NULL};
	static const char *const a2[] = {"--rates", "2000,", "latency", NULL};
	static const char *const a3[] = {"--rates", "0", "latency", NULL};
	static const char *const a4[] = {"--rates", "1,2,3,4,5,6,7,8,9",
	    "latency", NULL};
	static const char *const a5[] = {"--rates", "2000x", "latency", NULL};

	bad_option(a1, "--arrivals: poisson or even");
	bad_option(a2, "--rates:");
	bad_option(a3, "--rates:");
	bad_option(a4, "--rates:");
	bad_option(a5, "--rates:");
}
