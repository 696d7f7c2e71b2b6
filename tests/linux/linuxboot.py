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
   saw, and exit status 0 (case "boot").
5. Case "root": build an ext4 root image with busybox and an /sbin/init that
   prints ROOT_MARKER, writes a token the host passes on the command line and
   powers off; the same initramfs, told mvmroot=/dev/vda, also finds ext4
   (built in or loaded), mounts the virtio-blk disk and switch_roots to it.
   The host then reads the token back from the image and fscks it.

Case "early" (see earlyboot.py) instead runs where KVM is emulated.

Usage: linuxboot.py [boot|root]   the case to run (default boot)
       linuxboot.py --prepare-only
                    build the images, print their paths; no speed check, no boot
       linuxboot.py --qemu [boot|root]
                    boot the same images under QEMU TCG (-M microvm, ACPI,
                    virtio-mmio) and check the same markers: validates the
                    images where mvm-vmm cannot finish a Linux boot
Environment: MVM_VMM, MVM_BZIMAGE (test guest), MVM_LINUX_CACHE (directory).
MVM_LINUX_FORCE=1 skips the speed check (to try a boot anyway).
"""

import gzip
import lzma
import os
import secrets
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
ROOT_MARKER = "MVM-LINUX-ROOT-OK"
MODULES = ["virtio_ring", "virtio", "virtio_mmio", "virtio_blk"]
# What mounting an ext4 root needs: Debian's cloud kernel builds these in,
# other kernels as modules (module_load_order tells them apart).
ROOT_MODULES = ["crc16", "mbcache", "jbd2", "crc32c_generic", "ext4"]
CMDLINE = "console=ttyS0 reboot=k panic=-1 rdinit=/init"
ROOT_DEV = "/dev/vda"
ROOT_IMG_SIZE = 32 << 20
TOKEN_FILE = "mvm-root-token"


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
root=
for a in $(cat /proc/cmdline); do
    case "$a" in mvmroot=*) root="${a#mvmroot=}" ;; esac
done
[ -n "$root" ] || poweroff -f
grep -qw ext4 /proc/filesystems || fail "no ext4 in /proc/filesystems"
# virtio_blk probes the disk asynchronously: wait for its node, bounded.
i=0
while [ ! -b "$root" ]; do
    i=$((i + 1))
    [ $i -le 100 ] || fail "$root did not appear in 10 s"
    sleep 0.1
done
mkdir -p /newroot
mount -t ext4 -o rw "$root" /newroot || fail "mount $root"
for d in dev proc sys; do
    mount --move /$d /newroot/$d || fail "move /$d"
done
exec switch_root /newroot /sbin/init
fail "switch_root"
"""

# PID 1 on the ext4 root: prove it is the root, that writes reach the disk,
# then leave the file system clean for the host's fsck.
ROOT_INIT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
fail() { echo "MVM-LINUX-ROOT-FAIL $*"; poweroff -f; }
root=$(awk '$2 == "/" { r = $1 ":" $3 } END { print r }' /proc/mounts)
token=
for a in $(cat /proc/cmdline); do
    case "$a" in mvmtoken=*) token="${a#mvmtoken=}" ;; esac
done
[ -n "$token" ] || fail "no mvmtoken= on the command line"
echo "$token" > /%(token_file)s || fail "write /%(token_file)s"
sync
mount -o remount,ro / || fail "remount / read-only"
echo "%(marker)s pid=$$ root=$root token=$(cat /%(token_file)s)"
poweroff -f
"""


def build_initramfs(cache, busybox, moddir):
    order = module_load_order(moddir, MODULES + ROOT_MODULES)
    log("insmod order: %s" % " ".join(os.path.basename(p) for p in order))
    c = Cpio()
    for d in ("bin", "dev", "proc", "sys", "modules", "newroot"):
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


def build_rootfs(cache, busybox):
    """A fresh ext4 image holding busybox and ROOT_INIT as /sbin/init (the
    boot writes to it, so every run starts from a new one)."""
    tree = os.path.join(cache, "rootfs")
    shutil.rmtree(tree, ignore_errors=True)
    for d in ("bin", "sbin", "dev", "proc", "sys", "tmp"):
        os.makedirs(os.path.join(tree, d))
    shutil.copy(busybox, os.path.join(tree, "bin", "busybox"))
    os.chmod(os.path.join(tree, "bin", "busybox"), 0o755)
    init = os.path.join(tree, "sbin", "init")
    with open(init, "w") as f:
        f.write(ROOT_INIT % {"marker": ROOT_MARKER, "token_file": TOKEN_FILE})
    os.chmod(init, 0o755)
    img = os.path.join(cache, "root.img")
    if os.path.exists(img):
        os.unlink(img)
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    run([mke2fs, "-q", "-F", "-t", "ext4", "-L", "mvmroot", "-d", tree, img,
         "%dk" % (ROOT_IMG_SIZE >> 10)])
    return img


def debugfs_cat(img, name):
    debugfs = shutil.which("debugfs") or "/sbin/debugfs"
    return subprocess.run([debugfs, "-R", "cat /" + name, img], check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True).stdout.strip()


def check_root_image(img, token):
    """What the guest wrote is on the disk, and the file system is clean."""
    got = debugfs_cat(img, TOKEN_FILE)
    check(got == token, "root image holds token %r, expected %r" % (got, token))
    e2fsck = shutil.which("e2fsck") or "/sbin/e2fsck"
    p = subprocess.run([e2fsck, "-fn", img], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    check(p.returncode == 0, "e2fsck -fn %s exited %d:\n%s" % (img, p.returncode, p.stdout))
    log("root image: token %s read back, e2fsck clean" % token)


def check_root_console(out, token):
    check("MVM-LINUX-INIT-FAIL" not in out and "MVM-LINUX-ROOT-FAIL" not in out,
          "init reported a failure")
    check(MARKER in out, "no %s on the console: the initramfs did not run" % MARKER)
    check(ROOT_MARKER in out, "no %s on the console: no switch to the ext4 root" % ROOT_MARKER)
    line = next(l for l in out.splitlines() if ROOT_MARKER in l)
    want = "pid=1 root=%s:ext4 token=%s" % (ROOT_DEV, token)
    check(want in line, "root init said %r, expected %r" % (line.strip(), want))


def root_cmdline(token):
    return "%s mvmroot=%s mvmtoken=%s" % (CMDLINE, ROOT_DEV, token)


def boot_root(vmlinuz, initramfs, img):
    log("=== booting Linux on an ext4 root on virtio-blk")
    token = secrets.token_hex(8)
    t0 = time.monotonic()
    vmm = Vmm(["--kernel", vmlinuz, "--initrd", initramfs, "--mem", "512M",
               "--disk", img, "--cmdline", root_cmdline(token)])
    vmm.wait(BOOT_TIMEOUT)
    log("boot to the ext4 root took %.2f s" % (time.monotonic() - t0))
    check_root_console(vmm.out.text(), token)
    check(vmm.status == 0, "mvm-vmm exit status %d after poweroff, expected 0" % vmm.status)
    check_root_image(img, token)


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
    """(vmlinuz, initramfs, root image, cache dir), fetching what is missing."""
    cache = os.environ.get("MVM_LINUX_CACHE") or os.path.join(os.getcwd(), "linux-cache")
    os.makedirs(cache, exist_ok=True)
    check(shutil.which("apt-get") and shutil.which("dpkg-deb"),
          "apt-get and dpkg-deb are needed to fetch the kernel")
    vmlinuz, moddir = fetch_kernel(cache)
    busybox = find_busybox(cache)
    initramfs = build_initramfs(cache, busybox, moddir)
    return vmlinuz, initramfs, build_rootfs(cache, busybox)


QEMU_TIMEOUT = 900.0
QEMU_GRACE = 20.0
# microvm has no HPET or PM timer, and under TCG on a busy host the PIT
# calibration of the TSC fails, after which the boot stalls: give both rates.
QEMU_CMDLINE = " tsc_early_khz=2000000 lpj=4000000"


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def qemu_boot(cache, vmlinuz, initramfs, cmdline, marker, disk=None):
    """Console output of a QEMU TCG boot: microvm with ACPI, so the kernel
    finds virtio-mmio devices in the DSDT as it does under mvm-vmm.  Stops
    at QEMU's exit, or QEMU_GRACE seconds after marker, or QEMU_TIMEOUT."""
    argv = ["qemu-system-x86_64", "-M", "microvm,acpi=on", "-accel", "tcg",
            "-cpu", "max", "-m", "512M", "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-global", "virtio-mmio.force-legacy=false",
            "-kernel", vmlinuz, "-initrd", initramfs, "-append", cmdline + QEMU_CMDLINE]
    if disk:
        argv += ["-drive", "if=none,id=root,format=raw,file=" + disk,
                 "-device", "virtio-blk-device,drive=root"]
    logfile = os.path.join(cache, "qemu.log")
    log("+ " + " ".join(argv) + "  > " + logfile)
    t0 = time.monotonic()
    seen = None
    with open(logfile, "wb") as f:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        try:
            while p.poll() is None and time.monotonic() - t0 < QEMU_TIMEOUT:
                time.sleep(1)
                if seen is None and marker.encode() in read_bytes(logfile):
                    seen = time.monotonic()
                    log("%s after %.1f s" % (marker, seen - t0))
                if seen is not None and time.monotonic() - seen > QEMU_GRACE:
                    break
        finally:
            if p.poll() is None:
                p.kill()
            p.wait()
    out = read_bytes(logfile).decode("utf-8", "replace")
    log(out)
    log("QEMU ended (status %d) after %.1f s" % (p.returncode, time.monotonic() - t0))
    return out


def qemu_main(case):
    vmlinuz, initramfs, img = prepare()
    cache = os.path.dirname(initramfs)
    if case == "root":
        token = secrets.token_hex(8)
        out = qemu_boot(cache, vmlinuz, initramfs, root_cmdline(token), ROOT_MARKER, img)
        check_root_console(out, token)
        check_root_image(img, token)
    else:
        out = qemu_boot(cache, vmlinuz, initramfs, CMDLINE, MARKER)
        check(MARKER in out and "MVM-LINUX-INIT-FAIL" not in out,
              "no %s under QEMU" % MARKER)
    log("PASS: QEMU TCG booted the %s case" % case)
    return 0


def main(argv):
    args = argv[1:]
    if args == ["--prepare-only"]:
        vmlinuz, initramfs, img = prepare()
        print("kernel %s\ninitramfs %s\nroot %s" % (vmlinuz, initramfs, img))
        return 0
    if args[:1] == ["--qemu"]:
        return qemu_main((args[1:] or ["boot"])[0])
    case = (args or ["boot"])[0]
    if case not in ("boot", "root") or len(args) > 1:
        print("usage: linuxboot.py [boot|root] | --prepare-only | --qemu [boot|root]",
              file=sys.stderr)
        return 2
    why = kvm_usable()
    if why:
        print("SKIP: %s" % why, file=sys.stderr)
        return SKIP
    if os.environ.get("MVM_LINUX_FORCE") == "1":
        log("MVM_LINUX_FORCE=1: not measuring guest speed")
        return run_case(case)
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
    return run_case(case)


def run_case(case):
    vmlinuz, initramfs, img = prepare()
    if case == "root":
        boot_root(vmlinuz, initramfs, img)
        log("PASS: Linux mounted its ext4 root on virtio-blk and wrote to it")
        return 0
    for n in (1, 2):
        boot_linux(vmlinuz, initramfs, n)
    log("PASS: Linux booted with 1 and 2 vCPUs and loaded %s" % ", ".join(MODULES))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (TestFailure, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
