#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Time vm.list round trips from a process of its own.

Usage: bench/listprobe.py SOCKET MVMD_PID [PERIOD_S]

Sends one vm.list every PERIOD_S (default 0.05) on one connection and
times it from the request's send to the reply's last byte (checked, not
parsed).  It is a single-threaded process so that nothing else of the
benchmark (its fill clients, its event reader: one GIL) delays it.  Per
call it also reads how long mvmd's loop thread (its main thread) and this
process waited on a run queue meanwhile (/proc/.../schedstat, second
field), so a slow call can be told apart: mvmd waiting for a CPU, this
process waiting for one, or mvmd busy.  While a reply is awaited, every
SAMPLE_S it also samples the loop thread's state, its system call and the
top of its kernel stack (/proc/.../stat, syscall, stack) and counts them
for the calls over SLOW_S.  Runs until SIGTERM or SIGINT, then prints one
JSON object: {"calls": [[rtt_s, mvmd_wait_s, mvmd_run_s, self_wait_s],
...], "samples": {"STATE SYSCALL FRAME": count, ...}}.
"""

import json
import os
import signal
import socket
import sys
import time


def schedstat(path):
    """(on-CPU ns, run-queue wait ns) of one task; (0, 0) if gone."""
    try:
        with open(path) as f:
            w = f.read().split()
        return int(w[0]), int(w[1])
    except (OSError, IndexError, ValueError):
        return 0, 0


SAMPLE_S = 0.002
SLOW_S = 0.010


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def sample(task):
    """The loop thread's state (R running or runnable, S sleeping, D
    uninterruptible), its system call number (or "running") and the
    innermost kernel frame worth naming."""
    st = read(task + "/stat").rsplit(")", 1)[-1].split()
    state = st[0] if st else "?"
    sc = read(task + "/syscall").split()
    frame = "-"
    for line in read(task + "/stack").splitlines():
        fn = line.split("] ", 1)[-1].split("+", 1)[0]
        if not fn.startswith(("__schedule", "schedule", "preempt_schedule")):
            frame = fn
            break
    return "%s %s %s" % (state, sc[0] if sc else "?", frame)


class Stop(Exception):
    pass


def stop(signum, frame):
    raise Stop()


def main():
    sock, pid = sys.argv[1], int(sys.argv[2])
    period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    task = "/proc/%d/task/%d" % (pid, pid)
    loop_stat = task + "/schedstat"
    samples = {}
    self_stat = "/proc/thread-self/schedstat"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.settimeout(SAMPLE_S)
    calls = []
    rid = 0
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while True:
            rid += 1
            prefix = b'{"id":%d,"ok":true' % rid
            m0, w0 = schedstat(loop_stat)
            _, sw0 = schedstat(self_stat)
            t0 = time.perf_counter()
            s.sendall(b'{"id":%d,"op":"vm.list"}\n' % rid)
            chunks = []
            seen = []
            while True:
                try:
                    c = s.recv(1 << 20)
                except socket.timeout:
                    seen.append(sample(task))
                    continue
                if not c:
                    sys.exit("listprobe: mvmd closed the connection")
                chunks.append(c)
                if c.endswith(b"\n"):
                    break
            t = time.perf_counter() - t0
            m1, w1 = schedstat(loop_stat)
            _, sw1 = schedstat(self_stat)
            if not chunks[0].startswith(prefix):
                sys.exit("listprobe: vm.list failed: %r" % chunks[0][:200])
            calls.append([t, (w1 - w0) / 1e9, (m1 - m0) / 1e9, (sw1 - sw0) / 1e9])
            if t > SLOW_S:
                for k in seen:
                    samples[k] = samples.get(k, 0) + 1
            time.sleep(period)
    except Stop:
        pass
    json.dump({"calls": calls, "samples": samples}, sys.stdout)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
