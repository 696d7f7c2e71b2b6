#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of fuzz-virtio-balloon and fuzz-ratelimit.

Balloon seeds: the 28-byte header of fuzz-virtio-balloon.c, then a guest RAM
image with queue q's rings at DESC/AVAIL/USED + q * 0x4000 and the buffers
a driver would post: PFN arrays (inside and outside RAM), free page reports,
a statistics buffer.  Ratelimit seeds: four limits and clock/charge steps.
Run from anywhere; writes next to this script."""
import struct

import seedlib

DESC, AVAIL, USED, GAP = 0x1000, 0x2000, 0x3000, 0x4000
DATA = 0xc000          # buffers, above the four queues' rings
NEXT, WRITE = 1, 2
OP_STATS, OP_TARGET, OP_ACTUAL = 4, 8, 16
F_NO_STATS, F_NO_REPORT, F_RESET = 1, 2, 4


class Ram(seedlib.GuestRam):
    def __init__(self):
        super().__init__(0x10000)

    def desc(self, q, i, addr, length, flags=0, nxt=0):
        self.desc_at(DESC + q * GAP, i, addr, length, flags, nxt)

    @property
    def img(self):
        """The image without its zero tail: the fuzzer zero-fills RAM."""
        return bytes(self.b).rstrip(b'\0')

    def avail(self, q, heads):
        for k, h in enumerate(heads):
            self.put(AVAIL + q * GAP + 4 + 2 * k, struct.pack('<H', h))
        self.put(AVAIL + q * GAP, struct.pack('<HH', 0, len(heads)))


def hdr(flags, ops, pages=0, qsize=16):
    """Runs the operations given (at most 8), in order."""
    n = len(ops)
    ops = list(ops) + [0] * (8 - n)
    return struct.pack('<HBBIIII', qsize, flags, n - 1, DESC, AVAIL, USED, pages) + bytes(ops)


def seeds_balloon():
    s = {}
    r = Ram()
    r.put(DATA, struct.pack('<4I', 0xc, 0xd, 0xe, 0x10))      # pages in RAM, one run of 3
    r.desc(0, 0, DATA, 16); r.avail(0, [0])
    r.desc(1, 0, DATA, 8); r.avail(1, [0])                      # deflate two of them
    r.put(DATA + 0x100, struct.pack('<HQHQ', 4, 1 << 20, 5, 1 << 24))
    r.desc(2, 0, DATA + 0x100, 20); r.avail(2, [0])             # stats
    r.desc(3, 0, 0x8000, 0x1000, WRITE | NEXT, 1); r.desc(3, 1, 0x9000, 0x800, WRITE)
    r.avail(3, [0])                                             # report 1.5 pages
    s['valid-all-queues'] = hdr(0, [0, 1, 2, 3 | OP_STATS, 2, OP_TARGET | 0, OP_ACTUAL, 0], 8) + r.img
    r = Ram()
    r.put(DATA, struct.pack('<4I', 0x10, 0xffffffff, 0x10000, 0xf))  # outside RAM
    r.desc(0, 0, DATA, 16); r.avail(0, [0])
    s['pfns-outside-ram'] = hdr(0, [0], 0xffffffff) + r.img
    r = Ram()
    r.desc(0, 0, DATA, 3); r.avail(0, [0])                      # not a whole PFN
    s['pfn-short'] = hdr(0, [0]) + r.img
    r = Ram()
    r.desc(2, 0, DATA, 0x1000, WRITE); r.avail(2, [0])          # reporting is queue 2 now
    s['report-without-stats'] = hdr(F_NO_STATS, [2, 3]) + r.img
    r = Ram()
    r.put(DATA, struct.pack('<HQ', 999, 7) * 8)
    r.desc(2, 0, DATA, 80); r.desc(2, 1, DATA, 80); r.avail(2, [0, 1])
    s['stats-twice'] = hdr(F_NO_REPORT | F_RESET, [2, 2 | OP_STATS, 2]) + r.img
    r = Ram()
    r.desc(3, 0, 0, 0x10000, WRITE); r.avail(3, [0])            # report all of RAM, rings too
    s['report-everything'] = hdr(0, [3, 0, 1, 2]) + r.img
    r = Ram()
    r.desc(0, 0, DATA, 8, NEXT, 0); r.avail(0, [0])             # a loop
    s['inflate-loop'] = hdr(0, [0, 0]) + r.img
    s['target-too-big'] = hdr(0, [OP_TARGET, OP_TARGET | OP_ACTUAL], 17) + Ram().img
    s['bad-queue-size'] = hdr(0, [0, 1, 2, 3], qsize=3) + Ram().img
    s['short'] = b'\x10\x00'
    return s


def limits(bps=0, bps_burst=0, ops=0, ops_burst=0):
    # fuzz-ratelimit shifts each value right by its low 6 bits: keep them 0
    return struct.pack('<4Q', bps << 6, bps_burst << 6, ops << 6, ops_burst << 6)


def step(kind, dt, nbytes):
    return struct.pack('<BII', kind, dt, nbytes)


CHARGE, CHANGE, JUMP = 1, 2, 4


def seeds_ratelimit():
    s = {}
    s['bytes-steady'] = limits(bps=1 << 20) + b''.join(
        step(CHARGE | (JUMP if i % 2 else 0), 1000, 65536) for i in range(64))
    s['ops-slow'] = limits(ops=10) + b''.join(step(CHARGE | JUMP, 0, 0) for i in range(32))
    s['bursts'] = limits(bps=1000, bps_burst=5000, ops=5, ops_burst=3) + b''.join(
        step(CHARGE, 10 ** 6 * i, 700) for i in range(40))
    s['changes'] = limits(bps=4096, ops=100) + b''.join(
        step(CHARGE | (CHANGE if i % 5 == 0 else 0) | JUMP, 5000, 9000) for i in range(40))
    s['unlimited'] = limits() + b''.join(step(CHARGE, 0, 0xffffffff) for i in range(16))
    s['huge'] = struct.pack('<4Q', 1 << 40, 1 << 40, 1 << 40, 1 << 40) + b''.join(
        step(CHARGE | JUMP, 0xffffffff, 0xffffffff) for i in range(16))
    s['burst-without-rate'] = limits(bps_burst=10) + step(CHARGE, 1, 1)
    s['short'] = b'\x01'
    return s


if __name__ == '__main__':
    seedlib.write('virtio-balloon', seeds_balloon())
    seedlib.write('ratelimit', seeds_ratelimit())
