/* setting_hooks: how memsrv applies each setting of the table in
 * proto/settings.h, whichever way the value came — a VMM's Hello,
 * `memsrv-ctl set`, the command line.  The table parses and checks; the
 * hooks here only write a value already checked into a VM, the server, or
 * the configuration memsrv starts with.
 */
#ifndef MEMSRV_SETTING_HOOKS_H
#define MEMSRV_SETTING_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "memsrv.pb-c.h"
#include "remote_setup.h"
#include "server.h"
#include "settings.h"

#define SETTINGS_MAX_SWAPS 16

/* What memsrv's command line says: the server's configuration, and the
 * swap files to create once every option is known (a later usage error
 * must not leave files behind). */
struct memsrv_options {
	struct server_config cfg;
	struct {
		const char *spec;  /* FILE:SIZE or DIR[:SIZE] */
		bool in_dir;       /* --swap-dir */
	} swaps[SETTINGS_MAX_SWAPS];
	int n_swaps;
	struct remote_options remote;  /* --remote, --remote-auth, --node-id */
};

/* A row's apply hooks: the ones its scope and setters call for. */
struct setting_hook {
	void (*vm)(struct vm *vm, uint64_t value);         /* scope VM */
	uint64_t (*vm_get)(struct vm *vm);                 /* scope VM: the value now */
	void (*node)(struct server *srv, uint64_t value);  /* SET_BY_CTL, scope node: at run time */
	/* SET_BY_OPTION: a checked value into the options... */
	void (*option)(struct memsrv_options *o, uint64_t value);
	/* ...or, for a STRING, the option's argument as it is: 0, or -errno
	 * with why (what the table cannot check: a group name)... */
	int (*option_text)(struct memsrv_options *o, const char *text, char *why, size_t len);
	/* ...or, for an on|off switch of the engine, the flag it sets */
	bool *on;
};

const struct setting_hook *setting_hook(enum setting_id id);

/* The options before the command line: the table's defaults. */
void settings_options_init(struct memsrv_options *o);
/* Applies --option TEXT: parsed, checked, hooked.  0, or -errno with why
 * ("'100' is not a percentage 0..99"). */
int settings_apply_option(struct memsrv_options *o, const struct setting *s, const char *text, char *why, size_t len);

/* A Hello's Quota (NULL: none) applied to a VM not yet started: every
 * value checked against the table first, then all applied; absent ones get
 * their defaults (the codec: node_codec).  0, or -EINVAL with *field (the
 * Hello's, "hello.quota.shares") and why. */
int settings_apply_hello(struct vm *vm, const Memsrv__Quota *q, enum codec node_codec, const char **field, char *why,
			 size_t len);

/* memsrv-ctl set VM key=value...: every one parsed and checked (and the
 * limit against the guarantee) before any is applied, so a refused one
 * changes nothing; then all applied and saved for a restarted memsrv.
 * 0, or -EINVAL with why. */
int settings_set_vm(struct vm *vm, char *const *kv, size_t n, char *why, size_t len);
/* memsrv-ctl set node key=value...: the same for the node. */
int settings_set_node(struct server *srv, char *const *kv, size_t n, char *why, size_t len);

#endif
