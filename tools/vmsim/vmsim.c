/* memsrv-vmsim: a simulated VM for testing and measuring memsrv.
 *
 * Guest RAM is a memfd filled with synthetic content; the VM attaches it
 * through libmemsrv, runs an access pattern and, with --verify, checks
 * every byte it reads against what it wrote.  With --resume the content
 * comes from a memory image instead (resume.c).
 */
#include "vmsim.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memsrv.h"

/* vmsim has no balloon driver (it says so at attach): it serves no request. */
static const struct memsrv_vmm_ops vmm_ops = { 0 };

void vmsim_server_gone(void)
{
	printf("error server gone\n");
	fflush(stdout);
	/* Nothing to save: a fault on an evicted page would wait forever. */
	exit(VMSIM_EXIT_SERVER_GONE);
}

int vmsim_dispatch(struct vmsim *vm)
{
	int ret = memsrv_session_dispatch(vm->session, &vmm_ops, vm);
	if (ret == -ECONNRESET)
		vmsim_server_gone();
	if (ret < 0) {
		fprintf(stderr, "vmsim %s: dispatch: %s: %s\n", vm->opts.name, strerror(-ret),
			memsrv_last_error());
		/* A session that failed for good (memsrv restarted but refused
		 * to resume it) gives the same error on every call; a bad
		 * message does not repeat. */
		int again = memsrv_session_dispatch(vm->session, &vmm_ops, vm);
		if (again == ret || again == -ECONNRESET)
			vmsim_server_gone();
	}
	return ret;
}

/* Workload tick: answer the server during long runs.  While memsrv is
 * down dispatch has nothing to read and returns 0. */
static void service_session(void *opaque)
{
	struct vmsim *vm = opaque;
	struct pollfd p = { .fd = memsrv_session_fd(vm->session), .events = POLLIN };
	if (poll(&p, 1, 0) > 0)
		vmsim_dispatch(vm);
}

static int attach(struct vmsim *vm)
{
	struct memsrv_region region = {
		.host_addr = vm->ram.base,
		.size = vm->ram.size,
		.fd = vm->ram.fd,
		.fd_offset = 0,
		.guest_phys_addr = 0,
		.page_size = 0,
	};
	struct memsrv_vm desc = {
		.name = vm->opts.name,
		.regions = &region,
		.n_regions = 1,
		.guarantee_bytes = vm->opts.guarantee,
		.limit_bytes = vm->opts.limit,
		.shares = vm->opts.shares,
		.codec = vm->opts.codec,
		.policy = vm->opts.policy,
		.flags = MEMSRV_VM_NO_BALLOON | (vm->opts.incoming ? MEMSRV_VM_INCOMING : 0),
		.snapshot_dir = vm->snapshot_dir,
	};
	double t0 = vmsim_now_s();
	int ret = memsrv_attach(vm->opts.socket, &desc, &vm->session);
	double t1 = vmsim_now_s();
	if (ret < 0) {
		fprintf(stderr, "vmsim %s: attach to %s: %s: %s\n", vm->opts.name, vm->opts.socket,
			strerror(-ret), memsrv_last_error());
		if (vm->opts.interactive)
			printf("error attach: %s: %s\n", strerror(-ret), memsrv_last_error());
		vm->session = NULL;
		return ret;
	}
	vm->work.tick = service_session;
	vm->work.tick_opaque = vm;
	if (vm->snapshot_dir)
		resume_report(vm, t0, t1);
	return 0;
}

int vmsim_finish(struct vmsim *vm)
{
	int status = vm->work.mismatches ? VMSIM_EXIT_MISMATCH : VMSIM_EXIT_OK;
	if (vm->session) {
		vm->work.tick = NULL;
		int ret = memsrv_detach(vm->session, MEMSRV_DETACH_RESTORE);
		vm->session = NULL;
		if (ret < 0) {
			fprintf(stderr, "vmsim %s: detach: %s: %s\n", vm->opts.name, strerror(-ret),
				memsrv_last_error());
			printf("error detach: %s\n", strerror(-ret));
			fflush(stdout);
			/* The RAM is still registered on a uffd nobody serves (memsrv
			 * down, say): unmapping it would wait forever for the unmap
			 * event to be read.  Leave without. */
			exit(VMSIM_EXIT_SETUP);
		}
		printf("restored_pages %d\n", ret);
	}
	return status;
}

/* Without --interactive: the pattern once, then the final verification.
 * fill_s < 0: no fill (a resume). */
static int run_batch(struct vmsim *vm, double fill_s)
{
	static struct run_stats stats;
	if (fill_s >= 0)
		printf("fill_s %.6f\n", fill_s);
	int ret = workload_run(&vm->work, &vm->opts.pattern, &stats);
	if (ret < 0) {
		fprintf(stderr, "vmsim %s: run: %s\n", vm->opts.name, strerror(-ret));
		return VMSIM_EXIT_SETUP;
	}
	run_stats_print(stdout, &stats);
	if (vm->opts.verify) {
		uint64_t bad = workload_verify_all(&vm->work);
		printf("verified_pages %llu\n", (unsigned long long)vm->ram.pages);
		printf("verify_mismatches %llu\n", (unsigned long long)bad);
	}
	uint64_t bytes, pages;
	if (!guest_ram_allocated_bytes(&vm->ram, &bytes) && !guest_ram_resident_pages(&vm->ram, &pages)) {
		printf("memfd_allocated_bytes %llu\n", (unsigned long long)bytes);
		printf("resident_pages %llu\n", (unsigned long long)pages);
	}
	if (vm->session)
		printf("reconnects %llu\n", (unsigned long long)memsrv_session_reconnects(vm->session));
	return vmsim_finish(vm);
}

int main(int argc, char **argv)
{
	static struct vmsim vm;
	int ret = options_parse(argc, argv, &vm.opts);
	if (ret)
		return ret > 0 ? VMSIM_EXIT_OK : VMSIM_EXIT_USAGE;
	if (vm.opts.bench_content)
		return bench_content(&vm.opts.mix, vm.opts.seed);

	uint32_t *saved_versions = NULL;
	if (vm.opts.resume_dir && (ret = resume_load(&vm, &saved_versions)) != VMSIM_EXIT_OK)
		return ret;

	enum guest_ram_kind kind = vm.opts.mergeable ? GUEST_RAM_MERGEABLE
				   : vm.opts.anonymous ? GUEST_RAM_ANONYMOUS
				   : vm.opts.hugetlb ? GUEST_RAM_HUGETLB : GUEST_RAM_MEMFD;
	ret = guest_ram_create(&vm.ram, vm.opts.name, vm.opts.size, kind);
	if (!ret)
		ret = workload_init(&vm.work, &vm.ram, &vm.opts.mix, vm.opts.seed, vm.opts.verify);
	if (ret) {
		fprintf(stderr, "vmsim %s: guest RAM of %llu bytes: %s\n", vm.opts.name,
			(unsigned long long)vm.opts.size, strerror(-ret));
		return VMSIM_EXIT_SETUP;
	}
	if (saved_versions) {
		workload_set_versions(&vm.work, saved_versions);
		free(saved_versions);
	}
	/* By default attach first, so that the fill faults pages in through
	 * memsrv as a booting guest would.  A resumed VM is not filled: its
	 * pages come from the image. */
	double fill_s = vm.opts.resume_dir || vm.opts.incoming ? -1 : 0;
	if (vm.opts.fill_before_attach) {
		double t0 = vmsim_now_s();
		workload_fill(&vm.work);
		fill_s = vmsim_now_s() - t0;
	}
	if (!vm.opts.no_attach && attach(&vm))
		return VMSIM_EXIT_SETUP;
	if (!vm.opts.fill_before_attach && !vm.opts.resume_dir && !vm.opts.incoming) {
		double t0 = vmsim_now_s();
		workload_fill(&vm.work);
		fill_s = vmsim_now_s() - t0;
	}
	if (vm.opts.corrupt_page >= 0)
		workload_corrupt(&vm.work, (uint64_t)vm.opts.corrupt_page);

	ret = vm.opts.bench_discard ? bench_discard(&vm)
	      : vm.opts.interactive ? interactive_run(&vm) : run_batch(&vm, fill_s);
	fflush(stdout);
	workload_destroy(&vm.work);
	guest_ram_destroy(&vm.ram);
	free(vm.snapshot_dir);
	return ret;
}
