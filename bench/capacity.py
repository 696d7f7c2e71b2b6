#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Capacity benchmark: admission decision time and a boot storm.

Starts its own mvmd in a temporary directory (like the system tests) and
measures:

  1. admission decision time: the round trip of `vm.start` requests that
     admission refuses (max_vms = 1 with one VM running), so no worker is
     spawned, with 1 VM and with L VMs (default 10,000) defined; the
     `version` round trip is the protocol floor.  Admission keeps running
     sums, so the time should not grow with L.
  2. boot storm: N (default 1,000) concurrent `vm.create` requests (test
     guest, `mvmtest=idle`) against max_concurrent_starts = 8: time until
     every VM printed its first byte (drained), and the peak number of VMs
     in `starting` at once, from the event stream (must never exceed 8).

Prints a table; nothing here gates CI.

Usage: bench/capacity.py [--build DIR] [--vms L] [--storm N] [--runs R]
"""

import argparse
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
from harness import Daemon, Raw, check, kvm_usable, wait_for  # noqa: E402

MAX_STARTS = 8


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--vms", type=int, default=10000, help="VMs defined L (default 10000)")
    ap.add_argument("--storm", type=int, default=1000, help="storm creates N (default 1000)")
    ap.add_argument("--runs", type=int, default=2000, help="timed requests R (default 2000)")
    ap.add_argument("--mem", type=int, default=16, help="storm guest memory MiB (default 16)")
    return ap.parse_args()


def paths(build):
    p = {"mvmd": "daemon/mvmd", "vmm": "vmm/mvm-vmm", "guest": "tests/guest/mvmtest.bzImage"}
    p = {k: os.path.abspath(os.path.join(build, v)) for k, v in p.items()}
    for k, v in p.items():
        if not os.path.exists(v):
            sys.exit("bench: %s not found at %s; build first" % (k, v))
    return p


def vm_args(p, name, mem=16, **kw):
    a = {"name": name, "kernel": p["guest"], "mem_mib": mem,
         "cmdline": "console=ttyS0 mvmtest=idle"}
    a.update(kw)
    return a


def timed(raw, op, args, runs):
    """Median and p99 round trip in microseconds of runs requests."""
    t = []
    for i in range(runs):
        a = args(i) if callable(args) else args
        t0 = time.perf_counter()
        resp = raw.call(op, a)
        t.append((time.perf_counter() - t0) * 1e6)
        if op == "vm.start":
            check(resp["error"]["code"] == "unavailable", "not refused: %r" % resp)
    t.sort()
    return statistics.median(t), t[int(len(t) * 0.99) - 1]


def define(sock, p, n, start_at=0, conns=4, batch=200):
    """n VMs with start=false, pipelined over a few connections."""
    def worker(k):
        raw = Raw(sock, 120)
        names = ["def%05d" % i for i in range(start_at + k, start_at + n, conns)]
        for j in range(0, len(names), batch):
            chunk = names[j:j + batch]
            data = b"".join(
                (('{"id":%d,"op":"vm.create","args":{"name":"%s","kernel":"%s","start":false}}\n'
                  % (i, nm, p["guest"])).encode()) for i, nm in enumerate(chunk))
            raw.send(data)
            for _ in chunk:
                check(raw.response().get("ok"), "define failed")
        raw.close()
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def bench_admission(p, args, rows):
    d = Daemon(p["mvmd"], p["vmm"], config=["max_vms = 1", "vcpu_oversubscription = 1000"])
    try:
        d.start()
        raw = Raw(d.sock, 120)
        raw.ok("vm.create", vm_args(p, "holder", wait=True))
        define(d.sock, p, 1)
        floor = timed(raw, "version", None, args.runs)
        one = timed(raw, "vm.start", {"name": "def00000"}, args.runs)
        define(d.sock, p, args.vms - 1, start_at=1)
        names = lambda i: {"name": "def%05d" % (i * 7919 % args.vms)}  # noqa: E731
        many = timed(raw, "vm.start", names, args.runs)
        rows.append(("version round trip (protocol floor)", "%.0f us" % floor[0], "%.0f us" % floor[1]))
        rows.append(("refused vm.start, 1 VM defined", "%.0f us" % one[0], "%.0f us" % one[1]))
        rows.append(("refused vm.start, %d VMs defined" % args.vms, "%.0f us" % many[0],
                     "%.0f us" % many[1]))
        raw.ok("vm.rm", {"name": "holder", "force": True})
        raw.close()
        d.check_sanitizers()
    finally:
        d.stop()
        d.cleanup()


def bench_storm(p, args, rows):
    d = Daemon(p["mvmd"], p["vmm"], config=[
        "max_concurrent_starts = %d" % MAX_STARTS, "vcpu_oversubscription = 1000",
        "memory_overcommit = 8"])
    try:
        d.start()
        sub = Raw(d.sock, 600)
        sub.ok("events.subscribe")
        state = {"live": set(), "peak": 0, "running": 0, "queued": 0, "stop": False}

        def follow():
            while state["running"] < args.storm and not state["stop"]:
                e = sub.read_msg()
                st, vm = e.get("state"), e.get("vm")
                if st == "starting":
                    state["live"].add(vm)
                    state["peak"] = max(state["peak"], len(state["live"]))
                elif st in ("running", "crashed", "stopped"):
                    state["live"].discard(vm)
                    state["running"] += st == "running"
                elif st == "queued":
                    state["queued"] += 1
        ft = threading.Thread(target=follow, daemon=True)
        ft.start()
        barrier = threading.Barrier(args.storm, timeout=120)
        errors = []

        def client(i):
            try:
                raw = Raw(d.sock, 600)
                barrier.wait()
                # an empty balloon: only such a VM shares memory_overcommit
                # (issue 14), and 1,000 x (16 MiB + vmm_overhead) is more
                # than the physical budget of a 24 GiB host
                raw.ok("vm.create", vm_args(p, "s%04d" % i, args.mem, balloon_mib=0))
                raw.close()
            except Exception as e:
                errors.append(str(e))
        cs = [threading.Thread(target=client, args=(i,)) for i in range(args.storm)]
        for t in cs:
            t.start()
        t0 = time.monotonic()
        for t in cs:
            t.join()
        answered = time.monotonic() - t0
        check(not errors, "%d creates failed: %s" % (len(errors), errors[:3]))
        wait_for(lambda: state["running"] >= args.storm, 900, "the storm to drain", 0.2)
        drained = time.monotonic() - t0
        state["stop"] = True
        rows.append(("storm: %d creates answered" % args.storm, "%.1f s" % answered, ""))
        rows.append(("storm: all %d running (drained)" % args.storm, "%.1f s" % drained,
                     "%.0f starts/s" % (args.storm / drained)))
        rows.append(("storm: VMs queued at admission", "%d" % state["queued"], ""))
        rows.append(("storm: peak simultaneous starts", "%d" % state["peak"],
                     "limit %d" % MAX_STARTS))
        check(state["peak"] <= MAX_STARTS, "peak %d > %d" % (state["peak"], MAX_STARTS))
        rm = Raw(d.sock, 600)
        for i in range(args.storm):
            rm.ok("vm.rm", {"name": "s%04d" % i, "force": True})
        u = rm.ok("host.info")["host"]["capacity"]["usage"]
        check(u["vms"] == 0 and u["mem_mib"] == 0 and u["starting"] == 0, "leaked %r" % u)
        rm.close()
        d.check_sanitizers()
    finally:
        d.stop()
        d.cleanup()


def main():
    args = parse_args()
    if not kvm_usable():
        sys.exit("bench: /dev/kvm is not usable")
    p = paths(args.build)
    rows = []
    bench_admission(p, args, rows)
    bench_storm(p, args, rows)
    w = max(len(r[0]) for r in rows)
    print("%-*s  %10s  %s" % (w, "measure", "median/val", "p99/note"))
    for r in rows:
        print("%-*s  %10s  %s" % (w, r[0], r[1], r[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
