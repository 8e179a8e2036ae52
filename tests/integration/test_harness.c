/* Description: the harness's own pieces that need no memsrv: the pattern
 * catches one changed word and only in the pages asked about, guest RAM is
 * a memfd that holds what is written, a VMM child that cannot attach says
 * why, and scratch directories go away. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child_vmm.h"
#include "guest.h"
#include "harness.h"

#define PAGE GUEST_PAGE

static uint64_t word_of(size_t page, size_t w, uint64_t gen)
{
	return (uint64_t)page << 32 | w | gen << 60;
}

Test(harness, the_pattern_catches_one_changed_word_in_its_page_only)
{
	struct guest g;
	cr_assert_eq(guest_try_map(&g, "pattern", 16 * PAGE, false), 0);
	pattern_fill(g.mem, 0, 16, word_of, 1);
	cr_assert_eq(pattern_count_bad(g.mem, 0, 16, word_of, 1), 0);
	cr_assert_eq(pattern_count_bad(g.mem, 0, 16, word_of, 2), 16, "another generation is another pattern");
	g.mem[5 * PAGE + PAGE - 1] ^= 1;  /* the last byte of page 5 */
	cr_assert_eq(pattern_count_bad(g.mem, 0, 16, word_of, 1), 1);
	cr_assert_eq(pattern_count_bad(g.mem, 5, 6, word_of, 1), 1);
	cr_assert_eq(pattern_count_bad(g.mem, 0, 5, word_of, 1), 0);
	cr_assert_eq(pattern_count_bad(g.mem, 6, 16, word_of, 1), 0);
	pattern_fill(g.mem, 5, 6, word_of, 1);
	cr_assert_eq(pattern_count_bad(g.mem, 0, 16, word_of, 1), 0, "a fill of one page mends it");
	guest_release(&g);
}

Test(harness, guest_ram_is_a_memfd_that_holds_what_is_written)
{
	struct guest g;
	cr_assert_eq(guest_try_map(&g, "ram", 64 * PAGE, false), 0);
	cr_assert_eq(guest_allocated(&g), 0, "nothing written yet");
	pattern_fill(g.mem, 0, 8, word_of, 0);
	cr_assert_eq(guest_allocated(&g), 8 * PAGE);
	struct stat st;
	cr_assert_eq(fstat(g.fd, &st), 0);
	cr_assert_eq(st.st_size, 64 * PAGE);
	guest_release(&g);
}

static void attach_nowhere(void *arg, int cmd, int ans)
{
	(void)arg;
	(void)cmd;
	struct guest g;
	child_guest_map(&g, ans, "nowhere", 4 * PAGE, false);
	child_guest_attach(&g, ans, "/nonexistent/memsrv.sock", "nowhere", NULL);
	child_say_ready(ans, &g);
	_exit(0);
}

Test(harness, a_vmm_child_that_cannot_attach_says_why)
{
	struct test_child c;
	child_fork(&c, attach_nowhere, NULL);
	struct child_ready r;
	cr_assert(child_vmm_wait_ready(&c, &r, 10000), "the child said nothing");
	cr_assert_lt(r.err, 0);
	cr_assert(!strncmp(r.why, "attach: ", 8), "why: %s", r.why);
	cr_assert_eq(wait_exit(c.pid), 1);
	close(c.cmd);
	close(c.ans);
}

static void say_ready_and_wait(void *arg, int cmd, int ans)
{
	(void)arg;
	struct guest g;
	child_guest_map(&g, ans, "ready", 4 * PAGE, false);
	child_say_ready(ans, &g);
	char c;
	_exit(read(cmd, &c, 1) == 1 ? 0 : 2);
}

Test(harness, a_vmm_child_says_where_its_ram_is_and_dies_when_killed)
{
	struct test_child c;
	child_fork(&c, say_ready_and_wait, NULL);
	struct child_ready r;
	cr_assert(child_vmm_wait_ready(&c, &r, 10000));
	cr_assert_eq(r.err, 0, "%s", r.why);
	cr_assert_geq(r.memfd, 0);
	cr_assert_neq(r.base, 0);
	char buf[1];
	cr_assert_not(read_full(c.ans, buf, 1, 100), "nothing more to read: the wait times out");
	cr_assert_eq(child_kill(&c), 128 + SIGKILL);
	cr_assert_eq(c.pid, 0);
}

Test(harness, a_scratch_directory_goes_away)
{
	char dir[64];
	cr_assert(scratch_make(dir, sizeof dir, "/tmp/memsrv-harness.XXXXXX"));
	char file[128];
	snprintf(file, sizeof file, "%s/in-it", dir);
	cr_assert(write_long(file, 42));
	cr_assert_eq(read_long(file), 42);
	char kept[64];
	snprintf(kept, sizeof kept, "%s", dir);
	scratch_remove(dir);
	cr_assert_eq(dir[0], 0);
	cr_assert_eq(access(kept, F_OK), -1, "%s is still there", kept);
	cr_assert_eq(read_long(file), -1);
	cr_assert_not(scratch_make(dir, sizeof dir, "/nonexistent/x.XXXXXX"));
	cr_assert_eq(dir[0], 0);
}
