#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System tests of what mvmd instances and local users share on one host
(issue 12 items 1 and 5, docs/security.md "Sandbox uids" and "Instances"):
sandbox uid leases and per-instance cgroup subtrees.

Usage: instances.py CASE | --list

Environment as run.py (MVMD, MVMCTL, MVM_VMM, MVM_BZIMAGE).  Exit status:
0 pass, 1 fail, 77 skip (not root; no /dev/kvm or guest; no unshare).
"""

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NOBODY, SKIP, Ctl, Daemon, Raw, TestFailure, check,  # noqa: E402
                     drop_to, env_path, kvm_usable, proc_number, pid_alive, wait_for)

# A sandbox uid range of our own per test process, shared by its daemons.
UID_BASE = 500000 + (os.getpid() % 5000) * 100
UID_COUNT = 100
LEASES = "/run/mvm-uid-leases"


def netns_start(d, timeout=15):
    """Start d as `unshare -n mvmd ...` (harness builds mvmd's argv)."""
    os.makedirs(d.state, exist_ok=True)
    os.makedirs(d.run, exist_ok=True)
    log = open(d.logpath, "ab")
    d.proc = subprocess.Popen(
        [shutil.which("unshare"), "-n", d.mvmd, "--config", d.confpath, "--state-dir", d.state,
         "--run-dir", d.run, "--socket", d.sock, "--vmm", d.vmm],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    wait_for(d._accepting, timeout, "mvmd (in its own netns) to accept connections")


class Inst:
    """One mvmd with a ctl; cgroup_parent shared when given."""

    def __init__(self, cgroup_parent=None, config=()):
        self.daemon = Daemon(env_path("MVMD"), env_path("MVM_VMM"))
        if cgroup_parent:
            self.daemon.cgroup_parent = cgroup_parent
        self.daemon.write_config(["sandbox_uid_base = %d" % UID_BASE,
                                  "sandbox_uid_count = %d" % UID_COUNT] + list(config))
        self.ctl = Ctl(env_path("MVMCTL"), self.daemon.sock)

    def create(self, name, wait=True):
        args = ["create", name, "--kernel", env_path("MVM_BZIMAGE"),
                "--cmdline", "console=ttyS0 mvmtest=idle", "--mem", "64"]
        return self.ctl.json(*(args + (["--wait"] if wait else [])))["vm"]

    def cgroup_parents(self):
        """Per controller, this instance's subtree (from host.info)."""
        r = Raw(self.daemon.sock)
        try:
            host = r.ok("host.info")["host"]
        finally:
            r.close()
        cg = host.get("cgroup") or host.get("capacity", {}).get("cgroup", {})
        if not cg.get("usable"):
            return []
        status = cg.get("status", "")
        out = []
        for part in status.split("; "):
            if " at " in part:
                out.append(part.split(" at ", 1)[1])
        return out


def uid_of(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return -1


def run_case(fn, insts):
    try:
        fn(insts)
        for i in insts:
            if i.daemon.proc is not None:
                check(i.daemon.alive(), "an mvmd exited during the test")
                i.daemon.stop()
                i.daemon.check_sanitizers()
        print("PASS")
        return 0
    except TestFailure as e:
        print("FAIL: %s" % e, file=sys.stderr)
        for i in insts:
            print("---- mvmd log (tail) ----\n" + i.daemon.log()[-4000:], file=sys.stderr)
        return 1
    finally:
        for i in insts:
            i.daemon.cleanup()


# ---- item 1: sandbox uid leases ---------------------------------------------

def squatter(names, ready_w):
    """Child as nobody, outside group mvm: bind every name, then wait."""
    drop_to(NOBODY)()
    held = []
    for n in names:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind("\0" + n)
            held.append(s)
        except OSError:         # taken already (an old mvmd's own claim)
            s.close()
    # and try the leases themselves: the directory is closed to us
    try:
        os.listdir(LEASES)
        os.write(ready_w, b"L")
    except PermissionError:
        os.write(ready_w, b"K")
    except FileNotFoundError:
        os.write(ready_w, b"N")
    time.sleep(120)


def case_uid_squat(insts):
    """A local user outside group mvm binds every abstract name the old
    claim used (mvm-uid-N for the whole range) and cannot enter the lease
    directory: starts go on."""
    inst, = insts
    inst.daemon.start()
    inst.create("first")        # the lease directory exists from here on
    names = ["mvm-uid-%d" % (UID_BASE + i) for i in range(UID_COUNT)]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            squatter(names, w)
        finally:
            os._exit(0)
    os.close(w)
    try:
        got = os.read(r, 1)
        uids = {uid_of(inst.ctl.vm("first")["pid"])}
        for i in range(3):
            uids.add(uid_of(inst.create("vm%d" % i)["pid"]))
        print("uids with every mvm-uid-N bound by uid %d: %s" % (NOBODY, sorted(uids)))
        check(len(uids) == 4 and all(UID_BASE <= u < UID_BASE + UID_COUNT for u in uids),
              "workers' uids %s" % sorted(uids))
        check(got == b"K", "user %d could list %s, or it is missing (got %r)"
              % (NOBODY, LEASES, got))
        st = os.stat(LEASES)
        check(st.st_uid == 0 and st.st_mode & 0o077 == 0,
              "%s is uid %d mode %o" % (LEASES, st.st_uid, st.st_mode & 0o7777))
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
    for n in ["first", "vm0", "vm1", "vm2"]:
        inst.ctl.ok("rm", "-f", n)


def case_two_netns(insts):
    """Two mvmds on one uid range, the second in a network namespace of its
    own: leases are files, not abstract sockets, so no uid is handed out
    twice; and they survive a restart of the first (re-adoption)."""
    a, b = insts
    a.daemon.start()
    netns_start(b.daemon)
    seen = {}
    for i in range(3):
        for who, inst in (("a", a), ("b", b)):
            vm = inst.create("%s%d" % (who, i))
            u = uid_of(vm["pid"])
            check(u not in seen, "uid %d of %s%d also went to %s" % (u, who, i, seen.get(u)))
            seen[u] = "%s%d" % (who, i)
    print("uids: %s" % sorted(seen.items()))
    # a restarts: its workers keep their leases, so b's next VMs get others
    a.daemon.stop()
    for i in range(3, 5):
        vm = b.create("b%d" % i)
        u = uid_of(vm["pid"])
        check(u not in seen, "uid %d of a restarting mvmd's worker %s went to b%d"
              % (u, seen.get(u), i))
        seen[u] = "b%d" % i
    a.daemon.start()
    for i in range(3):
        check(a.ctl.vm("a%d" % i)["state"] == "running", "a%d not re-adopted" % i)
    vm = a.create("a9")
    u = uid_of(vm["pid"])
    check(u not in seen, "uid %d after re-adoption also went to %s" % (u, seen.get(u)))
    for inst in (a, b):
        for n in inst.ctl.ok("list", "-q").split():
            inst.ctl.ok("rm", "-f", n)


def read_syscalls(pid):
    return proc_number("/proc/%d/io" % pid, "syscr:")


def case_no_proc_scan(insts):
    """A start's cost does not grow with the host's processes: mvmd's read
    syscalls for one create (/proc/PID/io syscr) stay the same with 2,000
    more idle processes on the host (the old uid claim read every
    /proc/PID/status: one read each).  A count, not a timing."""
    inst, = insts
    inst.daemon.start()
    inst.create("warm")
    pid = inst.daemon.proc.pid

    def one(name):
        before = read_syscalls(pid)
        inst.create(name)
        return read_syscalls(pid) - before

    few = one("few")
    idle = []
    try:
        for _ in range(2000):
            idle.append(subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL))
        many = one("many")
    finally:
        for p in idle:
            p.kill()
        for p in idle:
            p.wait()
    print("read syscalls of mvmd per create: %d with few processes, %d with 2000 more"
          % (few, many))
    check(many < few + 500, "a create took %d reads with 2000 more processes, %d without"
          % (many, few))
    for n in ("warm", "few", "many"):
        inst.ctl.ok("rm", "-f", n)


# ---- item 5: per-instance cgroups --------------------------------------------

def case_same_name(insts):
    """Two mvmds on one cgroup_parent, a VM "same" in each: each has its own
    subtree, and stopping one never touches the other's worker."""
    a, b = insts
    a.daemon.start()
    b.daemon.start()
    pa, pb = a.cgroup_parents(), b.cgroup_parents()
    if not pa:
        print("SKIP: no usable cgroup controller", file=sys.stderr)
        raise SystemExit(SKIP)
    check(set(pa).isdisjoint(pb), "two mvmds share cgroup subtrees: %s / %s" % (pa, pb))
    va, vb = a.create("same"), b.create("same")
    for p in pb:
        procs = open(os.path.join(p, "vm-same", "cgroup.procs")).read().split()
        check(str(vb["pid"]) in procs, "b's worker not in %s/vm-same" % p)
    a.ctl.ok("stop", "same", "--timeout", "0")
    a.ctl.wait_state("same", ("stopped", "crashed"))
    time.sleep(0.5)
    check(pid_alive(vb["pid"]), "stopping a's VM killed b's worker")
    check(b.ctl.vm("same")["state"] == "running", "b's VM is %s" % b.ctl.vm("same")["state"])
    for p in pb:
        check(os.path.isdir(os.path.join(p, "vm-same")), "b's cgroup %s/vm-same is gone" % p)
    # a VM name that is a cgroup control file's name works as any other
    for n in ("tasks", "cgroup.procs", "pids.max"):
        vm = a.create(n)
        check(vm["state"] == "running", "VM %s: %s" % (n, vm["state"]))
        a.ctl.ok("rm", "-f", n)
    # a's cgroup for "same" holding a process a did not start: refused, and
    # that process is left alone
    a.ctl.ok("rm", "-f", "same")
    squat = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)
    try:
        for p in pa:
            os.makedirs(os.path.join(p, "vm-same"), exist_ok=True)
            with open(os.path.join(p, "vm-same", "cgroup.procs"), "w") as f:
                f.write(str(squat.pid))
        out = a.ctl.fails(75, "create", "same", "--kernel", env_path("MVM_BZIMAGE"),
                          "--cmdline", "console=ttyS0 mvmtest=idle", "--mem", "64", "--wait")
        check("/sys/fs/cgroup" not in out, "the client was shown host paths: %s" % out)
        check(pid_alive(squat.pid), "mvmd killed a process it did not start")
        check("holds processes" in a.daemon.log(), "mvmd's log does not name the squatter")
        # the cgroup is made on the spawner thread: the row says why it failed
        vm = a.ctl.vm("same")
        check(vm["state"] == "crashed" and "holds processes" in vm.get("exit_reason", ""),
              "same after the refused start: %s %r" % (vm["state"], vm.get("exit_reason")))
        for p in pa:
            check(os.path.isdir(os.path.join(p, "vm-same")), "the squatter's %s/vm-same is gone" % p)
    finally:
        squat.kill()
        squat.wait()
    b.ctl.ok("rm", "-f", "same")
    for inst in (a,):
        for n in inst.ctl.ok("list", "-q").split():
            inst.ctl.ok("rm", "-f", n)


def case_run_dir(insts):
    """A second mvmd on another state dir and socket but the same run dir
    (where workers' directories and adopt sockets are named by VM) is
    refused, naming the first."""
    a, b = insts
    a.daemon.start()
    b.daemon.run = a.daemon.run
    b.daemon.sock = os.path.join(b.daemon.root, "b.sock")
    try:
        b.daemon.start(timeout=10)
        raise TestFailure("a second mvmd started on run dir %s" % a.daemon.run)
    except TestFailure as e:
        if "started on run dir" in str(e):
            raise
    b.daemon.proc = None
    want = "another mvmd (pid %d) uses run dir" % a.daemon.proc.pid
    check(want in b.daemon.log(), "the refusal does not say %r:\n%s" % (want, b.daemon.log()))
    check(a.daemon.alive(), "the first mvmd died")


def case_standalone(insts):
    """mvm-vmm --sandbox run by hand leases its default uid in the same
    directory: an mvmd whose whole range is that uid cannot hand it out."""
    inst, = insts
    vmm = subprocess.Popen([env_path("MVM_VMM"), "--sandbox", "--kernel", env_path("MVM_BZIMAGE"),
                            "--cmdline", "console=ttyS0 mvmtest=idle", "--mem", "64M"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
    try:
        def locked():
            # the waiter's child in its PID namespace is the VMM
            kids = open("/proc/%d/task/%d/children" % (vmm.pid, vmm.pid)).read().split()
            return int(kids[0]) if kids and uid_of(int(kids[0])) != 0 else None
        worker = wait_for(locked, 15, "the standalone worker to switch uid")
        uid = uid_of(worker)
        print("standalone worker pid %d runs as uid %d" % (worker, uid))
        check(100000 <= uid < 160000, "standalone uid %d outside 100000..159999" % uid)
        inst.daemon.write_config(["sandbox_uid_base = %d" % uid, "sandbox_uid_count = 1"])
        inst.daemon.start()
        err = inst.ctl.fails(1, "create", "clash", "--kernel", env_path("MVM_BZIMAGE"),
                             "--cmdline", "console=ttyS0 mvmtest=idle", "--mem", "64", "--wait")
        check("every uid of sandbox_uid_count is leased" in err, "create: %s" % err)
    finally:
        vmm.kill()
        vmm.wait()
    # the worker dies with its waiter (PR_SET_PDEATHSIG), a moment later,
    # and its lease goes when its last thread has closed its files
    def released():
        fd = os.open(os.path.join(LEASES, str(uid)), os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)   # drops the lock just taken, if any
    wait_for(released, 15, "the standalone worker's lease to go")
    # its lease went with it: the same uid is free for mvmd now
    vm = inst.create("after")
    check(uid_of(vm["pid"]) == uid, "mvmd did not get uid %d once the worker ended" % uid)
    inst.ctl.ok("rm", "-f", "clash")
    inst.ctl.ok("rm", "-f", "after")


CASES = {
    "instances-uid-squat": (case_uid_squat, 1, False),
    "instances-two-netns": (case_two_netns, 2, False),
    "instances-no-proc-scan": (case_no_proc_scan, 1, False),
    "instances-same-name": (case_same_name, 2, True),
    "instances-run-dir": (case_run_dir, 2, False),
    "instances-standalone": (case_standalone, 1, False),
}


def skip_reason(name):
    if os.geteuid() != 0:
        return "not root: mvmd sandboxes workers only as root"
    if not kvm_usable():
        return "/dev/kvm is missing or not accessible; these cases boot guests"
    if not os.environ.get("MVM_BZIMAGE"):
        return "the test guest is not built"
    if name == "instances-two-netns" and not shutil.which("unshare"):
        return "no unshare(1) to give an mvmd its own network namespace"
    return None


def main(argv):
    if len(argv) == 2 and argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(argv) != 2 or argv[1] not in CASES:
        print("usage: instances.py CASE | --list; cases: %s" % ", ".join(CASES),
              file=sys.stderr)
        return 2
    why = skip_reason(argv[1])
    if why:
        print("SKIP: %s" % why, file=sys.stderr)
        return SKIP
    fn, n, shared = CASES[argv[1]]
    parent = "mvm-test-inst-%d" % os.getpid() if shared else None
    insts = [Inst(parent) for _ in range(n)]
    return run_case(fn, insts)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
