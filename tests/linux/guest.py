#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The project's own guest kit end to end: the kernel guest/build-kernel.sh
builds from Debian's linux-source-6.1 and a busybox ext4 root from
guest/build-rootfs.sh, booted through its PVH entry to userspace.

Cases:
  vmm          mvm-vmm alone, 1 vCPU, in a private network namespace: root on
               virtio-blk, the shell on the serial console pings the host
               over a TAP, reads virtio-rng, lists the virtio devices bound
               to their drivers (blk, net, rng, vsock); poweroff exits 0.
  mvmd         a private mvmd, 2 vCPUs, TAP in a private netns: mvmctl
               create, a command typed into `mvmctl console` and its output
               read back, a ping, virtio-rng asked for with
               `mvmctl create --rng` read as the guest's hwrng, vsock
               asked for with `--vsock 7`: the host connects to the socket
               `mvmctl show` names (CONNECT, OK, bytes echoed by the guest's
               guest/tools/vsockecho) and the guest connects out to a
               `<socket>_<port>` listener of the host, then
               `mvmctl stop`: Ctrl-Alt-Del, the
               guest powers off, state stopped, exit status 0.
  bad-root     the root image is not ext4: the kernel's complaint is
               recognised and the VM ends (panic=-1 reboots) within bounds.
  no-poweroff  a guest deaf to Ctrl-Alt-Del (its kernel sits in a panic):
               mvmctl stop kills it after --timeout, state stopped.

Host quirks: where KVM only emulates guest kernel code (measured with the
test guest's kspeed scenario, as linuxboot.py does) the command line gains
HOST_QUIRKS; see docs/guests.md.  The kernel is built once and cached
(MVM_GUEST_CACHE, default /var/cache/mvm-guest, else the build dir).

Environment: MVM_VMM, MVMD, MVMCTL, MVM_BZIMAGE (test guest, for the speed
probe), MVM_LINUX_CACHE, optional MVM_GUEST_KERNEL (a vmlinux to use
instead of building one).  Exit: 0 pass, 1 fail, 77 skip (reason printed).
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "kvm"))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
sys.path.insert(0, HERE)
from kvmtest import Vmm, Stream, TestFailure, check, kvm_usable  # noqa: E402
import harness  # noqa: E402
import linuxboot  # noqa: E402

SKIP = 77
READY = b"mvm-guest: userspace up"
BASE_CMDLINE = "console=ttyS0 earlyprintk=ttyS0 root=/dev/vda rw rootfstype=ext4 panic=-1 i8042.noaux"
# What an emulating host needs (docs/guests.md): xrstor is beyond KVM's
# emulator there; int3, fwait, popcnt, clac/stac and cmpxchg16b mvm-vmm
# finishes itself.
HOST_QUIRKS = "noxsave"
GUEST_IP, HOST_IP, PREFIX = "10.0.2.15", "10.0.2.2", 24
TAP = "mvmtap0"
# Boot to userspace: ~25 s on an emulating host when idle, ten times that
# on a loaded 2-CPU CI machine; still bounded.
BOOT_TIMEOUT = 600.0
CMD_TIMEOUT = 60.0
STOP_TIMEOUT = 120
# The kernel's last words when it cannot use the root device, and what to
# do about each (checked in order).
DIAGNOSES = [
    (r"VFS: Cannot open root device|unknown-block\(0,0\)|Please append a correct \"root=\"",
     "the kernel found no root disk: it lacks virtio-mmio or virtio-blk built in "
     "(see guest/microvm.config), or root= names the wrong device"),
    (r"VFS: Unable to mount root fs|Can't find ext4 filesystem|EXT4-fs \(vda\): VFS: Can't find",
     "the root image is not an ext4 filesystem the kernel can mount: build it with "
     "guest/build-rootfs.sh, or give the kernel that filesystem built in"),
    (r"No working init found|Failed to execute /sbin/init",
     "the root filesystem has no working /sbin/init"),
    (r"Kernel panic", "the guest kernel panicked"),
    (r"KVM internal error", "KVM stopped the guest: see mvm-vmm's message"),
]


def log(msg):
    print(msg, flush=True)


class Skip(Exception):
    pass


def diagnose(text):
    for pattern, why in DIAGNOSES:
        if re.search(pattern, text):
            return why
    return None


# --- kit ------------------------------------------------------------------------

def guest_kernel():
    """The kit's vmlinux, built once (minutes) or found in the cache."""
    given = os.environ.get("MVM_GUEST_KERNEL")
    if given:
        check(os.path.exists(given), "MVM_GUEST_KERNEL=%s does not exist" % given)
        return given
    env = dict(os.environ)
    cache = os.environ.get("MVM_GUEST_CACHE", "/var/cache/mvm-guest")
    try:
        os.makedirs(cache, exist_ok=True)
        ok = os.access(cache, os.W_OK)
    except OSError:
        ok = False
    env["MVM_GUEST_CACHE"] = cache if ok else os.path.join(os.environ["MVM_LINUX_CACHE"], "guest")
    if not os.path.exists("/usr/src/linux-source-6.1.tar.xz") and "MVM_LINUX_SOURCE" not in env:
        raise Skip("no kernel source: apt-get install linux-source-6.1 (see .ci/setup)")
    log("+ guest/build-kernel.sh (cached after the first build)")
    t0 = time.monotonic()
    p = subprocess.run(["nice", "-n", "10", os.path.join(TOP, "guest", "build-kernel.sh")],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
    err = p.stderr.decode(errors="replace")
    if p.returncode != 0:
        if "is missing" in err:
            raise Skip("cannot build the guest kernel: %s" % err.strip().splitlines()[-1])
        raise TestFailure("guest/build-kernel.sh failed:\n%s" % err[-3000:])
    path = p.stdout.decode().strip().splitlines()[-1]
    log("guest kernel: %s (%.0f s)" % (path, time.monotonic() - t0))
    return path


def guest_tools(tmp):
    """A tree with the static guest/tools the tests run in the guest."""
    tree = os.path.join(tmp, "tools")
    os.makedirs(os.path.join(tree, "bin"), exist_ok=True)
    cc = os.environ.get("CC", "cc")
    src = os.path.join(TOP, "guest", "tools", "vsockecho.c")
    p = subprocess.run([cc, "-O2", "-static", "-o", os.path.join(tree, "bin", "vsockecho"), src],
                       capture_output=True)
    if p.returncode != 0:
        raise Skip("cannot build %s statically with %s (libc6-dev has the static libc): %s"
                   % (src, cc, p.stderr.decode(errors="replace").strip()[-500:]))
    return tree


def guest_root(tmp, name="root.img", size="64M", add=()):
    img = os.path.join(tmp, name)
    adds = [a for d in add for a in ("--add", d)]
    subprocess.run([os.path.join(TOP, "guest", "build-rootfs.sh"), "--size", size] + adds + [img],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return img


_emulated = []


def host_emulates():
    """Whether KVM emulates guest kernel code here (measured once)."""
    if not _emulated:
        if os.environ.get("MVM_GUEST_EMULATED") in ("0", "1"):
            _emulated.append(os.environ["MVM_GUEST_EMULATED"] == "1")
        else:
            ips, _ = linuxboot.measure_speed("kspeed", linuxboot.KSPEED_MILLIONS,
                                             linuxboot.KSPEED_TIMEOUT)
            _emulated.append(ips < linuxboot.MIN_KERNEL_IPS)
            log("guest kernel-mode speed %.1f M instructions/s: %s" % (
                ips / 1e6, "emulated" if _emulated[0] else "hardware"))
    return _emulated[0]


def host_cmdline(extra=""):
    """BASE_CMDLINE plus the quirks this host needs, as measured."""
    quirks = HOST_QUIRKS if host_emulates() else ""
    if quirks:
        log("emulating host: adding '%s'" % quirks)
    return " ".join(x for x in (BASE_CMDLINE, quirks, extra) if x)


def smp_vcpus():
    """2 everywhere: mvm-vmm hides KVM's PV send-IPI, whose hypercall
    stalled SMP bring-up where KVM emulates guest kernel code
    (docs/guests.md)."""
    return 2


# --- netns ----------------------------------------------------------------------

def need_netns():
    if os.geteuid() != 0:
        raise Skip("needs root for a network namespace and a TAP")
    if not os.path.exists("/dev/net/tun") or not shutil.which("ip") or not shutil.which("unshare"):
        raise Skip("needs /dev/net/tun, ip (iproute2) and unshare")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True)
    if probe.returncode != 0:
        raise Skip("cannot create a network namespace: %s" % probe.stderr.decode().strip())


def in_netns(case):
    """Runs this script's case in a fresh network namespace; its status."""
    need_netns()
    r = subprocess.run(["unshare", "--net", sys.executable, os.path.abspath(__file__),
                        "--inner", case], timeout=3 * BOOT_TIMEOUT + 3600)
    return r.returncode


def make_tap():
    for argv in (["link", "set", "lo", "up"], ["tuntap", "add", "dev", TAP, "mode", "tap"],
                 ["addr", "add", "%s/%d" % (HOST_IP, PREFIX), "dev", TAP],
                 ["link", "set", TAP, "up"]):
        subprocess.run(["ip"] + argv, check=True)


# --- the serial shell -------------------------------------------------------------

class Shell:
    """Commands typed into a guest's serial console, outputs read back.
    The end marker is built by the shell ($((N))), so the typed line's echo
    never matches it."""

    def __init__(self, write, stream, what):
        self.write = write
        self.stream = stream
        self.what = what
        self.n = 0

    def run(self, cmd, timeout=CMD_TIMEOUT):
        rc, out = self.run_once(cmd, timeout)
        if "segfault at" in out and host_emulates():
            # The host's open %fs/TLS fault (docs/guests.md): once more.
            log("guest process hit the emulating host's TLS fault; retrying once")
            rc, out = self.run_once(cmd, timeout)
        return rc, out

    def run_once(self, cmd, timeout):
        self.n += 1
        begin, end = "@B%d_0@" % self.n, "@E%d_0@" % self.n
        self.write(("echo @B%d_$((0))@; %s; echo @E%d_$((0))@$?\n" % (self.n, cmd, self.n)).encode())
        if not self.stream.wait_for(end.encode(), timeout):
            raise TestFailure("%s: no answer to %r within %.0f s; console tail:\n%s" % (
                self.what, cmd, timeout, self.stream.text()[-2000:]))
        # The status digits may arrive after the marker: wait for the line end.
        tail = re.compile(re.escape(end) + r"(\d+)\r?\n")
        deadline = time.monotonic() + 10
        while not tail.search(self.stream.text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        text = self.stream.text()
        body = text[text.rindex(begin) + len(begin):text.rindex(end)]
        m = tail.search(text, text.rindex(end))
        rc = int(m.group(1)) if m else -1
        out = body.replace("\r", "").strip("\n")
        log("guest$ %s  -> rc %d\n%s" % (cmd, rc, out))
        return rc, out


def wait_ready(stream, what, proc_alive):
    t0 = time.monotonic()
    deadline = t0 + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if stream.wait_for(READY, 2):
            took = time.monotonic() - t0
            log("%s: userspace after %.1f s" % (what, took))
            return took
        if not proc_alive():
            break
    why = diagnose(stream.text()) or "no '%s' line" % READY.decode()
    raise TestFailure("%s: the guest did not reach userspace: %s; console tail:\n%s" % (
        what, why, stream.text()[-3000:]))


def check_guest(sh, vcpus):
    rc, out = sh.run("grep -c ^processor /proc/cpuinfo")
    check(rc == 0 and out.strip().splitlines()[-1] == str(vcpus),
          "guest sees %r CPUs, expected %d" % (out, vcpus))
    rc, out = sh.run("grep ' / ' /proc/mounts")
    check(rc == 0 and re.search(r"^/dev/root / ext4 rw", out, re.M),
          "root is not ext4 mounted rw from the virtio disk: %r" % out)
    rc, out = sh.run("ping -c 1 -W 10 %s" % HOST_IP, timeout=CMD_TIMEOUT + 15)
    check(rc == 0 and "1 packets received" in out,
          "guest could not ping the host over virtio-net: %r" % out)
    # A second boot-time process with threads: busybox's own TLS (%fs) in
    # use under SMP.
    rc, out = sh.run("for i in 1 2 3 4 5 6 7 8; do (echo $i >/dev/null) & done; wait; echo smp-ok")
    check(rc == 0 and "smp-ok" in out and "egmentation" not in out,
          "processes failed under %d vCPUs: %r" % (vcpus, out))


def check_devices(sh, want):
    rc, out = sh.run("for d in /sys/bus/virtio/devices/*; do "
                     "echo VDEV $(cat $d/device) $(basename $(readlink $d/driver)); done")
    got = re.findall(r"^VDEV (0x[0-9a-f]+) (\S+)", out, re.M)
    check(got == want, "virtio devices and drivers %r, expected %r" % (got, want))


def check_rng(sh):
    rc, out = sh.run("cat /sys/class/misc/hw_random/rng_current; "
                     "echo $(od -An -tx1 -N16 /dev/hwrng)")
    lines = [l.replace(" ", "") for l in out.splitlines()]
    check(rc == 0 and lines and lines[0].startswith("virtio_rng"),
          "virtio-rng is not the guest's hwrng: %r" % out)
    check(len(lines) > 1 and re.fullmatch(r"[0-9a-f]{32}", lines[-1]),
          "could not read 16 bytes from /dev/hwrng: %r" % out)


VSOCK_CID, H2G_PORT, G2H_PORT = 7, 6000, 5000
VSOCK_TIMEOUT = 30.0


def recv_all(s, timeout):
    s.settimeout(timeout)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


def vsock_connect(path, port, deadline):
    """CONNECT through the VM's host socket; retried while the guest's
    listener is not up yet (the device answers with a close, no OK)."""
    last = "nothing"
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(path)
            s.sendall(b"CONNECT %d\n" % port)
            line = b""
            while not line.endswith(b"\n") and len(line) < 32:
                c = s.recv(1)
                if not c:
                    break
                line += c
            if re.fullmatch(rb"OK \d+\n", line):
                return s
            last = "answer %r" % line
        except OSError as e:
            last = str(e)
        s.close()
        time.sleep(0.3)
    raise TestFailure("vsock: no OK to CONNECT %d on %s within %.0f s (last: %s)"
                      % (port, path, VSOCK_TIMEOUT, last))


def check_vsock(sh, vm):
    """Host to guest through the socket mvmd shows, then guest to host
    through a <socket>_<port> listener."""
    path = vm.get("vsock_path")
    check(vm.get("vsock") == VSOCK_CID and path and path.endswith("/lx/vsock.sock"),
          "mvmctl show -o json: vsock %r at %r" % (vm.get("vsock"), path))
    sh.run("(vsockecho listen %d >/dev/null 2>&1 &)" % H2G_PORT)
    s = vsock_connect(path, H2G_PORT, time.monotonic() + VSOCK_TIMEOUT)
    with s:
        s.sendall(b"mvm-h2g")
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s, VSOCK_TIMEOUT)
    check(got == b"mvm-h2g", "vsock host to guest: the guest echoed %r, expected b'mvm-h2g'" % got)
    lpath = "%s_%d" % (path, G2H_PORT)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as lst:
        lst.bind(lpath)
        # the directory gives it the worker's group (docs/guests.md)
        os.chmod(lpath, 0o660)
        lst.listen(1)
        lst.settimeout(VSOCK_TIMEOUT)
        done = {}

        def serve():
            try:
                c, _ = lst.accept()
                with c:
                    done["got"] = recv_all(c, VSOCK_TIMEOUT)
                    c.sendall(b"pong:" + done["got"])
            except OSError as e:
                done["err"] = str(e)
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        rc, out = sh.run("vsockecho connect 2 %d mvm-g2h" % G2H_PORT)
        t.join(VSOCK_TIMEOUT)
    check(done.get("got") == b"mvm-g2h", "vsock guest to host: the listener %s got %r (%s)"
          % (lpath, done.get("got"), done.get("err", "")))
    check(rc == 0 and "vsockecho: got pong:mvm-g2h" in out,
          "vsock guest to host: the guest read %r (status %d)" % (out, rc))


# --- cases -------------------------------------------------------------------------

def case_vmm(tmp):
    """mvm-vmm alone (inside the netns)."""
    kernel = guest_kernel()
    make_tap()
    img = guest_root(tmp)
    cmdline = host_cmdline("mvm.ip=%s/%d" % (GUEST_IP, PREFIX))
    vmm = Vmm(["--kernel", kernel, "--mem", "256M", "--vcpus", "1", "--disk", img,
               "--net", "tap=" + TAP, "--rng",
               "--vsock", "cid=3,uds=" + os.path.join(tmp, "vsock.sock"),
               "--cmdline", cmdline], stdin=subprocess.PIPE)

    def write(b):
        vmm.proc.stdin.write(b)
        vmm.proc.stdin.flush()
    try:
        wait_ready(vmm.out, "mvm-vmm", lambda: vmm.proc.poll() is None)
        sh = Shell(write, vmm.out, "mvm-vmm console")
        check_guest(sh, 1)
        check_rng(sh)
        check_devices(sh, [("0x0002", "virtio_blk"), ("0x0001", "virtio_net"),
                           ("0x0004", "virtio_rng"), ("0x0013", "vmw_vsock_virtio_transport")])
        check(b"can't request region" not in vmm.out.buf,
              "a virtio device was described twice to the guest")
        write(b"poweroff\n")
        vmm.wait(STOP_TIMEOUT)
    finally:
        vmm.kill()
    check(vmm.status == 0, "mvm-vmm exit status %s after poweroff, expected 0" % vmm.status)
    fsck = subprocess.run(["e2fsck", "-fn", img], capture_output=True)
    check(fsck.returncode == 0, "root image not clean after poweroff: %s" % fsck.stdout.decode()[-500:])


class Env:
    pass


def with_daemon(fn):
    env = Env()
    env.daemon = harness.Daemon(harness.env_path("MVMD"), harness.env_path("MVM_VMM"))
    env.ctl = harness.Ctl(harness.env_path("MVMCTL"), env.daemon.sock)
    return harness.run_with_daemon("linux guest", env, fn)


def console(env, name):
    e = dict(os.environ, MVM_SOCKET=env.daemon.sock)
    p = subprocess.Popen([env.ctl.mvmctl, "console", name, "--idle", "1"], env=e,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p, Stream(p.stdout)


def case_mvmd(tmp):
    kernel = guest_kernel()
    make_tap()
    img = guest_root(tmp, add=[guest_tools(tmp)])
    cmdline = host_cmdline("mvm.ip=%s/%d" % (GUEST_IP, PREFIX))
    vcpus = smp_vcpus()

    def fn(env):
        ctl = env.ctl
        ctl.ok("create", "lx", "--kernel", kernel, "--cmdline", cmdline, "--vcpus", str(vcpus),
               "--mem", "256M", "--disk", img, "--net", "tap=" + TAP, "--rng",
               "--vsock", str(VSOCK_CID), "--wait", timeout=60)
        check(ctl.vm("lx")["rng"] is True, "mvmd did not keep the VM's rng: %r" % ctl.vm("lx"))
        p, out = console(env, "lx")

        def write(b):
            p.stdin.write(b)
            p.stdin.flush()
        try:
            # Console output before the attach is in the log, not replayed.
            harness.wait_for(lambda: READY.decode() in ctl.ok("logs", "lx") or
                             ctl.vm("lx")["state"] not in ("starting", "running"),
                             BOOT_TIMEOUT, "the guest to reach userspace", 1)
            text = ctl.ok("logs", "lx")
            if READY.decode() not in text:
                vm = ctl.vm("lx")
                raise TestFailure("guest did not reach userspace: %s; log tail:\n%s" % (
                    diagnose(text) or "state %s, exit %s (%s)" % (
                        vm["state"], vm["exit_status"], vm["exit_reason"]), text[-3000:]))
            sh = Shell(write, out, "mvmctl console")
            rc, got = sh.run("echo typed-$((6*7))")
            check(rc == 0 and "typed-42" in got, "console round trip gave %r" % got)
            check_guest(sh, vcpus)
            # --rng through mvmd reaches the guest as its hwrng.
            check_rng(sh)
            check_devices(sh, [("0x0002", "virtio_blk"), ("0x0001", "virtio_net"),
                               ("0x0004", "virtio_rng"), ("0x0013", "vmw_vsock_virtio_transport")])
            t0 = time.monotonic()
            check_vsock(sh, ctl.vm("lx"))
            log("vsock both ways through mvmd: %.1f s" % (time.monotonic() - t0))
        finally:
            p.stdin.close()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
                raise TestFailure("mvmctl console did not leave 1 s after its input ended")
        t0 = time.monotonic()
        ctl.ok("stop", "lx", "--timeout", str(STOP_TIMEOUT), timeout=STOP_TIMEOUT + 30)
        vm = ctl.wait_state("lx", "stopped", 30)
        took = time.monotonic() - t0
        log("mvmctl stop: %s after %.1f s, exit %s (%s)" % (
            vm["state"], took, vm["exit_status"], vm["exit_reason"]))
        check(vm["exit_status"] == 0, "guest did not power off by itself: exit %s (%s)" % (
            vm["exit_status"], vm["exit_reason"]))
        check(took < STOP_TIMEOUT, "stop took the whole timeout: the guest was killed")
        ctl.ok("rm", "lx")
    return with_daemon(fn)


def case_bad_root(tmp):
    kernel = guest_kernel()
    img = os.path.join(tmp, "zeros.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    vmm = Vmm(["--kernel", kernel, "--mem", "128M", "--disk", img, "--cmdline", host_cmdline()])
    try:
        vmm.wait(BOOT_TIMEOUT)
    except TestFailure:
        raise TestFailure("a guest with a root image that is not ext4 did not end within "
                          "%.0f s" % BOOT_TIMEOUT)
    why = diagnose(vmm.out.text())
    log("diagnosis: %s" % why)
    check(why and "not an ext4" in why, "the console does not say the root is not ext4: %r" % why)


def case_no_poweroff(tmp):
    """A guest that will never power off: its kernel sits in a panic
    (panic=0, a root that is not ext4), deaf to Ctrl-Alt-Del.  (init=/bin/sh
    would not do: the kernel itself reboots on Ctrl-Alt-Del unless init asks
    for the signal.)"""
    kernel = guest_kernel()
    img = os.path.join(tmp, "zeros.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    cmdline = host_cmdline("panic=0")

    def fn(env):
        ctl = env.ctl
        ctl.ok("create", "stuck", "--kernel", kernel, "--cmdline", cmdline, "--mem", "128M",
               "--disk", img, "--wait", timeout=60)
        harness.wait_for(lambda: "end Kernel panic" in ctl.ok("logs", "stuck"),
                         BOOT_TIMEOUT, "the guest kernel to panic", 1)
        log("diagnosis: %s" % diagnose(ctl.ok("logs", "stuck")))
        t0 = time.monotonic()
        ctl.ok("stop", "stuck", "--timeout", "5", timeout=60)
        vm = ctl.wait_state("stuck", ("stopped", "crashed"), 30)
        took = time.monotonic() - t0
        log("stop of a guest deaf to Ctrl-Alt-Del: %s after %.1f s (exit %s: %s)" % (
            vm["state"], took, vm["exit_status"], vm["exit_reason"]))
        check(vm["state"] == "stopped", "state %s after stop" % vm["state"])
        check(4 <= took < 40, "stop took %.1f s with --timeout 5" % took)
        ctl.ok("rm", "stuck")
    return with_daemon(fn)


CASES = {"vmm": case_vmm, "mvmd": case_mvmd, "bad-root": case_bad_root,
         "no-poweroff": case_no_poweroff}
NETNS = ("vmm", "mvmd")


def run_case(case):
    tmp = tempfile.mkdtemp(prefix="mvm-guest-")
    try:
        r = CASES[case](tmp)
        return 0 if r is None else r
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv):
    inner = len(argv) == 3 and argv[1] == "--inner"
    case = argv[2] if inner else (argv[1] if len(argv) == 2 else "")
    if case not in CASES:
        print("usage: guest.py %s" % "|".join(CASES), file=sys.stderr)
        return 2
    try:
        why = kvm_usable()
        if why:
            raise Skip(why)
        if case in NETNS and not inner:
            return in_netns(case)
        r = run_case(case)
        if r == 0:
            log("PASS: linux guest %s" % case)
        return r
    except Skip as e:
        print("SKIP: %s" % e, flush=True)
        return SKIP
    except (TestFailure, OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print("FAIL: %s" % e, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
