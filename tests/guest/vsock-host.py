#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Host side of the test guest's `mvmtest=vsock` scenario (PROTOCOL.md).

    vsock-host.py UDS [--timeout S] [-- COMMAND...]

UDS is the VM's vsock Unix socket (mvm-vmm --vsock cid=N,uds=UDS).  The
script listens on UDS_5000 and answers the guest's "mvm-vsock-ping" with
"mvm-vsock-pong" (guest to host); meanwhile it connects to UDS, sends
"CONNECT 6000\\n", waits for "OK <port>\\n", sends "mvm-vsock-hello" and
expects "mvm-vsock-world" (host to guest).  Both connections must then be
closed by the guest.  A CONNECT that gets no OK (no VM yet, or the guest
not listening yet) is retried until the timeout.

With a COMMAND (the VMM), it is started once UDS_5000 listens, its output
is passed through, and the script also requires the guest's
"MVMTEST vsock g2h ok" / "h2g ok" lines and no "MVMTEST FAIL".
Exits 0 when everything passed, 1 otherwise.
"""
import argparse
import os
import socket
import subprocess
import sys
import threading
import time

G2H_PORT, H2G_PORT = 5000, 6000
PING, PONG = b'mvm-vsock-ping', b'mvm-vsock-pong'
HELLO, WORLD = b'mvm-vsock-hello', b'mvm-vsock-world'


def log(msg):
    print('vsock-host: ' + msg, file=sys.stderr, flush=True)


def recv_exact(sock, n):
    data = b''
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def expect_eof(sock, what):
    """The guest shuts the stream down: the VMM passes that on as EOF."""
    extra = sock.recv(64)
    if extra:
        raise RuntimeError('%s: unexpected bytes %r instead of EOF' % (what, extra))


def serve_g2h(listener, result):
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(listener.gettimeout())
            got = recv_exact(conn, len(PING))
            if got != PING:
                raise RuntimeError('g2h: got %r, want %r' % (got, PING))
            conn.sendall(PONG)
            expect_eof(conn, 'g2h')
        result['g2h'] = 'ok'
    except Exception as e:  # reported by main
        result['g2h'] = 'g2h: %s' % e


def read_line(sock):
    line = b''
    while not line.endswith(b'\n') and len(line) < 32:
        c = sock.recv(1)
        if not c:
            return None
        line += c
    return line


def try_connect(uds, timeout):
    """One CONNECT attempt: the connected socket, or None to retry."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(uds)
        s.sendall(b'CONNECT %d\n' % H2G_PORT)
        line = read_line(s)
    except (FileNotFoundError, ConnectionError):
        s.close()
        return None
    if line is None:
        s.close()
        return None
    if not line.startswith(b'OK ') or not line[3:-1].isdigit():
        s.close()
        raise RuntimeError('h2g: bad answer to CONNECT: %r' % line)
    log('h2g: connected, host port %s' % line[3:-1].decode())
    return s


def run_h2g(uds, deadline, timeout, alive):
    while True:
        s = try_connect(uds, timeout)
        if s:
            break
        if time.monotonic() > deadline or not alive():
            raise RuntimeError('h2g: no OK from %s' % uds)
        time.sleep(0.2)
    with s:
        s.sendall(HELLO)
        got = recv_exact(s, len(WORLD))
        if got != WORLD:
            raise RuntimeError('h2g: got %r, want %r' % (got, WORLD))
        expect_eof(s, 'h2g')


def pump_output(proc, lines):
    for raw in proc.stdout:
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
        lines.append(raw.decode(errors='replace').rstrip('\n'))


def check_guest(proc, lines, timeout):
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return 'the VMM did not exit within %d s' % timeout
    want = ['MVMTEST vsock g2h ok', 'MVMTEST vsock h2g ok']
    fails = [l for l in lines if l.startswith('MVMTEST FAIL')]
    if fails:
        return 'guest: ' + fails[0]
    missing = [w for w in want if w not in lines]
    return 'guest: missing %r' % missing[0] if missing else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('uds')
    ap.add_argument('--timeout', type=float, default=60)
    argv, cmd = sys.argv[1:], []
    if '--' in argv:
        argv, cmd = argv[:argv.index('--')], argv[argv.index('--') + 1:]
    a = ap.parse_args(argv)
    path = '%s_%d' % (a.uds, G2H_PORT)
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(a.timeout)
    result, lines, errors = {}, [], []
    g2h = threading.Thread(target=serve_g2h, args=(listener, result), daemon=True)
    g2h.start()
    proc = out = None
    if cmd:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        out = threading.Thread(target=pump_output, args=(proc, lines), daemon=True)
        out.start()
    deadline = time.monotonic() + a.timeout
    alive = lambda: proc is None or proc.poll() is None
    try:
        run_h2g(a.uds, deadline, a.timeout, alive)
        log('h2g ok')
    except Exception as e:
        errors.append(str(e))
    # Without a VMM to watch, the accept's own timeout ends the wait.
    while g2h.is_alive() and alive() and time.monotonic() < deadline:
        g2h.join(0.2)
    if result.get('g2h') == 'ok':
        log('g2h ok')
    else:
        errors.append(result.get('g2h', 'g2h: no connection on %s' % path))
    if proc:
        err = check_guest(proc, lines, a.timeout)
        out.join(5)
        if err:
            errors.append(err)
    listener.close()
    os.unlink(path)
    for e in errors:
        log('FAIL ' + e)
    return 1 if errors else 0


if __name__ == '__main__':
    sys.exit(main())
