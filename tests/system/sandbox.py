#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System tests of the worker sandbox (docs/security.md "Worker sandbox"):
mvmd spawns every worker locked down, with its own uid from the configured
range and its per-VM directory as its whole root, and records a worker
killed by its seccomp filter with the syscall's name.

Usage: sandbox.py CASE | --list

Environment as run.py (MVMD, MVMCTL, MVM_VMM, MVM_BZIMAGE), plus
MVM_TEST_HOOKS=1 when the build has -Dtest_hooks=true.  Exit status: 0
pass, 1 fail, 77 skip (no /dev/kvm or guest, not root, no test hooks).
"""

import ctypes
import fcntl
import json
import os
import shutil
import signal
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NOBODY, SKIP, Ctl, Daemon, check, drop_to, env_path,  # noqa: E402
                     kvm_usable, run_with_daemon, wait_for)

# A range of our own per test process: parallel daemons never share uids.
UID_BASE = 300000 + (os.getpid() % 5000) * 100
UID_COUNT = 100
SIGSYS = 31


class Skip(Exception):
    pass


class Env:
    def __init__(self, config=()):
        lines = ["sandbox_uid_base = %d" % UID_BASE,
                 "sandbox_uid_count = %d" % UID_COUNT] + list(config)
        self.daemon = Daemon(env_path("MVMD"), env_path("MVM_VMM"), config=lines)
        self.ctl = Ctl(env_path("MVMCTL"), self.daemon.sock)

    def create(self, name, scenario="idle", wait=True):
        args = ["create", name, "--kernel", env_path("MVM_BZIMAGE"),
                "--cmdline", "console=ttyS0 mvmtest=" + scenario, "--mem", "64"]
        return self.ctl.json(*(args + (["--wait"] if wait else [])))["vm"]

    def vm_dir(self, name):
        return os.path.join(self.daemon.run, "vms", name)


def status(pid):
    fields = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def landlock_abi():
    """The kernel's Landlock ABI, 0 without Landlock (as vmm/sandbox.c asks)."""
    libc = ctypes.CDLL(None)
    libc.syscall.restype = ctypes.c_long
    return max(libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1)), 0)


def check_locked_down(env, vm):
    """The worker's /proc view: no capabilities, no_new_privs, a seccomp
    filter, a uid and gid of the range, namespaces and root of its own."""
    pid = vm["pid"]
    st = status(pid)
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        check(int(st[k], 16) == 0, "VM %s: %s is %s, expected 0" % (vm["name"], k, st[k]))
    check(st["NoNewPrivs"] == "1", "NoNewPrivs %s" % st["NoNewPrivs"])
    check(st["Seccomp"] == "2", "Seccomp %s, expected 2 (filter)" % st["Seccomp"])
    uids, gids = set(st["Uid"].split()), set(st["Gid"].split())
    check(len(uids) == 1 and len(gids) == 1, "mixed ids: Uid %s Gid %s" % (uids, gids))
    uid, gid = int(uids.pop()), int(gids.pop())
    check(UID_BASE <= uid < UID_BASE + UID_COUNT, "uid %d outside [%d, %d)" %
          (uid, UID_BASE, UID_BASE + UID_COUNT))
    check(gid == uid, "gid %d, expected the uid %d" % (gid, uid))
    mvmd = env.daemon.proc.pid
    # Where Landlock scopes abstract Unix sockets (ABI 6), the worker keeps
    # the host's network namespace and takes a Landlock domain instead.
    landlock = landlock_abi() >= 6
    for ns in ("mnt", "pid", "ipc", "uts", "net", "cgroup"):
        mine = os.readlink("/proc/%d/ns/%s" % (pid, ns))
        shared = mine == os.readlink("/proc/%d/ns/%s" % (mvmd, ns))
        # no IPC namespace: its mqueue superblock costs every memory cgroup
        want = ns == "ipc" or (ns == "net" and landlock)
        check(shared == want, "worker %s mvmd's %s namespace (Landlock ABI %d)" %
              ("shares" if shared else "does not share", ns, landlock_abi()))
    # mvmd's own child, the init of its PID namespace: no waiter between
    check(st["NSpid"].split() == [str(pid), "1"], "NSpid %s, expected [%d, 1]" %
          (st["NSpid"], pid))
    check(int(st["PPid"]) == mvmd, "worker's parent is %s, not mvmd %d" % (st["PPid"], mvmd))
    # Its root: the per-VM directory itself, a bind mount (its superblock is
    # the run dir's: vmm/sandbox.c make_root says why), nothing else.
    d = env.vm_dir(vm["name"])
    root = "/proc/%d/root" % pid
    check(os.path.samefile(root, d), "worker's root is not the host's %s" % d)
    with open("/proc/%d/mountinfo" % pid) as f:
        mounts = [l.split() for l in f]
    check([m[4] for m in mounts] == ["/"], "worker sees mounts %s, expected its root alone" %
          [m[4] for m in mounts])
    dev = os.stat(d).st_dev
    check(mounts[0][2] == "%d:%d" % (os.major(dev), os.minor(dev)),
          "worker's root is on device %s, not its directory's %d:%d" %
          (mounts[0][2], os.major(dev), os.minor(dev)))
    s = os.stat(d)
    check(s.st_uid == uid and s.st_gid == uid and stat.S_IMODE(s.st_mode) == 0o700,
          "%s: owner %d:%d mode %o, expected %d:%d 0700" %
          (d, s.st_uid, s.st_gid, stat.S_IMODE(s.st_mode), uid, uid))
    return uid


def lease_free(uid, lease_dir="/run/mvm-uid-leases"):
    """Whether nobody holds uid's lease: we could take it (and let go)."""
    try:
        fd = os.open(os.path.join(lease_dir, str(uid)), os.O_RDONLY)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def case_state(env):
    """Two VMs: each locked down, with different uids; rm removes each
    one's directory."""
    a = env.create("sba")
    b = env.create("sbb")
    ua, ub = check_locked_down(env, a), check_locked_down(env, b)
    check(ua != ub, "both workers run as uid %d" % ua)
    print("uids: sba %d, sbb %d" % (ua, ub))
    env.ctl.ok("rm", "-f", "sba")
    check(not os.path.exists(env.vm_dir("sba")), "sba's sandbox directory is still there")
    check(os.path.isdir(env.vm_dir("sbb")), "removing sba took sbb's directory")
    # Leases (docs/security.md "Sandbox uids"): sba's went with its worker,
    # sbb's worker holds its own.
    check(lease_free(ua), "uid %d is still leased after sba was removed" % ua)
    check(not lease_free(ub), "uid %d (sbb's) is not leased" % ub)
    # The search goes on from the last uid taken: sbc gets the one after
    # sbb's, and a just-freed uid is the last to be taken again.
    c = env.create("sbc")
    uc = check_locked_down(env, c)
    check(uc == ub + 1, "sbc got uid %d, expected %d (the one after sbb's)" % (uc, ub + 1))
    env.ctl.ok("stop", "sbb", "--timeout", "0")
    env.ctl.wait_state("sbb", ("stopped", "crashed"))
    check(not os.path.exists(env.vm_dir("sbb")), "a stopped VM's directory is still there")
    env.ctl.ok("rm", "-f", "sbc")
    env.ctl.ok("rm", "sbb")


def case_off(env):
    """sandbox = false: the worker runs as mvmd does, without a directory."""
    vm = env.create("plain")
    st = status(vm["pid"])
    check(st["Seccomp"] == "0", "Seccomp %s with sandbox = false" % st["Seccomp"])
    check(st["Uid"].split()[0] == str(os.geteuid()), "Uid %s with sandbox = false" % st["Uid"])
    check(not os.path.exists(env.vm_dir("plain")), "a directory for an unsandboxed VM")
    check("without their sandbox" in env.daemon.log(), "mvmd did not say the sandbox is off")
    env.ctl.ok("rm", "-f", "plain")


def case_seccomp(env):
    """A worker that makes a forbidden syscall dies by SIGSYS, and mvmd
    records which syscall from its report."""
    env.create("bad", wait=False)
    vm = env.ctl.wait_state("bad", ("crashed", "stopped"))
    print(json.dumps(vm))
    want = "killed: seccomp violation (syscall socket)"
    check(vm["state"] == "crashed", "state %s, expected crashed" % vm["state"])
    check(vm["exit_reason"] == want, "exit reason %r, expected %r" % (vm["exit_reason"], want))
    check(vm["exit_status"] == 128 + SIGSYS, "exit status %r" % vm["exit_status"])
    shown = env.ctl.ok("show", "bad")
    check(want in shown, "mvmctl show does not say %r:\n%s" % (want, shown))
    wait_for(lambda: not os.path.exists(env.vm_dir("bad")), 5, "bad's directory to go")
    # the others are untouched
    good = env.create("good")
    check_locked_down(env, good)
    env.ctl.ok("rm", "-f", "good")


def case_signals(env):
    """A sandboxed worker is its PID namespace's init: vm.kill refuses a
    signal the kernel would drop; SIGTERM stops the VM and is recorded as
    that signal (the worker exits 128 + 15, mvmd reads it so)."""
    vm = env.create("sig")
    out = env.ctl.fails(1, "kill", "sig", "--signal", "SEGV")
    print(out.strip())
    check("SIGSEGV" in out and "SIGTERM" in out, "refusal does not say what to send:\n%s" % out)
    check(env.ctl.json("show", "sig")["vm"]["state"] == "running", "refused kill ended the VM")
    env.ctl.ok("kill", "sig", "--signal", "STOP")
    env.ctl.ok("kill", "sig", "--signal", "CONT")
    vm = env.ctl.json("kill", "sig", "--signal", "TERM", timeout=30)["vm"]
    vm = env.ctl.wait_state("sig", ("crashed", "stopped"))
    print(json.dumps(vm))
    check(vm["exit_status"] == 128 + 15, "exit status %r, expected 143" % vm["exit_status"])
    check(vm["exit_reason"] == "killed", "exit reason %r" % vm["exit_reason"])
    env.ctl.ok("start", "sig")
    vm = env.ctl.wait_state("sig", "running")
    # a signal nobody asked for: the reason names it
    os.kill(vm["pid"], 15)
    vm = env.ctl.wait_state("sig", ("crashed", "stopped"))
    check(vm["exit_reason"] == "signal SIGTERM", "exit reason %r" % vm["exit_reason"])
    env.ctl.ok("rm", "sig")


def case_two_daemons(env):
    """Two mvmds on one uid range (a test daemon beside a real one) never
    hand out the same uid."""
    other = Env()
    try:
        other.daemon.start()
        uids = set()
        for i in range(3):
            uids.add(check_locked_down(env, env.create("mine%d" % i)))
            uids.add(check_locked_down(other, other.create("theirs%d" % i)))
        print("uids: %s" % sorted(uids))
        check(len(uids) == 6, "6 workers of two daemons share uids: %s" % sorted(uids))
        other.daemon.stop()
    finally:
        other.daemon.cleanup()
    for i in range(3):
        env.ctl.ok("rm", "-f", "mine%d" % i)


# A client uid (the VM's owner) and a stranger; neither is in the range.
STRANGER = NOBODY - 1
TRY_UNIX = """import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.bind(sys.argv[2]) if sys.argv[1] == "bind" else s.connect(sys.argv[2])
except PermissionError:
    sys.exit(13)
"""


def try_unix(uid, what, path):
    """Whether uid may connect to (or bind) the Unix socket path."""
    # the system python: the test's own may sit where other uids cannot go
    r = subprocess.run(["/usr/bin/python3", "-c", TRY_UNIX, what, path], preexec_fn=drop_to(uid),
                       capture_output=True, timeout=10)
    check(r.returncode in (0, 13), "%s %s as uid %d: %s" % (what, path, uid, r.stderr.decode()))
    return r.returncode == 0


def check_vsock_access(env, vm, owner, sandboxed):
    path = vm["vsock_path"]
    d = os.path.dirname(path)
    st, sk = os.stat(d), os.lstat(path)
    # sandboxed: the worker's gid may search it; unsandboxed it runs as root
    worker = int(status(vm["pid"])["Uid"].split()[0]) if sandboxed else 0
    mode = 0o2710 if sandboxed else 0o700
    check(st.st_uid == owner and st.st_gid == worker and stat.S_IMODE(st.st_mode) == mode,
          "%s is %d:%d %o, expected %d:%d %o" % (d, st.st_uid, st.st_gid,
                                                 stat.S_IMODE(st.st_mode), owner, worker, mode))
    check(stat.S_ISSOCK(sk.st_mode) and sk.st_uid == owner,
          "%s: not a socket of uid %d: %o uid %d" % (path, owner, sk.st_mode, sk.st_uid))
    check(try_unix(owner, "connect", path), "the owner cannot connect to %s" % path)
    check(not try_unix(STRANGER, "connect", path), "uid %d can connect to %s" % (STRANGER, path))
    check(try_unix(owner, "bind", path + "_5000"), "the owner cannot make %s_5000" % path)
    check(not try_unix(STRANGER, "bind", path + "_5001"),
          "uid %d can make a listener in %s" % (STRANGER, d))


def case_vsock(env, sandboxed=True):
    """--vsock through mvmd: the host socket in the per-VM directory, shown
    by mvmctl show; its owner (not root) may connect and make <path>_PORT
    listeners, another uid may do neither; after an mvmd restart the
    adopted VM shows the same socket, still there.  Also unsandboxed."""
    for p in (env.daemon.root, env.daemon.run):
        os.chmod(p, 0o755)
    os.chmod(env.daemon.sock, 0o666)
    kernel = os.path.join(env.daemon.root, "guest.bzImage")
    shutil.copy(env_path("MVM_BZIMAGE"), kernel)
    os.chmod(kernel, 0o644)
    err = env.ctl.fails(2, "create", "bad", "--kernel", kernel, "--vsock", "2", uid=NOBODY)
    check("3 to 4294967294" in err, "--vsock 2 refused without the range: %s" % err)
    vm = env.ctl.json("create", "vs", "--kernel", kernel, "--cmdline",
                      "console=ttyS0 mvmtest=idle", "--mem", "64", "--vsock", "9", "--wait",
                      uid=NOBODY)["vm"]
    want = os.path.join(env.daemon.run, "vms", "vs", "vsock.sock")
    check(vm["vsock"] == 9 and vm["vsock_path"] == want,
          "vsock %r at %r, expected 9 at %s" % (vm["vsock"], vm["vsock_path"], want))
    text = env.ctl.ok("show", "vs", uid=NOBODY)
    check("Vsock:" in text and ("cid=9 " + want) in text, "mvmctl show says:\n%s" % text)
    check_vsock_access(env, env.ctl.vm("vs"), NOBODY, sandboxed)
    pid = vm["pid"]
    # kill -9 mvmd: the worker keeps running and the next mvmd adopts it
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.proc.wait(10)
    env.daemon.proc = None
    env.daemon.start()
    os.chmod(env.daemon.sock, 0o666)
    vm = env.ctl.vm("vs")
    check(vm["state"] == "running" and vm["pid"] == pid and vm["vsock_path"] == want,
          "after the restart: %s" % json.dumps(vm))
    check(try_unix(NOBODY, "connect", want), "the owner cannot connect after the restart")
    # a spec from show keeps the vsock and leaves the run-only path behind
    spec = env.ctl.ok("show", "vs", "-o", "json", uid=NOBODY)
    env.ctl.run("create", "-f", "-", "vs2", "--no-start", input=spec.encode(), uid=NOBODY)
    vm2 = env.ctl.vm("vs2")
    check(vm2["vsock"] == 9 and vm2["vsock_path"].endswith("/vms/vs2/vsock.sock"),
          "create -f of vs's show: %s" % json.dumps(vm2))
    env.ctl.ok("rm", "vs2")
    env.ctl.ok("rm", "-f", "vs")
    check(not os.path.exists(os.path.dirname(want)), "rm left %s" % os.path.dirname(want))


CASES = {
    "sandbox-state": (case_state, ()),
    "sandbox-vsock": (case_vsock, ()),
    "sandbox-vsock-off": (lambda env: case_vsock(env, False), ("sandbox = false",)),
    "sandbox-off": (case_off, ("sandbox = false",)),
    "sandbox-seccomp": (case_seccomp, ()),
    "sandbox-signals": (case_signals, ()),
    "sandbox-two-daemons": (case_two_daemons, ()),
}


def skip_reason(name):
    if not kvm_usable():
        return "/dev/kvm is missing or not accessible; these cases boot guests"
    if not os.environ.get("MVM_BZIMAGE"):
        return "the test guest is not built"
    if os.geteuid() != 0:
        return "not root: mvmd sandboxes workers only as root"
    if name == "sandbox-seccomp" and os.environ.get("MVM_TEST_HOOKS") != "1":
        return ("built without -Dtest_hooks=true: mvmd cannot make a worker break "
                "its filter (MVM_TEST_FORBIDDEN_SYSCALL)")
    return None


def main(argv):
    if len(argv) == 2 and argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(argv) != 2 or argv[1] not in CASES:
        print("usage: sandbox.py CASE | --list; cases: %s" % ", ".join(CASES), file=sys.stderr)
        return 2
    why = skip_reason(argv[1])
    if why:
        print("SKIP: %s" % why, file=sys.stderr)
        return SKIP
    fn, config = CASES[argv[1]]
    if argv[1] == "sandbox-seccomp":
        os.environ["MVM_TEST_FORBIDDEN_SYSCALL"] = "bad"  # mvmd inherits it
    return run_with_daemon(argv[1], Env(config), fn)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
