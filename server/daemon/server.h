/* server: the listening socket, its connections and the list of VMs.
 *
 * One thread (the caller of server_run) accepts connections, reads every
 * message, validates Hellos (hello.c), answers control requests (control.c)
 * and creates and destroys VMs.  Each VM's faults are served by its own
 * thread (fault.c).
 */
#ifndef MEMSRV_SERVER_H
#define MEMSRV_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "access.h"
#include "codec.h"
#include "memsrv.pb-c.h"
#include "peers.h"
#include "state_dir.h"
#include "store.h"
#include "vm.h"

struct plan_vm;
struct metrics_http;

#define SERVER_DEFAULT_SOCKET "/run/memsrv/memsrv.sock"

/* memsrv's fds, budgeted (server.c): a member's connection is refused when
 * fewer than FD_RESERVE_ADMIN + FD_RESERVE_ATTACH would stay free, and so
 * is a member's Hello, so that root can always connect and attach; an
 * admin's connection when fewer than FD_RESERVE_LAST would; a Hello of
 * anyone's when its fds (at most WIRE_MAX_FDS) and the VM's own would not
 * fit (FD_RESERVE_ATTACH). */
#define FD_RESERVE_LAST 8
#define FD_RESERVE_ADMIN 16
#define FD_RESERVE_ATTACH 80

/* What main.c hands the server. */
struct server_config {
	const char *socket_path;
	struct store_config store;
	enum codec default_codec;
	uint64_t node_limit;     /* all VMs' resident memory plus memsrv's own; 0: none */
	double idle_tax;         /* 0..0.99: how much less an idle VM's shares count */
	struct access_config access;  /* admin_uid is filled in by server_open() */
	const char *state_dir;   /* NULL: a crash loses the evicted pages (state_dir.h) */
	unsigned mapping_scan_ms; /* how often to look for other mappings of guest RAM (mappings.c) */
	struct peers_config peers;  /* --peer-listen, --peer-key (peers.h) */
	bool metrics;            /* --metrics-listen given: serve /metrics there */
	struct peer_addr metrics_listen;
};

struct server {
	char socket_path[108];
	struct store *store;     /* the node's page store, shared by all VMs */
	struct remote_tier *remote;  /* the store's tier in a Redis Cluster (--remote); NULL: none */
	uint64_t node_limit;     /* memsrv-ctl set node limit=... changes it */
	uint64_t configured_node_limit;  /* --node-limit, which a kept node limit replaces only if unchanged */
	double idle_tax;
	int balance_fd;          /* timerfd: the balancer runs ten times a second */
	struct plan_vm *plan;    /* the balancer's numbers, one per VM (balancer_reserve) */
	size_t plan_cap;
	enum codec default_codec;
	int listen_fd, epoll_fd, signal_fd;
	bool socket_activated;   /* listen_fd is systemd's (service.h): it unlinks the path, not memsrv */
	struct access_config access;
	struct vm *vms;          /* server thread only */
	struct state_dir state;  /* dir_fd -1: no --state-dir */
	struct vm *kept;         /* VMs an earlier memsrv served, waiting for their VMM to reconnect */
	bool state_left;         /* server_close() left VM state behind for the next memsrv */
	bool listen_failed;      /* server_open() refused systemd's socket (and logged why) */
	bool state_failed;       /* server_open() failed on the state dir (and logged why) */
	struct peers *peers;     /* the peer thread (peers.h) */
	bool peers_failed;       /* server_open() failed to start it (and logged why) */
	struct metrics_http *metrics; /* --metrics-listen's endpoint; NULL: none */
	bool metrics_failed;     /* server_open() could not listen there (and logged why) */
	unsigned reap_ticks;
	unsigned mapping_scan_ms;
	uint64_t next_mapping_scan_ns;
	struct conn *conns;      /* every open connection, closed at exit */
	unsigned nofile;         /* RLIMIT_NOFILE: what connections are budgeted against */
	int spare_fd;            /* given up to accept and answer a peer when no fd is left */
	bool accept_paused;      /* no fd and no spare: the listening socket waits a tick */
	uint64_t next_vm_id;
	uint64_t sessions_total, protocol_errors;
	struct timespec started;
};

/* A connected peer: a control client until it says Hello, a VMM after. */
struct conn {
	int fd;
	struct ucred cred;
	enum access_role role;
	struct vm *vm;
	struct conn *next, **prev;
};

/* Creates the store and the socket (and its directory), 0 or -errno. */
int server_open(struct server *srv, const struct server_config *cfg);
/* Serves until SIGINT or SIGTERM; 0 or -errno. */
int server_run(struct server *srv);
/* Detaches every VM and removes the socket. */
void server_close(struct server *srv);

struct vm *server_find_vm(struct server *srv, const char *name);

/* memsrv's open fds now (counted in /proc/self/fd; UINT_MAX if it cannot
 * even open that), and its connections. */
unsigned server_fds_in_use(void);
unsigned server_connections(const struct server *srv);

/* The kept VM of that name (state_dir.h), or NULL. */
struct vm *server_find_kept(struct server *srv, const char *name);
/* Drops the kept VMs whose process is gone: nobody will ask for their pages. */
void server_reap_kept(struct server *srv);
/* Takes vm off the kept list; with drop its state and references go too. */
void server_release_kept(struct server *srv, struct vm *vm, bool drop);

/* hello.c: validates a Hello and its fds and attaches the VM.  Takes the fds
 * in every case.  On refusal sends an Error naming the field and returns
 * -errno; on success sends the HelloReply and sets c->vm. */
int hello_accept(struct server *srv, struct conn *c, const Memsrv__Hello *h, int *fds, unsigned nfds);

/* hello.c: the checks of hello_accept() on a VM that is never started nor
 * attached (fuzzing, tests).  Takes the fds in every case; 0 or -errno. */
int hello_validate(struct server *srv, struct conn *c, const Memsrv__Hello *h, int *fds, unsigned nfds);

/* control.c: answers one control request on fd.  Sets *fd_taken when the
 * request went to a VM thread, which then answers and closes fd. */
void control_handle(struct server *srv, int fd, const Memsrv__ClientMessage *msg, bool *fd_taken);

/* control.c: the node's figures, as memsrv-ctl stats shows them; st points
 * into conditions, migrate (names of VMs to move away) and the VMs. */
#define CONTROL_CONDITIONS_MAX 4
#define CONTROL_MIGRATE_MAX 64
void control_fill_stats(struct server *srv, Memsrv__NodeStats *st, char *conditions[CONTROL_CONDITIONS_MAX],
			char *migrate[CONTROL_MIGRATE_MAX]);

/* control.c: a request's peer address (ADDR:PORT) parsed into addr, and
 * the peer thread there to dial it; false when the requester on fd was
 * answered why not (field names the address). */
bool control_peer_target(struct server *srv, int fd, const char *address, const char *field, struct peer_addr *addr);

/* migrate.c: memsrv-ctl migrate, checked and posted to the peer thread,
 * which connects (the fd is taken); and the connections it hands back,
 * each posted to its VM's thread. */
void migrate_request(struct server *srv, int fd, const Memsrv__MigrateRequest *req, bool *fd_taken);
void migrate_take_handoffs(struct server *srv);

#endif
