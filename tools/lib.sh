# shellcheck shell=bash
# What the scripts in tools/ share, sourced (never run) by each of them:
#   . "$(dirname "$0")/lib.sh"
# Sourcing it moves to the repository's root, so every path below (and in
# the scripts) is relative to it.
#
#   building     ms_build DIR MESON_OPTS...      configure once, then ninja
#                ms_build_fresh DIR MESON_OPTS...  from scratch (tools/check)
#                ms_bench_build [DIR]            tools/install-deps + build-bench
#                                                (release), or DIR as it is
#                ms_use_build DIR                sets ms_memsrv, ms_ctl_bin,
#                                                ms_vmsim_bin, ms_floor_bin
#   the daemon   ms_tmpdir TEMPLATE              a temporary folder, removed at exit
#                ms_start MEMSRV_OPTS...         memsrv on $ms_sock, waits until
#                                                `memsrv-ctl list` answers
#                ms_spawn / ms_wait_ready        the same in two halves
#                ms_stop                         SIGTERM, wait
#                ms_ctl ARGS...                  memsrv-ctl on $ms_sock
#                ms_vmsim ARGS...                memsrv-vmsim (exec it in a coproc)
#                ms_rss_kib                      memsrv's VmRSS
#   cleanup      ms_at_exit COMMAND              run at exit, last registered first;
#                                                the daemon is stopped, children
#                                                waited for, temp folders removed
#                ms_track_pid PID                a child to kill at exit
#   logging      ms_say MESSAGE...               "NAME: MESSAGE" on stderr
#                ms_die MESSAGE...               ms_say "FAIL: ..." and exit 1

ms_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ms_root" || exit 1
ms_name=$(basename "$0")

ms_say() { echo "$ms_name: $*" >&2; }
ms_die() { ms_say "FAIL: $*"; exit 1; }

# ---- cleanup -----------------------------------------------------------------
ms_exit_hooks=()
ms_tmpdirs=()
ms_pids=()
ms_pid=
ms_at_exit() { ms_exit_hooks+=("$1"); }
ms_track_pid() { ms_pids+=("$1"); }

# One EXIT trap for every script: its own hooks (last first), then the VMs,
# the daemon, every child and the temporary folders.  The script's exit
# status is kept whatever the cleanup's commands return.
ms_cleanup() {
	local st=$? i p
	set +e
	for ((i = ${#ms_exit_hooks[@]} - 1; i >= 0; i--)); do eval "${ms_exit_hooks[i]}"; done
	for p in "${ms_pids[@]}"; do kill "$p" 2>/dev/null; done
	[[ -n $ms_pid ]] && kill "$ms_pid" 2>/dev/null
	wait 2>/dev/null
	for p in "${ms_tmpdirs[@]}"; do rm -rf "$p"; done
	exit "$st"
}
trap ms_cleanup EXIT

# ms_tmpdir TEMPLATE: sets ms_dir and ms_sock (the daemon's socket in it)
ms_tmpdir() {
	ms_dir=$(mktemp -d "$1")
	ms_tmpdirs+=("$ms_dir")
	ms_sock=$ms_dir/memsrv.sock
	ms_log=$ms_dir/memsrv.log
}

# ---- building ----------------------------------------------------------------
# ms_build DIR MESON_OPTS...: configure DIR the first time, then bring it up
# to date; quiet unless something fails.
ms_build() {
	local dir=$1 out
	shift
	[[ -f $dir/build.ninja ]] || meson setup "$dir" "$@" >/dev/null
	# quiet when it works; a failure shows the compiler's errors and says so
	if ! out=$(ninja -C "$dir" 2>&1); then
		printf '%s\n' "$out" >&2
		echo "$ms_name: building $dir failed" >&2
		return 1
	fi
}

# ms_build_fresh DIR MESON_OPTS...: remove DIR, configure, build; ninja's
# output is shown unless MS_QUIET_NINJA=1.
ms_build_fresh() {
	local dir=$1
	shift
	rm -rf "$dir"
	meson setup "$dir" "$@" >/dev/null
	if [[ ${MS_QUIET_NINJA:-0} == 1 ]]; then ninja -C "$dir" >/dev/null; else ninja -C "$dir"; fi
}

# shellcheck disable=SC2034  # for the scripts that source this
ms_use_build() {
	ms_build_dir=$1
	ms_memsrv=$1/server/memsrv
	ms_ctl_bin=$1/tools/ctl/memsrv-ctl
	ms_vmsim_bin=$1/tools/vmsim/memsrv-vmsim
	ms_floor_bin=$1/tools/uffd_floor
}

# ms_bench_build [DIR]: the benchmarks' build: release, in build-bench/, deps
# installed first; given a DIR (load-test passes MEMSRV_BUILD_DIR, which the
# test suite sets), that build's binaries as they are.
ms_bench_build() {
	local build=${1:-}
	if [[ -z $build ]]; then
		tools/install-deps
		build='build-bench'
		ms_build "$build" --buildtype=release -Dtests=false
	fi
	ms_use_build "$build"
}

# ---- the daemon --------------------------------------------------------------
ms_ctl() { "$ms_ctl_bin" --socket "$ms_sock" "$@"; }
ms_vmsim() { "$ms_vmsim_bin" "$@"; }

# ms_spawn MEMSRV_OPTS...: memsrv on $ms_sock in the background, stderr
# appended to $ms_log; sets ms_pid.
ms_spawn() {
	"$ms_memsrv" --socket "$ms_sock" "$@" 2>>"$ms_log" &
	ms_pid=$!
}

# ms_wait_ready [TRIES]: until memsrv accepts (0.05 s apart, 200 tries by
# default); 1 with the log's last lines if it does not.
# shellcheck disable=SC2120  # demo waits less
ms_wait_ready() {
	local i
	for ((i = 0; i < ${1:-200}; i++)); do
		ms_ctl list >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	ms_say "memsrv did not start: $(tail -3 "$ms_log" 2>/dev/null)"
	return 1
}

ms_start() {
	ms_spawn "$@"
	ms_wait_ready
}

# ms_stop: SIGTERM, and its exit status (0 when it stopped cleanly)
ms_stop() {
	local st=0
	[[ -n $ms_pid ]] || return 0
	kill "$ms_pid" 2>/dev/null || true
	wait "$ms_pid" 2>/dev/null || st=$?
	ms_pid=
	return $st
}

ms_rss_kib() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$ms_pid/status"; }

# ms_vm_until FD_OUT WORD [FILE]: reads an interactive vmsim's answers until a
# line that is WORD; with FILE, the lines before it are saved there.
ms_vm_until() {
	local fd=$1 word=$2 file=${3:-/dev/null} line
	: >"$file"
	while read -r line <&"$fd"; do
		[[ $line == "$word" ]] && return 0
		echo "$line" >>"$file"
	done
	return 1
}
