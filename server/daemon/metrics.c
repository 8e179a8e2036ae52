/* metrics: memsrv's figures in Prometheus's text format (metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latency.h"
#include "server.h"
#include "vm.h"

static void put(struct metrics_text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct metrics_text *t, const char *fmt, ...)
{
	for (;;) {
		if (t->failed)
			return;
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->buf && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap : 16384;
		while (cap <= t->len + (size_t)n)
			cap *= 2;
		char *buf = realloc(t->buf, cap);
		if (!buf) {
			t->failed = true;
			return;
		}
		t->buf = buf;
		t->cap = cap;
	}
}

static void family(struct metrics_text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label's value: backslash, double quote and newline escaped, as the
 * format asks (a VM's name is the VMM's to choose). */
static void put_label_value(struct metrics_text *t, const char *v)
{
	put(t, "\"");
	for (; *v; v++) {
		if (*v == '\\')
			put(t, "\\\\");
		else if (*v == '"')
			put(t, "\\\"");
		else if (*v == '\n')
			put(t, "\\n");
		else
			put(t, "%c", *v);
	}
	put(t, "\"");
}

/* name{vm="..."[,key="value"] — the labels left open, for more */
static void open_vm_series(struct metrics_text *t, const char *name, const char *vm, const char *key,
			   const char *value)
{
	put(t, "%s{vm=", name);
	put_label_value(t, vm);
	if (key) {
		put(t, ",%s=", key);
		put_label_value(t, value);
	}
}

/* name{vm="..."[,key="value"]} v */
static void vm_sample(struct metrics_text *t, const char *name, const char *vm, const char *key, const char *value,
		      uint64_t v)
{
	open_vm_series(t, name, vm, key, value);
	put(t, "} %" PRIu64 "\n", v);
}

/* ---- the node ---- */

enum field_kind { F_U64, F_U32, F_BOOL, F_DOUBLE };

struct field_metric {
	const char *name, *type, *help;
	size_t offset;
	enum field_kind kind;
};

/* A whole field's value (F_DOUBLE: none, see put_field). */
static uint64_t field_value(const void *msg, const struct field_metric *f)
{
	const char *p = (const char *)msg + f->offset;
	switch (f->kind) {
	case F_U64: return *(const uint64_t *)p;
	case F_U32: return *(const uint32_t *)p;
	case F_BOOL: return *(const protobuf_c_boolean *)p ? 1 : 0;
	case F_DOUBLE: break;
	}
	return 0;
}

/* " value\n", whole numbers exact */
static void put_field(struct metrics_text *t, const void *msg, const struct field_metric *f)
{
	if (f->kind == F_DOUBLE)
		put(t, " %.6f\n", *(const double *)((const char *)msg + f->offset));
	else
		put(t, " %" PRIu64 "\n", field_value(msg, f));
}

#define NODE(name, type, field, kind, help) { name, type, help, offsetof(Memsrv__NodeStats, field), kind }

static const struct field_metric node_metrics[] = {
	NODE("memsrv_vms", "gauge", vms, F_U32, "VMs attached now"),
	NODE("memsrv_size_bytes", "gauge", size_bytes, F_U64, "guest RAM of the attached VMs"),
	NODE("memsrv_resident_bytes", "gauge", resident_bytes, F_U64, "the attached VMs' resident guest RAM"),
	NODE("memsrv_node_limit_bytes", "gauge", node_limit_bytes, F_U64,
	     "all VMs' resident memory plus memsrv's own may not pass it (0: no limit)"),
	NODE("memsrv_overhead_bytes", "gauge", overhead_bytes, F_U64, "memsrv's own memory: cache pool and page tables"),
	NODE("memsrv_assigned_bytes", "gauge", assigned_bytes, F_U64, "all VMs' configured memory"),
	NODE("memsrv_guaranteed_bytes", "gauge", guaranteed_bytes, F_U64, "all VMs' guarantees"),
	NODE("memsrv_entitled_bytes", "gauge", entitled_bytes, F_U64, "what the balancer handed out of the node limit"),
	NODE("memsrv_overcommitted", "gauge", overcommitted, F_BOOL,
	     "1 while assigned memory plus overhead reaches the node limit (allowed)"),
	NODE("memsrv_overloaded", "gauge", overloaded, F_BOOL,
	     "1 while memory in use (or guaranteed) plus overhead reaches the node limit: VMs should move away"),
	NODE("memsrv_cache_pool_bytes", "gauge", cache_pool_bytes, F_U64, "memory the compressed cache's pool holds"),
	NODE("memsrv_cache_budget_bytes", "gauge", cache_budget_bytes, F_U64,
	     "the compressed cache's budget (--cache-size; 0: none)"),
	NODE("memsrv_swap_size_bytes", "gauge", swap_size_bytes, F_U64, "the swap files' size (0: no swap)"),
	NODE("memsrv_swap_used_bytes", "gauge", swap_used_bytes, F_U64, "what the objects in swap take in its files"),
	NODE("memsrv_shared_pages", "gauge", shared_pages, F_U64, "stored pages whose content another page shares"),
	NODE("memsrv_shared_saved_bytes", "gauge", shared_saved_bytes, F_U64, "cache bytes not held thanks to sharing"),
	NODE("memsrv_dedup_hits_total", "counter", dedup_hits, F_U64, "pages stored as a twin of an object held already"),
	NODE("memsrv_hash_collisions_total", "counter", hash_collisions, F_U64,
	     "pages whose hash matched an object of other content: never shared"),
	NODE("memsrv_writeback_objects_total", "counter", writeback_objects, F_U64, "objects moved from the cache to swap"),
	NODE("memsrv_swap_write_errors_total", "counter", swap_write_errors, F_U64,
	     "failed writes to swap: the pages stayed in the cache"),
	NODE("memsrv_swap_read_errors_total", "counter", swap_read_errors, F_U64, "failed reads from swap"),
	NODE("memsrv_swap_checksum_errors_total", "counter", swap_checksum_errors, F_U64,
	     "reads from swap that handed back other data than written: refused"),
	NODE("memsrv_remote_uploads_total", "counter", remote_uploads, F_U64,
	     "objects sent to the remote tier's cluster (acknowledged by a replica)"),
	NODE("memsrv_remote_upload_bytes_total", "counter", remote_upload_bytes, F_U64,
	     "bytes of the objects sent to the cluster"),
	NODE("memsrv_remote_shared_total", "counter", remote_shared, F_U64,
	     "objects the cluster held already, from any host: referenced, not sent"),
	NODE("memsrv_remote_upload_errors_total", "counter", remote_upload_errors, F_U64,
	     "objects no replica acknowledged: they stayed in the cache"),
	NODE("memsrv_remote_read_errors_total", "counter", remote_read_errors, F_U64,
	     "reads from the cluster that failed for good: the object lost or malformed"),
	NODE("memsrv_sessions_total", "counter", sessions_total, F_U64, "VMM sessions and control connections accepted"),
	NODE("memsrv_protocol_errors_total", "counter", protocol_errors, F_U64,
	     "malformed or refused messages on the socket"),
	NODE("memsrv_connections", "gauge", connections_open, F_U64, "control connections and VMM sessions open now"),
	NODE("memsrv_open_fds", "gauge", fds_open, F_U64, "memsrv's open file descriptors"),
	NODE("memsrv_fd_limit", "gauge", fd_limit, F_U64, "memsrv's RLIMIT_NOFILE"),
	NODE("memsrv_uptime_seconds", "gauge", uptime_s, F_DOUBLE, "since memsrv started"),
};

/* Every condition the node can show, so that each has a series at 0 too. */
static const char *const node_conditions[] = { "swap-full", "swap-failing", "store-full", "remote-unreachable",
					       "remote-failing", VM_COND_PAGES_POISONED };

static bool has_condition(char **conds, size_t n, const char *c)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(conds[i], c))
			return true;
	return false;
}

static void render_node(struct metrics_text *t, const Memsrv__NodeStats *st)
{
	family(t, "memsrv_build_info", "gauge", "memsrv's version, in its label");
	put(t, "memsrv_build_info{version=\"%s\"} 1\n", MEMSRV_VERSION);
	for (size_t i = 0; i < sizeof node_metrics / sizeof node_metrics[0]; i++) {
		const struct field_metric *f = &node_metrics[i];
		family(t, f->name, f->type, f->help);
		put(t, "%s", f->name);
		put_field(t, st, f);
	}
	family(t, "memsrv_store_objects", "gauge", "objects in the page store, by tier");
	put(t, "memsrv_store_objects{tier=\"samefilled\"} %" PRIu64 "\n", st->samefilled_objects);
	put(t, "memsrv_store_objects{tier=\"cache\"} %" PRIu64 "\n", st->cache_objects);
	put(t, "memsrv_store_objects{tier=\"swap\"} %" PRIu64 "\n", st->swap_objects);
	put(t, "memsrv_store_objects{tier=\"remote\"} %" PRIu64 "\n", st->remote_objects);
	family(t, "memsrv_store_bytes", "gauge", "what the page store's objects take, compressed, by tier");
	put(t, "memsrv_store_bytes{tier=\"cache\"} %" PRIu64 "\n", st->cache_bytes);
	put(t, "memsrv_store_bytes{tier=\"swap\"} %" PRIu64 "\n", st->swap_bytes);
	put(t, "memsrv_store_bytes{tier=\"remote\"} %" PRIu64 "\n", st->remote_bytes);
	family(t, "memsrv_evicted_pages", "gauge", "the attached VMs' pages out of residence, by where they are");
	put(t, "memsrv_evicted_pages{tier=\"zero\"} %" PRIu64 "\n", st->zero_pages);
	put(t, "memsrv_evicted_pages{tier=\"samefilled\"} %" PRIu64 "\n", st->samefilled_pages);
	put(t, "memsrv_evicted_pages{tier=\"cache\"} %" PRIu64 "\n", st->cache_pages);
	put(t, "memsrv_evicted_pages{tier=\"swap\"} %" PRIu64 "\n", st->swap_pages);
	put(t, "memsrv_evicted_pages{tier=\"remote\"} %" PRIu64 "\n", st->remote_tier_pages);
	family(t, "memsrv_condition", "gauge", "1 while the condition holds (memsrv-ctl stats: conditions)");
	for (size_t i = 0; i < sizeof node_conditions / sizeof node_conditions[0]; i++)
		put(t, "memsrv_condition{condition=\"%s\"} %d\n", node_conditions[i],
		    has_condition(st->conditions, st->n_conditions, node_conditions[i]));
}

/* ---- the VMs ---- */

struct vm_figures {
	struct vm *vm;
	Memsrv__VmInfo info;
	Memsrv__Percentiles pct[VM_INFO_PERCENTILES];
};

#define VM_FIELD(name, type, field, kind, help) { name, type, help, offsetof(Memsrv__VmInfo, field), kind }

static const struct field_metric vm_metrics[] = {
	VM_FIELD("memsrv_vm_size_bytes", "gauge", size_bytes, F_U64, "the VM's guest RAM"),
	VM_FIELD("memsrv_vm_resident_bytes", "gauge", resident_bytes, F_U64, "guest RAM resident now"),
	VM_FIELD("memsrv_vm_working_set_bytes", "gauge", working_set_bytes, F_U64,
		 "active memory estimated by sampling (0: not sampled yet)"),
	VM_FIELD("memsrv_vm_idle_bytes", "gauge", idle_bytes, F_U64, "resident memory outside the working set"),
	VM_FIELD("memsrv_vm_limit_bytes", "gauge", limit_bytes, F_U64, "the VM's limit (0: none)"),
	VM_FIELD("memsrv_vm_guarantee_bytes", "gauge", guarantee_bytes, F_U64, "the VM's guarantee"),
	VM_FIELD("memsrv_vm_shares", "gauge", shares, F_U32, "the VM's shares of the node limit"),
	VM_FIELD("memsrv_vm_node_target_bytes", "gauge", node_target_bytes, F_U64,
		 "the balancer's target for the VM under the node limit (0: none)"),
	VM_FIELD("memsrv_vm_balloon_target_bytes", "gauge", balloon_target_bytes, F_U64,
		 "the last balloon target sent to the VMM (0: never)"),
	VM_FIELD("memsrv_vm_active", "gauge", active, F_BOOL, "1 when the VM faulted in the last 3 s"),
	VM_FIELD("memsrv_vm_evictable", "gauge", evictable, F_BOOL, "1 when memsrv may evict the VM's pages"),
	VM_FIELD("memsrv_vm_never_touched_pages", "gauge", never_touched_pages, F_U64, "pages the guest never touched"),
	VM_FIELD("memsrv_vm_shared_pages", "gauge", shared_pages, F_U64,
		 "stored pages whose content another page shares"),
	VM_FIELD("memsrv_vm_shared_saved_bytes", "gauge", shared_saved_bytes, F_U64,
		 "cache bytes not held thanks to sharing (the VM's part)"),
	VM_FIELD("memsrv_vm_clean_pages", "gauge", clean_pages, F_U64, "resident pages keeping their stored copy"),
	VM_FIELD("memsrv_vm_write_protect_faults_total", "counter", faults_wp, F_U64,
		 "writes that hit an eviction in flight"),
	VM_FIELD("memsrv_vm_evictions_total", "counter", evictions_total, F_U64, "pages evicted"),
	VM_FIELD("memsrv_vm_clean_evictions_total", "counter", evictions_clean, F_U64,
		 "of the evictions: clean pages evicted by a punch alone"),
	VM_FIELD("memsrv_vm_prefetched_pages_total", "counter", prefetched_pages, F_U64,
		 "pages placed ahead of a sequential stream of faults"),
	VM_FIELD("memsrv_vm_discarded_pages_total", "counter", removed_pages, F_U64, "pages the VMM discarded"),
	VM_FIELD("memsrv_vm_fault_errors_total", "counter", fault_errors, F_U64, "faults not resolved for an error"),
	VM_FIELD("memsrv_vm_poisoned_pages_total", "counter", pages_poisoned, F_U64,
		 "pages whose content was lost: faults on them get SIGBUS"),
};

static void render_vm_fields(struct metrics_text *t, const struct vm_figures *v, unsigned n)
{
	for (size_t i = 0; i < sizeof vm_metrics / sizeof vm_metrics[0]; i++) {
		const struct field_metric *f = &vm_metrics[i];
		family(t, f->name, f->type, f->help);
		for (unsigned j = 0; j < n; j++)
			vm_sample(t, f->name, v[j].info.name, NULL, NULL, field_value(&v[j].info, f));
	}
	/* only where the VMM told: absent is not 0 */
	family(t, "memsrv_vm_balloon_actual_bytes", "gauge", "what the balloon left the guest, as the VMM reports it");
	for (unsigned j = 0; j < n; j++)
		if (v[j].info.has_balloon_actual_bytes)
			vm_sample(t, "memsrv_vm_balloon_actual_bytes", v[j].info.name, NULL, NULL,
				  v[j].info.balloon_actual_bytes);
	family(t, "memsrv_vm_balloon_stopped_bytes", "gauge", "where the guest's balloon stopped short of a target");
	for (unsigned j = 0; j < n; j++)
		if (v[j].info.has_balloon_stopped_bytes)
			vm_sample(t, "memsrv_vm_balloon_stopped_bytes", v[j].info.name, NULL, NULL,
				  v[j].info.balloon_stopped_bytes);
}

static void render_vm_tiers(struct metrics_text *t, const struct vm_figures *v, unsigned n)
{
	static const char *const name = "memsrv_vm_evicted_pages";
	family(t, name, "gauge", "the VM's pages out of residence, by where they are");
	for (unsigned j = 0; j < n; j++) {
		const Memsrv__VmInfo *i = &v[j].info;
		vm_sample(t, name, i->name, "tier", "zero", i->zero_pages);
		vm_sample(t, name, i->name, "tier", "samefilled", i->samefilled_pages);
		vm_sample(t, name, i->name, "tier", "cache", i->cache_pages);
		vm_sample(t, name, i->name, "tier", "swap", i->swap_pages);
		vm_sample(t, name, i->name, "tier", "remote", i->remote_tier_pages);
	}
	family(t, "memsrv_vm_stored_bytes", "gauge", "what the VM's stored pages take, compressed, by tier");
	for (unsigned j = 0; j < n; j++) {
		const Memsrv__VmInfo *i = &v[j].info;
		vm_sample(t, "memsrv_vm_stored_bytes", i->name, "tier", "cache", i->cache_bytes);
		vm_sample(t, "memsrv_vm_stored_bytes", i->name, "tier", "swap", i->swap_bytes);
		vm_sample(t, "memsrv_vm_stored_bytes", i->name, "tier", "remote", i->remote_tier_bytes);
	}
}

/* Faults by where the page came from; they add up to all faults. */
static void render_vm_faults(struct metrics_text *t, const struct vm_figures *v, unsigned n)
{
	static const char *const name = "memsrv_vm_faults_total";
	family(t, name, "counter", "faults served, by where the page came from");
	for (unsigned j = 0; j < n; j++) {
		const Memsrv__VmInfo *i = &v[j].info;
		uint64_t swap = i->faults_swap, remote = i->faults_remote;
		uint64_t cache = i->faults_stored > swap + remote ? i->faults_stored - swap - remote : 0;
		uint64_t known = i->faults_never_touched + i->faults_zero + i->faults_stored + i->faults_image;
		vm_sample(t, name, i->name, "source", "never_touched", i->faults_never_touched);
		vm_sample(t, name, i->name, "source", "zero", i->faults_zero);
		vm_sample(t, name, i->name, "source", "cache", cache);
		vm_sample(t, name, i->name, "source", "swap", swap);
		vm_sample(t, name, i->name, "source", "remote", remote);
		vm_sample(t, name, i->name, "source", "image", i->faults_image);
		/* a page found resident, or arriving by migration */
		vm_sample(t, name, i->name, "source", "other", i->faults_total > known ? i->faults_total - known : 0);
	}
}

/* Bucket bounds: powers of two from 1.024 us to 1.07 s, exact in the
 * histogram memsrv keeps (latency.h). */
#define LE_FIRST_BIT 10
#define LE_BUCKETS 21

static void render_histogram(struct metrics_text *t, const char *name, const char *vm, const char *key,
			     const char *value, const struct latency_hist *h)
{
	uint64_t bounds[LE_BUCKETS], below[LE_BUCKETS], count, sum_ns;
	for (unsigned b = 0; b < LE_BUCKETS; b++)
		bounds[b] = 1ull << (LE_FIRST_BIT + b);
	latency_cumulative(h, bounds, LE_BUCKETS, below, &count, &sum_ns);
	char series[128];
	snprintf(series, sizeof series, "%s_bucket", name);
	for (unsigned b = 0; b <= LE_BUCKETS; b++) {
		open_vm_series(t, series, vm, key, value);
		if (b < LE_BUCKETS)
			put(t, ",le=\"%.9g\"} %" PRIu64 "\n", (double)bounds[b] / 1e9, below[b]);
		else
			put(t, ",le=\"+Inf\"} %" PRIu64 "\n", count);
	}
	snprintf(series, sizeof series, "%s_sum", name);
	open_vm_series(t, series, vm, key, value);
	put(t, "} %.9f\n", (double)sum_ns / 1e9);
	snprintf(series, sizeof series, "%s_count", name);
	vm_sample(t, series, vm, key, value, count);
}

static void render_vm_latency(struct metrics_text *t, const struct vm_figures *v, unsigned n)
{
	family(t, "memsrv_vm_fault_duration_seconds", "histogram",
	       "from reading a fault to the page in place (or the fault resolved otherwise), every fault");
	for (unsigned j = 0; j < n; j++)
		render_histogram(t, "memsrv_vm_fault_duration_seconds", v[j].info.name, NULL, NULL, &v[j].vm->lat_all);
	family(t, "memsrv_vm_stored_fault_duration_seconds", "histogram",
	       "faults on stored pages, by the tier the page was read from");
	for (unsigned j = 0; j < n; j++) {
		render_histogram(t, "memsrv_vm_stored_fault_duration_seconds", v[j].info.name, "tier", "cache",
				 &v[j].vm->lat_cache);
		render_histogram(t, "memsrv_vm_stored_fault_duration_seconds", v[j].info.name, "tier", "swap",
				 &v[j].vm->lat_swap);
		render_histogram(t, "memsrv_vm_stored_fault_duration_seconds", v[j].info.name, "tier", "remote",
				 &v[j].vm->lat_remote);
	}
}

static void render_vm_conditions(struct metrics_text *t, const struct vm_figures *v, unsigned n)
{
	static const char *const conds[] = { VM_COND_PAGES_POISONED, VM_COND_UNPROTECTED_MAPPING };
	family(t, "memsrv_vm_condition", "gauge", "1 while the VM's condition holds (memsrv-ctl info: conditions)");
	for (unsigned j = 0; j < n; j++)
		for (size_t c = 0; c < sizeof conds / sizeof conds[0]; c++)
			vm_sample(t, "memsrv_vm_condition", v[j].info.name, "condition", conds[c],
				  has_condition(v[j].info.conditions, v[j].info.n_conditions, conds[c]));
}

int metrics_render(struct server *srv, struct metrics_text *out)
{
	Memsrv__NodeStats st;
	char *conditions[CONTROL_CONDITIONS_MAX], *migrate[CONTROL_MIGRATE_MAX];
	control_fill_stats(srv, &st, conditions, migrate);
	render_node(out, &st);

	unsigned n = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next)
		n++;
	struct vm_figures *v = calloc(n ? n : 1, sizeof *v);
	if (!v) {
		out->failed = true;
		return -ENOMEM;
	}
	unsigned j = 0;
	for (struct vm *vm = srv->vms; vm; vm = vm->next, j++) {
		v[j].vm = vm;
		vm_fill_info(vm, &v[j].info, v[j].pct);
	}
	/* family by family: the format wants each family's samples together */
	render_vm_fields(out, v, n);
	render_vm_tiers(out, v, n);
	render_vm_faults(out, v, n);
	render_vm_latency(out, v, n);
	render_vm_conditions(out, v, n);
	free(v);
	return out->failed ? -ENOMEM : 0;
}

void metrics_text_free(struct metrics_text *t)
{
	free(t->buf);
	*t = (struct metrics_text){ 0 };
}
