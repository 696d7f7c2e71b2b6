#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Boot Debian's cloud kernel under mvm-vmm with a busybox initramfs.

1. Measure how fast guest kernel-mode (CPL0) code runs, with the test guest's
   kspeed scenario.  Where KVM only emulates it (no hardware virtualization
   for the guest), a Linux boot would take hours: exit 77 before downloading
   anything.
2. Fetch linux-image-cloud-amd64 (and the versioned package it depends on)
   with apt-get download, and use the installed static busybox or fetch
   busybox-static, into MVM_LINUX_CACHE.
3. Build a gzip'd newc initramfs whose /init mounts proc/sys/dev, loads the
   kernel's own virtio modules in modules.dep order, prints MARKER and powers
   off.
4. Boot it with 1 and 2 vCPUs and check the marker, the CPU count the guest
   saw, and exit status 0.

Environment: MVM_VMM, MVM_BZIMAGE (test guest), MVM_LINUX_CACHE (directory).
MVM_LINUX_FORCE=1 skips the speed check (to try a boot anyway).
Options: --prepare-only builds the initramfs and prints the kernel and
initramfs paths without the speed check or a boot (for debugging with QEMU).
"""

import gzip
import lzma
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kvm"))
from kvmtest import Vmm, TestFailure, check, kvm_usable  # noqa: E402

SKIP = 77
MARKER = "MVM-LINUX-INIT-OK"
# Below this, guest kernel code is being emulated instruction by instruction.
MIN_KERNEL_IPS = 50e6
KSPEED_MILLIONS = 1           # 2 instructions per iteration
KSPEED_TIMEOUT = 60.0
USPEED_MILLIONS = 100         # for the log: what native speed looks like
USPEED_TIMEOUT = 20.0
BOOT_TIMEOUT = 180.0
MODULES = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk"]
CMDLINE = "console=ttyS0 reboot=k panic=-1 rdinit=/init"


def log(msg):
    print(msg, flush=True)


def measure_speed(mode, n, timeout):
    """Guest instructions per second in kernel (kspeed) or user (uspeed)
    mode, from the host's view of the time between the guest's 'start' and
    'done' lines; n million iterations of a 2-instruction loop.  Returns
    (speed, True) when the loop did not finish within timeout."""
    vmm = Vmm(["--kernel", os.environ["MVM_BZIMAGE"], "--mem", "32M",
               "--cmdline", "mvmtest=%s:%d" % (mode, n)])
    try:
        check(vmm.out.wait_for(b"MVMTEST %s start" % mode.encode(), 30),
              "test guest never printed 'MVMTEST %s start'" % mode)
        t0 = time.monotonic()
        done = vmm.out.wait_for(b"MVMTEST %s done" % mode.encode(), timeout)
        t1 = time.monotonic()
    finally:
        vmm.kill()
    if not done:
        vmm.report()
        return 2e6 * n / timeout, True
    return 2e6 * n / max(t1 - t0, 1e-6), False


def run(argv, **kw):
    log("+ " + " ".join(argv))
    return subprocess.run(argv, check=True, **kw)


def apt_download(pkg, cache):
    """Path of the .deb for pkg in cache, downloading it if needed."""
    debs = [f for f in os.listdir(cache) if f.startswith(pkg + "_") and f.endswith(".deb")]
    if not debs:
        run(["apt-get", "download", pkg], cwd=cache)
        debs = [f for f in os.listdir(cache) if f.startswith(pkg + "_") and f.endswith(".deb")]
    check(len(debs) >= 1, "apt-get download %s left no .deb in %s" % (pkg, cache))
    return os.path.join(cache, sorted(debs)[-1])


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


def extract(deb, dest):
    if not os.path.isdir(dest):
        run(["dpkg-deb", "-x", deb, dest + ".tmp"])
        os.rename(dest + ".tmp", dest)
    return dest


def fetch_kernel(cache):
    """(vmlinuz path, modules dir) of the newest Debian cloud kernel."""
    meta = apt_download("linux-image-cloud-amd64", cache)
    # The metapackage only depends on the versioned image that has the files.
    dep = deb_field(meta, "Depends").split(",")[0].split("|")[0].split()[0]
    check(dep.startswith("linux-image-"), "unexpected dependency %r" % dep)
    root = extract(apt_download(dep, cache), os.path.join(cache, dep))
    boot = os.path.join(root, "boot")
    vmlinuz = [f for f in os.listdir(boot) if f.startswith("vmlinuz-")]
    check(len(vmlinuz) == 1, "%s: expected one vmlinuz, found %s" % (dep, vmlinuz))
    version = vmlinuz[0][len("vmlinuz-"):]
    return os.path.join(boot, vmlinuz[0]), os.path.join(root, "lib", "modules", version)


def is_static_elf(path):
    """True for an ELF executable without a PT_INTERP (dynamic loader)."""
    with open(path, "rb") as f:
        hdr = f.read(64)
        if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
            return False
        phoff = int.from_bytes(hdr[0x20:0x28], "little")
        phentsize = int.from_bytes(hdr[0x36:0x38], "little")
        phnum = int.from_bytes(hdr[0x38:0x3A], "little")
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            if int.from_bytes(f.read(4), "little") == 3:  # PT_INTERP
                return False
    return True


def find_busybox(cache):
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(p) and is_static_elf(p):
            return p
    root = extract(apt_download("busybox-static", cache), os.path.join(cache, "busybox-static"))
    p = os.path.join(root, "bin", "busybox")
    check(is_static_elf(p), "%s is not a static executable" % p)
    return p


def read_modules_dep(moddir):
    """modules.dep, made with depmod where the package shipped none (it is
    normally generated when the package is installed)."""
    if not os.path.exists(os.path.join(moddir, "modules.dep")):
        depmod = shutil.which("depmod") or "/sbin/depmod"
        root = os.path.dirname(os.path.dirname(os.path.dirname(moddir)))
        run([depmod, "-b", root, os.path.basename(moddir)])
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path] = rest.split()
    return deps


def module_name(path):
    base = os.path.basename(path)
    return base[:base.index(".ko")].replace("-", "_")


def module_load_order(moddir, wanted):
    """Module files to insmod, dependencies first; built-ins are skipped."""
    deps = read_modules_dep(moddir)
    by_name = {module_name(p): p for p in deps}
    with open(os.path.join(moddir, "modules.builtin")) as f:
        builtin = {module_name(l.strip()) for l in f if l.strip()}
    order = []

    def visit(path):
        if path in order:
            return
        for d in deps[path]:
            visit(d)
        order.append(path)

    for name in wanted:
        if name in builtin:
            log("module %s is built into the kernel" % name)
            continue
        check(name in by_name, "module %s is neither built in nor in modules.dep" % name)
        visit(by_name[name])
    return order


def module_bytes(path):
    """Uncompressed .ko: busybox insmod may not read compressed modules."""
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-dc", path], check=True, stdout=subprocess.PIPE).stdout
    if path.endswith(".gz"):
        return gzip.decompress(data)
    return data


class Cpio:
    """Minimal writer of the newc format the kernel unpacks into rootfs."""

    def __init__(self):
        self.out = bytearray()
        self.ino = 1

    def add(self, name, mode, data=b"", rdev=(0, 0)):
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(name) + 1, 0]
        self.ino += 1
        self.out += b"070701" + b"".join(b"%08X" % v for v in fields)
        self.out += name.encode() + b"\0"
        self.pad()
        self.out += data
        self.pad()

    def pad(self):
        self.out += bytes(-len(self.out) % 4)

    def finish(self):
        self.add("TRAILER!!!", 0)
        return bytes(self.out)


INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() { echo "MVM-LINUX-INIT-FAIL $*"; poweroff -f; }
for m in $(cat /modules/order); do
    insmod /modules/$m || fail "insmod $m"
done
for m in %(names)s; do
    [ -d /sys/module/$m ] || fail "module $m not present"
done
echo "%(marker)s cpus=$(grep -c ^processor /proc/cpuinfo) modules=%(names_csv)s"
poweroff -f
"""


def build_initramfs(cache, busybox, moddir):
    order = module_load_order(moddir, MODULES)
    log("insmod order: %s" % " ".join(os.path.basename(p) for p in order))
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "modules"):
        c.add(d, 0o40755)
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    c.add("dev/console", 0o20600, rdev=(5, 1))
    with open(busybox, "rb") as f:
        c.add("bin/busybox", 0o100755, f.read())
    names = []
    for p in order:
        name = module_name(p)
        names.append(name)
        c.add("modules/%s.ko" % name, 0o100644, module_bytes(os.path.join(moddir, p)))
    c.add("modules/order", 0o100644, "".join("%s.ko\n" % n for n in names).encode())
    init = INIT % {"names": " ".join(MODULES), "names_csv": ",".join(MODULES),
                   "marker": MARKER}
    c.add("init", 0o100755, init.encode())
    path = os.path.join(cache, "initramfs.cpio.gz")
    with open(path + ".tmp", "wb") as f:
        f.write(gzip.compress(c.finish(), 6))
    os.rename(path + ".tmp", path)
    return path


def boot_linux(vmlinuz, initramfs, vcpus):
    log("=== booting Linux with %d vCPU(s)" % vcpus)
    t0 = time.monotonic()
    vmm = Vmm(["--kernel", vmlinuz, "--initrd", initramfs, "--mem", "512M",
               "--vcpus", str(vcpus), "--cmdline", CMDLINE])
    vmm.wait(BOOT_TIMEOUT)
    log("boot with %d vCPU(s) took %.2f s" % (vcpus, time.monotonic() - t0))
    out = vmm.out.text()
    check("MVM-LINUX-INIT-FAIL" not in out, "init reported a failure")
    check(MARKER in out, "no %s on the console" % MARKER)
    line = next(l for l in out.splitlines() if MARKER in l)
    check(" cpus=%d " % vcpus in line + " ", "guest saw %r, expected cpus=%d" % (line, vcpus))
    check(vmm.status == 0, "mvm-vmm exit status %d after poweroff, expected 0" % vmm.status)


def prepare():
    cache = os.environ.get("MVM_LINUX_CACHE") or os.path.join(os.getcwd(), "linux-cache")
    os.makedirs(cache, exist_ok=True)
    check(shutil.which("apt-get") and shutil.which("dpkg-deb"),
          "apt-get and dpkg-deb are needed to fetch the kernel")
    vmlinuz, moddir = fetch_kernel(cache)
    initramfs = build_initramfs(cache, find_busybox(cache), moddir)
    return vmlinuz, initramfs


def main(argv):
    if argv[1:] == ["--prepare-only"]:
        vmlinuz, initramfs = prepare()
        print("kernel %s\ninitramfs %s" % (vmlinuz, initramfs))
        return 0
    why = kvm_usable()
    if why:
        print("SKIP: %s" % why, file=sys.stderr)
        return SKIP
    if os.environ.get("MVM_LINUX_FORCE") == "1":
        log("MVM_LINUX_FORCE=1: not measuring guest speed")
        return boot_all()
    ips, timed_out = measure_speed("kspeed", KSPEED_MILLIONS, KSPEED_TIMEOUT)
    log("guest kernel-mode speed: %s%.1f million instructions/s" %
        ("< " if timed_out else "", ips / 1e6))
    uips, u_timed_out = measure_speed("uspeed", USPEED_MILLIONS, USPEED_TIMEOUT)
    log("guest user-mode speed:   %s%.1f million instructions/s" %
        ("< " if u_timed_out else "", uips / 1e6))
    if ips < MIN_KERNEL_IPS:
        print("SKIP: guest kernel-mode code runs at %.1fM instr/s (< %.0fM; user mode "
              "%.0fM): KVM is emulating it, so a Linux boot would take hours"
              % (ips / 1e6, MIN_KERNEL_IPS / 1e6, uips / 1e6), file=sys.stderr)
        return SKIP
    return boot_all()


def boot_all():
    vmlinuz, initramfs = prepare()
    for n in (1, 2):
        boot_linux(vmlinuz, initramfs, n)
    log("PASS: Linux booted with 1 and 2 vCPUs and loaded %s" % ", ".join(MODULES))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (TestFailure, subprocess.CalledProcessError) as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
