/* top: memsrv-ctl's live view of a node, one row per VM.
 *
 * Polls memsrv with the control protocol's list and stats every interval:
 * a header line of node figures, then the VMs by resident memory, largest
 * first.  faults/s is the change of a VM's fault counter between two polls
 * over the monotonic time between them.  On a terminal the view is redrawn
 * in place (term.h) until q, Ctrl-C or SIGTERM; otherwise, or with once,
 * it polls twice an interval apart and prints one frame as plain text.
 */
#ifndef MEMSRV_CTL_TOP_H
#define MEMSRV_CTL_TOP_H

#include <stdbool.h>

struct top_options {
	const char *socket_path;
	double interval_s;  /* between polls */
	bool once;          /* one plain frame even on a terminal */
};

/* memsrv-ctl's exit status (exit_status.h): 0 when the view was left (q,
 * Ctrl-C, SIGTERM) or the frame printed; EXIT_NO_SERVER when memsrv cannot
 * be reached or went away, EXIT_REFUSED when it refused; the reason is on
 * stderr, after the terminal was given back. */
int top_run(const struct top_options *o);

#endif
