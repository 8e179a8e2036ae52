/* migrate: the server thread's part of a live migration — the control
 * request on the source, and the connections the peer thread hands over
 * (peers.h), each given to its VM's thread (migrate_out.h, migrate_in.h).
 * The server thread never waits on the network here.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "peer_wire.h"
#include "server.h"
#include "wire.h"

void migrate_request(struct server *srv, int fd, const Memsrv__MigrateRequest *req, bool *fd_taken)
{
	struct vm *vm = server_find_vm(srv, req->name);
	if (!vm) {
		wire_send_error(fd, ENOENT, "migrate.name", "no VM named %s is attached", req->name);
		return;
	}
	struct peer_addr addr;
	if (!control_peer_target(srv, fd, req->address, "migrate.address", &addr))
		return;
	*fd_taken = true;
	peers_post_migrate(srv->peers, &addr, req->address, vm->name, fd);
}

/* Refuses an incoming migration no VM here takes: an Error frame, then
 * the connection goes. */
__attribute__((format(printf, 3, 4)))
static void refuse_peer(struct peer_handoff *h, int err, const char *fmt, ...)
{
	char text[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	pr_warn("peer %s: migration refused: %s", h->address, text);
	peer_send_error(h->fd, err, text);
}

static void hand_to_vm(struct server *srv, struct peer_handoff *h)
{
	const char *name = h->outgoing ? h->vm : h->begin->migrate_begin->name;
	struct vm *vm = server_find_vm(srv, name);
	if (!vm) {
		if (h->outgoing)
			wire_send_error(h->reply_fd, ENOENT, "migrate.name", "VM %s went away before %s answered", name,
					h->address);
		else
			refuse_peer(h, ENOENT, "no VM named %.64s is attached here (attach it with incoming first)", name);
		return;
	}
	struct vm_job *job = vm_job_new(h->outgoing ? VM_JOB_MIGRATE_OUT : VM_JOB_MIGRATE_IN);
	char *address = strdup(h->address);
	if (!job || !address) {
		free(job);
		free(address);
		if (h->outgoing)
			wire_send_error(h->reply_fd, ENOMEM, NULL, "out of memory");
		else
			refuse_peer(h, ENOMEM, "out of memory");
		return;
	}
	job->address = address;
	job->peer_fd = h->fd;
	h->fd = -1;
	job->urgent_fd = h->urgent_fd;
	h->urgent_fd = -1;
	job->reply_fd = h->reply_fd;
	h->reply_fd = -1;
	job->begin = h->begin;
	h->begin = NULL;
	vm_post_job(vm, job);
}

void migrate_take_handoffs(struct server *srv)
{
	for (struct peer_handoff *h = peers_take_handoffs(srv->peers), *next; h; h = next) {
		next = h->next;
		hand_to_vm(srv, h);
		peer_handoff_free(h);
	}
}
