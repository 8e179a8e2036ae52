/* log: lines on stderr, one write(2) each so threads don't interleave:
 * with a syslog priority prefix for the journal, or a full UTC timestamp. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

enum log_level log_max_level = LOG_INFO;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int log_parse_level(const char *name)
{
	for (int i = 0; i <= LOG_DEBUG; i++)
		if (!strcmp(name, level_names[i])) {
			log_max_level = i;
			return 0;
		}
	return -EINVAL;
}

/* Copies line[n] to out (room for 4 * n bytes), every byte that is not
 * printable ASCII as \xNN and a backslash as \\: whatever a client put in
 * a string, the line stays one line and shows what was sent. */
static size_t escape_line(const char *line, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			out[len++] = (char)c;
		} else if (c == '\\') {
			out[len++] = '\\';
			out[len++] = '\\';
		} else {
			out[len++] = '\\';
			out[len++] = 'x';
			out[len++] = hex[c >> 4];
			out[len++] = hex[c & 15];
		}
	}
	return len;
}

bool log_ratelimit_pass(struct log_ratelimit *rl, uint64_t *held)
{
	pthread_mutex_lock(&rl->lock);
	/* read under the lock: a thread that read the clock earlier never
	 * refills after one that read it later (now - refilled_ns wrapping) */
	uint64_t now = monotonic_ns();
	if (!rl->refilled_ns)
		rl->refilled_ns = now;
	uint64_t gained = (now - rl->refilled_ns) / LOG_RATELIMIT_INTERVAL_NS;
	if (gained) {
		rl->tokens = rl->tokens + gained > LOG_RATELIMIT_BURST ? LOG_RATELIMIT_BURST : rl->tokens + (unsigned)gained;
		rl->refilled_ns += gained * LOG_RATELIMIT_INTERVAL_NS;
	}
	bool pass = rl->tokens > 0;
	if (pass) {
		rl->tokens--;
		*held = rl->suppressed;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
	}
	pthread_mutex_unlock(&rl->lock);
	return pass;
}

bool log_stderr_is_journal(void)
{
	/* systemd sets JOURNAL_STREAM=DEV:INO to the stream it connected
	 * stderr to; a stderr redirected since is another file */
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	return js && sscanf(js, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
	       (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static pthread_once_t sink_once = PTHREAD_ONCE_INIT;
static bool to_journal;

static void find_sink(void) { to_journal = log_stderr_is_journal(); }

/* What starts a line: for the journal, which stamps it, the syslog
 * priority ("<4>" for a warning); otherwise the time and the level. */
static int line_start(char *line, size_t len, enum log_level level)
{
	static const int priority[] = { 3, 4, 6, 7 };  /* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG */
	if (to_journal)
		return snprintf(line, len, "<%d>", priority[level]);
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	return snprintf(line, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ", tm.tm_year + 1900, tm.tm_mon + 1,
			tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
}

void log_line(enum log_level level, const char *vm, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	int saved_errno = errno;
	pthread_once(&sink_once, find_sink);
	char line[1024];
	int n = line_start(line, sizeof line, level);
	n += snprintf(line + n, sizeof line - n, "%s%s%s", vm ? "vm=" : "", vm ? vm : "", vm ? ": " : "");
	va_list ap;
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof line - n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof line - 1)
		n = sizeof line - 1;
	char out[sizeof line * 4 + 1];
	size_t len = escape_line(line, (size_t)n, out);
	out[len++] = '\n';
	if (write(STDERR_FILENO, out, len) < 0) {
		/* nowhere left to report it */
	}
	errno = saved_errno;
}
