/* state_dir: --state-dir, where memsrv keeps what a new memsrv needs to
 * serve every page this one evicted, should it be killed.
 *
 *   memsrv.lock     held (flock) while a memsrv uses the directory
 *   store.objects   the store's object table   } store.h, persistent
 *   store.pool      the compressed pool's slabs }
 *   swap.files      the swap files in use, in order (their locs depend on it)
 *   node.limit      the node limit memsrv-ctl set, and the --node-limit it replaced
 *   vm-NAME.state   one per VM: page tables, probation pages (vm_state.h)
 *
 * Swap files stay where --swap and --swap-dir put them, under names that
 * do not change between runs (main.c).  The directory belongs on tmpfs:
 * everything in it is memory memsrv would hold anyway, and nothing of it
 * needs to survive a reboot, which ends the VMs too.
 */
#ifndef MEMSRV_STATE_DIR_H
#define MEMSRV_STATE_DIR_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "vm.h"

struct state_dir {
	char path[PATH_MAX];
	int dir_fd, lock_fd, objects_fd, pool_fd, digests_fd;
};

/* An empty state_dir: no --state-dir, every fd -1. */
void state_dir_none(struct state_dir *sd);

/* Creates path if needed, locks it against a second memsrv (-EBUSY) and
 * opens the store's files.  0, or -errno with why filled. */
int state_dir_open(struct state_dir *sd, const char *path, char *why, size_t whylen);

/* Loads every VM state the directory holds as a kept VM (a list through
 * vm->next) and brings the store back to the objects they reference.
 * swap must be the files the state was written with (swap.files says
 * which), or -EINVAL.
 * A file that is not a VM state is renamed NAME.unreadable and skipped.
 * 0, or -errno with why filled when the store cannot be brought back (its
 * files do not match the VMs' tables: nothing in it can be trusted). */
int state_dir_load(struct state_dir *sd, struct store *store, const struct swapfile *swap, struct vm **kept,
		   char *why, size_t whylen);

/* Whether any VM state remains in the directory. */
bool state_dir_holds_vms(const struct state_dir *sd);

/* Keeps the node limit memsrv-ctl set (limit) beside the one memsrv was
 * started with (configured), for a restarted memsrv. */
void state_dir_save_node_limit(const struct state_dir *sd, uint64_t configured, uint64_t limit);

/* The node limit kept by an earlier memsrv started with the same
 * configured limit: true with *limit set, false if none applies (a
 * different --node-limit is the operator's new word). */
bool state_dir_node_limit(const struct state_dir *sd, uint64_t configured, uint64_t *limit);

/* The node id the store's objects in the remote tier's cluster are
 * referenced under: the one an earlier memsrv kept here must be id, for
 * its references are what hold them (a gc of the old id would free them).
 * 0 with id kept for the next memsrv, or -EINVAL with why. */
int state_dir_remote_node(const struct state_dir *sd, const char *id, char *why, size_t len);

/* Closes the directory.  With discard (no VM state remains), the store's
 * files go too: nothing will ask for them. */
void state_dir_close(struct state_dir *sd, bool discard);

#endif
