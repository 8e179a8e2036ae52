/* metrics: memsrv's figures in Prometheus's text exposition format
 * (version 0.0.4), for --metrics-listen's /metrics (metrics_http.h).
 *
 * The figures are those of memsrv-ctl stats and info, read the same way
 * (control_fill_stats, vm_fill_info), named in Prometheus's conventions:
 * base units (bytes, seconds), counters ending in _total, one family per
 * figure with the VM, tier or source as a label.  Figures summed over the
 * attached VMs are gauges or left out: a counter must not fall when a VM
 * detaches.  docs/operations.md lists every family.
 */
#ifndef MEMSRV_METRICS_H
#define MEMSRV_METRICS_H

#include <stdbool.h>
#include <stddef.h>

struct server;

/* A text that grows; failed once an allocation failed (the text is then
 * incomplete and must not be served). */
struct metrics_text {
	char *buf;
	size_t len, cap;
	bool failed;
};

/* Every figure of the node and of each attached VM, appended to out.
 * Server thread.  0, or -ENOMEM. */
int metrics_render(struct server *srv, struct metrics_text *out);

void metrics_text_free(struct metrics_text *t);

#endif
