#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz-virtio-vsock (corpus/virtio-vsock/).

Each seed is the 28-byte header fuzz-virtio-vsock.c describes (queue size,
flags, rounds, rx and tx ring addresses) followed by a guest RAM image: rx
buffers posted the way Linux posts them, and tx packets, valid ones and the
malformed shapes the device must answer with RST (or, for broken chains,
NEEDS_RESET).  Run from anywhere; writes next to this script."""
import struct

import seedlib
RX_DESC, RX_AVAIL, RX_USED = 0x1000, 0x1200, 0x1400
TX_DESC, TX_AVAIL, TX_USED = 0x2000, 0x2200, 0x2400
RX_BUF, TX_BUF = 0x4000, 0x8000
NEXT, WRITE = 1, 2
REQUEST, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST = range(1, 8)
GUEST_CID, HOST_CID, HOST_PORT0 = 3, 2, 1 << 30
QSIZE = 16


def vhdr(op, src_port, dst_port, length=0, flags=0, src_cid=GUEST_CID, dst_cid=HOST_CID,
         typ=1, buf_alloc=65536, fwd_cnt=0):
    return struct.pack('<QQIIIHHIII', src_cid, dst_cid, src_port, dst_port, length, typ, op,
                       flags, buf_alloc, fwd_cnt)


class Ram(seedlib.GuestRam):
    def __init__(self):
        super().__init__(0xa000)
        self.tx_next = 0
        self.tx_heads = []
        self.tx_data = TX_BUF

    desc = seedlib.GuestRam.desc_at

    def avail(self, base, heads):
        for k, h in enumerate(heads):
            self.put(base + 4 + 2 * k, struct.pack('<H', h))
        self.put(base, struct.pack('<HH', 0, len(heads)))

    def rx_buffers(self, n, size=44 + 1024):
        for i in range(n):
            self.desc(RX_DESC, i, RX_BUF + i * 0x600, size, WRITE)
        self.avail(RX_AVAIL, list(range(n)))

    def tx(self, pkt, payload=b'', split=True):
        """Queues a packet: header and payload in one or two descriptors."""
        i = self.tx_next
        self.tx_heads.append(i)
        if split and payload:
            self.put(self.tx_data, pkt)
            self.put(self.tx_data + 64, payload)
            self.desc(TX_DESC, i, self.tx_data, len(pkt), NEXT, i + 1)
            self.desc(TX_DESC, i + 1, self.tx_data + 64, len(payload))
            self.tx_next += 2
        else:
            self.put(self.tx_data, pkt + payload)
            self.desc(TX_DESC, i, self.tx_data, len(pkt) + len(payload))
            self.tx_next += 1
        self.tx_data += 64 + len(payload) + 64
        self.avail(TX_AVAIL, self.tx_heads)


def hdr(flags=0, rounds=2, qsize=QSIZE):
    return struct.pack('<HBBIIIIII', qsize, flags, rounds, RX_DESC, RX_AVAIL, RX_USED,
                       TX_DESC, TX_AVAIL, TX_USED)


def clients(n, data=False, reset=False, eof=False):
    return (n << 1) | (0x10 if data else 0) | (0x20 if reset else 0) | (0x40 if eof else 0)


def seeds():
    s = {}
    r = Ram(); r.rx_buffers(8); r.tx(vhdr(REQUEST, 700, 5000))
    r.tx(vhdr(RW, 700, 5000, 5), b'hello'); r.tx(vhdr(SHUTDOWN, 700, 5000, flags=3))
    s['valid-guest-connect'] = hdr() + r.b
    r = Ram(); r.rx_buffers(8); r.tx(vhdr(REQUEST, 701, 5001))
    s['connect-refused'] = hdr() + r.b
    r = Ram(); r.rx_buffers(8)
    r.tx(vhdr(RESPONSE, 1000, HOST_PORT0)); r.tx(vhdr(RW, 1000, HOST_PORT0, 4), b'ping', split=False)
    r.tx(vhdr(CREDIT_REQUEST, 1000, HOST_PORT0)); r.tx(vhdr(CREDIT_UPDATE, 1000, HOST_PORT0, fwd_cnt=10))
    s['valid-host-connect'] = hdr(clients(1, data=True), rounds=4) + r.b
    r = Ram(); r.rx_buffers(16); r.tx(vhdr(RESPONSE, 1000, HOST_PORT0)); r.tx(vhdr(RESPONSE, 1001, HOST_PORT0 + 1))
    r.tx(vhdr(RST, 1001, HOST_PORT0 + 1))
    s['valid-host-connect-many'] = hdr(clients(7, data=True), rounds=7) + r.b
    r = Ram(); r.rx_buffers(12); r.tx(vhdr(RESPONSE, 1000, HOST_PORT0)); r.tx(vhdr(RESPONSE, 1001, HOST_PORT0 + 1))
    s['host-eof'] = hdr(clients(2, data=True, eof=True), rounds=4) + r.b
    r = Ram(); r.rx_buffers(2); r.tx(vhdr(RESPONSE, 1000, HOST_PORT0, buf_alloc=3))
    s['credit-tiny'] = hdr(clients(1, data=True), rounds=5) + r.b
    r = Ram(); r.rx_buffers(4, size=20)
    r.tx(vhdr(REQUEST, 702, 5000))
    s['rx-buffer-too-small'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(RW, 703, 5000, 100), b'x' * 10)
    s['len-beyond-desc'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(RW, 703, 5000, 0xffffffff), b'x' * 10)
    s['len-huge'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(REQUEST, 704, 5000, src_cid=9))
    s['bad-src-cid'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(REQUEST, 705, 5000, dst_cid=1))
    s['bad-dst-cid'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(99, 706, 5000))
    s['unknown-op'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(REQUEST, 707, 5000, typ=2))
    s['seqpacket'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(REQUEST, 708, 5000)); r.tx(vhdr(RW, 708, 5000, 30000), b'y' * 30000, split=False)
    s['big-rw'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(REQUEST, 709, 5000)[:20])
    s['short-header'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.tx(vhdr(REQUEST, 710, 5000)); r.desc(TX_DESC, 0, TX_BUF, 44, NEXT, 0)
    s['tx-loop'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4); r.desc(RX_DESC, 1, 0xff00, 0x400, WRITE); r.tx(vhdr(REQUEST, 711, 5000))
    s['rx-out-of-ram'] = hdr() + r.b
    r = Ram(); r.rx_buffers(4)
    r.tx(vhdr(REQUEST, 712, 5000)); r.tx(vhdr(REQUEST, 712, 5000))
    s['duplicate-request'] = hdr(clients(2, reset=True)) + r.b
    r = Ram(); r.rx_buffers(8); r.put(RX_DESC, bytes(16))
    r.tx(vhdr(REQUEST, 713, 5000)); r.tx(vhdr(SHUTDOWN, 713, 5000, flags=2)); r.tx(vhdr(RW, 713, 5000, 1), b'z')
    s['shutdown-then-rw'] = hdr(rounds=3) + r.b
    s['bad-queue-size'] = hdr(qsize=3) + Ram().b
    s['short'] = b'\x10\x00\x02'
    return s


if __name__ == '__main__':
    seedlib.write('virtio-vsock', seeds())
