/* harness: start the real memsrv and real client processes for integration tests.
 *
 * Binaries come from the environment (set by tests/integration/meson.build):
 * MEMSRV_BIN, VMSIM_BIN.  Every server gets its own temporary directory and
 * socket, so tests never touch /run/memsrv.
 */
#ifndef MEMSRV_TEST_HARNESS_H
#define MEMSRV_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "memsrv.pb-c.h"

struct test_server {
	pid_t pid;
	char dir[64];
	char sock[128];
	char log[128];
};

/* Starts memsrv and waits until its socket accepts connections. */
void server_start(struct test_server *s);
/* The same with extra options, a NULL-terminated list. */
void server_start_with(struct test_server *s, const char *const *options);
/* The same with at most nofile open files (soft and hard), as `ulimit -n`
 * or systemd's LimitNOFILE= would start it. */
void server_start_nofile(struct test_server *s, const char *const *options, unsigned long nofile);
/* kill -9, then the same memsrv again on the same socket (the log goes on
 * in the same file): a crash and the restart a supervisor makes. */
void server_crash_and_restart(struct test_server *s, const char *const *options);
/* Starts memsrv again on the socket of one that died. */
void server_relaunch(struct test_server *s, const char *const *options);
/* SIGTERM, and asserts a clean exit (status 0): no crash, no leak of a VM. */
void server_stop(struct test_server *s);
/* True while the server process runs. */
bool server_alive(struct test_server *s);
/* Whether a line of the server's log contains needle. */
bool server_log_has(const struct test_server *s, const char *needle);
/* Whether a line of the server's log starts with prefix: a line of its own. */
bool server_log_has_line(const struct test_server *s, const char *prefix);
/* How many lines of the server's log contain needle. */
unsigned server_log_count(const struct test_server *s, const char *needle);

/* A memsrv-vmsim in --interactive mode, driven through pipes. */
struct test_sim {
	pid_t pid;
	FILE *in, *out;
	char name[64];
};

#define SIM_KV_MAX 32
struct sim_reply {
	bool ok;
	char error[256];
	unsigned n;
	char key[SIM_KV_MAX][64];
	char value[SIM_KV_MAX][128];
};

/* Starts vmsim --interactive --socket s->sock --name name plus the NULL-
 * terminated extra arguments, and waits for "ready". */
void sim_start(struct test_sim *sim, const struct test_server *s, const char *name, ...);
/* A vmsim named bystander of size bytes ("16M") that checks its pages,
 * every page of it evicted: a VM beside what a test does, which must lose
 * nothing (sim_quit_verified at the end). */
void bystander_start(struct test_sim *sim, const struct test_server *s, const char *size);
/* Sends one command line and collects the "key value" lines up to ok/error. */
void sim_cmd(struct test_sim *sim, const char *cmd, struct sim_reply *r);
/* sim_cmd in two halves, for a command that runs while the test goes on. */
void sim_send(struct test_sim *sim, const char *cmd);
void sim_wait_reply(struct test_sim *sim, const char *cmd, struct sim_reply *r);

/* A loopback TCP port free now, for a memsrv's --peer-listen. */
unsigned free_loopback_port(void);
/* The value of key as a number; fails the test when the key is missing. */
uint64_t sim_value(const struct sim_reply *r, const char *key);
/* Sends verify and asserts every one of pages came back intact. */
void sim_expect_verified(struct test_sim *sim, uint64_t pages);
/* sim_expect_verified, then quit: asserts a clean exit. */
void sim_quit_verified(struct test_sim *sim, uint64_t pages);
/* Sends quit and returns vmsim's exit status. */
int sim_quit(struct test_sim *sim);
/* SIGKILLs vmsim and reaps it. */
void sim_kill(struct test_sim *sim);

/* Runs vmsim to completion (not interactive) with the given NULL-terminated
 * arguments; returns its exit status.  Output goes to the criterion log. */
pid_t sim_spawn(const struct test_server *s, const char *name, ...);
int wait_exit(pid_t pid);

/* Control requests; each asserts the reply type and returns it (free with
 * memsrv__server_message__free_unpacked). */
Memsrv__ServerMessage *ctl_info_ok(const struct test_server *s, const char *vm);
Memsrv__ServerMessage *ctl_evict_ok(const struct test_server *s, const char *vm, uint64_t bytes, bool all);
/* memsrv-ctl snapshot VM DIR, asserted to succeed. */
void ctl_snapshot_ok(const struct test_server *s, const char *vm, const char *dir);
/* memsrv-ctl set NAME SETTING (a VM's name, or "node"); asserts it applied. */
void ctl_set_ok(const struct test_server *s, const char *name, const char *setting);
/* The node's statistics; *m is freed by the caller. */
Memsrv__NodeStats *ctl_stats_ok(const struct test_server *s, Memsrv__ServerMessage **m);
/* Number of VMs attached. */
unsigned ctl_vm_count(const struct test_server *s);
/* Asserts root's list is answered while root holds `connections` more of
 * its own: it is not held to --max-sessions-per-uid. */
void expect_root_served_holding(const struct test_server *s, unsigned connections);
/* The errno of an answer got with return value ret: 0 for a reply that is
 * not an Error, -1 for none.  Frees m.  Asserts nothing: children use it. */
int answer_errno(int ret, Memsrv__ServerMessage *m);

/* Runs a shell command; returns its exit status (128 if killed) and what
 * it printed on stdout (and stderr, if the command redirects it) in out. */
int run_capture(const char *cmd, char *out, size_t len);

/* A new directory from tmpl ("/var/tmp/memsrv-x.XXXXXX") in dir, len
 * bytes; false if it could not be made. */
bool scratch_make(char *dir, size_t len, const char *tmpl);
/* Removes dir and all in it, unless it is a mount point (a test's mount
 * still there); "" is no directory.  Clears dir. */
void scratch_remove(char *dir);

/* One uint64_t field of a VM's info: CTL_INFO(&srv, "vm", resident_bytes). */
uint64_t ctl_info_u64(const struct test_server *s, const char *vm, size_t offset);
#define CTL_INFO(s, vm, field)                                                                                   \
	ctl_info_u64((s), (vm),                                                                                  \
		     offsetof(Memsrv__VmInfo, field) +                                                           \
			     0 * sizeof(char[sizeof(((Memsrv__VmInfo *)0)->field) == sizeof(uint64_t) ? 1 : -1]))

/* A number read from a file such as a /proc/sys knob; -1 if there is none. */
long read_long(const char *path);
/* Writes v to a file such as a /proc/sys knob; false if it did not take. */
bool write_long(const char *path, long v);

/* Polls cond() every 10 ms for up to timeout_ms. */
bool wait_until(bool (*cond)(void *), void *arg, int timeout_ms);

#endif
