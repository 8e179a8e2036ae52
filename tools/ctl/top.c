/* top: memsrv-ctl's live view of a node (top.h). */
#include "top.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "ctl_client.h"
#include "exit_status.h"
#include "format.h"
#include "term.h"

#define PROG "memsrv-ctl"
/* A memsrv that stops answering ends the view with an error instead of
 * freezing it (and Ctrl-C with it). */
#define REPLY_TIMEOUT_S 5
/* Longer names are cut: the figures matter more than the name's tail. */
#define NAME_MAX_COLS 24

/* ---- polling ---- */

struct sample {
	Memsrv__ServerMessage *list, *stats;  /* vm_list and node_stats */
	double t;                             /* monotonic seconds at the list's reply */
};

struct failure {
	int status;  /* exit_status.h */
	char message[512];
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sample_free(struct sample *s)
{
	if (s->list)
		memsrv__server_message__free_unpacked(s->list, NULL);
	if (s->stats)
		memsrv__server_message__free_unpacked(s->stats, NULL);
	*s = (struct sample){ 0 };
}

/* Copies s into buf (n bytes) as text output may show it, at most max_cols
 * characters; returns the characters copied. */
static unsigned copy_text(char *buf, size_t n, const char *s, unsigned max_cols)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t used = 0;
	unsigned cols = 0;
	while (*p && cols < max_cols) {
		bool printable;
		size_t len = text_char(p, &printable);
		size_t take = printable ? len : 1;
		if (used + take >= n)
			break;
		if (printable)
			memcpy(buf + used, p, len);
		else
			buf[used] = '?';
		used += take;
		p += len;
		cols++;
	}
	buf[used] = '\0';
	return cols;
}

/* One request on a connection of its own: 0, or a failure's exit status. */
static int request(const char *socket_path, const struct ctl_req *req, Memsrv__ServerMessage__MsgCase want,
		   Memsrv__ServerMessage **reply, struct failure *f)
{
	*reply = NULL;
	int sock = ctl_connect(socket_path);
	if (sock < 0) {
		snprintf(f->message, sizeof f->message, "cannot connect to %s: %s", socket_path, strerror(-sock));
		return f->status = EXIT_NO_SERVER;
	}
	struct timeval timeout = { .tv_sec = REPLY_TIMEOUT_S };
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
	int ret = ctl_call(sock, &req->msg, reply);
	close(sock);
	if (ret == -EAGAIN) {
		snprintf(f->message, sizeof f->message, "no reply from %s within %d s", socket_path, REPLY_TIMEOUT_S);
		return f->status = EXIT_NO_SERVER;
	}
	if (ret < 0) {
		snprintf(f->message, sizeof f->message, "no reply from %s: %s", socket_path, strerror(-ret));
		return f->status = EXIT_NO_SERVER;
	}
	if ((*reply)->msg_case == MEMSRV__SERVER_MESSAGE__MSG_ERROR) {
		copy_text(f->message, sizeof f->message, (*reply)->error->message, UINT_MAX);
		f->status = EXIT_REFUSED;
	} else if ((*reply)->msg_case != want) {
		snprintf(f->message, sizeof f->message, "unexpected reply %d from %s", (int)(*reply)->msg_case,
			 socket_path);
		f->status = EXIT_NO_SERVER;
	} else {
		return 0;
	}
	memsrv__server_message__free_unpacked(*reply, NULL);
	*reply = NULL;
	return f->status;
}

static int take_sample(const char *socket_path, struct sample *s, struct failure *f)
{
	struct ctl_req req;
	ctl_build_list(&req);
	int status = request(socket_path, &req, MEMSRV__SERVER_MESSAGE__MSG_VM_LIST, &s->list, f);
	s->t = now_s();
	if (status)
		return status;
	ctl_build_stats(&req);
	status = request(socket_path, &req, MEMSRV__SERVER_MESSAGE__MSG_NODE_STATS, &s->stats, f);
	if (status)
		sample_free(s);
	return status;
}

/* ---- the view: a sample, with rates against the one before ---- */

struct row {
	const Memsrv__VmInfo *vm;
	double faults_per_s;  /* NAN: not known yet */
};

struct view {
	const Memsrv__NodeStats *node;
	double faults_per_s;
	struct row *rows;  /* by resident memory, largest first */
	size_t n_rows;
};

/* Change of a counter per second; NAN without a previous value, or when
 * the counter went back (not the same VM, or not the same memsrv). */
static double rate(uint64_t now, uint64_t before, double dt)
{
	return dt > 0 && now >= before ? (double)(now - before) / dt : NAN;
}

/* The same VM in the previous sample: the same name and VMM process. */
static const Memsrv__VmInfo *find_vm(const struct sample *s, const Memsrv__VmInfo *vm)
{
	if (!s->list)
		return NULL;
	const Memsrv__VmList *list = s->list->vm_list;
	for (size_t i = 0; i < list->n_vms; i++)
		if (list->vms[i]->pid == vm->pid && !strcmp(list->vms[i]->name, vm->name))
			return list->vms[i];
	return NULL;
}

static int by_resident(const void *a, const void *b)
{
	const struct row *x = a, *y = b;
	if (x->vm->resident_bytes != y->vm->resident_bytes)
		return x->vm->resident_bytes > y->vm->resident_bytes ? -1 : 1;
	return strcmp(x->vm->name, y->vm->name);
}

/* cur is borrowed until view_free. */
static int view_make(struct view *v, const struct sample *cur, const struct sample *prev)
{
	const Memsrv__VmList *list = cur->list->vm_list;
	double dt = cur->t - prev->t;
	v->node = cur->stats->node_stats;
	v->faults_per_s = prev->stats ? rate(v->node->faults_total, prev->stats->node_stats->faults_total, dt) : NAN;
	v->n_rows = list->n_vms;
	v->rows = calloc(list->n_vms ? list->n_vms : 1, sizeof *v->rows);
	if (!v->rows)
		return -ENOMEM;
	for (size_t i = 0; i < list->n_vms; i++) {
		const Memsrv__VmInfo *before = find_vm(prev, list->vms[i]);
		v->rows[i].vm = list->vms[i];
		v->rows[i].faults_per_s = before ? rate(list->vms[i]->faults_total, before->faults_total, dt) : NAN;
	}
	qsort(v->rows, v->n_rows, sizeof *v->rows, by_resident);
	return 0;
}

static void view_free(struct view *v)
{
	free(v->rows);
	*v = (struct view){ 0 };
}

/* ---- rendering: plain text lines, cut to the terminal ---- */

enum { COL_NAME, COL_SIZE, COL_RESIDENT, COL_STORED, COL_FAULTS, COL_P99, COL_TARGET, COL_CONDITIONS, N_COLS };
static const char *const col_titles[N_COLS] = {
	"NAME", "SIZE", "RESIDENT", "STORED", "FAULTS/S", "P99", "TARGET", "CONDITIONS",
};
#define CELL 128

static void format_rate(char *buf, size_t n, double per_s)
{
	if (isnan(per_s))
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, per_s < 10 ? "%.1f" : "%.0f", per_s);
}

/* A latency in microseconds, in the unit that keeps it short. */
static void format_latency(char *buf, size_t n, const Memsrv__Percentiles *p)
{
	if (!p || !p->count)
		snprintf(buf, n, "-");
	else if (p->p99 < 1000)
		snprintf(buf, n, "%.0fus", p->p99);
	else if (p->p99 < 1e6)
		snprintf(buf, n, "%.1fms", p->p99 / 1e3);
	else
		snprintf(buf, n, "%.1fs", p->p99 / 1e6);
}

/* What memsrv holds the VM's resident memory to: the lower of its limit
 * and its node target (vm_limit(), docs/architecture.md); 0: neither. */
static uint64_t vm_target(const Memsrv__VmInfo *vm)
{
	uint64_t limit = vm->limit_bytes, target = vm->node_target_bytes;
	if (!limit || !target)
		return limit ? limit : target;
	return limit < target ? limit : target;
}

static void format_words(char *buf, size_t n, char *const *words, size_t count)
{
	size_t used = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < count && used + 1 < n; i++) {
		if (i)
			buf[used++] = ',';
		copy_text(buf + used, n - used, words[i], UINT_MAX);
		used += strlen(buf + used);
	}
	if (!count)
		snprintf(buf, n, "-");
}

static void row_cells(const struct row *r, char cells[N_COLS][CELL])
{
	const Memsrv__VmInfo *vm = r->vm;
	copy_text(cells[COL_NAME], CELL, vm->name, NAME_MAX_COLS);
	format_size(cells[COL_SIZE], CELL, vm->size_bytes, true);
	format_size(cells[COL_RESIDENT], CELL, vm->resident_bytes, true);
	format_size(cells[COL_STORED], CELL, vm->stored_bytes, true);
	format_rate(cells[COL_FAULTS], CELL, r->faults_per_s);
	format_latency(cells[COL_P99], CELL, vm->fault_latency_us);
	uint64_t target = vm_target(vm);
	if (target)
		format_size(cells[COL_TARGET], CELL, target, true);
	else
		snprintf(cells[COL_TARGET], CELL, "-");
	format_words(cells[COL_CONDITIONS], CELL, vm->conditions, vm->n_conditions);
}

/* Characters (not bytes) of a valid UTF-8 string. */
static unsigned text_cols(const char *s)
{
	unsigned cols = 0;
	for (; *s; s++)
		cols += ((unsigned char)*s & 0xc0) != 0x80;
	return cols;
}

/* A line being built, and the frame it goes into. */
struct line {
	char buf[N_COLS * (CELL + 8) + 512];
	size_t len;
};

static void line_add(struct line *l, const char *s)
{
	size_t n = strlen(s);
	if (n > sizeof l->buf - 1 - l->len)
		n = sizeof l->buf - 1 - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	l->buf[l->len] = '\0';
}

/* s padded to width characters: names left-aligned, figures right. */
static void line_cell(struct line *l, const char *s, unsigned width, bool left)
{
	unsigned pad = width > text_cols(s) ? width - text_cols(s) : 0;
	if (left)
		line_add(l, s);
	for (unsigned i = 0; i < pad; i++)
		line_add(l, " ");
	if (!left)
		line_add(l, s);
}

/* Writes the line cut to cols characters; lines are joined, not ended,
 * by '\n': a newline after the last row would scroll a full screen. */
static void frame_line(FILE *frame, unsigned *lines, const struct line *l, unsigned cols)
{
	if ((*lines)++)
		fputc('\n', frame);
	unsigned c = 0;
	for (const char *p = l->buf; *p; p++) {
		bool starts_char = ((unsigned char)*p & 0xc0) != 0x80;
		if (starts_char && c++ == cols)
			break;
		fputc(*p, frame);
	}
}

static void format_uptime(char *buf, size_t n, double s)
{
	uint64_t t = s > 0 ? (uint64_t)s : 0;
	if (t < 60)
		snprintf(buf, n, "%" PRIu64 "s", t);
	else if (t < 3600)
		snprintf(buf, n, "%" PRIu64 "m%02" PRIu64 "s", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, n, "%" PRIu64 "h%02" PRIu64 "m", t / 3600, t / 60 % 60);
	else
		snprintf(buf, n, "%" PRIu64 "d%02" PRIu64 "h", t / 86400, t / 3600 % 24);
}

/* The node: VMs, resident memory against the node limit, what the store
 * holds in memory and in swap, faults/s, conditions and uptime. */
static void header_line(struct line *l, const struct view *v)
{
	const Memsrv__NodeStats *s = v->node;
	char resident[32], limit[32], cache[32], swap[32], faults[32], up[32], conditions[CELL], buf[512];
	format_size(resident, sizeof resident, s->resident_bytes, true);
	if (s->node_limit_bytes)
		format_size(limit, sizeof limit, s->node_limit_bytes, true);
	else
		snprintf(limit, sizeof limit, "-");
	format_size(cache, sizeof cache, s->cache_bytes, true);
	format_size(swap, sizeof swap, s->swap_bytes, true);
	format_rate(faults, sizeof faults, v->faults_per_s);
	format_uptime(up, sizeof up, s->uptime_s);
	format_words(conditions, sizeof conditions, s->conditions, s->n_conditions);
	snprintf(buf, sizeof buf,
		 "memsrv  %" PRIu32 " VM%s  resident %s  node limit %s%s  cache %s  swap %s  faults/s %s  conditions %s  up %s",
		 s->vms, s->vms == 1 ? "" : "s", resident, limit, s->overloaded ? " (overloaded)" : "", cache, swap,
		 faults, conditions, up);
	line_add(l, buf);
}

/* The frame as lines joined by '\n', at most rows of them, each at most
 * cols characters. */
static void render(FILE *frame, const struct view *v, unsigned cols, unsigned rows)
{
	unsigned lines = 0;
	struct line l = { .len = 0 };
	header_line(&l, v);
	frame_line(frame, &lines, &l, cols);
	if (lines == rows)
		return;

	char cells[N_COLS][CELL];
	unsigned width[N_COLS];
	for (size_t c = 0; c < N_COLS; c++)
		width[c] = text_cols(col_titles[c]);
	for (size_t i = 0; i < v->n_rows; i++) {
		row_cells(&v->rows[i], cells);
		for (size_t c = 0; c < N_COLS; c++)
			if (text_cols(cells[c]) > width[c])
				width[c] = text_cols(cells[c]);
	}
	width[COL_CONDITIONS] = 0;  /* the last column: nothing to align after it */

	l.len = 0;
	for (size_t c = 0; c < N_COLS; c++) {
		if (c)
			line_add(&l, "  ");
		line_cell(&l, col_titles[c], width[c], c == COL_NAME || c == COL_CONDITIONS);
	}
	frame_line(frame, &lines, &l, cols);

	/* the rows that fit; the last line says how many did not */
	size_t room = rows - lines, shown = v->n_rows;
	if (shown > room)
		shown = room ? room - 1 : 0;
	for (size_t i = 0; i < shown; i++) {
		row_cells(&v->rows[i], cells);
		l.len = 0;
		for (size_t c = 0; c < N_COLS; c++) {
			if (c)
				line_add(&l, "  ");
			line_cell(&l, cells[c], width[c], c == COL_NAME || c == COL_CONDITIONS);
		}
		frame_line(frame, &lines, &l, cols);
	}
	if (shown < v->n_rows && lines < rows) {
		char more[64];
		snprintf(more, sizeof more, "(%zu more VMs)", v->n_rows - shown);
		l.len = 0;
		line_add(&l, more);
		frame_line(frame, &lines, &l, cols);
	}
}

/* The frame in a buffer of its own (free it); NULL when out of memory. */
static char *render_frame(const struct view *v, unsigned cols, unsigned rows, size_t *len)
{
	char *text = NULL;
	FILE *frame = open_memstream(&text, len);
	if (!frame)
		return NULL;
	render(frame, v, cols, rows);
	if (fclose(frame) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* ---- the two ways to run ---- */

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Two polls an interval apart, one frame to stdout, whole. */
static int run_once(const struct top_options *o)
{
	struct sample before = { 0 }, after = { 0 };
	struct failure f;
	int status = take_sample(o->socket_path, &before, &f);
	if (!status) {
		sleep_s(o->interval_s);
		status = take_sample(o->socket_path, &after, &f);
	}
	if (status) {
		fprintf(stderr, PROG ": top: %s\n", f.message);
		sample_free(&before);
		return status;
	}
	struct view v;
	size_t len = 0;
	char *text = view_make(&v, &after, &before) ? NULL : render_frame(&v, UINT_MAX, UINT_MAX, &len);
	if (text) {
		fwrite(text, 1, len, stdout);
		fputc('\n', stdout);
	}
	free(text);
	view_free(&v);
	sample_free(&before);
	sample_free(&after);
	if (!text) {
		fprintf(stderr, PROG ": top: %s\n", strerror(ENOMEM));
		return EXIT_FAILURE;
	}
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, PROG ": cannot write output: %s\n", strerror(errno));
		return EXIT_FAILURE;
	}
	return 0;
}

static int draw(const struct view *v, struct failure *f)
{
	unsigned cols, rows;
	term_size(&cols, &rows);
	size_t len;
	char *text = render_frame(v, cols, rows, &len);
	int err = text ? term_draw(text, len) : -ENOMEM;
	free(text);
	if (err) {
		snprintf(f->message, sizeof f->message, "cannot draw: %s", strerror(-err));
		return f->status = EXIT_FAILURE;
	}
	return 0;
}

/* Redrawn in place every interval until the user quits or memsrv fails. */
static int run_live(const struct top_options *o)
{
	int err = term_enter();
	if (err) {
		fprintf(stderr, PROG ": top: cannot watch the terminal: %s\n", strerror(-err));
		return EXIT_FAILURE;
	}
	struct sample prev = { 0 }, cur = { 0 };
	struct view v = { 0 };
	struct failure f;
	int status = 0;
	double next = now_s();
	for (;;) {
		if ((status = take_sample(o->socket_path, &cur, &f)))
			break;
		view_free(&v);
		if (view_make(&v, &cur, &prev)) {
			snprintf(f.message, sizeof f.message, "%s", strerror(ENOMEM));
			status = EXIT_FAILURE;
			break;
		}
		sample_free(&prev);
		prev = cur;  /* v goes on borrowing it */
		cur = (struct sample){ 0 };
		if ((status = draw(&v, &f)))
			break;
		/* on schedule, unless a poll took longer than the interval */
		next += o->interval_s;
		if (next < now_s())
			next = now_s();
		enum term_event e;
		while ((e = term_wait((int)ceil((next - now_s()) * 1000))) == TERM_REDRAW)
			if ((status = draw(&v, &f)))
				break;
		if (status || e == TERM_QUIT)
			break;
	}
	term_leave();
	if (status)
		fprintf(stderr, PROG ": top: %s\n", f.message);
	view_free(&v);
	sample_free(&prev);
	sample_free(&cur);
	return status;
}

int top_run(const struct top_options *o)
{
	return o->once || !isatty(STDOUT_FILENO) ? run_once(o) : run_live(o);
}
