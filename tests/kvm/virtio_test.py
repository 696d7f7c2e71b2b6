#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Boot the test guest under mvm-vmm with virtio devices and check both the
guest's report (tests/guest/PROTOCOL.md) and the host side: disk images,
TAP traffic, the VMM's log.

Usage: virtio_test.py CASE      run one case (meson registers one test each)
       virtio_test.py --list    print the case names

Environment as kvmtest.py (MVM_VMM, MVM_BZIMAGE, MVM_ELF).
Exit status: 0 pass, 1 fail, 77 skip (no /dev/kvm; for net: no root,
network namespaces or TUN).
"""

import fcntl
import hashlib
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvmtest  # noqa: E402  (shares the VMM runner and the checks)
from kvmtest import Skip, TestFailure, check, run_vmm  # noqa: E402

SKIP = 77
MIB = 1 << 20
SECTOR = 512
BLK_S_IOERR = 1
VIRTIO_ID = {"net": 1, "blk": 2, "rng": 4, "vsock": 19}
VIRTIO_MMIO_START = 0xD0000000
VIRTIO_MMIO_SIZE = 0x1000
VIRTIO_IRQ_BASE = 5


def slot_gsi(i):
    """GSI of virtio slot i, as layout.h's virtio_slot_gsi(): 8 and 9 are skipped."""
    gsi = VIRTIO_IRQ_BASE + i
    return gsi if gsi < 8 else gsi + 2
VIRTIO_MMIO_MAX = 16
NEEDS_RESET = 0x40
LOG_BURST = 20  # vmm/virtio_devs.c: guest errors logged before rate limiting

GUEST_MAC = "52:54:00:12:34:56"
HOST_IP = "10.0.2.2"
GUEST_IP = "10.0.2.15"
ECHO_PORT = 7
TAP = "mvmtap0"


# The virtio-sandbox-* variants run the cases under mvm-vmm --sandbox, as
# mvmd runs workers: an id of their own and a per-VM directory as the root.
# The environment carries the choice into the network-namespace child.
SANDBOX_UID = 250000 + os.getpid() % 10000


def sandbox_args():
    uid = os.environ.get("MVM_TEST_SANDBOX_UID")
    if not uid:
        return []
    return ["--sandbox", "--sandbox-uid", uid, "--sandbox-gid", uid,
            "--sandbox-dir", os.environ["MVM_TEST_SANDBOX_DIR"]]


def boot_args(fmt, scenario, mem="64M", vcpus=1, extra=()):
    return kvmtest.boot_args(fmt, scenario, mem, vcpus, list(extra) + sandbox_args())


def sandboxed(case):
    def run(tmp):
        if os.geteuid() != 0:
            raise Skip("the sandbox needs root: it switches uid and mounts")
        jail = os.path.join(tmp, "jail")
        os.mkdir(jail, 0o700)
        os.chown(jail, SANDBOX_UID, SANDBOX_UID)
        os.environ["MVM_TEST_SANDBOX_UID"] = str(SANDBOX_UID)
        os.environ["MVM_TEST_SANDBOX_DIR"] = jail
        case(tmp)
    return run


class Vmm(kvmtest.Vmm):
    """kvmtest's runner, also handing the VMM open fds (disks, TAPs)."""

    def __init__(self, args, pass_fds=()):
        self.argv = [os.environ["MVM_VMM"]] + args
        print("+ " + " ".join(self.argv), flush=True)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True, pass_fds=pass_fds)
        self.out = kvmtest.Stream(self.proc.stdout)
        self.err = kvmtest.Stream(self.proc.stderr)
        self.status = None


def pattern(base, length, mul, add):
    """Byte i is ((base + i) * mul + add) & 0xff, as the guest computes it."""
    return bytes(((base + i) * mul + add) & 0xFF for i in range(length))


def guest_lines(vmm, prefix):
    return [l[len("MVMTEST "):] for l in vmm.lines("MVMTEST " + prefix)]


def one_line(vmm, prefix):
    got = guest_lines(vmm, prefix)
    check(len(got) == 1, "expected one 'MVMTEST %s' line, got %r" % (prefix, got))
    return got[0]


def check_irqs(vmm, guest_must_count=True):
    """The VMM raised interrupts (MVM_VIRTIO_STATS counters) and, where the
    guest sleeps through each request (blk), the guest took them: 0 there
    means the irqfd path is broken.  Short requests (rng, net) complete
    while the guest polls with interrupts off, and the test guest then
    often misses the count, so only the VMM side is checked for those."""
    m = re.match(r"virtio irqs=(\d+)$", one_line(vmm, "virtio irqs="))
    check(m is not None, "malformed irqs line")
    raised = [int(x) for x in re.findall(r"^mvm-vmm: stats virtio-\S+ .* irqs=(\d+)",
                                         vmm.err.text(), re.M)]
    check(raised and sum(raised) > 0, "VMM raised no virtio interrupt: %r" % raised)
    if guest_must_count:
        check(int(m.group(1)) > 0, "guest took no virtio interrupt: the irqfd path is broken")


def check_devices(vmm, kinds, src="acpi"):
    """One device per kind, in slot order, at the layout.h window and GSI,
    described once: in the DSDT, or on the command line for a guest told
    acpi=off (Linux refuses a device described both ways)."""
    devs = guest_lines(vmm, "virtio dev ")
    check(len(devs) == len(kinds), "guest found %d virtio devices, expected %d: %r"
          % (len(devs), len(kinds), devs))
    for i, (line, kind) in enumerate(zip(devs, kinds)):
        want = "virtio dev addr=%x irq=%d id=%d src=%s" % (
            VIRTIO_MMIO_START + i * VIRTIO_MMIO_SIZE, slot_gsi(i), VIRTIO_ID[kind], src)
        check(line == want, "device %d: %r, expected %r" % (i, line, want))


def vmm_errors(vmm):
    return [l for l in vmm.err.text().split("\n") if l.startswith("mvm-vmm: virtio")]


# --- blk ---------------------------------------------------------------------

def make_disks(tmp):
    rw = os.path.join(tmp, "rw.img")
    ro = os.path.join(tmp, "ro.img")
    with open(rw, "wb") as f:
        f.write(pattern(0, MIB, 7, 3))      # what the guest reads
        f.write(b"\xee" * MIB)             # what it must overwrite
        f.write(b"\x5a" * (2 * MIB))       # what it must leave alone
    with open(ro, "wb") as f:
        f.write(os.urandom(MIB))
    return rw, ro


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def case_blk(tmp, fmt="bz"):
    rw, ro = make_disks(tmp)
    ro_sum, ro_stat = sha(ro), os.stat(ro)
    vmm = run_vmm(boot_args(fmt, "blk", extra=[
        "--disk", rw + ",id=mvmtest-disk0", "--disk", ro + ",ro,id=ro"]), timeout=60)
    check_devices(vmm, ["blk", "blk"])
    check(one_line(vmm, "blk id=") == "blk id=mvmtest-disk0 capacity=%d" % (4 * MIB // SECTOR),
          "drive id or capacity wrong")
    for l in ("blk read ok", "blk write ok"):
        check(one_line(vmm, l) == l, "no '%s'" % l)
    check(one_line(vmm, "blk past-end") == "blk past-end status=%d" % BLK_S_IOERR,
          "a request crossing the end of the disk was not refused with IOERR")
    check(one_line(vmm, "blk ro-write") == "blk ro-write status=%d" % BLK_S_IOERR,
          "a write to the read-only disk did not fail with IOERR")
    check_irqs(vmm)
    with open(rw, "rb") as f:
        data = f.read()
    check(len(data) == 4 * MIB, "rw image changed size to %d" % len(data))
    check(data[:MIB] == pattern(0, MIB, 7, 3), "first MiB (host pattern) was modified")
    check(data[MIB:2 * MIB] == pattern(MIB, MIB, 13, 5),
          "second MiB does not hold the guest's pattern")
    check(data[2 * MIB:] == b"\x5a" * (2 * MIB), "bytes past the second MiB were modified")
    check(sha(ro) == ro_sum and os.stat(ro).st_mtime_ns == ro_stat.st_mtime_ns,
          "read-only image changed")


def case_blk_fd(tmp):
    """mvmd's way: the disks arrive as open fds named /proc/self/fd/N."""
    rw, ro = make_disks(tmp)
    rw_fd = os.open(rw, os.O_RDWR)
    ro_fd = os.open(ro, os.O_RDONLY)
    ro_sum = sha(ro)
    try:
        vmm = Vmm(boot_args("bz", "blk", extra=[
            "--disk", "/proc/self/fd/%d,id=fd-disk" % rw_fd,
            "--disk", "/proc/self/fd/%d,ro" % ro_fd]), pass_fds=(rw_fd, ro_fd))
        vmm.wait(60)
    finally:
        os.close(rw_fd)
        os.close(ro_fd)
    kvmtest.check_clean_exit(vmm, kvmtest.EXIT_OK)
    check(one_line(vmm, "blk id=").startswith("blk id=fd-disk "), "drive id wrong")
    check(one_line(vmm, "blk ro-write") == "blk ro-write status=%d" % BLK_S_IOERR,
          "write to the read-only fd disk did not fail")
    with open(rw, "rb") as f:
        f.seek(MIB)
        check(f.read(MIB) == pattern(MIB, MIB, 13, 5), "guest's write did not reach the file")
    check(sha(ro) == ro_sum, "read-only image changed")


# --- rng, discovery, hostile ----------------------------------------------------

def case_rng(tmp):
    vmm = run_vmm(boot_args("elf", "rng", extra=["--rng"]))
    check_devices(vmm, ["rng"])
    check(one_line(vmm, "rng ok") == "rng ok bytes=64", "no 'rng ok' line")
    check_irqs(vmm, guest_must_count=False)


def case_virtio_all(tmp):
    """Every kind at once, in the fixed slot order, 16 devices at most; the
    guest runs with acpi=off, so all of them are on the command line."""
    rw, ro = make_disks(tmp)
    sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    disks = []
    for i in range(VIRTIO_MMIO_MAX - 2):
        disks += ["--disk", ro + ",ro,id=d%d" % i]
    try:
        fd = sock[1].fileno()
        args = boot_args("bz", "virtio", extra=disks + ["--rng", "--net", "fd=%d" % fd])
        args[args.index("--cmdline") + 1] += " acpi=off"
        vmm = Vmm(args, pass_fds=(fd,))
        vmm.wait(30)
    finally:
        sock[0].close()
        sock[1].close()
    kvmtest.check_clean_exit(vmm, kvmtest.EXIT_OK)
    check_devices(vmm, ["blk"] * (VIRTIO_MMIO_MAX - 2) + ["net", "rng"], src="cmdline")
    check(one_line(vmm, "virtio done") == "virtio done n=%d" % VIRTIO_MMIO_MAX, "bad count")


def case_hostile(tmp):
    rw, _ = make_disks(tmp)
    before = sha(rw)
    vmm = run_vmm(boot_args("bz", "hostile", extra=["--disk", rw]), timeout=60)
    cases = guest_lines(vmm, "hostile case=")
    check(len(cases) == 6, "expected 6 hostile cases, got %r" % cases)
    for l in cases:
        m = re.match(r"hostile case=(\w+) status=([0-9a-f]+)$", l)
        check(m is not None, "malformed line %r" % l)
        check(int(m.group(2), 16) & NEEDS_RESET,
              "case %s: device did not set NEEDS_RESET" % m.group(1))
    check(one_line(vmm, "hostile recovered") == "hostile recovered", "device did not recover")
    errs = vmm_errors(vmm)
    check(len(errs) >= len(cases), "VMM logged %d virtio errors for %d malformed chains: %r"
          % (len(errs), len(cases), errs))
    check(all(l.startswith("mvm-vmm: virtio-blk: ") for l in errs), "unexpected lines %r" % errs)
    check(len(errs) <= LOG_BURST + 1, "%d error lines: not rate-limited" % len(errs))
    check(sha(rw) == before, "malformed requests changed the disk")


# --- net -----------------------------------------------------------------------

def ip(*args):
    subprocess.run(["ip"] + list(args), check=True, stdout=subprocess.DEVNULL)


def echo_server(stop):
    """UDP port 7 on the host side of the TAP: answers mvm-net-ping."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST_IP, ECHO_PORT))
    s.settimeout(0.2)
    got = []
    while not stop.is_set():
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            continue
        got.append((data, peer))
        if data == b"mvm-net-ping":
            s.sendto(b"mvm-net-pong", peer)
    s.close()
    return got


TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def net_inner(how):
    """Runs inside a fresh network namespace: nothing touches the host's
    network.  The kernel answers the guest's ARP for HOST_IP; a UDP socket
    answers its ping."""
    ip("link", "set", "lo", "up")
    ip("tuntap", "add", "dev", TAP, "mode", "tap")
    ip("addr", "add", HOST_IP + "/24", "dev", TAP)
    ip("link", "set", TAP, "up")
    # /sys still shows the old namespace: ask ip for the TAP's MAC.
    link = subprocess.run(["ip", "-o", "link", "show", "dev", TAP], check=True,
                          capture_output=True, text=True).stdout
    host_mac = re.search(r"link/ether ([0-9a-f:]{17})", link).group(1)
    stop, got = threading.Event(), []
    t = threading.Thread(target=lambda: got.extend(echo_server(stop)))
    t.start()
    fds = ()
    try:
        if how == "tap":
            net = ["--net", "tap=%s,mac=%s" % (TAP, GUEST_MAC)]
        else:
            fds = (open_tap(TAP),)
            net = ["--net", "fd=%d,mac=%s" % (fds[0], GUEST_MAC)]
        vmm = Vmm(boot_args("bz", "net:" + HOST_IP, extra=net), pass_fds=fds)
        vmm.wait(60)
        kvmtest.check_clean_exit(vmm, kvmtest.EXIT_OK)
    finally:
        for fd in fds:
            os.close(fd)
        stop.set()
        t.join()
    check_devices(vmm, ["net"])
    check(one_line(vmm, "net mac=") == "net mac=" + GUEST_MAC, "MAC not in config space")
    check(one_line(vmm, "net tx ok") == "net tx ok", "no 'net tx ok'")
    check(one_line(vmm, "net peer") == "net peer mac=" + host_mac,
          "guest did not learn the TAP's MAC %s through ARP" % host_mac)
    check(one_line(vmm, "net rx ok") == "net rx ok", "no 'net rx ok'")
    check_irqs(vmm, guest_must_count=False)
    check(any(d == b"mvm-net-ping" and p == (GUEST_IP, 40000) for d, p in got),
          "host never received the guest's ping: %r" % got)


def case_net(tmp, how):
    if os.geteuid() != 0:
        raise Skip("net needs root for a network namespace and a TAP")
    if not os.path.exists("/dev/net/tun") or not shutil.which("ip") or \
            not shutil.which("unshare"):
        raise Skip("net needs /dev/net/tun, ip (iproute2) and unshare")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        raise Skip("cannot create a network namespace: %s" % probe.stderr.decode().strip())
    r = subprocess.run(["unshare", "--net", sys.executable, os.path.abspath(__file__),
                        "--net-inner", how], timeout=120)
    if r.returncode == SKIP:
        raise Skip("inner net case skipped")
    check(r.returncode == 0, "net case inside the namespace failed (status %d)" % r.returncode)


# --- bad options ---------------------------------------------------------------

def bad(args, want, pass_fds=()):
    vmm = Vmm(["--kernel", kvmtest.guest("bz")] + args, pass_fds=pass_fds)
    vmm.wait(10)
    kvmtest.check_clean_exit(vmm, kvmtest.EXIT_USAGE)
    err = vmm.err.text()
    check(re.search(want, err), "stderr %r lacks %r" % (err, want))
    check(not vmm.out.text(), "guest ran: %r" % vmm.out.text())


def case_bad_options(tmp):
    rw, ro = make_disks(tmp)
    empty = os.path.join(tmp, "empty.img")
    open(empty, "wb").close()
    bad(["--disk", os.path.join(tmp, "missing.img")], r"cannot open disk .*missing\.img")
    bad(["--disk", rw + ",id=" + "x" * 21], r"invalid --disk id")
    bad(["--disk", rw + ",id=a b"], r"invalid --disk id")
    bad(["--disk", rw + ",rw"], r"unknown --disk option 'rw'")
    bad(["--disk", tmp + ",ro"], r"not a raw image")
    bad(["--disk", empty], r"not a raw image")
    bad(["--net", "mac=52:54:00:00:00:01"], r"--net needs tap=NAME or fd=N")
    bad(["--net", "fd=3,mac=01:00:00:00:00:01"], r"invalid --net mac")
    bad(["--net", "fd=99"], r"cannot use --net fd=99")
    bad(["--net", "tap=" + "x" * 16], r"too long")
    bad(["--vsock", "cid=2,uds=" + os.path.join(tmp, "v")], r"invalid --vsock cid")
    bad(["--vsock", "cid=3"], r"--vsock needs cid=N and uds=PATH")
    bad(["--vsock", "cid=3,uds=%s,uid=-1" % os.path.join(tmp, "v")], r"invalid --vsock uid")
    bad(["--rng"] + ["--disk", ro + ",ro"] * VIRTIO_MMIO_MAX, r"too many virtio devices")
    # A writable disk on an fd opened read-only (mvmd opens ro disks so).
    fd = os.open(rw, os.O_RDONLY)
    try:
        bad(["--disk", "/proc/self/fd/%d" % fd], r"cannot open disk .* for writing.*,ro",
            pass_fds=(fd,))
    finally:
        os.close(fd)
    if os.geteuid() == 0:
        # Root ignores file modes; check the plain-path case as nobody.
        os.chmod(tmp, 0o755)
        os.chmod(rw, 0o644)
        vmm_args = ["--kernel", kvmtest.guest("bz"), "--disk", rw]
        r = subprocess.run([os.environ["MVM_VMM"]] + vmm_args, capture_output=True,
                           preexec_fn=lambda: (os.setgid(65534), os.setuid(65534)), timeout=10)
        check(r.returncode == kvmtest.EXIT_USAGE and b"for writing" in r.stderr,
              "read-write open of a 0644 root file as nobody: status %d, %r"
              % (r.returncode, r.stderr))


def case_vsock(tmp, fmt="bz"):
    """Both directions through the Unix-socket host side, played by the
    guest's own vsock-host.py (PROTOCOL.md).  Sandboxed, the socket and its
    uds_PORT listeners live in the per-VM directory, connectable by the
    worker's uid (umask 0 inside the 0700 directory)."""
    jail = os.environ.get("MVM_TEST_SANDBOX_DIR")
    uds = os.path.join(jail or tmp, "v.sock")
    host = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "guest", "vsock-host.py")
    cmd = [sys.executable, host, uds, "--timeout", "60", "--", os.environ["MVM_VMM"]] + boot_args(
        fmt, "vsock", extra=["--vsock", "cid=7,uds=" + uds])
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90,
                       preexec_fn=(lambda: os.umask(0)) if jail else None)
    out = r.stdout.decode(errors="replace")
    check(r.returncode == 0, "vsock-host.py exited %d:\n%s" % (r.returncode, out[-2000:]))
    check("MVMTEST vsock cid=7" in out, "guest did not report cid 7:\n%s" % out[-2000:])
    for mark in kvmtest.SANITIZER_MARKS:
        check(mark not in out, "sanitizer report:\n%s" % out[-4000:])
    # Sandboxed, its root is read-only: whoever owns the directory (mvmd)
    # removes the socket with it.
    check(jail or not os.path.exists(uds), "the VMM left its vsock socket %s behind" % uds)


CASES = {
    "virtio-blk": case_blk,
    "virtio-blk-elf": lambda tmp: case_blk(tmp, "elf"),
    "virtio-blk-fd": case_blk_fd,
    "virtio-rng": case_rng,
    "virtio-all": case_virtio_all,
    "virtio-hostile": case_hostile,
    "virtio-net-tap": lambda tmp: case_net(tmp, "tap"),
    "virtio-net-fd": lambda tmp: case_net(tmp, "fd"),
    "virtio-bad-options": case_bad_options,
    "virtio-vsock": case_vsock,
    "virtio-vsock-elf": lambda tmp: case_vsock(tmp, "elf"),
    # The same under mvm-vmm --sandbox (docs/security.md "Worker sandbox").
    "virtio-sandbox-blk": sandboxed(case_blk),
    "virtio-sandbox-blk-fd": sandboxed(case_blk_fd),
    "virtio-sandbox-rng": sandboxed(case_rng),
    "virtio-sandbox-all": sandboxed(case_virtio_all),
    "virtio-sandbox-hostile": sandboxed(case_hostile),
    "virtio-sandbox-net-tap": sandboxed(lambda tmp: case_net(tmp, "tap")),
    "virtio-sandbox-net-fd": sandboxed(lambda tmp: case_net(tmp, "fd")),
    "virtio-sandbox-vsock": sandboxed(case_vsock),
    "virtio-sandbox-vsock-elf": sandboxed(lambda tmp: case_vsock(tmp, "elf")),
}


def main(argv):
    os.environ["MVM_VIRTIO_STATS"] = "1"  # check_irqs reads the counters
    if len(argv) == 3 and argv[1] == "--net-inner":
        try:
            net_inner(argv[2])
        except TestFailure as e:
            print("FAIL net (inner): %s" % e, flush=True)
            return 1
        return 0
    return kvmtest.run_main(argv, CASES, "mvm-virtio-")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
