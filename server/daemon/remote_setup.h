/* remote_setup: --remote, --remote-auth and --node-id made into the store's
 * remote tier (server/store/remote_tier.h). */
#ifndef MEMSRV_REMOTE_SETUP_H
#define MEMSRV_REMOTE_SETUP_H

#include <stddef.h>

#include "remote_tier.h"

struct remote_options {
	const char *seeds;     /* --remote HOST:PORT[,HOST:PORT...]; NULL: no remote tier */
	const char *auth_file; /* --remote-auth FILE: PASSWORD, or USER PASSWORD */
	const char *node_id;   /* --node-id; NULL: the hostname */
	const char *state_dir; /* --state-dir, NULL: none (the claim's token: remote_alive.h) */
};

/* Opens the tier the options name: 0 with *out (NULL when --remote was not
 * given), or -errno with why ("--remote: ..."); -EINVAL for options that
 * can never work (a usage error). */
int remote_setup_open(const struct remote_options *o, struct remote_tier **out, char *why, size_t len);
void remote_setup_close(struct remote_tier *rt);

#endif
