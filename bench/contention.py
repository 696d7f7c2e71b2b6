#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Noisy-neighbour benchmark: one VM floods its disk (then its NIC) while
another measures its own disk (then its own NIC), without a limit on the
flooder and with one, under mvm-vmm (--disk ...,bps=; --net ...,bps=) and
under QEMU -M microvm (disks: a throttle group, -object throttle-group and
a throttle filter node over the flooder's drive; NICs: QEMU has no rate
limit for a netdev, so its limited row says so).

Both VMs run the test guest's PVH ELF.

Disks.  The neighbour runs
`blkbench:NB,4`: NB MiB written and read back in 4 KiB requests, as many in
flight as the queue holds, timed by the guest with rdtsc (KVM does not
scale the TSC here).  Its rate is total requests over total time; the
"us/req" column is the inverse of that rate (the mean time per request at
the queue's depth, not a single request's latency).  The flooder runs
`blkbench:F,64` in 64 KiB requests and is started first (QEMU's throttle
lets a queue's worth through at once and holds the debt against the next
requests: with 1 MiB requests the guest's 2 s wait for a completion runs
out); the neighbour
starts FLOOD_LEAD seconds later.  "overlap" says in how many runs the
flooder was still running when the neighbour ended (only those runs show
contention).  The flooder's rate is what it moved over the phases the guest
timed that ended before it was stopped (none when unlimited: it is stopped
mid-write once the neighbour is done).

NICs.  This part runs in a private network namespace (unshare --net, so
root): each VM gets its own TAP there (mvm-vmm --net tap=NAME; QEMU
-netdev tap,ifname=NAME), up, with no address and no bridge, so the two
VMs (separate processes) share the host's CPUs and the kernel's TAP
code but no link.  Both run the guest's `netflood:N,S` (N broadcast frames
of S bytes, 32 in flight, as fast as the device takes them): the flooder
with NET_FL_SIZE-byte frames and no end, started FLOOD_LEAD seconds
first and stopped once the neighbour is done; the neighbour with
NET_NB_FRAMES frames of NET_NB_SIZE bytes.  The host times each VM's
frames as they leave its TAP (an AF_PACKET socket per TAP with kernel
receive timestamps, first frame to last), so the neighbour's rate is the
frames/s its NIC achieved and "us/frame" its inverse (the mean time per
frame with 32 in flight, not one frame's latency); the flooder's rate is
MB/s (10^6 bytes, frame bytes without the virtio header) over its frames
seen while it ran.  The guest's net
scenario can only time one ping round trip, which boot time swamps, so
the neighbour measures its send rate, not a latency.

Usage: contention.py [--vmm PATH] [--elf PATH] [--qemu PATH] [--runs 3]
       [--limit-mib 4] [--net-bps 1000000] [--part disk|net|both] [--dir DIR]
"""
import argparse
import os
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from blk import make_image, tsc_calibrate, tsc_from_cpuinfo  # noqa: E402

MIB = 1 << 20
NB_MIB = 16
FLOOD_MIB = {"unlimited": 256, "limited": 16}
FLOOD_LEAD = 1.0
NET_NB_FRAMES = 8000
NET_NB_SIZE = 1000
NET_FL_SIZE = 1514
NET_FL_FRAMES = 1 << 40     # no end: stopped once the neighbour is done
TAPS = {"flooder": "mvmbfl0", "neighbour": "mvmbnb0"}
ETH_P_ALL = 0x0003
ETHERTYPE = b"\x88\xb5"    # what netflood sends
PACKET_OUTGOING = 4
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
PHASE_RE = re.compile(r"^MVMTEST blkbench (write|read) done reqs=(\d+) tsc=(\d+)", re.M)


def mem_for(mib):
    return 64 + mib + 32


def mvm_argv(a, scenario, disk, mib, limit):
    d = disk + ",id=disk0" + (",bps=%d" % limit if limit else "")
    return [a.vmm, "--kernel", a.elf, "--mem", "%dM" % mem_for(mib), "--serial", "stdio",
            "--cmdline", "mvmtest=" + scenario, "--disk", d]


def qemu_argv(a, scenario, disk, mib, limit):
    argv = [a.qemu, "-M", "microvm", "-accel", "kvm", "-m", "%dM" % mem_for(mib),
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-global", "virtio-mmio.force-legacy=false"]
    if limit:
        argv += ["-object", "throttle-group,id=tg0,x-bps-total=%d" % limit,
                 "-blockdev", "driver=file,node-name=f0,filename=" + disk,
                 "-blockdev", "driver=raw,node-name=r0,file=f0",
                 "-blockdev", "driver=throttle,node-name=t0,throttle-group=tg0,file=r0",
                 "-device", "virtio-blk-device,drive=t0,serial=disk0"]
    else:
        argv += ["-drive", "id=d,file=%s,format=raw,if=none" % disk,
                 "-device", "virtio-blk-device,drive=d,serial=disk0"]
    return argv + ["-kernel", a.elf, "-append", "mvmtest=" + scenario]


def phases(out, hz):
    return {p: (int(reqs), int(tsc) / hz) for p, reqs, tsc in PHASE_RE.findall(out)}


def spawn(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish(p, timeout):
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return out, err


def one_run(a, argv_fn, mode, hz):
    """(neighbour ops/s, flooder write MiB/s or None, overlapped) of a run."""
    nb_img = os.path.join(a.dir, "nb.img")
    fl_img = os.path.join(a.dir, "fl.img")
    make_image(nb_img, NB_MIB + 1)
    flooder = None
    limit = a.limit_mib * MIB if mode == "limited" else 0
    if mode != "solo":
        fmib = FLOOD_MIB[mode]
        make_image(fl_img, fmib + 1)
        flooder = spawn(argv_fn(a, "blkbench:%d,64" % fmib, fl_img, fmib, limit))
        time.sleep(FLOOD_LEAD)
    nb = spawn(argv_fn(a, "blkbench:%d,4" % NB_MIB, nb_img, NB_MIB, 0))
    out, err = finish(nb, 300)
    overlapped = flooder is not None and flooder.poll() is None
    fl_rate = None
    if flooder:
        if mode == "limited":
            # its whole run at the limit (write and read back), bounded
            fout, ferr = finish(flooder, 3 * fmib / a.limit_mib + 20)
        else:
            flooder.terminate()
            fout, ferr = finish(flooder, 10)
        fph = phases(fout, hz)
        if fph:
            fl_rate = FLOOD_MIB[mode] * len(fph) / sum(t for _, t in fph.values())
    ph = phases(out, hz)
    if set(ph) != {"write", "read"}:
        raise RuntimeError("neighbour (%s, %s): blkbench phases %r; stderr %s"
                           % (argv_fn.__name__, mode, sorted(ph), err[-800:]))
    reqs = sum(r for r, _ in ph.values())
    secs = sum(s for _, s in ph.values())
    return reqs / secs, fl_rate, overlapped


def summary(vals, spec=".0f"):
    vals = [v for v in vals if v is not None]
    if not vals:
        return "n/a"
    return ("%" + spec + " (%" + spec + "..%" + spec + ")") % (
        statistics.median(vals), min(vals), max(vals))


def run_all(a, configs, modes, errors, run, part, nb_unit, fl_unit):
    """a.runs rounds of every (VMM, mode) not already in errors; a run that
    fails records its error there and that pair is not tried again.  Returns
    {(name, mode): [(neighbour rate, flooder rate or None, overlap)...]}."""
    res = {(n, m): [] for n, _, _ in configs for m in modes}
    for i in range(a.runs):
        for name, fn, _ in configs:
            for mode in modes:
                if (name, mode) in errors:
                    continue
                try:
                    r = run(fn, mode)
                except (RuntimeError, OSError) as e:
                    errors[(name, mode)] = str(e)
                    continue
                res[(name, mode)].append(r)
                print("run %d %s %s %s: neighbour %.0f %s, flooder %s %s, overlap %s"
                      % (i + 1, name, part, mode, r[0], nb_unit,
                         "n/a" if r[1] is None else "%.2f" % r[1], fl_unit, r[2]),
                      file=sys.stderr, flush=True)
    return res


def disk_part(a, hz):
    configs = [("mvm-vmm", mvm_argv, "--disk bps=")]
    why_no_qemu = None
    if a.qemu:
        configs.append(("qemu-microvm", qemu_argv, "throttle-group x-bps-total"))
    else:
        why_no_qemu = "qemu-system-x86_64 not found"
    modes = ("solo", "unlimited", "limited")
    errors = {}
    res = run_all(a, configs, modes, errors, lambda fn, mode: one_run(a, fn, mode, hz),
                  "disk", "req/s", "MiB/s")

    print("noisy neighbour, disks: neighbour blkbench:%d,4 (4 KiB requests); flooder "
          "blkbench:F,64 started %.1f s before (F=%d MiB unlimited, %d MiB limited to %d MiB/s); "
          "%d runs; median (min..max)" % (NB_MIB, FLOOD_LEAD, FLOOD_MIB["unlimited"],
                                         FLOOD_MIB["limited"], a.limit_mib, a.runs))
    table(configs, modes, res, errors, ("neighbour req/s", "neighbour us/req",
                                        "flooder MiB/s"))
    if why_no_qemu:
        print("qemu-microvm: no numbers: %s" % why_no_qemu)


def table(configs, modes, res, errors, cols):
    """res[(vmm, mode)]: [(neighbour rate, flooder rate or None, overlapped)];
    errors[(vmm, mode)]: why that row has no numbers."""
    fmt = "%-13s %-10s %-24s %-20s %-10s %-22s %s"
    hdr = fmt % ("vmm", "flooder", cols[0], cols[1], "vs solo", cols[2], "overlap")
    print(hdr)
    print("-" * len(hdr))
    for name, _, how in configs:
        solo = [r[0] for r in res[(name, "solo")]]
        for mode in modes:
            rows = res[(name, mode)]
            if (name, mode) in errors:
                print("%-13s %-10s n/a: %s" % (name, mode, errors[(name, mode)][:200]))
                continue
            ops = [r[0] for r in rows]
            ratio = "%.2f" % (statistics.median(ops) / statistics.median(solo)) \
                if solo and ops else "n/a"
            print(fmt % (
                name, mode, summary(ops), summary([1e6 / o for o in ops], ".1f"), ratio,
                summary([r[1] for r in rows], ".2f") if mode != "solo" else "-",
                "%d/%d" % (sum(r[2] for r in rows), len(rows)) if mode != "solo" else "-"))
        print("%-13s limited by: %s" % ("", how))


# --- NICs ---------------------------------------------------------------------------

def mvm_net_argv(a, scenario, tap, limit):
    n = "tap=" + tap + (",bps=%d" % limit if limit else "")
    return [a.vmm, "--kernel", a.elf, "--mem", "64M", "--serial", "stdio",
            "--cmdline", "mvmtest=" + scenario, "--net", n]


def qemu_net_argv(a, scenario, tap, limit):
    if limit:
        raise RuntimeError("QEMU has no NIC rate limit")
    return [a.qemu, "-M", "microvm", "-accel", "kvm", "-m", "64M",
            "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio",
            "-global", "virtio-mmio.force-legacy=false",
            "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % tap,
            "-device", "virtio-net-device,netdev=n0",
            "-kernel", a.elf, "-append", "mvmtest=" + scenario]


class Sniffer:
    """Counts netflood's frames leaving a TAP (the guest's transmit is the
    TAP's receive), with the times of the first and the last."""

    def __init__(self, tap):
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        # a big buffer and the kernel's arrival times: a reader that falls
        # behind on a loaded host neither drops frames nor skews the rate
        self.s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
        self.s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.s.bind((tap, 0))
        self.s.settimeout(0.2)
        self.frames = self.bytes = 0
        self.first = self.last = None
        self.stop = False
        self.error = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                data, anc, _, addr = self.s.recvmsg(2048, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] == PACKET_OUTGOING or data[12:14] != ETHERTYPE:
                continue
            now = None
            for level, kind, val in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(val) >= 16:
                    sec, nsec = struct.unpack("qq", val[:16])
                    now = sec + nsec / 1e9
            if now is None:
                self.error = "a frame came without its SO_TIMESTAMPNS"
                return
            if self.first is None:
                self.first = now
            self.last = now
            self.frames += 1
            self.bytes += len(data)

    def close(self):
        self.stop = True
        self.t.join(2)
        self.s.close()

    def rate(self):
        """(frames/s, bytes/s) from the first frame to the last, or None."""
        if self.frames < 2 or self.last <= self.first:
            return None
        secs = self.last - self.first
        return (self.frames - 1) / secs, self.bytes * (self.frames - 1) / self.frames / secs


def net_one_run(a, argv_fn, mode):
    """(neighbour frames/s, flooder MB/s or None, overlapped) of a run."""
    limit = a.net_bps if mode == "limited" else 0
    sniff = {k: Sniffer(t) for k, t in TAPS.items()}
    flooder = None
    try:
        if mode != "solo":
            flooder = spawn(argv_fn(a, "netflood:%d,%d" % (NET_FL_FRAMES, NET_FL_SIZE),
                                    TAPS["flooder"], limit))
            time.sleep(FLOOD_LEAD)
        nb = spawn(argv_fn(a, "netflood:%d,%d" % (NET_NB_FRAMES, NET_NB_SIZE),
                           TAPS["neighbour"], 0))
        out, err = finish(nb, 120)
        overlapped = flooder is not None and flooder.poll() is None
        if flooder:
            flooder.terminate()
            finish(flooder, 10)
            flooder = None
    finally:
        if flooder:
            flooder.kill()
            flooder.wait()
        for s in sniff.values():
            s.close()
    for s in sniff.values():
        if s.error:
            raise RuntimeError(s.error)
    if "MVMTEST netflood done frames=%d" % NET_NB_FRAMES not in out or \
            sniff["neighbour"].frames != NET_NB_FRAMES:
        raise RuntimeError("neighbour (%s, %s): %d of %d frames seen; stderr %s"
                           % (argv_fn.__name__, mode, sniff["neighbour"].frames, NET_NB_FRAMES,
                              err[-800:]))
    fl = sniff["flooder"].rate()
    return sniff["neighbour"].rate()[0], fl[1] / 1e6 if fl else None, overlapped


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, stdout=subprocess.DEVNULL)


def net_inner(a):
    """Inside the private network namespace: the TAPs, the runs, the table.
    The TAPs go with the namespace when this process ends."""
    ip("link", "set", "lo", "up")
    for tap in TAPS.values():
        ip("tuntap", "add", "dev", tap, "mode", "tap")
        ip("link", "set", tap, "up")
    configs = [("mvm-vmm", mvm_net_argv, "--net bps=")]
    if a.qemu:
        configs.append(("qemu-microvm", qemu_net_argv, "nothing: QEMU has no NIC rate limit"))
    modes = ("solo", "unlimited", "limited")
    errors = {}
    if a.qemu:
        errors[("qemu-microvm", "limited")] = (
            "QEMU has no NIC rate limit (no netdev throttle; filter-buffer only delays)")
    res = run_all(a, configs, modes, errors, lambda fn, mode: net_one_run(a, fn, mode),
                  "net", "frames/s", "MB/s")
    print("noisy neighbour, NICs: neighbour netflood:%d,%d; flooder netflood:2^40,%d started "
          "%.1f s before and stopped after it, unlimited and limited to %d bytes/s; each on "
          "its own TAP in a private netns; %d runs; median (min..max)"
          % (NET_NB_FRAMES, NET_NB_SIZE, NET_FL_SIZE, FLOOD_LEAD, a.net_bps, a.runs))
    table(configs, modes, res, errors, ("neighbour frames/s", "neighbour us/frame",
                                        "flooder MB/s"))
    if not a.qemu:
        print("qemu-microvm: no numbers: qemu-system-x86_64 not found")
    sys.stdout.flush()


def net_part(a):
    """Runs net_inner in a fresh network namespace: nothing touches the
    host's network, and other users' TAP names cannot clash."""
    why = None
    if os.geteuid() != 0:
        why = "needs root (TAPs in a private network namespace)"
    elif not os.path.exists("/dev/net/tun") or not shutil.which("ip") or \
            not shutil.which("unshare"):
        why = "needs /dev/net/tun, ip (iproute2) and unshare"
    if why:
        print("noisy neighbour, NICs: skipped: %s" % why)
        return
    argv = [shutil.which("unshare"), "--net", sys.executable, os.path.abspath(__file__),
            "--net-inner", "--vmm", a.vmm, "--elf", a.elf, "--runs", str(a.runs),
            "--net-bps", str(a.net_bps), "--qemu", a.qemu or ""]
    r = subprocess.run(argv, timeout=a.runs * 6 * 150 + 60)
    if r.returncode != 0:
        print("noisy neighbour, NICs: failed (status %d)" % r.returncode)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    build = os.path.join(here, "..", "build")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vmm", default=os.path.join(build, "vmm", "mvm-vmm"))
    ap.add_argument("--elf", default=os.path.join(build, "tests", "guest", "mvmtest.elf"))
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--limit-mib", type=int, default=4)
    ap.add_argument("--net-bps", type=int, default=1000000,
                    help="the flooder's NIC limit in bytes/s (default 1000000)")
    ap.add_argument("--part", choices=("disk", "net", "both"), default="both")
    ap.add_argument("--dir", default=None)
    ap.add_argument("--net-inner", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.runs < 1 or a.limit_mib < 1 or a.net_bps < 1:
        ap.error("--runs, --limit-mib and --net-bps must be at least 1")
    a.qemu = a.qemu or None
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("SKIP: /dev/kvm is not usable", file=sys.stderr)
        return 77
    if a.net_inner:
        net_inner(a)
        return 0
    if a.part in ("disk", "both"):
        hz = tsc_calibrate() or tsc_from_cpuinfo()
        tmp = tempfile.mkdtemp(prefix="mvm-bench-contention-", dir=a.dir)
        a.dir = tmp
        try:
            disk_part(a, hz)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
    if a.part in ("net", "both"):
        if a.part == "both":
            print()
            sys.stdout.flush()
        net_part(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
