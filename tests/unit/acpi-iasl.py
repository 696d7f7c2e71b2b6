#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Cross-check mvm's ACPI tables with ACPICA's iasl.

usage: acpi-iasl.py DUMP_TOOL [IASL]

DUMP_TOOL is test-acpi built as acpi-dump-tables: `DUMP_TOOL --dump DIR NCPU
NDEV` writes RSDP.dat, XSDT.dat, FACP.dat, APIC.dat and DSDT.dat.  For each
table this disassembles it with `iasl -d` (failing on any error, warning or
checksum complaint), checks the decoded content, then recompiles the
disassembly and requires the same bytes back.  iasl 20200925 cannot
disassemble a lone RSDP, so the RSDP is rebuilt from its fields with iasl's
data-table compiler instead, which recomputes both checksums.
Exits 77 (skipped) when iasl is not installed.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

CONFIGS = [(1, 3), (32, 3), (4, 16)]
TABLES = ["XSDT", "FACP", "APIC", "DSDT"]
BAD_OUTPUT = re.compile(r"error|warning|incorrect checksum|invalid", re.I)

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg, file=sys.stderr)


def run_iasl(iasl, args, cwd, what):
    p = subprocess.run([iasl] + args, cwd=cwd, capture_output=True, text=True)
    out = p.stdout + p.stderr
    # The banner and "0 Errors, 0 Warnings" summary are not complaints.
    text = re.sub(r"\d+ Errors?, \d+ Warnings?", "", out)
    if p.returncode != 0 or BAD_OUTPUT.search(text):
        fail("%s: iasl %s exited %d:\n%s" % (what, " ".join(args), p.returncode, out))
        return False
    return True


def same_except_header_and_endtags(ours, theirs):
    """iasl stamps its own compiler id/revision (so the checksum changes) and
    writes 0 as every resource template's end-tag checksum, which ACPI
    allows; every other byte must match."""
    if len(ours) != len(theirs):
        return "length %d != %d" % (len(ours), len(theirs))
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a == b or i == 9 or 28 <= i < 36:
            continue
        if i > 0 and ours[i - 1] == theirs[i - 1] == 0x79 and b == 0:
            continue
        return "byte 0x%x: ours 0x%02x, iasl 0x%02x" % (i, a, b)
    return None


def check_table(iasl, d, sig, ncpu, ndev):
    what = "%s (%d cpus, %d devs)" % (sig, ncpu, ndev)
    if not run_iasl(iasl, ["-d", sig + ".dat"], d, what):
        return
    dsl = open(os.path.join(d, sig + ".dsl")).read()
    if sig == "APIC":
        n = dsl.count("[Processor Local APIC]")
        if n != ncpu:
            fail("%s: %d local APICs, want %d" % (what, n, ncpu))
    elif sig == "FACP":
        if not re.search(r"Hardware Reduced \(V5\) : 1", dsl):
            fail(what + ": not hardware-reduced")
        if not re.search(r"Sleep Control Register.*\n.*SystemIO", dsl):
            fail(what + ": sleep control register is not in I/O space")
    elif sig == "DSDT":
        if "_S5_" not in dsl or dsl.count('"LNRO0005"') != ndev:
            fail("%s: _S5_ or %d LNRO0005 devices missing" % (what, ndev))
    # Round trip: the disassembly must compile back to the same table.
    # -oa: no optimizations, so iasl keeps our name paths as written.
    if not run_iasl(iasl, ["-oa", sig + ".dsl"], d, what + " recompile"):
        return
    ours = open(os.path.join(d, sig + ".dat"), "rb").read()
    theirs = open(os.path.join(d, sig + ".aml"), "rb").read()
    diff = same_except_header_and_endtags(ours, theirs)
    if diff:
        fail("%s: recompiled table differs: %s" % (what, diff))


def check_rsdp(iasl, d):
    raw = open(os.path.join(d, "RSDP.dat"), "rb").read()
    if len(raw) != 36:
        fail("RSDP: %d bytes" % len(raw))
        return
    sig, _, oem, rev, rsdt, length, xsdt, _, _ = struct.unpack("<8sB6sBIIQB3s", raw)
    src = "\n".join([
        '[0008] Signature : "%s"' % sig.decode(),
        "[0001] Checksum : 00",
        '[0006] Oem ID : "%s"' % oem.decode(),
        "[0001] Revision : %02X" % rev,
        "[0004] RSDT Address : %08X" % rsdt,
        "[0004] Length : %08X" % length,
        "[0008] XSDT Address : %016X" % xsdt,
        "[0001] Extended Checksum : 00",
        "[0003] Reserved : 000000", ""])
    with open(os.path.join(d, "rsdp-src.asl"), "w") as f:
        f.write(src)
    if not run_iasl(iasl, ["rsdp-src.asl"], d, "RSDP rebuild"):
        return
    theirs = open(os.path.join(d, "rsdp-src.aml"), "rb").read()
    if theirs != raw:
        fail("RSDP: iasl builds %s, we wrote %s" % (theirs.hex(), raw.hex()))


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    tool = sys.argv[1]
    iasl = sys.argv[2] if len(sys.argv) == 3 else shutil.which("iasl")
    if not iasl or not os.access(iasl, os.X_OK):
        print("skipped: iasl (acpica-tools) is not installed", file=sys.stderr)
        return 77
    for ncpu, ndev in CONFIGS:
        with tempfile.TemporaryDirectory(prefix="acpi-iasl-") as d:
            p = subprocess.run([tool, "--dump", d, str(ncpu), str(ndev)])
            if p.returncode != 0:
                fail("dump tool exited %d for %d cpus" % (p.returncode, ncpu))
                continue
            check_rsdp(iasl, d)
            for sig in TABLES:
                check_table(iasl, d, sig, ncpu, ndev)
        print("%d cpus, %d devices: %s" % (ncpu, ndev, "FAIL" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
