/* migrate_out: a running VM's memory moved to another memsrv node
 * (memsrv-ctl migrate VM --to ADDR:PORT; docs/migration.md), by the VM's
 * own thread, between its faults.
 *
 * Every page is sent once, in address order, as memsrv holds it: a word
 * for a zero or same-filled page; content (the store's object as it is
 * kept, a resident page read from the fd, never through a mapping, and
 * compressed) either offered first by hash and digest, which the
 * destination takes from its own store or wants back, or at once when
 * offers do not pay or the guest has stopped.  A resident page is
 * write-protected before it is read; from then on whatever could change it
 * marks it to send again (migrate_out_touched): a write (its WP fault), a
 * fill (the filled page is writable), an eviction's unprotect of what stays
 * resident, a discard, a poison.  Rounds go over the marked pages until the
 * VMM, which stopped the VM at the end of its own migration, detaches
 * saying so: then the pages sent and written since are named to the
 * destination (MigrateInvalidate), the rest goes, the pages its faults
 * pull first on a second connection, and the detach is answered once the
 * destination confirmed every page.  Until then the VM keeps every page: a
 * failure at any step ends the migration, every page writable again, the
 * VM whole and attached.  VM thread only.
 */
#ifndef MEMSRV_MIGRATE_OUT_H
#define MEMSRV_MIGRATE_OUT_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "vm.h"

#define MIGRATE_BATCH_PAGES 64            /* pages read, write-protected and sent in one MigratePages */
#define MIGRATE_FINAL_BATCH_PAGES 16      /* the same after the stop, when the destination's faults pull */
#define MIGRATE_TX_HIGH (64u << 10)        /* unsent bytes past which no more pages are read: a pulled page waits behind no more */
#define MIGRATE_ROUND_PAUSE_MS 20          /* a small set of written pages waits this long for company */
#define MIGRATE_ROUND_SMALL_PAGES 1024     /* what counts as small */
#define MIGRATE_CONFIRM_MS 30000           /* the destination's answers, Accept and Confirm */

/* Starts the migration job posted: takes its peer_fd, address and
 * reply_fd (answered at the end: a MigrateReply or an Error). */
void migrate_out_start(struct vm *vm, struct vm_job *job);

/* The VM thread's poll: the connections and the events they wait for
 * (fd -1: none); *timeout_ms is lowered to when it has work next (0: now). */
void migrate_out_poll(struct vm *vm, struct pollfd pf[2], int *timeout_ms);

/* Reads what came, sends what is due: batches of pages for 2 ms at most,
 * so faults wait for no more than that.  pf as polled (NULL: nothing
 * polled). */
void migrate_out_step(struct vm *vm, const struct pollfd pf[2]);

/* The VMM detaches saying the VM migrated (Detach.migrated): it stopped
 * the VM for good.  Takes the job and answers it (DetachReply) once the
 * destination confirmed every page, or with an Error when the migration
 * failed (the VM then stays attached, whole).  False when no migration
 * takes the job (none, or it failed already). */
bool migrate_out_vm_stopped(struct vm *vm, struct vm_job *job);

/* Ends a migration (the VM goes away, a restore was asked): the
 * destination is told, the requester gets err and why, every page is
 * writable again. */
void migrate_out_cancel(struct vm *vm, int err, const char *why);

void migrate_out_mark(struct vm *vm, uint64_t page, uint64_t count);

/* Pages [first, first + count) of r may change from now on: to send again. */
static inline void migrate_out_touched(struct vm *vm, const struct region *r, uint64_t first, uint64_t count)
{
	if (__builtin_expect(vm->eng.migrate_out != NULL, 0))
		migrate_out_mark(vm, r->first_page + first, count);
}

#endif
