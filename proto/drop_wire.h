/* drop_wire: memsrv asking a VMM to drop anonymous guest RAM it saved.
 *
 * memsrv can read another process's anonymous pages (/proc/PID/mem) but
 * cannot drop them: process_madvise(MADV_DONTNEED) is refused for another
 * process.  So libmemsrv runs a drop thread of its own in the VMM and
 * hands memsrv one end of a SOCK_SEQPACKET socketpair (Hello.drop_fd_index).
 * Each request is one record, each answered by one reply carrying its seq,
 * in order: a reply to a request means that every request before it was
 * carried out too (the barrier memsrv uses after a restart).
 */
#ifndef MEMSRV_DROP_WIRE_H
#define MEMSRV_DROP_WIRE_H

#include <stdint.h>

/* Take [addr, addr + len), page aligned, inside an anonymous region of
 * the VM, out of guest RAM: once answered, the VMM's next access there
 * faults MISSING (libmemsrv moves the pages into a grave it drops later,
 * or drops them in place).  len 0: nothing to drop, only the reply. */
struct drop_request {
	uint64_t seq;
	uint64_t addr;
	uint64_t len;
};

/* err: 0, or the -errno the drop failed with (EINVAL for a range outside
 * every anonymous region: nothing was dropped). */
struct drop_reply {
	uint64_t seq;
	int32_t err;
	uint32_t reserved;
};

#endif
