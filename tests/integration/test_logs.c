/* Description: memsrv's log as a journal or a file reads it: a full UTC
 * timestamp on every line written to a file, and the syslog priority
 * prefix instead when stderr is the journal (systemd's JOURNAL_STREAM
 * names the stream it connected). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static struct test_server srv;

static void teardown(void)
{
	unsetenv("JOURNAL_STREAM");
	if (server_alive(&srv))
		server_stop(&srv);
}

TestSuite(logs, .fini = teardown, .timeout = 60);

/* The first line of the log. */
static void first_line(char *line, size_t len)
{
	FILE *f = fopen(srv.log, "r");
	cr_assert(f && fgets(line, (int)len, f), "no line in %s", srv.log);
	fclose(f);
}

Test(logs, a_line_in_a_file_starts_with_the_date_and_time_in_utc)
{
	server_start(&srv);
	char line[512];
	first_line(line, sizeof line);
	int y, mo, d, h, mi, s, ms;
	char z, level[8];
	cr_assert_eq(sscanf(line, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c %7s", &y, &mo, &d, &h, &mi, &s, &ms, &z, level), 9,
		     "not YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL: %s", line);
	cr_assert_eq(z, 'Z', "%s", line);
	cr_assert_str_eq(level, "info", "%s", line);
	cr_assert(y >= 2024 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31, "%s", line);
}

Test(logs, a_line_to_the_journal_starts_with_its_syslog_priority)
{
	server_start(&srv);
	/* the log file as if systemd had connected it to the journal */
	struct stat st;
	cr_assert_eq(stat(srv.log, &st), 0);
	char stream[64];
	snprintf(stream, sizeof stream, "%llu:%llu", (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", stream, 1);
	server_crash_and_restart(&srv, NULL);
	cr_assert(server_log_has_line(&srv, "<6>memsrv listening on"), "no info line with priority 6");
	/* a stream other than stderr is not the journal */
	setenv("JOURNAL_STREAM", "1:1", 1);
	server_crash_and_restart(&srv, NULL);
	cr_assert_eq(server_log_count(&srv, "<6>memsrv listening on"), 1, "a line for another stream went to the journal");
	cr_assert(server_log_has(&srv, "Z info  memsrv listening on"), "the file's line has no timestamp");
}
