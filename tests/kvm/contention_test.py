#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Contention controls of mvm-vmm with the test guest: the balloon gives
guest memory back to the host (the worker's RSS falls), follows a target
set over the worker link and reports statistics; disk rate limits hold the
guest's blkbench to the limit, set on the command line or at run time, and
NIC limits hold a flood of frames to theirs.

Usage: contention_test.py CASE | --list
Environment as kvmtest.py (MVM_VMM, MVM_BZIMAGE, MVM_ELF).
Exit status: 0 pass, 1 fail, 77 skip (no /dev/kvm; sandbox cases: no root).
"""

import ctypes
import json
import mmap
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvmtest  # noqa: E402
import virtio_test  # noqa: E402  (boot_args with the sandbox, sandboxed())
from kvmtest import TestFailure, check  # noqa: E402

MIB = 1 << 20
PAGE = 4096


class Link:
    """mvmd's end of the worker link: JSON lines on a socketpair."""

    def __init__(self):
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.msgs = []
        self.cond = threading.Condition()
        self.seq = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            chunk = self.ours.recv(65536)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg.get("msg") == "console":
                    continue
                with self.cond:
                    self.msgs.append(msg)
                    self.cond.notify_all()

    def request(self, msg, timeout=10):
        """Sends msg with a fresh seq and returns the answer with that seq."""
        self.seq += 1
        msg = dict(msg, seq=self.seq)
        self.ours.sendall(json.dumps(msg).encode() + b"\n")
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for m in self.msgs:
                    if m.get("seq") == self.seq and m.get("msg") in ("result", "stats-reply"):
                        self.msgs.remove(m)
                        print("link: %s -> %s" % (json.dumps(msg), json.dumps(m)), flush=True)
                        return m
                left = deadline - time.monotonic()
                check(left > 0, "no answer to %r within %d s" % (msg, timeout))
                self.cond.wait(left)

    def close(self):
        self.ours.close()
        self.theirs.close()


class Vmm(kvmtest.Vmm):
    """A VMM with its serial input on a pipe and the link on fd N."""

    def __init__(self, args, link, pass_fds=()):
        fd = link.theirs.fileno()
        self.argv = [os.environ["MVM_VMM"]] + args + ["--control-fd", str(fd)]
        print("+ " + " ".join(self.argv), flush=True)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, pass_fds=(fd,) + tuple(pass_fds),
                                     start_new_session=True)
        self.out = kvmtest.Stream(self.proc.stdout)
        self.err = kvmtest.Stream(self.proc.stderr)
        self.status = None

    def key(self, k=b"g"):
        self.proc.stdin.write(k)
        self.proc.stdin.flush()

    def expect(self, needle, timeout=60):
        if not self.out.wait_for(needle.encode(), timeout):
            self.kill()
            self.report()
            raise TestFailure("no %r from the guest within %d s" % (needle, timeout))


def rss(pid):
    """Anonymous RSS in bytes of pid and its children (a sandboxed worker
    runs the VM in a child in its own PID namespace)."""
    total = 0
    pids = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        with open("/proc/%d/status" % p) as f:
            m = re.search(r"^RssAnon:\s+(\d+) kB", f.read(), re.M)
        total += int(m.group(1)) * 1024 if m else 0
    return total


def settle_rss(pid):
    time.sleep(0.3)
    return rss(pid)


def case_balloon(tmp, fmt="bz"):
    mib = 64
    link = Link()
    vmm = Vmm(virtio_test.boot_args(fmt, "balloon:%d" % mib, mem="256M",
                                    extra=["--balloon", "0"]), link)
    pid = vmm.proc.pid
    try:
        vmm.expect("MVMTEST balloon touched")
        touched = settle_rss(pid)
        vmm.key()
        vmm.expect("MVMTEST balloon reported")
        reported = settle_rss(pid)
        print("RSS touched %.1f MiB, after free page reporting %.1f MiB"
              % (touched / MIB, reported / MIB), flush=True)
        check(touched - reported >= 0.9 * mib * MIB,
              "RSS fell by %.1f MiB after the guest reported %d MiB free"
              % ((touched - reported) / MIB, mib))
        vmm.key()
        vmm.expect("MVMTEST balloon retouched")
        retouched = settle_rss(pid)
        check(retouched - reported >= 0.9 * mib * MIB, "the guest's second touch did not show")

        # inflate to 32 MiB: those pages leave the host
        r = link.request({"msg": "balloon", "target": 32 * MIB})
        check("error" not in r, "balloon target refused: %r" % r)
        vmm.expect("MVMTEST balloon actual=8192 target=8192")
        time.sleep(0.2)  # the guest writes `actual` right before the line
        inflated = settle_rss(pid)
        print("RSS retouched %.1f MiB, balloon at 32 MiB %.1f MiB"
              % (retouched / MIB, inflated / MIB), flush=True)
        check(retouched - inflated >= 0.9 * 32 * MIB,
              "RSS fell by %.1f MiB after inflating 32 MiB" % ((retouched - inflated) / MIB))
        st = link.request({"msg": "stats"})
        b = st["balloon"]
        check(b["target_pages"] == 8192 and b["actual_pages"] == 8192 and
              b["inflated_pages"] == 8192, "balloon stats %r" % b)
        check(b["max_pages"] == 256 * MIB // PAGE, "max_pages %r" % b)
        check(b["reported_bytes"] == mib * MIB, "reported_bytes %r" % b)
        check(b["guest"].get("total_memory") == mib * MIB, "guest stats %r" % b)
        first = b["updates"]
        # the first request asked the guest for a fresh set: it comes
        deadline = time.monotonic() + 10
        while True:
            b = link.request({"msg": "stats"})["balloon"]
            if b["updates"] > first:
                break
            check(time.monotonic() < deadline, "the guest never refreshed its statistics")
            time.sleep(0.1)
        check(b["guest"]["free_memory"] == (mib - 32) * MIB, "fresh guest stats %r" % b)

        # deflate to 16 MiB
        r = link.request({"msg": "balloon", "target": 16 * MIB})
        check("error" not in r, "balloon target refused: %r" % r)
        vmm.expect("MVMTEST balloon actual=4096 target=4096")
        # a target beyond the guest's RAM is refused and changes nothing
        r = link.request({"msg": "balloon", "target": 1 << 30})
        check("larger than the guest's 268435456 bytes" in r.get("error", ""),
              "oversized target not refused: %r" % r)
        time.sleep(0.2)
        b = link.request({"msg": "stats"})["balloon"]
        check(b["target_pages"] == 4096 and b["actual_pages"] == 4096 and
              b["deflated_pages"] == 4096, "after deflate: %r" % b)
        # deflate-on-OOM: the guest takes its 16 MiB back unasked and uses
        # them; the device lets it (the feature was negotiated), the target
        # stays, and the host's RSS shows the pages in use again
        before = settle_rss(pid)
        vmm.key(b"o")
        vmm.expect("MVMTEST balloon oom deflated=4096 target=4096 actual=0")
        time.sleep(0.2)
        after = settle_rss(pid)
        b = link.request({"msg": "stats"})["balloon"]
        check(b["target_pages"] == 4096 and b["actual_pages"] == 0 and
              b["deflated_pages"] == 8192, "after deflate-on-OOM: %r" % b)
        check(after - before >= 0.9 * 16 * MIB,
              "RSS grew by %.1f MiB after the guest used its 16 MiB of balloon"
              % ((after - before) / MIB))
        print("deflate-on-OOM: RSS %.1f -> %.1f MiB, actual 0 of target 16 MiB"
              % (before / MIB, after / MIB), flush=True)
        # a new target is followed again
        r = link.request({"msg": "balloon", "target": 8 * MIB})
        check("error" not in r, "balloon target refused: %r" % r)
        vmm.expect("MVMTEST balloon actual=2048 target=2048")
        check(link.request({"msg": "set-limits", "device": "disk", "index": 0,
                            "bps": 1000})["error"].startswith("the VM has no disk 0"),
              "set-limits on a missing disk was not refused")
        vmm.key(b"q")
        vmm.expect("MVMTEST balloon done actual=2048")
        vmm.wait(30)
    finally:
        vmm.kill()
        link.close()
    kvmtest.check_clean_exit(vmm, kvmtest.EXIT_OK)


# --- disk limits -------------------------------------------------------------------

RDTSC_CODE = bytes([0x0f, 0x31, 0x48, 0xc1, 0xe2, 0x20, 0x48, 0x09, 0xd0, 0xc3])


def tsc_hz():
    """The host TSC rate against CLOCK_MONOTONIC (the guest's TSC is the
    host's here: KVM does not scale it)."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(RDTSC_CODE)
    rdtsc = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    t0, c0 = time.monotonic(), rdtsc()
    time.sleep(0.3)
    t1, c1 = time.monotonic(), rdtsc()
    del rdtsc
    return (c1 - c0) / (t1 - t0)


PHASE_RE = re.compile(r"^MVMTEST blkbench (write|read) done reqs=(\d+) tsc=(\d+)", re.M)


def bench_rates(vmm, mib, hz):
    """{phase: (bytes/s, ops/s)} as the guest measured them."""
    out = {}
    for phase, reqs, tsc in PHASE_RE.findall(vmm.out.text()):
        secs = int(tsc) / hz
        out[phase] = (mib * MIB / secs, int(reqs) / secs)
    check(set(out) == {"write", "read"}, "blkbench phases missing: %r" % out)
    return out


def within(name, got, limit, lo=0.85, hi=1.03):
    """The limit holds (at most 3% over: the bucket and the last request's
    debt) and is met; a loaded host can slow the guest itself below it,
    hence the looser lower bound."""
    print("%s: %.0f/s against a limit of %d/s (%.1f%%)" % (name, got, limit, 100.0 * got / limit),
          flush=True)
    check(lo * limit <= got <= hi * limit,
          "%s: %.0f/s is not within %d%%..+%d%% of the limit %d/s"
          % (name, got, round((lo - 1) * 100), round((hi - 1) * 100), limit))


def disk(tmp, mib):
    path = os.path.join(tmp, "bench.img")
    with open(path, "wb") as f:
        f.truncate((mib + 1) * MIB)
    return path


def case_blk_bps(tmp):
    """16 MiB in 64 KiB requests at 4 MiB/s: 4 s per phase."""
    hz, mib, limit = tsc_hz(), 16, 4 * MIB
    vmm = kvmtest.run_vmm(virtio_test.boot_args("bz", "blkbench:%d,64" % mib, mem="128M", extra=[
        "--disk", disk(tmp, mib) + ",bps=4M"]), timeout=90)
    for phase, (bps, _) in bench_rates(vmm, mib, hz).items():
        within("blkbench %s bytes" % phase, bps, limit)


def case_blk_iops(tmp):
    """4 MiB in 4 KiB requests (1024 per phase) at 256 ops/s: 4 s per phase."""
    hz, mib, limit = tsc_hz(), 4, 256
    vmm = kvmtest.run_vmm(virtio_test.boot_args("bz", "blkbench:%d,4" % mib, mem="128M", extra=[
        "--disk", disk(tmp, mib) + ",iops=256"]), timeout=90)
    for phase, (_, ops) in bench_rates(vmm, mib, hz).items():
        within("blkbench %s ops" % phase, ops, limit)


def case_blk_runtime(tmp):
    """A crawling limit on the command line, raised over the link before
    the guest's first request; then the counters over the link."""
    hz, mib, limit = tsc_hz(), 16, 8 * MIB
    link = Link()
    vmm = Vmm(virtio_test.boot_args("bz", "blkbench:%d,64" % mib, mem="128M", extra=[
        "--disk", disk(tmp, mib) + ",bps=4K"]), link)
    try:
        r = link.request({"msg": "set-limits", "device": "disk", "index": 0, "bps": limit})
        check("error" not in r, "set-limits refused: %r" % r)
        r = link.request({"msg": "set-limits", "device": "disk", "index": 0, "bps_burst": 5})
        check("bps_burst without bps" in r.get("error", ""), "burst without rate: %r" % r)
        r = link.request({"msg": "set-limits", "device": "disk", "index": 0, "ops": 1 << 41})
        check("ops is above" in r.get("error", ""), "absurd limit: %r" % r)
        vmm.expect("MVMTEST blkbench write done")
        st = link.request({"msg": "stats"})
        d = st["devices"][0]
        check(d["device"] == "disk" and d["index"] == 0 and d["write_bytes"] == mib * MIB and
              d["writes"] == mib * 16 and d["limits"]["bps"] == limit, "disk stats %r" % d)
        check(d["throttled_ns"] > 0.5e9, "throttled_ns %r: the limit never held" % d)
        check("balloon" not in st, "a balloon without --balloon: %r" % st)
        vmm.wait(60)
    finally:
        vmm.kill()
        link.close()
    kvmtest.check_clean_exit(vmm, kvmtest.EXIT_OK)
    for phase, (bps, _) in bench_rates(vmm, mib, hz).items():
        within("blkbench %s bytes" % phase, bps, limit)


# --- NIC limits ---------------------------------------------------------------------

def flood(limit_opt, frames, size, link=None):
    """The guest sends frames through a socketpair backend; returns the
    (frames/s, bytes/s) the host saw, from the first frame to the last.
    With a link: first raise the limit to 50 frames/s over it, and check
    the NIC's counters there halfway (the VM ends with the flood)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stamps = []

    def drain():
        while len(stamps) < frames:
            try:
                n = len(ours.recv(4096))
            except OSError:
                return
            if n == 0:
                return
            stamps.append((time.monotonic(), n))

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    fd = theirs.fileno()
    args = virtio_test.boot_args("bz", "netflood:%d,%d" % (frames, size), extra=[
        "--net", "fd=%d,%s" % (fd, limit_opt)])
    try:
        if link:
            vmm = Vmm(args, link, pass_fds=(fd,))
            r = link.request({"msg": "set-limits", "device": "net", "index": 0, "ops": 50})
            check("error" not in r, "set-limits refused: %r" % r)
            deadline = time.monotonic() + 30
            while len(stamps) < frames // 2:
                check(time.monotonic() < deadline, "the flood did not get halfway in 30 s")
                time.sleep(0.05)
            d = link.request({"msg": "stats"})["devices"][0]
            check(d["device"] == "net" and frames // 2 <= d["tx_frames"] < frames and
                  d["tx_bytes"] == d["tx_frames"] * size and d["rx_frames"] == 0 and
                  d["limits"]["ops"] == 50 and d["throttled_ns"] > 1e9, "NIC stats %r" % d)
            r = link.request({"msg": "set-limits", "device": "net", "index": 1, "ops": 50})
            check("the VM has no NIC 1" in r.get("error", ""), "a second NIC? %r" % r)
        else:
            vmm = virtio_test.Vmm(args, pass_fds=(fd,))
        vmm.wait(90)
    finally:
        theirs.close()
        t.join(5)
        ours.close()
    kvmtest.check_clean_exit(vmm, kvmtest.EXIT_OK)
    check(len(stamps) == frames and all(n == size for _, n in stamps),
          "the host got %d frames of %r bytes, not %d of %d" %
          (len(stamps), sorted(set(n for _, n in stamps)), frames, size))
    secs = stamps[-1][0] - stamps[0][0]
    return (frames - 1) / secs, (frames - 1) * size / secs


def case_net_pps(tmp):
    """200 frames at 50 frames/s: 4 s."""
    fps, _ = flood("pps=50", 200, 1000)
    within("netflood frames", fps, 50)


def case_net_runtime(tmp):
    """A crawling frame limit on the command line, raised over the link."""
    link = Link()
    try:
        fps, _ = flood("pps=2", 200, 1000, link)
    finally:
        link.close()
    within("netflood frames", fps, 50)


def case_net_bps(tmp):
    """400 frames of 1000 bytes at 100 kB/s: 4 s."""
    _, bps = flood("bps=100000", 400, 1000)
    within("netflood bytes", bps, 100000)


def case_bad_options(tmp):
    img = disk(tmp, 1)
    for args, want in [
            (["--disk", img + ",bps=0"], r"invalid --disk bps '0'.*leave it out for no limit"),
            (["--disk", img + ",iops=-5"], r"invalid --disk iops '-5'"),
            (["--disk", img + ",bps=2T"], r"invalid --disk bps '2T'; use 1 to 1099511627776"),
            (["--disk", img + ",iops_burst=9"], r"--disk iops_burst needs iops too"),
            (["--net", "fd=3,pps=0"], r"invalid --net pps '0'"),
            (["--net", "fd=3,bps_burst=1M"], r"--net bps_burst needs bps too"),
            (["--balloon", "1G", "--mem", "256M"], r"--balloon 1073741824 is larger than the "
                                                   r"guest's 268435456 bytes of RAM"),
            (["--balloon", "lots"], r"invalid --balloon 'lots'")]:
        virtio_test.bad(args, want)


CASES = {
    "contention-balloon": case_balloon,
    "contention-balloon-elf": lambda tmp: case_balloon(tmp, "elf"),
    "contention-sandbox-balloon": virtio_test.sandboxed(case_balloon),
    "contention-blk-bps": case_blk_bps,
    "contention-blk-iops": case_blk_iops,
    "contention-blk-runtime": case_blk_runtime,
    "contention-sandbox-blk-runtime": virtio_test.sandboxed(case_blk_runtime),
    "contention-net-pps": case_net_pps,
    "contention-net-bps": case_net_bps,
    "contention-net-runtime": case_net_runtime,
    "contention-bad-options": case_bad_options,
}


def main(argv):
    return kvmtest.run_main(argv, CASES, "mvm-contention-", setup=kvmtest.need_files)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
