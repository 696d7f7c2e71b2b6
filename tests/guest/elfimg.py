# SPDX-License-Identifier: MIT
"""Minimal ELF64 reader shared by mkbzimage.py and check_images.py."""
import struct


class Elf:
    def __init__(self, data):
        if data[:4] != b'\x7fELF' or data[4] != 2 or data[5] != 1:
            raise ValueError('not a little-endian ELF64 file')
        self.data = data
        (self.type, self.machine, _, self.entry, phoff, shoff, _, _, phentsize,
         phnum, shentsize, shnum, _) = struct.unpack_from('<HHIQQQIHHHHHH', data, 16)
        self.phdrs = [struct.unpack_from('<IIQQQQQQ', data, phoff + i * phentsize)
                      for i in range(phnum)]
        self.shdrs = [struct.unpack_from('<IIQQQQIIQQ', data, shoff + i * shentsize)
                      for i in range(shnum)]

    def loads(self):
        """(paddr, file bytes, memsz) of each PT_LOAD segment."""
        return [(p[4], self.data[p[2]:p[2] + p[5]], p[6]) for p in self.phdrs if p[0] == 1]

    def notes(self):
        """(name, type, desc) of every note in the PT_NOTE segments."""
        out = []
        for p in self.phdrs:
            if p[0] != 4:
                continue
            off, end = p[2], p[2] + p[5]
            while off + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from('<III', self.data, off)
                off += 12
                name = self.data[off:off + namesz].rstrip(b'\0')
                off += (namesz + 3) & ~3
                desc = self.data[off:off + descsz]
                off += (descsz + 3) & ~3
                out.append((name, ntype, desc))
        return out

    def symbols(self):
        """name -> value from .symtab."""
        syms = {}
        for sh in self.shdrs:
            if sh[1] != 2:  # SHT_SYMTAB
                continue
            strtab = self.shdrs[sh[6]]
            for i in range(sh[5] // 24):
                name, _, _, _, value, _ = struct.unpack_from('<IBBHQQ', self.data, sh[4] + i * 24)
                s = self.data[strtab[4] + name:self.data.index(b'\0', strtab[4] + name)]
                syms[s.decode()] = value
        return syms
