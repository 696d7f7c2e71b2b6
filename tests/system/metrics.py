#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mvmd's metrics and its default config file, against a real mvmd.

Usage: metrics.py CASE | --list.  Environment as run.py's.  The exposition
is checked with `promtool check metrics` where promtool is installed
(Debian's prometheus package) and always with the small parser below.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import case_table, cases_main, check, env_path, remove_cgroups, wait_for  # noqa: E402
from run import Env  # noqa: E402

CASES, case = case_table()


def http(path, request, timeout=10):
    """One raw HTTP exchange over a Unix socket (a str path) or TCP (a
    (host, port) tuple); returns (status code, headers, body)."""
    fam = socket.AF_UNIX if isinstance(path, str) else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(request)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    check(re.match(r"HTTP/1\.[01] \d{3} ", lines[0]), "status line %r" % lines[0])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def parse(text):
    """The exposition format's rules mvmd relies on: every sample's family
    has one HELP and one TYPE line before its samples; names are mvmd_*;
    counters end in _total.  Returns {"name{labels}": value}."""
    types, helps, values = {}, set(), {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            check(name not in helps, "two HELP lines for " + name)
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            check(name in helps and name not in types, "TYPE of %s out of place" % name)
            check(kind in ("gauge", "counter", "histogram"), line)
            types[name] = kind
        else:
            m = SAMPLE.match(line)
            check(m, "not a sample line: %r" % line)
            name = m.group(1)
            family = re.sub(r"_(bucket|sum|count)$", "", name)
            family = family if family in types else name
            check(family in types, "sample %s before its TYPE" % name)
            check(name.startswith("mvmd_"), "name %s" % name)
            if types[family] == "counter":
                check(name.endswith("_total"), "counter %s lacks _total" % name)
            values[name + (m.group(2) or "")] = float(m.group(3))
    return values


def promtool(text):
    tool = shutil.which("promtool")
    if not tool:
        print("note: promtool not installed; the format checked by parse() only")
        return
    p = subprocess.run([tool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    check(p.returncode == 0, "promtool check metrics: %s%s" % (
        p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")))


def scrape(where):
    code, headers, body = http(where, b"GET /metrics HTTP/1.1\r\nHost: mvmd\r\n\r\n")
    check(code == 200, "GET /metrics: %d %r" % (code, body[:200]))
    check(headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"), headers)
    check(int(headers["Content-Length"]) == len(body), "Content-Length %r, body %d bytes"
          % (headers.get("Content-Length"), len(body)))
    text = body.decode()
    promtool(text)
    return parse(text)


@case(kvm=True)
def endpoint(env):
    """Values move after a start, a refusal and a crash; the server's bounds."""
    ctl = env.ctl
    sock = os.path.join(env.daemon.run, "metrics.sock")
    v = scrape(sock)
    check(v['mvmd_vms{state="running"}'] == 0 and v["mvmd_vm_starts_total"] == 0, v)
    check(v["mvmd_capacity_memory_bytes"] > 0 and v["mvmd_used_memory_bytes"] == 0, v)
    check(v["mvmd_vm_start_seconds_count"] == 0, v)

    env.create_guest("m1", "idle")
    v = scrape(sock)
    check(v['mvmd_vms{state="running"}'] == 1 and v["mvmd_vm_starts_total"] == 1, v)
    check(v["mvmd_used_memory_bytes"] >= 64 << 20 and v["mvmd_used_vcpus"] == 1, v)
    check(v["mvmd_vm_start_seconds_count"] == 1 and v['mvmd_vm_start_seconds_bucket{le="+Inf"}'] == 1, v)
    check(v["mvmd_vm_start_seconds_sum"] > 0, v)

    # a refusal that may succeed later: max_vms reached
    ctl.ok("host", "set", "max_vms=1")
    ctl.run("create", "m2", "--kernel", env.guest(), "--mem", "64")
    v = scrape(sock)
    check(v['mvmd_start_refusals_total{reason="unavailable"}'] == 1, v)
    ctl.ok("host", "set", "max_vms=0")

    # a crash nobody asked for, by its reason's first word
    env.create_guest("t1", "triple")
    ctl.wait_state("t1", "crashed")
    v = scrape(sock)
    check(v.get('mvmd_worker_crashes_total{reason="triple-fault"}') == 1, v)
    check(v['mvmd_vms{state="crashed"}'] == 1, v)

    # mvmctl metrics: the same text over the control socket
    out = ctl.ok("metrics")
    promtool(out)
    check(parse(out)['mvmd_vms{state="running"}'] == 1, out)

    # bounds: wrong path or method, an oversized head, idle connections
    check(http(sock, b"GET /other HTTP/1.1\r\n\r\n")[0] == 404, "404")
    check(http(sock, b"POST /metrics HTTP/1.1\r\n\r\n")[0] == 405, "405")
    check(http(sock, b"hello\r\n\r\n")[0] == 400, "400")
    code = http(sock, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 8192)[0]
    check(code == 431, "oversized head: %d" % code)
    idle = []
    for _ in range(24):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock)
        idle.append(s)
    t0 = time.monotonic()
    # past 16 open, mvmd closes new ones at once; the rest by the 5 s timeout
    for s in idle:
        s.settimeout(15)
        check(s.recv(1) == b"", "an idle connection got data")
        s.close()
    took = time.monotonic() - t0
    check(took < 12, "idle connections closed after %.1fs" % took)
    v = scrape(sock)
    check(v["mvmd_metrics_connections_rejected_total"] >= 8, v)
    ctl.ok("rm", "-f", "m1")


@case()
def tcp(env):
    """metrics_listen: the same endpoint on a loopback TCP port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env.daemon.stop()
    env.daemon.write_config(["metrics_listen = %d" % port])
    env.daemon.start()
    v = scrape(("127.0.0.1", port))
    check(v['mvmd_vms{state="running"}'] == 0, v)
    check("metrics on http://127.0.0.1:%d/metrics" % port in env.daemon.log(), "log")


def mvmd(env, extra, conf_env, wait=True):
    """mvmd without --config (the default file: MVMD_CONFIG, never /etc)."""
    root = os.path.join(env.root, "d2")
    os.makedirs(root, exist_ok=True)
    sock = os.path.join(root, "mvmd.sock")
    cmd = [env_path("MVMD"), "--state-dir", os.path.join(root, "state"), "--run-dir",
           os.path.join(root, "run"), "--socket", sock, "--vmm", env_path("MVM_VMM")] + extra
    e = dict(os.environ, MVMD_CONFIG=conf_env)
    if not wait:
        return subprocess.run(cmd, env=e, capture_output=True, timeout=30)
    # its log to a file: a pipe nobody reads could fill
    log = open(os.path.join(root, "mvmd.log"), "wb+")
    p = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=log)
    p.stderr = log
    try:
        wait_for(lambda: os.path.exists(sock) or p.poll() is not None, 15, "mvmd's socket")
        if p.poll() is not None:
            log.seek(0)
            check(False, "mvmd exited %d: %s" % (p.returncode, log.read().decode()))
        return env.ctl.__class__(env.ctl.mvmctl, sock).json("host")
    finally:
        p.terminate()
        p.wait(15)
        log.close()


@case()
def config_default(env):
    """Without --config, the default file is read when it exists; errors
    name the file, the line and the key."""
    try:
        config_cases(env)
    finally:
        remove_cgroups(env.daemon.cgroup_parent + "-d2")


def config_cases(env):
    conf = os.path.join(env.root, "default.conf")
    with open(conf, "w") as f:
        f.write("cgroup_parent = %s-d2\nsandbox = off\nmax_vms = 7\n" % env.daemon.cgroup_parent)
    host = mvmd(env, [], conf)
    check(host["host"]["capacity"]["limits"]["max_vms"] == 7, "default file not read: %r" % host)
    # a missing default file is no error
    host = mvmd(env, [], os.path.join(env.root, "missing.conf"))
    check(host["host"]["capacity"]["limits"]["max_vms"] == 0, "%r" % host)
    # --config overrides the default file
    other = os.path.join(env.root, "other.conf")
    with open(other, "w") as f:
        f.write("cgroup_parent = %s-d2\nmax_vms = 3\n" % env.daemon.cgroup_parent)
    host = mvmd(env, ["--config", other], conf)
    check(host["host"]["capacity"]["limits"]["max_vms"] == 3, "--config ignored: %r" % host)
    # errors
    with open(conf, "a") as f:
        f.write("colour = blue\n")
    p = mvmd(env, [], conf, wait=False)
    err = p.stderr.decode()
    check(p.returncode == 2 and "%s line 4: unknown key 'colour'" % conf in err, err)
    p = mvmd(env, ["--config", "/nonexistent/mvmd.conf"], conf, wait=False)
    err = p.stderr.decode()
    check(p.returncode == 2 and "config /nonexistent/mvmd.conf: No such file" in err, err)


def main():
    return cases_main("metrics.py", CASES, Env)


if __name__ == "__main__":
    sys.exit(main())
