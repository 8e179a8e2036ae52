/* log: one line per event on stderr, with the VM's name when there is one. */
#ifndef MEMSRV_LOG_H
#define MEMSRV_LOG_H

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_max_level;

/* Parses "error", "warn", "info" or "debug"; -EINVAL otherwise. */
int log_parse_level(const char *name);

void log_line(enum log_level level, const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_enabled(level) ((level) <= log_max_level)

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

#endif
