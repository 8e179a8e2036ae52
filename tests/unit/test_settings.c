/* Description: the table of settings (proto/settings.h) parses and checks
 * every value with the bound it breaks named; Hello and memsrv-ctl set
 * accept exactly the same values; every row has the apply hooks its scope
 * and setters need (server/daemon/setting_hooks.h); the names of its enums
 * are the engine's, and its defaults are the ones the server uses. */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "access.h"
#include "log.h"
#include "mappings.h"
#include "policy.h"
#include "setting_hooks.h"
#include "settings.h"

static char why[256];

static int parse(enum setting_id id, const char *text, uint64_t *v)
{
	why[0] = '\0';
	return setting_parse(&settings[id], text, v, why, sizeof why);
}

static void refused(enum setting_id id, const char *text, int err, const char *message)
{
	uint64_t v = 12345;
	cr_assert_eq(parse(id, text, &v), err, "%s=%s: %s", settings[id].name, text, why);
	cr_assert(strstr(why, message), "%s=%s: '%s' does not say '%s'", settings[id].name, text, why, message);
	cr_assert_eq(v, 12345, "a refused value is not written");
}

static uint64_t accepted(enum setting_id id, const char *text)
{
	uint64_t v;
	cr_assert_eq(parse(id, text, &v), 0, "%s=%s: %s", settings[id].name, text, why);
	return v;
}

Test(settings, every_row_is_complete)
{
	for (int i = 0; i < SETTINGS_COUNT; i++) {
		const struct setting *s = &settings[i];
		cr_assert(s->name && *s->name && s->doc && *s->doc && s->arg, "row %d", i);
		cr_assert(s->who, "%s: nobody may set it", s->name);
		cr_assert_eq(!!(s->who & SET_BY_OPTION), !!s->option, "%s: an option iff set by the command line", s->name);
		cr_assert_eq(!!(s->who & SET_BY_HELLO), !!s->hello_field, "%s: a Hello field iff set by a Hello", s->name);
		if (s->type == SETTING_ENUM) {
			size_t n = 0;
			while (s->values[n])
				n++;
			cr_assert_lt(s->def, n, "%s: the default is one of its values", s->name);
		} else if (s->type != SETTING_STRING) {
			cr_assert_leq(s->min, s->max, "%s", s->name);
			cr_assert_eq(setting_check(s, s->def, why, sizeof why), 0, "%s: its default %s", s->name, why);
		}
		cr_assert_eq(setting_find(s->scope, s->name, s->who), s, "%s is found by name", s->name);
		if (s->option)
			cr_assert_eq(setting_find_option(s->option), s, "--%s", s->option);
	}
	cr_assert_null(setting_find(SETTING_SCOPE_VM, "colour", SET_BY_CTL));
	cr_assert_null(setting_find(SETTING_SCOPE_VM, "cache-size", SET_BY_CTL), "a node's setting is not a VM's");
	cr_assert_null(setting_find(SETTING_SCOPE_NODE, "codec", SET_BY_CTL), "--codec is not for memsrv-ctl set");
}

Test(settings, every_row_has_its_apply_hooks)
{
	for (int i = 0; i < SETTINGS_COUNT; i++) {
		const struct setting *s = &settings[i];
		const struct setting_hook *h = setting_hook((enum setting_id)i);
		cr_assert(h, "%s", s->name);
		if (s->scope == SETTING_SCOPE_VM)
			cr_assert(h->vm && h->vm_get, "%s: a VM's setting is applied to a VM and read back", s->name);
		if (s->scope == SETTING_SCOPE_NODE && (s->who & SET_BY_CTL))
			cr_assert(h->node, "%s: memsrv-ctl set node applies it", s->name);
		if (s->who & SET_BY_OPTION)
			cr_assert(s->type == SETTING_STRING ? h->option_text && !h->option && !h->on
							    : !h->option_text && !h->option != !h->on,
				  "--%s is applied, as a value, a switch or as text by its type", s->option);
		if (h->on)
			cr_assert(s->type == SETTING_ENUM && s->values == settings_off_on, "--%s is an on|off switch",
				  s->option);
	}
}

Test(settings, sizes_and_their_bounds)
{
	cr_assert_eq(accepted(SETTING_VM_LIMIT, "0"), 0, "0: no limit");
	cr_assert_eq(accepted(SETTING_VM_LIMIT, "1M"), 1u << 20);
	cr_assert_eq(accepted(SETTING_VM_LIMIT, "1048576"), 1u << 20);
	refused(SETTING_VM_LIMIT, "12", -EINVAL, "'12' is not 0 (none) or a size of 1M or more");
	refused(SETTING_VM_LIMIT, "1023K", -EINVAL, "a size of 1M or more");
	refused(SETTING_VM_LIMIT, "4X", -EINVAL, "digits with an optional K, M or G");
	refused(SETTING_VM_LIMIT, "18446744073709551616", -ERANGE, "more than 2^64-1 bytes");
	cr_assert_eq(accepted(SETTING_VM_GUARANTEE, "2G"), 2ull << 30);
	refused(SETTING_VM_GUARANTEE, "-1", -EINVAL, "'-1' is not a size");
	cr_assert_eq(accepted(SETTING_CACHE_SIZE, "0"), 0);
	cr_assert_eq(accepted(SETTING_NODE_LIMIT, "12"), 12, "the node limit has no floor");
}

Test(settings, counts_percentages_and_names)
{
	cr_assert_eq(accepted(SETTING_VM_SHARES, "1"), 1);
	cr_assert_eq(accepted(SETTING_VM_SHARES, "1000000"), 1000000);
	refused(SETTING_VM_SHARES, "0", -EINVAL, "'0' is not 1..1000000");
	refused(SETTING_VM_SHARES, "1000001", -EINVAL, "1..1000000");
	refused(SETTING_INCOMPRESSIBLE, "63", -EINVAL, "64..4096");
	cr_assert_eq(accepted(SETTING_IDLE_TAX, "99"), 99);
	refused(SETTING_IDLE_TAX, "100", -EINVAL, "'100' is not a percentage 0..99");
	refused(SETTING_MAPPING_SCAN_MS, "9", -EINVAL, "10..60000");
	cr_assert_eq(accepted(SETTING_VM_CODEC, "zstd"), 1);
	refused(SETTING_VM_CODEC, "gzip", -EINVAL, "'gzip' is neither lz4 nor zstd");
	cr_assert_eq(accepted(SETTING_VM_POLICY, "second-chance"), 3);
	refused(SETTING_VM_POLICY, "optimal", -EINVAL,
		"'optimal' is none of lru, fifo, clock, second-chance, aging, nru, random");
	refused(SETTING_VM_POLICY, "", -EINVAL, "none of");
	refused(SETTING_LOG_LEVEL, "loud", -EINVAL, "none of error, warn, info, debug");
	cr_assert_eq(setting_check(&settings[SETTING_VM_CODEC], 2, why, sizeof why), -EINVAL, "no third codec");
}

/* The enums' names are the engine's and the store's, in their order. */
Test(settings, enum_names_are_the_servers)
{
	size_t n = 0;
	for (; policy_all[n]; n++) {
		cr_assert(settings_policies[n], "policy %s is missing from the table", policy_all[n]->name);
		cr_assert_str_eq(settings_policies[n], policy_all[n]->name);
	}
	cr_assert_null(settings_policies[n], "the table names a policy the engine lacks");
	for (n = 0; n < CODECS; n++)
		cr_assert_str_eq(settings_codecs[n], codec_name((enum codec)n));
	cr_assert_null(settings_codecs[n]);
	for (n = 0; settings_log_levels[n]; n++) {
		cr_assert_eq(log_parse_level(settings_log_levels[n]), 0, "%s", settings_log_levels[n]);
		cr_assert_eq((size_t)log_max_level, n, "%s is level %zu", settings_log_levels[n], n);
	}
	log_parse_level("info");
}

/* The defaults the table shows are what the server does without them. */
Test(settings, defaults_are_the_servers)
{
	cr_assert_eq(settings[SETTING_VM_SHARES].def, VM_SHARES_DEFAULT);
	cr_assert_eq(settings[SETTING_VM_SHARES].min, VM_SHARES_MIN);
	cr_assert_eq(settings[SETTING_VM_SHARES].max, VM_SHARES_MAX);
	cr_assert_str_eq(settings_policies[settings[SETTING_VM_POLICY].def], "clock");
	cr_assert_eq(settings[SETTING_MAX_SESSIONS_PER_UID].def, ACCESS_DEFAULT_SESSIONS_PER_UID);
	cr_assert_eq(settings[SETTING_MAPPING_SCAN_MS].def, MAPPINGS_DEFAULT_SCAN_MS);
	cr_assert_eq(settings[SETTING_SPIN_US].def * 1000, fault_spin_ns, "before any option is applied");
	cr_assert_str_eq(settings[SETTING_SOCKET].def_text, SERVER_DEFAULT_SOCKET);
	struct memsrv_options o;
	settings_options_init(&o);
	cr_assert_str_eq(o.cfg.socket_path, SERVER_DEFAULT_SOCKET);
	cr_assert_eq(o.cfg.default_codec, CODEC_LZ4);
	cr_assert_float_eq(o.cfg.idle_tax, 0.75, 1e-9);
	cr_assert_eq(o.cfg.store.incompressible_bytes, 3000);
	cr_assert_eq(o.cfg.node_limit, 0);
	cr_assert_eq(o.cfg.store.cache_budget, 0);
	cr_assert_eq(o.cfg.mapping_scan_ms, MAPPINGS_DEFAULT_SCAN_MS);
	cr_assert_eq(o.cfg.access.max_sessions_per_uid, ACCESS_DEFAULT_SESSIONS_PER_UID);
	cr_assert_null(o.cfg.state_dir);
	cr_assert_eq(o.n_swaps, 0);
}

Test(settings, options_are_applied)
{
	struct memsrv_options o;
	settings_options_init(&o);
	cr_assert_eq(settings_apply_option(&o, setting_find_option("idle-tax"), "50", why, sizeof why), 0, "%s", why);
	cr_assert_float_eq(o.cfg.idle_tax, 0.5, 1e-9);
	cr_assert_eq(settings_apply_option(&o, setting_find_option("node-limit"), "4G", why, sizeof why), 0);
	cr_assert_eq(o.cfg.node_limit, 4ull << 30);
	cr_assert_eq(settings_apply_option(&o, setting_find_option("codec"), "zstd", why, sizeof why), 0);
	cr_assert_eq(o.cfg.default_codec, CODEC_ZSTD);
	cr_assert_eq(settings_apply_option(&o, setting_find_option("idle-tax"), "100", why, sizeof why), -EINVAL);
	cr_assert_float_eq(o.cfg.idle_tax, 0.5, 1e-9, "a refused value changes nothing");
	for (int i = 0; i < SETTINGS_MAX_SWAPS; i++)
		cr_assert_eq(settings_apply_option(&o, setting_find_option("swap"), "/x:1M", why, sizeof why), 0);
	cr_assert_eq(settings_apply_option(&o, setting_find_option("swap-dir"), "/x", why, sizeof why), -E2BIG);
	cr_assert(strstr(why, "at most 16"), "%s", why);
	cr_assert_eq(settings_apply_option(&o, setting_find_option("socket-group"), "no-such-group-here", why, sizeof why),
		     -EINVAL);
	cr_assert(strstr(why, "no group named"), "%s", why);
}

/* ---- Hello and memsrv-ctl set, on a VM that is not started ---- */

static struct store *store;
static struct vm *vm;

static void setup(void)
{
	struct store_config cfg = { 0 };
	store = store_create(&cfg);
	cr_assert(store);
	vm = vm_new(store);
	cr_assert(vm);
}

static void teardown(void)
{
	vm_destroy(vm);
	store_destroy(store);
}

static int hello(const Memsrv__Quota *q, const char **field)
{
	*field = NULL;
	why[0] = '\0';
	return settings_apply_hello(vm, q, CODEC_LZ4, field, why, sizeof why);
}

static int set(const char *kv)
{
	char *one[] = { (char *)kv };
	why[0] = '\0';
	return settings_set_vm(vm, one, 1, why, sizeof why);
}

Test(settings, a_hello_without_quota_gets_the_defaults, .init = setup, .fini = teardown)
{
	const char *field;
	cr_assert_eq(hello(NULL, &field), 0, "%s", why);
	cr_assert_eq(vm->quota.shares, VM_SHARES_DEFAULT);
	cr_assert_eq(atomic_load(&vm->quota.limit_bytes), 0);
	cr_assert_eq(vm->quota.guarantee_bytes, 0);
	cr_assert_str_eq(atomic_load(&vm->policy_wanted)->name, "clock");
	cr_assert_eq(atomic_load(&vm->codec), CODEC_LZ4);
	Memsrv__Quota q = MEMSRV__QUOTA__INIT;
	q.has_shares = 1;  /* 0: as absent */
	q.codec = "zstd";
	cr_assert_eq(settings_apply_hello(vm, &q, CODEC_LZ4, &field, why, sizeof why), 0, "%s", why);
	cr_assert_eq(vm->quota.shares, VM_SHARES_DEFAULT);
	cr_assert_eq(atomic_load(&vm->codec), CODEC_ZSTD);
}

Test(settings, a_hello_is_refused_with_the_field_at_fault, .init = setup, .fini = teardown)
{
	const char *field;
	Memsrv__Quota q = MEMSRV__QUOTA__INIT;
	q.has_shares = 1;
	q.shares = 1000001;
	cr_assert_eq(hello(&q, &field), -EINVAL);
	cr_assert_str_eq(field, "hello.quota.shares");
	cr_assert(strstr(why, "shares 1000001 is not 1..1000000 (0 or absent: 1000)"), "%s", why);
	q.shares = 0;
	q.has_limit_bytes = q.has_guarantee_bytes = 1;
	q.limit_bytes = 4u << 20;
	q.guarantee_bytes = 8u << 20;
	cr_assert_eq(hello(&q, &field), -EINVAL);
	cr_assert_str_eq(field, "hello.quota.guarantee_bytes");
	cr_assert(strstr(why, "exceeds limit"), "%s", why);
	q.guarantee_bytes = 0;
	q.policy = "optimal";
	cr_assert_eq(hello(&q, &field), -EINVAL);
	cr_assert_str_eq(field, "hello.quota.policy");
	cr_assert(strstr(why, "policy 'optimal' is none of lru"), "%s", why);
	char long_name[400];
	memset(long_name, 'x', sizeof long_name - 1);
	long_name[sizeof long_name - 1] = '\0';
	q.policy = NULL;
	q.codec = long_name;
	cr_assert_eq(hello(&q, &field), -EINVAL);
	cr_assert_str_eq(field, "hello.quota.codec");
	cr_assert_lt(strlen(why), LOG_CLIENT_STR_MAX + 64, "a client's string is cut as the log cuts it: %s", why);
}

/* For each numeric setting of a VM, the values around its bounds: a Hello
 * takes a value exactly when memsrv-ctl set does. */
Test(settings, hello_and_set_agree_on_bounds, .init = setup, .fini = teardown)
{
	const char *field;
	cr_assert_eq(hello(NULL, &field), 0);
	for (int i = 0; i < SETTINGS_COUNT; i++) {
		const struct setting *s = &settings[i];
		if (s->scope != SETTING_SCOPE_VM || s->type == SETTING_ENUM)
			continue;
		uint64_t probes[] = { 0, s->min ? s->min - 1 : 0, s->min, s->min + 1, s->max - 1, s->max,
				      s->max == UINT64_MAX ? s->max : s->max + 1 };
		for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
			uint64_t v = probes[p];
			if (i == SETTING_VM_SHARES && v == 0)
				continue;  /* a Hello's 0 means the default */
			Memsrv__Quota q = MEMSRV__QUOTA__INIT;
			if (i == SETTING_VM_LIMIT)
				q.has_limit_bytes = 1, q.limit_bytes = v;
			else if (i == SETTING_VM_GUARANTEE)
				q.has_guarantee_bytes = 1, q.guarantee_bytes = v;
			else
				q.has_shares = 1, q.shares = (uint32_t)v;
			if (i == SETTING_VM_SHARES && v > UINT32_MAX)
				continue;  /* a Hello cannot even say it */
			bool by_hello = hello(&q, &field) == 0;
			cr_assert(hello(NULL, &field) == 0);  /* back to no limit, no guarantee */
			char kv[64];
			snprintf(kv, sizeof kv, "%s=%" PRIu64, s->name, v);
			bool by_set = set(kv) == 0;
			cr_assert_eq(by_hello, by_set, "%s: a Hello %s it, memsrv-ctl set %s it (%s)", kv,
				     by_hello ? "takes" : "refuses", by_set ? "takes" : "refuses", why);
		}
	}
}

Test(settings, set_applies_all_or_none, .init = setup, .fini = teardown)
{
	const char *field;
	cr_assert_eq(hello(NULL, &field), 0);
	char *good[] = { "codec=zstd", "policy=lru", "limit=64M", "guarantee=16M", "shares=2000" };
	cr_assert_eq(settings_set_vm(vm, good, 5, why, sizeof why), 0, "%s", why);
	cr_assert_eq(atomic_load(&vm->codec), CODEC_ZSTD);
	cr_assert_str_eq(atomic_load(&vm->policy_wanted)->name, "lru");
	cr_assert_eq(atomic_load(&vm->quota.limit_bytes), 64u << 20);
	cr_assert_eq(vm->quota.guarantee_bytes, 16u << 20);
	cr_assert_eq(vm->quota.shares, 2000);
	const char *bad[][2] = {
		{ "policy=optimal", "policy 'optimal' is none of" },
		{ "limit=12", "limit '12' is not 0" },
		{ "colour=blue", "'colour' cannot be set (settable: codec, policy, limit, guarantee, shares)" },
		{ "codec", "'codec' is not key=value" },
		{ "limit=8M", "limit 8388608 is below the guarantee 16777216" },
		{ "shares=0", "shares '0' is not 1..1000000" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char *kv[] = { "codec=lz4", (char *)bad[i][0] };
		cr_assert_eq(settings_set_vm(vm, kv, 2, why, sizeof why), -EINVAL, "%s was taken", bad[i][0]);
		cr_assert(strstr(why, bad[i][1]), "%s: %s", bad[i][0], why);
		cr_assert_eq(atomic_load(&vm->codec), CODEC_ZSTD, "%s: a refused set applies none of its settings",
			     bad[i][0]);
	}
	char *both[] = { "guarantee=0", "limit=8M" };
	cr_assert_eq(settings_set_vm(vm, both, 2, why, sizeof why), 0, "the rule holds for the values set together");
}

Test(settings, set_node)
{
	struct server srv = { .state = { .dir_fd = -1 } };
	char *kv[] = { "limit=2G" };
	cr_assert_eq(settings_set_node(&srv, kv, 1, why, sizeof why), 0, "%s", why);
	cr_assert_eq(srv.node_limit, 2ull << 30);
	char *bad[] = { "cache-size=1G" };
	cr_assert_eq(settings_set_node(&srv, bad, 1, why, sizeof why), -EINVAL);
	cr_assert(strstr(why, "(settable: limit)"), "%s", why);
	cr_assert_eq(srv.node_limit, 2ull << 30);
}
