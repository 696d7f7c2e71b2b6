# SPDX-License-Identifier: MIT
"""What the make-corpus-*.py scripts share: a guest RAM image that grows as
rings and buffers are put into it, and writing a corpus directory."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


class GuestRam:
    def __init__(self, size):
        self.b = bytearray(size)

    def put(self, addr, data):
        end = addr + len(data)
        if end > len(self.b):
            self.b.extend(bytes(end - len(self.b)))
        self.b[addr:end] = data

    def desc_at(self, base, i, addr, length, flags=0, nxt=0):
        """Descriptor i of the table at base (split ring layout)."""
        self.put(base + 16 * i, struct.pack('<QIHH', addr, length, flags, nxt))


def write(name, seeds, prefix='seed-'):
    """corpus/<name>/<prefix><key> for each seed, next to this file."""
    d = os.path.join(HERE, 'corpus', name)
    os.makedirs(d, exist_ok=True)
    for k, v in seeds.items():
        with open(os.path.join(d, prefix + k), 'wb') as f:
            f.write(bytes(v))
