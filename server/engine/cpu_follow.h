/* cpu_follow: a VM's thread runs on the CPUs its vCPUs may run on.
 *
 * A fault's message names the VMM thread that waits (UFFD_FEATURE_THREAD_ID).
 * The first time a thread faults, its CPU affinity joins the VM's set, and
 * while that set is not every CPU (the VMM pins its vCPUs) the VM thread
 * takes it as its own.  Faults are then served on the CPU the waiting vCPU
 * just left, as the kernel serves its own page faults: no wakeup crosses
 * CPUs, and the VM pays for its memory management with its own CPU time
 * (on this 2-CPU VM: 280-360k accesses/s against 140-300k for the thread
 * elsewhere, docs/benchmarks.md).  The set is the threads that faulted
 * since the last policy tick (a second), read again then, as a VMM may pin
 * its threads after they started.
 *
 * VM thread only.
 */
#ifndef MEMSRV_CPU_FOLLOW_H
#define MEMSRV_CPU_FOLLOW_H

#include <sched.h>
#include <stdbool.h>
#include <sys/types.h>

#define CPU_FOLLOW_THREADS 64  /* VMM threads remembered: vCPUs and helpers */

struct cpu_follow {
	pid_t last;                       /* the thread of the last fault: nothing to do */
	pid_t tids[CPU_FOLLOW_THREADS];   /* the VMM threads that faulted this period... */
	unsigned n;
	cpu_set_t set;                    /* ...and the union of their affinities */
	bool pinned;                      /* the VM thread's affinity is the VM's set */
	bool one_cpu;                     /* ...of one CPU: a spin would only keep the vCPU from it */
};

struct vm;

/* --follow-vcpus (settings.h). */
extern bool cpu_follow_enabled;

/* A fault of VMM thread tid (0: the kernel did not say). */
void cpu_follow_fault(struct vm *vm, pid_t tid);

/* Reads the remembered threads' affinities again and starts a new period
 * (policy tick). */
void cpu_follow_tick(struct vm *vm);

/* After serving faults: while the VM thread runs on its vCPUs' CPUs, it
 * yields, so that a vCPU it just woke on this CPU runs at once rather than
 * after the eviction that makes room for the next faults (on one CPU, the
 * scheduler let the VM thread finish first: access p99 40-50 us on zipf
 * against 15-17 us with the yield, docs/benchmarks.md).  The eviction
 * runs when the vCPU blocks again or its slice ends, and gives way to a
 * fault that waits (evict_keep_headroom). */
void cpu_follow_let_vcpus_run(struct vm *vm);

#endif
