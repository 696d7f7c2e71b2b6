#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Contention under mvmd (issue 14).

disk-flood: one VM floods its disk under a rate limit set at create while
another VM measures its own disk; the neighbour keeps most of the rate it
had alone and the flooder is held to its limit.  Rates are the guests' own:
the test guest's blkbench times each phase with the TSC, which KVM does not
scale here, so the comparisons are between rates measured in the same test,
never against wall-clock bounds.

reclaim: memory taken back through a balloon under host memory pressure
and given back after it.  Pressure is not made for real: the reclaim
thresholds are config keys, so a threshold no host meets
(reclaim_mem_available_mib above any MemAvailable) is pressure and one
every host meets (1 MiB) is none; SIGHUP switches between them.

Usage: contention.py CASE | --list.  Environment as run.py's.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kvm"))
from harness import Raw, case_table, cases_main, check, proc_number, wait_for  # noqa: E402
from run import Env  # noqa: E402
from contention_test import PHASE_RE, tsc_hz  # noqa: E402

MIB = 1 << 20
CASES, case = case_table()

# the neighbour: 32 MiB in 4 KiB requests, bound by operations (16 MiB
# took ~0.2 s here: too short to ride out other load on the host)
NB_MIB, NB_KIB = 32, 4
# the flooder: 32 MiB in 64 KiB requests at 2 MiB/s, 16 s a phase, long
# enough to cover the neighbour's whole run
FL_MIB, FL_KIB, FL_BPS = 32, 64, 2 * MIB
# what the neighbour keeps of its solo rate at least; the flooder is held
# to its limit, so it cannot take more than its share of the host.  Loose
# on purpose: on a loaded 2-CPU CI host the two solo runs alone differ up
# to 2x, and the limiter's own precision is checked on the flooder.
NB_FRACTION = 0.3




def image(env, name, mib):
    path = os.path.join(env.root, name + ".img")
    with open(path, "wb") as f:
        f.truncate((mib + 1) * MIB)
    return path


def phases(ctl, name, mib, hz):
    """{phase: (bytes/s, ops/s)} from blkbench's lines in name's log."""
    out = {}
    for phase, reqs, tsc in PHASE_RE.findall(ctl.ok("logs", name)):
        secs = int(tsc) / hz
        check(secs > 0, "%s: blkbench %s took no time" % (name, phase))
        out[phase] = (mib * MIB / secs, int(reqs) / secs)
    return out


def bench_vm(env, name, mib, kib, *disk_opts):
    img = image(env, name, mib)
    env.ctl.json("create", name, "--kernel", env.guest(), "--cmdline",
                 "console=ttyS0 mvmtest=blkbench:%d,%d" % (mib, kib), "--mem", "128",
                 "--disk", ",".join((img,) + disk_opts), "--wait")


def neighbour_iops(env, name, hz):
    """Boots a neighbour, waits for its end; its ops/s over both phases."""
    bench_vm(env, name, NB_MIB, NB_KIB)
    env.ctl.wait_state(name, ("stopped", "crashed"), timeout=180)
    ph = phases(env.ctl, name, NB_MIB, hz)
    check(set(ph) == {"write", "read"}, "%s: blkbench phases %r; log %s"
          % (name, ph, env.ctl.ok("logs", name)[-1500:]))
    check(env.ctl.vm(name)["state"] == "stopped", "%s ended %r" % (name, env.ctl.vm(name)))
    # the harmonic mean: total requests over total time
    ops = 2 * NB_MIB * 1024 // NB_KIB
    return ops / sum(ops / 2 / r[1] for r in ph.values())


@case(kvm=True)
def disk_flood(env):
    """A neighbour's disk rate alone, then while another VM floods its disk
    under bps=2M: the neighbour keeps NB_FRACTION of its solo rate, and the
    flooder's rate is within -15%..+3% of its limit."""
    ctl = env.ctl
    hz = tsc_hz()
    # alone before and after, and the bar is their mean: on a shared host
    # the two differed 2x (21184 and 38793 ops/s), so neither one alone
    # (nor the better) is a fair measure of "alone"
    solo = neighbour_iops(env, "solo1", hz)
    print("neighbour alone: %.0f ops/s" % solo, flush=True)

    bench_vm(env, "flood", FL_MIB, FL_KIB, "bps=%d" % FL_BPS)

    def flooding():
        st = ctl.json("stats", "flood")["vms"][0]
        return st["disks"] and st["disks"][0]["write_bytes"] >= 2 * FL_KIB * 1024
    wait_for(flooding, 60, "the flooder's first writes", interval=0.2)
    busy = neighbour_iops(env, "busy", hz)
    # the flooder must still be at it when the neighbour is done
    fl = phases(ctl, "flood", FL_MIB, hz)
    check("read" not in fl, "the flooder finished (%r) before the neighbour: no overlap" % fl)
    print("neighbour beside the flooder: %.0f ops/s (%.0f%% of alone)"
          % (busy, 100.0 * busy / solo), flush=True)
    ctl.wait_state("flood", ("stopped", "crashed"), timeout=120)
    again = neighbour_iops(env, "solo2", hz)
    print("neighbour alone again: %.0f ops/s" % again, flush=True)
    solo = (solo + again) / 2
    fl = phases(ctl, "flood", FL_MIB, hz)
    check(set(fl) == {"write", "read"}, "flooder phases %r" % fl)
    for phase, (bps, _) in sorted(fl.items()):
        print("flooder %s: %.0f B/s against a limit of %d B/s (%.1f%%)"
              % (phase, bps, FL_BPS, 100.0 * bps / FL_BPS), flush=True)
        check(0.85 * FL_BPS <= bps <= 1.03 * FL_BPS,
              "flooder %s at %.0f B/s is not within -15%%..+3%% of its limit %d B/s"
              % (phase, bps, FL_BPS))
    check(busy >= NB_FRACTION * solo,
          "the neighbour fell to %.0f ops/s beside a flooder held to %d B/s, below %d%% of "
          "its %.0f ops/s alone (mean of before and after)"
          % (busy, FL_BPS, NB_FRACTION * 100, solo))



def worker_rss_kib(pid):
    """VmRSS of the worker and its children (a sandboxed worker runs the VM
    in a child)."""
    total = proc_number("/proc/%d/status" % pid, "VmRSS:")
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            for kid in f.read().split():
                total += proc_number("/proc/%s/status" % kid, "VmRSS:")
    except OSError:
        pass
    return total


def balloon(ctl, name):
    st = ctl.json("stats", name)["vms"]
    check(len(st) == 1 and st[0]["balloon"], "stats of %s: %r" % (name, st))
    return st[0]["balloon"]


def host_reclaim(env):
    r = Raw(env.daemon.sock, 30)
    try:
        return r.ok("host.info")["host"]["reclaim"]
    finally:
        r.close()


def key(ctl, name):
    p = ctl.run("console", name, "--idle", "1", input=b"k", timeout=30)
    check(p.returncode == 0, "console: %s" % p.stderr.decode(errors="replace"))


def reload(env, lines):
    n = env.daemon.log().count("capacity limits reloaded")
    env.daemon.reload(lines)
    wait_for(lambda: env.daemon.log().count("capacity limits reloaded") > n, 10,
             "mvmd to reload")


RECLAIM = ["reclaim_interval = 0.3", "reclaim_step_mib = 32", "reclaim_min_guest_mib = 64",
           "reclaim_memory_psi = 0"]
NO_PRESSURE = RECLAIM + ["reclaim_mem_available_mib = 1"]
PRESSURE = RECLAIM + ["reclaim_mem_available_mib = 1000000000"]


@case(kvm=True)
def reclaim(env):
    """Pressure -> mvmd inflates the balloon of the VM that has one, a step
    a tick, until its guest stops following (the guest's balloon covers 128
    MiB) -> the worker's RSS falls -> pressure gone -> it deflates back to
    the user's target (0).  A VM without a balloon is left alone."""
    ctl = env.ctl
    mib = 128
    reload(env, NO_PRESSURE)
    vm = ctl.json("create", "bal", "--kernel", env.guest(), "--mem", "256", "--balloon", "0",
                  "--cmdline", "console=ttyS0 mvmtest=balloon:%d" % mib, "--wait")["vm"]
    ctl.ok("create", "nob", "--kernel", env.guest(), "--mem", "32",
           "--cmdline", "console=ttyS0 mvmtest=idle", "--wait")
    wait_for(lambda: "MVMTEST balloon touched" in ctl.ok("logs", "bal"), 60, "touched")
    key(ctl, "bal")
    wait_for(lambda: "MVMTEST balloon reported" in ctl.ok("logs", "bal"), 60, "reported")
    key(ctl, "bal")
    wait_for(lambda: "MVMTEST balloon retouched" in ctl.ok("logs", "bal"), 60, "retouched")
    time.sleep(1)
    check(balloon(ctl, "bal")["target_bytes"] == 0, "reclaimed without pressure")
    rss0 = worker_rss_kib(vm["pid"])
    r0 = host_reclaim(env)
    check(r0["enabled"] and not r0["pressure"] and r0["inflations"] == 0, "before: %r" % r0)

    reload(env, PRESSURE)
    wait_for(lambda: balloon(ctl, "bal")["actual_bytes"] == mib * MIB, 60,
             "the balloon to take the guest's %d MiB" % mib)
    # the guest's balloon cannot grow past its region: mvmd stops one step
    # ahead of it and takes no more
    time.sleep(2)
    b = balloon(ctl, "bal")
    check(b["target_bytes"] <= (mib + 32) * MIB, "inflated past the guest: %r" % b)
    check(b["actual_bytes"] == mib * MIB, "balloon %r" % b)
    rss1 = worker_rss_kib(vm["pid"])
    r1 = host_reclaim(env)
    check(r1["pressure"] and r1["inflations"] >= mib // 32 and
          r1["reclaimed_mib"] * MIB == b["target_bytes"], "under pressure: %r" % r1)
    check(rss0 - rss1 >= (mib - 16) * 1024, "RSS fell only from %d to %d KiB" % (rss0, rss1))
    log = env.daemon.log()
    check("reclaim: host memory pressure: MemAvailable is" in log and
          "VM bal balloon 0 -> 32 MiB" in log, "log: %s" % log[-2000:])
    check("VM nob" not in log, "a VM without a balloon was reclaimed from")
    print("RSS %.1f -> %.1f MiB under pressure; balloon target %d MiB"
          % (rss0 / 1024, rss1 / 1024, b["target_bytes"] // MIB), flush=True)

    reload(env, NO_PRESSURE)
    wait_for(lambda: balloon(ctl, "bal")["actual_bytes"] == 0, 60, "the balloon to deflate")
    b = balloon(ctl, "bal")
    r2 = host_reclaim(env)
    check(b["target_bytes"] == 0 and not r2["pressure"] and r2["reclaimed_mib"] == 0 and
          r2["deflations"] >= 1, "after: %r %r" % (b, r2))
    check("reclaim: host memory pressure gone" in env.daemon.log(), "no relief logged")
    print("deflated: %d inflations, %d deflations" % (r2["inflations"], r2["deflations"]))
    ctl.ok("rm", "-f", "bal", "nob")

def main():
    return cases_main("contention.py", CASES, Env)


if __name__ == "__main__":
    sys.exit(main())
