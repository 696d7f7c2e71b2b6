#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Where one worker's kernel memory goes: trace a hand-run sandboxed
mvm-vmm's allocations and print what is still live once its guest idles.

Runs `mvm-vmm --sandbox --sandbox-dir DIR` on the idle test guest in a
memory cgroup of its own (joined before the exec, as mvmd's workers are),
with the kernel's kmem trace events on for it and its threads (tracefs
set_event_pid with event-fork): slab and kmalloc allocations by call site
and cache, page allocations by the first callers past the allocator (a
stack trace per page), minus what the same tasks freed.  Prints those
sums and the cgroup's charge (all, kernel).  Frees done elsewhere (RCU
callbacks, kworkers) are not seen, so a site can read a little high;
shared costs (a cache slab another task filled) are not seen at all.
Run by hand, the worker forks a waiter first (docs/security.md, "The PID
namespace"): the page tables `copy_page_range < dup_mmap` and the
copy-on-write pages `do_wp_page` of that fork are not there under mvmd.

Not a benchmark: nothing is timed.  Root, /dev/kvm, tracefs, a v1 or v2
memory controller.

Usage: bench/kmem.py [--build DIR] [--mem SIZE] [--idle S] [--top N]
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Frames of the allocators themselves, skipped to name who allocated.
ALLOC_FRAMES = (
    "trace_event_raw", "__alloc_frozen", "alloc_pages", "__alloc_pages", "alloc_frozen",
    "folio_alloc", "vma_alloc", "__folio_alloc", "__get_free", "get_zeroed", "___kmalloc_large",
    "__kmalloc_large", "kmalloc_large", "__kmalloc", "kmem_cache_alloc", "allocate_slab",
    "new_slab", "___slab_alloc", "__slab_alloc", "__vmalloc", "vmalloc", "kvmalloc",
    "__kvmalloc", "vm_area_alloc_pages", "__alloc_pages_bulk", "alloc_pages_bulk", "pte_alloc_one",
    "__pte_alloc", "__pmd_alloc", "__pud_alloc", "__p4d_alloc", "mmu_memory_cache_alloc_obj",
    "__kvm_mmu_topup_memory_cache", "kvm_mmu_topup_memory_cache")


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--mem", default="32M", help="guest memory (default 32M)")
    ap.add_argument("--idle", type=float, default=8.0, help="seconds before the snapshot")
    ap.add_argument("--top", type=int, default=25, help="rows per table (default 25)")
    return ap.parse_args()


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def memory_cgroup():
    """A fresh memory cgroup: (dir, [charge file, kernel file or None])."""
    v1 = "/sys/fs/cgroup/memory"
    name = "mvm-kmem-%d" % os.getpid()
    if os.path.isdir(v1):
        d = os.path.join(v1, name)
        os.mkdir(d)
        return d, ("memory.usage_in_bytes", "memory.kmem.usage_in_bytes")
    d = os.path.join("/sys/fs/cgroup", name)
    os.mkdir(d)
    return d, ("memory.current", None)


def cgroup_charge(d, files):
    with open(os.path.join(d, files[0])) as f:
        used = int(f.read())
    if files[1]:
        with open(os.path.join(d, files[1])) as f:
            return used, int(f.read())
    with open(os.path.join(d, "memory.stat")) as f:
        st = dict(l.split() for l in f)
    return used, int(st.get("kernel", 0))


def analyse(text):
    """Live slab objects by (site, cache, charged) and live pages by
    (kind, callers, charged), in bytes."""
    objs, pages = {}, {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        m = re.search(r"(?:kmem_cache_alloc|kmalloc): call_site=(\S+) ptr=(\S+) (?:name=(\S+) )?"
                      r"bytes_req=\d+ bytes_alloc=(\d+) .*accounted=(\w+)", line)
        if m:
            objs[m.group(2)] = (int(m.group(4)), m.group(1).split("+")[0], m.group(3) or "kmalloc",
                                m.group(5) == "true")
            continue
        m = re.search(r"(?:kmem_cache_free|kfree): call_site=\S+ ptr=(\S+)", line)
        if m:
            objs.pop(m.group(1), None)
            continue
        m = re.search(r"mm_page_alloc: page=\S+ pfn=(\S+) order=(\d+) .*gfp_flags=(\S+)", line)
        if m:
            stack = []
            if i < len(lines) and "<stack trace>" in lines[i]:
                i += 1
                while i < len(lines) and lines[i].startswith(" =>"):
                    stack.append(lines[i][4:].split("+")[0])
                    i += 1
            if "allocate_slab" in stack or "new_slab" in stack or "__kmalloc_large_node" in stack \
                    or "___kmalloc_large_node" in stack:
                continue  # counted as objects
            kind = "user" if ("do_anonymous_page" in stack or "do_wp_page" in stack) else "kernel"
            who = [f for f in stack if not f.startswith(ALLOC_FRAMES)]
            pages[m.group(1)] = (4096 << int(m.group(2)), kind, " < ".join(who[:3]),
                                 "__GFP_ACCOUNT" in m.group(3) or "GFP_KERNEL_ACCOUNT" in m.group(3))
            continue
        m = re.search(r"mm_page_free: page=\S+ pfn=(\S+)", line)
        if m:
            pages.pop(m.group(1), None)
    by_obj = collections.Counter()
    for size, site, cache, acc in objs.values():
        by_obj[(site, cache, acc)] += size
    by_page = collections.Counter()
    for size, kind, who, acc in pages.values():
        by_page[(kind, who, acc)] += size
    return by_obj, by_page


def main():
    args = parse_args()
    if os.geteuid() != 0:
        print("skipped: bench/kmem.py needs root", file=sys.stderr)
        return 77
    vmm = os.path.abspath(os.path.join(args.build, "vmm", "mvm-vmm"))
    guest = os.path.abspath(os.path.join(args.build, "tests", "guest", "mvmtest.bzImage"))
    for p in (vmm, guest):
        if not os.path.exists(p):
            sys.exit("kmem: %s not found; build first" % p)
    tfs = tempfile.mkdtemp(prefix="mvm-kmem-tracefs.")
    jail = tempfile.mkdtemp(prefix="mvm-kmem-jail.")
    subprocess.run(["mount", "-t", "tracefs", "mvm-kmem", tfs], check=True)
    cg, files = memory_cgroup()
    proc = None
    try:
        t = lambda f: os.path.join(tfs, f)  # noqa: E731
        write(t("tracing_on"), "0")
        write(t("trace"), "")
        write(t("buffer_size_kb"), "65536")
        write(t("set_event"), "\n".join(
            "kmem:" + e for e in ("kmem_cache_alloc", "kmalloc", "mm_page_alloc",
                                  "kmem_cache_free", "kfree", "mm_page_free")) + "\n")
        write(t("options/event-fork"), "1")
        write(t("events/kmem/mm_page_alloc/trigger"), "stacktrace")

        def enter():
            # in the child, before the exec: its cgroup, its trace
            pid = str(os.getpid())
            write(os.path.join(cg, "cgroup.procs"), pid)
            write(t("set_event_pid"), pid)
            write(t("tracing_on"), "1")

        cmd = [vmm, "--sandbox", "--sandbox-dir", jail, "--kernel", guest, "--mem", args.mem,
               "--cmdline", "console=ttyS0 mvmtest=idle", "--serial", "/dev/null"]
        proc = subprocess.Popen(cmd, preexec_fn=enter, stdin=subprocess.DEVNULL)
        time.sleep(args.idle)
        if proc.poll() is not None:
            sys.exit("kmem: mvm-vmm exited %d before the snapshot" % proc.returncode)
        used, kernel = cgroup_charge(cg, files)
        write(t("tracing_on"), "0")
        with open(t("trace")) as f:
            text = f.read()
        lost = re.search(r"entries-in-buffer/entries-written: (\d+)/(\d+)", text)
    finally:
        for f, v in (("events/kmem/mm_page_alloc/trigger", "!stacktrace"), ("set_event", ""),
                     ("set_event_pid", ""), ("trace", "")):
            try:
                write(os.path.join(tfs, f), v)
            except OSError:
                pass
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        subprocess.run(["umount", tfs], check=False)
        os.rmdir(tfs)
        shutil.rmtree(jail, ignore_errors=True)
        for _ in range(20):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)
    objs, pages = analyse(text)
    print("mvm-vmm --sandbox, idle %s guest after %.0f s: its memory cgroup is charged %.0f KiB "
          "(kernel %.0f KiB)" % (args.mem, args.idle, used / 1024, kernel / 1024))
    if lost and lost.group(1) != lost.group(2):
        print("warning: the trace buffer dropped events (%s of %s kept)" % lost.groups())
    tot = sum(objs.values())
    print("\nslab and kmalloc objects still live: %.1f KiB (charged %.1f)"
          % (tot / 1024, sum(v for k, v in objs.items() if k[2]) / 1024))
    for (site, cache, acc), v in objs.most_common(args.top):
        print("  %7.1f KiB  %-36s %-24s %s" % (v / 1024, site, cache, "charged" if acc else ""))
    print("\npages still live (user: the worker's own; kernel: page tables, vmalloc, KVM): "
          "%.1f KiB" % (sum(pages.values()) / 1024))
    for (kind, who, acc), v in pages.most_common(args.top):
        print("  %7.1f KiB  %-6s %-7s %s" % (v / 1024, kind, "charged" if acc else "", who[:120]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
