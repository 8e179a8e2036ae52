/* child_vmm: a child process of the test's own, driven through two pipes
 * (commands go down `cmd`, answers come up `ans`); most are VMMs linking
 * libmemsrv.
 *
 * A VMM child sends one struct child_ready once its guest RAM is attached
 * (or could not be); what follows is the test's own protocol.  A child
 * asserts nothing: it says what failed, or exits with a code the test
 * reads. */
#ifndef MEMSRV_TEST_CHILD_VMM_H
#define MEMSRV_TEST_CHILD_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guest.h"

struct test_child {
	pid_t pid;       /* 0 once reaped */
	int cmd;  /* the test's end of the pipe to the child */
	int ans;  /* the test's end of the pipe from the child */
};

/* What the child says once its guest is attached, or why it is not. */
struct child_ready {
	int32_t err;     /* 0, or the -errno of what failed */
	int32_t memfd;   /* guest RAM's fd, its number in the child */
	uint64_t base;   /* where the child mapped guest RAM */
	char why[600];   /* what failed, with memsrv's reason: "attach: ... (...)" */
};

/* The child's body: runs with its ends of the pipes and never returns. */
typedef void child_main(void *arg, int cmd, int ans);

/* Forks a child that dies with the test's process (PR_SET_PDEATHSIG) and
 * runs main(arg, ...) there. */
void child_fork(struct test_child *v, child_main *main, void *arg);
/* Waits up to timeout_ms for the child's child_ready; false if none came
 * (the child died first, or took too long). */
bool child_vmm_wait_ready(struct test_child *v, struct child_ready *r, int timeout_ms);
/* SIGKILLs the child, reaps it and closes the pipes; returns its status
 * as wait_exit does. */
int child_kill(struct test_child *v);

/* In the child: guest_try_map, or say what failed (child_ready) and exit 1. */
void child_guest_map(struct guest *g, int ans, const char *name, size_t size, bool huge);
/* In the child: guest_try_attach, or say what failed, with memsrv's
 * reason, and exit 1. */
void child_guest_attach(struct guest *g, int ans, const char *sock, const char *name,
			const struct memsrv_vm *settings);
/* In the child: says its guest g is attached. */
void child_say_ready(int ans, const struct guest *g);

/* Reads len bytes, each part within timeout_ms; false on a timeout, an
 * error or the end of the pipe. */
bool read_full(int fd, void *buf, size_t len, int timeout_ms);
/* In the child: writes len bytes, or exits 3 (the test sees the pipe end). */
void write_full(int fd, const void *buf, size_t len);

#endif
