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

# Density: a small fleet of 1-vCPU 32 MiB idle guests, as many as the
# default admission lets in (vCPUs: 4 per host CPU), at most 16, then
# what each costs, measured now, beside the table measured at scale.
echo
echo "\$ mvmctl create fleet-N --kernel mvmtest.bzImage --cmdline mvmtest=idle --vcpus 1 --mem 32M --wait  # N = 1, 2, ... until refused"
fds0=$(ls "/proc/$mvmd_pid/fd" | wc -l)
stop_fleet() { mvmctl rm -f $(mvmctl list -q | grep '^fleet-') >/dev/null 2>&1 || true; }
stop_fleet
n=0
t0=$(date +%s%N)
while [ "$n" -lt 16 ]; do
	if ! out=$(mvmctl create "fleet-$((n + 1))" --kernel "$build/tests/guest/mvmtest.bzImage" \
		--cmdline "mvmtest=idle" --vcpus 1 --mem 32M --wait 2>&1); then
		mvmctl rm -f "fleet-$((n + 1))" >/dev/null 2>&1 || true
		echo "$out"
		break
	fi
	n=$((n + 1))
done
t1=$(date +%s%N)
echo "$n VMs created and running in $(( (t1 - t0) / 1000000 )) ms"
if [ "$n" -gt 0 ]; then
	sleep 0.5   # their boot lines
	fds1=$(ls "/proc/$mvmd_pid/fd" | wc -l)
	# stats' mem_bytes is each VM's memory cgroup: guest pages touched,
	# the worker's own, and the kernel memory charged to it
	mvmctl -o json stats $(mvmctl list -q | grep '^fleet-') | python3 -c '
import json, sys
vms = json.load(sys.stdin)["vms"]
def per_vm(key):
    v = [x[key] for x in vms if x.get(key) is not None]
    return "%.2f MiB" % (sum(v) / len(v) / 1048576) if v else "n/a (no memory cgroup)"
print()
print("per VM, this fleet of %d (measured now)" % len(vms))
print("  host memory charged to its cgroup  %s" % per_vm("mem_bytes"))
print("  mvmd file descriptors             %.1f" % (('"$fds1 - $fds0"') / len(vms)))
'
fi
stop_fleet
echo
echo "At scale (README \"Density\", bench/density.py on a 2-core 24 GiB host):"
sed -n '/<!-- density-table -->/,/<!-- end density-table -->/p' "$(dirname "$0")/../README.md" | grep '^|'

if [ "$keep" = 1 ]; then
	echo
	echo "mvmd (pid $mvmd_pid) and VM 'demo' keep running.  Try:"
	echo "  export MVM_SOCKET=$MVM_SOCKET"
	echo "  $build/ctl/mvmctl console demo     # Ctrl-] detaches"
	echo "  $build/ctl/mvmctl stop demo; kill $mvmd_pid"
fi
