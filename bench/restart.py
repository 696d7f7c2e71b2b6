#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""How long mvmd takes to restart and re-adopt N running VMs, and the
memory mvmd uses per VM.

    bench/restart.py BUILD_DIR [N ...]      (default N: 100 300 1000)

For each N: a fresh mvmd starts N test-guest VMs (mvmtest=idle, 16 MiB),
its RSS is read, it is killed with SIGKILL, and a new mvmd is started; the
time from exec to "every VM is running with its old pid" is the restart
time.  RSS per VM is (RSS with N adopted VMs - RSS of an empty mvmd) / N.
Prints a table; never gates anything on a number.
"""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "system"))
from harness import Ctl, Daemon, wait_for  # noqa: E402
from reliability import teardown  # noqa: E402


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def one(build, n):
    mvmd = os.path.join(build, "daemon", "mvmd")
    ctl_bin = os.path.join(build, "ctl", "mvmctl")
    vmm = os.path.join(build, "vmm", "mvm-vmm")
    kernel = os.path.join(build, "tests", "guest", "mvmtest.bzImage")
    # no admission limits in the way, pings rare enough not to matter
    d = Daemon(mvmd, vmm, config=["max_vms = 0", "max_concurrent_starts = 0",
                                  "start_rate = 0", "memory_overcommit = 100",
                                  "vcpu_oversubscription = 1000", "health_interval = 30"])
    try:
        d.start()
        ctl = Ctl(ctl_bin, d.sock)
        empty = rss_kib(d.proc.pid)
        t = time.monotonic()
        for i in range(n):
            ctl.ok("create", "b%04d" % i, "--kernel", kernel, "--mem", "16",
                   "--cmdline", "console=ttyS0 mvmtest=idle")
        wait_for(lambda: sum(v["state"] == "running" for v in ctl.json("list")["vms"]) == n,
                 600, "%d VMs running" % n, 0.5)
        create_s = time.monotonic() - t
        before = {v["name"]: v["pid"] for v in ctl.json("list")["vms"]}
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(10)
        d.proc = None
        t = time.monotonic()
        d.start(timeout=600)
        accept_s = time.monotonic() - t
        after = {v["name"]: (v["state"], v["pid"]) for v in ctl.json("list")["vms"]}
        total_s = time.monotonic() - t
        adopted = sum(1 for k, p in before.items() if after.get(k) == ("running", p))
        rss = rss_kib(d.proc.pid)
        return {"n": n, "adopted": adopted, "create_s": create_s, "accept_s": accept_s,
                "total_s": total_s, "empty_kib": empty, "rss_kib": rss,
                "per_vm_kib": (rss - empty) / n}
    finally:
        teardown(d)             # the daemon and every worker it left


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ns = [int(a) for a in sys.argv[2:]] or [100, 300, 1000]
    print("%6s %8s %10s %12s %12s %10s %10s %10s" % (
        "VMs", "adopted", "start-all", "restart->ok", "restart->all", "RSS0 KiB", "RSS KiB",
        "KiB/VM"))
    for n in ns:
        r = one(sys.argv[1], n)
        print("%6d %8d %9.1fs %11.3fs %11.3fs %10d %10d %10.1f" % (
            r["n"], r["adopted"], r["create_s"], r["accept_s"], r["total_s"],
            r["empty_kib"], r["rss_kib"], r["per_vm_kib"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
