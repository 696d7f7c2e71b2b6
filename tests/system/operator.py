#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Operator habits against a real mvmd (issue 15): pause/resume as a
state, the reason of a forced stop, create -f from a spec file.

Usage: operator.py CASE | --list.  Environment as run.py's.  Cases that
boot the test guest skip (77) without /dev/kvm or MVM_BZIMAGE.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SKIP, check, kvm_usable, run_with_daemon, wait_for  # noqa: E402
from run import Env  # noqa: E402

CASES = {}


def case(kvm=False):
    def reg(fn):
        CASES[fn.__name__.replace("_", "-")] = (fn, kvm)
        return fn
    return reg


def cpu_seconds(pid):
    """User + system CPU of every thread of pid (/proc/PID/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def states_of(ctl, name):
    return [(e["state"], e.get("reason")) for e in ctl.json("show", name)["events"]]


def grows(pid, by, timeout=60):
    """Waits until the worker used `by` more CPU seconds (the guest spins)."""
    t0 = cpu_seconds(pid)
    wait_for(lambda: cpu_seconds(pid) - t0 >= by, timeout,
             "the worker to use %.1f s of CPU (the guest spinning)" % by, interval=0.1)


def flat(pid, settle=2.0):
    """A paused guest makes no progress: its worker's CPU time stays flat
    (the main loop answering pings costs microseconds)."""
    t0 = cpu_seconds(pid)
    time.sleep(settle)
    used = cpu_seconds(pid) - t0
    check(used < 0.15, "paused worker used %.2f s of CPU in %.0f s" % (used, settle))


@case(kvm=True)
def pause(env):
    """pause holds the vCPUs (CPU time flat), resume runs them, both are
    states with events; a paused VM stays paused over an mvmd restart and
    can be stopped and killed."""
    ctl = env.ctl
    vm = env.create_guest("p1", "spin")
    pid = vm["pid"]
    grows(pid, 0.3)
    out = ctl.ok("pause", "p1")
    check(out.strip() == "p1: paused", "pause printed %r" % out)
    check(ctl.vm("p1")["state"] == "paused", "state after pause")
    check("paused" in ctl.ok("list"), "list shows paused")
    flat(pid)
    # a second pause, and resume of a running VM, are refused (exit 1)
    err = ctl.fails(1, "pause", "p1")
    check("paused already" in err, err)
    ctl.ok("resume", "p1")
    check(ctl.vm("p1")["state"] == "running", "state after resume")
    grows(pid, 0.3)
    err = ctl.fails(1, "resume", "p1")
    check("not paused" in err, err)
    evs = states_of(ctl, "p1")
    check(("paused", "paused") in evs and ("running", "resumed") in evs, "events %r" % evs)

    # the worker's own answer survives a restart of mvmd: still paused
    ctl.ok("pause", "p1")
    env.daemon.stop()
    env.daemon.start()
    check(ctl.vm("p1")["state"] == "paused", "paused after an mvmd restart")
    check(ctl.vm("p1")["pid"] == pid, "the same worker re-adopted")
    flat(pid, 1.0)
    ctl.ok("resume", "p1")
    grows(pid, 0.3)

    # stop of a paused VM: the worker resumes it for the Ctrl-Alt-Del; the
    # spinning test guest ignores the key, so the stop timeout kills it
    ctl.ok("pause", "p1")
    out = ctl.ok("stop", "p1", "--timeout", "1")
    check(out.strip() == "p1: stopped (killed after the 1 s stop timeout)",
          "forced stop reads %r" % out)
    evs = states_of(ctl, "p1")
    check(evs[-1] == ("stopped", "killed after the 1 s stop timeout"), "events %r" % evs)

    # kill of a paused VM
    ctl.ok("start", "p1", "--wait")
    ctl.ok("pause", "p1")
    ctl.ok("kill", "p1")
    check(ctl.vm("p1")["state"] == "crashed" and ctl.vm("p1")["exit_reason"] == "killed",
          "kill of a paused VM: %r" % ctl.vm("p1"))
    err = ctl.fails(1, "pause", "p1")
    check("only a running VM" in err, err)
    ctl.ok("rm", "p1")


@case(kvm=True)
def stop_reason(env):
    """A clean stop reads "stopped"; one the timeout ended says so, in
    show, list and events; --timeout 0 kills at once."""
    ctl = env.ctl
    env.create_guest("s1", "poweroff")
    ctl.wait_state("s1", ("stopped", "crashed"))
    check(ctl.vm("s1")["exit_reason"] == "poweroff", "poweroff: %r" % ctl.vm("s1"))
    env.create_guest("s2", "idle")
    out = ctl.ok("stop", "s2", "--timeout", "1")
    check(out.strip() == "s2: stopped (killed after the 1 s stop timeout)", out)
    listed = {v["name"]: v for v in ctl.json("list")["vms"]}
    check(listed["s2"]["exit_reason"] == "killed after the 1 s stop timeout", listed)
    check("killed after the 1 s stop timeout" in ctl.ok("show", "s2"), "show")
    ctl.ok("start", "s2", "--wait")
    out = ctl.ok("stop", "s2", "--timeout", "0")
    check(out.strip() == "s2: stopped (killed at once: stop timeout 0)", out)
    ctl.ok("rm", "s1", "s2")


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: operator.py CASE | --list; cases: %s" % ", ".join(CASES),
              file=sys.stderr)
        return 2
    fn, needs_kvm = CASES[sys.argv[1]]
    if needs_kvm and (not kvm_usable() or not os.environ.get("MVM_BZIMAGE")):
        print("SKIP: this case boots guests: needs /dev/kvm and the test guest",
              file=sys.stderr)
        return SKIP
    return run_with_daemon(sys.argv[1], Env(), fn)


if __name__ == "__main__":
    sys.exit(main())
