/* vmsim: the state of one simulated VM, shared by main and the command loop. */
#ifndef VMSIM_VMSIM_H
#define VMSIM_VMSIM_H

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

/* --bench-content: prints ns per page for each kind and the mix. */
int bench_content(const struct content_mix *mix, uint64_t seed);

#endif
