/* fuzz_server: one record from a client, through what memsrv does with it
 * before a VM thread or a live VMM is involved.
 *
 * The input is the record's bytes (4-byte little-endian length, payload).
 * It is decoded as the server decodes it (wire_decode_client); a Hello then
 * goes through hello_validate(), every check of hello_accept(), and a
 * control request through control_handle(), against a server with one VM
 * ("vm1", 16 MiB of anonymous memory, never started).
 *
 * A Hello gets fds as a VMM would send them, fresh dups each run:
 *   0 a userfaultfd   1 a 64 MiB memfd (read-write)   2 the memfd read-only
 *   3 a file on a disk filesystem (or tmpfs)   4 a pipe
 * and as many as its regions refer to: 1 + the highest fd_index, at most 5.
 *
 * Besides ASan/UBSan/LSan, each run checks that no fd is left open and that
 * every reply the server sends decodes as a ServerMessage.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "balancer.h"
#include "log.h"
#include "policy.h"
#include "server.h"
#include "store.h"
#include "vm.h"
#include "wire.h"

#define FUZZ_PID 4242          /* the peer's pid: seeds' Hello.pid */
#define FUZZ_FDS 5

static struct server srv;
static struct vm *vm1;
static int hello_fds[FUZZ_FDS];
static int ctl_sock[2], session_sock[2];  /* [0] the server's end, [1] the client's */
static int first_free_fd;  /* at the start of the run (libFuzzer may open fds between runs) */
static bool verbose;  /* FUZZ_LOG set: memsrv's log and each Hello's verdict */

static void die(const char *what)
{
	fprintf(stderr, "fuzz_server setup: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int lowest_free_fd(void)
{
	int fd = dup(0);
	if (fd < 0)
		die("dup");
	close(fd);
	return fd;
}

static void vm1_reset(void)
{
	vm1->quota.guarantee_bytes = 0;
	vm1->quota.shares = 1000;
	atomic_store(&vm1->quota.limit_bytes, 0);
	atomic_store(&vm1->codec, CODEC_LZ4);
	atomic_store(&vm1->policy_wanted, policy_find("clock"));
	atomic_store(&vm1->balloon.target_bytes, 0);
	srv.node_limit = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	verbose = getenv("FUZZ_LOG");
	log_max_level = verbose ? LOG_DEBUG : LOG_ERR;
	struct store_config sc = { .cache_budget = 1 << 20 };
	srv.store = store_create(&sc);
	if (!srv.store)
		die("store_create");
	srv.listen_fd = srv.epoll_fd = srv.signal_fd = srv.balance_fd = -1;
	state_dir_none(&srv.state);
	srv.default_codec = CODEC_LZ4;
	srv.idle_tax = 0.75;
	clock_gettime(CLOCK_MONOTONIC, &srv.started);

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, ctl_sock) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, session_sock))
		die("socketpair");

	vm1 = vm_new(srv.store);
	if (!vm1)
		die("vm_new");
	snprintf(vm1->name, sizeof vm1->name, "vm1");
	vm1->id = ++srv.next_vm_id;
	vm1->pid = FUZZ_PID + 1;
	vm1->session_fd = session_sock[0];
	struct region r = { .host_addr = 0x10000000, .size = 16 << 20, .page_size = 4096,
			    .backing = MEMSRV__BACKING__BACKING_ANON, .fd = -1 };
	char why[256];
	if (vm_add_region(vm1, &r, why, sizeof why))
		die("vm_add_region");
	vm1_reset();
	if (balancer_reserve(&srv))  /* as a Hello does: stats run the balancer's plan */
		die("balancer_reserve");
	srv.vms = vm1;

	hello_fds[0] = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (hello_fds[0] < 0)
		die("userfaultfd (run as root)");
	hello_fds[1] = memfd_create("fuzz-guest-ram", MFD_CLOEXEC);
	if (hello_fds[1] < 0 || ftruncate(hello_fds[1], 64 << 20))
		die("memfd");
	/* a few allocated pages for the attach scan to find */
	static const char page[4096] = "guest";
	for (off_t off = 0; off < (64 << 20); off += 8 << 20)
		if (pwrite(hello_fds[1], page, sizeof page, off) != sizeof page)
			die("pwrite");
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", hello_fds[1]);
	hello_fds[2] = open(path, O_RDONLY | O_CLOEXEC);
	hello_fds[3] = open("/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (hello_fds[3] < 0 || ftruncate(hello_fds[3], 1 << 20))
		die("O_TMPFILE in /var/tmp");
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		die("pipe");
	hello_fds[4] = p[0];
	if (hello_fds[2] < 0)
		die("reopen memfd read-only");
	return 0;
}

/* Reads every reply waiting on sock: each must be a ServerMessage. */
static void drain(int sock)
{
	for (;;) {
		Memsrv__ServerMessage *m = NULL;
		struct wire_fault fault = { "" };
		int ret = wire_recv_server(sock, &m, &fault);
		if (ret == -EAGAIN)
			return;
		if (ret != 1) {
			fprintf(stderr, "a reply does not decode: %d %s\n", ret, fault.what);
			abort();
		}
		memsrv__server_message__free_unpacked(m, NULL);
	}
}

static void fuzz_hello(const Memsrv__Hello *h)
{
	unsigned nfds = 1;
	for (size_t i = 0; i < h->n_regions; i++)
		if (h->regions[i]->has_fd_index && h->regions[i]->fd_index + 1 > nfds)
			nfds = h->regions[i]->fd_index + 1 < FUZZ_FDS ? h->regions[i]->fd_index + 1 : FUZZ_FDS;
	int fds[WIRE_MAX_FDS];
	for (unsigned i = 0; i < nfds; i++)
		if ((fds[i] = fcntl(hello_fds[i], F_DUPFD_CLOEXEC, 0)) < 0)
			die("dup");
	struct conn c = { .fd = -1, .cred = { .pid = FUZZ_PID, .uid = 0, .gid = 0 } };
	int ret = hello_validate(&srv, &c, h, fds, nfds);
	if (verbose)
		fprintf(stderr, "hello %s with %u fds: %s\n", h->name, nfds, ret ? strerror(-ret) : "accepted");
}

static void fuzz_control(const Memsrv__ClientMessage *msg)
{
	int fd = fcntl(ctl_sock[0], F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		die("dup");
	bool taken = false;
	control_handle(&srv, fd, msg, &taken);
	if (taken) {
		/* a job (evict, snapshot) went to vm1's thread, which never runs: answer for it */
		pthread_mutex_lock(&vm1->thr.job_lock);
		struct vm_job *job = vm1->thr.jobs;
		vm1->thr.jobs = NULL;
		vm1->thr.jobs_tail = &vm1->thr.jobs;
		pthread_mutex_unlock(&vm1->thr.job_lock);
		if (!job || job->next || job->reply_fd != fd) {
			fprintf(stderr, "fd taken, but not by one job\n");
			abort();
		}
		close(job->reply_fd);
		vm_job_free(job);
	} else {
		close(fd);
	}
	uint64_t wakeups;
	if (read(vm1->thr.wake_fd, &wakeups, sizeof wakeups) < 0 && errno != EAGAIN)
		die("read wake_fd");
	drain(ctl_sock[1]);
	drain(session_sock[1]);
	vm1_reset();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	first_free_fd = lowest_free_fd();
	Memsrv__ClientMessage *msg = NULL;
	struct wire_fault fault = { "" };
	if (wire_decode_client(data, size, &msg, &fault) != 1)
		return 0;
	switch (msg->msg_case) {
	case MEMSRV__CLIENT_MESSAGE__MSG_HELLO:
		fuzz_hello(msg->hello);
		break;
	case MEMSRV__CLIENT_MESSAGE__MSG_DETACH:
	case MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_RESULT:
	case MEMSRV__CLIENT_MESSAGE__MSG_BALLOON_ACTUAL:
		break;  /* server.c acts on these only on a VMM's session */
	default:
		fuzz_control(msg);
		break;
	}
	memsrv__client_message__free_unpacked(msg, NULL);
	int fd = lowest_free_fd();
	if (fd != first_free_fd) {
		char path[64], target[256];
		snprintf(path, sizeof path, "/proc/self/fd/%d", first_free_fd);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
		fprintf(stderr, "an fd was left open: the lowest free fd is %d, was %d; fd %d is %s\n", fd,
			first_free_fd, first_free_fd, target);
		abort();
	}
	return 0;
}
