#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Extract the uncompressed ELF vmlinux from a bzImage.

Guest kernel-mode code is emulated on hosts without nested virtualization, so
decompressing a bzImage in the guest takes far too long there.  The ELF
vmlinux inside it carries a PVH note and mvm-vmm can jump straight into it.

The compressed payload is found through the setup header (payload_offset and
payload_length, boot protocol >= 2.08) and, failing that, by scanning for a
compressor's magic.  The host's own tools decompress it; the kernel appends
the uncompressed size after the stream, which some of them call trailing
garbage, so a non-zero exit is accepted as long as an ELF image came out.

Usage: vmlinux.py BZIMAGE OUT
"""

import os
import struct
import subprocess
import sys

# (magic, argv of a decompressor reading stdin and writing stdout)
FORMATS = [
    (b"\x1f\x8b\x08", ["gzip", "-dc"]),
    (b"\xfd7zXZ\x00", ["xz", "-dc"]),
    (b"\x28\xb5\x2f\xfd", ["zstd", "-dc"]),
    (b"\x02\x21\x4c\x18", ["lz4", "-dc"]),
    (b"BZh", ["bzip2", "-dc"]),
    (b"\x5d\x00\x00", ["xz", "--format=lzma", "-dc"]),
]
ELF_MAGIC = b"\x7fELF"
HDR_MAGIC_OFF = 0x202          # "HdrS"
SETUP_SECTS_OFF = 0x1f1
VERSION_OFF = 0x206
PAYLOAD_OFF = 0x248            # payload_offset, payload_length


class ExtractError(Exception):
    pass


def payload_from_header(image):
    """(offset, length) of the compressed kernel per the setup header, or
    None for an image too old or too odd to say."""
    if len(image) < PAYLOAD_OFF + 8 or image[HDR_MAGIC_OFF:HDR_MAGIC_OFF + 4] != b"HdrS":
        return None
    if struct.unpack_from("<H", image, VERSION_OFF)[0] < 0x208:
        return None
    setup_sects = image[SETUP_SECTS_OFF] or 4
    off, length = struct.unpack_from("<II", image, PAYLOAD_OFF)
    start = (setup_sects + 1) * 512 + off
    if length == 0 or start + length > len(image):
        return None
    return start, length


def decompress(data, argv):
    """Output of argv fed data; None unless it is an ELF image."""
    try:
        p = subprocess.run(argv, input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL)
    except FileNotFoundError:
        return None
    return p.stdout if p.stdout[:4] == ELF_MAGIC else None


def candidates(image):
    """Places a compressed kernel may start, most trusted first."""
    hdr = payload_from_header(image)
    if hdr:
        yield image[hdr[0]:hdr[0] + hdr[1]]
    for magic, _ in FORMATS:
        pos = image.find(magic)
        while pos >= 0:
            yield image[pos:]
            pos = image.find(magic, pos + 1)


def extract_vmlinux(image):
    """The ELF vmlinux inside bzImage bytes; raises ExtractError."""
    tried = set()
    for blob in candidates(image):
        for magic, argv in FORMATS:
            key = (len(blob), argv[0])
            if not blob.startswith(magic) or key in tried:
                continue
            tried.add(key)
            elf = decompress(blob, argv)
            if elf:
                return elf
    raise ExtractError("no decompressible ELF kernel found (tried %d streams)" % len(tried))


def extract_file(bzimage, out):
    """Writes the vmlinux of bzimage to out, unless out is already there."""
    if os.path.exists(out):
        return out
    with open(bzimage, "rb") as f:
        elf = extract_vmlinux(f.read())
    with open(out + ".tmp", "wb") as f:
        f.write(elf)
    os.rename(out + ".tmp", out)
    return out


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        extract_file(argv[1], argv[2])
    except (OSError, ExtractError) as e:
        print("vmlinux.py: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
