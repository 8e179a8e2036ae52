// uffd_floor: the floor for a userfaultfd memory server on this machine.
// Measures, per 4 KiB page: kernel first-touch, a minimal uffd handler in a
// separate process (ZEROPAGE / COPY, anon and memfd), LZ4 / zstd decode, and
// an io_uring 4 KiB read.  Prints "name ns_per_page" lines.
// Build: cc -O2 -o uffd_floor uffd_floor.c -llz4 -lzstd -luring -lpthread
//
// memsrv's copy of the team's shared measurement tool (tools/uffd_floor.c of
// the workspace's shared tools), taken unchanged but for this note and the
// _GNU_SOURCE guard: meson builds it as tools/uffd_floor, and the benchmarks
// (memsrv-bench, bench-faults, bench-tiers) run that binary.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  /* meson defines it already */
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <liburing.h>
#include <lz4.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define PG 4096UL
static size_t npages = 65536;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int uffd_open(void) {
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) { perror("userfaultfd"); exit(1); }
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    if (ioctl(fd, UFFDIO_API, &api)) { perror("UFFDIO_API"); exit(1); }
    return fd;
}

static void send_fd(int sock, int fd) {
    char c = 0;
    struct iovec iov = { &c, 1 };
    char buf[CMSG_SPACE(sizeof(int))];
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    if (sendmsg(sock, &m, 0) < 0) { perror("sendmsg"); exit(1); }
}

static int recv_fd(int sock) {
    char c;
    struct iovec iov = { &c, 1 };
    char buf[CMSG_SPACE(sizeof(int))];
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf, .msg_controllen = sizeof buf };
    if (recvmsg(sock, &m, 0) <= 0) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof(int));
    return fd;
}

// The handler process: serves every fault with ZEROPAGE or COPY until EOF.
static int spin;  // 1: busy-poll the uffd instead of poll(2)
static void handler(int sock, int use_copy) {
    int uffd = recv_fd(sock);
    fcntl(sock, F_SETFL, O_NONBLOCK);
    char *src = aligned_alloc(PG, 16 * PG);
    memset(src, 0x5a, 16 * PG);
    struct uffd_msg msg;
    for (;;) {
        if (spin) {
            if (read(uffd, &msg, sizeof msg) != sizeof msg) {
                char c;
                if (read(sock, &c, 1) == 0) break;
                continue;
            }
        } else {
            struct pollfd p[2] = { { uffd, POLLIN, 0 }, { sock, POLLIN, 0 } };
            if (poll(p, 2, -1) < 0) continue;
            if (p[1].revents) break;
            if (read(uffd, &msg, sizeof msg) != sizeof msg) continue;
        }
        if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
        unsigned long a = msg.arg.pagefault.address & ~(PG - 1);
        if (use_copy == 2) {  // fault-around: fill the aligned 64 KiB block (pages already there: EEXIST)
            unsigned long b = a & ~(16 * PG - 1);
            for (unsigned long d = b; d < b + 16 * PG; d += PG) {
                if (d == a) continue;
                struct uffdio_copy cp = { .dst = d, .src = (unsigned long)src, .len = PG, .mode = UFFDIO_COPY_MODE_DONTWAKE };
                if (ioctl(uffd, UFFDIO_COPY, &cp) && errno != EEXIST) { perror("COPY"); exit(1); }
            }
            struct uffdio_copy cp = { .dst = a, .src = (unsigned long)src, .len = PG };
            if (ioctl(uffd, UFFDIO_COPY, &cp)) {
                if (errno != EEXIST) { perror("COPY"); exit(1); }
                struct uffdio_range w = { a, PG };   // the page was filled by an earlier fault-around: wake the waiter
                ioctl(uffd, UFFDIO_WAKE, &w);
            }
        } else if (use_copy) {
            struct uffdio_copy cp = { .dst = a, .src = (unsigned long)src, .len = PG };
            if (ioctl(uffd, UFFDIO_COPY, &cp) && errno != EEXIST) { perror("COPY"); exit(1); }
        } else {
            struct uffdio_zeropage z = { .range = { a, PG } };
            if (ioctl(uffd, UFFDIO_ZEROPAGE, &z) && errno != EEXIST) { perror("ZERO"); exit(1); }
        }
    }
    exit(0);
}

static double touch(char *mem) {
    double t0 = now();
    for (size_t i = 0; i < npages; i++) ((volatile char *)mem)[i * PG] = 1;
    return (now() - t0) / npages;
}

static char *region(int shmem) {
    if (!shmem)
        return mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int fd = memfd_create("ram", 0);
    if (ftruncate(fd, npages * PG)) exit(1);
    return mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
}

static double uffd_run(int shmem, int use_copy) {
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) { close(sv[0]); handler(sv[1], use_copy); }
    close(sv[1]);
    char *mem = region(shmem);
    int uffd = uffd_open();
    struct uffdio_register r = { .range = { (unsigned long)mem, npages * PG }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(uffd, UFFDIO_REGISTER, &r)) { perror("REGISTER"); exit(1); }
    send_fd(sv[0], uffd);
    double ns = touch(mem);
    close(sv[0]);
    waitpid(pid, NULL, 0);
    munmap(mem, npages * PG);
    close(uffd);
    return ns;
}

// Page-like content: a mix of text, code and zero runs read from this binary and /usr/bin.
static char *corpus(size_t n) {
    char *buf = aligned_alloc(PG, n * PG);
    const char *files[] = { "/usr/bin/gcc-12", "/usr/lib/x86_64-linux-gnu/libc.so.6", "/usr/share/dict/words",
                            "/etc/services", "/usr/bin/qemu-system-x86_64" };
    size_t off = 0;
    for (int f = 0; off < n * PG; f = (f + 1) % 5) {
        int fd = open(files[f], O_RDONLY);
        if (fd < 0) continue;
        ssize_t got = pread(fd, buf + off, (n * PG - off) < (1 << 22) ? n * PG - off : (1 << 22), 0);
        close(fd);
        if (got > 0) off += got;
    }
    for (size_t i = 0; i < n; i += 4) memset(buf + i * PG + PG / 2, 0, PG / 2);  // some half-empty pages
    return buf;
}

static void codec(void) {
    size_t n = 16384;
    char *in = corpus(n);
    char *out = malloc(n * (PG + 64));
    int *len = malloc(n * sizeof(int));
    char page[PG];
    double t0 = now();
    size_t tot = 0;
    for (size_t i = 0; i < n; i++) { len[i] = LZ4_compress_default(in + i * PG, out + i * (PG + 64), PG, PG + 64); tot += len[i]; }
    double c = (now() - t0) / n;
    t0 = now();
    for (size_t i = 0; i < n; i++) LZ4_decompress_safe(out + i * (PG + 64), page, len[i], PG);
    double d = (now() - t0) / n;
    printf("lz4_compress_4k %.0f\nlz4_decompress_4k %.0f\nlz4_ratio %.2f\n", c, d, (double)n * PG / tot);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    t0 = now(); tot = 0;
    for (size_t i = 0; i < n; i++) { len[i] = ZSTD_compressCCtx(cc, out + i * (PG + 64), PG + 64, in + i * PG, PG, 1); tot += len[i]; }
    c = (now() - t0) / n;
    t0 = now();
    for (size_t i = 0; i < n; i++) ZSTD_decompressDCtx(dc, page, PG, out + i * (PG + 64), len[i]);
    d = (now() - t0) / n;
    printf("zstd1_compress_4k %.0f\nzstd1_decompress_4k %.0f\nzstd1_ratio %.2f\n", c, d, (double)n * PG / tot);
}

static void uring(void) {
    const char *path = "/tmp/uffd_floor.swap";
    size_t n = 16384;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    char *buf = aligned_alloc(PG, PG * 64);
    memset(buf, 7, PG * 64);
    for (size_t i = 0; i < n; i += 64) if (pwrite(fd, buf, PG * 64, i * PG) < 0) exit(1);
    fsync(fd);
    struct io_uring ring;
    io_uring_queue_init(64, &ring, 0);
    for (int direct = 0; direct < 2; direct++) {
        int rfd = direct ? open(path, O_RDONLY | O_DIRECT) : fd;
        double t0 = now();
        for (size_t i = 0; i < n; i++) {
            size_t slot = (i * 7919) % n;
            struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
            io_uring_prep_read(sqe, rfd, buf, PG, slot * PG);
            io_uring_submit(&ring);
            struct io_uring_cqe *cqe;
            io_uring_wait_cqe(&ring, &cqe);
            if (cqe->res != (int)PG) { fprintf(stderr, "read %d\n", cqe->res); exit(1); }
            io_uring_cqe_seen(&ring, cqe);
        }
        printf("%s %.0f\n", direct ? "uring_read_4k_odirect_qd1" : "uring_read_4k_cached_qd1", (now() - t0) / n);
        if (direct) close(rfd);
    }
    io_uring_queue_exit(&ring);
    close(fd);
    unlink(path);
}

int main(int argc, char **argv) {
    if (argc > 1) npages = strtoul(argv[1], NULL, 0);
    char *m = region(0);
    printf("kernel_anon_first_touch %.0f\n", touch(m));
    munmap(m, npages * PG);
    m = region(1);
    printf("kernel_memfd_first_touch %.0f\n", touch(m));
    munmap(m, npages * PG);
    printf("uffd_zeropage_anon_xproc %.0f\n", uffd_run(0, 0));
    printf("uffd_copy_anon_xproc %.0f\n", uffd_run(0, 1));
    printf("uffd_copy_memfd_xproc %.0f\n", uffd_run(1, 1));
    printf("uffd_copy_anon_xproc_faultaround64k %.0f\n", uffd_run(0, 2));
    spin = 1;
    printf("uffd_copy_anon_xproc_spin %.0f\n", uffd_run(0, 1));
    codec();
    uring();
    return 0;
}
