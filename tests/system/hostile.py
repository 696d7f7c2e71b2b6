#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System tests of isolation between users and instances (issue 12,
docs/security.md "Threat model"), each played by a hostile local user.

A Hostile is another local user (uid 65534 unless told otherwise) with
access to mvmd's socket, as a member of group mvm would have: it drives
mvmctl and raw protocol clients under its own uid and tries what such a
user would.

Usage: hostile.py CASE | --list

Environment as run.py (MVMD, MVMCTL, MVM_VMM, MVM_BZIMAGE).  Exit status:
0 pass, 1 fail, 77 skip (not root; no /dev/kvm or guest for the cases
that boot one).
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NOBODY, SKIP, Ctl, Daemon, Raw, check, drop_to,  # noqa: E402
                     env_path, kvm_usable, run_with_daemon, wait_for)

# A sandbox uid range of our own per test process.
UID_BASE = 400000 + (os.getpid() % 5000) * 100
UID_COUNT = 100

class Hostile:
    """Another local user with access to mvmd's socket."""

    def __init__(self, env, uid=NOBODY):
        self.env = env
        self.uid = uid
        # mvmd's socket and the path to it: what group mvm gets
        for d in (env.daemon.root, env.daemon.run):
            os.chmod(d, 0o755)
        os.chmod(env.daemon.sock, 0o666)
        self.home = os.path.join(env.daemon.root, "home-%d" % uid)
        os.makedirs(self.home, exist_ok=True)
        os.chown(self.home, uid, uid)

    def own_file(self, name, src=None, data=b"x" * 4096):
        """A file of this user's, copied from src or holding data."""
        p = os.path.join(self.home, name)
        if src:
            shutil.copy(src, p)
        else:
            with open(p, "wb") as f:
                f.write(data)
        os.chown(p, self.uid, self.uid)
        os.chmod(p, 0o600)
        return p

    def ctl(self, *args, **kw):
        return self.env.ctl.run(*args, uid=self.uid, **kw)

    def ok(self, *args, **kw):
        return self.env.ctl.ok(*args, uid=self.uid, **kw)

    def fails(self, code, *args, **kw):
        return self.env.ctl.fails(code, *args, uid=self.uid, **kw)

    def call(self, op, args):
        """One raw request from a child process of this uid (mvmd checks
        the connecting process's credentials); the response object."""
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(rfd)
                drop_to(self.uid)()
                raw = Raw(self.env.daemon.sock, timeout=30)
                os.write(wfd, json.dumps(raw.call(op, args)).encode())
                code = 0
            finally:
                os._exit(code)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            out = f.read()
        _, status = os.waitpid(pid, 0)
        check(status == 0 and out, "raw %s as uid %d got no answer" % (op, self.uid))
        return json.loads(out)


class Env:
    def __init__(self, state_mode=None):
        self.daemon = Daemon(env_path("MVMD"), env_path("MVM_VMM"), config=[
            "sandbox_uid_base = %d" % UID_BASE, "sandbox_uid_count = %d" % UID_COUNT])
        self.ctl = Ctl(env_path("MVMCTL"), self.daemon.sock)
        if state_mode is not None:
            # pre-created as systemd's StateDirectory= would without a mode
            os.makedirs(self.daemon.state)
            os.chmod(self.daemon.state, state_mode)

    def guest(self):
        return env_path("MVM_BZIMAGE")

    def vm_file(self, name, f):
        return os.path.join(self.daemon.state, "vms", name, f)


def create_guest(who, name, scenario, *extra):
    kernel = who.own_file("k-" + name, src=who.env.guest()) if isinstance(who, Hostile) \
        else who.guest()
    run = who.ok if isinstance(who, Hostile) else who.ctl.ok
    run("create", name, "--kernel", kernel, "--cmdline", "console=ttyS0 mvmtest=" + scenario,
        "--mem", "64M", "--wait", *extra)


# ---- item 2: files mvmd holds, reached through /proc -------------------------

def case_proc_paths(env):
    """A member cannot hand a guest mvmd's database through /proc/self/fd/N,
    another process's files through /proc/PID/root or /proc/PID/fd, nor any
    procfs file; a plain symlink to its own file still works, and a file it
    may not read is still refused."""
    h = Hostile(env)
    mvmd = env.daemon.proc.pid
    db = os.path.join(env.daemon.state, "mvmd.db")
    fds = [int(n) for n in os.listdir("/proc/%d/fd" % mvmd)
           if os.path.realpath("/proc/%d/fd/%s" % (mvmd, n)).startswith(db)]
    check(fds, "mvmd holds no fd of %s" % db)
    kernel = h.own_file("kernel")
    paths = ["/proc/self/fd/%d" % n for n in fds] + \
        ["/proc/%d/fd/%d" % (mvmd, fds[0]), "/proc/thread-self/fd/%d" % fds[0],
         "/proc/%d/root%s" % (mvmd, db), "/proc/1/root/etc/shadow",
         "/proc/self/environ", "/proc/%d/cmdline" % mvmd, "/proc/self/exe"]
    link = os.path.join(h.home, "via-proc")
    os.symlink("/proc/self/fd/%d" % fds[0], link)
    paths.append(link)
    for i, p in enumerate(paths):
        for who in (h.fails, lambda code, *a: env.ctl.fails(code, *a)):
            err = who(1, "create", "p%d" % i, "--kernel", kernel, "--initrd", p)
            check("permission_denied" in err and "/proc" in err,
                  "--initrd %s was not refused as a /proc path: %r" % (p, err))
    # the other file fields: a kernel, and a writable disk (mvmd.db itself)
    for args in (["--kernel", paths[0]], ["--kernel", kernel, "--disk", paths[0]],
                 ["--kernel", kernel, "--disk", paths[0] + ",ro"]):
        err = h.fails(1, "create", "pf", *args)
        check("permission_denied" in err and "/proc" in err, "%s: %r" % (args, err))
    check(h.ok("list", "-q").split() == [], "a refused create left a VM")
    # what still works: a symlink to the user's own file, as the user
    mine = os.path.join(h.home, "mine")
    os.symlink(kernel, mine)
    h.ok("create", "sym", "--kernel", mine, "--initrd", mine, "--no-start")
    root_only = os.path.join(env.daemon.root, "root-only")
    with open(root_only, "wb") as f:
        f.write(b"secret")
    os.chmod(root_only, 0o600)
    err = h.fails(1, "create", "nope", "--kernel", kernel, "--initrd", root_only)
    check("permission_denied" in err, "a root-only file was not refused: %r" % err)
    h.ok("rm", "sym")


def case_tap_owner(env):
    """A TAP owned by the user attaches (mvmd opens /dev/net/tun itself, the
    tun driver judges the user); a TAP with neither owner nor group, which
    the kernel gives anyone, is refused with the fix; another user's TAP is
    refused naming the owner rule.  Where /dev/net/tun is 0600 (this
    host's), the owner's attach is the proof that its mode plays no part."""
    h = Hostile(env)
    print("/dev/net/tun mode %o" % mode("/dev/net/tun"))
    tag = os.getpid() % 100000
    taps = {"own": "mvh%do" % tag, "none": "mvh%dn" % tag, "root": "mvh%dr" % tag}
    try:
        subprocess.run(["ip", "tuntap", "add", "dev", taps["own"], "mode", "tap",
                        "user", str(h.uid)], check=True)
        subprocess.run(["ip", "tuntap", "add", "dev", taps["none"], "mode", "tap"], check=True)
        subprocess.run(["ip", "tuntap", "add", "dev", taps["root"], "mode", "tap",
                        "user", "0"], check=True)
        create_guest(h, "nic-own", "idle", "--net", "tap=" + taps["own"])
        h.ok("rm", "-f", "nic-own")
        kernel = h.own_file("kernel2", src=env.guest())
        err = h.fails(1, "create", "nic-none", "--kernel", kernel, "--mem", "64M",
                      "--net", "tap=" + taps["none"])
        check("no owner or group" in err and "user <you>" in err, "ownerless TAP: %r" % err)
        err = h.fails(1, "create", "nic-root", "--kernel", kernel, "--mem", "64M",
                      "--net", "tap=" + taps["root"])
        check("owner or group is not yours" in err, "root's TAP: %r" % err)
        # root may still use an ownerless TAP it made
        create_guest(env, "nic-rootvm", "idle", "--net", "tap=" + taps["none"])
        env.ctl.ok("rm", "-f", "nic-rootvm")
    finally:
        for t in taps.values():
            subprocess.run(["ip", "link", "del", t], stderr=subprocess.DEVNULL)


# ---- item 4: a stopped mvmd must not get printing VMs killed -----------------

FLOOD_LINE_BYTES = len("MVMTEST flood line=1234567 " + "." * 48 + "\n")


def flood_line(env):
    """The number of the last flood line in the console log."""
    with open(env.vm_file("loud", "console.log"), "rb") as f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
        tail = f.read().decode(errors="replace")
    nums = [int(x.split()[0]) for x in tail.split("MVMTEST flood line=")[1:]
            if x.split() and x.split()[0].isdigit()]
    check(nums, "no flood line in the console log")
    return nums[-1]


def case_paused_daemon(env):
    """A guest prints as fast as it can while mvmd is stopped (SIGSTOP) for
    12 to 40 s, until it printed 1 MiB (more than the old link buffer took
    before its realloc ended in mremap and a seccomp kill: the socket's
    ~200 KiB and 128 KiB): the VM is still running after SIGCONT, answers
    health checks, and when it printed more than the 2 MiB link buffer
    holds, vmm.log counts the console bytes the link dropped."""
    env.ctl.ok("create", "loud", "--kernel", env.guest(), "--cmdline",
               "console=ttyS0 mvmtest=flood", "--mem", "64M", "--wait")
    pid = env.ctl.vm("loud")["pid"]
    time.sleep(1)
    n0 = flood_line(env)
    env.daemon.proc.send_signal(signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        time.sleep(12)
        while (flood_line(env) - n0) * FLOOD_LINE_BYTES < 2**20 and time.monotonic() - t0 < 40:
            time.sleep(1)
        # a dead worker stays a zombie until mvmd runs again
        with open("/proc/%d/stat" % pid) as f:
            st = f.read().rsplit(")", 1)[1].split()[0]
        check(st != "Z", "the worker died while mvmd was stopped")
    finally:
        env.daemon.proc.send_signal(signal.SIGCONT)
    printed = (flood_line(env) - n0) * FLOOD_LINE_BYTES
    print("the guest printed %.2f MiB in the %.0f s mvmd was stopped" %
          (printed / 2**20, time.monotonic() - t0))
    # a few health-check periods after: still running, output still flowing
    time.sleep(5)
    vm = env.ctl.vm("loud")
    check(vm["state"] == "running" and vm["pid"] == pid,
          "after SIGCONT the VM is %s (%s)" % (vm["state"], vm.get("exit_reason")))
    log = open(env.vm_file("loud", "vmm.log"), errors="replace").read()
    # more than the worker's link buffer (2 MiB) and the socket's could hold
    if printed > 3 * 2**20:
        check("console bytes not sent" in log, "vmm.log does not count dropped bytes:\n" +
              log[-2000:])
        print(log.strip().splitlines()[-1])
    else:
        print("too little to overflow the link buffer: its drop count is not checked")
    out = env.ctl.ok("logs", "loud", "--tail", "5")
    check("MVMTEST flood line=" in out, "no console output after SIGCONT: %r" % out[-300:])
    env.ctl.ok("rm", "-f", "loud")


# ---- item 6: the database is mvmd's alone ------------------------------------

def mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def case_private_state(env):
    """A state dir pre-created 0777 is tightened (and logged), and the
    database and its WAL are 0600: another user reads no VM's command
    line."""
    h = Hostile(env)
    env.ctl.ok("create", "secretvm", "--kernel", env.guest(), "--cmdline",
               "console=ttyS0 password=hunter2", "--no-start")
    st = env.daemon.state
    check(mode(st) & 0o027 == 0, "state dir is %o" % mode(st))
    check(mode(os.path.join(st, "vms")) & 0o027 == 0, "vms dir is %o" % mode(os.path.join(st, "vms")))
    check("made it 0750" in env.daemon.log(), "the tightening was not logged")
    for f in ("mvmd.db", "mvmd.db-wal", "mvmd.db-shm"):
        p = os.path.join(st, f)
        if os.path.exists(p):
            check(mode(p) == 0o600, "%s is %o, expected 600" % (f, mode(p)))
    check(os.path.exists(os.path.join(st, "mvmd.db-wal")), "no WAL to check")
    for f in ("mvmd.db", "mvmd.db-wal"):
        p = subprocess.run(["cat", os.path.join(st, f)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, preexec_fn=drop_to(h.uid))
        check(p.returncode != 0 and b"hunter2" not in p.stdout, "uid %d read %s" % (h.uid, f))
    env.ctl.ok("rm", "secretvm")


# ---- item 7: a new VM never inherits a deleted one's history -----------------

def case_reused_name(env):
    """User A's VM lives, dies and is removed; user B creates a VM of the
    same name: B sees only its own events and a new uuid."""
    a = Hostile(env, NOBODY)
    b = Hostile(env, NOBODY - 1)
    ka, kb = a.own_file("k"), b.own_file("k")
    a.ok("create", "shared", "--kernel", ka, "--cmdline", "secret=a", "--no-start")
    first = json.loads(a.ok("show", "shared", "-o", "json"))
    check(len(first["vm"].get("uuid", "")) == 36, "no uuid: %r" % first["vm"])
    a.ok("start", "shared")         # not a kernel: crashes, more events
    wait_for(lambda: json.loads(a.ok("show", "shared", "-o", "json"))["vm"]["state"] == "crashed",
             30, "A's VM to crash")
    a.ok("rm", "shared")
    b.ok("create", "shared", "--kernel", kb, "--no-start")
    second = json.loads(b.ok("show", "shared", "-o", "json"))
    states = [e["state"] for e in second["events"]]
    check(states == ["created"], "B's new VM lists events %s" % states)
    check(second["vm"]["uuid"] != first["vm"]["uuid"], "the uuid was reused")
    b.ok("rm", "shared")


# ---- item 9: what mvmctl prints cannot drive the operator's terminal ---------

def case_terminal_escapes(env):
    """Labels, a command line and a name of events with ESC, BEL, CR and a
    newline come out of list and show escaped, never raw."""
    h = Hostile(env)
    k = h.own_file("k")
    evil = "x\x1b]0;owned\x07\x1b[2J\r\nfake\u009b1m"
    r = h.call("vm.create", {"name": "esc", "kernel": k, "cmdline": evil,
                             "labels": {"role": evil}, "start": False})
    check(r.get("ok") is True, "create: %r" % r)
    for args in (["list"], ["show", "esc"]):
        for who in (env.ctl.ok, h.ok):
            out = who(*args)
            for bad in ("\x1b", "\x07", "\r", "\u009b"):
                check(bad not in out, "%s prints %r raw:\n%r" % (args, bad, out))
            check("\\x1b]0;owned\\x07" in out, "%s shows no escaped form:\n%r" % (args, out))
            check(not any(line.startswith("fake") for line in out.splitlines()),
                  "%s: the newline started a line of the guest's choosing:\n%s" % (args, out))
    check(len(env.ctl.ok("list").splitlines()) == 2, "list is not a header and one row")
    h.ok("rm", "esc")


# ---- also: --wait fails when the worker crashed at once ----------------------

def case_wait_crash(env):
    """create --wait and start --wait with a kernel that is no kernel: exit
    1, naming the user's own path (not /proc/self/fd/N) in the worker's own
    words."""
    h = Hostile(env)
    k = h.own_file("not-a-kernel", data=b"root:x:0:0:root:/root:/bin/bash\n" * 64)
    err = h.fails(1, "create", "bad", "--kernel", k, "--mem", "64M", "--wait")
    check(k in err and "/proc/self/fd" not in err and "bzImage" in err,
          "create --wait: %r" % err)
    vm = json.loads(h.ok("show", "bad", "-o", "json"))["vm"]
    check(vm["state"] == "crashed" and vm["exit_reason"].startswith("vmm-error: "),
          "state %s, reason %r" % (vm["state"], vm["exit_reason"]))
    err = h.fails(1, "start", "bad", "--wait")
    check(k in err and "/proc/self/fd" not in err, "start --wait: %r" % err)
    h.ok("rm", "bad")
    # and a good one still exits 0
    create_guest(h, "good", "idle")
    h.ok("rm", "-f", "good")


CASES = {
    "hostile-proc-paths": (case_proc_paths, False, {}),
    "hostile-tap-owner": (case_tap_owner, True, {}),
    "hostile-paused-daemon": (case_paused_daemon, True, {}),
    "hostile-private-state": (case_private_state, False, {"state_mode": 0o777}),
    "hostile-reused-name": (case_reused_name, True, {}),
    "hostile-terminal-escapes": (case_terminal_escapes, False, {}),
    "hostile-wait-crash": (case_wait_crash, True, {}),
}


def skip_reason(name):
    if os.geteuid() != 0:
        return "not root: these cases act as other local users"
    if CASES[name][1] and not kvm_usable():
        return "/dev/kvm is missing or not accessible; this case boots a guest"
    if CASES[name][1] and not os.environ.get("MVM_BZIMAGE"):
        return "the test guest is not built"
    return None


def main(argv):
    if len(argv) == 2 and argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(argv) != 2 or argv[1] not in CASES:
        print("usage: hostile.py CASE | --list; cases: %s" % ", ".join(CASES), file=sys.stderr)
        return 2
    why = skip_reason(argv[1])
    if why:
        print("SKIP: %s" % why, file=sys.stderr)
        return SKIP
    fn, _, kw = CASES[argv[1]]
    return run_with_daemon(argv[1], Env(**kw), fn)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
