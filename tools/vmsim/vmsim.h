/* vmsim: the state of one simulated VM, shared by main and the command loop. */
#ifndef VMSIM_VMSIM_H
#define VMSIM_VMSIM_H

#include <stddef.h>
#include <stdint.h>

#include "guest_ram.h"
#include "options.h"
#include "workload.h"

/* Exit statuses. */
enum {
	VMSIM_EXIT_OK = 0,
	VMSIM_EXIT_MISMATCH = 1,
	VMSIM_EXIT_SETUP = 2,
	VMSIM_EXIT_SERVER_GONE = 3,
	VMSIM_EXIT_USAGE = 64,
};

struct memsrv_session;

struct vmsim {
	struct vmsim_options opts;
	struct guest_ram ram;
	struct workload work;
	struct memsrv_session *session;  /* NULL with --no-attach */
	char *snapshot_dir;              /* --resume's directory made absolute (malloc'd), or NULL */
};

/* Serves one pending server request.  Returns 0 or -errno; when the
 * server went away it does not return but calls vmsim_server_gone(). */
int vmsim_dispatch(struct vmsim *vm);

/* Prints "error server gone" and exits with VMSIM_EXIT_SERVER_GONE. */
__attribute__((noreturn)) void vmsim_server_gone(void);

/* Detaches (restoring evicted pages) and returns the exit status; exits
 * when the pages cannot be restored (memsrv down): see vmsim_finish(). */
int vmsim_finish(struct vmsim *vm);

/* The command loop of --interactive; returns the exit status. */
int interactive_run(struct vmsim *vm);

/* --resume (resume.c), before the RAM is made: reads DIR/vmsim.state,
 * refuses options that contradict it, takes its size, mix and seed into
 * vm->opts and sets vm->snapshot_dir.  *versions gets the saved versions
 * (free() them).  Returns an exit status: VMSIM_EXIT_OK to go on. */
int resume_load(struct vmsim *vm, uint32_t **versions);

/* After a resume's attach: verifies the first page that is not zero (one
 * that memsrv reads from the image) and prints attach_s, first_page and
 * first_page_s, both times from attach_start (CLOCK_MONOTONIC seconds). */
void resume_report(struct vmsim *vm, double attach_start, double attach_end);

/* `save DIR`: writes DIR/vmsim.state for a later --resume DIR.  0 or
 * -errno with why. */
int vmsim_save(struct vmsim *vm, const char *dir, char *why, size_t len);

/* `expect DIR` (--incoming): takes the versions DIR/vmsim.state holds,
 * which must be of a VM like this one.  0 or -errno with why. */
int vmsim_expect(struct vmsim *vm, const char *dir, char *why, size_t len);

/* CLOCK_MONOTONIC in seconds. */
double vmsim_now_s(void);

/* --bench-content: prints ns per page for each kind and the mix. */
int bench_content(const struct content_mix *mix, uint64_t seed);

/* --bench-discard, attached and filled: discards every other page, one
 * memsrv_discard() each in the first half, in fenced batches in the
 * second, and prints the us per page of each; then detaches. */
int bench_discard(struct vmsim *vm);

#endif
