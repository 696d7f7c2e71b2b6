#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Early boot of Debian's cloud kernel under mvm-vmm: runs even where KVM
only emulates guest kernel code (about 1M instructions/s).

A bzImage would spend that time decompressing itself, so this extracts the
ELF vmlinux (vmlinux.py) and boots it through its PVH note straight into the
kernel with earlyprintk on COM1.  Within seconds the kernel prints what it
made of the machine mvm-vmm describes: the e820 map, the ACPI tables, the
IOAPIC and CPUs from the MADT, and a command line without virtio-mmio
entries (the DSDT has them).
The test waits for the last of those lines, kills the VM (a full boot is
out of reach here) and checks each against what the VMM promises.

Environment: MVM_VMM, MVM_LINUX_CACHE (directory; the kernel is downloaded
into it with apt-get once and reused).  Exit: 0 pass, 1 fail, 77 skip (no
/dev/kvm, or no kernel: apt-get download failed).
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "kvm"))
sys.path.insert(0, HERE)
from kvmtest import (Vmm, TestFailure, SANITIZER_MARKS, check, kvm_usable,  # noqa: E402
                     expected_e820, parse_size)
import linuxboot  # noqa: E402
import vmlinux  # noqa: E402

SKIP = 77
MEM = "512M"
VCPUS = 2
DISK_SIZE = 1 << 20
# tsc_early_khz: skip TSC calibration, slow when emulated.  i8042.noaux:
# mvm's i8042 has no mouse port to probe.
CMDLINE = ("console=ttyS0 earlyprintk=ttyS0 loglevel=8 tsc_early_khz=2100000 "
           "i8042.noaux")
# The last line waited for, and how long for: about 10 s on an emulating
# host, far less with hardware virtualization.
LAST = "smpboot: Allowing %d CPUs" % VCPUS
TIMEOUT = 180.0

# Layout facts (vmm/arch/x86/layout.h) the kernel's view must match.
ACPI_RSDP = 0xE0000
IOAPIC = 0xFEC00000
# The kernel and the ACPI CA complaining about the firmware: any is a bug.
COMPLAINTS = ("ACPI BIOS Error", "ACPI Error", "ACPI Warning", "[Firmware Bug]",
              "Incorrect checksum", "KVM internal error", "Kernel panic")


def log(msg):
    print(msg, flush=True)


def fetch_vmlinux(cache):
    """The cached ELF vmlinux, downloading and extracting it once; None when
    the kernel cannot be downloaded."""
    try:
        vmlinuz, _ = linuxboot.fetch_kernel(cache)
    except (subprocess.CalledProcessError, TestFailure) as e:
        print("SKIP: cannot fetch Debian's kernel: %s" % e, file=sys.stderr)
        return None
    out = os.path.join(cache, os.path.basename(vmlinuz).replace("vmlinuz", "vmlinux"))
    return vmlinux.extract_file(vmlinuz, out)


def boot(kernel, disk):
    """Console text up to LAST (or the VM's end, or the timeout)."""
    vmm = Vmm(["--kernel", kernel, "--mem", MEM, "--vcpus", str(VCPUS),
               "--disk", disk, "--rng", "--cmdline", CMDLINE])
    t0 = time.monotonic()
    try:
        reached = vmm.out.wait_for(LAST.encode(), TIMEOUT)
        # The rest of that line, so its CPU counts are checked whole.
        vmm.out.wait_for(b"hotplug CPUs", 5)
        took = time.monotonic() - t0
    finally:
        vmm.kill()
    vmm.report()
    err = vmm.err.text()
    check(not any(m in err for m in SANITIZER_MARKS), "sanitizer report on stderr")
    check(reached, "no %r within %.0f s" % (LAST, TIMEOUT))
    log("reached %r after %.1f s" % (LAST, took))
    return [l.rstrip("\r") for l in vmm.out.text().split("\n")]


def find(lines, pattern, what):
    """The first match of regex pattern; fails naming what was expected."""
    for l in lines:
        m = re.search(pattern, l)
        if m:
            return m
    raise TestFailure("kernel never printed %s (/%s/)" % (what, pattern))


def check_e820(lines):
    got = []
    for l in lines:
        m = re.search(r"BIOS-e820: \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\] (\w+)", l)
        if m:
            start, end = int(m.group(1), 16), int(m.group(2), 16)
            got.append((start, end - start + 1, {"usable": 1, "reserved": 2}.get(m.group(3), 0)))
    want = expected_e820(parse_size(MEM))
    check(got == want, "kernel's e820 map %s, expected %s" % (got, want))


def check_acpi(lines):
    find(lines, r"ACPI: RSDP 0x0*%X " % ACPI_RSDP, "the RSDP at its layout.h address")
    for sig in ("XSDT", "FACP", "DSDT", "APIC"):
        find(lines, r"ACPI: %s 0x[0-9A-F]+ [0-9A-F]+ \(v\d\d MVM " % sig, "the %s table" % sig)
    find(lines, r"IOAPIC\[0\]: apic_id \d+, version \d+, address 0x%x, GSI 0-23" % IOAPIC,
         "the IOAPIC from the MADT")
    find(lines, r"ACPI: INT_SRC_OVR \(bus 0 bus_irq 9 global_irq 9 high level\)",
         "the SCI override")
    find(lines, r"Using ACPI \(MADT\) for SMP configuration", "SMP from the MADT")
    m = find(lines, r"smpboot: Allowing (\d+) CPUs, (\d+) hotplug CPUs", "the CPU count")
    check(m.group(1) == str(VCPUS) and m.group(2) == "0",
          "kernel allows %s CPUs (%s hotplug), expected %d (0)" % (m.group(1), m.group(2), VCPUS))


def check_lines(lines):
    find(lines, r"Linux version \d+\.\d+", "its version banner")
    find(lines, r"Hypervisor detected: KVM", "KVM as its hypervisor")
    m = find(lines, r"^(?:\[[ .0-9]+\] )?Command line: (.*)$", "its command line")
    # With ACPI on, the disk and rng are DSDT devices only: Linux refuses a
    # device also named by virtio_mmio.device= (-EBUSY).
    check("virtio_mmio.device=" not in m.group(1),
          "command line describes virtio devices the DSDT already has: %r" % m.group(1))
    check_e820(lines)
    check_acpi(lines)
    bad = [l for l in lines if any(c in l for c in COMPLAINTS)]
    check(not bad, "kernel complained: %s" % "; ".join(bad))


def main():
    why = kvm_usable()
    if why:
        print("SKIP: %s" % why, file=sys.stderr)
        return SKIP
    cache = os.environ["MVM_LINUX_CACHE"]
    os.makedirs(cache, exist_ok=True)
    kernel = fetch_vmlinux(cache)
    if kernel is None:
        return SKIP
    disk = os.path.join(cache, "early-disk.img")
    with open(disk, "wb") as f:
        f.truncate(DISK_SIZE)
    check_lines(boot(kernel, disk))
    log("PASS: the kernel's early view of the machine matches the VMM's layout")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (TestFailure, OSError, vmlinux.ExtractError) as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
