/* attach: the smallest VMM, built by check-packages against the installed
 * libmemsrv-dev (cc attach.c $(pkg-config --cflags --libs memsrv)).
 *
 *   attach SOCKET NAME MIB
 *
 * Attaches NAME with MIB MiB of memfd guest RAM, writes every page and
 * prints "attached". Then, for each line on stdin:
 *   verify   reads every page back (evicted ones come through memsrv's
 *            faults) and prints "verified N bad" (N pages with the wrong
 *            content)
 *   detach   memsrv_detach(MEMSRV_DETACH_RESTORE), prints "detached R"
 *            (R pages restored) and exits
 * Any failure: one line on stderr, exit 1.
 */
#define _GNU_SOURCE  /* memfd_create */
#include <memsrv.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096u

/* a word per page and offset: no two pages alike, none zero, so memsrv
 * neither shares nor frees them and every page round-trips its store */
static uint64_t word(uint64_t page, uint64_t w)
{
	return (page + 1) * 0x9e3779b97f4a7c15ull ^ (w << 32 | w);
}

static uint64_t count_bad(const unsigned char *mem, uint64_t pages)
{
	uint64_t bad = 0;
	for (uint64_t p = 0; p < pages; p++) {
		const uint64_t *words = (const uint64_t *)(mem + p * PAGE);
		for (uint64_t w = 0; w < PAGE / 8; w++)
			if (words[w] != word(p, w)) {
				bad++;
				break;
			}
	}
	return bad;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: attach SOCKET NAME MIB\n");
		return 2;
	}
	uint64_t size = strtoull(argv[3], NULL, 10) << 20;
	uint64_t pages = size / PAGE;
	int fd = memfd_create(argv[2], MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
		perror("attach: guest RAM");
		return 1;
	}
	unsigned char *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (mem == MAP_FAILED) {
		perror("attach: mmap");
		return 1;
	}

	struct memsrv_region region = { .host_addr = mem, .size = size, .fd = fd };
	struct memsrv_vm vm = {
		.name = argv[2],
		.regions = &region,
		.n_regions = 1,
		.flags = MEMSRV_VM_NO_BALLOON,  /* so memsrv sends nothing to serve */
	};
	struct memsrv_session *s;
	int ret = memsrv_attach(argv[1], &vm, &s);
	if (ret < 0) {
		fprintf(stderr, "attach: memsrv_attach: %s (%s)\n", strerror(-ret), memsrv_last_error());
		return 1;
	}
	for (uint64_t p = 0; p < pages; p++)
		for (uint64_t w = 0; w < PAGE / 8; w++)
			((uint64_t *)(mem + p * PAGE))[w] = word(p, w);
	printf("attached\n");
	fflush(stdout);

	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		if (!strcmp(line, "verify\n")) {
			printf("verified %llu bad\n", (unsigned long long)count_bad(mem, pages));
		} else if (!strcmp(line, "detach\n")) {
			ret = memsrv_detach(s, MEMSRV_DETACH_RESTORE);
			if (ret < 0) {
				fprintf(stderr, "attach: memsrv_detach: %s (%s)\n", strerror(-ret), memsrv_last_error());
				return 1;
			}
			printf("detached %d\n", ret);
			return 0;
		} else {
			fprintf(stderr, "attach: unknown command %s", line);
			return 1;
		}
		fflush(stdout);
	}
	fprintf(stderr, "attach: stdin closed before detach\n");
	return 1;
}
