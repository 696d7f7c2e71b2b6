# SPDX-License-Identifier: MIT
"""Shared pieces of the system tests and the control benchmark.

A Daemon is a real mvmd in a fresh temporary state/run directory; Ctl runs
mvmctl against it; Raw is a protocol client on a plain Unix socket.  Every
wait here is bounded: a test that would hang fails instead.
"""

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

SKIP = 77
# the last: a test build of mvmd that exits with libuv handles open
SANITIZER_MARKS = ("Sanitizer", "runtime error:", "handles left open at exit")
NOBODY = 65534


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def env_path(var):
    """A program or file named by the environment (meson sets them)."""
    p = os.environ.get(var, "")
    if not p or not os.path.exists(p):
        raise TestFailure("%s is not set to an existing file (got %r); run "
                          "through 'meson test' or set it" % (var, p))
    return p


def kvm_usable():
    return os.access("/dev/kvm", os.R_OK | os.W_OK)


def wait_for(fn, timeout, what, interval=0.05):
    """Polls fn() until it returns something true; fails after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TestFailure("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def drop_to(uid):
    """preexec_fn that makes the child run as uid (and the same gid)."""
    def fn():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return fn


def cgroup_dirs(name):
    """Where mvmd puts a cgroup_parent of this relative name, per hierarchy:
    beneath the cgroup this process (and so its mvmd) is in."""
    out = []
    try:
        lines = open("/proc/self/cgroup").read().splitlines()
    except OSError:
        return out
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        for c in ctrls.split(",") if ctrls else [""]:
            if c.startswith("name="):
                continue
            if c:
                base = "/sys/fs/cgroup/" + c
            elif os.path.isdir("/sys/fs/cgroup/unified"):
                base = "/sys/fs/cgroup/unified"
            else:
                base = "/sys/fs/cgroup"
            d = os.path.join(base, path.lstrip("/"), name)
            if d not in out:
                out.append(d)
    return out


def remove_cgroups(name):
    """Removes the cgroup tree a test daemon left, bottom up, first killing
    workers it left running there (a test that stopped mvmd with VMs up)."""
    for top in cgroup_dirs(name):
        if not os.path.isdir(top):
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            # a killed worker frees its guest memory before it leaves the
            # cgroup; the 1 s this waited once left an empty vm-p2 behind
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and os.path.isdir(dirpath):
                try:
                    pids = open(os.path.join(dirpath, "cgroup.procs")).read().split()
                    for pid in pids:
                        os.kill(int(pid), signal.SIGKILL)
                    os.rmdir(dirpath)
                    break
                except (OSError, ValueError):
                    time.sleep(0.02)


def proc_number(path, key):
    """The first number after `key` in a /proc file of `key value` lines
    (status, io), 0 when it is absent."""
    with open(path) as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def pid_alive(pid):
    """Running: neither gone nor a zombie (dead for our purposes; its
    parent reaps it soon)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Daemon:
    """config: extra lines for mvmd's config file.  Each daemon gets its own
    cgroup_parent, so parallel tests never share per-VM cgroups."""

    def __init__(self, mvmd, vmm, root=None, extra_args=(), config=()):
        self.mvmd = mvmd
        self.vmm = vmm
        self.owns_root = root is None
        self.root = root or tempfile.mkdtemp(prefix="mvm-sys-")
        self.state = os.path.join(self.root, "state")
        self.run = os.path.join(self.root, "run")
        self.sock = os.path.join(self.run, "mvmd.sock")
        self.logpath = os.path.join(self.root, "mvmd.log")
        self.confpath = os.path.join(self.root, "mvmd.conf")
        self.cgroup_parent = "mvm-test-" + os.path.basename(self.root)
        self.extra = list(extra_args)
        self.proc = None
        self.starts = 0
        self.write_config(config)

    def write_config(self, lines):
        with open(self.confpath + ".new", "w") as f:
            f.write("cgroup_parent = %s\n" % self.cgroup_parent)
            for line in lines:
                f.write(line + "\n")
        os.rename(self.confpath + ".new", self.confpath)

    def reload(self, lines):
        """New config lines, then SIGHUP: mvmd rereads its limits."""
        self.write_config(lines)
        self.proc.send_signal(signal.SIGHUP)

    def start(self, timeout=15):
        os.makedirs(self.state, exist_ok=True)
        os.makedirs(self.run, exist_ok=True)
        log = open(self.logpath, "ab")
        log.write(b"==== mvmd start %d ====\n" % self.starts)
        log.flush()
        self.starts += 1
        self.proc = subprocess.Popen(
            [self.mvmd, "--config", self.confpath, "--state-dir", self.state,
             "--run-dir", self.run, "--socket", self.sock, "--vmm", self.vmm] + self.extra,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(self._accepting, timeout, "mvmd to accept connections on " + self.sock)

    def _accepting(self):
        if self.proc.poll() is not None:
            raise TestFailure("mvmd exited with status %d while starting; log:\n%s"
                              % (self.proc.returncode, self.log()))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.sock)
            # this mvmd's socket, not the one of an mvmd just killed that
            # a child of it, still spawning, holds for a moment
            cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            return struct.unpack("3i", cred)[0] == self.proc.pid
        except OSError:
            return False
        finally:
            s.close()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after timeout; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise TestFailure("mvmd did not exit within %ds of SIGTERM" % timeout)
        rc = self.proc.returncode
        self.proc = None
        return rc

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def check_sanitizers(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            check(mark not in text, "mvmd log reports a sanitizer error:\n" + text[-4000:])

    def cleanup(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
        finally:
            remove_cgroups(self.cgroup_parent)
            if self.owns_root:
                shutil.rmtree(self.root, ignore_errors=True)


class Ctl:
    """Runs mvmctl against a daemon's socket."""

    def __init__(self, mvmctl, sock):
        self.mvmctl = mvmctl
        self.sock = sock

    def run(self, *args, input=None, timeout=60, uid=None, env=None, cwd=None):
        e = dict(os.environ)
        e["MVM_SOCKET"] = self.sock
        if env:
            e.update(env)
        try:
            return subprocess.run(
                [self.mvmctl] + [str(a) for a in args], input=input,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                env=e, cwd=cwd, preexec_fn=drop_to(uid) if uid is not None else None)
        except subprocess.TimeoutExpired:
            raise TestFailure("mvmctl %s did not finish within %ds" % (" ".join(map(str, args)), timeout))

    def ok(self, *args, **kw):
        """Runs mvmctl and insists on exit status 0; returns stdout text."""
        p = self.run(*args, **kw)
        check(p.returncode == 0, "mvmctl %s: exit %d, stderr: %s" % (
            " ".join(map(str, args)), p.returncode, p.stderr.decode(errors="replace")))
        return p.stdout.decode(errors="replace")

    def fails(self, code, *args, **kw):
        """Runs mvmctl, insists on exit status code; returns stderr text."""
        p = self.run(*args, **kw)
        err = p.stderr.decode(errors="replace")
        check(p.returncode == code, "mvmctl %s: expected exit %d, got %d; stdout: %s stderr: %s" % (
            " ".join(map(str, args)), code, p.returncode, p.stdout.decode(errors="replace"), err))
        check(err.startswith("mvmctl: "), "error does not start with 'mvmctl: ': %r" % err)
        return err

    def json(self, *args, **kw):
        return json.loads(self.ok(*(list(args) + ["-o", "json"]), **kw))

    def vm(self, name):
        return self.json("show", name)["vm"]

    def wait_state(self, name, states, timeout=30):
        """Waits until the VM is in one of states; returns its object."""
        states = (states,) if isinstance(states, str) else tuple(states)
        last = {}

        def poll():
            last["vm"] = self.vm(name)
            return last["vm"] if last["vm"]["state"] in states else None
        try:
            return wait_for(poll, timeout, "VM %s to reach %s" % (name, "/".join(states)), 0.1)
        except TestFailure as e:
            raise TestFailure("%s; last seen: %s" % (e, json.dumps(last.get("vm"))))


class Raw:
    """A protocol client on a plain socket, for what mvmctl cannot send."""

    def __init__(self, path, timeout=15):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""
        self.next_id = 0
        self.events = []

    def close(self):
        self.s.close()

    def send(self, data):
        self.s.sendall(data)

    def read_line(self):
        # chunks are searched once each: a multi-megabyte list stays linear
        chunks = [self.buf]
        while b"\n" not in chunks[-1]:
            try:
                chunk = self.s.recv(1 << 20)
            except socket.timeout:
                raise TestFailure("no line from mvmd within %.0fs" % self.s.gettimeout())
            if not chunk:
                raise TestFailure("mvmd closed the connection; pending bytes %r"
                                  % b"".join(chunks)[:200])
            chunks.append(chunk)
        line, self.buf = b"".join(chunks).split(b"\n", 1)
        return line

    def read_msg(self):
        line = self.read_line()
        try:
            msg = json.loads(line)
        except ValueError:
            raise TestFailure("mvmd sent a line that is not JSON: %r" % line[:200])
        check(isinstance(msg, dict), "mvmd sent a non-object: %r" % line[:200])
        return msg

    def response(self):
        """The next response, setting aside events that arrive first."""
        while True:
            msg = self.read_msg()
            if "id" in msg:
                return msg
            self.events.append(msg)

    def call(self, op, args=None, rid=None):
        if rid is None:
            self.next_id += 1
            rid = self.next_id
        req = {"id": rid, "op": op}
        if args is not None:
            req["args"] = args
        self.send(json.dumps(req).encode() + b"\n")
        resp = self.response()
        check(resp.get("id") == rid, "response id %r does not match request id %r: %r"
              % (resp.get("id"), rid, resp))
        return resp

    def ok(self, op, args=None):
        resp = self.call(op, args)
        check(resp.get("ok") is True, "%s %r failed: %r" % (op, args, resp))
        return resp["result"]


def case_table():
    """A script's CASES and its @case(kvm=False) decorator: a case is named
    after its function, '_' written '-'; kvm=True marks one that boots
    guests, skipped where none can (cases_main)."""
    cases = {}

    def case(kvm=False):
        def reg(fn):
            cases[fn.__name__.replace("_", "-")] = (fn, kvm)
            return fn
        return reg
    return cases, case


def cases_main(prog, cases, make_env):
    """`prog CASE | --list` for a case_table script: each case runs through
    run_with_daemon against make_env().  Returns the exit status."""
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(cases))
        return 0
    if len(sys.argv) != 2 or sys.argv[1] not in cases:
        print("usage: %s CASE | --list; cases: %s" % (prog, ", ".join(cases)), file=sys.stderr)
        return 2
    fn, needs_kvm = cases[sys.argv[1]]
    if needs_kvm and (not kvm_usable() or not os.environ.get("MVM_BZIMAGE")):
        print("SKIP: this case boots guests: needs /dev/kvm and the test guest", file=sys.stderr)
        return SKIP
    return run_with_daemon(sys.argv[1], make_env(), fn)


def run_with_daemon(name, env, fn):
    """One case against env.daemon: start it, run fn(env), and pass only if
    mvmd is still alive, stops cleanly and its sanitizers found nothing.  A
    failure prints the tail of mvmd's log.  Returns the exit status."""
    try:
        env.daemon.start()
        fn(env)
        check(env.daemon.alive(), "mvmd exited during the test")
        env.daemon.stop()
        env.daemon.check_sanitizers()
        print("PASS", name)
        return 0
    except TestFailure as e:
        print("FAIL %s: %s" % (name, e), file=sys.stderr)
        print("---- mvmd log (tail) ----\n" + env.daemon.log()[-6000:], file=sys.stderr)
        return 1
    finally:
        env.daemon.cleanup()
