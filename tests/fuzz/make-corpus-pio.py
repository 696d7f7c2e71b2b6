#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz-pio (corpus/pio/).

Each seed is a program in the op format fuzz-pio.c describes: guest port
reads and writes of the 16550A at 0x3f8 and the i8042 at 0x60/0x64, host
console input and Ctrl-Alt-Del, in the sequences real drivers use (Linux's
8250 probe and setup, its i8042 and atkbd probes) plus odd widths and ports
beside the ranges.  Run from anywhere; writes next to this script."""
import seedlib

COM1, DATA, CMD = 0x3f8, 0x60, 0x64
PORTS = [COM1 - 1] + [COM1 + i for i in range(9)] + \
    [DATA - 1, DATA, DATA + 1, CMD - 1, CMD, CMD + 1]
WIDTH_CODE = {1: 0, 2: 1, 4: 2}
THR, IER, FCR, LCR, MCR, LSR, MSR, SCR = range(8)
IIR = FCR


def out(port, val, width=1):
    op = (WIDTH_CODE[width] << 6) | (PORTS.index(port) << 2)
    return bytes([op]) + val.to_bytes(width, 'little')


def inp(port, width=1):
    return bytes([(WIDTH_CODE[width] << 6) | (PORTS.index(port) << 2) | 1])


def host(data):
    """Host console input, split in chunks of at most 63 bytes."""
    b = b''
    for i in range(0, len(data), 63):
        chunk = data[i:i + 63]
        b += bytes([(len(chunk) << 2) | 2]) + chunk
    return b


RETRY = bytes([0x04 | 3])
CAD = bytes([3])


def uout(reg, val):
    return out(COM1 + reg, val)


def uin(reg):
    return inp(COM1 + reg)


def linux_8250_probe():
    """autoconfig(): scratch test, IER test, loopback MSR test, FIFO probe."""
    b = uin(IER) + uout(IER, 0) + uin(IER) + uout(IER, 0x0f) + uin(IER) + uout(IER, 0)
    b += uin(MCR) + uout(MCR, 0x10) + uin(MSR) + uout(MCR, 0x1a) + uin(MSR) + uout(MCR, 0)
    b += uout(SCR, 0xa5) + uin(SCR) + uout(SCR, 0x5a) + uin(SCR)
    b += uout(FCR, 0x01) + uin(IIR) + uout(FCR, 0x00) + uin(IIR)
    b += uout(LCR, 0xbf) + uout(IER, 0) + uout(LCR, 0)  # EFR probe of newer UARTs
    return b


def dlab_baud(div=1):
    return (uout(LCR, 0x83) + uout(THR, div & 0xff) + uout(IER, div >> 8) +
            uin(THR) + uin(IER) + uout(LCR, 0x03) + uin(LCR))


def linux_8250_startup():
    """serial8250_startup() then what a shell at 115200 8N1 does."""
    b = uout(FCR, 0x01) + uout(FCR, 0x07) + uout(FCR, 0)
    b += uin(LSR) + uin(THR) + uin(IIR) + uin(MSR)
    b += uout(LCR, 0x03) + uout(MCR, 0x0b)
    b += uout(IER, 0x02) + uin(IIR) + uout(IER, 0)  # THRE test
    b += uin(LSR) + uin(THR) + uin(IIR) + uin(MSR)
    b += dlab_baud(1) + uout(FCR, 0xc7) + uout(IER, 0x05)
    return b


def seeds():
    s = {}
    s['8250-probe'] = linux_8250_probe()
    s['8250-init'] = linux_8250_probe() + linux_8250_startup()
    s['dlab-baud'] = dlab_baud(0x0c) + dlab_baud(0x180) + out(COM1, 0x0201, 2)
    s['fifo-enable'] = (uout(FCR, 0xc1) + uin(IIR) + uout(FCR, 0xc7) + uin(IIR) +
                        uout(FCR, 0x06) + uin(IIR))
    s['loopback'] = (uout(MCR, 0x1f) + uin(MSR) + uout(IER, 0x07) + uout(FCR, 0x07) +
                     b''.join(uout(THR, 0x41 + i % 26) for i in range(70)) +
                     uin(IIR) + uin(LSR) + uin(IIR) + b''.join(uin(THR) for i in range(66)) +
                     uin(LSR) + uout(MCR, 0x0b))
    s['scratch'] = b''.join(uout(SCR, v) + uin(SCR) for v in (0, 0x55, 0xaa, 0xff))
    s['thr-writes'] = (uout(IER, 0x02) + b''.join(uout(THR, c) + uin(IIR) + uin(LSR)
                                                   for c in b'Linux version 6.1\r\n'))
    s['console-input'] = (linux_8250_startup() + host(b'root\n' * 40) +
                          b''.join(uin(LSR) + uin(THR) for i in range(40)) + RETRY +
                          uin(IIR) + uout(FCR, 0x07) + RETRY + uout(IER, 0) +
                          host(b'more') + uout(IER, 0x01) + RETRY + uin(THR))
    s['kbd-selftest'] = (out(CMD, 0xaa) + inp(CMD) + inp(DATA) + out(CMD, 0xab) + inp(DATA) +
                         out(CMD, 0xa9) + inp(DATA) + inp(DATA) + inp(CMD))
    s['kbd-reset-fe'] = out(CMD, 0xfe) + inp(CMD) + out(CMD, 0xf1) + out(CMD, 0xf0)
    s['kbd-ccb'] = (out(CMD, 0x20) + inp(DATA) + out(CMD, 0x60) + out(DATA, 0x65) +
                    out(CMD, 0x20) + inp(DATA) + out(CMD, 0xa7) + out(CMD, 0xa8) +
                    out(CMD, 0xad) + out(CMD, 0xae) + out(CMD, 0x20) + inp(DATA) +
                    out(CMD, 0xd0) + inp(DATA) + out(CMD, 0xd1) + out(DATA, 0x03) +
                    out(CMD, 0xd1) + out(DATA, 0x02))
    s['kbd-data'] = (out(DATA, 0xff) + inp(DATA) + inp(DATA) + out(DATA, 0xf2) +
                     inp(DATA) * 3 + out(DATA, 0xed) + out(DATA, 0x07) + out(DATA, 0xf0) +
                     out(DATA, 0x02) + out(DATA, 0xee) + out(DATA, 0xf4) + inp(CMD) +
                     inp(DATA) * 6 + out(CMD, 0xd2) + out(DATA, 0x1c) + out(CMD, 0xd3) +
                     out(DATA, 0x1) + out(CMD, 0xd4) + out(DATA, 0xff) + inp(DATA) * 2 +
                     CAD + inp(DATA) * 6 + out(CMD, 0x60) + out(DATA, 0x05) + CAD +
                     b''.join(out(DATA, 0xee) for i in range(20)) + CAD + CAD)
    s['odd-sizes'] = b''.join(out(p, 0x12345678 & ((1 << 8 * w) - 1), w) + inp(p, w)
                              for p in PORTS for w in (1, 2, 4))
    return s


if __name__ == '__main__':
    seedlib.write('pio', seeds(), prefix='')
