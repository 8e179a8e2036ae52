/* vm: lifetime of an attached VM and the views of it other threads may take. */
#include "vm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "accessed.h"
#include "anon_drops.h"
#include "fault.h"
#include "huge_pages.h"
#include "image_pages.h"
#include "sampler.h"
#include "swap_reads.h"
#include "vm_state.h"
#include "log.h"
#include "wire.h"

struct vm *vm_new(struct store *store)
{
	struct vm *vm = calloc(1, sizeof *vm);
	if (!vm)
		return NULL;
	vm->uffd = vm->session_fd = vm->thr.wake_fd = vm->persist.fd = vm->persist.dir_fd = -1;
	vm->anon.mem_fd = vm->anon.drop_sock = -1;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	vm->anon.seq = vm->anon.acked = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	vm->thr.jobs_tail = &vm->thr.jobs;
	pthread_mutex_init(&vm->thr.job_lock, NULL);
	session_out_init(&vm->out);
	latency_init(&vm->lat_all);
	latency_init(&vm->lat_never);
	latency_init(&vm->lat_stored);
	latency_init(&vm->lat_cache);
	latency_init(&vm->lat_swap);
	latency_init(&vm->lat_remote);
	vm->store = store;
	vm->eng.codec_ctx = codec_ctx_create();
	vm->thr.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!vm->eng.codec_ctx || vm->thr.wake_fd < 0) {
		vm_destroy(vm);
		return NULL;
	}
	return vm;
}

int vm_add_region(struct vm *vm, const struct region *src, char *why, size_t whylen)
{
	if (vm->n_regions == VM_MAX_REGIONS) {
		snprintf(why, whylen, "more than %d regions", VM_MAX_REGIONS);
		return -E2BIG;
	}
	struct region *r = &vm->regions[vm->n_regions];
	*r = *src;
	uint64_t resident = 0;
	if (vm->persist.resume_from) {
		/* the tables an earlier memsrv left, checked against the fds */
		int64_t found = vm_state_resume_region(vm, r, why, whylen);
		if (found < 0) {
			memset(&r->pt, 0, sizeof r->pt);  /* borrowed: not ours to unmap */
			return (int)found;
		}
		resident = (uint64_t)found * r->page_size;
		goto added;
	}
	int ret = vm->persist.header ? vm_state_add_region(vm, r) : page_table_init(&r->pt, r->size / r->page_size);
	if (!ret && !vm->persist.header && region_is_huge(r)) {
		ret = page_table_init(&r->parts, r->size / HUGE_PART_BYTES);
		if (ret)
			page_table_destroy(&r->pt);
	}
	if (ret) {
		snprintf(why, whylen, "cannot track region%s: %s", vm->persist.header ? " in the state dir" : "", strerror(-ret));
		return ret;
	}
	if (r->backing == MEMSRV__BACKING__BACKING_HUGETLBFS) {
		/* hugetlbfs has no SEEK_DATA: count what the file holds (such
		 * pages raise no fault); the policy learns of them as they
		 * fault after their first eviction */
		struct stat st;
		if (fstat(r->fd, &st) == 0)
			resident = (uint64_t)st.st_blocks * 512 < r->size ? (uint64_t)st.st_blocks * 512 : r->size;
	} else if (r->fd >= 0) {
		int64_t found = page_table_scan_allocated(&r->pt, r->fd, r->fd_offset, r->page_size);
		if (found < 0) {
			page_table_destroy(&r->pt);
			snprintf(why, whylen, "cannot read which pages the fd holds: %s", strerror((int)-found));
			return (int)found;  /* the caller still owns the fd */
		}
		resident = (uint64_t)found * r->page_size;
	}
added:;
	size_t need = r->page_size > 4096 ? r->page_size : 4096;
	if (need > vm->eng.page_buf_size) {
		void *buf = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		/* read-only: it stays zeros, and costs no memory (hugetlbfs
		 * regions copy it as their zero page) */
		void *zeros = mmap(NULL, need, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (buf == MAP_FAILED || zeros == MAP_FAILED) {
			if (buf != MAP_FAILED)
				munmap(buf, need);
			if (zeros != MAP_FAILED)
				munmap(zeros, need);
			if (!vm->persist.resume_from)
				page_table_destroy(&r->pt);
			memset(&r->pt, 0, sizeof r->pt);
			snprintf(why, whylen, "out of memory");
			return -ENOMEM;
		}
		if (vm->eng.page_buf) {
			munmap(vm->eng.page_buf, vm->eng.page_buf_size);
			munmap((void *)vm->eng.zero_buf, vm->eng.page_buf_size);
		}
		vm->eng.page_buf = buf;
		vm->eng.zero_buf = zeros;
		vm->eng.page_buf_size = need;
	}
	r->first_page = vm->n_regions ? vm->regions[vm->n_regions - 1].first_page +
					     vm->regions[vm->n_regions - 1].pt.npages : 0;
	vm->n_regions++;
	vm->size_bytes += r->size;
	atomic_fetch_add(&vm->resident_bytes, resident);
	return 0;
}

void vm_policy_resident(struct vm *vm, const struct region *r, uint64_t idx, bool used, bool write)
{
	if (!r->evictable || !vm->eng.policy.ops)
		return;
	vm->eng.policy.ops->resident(&vm->eng.policy, r->first_page + idx, write);
	if (used)
		vm->eng.policy.flags[r->first_page + idx] |= POLICY_SEEN;
}

void vm_policy_gone(struct vm *vm, const struct region *r, uint64_t idx)
{
	if (r->evictable && vm->eng.policy.ops)
		vm->eng.policy.ops->gone(&vm->eng.policy, r->first_page + idx);
}

void vm_policy_idle(struct vm *vm, const struct region *r, uint64_t idx)
{
	if (r->evictable && vm->eng.policy.ops)
		policy_mark_idle(&vm->eng.policy, r->first_page + idx);
}

/* (Re)builds the policy's books from the page tables. */
static int policy_build(struct vm *vm, const struct policy_ops *ops)
{
	uint64_t total = 0;
	for (unsigned i = 0; i < vm->n_regions; i++)
		total += vm->regions[i].pt.npages;
	if (vm->eng.policy.ops)
		policy_fini(&vm->eng.policy);
	int ret = policy_init(&vm->eng.policy, ops, total);
	if (ret)
		return ret;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		for (uint64_t p = 0; r->evictable && p < r->pt.npages; p++)
			if (pe_state(r->pt.entries[p]) == PAGE_RESIDENT)
				vm_policy_resident(vm, r, p, false, false);
	}
	return 0;
}

void vm_policy_update(struct vm *vm)
{
	const struct policy_ops *want = atomic_load(&vm->policy_wanted);
	if (want == vm->eng.policy.ops)
		return;
	int ret = policy_build(vm, want);
	if (ret) {
		vm_err(vm, "cannot switch to policy %s: %s", want->name, strerror(-ret));
		atomic_store(&vm->policy_wanted, vm->eng.policy.ops);
		return;
	}
	vm_info(vm, "eviction policy is %s", want->name);
}

/* The VM's largest page, in pages of 4 KiB. */
static uint64_t largest_page_parts(const struct vm *vm)
{
	uint64_t most = 1;
	for (unsigned i = 0; i < vm->n_regions; i++)
		if (region_parts(&vm->regions[i]) > most)
			most = region_parts(&vm->regions[i]);
	return most;
}

int vm_start(struct vm *vm)
{
	if (!atomic_load(&vm->policy_wanted))
		atomic_store(&vm->policy_wanted, policy_find("clock"));
	int pret = policy_build(vm, atomic_load(&vm->policy_wanted));
	if (pret)
		return pret;
	vm->eng.io_buf = mmap(NULL, EVICT_RUN_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vm->eng.io_buf == MAP_FAILED) {
		vm->eng.io_buf = NULL;
		return -ENOMEM;
	}
	vm->eng.largest_page_parts = largest_page_parts(vm);
	int ret = sampler_init(vm);
	if (ret)
		return ret;
	vm_state_adopt_probation(vm);
	accessed_init(vm);
	ret = swap_reads_init(vm);
	if (ret)
		vm_warn(vm, "no io_uring for swap reads (%s): faults on swapped pages read synchronously",
			strerror(-ret));
	ret = pthread_create(&vm->thr.thread, NULL, vm_thread_main, vm);
	if (ret)
		return -ret;
	char comm[16];  /* top -H, ps -L: which VM a thread serves */
	snprintf(comm, sizeof comm, "vm-%.12s", vm->name);
	pthread_setname_np(vm->thr.thread, comm);
	vm->thr.started = true;
	return 0;
}

const char *vm_why_not_evictable(const struct vm *vm)
{
	int drops = atomic_load(&vm->anon.stopped);
	return !vm->evictable ? vm->not_evictable_reason
	       : drops == -EPIPE ? "anonymous private memory: the VMM's drop channel broke"
	       : drops ? "memsrv stops, and the VMM's drop thread did not answer"
	       : vm->unprotected_reason;
}

bool vm_job_waits(struct vm *vm, enum vm_job_kind kind)
{
	pthread_mutex_lock(&vm->thr.job_lock);
	struct vm_job *job = vm->thr.jobs;
	while (job && job->kind != kind)
		job = job->next;
	pthread_mutex_unlock(&vm->thr.job_lock);
	return job != NULL;
}

struct vm_job *vm_take_jobs_of_kind(struct vm *vm, enum vm_job_kind kind)
{
	struct vm_job *taken = NULL, **taken_tail = &taken;
	pthread_mutex_lock(&vm->thr.job_lock);
	struct vm_job **p = &vm->thr.jobs;
	while (*p) {
		struct vm_job *job = *p;
		if (job->kind != kind) {
			p = &job->next;
			continue;
		}
		*p = job->next;
		job->next = NULL;
		*taken_tail = job;
		taken_tail = &job->next;
	}
	vm->thr.jobs_tail = p;
	pthread_mutex_unlock(&vm->thr.job_lock);
	return taken;
}

void vm_post_job(struct vm *vm, struct vm_job *job)
{
	job->next = NULL;
	vm_post_jobs(vm, job);
}

void vm_post_jobs(struct vm *vm, struct vm_job *first)
{
	struct vm_job *last = first;
	while (last->next)
		last = last->next;
	pthread_mutex_lock(&vm->thr.job_lock);
	*vm->thr.jobs_tail = first;
	vm->thr.jobs_tail = &last->next;
	pthread_mutex_unlock(&vm->thr.job_lock);
	uint64_t one = 1;
	if (write(vm->thr.wake_fd, &one, sizeof one) < 0)
		vm_err(vm, "waking the VM thread failed: %s", strerror(errno));
}

struct vm_job *vm_job_new(enum vm_job_kind kind)
{
	struct vm_job *job = calloc(1, sizeof *job);
	if (job) {
		job->kind = kind;
		job->peer_fd = job->urgent_fd = -1;
		job->reply_fd = -1;
	}
	return job;
}

void vm_job_free(struct vm_job *job)
{
	if (job) {
		free(job->dir);
		free(job->address);
		if (job->peer_fd >= 0)
			close(job->peer_fd);
		if (job->urgent_fd >= 0)
			close(job->urgent_fd);
		if (job->begin)
			memsrv__peer_message__free_unpacked(job->begin, NULL);
	}
	free(job);
}

void vm_shutdown(struct vm *vm)
{
	struct vm_job *job = vm_job_new(VM_JOB_SHUTDOWN);
	if (!job || !vm->thr.started) {
		free(job);
		return;
	}
	job->restore = true;
	job->reply_fd = -1;
	vm_post_job(vm, job);
	pthread_join(vm->thr.thread, NULL);
	vm->thr.started = false;
}

void vm_post_wakeup(struct vm *vm)
{
	uint64_t one = 1;
	if (write(vm->thr.wake_fd, &one, sizeof one) < 0)
		vm_err(vm, "waking the VM thread failed: %s", strerror(errno));
}

static void stop_thread(struct vm *vm)
{
	atomic_store(&vm->thr.stopping, true);
	uint64_t one = 1;
	if (write(vm->thr.wake_fd, &one, sizeof one) < 0)
		vm_err(vm, "waking the VM thread failed: %s", strerror(errno));
	pthread_join(vm->thr.thread, NULL);
}

/* Jobs the thread never got to: their requesters get an answer. */
static void refuse_jobs(struct vm *vm)
{
	for (struct vm_job *job = vm->thr.jobs, *next; job; job = next) {
		next = job->next;
		if (job->reply_fd >= 0) {
			wire_send_error(job->reply_fd, ESHUTDOWN, NULL, "VM %s detached before the request ran", vm->name);
			close(job->reply_fd);
		}
		vm_job_free(job);
	}
}

/* Region r's stored pages and clean pages' copies go back to the store,
 * unless drop is false (its pages may still be asked for); its table and
 * fd go either way. */
static void release_region(struct vm *vm, struct region *r, bool drop)
{
	if (drop && vm->persist.header) {
		vm_state_drop_references(vm, r);
	} else if (drop) {
		/* stop at the last page that may hold a reference: a huge
		 * sparse region is not walked */
		uint64_t left = page_table_count(&r->pt, PAGE_STORED) + page_table_count(&r->pt, PAGE_RESIDENT);
		for (uint64_t p = 0; left && p < r->pt.npages; p++) {
			page_entry e = r->pt.entries[p];
			if (pe_state(e) != PAGE_STORED && pe_state(e) != PAGE_RESIDENT)
				continue;
			left--;
			if (pe_holds_object(e))
				store_drop(vm->store, (obj_id)pe_handle(e));
			huge_release(vm, r, p);  /* its parts, stored or kept */
		}
	}
	page_table_destroy(&r->pt);
	page_table_destroy(&r->parts);
	if (r->fd >= 0)
		close(r->fd);
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	if (vm->thr.started)
		stop_thread(vm);
	swap_reads_exit(vm);
	sampler_fini(vm);
	accessed_fini(vm);
	refuse_jobs(vm);
	/* a VM whose pages may still be asked for keeps its state and its
	 * references; any other gives them back, its file first */
	bool drop = !vm->persist.keep && vm->store;
	if (drop && vm->persist.header)
		vm_state_remove(vm);
	for (unsigned i = 0; i < vm->n_regions; i++)
		release_region(vm, &vm->regions[i], drop);
	vm_state_close(vm);
	image_pages_release(vm);
	codec_ctx_destroy(vm->eng.codec_ctx);
	if (vm->eng.policy.ops)
		policy_fini(&vm->eng.policy);
	if (vm->eng.io_buf)
		munmap(vm->eng.io_buf, EVICT_RUN_PAGES * 4096);
	if (vm->eng.page_buf) {
		munmap(vm->eng.page_buf, vm->eng.page_buf_size);
		munmap((void *)vm->eng.zero_buf, vm->eng.page_buf_size);
	}
	if (vm->eng.huge_buf)
		munmap(vm->eng.huge_buf, vm->eng.huge_buf_size);
	if (vm->uffd >= 0)
		close(vm->uffd);
	if (vm->anon.mem_fd >= 0)
		close(vm->anon.mem_fd);
	if (vm->anon.drop_sock >= 0)
		close(vm->anon.drop_sock);
	if (vm->thr.wake_fd >= 0)
		close(vm->thr.wake_fd);
	pthread_mutex_destroy(&vm->thr.job_lock);
	session_out_fini(&vm->out);
	free(vm);
}

struct region *vm_region_of_page(struct vm *vm, uint64_t page)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		if (page >= r->first_page && page - r->first_page < r->pt.npages)
			return r;
	}
	return NULL;
}

struct region *vm_region_of(struct vm *vm, uint64_t addr)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		struct region *r = &vm->regions[i];
		if (addr >= r->host_addr && addr - r->host_addr < r->size)
			return r;
	}
	return NULL;
}

uint64_t vm_count(const struct vm *vm, enum page_state s)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		uint64_t pages = page_table_count(&r->pt, s);
		if (region_is_huge(r) && s == PAGE_STORED)
			pages = 0;  /* a stored huge page is its parts */
		/* a stored huge page's parts, not the copies resident ones keep */
		bool parts = r->parts.entries && (s == PAGE_STORED || s == PAGE_ZERO);
		n += pages * region_parts(r) + (parts ? page_table_count(&r->parts, s) : 0);
	}
	return n;
}

/* Adds what entry e holds in the store to info. */
static void count_entry(struct vm *vm, page_entry e, Memsrv__VmInfo *info)
{
	struct store_peek k;
	if (pe_is_clean(e)) {
		store_peek(vm->store, (obj_id)pe_handle(e), &k);
		info->clean_pages++;
		info->clean_bytes += k.len;
		return;
	}
	if (pe_state(e) != PAGE_STORED)
		return;
	store_peek(vm->store, (obj_id)pe_handle(e), &k);
	if (k.tier == TIER_SAMEFILL) {
		info->samefilled_pages++;
	} else if (k.tier == TIER_CACHE) {
		info->cache_pages++;
		info->cache_bytes += k.len;
	} else if (k.tier == TIER_SWAP) {
		info->swap_pages++;
		info->swap_bytes += k.len;
	} else if (k.tier == TIER_REMOTE) {
		info->remote_tier_pages++;
		info->remote_tier_bytes += k.len;
	}
	info->stored_bytes += k.len;
	if (k.refs > 1) {
		info->shared_pages++;
		info->shared_saved_bytes += (uint64_t)k.len * (k.refs - 1) / k.refs;
	}
}

/* Where this VM's stored pages are, read from its page tables and the
 * store's objects: always true, never kept in step by hand. */
void vm_count_stored(struct vm *vm, Memsrv__VmInfo *info)
{
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		const uint64_t parts = region_parts(r);
		for (uint64_t p = 0; p < r->pt.npages; p++) {
			page_entry e = __atomic_load_n(&r->pt.entries[p], __ATOMIC_RELAXED);
			if (!region_is_huge(r)) {
				count_entry(vm, e, info);
				continue;
			}
			/* a huge page's parts: what it is stored as, or its kept
			 * copy (huge_pages.h); a page never stored has none */
			enum page_state st = pe_state(e);
			if (!r->parts.entries || (st != PAGE_STORED && st != PAGE_RESIDENT))
				continue;
			for (uint64_t q = p * parts; q < (p + 1) * parts; q++)
				count_entry(vm, __atomic_load_n(&r->parts.entries[q], __ATOMIC_RELAXED), info);
		}
	}
}

static void fill_percentiles(const struct latency_hist *h, Memsrv__Percentiles *p)
{
	struct latency_summary s;
	latency_summarize(h, &s);
	memsrv__percentiles__init(p);
	p->p50 = s.p50_us;
	p->p99 = s.p99_us;
	p->count = s.count;
}

void vm_fill_info(struct vm *vm, Memsrv__VmInfo *info, Memsrv__Percentiles pct[VM_INFO_PERCENTILES])
{
	memsrv__vm_info__init(info);
	info->name = vm->name;
	info->pid = vm->pid;
	info->size_bytes = vm->size_bytes;
	info->resident_bytes = ctr_get(&vm->resident_bytes);
	info->never_touched_pages = vm_count(vm, PAGE_NEVER);
	info->zero_pages = vm_count(vm, PAGE_ZERO);
	info->stored_pages = vm_count(vm, PAGE_STORED);
	vm_count_stored(vm, info);
	info->codec = (char *)codec_name((enum codec)atomic_load(&vm->codec));
	info->policy = (char *)atomic_load(&vm->policy_wanted)->name;
	info->node_target_bytes = atomic_load(&vm->quota.node_target_bytes);
	info->active = atomic_load(&vm->quota.active);
	info->working_set_bytes = atomic_load(&vm->quota.working_set_bytes);
	info->idle_bytes = info->resident_bytes > info->working_set_bytes ? info->resident_bytes - info->working_set_bytes : 0;
	info->probation_pages = vm_count(vm, PAGE_PROBATION);
	info->image_pages = image_pages_remaining(vm);
	info->image_dir = vm->image ? vm->image->dir : NULL;
	static const char *const migration_names[] = { NULL, "sending", "stopped", "waiting", "arriving" };
	info->migration = (char *)migration_names[atomic_load(&vm->migration)];
	info->remote_pages = vm_count(vm, PAGE_REMOTE);
	info->migration_round = atomic_load(&vm->migration_round);
	info->migration_pages_left = atomic_load(&vm->migration_pages_left);
	static const char *const balloon_names[] = { "unknown", "yes", "no" };
	info->balloon = (char *)balloon_names[atomic_load(&vm->balloon.answer)];
	info->accessed_off = (char *)accessed_off_reason(atomic_load(&vm->accessed_state));
#define X(name) info->name = ctr_get(&vm->ctr.name);
	VM_COUNTERS(X)
#undef X
	fill_percentiles(&vm->lat_all, &pct[0]);
	fill_percentiles(&vm->lat_never, &pct[1]);
	fill_percentiles(&vm->lat_stored, &pct[2]);
	info->fault_latency_us = &pct[0];
	info->fault_latency_never_touched_us = &pct[1];
	info->fault_latency_stored_us = &pct[2];
	fill_percentiles(&vm->lat_cache, &pct[3]);
	fill_percentiles(&vm->lat_swap, &pct[4]);
	info->fault_latency_cache_us = &pct[3];
	info->fault_latency_swap_us = &pct[4];
	fill_percentiles(&vm->lat_remote, &pct[5]);
	info->fault_latency_remote_us = &pct[5];
	info->guarantee_bytes = vm->quota.guarantee_bytes;
	info->limit_bytes = vm->quota.limit_bytes;
	info->shares = vm->quota.shares;
	info->regions = vm->n_regions;
	info->evictable = vm_can_evict(vm);
	info->not_evictable_reason = info->evictable ? NULL : (char *)vm_why_not_evictable(vm);
	info->page_size = vm->n_regions ? vm->regions[0].page_size : 4096;
	info->balloon_target_bytes = ctr_get(&vm->balloon.target_bytes);
	info->balloon_actual_bytes = ctr_get(&vm->balloon.actual_bytes);
	info->has_balloon_actual_bytes = info->balloon_actual_bytes != 0;
	info->balloon_stopped_bytes = ctr_get(&vm->balloon.stopped_bytes);
	info->has_balloon_stopped_bytes = info->balloon_stopped_bytes != 0;
	info->n_conditions = 0;
	info->conditions = vm->conditions;
	if (vm_count(vm, PAGE_POISONED))
		vm->conditions[info->n_conditions++] = VM_COND_PAGES_POISONED;
	if (atomic_load(&vm->unprotected_by))
		vm->conditions[info->n_conditions++] = VM_COND_UNPROTECTED_MAPPING;
}

int vm_send(struct vm *vm, const Memsrv__ServerMessage *msg)
{
	int ret = session_out_send(&vm->out, vm->session_fd, msg);
	if (ret == -ENOBUFS)
		vm_warn_ratelimited(vm, "the VMM does not read its session and its queue is full: message %d dropped",
				    msg->msg_case);
	return ret;
}

int vm_send_error(struct vm *vm, int errno_code, const char *field, const char *fmt, ...)
{
	struct wire_error e;
	va_list ap;
	va_start(ap, fmt);
	wire_error_vformat(&e, errno_code, field, fmt, ap);
	va_end(ap);
	return vm_send(vm, &e.msg);
}

int region_pread(const struct vm *vm, const struct region *r, uint64_t first, size_t len, void *buf)
{
	bool anon = r->fd < 0;
	int fd = anon ? vm->anon.mem_fd : r->fd;
	uint64_t off = (anon ? r->host_addr : r->fd_offset) + first * r->page_size;
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0 && anon)
			return -EIO;
		if (n == 0) {
			memset((char *)buf + done, 0, len - done);  /* past the end of the file: zeros */
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

int region_drop(struct vm *vm, struct region *r, uint64_t first, uint64_t count)
{
	uint64_t ps = r->page_size;
	if (r->fd < 0)
		return anon_drop(vm, r->host_addr + first * ps, count * ps);
	return fallocate(r->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)(r->fd_offset + first * ps),
			 (off_t)(count * ps)) ? -errno : 0;
}

int vm_writes_trackable(struct vm *vm, const char *or_else, char *why, size_t len)
{
	if (vm->eng.vmm_gone) {
		snprintf(why, len, "VM %s's VMM is gone", vm->name);
		return -ESRCH;
	}
	pid_t other = atomic_load(&vm->unprotected_by);
	if (other) {
		snprintf(why, len, "process %d maps VM %s's RAM outside memsrv's userfaultfd: its writes could not be "
			 "caught", (int)other, vm->name);
		return -EBUSY;
	}
	for (unsigned i = 0; i < vm->n_regions; i++) {
		const struct region *r = &vm->regions[i];
		if (r->fd < 0) {
			snprintf(why, len, "VM %s's region %u (guest address 0x%" PRIx64 ") is anonymous private memory, "
				 "so %s (memsrv snapshots and migrates shared memory: a memfd)", vm->name, i, r->guest_phys_addr,
				 or_else);
			return -EOPNOTSUPP;
		}
		if (region_is_huge(r)) {
			snprintf(why, len, "VM %s's region %u (guest address 0x%" PRIx64 ") holds huge pages, so %s (memsrv "
				 "snapshots and migrates pages of 4 KiB)", vm->name, i, r->guest_phys_addr, or_else);
			return -EOPNOTSUPP;
		}
		if (!r->evictable) {
			snprintf(why, len, "VM %s's region %u (guest address 0x%" PRIx64 ") cannot be write-protected, "
				 "so %s: %s", vm->name, i, r->guest_phys_addr, or_else,
				 vm->not_evictable_reason[0] ? vm->not_evictable_reason : "its memory is not evictable");
			return -EOPNOTSUPP;
		}
	}
	return 0;
}
