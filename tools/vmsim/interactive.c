/* interactive: the line protocol that tests and demos drive through pipes.
 *
 * Each command gets "key value" lines and then "ok" or "error <text>";
 * stdout is flushed after each answer because the reader is a pipe.
 * Between commands the session fd is watched beside stdin, so server
 * requests are answered while the VM idles.
 */
#include "vmsim.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memsrv.h"

#define LINE_MAX_LEN 1024

/* stdin is read with read(2), not stdio: stdio could buffer a line that
 * poll() then never reports. */
struct line_reader {
	char buf[LINE_MAX_LEN];
	size_t len;
	bool eof;
};

/* Moves the next complete line (without its newline) into line; returns
 * false when none is buffered.  At EOF a last unterminated line counts. */
static bool next_line(struct line_reader *r, char *line)
{
	char *nl = memchr(r->buf, '\n', r->len);
	size_t n;
	if (nl)
		n = (size_t)(nl - r->buf);
	else if (r->len == sizeof r->buf || (r->eof && r->len))
		n = r->len;  /* overlong or last line: taken as is */
	else
		return false;
	memcpy(line, r->buf, n);
	line[n] = '\0';
	size_t used = nl ? n + 1 : n;
	memmove(r->buf, r->buf + used, r->len - used);
	r->len -= used;
	return true;
}

static int fill_reader(struct line_reader *r)
{
	ssize_t n = read(STDIN_FILENO, r->buf + r->len, sizeof r->buf - r->len);
	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 0 : -errno;
	if (n == 0)
		r->eof = true;
	r->len += (size_t)n;
	return 0;
}

static void answer_ok(void)
{
	printf("ok\n");
	fflush(stdout);
}

__attribute__((format(printf, 1, 2)))
static void answer_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("error ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	fflush(stdout);
}

static void cmd_run(struct vmsim *vm)
{
	static struct run_stats stats;
	int ret = workload_run(&vm->work, &vm->opts.pattern, &stats);
	if (ret < 0) {
		answer_error("run: %s", strerror(-ret));
		return;
	}
	run_stats_print(stdout, &stats);
	answer_ok();
}

static void cmd_verify(struct vmsim *vm)
{
	uint64_t bad = workload_verify_all(&vm->work);
	printf("verified_pages %llu\n", (unsigned long long)vm->ram.pages);
	printf("mismatches %llu\n", (unsigned long long)bad);
	answer_ok();
}

static void cmd_write(struct vmsim *vm, const char *arg)
{
	static struct run_stats stats;
	char *end;
	double f = arg ? strtod(arg, &end) : -1;
	if (!arg || end == arg || *end || !(f >= 0 && f <= 1)) {
		answer_error("usage: write FRACTION (0 to 1)");
		return;
	}
	workload_write_fraction(&vm->work, f, &stats);
	run_stats_print(stdout, &stats);
	answer_ok();
}

static void cmd_report(struct vmsim *vm)
{
	uint64_t bytes, pages;
	int ret = guest_ram_allocated_bytes(&vm->ram, &bytes);
	if (!ret)
		ret = guest_ram_resident_pages(&vm->ram, &pages);
	if (ret) {
		answer_error("report: %s", strerror(-ret));
		return;
	}
	printf("total_pages %llu\n", (unsigned long long)vm->ram.pages);
	printf("memfd_allocated_bytes %llu\n", (unsigned long long)bytes);
	printf("resident_pages %llu\n", (unsigned long long)pages);
	if (vm->session)
		printf("reconnects %llu\n", (unsigned long long)memsrv_session_reconnects(vm->session));
	answer_ok();
}

/* The state for --resume; memsrv-ctl snapshot writes the memory beside it
 * (vmsim does not talk to the control socket).  Between the two the VM
 * must not write: it idles until the next command. */
static void cmd_save(struct vmsim *vm, const char *dir)
{
	char why[512];
	if (!dir) {
		answer_error("usage: save DIR");
		return;
	}
	int ret = vmsim_save(vm, dir, why, sizeof why);
	if (ret) {
		answer_error("save: %s", why);
		return;
	}
	printf("saved_pages %llu\n", (unsigned long long)vm->ram.pages);
	answer_ok();
}

/* --incoming: what the VM migrating here wrote, from its `save DIR`. */
static void cmd_expect(struct vmsim *vm, const char *dir)
{
	char why[512];
	if (!dir) {
		answer_error("usage: expect DIR");
		return;
	}
	if (vmsim_expect(vm, dir, why, sizeof why)) {
		answer_error("expect: %s", why);
		return;
	}
	answer_ok();
}

/* The VM moved to another node: memsrv sends the last pages, and the
 * detach returns once they are there.  Then vmsim leaves; if the
 * migration failed it stays, attached and whole. */
static int cmd_migrated(struct vmsim *vm)
{
	int ret = memsrv_detach(vm->session, MEMSRV_DETACH_MIGRATED);
	if (ret < 0) {
		answer_error("migrated: %s: %s", strerror(-ret), memsrv_last_error());
		return -1;
	}
	vm->session = NULL;
	answer_ok();
	fflush(stdout);
	return VMSIM_EXIT_OK;
}

static int cmd_quit(struct vmsim *vm)
{
	int status = vmsim_finish(vm);
	if (status != VMSIM_EXIT_SETUP)
		answer_ok();
	fflush(stdout);
	return status;
}

/* Returns -1 to go on, or the exit status after quit. */
static int command(struct vmsim *vm, char *line)
{
	char *save;
	char *cmd = strtok_r(line, " \t\r", &save);
	if (!cmd)
		return -1;  /* blank line */
	char *arg = strtok_r(NULL, " \t\r", &save);
	if (!strcmp(cmd, "run"))
		cmd_run(vm);
	else if (!strcmp(cmd, "verify"))
		cmd_verify(vm);
	else if (!strcmp(cmd, "write"))
		cmd_write(vm, arg);
	else if (!strcmp(cmd, "report"))
		cmd_report(vm);
	else if (!strcmp(cmd, "save"))
		cmd_save(vm, arg);
	else if (!strcmp(cmd, "expect"))
		cmd_expect(vm, arg);
	else if (!strcmp(cmd, "migrated") && vm->session)
		return cmd_migrated(vm);
	else if (!strcmp(cmd, "quit"))
		return cmd_quit(vm);
	else
		answer_error("unknown command '%s'", cmd);
	return -1;
}

int interactive_run(struct vmsim *vm)
{
	static struct line_reader reader;
	static char line[LINE_MAX_LEN + 1];
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		while (next_line(&reader, line)) {
			int status = command(vm, line);
			if (status >= 0)
				return status;
		}
		if (reader.eof)  /* the driver went away: leave as quit would */
			return cmd_quit(vm);
		struct pollfd p[2] = {
			{ .fd = STDIN_FILENO, .events = POLLIN },
			{ .fd = vm->session ? memsrv_session_fd(vm->session) : -1, .events = POLLIN },
		};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "vmsim %s: poll: %s\n", vm->opts.name, strerror(errno));
			return VMSIM_EXIT_SETUP;
		}
		/* The session fd is an epoll fd: dispatch takes a dead memsrv's
		 * socket out of it, so its hang-up does not spin this loop. */
		if (p[1].revents)
			vmsim_dispatch(vm);
		if (p[0].revents) {
			int ret = fill_reader(&reader);
			if (ret < 0) {
				fprintf(stderr, "vmsim %s: stdin: %s\n", vm->opts.name, strerror(-ret));
				return cmd_quit(vm);
			}
		}
	}
}
