#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Boot the test guest under mvm-vmm and check what it reports.

Usage: kvmtest.py CASE      run one case (meson registers one test per case)
       kvmtest.py --list    print the case names, one per line

Environment: MVM_VMM (the mvm-vmm binary), MVM_BZIMAGE and MVM_ELF (the test
guest images).  The guest's serial protocol is tests/guest/PROTOCOL.md.
Exit status: 0 pass, 1 fail, 77 skip (no usable /dev/kvm).
"""

import os
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

SKIP = 77

# Expected exit statuses (vmm/vmm.h).
EXIT_OK = 0
EXIT_USAGE = 1
EXIT_TRIPLE_FAULT = 3

# Guest memory map facts the e820 check relies on (vmm/arch/x86/layout.h).
EBDA_START = 0x9FC00
HIMEM_START = 0x100000
MMIO_HOLE_START = 0xC0000000
HIGH_RAM_START = 0x100000000
E820_RAM = 1
E820_RESERVED = 2

# A boot that takes longer than this is a hang: kill the VMM and fail.
DEFAULT_TIMEOUT = 30.0

SANITIZER_MARKS = ("Sanitizer", "runtime error:", "LeakSanitizer")


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


class Stream(threading.Thread):
    """Collects one pipe of the child into a buffer, wakes waiters per chunk."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe = pipe
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.eof = False
        self.start()

    def run(self):
        while True:
            chunk = os.read(self.pipe.fileno(), 65536)
            with self.cond:
                if not chunk:
                    self.eof = True
                    self.cond.notify_all()
                    return
                self.buf += chunk
                self.cond.notify_all()

    def text(self):
        with self.cond:
            return self.buf.decode("utf-8", "replace")

    def wait_for(self, needle, timeout):
        """True once needle (bytes) has appeared, False on timeout or EOF."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while needle not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    return False
                self.cond.wait(left)
            return True


class Vmm:
    """One mvm-vmm process with its stdout/stderr captured."""

    def __init__(self, args, stdin=subprocess.DEVNULL):
        self.argv = [os.environ["MVM_VMM"]] + args
        print("+ " + " ".join(self.argv), flush=True)
        self.proc = subprocess.Popen(self.argv, stdin=stdin,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.out = Stream(self.proc.stdout)
        self.err = Stream(self.proc.stderr)
        self.status = None

    def wait(self, timeout=DEFAULT_TIMEOUT):
        """Waits for exit; a VMM still running at the deadline is killed and
        the test fails, so a hung guest never hangs the suite."""
        try:
            self.status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.report()
            raise TestFailure("mvm-vmm still running after %.0f s: killed" % timeout)
        self.out.join(5)
        self.err.join(5)
        self.report()
        return self.status

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.status = self.proc.wait()
        self.out.join(5)
        self.err.join(5)

    def report(self):
        print("exit status: %s" % self.status)
        print("--- stdout ---\n" + self.out.text())
        print("--- stderr ---\n" + self.err.text(), flush=True)

    def lines(self, prefix="MVMTEST "):
        return [l.rstrip("\r") for l in self.out.text().split("\n")
                if l.rstrip("\r").startswith(prefix)]


def run_vmm(args, expect=EXIT_OK, timeout=DEFAULT_TIMEOUT, stdin=subprocess.DEVNULL):
    vmm = Vmm(args, stdin=stdin)
    vmm.wait(timeout)
    check_clean_exit(vmm, expect)
    return vmm


def check_clean_exit(vmm, expect):
    """No signal, no sanitizer report, the expected exit status."""
    check(vmm.status >= 0, "mvm-vmm killed by signal %d" % -vmm.status)
    err = vmm.err.text()
    for mark in SANITIZER_MARKS:
        check(mark not in err, "sanitizer report on stderr")
    fails = [l for l in vmm.lines() if l.startswith("MVMTEST FAIL")]
    check(not fails, "guest reported: %s" % "; ".join(fails))
    check(vmm.status == expect,
          "exit status %d, expected %d" % (vmm.status, expect))


def guest(fmt):
    return os.environ["MVM_BZIMAGE" if fmt == "bz" else "MVM_ELF"]


ENTRY = {"bz": "linux64", "elf": "pvh"}


def boot_args(fmt, scenario, mem="64M", vcpus=1, extra=()):
    return (["--kernel", guest(fmt), "--cmdline", "mvmtest=" + scenario,
             "--mem", mem, "--vcpus", str(vcpus)] + list(extra))


def check_boot_line(vmm, fmt, scenario):
    boot = [l for l in vmm.lines() if l.startswith("MVMTEST boot ")]
    check(len(boot) == 1, "expected one boot line, got %d" % len(boot))
    m = re.match(r"MVMTEST boot entry=(\S+) cmdline=(.*)$", boot[0])
    check(m is not None, "malformed boot line: %r" % boot[0])
    check(m.group(1) == ENTRY[fmt],
          "entry=%s, expected %s" % (m.group(1), ENTRY[fmt]))
    check("mvmtest=" + scenario in m.group(2),
          "cmdline %r lacks mvmtest=%s" % (m.group(2), scenario))


def parse_size(s):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(s[:-1]) * units[s[-1]] if s[-1] in units else int(s)


def expected_e820(mem):
    """The map the VMM promises for `mem` bytes of RAM."""
    low = min(mem, MMIO_HOLE_START)
    e = [(0, EBDA_START, E820_RAM),
         (EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED),
         (HIMEM_START, low - HIMEM_START, E820_RAM)]
    if mem > low:
        e.append((HIGH_RAM_START, mem - low, E820_RAM))
    return e


def parse_e820(vmm):
    entries, done = [], None
    for l in vmm.lines("MVMTEST e820 "):
        f = l.split()
        if f[2] == "done":
            done = int(f[3].split("=")[1])
            continue
        check(len(f) == 5, "malformed e820 line %r" % l)
        entries.append((int(f[2], 16), int(f[3], 16), int(f[4], 0)))
    check(done is not None, "no 'MVMTEST e820 done' line")
    check(done == len(entries),
          "e820 done n=%d but %d entries printed" % (done, len(entries)))
    return entries


def fmt_e820(entries):
    return ", ".join("[%#x +%#x type %d]" % e for e in entries)


# --- cases -----------------------------------------------------------------

def case_hello(fmt, mem="64M"):
    vmm = run_vmm(boot_args(fmt, "hello", mem=mem))
    check_boot_line(vmm, fmt, "hello")
    check("MVMTEST hello" in vmm.lines(), "no 'MVMTEST hello' line")
    got, want = parse_e820(vmm), expected_e820(parse_size(mem))
    check(got == want, "e820 map %s, expected %s" % (fmt_e820(got), fmt_e820(want)))


def case_smp(fmt, n):
    timeout = DEFAULT_TIMEOUT + 2 * n
    vmm = run_vmm(boot_args(fmt, "smp", vcpus=n), timeout=timeout)
    check_boot_line(vmm, fmt, "smp")
    lines = vmm.lines()
    for table in ("madt", "mptable"):
        want = "MVMTEST smp %s cpus=%d" % (table, n)
        check(want in lines, "missing %r" % want)
    aps = [int(m.group(1)) for m in
           (re.match(r"MVMTEST cpu apic=(\d+) up$", l) for l in lines) if m]
    # The BSP is APIC id 0; every AP reports itself once from its own code.
    ids = sorted([0] + aps)
    check(ids == list(range(n)),
          "APIC ids seen (BSP 0 + APs) %s, expected 0..%d once each" % (ids, n - 1))
    want = "MVMTEST smp ok cpus=%d" % n
    check(want in lines, "missing %r" % want)


def case_echo(fmt):
    vmm = Vmm(boot_args(fmt, "echo"), stdin=subprocess.PIPE)
    try:
        check(vmm.out.wait_for(b"MVMTEST echo ready", DEFAULT_TIMEOUT),
              "guest never printed 'MVMTEST echo ready'")
        ready_at = len(vmm.out.buf)
        # One byte at a time, slowly, as a person types: the UART has a
        # one-byte receive buffer and must pace the host.
        for b in b"hello-mvm\nquit\n":
            vmm.proc.stdin.write(bytes([b]))
            vmm.proc.stdin.flush()
            time.sleep(0.02)
        check(vmm.out.wait_for(b"MVMTEST echo done", DEFAULT_TIMEOUT),
              "guest never printed 'MVMTEST echo done'")
    except (TestFailure, OSError) as e:
        vmm.kill()
        vmm.report()
        raise TestFailure("echo: %s" % e)
    vmm.wait()
    check_clean_exit(vmm, EXIT_OK)
    echoed = bytes(vmm.out.buf[ready_at:])
    check(b"hello-mvm" in echoed, "input 'hello-mvm' was not echoed back")


def write_random(path, size, seed):
    data = random.Random(seed).randbytes(size)
    with open(path, "wb") as f:
        f.write(data)
    return data


def case_initrd(fmt, tmp):
    seed = time.time_ns()
    rnd = random.Random(seed)
    size = rnd.randint(1 << 20, 3 << 20)
    path = os.path.join(tmp, "initrd.bin")
    data = write_random(path, size, seed)
    print("initrd: %d random bytes (seed %d)" % (size, seed))
    mem = 64 << 20
    vmm = run_vmm(boot_args(fmt, "initrd", extra=["--initrd", path]))
    check_boot_line(vmm, fmt, "initrd")
    line = [l for l in vmm.lines() if l.startswith("MVMTEST initrd ")]
    check(len(line) == 1, "expected one initrd line, got %d" % len(line))
    m = re.match(r"MVMTEST initrd addr=(?:0x)?([0-9a-fA-F]+) size=(\d+) crc32=([0-9a-fA-F]{8})$",
                 line[0])
    check(m is not None, "malformed initrd line %r" % line[0])
    addr, gsize, crc = int(m.group(1), 16), int(m.group(2)), int(m.group(3), 16)
    check(gsize == size, "guest saw size %d, file has %d" % (gsize, size))
    want = zlib.crc32(data)
    check(crc == want, "guest crc32 %08x, file crc32 %08x" % (crc, want))
    check(addr % 4096 == 0, "initrd at %#x is not page aligned" % addr)
    check(addr >= HIMEM_START and addr + size <= mem,
          "initrd [%#x, %#x) outside RAM above 1 MiB" % (addr, addr + size))


def case_no_initrd(fmt):
    vmm = run_vmm(boot_args(fmt, "initrd"))
    line = [l for l in vmm.lines() if l.startswith("MVMTEST initrd ")]
    check(len(line) == 1 and " size=0 " in line[0] + " ",
          "expected size=0 without --initrd, got %r" % line)


def case_poweroff(fmt):
    vmm = run_vmm(boot_args(fmt, "poweroff"))
    check("MVMTEST poweroff" in vmm.lines(), "no 'MVMTEST poweroff' line")


def case_triple(fmt):
    vmm = run_vmm(boot_args(fmt, "triple"), expect=EXIT_TRIPLE_FAULT)
    check("MVMTEST triple" in vmm.lines(), "no 'MVMTEST triple' line")
    check("triple" in vmm.err.text().lower(),
          "stderr does not give the reason (triple fault)")


def cpu_seconds(pid):
    """utime+stime of the whole process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])   # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def case_idle(fmt):
    """An idle guest costs no host CPU; SIGTERM then ends the VMM by that
    signal (mvm-vmm --help), promptly."""
    vmm = Vmm(boot_args(fmt, "idle", vcpus=2))
    try:
        check(vmm.out.wait_for(b"MVMTEST idle", DEFAULT_TIMEOUT),
              "guest never printed 'MVMTEST idle'")
        time.sleep(0.3)  # let boot-time work settle
        check(vmm.proc.poll() is None, "mvm-vmm exited while the guest idles")
        t0, c0 = time.monotonic(), cpu_seconds(vmm.proc.pid)
        time.sleep(2.0)
        t1, c1 = time.monotonic(), cpu_seconds(vmm.proc.pid)
        check(vmm.proc.poll() is None, "mvm-vmm exited while the guest idles")
        vmm.proc.send_signal(signal.SIGTERM)
        vmm.wait(5)
    finally:
        vmm.kill()
    share = (c1 - c0) / (t1 - t0)
    print("idle guest: %.3f s CPU over %.2f s (%.1f%%)" % (c1 - c0, t1 - t0, 100 * share))
    check(share < 0.05, "idle guest costs %.1f%% CPU, expected near zero" % (100 * share))
    check(vmm.status == -signal.SIGTERM,
          "after SIGTERM: exit status %d, expected death by SIGTERM" % vmm.status)
    for mark in SANITIZER_MARKS:
        check(mark not in vmm.err.text(), "sanitizer report on stderr")


def check_bad_input(args, what):
    vmm = run_vmm(args, expect=EXIT_USAGE, timeout=15)
    err = vmm.err.text().strip()
    check(err != "", "%s: exit 1 but nothing on stderr" % what)
    check("\n" not in err, "%s: stderr is %d lines, expected one" %
          (what, err.count("\n") + 1))
    check("MVMTEST" not in vmm.out.text(), "%s: the guest ran" % what)


def patched_bzimage_too_big(tmp, total):
    """The test bzImage grown to `total` bytes, with syssize covering it, so
    the kernel itself (not just the file) is larger than guest RAM."""
    with open(guest("bz"), "rb") as f:
        img = bytearray(f.read())
    setup_sects = img[0x1F1] or 4
    setup = (setup_sects + 1) * 512
    img += bytes(total - len(img))
    struct.pack_into("<I", img, 0x1F4, (total - setup + 15) // 16)
    path = os.path.join(tmp, "big.bzImage")
    with open(path, "wb") as f:
        f.write(img)
    return path


def patched_bzimage_init_size(tmp, init_size):
    """The test bzImage claiming it needs init_size bytes once running."""
    with open(guest("bz"), "rb") as f:
        img = bytearray(f.read())
    struct.pack_into("<I", img, 0x260, init_size)
    path = os.path.join(tmp, "init-size.bzImage")
    with open(path, "wb") as f:
        f.write(img)
    return path


def patched_elf_too_big(tmp, memsz):
    """The test ELF with its first PT_LOAD segment claiming `memsz` bytes."""
    with open(guest("elf"), "rb") as f:
        img = bytearray(f.read())
    check(img[:4] == b"\x7fELF", "test guest ELF has no ELF magic")
    is64 = img[4] == 2
    if is64:
        phoff, = struct.unpack_from("<Q", img, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", img, 0x36)
    else:
        phoff, = struct.unpack_from("<I", img, 0x1C)
        phentsize, phnum = struct.unpack_from("<HH", img, 0x2A)
    for i in range(phnum):
        ph = phoff + i * phentsize
        if struct.unpack_from("<I", img, ph)[0] == 1:  # PT_LOAD
            if is64:
                struct.pack_into("<Q", img, ph + 0x28, memsz)
            else:
                struct.pack_into("<I", img, ph + 0x14, memsz)
            break
    else:
        raise TestFailure("test guest ELF has no PT_LOAD segment")
    path = os.path.join(tmp, "big.elf")
    with open(path, "wb") as f:
        f.write(img)
    return path


def bad_input_cases(tmp):
    """name -> (argv after mvm-vmm, built lazily in tmp)."""
    def kernel(path, *extra):
        return ["--kernel", path, "--cmdline", "mvmtest=hello"] + list(extra)

    def file_with(name, data):
        p = os.path.join(tmp, name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def truncated(n):
        with open(guest("bz"), "rb") as f:
            img = f.read()
        return file_with("trunc.bzImage", img[:n if n > 0 else len(img) + n])

    def initrd_too_big():
        p = os.path.join(tmp, "big.initrd")
        with open(p, "wb") as f:
            f.truncate(20 << 20)  # sparse: reads back as zeros
        return kernel(guest("bz"), "--mem", "16M", "--initrd", p)

    return {
        "missing-file": lambda: kernel(os.path.join(tmp, "does-not-exist")),
        "empty-file": lambda: kernel(file_with("empty", b"")),
        "truncated-header": lambda: kernel(truncated(0x220)),
        "truncated-payload": lambda: kernel(truncated(-4096)),
        "junk": lambda: kernel(file_with("junk", random.Random(1).randbytes(65536))),
        "vcpus-0": lambda: kernel(guest("bz"), "--vcpus", "0"),
        "vcpus-33": lambda: kernel(guest("bz"), "--vcpus", "33"),
        "mem-1K": lambda: kernel(guest("bz"), "--mem", "1K"),
        "mem-99999T": lambda: kernel(guest("bz"), "--mem", "99999T"),
        "mem-12Q": lambda: kernel(guest("bz"), "--mem", "12Q"),
        "unknown-option": lambda: kernel(guest("bz"), "--no-such-option"),
        "kernel-too-big": lambda: kernel(patched_bzimage_too_big(tmp, 24 << 20),
                                         "--mem", "16M"),
        "init-size-too-big": lambda: kernel(patched_bzimage_init_size(tmp, 32 << 20),
                                            "--mem", "16M"),
        "elf-too-big": lambda: kernel(patched_elf_too_big(tmp, 64 << 20), "--mem", "16M"),
        "initrd-too-big": initrd_too_big,
        "initrd-missing": lambda: kernel(guest("bz"), "--initrd",
                                         os.path.join(tmp, "no-initrd")),
    }


def case_bad_input(tmp, name):
    check_bad_input(bad_input_cases(tmp)[name](), name)


def case_serial_log(tmp):
    full = os.path.join(tmp, "full.log")
    vmm = run_vmm(boot_args("bz", "hello", extra=["--serial-log", full]))
    with open(full, "rb") as f:
        log = f.read()
    check(b"MVMTEST e820 done" in log, "serial log lacks the guest's output")
    console = bytes(vmm.out.buf).replace(b"\r", b"")
    check(log.replace(b"\r", b"") == console, "serial log and console output differ")
    limit = max(64, len(log) // 3)
    capped = os.path.join(tmp, "capped.log")
    vmm = run_vmm(boot_args("bz", "hello", extra=[
        "--serial-log", capped, "--serial-log-max", str(limit)]))
    check(b"MVMTEST e820 done" in vmm.out.buf, "console lost output with a capped log")
    size = os.path.getsize(capped)
    print("serial log: full %d bytes, capped at %d: %d bytes" % (len(log), limit, size))
    check(0 < size <= limit, "capped log is %d bytes, limit %d" % (size, limit))
    with open(capped, "rb") as f:
        kept = f.read().replace(b"\r", b"")
    check(kept in bytes(vmm.out.buf).replace(b"\r", b""),
          "capped log is not a piece of the console output")


def case_serial_file(tmp):
    path = os.path.join(tmp, "console.txt")
    vmm = run_vmm(boot_args("bz", "hello", extra=["--serial", path]))
    check(os.path.exists(path), "--serial FILE did not create the file")
    with open(path, "rb") as f:
        data = f.read()
    check(b"MVMTEST hello" in data, "--serial FILE did not receive the console")
    check(b"MVMTEST" not in vmm.out.buf, "console still went to stdout")


def acpi_rsdp_ok(t):
    check(t[:8] == b"RSD PTR ", "RSDP.dat: signature %r" % t[:8])
    check(sum(t[:20]) % 256 == 0, "RSDP.dat: ACPI 1.0 checksum does not sum to zero")
    if t[15] >= 2:
        length, = struct.unpack_from("<I", t, 20)
        check(length == len(t), "RSDP.dat: length %d, file %d bytes" % (length, len(t)))
        check(sum(t) % 256 == 0, "RSDP.dat: extended checksum does not sum to zero")


def acpi_table_ok(path):
    with open(path, "rb") as f:
        t = f.read()
    name = os.path.basename(path)
    if name == "RSDP.dat":
        return acpi_rsdp_ok(t)
    check(len(t) >= 36, "%s: shorter than an ACPI header" % name)
    check(t[:4].decode("latin-1") == name[:4], "%s: signature %r" % (name, t[:4]))
    length, = struct.unpack_from("<I", t, 4)
    check(length == len(t), "%s: header length %d, file %d bytes" % (name, length, len(t)))
    check(sum(t) % 256 == 0, "%s: checksum does not sum to zero" % name)


def case_dump_acpi(tmp):
    out = os.path.join(tmp, "acpi")
    os.mkdir(out)
    run_vmm(boot_args("bz", "hello", vcpus=2, extra=["--dump-acpi", out]))
    names = sorted(os.listdir(out))
    print("dumped: %s" % " ".join(names))
    for want in ("APIC.dat", "DSDT.dat", "FACP.dat"):
        check(want in names, "--dump-acpi wrote no %s" % want)
    for n in names:
        if n.endswith(".dat"):
            acpi_table_ok(os.path.join(out, n))
    iasl = next((os.path.join(d, "iasl") for d in os.environ.get("PATH", "").split(":")
                 if os.access(os.path.join(d, "iasl"), os.X_OK)), None)
    if iasl:
        r = subprocess.run([iasl, "-d", "DSDT.dat"], cwd=out,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        check(r.returncode == 0, "iasl -d DSDT.dat failed:\n" + r.stdout.decode(errors="replace"))
        with open(os.path.join(out, "DSDT.dsl")) as f:
            dsl = f.read()
        check("_S5" in dsl, "DSDT has no \\_S5 object")


CASES = {
    "bz-hello": lambda tmp: case_hello("bz"),
    "elf-hello": lambda tmp: case_hello("elf"),
    "bz-hello-16m": lambda tmp: case_hello("bz", mem="16M"),
    "bz-hello-3g": lambda tmp: case_hello("bz", mem="3G"),     # low RAM ends at the hole
    "elf-hello-4g": lambda tmp: case_hello("elf", mem="4G"),   # 1 GiB above 4 GiB
    "bz-smp-1": lambda tmp: case_smp("bz", 1),
    "bz-smp-4": lambda tmp: case_smp("bz", 4),
    "elf-smp-1": lambda tmp: case_smp("elf", 1),
    "elf-smp-4": lambda tmp: case_smp("elf", 4),
    "bz-smp-32": lambda tmp: case_smp("bz", 32),
    "bz-echo": lambda tmp: case_echo("bz"),
    "bz-initrd": lambda tmp: case_initrd("bz", tmp),
    "elf-initrd": lambda tmp: case_initrd("elf", tmp),
    "bz-no-initrd": lambda tmp: case_no_initrd("bz"),
    "bz-poweroff": lambda tmp: case_poweroff("bz"),
    "elf-poweroff": lambda tmp: case_poweroff("elf"),
    "bz-triple": lambda tmp: case_triple("bz"),
    "bz-idle": lambda tmp: case_idle("bz"),
    "serial-log": case_serial_log,
    "serial-file": case_serial_file,
    "dump-acpi": case_dump_acpi,
}


# One case per bad input, so a failure names the input.
for _name in bad_input_cases("").keys():
    CASES["bad-" + _name] = lambda tmp, n=_name: case_bad_input(tmp, n)


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return "cannot open /dev/kvm: %s" % e.strerror
    os.close(fd)
    return None


class Skip(Exception):
    """A case that cannot run on this machine: the script exits 77."""


def run_main(argv, cases, tmp_prefix, skip_why=None, setup=None):
    """The main() of every script here: --list for meson, then one CASE in
    a fresh temporary directory.  skip_why() names a missing prerequisite
    beyond /dev/kvm (a skip); setup() returns an exit status to stop with.
    0 on PASS, 1 on FAIL, 2 on a usage error, 77 on SKIP."""
    prog = os.path.basename(argv[0])
    if len(argv) == 2 and argv[1] == "--list":
        print("\n".join(cases))
        return 0
    if len(argv) != 2 or argv[1] not in cases:
        print("usage: %s --list | CASE (one of: %s)" % (prog, " ".join(cases)),
              file=sys.stderr)
        return 2
    why = kvm_usable() or (skip_why() if skip_why else None)
    if why:
        print("SKIP: %s" % why, file=sys.stderr)
        return SKIP
    rc = setup() if setup else None
    if rc is not None:
        return rc
    with tempfile.TemporaryDirectory(prefix=tmp_prefix) as tmp:
        try:
            cases[argv[1]](tmp)
        except Skip as e:
            print("SKIP %s: %s" % (argv[1], e), file=sys.stderr)
            return SKIP
        except TestFailure as e:
            print("FAIL %s: %s" % (argv[1], e), flush=True)
            return 1
    print("PASS %s" % argv[1])
    return 0


def need_files():
    for var in ("MVM_VMM", "MVM_BZIMAGE", "MVM_ELF"):
        if not os.path.exists(os.environ.get(var, "")):
            print("FAIL: %s=%r does not exist" % (var, os.environ.get(var)), file=sys.stderr)
            return 1
    return None


def main(argv):
    return run_main(argv, CASES, "mvm-kvmtest-", setup=need_files)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
