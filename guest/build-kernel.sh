#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds mvm's microVM guest kernel from Debian's linux-source-6.1 package:
# allnoconfig + guest/microvm.config, plus guest/patches/*.patch.
#
#   guest/build-kernel.sh [OUTDIR]
#
# Prints the path of the PVH ELF vmlinux (boot it with mvmctl --kernel or
# mvm-vmm; it needs no decompression).  The result is cached under
# $MVM_GUEST_CACHE (default /var/cache/mvm-guest, else ~/.cache/mvm-guest
# when that is not writable), keyed by a hash of the source tarball, the
# config fragment and the patches, so the ~10 CPU-minute build runs once per
# host.  With OUTDIR, vmlinux and bzImage are also copied there.
# Needs: linux-source-6.1 gcc make bc flex bison libelf-dev libssl-dev.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=${MVM_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
frag=$here/microvm.config
outdir=${1:-}

die() { echo "build-kernel.sh: $*" >&2; exit 1; }

[ -r "$src" ] || die "no kernel source at $src: install it (apt-get install linux-source-6.1) or set MVM_LINUX_SOURCE"
for tool in make gcc bc flex bison; do
	command -v $tool >/dev/null || die "$tool is missing: apt-get install gcc make bc flex bison libelf-dev libssl-dev"
done

cache=${MVM_GUEST_CACHE:-/var/cache/mvm-guest}
if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/mvm-guest
	mkdir -p "$cache"
fi

key=$( { stat -c '%s %Y' "$src"; cat "$frag" "$here"/patches/*.patch 2>/dev/null; } | sha256sum | cut -c1-16)
dest=$cache/linux-$key
if [ ! -f "$dest/vmlinux" ]; then
	work=$(mktemp -d "$cache/build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	echo "build-kernel.sh: building in $work (about 10 minutes on 2 cores)" >&2
	tar -xf "$src" -C "$work"
	tree=$(echo "$work"/linux-source-*)
	for p in "$here"/patches/*.patch; do
		[ -e "$p" ] || continue
		patch -d "$tree" -p1 -s < "$p" || die "patch $p does not apply to $src"
	done
	make -C "$tree" -s KCONFIG_ALLCONFIG="$frag" allnoconfig >&2
	# Every line of the fragment must have survived Kconfig.
	missing=0
	while IFS= read -r line; do
		case $line in CONFIG_*) ;; *) continue ;; esac
		sym=${line%%=*} val=${line#*=}
		if [ "$val" = n ]; then
			grep -qx "$sym=y" "$tree/.config" && { echo "build-kernel.sh: $sym is set, wanted off" >&2; missing=1; }
		else
			grep -qx "$line" "$tree/.config" || { echo "build-kernel.sh: $line did not survive Kconfig (a dependency is missing)" >&2; missing=1; }
		fi
	done < "$frag"
	[ $missing = 0 ] || die "the config fragment does not hold; fix $frag"
	make -C "$tree" -s -j"$(nproc)" vmlinux bzImage >&2
	mkdir -p "$work/out"
	cp "$tree/vmlinux" "$tree/arch/x86/boot/bzImage" "$tree/.config" "$work/out/"
	strip --strip-debug "$work/out/vmlinux" 2>/dev/null || true
	rm -rf "$dest"
	mv "$work/out" "$dest"
fi
if [ -n "$outdir" ]; then
	mkdir -p "$outdir"
	cp "$dest/vmlinux" "$dest/bzImage" "$dest/.config" "$outdir/"
	echo "$outdir/vmlinux"
else
	echo "$dest/vmlinux"
fi
