/* anon_drops: evicting anonymous private guest RAM, which memsrv can read
 * (the VMM's /proc/PID/mem) but not drop: libmemsrv's drop thread in the
 * VMM drops it on memsrv's request (drop_wire.h).
 *
 * A drop takes the place of the hole punch of shared memory, with the same
 * guarantee: the run is write-protected from before its read until after
 * the drop, so a write waits in a WP fault and then faults MISSING.  The
 * request is synchronous for the run, but not for the VM thread's uffd:
 * the VMM's madvise raises a REMOVE event and waits until it was read, so
 * the wait reads the uffd into the pending ring (fault.c), as a resync
 * does, and the faults and events read are handled after the run.
 */
#ifndef MEMSRV_ANON_DROPS_H
#define MEMSRV_ANON_DROPS_H

#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

/* Why vm's anonymous regions cannot be evicted (into why), or NULL if
 * they can: the VMM sent a drop channel, registered them for write
 * protection, and memsrv can read its memory.  Opens vm->anon.mem_fd the
 * first time. */
const char *anon_drops_blocker(struct vm *vm, char *why, size_t len);

/* Asks the VMM to drop [addr, addr + len) and waits until it did.  0, or
 * -errno: the VMM refused (its madvise's error), or the channel broke
 * (-EPIPE: the VMM's drop thread is gone; the VM is evictable no more), or
 * -ESHUTDOWN: memsrv stops and waited long enough (the drop may still
 * happen: the page's copy stays, and a resumed memsrv waits it out,
 * anon_drops_barrier()). */
int anon_drop(struct vm *vm, uint64_t addr, uint64_t len);

/* The same in two steps, so that the runs of one eviction go to the VMM
 * back to back and their answers come in one wake-up: post a run (at most
 * ANON_RUNS_IN_FLIGHT, then -ENOBUFS; -EPIPE as above), then await them
 * all: each of vm->anon.runs[] gets its err, and the caller empties the
 * list (n_runs = 0) once it has finished them. */
int anon_drop_post(struct vm *vm, uint64_t addr, uint64_t len);
void anon_drops_await(struct vm *vm);

/* Waits until every drop asked before, by an earlier memsrv too, is done:
 * on a resume, before a page is served. */
void anon_drops_barrier(struct vm *vm);

#endif
