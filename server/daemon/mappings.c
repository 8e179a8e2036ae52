/* mappings: finds processes that map a VM's RAM outside its userfaultfd.
 *
 * memsrv punches evicted pages out of the memfd and brings them back only
 * through the VMM's registered mapping.  Any other mapping of the same file
 * — a child forked without MADV_DONTFORK, a vhost-user backend, a dump tool,
 * a second mmap in the VMM itself — reads those holes as zeros, and its read
 * fills them with zero pages that the VMM then reads without a fault.  The
 * kernel tells nobody about such a mapping, so memsrv looks for it: every
 * scan interval it reads /proc/PID/maps of every process for the files of
 * the VMs' regions.  A VM whose file is mapped anywhere but in its VMM's
 * registered regions is unprotected: memsrv puts every page back (where the
 * other mapping reads it right) and evicts nothing until the mapping goes.
 * Between two scans a new mapping is not seen: a VMM that shares guest RAM
 * with another process must not let memsrv evict it (docs/operations.md).
 *
 * Server thread only.
 */
#include "mappings.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "log.h"

/* One line of /proc/PID/maps: "start-end perms offset maj:min inode path". */
struct maps_line {
	uint64_t start, end;
	dev_t dev;
	ino_t ino;
};

static bool parse_maps_line(const char *line, struct maps_line *m)
{
	unsigned long long start, end, ino;
	unsigned maj, min;
	if (sscanf(line, "%llx-%llx %*s %*x %x:%x %llu", &start, &end, &maj, &min, &ino) != 5)
		return false;
	*m = (struct maps_line){ start, end, makedev(maj, min), (ino_t)ino };
	return ino != 0;
}

/* Whether this mapping is the VM's own: inside one of its registered
 * regions, in its VMM. */
static bool registered(const struct vm *vm, pid_t pid, const struct maps_line *m)
{
	if (pid != vm->pid)
		return false;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		if (!r->unmapped && m->start >= r->host_addr && m->end <= r->host_addr + r->size)
			return true;
	}
	return false;
}

/* The VM whose RAM this mapping is, unregistered; NULL if none. */
static struct vm *unprotects(struct server *srv, pid_t pid, const struct maps_line *m)
{
	for (struct vm *vm = srv->vms; vm; vm = vm->next) {
		if (!vm->evictable)
			continue;  /* nothing is ever punched: nothing to protect */
		for (unsigned i = 0; i < vm->n_regions; i++) {
			const struct region *r = &vm->regions[i];
			if (r->fd >= 0 && r->dev == m->dev && r->ino == m->ino && !registered(vm, pid, m))
				return vm;
		}
	}
	return NULL;
}

/* Reads one process's maps; marks in found[] (parallel to the VM list)
 * the VMs it maps unregistered, with pid as the first such process. */
static void scan_process(struct server *srv, pid_t pid, pid_t *found, unsigned n_vms)
{
	char path[64], line[512];
	snprintf(path, sizeof path, "/proc/%d/maps", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;  /* gone meanwhile, or a kernel thread */
	while (fgets(line, sizeof line, f)) {
		struct maps_line m;
		if (!parse_maps_line(line, &m))
			continue;
		struct vm *vm = unprotects(srv, pid, &m);
		if (!vm)
			continue;
		unsigned k = 0;
		for (struct vm *v = srv->vms; v != vm; v = v->next)
			k++;
		if (k < n_vms && !found[k])
			found[k] = pid;
	}
	fclose(f);
}

static void comm_of(pid_t pid, char *out, size_t len)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/comm", pid);
	FILE *f = fopen(path, "re");
	if (!f || !fgets(out, (int)len, f))
		snprintf(out, len, "?");
	if (f)
		fclose(f);
	out[strcspn(out, "\n")] = 0;
}

static void became_unprotected(struct vm *vm, pid_t pid)
{
	char comm[32];
	comm_of(pid, comm, sizeof comm);
	snprintf(vm->unprotected_reason, sizeof vm->unprotected_reason,
		 "process %d (%s) maps its RAM outside memsrv's userfaultfd", pid, comm);
	vm_warn(vm, "%s: every page goes back, nothing is evicted until that mapping is gone",
		vm->unprotected_reason);
	atomic_store(&vm->unprotected_by, pid);
	struct vm_job *job = vm_job_new(VM_JOB_RESTORE);
	if (!job) {
		vm_err(vm, "out of memory: the pages it holds stay where they are");
		return;
	}
	job->reply_fd = -1;
	vm_post_job(vm, job);
}

/* The VMs on the list, 0 when none could be evicted (nothing to protect,
 * no scan). */
static unsigned count_vms(const struct server *srv)
{
	unsigned n = 0;
	bool any_evictable = false;
	for (const struct vm *vm = srv->vms; vm; vm = vm->next) {
		n++;
		any_evictable |= vm->evictable;
	}
	return any_evictable ? n : 0;
}

void mappings_scan(struct server *srv)
{
	unsigned n_vms = count_vms(srv);
	if (!n_vms)
		return;
	pid_t *found = calloc(n_vms, sizeof *found);
	DIR *proc = opendir("/proc");
	if (!found || !proc) {
		free(found);
		if (proc)
			closedir(proc);
		return;  /* the next scan tries again */
	}
	pid_t self = getpid();
	uint64_t t0 = monotonic_ns();
	unsigned processes = 0;
	for (struct dirent *d; (d = readdir(proc));) {
		if (!isdigit((unsigned char)d->d_name[0]))
			continue;
		pid_t pid = (pid_t)atoi(d->d_name);
		if (pid != self)
			scan_process(srv, pid, found, n_vms);
		processes++;
	}
	closedir(proc);
	pr_debug("mapping scan: %u processes in %.2f ms", processes, (monotonic_ns() - t0) / 1e6);
	unsigned k = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next, k++) {
		pid_t was = atomic_load(&vm->unprotected_by);
		if (found[k] && !was) {
			became_unprotected(vm, found[k]);
		} else if (!found[k] && was) {
			atomic_store(&vm->unprotected_by, 0);
			vm_info(vm, "no other process maps its RAM any more: eviction resumes");
		}
	}
	free(found);
}
