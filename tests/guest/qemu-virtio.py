#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Runs the test guest's virtio scenarios under QEMU -M microvm (modern
virtio-mmio), as a reference for the guest drivers independent of mvm-vmm.
Usage: qemu-virtio.py mvmtest.elf.  Exits 77 without /dev/kvm or QEMU."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

MIB = 1 << 20


def skip(why):
    print('SKIP: ' + why, file=sys.stderr)
    sys.exit(77)


def run(elf, cmdline, acpi, extra):
    cmd = ['qemu-system-x86_64', '-M', 'microvm,acpi=' + acpi, '-accel', 'kvm', '-m', '256M',
           '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio',
           '-global', 'virtio-mmio.force-legacy=false',
           '-kernel', elf, '-append', 'mvmtest=' + cmdline] + extra
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    lines = [l for l in p.stdout.splitlines() if l.startswith('MVMTEST ')]
    return lines


def expect(lines, want, what):
    for w in want:
        if w not in lines:
            print('\n'.join(lines), file=sys.stderr)
            raise SystemExit('%s: missing line %r' % (what, w))
    fails = [l for l in lines if l.startswith('MVMTEST FAIL')]
    if fails:
        raise SystemExit('%s: %s' % (what, fails))


def udp_pong(sock):
    while True:
        try:
            data, addr = sock.recvfrom(2048)
        except OSError:
            return
        if data == b'mvm-net-ping':
            sock.sendto(b'mvm-net-pong', addr)


def main():
    elf = sys.argv[1]
    if not os.access('/dev/kvm', os.R_OK | os.W_OK):
        skip('cannot open /dev/kvm')
    if not shutil.which('qemu-system-x86_64'):
        skip('qemu-system-x86_64 not installed')
    tmp = tempfile.mkdtemp(prefix='mvmtest-qemu-')
    disk, ro = os.path.join(tmp, 'disk.img'), os.path.join(tmp, 'ro.img')
    with open(disk, 'wb') as f:
        f.write(bytes((i * 7 + 3) & 0xff for i in range(MIB)) + bytes(3 * MIB))
    with open(ro, 'wb') as f:
        f.write(b'\xa5' * MIB)
    # QEMU puts the first -device at the highest address: read-only disk first.
    disks = ['-drive', 'id=r,file=%s,format=raw,if=none,readonly=on' % ro,
             '-device', 'virtio-blk-device,drive=r',
             '-drive', 'id=d,file=%s,format=raw,if=none' % disk,
             '-device', 'virtio-blk-device,drive=d,serial=disk0',
             '-device', 'virtio-rng-device']
    for acpi, src in (('on', 'acpi'), ('off', 'cmdline')):
        lines = run(elf, 'virtio', acpi, disks)
        devs = [l for l in lines if l.startswith('MVMTEST virtio dev ')]
        expect(lines, ['MVMTEST virtio done n=3'], 'virtio acpi=' + acpi)
        if sorted(int(l.split('id=')[1].split()[0]) for l in devs) != [2, 2, 4] or \
           any(not l.endswith('src=' + src) for l in devs):
            raise SystemExit('virtio acpi=%s: devices %s' % (acpi, devs))
        lines = run(elf, 'blk', acpi, disks)
        expect(lines, ['MVMTEST blk id=disk0 capacity=8192', 'MVMTEST blk read ok',
                       'MVMTEST blk write ok', 'MVMTEST blk past-end status=1',
                       'MVMTEST blk ro-write status=1'], 'blk acpi=' + acpi)
        with open(disk, 'rb') as f:
            f.seek(MIB)
            if f.read(MIB) != bytes((i * 13 + 5) & 0xff for i in range(MIB, 2 * MIB)):
                raise SystemExit('blk: second MiB of the disk does not hold the write pattern')
        with open(ro, 'rb') as f:
            if f.read() != b'\xa5' * MIB:
                raise SystemExit('blk: the read-only disk changed')
        expect(run(elf, 'rng', acpi, disks), ['MVMTEST rng ok bytes=64'], 'rng acpi=' + acpi)
        lines = run(elf, 'hostile', acpi, disks)
        cases = [l for l in lines if l.startswith('MVMTEST hostile case=')]
        expect(lines, ['MVMTEST hostile recovered'], 'hostile acpi=' + acpi)
        if len(cases) != 6:
            raise SystemExit('hostile: %s' % cases)
    # Both sources: the command line repeats what the DSDT says.
    lines = run(elf, 'virtio virtio_mmio.device=0x200@0xfeb02e00:47', 'on',
                ['-device', 'virtio-rng-device'])
    expect(lines, ['MVMTEST virtio dev addr=feb02e00 irq=47 id=4 src=both'], 'both')
    lines = run(elf, 'virtio virtio_mmio.device=512@0xfeb02e00:46', 'on',
                ['-device', 'virtio-rng-device'])
    if not any(l.startswith('MVMTEST FAIL virtio: cmdline and acpi disagree') for l in lines):
        raise SystemExit('disagreeing sources were not reported: %s' % lines)

    # net over QEMU's user networking: 10.0.2.2 is the host's loopback.
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(('127.0.0.1', 7))
    except OSError as e:
        print('net part skipped: cannot bind UDP port 7: %s' % e, file=sys.stderr)
    else:
        threading.Thread(target=udp_pong, args=(sock,), daemon=True).start()
        lines = run(elf, 'net:10.0.2.2', 'on', ['-netdev', 'user,id=n0',
                                                 '-device', 'virtio-net-device,netdev=n0'])
        expect(lines, ['MVMTEST net tx ok', 'MVMTEST net rx ok'], 'net')
        if not any(l.startswith('MVMTEST net mac=52:54:00') for l in lines):
            raise SystemExit('net: mac line %s' % lines)
    shutil.rmtree(tmp)
    print('ok')


if __name__ == '__main__':
    main()
