#!/bin/bash
# SPDX-License-Identifier: MIT
# Checks systemd/mvmd.service offline, as configured for installation:
# `systemd-analyze verify` finds no error or warning, and `systemd-analyze
# security` rates its exposure at most 4.0 (docs of the trade-offs are in
# the unit's comments).  mvm-guests.service (next to it) must verify too,
# and its script parse.  Exits 77 without systemd-analyze.
#
#   systemd-unit.sh UNIT MVMD
set -euo pipefail

unit=$1 mvmd=$2
max_exposure=40 # tenths, as --threshold counts

if ! command -v systemd-analyze >/dev/null; then
	echo "systemd-unit: skipped: systemd-analyze is not installed (Debian: systemd)"
	exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# verify wants ExecStart= to name an executable: the build's mvmd
sed -E "s#^ExecStart=[^ ]+#ExecStart=$mvmd#" "$unit" >"$dir/mvmd.service"
grep -q "^ExecStart=$mvmd " "$dir/mvmd.service" || {
	echo "systemd-unit: FAIL: no ExecStart= line to point at $mvmd" >&2
	exit 1
}

# man pages are checked by docs.sh; they are not installed here
if ! out=$(systemd-analyze verify --man=no "$dir/mvmd.service" 2>&1) || [ -n "$out" ]; then
	echo "systemd-unit: FAIL: systemd-analyze verify:" >&2
	echo "$out" >&2
	exit 1
fi
echo "verify: mvmd.service clean"

guests=$(dirname "$unit")/mvm-guests
sh -n "$guests" || { echo "systemd-unit: FAIL: $guests does not parse" >&2; exit 1; }
sed -E "s#^ExecStop=.*#ExecStop=/bin/sh $guests#" "$guests.service" >"$dir/mvm-guests.service"
# verify resolves mvm-guests.service's Wants=mvmd.service beside it
if ! out=$(cd "$dir" && systemd-analyze verify --man=no mvm-guests.service 2>&1) || [ -n "$out" ]; then
	echo "systemd-unit: FAIL: systemd-analyze verify mvm-guests.service:" >&2
	echo "$out" >&2
	exit 1
fi
echo "verify: mvm-guests.service clean"

report=$(systemd-analyze security --offline=true --no-pager "$dir/mvmd.service" 2>&1 || true)
overall=$(grep -o 'exposure level for mvmd.service: [0-9.]*' <<<"$report" | grep -o '[0-9.]*$' || true)
if [ -z "$overall" ]; then
	echo "systemd-unit: FAIL: systemd-analyze security printed no exposure:" >&2
	echo "$report" >&2
	exit 1
fi
echo "security: exposure $overall (at most $((max_exposure / 10)).$((max_exposure % 10)))"
if ! systemd-analyze security --offline=true --threshold=$max_exposure \
	"$dir/mvmd.service" >/dev/null 2>&1; then
	echo "systemd-unit: FAIL: exposure $overall is above the threshold; what is open:" >&2
	grep '✗' <<<"$report" >&2
	exit 1
fi
