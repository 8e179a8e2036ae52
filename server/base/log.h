/* log: one line per event on stderr, with the VM's name when there is one.
 *
 * A line starts with a full UTC timestamp and the level
 * ("2026-12-03T02:05:07.123Z warn  ..."), or, when stderr is the systemd
 * journal (JOURNAL_STREAM names it), with the syslog priority the journal
 * reads ("<4>..."), as it stamps lines itself.
 *
 * A line is always one line: log_line() writes every byte of it that is
 * not printable ASCII as \xNN (and a backslash as \\), so a client string
 * that reaches the log (a VM name, a codec, a BalloonResult's message)
 * cannot end the line or forge the next one.  Keep such strings short in
 * the format too (LOG_CLIENT_STR_MAX, "%.*s"): a line is cut at 1023 bytes.
 */
#ifndef MEMSRV_LOG_H
#define MEMSRV_LOG_H

#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_max_level;

/* Parses "error", "warn", "info" or "debug"; -EINVAL otherwise. */
int log_parse_level(const char *name);

void log_line(enum log_level level, const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Whether stderr is the stream systemd connected to the journal. */
bool log_stderr_is_journal(void);

#define log_enabled(level) ((level) <= log_max_level)

/* The most of one client-supplied string a line shows: "%.*s", LOG_CLIENT_STR_MAX, s */
#define LOG_CLIENT_STR_MAX 128

/* Server-wide messages. */
#define pr_err(...)   log_line(LOG_ERR, NULL, __VA_ARGS__)
#define pr_warn(...)  log_line(LOG_WARN, NULL, __VA_ARGS__)
#define pr_info(...)  log_line(LOG_INFO, NULL, __VA_ARGS__)
#define pr_debug(...) do { if (log_enabled(LOG_DEBUG)) log_line(LOG_DEBUG, NULL, __VA_ARGS__); } while (0)

/* Messages about one VM: every line carries its name. */
#define vm_err(vm, ...)   log_line(LOG_ERR, (vm)->name, __VA_ARGS__)
#define vm_warn(vm, ...)  log_line(LOG_WARN, (vm)->name, __VA_ARGS__)
#define vm_info(vm, ...)  log_line(LOG_INFO, (vm)->name, __VA_ARGS__)
#define vm_debug(vm, ...) do { if (log_enabled(LOG_DEBUG)) log_line(LOG_DEBUG, (vm)->name, __VA_ARGS__); } while (0)

/* Rate limiting, for a warning a client or a guest can repeat at will (one
 * per refused connection, one per page): a token bucket per call site.
 * The first LOG_RATELIMIT_BURST lines pass, then one per
 * LOG_RATELIMIT_INTERVAL_NS (quiet intervals give the burst back); the
 * first line that passes after some were held back is preceded by one
 * saying how many ("N more lines like the next one were suppressed").
 * Thread-safe: one call site's bucket is shared by all threads, and by all
 * VMs for the vm_ form (a flood from one VM holds back the others' lines
 * of that call site too, never other call sites').  Use exactly like
 * pr_warn() / vm_warn():
 *
 *	vm_warn_ratelimited(vm, "page at 0x%" PRIx64 " reappeared", addr);
 */
#define LOG_RATELIMIT_BURST 10
#define LOG_RATELIMIT_INTERVAL_NS (5ull * 1000 * 1000 * 1000)

struct log_ratelimit {
	pthread_mutex_t lock;
	unsigned tokens;
	uint64_t refilled_ns;    /* 0: never used (the bucket starts full) */
	uint64_t suppressed;     /* held back since the last line that passed */
};

#define LOG_RATELIMIT_INIT { PTHREAD_MUTEX_INITIALIZER, LOG_RATELIMIT_BURST, 0, 0 }

/* Whether a line may pass now; if so, *held is how many were held back
 * before it. */
bool log_ratelimit_pass(struct log_ratelimit *rl, uint64_t *held);

#define log_ratelimited(level, vm_name, ...)                                                          \
	do {                                                                                           \
		static struct log_ratelimit log_rl_ = LOG_RATELIMIT_INIT;                               \
		uint64_t log_held_;                                                                     \
		if (log_enabled(level) && log_ratelimit_pass(&log_rl_, &log_held_)) {                   \
			if (log_held_)                                                                  \
				log_line(level, vm_name, "%" PRIu64 " more lines like the next one were suppressed", \
					 log_held_);                                                    \
			log_line(level, vm_name, __VA_ARGS__);                                          \
		}                                                                                       \
	} while (0)

#define pr_warn_ratelimited(...)     log_ratelimited(LOG_WARN, NULL, __VA_ARGS__)
#define pr_info_ratelimited(...)     log_ratelimited(LOG_INFO, NULL, __VA_ARGS__)
#define vm_err_ratelimited(vm, ...)  log_ratelimited(LOG_ERR, (vm)->name, __VA_ARGS__)
#define vm_warn_ratelimited(vm, ...) log_ratelimited(LOG_WARN, (vm)->name, __VA_ARGS__)

#endif
