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
import resource
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NOBODY, SKIP, Ctl, Daemon, Raw, check, drop_to,  # noqa: E402
                     env_path, kvm_usable, proc_number, run_with_daemon, wait_for)

# A sandbox uid range of our own per test process.
UID_BASE = 400000 + (os.getpid() % 5000) * 100
UID_COUNT = 100
PIDS_V1 = "/sys/fs/cgroup/pids"

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

    def hold(self, fn):
        """fn(sock_path) in a child of this uid: its JSON-able result, and
        a function that ends the child (and with it what fn holds)."""
        rfd, wfd = os.pipe()
        gofd, waitfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(rfd)
                os.close(waitfd)
                drop_to(self.uid)()
                kept = []
                res = fn(self.env.daemon.sock, kept)
                os.write(wfd, json.dumps(res).encode())
                os.close(wfd)
                os.read(gofd, 1)        # until the parent lets go
            finally:
                os._exit(0)
        os.close(wfd)
        os.close(gofd)
        with os.fdopen(rfd, "rb") as f:
            out = f.read()

        def release():
            os.close(waitfd)
            os.waitpid(pid, 0)
        if not out:
            release()
            check(False, "the child of uid %d reported nothing" % self.uid)
        return json.loads(out), release


class Env:
    def __init__(self, state_mode=None, config=()):
        self.daemon = Daemon(env_path("MVMD"), env_path("MVM_VMM"), config=[
            "sandbox_uid_base = %d" % UID_BASE, "sandbox_uid_count = %d" % UID_COUNT] +
            list(config))
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


# ---- item 3: what one client may make mvmd hold ----------------------------

def rss_kib(pid):
    return proc_number("/proc/%d/status" % pid, "VmRSS:")


def rss_allowance(pid):
    """KiB of RSS a sanitizer build adds on its own: ASan keeps freed
    memory in a 256 MiB quarantine, caches and shadows what it maps (its
    mvmd grew 300 to 480 MiB here where a plain one grew 0.1 to 57)."""
    with open("/proc/%d/maps" % pid) as f:
        return 1024 * 1024 if "libasan" in f.read() else 0


def open_many(n):
    """A child's fn: n connections, then which were refused and why."""
    def fn(path, kept):
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(path)
            except OSError as e:
                s.close()
                kept.append(None)
                err = str(e)
                continue
            kept.append(s)
        # a refusal is an error line, then EOF; an accepted one stays quiet
        deadline, refused, msg = time.monotonic() + 10, 0, ""
        socks = [s for s in kept if s]
        pending = list(socks)
        while pending and time.monotonic() < deadline:
            r, _, _ = select.select(pending, [], [], 0.5)
            if not r:
                break
            for s in r:
                data = s.recv(4096)
                pending.remove(s)
                if data:
                    refused += 1
                    msg = data.decode(errors="replace").strip()
        err = "" if len(socks) == n else "connect failed"
        return {"accepted": len(socks) - refused, "refused": refused + n - len(socks),
                "message": msg, "error": err}
    return fn


def case_connection_flood(env):
    """One uid opens connections without end (the issue: 24,000 idle ones
    exhausted mvmd's fds): past client_max_per_uid it is refused with a
    line saying why; root and another user still get answers; with mvmd's
    fd limit lowered past its fd_reserve, others are refused but root is
    not."""
    h, other = Hostile(env), Hostile(env, uid=NOBODY - 1)
    pid = env.daemon.proc.pid
    fds = lambda: len(os.listdir("/proc/%d/fd" % pid))  # noqa: E731
    before = fds()
    res, release = h.hold(open_many(200))
    try:
        print("uid %d: %s" % (h.uid, res))
        check(res["accepted"] == 50 and res["refused"] == 150,
              "per-uid bound not applied: %s" % res)
        check("client_max_per_uid" in res["message"], "refusal does not say why: %s" % res)
        env.ctl.ok("list")
        other.ok("list")
    finally:
        release()
    # mvmd closes its ends as it reads each EOF: wait for that, or the
    # limit below would leave room for the ones still closing
    wait_for(lambda: fds() <= before + 2, 10, "mvmd to close the released connections")
    nfd = fds()
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (nfd + 64 + 20, old[1]))
    try:
        res, release = h.hold(open_many(45))
        try:
            print("uid %d with %d fds free past the reserve: %s" % (h.uid, 20, res))
            check(res["refused"] > 0 and "file descriptors" in res["message"],
                  "no refusal as fds ran short: %s" % res)
            env.ctl.ok("list")
        finally:
            release()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    check("short of file descriptors" in env.daemon.log(), "no log line on the fd refusal")
    other.ok("list")


def slow_lines(n):
    def fn(path, kept):
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.sendall(b'{"id": 1, "op": "vm.li')
            kept.append(s)
        t0, closed, msg = time.monotonic(), 0, ""
        for s in kept:
            s.settimeout(max(0.1, 20 - (time.monotonic() - t0)))
            data = b""
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        closed += 1
                        break
                    data += chunk
            except socket.timeout:
                pass
            msg = msg or data.decode(errors="replace").strip()
        return {"closed": closed, "message": msg, "seconds": time.monotonic() - t0}
    return fn


def never_read(n, seconds):
    """n connections that pipeline requests as fast as mvmd takes them
    and never read an answer."""
    def fn(path, kept):
        req = b'{"id": 1, "op": "host.info"}\n' * 256
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.setblocking(False)
            kept.append(s)
        sent, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            _, w, _ = select.select([], kept, [], 0.2)
            for s in w:
                try:
                    sent += s.send(req)
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    pass
        return {"sent": sent}
    return fn


def case_slow_clients(env):
    """Clients that trickle half a request line (slowloris) are told and
    closed after client_line_timeout; clients that send requests without
    reading the answers stop being served past a bounded backlog, so
    mvmd's RSS stays bounded, and root is still answered."""
    h = Hostile(env)
    res, release = h.hold(slow_lines(20))
    release()
    print("half lines: %s" % res)
    check(res["closed"] == 20, "unfinished lines not closed: %s" % res)
    check("client_line_timeout" in res["message"], "closing does not say why: %s" % res)
    pid = env.daemon.proc.pid
    rss0 = rss_kib(pid)
    res, release = h.hold(never_read(40, 8))
    try:
        grown = rss_kib(pid) - rss0
        print("40 non-reading clients sent %.1f MiB of requests; mvmd grew %.1f MiB" %
              (res["sent"] / 2**20, grown / 1024))
        check(grown < 160 * 1024 + rss_allowance(pid),
              "mvmd grew %d KiB for non-reading clients" % grown)
        env.ctl.ok("list")
    finally:
        release()


def case_console_flood(env):
    """A console client writes input as fast as it can (the issue: +1.1 GiB
    in 40 s, and the health pings behind it got the VM killed as hung):
    mvmd stops reading it while the worker link is full, its RSS stays
    bounded, and the VM keeps answering health checks."""
    create_guest(env, "sink", "idle")
    vm = env.ctl.vm("sink")
    pid = env.daemon.proc.pid
    rss0 = rss_kib(pid)
    raw = Raw(env.daemon.sock, timeout=10)
    check(raw.call("vm.console", {"name": "sink"}).get("ok") is True, "no console")
    raw.s.setblocking(False)
    chunk, sent, t0 = b"x" * 65536, 0, time.monotonic()
    while time.monotonic() - t0 < 10:
        _, w, _ = select.select([], [raw.s], [], 0.2)
        if w:
            try:
                sent += raw.s.send(chunk)
            except BlockingIOError:
                pass
            except OSError as e:
                vm = env.ctl.vm("sink")
                check(False, "mvmd closed the console after %d bytes (%s): the VM is %s (%s)"
                      % (sent, e, vm["state"], vm.get("exit_reason")))
        try:
            raw.s.recv(1 << 16)     # its echo, if any, is not the point
        except (BlockingIOError, InterruptedError):
            pass
    grown = rss_kib(pid) - rss0
    raw.close()
    print("console input sent %.1f MiB in 10 s; mvmd grew %.1f MiB" %
          (sent / 2**20, grown / 1024))
    check(grown < 64 * 1024 + rss_allowance(pid), "mvmd grew %d KiB under a console flood"
          % grown)
    after = env.ctl.vm("sink")
    check(after["state"] == "running" and after["pid"] == vm["pid"],
          "the VM is %s (%s) after the flood" % (after["state"], after.get("exit_reason")))
    env.ctl.ok("rm", "-f", "sink")


def case_fd_exhaustion_restart(env):
    """mvmd runs out of fds (another user's flood) just as a restart=always
    VM's worker dies: the restart fails with EMFILE, is retried, and the
    VM runs again once fds are back, instead of staying crashed."""
    create_guest(env, "phoenix", "idle", "--restart", "always")
    old_pid = env.ctl.vm("phoenix")["pid"]
    pid = env.daemon.proc.pid
    nfd = len(os.listdir("/proc/%d/fd" % pid))
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (max(16, nfd - 8), old[1]))
    try:
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: "retrying in" in env.daemon.log(), 30,
                 "a restart that failed short of fds and will be retried")
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    line = [x for x in env.daemon.log().splitlines() if "retrying in" in x][0]
    print(line)

    def back():
        vm = env.ctl.vm("phoenix")
        return vm["state"] == "running" and vm["pid"] != old_pid
    wait_for(back, 30, "the VM to run again after the fds came back")
    env.ctl.ok("rm", "-f", "phoenix")


def pids_cgroup(pid):
    """The cgroup v1 pids directory pid is in, or None."""
    for line in open("/proc/%d/cgroup" % pid).read().splitlines():
        _, ctrls, path = line.split(":", 2)
        if "pids" in ctrls.split(","):
            return os.path.join(PIDS_V1, path.lstrip("/"))
    return None


def write_file(path, text):
    with open(path, "w") as f:
        f.write(text)


def case_pids_exhaustion_restart(env):
    """mvmd's own cgroup runs out of tasks (pids.max; another user's fork
    storm would do the same to the host's pid_max) just as a restart=always
    VM's worker dies: the clone on the spawner thread fails with EAGAIN,
    the restart is retried as one that failed on the loop would be, and
    the VM runs again once tasks are back, instead of staying crashed."""
    create_guest(env, "hydra", "idle", "--restart", "always")
    old_pid = env.ctl.vm("hydra")["pid"]
    pid = env.daemon.proc.pid
    home = pids_cgroup(pid)
    check(home and os.path.isdir(home), "mvmd is in no pids cgroup: %s" % home)
    cg = os.path.join(home, env.daemon.cgroup_parent + "-mvmd")
    os.mkdir(cg)
    try:
        write_file(os.path.join(cg, "cgroup.procs"), str(pid))
        # its threads (loop, spawner, cgroup reaper) fill it: no clone fits
        write_file(os.path.join(cg, "pids.max"), str(len(os.listdir("/proc/%d/task" % pid))))
        os.kill(old_pid, signal.SIGKILL)
        wait_for(lambda: "retrying in" in env.daemon.log(), 30,
                 "a restart whose clone failed short of tasks, to be retried")
        vm = env.ctl.vm("hydra")
    finally:
        write_file(os.path.join(cg, "pids.max"), "max")
        write_file(os.path.join(home, "cgroup.procs"), str(pid))
        wait_for(lambda: not os.path.isdir(cg) or (os.rmdir(cg) or True), 10,
                 "the test's pids cgroup to be removed")
    line = [x for x in env.daemon.log().splitlines() if "retrying in" in x][0]
    print(line)
    check(vm["state"] == "crashed" and "clone" in vm["exit_reason"] and
          "retrying in" in vm["exit_reason"], "hydra while short of tasks: %s (%s)"
          % (vm["state"], vm["exit_reason"]))

    def back():
        vm = env.ctl.vm("hydra")
        return vm["state"] == "running" and vm["pid"] != old_pid
    wait_for(back, 30, "the VM to run again after tasks came back")
    env.ctl.ok("rm", "-f", "hydra")


CASES = {
    "hostile-proc-paths": (case_proc_paths, False, {}),
    "hostile-tap-owner": (case_tap_owner, True, {}),
    "hostile-paused-daemon": (case_paused_daemon, True, {}),
    "hostile-private-state": (case_private_state, False, {"state_mode": 0o777}),
    "hostile-reused-name": (case_reused_name, True, {}),
    "hostile-terminal-escapes": (case_terminal_escapes, False, {}),
    "hostile-wait-crash": (case_wait_crash, True, {}),
    "hostile-connection-flood": (case_connection_flood, False, {"config": [
        "client_max_per_uid = 50", "client_max = 80", "fd_reserve = 64"]}),
    "hostile-slow-clients": (case_slow_clients, False, {"config": [
        "client_line_timeout = 2"]}),
    # vmm_overhead: room for a sanitizer build's worker under the flood
    "hostile-console-flood": (case_console_flood, True, {"config": [
        "health_interval = 0.5", "health_timeout = 3", "vmm_overhead = 512M"]}),
    "hostile-fd-exhaustion-restart": (case_fd_exhaustion_restart, True, {}),
    "hostile-pids-exhaustion-restart": (case_pids_exhaustion_restart, True, {}),
}


def skip_reason(name):
    if os.geteuid() != 0:
        return "not root: these cases act as other local users"
    if CASES[name][1] and not kvm_usable():
        return "/dev/kvm is missing or not accessible; this case boots a guest"
    if CASES[name][1] and not os.environ.get("MVM_BZIMAGE"):
        return "the test guest is not built"
    if name == "hostile-pids-exhaustion-restart" and not os.path.isdir(PIDS_V1):
        return "no cgroup v1 pids hierarchy at %s to bound mvmd's tasks in" % PIDS_V1
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
