#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System tests of `mvmctl run` (docs/cluster.md) against a real mvmd,
without a scheduler: the exit-status mapping, signals, --rm, the job label
and re-attaching across an mvmd restart.  tests/cluster runs it under Slurm.

Usage: jobrun.py CASE | --list.  Environment as for run.py (meson sets it).
Exit 0 pass, 1 fail, 77 skip (no /dev/kvm).
"""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (SKIP, Ctl, Daemon, TestFailure, check, env_path,  # noqa: E402
                     kvm_usable, wait_for)

CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


class Env:
    def __init__(self, config=()):
        self.daemon = Daemon(env_path("MVMD"), env_path("MVM_VMM"), config=config)
        self.ctl = Ctl(env_path("MVMCTL"), self.daemon.sock)
        self.guest = os.path.abspath(env_path("MVM_BZIMAGE"))

    def vm(self, name, scenario, *extra):
        return ["run", name, "--kernel", self.guest, "--mem", "16",
                "--cmdline", "console=ttyS0 mvmtest=" + scenario] + list(extra)

    def popen(self, args, env=None):
        e = dict(os.environ, MVM_SOCKET=self.daemon.sock, **(env or {}))
        return subprocess.Popen([self.ctl.mvmctl] + args, env=e, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)

    def close(self):
        self.daemon.stop()
        self.daemon.check_sanitizers()


def finish(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise TestFailure("mvmctl run did not end within %ds" % timeout)
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@case
def exit_codes():
    """0 after a reset with the console on stdout and --rm; 75 for a full
    host; 1 for a VM larger than the host; the worker's status (3) after a
    triple fault; 2 for a bad --stop-timeout."""
    env = Env(["max_vms = 1"])
    ctl = env.ctl
    try:
        env.daemon.start()
        p = ctl.run(*env.vm("ok", "uspeed:500", "--rm"), env={"SLURM_JOB_ID": "4242"})
        out = p.stdout.decode(errors="replace")
        check(p.returncode == 0, "reset: exit %d, %r" % (p.returncode, p.stderr))
        check("MVMTEST uspeed done" in out, "console not on stdout: %r" % out)
        check("ok" not in ctl.ok("list", "-q").split(), "--rm left the VM")
        p = env.popen(env.vm("hold", "idle"), env={"SLURM_JOB_ID": "77"})
        wait_for(lambda: "running" in ctl.run("show", "hold").stdout.decode(), 20,
                 "hold to run")
        check("slurm_job=77" in ctl.ok("show", "hold"), "no job label on the VM")
        err = ctl.fails(75, *env.vm("full", "idle"))
        check("max_vms" in err and "unavailable" in err, "full host: %r" % err)
        err = ctl.fails(1, *env.vm("huge", "idle", "--mem", "512G"))
        check("never fit" in err and "limit_exceeded" in err, "too large: %r" % err)
        p.send_signal(signal.SIGTERM)
        rc, _, err = finish(p, 30)
        check(rc == 128 + signal.SIGTERM, "SIGTERM: exit %d, %s" % (rc, err))
        ctl.ok("rm", "hold")
        rc = ctl.run(*env.vm("tf", "triple", "--rm")).returncode
        check(rc == 3, "triple fault: exit %d, want the worker's 3" % rc)
        ctl.fails(2, *env.vm("bad", "idle", "--stop-timeout", "soon"))
        env.close()
    finally:
        env.daemon.cleanup()


@case
def signals():
    """SIGCONT does nothing; SIGTERM stops the VM within --stop-timeout
    (the test guest ignores Ctrl-Alt-Del, so the kill comes after it)."""
    env = Env()
    ctl = env.ctl
    try:
        env.daemon.start()
        p = env.popen(env.vm("sig", "idle", "--stop-timeout", "2", "--rm"))
        wait_for(lambda: "MVMTEST idle" in ctl.run("logs", "sig").stdout.decode(), 20,
                 "the guest to boot")
        p.send_signal(signal.SIGCONT)
        time.sleep(0.5)
        check(p.poll() is None, "SIGCONT ended mvmctl run (exit %r)" % p.returncode)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc, out, err = finish(p, 20)
        took = time.monotonic() - t0
        check(rc == 143, "exit %d after SIGTERM: %s" % (rc, err))
        check(1.5 < took < 10, "stop took %.1fs with --stop-timeout 2" % took)
        check("MVMTEST idle" in out, "console: %r" % out)
        check("sig" not in ctl.ok("list", "-q").split(), "--rm left the VM")
        env.close()
    finally:
        env.daemon.cleanup()


@case
def queued():
    """A start held by the start rate waits in mvmd's queue and then runs
    (exit 0); SIGTERM while queued takes it off the queue (exit 143)."""
    env = Env(["start_rate = 0.2", "start_burst = 1"])
    ctl = env.ctl
    try:
        env.daemon.start()
        a = env.popen(env.vm("qa", "idle", "--rm", "--stop-timeout", "0"))
        wait_for(lambda: "running" in ctl.run("show", "qa").stdout.decode(), 20, "qa to run")
        b = env.popen(env.vm("qb", "uspeed:100", "--rm"))
        c = env.popen(env.vm("qc", "idle", "--rm"))
        wait_for(lambda: "queued" in ctl.run("show", "qc").stdout.decode(), 20, "qc queued")
        c.send_signal(signal.SIGTERM)
        rc, _, err = finish(c, 20)
        check(rc == 143 and "queued" in err, "SIGTERM while queued: %d, %s" % (rc, err))
        rc, out, err = finish(b, 30)
        check(rc == 0 and "is queued" in err, "queued run: exit %d, %s" % (rc, err))
        check("MVMTEST uspeed done" in out, "queued run's console: %r" % out)
        a.send_signal(signal.SIGINT)
        rc, _, err = finish(a, 20)
        check(rc == 128 + signal.SIGINT, "SIGINT: exit %d, %s" % (rc, err))
        check(not ctl.ok("list", "-q").split(), "VMs left: %r" % ctl.ok("list", "-q"))
        env.close()
    finally:
        env.daemon.cleanup()


@case
def daemon_restart():
    """mvmd stops and comes back under a running job: mvmctl run waits,
    re-attaches without repeating console output, and exits 0 when the VM
    later resets."""
    env = Env()
    ctl = env.ctl
    try:
        env.daemon.start()
        p = env.popen(env.vm("re", "idle", "--stop-timeout", "1"))
        wait_for(lambda: "MVMTEST idle" in ctl.run("logs", "re").stdout.decode(), 20,
                 "the guest to boot")
        env.daemon.stop()
        time.sleep(1)
        check(p.poll() is None, "mvmctl run ended while mvmd was down: %r" % p.returncode)
        env.daemon.start()
        time.sleep(1)
        check(p.poll() is None, "mvmctl run ended after mvmd came back")
        ctl.ok("stop", "re", "--timeout", "0")
        rc, out, err = finish(p, 20)
        check(rc == 0, "exit %d after a stop by someone else: %s" % (rc, err))
        check(out.count("MVMTEST idle") == 1, "console repeated or lost: %r" % out)
        check("re-attaching" in err, "no re-attach message: %r" % err)
        env.close()
    finally:
        env.daemon.cleanup()


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: jobrun.py CASE|--list; cases: " + " ".join(CASES), file=sys.stderr)
        return 2
    if not kvm_usable():
        print("skip: /dev/kvm is not usable; mvmctl run boots the test guest", file=sys.stderr)
        return SKIP
    try:
        CASES[sys.argv[1]]()
    except TestFailure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
