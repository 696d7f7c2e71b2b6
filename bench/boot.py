#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Boot benchmark: mvm-vmm (bzImage and PVH ELF) against QEMU's microvm.

Boots the test guest's `mvmtest=hello` scenario N times per configuration and
prints, per configuration, median/min/max of
  - exec -> first byte of the guest's serial output on stdout,
  - exec -> process exit,
  - peak RSS of the VMM process,
then the mvm/QEMU ratios and the VMM's memory overhead.

The first byte is the 'M' that every entry point of the test guest sends
before any set-up (tests/guest/guest.h), so it marks when guest code first
ran: the VMM's start-up cost, not the guest's.  Times on a loaded host are
noisy; the table states the load average before and after the runs.

Memory is measured in MEM_RUNS extra, untimed runs per configuration, since
sampling /proc would perturb the timings:
  - peak RSS is the process's VmHWM from /proc/PID/status, sampled every
    millisecond until exit.  wait4()'s ru_maxrss is not usable: Linux charges
    the RSS of the process that called exec (here the Python interpreter,
    ~15 MiB) to the child's maxrss, which hides a small VMM entirely.
  - guest memory touched is the resident size of the guest RAM mapping (the
    smallest mapping of at least --mem bytes) from /proc/PID/smaps.
  - VMM overhead = peak RSS - guest memory touched.

Run by hand; nothing gates on these numbers:
  bench/boot.py [-n 20] [--vmm build/vmm/mvm-vmm] [--guest-dir build/tests/guest]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

MEM_MIB = 128
MEM_RUNS = 3
TIMEOUT = 60.0


class Run:
    def __init__(self, first_byte, exit_time, status, out, mem):
        self.first_byte = first_byte
        self.exit = exit_time
        self.status = status
        self.out = out
        self.rss = mem["hwm"] / 1024.0      # MiB; only from sampled runs
        self.touched = mem["guest"] / 1024.0


def reader(pipe, sink):
    """Appends (time of first byte, data) as the child writes."""
    while True:
        chunk = os.read(pipe.fileno(), 65536)
        if not chunk:
            return
        if sink["first"] is None:
            sink["first"] = time.monotonic()
        sink["data"] += chunk


def memory_sampler(pid, mem_bytes, result, stop):
    """Largest VmHWM and guest-RAM Rss seen until the process is gone."""
    while not stop.is_set():
        try:
            with open("/proc/%d/status" % pid) as f:
                status = f.read()
            with open("/proc/%d/smaps" % pid) as f:
                smaps = f.read()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                result["hwm"] = max(result["hwm"], int(line.split()[1]))
        result["guest"] = max(result["guest"], guest_mapping_rss(smaps, mem_bytes))
        time.sleep(0.001)


def guest_mapping_rss(smaps, mem_bytes):
    """Rss (KiB) of the smallest mapping at least mem_bytes large: the guest
    RAM block (QEMU may round it up; nothing else in a VMM is that big)."""
    best_size, best_rss, size = None, 0, None
    for line in smaps.splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5:     # a mapping's header line
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            size = hi - lo
        elif head[0] == "Rss:" and size is not None and size >= mem_bytes:
            if best_size is None or size < best_size:
                best_size, best_rss = size, int(head[1])
    return best_rss


def boot_once(argv, mem_bytes=0, sample=False):
    out = {"first": None, "data": b""}
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    th = threading.Thread(target=reader, args=(proc.stdout, out), daemon=True)
    th.start()
    mem = {"hwm": 0, "guest": 0}
    stop = threading.Event()
    if sample:
        sampler = threading.Thread(target=memory_sampler,
                                   args=(proc.pid, mem_bytes, mem, stop), daemon=True)
        sampler.start()
    deadline = time.monotonic() + TIMEOUT
    while True:
        # Not proc.wait(): it would reap the process while the sampler still
        # reads its /proc entries; waitid(WNOWAIT) leaves it a zombie.
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
            break
        if time.monotonic() > deadline:
            proc.kill()
            break
        time.sleep(0.0005)
    t_exit = time.monotonic()
    stop.set()
    if sample:
        sampler.join(5)
    proc.wait()
    th.join(5)
    first = (out["first"] - t0) if out["first"] else float("nan")
    return Run(first * 1e3, (t_exit - t0) * 1e3, proc.returncode, out["data"], mem)


def bench(name, argv, n, ok_status):
    """(timed runs, memory runs), or None if any boot failed."""
    runs = []
    for i in range(n + MEM_RUNS):
        r = boot_once(argv, MEM_MIB << 20, sample=i >= n)
        if r.status not in ok_status or b"MVMTEST e820 done" not in r.out:
            print("%s: run %d failed (exit %s); output:\n%s" %
                  (name, i, r.status, r.out.decode(errors="replace")), file=sys.stderr)
            return None
        runs.append(r)
    return runs[:n], runs[n:]


def stats(values):
    values = list(values)
    return statistics.median(values), min(values), max(values)


def summary(runs, mem_runs):
    """Medians used by the table and the ratios."""
    return {
        "first_byte": statistics.median(r.first_byte for r in runs),
        "exit": statistics.median(r.exit for r in runs),
        "rss": statistics.median(r.rss for r in mem_runs),
        "touched": statistics.median(r.touched for r in mem_runs),
        "overhead": statistics.median(r.rss - r.touched for r in mem_runs),
    }


def load_average():
    return "%.2f %.2f %.2f" % os.getloadavg()


def print_table(results, n, load_before):
    print("\nmvmtest=hello, --mem %dM; times: %d boots per row, in ms; memory: %d "
          "sampled boots per row, in MiB" % (MEM_MIB, n, MEM_RUNS))
    print("host: %d CPUs, load average (1/5/15 min) %s before, %s after\n" %
          (os.cpu_count(), load_before, load_average()))
    hdr = "%-20s | %-24s | %-24s | %-24s | %8s %9s"
    print(hdr % ("", "exec->first serial byte", "exec->exit", "peak RSS (VmHWM)",
                 "guest", "VMM"))
    print(hdr % ("", " median     min      max", " median     min      max",
                 " median     min      max", "touched", "overhead"))
    print("-" * 120)
    for name, (runs, mem_runs) in results.items():
        s = summary(runs, mem_runs)
        cells = ["%7.2f %8.2f %8.2f" % stats(getattr(r, attr) for r in rs)
                 for attr, rs in (("first_byte", runs), ("exit", runs), ("rss", mem_runs))]
        print("%-20s | %s | %s | %s | %8.2f %9.2f" %
              (name, cells[0], cells[1], cells[2], s["touched"], s["overhead"]))
    base = results.get("qemu microvm (ELF)")
    if not base:
        return
    q = summary(*base)
    print("\nratios mvm/QEMU (medians):")
    for name, r in results.items():
        if name.startswith("qemu"):
            continue
        m = summary(*r)
        print("  %-20s %s" % (name, ", ".join(
            "%s %.2fx" % (label, m[k] / q[k] if q[k] > 0 else float("nan"))
            for k, label in (("first_byte", "first byte"), ("exit", "exit"),
                             ("rss", "peak RSS"), ("overhead", "VMM overhead")))))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20, help="boots per configuration (default 20)")
    ap.add_argument("--vmm", default=os.path.join(here, "..", "build", "vmm", "mvm-vmm"))
    ap.add_argument("--guest-dir", default=os.path.join(here, "..", "build", "tests", "guest"))
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"))
    a = ap.parse_args()
    bz = os.path.join(a.guest_dir, "mvmtest.bzImage")
    elf = os.path.join(a.guest_dir, "mvmtest.elf")
    for p in (a.vmm, bz, elf):
        if not os.path.exists(p):
            sys.exit("boot.py: %s does not exist (build first, or see --help)" % p)
    common = ["--cmdline", "mvmtest=hello", "--mem", "%dM" % MEM_MIB]
    configs = [
        ("mvm-vmm (bzImage)", [a.vmm, "--kernel", bz] + common, (0,)),
        ("mvm-vmm (PVH ELF)", [a.vmm, "--kernel", elf] + common, (0,)),
    ]
    if a.qemu:
        # -no-reboot turns the guest's i8042 reset into a QEMU exit (status 0).
        configs.append(("qemu microvm (ELF)", [
            a.qemu, "-M", "microvm", "-accel", "kvm", "-m", "%dM" % MEM_MIB,
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-kernel", elf, "-append", "mvmtest=hello"], (0,)))
    else:
        print("qemu-system-x86_64 not found: QEMU rows skipped", file=sys.stderr)
    results = {}
    load_before = load_average()
    for name, argv, ok in configs:
        print("running %s x%d: %s" % (name, a.n, " ".join(argv)), file=sys.stderr)
        r = bench(name, argv, a.n, ok)
        if r:
            results[name] = r
    print_table(results, a.n, load_before)
    return 0 if len(results) == len(configs) else 1


if __name__ == "__main__":
    sys.exit(main())
