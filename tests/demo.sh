#!/bin/bash
# SPDX-License-Identifier: MIT
# The README's main job: start mvmd with its built-in defaults in a local
# state directory, boot a sample microVM (the test guest), and show it.
#
#   tests/demo.sh [BUILD_DIR] [--keep]
#
# Everything lives in ./mvm-demo (or $MVM_DEMO_DIR).  Without --keep the VM
# and mvmd are stopped at the end; with --keep both stay up and the script
# prints how to reach them.  The system suite runs this script too, so the
# README's command stays true.
set -euo pipefail

build=build
keep=0
for arg in "$@"; do
	case "$arg" in
	--keep) keep=1 ;;
	*) build=$arg ;;
	esac
done
if ! [ -r /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "demo: /dev/kvm is missing or not accessible; run on a host with KVM, as root or in group kvm" >&2
	exit 77
fi
build=$(cd "$build" && pwd)
dir=${MVM_DEMO_DIR:-$PWD/mvm-demo}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
export MVM_SOCKET=$dir/run/mvmd.sock
mvmctl() { "$build/ctl/mvmctl" "$@"; }

"$build/daemon/mvmd" --state-dir "$dir/state" --run-dir "$dir/run" \
	--vmm "$build/vmm/mvm-vmm" 2>"$dir/mvmd.log" &
mvmd_pid=$!
stop_all() {
	mvmctl rm -f demo >/dev/null 2>&1 || true
	kill "$mvmd_pid" 2>/dev/null && wait "$mvmd_pid" 2>/dev/null || true
}
[ "$keep" = 1 ] || trap stop_all EXIT

for _ in $(seq 100); do
	[ -S "$MVM_SOCKET" ] && mvmctl version >/dev/null 2>&1 && break
	kill -0 "$mvmd_pid" 2>/dev/null || { cat "$dir/mvmd.log" >&2; exit 1; }
	sleep 0.1
done

echo "\$ mvmctl create demo --kernel mvmtest.bzImage --cmdline mvmtest=idle --vcpus 2 --mem 64M --wait"
mvmctl rm -f demo >/dev/null 2>&1 || true
mvmctl create demo --kernel "$build/tests/guest/mvmtest.bzImage" \
	--cmdline "mvmtest=idle" --vcpus 2 --mem 64M --label app=demo --wait
sleep 0.5   # let the guest print its boot line
for cmd in "list" "show demo" "logs demo" "host"; do
	echo
	echo "\$ mvmctl $cmd"
	# shellcheck disable=SC2086
	mvmctl $cmd
done

if [ "$keep" = 1 ]; then
	echo
	echo "mvmd (pid $mvmd_pid) and VM 'demo' keep running.  Try:"
	echo "  export MVM_SOCKET=$MVM_SOCKET"
	echo "  $build/ctl/mvmctl console demo     # Ctrl-] detaches"
	echo "  $build/ctl/mvmctl stop demo; kill $mvmd_pid"
fi
