#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds an ext4 root filesystem image for an mvm guest.
#
#   guest/build-rootfs.sh [--size SIZE] [--from DIR] [--add DIR]... IMAGE
#
# Default: a busybox-static system (about 2 MiB used) whose busybox init
# mounts /proc, /sys, /dev, /run and /tmp, brings up lo and eth0 (address
# from mvm.ip= on the kernel command line), runs a root shell on ttyS0 and
# powers off on Ctrl-Alt-Del (mvmctl stop).  It prints
# "mvm-guest: userspace up" once ready.
#
# --from DIR puts the tree DIR in the image as it is instead: a debootstrap
# tree, say (debootstrap --variant=minbase bookworm DIR; then enable a
# serial getty on ttyS0 in it).  --add DIR copies DIR over the tree
# (repeatable).  SIZE takes K/M/G (default 64M; at least what the tree
# needs).  No root or loop devices needed: mkfs.ext4 -d writes the files.
# Needs: e2fsprogs, and busybox-static for the default tree.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
size=64M from= adds=() image=

die() { echo "build-rootfs.sh: $*" >&2; exit 1; }
usage() { sed -n '4,5p' "$0" | sed 's/^# *//' >&2; exit 2; }

while [ $# -gt 0 ]; do
	case $1 in
	--size) size=${2:?--size needs a value}; shift 2 ;;
	--from) from=${2:?--from needs a directory}; shift 2 ;;
	--add) adds+=("${2:?--add needs a directory}"); shift 2 ;;
	-h|--help) usage ;;
	-*) echo "build-rootfs.sh: unknown option $1" >&2; usage ;;
	*) [ -z "$image" ] || usage; image=$1; shift ;;
	esac
done
[ -n "$image" ] || usage
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing: apt-get install e2fsprogs"

tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT

if [ -n "$from" ]; then
	[ -d "$from" ] || die "--from $from is not a directory"
	cp -a "$from"/. "$tree"/
else
	bb=${MVM_BUSYBOX:-/bin/busybox}
	[ -x "$bb" ] || die "no busybox at $bb: apt-get install busybox-static (or set MVM_BUSYBOX)"
	if ldd "$bb" >/dev/null 2>&1; then
		die "$bb is dynamically linked; the image has no libc: install busybox-static"
	fi
	mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,etc/init.d,proc,sys,dev,run,tmp,root,mnt,var/log}
	chmod 1777 "$tree/tmp"
	cp "$bb" "$tree/bin/busybox"
	# One link per applet, where busybox --list-full says it lives.
	"$bb" --list-full | while read -r applet; do
		[ -e "$tree/$applet" ] || ln -s /bin/busybox "$tree/$applet"
	done
	cp "$here/rootfs/inittab" "$here/rootfs/fstab" "$tree/etc/"
	install -m 0755 "$here/rootfs/rcS" "$tree/etc/init.d/rcS"
	echo "mvm" > "$tree/etc/hostname"
	printf 'root:x:0:0:root:/root:/bin/sh\n' > "$tree/etc/passwd"
	printf 'root:x:0:\n' > "$tree/etc/group"
	printf 'export PS1="\\\\h:\\\\w# "\n' > "$tree/etc/profile"
fi
for a in "${adds[@]}"; do
	[ -d "$a" ] || die "--add $a is not a directory"
	cp -a "$a"/. "$tree"/
done

rm -f "$image"
# root_owner: the image's root directory belongs to root whoever builds it.
mkfs.ext4 -q -F -L mvmroot -E root_owner=0:0 -d "$tree" "$image" "$size" >&2 ||
	die "mkfs.ext4 failed; if the tree does not fit, raise --size (now $size)"
echo "$image"
