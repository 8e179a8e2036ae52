/* setting_hooks: the apply hook of every row of proto/settings.h, and
 * the three ways in — Hello, memsrv-ctl set, the command line. */
#include "setting_hooks.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "accessed.h"
#include "clean_pages.h"
#include "cpu_follow.h"
#include "image_pages.h"
#include "log.h"
#include "peer_addr.h"
#include "vm_state.h"

/* ---- a VM's ---- */

static void apply_vm_codec(struct vm *vm, uint64_t v)
{
	atomic_store(&vm->codec, (int)v);
}

static uint64_t get_vm_codec(struct vm *vm)
{
	return (uint64_t)atomic_load(&vm->codec);
}

/* The table names the policies; the engine holds them by name. */
static void apply_vm_policy(struct vm *vm, uint64_t v)
{
	atomic_store(&vm->policy_wanted, policy_find(settings_policies[v]));  /* the VM thread switches */
}

static uint64_t get_vm_policy(struct vm *vm)
{
	const char *name = atomic_load(&vm->policy_wanted)->name;
	uint64_t i = 0;
	while (settings_policies[i] && strcmp(settings_policies[i], name))
		i++;
	return i;
}

static void apply_vm_limit(struct vm *vm, uint64_t v)
{
	atomic_store(&vm->quota.limit_bytes, v);
}

static uint64_t get_vm_limit(struct vm *vm)
{
	return atomic_load(&vm->quota.limit_bytes);
}

static void apply_vm_guarantee(struct vm *vm, uint64_t v)
{
	vm->quota.guarantee_bytes = v;
}

static uint64_t get_vm_guarantee(struct vm *vm)
{
	return vm->quota.guarantee_bytes;
}

static void apply_vm_shares(struct vm *vm, uint64_t v)
{
	vm->quota.shares = (uint32_t)v;  /* at most VM_SHARES_MAX: checked */
}

static uint64_t get_vm_shares(struct vm *vm)
{
	return vm->quota.shares;
}

/* ---- the node's, at run time ---- */

static void apply_node_limit(struct server *srv, uint64_t v)
{
	srv->node_limit = v;
	state_dir_save_node_limit(&srv->state, srv->configured_node_limit, v);
	pr_info("node limit set to %" PRIu64 " bytes", v);
}

/* ---- the command line: values ---- */

static void opt_max_sessions(struct memsrv_options *o, uint64_t v)
{
	o->cfg.access.max_sessions_per_uid = (unsigned)v;
}

static void opt_cache_size(struct memsrv_options *o, uint64_t v)
{
	o->cfg.store.cache_budget = v;
}

static void opt_codec(struct memsrv_options *o, uint64_t v)
{
	o->cfg.default_codec = (enum codec)v;
}

static void opt_incompressible(struct memsrv_options *o, uint64_t v)
{
	o->cfg.store.incompressible_bytes = (uint32_t)v;
}

static void opt_node_limit(struct memsrv_options *o, uint64_t v)
{
	o->cfg.node_limit = v;
}

static void opt_idle_tax(struct memsrv_options *o, uint64_t v)
{
	o->cfg.idle_tax = (double)v / 100;
}

/* The table's names are the log's (test_settings holds them equal). */
static void opt_log_level(struct memsrv_options *o, uint64_t v)
{
	(void)o;
	log_parse_level(settings_log_levels[v]);
}

static void opt_spin_us(struct memsrv_options *o, uint64_t v)
{
	(void)o;
	fault_spin_ns = v * 1000;  /* the VM threads read it; none runs yet */
}

static void opt_mapping_scan_ms(struct memsrv_options *o, uint64_t v)
{
	o->cfg.mapping_scan_ms = (unsigned)v;
}

static void opt_debug_hash_bits(struct memsrv_options *o, uint64_t v)
{
	o->cfg.store.hash_bits = (unsigned)v;
}

/* ---- the command line: paths and names ---- */

static int opt_socket(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	(void)why, (void)len;
	o->cfg.socket_path = text;
	return 0;
}

static int opt_socket_group(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	if (access_parse_group(text, &o->cfg.access.group)) {
		snprintf(why, len, "no group named '%s'", text);
		return -EINVAL;
	}
	o->cfg.access.has_group = true;
	return 0;
}

static int add_swap(struct memsrv_options *o, const char *spec, bool in_dir, char *why, size_t len)
{
	if (o->n_swaps == SETTINGS_MAX_SWAPS) {
		snprintf(why, len, "at most %d --swap/--swap-dir", SETTINGS_MAX_SWAPS);
		return -E2BIG;
	}
	o->swaps[o->n_swaps].in_dir = in_dir;
	o->swaps[o->n_swaps++].spec = spec;
	return 0;
}

static int opt_swap(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	return add_swap(o, text, false, why, len);
}

static int opt_swap_dir(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	return add_swap(o, text, true, why, len);
}

static int opt_state_dir(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	(void)why, (void)len;
	o->cfg.state_dir = text;
	return 0;
}

static int opt_peer_listen(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	int ret = peer_addr_parse(text, &o->cfg.peers.listen, why, len);
	if (ret)
		return ret;
	o->cfg.peers.listening = true;
	o->cfg.peers.listen_text = text;
	return 0;
}

static int opt_metrics_listen(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	int ret = peer_addr_parse(text, &o->cfg.metrics_listen, why, len);
	o->cfg.metrics = !ret;
	return ret;
}

/* Read at once: a key memsrv may not use stops it before it starts. */
static int opt_remote(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	(void)why, (void)len;
	o->remote.seeds = text;  /* checked when the tier opens */
	return 0;
}

static int opt_remote_auth(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	(void)why, (void)len;
	o->remote.auth_file = text;
	return 0;
}

static int opt_node_id(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	(void)why, (void)len;
	o->remote.node_id = text;
	return 0;
}

static int opt_peer_key(struct memsrv_options *o, const char *text, char *why, size_t len)
{
	return peer_key_load(&o->cfg.peers.key, text, why, len);
}

static const struct setting_hook hooks[SETTINGS_COUNT] = {
	[SETTING_VM_CODEC] = { .vm = apply_vm_codec, .vm_get = get_vm_codec },
	[SETTING_VM_POLICY] = { .vm = apply_vm_policy, .vm_get = get_vm_policy },
	[SETTING_VM_LIMIT] = { .vm = apply_vm_limit, .vm_get = get_vm_limit },
	[SETTING_VM_GUARANTEE] = { .vm = apply_vm_guarantee, .vm_get = get_vm_guarantee },
	[SETTING_VM_SHARES] = { .vm = apply_vm_shares, .vm_get = get_vm_shares },
	[SETTING_SOCKET] = { .option_text = opt_socket },
	[SETTING_SOCKET_GROUP] = { .option_text = opt_socket_group },
	[SETTING_MAX_SESSIONS_PER_UID] = { .option = opt_max_sessions },
	[SETTING_CACHE_SIZE] = { .option = opt_cache_size },
	[SETTING_CODEC] = { .option = opt_codec },
	[SETTING_INCOMPRESSIBLE] = { .option = opt_incompressible },
	[SETTING_SWAP] = { .option_text = opt_swap },
	[SETTING_SWAP_DIR] = { .option_text = opt_swap_dir },
	[SETTING_NODE_LIMIT] = { .node = apply_node_limit, .option = opt_node_limit },
	[SETTING_IDLE_TAX] = { .option = opt_idle_tax },
	[SETTING_STATE_DIR] = { .option_text = opt_state_dir },
	[SETTING_PEER_LISTEN] = { .option_text = opt_peer_listen },
	[SETTING_METRICS_LISTEN] = { .option_text = opt_metrics_listen },
	[SETTING_PEER_KEY] = { .option_text = opt_peer_key },
	[SETTING_REMOTE] = { .option_text = opt_remote },
	[SETTING_REMOTE_AUTH] = { .option_text = opt_remote_auth },
	[SETTING_NODE_ID] = { .option_text = opt_node_id },
	[SETTING_LOG_LEVEL] = { .option = opt_log_level },
	[SETTING_SPIN_US] = { .option = opt_spin_us },
	[SETTING_CLEAN_COPIES] = { .on = &clean_copies_enabled },
	[SETTING_ACCESSED_BITS] = { .on = &accessed_bits_enabled },
	[SETTING_RESUME_BACKGROUND] = { .on = &image_background_enabled },
	[SETTING_FOLLOW_VCPUS] = { .on = &cpu_follow_enabled },
	[SETTING_MAPPING_SCAN_MS] = { .option = opt_mapping_scan_ms },
	[SETTING_DEBUG_HASH_BITS] = { .option = opt_debug_hash_bits },
};

const struct setting_hook *setting_hook(enum setting_id id)
{
	return id < SETTINGS_COUNT ? &hooks[id] : NULL;
}

/* A checked value of an option: into the options, or the engine's switch
 * (the VM threads read it; none runs yet). */
static void option_value(const struct setting_hook *h, struct memsrv_options *o, uint64_t v)
{
	if (h->on)
		*h->on = v;
	else
		h->option(o, v);
}

void settings_options_init(struct memsrv_options *o)
{
	memset(o, 0, sizeof *o);
	o->cfg.socket_path = SERVER_DEFAULT_SOCKET;
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (hooks[i].option || hooks[i].on)
			option_value(&hooks[i], o, settings[i].def);
}

int settings_apply_option(struct memsrv_options *o, const struct setting *s, const char *text, char *why, size_t len)
{
	const struct setting_hook *h = &hooks[setting_id(s)];
	if (h->option_text)
		return h->option_text(o, text, why, len);
	uint64_t v;
	int err = setting_parse(s, text, &v, why, len);
	if (!err)
		option_value(h, o, v);
	return err;
}

/* ---- a Hello ---- */

/* A client's name of an enum value: longer than any name, it is cut as the
 * log would cut it, and matches none either way. */
static int parse_client_name(enum setting_id id, const char *text, uint64_t *v, const char **field, char *why,
			     size_t len)
{
	char cut[LOG_CLIENT_STR_MAX + 1], what[192];
	snprintf(cut, sizeof cut, "%s", text);
	if (!setting_parse(&settings[id], cut, v, what, sizeof what))
		return 0;
	*field = settings[id].hello_field;
	snprintf(why, len, "%s %s", settings[id].name, what);
	return -EINVAL;
}

static int check_hello_number(enum setting_id id, uint64_t v, const char *also, const char **field, char *why,
			      size_t len)
{
	char what[160];
	if (!setting_check(&settings[id], v, what, sizeof what))
		return 0;
	*field = settings[id].hello_field;
	snprintf(why, len, "%s %s%s", settings[id].name, what, also);
	return -EINVAL;
}

int settings_apply_hello(struct vm *vm, const Memsrv__Quota *q, enum codec node_codec, const char **field, char *why,
			 size_t len)
{
	uint64_t v[SETTINGS_COUNT];
	for (int i = 0; i < SETTINGS_COUNT; i++)
		v[i] = settings[i].def;
	v[SETTING_VM_CODEC] = node_codec;
	if (q && q->has_limit_bytes)
		v[SETTING_VM_LIMIT] = q->limit_bytes;
	if (q && q->has_guarantee_bytes)
		v[SETTING_VM_GUARANTEE] = q->guarantee_bytes;
	if (q && q->has_shares && q->shares)  /* 0: the default, as absent */
		v[SETTING_VM_SHARES] = q->shares;
	char also[48];
	snprintf(also, sizeof also, " (0 or absent: %" PRIu64 ")", settings[SETTING_VM_SHARES].def);
	int ret;
	if ((ret = check_hello_number(SETTING_VM_LIMIT, v[SETTING_VM_LIMIT], "", field, why, len)) ||
	    (ret = check_hello_number(SETTING_VM_GUARANTEE, v[SETTING_VM_GUARANTEE], "", field, why, len)))
		return ret;
	if (!settings_quota_consistent(v[SETTING_VM_LIMIT], v[SETTING_VM_GUARANTEE])) {
		*field = settings[SETTING_VM_GUARANTEE].hello_field;
		snprintf(why, len, "guarantee %" PRIu64 " exceeds limit %" PRIu64, v[SETTING_VM_GUARANTEE],
			 v[SETTING_VM_LIMIT]);
		return -EINVAL;
	}
	if ((ret = check_hello_number(SETTING_VM_SHARES, v[SETTING_VM_SHARES], also, field, why, len)))
		return ret;
	if (q && q->codec && *q->codec &&
	    (ret = parse_client_name(SETTING_VM_CODEC, q->codec, &v[SETTING_VM_CODEC], field, why, len)))
		return ret;
	if (q && q->policy && *q->policy &&
	    (ret = parse_client_name(SETTING_VM_POLICY, q->policy, &v[SETTING_VM_POLICY], field, why, len)))
		return ret;
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (settings[i].who & SET_BY_HELLO)
			hooks[i].vm(vm, v[i]);
	return 0;
}

/* ---- memsrv-ctl set ---- */

/* "key=value": the row of scope that memsrv-ctl may set, and its value. */
static int parse_ctl_setting(enum setting_scope scope, const char *kv, enum setting_id *id, uint64_t *v, char *why,
			     size_t len)
{
	const char *eq = strchr(kv, '=');
	if (!eq) {
		snprintf(why, len, "'%s' is not key=value", kv);
		return -EINVAL;
	}
	char key[64];
	size_t klen = (size_t)(eq - kv);
	snprintf(key, sizeof key, "%.*s", (int)klen, kv);
	const struct setting *s = klen < sizeof key ? setting_find(scope, key, SET_BY_CTL) : NULL;
	if (!s) {
		char keys[160];
		settings_list(scope, SET_BY_CTL, keys, sizeof keys);
		snprintf(why, len, "'%.*s' cannot be set (settable: %s)", (int)klen, kv, keys);
		return -EINVAL;
	}
	char what[192];
	if (setting_parse(s, eq + 1, v, what, sizeof what)) {
		snprintf(why, len, "%s %s", s->name, what);
		return -EINVAL;
	}
	*id = setting_id(s);
	return 0;
}

/* Every key=value of kv parsed into v[id], given[id] set: all of them,
 * before anything is applied.  0, or -errno with why. */
static int parse_ctl_settings(enum setting_scope scope, char *const *kv, size_t n, uint64_t *v, bool *given,
			      char *why, size_t len)
{
	for (size_t i = 0; i < n; i++) {
		enum setting_id id;
		uint64_t value;
		int ret = parse_ctl_setting(scope, kv[i], &id, &value, why, len);
		if (ret)
			return ret;
		v[id] = value;
		given[id] = true;
	}
	return 0;
}

int settings_set_vm(struct vm *vm, char *const *kv, size_t n, char *why, size_t len)
{
	uint64_t v[SETTINGS_COUNT];
	bool given[SETTINGS_COUNT] = { false };
	int ret = parse_ctl_settings(SETTING_SCOPE_VM, kv, n, v, given, why, len);
	if (ret)
		return ret;
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (!given[i] && settings[i].scope == SETTING_SCOPE_VM)
			v[i] = hooks[i].vm_get(vm);
	if (!settings_quota_consistent(v[SETTING_VM_LIMIT], v[SETTING_VM_GUARANTEE])) {
		snprintf(why, len, "limit %" PRIu64 " is below the guarantee %" PRIu64, v[SETTING_VM_LIMIT],
			 v[SETTING_VM_GUARANTEE]);
		return -EINVAL;
	}
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (given[i])
			hooks[i].vm(vm, v[i]);
	vm_state_save_settings(vm);  /* a restarted memsrv holds the VM to them too */
	return 0;
}

int settings_set_node(struct server *srv, char *const *kv, size_t n, char *why, size_t len)
{
	uint64_t v[SETTINGS_COUNT];
	bool given[SETTINGS_COUNT] = { false };
	int ret = parse_ctl_settings(SETTING_SCOPE_NODE, kv, n, v, given, why, len);
	if (ret)
		return ret;
	for (int i = 0; i < SETTINGS_COUNT; i++)
		if (given[i])
			hooks[i].node(srv, v[i]);
	return 0;
}
