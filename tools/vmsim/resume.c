/* resume: a simulated VM saved into a directory and resumed from it.
 *
 * memsrv keeps the memory (memsrv-ctl snapshot VM DIR writes
 * DIR/memory.img); vmsim keeps what it needs to check that memory,
 * DIR/vmsim.state (saved_state.h).  A resume reads the state first, makes
 * RAM of the saved size and attaches it with snapshot_dir = DIR: the pages
 * come from the image as the VM touches them, and every one is checked
 * against the version the source VM had.
 */
#include "vmsim.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "saved_state.h"

double vmsim_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool mix_equal(const struct content_mix *a, const struct content_mix *b)
{
	return !memcmp(a->pct, b->pct, sizeof a->pct) && a->shared_pct == b->shared_pct;
}

/* An option given on the command line must say what the state says: a VM
 * resumed with other content would only show mismatches. */
static int check_against_state(const struct vmsim_options *o, const struct saved_state *st, const char *dir)
{
	if (o->size_given && o->size != st->size) {
		fprintf(stderr, "memsrv-vmsim: --resume %s: --size is %llu bytes, the saved VM had %llu "
			"(leave --size out to take the saved one)\n", dir, (unsigned long long)o->size,
			(unsigned long long)st->size);
		return VMSIM_EXIT_USAGE;
	}
	if (o->seed_given && o->seed != st->seed) {
		fprintf(stderr, "memsrv-vmsim: --resume %s: --seed is %llu, the saved VM had %llu\n", dir,
			(unsigned long long)o->seed, (unsigned long long)st->seed);
		return VMSIM_EXIT_USAGE;
	}
	if (o->mix_given && !mix_equal(&o->mix, &st->mix)) {
		fprintf(stderr, "memsrv-vmsim: --resume %s: --mix or --private-pct differ from the saved VM's\n", dir);
		return VMSIM_EXIT_USAGE;
	}
	if (o->corrupt_page >= 0 && (uint64_t)o->corrupt_page >= st->pages) {
		fprintf(stderr, "memsrv-vmsim: --corrupt-for-test: page beyond the saved VM's %llu\n",
			(unsigned long long)st->pages);
		return VMSIM_EXIT_USAGE;
	}
	return VMSIM_EXIT_OK;
}

int resume_load(struct vmsim *vm, uint32_t **versions)
{
	struct vmsim_options *o = &vm->opts;
	struct saved_state st;
	char why[512];
	*versions = NULL;
	int ret = saved_state_read(o->resume_dir, &st, why, sizeof why);
	if (ret) {
		fprintf(stderr, "memsrv-vmsim: --resume: %s\n", why);
		return VMSIM_EXIT_SETUP;
	}
	int status = check_against_state(o, &st, o->resume_dir);
	/* memsrv opens the image by its absolute path: it runs elsewhere */
	if (status == VMSIM_EXIT_OK && !(vm->snapshot_dir = realpath(o->resume_dir, NULL))) {
		fprintf(stderr, "memsrv-vmsim: --resume %s: %s\n", o->resume_dir, strerror(errno));
		status = VMSIM_EXIT_SETUP;
	}
	if (status != VMSIM_EXIT_OK) {
		free(st.versions);
		return status;
	}
	o->size = st.size;
	o->seed = st.seed;
	o->mix = st.mix;
	*versions = st.versions;
	return VMSIM_EXIT_OK;
}

void resume_report(struct vmsim *vm, double attach_start, double attach_end)
{
	struct workload *w = &vm->work;
	uint64_t page = 0;
	while (page < vm->ram.pages && content_kind_of(page, w->versions[page], &w->mix, w->seed) == CONTENT_ZERO)
		page++;
	printf("attach_s %.6f\n", attach_end - attach_start);
	if (page == vm->ram.pages)
		return;  /* all zeros: nothing comes from the image */
	workload_verify_page(w, page);
	double verified = vmsim_now_s();
	printf("first_page %llu\n", (unsigned long long)page);
	printf("first_page_s %.6f\n", verified - attach_start);
}

int vmsim_save(struct vmsim *vm, const char *dir, char *why, size_t len)
{
	struct saved_state st = {
		.size = vm->ram.size,
		.seed = vm->work.seed,
		.mix = vm->work.mix,
		.pages = vm->ram.pages,
		.versions = vm->work.versions,
	};
	return saved_state_write(dir, &st, why, len);
}

int vmsim_expect(struct vmsim *vm, const char *dir, char *why, size_t len)
{
	struct saved_state st;
	int ret = saved_state_read(dir, &st, why, len);
	if (ret)
		return ret;
	if (st.size != vm->ram.size || st.seed != vm->work.seed || !mix_equal(&st.mix, &vm->work.mix)) {
		snprintf(why, len, "%s/" SAVED_STATE_FILE " is of another VM (size, seed or mix differ)", dir);
		free(st.versions);
		return -EINVAL;
	}
	workload_set_versions(&vm->work, st.versions);
	free(st.versions);
	return 0;
}
