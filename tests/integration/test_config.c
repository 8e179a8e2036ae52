/* Description: memsrv --config FILE, as an operator writes one: the
 * settings it holds take effect as their options would, the command line
 * wins over it, and a wrong line stops memsrv naming the file, the line
 * and what is wrong there. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl_client.h"
#include "harness.h"

#define MIB (1ull << 20)

static struct test_server srv;
static char dir[64], path[128];

static void teardown(void)
{
	if (server_alive(&srv))
		server_stop(&srv);
	scratch_remove(dir);
}

TestSuite(config, .fini = teardown, .timeout = 60);

static void write_config(const char *text)
{
	if (!dir[0])
		cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-config.XXXXXX"));
	snprintf(path, sizeof path, "%s/memsrv.conf", dir);
	FILE *f = fopen(path, "w");
	cr_assert(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

static Memsrv__NodeStats *stats(Memsrv__ServerMessage **m)
{
	return ctl_stats_ok(&srv, m);
}

Test(config, the_file_sets_what_the_command_line_does_not)
{
	write_config("# a production host\n"
		     "\n"
		     "node-limit = 48M\n"
		     "  cache-size=8M   \n"
		     "idle-tax = 50\n");
	const char *opts[] = { "--config", path, "--node-limit", "40M", NULL };
	server_start_with(&srv, opts);
	Memsrv__ServerMessage *m;
	Memsrv__NodeStats *st = stats(&m);
	cr_assert_eq(st->node_limit_bytes, 40 * MIB, "the command line's node limit wins: %lu",
		     (unsigned long)st->node_limit_bytes);
	cr_assert_eq(st->cache_budget_bytes, 8 * MIB, "the file's cache size: %lu", (unsigned long)st->cache_budget_bytes);
	memsrv__server_message__free_unpacked(m, NULL);
}

/* memsrv started with bad, expecting it to refuse: its status and what it said. */
static int start_refused(char *out, size_t len)
{
	char cmd[512];
	snprintf(cmd, sizeof cmd, "%s --socket %s/x.sock --config %s 2>&1", getenv("MEMSRV_BIN"), dir, path);
	return run_capture(cmd, out, len);
}

Test(config, a_wrong_line_stops_memsrv_naming_the_file_and_the_line)
{
	struct {
		const char *text, *says;
	} cases[] = {
		{ "node-limit = 48M\nnode-limt = 4G\n", ":2: no option 'node-limt'" },
		{ "cache-size = 12 parsecs\n", ":1: cache-size: " },
		{ "# fine\nswap-dir\n", ":2: 'swap-dir' is not option = value" },
		{ "codec =\n", ":1: codec has no value" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		write_config(cases[i].text);
		char out[1024];
		int status = start_refused(out, sizeof out);
		cr_assert_eq(status, 64, "case %zu: exit status %d: %s", i, status, out);
		cr_assert(strstr(out, path) && strstr(out, cases[i].says), "case %zu: memsrv said: %s", i, out);
	}
	snprintf(path, sizeof path, "%s/missing.conf", dir);
	char out[1024];
	cr_assert_eq(start_refused(out, sizeof out), 64);
	cr_assert(strstr(out, "No such file or directory"), "%s", out);
}
