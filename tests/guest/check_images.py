#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Unit test for the test guest images: bzImage setup header, PVH note,
entry points, the link-time IDT, and no instruction that stops KVM on hosts without hardware
virtualization (SIMD, xsave/xrstor, cmpxchg16b, int3)."""
import os
import re
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from elfimg import Elf  # noqa: E402

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print('FAIL: ' + what, file=sys.stderr)


def check_elf(elf):
    syms = elf.symbols()
    check(elf.type == 2 and elf.machine == 62, 'ELF is an x86-64 executable')
    check(elf.entry == syms.get('elf64_entry'), 'e_entry is elf64_entry')
    loads = elf.loads()
    check(loads and min(p for p, _, _ in loads) == 0x100000, 'ELF loads at 1 MiB')
    pvh = [d for n, t, d in elf.notes() if n == b'Xen' and t == 18]
    check(len(pvh) == 1, 'one XEN_ELFNOTE_PHYS32_ENTRY note')
    if pvh:
        entry = struct.unpack_from('<I', pvh[0])[0]
        check(entry == syms.get('pvh_entry'), 'PVH note names pvh_entry')
        check(any(p <= entry < p + len(b) for p, b, _ in loads), 'PVH entry is in a loaded segment')
    return syms


def check_bzimage(bz, elf, syms):
    hdr = lambda fmt, off: struct.unpack_from('<' + fmt, bz, off)[0]  # noqa: E731
    setup_sects = hdr('B', 0x1f1)
    pm_off = 512 * (1 + setup_sects)
    check(setup_sects >= 1, 'setup_sects')
    check(hdr('H', 0x1fe) == 0xaa55, 'boot_flag')
    check(bz[0x200] == 0xeb, 'jump at 0x200')
    check(bz[0x202:0x206] == b'HdrS', 'HdrS magic')
    check(hdr('H', 0x206) == 0x020f, 'protocol 2.15')
    check(hdr('B', 0x211) & 1, 'loadflags LOADED_HIGH')
    check(hdr('I', 0x214) == 0x100000, 'code32_start')
    check(hdr('I', 0x22c) >= 0x0fffffff, 'initrd_addr_max')
    check(hdr('I', 0x238) >= 255, 'cmdline_size')
    check(hdr('B', 0x234) == 0, 'not relocatable')
    check(hdr('H', 0x236) & 1, 'XLF_KERNEL_64')
    check(hdr('Q', 0x258) == 0x100000, 'pref_address')
    pm = bz[pm_off:]
    check(hdr('I', 0x1f4) == (len(pm) + 15) // 16, 'syssize matches the payload')
    mem_end = max(p + m for p, _, m in elf.loads())
    check(hdr('I', 0x260) >= mem_end - 0x100000, 'init_size covers .bss and stacks')
    check(hdr('I', 0x230) and 0x100000 % hdr('I', 0x230) == 0, 'kernel_alignment')
    check(syms.get('startup_64') == 0x100200, 'startup_64 at payload offset 0x200')
    for p, b, _ in elf.loads():
        check(pm[p - 0x100000:p - 0x100000 + len(b)] == b, 'payload matches ELF segment at %x' % p)


def guest_h_vectors():
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'guest.h')) as f:
        return {m.group(1): int(m.group(2), 0)
                for m in re.finditer(r'#define (VEC_\w+)\s+(0x[0-9a-f]+|\d+)', f.read())}


def check_idt(elf, syms):
    """intr.S lays the IDT out at link time: each gate must name its
    vector's handler (cpu.c used to fill them at boot)."""
    vec = guest_h_vectors()
    special = {vec['VEC_SERIAL']: 'isr_serial', vec['VEC_VIRTIO']: 'isr_virtio',
               vec['VEC_TIMER']: 'isr_timer', vec['VEC_SPURIOUS']: 'isr_spurious'}
    base = syms.get('idt')
    seg = [(p, b) for p, b, _ in elf.loads() if base is not None and p <= base and base + 4096 <= p + len(b)]
    check(len(seg) == 1, 'the IDT is in a loaded segment (initialized data)')
    if len(seg) != 1:
        return
    p, b = seg[0]
    for v in range(256):
        lo, sel, ist, attr, mid, hi, zero = struct.unpack_from('<HHBBHII', b, base - p + 16 * v)
        want = syms['isr_exceptions'] + 16 * v if v < 32 else syms[special.get(v, 'isr_ignore')]
        check((lo | mid << 16 | hi << 32) == want and sel == 0x10 and ist == 0 and attr == 0x8e
              and zero == 0, 'IDT gate %d points at its handler %x' % (v, want))


FORBIDDEN = re.compile(r'%[xyz]mm|%mm[0-7]|\b(cmpxchg16b|xsave\w*|xrstor\w*|fxsave\w*|fxrstor\w*|'
                       r'int3|ldmxcsr|stmxcsr|vzero\w*|emms)\b')


def check_instructions(path, objdump):
    if not objdump:
        check(False, 'objdump not found: cannot check instructions')
        return
    out = subprocess.run([objdump, '-d', '--no-show-raw-insn', path], check=True,
                         capture_output=True, text=True).stdout
    bad = [l for l in out.splitlines() if FORBIDDEN.search(l.split('#')[0])]
    for l in bad[:20]:
        print('forbidden: ' + l.strip(), file=sys.stderr)
    check(len(out.splitlines()) > 100, 'objdump disassembled the guest')
    check(not bad, 'no SIMD/xsave/cmpxchg16b/int3 instructions')


def main():
    elf_path, bz_path = sys.argv[1], sys.argv[2]
    objdump = sys.argv[3] if len(sys.argv) > 3 else ''
    with open(elf_path, 'rb') as f:
        elf = Elf(f.read())
    with open(bz_path, 'rb') as f:
        bz = f.read()
    syms = check_elf(elf)
    check_bzimage(bz, elf, syms)
    check_idt(elf, syms)
    check_instructions(elf_path, objdump)
    if failures:
        sys.exit('%d check(s) failed' % len(failures))
    print('guest images: all checks passed')


if __name__ == '__main__':
    main()
