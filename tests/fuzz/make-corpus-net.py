#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpora of fuzz-virtio-net (corpus/virtio-net/) and
fuzz-virtio-rng (corpus/virtio-rng/).

A net seed is the 40-byte header fuzz-virtio-net.c describes (queue sizes,
flags, rounds, frames per round, extra notify, four host->guest frame
lengths, rx and tx ring addresses) followed by a guest RAM image: receive
buffers posted the way Linux posts them and transmit chains (virtio_net_hdr
then the frame), valid ones and the hostile shapes the device must survive.
An rng seed is a 16-byte header (queue size, flags, notify count, ring
addresses) and a RAM image.  Run from anywhere; writes next to this script."""
import struct

import seedlib
RX_DESC, RX_AVAIL, RX_USED = 0x1000, 0x1800, 0x1c00
TX_DESC, TX_AVAIL, TX_USED = 0x2000, 0x2800, 0x2c00
RX_BUF, TX_BUF = 0x4000, 0xa000
NEXT, WRITE, INDIRECT = 1, 2, 4
NET_HDR = 12
RX_ROOM = NET_HDR + 1514

SEQPACKET, RECYCLE, EARLY_RX, NO_DRAIN, RESET, MMIO_NOTIFY, LEGACY, CONFIG = (
    1 << i for i in range(8))


class Ram(seedlib.GuestRam):
    def __init__(self, size=0xc000):
        super().__init__(size)
        self.tx_next = 0
        self.tx_heads = []
        self.tx_data = TX_BUF

    desc = seedlib.GuestRam.desc_at

    def avail(self, base, heads, idx=None):
        for k, h in enumerate(heads):
            self.put(base + 4 + 2 * k, struct.pack('<H', h))
        self.put(base, struct.pack('<HH', 0, len(heads) if idx is None else idx))

    def rx_buffers(self, n, size=RX_ROOM, flags=WRITE):
        for i in range(n):
            self.desc(RX_DESC, i, RX_BUF + i * 0x600, size, flags)
        self.avail(RX_AVAIL, list(range(n)))

    def tx(self, frame, pieces=1):
        """Queues virtio_net_hdr + frame: header alone, then the frame cut
        into `pieces` descriptors (0: header and frame in one)."""
        i = self.tx_next
        self.tx_heads.append(i)
        self.put(self.tx_data, bytes(NET_HDR) + frame)
        if pieces == 0:
            self.desc(TX_DESC, i, self.tx_data, NET_HDR + len(frame))
            self.tx_next += 1
        else:
            cut = [len(frame) * k // pieces for k in range(pieces + 1)]
            self.desc(TX_DESC, i, self.tx_data, NET_HDR, NEXT, i + 1)
            for k in range(pieces):
                last = k == pieces - 1
                self.desc(TX_DESC, i + 1 + k, self.tx_data + NET_HDR + cut[k],
                          cut[k + 1] - cut[k], 0 if last else NEXT, i + 2 + k)
            self.tx_next += 1 + pieces
        self.tx_data += (NET_HDR + len(frame) + 63) & ~63
        self.avail(TX_AVAIL, self.tx_heads)


def eth(n, seed=1):
    return bytes((seed + 3 * i) & 0xff for i in range(n))


def hdr(flags=RECYCLE, rounds=2, per_round=2, frames=(60, 1514, 42, 100), extra_q=7,
        rxq=16, txq=16, rx=(RX_DESC, RX_AVAIL, RX_USED), tx=(TX_DESC, TX_AVAIL, TX_USED)):
    return struct.pack('<HHBBBB4H6I', rxq, txq, flags, rounds, per_round, extra_q,
                       *frames, *rx, *tx)


def net_seeds():
    s = {}
    r = Ram(); r.rx_buffers(8); r.tx(eth(60)); r.tx(eth(1514, 7))
    s['valid-tx-rx'] = hdr() + r.b
    s['valid-seqpacket'] = hdr(RECYCLE | SEQPACKET | CONFIG) + r.b
    s['valid-mmio-notify'] = hdr(RECYCLE | MMIO_NOTIFY, rounds=7, per_round=3) + r.b
    s['early-rx'] = hdr(EARLY_RX, rounds=1) + r.b
    s['reset-midway'] = hdr(RECYCLE | RESET, rounds=4, per_round=3) + r.b
    s['legacy-driver'] = hdr(LEGACY) + r.b
    r = Ram(); r.rx_buffers(16)
    for k in range(3):
        r.tx(eth(64 + k), pieces=4)
    s['tx-chained'] = hdr(RECYCLE, rounds=3) + r.b
    r = Ram(); r.rx_buffers(4); r.tx(eth(128), pieces=0)
    r.desc(TX_DESC, 0, TX_BUF, 16, INDIRECT)
    s['tx-indirect'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.desc(RX_DESC, 0, RX_BUF, 32, INDIRECT | WRITE); r.tx(eth(60))
    s['rx-indirect'] = hdr() + r.b
    r = Ram(); r.rx_buffers(8); r.tx(b'', pieces=0); r.tx(eth(3), pieces=0)
    r.desc(TX_DESC, 1, TX_BUF + 64, 5)
    r.desc(TX_DESC, 2, TX_BUF + 128, 0)
    r.avail(TX_AVAIL, [0, 1, 2])
    s['tx-zero-and-short'] = hdr() + r.b
    r = Ram(); r.rx_buffers(8); r.tx(eth(60))
    s['rx-zero-length-frames'] = hdr(frames=(0, 60, 0, 0), per_round=3) + r.b
    s['rx-zero-length-seqpacket'] = hdr(SEQPACKET, frames=(0, 60, 0, 0), per_round=3) + r.b
    r = Ram(); r.rx_buffers(8, size=NET_HDR + 20); r.tx(eth(60))
    s['rx-buffer-too-small'] = hdr(RECYCLE, rounds=3) + r.b
    r = Ram(); r.rx_buffers(8, size=NET_HDR - 2)
    s['rx-buffer-below-header'] = hdr() + r.b
    r = Ram(); r.rx_buffers(8, flags=0)
    s['rx-readable-buffers'] = hdr() + r.b
    # One frame as large as a datagram can be, into one chain of three
    # overlapping 0x6000-byte buffers that holds it.
    r = Ram()
    for i in range(3):
        r.desc(RX_DESC, i, RX_BUF, 0x6000, WRITE | (NEXT if i < 2 else 0), i + 1)
    r.avail(RX_AVAIL, [0])
    s['rx-huge-frame'] = hdr(frames=(65535, 65535, 1, 2), per_round=1) + r.b
    r = Ram(); r.rx_buffers(4); r.desc(RX_DESC, 1, 0xff00, RX_ROOM, WRITE); r.tx(eth(60))
    s['rx-out-of-ram'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(eth(60)); r.desc(TX_DESC, 1, 0xfff0, 0x100)
    s['tx-out-of-ram'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(eth(60)); r.desc(TX_DESC, 1, TX_BUF, 0xffffffff)
    s['tx-huge-len'] = hdr() + r.b
    # A frame above VIRTIO_NET_FRAME_MAX out of 3 descriptors naming the
    # same 30000 bytes.
    r = Ram(); r.rx_buffers(4)
    for i in range(3):
        r.desc(TX_DESC, i, 0x4000, 30000, NEXT if i < 2 else 0, i + 1)
    r.avail(TX_AVAIL, [0])
    s['tx-over-frame-max'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(eth(60), pieces=2); r.desc(TX_DESC, 2, TX_BUF, 8, NEXT, 0)
    s['tx-loop'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.desc(RX_DESC, 3, RX_BUF, 8, WRITE | NEXT, 3); r.avail(RX_AVAIL, [3])
    s['rx-loop'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.avail(TX_AVAIL, [0], idx=40)
    s['tx-avail-jump'] = hdr() + r.b
    # More frames than the datagram socket queues: TX drops, counted.
    r = Ram(); r.rx_buffers(4)
    for k in range(16):
        r.tx(eth(100 + k), pieces=0)
    s['tx-backend-full'] = hdr(NO_DRAIN | RECYCLE, rounds=3, txq=32) + r.b
    r = Ram(); r.rx_buffers(4); r.tx(eth(60))
    s['bad-queue-size'] = hdr(rxq=3) + r.b
    s['ring-outside-ram'] = hdr(tx=(TX_DESC, TX_AVAIL, 0xfffc)) + r.b
    s['ring-size-256'] = hdr(rxq=256, txq=256, rx=(0x1000, 0x3000, 0x3400),
                             tx=(0x4000, 0x5000, 0x6000)) + bytes(0x7000)
    s['short'] = hdr()[:20]
    return s


def rng_hdr(qsize=16, flags=0, notifies=1, desc=0x1000, avail=0x2000, used=0x3000):
    return struct.pack('<HBBIII', qsize, flags, notifies, desc, avail, used)


def rng_seeds():
    s = {}
    r = Ram(0x4200); r.desc(0x1000, 0, 0x4000, 64, WRITE); r.desc(0x1000, 1, 0x4100, 4096, WRITE)
    r.avail(0x2000, [0, 1])
    s['valid'] = rng_hdr() + r.b
    s['valid-mmio-notify-reset'] = rng_hdr(flags=3, notifies=3) + r.b
    r = Ram(0x4200); r.desc(0x1000, 0, 0x4000, 16, NEXT, 1); r.desc(0x1000, 1, 0x4100, 64, WRITE)
    r.avail(0x2000, [0])
    s['readable-then-writable'] = rng_hdr() + r.b
    r = Ram(0x4200)
    for i in range(16):
        r.desc(0x1000, i, 0x0, 0x10000, WRITE | (NEXT if i < 15 else 0), i + 1)
    r.avail(0x2000, [0])
    s['whole-ram-16-times'] = rng_hdr() + r.b
    r = Ram(0x4200); r.desc(0x1000, 0, 0x4000, 0, WRITE); r.desc(0x1000, 1, 0xfff0, 0x20, WRITE)
    r.avail(0x2000, [0, 1])
    s['zero-and-out-of-ram'] = rng_hdr() + r.b
    r = Ram(0x4200); r.desc(0x1000, 0, 0x4000, 8, WRITE | NEXT, 0); r.avail(0x2000, [0])
    s['loop'] = rng_hdr() + r.b
    r = Ram(0x4200); r.desc(0x1000, 0, 0x4000, 16, INDIRECT); r.avail(0x2000, [0])
    s['indirect'] = rng_hdr() + r.b
    s['bad-queue-size'] = rng_hdr(qsize=5) + r.b
    s['short'] = rng_hdr()[:7]
    return s


if __name__ == '__main__':
    seedlib.write('virtio-net', net_seeds())
    seedlib.write('virtio-rng', rng_seeds())
