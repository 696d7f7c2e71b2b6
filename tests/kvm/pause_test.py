#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Pause and resume of mvm-vmm over the worker link, with the test guest:
a paused guest makes no progress (its flood line counter stays put), a
resumed one goes on from where it stood; every vCPU parks (SMP: the APs
wait for INIT-SIPI inside KVM_RUN); the hello of a re-adopting daemon says
paused; shutdown of a paused VM resumes it first; the sandbox's seccomp
filter allows the clock ioctls.

Usage: pause_test.py CASE | --list
Environment as kvmtest.py (MVM_VMM, MVM_BZIMAGE, MVM_ELF).
Exit status: 0 pass, 1 fail, 77 skip (no /dev/kvm; sandbox cases: no root).
"""

import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvmtest  # noqa: E402
import virtio_test  # noqa: E402
from contention_test import Link, Vmm  # noqa: E402
from kvmtest import check  # noqa: E402

LINE = re.compile(rb"MVMTEST flood line=(\d+) ")


def last_line(vmm):
    with vmm.out.cond:
        found = LINE.findall(bytes(vmm.out.buf[-4096:]))
    return int(found[-1]) if found else -1


def settled_line(vmm, settle=0.5):
    """The counter once the output already on its way has been read."""
    time.sleep(settle)
    return last_line(vmm)


def moves(vmm, past, timeout=60):
    deadline = time.monotonic() + timeout
    while last_line(vmm) <= past + 10:
        check(time.monotonic() < deadline, "the guest did not go on past line %d" % past)
        time.sleep(0.05)


def case_pause(tmp, fmt="bz", vcpus=1):
    link = Link()
    vmm = Vmm(virtio_test.boot_args(fmt, "flood", vcpus=vcpus), link)
    try:
        vmm.expect("MVMTEST flood line=100 ")
        for rnd in range(3):
            r = link.request({"msg": "pause"})
            check("error" not in r, "pause refused: %r" % r)
            held = settled_line(vmm)
            time.sleep(1.0)
            now = last_line(vmm)
            print("round %d: paused at line %d, %d after 1 s" % (rnd, held, now), flush=True)
            check(now == held, "paused guest went on from line %d to %d" % (held, now))
            # pausing twice is harmless; the answer is the same
            check("error" not in link.request({"msg": "pause"}), "second pause refused")
            r = link.request({"msg": "resume"})
            check("error" not in r, "resume refused: %r" % r)
            moves(vmm, now)
        check("error" not in link.request({"msg": "resume"}), "resume of a running VM")
        # a daemon that re-adopts the worker hears it is paused
        link.request({"msg": "pause"})
        check(vmm.proc.poll() is None, "the worker died while paused")
        # shutdown resumes it first (the flood guest ignores the key; the
        # counter moving shows the resume)
        held = settled_line(vmm)
        link.ours.sendall(b'{"msg": "shutdown"}\n')
        moves(vmm, held)
    finally:
        vmm.kill()
        link.close()
    err = vmm.err.text()
    check("mvm-vmm: paused" in err and "mvm-vmm: resumed" in err, "vmm log: %r" % err)


def case_adopt_hello(tmp):
    """The adoption socket's hello says whether the VM is paused."""
    link = Link()
    sock = os.path.join(tmp, "w.sock")
    vmm = Vmm(kvmtest.boot_args("bz", "flood") + ["--adopt-socket", sock], link)
    try:
        vmm.expect("MVMTEST flood line=10 ")

        def hello():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(sock)
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                check(chunk, "no hello")
                data += chunk
            return s, json.loads(data.split(b"\n", 1)[0])
        s, h = hello()
        check(h["msg"] == "hello" and h["paused"] is False, "hello of a running VM: %s" % h)
        # the new link is ours: pause over it
        s.sendall(b'{"msg": "pause", "seq": 7}\n')
        data = b""
        while b'"result"' not in data:
            chunk = s.recv(65536)
            check(chunk, "link closed before the result")
            data += chunk
        s.close()
        s, h = hello()
        check(h["paused"] is True, "hello of a paused VM: %s" % h)
        s.close()
    finally:
        vmm.kill()
        link.close()


CASES = {
    "pause": case_pause,
    "pause-elf": lambda tmp: case_pause(tmp, "elf"),
    "pause-smp": lambda tmp: case_pause(tmp, vcpus=4),
    "pause-sandbox": virtio_test.sandboxed(case_pause),
    "pause-adopt-hello": case_adopt_hello,
}


def main(argv):
    return kvmtest.run_main(argv, CASES, "mvm-pause-", setup=kvmtest.need_files)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
