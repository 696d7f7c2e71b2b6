#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus for fuzz-bzimage and fuzz-elf: minimal valid
images plus truncated and corrupted variants, one per parser check.

    tests/fuzz/make-corpus.py        # rewrites tests/fuzz/corpus/{bzimage,elf}

The outputs (seed-*) are checked in; rerun after changing this script.
The fuzz-<sha1> files beside them are inputs a libFuzzer campaign found to
reach new edges (merged with -merge=1 -use_counters=0); this script leaves
them alone."""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def bzimage(setup_sects=1, payload=512, version=0x020F, xlf=0x3, loadflags=0x01,
            hdr_len=0x6A, cmdline_size=2047, initrd_max=0x7FFFFFFF, init_size=0x4000,
            flag=0xAA55, magic=b"HdrS"):
    setup = (setup_sects or 4) + 1
    b = bytearray(setup * 512 + payload)
    b[0x1F1] = setup_sects
    struct.pack_into("<H", b, 0x1FE, flag)
    b[0x200:0x202] = bytes([0xEB, hdr_len])
    b[0x202:0x206] = magic
    struct.pack_into("<H", b, 0x206, version)
    b[0x211] = loadflags
    struct.pack_into("<I", b, 0x214, 0x100000)
    struct.pack_into("<I", b, 0x22C, initrd_max)
    struct.pack_into("<I", b, 0x230, 0x200000)
    struct.pack_into("<H", b, 0x236, xlf)
    struct.pack_into("<I", b, 0x238, cmdline_size)
    struct.pack_into("<Q", b, 0x258, 0x1000000)
    struct.pack_into("<I", b, 0x260, init_size)
    for i in range(setup * 512, len(b)):
        b[i] = (i * 7 + 3) & 0xFF
    b[setup * 512:setup * 512 + 2] = b"\xF4\xEB"  # hlt; jmp
    return bytes(b)


def note(name, ntype, desc, align=4):
    pad = lambda n: (n + align - 1) & ~(align - 1)
    nm = name + b"\0"
    out = struct.pack("<III", len(nm), len(desc), ntype)
    out += nm.ljust(pad(len(nm)), b"\0") + desc.ljust(pad(len(desc)), b"\0")
    return out


def elf(notes=None, loads=None, entry=0x100040, cls=2, data=1, machine=62, etype=2,
        phentsize=56, note_align=4):
    """ELF64 with phdrs at 64, notes at 0x200, segment data from 0x400."""
    loads = loads if loads is not None else [(0x100000, 0x100, 0x2000)]
    notes = notes if notes is not None else [note(b"Xen", 18, struct.pack("<I", 0x100010))]
    blob = b"".join(notes)
    phdrs = []
    off = 0x400
    body = bytearray()
    for paddr, filesz, memsz in loads:
        phdrs.append(struct.pack("<IIQQQQQQ", 1, 5, off + len(body), paddr | 0xFFFFFFFF80000000,
                                 paddr, filesz, memsz, 0x1000))
        body += bytes((i * 13 + 1) & 0xFF for i in range(filesz))
    if blob:
        phdrs.append(struct.pack("<IIQQQQQQ", 4, 4, 0x200, 0, 0, len(blob), len(blob), note_align))
    ident = b"\x7fELF" + bytes([cls, data, 1]) + bytes(9)
    eh = ident + struct.pack("<HHIQQQIHHHHHH", etype, machine, 1, entry, 64, 0, 0, 64,
                             phentsize, len(phdrs), 64, 0, 0)
    b = bytearray(0x400)
    b[0:64] = eh
    ph = b"".join(p.ljust(phentsize, b"\0") for p in phdrs)
    assert 64 + len(ph) <= 0x200 and 0x200 + len(blob) <= 0x400
    b[64:64 + len(ph)] = ph
    b[0x200:0x200 + len(blob)] = blob
    return bytes(b + body)


def patch(img, off, fmt, val):
    b = bytearray(img)
    struct.pack_into(fmt, b, off, val)
    return bytes(b)


def bz_seeds():
    good = bzimage()
    return {
        "valid-min": good,
        "valid-setup-sects-0": bzimage(setup_sects=0),
        "valid-hdr-len-ff": bzimage(hdr_len=0xFF),
        "cmdline-size-8": bzimage(cmdline_size=8),
        "initrd-max-1m": bzimage(initrd_max=0xFFFFF),
        "init-size-huge": bzimage(init_size=0x7FFFFFFF),
        "trunc-1023": good[:1023],
        "trunc-setup": bzimage(setup_sects=3)[:1500],
        "no-payload": good[:1024],
        "bad-boot-flag": bzimage(flag=0x55AA),
        "no-hdrs": bzimage(magic=b"HdrX"),
        "proto-2.11": bzimage(version=0x020B),
        "no-xlf-kernel64": bzimage(xlf=0x2),
        "no-loaded-high": bzimage(loadflags=0),
        "setup-sects-255": patch(bzimage(), 0x1F1, "<B", 255),
        "elf-not-bzimage": elf(),
        "garbage": bytes(range(256)) * 5,
    }


def elf_seeds():
    good = elf()
    xen8 = note(b"Xen", 18, struct.pack("<Q", 0x100020))
    gnu = note(b"GNU", 3, b"\x01\x02\x03\x04\x05\x06\x07\x08")
    seeds = {
        "valid-pvh": good,
        "valid-pvh-desc8": elf(notes=[xen8]),
        "valid-pvh-after-gnu": elf(notes=[gnu, note(b"Xen", 18, struct.pack("<I", 0x100030))]),
        "valid-pvh-align8": elf(notes=[note(b"Xen", 18, struct.pack("<Q", 0x100020), 8)], note_align=8),
        "valid-elf64": elf(notes=[]),
        "valid-two-loads": elf(loads=[(0x100000, 0x80, 0x1000), (0x200000, 0x40, 0x40)]),
        "valid-phentsize-64": elf(phentsize=64),
        "xen-other-type": elf(notes=[note(b"Xen", 17, b"abcd")]),
        "xen-desc-2": elf(notes=[note(b"Xen", 18, b"\x10\x00")]),
        "xen-entry-above-4g": elf(notes=[note(b"Xen", 18, struct.pack("<Q", 1 << 32))]),
        "class32": elf(cls=1),
        "big-endian": elf(data=2),
        "machine-i386": elf(machine=3),
        "et-dyn": elf(etype=3),
        "phentsize-32": elf(phentsize=32),
        "filesz-gt-memsz": elf(loads=[(0x100000, 0x100, 0x80)]),
        "load-below-1m": elf(loads=[(0x80000, 0x100, 0x100)]),
        "load-past-ram": elf(loads=[(0x1FFF000, 0x100, 0x2000)]),
        "entry-outside-ram": elf(notes=[], entry=0x40000000),
        "valid-seven-loads": elf(notes=[], loads=[(0x100000 + i * 0x1000, 8, 8) for i in range(7)]),
        "trunc-ehdr": good[:40],
        "trunc-phdrs": good[:100],
        "trunc-data": good[:0x420],
        "bzimage-not-elf": bzimage(),
    }
    # Lying lengths, patched into the valid image.
    seeds["phoff-past-end"] = patch(good, 32, "<Q", len(good) - 10)
    seeds["phoff-wraps"] = patch(good, 32, "<Q", (1 << 64) - 8)
    seeds["phnum-xnum"] = patch(good, 56, "<H", 0xFFFF)
    seeds["load-offset-wraps"] = patch(good, 64 + 8, "<Q", (1 << 64) - 0x10)
    seeds["paddr-wraps"] = patch(good, 64 + 24, "<Q", (1 << 64) - 0x1000)
    seeds["note-namesz-lies"] = patch(good, 0x200, "<I", 0xFFFFFFFF)
    seeds["note-descsz-lies"] = patch(good, 0x204, "<I", 0xFFFFFFF0)
    seeds["note-seg-past-end"] = patch(good, 64 + 56 + 8, "<Q", len(good) - 4)
    # A PT_NOTE that ends exactly at end of file, cut inside the Xen note:
    # a missing bounds check then reads past the buffer (ASan sees it).
    for name, cut in (("note-eof-no-desc", 16), ("note-eof-no-name", 12)):
        b = bytearray(patch(elf(notes=[]), 56, "<H", 2))
        struct.pack_into("<IIQQQQQQ", b, 64 + 56, 4, 4, len(b), 0, 0, cut, cut, 4)
        b += note(b"Xen", 18, struct.pack("<I", 0x100010))[:cut]
        seeds[name] = bytes(b)
    # 17 loads need more phdr room than elf() leaves: put them at 0x200.
    b = bytearray(patch(patch(elf(notes=[]), 32, "<Q", 0x200), 56, "<H", 17))
    b += bytes(0x200 + 17 * 56 - len(b)) if len(b) < 0x200 + 17 * 56 else b""
    for i in range(17):
        struct.pack_into("<IIQQQQQQ", b, 0x200 + i * 56, 1, 5, 0, 0, 0x100000 + i * 0x1000, 8, 8, 8)
    seeds["loads-17"] = bytes(b)
    return seeds


def main():
    for name, seeds in (("bzimage", bz_seeds()), ("elf", elf_seeds())):
        d = os.path.join(HERE, "corpus", name)
        os.makedirs(d, exist_ok=True)
        for f, data in seeds.items():
            assert len(data) < 64 * 1024, f
            with open(os.path.join(d, "seed-" + f), "wb") as out:
                out.write(data)
        print(f"{d}: {len(seeds)} seeds", file=sys.stderr)


if __name__ == "__main__":
    main()
