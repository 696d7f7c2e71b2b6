#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Block I/O benchmark: mvm-vmm against QEMU -M microvm, same guest, same
image size, same run.

Both VMMs boot the test guest's PVH ELF with one virtio-blk disk (QEMU:
`-M microvm -global virtio-mmio.force-legacy=false -device
virtio-blk-device`, default aio=threads, cache=writeback) and run
`mvmtest=blkbench:N` (default N=64): the guest writes N MiB in requests as
large as the device allows (1 MiB, one data descriptor), up to a queue's
worth in flight, reads it back, checks it, flushes.  Chains are built and
completions reaped in ring 3, which runs natively on this host while CPL0
is emulated, so the device path is what is measured.  Runs of the two
VMMs alternate, so drift on the host hits both.

Per run:
  wall     exec to exit of the VMM process (boot, setup, I/O, flush, exit),
  write/read ms and MiB/s
           measured by the guest with rdtsc around each phase (first request
           posted to last completion), converted with the host TSC
           frequency (calibrated against CLOCK_MONOTONIC, /proc/cpuinfo as a
           fallback); KVM does not scale the guest TSC here,
  reqs     read + write requests, as the guest reports them,
  uexits/req
           exits to userspace per request: perf's kvm:kvm_userspace_exit
           count for the whole VMM process, marginal over a blkbench:0 run
           (same boot, same device setup and flush, no data), divided by
           the request count.  It is counted the same way for both VMMs;
           each KVM_RUN return is one (MMIO register accesses, the serial
           port, halts where KVM does not handle them).  n/a without perf.
  flush ms the guest's FLUSH request (fdatasync on the host), same clock,
  mmio/req (mvm-vmm only)
           the virtio-blk window's register accesses that reached
           userspace, from MVM_VIRTIO_STATS=1, marginal over blkbench:0.
           QEMU has no such counter: n/a.
  kicks/req, irqs/req (mvm-vmm only)
           queue notifications (ioeventfd: no userspace exit) and
           interrupts raised (irqfd), per request, from the same counters.

The image lives on /dev/shm when it is writable (--dir to change): tmpfs
keeps the host disk's writeback, which swamps the device path on this
host, out of the numbers (and makes the flush nearly free).

Prints every run, then one table of medians [min..max] and mvm/QEMU ratios.
Run by hand; never gates CI: exits 0 unless nothing could run (77 without
/dev/kvm).

Usage: bench/blk.py --vmm BUILD/vmm/mvm-vmm --elf BUILD/tests/guest/mvmtest.elf
       [--runs 5] [--scenario blkbench:64] [--qemu PATH] [--mem MIB]
"""

import argparse
import ctypes
import mmap
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

MIB = 1 << 20
BUF_BASE_MIB = 64  # where blkbench puts its buffer in guest RAM

# rdtsc; shl $32, %rdx; or %rdx, %rax; ret
RDTSC_CODE = bytes([0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3])


def tsc_from_cpuinfo():
    with open("/proc/cpuinfo") as f:
        text = f.read()
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
    return float(m.group(1)) * 1e6 if m else None


def tsc_calibrate():
    """Host TSC in Hz against CLOCK_MONOTONIC over ~0.3 s, or None."""
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE,
                         prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, AttributeError):
        return None
    page.write(RDTSC_CODE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
    t0, c0 = time.monotonic(), rdtsc()
    time.sleep(0.3)
    t1, c1 = time.monotonic(), rdtsc()
    del rdtsc
    return (c1 - c0) / (t1 - t0)


def perf_ok():
    if not shutil.which("perf"):
        return False
    r = subprocess.run(["perf", "stat", "-x,", "-e", "kvm:kvm_userspace_exit", "true"],
                       capture_output=True, text=True)
    return r.returncode == 0 and "kvm:kvm_userspace_exit" in r.stderr


def make_image(path, mib):
    """A fresh, fully allocated image for every run."""
    if os.path.exists(path):
        os.unlink(path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(mib, 1) * MIB)
    finally:
        os.close(fd)


def mvm_argv(a, scenario, disk):
    return [a.vmm, "--kernel", a.elf, "--mem", "%dM" % a.mem, "--serial", "stdio",
            "--cmdline", "mvmtest=" + scenario, "--disk", disk + ",id=disk0"]


def qemu_argv(a, scenario, disk):
    return [a.qemu, "-M", "microvm", "-accel", "kvm", "-m", "%dM" % a.mem,
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-global", "virtio-mmio.force-legacy=false",
            "-drive", "id=d,file=%s,format=raw,if=none" % disk,
            "-device", "virtio-blk-device,drive=d,serial=disk0",
            "-kernel", a.elf, "-append", "mvmtest=" + scenario]


def run_once(argv, use_perf):
    """Returns (seconds, userspace exits or None, stdout, stderr)."""
    fd, perf_out = tempfile.mkstemp(prefix="mvm-bench-perf-")
    os.close(fd)
    cmd = argv
    if use_perf:
        cmd = ["perf", "stat", "-x,", "-o", perf_out, "-e", "kvm:kvm_userspace_exit",
               "--"] + argv
    env = dict(os.environ, MVM_VIRTIO_STATS="1")
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=300, env=env)
    dt = time.monotonic() - t0
    uexits = None
    with open(perf_out) as f:
        for line in f:
            fields = line.split(",")
            if len(fields) > 2 and fields[2] == "kvm:kvm_userspace_exit" and \
                    fields[0].isdigit():
                uexits = int(fields[0])
    os.unlink(perf_out)
    return dt, uexits, p.stdout, p.stderr


GUEST_RE = {
    "write": re.compile(r"^MVMTEST blkbench write done reqs=(\d+) tsc=(\d+)$", re.M),
    "read": re.compile(r"^MVMTEST blkbench read done reqs=(\d+) tsc=(\d+) ok$", re.M),
}
FLUSH_RE = re.compile(r"^MVMTEST blkbench flush done tsc=(\d+)$", re.M)
STATS_RE = re.compile(r"stats virtio-blk slot=\d+ mmio_exits=(\d+) notifies=(\d+) irqs=(\d+)")


def parse_run(name, scenario, dt, uexits, out, err, tsc_hz, mib):
    """One run's numbers; exits with the guest's reason if it failed."""
    if "MVMTEST FAIL" in out:
        fail = [line for line in out.splitlines() if "MVMTEST FAIL" in line]
        raise SystemExit("%s (%s): guest failed: %s" % (name, scenario, fail))
    r = {"wall": dt * 1000, "uexits": uexits, "reqs": 0}
    for phase, rx in GUEST_RE.items():
        m = rx.search(out)
        if not m:
            raise SystemExit("%s (%s): no '%s done' line:\n%s\n%s"
                             % (name, scenario, phase, out, err))
        reqs, cycles = int(m.group(1)), int(m.group(2))
        r["reqs"] += reqs
        r[phase + "_ms"] = cycles / tsc_hz * 1000
        r[phase + "_mibs"] = mib / (cycles / tsc_hz) if mib and cycles else None
    m = FLUSH_RE.search(out)
    if not m:
        raise SystemExit("%s (%s): no 'flush done' line:\n%s" % (name, scenario, out))
    r["flush_ms"] = int(m.group(1)) / tsc_hz * 1000
    m = STATS_RE.search(err)
    r["mmio"], r["kicks"], r["irqs"] = (int(x) for x in m.groups()) if m else (None,) * 3
    return r


def marginal(run, base, key):
    """Per request, over the blkbench:0 baseline of the same VMM."""
    if run[key] is None or base[key] is None or run["reqs"] == base["reqs"]:
        return None
    return (run[key] - base[key]) / (run["reqs"] - base["reqs"])


def fmt(v, spec=".1f"):
    return format(v, spec) if v is not None else "n/a"


def print_run(name, i, r):
    print("%-12s run %d: wall %7.1f ms  write %7.1f ms %7s MiB/s  read %7.1f ms %7s MiB/s"
          "  flush %6.1f ms  reqs %d  uexits/req %s  mmio/req %s"
          % (name, i + 1, r["wall"], r["write_ms"], fmt(r["write_mibs"], ".0f"),
             r["read_ms"], fmt(r["read_mibs"], ".0f"), r["flush_ms"], r["reqs"],
             fmt(r["uexits_req"], ".2f"),
             fmt(r["mmio_req"], ".2f")))


METRICS = [  # key, label, format
    ("wall", "wall ms", ".1f"),
    ("write_ms", "write ms (guest)", ".2f"),
    ("read_ms", "read ms (guest)", ".2f"),
    ("flush_ms", "flush ms (guest)", ".2f"),
    ("base_wall", "wall, N=0 ms", ".1f"),
    ("write_mibs", "write MiB/s", ".0f"),
    ("read_mibs", "read MiB/s", ".0f"),
    ("reqs", "requests", ".0f"),
    ("uexits_req", "uexits/req", ".2f"),
    ("mmio_req", "mmio exits/req", ".2f"),
    ("kicks_req", "kicks/req", ".3f"),
    ("irqs_req", "irqs/req", ".3f"),
]


def summary(runs, key, spec):
    xs = [r[key] for r in runs if r[key] is not None]
    if not xs:
        return None, "n/a"
    m = statistics.median(xs)
    return m, "%s [%s..%s]" % (format(m, spec), format(min(xs), spec), format(max(xs), spec))


def print_table(rows, names):
    print()
    print("%-17s" % "metric" + "".join("%-28s" % n for n in names) +
          ("mvm/qemu" if len(names) == 2 else ""))
    for key, label, spec in METRICS:
        meds, cells = [], []
        for n in names:
            m, cell = summary(rows[n], key, spec)
            meds.append(m)
            cells.append(cell)
        ratio = ""
        if len(names) == 2:
            ratio = fmt(meds[0] / meds[1] if meds[0] is not None and meds[1] else None, ".2f")
        print("%-17s" % label + "".join("%-28s" % c for c in cells) + ratio)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vmm", required=True)
    ap.add_argument("--elf", required=True)
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenario", default="blkbench:64")
    ap.add_argument("--dir", default=None,
                    help="where the image lives (default /dev/shm if writable, else $TMPDIR):"
                         " tmpfs keeps the host disk's writeback out of the numbers")
    ap.add_argument("--mem", type=int, default=0,
                    help="guest MiB (default: enough for the buffer, at least 256)")
    a = ap.parse_args()
    m = re.fullmatch(r"blkbench:(\d+)", a.scenario)
    if not m or int(m.group(1)) == 0:
        ap.error("--scenario must be blkbench:N with N > 0")
    a.mib = int(m.group(1))
    a.mem = a.mem or max(256, BUF_BASE_MIB + a.mib + 16)
    if a.dir is None and os.access("/dev/shm", os.W_OK):
        a.dir = "/dev/shm"
    return a


def main():
    a = parse_args()
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("cannot open /dev/kvm: nothing to measure", file=sys.stderr)
        return 77
    use_perf = perf_ok()
    if not use_perf:
        print("perf with kvm tracepoints unavailable: uexits/req n/a", file=sys.stderr)
    tsc_hz, src = tsc_calibrate(), "calibrated against CLOCK_MONOTONIC"
    if not tsc_hz:
        tsc_hz, src = tsc_from_cpuinfo(), "/proc/cpuinfo cpu MHz"
    if not tsc_hz:
        raise SystemExit("cannot find the TSC frequency")
    configs = [("mvm-vmm", mvm_argv)]
    if a.qemu:
        configs.append(("qemu-microvm", qemu_argv))
    else:
        print("qemu-system-x86_64 not found: QEMU column skipped", file=sys.stderr)
    print("blkbench: %d MiB written and read back, guest RAM %d MiB, %d runs each, "
          "image in %s; TSC %.1f MHz (%s; cpuinfo says %s)"
          % (a.mib, a.mem, a.runs, a.dir or tempfile.gettempdir(), tsc_hz / 1e6, src,
             fmt(tsc_from_cpuinfo() / 1e6)))
    rows = {name: [] for name, _ in configs}
    with tempfile.TemporaryDirectory(prefix="mvm-bench-blk-", dir=a.dir) as tmp:
        disk = os.path.join(tmp, "disk.img")
        for i in range(a.runs):
            for name, build in configs:
                res = {}
                for scen, mib in (("blkbench:0", 0), (a.scenario, a.mib)):
                    make_image(disk, a.mib)
                    dt, uex, out, err = run_once(build(a, scen, disk), use_perf)
                    res[mib] = parse_run(name, scen, dt, uex, out, err, tsc_hz, mib)
                r, base = res[a.mib], res[0]
                r["base_wall"] = base["wall"]
                for key in ("uexits", "mmio", "kicks", "irqs"):
                    r[key + "_req"] = marginal(r, base, key)
                rows[name].append(r)
                print_run(name, i, r)
    print_table(rows, [name for name, _ in configs])
    return 0


if __name__ == "__main__":
    sys.exit(main())
