/* raw_vmm: the pieces of a VMM that speaks memsrv's protocol by hand,
 * without libmemsrv: a userfaultfd set up with the raw syscall and ioctls,
 * and a Hello built field by field, which a test may spoil before it is
 * sent.  Every function asserts. */
#ifndef MEMSRV_TEST_RAW_VMM_H
#define MEMSRV_TEST_RAW_VMM_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"
#include "memsrv.pb-c.h"

/* What a VMM asks of its uffd: the API features and the registration
 * modes.  The Hello declares the same. */
struct raw_mode {
	uint64_t features;
	uint64_t register_modes;
};
/* Missing faults on shared memory. */
extern const struct raw_mode raw_missing;
/* Missing and write-protect faults: how libmemsrv registers where the
 * kernel has it. */
extern const struct raw_mode raw_missing_wp;

/* A userfaultfd (O_CLOEXEC | O_NONBLOCK) after UFFDIO_API with mode's features. */
int raw_uffd(struct raw_mode mode);
/* UFFDIO_REGISTER of [mem, mem + size) with mode's registration modes. */
void raw_register(int uffd, void *mem, size_t size, struct raw_mode mode);

/* A Hello for one memfd region, and the fds it goes with: the uffd, then
 * the region's memfd (fd_index 1). */
struct raw_hello {
	Memsrv__Hello hello;
	Memsrv__Region region, *regions[1];
	int fds[2];
	unsigned nfds;
};

/* A Hello of this process (its pid, this protocol version) for VM name:
 * one region of size bytes at addr, backed by memfd, on uffd. */
void raw_hello_init(struct raw_hello *h, const char *name, struct raw_mode mode, uint64_t addr, size_t size,
		    int uffd, int memfd);
/* Sends h with its fds on a new connection to srv; returns the connection. */
int raw_hello_send(const struct test_server *srv, const struct raw_hello *h);
/* The next message on fd (free with memsrv__server_message__free_unpacked). */
Memsrv__ServerMessage *raw_recv(int fd);
/* Asserts m is a HelloReply (else says the Error's message), and frees it. */
void expect_hello_reply(Memsrv__ServerMessage *m);

#endif
