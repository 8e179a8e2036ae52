/* guest: guest RAM as a VMM of the test's own holds it (a memfd mapped
 * shared, attached through libmemsrv) and the known pattern a test fills it
 * with and checks it against.
 *
 * The guest_try_* functions assert nothing and return 0 or -errno: a VMM
 * in a forked child uses them, where a failed assertion would report from
 * the wrong process.  The others assert, for the test's own process. */
#ifndef MEMSRV_TEST_GUEST_H
#define MEMSRV_TEST_GUEST_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "memsrv.h"

#define GUEST_PAGE 4096u

/* A test's pattern: the 64-bit word w of page `page`, in generation gen
 * (a test that fills the same pages twice tells its fills apart by it). */
typedef uint64_t pattern_word_fn(size_t page, size_t w, uint64_t gen);

/* A pattern of every kind of page memsrv treats apart: every 7th page all
 * zero, every 11th one word repeated, the rest distinct and compressible. */
uint64_t pattern_mixed(size_t page, size_t w, uint64_t gen);

/* Writes the pattern into pages [from_page, to_page) of mem. */
void pattern_fill(uint8_t *mem, size_t from_page, size_t to_page, pattern_word_fn *word, uint64_t gen);
/* How many of pages [from_page, to_page) of mem differ from the pattern. */
size_t pattern_count_bad(const uint8_t *mem, size_t from_page, size_t to_page, pattern_word_fn *word, uint64_t gen);

struct guest {
	int fd;                   /* the memfd behind guest RAM */
	uint8_t *mem;             /* mapped shared, size bytes */
	size_t size;
	struct memsrv_session *s; /* once attached */
};

/* A memfd of size bytes named name, mapped shared; huge: on hugetlbfs,
 * mapped MAP_NORESERVE (2 MiB pages, not reserved ahead). */
int guest_try_map(struct guest *g, const char *name, size_t size, bool huge);
/* Attaches g's memory, one region, as VM name.  settings gives the rest of
 * the VM (quota, codec, flags); its name and regions are ignored.  NULL:
 * the defaults. */
int guest_try_attach(struct guest *g, const char *sock, const char *name, const struct memsrv_vm *settings);

/* Both, asserting: a guest of size bytes attached to srv as VM name. */
void guest_attach(struct guest *g, const struct test_server *srv, const char *name, size_t size,
		  const struct memsrv_vm *settings);
/* The bytes the memfd holds: what is resident, seen from outside memsrv. */
uint64_t guest_allocated(const struct guest *g);
/* Unmaps and closes guest RAM; the session is the caller's to detach first. */
void guest_release(struct guest *g);

/* n more 2 MiB huge pages in the pool for the test; returns the count
 * before, to give back with guest_restore_hugepages(), or skips the test
 * where they cannot be had. */
long guest_reserve_hugepages(long n);
void guest_restore_hugepages(long before);  /* nothing for before < 0 */

#endif
