#!/bin/sh
# The server's layers, checked on the sources and on the built archives:
#   check_layers.sh SERVER_DIR [ARCHIVE...]
# SERVER_DIR holds the layer folders, lowest first in LAYERS; the archives, if
# given, are the layers' static libraries in the same order.
#
# Fails on an upward edge:
#  - a file in a layer that #includes a header of a layer above it, or any
#    quoted #include with a path (it would get round the include dirs);
#  - a header in a layer's private/ folder #included from another layer;
#  - a layer's archive needing a symbol that a layer above it defines;
#  - a file outside the engine touching a VM's engine-only parts (struct
#    vm's eng: the VM thread's own state; thr: its thread and job queue,
#    reached through vm_post_job() and vm_post_wakeup()).
# Prints the include graph as counts per (from layer, to layer) pair.
set -eu
LAYERS="base store engine daemon"
dir=$1
shift

layer_of_header() {  # the layer whose folder holds header $1, or nothing
	for l in $LAYERS; do
		if [ -n "$(find "$dir/$l" -name "$1" -print -quit)" ]; then
			echo "$l"
			return
		fi
	done
}

rank() {  # position of layer $1 in LAYERS, from 0
	i=0
	for l in $LAYERS; do
		[ "$l" = "$1" ] && { echo $i; return; }
		i=$((i + 1))
	done
	echo 99
}

bad=0
edges=$(mktemp)
trap 'rm -f "$edges" "$edges".*' EXIT
for from in $LAYERS; do
	for f in $(find "$dir/$from" -name '*.[ch]' | sort); do
		for h in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
			case $h in
			*/*)
				echo "FAIL: $f includes \"$h\": a path gets round the layers' include dirs"
				bad=1
				continue ;;
			esac
			to=$(layer_of_header "$h")
			[ -n "$to" ] || to=outside   # proto/, client/ or generated
			if [ "$to" != outside ] && [ "$to" != "$from" ] &&
			   [ -n "$(find "$dir/$to/private" -name "$h" -print -quit 2>/dev/null)" ]; then
				echo "FAIL: $f ($from) includes $h, private to $to"
				bad=1
			fi
			echo "$from -> $to" >>"$edges"
			if [ "$to" != outside ] && [ "$(rank "$to")" -gt "$(rank "$from")" ]; then
				echo "FAIL: $f ($from) includes $h ($to): upward"
				bad=1
			fi
		done
	done
done
for l in $LAYERS; do
	[ "$l" = engine ] && continue
	if grep -nE '(->|\.)(eng|thr)\.' $(find "$dir/$l" -name '*.[ch]') /dev/null; then
		echo "FAIL: the lines above ($l) touch a VM's engine-only state"
		bad=1
	fi
done

echo "include edges per layer pair:"
sort "$edges" | uniq -c

if [ $# -gt 0 ]; then
	i=0
	for a in "$@"; do
		nm -g --defined-only "$a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u >"$edges.def$i"
		nm -u "$a" 2>/dev/null | awk '{ print $NF }' | sort -u >"$edges.undef$i"
		i=$((i + 1))
	done
	n=$i
	i=0
	for from in $LAYERS; do
		[ $i -lt $n ] || break
		j=$((i + 1))
		while [ $j -lt $n ]; do
			up=$(comm -12 "$edges.undef$i" "$edges.def$j")
			if [ -n "$up" ]; then
				echo "FAIL: layer $from ($i) needs symbols of layer $j:" $up
				bad=1
			fi
			j=$((j + 1))
		done
		i=$((i + 1))
	done
	if [ $bad -eq 0 ]; then
		echo "symbols: no layer needs one defined above it"
	fi
fi
exit $bad
