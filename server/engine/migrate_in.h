/* migrate_in: a VM whose memory comes from another memsrv node by live
 * migration (Hello.incoming; the source side is migrate_out.h).
 *
 * Every page starts PAGE_REMOTE.  The source's stream (MigratePages)
 * stores each page that arrives in the node's store; pages it names as
 * written since they were sent (MigrateInvalidate) are REMOTE again.  No
 * fault is served before the source says the VM stopped (MigrateStopped):
 * until then every page may still change.  After it, a page that arrived
 * is final and served as any stored page; a fault on a REMOTE one waits,
 * and the page is asked for ahead of the stream (MigratePull), its wait
 * timed.  When the source is done and no page is REMOTE the destination
 * confirms (MigrateConfirm) and the VM is an ordinary one.
 *
 * A stream that fails before the stop leaves the VM as it was attached:
 * every page REMOTE again, waiting for another source.  One that fails
 * after it loses the pages that had not come: they are poisoned (the
 * guest gets a machine check), never zeros.  VM thread only, but
 * migrate_in_attach().
 */
#ifndef MEMSRV_MIGRATE_IN_H
#define MEMSRV_MIGRATE_IN_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

#include "vm.h"

#define MIGRATE_IN_PULL_BATCH 64  /* pages asked for in one MigratePull */

/* At attach, before the VM thread runs: every page REMOTE, waiting for a
 * source.  0 or -ENOMEM. */
int migrate_in_attach(struct vm *vm);

/* A source connected for this VM (job: MIGRATE_IN, its peer_fd and the
 * MigrateBegin).  Accepts it, or refuses it saying why (another source is
 * streaming, the layout differs) and closes it. */
void migrate_in_bind(struct vm *vm, struct vm_job *job);

/* The VM thread's poll: the stream's connections and their events (fd -1:
 * none). */
void migrate_in_poll(struct vm *vm, struct pollfd pf[2]);

/* Takes what the stream brought (pulled pages first), serves the faults
 * that can be now.  pf as polled. */
void migrate_in_step(struct vm *vm, const struct pollfd pf[2]);

bool migrate_in_park(struct vm *vm, const struct uffd_msg *m, struct region *r, uint64_t idx, uint64_t t_read);

/* The fault path's way in: true when the fault on page idx of r must wait
 * (it is kept and served when its page is final). */
static inline bool migrate_in_waits(struct vm *vm, const struct uffd_msg *m, struct region *r, uint64_t idx,
				    uint64_t t_read)
{
	return __builtin_expect(vm->eng.migrate_in != NULL, 0) && migrate_in_park(vm, m, r, idx, t_read);
}

/* The VM goes away: the stream is closed. */
void migrate_in_free(struct vm *vm);

#endif
