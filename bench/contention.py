#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Noisy-neighbour benchmark: one VM floods its disk while another measures
its own disk, without a limit on the flooder and with one, under mvm-vmm
(--disk ...,bps=) and under QEMU -M microvm (a throttle group: -object
throttle-group and a throttle filter node over the flooder's drive).

Both VMs run the test guest's PVH ELF.  The neighbour runs
`blkbench:NB,4`: NB MiB written and read back in 4 KiB requests, as many in
flight as the queue holds, timed by the guest with rdtsc (KVM does not
scale the TSC here).  Its rate is total requests over total time; the
"us/req" column is the inverse of that rate (the mean time per request at
the queue's depth, not a single request's latency).  The flooder runs
`blkbench:F,64` in 64 KiB requests and is started first (QEMU's throttle
lets a queue's worth through at once and holds the debt against the next
requests: with 1 MiB requests the guest's 2 s wait for a completion runs
out); the neighbour
starts FLOOD_LEAD seconds later.  "overlap" says in how many runs the
flooder was still running when the neighbour ended (only those runs show
contention).  The flooder's rate is what it moved over the phases the guest
timed that ended before it was stopped (none when unlimited: it is stopped
mid-write once the neighbour is done).

Network flooding is not part of this benchmark yet (only disks): see
tests/kvm/contention_test.py for the NIC limits.

Usage: contention.py [--vmm PATH] [--elf PATH] [--qemu PATH] [--runs 3]
       [--limit-mib 4] [--dir DIR]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blk import make_image, tsc_calibrate, tsc_from_cpuinfo  # noqa: E402

MIB = 1 << 20
NB_MIB = 16
FLOOD_MIB = {"unlimited": 256, "limited": 16}
FLOOD_LEAD = 1.0
PHASE_RE = re.compile(r"^MVMTEST blkbench (write|read) done reqs=(\d+) tsc=(\d+)", re.M)


def mem_for(mib):
    return 64 + mib + 32


def mvm_argv(a, scenario, disk, mib, limit):
    d = disk + ",id=disk0" + (",bps=%d" % limit if limit else "")
    return [a.vmm, "--kernel", a.elf, "--mem", "%dM" % mem_for(mib), "--serial", "stdio",
            "--cmdline", "mvmtest=" + scenario, "--disk", d]


def qemu_argv(a, scenario, disk, mib, limit):
    argv = [a.qemu, "-M", "microvm", "-accel", "kvm", "-m", "%dM" % mem_for(mib),
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-global", "virtio-mmio.force-legacy=false"]
    if limit:
        argv += ["-object", "throttle-group,id=tg0,x-bps-total=%d" % limit,
                 "-blockdev", "driver=file,node-name=f0,filename=" + disk,
                 "-blockdev", "driver=raw,node-name=r0,file=f0",
                 "-blockdev", "driver=throttle,node-name=t0,throttle-group=tg0,file=r0",
                 "-device", "virtio-blk-device,drive=t0,serial=disk0"]
    else:
        argv += ["-drive", "id=d,file=%s,format=raw,if=none" % disk,
                 "-device", "virtio-blk-device,drive=d,serial=disk0"]
    return argv + ["-kernel", a.elf, "-append", "mvmtest=" + scenario]


def phases(out, hz):
    return {p: (int(reqs), int(tsc) / hz) for p, reqs, tsc in PHASE_RE.findall(out)}


def spawn(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return out, err


def one_run(a, argv_fn, mode, hz):
    """(neighbour ops/s, flooder write MiB/s or None, overlapped) of a run."""
    nb_img = os.path.join(a.dir, "nb.img")
    fl_img = os.path.join(a.dir, "fl.img")
    make_image(nb_img, NB_MIB + 1)
    flooder = None
    limit = a.limit_mib * MIB if mode == "limited" else 0
    if mode != "solo":
        fmib = FLOOD_MIB[mode]
        make_image(fl_img, fmib + 1)
        flooder = spawn(argv_fn(a, "blkbench:%d,64" % fmib, fl_img, fmib, limit))
        time.sleep(FLOOD_LEAD)
    nb = spawn(argv_fn(a, "blkbench:%d,4" % NB_MIB, nb_img, NB_MIB, 0))
    out, err = finish(nb, 300)
    overlapped = flooder is not None and flooder.poll() is None
    fl_rate = None
    if flooder:
        if mode == "limited":
            # its whole run at the limit (write and read back), bounded
            fout, ferr = finish(flooder, 3 * fmib / a.limit_mib + 20)
        else:
            flooder.terminate()
            fout, ferr = finish(flooder, 10)
        fph = phases(fout, hz)
        if fph:
            fl_rate = FLOOD_MIB[mode] * len(fph) / sum(t for _, t in fph.values())
    ph = phases(out, hz)
    if set(ph) != {"write", "read"}:
        raise RuntimeError("neighbour (%s, %s): blkbench phases %r; stderr %s"
                           % (argv_fn.__name__, mode, sorted(ph), err[-800:]))
    reqs = sum(r for r, _ in ph.values())
    secs = sum(s for _, s in ph.values())
    return reqs / secs, fl_rate, overlapped


def summary(vals, spec=".0f"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return ("%" + spec + " (%" + spec + "..%" + spec + ")") % (
        statistics.median(vals), min(vals), max(vals))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.path.join(here, "..", "build")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vmm", default=os.path.join(build, "vmm", "mvm-vmm"))
    ap.add_argument("--elf", default=os.path.join(build, "tests", "guest", "mvmtest.elf"))
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit-mib", type=int, default=4)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    if a.runs < 1 or a.limit_mib < 1:
        ap.error("--runs and --limit-mib must be at least 1")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm is not usable", file=sys.stderr)
        return 77
    hz = tsc_calibrate() or tsc_from_cpuinfo()
    tmp = tempfile.mkdtemp(prefix="mvm-bench-contention-", dir=a.dir)
    a.dir = tmp
    configs = [("mvm-vmm", mvm_argv, "--disk bps=")]
    why_no_qemu = None
    if a.qemu:
        configs.append(("qemu-microvm", qemu_argv, "throttle-group x-bps-total"))
    else:
        why_no_qemu = "qemu-system-x86_64 not found"
    modes = ("solo", "unlimited", "limited")
    res = {(n, m): [] for n, _, _ in configs for m in modes}
    errors = {}
    try:
        for i in range(a.runs):
            for name, fn, _ in configs:
                for mode in modes:
                    if (name, mode) in errors:
                        continue
                    try:
                        r = one_run(a, fn, mode, hz)
                    except (RuntimeError, OSError) as e:
                        errors[(name, mode)] = str(e)
                        continue
                    res[(name, mode)].append(r)
                    print("run %d %s %s: neighbour %.0f req/s, flooder %s MiB/s, overlap %s"
                          % (i + 1, name, mode, r[0], "n/a" if r[1] is None else "%.2f" % r[1],
                             r[2]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("noisy neighbour: neighbour blkbench:%d,4 (4 KiB requests); flooder blkbench:F,64 "
          "started %.1f s before (F=%d MiB unlimited, %d MiB limited to %d MiB/s); %d runs; "
          "median (min..max)" % (NB_MIB, FLOOD_LEAD, FLOOD_MIB["unlimited"],
                                FLOOD_MIB["limited"], a.limit_mib, a.runs))
    hdr = "%-13s %-10s %-24s %-20s %-10s %-22s %s" % (
        "vmm", "flooder", "neighbour req/s", "neighbour us/req", "vs solo", "flooder MiB/s",
        "overlap")
    print(hdr)
    print("-" * len(hdr))
    for name, _, how in configs:
        solo = [r[0] for r in res[(name, "solo")]]
        for mode in modes:
            rows = res[(name, mode)]
            if (name, mode) in errors:
                print("%-13s %-10s n/a: %s" % (name, mode, errors[(name, mode)][:200]))
                continue
            ops = [r[0] for r in rows]
            ratio = "%.2f" % (statistics.median(ops) / statistics.median(solo)) \
                if solo and ops else "n/a"
            label = mode if mode != "limited" else "limited"
            print("%-13s %-10s %-24s %-20s %-10s %-22s %s" % (
                name, label, summary(ops), summary([1e6 / o for o in ops], ".1f"), ratio,
                summary([r[1] for r in rows], ".2f") if mode != "solo" else "-",
                "%d/%d" % (sum(r[2] for r in rows), len(rows)) if mode != "solo" else "-"))
        print("%-13s limited by: %s" % ("", how))
    if why_no_qemu:
        print("qemu-microvm: no numbers: %s" % why_no_qemu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
