/* metrics_http: the HTTP endpoint of --metrics-listen ADDR:PORT.
 *
 * GET (or HEAD) /metrics answers what render() gives, one request per
 * connection (Connection: close), as a Prometheus scrape expects; any
 * other path is 404, any other method 405, a request past 4 KiB or not
 * whole within METRICS_HTTP_TIMEOUT_MS is dropped.  It runs on the server
 * thread, which owns the figures, through an epoll of its own that the
 * server's epoll watches: every socket is non-blocking, and at most
 * METRICS_HTTP_MAX_CONNS are open (a new one closes the oldest), so a slow
 * or hostile client never holds the thread that serves the VMMs nor keeps
 * a scrape out.
 */
#ifndef MEMSRV_METRICS_HTTP_H
#define MEMSRV_METRICS_HTTP_H

#include "metrics.h"
#include "peer_addr.h"

#define METRICS_HTTP_MAX_CONNS 16
#define METRICS_HTTP_TIMEOUT_MS 5000
#define METRICS_HTTP_MAX_REQUEST 4096

struct metrics_http;

/* Renders the page of a scrape into out: 0 or -errno. */
typedef int (*metrics_render_fn)(void *ctx, struct metrics_text *out);

/* Listens on addr (the log says where).  0, or
 * -errno with the reason logged. */
int metrics_http_open(struct metrics_http **out, const struct peer_addr *addr, metrics_render_fn render, void *ctx);
void metrics_http_close(struct metrics_http *m);  /* NULL: nothing */

/* An fd readable when the endpoint has work: metrics_http_serve() then. */
int metrics_http_fd(const struct metrics_http *m);
void metrics_http_serve(struct metrics_http *m);

/* Drops the connections past their time; called every 100 ms or so. */
void metrics_http_tick(struct metrics_http *m);

#endif
