#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of fuzz-virtq and fuzz-virtio-blk.

Each seed is a 16-byte header (queue size, ring index or flags, desc/avail/
used guest addresses) followed by a guest RAM image with rings and buffers
laid out as a driver would, valid ones and the hostile shapes the devices
must reject.  Run from anywhere; writes next to this script."""
import struct

import seedlib
DESC, AVAIL, USED, DATA = 0x1000, 0x2000, 0x3000, 0x4000
NEXT, WRITE, INDIRECT = 1, 2, 4


class Ram(seedlib.GuestRam):
    def __init__(self):
        super().__init__(0x5000)

    def desc(self, i, addr, length, flags=0, nxt=0):
        self.desc_at(DESC, i, addr, length, flags, nxt)

    def avail(self, idx, heads):
        for k, h in enumerate(heads):
            self.put(AVAIL + 4 + 2 * k, struct.pack('<H', h))
        self.put(AVAIL, struct.pack('<HH', 0, idx))


def hdr(qsize, word, desc=DESC, avail=AVAIL, used=USED):
    return struct.pack('<HHIII', qsize, word, desc, avail, used)


def blk_req(r, first, typ, sector, data_len, data_write, status_at=DATA + 0x800):
    r.put(DATA, struct.pack('<IIQ', typ, 0, sector))
    r.desc(first, DATA, 16, NEXT, first + 1)
    n = first + 1
    if data_len:
        r.desc(n, DATA + 0x100, data_len, NEXT | (WRITE if data_write else 0), n + 1)
        n += 1
    r.desc(n, status_at, 1, WRITE)
    return n + 1


def virtq_seeds():
    s = {}
    r = Ram(); r.desc(0, DATA, 64, NEXT, 1); r.desc(1, DATA + 64, 64, WRITE); r.avail(1, [0])
    s['valid-two-desc'] = hdr(16, 0) + r.b
    r = Ram()
    for i in range(8):
        r.desc(i, DATA + 32 * i, 32, NEXT if i < 7 else 0, i + 1)
    r.avail(1, [0])
    s['valid-max-chain'] = hdr(8, 0) + r.b
    r = Ram(); r.desc(0, DATA, 8, WRITE); r.put(AVAIL, struct.pack('<HH', 0, 1))
    s['valid-wrap'] = hdr(4, 0xffff) + r.b
    r = Ram(); r.desc(0, DATA, 8, NEXT, 0); r.avail(1, [0])
    s['loop-self'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, DATA, 8, NEXT, 1); r.desc(1, DATA, 8, NEXT, 0); r.avail(1, [0])
    s['loop-two'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, 0xfff0, 0x20, 0); r.avail(1, [0])
    s['out-of-ram'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, DATA, 0xffffffff, WRITE); r.avail(1, [0])
    s['huge-len'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, 0xffffffffffffff00, 0x200, 0); r.avail(1, [0])
    s['addr-wraps'] = hdr(16, 0) + r.b
    r = Ram(); r.avail(1, [300])
    s['head-range'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, DATA, 8, NEXT, 16); r.avail(1, [0])
    s['next-range'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, DATA, 8, 0); r.avail(40, [0])
    s['avail-jump'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, DATA, 16, INDIRECT); r.avail(1, [0])
    s['indirect'] = hdr(16, 0) + r.b
    r = Ram(); r.desc(0, DATA, 8, WRITE | NEXT, 1); r.desc(1, DATA, 8, 0); r.avail(1, [0])
    s['read-after-write'] = hdr(16, 0) + r.b
    s['size-not-pow2'] = hdr(12, 0) + Ram().b
    s['size-too-big'] = hdr(512, 0) + Ram().b
    s['desc-misaligned'] = hdr(16, 0, desc=DESC + 4) + Ram().b
    s['used-outside'] = hdr(16, 0, used=0xfffc) + Ram().b
    s['short'] = b'\x10\x00\x00'
    return s


def blk_seeds():
    s = {}
    ro = 1
    r = Ram(); blk_req(r, 0, 0, 3, 1024, True); r.avail(1, [0])
    s['valid-read'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 1, 5, 512, False); r.avail(1, [0])
    s['valid-write'] = hdr(16, 0x0100) + r.b
    s['write-read-only'] = hdr(16, 0x0100 | ro) + r.b
    r = Ram(); blk_req(r, 0, 4, 0, 0, False); r.avail(1, [0])
    s['valid-flush'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 8, 0, 20, True); r.avail(1, [0])
    s['valid-get-id'] = hdr(16, 0x0100) + r.b
    r = Ram(); n = blk_req(r, 0, 0, 1, 512, True); blk_req(r, n, 1, 2, 512, False)
    r.avail(2, [0, n])
    s['valid-two-requests'] = hdr(16, 0x0100) + r.b
    s['limited-two-requests'] = hdr(16, 0x0100 | 4) + r.b
    s['limited-then-lifted'] = hdr(16, 0x0300 | 4 | 8) + r.b
    r = Ram(); blk_req(r, 0, 0, 63, 1024, True); r.avail(1, [0])
    s['read-past-end'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 1, 0xffffffffffffffff, 512, False); r.avail(1, [0])
    s['write-sector-max'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 0, 0, 100, True); r.avail(1, [0])
    s['read-partial-sector'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 77, 0, 0, False); r.avail(1, [0])
    s['unsupported'] = hdr(16, 0x0100) + r.b
    r = Ram(); r.put(DATA, struct.pack('<IIQ', 1, 0, 0)); r.desc(0, DATA, 16, 0); r.avail(1, [0])
    s['no-status'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 0, 0, 512, True); r.desc(2, DATA + 0x800, 1, WRITE | NEXT, 0)
    r.avail(1, [0])
    s['loop'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 0, 0, 512, True); r.desc(1, 0xff00, 512, WRITE | NEXT, 2)
    r.avail(1, [0])
    s['data-out-of-ram'] = hdr(16, 0x0100) + r.b
    r = Ram(); blk_req(r, 0, 0, 0, 512, True); r.avail(1, [0])
    s['legacy-driver'] = hdr(16, 0x0100 | 2) + r.b
    s['bad-queue-size'] = hdr(3, 0x0100) + r.b
    return s


if __name__ == '__main__':
    seedlib.write('virtq', virtq_seeds())
    seedlib.write('virtio-blk', blk_seeds())
