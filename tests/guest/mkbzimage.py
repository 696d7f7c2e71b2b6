#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Packs the linked test guest into a Linux bzImage.

The result is a boot sector plus SETUP_SECTS setup sectors carrying the
boot protocol 2.15 setup header, followed by the protected-mode payload: the
guest's memory image from 1 MiB, with startup_64 at payload offset 0x200.
The real-mode setup code only halts: loaders are expected to use the
64-bit entry (XLF_KERNEL_64).
"""
import struct
import sys

from elfimg import Elf

LOAD_ADDR = 0x100000
SETUP_SECTS = 4
CMDLINE_SIZE = 4095          # the guest copies up to 4095 bytes + NUL
HALT = bytes([0xfa, 0xf4, 0xeb, 0xfd])  # cli; 1: hlt; jmp 1b


def payload(elf):
    segs = [s for s in elf.loads() if s[2]]
    if not segs or min(s[0] for s in segs) != LOAD_ADDR:
        raise ValueError('image must start at 0x%x' % LOAD_ADDR)
    file_end = max(p + len(b) for p, b, _ in segs)
    mem_end = max(p + m for p, _, m in segs)
    img = bytearray(file_end - LOAD_ADDR)
    for p, b, _ in segs:
        img[p - LOAD_ADDR:p - LOAD_ADDR + len(b)] = b
    return bytes(img), mem_end - LOAD_ADDR


def setup(pm_len, init_size):
    s = bytearray(512 * (1 + SETUP_SECTS))
    s[0:4] = HALT                             # boot sector: not bootable
    version = b'mvmtest\0'
    ver_off = 0x300
    s[ver_off:ver_off + len(version)] = version
    code_off = 0x280                          # real-mode entry: halts
    s[code_off:code_off + 4] = HALT
    struct.pack_into('<BHI', s, 0x1f1, SETUP_SECTS, 0, (pm_len + 15) // 16)
    struct.pack_into('<HHH', s, 0x1fa, 0xffff, 0, 0xaa55)       # vid_mode, root_dev, boot_flag
    struct.pack_into('<BB', s, 0x200, 0xeb, code_off - 0x202)   # jmp short to code_off
    s[0x202:0x206] = b'HdrS'
    struct.pack_into('<HIHH', s, 0x206, 0x020f, 0, 0x1000, ver_off - 0x200)
    struct.pack_into('<BBHI', s, 0x210, 0, 0x01, 0, LOAD_ADDR)  # loader, LOADED_HIGH, code32_start
    struct.pack_into('<I', s, 0x22c, 0x7fffffff)                # initrd_addr_max
    struct.pack_into('<IBBH', s, 0x230, 0x1000, 0, 12, 0x1)     # alignment, !relocatable, min_align, XLF_KERNEL_64
    struct.pack_into('<I', s, 0x238, CMDLINE_SIZE)
    struct.pack_into('<QII', s, 0x258, LOAD_ADDR, init_size, 0)  # pref_address, init_size, handover
    return bytes(s)


def main():
    if len(sys.argv) != 3:
        sys.exit('usage: mkbzimage.py GUEST.elf OUT.bzImage')
    with open(sys.argv[1], 'rb') as f:
        elf = Elf(f.read())
    syms = elf.symbols()
    if syms.get('startup_64') != LOAD_ADDR + 0x200:
        sys.exit('mkbzimage: startup_64 is not at payload offset 0x200')
    pm, init_size = payload(elf)
    pm += bytes(-len(pm) % 16)      # whole paragraphs, as syssize counts them
    init_size = (init_size + 0xfff) & ~0xfff
    with open(sys.argv[2], 'wb') as f:
        f.write(setup(len(pm), init_size) + pm)


if __name__ == '__main__':
    main()
