#!/bin/bash
# SPDX-License-Identifier: MIT
# The installed documentation works: every man page renders without a
# groff or man warning, the completion scripts parse (bash -n, zsh -n), and
# every config key of the README's table is in mvmd.conf.example and
# mvmd.conf(5).  A missing man or zsh skips only its own check; with
# neither tool at all the test exits 77.
#
#   docs.sh SRCDIR MANDIR
set -euo pipefail

src=$1 mandir=$2
failed=0 ran=0

fail() {
	echo "docs: FAIL: $*" >&2
	failed=1
}

if command -v man >/dev/null; then
	for page in "$mandir"/mvmd.8 "$mandir"/mvmd.conf.5 "$mandir"/mvmctl.1 "$mandir"/mvm-vmm.1; do
		[ -f "$page" ] || { fail "$page was not generated"; continue; }
		# --warnings makes groff report bad requests, escapes and fonts
		out=$(MANWIDTH=80 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null) || true
		[ -z "$out" ] || fail "$(basename "$page"): $out"
		lines=$(MANWIDTH=80 man -l "$page" 2>/dev/null | wc -l)
		[ "$lines" -gt 20 ] || fail "$(basename "$page") renders to $lines lines"
		if grep -q '@VERSION@' "$page"; then fail "$(basename "$page") still says @VERSION@"; fi
		echo "man: $(basename "$page"): $lines lines, no warnings"
	done
	ran=1
else
	echo "man: not installed, pages not rendered (Debian: man-db)"
fi

bash -n "$src/completion/mvmctl.bash" || fail "completion/mvmctl.bash does not parse"
echo "bash: completion/mvmctl.bash parses"
if command -v zsh >/dev/null; then
	zsh -n "$src/completion/_mvmctl" || fail "completion/_mvmctl does not parse"
	echo "zsh: completion/_mvmctl parses"
	ran=1
else
	echo "zsh: not installed, completion/_mvmctl not parsed (Debian: zsh)"
fi

# the README's config table: its first column, `key`, `key2`; skip the
# prefix-only entries (.max_mem) and the ones the example spells out
keys=$(sed -n '/^| key | default | meaning |/,/^$/p' "$src/README.md" |
	sed -n 's/^| \([^|]*\) |.*/\1/p' | grep -o '`[a-z_][a-z_]*`' | tr -d '`' | sort -u)
[ -n "$keys" ] || fail "no config table found in README.md"
for k in $keys; do
	grep -q "^#$k = \|^#$k .*max\|^#$k\.default\." "$src/systemd/mvmd.conf.example" ||
		fail "config key '$k' (README) is missing from systemd/mvmd.conf.example"
	grep -q "$k" "$src/man/mvmd.conf.5" || fail "config key '$k' (README) is missing from mvmd.conf(5)"
done
echo "config keys: $(wc -w <<<"$keys") from the README in the example and mvmd.conf(5)"

[ "$failed" = 0 ] || exit 1
[ "$ran" = 1 ] || { echo "docs: skipped: neither man nor zsh is installed"; exit 77; }
