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
from harness import case_table, cases_main, check, wait_for  # noqa: E402
from run import Env  # noqa: E402

CASES, case = case_table()


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


@case()
def create_file(env):
    """create -f takes what show -o json prints; flags override it;
    unknown keys are refused by name; -f - reads stdin."""
    ctl = env.ctl
    disk = os.path.join(env.root, "d.img")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    ctl.ok("create", "a1", "--kernel", env.kernel, "--no-start", "--vcpus", "2",
           "--mem", "96", "--cmdline", "console=ttyS0 x=1", "--disk", disk + ",ro,iops=50",
           "--label", "tier=web", "--label", "team=a", "--restart", "on-failure:3",
           "--autostart")
    shown = ctl.ok("-o", "json", "show", "a1")
    spec = os.path.join(env.root, "a1.json")
    with open(spec, "w") as f:
        f.write(shown)
    ctl.ok("rm", "a1")
    ctl.ok("create", "-f", spec, "--no-start")
    keys = ("kernel", "initrd", "cmdline", "vcpus", "mem_mib", "disks", "nics", "labels",
            "restart", "restart_max", "autostart", "pools", "balloon_mib")
    old, new = json.loads(shown)["vm"], ctl.vm("a1")
    for k in keys:
        check(old[k] == new[k], "%s: %r from the spec, %r shown" % (k, new[k], old[k]))

    # a NAME and flags override the spec; a --label merges over its labels
    out = ctl.json("create", "-f", "-", "a2", "--mem", "128", "--label", "tier=db",
                   "--no-start", input=json.dumps(old).encode())
    vm = out["vm"]
    check(vm["name"] == "a2" and vm["mem_mib"] == 128 and vm["vcpus"] == 2, vm)
    check(vm["labels"] == {"tier": "db", "team": "a"}, vm["labels"])

    # relative paths are the file's directory's
    sub = os.path.join(env.root, "specs")
    os.mkdir(sub)
    with open(os.path.join(sub, "k"), "w") as f:
        f.write("kernel\n")
    rel = os.path.join(sub, "rel.json")
    with open(rel, "w") as f:
        json.dump({"name": "a3", "kernel": "k", "mem_mib": 64}, f)
    ctl.ok("create", "-f", rel, "--no-start")
    check(ctl.vm("a3")["kernel"] == os.path.join(sub, "k"), ctl.vm("a3"))

    # refusals: exit 2, the key named, nothing created
    bad = os.path.join(env.root, "bad.json")
    with open(bad, "w") as f:
        json.dump(dict(old, name="a4", colour="blue"), f)
    err = ctl.fails(2, "create", "-f", bad)
    check("unknown key 'colour'" in err and bad in err, err)
    with open(bad, "w") as f:
        json.dump({"vm": dict(old, name="a4"), "extra": 1}, f)
    err = ctl.fails(2, "create", "-f", bad)
    check("unknown key 'extra'" in err, err)
    with open(bad, "w") as f:
        f.write("{not json")
    err = ctl.fails(2, "create", "-f", bad)
    check("line 1" in err and "show NAME -o json" in err, err)
    err = ctl.fails(2, "create", "-f", "-", input=b'{"kernel": "/k"}')
    check('no "name"' in err, err)
    # a bad value is mvmd's to refuse, naming the field
    err = ctl.fails(1, "create", "-f", "-", input=json.dumps(dict(old, name="a5", vcpus="two")).encode())
    check("vcpus" in err, err)
    names = [v["name"] for v in ctl.json("list")["vms"]]
    check(names == ["a1", "a2", "a3"], names)
    ctl.ok("rm", "a1", "a2", "a3")


@case(kvm=True)
def vm_metrics(env):
    """Per-VM series: in mvmctl metrics (the caller's VMs), on the HTTP
    endpoint only with metrics_vms = on; promtool accepts them."""
    from metrics import parse, promtool, scrape
    ctl = env.ctl
    disk = os.path.join(env.root, "d.img")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    env.create_guest("v1", "spin", "--disk", disk, "--balloon", "0")
    sock = os.path.join(env.daemon.run, "metrics.sock")
    check(not any(k.startswith("mvmd_vm_state") for k in scrape(sock)),
          "per-VM series on the 0666 socket without metrics_vms")

    def cpu(text):
        return parse(text).get('mvmd_vm_cpu_seconds_total{vm="v1"}', 0)
    # the first scrape starts a round; a later one shows it
    wait_for(lambda: cpu(ctl.ok("metrics")) > 0, 30, "v1's CPU seconds in mvmctl metrics",
             interval=0.5)
    text = ctl.ok("metrics")
    promtool(text)
    v = parse(text)
    check(v['mvmd_vm_state{vm="v1",state="running"}'] == 1, v)
    check(v['mvmd_vm_guest_memory_bytes{vm="v1"}'] == 64 << 20, v)
    check('mvmd_vm_disk_read_bytes_total{vm="v1",disk="0"}' in v, v)
    check('mvmd_vm_balloon_bytes{vm="v1"}' in v, v)
    first = cpu(text)
    wait_for(lambda: cpu(ctl.ok("metrics")) > first, 30, "v1's CPU seconds to grow",
             interval=1)
    # a paused VM is sampled as paused
    ctl.ok("pause", "v1")
    wait_for(lambda: 'mvmd_vm_state{vm="v1",state="paused"}' in parse(ctl.ok("metrics")),
             30, "v1 sampled paused", interval=1)
    ctl.ok("resume", "v1")

    env.daemon.stop()
    env.daemon.write_config(["metrics_vms = on"])
    env.daemon.start()
    wait_for(lambda: 'mvmd_vm_state{vm="v1",state="running"}' in scrape(sock), 30,
             "v1 on the HTTP endpoint with metrics_vms = on", interval=0.5)
    ctl.ok("rm", "-f", "v1")


def journal_fields(dgram):
    """One native-protocol datagram: KEY=VALUE lines, or KEY, newline,
    64-bit little-endian length, the value, newline."""
    fields, i = {}, 0
    while i < len(dgram):
        nl = dgram.index(b"\n", i)
        line = dgram[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            k = line
            n = int.from_bytes(dgram[nl + 1:nl + 9], "little")
            v = dgram[nl + 9:nl + 9 + n]
            check(dgram[nl + 9 + n:nl + 10 + n] == b"\n", "binary field %r unterminated" % k)
            i = nl + 10 + n
        fields[k.decode()] = v.decode()
    return fields


@case()
def journal(env):
    """Under journald (JOURNAL_STREAM names stderr) lines go as native
    datagrams with PRIORITY, SYSLOG_IDENTIFIER and MVM_VM=name; without
    the socket they fall back to stderr with <N> prefixes."""
    import socket
    ctl = env.ctl
    path = os.path.join(env.root, "journal.sock")
    js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    js.bind(path)
    js.settimeout(10)
    env.daemon.stop()
    open(env.daemon.logpath, "ab").close()
    st = os.stat(env.daemon.logpath)
    os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
    os.environ["MVMD_JOURNAL_SOCKET"] = path
    try:
        env.daemon.start()
        # not a kernel: the worker ends at once, and mvmd logs why
        ctl.run("create", "j1", "--kernel", env.kernel, "--mem", "64")
        ctl.wait_state("j1", "crashed")
        got = []

        def vm_line():
            got.append(journal_fields(js.recv(65536)))
            return got[-1].get("MVM_VM") == "j1"
        wait_for(vm_line, 20, "a datagram with MVM_VM=j1", interval=0)
        f = got[-1]
        check(f["SYSLOG_IDENTIFIER"] == "mvmd" and f["PRIORITY"] in "34567", f)
        check(f["MESSAGE"].startswith("VM j1: "), f)
        check(all("PRIORITY" in g and "MESSAGE" in g for g in got), got)
        check("VM j1: " not in env.daemon.log(), "a journal line also went to stderr")
        # journald gone: stderr again, with priorities
        js.close()
        os.unlink(path)
        ctl.ok("rm", "j1")
        ctl.run("create", "j2", "--kernel", env.kernel, "--mem", "64")
        ctl.wait_state("j2", "crashed")
        wait_for(lambda: "mvmd: info: VM j2: " in env.daemon.log(), 10, "the stderr fallback")
        check("<6>mvmd: info: VM j2: " in env.daemon.log(), env.daemon.log()[-2000:])
        ctl.ok("rm", "j2")
    finally:
        del os.environ["JOURNAL_STREAM"]
        del os.environ["MVMD_JOURNAL_SOCKET"]


def main():
    return cases_main("operator.py", CASES, Env)


if __name__ == "__main__":
    sys.exit(main())
