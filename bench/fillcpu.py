#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Where the CPU of a fill goes: mvmd's threads against the host.

    bench/fillcpu.py [--build DIR] [--vms N] [--clients C] [--runs R]

Each run starts a fresh mvmd, fills it to N idle 1-vCPU 32 MiB test
guests from C clients (vm.create without wait, so a client is answered
once the spawn is done) and waits until all run.  It prints the start
rate, how busy the host was (/proc/stat), and per mvmd thread its time
on a CPU, waiting for one (schedstat) and neither (asleep, blocked, or
waiting for a vfork child's exec) as shares of the fill's wall time.  A
thread whose first two shares fill the run is the fill's serial limit; a
host near 100% busy is CPU-bound.  Threads go by their names (mvmd, the
loop; mvmd-preparer, mvmd-spawner, mvmd-cg-reaper, db-checkpoint).
Prints a table; never gates anything.
"""

import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
from harness import Daemon, Raw, kvm_usable  # noqa: E402
from reliability import teardown  # noqa: E402



def host_cpu():
    """(all jiffies, idle + iowait jiffies) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:8]]
    return sum(v), v[3] + v[4]


def sched(pid):
    """{thread name: (ns on a CPU, ns waiting for one)} of mvmd's threads."""
    out = {}
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, t)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                run, wait, _ = f.read().split()
            out["loop (mvmd)" if int(t) == pid else name] = (int(run), int(wait))
        except (OSError, ValueError):
            pass
    return out


def one_run(build, n, clients):
    guest = os.path.join(build, "tests", "guest", "mvmtest.bzImage")
    d = Daemon(os.path.join(build, "daemon", "mvmd"), os.path.join(build, "vmm", "mvm-vmm"),
               config=["vcpu_oversubscription = %d" % max(1000, n), "memory_overcommit = 64",
                       "vmm_overhead = 2M"])
    d.start()
    try:
        pid = d.proc.pid
        names = ["f%05d" % i for i in range(n)]
        lock = threading.Lock()
        errors = []

        def client():
            r = Raw(d.sock, 600)
            try:
                while True:
                    with lock:
                        if not names:
                            return
                        name = names.pop()
                    r.ok("vm.create", {"name": name, "kernel": guest, "mem_mib": 32, "vcpus": 1,
                                       "cmdline": "console=ttyS0 mvmtest=idle",
                                       "balloon_mib": 0, "wait": False})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                r.close()

        c0, s0, t0 = host_cpu(), sched(pid), time.monotonic()
        ts = [threading.Thread(target=client) for _ in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if errors:
            raise errors[0]
        raw = Raw(d.sock, 600)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            vms = raw.ok("vm.list")["vms"]
            if sum(1 for v in vms if v["state"] == "running") >= n:
                break
            time.sleep(0.05)
        raw.close()
        t1, s1, c1 = time.monotonic(), sched(pid), host_cpu()
    finally:
        teardown(d)
    wall = (t1 - t0) * 1e9
    threads = {}
    for name in s1:
        a, z = s0.get(name, (0, 0)), s1[name]
        threads[name] = ((z[0] - a[0]) / wall * 100, (z[1] - a[1]) / wall * 100)
    busy = 100 - 100.0 * (c1[1] - c0[1]) / max(1, c1[0] - c0[0])
    return n / (t1 - t0), busy, threads


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--vms", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0 or not kvm_usable():
        print("fillcpu: needs root and a usable /dev/kvm", file=sys.stderr)
        return 77
    runs = [one_run(args.build, args.vms, args.clients) for _ in range(args.runs)]
    print("mvm fill CPU, %d x 1-vCPU 32 MiB idle test guests, %d clients, %d runs "
          "(median, min..max)" % (args.vms, args.clients, args.runs))

    def col(v, fmt):
        return "%s (%s..%s)" % (fmt % statistics.median(v), fmt % min(v), fmt % max(v))
    print("start rate %s/s; host busy %s%% of %d CPUs"
          % (col([r[0] for r in runs], "%.1f"), col([r[1] for r in runs], "%.0f"),
             os.cpu_count()))
    print("%-15s %-22s %-22s %s" % ("mvmd thread", "on a CPU", "waiting for one",
                                    "neither (% of the fill)"))
    for name in sorted(runs[0][2]):
        on = [r[2][name][0] for r in runs if name in r[2]]
        wait = [r[2][name][1] for r in runs if name in r[2]]
        print("%-15s %-22s %-22s %s" % (name, col(on, "%.1f%%"), col(wait, "%.1f%%"),
                                        "%.1f%%" % (100 - statistics.median(on)
                                                    - statistics.median(wait))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
