#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Linux boot benchmark: mvm-vmm against QEMU -M microvm on the same kernel
(the guest kit's PVH vmlinux, guest/build-kernel.sh) and the same busybox
ext4 root (guest/build-rootfs.sh), side by side.

Per configuration, N boots, each timed from exec to
  - userspace: the root's rcS printing "mvm-guest: userspace up",
  - power-off: the VMM process exiting after the guest's `poweroff`
    (the console types it once userspace is up).
The table gives median and min..max of each and the ratios to mvm-vmm.

Configurations: mvm-vmm; QEMU microvm with KVM (default CPU model: -cpu
host and -cpu max abort setting MSR 0x10a on some hosts); QEMU microvm
under TCG, which is what a user of a host without hardware virtualization
would pick.  A configuration that cannot boot is reported with what it
printed last (on such hosts QEMU+KVM stops at the kernel's int3 self-test,
"KVM internal error. Suberror: 1") instead of numbers.  The host-quirk
options (noxsave) are added for every configuration when
--quirks says so (default: when tests/linux/guest.py's probe says the
guest kernel is emulated); QEMU's rows also get the tsc_early_khz= that
mvm-vmm adds by itself, without which the kernel cannot calibrate its TSC
on a microvm machine.

Run by hand; nothing gates on these numbers (each boot is ~30 s or more
where the guest kernel is emulated):
  bench/linux.py [-n 3] [--vmm build/vmm/mvm-vmm] [--qemu PATH]
                 [--kernel VMLINUX] [--quirks auto|yes|no] [--timeout S]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, ".."))
READY = b"mvm-guest: userspace up"
CMDLINE = "console=ttyS0 root=/dev/vda rw rootfstype=ext4 panic=-1 i8042.noaux"
QUIRKS = "noxsave"
MEM = "256M"


class Boot:
    def __init__(self):
        self.ready = None     # seconds from exec, or None
        self.off = None
        self.status = None
        self.tail = ""


def boot_once(argv, timeout):
    """One boot; types poweroff once userspace is up."""
    b = Boot()
    buf = bytearray()
    cond = threading.Condition()
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)

    def reader():
        while True:
            chunk = os.read(p.stdout.fileno(), 65536)
            with cond:
                if not chunk:
                    cond.notify_all()
                    return
                buf.extend(chunk)
                if b.ready is None and READY in buf:
                    b.ready = time.monotonic() - t0
                # QEMU stays up, paused, after a KVM internal error: no
                # point waiting for the timeout.
                if b.ready is None and b"KVM internal error" in buf:
                    p.kill()
                cond.notify_all()
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    deadline = t0 + timeout
    with cond:
        while b.ready is None and p.poll() is None and time.monotonic() < deadline:
            cond.wait(0.5)
    if b.ready is not None:
        try:
            p.stdin.write(b"\npoweroff\n")
            p.stdin.flush()
        except BrokenPipeError:
            pass
    try:
        b.status = p.wait(max(deadline - time.monotonic(), 1))
        if b.ready is not None:
            b.off = time.monotonic() - t0
    except subprocess.TimeoutExpired:
        p.kill()
        b.status = p.wait()
    th.join(5)
    b.tail = bytes(buf[-4000:]).decode(errors="replace")
    return b


def stats(values):
    return statistics.median(values), min(values), max(values)


def fmt(values):
    if not values:
        return "-"
    med, lo, hi = stats(values)
    return "%.1f s (%.1f..%.1f)" % (med, lo, hi)


def last_words(tail):
    lines = [l.strip() for l in tail.replace("\r", "").split("\n") if l.strip()]
    for l in reversed(lines):
        if "internal error" in l.lower() or "panic" in l.lower():
            return l[:100]
    return lines[-1][:100] if lines else "(no output)"


def host_tsc_khz():
    """KVM's guest TSC frequency (what mvm-vmm passes as tsc_early_khz=),
    else the host's cpu MHz; QEMU's microvm offers the guest no way to
    calibrate the TSC, so its rows get it on the command line too."""
    import fcntl
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR)
        try:
            vm = fcntl.ioctl(kvm, 0xAE01, 0)          # KVM_CREATE_VM
            try:
                return fcntl.ioctl(vm, 0xAEA3, 0)     # KVM_GET_TSC_KHZ
            finally:
                os.close(vm)
        finally:
            os.close(kvm)
    except OSError:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    return 0


def emulated(vmm):
    """The guest test's probe: guest kernel-mode speed with the test guest."""
    bz = os.path.join(TOP, "build", "tests", "guest", "mvmtest.bzImage")
    if not os.path.exists(bz):
        return False
    sys.path.insert(0, os.path.join(TOP, "tests", "kvm"))
    sys.path.insert(0, os.path.join(TOP, "tests", "linux"))
    os.environ.setdefault("MVM_VMM", vmm)
    os.environ.setdefault("MVM_BZIMAGE", bz)
    import linuxboot
    ips, _ = linuxboot.measure_speed("kspeed", 1, 60)
    return ips < linuxboot.MIN_KERNEL_IPS


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=3)
    ap.add_argument("--vmm", default=os.path.join(TOP, "build", "vmm", "mvm-vmm"))
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"))
    ap.add_argument("--kernel")
    ap.add_argument("--quirks", choices=("auto", "yes", "no"), default="auto")
    ap.add_argument("--timeout", type=float, default=600.0)
    a = ap.parse_args()

    kernel = a.kernel or subprocess.run([os.path.join(TOP, "guest", "build-kernel.sh")],
                                        check=True, stdout=subprocess.PIPE).stdout.decode().strip()
    quirks = a.quirks == "yes" or (a.quirks == "auto" and emulated(a.vmm))
    cmdline = CMDLINE + (" " + QUIRKS if quirks else "")
    tmp = tempfile.mkdtemp(prefix="mvm-bench-linux-")
    root = os.path.join(tmp, "root.img")
    configs = [("mvm-vmm", lambda img: [
        a.vmm, "--kernel", kernel, "--mem", MEM, "--disk", img, "--cmdline", cmdline])]
    if a.qemu:
        khz = host_tsc_khz()
        qemu_cmdline = cmdline + (" tsc_early_khz=%d" % khz if khz else "")

        def qemu(accel):
            return lambda img: [
                a.qemu, "-M", "microvm,acpi=on,rtc=off,pit=off,pic=off", "-accel", accel,
                "-m", MEM, "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
                "-serial", "stdio", "-kernel", kernel, "-append", qemu_cmdline,
                "-drive", "id=root,file=%s,format=raw,if=none" % img,
                "-device", "virtio-blk-device,drive=root"]
        configs.append(("qemu microvm kvm", qemu("kvm")))
        configs.append(("qemu microvm tcg", qemu("tcg")))
    else:
        print("qemu-system-x86_64 not found (apt-get install qemu-system-x86): "
              "QEMU rows skipped", file=sys.stderr)

    load_before = os.getloadavg()[0]
    results = {}
    for name, argv_of in configs:
        boots = []
        for i in range(a.n):
            # A fresh root each time: a boot must not depend on the last one's.
            subprocess.run([os.path.join(TOP, "guest", "build-rootfs.sh"), root],
                           check=True, stdout=subprocess.DEVNULL)
            b = boot_once(argv_of(root), a.timeout)
            print("%-18s run %d: userspace %s, power-off %s, status %s" % (
                name, i + 1, "%.1f s" % b.ready if b.ready else "never",
                "%.1f s" % b.off if b.off else "never", b.status), file=sys.stderr, flush=True)
            boots.append(b)
            if b.ready is None:
                break  # it will not do better the next time
        results[name] = boots
    shutil.rmtree(tmp, ignore_errors=True)

    print("\nLinux 6.1 microVM kernel (PVH vmlinux), busybox ext4 root on virtio-blk, "
          "%s, %d boot(s) each" % (MEM, a.n))
    print("command line: %s" % cmdline)
    print("load average: %.1f before, %.1f after\n" % (load_before, os.getloadavg()[0]))
    print("%-18s %-22s %-22s %s" % ("config", "exec -> userspace", "exec -> power-off", "note"))
    base = results.get("mvm-vmm", [])
    base_ready = [b.ready for b in base if b.ready]
    base_off = [b.off for b in base if b.off]
    for name, boots in results.items():
        ready = [b.ready for b in boots if b.ready]
        off = [b.off for b in boots if b.off]
        note = ""
        if not ready:
            note = "no userspace: " + last_words(boots[-1].tail)
        elif name != "mvm-vmm" and base_ready:
            note = "%.2fx / %.2fx mvm-vmm" % (
                statistics.median(ready) / statistics.median(base_ready),
                statistics.median(off) / statistics.median(base_off) if off and base_off else 0)
        print("%-18s %-22s %-22s %s" % (name, fmt(ready), fmt(off), note))
    return 0


if __name__ == "__main__":
    sys.exit(main())
