/* cpu_follow: a VM's thread runs on the CPUs its vCPUs may run on
 * (cpu_follow.h). */
#include "cpu_follow.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "vm.h"

bool cpu_follow_enabled = true;

/* Whether tid is a thread of the VM's VMM: the id comes from the faulting
 * task's pid namespace, which may not be memsrv's. */
static bool vmm_thread(const struct vm *vm, pid_t tid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/task/%d", vm->pid, tid);
	return access(path, F_OK) == 0;
}

/* Takes the VM's set as the thread's affinity while it is narrower than
 * the CPUs memsrv may use; every CPU again otherwise. */
static void follow(struct vm *vm)
{
	struct cpu_follow *f = &vm->eng.cpu_follow;
	cpu_set_t all, want;
	if (sched_getaffinity(getpid(), sizeof all, &all))
		return;
	CPU_AND(&want, &f->set, &all);
	bool pin = CPU_COUNT(&want) > 0 && !CPU_EQUAL(&want, &all);
	if (!pin && !f->pinned)
		return;
	if (sched_setaffinity(0, sizeof want, pin ? &want : &all)) {
		vm_warn(vm, "cannot run on the CPUs of the VM's vCPUs: %s", strerror(errno));
		return;
	}
	if (pin && !f->pinned)
		vm_info(vm, "serving faults on the %d CPU(s) the VMM's threads may use", CPU_COUNT(&want));
	else if (!pin)
		vm_info(vm, "serving faults on any CPU: the VMM's threads may use them all");
	f->pinned = pin;
	f->one_cpu = pin && CPU_COUNT(&want) == 1;
}

void cpu_follow_fault(struct vm *vm, pid_t tid)
{
	struct cpu_follow *f = &vm->eng.cpu_follow;
	if (!cpu_follow_enabled || tid <= 0 || tid == f->last)
		return;
	f->last = tid;
	for (unsigned i = 0; i < f->n; i++)
		if (f->tids[i] == tid)
			return;
	cpu_set_t cpus;
	if (f->n == CPU_FOLLOW_THREADS || !vmm_thread(vm, tid) || sched_getaffinity(tid, sizeof cpus, &cpus))
		return;
	f->tids[f->n++] = tid;
	cpu_set_t before = f->set;
	CPU_OR(&f->set, &f->set, &cpus);
	if (f->n == 1 || !CPU_EQUAL(&before, &f->set))
		follow(vm);
}

void cpu_follow_tick(struct vm *vm)
{
	struct cpu_follow *f = &vm->eng.cpu_follow;
	if (!cpu_follow_enabled || !f->n)
		return;
	/* read again: a VMM may pin its threads after they started */
	CPU_ZERO(&f->set);
	for (unsigned i = 0; i < f->n; i++) {
		cpu_set_t cpus;
		if (!sched_getaffinity(f->tids[i], sizeof cpus, &cpus))
			CPU_OR(&f->set, &f->set, &cpus);
	}
	follow(vm);
	/* the next period's faulting threads make the set anew: a thread
	 * that stopped faulting (QEMU's main thread loading the firmware at
	 * boot) no longer widens it */
	f->n = 0;
	f->last = 0;
	CPU_ZERO(&f->set);
}

void cpu_follow_let_vcpus_run(struct vm *vm)
{
	if (vm->eng.cpu_follow.pinned)
		sched_yield();
}
