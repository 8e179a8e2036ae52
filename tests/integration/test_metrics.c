/* Description: --metrics-listen's /metrics, scraped over real HTTP and read
 * by Prometheus's own parser (python3-prometheus-client, through
 * prom_check.py): the node's and each VM's figures as memsrv-ctl shows
 * them, histograms that add up, VMs that come and go; the endpoint answers
 * nothing but GET /metrics and outlasts clients that connect and say
 * nothing; a bad address stops memsrv saying why. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

static struct test_server srv;
static char scratch[64];
static unsigned port;
static int idle_fds[40];
static unsigned n_idle;

static void teardown(void)
{
	for (unsigned i = 0; i < n_idle; i++)
		close(idle_fds[i]);
	n_idle = 0;
	if (srv.pid)
		server_stop(&srv);
	scratch_remove(scratch);
}

TestSuite(metrics, .fini = teardown, .timeout = 180);

static void start_with_metrics(const char *swap_dir)
{
	static char listen[64];
	port = free_loopback_port();
	snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
	const char *opts[] = { "--metrics-listen", listen, "--cache-size", "2M", "--swap-dir", swap_dir, NULL };
	server_start_with(&srv, opts);
}

static int connect_metrics(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert(fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof sa), "connect to 127.0.0.1:%u: %s", port,
		  strerror(errno));
	return fd;
}

/* Sends request as it is and reads the whole answer (memsrv closes) into
 * out; returns its length. */
static size_t http_exchange(const char *request, char *out, size_t len)
{
	int fd = connect_metrics();
	cr_assert_eq(send(fd, request, strlen(request), MSG_NOSIGNAL), (ssize_t)strlen(request));
	size_t got = 0;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		cr_assert_eq(poll(&p, 1, 10000), 1, "memsrv did not answer %.20s within 10 s", request);
		ssize_t n = recv(fd, out + got, len - 1 - got, 0);
		cr_assert_geq(n, 0, "recv: %s", strerror(errno));
		if (n == 0)
			break;
		got += (size_t)n;
		cr_assert_lt(got, len - 1, "the answer is larger than %zu bytes", len);
	}
	close(fd);
	out[got] = 0;
	return got;
}

static unsigned status_of(const char *answer)
{
	unsigned status = 0;
	cr_assert_eq(sscanf(answer, "HTTP/1.1 %u ", &status), 1, "not an HTTP answer: %.80s", answer);
	return status;
}

#define PAGE_MAX (4u << 20)

/* The samples of a scrape, as prom_check.py prints them once Prometheus's
 * parser read the page: name{labels} value per line. */
static char samples[PAGE_MAX];

static void scrape(void)
{
	static char answer[PAGE_MAX];
	http_exchange("GET /metrics HTTP/1.1\r\nHost: memsrv\r\nAccept: text/plain\r\n\r\n", answer, sizeof answer);
	cr_assert_eq(status_of(answer), 200, "%.200s", answer);
	cr_assert(strstr(answer, "\r\nContent-Type: text/plain; version=0.0.4"), "%.300s", answer);
	char *body = strstr(answer, "\r\n\r\n");
	cr_assert(body);
	body += 4;
	char page[128];
	snprintf(page, sizeof page, "%s/page.txt", scratch);
	FILE *f = fopen(page, "w");
	cr_assert(f);
	fputs(body, f);
	fclose(f);
	const char *checker = getenv("MEMSRV_PROM_CHECK");
	cr_assert(checker, "MEMSRV_PROM_CHECK is not set (tests/integration/meson.build)");
	char cmd[512];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s 2>&1", checker, page);
	int st = run_capture(cmd, samples, sizeof samples);
	cr_assert_eq(st, 0, "Prometheus's parser or the conventions refused the page: %.2000s", samples);
}

/* A sample's value; fails the test when the page has no such series. */
static double sample(const char *series)
{
	size_t len = strlen(series);
	for (const char *p = samples; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, series, len) && p[len] == ' ')
			return strtod(p + len + 1, NULL);
	cr_assert_fail("no series %s in the scrape", series);
	return 0;
}

static bool has_series_of(const char *vm)
{
	char needle[96];
	snprintf(needle, sizeof needle, "vm=\"%s\"", vm);
	return strstr(samples, needle) != NULL;
}

static double vm_sample(const char *name, const char *vm, const char *key, const char *value)
{
	char series[256];
	/* labels sorted by name, as prom_check.py prints them */
	if (!key)
		snprintf(series, sizeof series, "%s{vm=\"%s\"}", name, vm);
	else if (strcmp(key, "vm") < 0)
		snprintf(series, sizeof series, "%s{%s=\"%s\",vm=\"%s\"}", name, key, value, vm);
	else
		snprintf(series, sizeof series, "%s{vm=\"%s\",%s=\"%s\"}", name, vm, key, value);
	return sample(series);
}

/* A figure memsrv-ctl showed before and after the scrape: the scrape's
 * lies between (equal when the VM is quiet). */
static void expect_between(const char *what, double got, uint64_t before, uint64_t after)
{
	cr_assert(got >= (double)before && got <= (double)after, "%s: the scrape says %.0f, memsrv-ctl %" PRIu64 "..%" PRIu64,
		  what, got, before, after);
}

Test(metrics, a_prometheus_parser_reads_the_node_and_each_vm_as_memsrv_ctl_shows_them)
{
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-metrics.XXXXXX"));
	char swap[96];
	snprintf(swap, sizeof swap, "%s:64M", scratch);
	start_with_metrics(swap);
	struct test_sim alpha, beta;
	sim_start(&alpha, &srv, "alpha", "--size", "32M", "--verify", NULL);
	sim_start(&beta, &srv, "beta", "--size", "16M", "--verify", NULL);
	/* alpha's pages go to the cache and, past its 2M, to swap; read back */
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "alpha", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	sim_expect_verified(&alpha, 8192);
	m = ctl_evict_ok(&srv, "alpha", 16u << 20, false);
	memsrv__server_message__free_unpacked(m, NULL);

	Memsrv__ServerMessage *before = ctl_info_ok(&srv, "alpha");
	scrape();
	Memsrv__ServerMessage *after = ctl_info_ok(&srv, "alpha");
	const Memsrv__VmInfo *b = before->vm_info, *a = after->vm_info;
	cr_assert_gt(b->faults_swap, 0, "the test read nothing back from swap: it checks too little");

	cr_assert_eq(sample("memsrv_vms"), 2);
	cr_assert(strstr(samples, "memsrv_build_info{version=\""), "no build_info");
	cr_assert_eq(vm_sample("memsrv_vm_size_bytes", "alpha", NULL, NULL), 32u << 20);
	cr_assert_eq(vm_sample("memsrv_vm_size_bytes", "beta", NULL, NULL), 16u << 20);
	expect_between("resident", vm_sample("memsrv_vm_resident_bytes", "alpha", NULL, NULL),
		       b->resident_bytes < a->resident_bytes ? b->resident_bytes : a->resident_bytes,
		       b->resident_bytes > a->resident_bytes ? b->resident_bytes : a->resident_bytes);
	expect_between("evictions", vm_sample("memsrv_vm_evictions_total", "alpha", NULL, NULL), b->evictions_total,
		       a->evictions_total);

	/* faults by source add up to all faults, and the histogram counts each */
	static const char *const sources[] = { "never_touched", "zero", "cache", "swap", "remote", "image", "other" };
	double faults = 0;
	for (unsigned i = 0; i < 7; i++)
		faults += vm_sample("memsrv_vm_faults_total", "alpha", "source", sources[i]);
	expect_between("faults", faults, b->faults_total, a->faults_total);
	expect_between("swap faults", vm_sample("memsrv_vm_faults_total", "alpha", "source", "swap"), b->faults_swap,
		       a->faults_swap);
	double count = vm_sample("memsrv_vm_fault_duration_seconds_count", "alpha", NULL, NULL);
	expect_between("fault histogram's count", count, b->fault_latency_us->count, a->fault_latency_us->count);
	double sum = vm_sample("memsrv_vm_fault_duration_seconds_sum", "alpha", NULL, NULL);
	cr_assert(sum > 0 && sum < count * 1.0, "%.0f faults took %f s in all", count, sum);
	/* the median lies in the bucket where memsrv-ctl's p50 does */
	double p50_s = b->fault_latency_us->p50 / 1e6, below = 0, at_or_below = 0;
	char le[32];
	for (double bound = 1024e-9; bound < 2; bound *= 2) {
		snprintf(le, sizeof le, "%.9g", bound);
		double n = vm_sample("memsrv_vm_fault_duration_seconds_bucket", "alpha", "le", le);
		if (bound <= p50_s * 0.97)
			below = n;
		if (bound >= p50_s * 1.03 && !at_or_below)
			at_or_below = n;
	}
	cr_assert(below <= count / 2 && at_or_below >= count / 2,
		  "memsrv-ctl's p50 %.1f us: %.0f faults under the bucket below it, %.0f under the one above, of %.0f",
		  p50_s * 1e6, below, at_or_below, count);
	expect_between("swap fault histogram",
		       vm_sample("memsrv_vm_stored_fault_duration_seconds_count", "alpha", "tier", "swap"),
		       b->fault_latency_swap_us->count, a->fault_latency_swap_us->count);

	/* where the pages are: as info counts them (alpha is quiet now) */
	cr_assert_eq(vm_sample("memsrv_vm_evicted_pages", "alpha", "tier", "swap"), a->swap_pages);
	cr_assert_eq(vm_sample("memsrv_vm_evicted_pages", "alpha", "tier", "cache"), a->cache_pages);
	cr_assert_eq(vm_sample("memsrv_vm_stored_bytes", "alpha", "tier", "swap"), a->swap_bytes);
	cr_assert_eq(vm_sample("memsrv_vm_condition", "alpha", "condition", "pages-poisoned"), 0);
	Memsrv__NodeStats *st = ctl_stats_ok(&srv, &m);
	cr_assert_eq(sample("memsrv_store_objects{tier=\"swap\"}"), st->swap_objects);
	cr_assert_eq(sample("memsrv_swap_size_bytes"), st->swap_size_bytes);
	cr_assert_eq(sample("memsrv_condition{condition=\"swap-full\"}"), 0);
	memsrv__server_message__free_unpacked(m, NULL);
	memsrv__server_message__free_unpacked(before, NULL);
	memsrv__server_message__free_unpacked(after, NULL);

	/* a VM that leaves leaves the page */
	sim_quit_verified(&beta, 4096);
	scrape();
	cr_assert_eq(sample("memsrv_vms"), 1);
	cr_assert(!has_series_of("beta"), "beta detached and still has series");
	cr_assert(has_series_of("alpha"));
	sim_quit_verified(&alpha, 8192);
}

Test(metrics, the_endpoint_answers_only_get_metrics_and_outlasts_silent_clients)
{
	cr_assert(scratch_make(scratch, sizeof scratch, "/var/tmp/memsrv-metrics.XXXXXX"));
	char swap[96];
	snprintf(swap, sizeof swap, "%s:16M", scratch);
	start_with_metrics(swap);
	struct test_sim sim;
	sim_start(&sim, &srv, "busy", "--size", "16M", "--verify", NULL);

	static char answer[PAGE_MAX];
	http_exchange("GET / HTTP/1.1\r\n\r\n", answer, sizeof answer);
	cr_assert_eq(status_of(answer), 404, "%.200s", answer);
	http_exchange("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", answer, sizeof answer);
	cr_assert_eq(status_of(answer), 405, "%.200s", answer);
	cr_assert(strstr(answer, "\r\nAllow: GET, HEAD\r\n"), "%.200s", answer);
	http_exchange("\x16\x03\x01 not http\r\n\r\n", answer, sizeof answer);
	cr_assert_eq(status_of(answer), 400, "%.200s", answer);
	static char huge[8192];
	memset(huge, 'a', sizeof huge - 1);
	memcpy(huge, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
	http_exchange(huge, answer, sizeof answer);
	cr_assert_eq(status_of(answer), 431, "%.200s", answer);
	http_exchange("HEAD /metrics HTTP/1.0\r\n\r\n", answer, sizeof answer);
	cr_assert_eq(status_of(answer), 200, "%.200s", answer);
	cr_assert(!strstr(answer, "memsrv_vms"), "HEAD sent a body");

	/* more silent connections than memsrv keeps: a scrape still gets in,
	 * and the VM's faults are served meanwhile */
	for (n_idle = 0; n_idle < 40; n_idle++)
		idle_fds[n_idle] = connect_metrics();
	scrape();
	cr_assert_eq(vm_sample("memsrv_vm_size_bytes", "busy", NULL, NULL), 16u << 20);
	Memsrv__ServerMessage *m = ctl_evict_ok(&srv, "busy", 0, true);
	memsrv__server_message__free_unpacked(m, NULL);
	sim_expect_verified(&sim, 4096);

	/* a silent connection is closed by memsrv in its time */
	int fd = connect_metrics();
	send(fd, "GET /met", 8, MSG_NOSIGNAL);
	struct pollfd p = { .fd = fd, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 15000), 1, "memsrv held a half request for 15 s");
	char c;
	cr_assert_leq(recv(fd, &c, 1, 0), 0, "memsrv answered a half request");
	close(fd);
	cr_assert_eq(sim_quit(&sim), 0);
}

Test(metrics, a_metrics_address_memsrv_cannot_use_stops_it_saying_why)
{
	char cmd[512], out[4096];
	snprintf(cmd, sizeof cmd, "%s --socket /tmp/memsrv-metrics-bad.sock --metrics-listen localhost:9464 2>&1",
		 getenv("MEMSRV_BIN"));
	cr_assert_eq(run_capture(cmd, out, sizeof out), 64, "memsrv took a name for an address: %s", out);
	cr_assert(strstr(out, "metrics-listen") && strstr(out, "localhost:9464"), "memsrv said: %s", out);

	/* the port is taken: memsrv says so and does not start */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof sa;
	cr_assert(!bind(fd, (struct sockaddr *)&sa, sizeof sa) && !listen(fd, 1) &&
		  !getsockname(fd, (struct sockaddr *)&sa, &len));
	snprintf(cmd, sizeof cmd, "%s --socket /tmp/memsrv-metrics-bad.sock --metrics-listen 127.0.0.1:%u 2>&1",
		 getenv("MEMSRV_BIN"), ntohs(sa.sin_port));
	int st = run_capture(cmd, out, sizeof out);
	close(fd);
	cr_assert_eq(st, 1, "memsrv started without its metrics endpoint: %s", out);
	cr_assert(strstr(out, "cannot serve metrics on 127.0.0.1:") && strstr(out, "Address already in use"),
		  "memsrv said: %s", out);
	cr_assert(!strstr(out, "cannot listen on"), "memsrv said why twice: %s", out);
}
