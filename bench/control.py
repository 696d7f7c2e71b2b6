#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Control-plane benchmark: VM creation throughput and `list` latency.

Starts its own mvmd in a temporary directory (like the system tests) and
measures:

  1. creation throughput: M parallel clients each send `vm.create` with
     `wait: true` (the answer comes at the guest's first serial byte) for
     the test guest with `mvmtest=idle`; VMs/s = N / wall time from the
     first request to the last answer.  The VMs are removed afterwards.
  2. `list` latency with L VMs in the database (created with start=false,
     pipelined over a few raw connections): the median of R `vm.list`
     calls over a raw socket, and R runs of `mvmctl list -o json` and
     `mvmctl list -q` (process start included).

Targets (issue 3): >= 50 VMs/s on the 2-core machine; list of 10,000 < 50 ms.
The numbers are printed as a table; nothing here gates CI.

Usage: bench/control.py [--build DIR] [--clients M] [--vms N]
                        [--list-vms L] [--runs R] [--skip-create]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
from harness import Ctl, Daemon, Raw, TestFailure, check, kvm_usable  # noqa: E402


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"),
                    help="meson build directory (default: build/)")
    ap.add_argument("--clients", type=int, default=4, help="parallel clients M (default 4)")
    ap.add_argument("--vms", type=int, default=100, help="VMs to create and boot N (default 100)")
    ap.add_argument("--mem", type=int, default=32, help="guest memory in MiB (default 32)")
    ap.add_argument("--list-vms", type=int, default=10000, help="VMs in the database L (default 10000)")
    ap.add_argument("--runs", type=int, default=30, help="list calls per method R (default 30)")
    ap.add_argument("--skip-create", action="store_true", help="only measure list latency")
    return ap.parse_args()


def paths(build):
    p = {
        "mvmd": os.path.join(build, "daemon", "mvmd"),
        "mvmctl": os.path.join(build, "ctl", "mvmctl"),
        "vmm": os.path.join(build, "vmm", "mvm-vmm"),
        "guest": os.path.join(build, "tests", "guest", "mvmtest.bzImage"),
    }
    for k, v in p.items():
        if not os.path.exists(v):
            sys.exit("bench: %s not found at %s; build first (ninja -C %s)" % (k, v, build))
    return p


def row(name, samples, unit, scale, target=""):
    return (name, len(samples), "%.2f" % (statistics.median(samples) * scale),
            "%.2f" % (min(samples) * scale), "%.2f" % (max(samples) * scale), unit, target)


def print_table(rows):
    hdr = ("measurement", "n", "median", "min", "max", "unit", "target")
    rows = [hdr] + [tuple(str(c) for c in r) for r in rows]
    w = [max(len(r[i]) for r in rows) for i in range(len(hdr))]
    for r in rows:
        print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)).rstrip())


def create_throughput(d, p, args):
    """M clients create+boot N VMs with wait; returns (VMs/s, latencies)."""
    names = ["b%05d" % i for i in range(args.vms)]
    latencies, errors = [], []
    lock = threading.Lock()
    it = iter(names)

    def client():
        raw = Raw(d.sock, timeout=120)
        while True:
            with lock:
                name = next(it, None)
            if name is None:
                break
            t0 = time.monotonic()
            resp = raw.call("vm.create", {
                "name": name, "kernel": p["guest"], "mem_mib": args.mem,
                "cmdline": "console=ttyS0 mvmtest=idle", "wait": True})
            dt = time.monotonic() - t0
            with lock:
                if resp.get("ok"):
                    latencies.append(dt)
                else:
                    errors.append(resp.get("error"))
        raw.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    wall = time.monotonic() - t0
    check(not errors, "%d creates failed, first: %r" % (len(errors), errors[:1]))
    check(len(latencies) == args.vms, "only %d of %d creates answered" % (len(latencies), args.vms))
    rate = args.vms / wall
    cleanup(d, names)
    return rate, wall, latencies


def cleanup(d, names):
    raw = Raw(d.sock, timeout=120)
    pipeline(raw, [("vm.rm", {"name": n, "force": True}) for n in names])
    raw.close()


def pipeline(raw, reqs, batch=256):
    """Sends requests in batches without waiting for each answer."""
    failed = []
    for i in range(0, len(reqs), batch):
        chunk = reqs[i:i + batch]
        lines = []
        for op, a in chunk:
            raw.next_id += 1
            lines.append('{"id":%d,"op":"%s","args":%s}' % (raw.next_id, op, json_dumps(a)))
        raw.send(("\n".join(lines) + "\n").encode())
        for _ in chunk:
            r = raw.response()
            if not r.get("ok"):
                failed.append(r)
    check(not failed, "%d pipelined requests failed, first: %r" % (len(failed), failed[:1]))


def json_dumps(v):
    return json.dumps(v, separators=(",", ":"))


def fill_database(d, kernel, n, conns=4):
    """Creates n VMs with start=false, pipelined over a few connections."""
    per = (n + conns - 1) // conns
    errors = []

    def worker(k):
        try:
            raw = Raw(d.sock, timeout=300)
            reqs = [("vm.create", {"name": "l%05d" % i, "kernel": kernel, "start": False,
                                   "labels": {"bench": "list"}})
                    for i in range(k * per, min(n, (k + 1) * per))]
            pipeline(raw, reqs)
            raw.close()
        except Exception as e:
            errors.append(str(e))
    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(conns)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(900)
    check(not errors, "filling the database: %s" % errors[:1])
    return time.monotonic() - t0


def list_latency(d, p, n, runs):
    raw = Raw(d.sock, timeout=60)
    wire, decoded = [], []
    for i in range(runs):
        # the daemon's part: request sent to the last byte of the answer
        t0 = time.monotonic()
        raw.send(b'{"id":"l%d","op":"vm.list"}\n' % i)
        line = raw.read_line()
        t1 = time.monotonic()
        vms = json.loads(line)["result"]["vms"]
        wire.append(t1 - t0)
        decoded.append(time.monotonic() - t0)
    check(len(vms) >= n, "list returned %d VMs, expected %d" % (len(vms), n))
    raw.close()
    over_socket = (wire, decoded, len(line))
    ctl = Ctl(p["mvmctl"], d.sock)
    via = {"mvmctl list -o json": [], "mvmctl list -q": [], "mvmctl list (table)": []}
    for _ in range(runs):
        for name, args in (("mvmctl list -o json", ["list", "-o", "json"]),
                           ("mvmctl list -q", ["list", "-q"]),
                           ("mvmctl list (table)", ["list"])):
            t0 = time.monotonic()
            ctl.ok(*args)
            via[name].append(time.monotonic() - t0)
    return over_socket, via


def main():
    args = parse_args()
    p = paths(os.path.abspath(args.build))
    # The benchmark measures the control plane, not admission: lift the
    # host limits (defaults allow 4 vCPUs per host CPU) so that every
    # concurrent create is admitted and started at once.
    d = Daemon(p["mvmd"], p["vmm"], config=[
        "vcpu_oversubscription = 1000", "memory_overcommit = 100",
        "max_concurrent_starts = 0", "start_rate = 0"])
    rows, notes = [], []
    try:
        d.start()
        if not args.skip_create:
            if not kvm_usable():
                notes.append("creation throughput skipped: /dev/kvm is not usable")
            else:
                rate, wall, lat = create_throughput(d, p, args)
                rows.append(row("create --wait latency (%d clients)" % args.clients, lat, "ms", 1000))
                notes.append("creation throughput: %d VMs in %.2fs with %d clients = %.1f VMs/s "
                             "(target >= 50)" % (args.vms, wall, args.clients, rate))
        kernel = os.path.join(d.root, "vmlinuz")
        with open(kernel, "wb") as f:
            f.write(b"list benchmark: never booted\n")
        fill_s = fill_database(d, kernel, args.list_vms)
        notes.append("database filled with %d VMs in %.1fs (%.0f creates/s, pipelined)"
                     % (args.list_vms, fill_s, args.list_vms / fill_s))
        sock, via = list_latency(d, p, args.list_vms, args.runs)
        wire, decoded, nbytes = sock
        rows.append(row("vm.list of %d, socket round trip" % args.list_vms, wire, "ms", 1000, "< 50 ms"))
        rows.append(row("vm.list of %d, + Python JSON decode" % args.list_vms, decoded, "ms", 1000))
        notes.append("one vm.list answer of %d VMs is %.1f MiB" % (args.list_vms, nbytes / 1048576))
        for name, s in via.items():
            rows.append(row("%s of %d" % (name, args.list_vms), s, "ms", 1000))
        d.stop(60)
    except TestFailure as e:
        print("bench failed: %s\n---- mvmd log (tail) ----\n%s" % (e, d.log()[-3000:]), file=sys.stderr)
        return 1
    finally:
        d.cleanup()
    print_table(rows)
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
