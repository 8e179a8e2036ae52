/* mappings: finds processes that map a VM's RAM outside its userfaultfd,
 * and stops eviction for that VM while they do (mappings.c says why).
 * Server thread only.
 */
#ifndef MEMSRV_MAPPINGS_H
#define MEMSRV_MAPPINGS_H

#include "server.h"

#define MAPPINGS_DEFAULT_SCAN_MS 1000

/* Reads every process's maps once and marks or clears each VM's
 * unprotected_by; a VM that becomes unprotected gets its pages back. */
void mappings_scan(struct server *srv);

#endif
