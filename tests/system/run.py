#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""System tests: a real mvmd in a temporary directory, driven only through
mvmctl and raw protocol clients (docs/protocol.md).

Usage: run.py CASE      run one case (meson registers one test per case)
       run.py --list    print the case names, one per line

Environment (meson sets it): MVMD, MVMCTL, MVM_VMM, MVM_BZIMAGE (the test
guest, tests/guest/PROTOCOL.md).  Exit status: 0 pass, 1 fail, 77 skip
(no usable /dev/kvm for a case that boots guests, or not root for the
ownership case).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (NOBODY, SKIP, Ctl, Daemon, Raw, check,  # noqa: E402
                     env_path, kvm_usable, pid_alive, run_with_daemon, wait_for)

CASES = {}


def case(kvm=False, root=False):
    def reg(fn):
        CASES[fn.__name__.replace("_", "-")] = (fn, kvm, root)
        return fn
    return reg


class Env:
    """One test's daemon, client and scratch files."""

    def __init__(self):
        self.daemon = Daemon(env_path("MVMD"), env_path("MVM_VMM"))
        self.ctl = Ctl(env_path("MVMCTL"), self.daemon.sock)
        self.root = self.daemon.root
        # --no-start VMs need a readable kernel file, not a bootable one
        self.kernel = os.path.join(self.root, "vmlinuz")
        with open(self.kernel, "wb") as f:
            f.write(b"not a kernel, never booted\n")
        os.chmod(self.kernel, 0o644)

    def guest(self):
        return env_path("MVM_BZIMAGE")

    def raw(self, timeout=15):
        return Raw(self.daemon.sock, timeout)

    def create_guest(self, name, scenario, *extra):
        """Creates and boots a test-guest VM, waiting for its first byte."""
        out = self.ctl.json("create", name, "--kernel", self.guest(),
                            "--cmdline", "console=ttyS0 mvmtest=" + scenario,
                            "--mem", "64", "--wait", *extra)
        return out["vm"]


def log_of(ctl, name):
    return ctl.ok("logs", name)


# ---- cases without KVM ------------------------------------------------------


@case()
def cli_basics(env):
    ctl = env.ctl
    out = ctl.ok("version")
    check("mvmctl" in out and "server" in out and "protocol 1" in out, "version output: %r" % out)
    v = ctl.json("version")
    check(v["client"] and v["daemon"]["version"] == 1, "version -o json: %r" % v)
    ctl.ok("host")
    check(isinstance(ctl.json("host"), dict), "host -o json is not an object")
    ctl.ok("help")

    # usage errors: exit 2, nothing sent
    ctl.fails(2, "frobnicate")
    ctl.fails(2, "create", "a")
    ctl.fails(2, "create", "a", "--kernel", env.kernel, "--mem", "lots")
    ctl.fails(2, "create", "bad/name", "--kernel", env.kernel)
    ctl.fails(2, "list", "--state", "sleepy")
    ctl.fails(2, "kill", "a", "--signal", "SIGNOPE")
    ctl.fails(2, "show")
    ctl.fails(2, "rm", "a", "--label", "k=v")

    # cannot connect: exit 3 and a message that says how to fix it
    err = ctl.fails(3, "--socket", os.path.join(env.root, "nope.sock"), "list")
    check("does not exist" in err and "--socket" in err, "connect error: %r" % err)

    # daemon errors: exit 1, the daemon's message passed through
    err = ctl.fails(1, "show", "ghost")
    check("ghost" in err and "not_found" in err, "not_found message: %r" % err)

    # relative paths become absolute; sizes and labels reach the daemon
    os.makedirs(os.path.join(env.root, "img"))
    shutil.copy(env.kernel, os.path.join(env.root, "img", "k"))
    ctl.ok("create", "web1", "--kernel", "img/k", "--no-start", "--vcpus", "2",
           "--mem", "1G", "--label", "tier=web", "--label", "env=test",
           "--restart", "on-failure:3", cwd=env.root)
    vm = ctl.vm("web1")
    check(vm["kernel"] == os.path.join(env.root, "img", "k"), "kernel path not absolute: %r" % vm["kernel"])
    check(vm["state"] == "created" and vm["vcpus"] == 2 and vm["mem_mib"] == 1024, "web1: %r" % vm)
    check(vm["labels"] == {"tier": "web", "env": "test"}, "labels: %r" % vm["labels"])
    check(vm["restart"] == "on-failure" and vm["restart_max"] == 3, "restart: %r" % vm)
    err = ctl.fails(1, "create", "web1", "--kernel", env.kernel, "--no-start")
    check("exists" in err, "duplicate create: %r" % err)
    err = ctl.fails(1, "create", "web2", "--kernel", os.path.join(env.root, "missing"), "--no-start")
    check("file_error" in err or "permission_denied" in err, "missing kernel: %r" % err)
    ctl.ok("create", "db1", "--kernel", env.kernel, "--no-start", "--label", "tier=db")

    # list: table, -q, filters, json
    table = ctl.ok("list").splitlines()
    check(table[0].split()[:2] == ["NAME", "STATE"], "list header: %r" % table[0])
    check(any(line.startswith("web1 ") and "1 GiB" in line for line in table), "list table: %r" % table)
    check(sorted(ctl.ok("list", "-q").split()) == ["db1", "web1"], "list -q")
    check(ctl.ok("list", "-q", "--label", "tier=db").split() == ["db1"], "label filter")
    check(ctl.ok("list", "-q", "--label", "tier=db", "--label", "env=test").split() == [],
          "labels must all match")
    check(sorted(ctl.ok("list", "-q", "--state", "created").split()) == ["db1", "web1"], "state filter")
    check(ctl.ok("list", "-q", "--state", "running").split() == [], "state filter running")
    names = sorted(v["name"] for v in ctl.json("list")["vms"])
    check(names == ["db1", "web1"], "list -o json: %r" % names)

    show = ctl.ok("show", "web1")
    for want in ("Name:", "web1", "State:", "created", "1 GiB", "tier=web"):
        check(want in show, "show lacks %r:\n%s" % (want, show))
    events = ctl.json("show", "web1")["events"]
    check(events and events[0]["state"] == "created", "show events: %r" % events)

    ctl.ok("rm", "web1")
    ctl.ok("rm", "db1")
    check(ctl.ok("list", "-q").split() == [], "list after rm")
    ctl.fails(1, "rm", "db1")


@case()
def cli_habits(env):
    """--help on every command, --version, other names, typo suggestions,
    several NAMEs and --label selectors, JSON errors."""
    ctl = env.ctl
    check(ctl.ok("--version").strip().startswith("mvmctl "), "mvmctl --version")
    for cmd in ("create", "run", "start", "stop", "restart", "kill", "rm", "list", "show",
                "console", "logs", "events", "host", "version", "help",
                "boot", "shutdown", "destroy", "remove", "delete", "ls"):
        for flag in ("--help", "-h"):
            out = ctl.ok(cmd, "x", flag)
            check(out.startswith("usage: mvmctl "), "%s %s: %r" % (cmd, flag, out))
    check(ctl.ok("destroy", "--help").startswith("usage: mvmctl kill "), "destroy is kill")
    check("also remove, delete" in ctl.ok("help", "rm"), "help rm names its other names")
    err = ctl.fails(2, "lsit")
    check("did you mean 'list'?" in err, "typo suggestion: %r" % err)
    err = ctl.fails(2, "stpo", "a")
    check("did you mean 'stop'?" in err, "typo suggestion: %r" % err)
    err = ctl.fails(2, "frobnicate")
    check("did you mean" not in err, "suggestion for a far-off name: %r" % err)

    for name, grp in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        ctl.ok("create", name, "--kernel", env.kernel, "--no-start", "--label", "grp=" + grp)
    check(sorted(ctl.ok("ls", "-q").split()) == ["a1", "a2", "b1"], "ls")
    # bash completion offers the VM names `list -q` prints, and commands
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                          "completion", "mvmctl.bash")
    for words, want in (("stop a", ["a1", "a2"]), ("--socket %s rm " % env.daemon.sock,
                                                   ["a1", "a2", "b1"]),
                        ("res", ["restart", "resume"]), ("pau", ["pause"])):
        line = "%s %s" % (ctl.mvmctl, words)
        r = subprocess.run(["bash", "-c", 'source "$0"; COMP_WORDS=($1); [[ $1 == *" " ]] && '
                            'COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); '
                            '_mvmctl; echo "${COMPREPLY[@]}"', script, line],
                           capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, MVM_SOCKET=env.daemon.sock if "--socket"
                                    not in words else "/nonexistent"))
        check(sorted(r.stdout.split()) == want, "completing '%s': %r %r" % (words, r.stdout, r.stderr))
    # a selector that matches nothing does nothing, successfully
    p = ctl.run("start", "--label", "grp=none")
    check(p.returncode == 0 and b"nothing to do" in p.stderr, "empty selection: %r" % (p,))
    ctl.fails(2, "stop")
    ctl.fails(2, "kill", "a1", "--label", "grp=a")
    # several names: each is tried, the first failure's status is the result
    p = ctl.run("delete", "ghost", "a1")
    check(p.returncode == 1 and b"ghost" in p.stderr and b"a1: deleted" in p.stdout,
          "rm ghost a1: %r" % (p,))
    docs = ctl.ok("remove", "--label", "grp=a", "-o", "json")
    check(json.loads(docs) == {"name": "a2", "deleted": True}, "rm --label -o json: %r" % docs)
    check(ctl.ok("list", "-q").split() == ["b1"], "rm --label removed the wrong VMs")

    # JSON errors: on stdout, with the code and the exit status
    p = ctl.run("show", "ghost", "-o", "json")
    e = json.loads(p.stdout)
    check(p.returncode == 1 and e["exit"] == 1 and e["error"]["code"] == "not_found"
          and "ghost" in e["error"]["message"], "JSON daemon error: %r" % (p,))
    p = ctl.run("-o", "json", "lsit")
    e = json.loads(p.stdout)
    check(p.returncode == 2 and e["error"]["code"] == "usage", "JSON usage error: %r" % (p,))
    p = ctl.run("--socket", os.path.join(env.root, "nope.sock"), "-o", "json", "list")
    e = json.loads(p.stdout)
    check(p.returncode == 3 and e["error"]["code"] == "connect", "JSON connect error: %r" % (p,))
    check(not ctl.run("show", "ghost").stdout, "a table-mode error wrote to stdout")
    ctl.ok("rm", "b1")


def expect_error(raw, line, code, field=None, rid=None):
    """Sends a raw line, expects an error code, then checks the connection."""
    raw.send(line)
    resp = raw.response()
    check(resp.get("ok") is False, "line %r: expected an error, got %r" % (line[:80], resp))
    err = resp.get("error", {})
    check(err.get("code") == code, "line %r: expected %s, got %r" % (line[:80], code, resp))
    check(isinstance(err.get("message"), str) and err["message"], "no message: %r" % resp)
    if field is not None:
        check(err.get("field") == field, "line %r: expected field %r, got %r" % (line[:80], field, resp))
        check(field in err["message"], "message does not name %r: %r" % (field, err["message"]))
    check(resp.get("id") == rid, "line %r: expected id %r, got %r" % (line[:80], rid, resp.get("id")))
    # the same connection still answers
    check(raw.ok("version")["version"] == 1, "connection unusable after %s" % code)


@case()
def malformed(env):
    raw = env.raw()
    check(raw.ok("hello", {"version": 1})["version"] == 1, "hello")
    expect_error(raw, b"{not json\n", "bad_json")
    expect_error(raw, b"[1,2,3]\n", "bad_json")
    expect_error(raw, b"\"just a string\"\n", "bad_json")
    expect_error(raw, b'{"id": 5, "op": "vm.list"' + b" " * 70000 + b"}\n", "too_large")
    expect_error(raw, b'{"id": 6, "op": "vm.explode"}\n', "unknown_op", rid=6)
    expect_error(raw, b'{"id": 7}\n', "bad_request", rid=7)
    expect_error(raw, b'{"id": 8, "op": "vm.show", "args": {}}\n', "bad_request", "name", rid=8)
    expect_error(raw, b'{"id": 9, "op": "vm.show", "args": {"name": 3}}\n', "bad_request", "name", rid=9)
    expect_error(raw, b'{"id": 10, "op": "vm.create", "args": {"name": "a", "kernel": "/k", '
                 b'"vcpus": "two"}}\n', "bad_request", "vcpus", rid=10)
    expect_error(raw, b'{"id": 11, "op": "vm.list", "args": {"bogus": 1}}\n', "bad_request", "bogus", rid=11)
    expect_error(raw, b'{"id": 12, "op": "vm.stop", "args": {"name": "a", "timeout_s": -4}}\n',
                 "bad_request", "timeout_s", rid=12)
    expect_error(raw, b'{"id": "s1", "op": "hello", "args": {"version": 99}}\n',
                 "unsupported_version", rid="s1")
    expect_error(raw, b'{"id": 13, "op": "vm.list", "args": []}\n', "bad_request", rid=13)
    # a too-large line split over many writes is still one error, in order
    raw.send(b'{"id": 14, "op": "vm.list", "args": {"state": "')
    for _ in range(20):
        raw.send(b"x" * 8192)
    expect_error(raw, b'"}}\n', "too_large")
    # string ids are echoed as given
    check(raw.call("version", rid="abc")["id"] == "abc", "string id")
    # several requests in one write are answered in order
    raw.send(b'{"id": 21, "op": "version"}\n{"id": 22, "op": "nope"}\n{"id": 23, "op": "vm.list"}\n')
    ids = [raw.response()["id"] for _ in range(3)]
    check(ids == [21, 22, 23], "pipelined responses out of order: %r" % ids)
    raw.close()
    # a client that vanishes mid-line does not hurt the daemon
    r2 = env.raw()
    r2.send(b'{"id": 1, "op": "vm.li')
    r2.close()
    r3 = env.raw()
    check(r3.ok("vm.list")["vms"] == [], "daemon after a half line")
    r3.close()
    check(env.daemon.alive(), "mvmd died")


@case()
def concurrent(env):
    n = 100
    barrier = threading.Barrier(n, timeout=30)
    errors = []

    def client(i):
        try:
            raw = env.raw(timeout=60)
            barrier.wait()
            check(raw.ok("hello", {"version": 1})["version"] == 1, "hello")
            raw.ok("vm.list")
            name = "c%03d" % i
            vm = raw.ok("vm.create", {"name": name, "kernel": env.kernel, "start": False})["vm"]
            check(vm["name"] == name and vm["state"] == "created", "create: %r" % vm)
            check(raw.ok("vm.show", {"name": name})["vm"]["name"] == name, "show")
            raw.ok("vm.rm", {"name": name})
            raw.close()
        except Exception as e:  # collected and reported below
            errors.append("client %d: %s" % (i, e))

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(1, 120 - (time.monotonic() - t0)))
    check(not any(t.is_alive() for t in threads), "clients still running after 120s")
    check(not errors, "%d clients failed:\n%s" % (len(errors), "\n".join(errors[:10])))
    check(env.ctl.ok("list", "-q").split() == [], "VMs left after concurrent create/rm")
    print("100 clients done in %.2fs" % (time.monotonic() - t0))


@case(root=True)
def ownership(env):
    ctl = env.ctl
    # let uid 65534 reach the socket and read its own files
    os.chmod(env.root, 0o755)
    os.chmod(env.daemon.run, 0o755)
    os.chmod(env.daemon.sock, 0o666)
    mine = os.path.join(env.root, "nobody-kernel")
    shutil.copy(env.kernel, mine)
    os.chown(mine, NOBODY, NOBODY)
    secret = os.path.join(env.root, "root-only")
    shutil.copy(env.kernel, secret)
    os.chmod(secret, 0o600)

    ctl.ok("create", "rootvm", "--kernel", env.kernel, "--no-start")
    ctl.ok("create", "nobodyvm", "--kernel", mine, "--no-start", uid=NOBODY)
    check(ctl.vm("nobodyvm")["owner_uid"] == NOBODY, "owner not stamped")
    check(ctl.vm("rootvm")["owner_uid"] == 0, "root's VM owner")
    check(ctl.ok("list", "-q", uid=NOBODY).split() == ["nobodyvm"], "nobody sees only its VM")
    check(sorted(ctl.ok("list", "-q").split()) == ["nobodyvm", "rootvm"], "root sees all")
    for args in (["show", "rootvm"], ["rm", "rootvm"], ["start", "rootvm"],
                 ["kill", "rootvm"], ["stop", "rootvm"], ["logs", "rootvm"]):
        err = ctl.fails(1, *args, uid=NOBODY)
        check("permission" in err or "not_found" in err, "%s as nobody: %r" % (args, err))
    err = ctl.fails(1, "create", "stolen", "--kernel", secret, "--no-start", uid=NOBODY)
    check("permission" in err or "file_error" in err, "unreadable kernel: %r" % err)
    err = ctl.fails(1, "create", "stolen2", "--kernel", mine, "--disk", env.kernel,
                    "--no-start", uid=NOBODY)
    check("permission" in err or "file_error" in err, "disk nobody may not write: %r" % err)
    check("rootvm" in ctl.ok("list", "-q"), "rootvm survived nobody's attempts")
    ctl.ok("rm", "nobodyvm")  # root controls every VM
    ctl.ok("rm", "rootvm")
    # a socket the user may not open: exit 3 naming the fix
    os.chmod(env.daemon.sock, 0o600)
    err = ctl.fails(3, "list", uid=NOBODY)
    check("permission denied" in err and "mvm" in err, "EACCES message: %r" % err)


def snapshot(ctl):
    """Definitions and events of every VM, for comparison across restarts."""
    out = {}
    for vm in ctl.json("list")["vms"]:
        shown = ctl.json("show", vm["name"])
        out[vm["name"]] = shown
    return out


@case()
def restart(env):
    ctl = env.ctl
    disk = os.path.join(env.root, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    ctl.ok("create", "keep1", "--kernel", env.kernel, "--no-start", "--vcpus", "3",
           "--mem", "300", "--cmdline", "console=ttyS0 quiet", "--disk", disk + ",ro",
           "--label", "a=b", "--restart", "always")
    ctl.ok("create", "keep2", "--kernel", env.kernel, "--initrd", env.kernel, "--no-start",
           "--disk", disk)
    ctl.ok("create", "gone", "--kernel", env.kernel, "--no-start")
    ctl.ok("rm", "gone")
    if kvm_usable() and os.environ.get("MVM_BZIMAGE"):
        env.create_guest("booted", "hello")
        ctl.wait_state("booted", ("stopped", "crashed"))
    before = snapshot(ctl)
    check(sorted(before) == sorted(["keep1", "keep2"] + (["booted"] if "booted" in before else [])),
          "before restart: %r" % sorted(before))
    check(before["keep1"]["vm"]["disks"] == [{"path": disk, "readonly": True}], "disks: %r"
          % before["keep1"]["vm"]["disks"])

    rc = env.daemon.stop()
    check(rc == 0, "mvmd exited with %r on SIGTERM" % rc)
    env.daemon.start()
    after = snapshot(ctl)
    check(before == after, "state differs after restart:\nbefore %s\nafter  %s"
          % (json.dumps(before, sort_keys=True), json.dumps(after, sort_keys=True)))
    ctl.fails(1, "show", "gone")
    if "booted" in after:
        vm = after["booted"]["vm"]
        check(vm["state"] == "stopped" and vm["exit_reason"] == "reset", "booted: %r" % vm)
    # the restarted daemon still takes changes
    ctl.ok("rm", "keep2")
    check(sorted(ctl.ok("list", "-q").split()) == sorted(n for n in after if n != "keep2"), "after rm")


# ---- cases that boot the test guest ------------------------------------------


@case(kvm=True)
def lifecycle(env):
    ctl = env.ctl
    vm = env.create_guest("idle1", "idle", "--label", "role=idle")
    check(vm["state"] == "running", "create --wait returned %r" % vm["state"])
    check(isinstance(vm["pid"], int) and pid_alive(vm["pid"]), "worker pid %r" % vm["pid"])
    pid = vm["pid"]
    table = ctl.ok("list")
    check(any(line.split()[:2] == ["idle1", "running"] for line in table.splitlines()), table)
    check(ctl.ok("list", "-q", "--state", "running").split() == ["idle1"], "state filter")
    wait_for(lambda: "MVMTEST idle" in log_of(ctl, "idle1"), 20, "idle1's log")
    check("MVMTEST boot" in ctl.ok("logs", "idle1", "--tail", "5"), "logs --tail")
    err = ctl.fails(1, "start", "idle1")
    check("invalid_state" in err, "start while running: %r" % err)
    err = ctl.fails(1, "rm", "idle1")
    check("invalid_state" in err, "rm while running: %r" % err)

    # graceful stop: the idle guest ignores Ctrl-Alt-Del, so the timeout kills it
    t0 = time.monotonic()
    vm = ctl.json("stop", "idle1", "--timeout", "1", timeout=30)["vm"]
    check(vm["state"] in ("stopped", "crashed"), "after stop: %r" % vm)
    check(time.monotonic() - t0 < 15, "stop took %.1fs" % (time.monotonic() - t0))
    wait_for(lambda: not pid_alive(pid), 10, "worker %d to go" % pid)

    # start again, then kill
    vm = ctl.json("start", "idle1")["vm"]
    check(vm["state"] in ("starting", "running"), "start: %r" % vm)
    vm = ctl.wait_state("idle1", "running")
    pid = vm["pid"]
    vm = ctl.json("kill", "idle1", "--signal", "KILL")["vm"]
    vm = ctl.wait_state("idle1", "crashed")
    check(vm["exit_reason"].startswith("killed"), "kill reason: %r" % vm)
    wait_for(lambda: not pid_alive(pid), 10, "worker %d to go" % pid)
    states = [e["state"] for e in ctl.json("show", "idle1")["events"]]
    for s in ("created", "running", "stopped", "crashed"):
        check(s in states or (s == "stopped" and "crashed" in states), "events lack %s: %r" % (s, states))

    # rm -f of a running VM
    vm = env.create_guest("idle2", "idle")
    pid = vm["pid"]
    ctl.ok("rm", "-f", "idle2")
    ctl.fails(1, "show", "idle2")
    wait_for(lambda: not pid_alive(pid), 10, "idle2's worker %d to go" % pid)
    ctl.ok("rm", "idle1")
    check(ctl.ok("list", "-q").split() == [], "VMs left")


@case(kvm=True)
def cli_restart(env):
    """restart: stop where running, then start; stop and kill by --label."""
    ctl = env.ctl
    pid = env.create_guest("r1", "idle", "--label", "role=r")["pid"]
    env.create_guest("r2", "idle", "--label", "role=r")
    out = ctl.ok("restart", "r1", "--timeout", "1", timeout=30)
    check(out.splitlines()[0].startswith("r1: stopped") or
          out.splitlines()[0].startswith("r1: crashed"), "restart output: %r" % out)
    vm = ctl.wait_state("r1", "running")
    check(vm["pid"] != pid, "restart kept worker %d" % pid)
    wait_for(lambda: not pid_alive(pid), 10, "r1's old worker %d to go" % pid)
    out = ctl.ok("stop", "--label", "role=r", "--timeout", "1", timeout=60)
    check(sorted(line.split(":")[0] for line in out.splitlines()) == ["r1", "r2"],
          "stop --label: %r" % out)
    # restart of a stopped VM only starts it
    vm = ctl.json("restart", "r2")["vm"]
    check(vm["state"] in ("starting", "running"), "restart of a stopped VM: %r" % vm)
    ctl.wait_state("r2", "running")
    # r1 is stopped: its refusal is the status, r2 is killed all the same
    p = ctl.run("kill", "--label", "role=r")
    check(p.returncode == 1 and b"r1" in p.stderr and b"r2:" in p.stdout, "kill --label: %r" % (p,))
    ctl.wait_state("r2", "crashed")
    ctl.ok("rm", "-f", "--label", "role=r")
    check(ctl.ok("list", "-q").split() == [], "VMs left")


@case(kvm=True)
def console_echo(env):
    ctl = env.ctl
    env.create_guest("echo1", "echo")
    wait_for(lambda: "MVMTEST echo ready" in log_of(ctl, "echo1"), 20, "echo ready")
    p = ctl.run("console", "echo1", "--idle", "5", input=b"hello-mvm-42\nquit\n", timeout=40)
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 0, "console exit %d: %s" % (p.returncode, p.stderr.decode(errors="replace")))
    check("hello-mvm-42" in out, "echo not seen on the console: %r" % out)
    vm = ctl.wait_state("echo1", ("stopped", "crashed"))
    check(vm["state"] == "stopped" and vm["exit_reason"] == "reset", "after quit: %r" % vm)
    log = log_of(ctl, "echo1")
    check("hello-mvm-42" in log and "MVMTEST echo done" in log, "log: %r" % log[-500:])
    err = ctl.fails(1, "console", "echo1", input=b"")
    check("invalid_state" in err or "not running" in err, "console of a stopped VM: %r" % err)
    ctl.ok("rm", "echo1")


@case(kvm=True)
def exit_reasons(env):
    ctl = env.ctl
    env.create_guest("hello1", "hello")
    vm = ctl.wait_state("hello1", ("stopped", "crashed"))
    check(vm["state"] == "stopped" and vm["exit_reason"] == "reset", "hello: %r" % vm)
    check("MVMTEST e820 done" in log_of(ctl, "hello1"), "hello's log")
    env.create_guest("triple1", "triple")
    vm = ctl.wait_state("triple1", ("stopped", "crashed"))
    check(vm["state"] == "crashed" and vm["exit_reason"] == "triple-fault", "triple: %r" % vm)
    events = ctl.json("show", "triple1")["events"]
    check(events[-1]["state"] == "crashed" and events[-1]["reason"] == "triple-fault", "events %r" % events)
    show = ctl.ok("show", "triple1")
    check("triple-fault" in show, "show lacks the exit reason:\n" + show)
    env.create_guest("off1", "poweroff")
    vm = ctl.wait_state("off1", ("stopped", "crashed"))
    check(vm["state"] == "stopped" and vm["exit_reason"] == "poweroff", "poweroff: %r" % vm)


def capacity_free(env, after):
    """Nothing held in host capacity (after a start that failed)."""
    r = env.raw()
    try:
        u = r.ok("host.info")["host"]["capacity"]["usage"]
    finally:
        r.close()
    check((u["vms"], u["mem_mib"], u["starting"]) == (0, 0, 0),
          "capacity not given back after %s: %r" % (after, u))


@case()
def spawn_failure(env):
    """A worker binary that cannot be executed: the start fails naming the
    path and the reason (from the child, over spawn.c's exec pipe), the row
    says why, and no child of mvmd is left behind."""
    bad = os.path.join(env.root, "mvm-vmm-not-executable")
    with open(bad, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(bad, 0o644)
    env.daemon.stop()
    env.daemon.vmm = bad
    env.daemon.start()
    err = env.ctl.fails(1, "create", "nope", "--kernel", env.kernel, "--mem", "64")
    print(err.strip())
    check(bad in err and "Permission denied" in err, "error does not say what failed: %r" % err)
    vm = env.ctl.vm("nope")
    check(vm["state"] == "crashed" and vm["exit_reason"].startswith("start failed: "),
          "after a failed spawn: %r" % vm)
    pid = env.daemon.proc.pid
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        kids = f.read().split()
    check(kids == [], "mvmd has children %s after a failed spawn" % kids)
    capacity_free(env, "a failed spawn")
    env.ctl.ok("rm", "nope")


@case()
def vm_dir_failure(env):
    """The VM's directory cannot be made (a file is in its place): the
    spawner's first step fails the start with the reason, the row says
    why, nothing is left held, and once the way is clear it starts."""
    vms = os.path.join(env.daemon.state, "vms")
    os.makedirs(vms, exist_ok=True)
    block = os.path.join(vms, "nodir")
    with open(block, "w") as f:
        f.write("in the way\n")
    err = env.ctl.fails(1, "create", "nodir", "--kernel", env.kernel, "--mem", "64")
    print(err.strip())
    check("VM directory" in err and "Not a directory" in err,
          "error does not say what failed: %r" % err)
    vm = env.ctl.vm("nodir")
    check(vm["state"] == "crashed" and "VM directory" in vm["exit_reason"],
          "after a failed start: %r" % vm)
    capacity_free(env, "a failed start")
    os.unlink(block)
    env.ctl.ok("start", "nodir")
    check(os.path.isdir(block), "no VM directory after the way was cleared: %r"
          % env.ctl.vm("nodir"))
    env.ctl.ok("rm", "-f", "nodir")


@case(kvm=True)
def events(env):
    ctl = env.ctl
    ctl.ok("create", "ev1", "--kernel", env.guest(), "--cmdline",
           "console=ttyS0 mvmtest=hello", "--no-start")
    raw = env.raw()
    raw.ok("events.subscribe", {"vm": "ev1"})
    proc = subprocess.Popen([ctl.mvmctl, "events", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, MVM_SOCKET=ctl.sock))
    lines = []

    def read_lines():
        for line in proc.stdout:
            lines.append(json.loads(line))
    threading.Thread(target=read_lines, daemon=True).start()

    # mvmctl has subscribed once it prints an event: poke until it does
    def poke():
        ctl.ok("create", "poke", "--kernel", env.kernel, "--no-start")
        ctl.ok("rm", "poke")
        return lines
    try:
        wait_for(poke, 15, "mvmctl events to print its first event", 0.2)
        ctl.ok("start", "ev1")
        ctl.wait_state("ev1", ("stopped", "crashed"))
        seen = wait_for(lambda: [e for e in lines if e["vm"] == "ev1"] if any(
            e["vm"] == "ev1" and e["state"] == "stopped" for e in lines) else None,
            15, "the stopped event on mvmctl events")
        states = [e["state"] for e in seen]
        check("running" in states and states[-1] == "stopped", "mvmctl events: %r" % seen)
        check(seen[-1]["reason"] == "reset", "stopped reason: %r" % seen[-1])
        check(any(e["vm"] == "poke" and e["state"] == "deleted" for e in lines),
              "unfiltered stream lacks the deleted event: %r" % lines)
        # the filtered raw subscriber saw ev1 only, not the pokes
        got = []
        while not got or got[-1].get("state") != "stopped":
            got.append(raw.read_msg())
        check(all(e.get("event") == "vm" and e.get("vm") == "ev1" for e in got),
              "filtered subscription leaked: %r" % got)
        check("running" in [e["state"] for e in got], "raw subscriber saw %r" % got)
        raw.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(5)


# ---- rate limits, balloon, vm.update, vm.stats (issue 14) --------------------


def disk_stats(ctl, name):
    st = ctl.json("stats", name)["vms"]
    check(len(st) == 1 and st[0]["name"] == name, "stats of %s: %r" % (name, st))
    return st[0]


@case()
def update_refusals(env):
    """vm.update and vm.stats refuse what they cannot do, before any worker
    is asked: bad values, indexes, a balloon too large or absent, a VM not
    running; another user sees no one else's stats."""
    ctl = env.ctl
    img = os.path.join(env.root, "d.img")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    for bad in ("bps=0", "iops=-1", "bps=2T", "bps_burst=4K", "pps=5"):
        err = ctl.fails(2 if bad != "bps_burst=4K" else 1, "create", "bad", "--kernel",
                        env.kernel, "--no-start", "--disk", img + "," + bad)
        check("disk" in err, "--disk %s: %r" % (bad, err))
    err = ctl.fails(1, "create", "big", "--kernel", env.kernel, "--no-start", "--mem", "64",
                    "--balloon", "64")
    check("not below the guest's 64 MiB" in err, "balloon = mem: %r" % err)
    ctl.ok("create", "b1", "--kernel", env.kernel, "--no-start", "--mem", "128",
           "--disk", img + ",bps=1M,iops=100,iops_burst=10", "--balloon", "16")
    vm = ctl.vm("b1")
    check(vm["balloon_mib"] == 16, "balloon_mib %r" % vm.get("balloon_mib"))
    check(vm["disks"][0]["bps"] == 1 << 20 and vm["disks"][0]["iops"] == 100 and
          vm["disks"][0]["iops_burst"] == 10, "disk limits %r" % vm["disks"])
    # NICs need a real TAP even unstarted: their limits are in test-proto
    err = ctl.fails(2, "create", "n1", "--kernel", env.kernel, "--no-start",
                    "--net", "tap=t0,pps=0")
    check("--net wants" in err, "--net pps=0: %r" % err)
    ctl.ok("create", "plain", "--kernel", env.kernel, "--no-start")
    check(ctl.vm("plain")["balloon_mib"] is None, "a balloon nobody asked for")
    err = ctl.fails(1, "update", "b1", "--disk", "3:bps=1M")
    check("has 1 disks; index 3" in err, "disk index: %r" % err)
    err = ctl.fails(1, "update", "b1", "--balloon", "128")
    check("not below VM 'b1''s 128 MiB" in err, "balloon too big: %r" % err)
    err = ctl.fails(1, "update", "b1", "--disk", "0:bps=none,bps_burst=4K")
    check("burst without its rate" in err, "burst alone: %r" % err)
    err = ctl.fails(1, "update", "plain", "--balloon", "8")
    check("has no balloon device" in err, "no balloon: %r" % err)
    err = ctl.fails(1, "update", "b1", "--balloon", "8")
    check("invalid_state" in err and "start it first" in err, "not running: %r" % err)
    err = ctl.fails(2, "update", "b1", "--disk", "0:bps=0")
    check("--disk wants" in err, "client-side 0: %r" % err)
    err = ctl.fails(2, "update", "b1")
    check("nothing to change" in err, "empty update: %r" % err)
    err = ctl.fails(1, "stats", "b1")
    check("only a running VM has stats" in err, "stats of a stopped VM: %r" % err)
    raw = env.raw()
    r = raw.call("vm.update", {"name": "b1", "disks": [{"index": 0, "bps": 0}]})
    check(r["error"]["code"] == "bad_request" and r["error"]["field"] == "disks", repr(r))
    r = raw.call("vm.update", {"name": "b1", "balloon_mib": -1})
    check(r["error"]["code"] == "bad_request", repr(r))
    r = raw.call("vm.stats")
    check(r["ok"] and r["result"]["vms"] == [], "nothing runs: %r" % r)
    raw.close()


@case()
def pressure_refusal(env):
    """Admission refuses a start while MemAvailable is below
    admit_mem_available_mib (here: more than any host has), as unavailable
    (exit 75) naming the measure and its value; --no-start is no start;
    SIGHUP with the key off lets it through."""
    ctl = env.ctl
    env.daemon.reload(["admit_mem_available_mib = 1000000000"])
    wait_for(lambda: "capacity limits reloaded" in env.daemon.log(), 5, "mvmd to reload")
    err = ctl.fails(75, "create", "p1", "--kernel", env.kernel)
    check("MemAvailable is" in err and "below admit_mem_available_mib 1000000000" in err and
          "unavailable" in err, "refusal: %r" % err)
    check("p1" not in ctl.ok("list", "-q").split(), "a refused create stored a VM")
    ctl.ok("create", "p2", "--kernel", env.kernel, "--no-start")
    err = ctl.fails(75, "start", "p2")
    check("MemAvailable" in err, "start under pressure: %r" % err)
    env.daemon.reload([])
    wait_for(lambda: env.daemon.log().count("capacity limits reloaded") == 2, 5,
             "mvmd to reload")
    ctl.ok("start", "p2")


@case(kvm=True)
def limits_stats(env):
    """A VM created with a slow disk limit and a balloon; vm.update
    raises the limit and sets the balloon while it runs; vm.stats shows the
    guest's blkbench moving the counters and the limits in force, and the
    changes are kept for the next start."""
    ctl = env.ctl
    mib = 16
    img = os.path.join(env.root, "bench.img")
    with open(img, "wb") as f:
        f.truncate((mib + 1) << 20)
    vm = ctl.json("create", "lim", "--kernel", env.guest(), "--cmdline",
                  "console=ttyS0 mvmtest=blkbench:%d,64" % mib, "--mem", "128",
                  "--disk", img + ",bps=128K", "--balloon", "0", "--wait")["vm"]
    check(vm["state"] == "running", "lim is %r" % vm["state"])
    s0 = disk_stats(ctl, "lim")
    # 128 KiB/s: a 64 KiB request each half second, within the guest's 2 s
    check(s0["disks"][0]["limits"]["bps"] == 128 << 10, "create's limit in force: %r" % s0["disks"])
    check(s0["balloon"] is not None and s0["balloon"]["target_bytes"] == 0,
          "balloon %r" % s0["balloon"])
    # while it is slow: the table and the JSON of every visible VM
    table = ctl.ok("stats")
    check(len(table.splitlines()) == 2 and table.splitlines()[1].split()[0] == "lim" and
          "CPU %" in table, "%s; log %s" % (table, log_of(ctl, "lim")[-1500:]))
    js = ctl.json("stats")["vms"]
    check(len(js) == 1 and js[0]["cpu_percent"] is not None, "stats -o json: %r; log %s" % (js, log_of(ctl, "lim")[-1500:]))
    err = ctl.fails(1, "update", "lim", "--disk", "0:bps=none,bps_burst=4K")
    check("burst without its rate" in err, "burst alone: %r" % err)
    out = ctl.ok("update", "lim", "--disk", "0:bps=8M", "--balloon", "32")
    check("lim: updated" in out, out)
    s1 = disk_stats(ctl, "lim")
    check(s1["disks"][0]["limits"]["bps"] == 8 << 20, "new limit in force: %r" % s1["disks"])
    check(s1["balloon"]["target_bytes"] == 32 << 20, "balloon target %r" % s1["balloon"])
    # the guest powers off soon after its writes end: keep the sample that
    # saw them, a second read may find the VM already stopping
    def written():
        s = disk_stats(ctl, "lim")
        return s if s["disks"][0]["write_bytes"] >= mib << 20 else None
    s2 = wait_for(written, 120, "the guest's blkbench writes", interval=0.2)
    d = s2["disks"][0]
    check(d["write_bytes"] > s1["disks"][0]["write_bytes"],
          "write bytes did not move: %r -> %r" % (s1["disks"][0], d))
    check(d["write_ops"] >= mib * 16 and d["throttled_ns"] > 0, "write ops, throttled %r" % d)
    # from the cgroup or, where it does not count CPU, from /proc
    check(s2["cpu_ns"] > 0 and s2["cpu_ns"] >= s1["cpu_ns"], "cpu_ns %r" % s2["cpu_ns"])
    if s2["mem_bytes"] is not None:
        check(s2["mem_bytes"] > 0, "mem_bytes %r" % s2["mem_bytes"])
    ctl.wait_state("lim", ("stopped", "crashed"), timeout=60)
    vm = ctl.vm("lim")
    check(vm["disks"][0]["bps"] == 8 << 20 and vm["balloon_mib"] == 32,
          "update not kept for the next start: %r %r" % (vm["disks"], vm["balloon_mib"]))


@case(kvm=True, root=True)
def nic_limits_stats(env):
    """A NIC frame limit set at create, raised at run time through mvmd;
    vm.stats shows the guest's flood moving the counters under it."""
    ctl = env.ctl
    tap = "mvms%d" % (os.getpid() % 100000)
    subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"], check=True)
    try:
        subprocess.run(["ip", "link", "set", tap, "up"], check=True)
        ctl.ok("create", "fl", "--kernel", env.guest(), "--cmdline",
               "console=ttyS0 mvmtest=netflood:400,1000", "--mem", "64",
               "--net", "tap=%s,pps=10" % tap, "--wait")
        s0 = disk_stats(ctl, "fl")
        check(s0["nics"][0]["limits"]["pps"] == 10 and s0["disks"] == [] and
              s0["balloon"] is None, "create's NIC limit: %r" % s0)
        err = ctl.fails(1, "update", "fl", "--balloon", "8")
        check("has no balloon device" in err, "no balloon: %r" % err)
        err = ctl.fails(1, "update", "fl", "--net", "1:pps=5")
        check("has 1 nics; index 1" in err, "NIC index: %r" % err)
        ctl.ok("update", "fl", "--net", "0:pps=40,bps=1M")
        s1 = disk_stats(ctl, "fl")
        check(s1["nics"][0]["limits"]["pps"] == 40 and s1["nics"][0]["limits"]["bps"] == 1 << 20,
              "raised NIC limit: %r" % s1["nics"])
        wait_for(lambda: disk_stats(ctl, "fl")["nics"][0]["tx_frames"] >= 100, 60,
                 "the guest's flood", interval=0.2)
        n = disk_stats(ctl, "fl")["nics"][0]
        check(n["tx_bytes"] >= 100 * 1000 and n["throttled_ns"] > 0, "NIC stats %r" % n)
        ctl.ok("update", "fl", "--net", "0:bps=none")
        check(disk_stats(ctl, "fl")["nics"][0]["limits"]["bps"] == 0, "bps=none kept a limit")
        ctl.ok("kill", "fl")
        nic = ctl.vm("fl")["nics"][0]
        check(nic["pps"] == 40 and "bps" not in nic, "NIC limits not kept: %r" % nic)
    finally:
        subprocess.run(["ip", "link", "del", tap])


@case()
def events_since(env):
    """Events carry ids; events.subscribe since replays the stored ones
    after an id before the live ones, filtered like them."""
    ctl = env.ctl
    live = env.raw()
    live.ok("events.subscribe", {})
    for n in ("s1", "s2"):
        ctl.ok("create", n, "--kernel", env.kernel, "--no-start")
    ctl.ok("rm", "s1")
    seen = [live.read_msg() for _ in range(3)]
    check([(e["vm"], e["state"]) for e in seen] ==
          [("s1", "created"), ("s2", "created"), ("s1", "deleted")], "live: %r" % seen)
    ids = [e["event_id"] for e in seen]
    check(all(isinstance(i, int) for i in ids) and ids == sorted(set(ids)), "ids %r" % ids)
    live.close()

    # everything after the first: replayed in order, then a live one
    raw = env.raw()
    raw.ok("events.subscribe", {"since": ids[0]})
    got = [raw.read_msg() for _ in range(2)]
    check([(e["event_id"], e["vm"], e["state"]) for e in got] ==
          [(ids[1], "s2", "created"), (ids[2], "s1", "deleted")], "replay: %r" % got)
    ctl.ok("rm", "s2")
    e = raw.read_msg()
    check(e["vm"] == "s2" and e["state"] == "deleted" and e["event_id"] > ids[2], "live: %r" % e)
    last = e["event_id"]
    raw.close()
    # since 0: every stored event
    raw = env.raw()
    raw.ok("events.subscribe", {"since": 0})
    got = [raw.read_msg() for _ in range(4)]
    check([x["event_id"] for x in got] == ids + [last], "since 0: %r" % got)
    raw.close()

    # mvmctl events --since ID -o json prints the replay, ids included
    proc = subprocess.Popen([ctl.mvmctl, "events", "--since", str(ids[1]), "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, MVM_SOCKET=ctl.sock))
    try:
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        check([(x["event_id"], x["vm"], x["state"]) for x in lines] ==
              [(ids[2], "s1", "deleted"), (last, "s2", "deleted")], "mvmctl: %r" % lines)
    finally:
        proc.kill()
        proc.wait(5)
    err = ctl.fails(2, "events", "--since", "-1")
    check("--since" in err or "-1" in err, err)


@case()
def events_gone(env):
    """mvmctl events exits 3, saying so, when mvmd goes away."""
    ctl = env.ctl
    proc = subprocess.Popen([ctl.mvmctl, "events", "-o", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, MVM_SOCKET=ctl.sock))
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()

    def poke():
        ctl.ok("create", "poke", "--kernel", env.kernel, "--no-start")
        ctl.ok("rm", "poke")
        return lines
    try:
        wait_for(poke, 15, "mvmctl events to print its first event", 0.2)
        env.daemon.stop()
        rc = proc.wait(10)
        err = proc.stderr.read().decode()
        check(rc == 3, "mvmctl events exited %d when mvmd stopped: %r" % (rc, err))
        check("mvmd closed the event stream" in err, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    env.daemon.start()


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: run.py CASE | --list; cases: %s" % ", ".join(CASES), file=sys.stderr)
        return 2
    fn, needs_kvm, needs_root = CASES[sys.argv[1]]
    if needs_kvm and not kvm_usable():
        print("SKIP: /dev/kvm is missing or not accessible; this case boots guests", file=sys.stderr)
        return SKIP
    if needs_kvm and not os.environ.get("MVM_BZIMAGE"):
        print("SKIP: the test guest is not built (meson defines no guest_bzimage)", file=sys.stderr)
        return SKIP
    if needs_root and os.geteuid() != 0:
        print("SKIP: switching uid needs root", file=sys.stderr)
        return SKIP
    return run_with_daemon(sys.argv[1], Env(), fn)


if __name__ == "__main__":
    sys.exit(main())
