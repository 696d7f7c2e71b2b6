#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mvm-vmm --sandbox: the lockdown is in place, and the guest still works.

Usage: sandbox_test.py CASE | --list

Environment: as kvmtest.py (MVM_VMM, MVM_BZIMAGE, MVM_ELF), plus
MVM_TEST_HOOKS=1 when mvm-vmm was built with -Dtest_hooks=true.
Needs root (the lockdown switches uid and mounts) and /dev/kvm; exits 77
saying why when either is missing.
"""

import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kvmtest  # noqa: E402
from kvmtest import Skip, TestFailure, Vmm, check  # noqa: E402

SKIP = 77
SANDBOX = ["--sandbox"]


def sandboxed_boot_args(fmt, scenario, mem="64M", vcpus=1, extra=()):
    return kvmtest_boot_args(fmt, scenario, mem, vcpus, list(extra) + SANDBOX)


# Every kvmtest case below builds its command line through boot_args().
kvmtest_boot_args = kvmtest.boot_args
kvmtest.boot_args = sandboxed_boot_args


def status_fields(pid, tid=None):
    path = "/proc/%d/status" % pid if tid is None else "/proc/%d/task/%d/status" % (pid, tid)
    fields = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.strip()
    return fields


def limits(pid):
    """{'Max open files': (soft, hard), ...} from /proc/PID/limits."""
    out = {}
    with open("/proc/%d/limits" % pid) as f:
        next(f)
        for line in f:
            name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
            out[name] = (soft, hard)
    return out


def start_idle(extra=(), vcpus=2, pass_fds=()):
    args = sandboxed_boot_args("bz", "idle", vcpus=vcpus, extra=extra)
    argv = [os.environ["MVM_VMM"]] + args
    print("+ " + " ".join(argv), flush=True)
    vmm = Vmm.__new__(Vmm)
    vmm.argv = argv
    vmm.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                pass_fds=pass_fds)
    vmm.out = kvmtest.Stream(vmm.proc.stdout)
    vmm.err = kvmtest.Stream(vmm.proc.stderr)
    vmm.status = None
    if not vmm.out.wait_for(b"MVMTEST idle", kvmtest.DEFAULT_TIMEOUT):
        vmm.kill()
        vmm.report()
        raise TestFailure("sandboxed guest never printed 'MVMTEST idle'")
    return vmm


def worker_pid(vmm):
    """Run by hand, mvm-vmm --sandbox forks the VMM as PID 1 of a new PID
    namespace and waits for it: the VMM is the only child of vmm.proc."""
    path = "/proc/%d/task/%d/children" % (vmm.proc.pid, vmm.proc.pid)
    with open(path) as f:
        kids = [int(p) for p in f.read().split()]
    check(len(kids) == 1, "mvm-vmm %d has children %s, expected one worker" %
          (vmm.proc.pid, kids))
    return kids[0]


def stop(vmm):
    """SIGTERM ends a sandboxed worker by that signal, as an unsandboxed one."""
    vmm.proc.send_signal(signal.SIGTERM)
    vmm.wait(10)
    check(vmm.status == -signal.SIGTERM,
          "after SIGTERM: exit status %d, expected death by SIGTERM" % vmm.status)
    for mark in kvmtest.SANITIZER_MARKS:
        check(mark not in vmm.err.text(), "sanitizer report on stderr")


def check_creds(pid):
    st = status_fields(pid)
    for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        check(int(st[k], 16) == 0, "%s is %s, expected 0" % (k, st[k]))
    check(st["NoNewPrivs"] == "1", "NoNewPrivs is %s" % st["NoNewPrivs"])
    check(st["Seccomp"] == "2", "Seccomp is %s, expected 2 (filter)" % st["Seccomp"])
    uids, gids = st["Uid"].split(), st["Gid"].split()
    check(len(set(uids)) == 1 and uids[0] != "0", "Uid %s: expected one non-zero id" % uids)
    check(len(set(gids)) == 1 and gids[0] != "0", "Gid %s: expected one non-zero id" % gids)
    check(st["Groups"] == "", "supplementary groups %r left" % st["Groups"])
    return st


def check_threads(pid, vcpus):
    """Every thread is filtered; vCPU threads, which name themselves
    "vcpuN" (from outside that would need /proc), carry a second, narrower
    filter on top of the main one."""
    want = sorted("vcpu%d" % i for i in range(vcpus))
    # The guest's first line can come before the last vCPU thread has
    # been named and has loaded its own filter (seen under load): give
    # the threads a few seconds to settle before judging.
    deadline = time.monotonic() + 10
    while True:
        per_thread, names = {}, {}
        for tid in sorted(int(t) for t in os.listdir("/proc/%d/task" % pid)):
            with open("/proc/%d/task/%d/comm" % (pid, tid)) as f:
                comm = f.read().strip()
            if comm.startswith("kvm-"):
                continue  # KVM's own kernel worker, accounted to the process
            st = status_fields(pid, tid)
            check(st["Seccomp"] == "2", "thread %d: Seccomp %s" % (tid, st["Seccomp"]))
            check(int(st["CapEff"], 16) == 0, "thread %d: CapEff %s" % (tid, st["CapEff"]))
            per_thread[tid] = st.get("Seccomp_filters")
            names[tid] = comm
        vcpu_names = sorted(n for t, n in names.items() if t != pid)
        settled = vcpu_names == want and (per_thread[pid] is None or sum(
            1 for t, n in per_thread.items() if t != pid and n == "2") == vcpus)
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print("seccomp filters per thread: %s, names %s" % (per_thread, names))
    check(vcpu_names == want, "vCPU threads are named %s" % vcpu_names)
    if per_thread[pid] is None:
        return  # kernel without Seccomp_filters in status
    check(per_thread[pid] == "1", "main thread has %s filters, expected 1" % per_thread[pid])
    vcpu_threads = [t for t, n in per_thread.items() if t != pid and n == "2"]
    check(len(vcpu_threads) == vcpus, "%d threads with the vCPU filter, expected %d: %s" %
          (len(vcpu_threads), vcpus, per_thread))


def landlock_abi():
    """The kernel's Landlock ABI, 0 without Landlock (as vmm/sandbox.c asks)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    v = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(v, 0)


def uses_landlock(netns_forced=False):
    """The worker takes a Landlock domain (ABI >= 6: abstract Unix socket
    scoping) instead of a network namespace."""
    return not netns_forced and landlock_abi() >= 6


def check_namespaces(pid, netns_forced=False):
    same = []
    for ns in ("mnt", "pid", "ipc", "uts", "net", "cgroup"):
        if os.readlink("/proc/%d/ns/%s" % (pid, ns)) == os.readlink("/proc/self/ns/" + ns):
            same.append(ns)
    # No IPC namespace (its mqueue superblock costs every memory cgroup;
    # seccomp allows no IPC call), and with Landlock no network namespace
    # (85-90 KiB per VM).
    want = ["ipc", "net"] if uses_landlock(netns_forced) else ["ipc"]
    print("Landlock ABI %d: worker shares the test's namespaces %s" % (landlock_abi(), same))
    check(same == want, "worker shares the test's %s namespace(s), expected %s" %
          (", ".join(same) or "no", ", ".join(want) or "none"))
    # PID 1 of its namespace: it sees no other process.
    nspid = status_fields(pid)["NSpid"].split()
    check(nspid == [str(pid), "1"], "NSpid %s, expected [%d, 1]" % (nspid, pid))


def check_waiter(pid):
    """The process left waiting holds no fds but the standard three."""
    fds = sorted(int(f) for f in os.listdir("/proc/%d/fd" % pid))
    check(fds == [0, 1, 2], "the waiting mvm-vmm holds fds %s" % fds)


def check_root_and_fds(pid):
    """Without --sandbox-dir the root is empty."""
    root = os.listdir("/proc/%d/root/" % pid)
    check(root == [], "the worker's root holds %s, expected nothing" % root)
    # The host's tree stays beneath the moved root (no pivot_root), but
    # nothing of it is reachable from the worker's root: its mountinfo,
    # which shows only mounts under that root, holds the root alone.
    with open("/proc/%d/mountinfo" % pid) as f:
        mounts = [l.split()[4] for l in f]
    check(mounts == ["/"], "the worker sees mounts %s, expected only its root" % mounts)
    check(os.readlink("/proc/%d/root" % pid) == "/", "the worker's root is not '/'")
    fds = {int(f): os.readlink("/proc/%d/fd/%s" % (pid, f)) for f in os.listdir("/proc/%d/fd" % pid)}
    print("worker fds: %s" % fds)
    # fd numbers are reused at once (signalfd), so look for the file itself.
    check(not [t for t in fds.values() if t.endswith("stray-file")],
          "the stray inherited file is still open")


def check_limits(pid, vcpus):
    lim = limits(pid)
    print("limits: %s" % lim)
    check(lim["Max core file size"] == ("0", "0"), "core limit %s" % (lim["Max core file size"],))
    check(lim["Max locked memory"] == ("0", "0"), "memlock %s" % (lim["Max locked memory"],))
    # the main thread and a spare, the vCPUs, and NPROC_MARGIN (KVM's
    # per-VM task, a predecessor's thread): docs/security.md step 4b
    check(lim["Max processes"][0] == str(vcpus + 4), "nproc %s, expected %d" %
          (lim["Max processes"], vcpus + 4))
    nofile = int(lim["Max open files"][0])
    check(nofile <= 64, "open files limit %d, expected a small number" % nofile)
    check(lim["Max file size"][0] != "unlimited", "file size unlimited")


def abstract_listener():
    """A host abstract Unix socket, as a host service would have one."""
    name = "mvm-sandbox-test-%d" % os.getpid()
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind("\0" + name)
    ls.listen(4)
    # The name is right: the test itself, outside any sandbox, gets through.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect("\0" + name)
        ls.accept()[0].close()
    ls.setblocking(False)
    return ls, name


def check_abstract_refused(vmm, ls, name, netns_forced=False):
    """The worker, fully locked down (seccomp too), dialled the host's
    abstract socket (--test-abstract-connect): the kernel refused it."""
    line = "connect to abstract @%s: " % name
    deadline = time.monotonic() + 10
    while line not in vmm.err.text() and time.monotonic() < deadline:
        time.sleep(0.05)
    err = vmm.err.text()
    got = err.split(line, 1)[1].split("\n", 1)[0] if line in err else None
    print("worker's connect to @%s: %s" % (name, got))
    try:
        ls.accept()
        check(False, "the host's abstract socket accepted a connection from the worker")
    except BlockingIOError:
        pass
    # EPERM: Landlock's scope; ECONNREFUSED: no such name in the worker's netns.
    want = "Operation not permitted" if uses_landlock(netns_forced) else "Connection refused"
    check(got == want, "the worker's connect said %r, expected %r" % (got, want))


def case_state(tmp, netns_forced=False):
    stray = os.open(os.path.join(tmp, "stray-file"), os.O_WRONLY | os.O_CREAT, 0o600)
    hooks = os.environ.get("MVM_TEST_HOOKS") == "1"
    if netns_forced and not hooks:
        raise Skip("mvm-vmm built without -Dtest_hooks=true: no --test-sandbox-netns")
    ls, name = abstract_listener()
    extra = ["--test-abstract-connect", name] if hooks else []
    if netns_forced:
        extra.append("--test-sandbox-netns")
    vmm = start_idle(extra=extra, pass_fds=(stray,))
    try:
        pid = worker_pid(vmm)
        check_waiter(vmm.proc.pid)
        check_creds(pid)
        check_threads(pid, 2)
        check_namespaces(pid, netns_forced)
        check_root_and_fds(pid)
        check_limits(pid, 2)
        if hooks:
            check_abstract_refused(vmm, ls, name, netns_forced)
        else:
            print("no --test-abstract-connect (built without test hooks): probe skipped")
        stop(vmm)
    finally:
        vmm.kill()
        os.close(stray)
        ls.close()


def alive(pid):
    """Running: neither gone nor a zombie waiting for init to reap it."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def case_waiter_killed(tmp):
    """Run by hand, the worker dies with the process left waiting for it,
    even though its uid change cleared the parent-death signal once."""
    vmm = start_idle()
    try:
        pid = worker_pid(vmm)
        vmm.proc.kill()
        vmm.proc.wait()
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        check(not alive(pid), "worker %d still runs 5 s after its waiter was killed" % pid)
    finally:
        vmm.kill()


def cgroup2_root():
    with open("/proc/self/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return mnt
    return None


def case_cgroup(tmp):
    root = cgroup2_root()
    if root is None:
        raise Skip("no cgroup v2 hierarchy mounted")
    cg = os.path.join(root, "mvm-sandbox-test-%d" % os.getpid())
    try:
        os.mkdir(cg)
    except OSError as e:
        raise Skip("cannot create a cgroup under %s: %s" % (root, e.strerror))
    try:
        vmm = start_idle(extra=["--cgroup-procs", os.path.join(cg, "cgroup.procs")])
        try:
            with open(os.path.join(cg, "cgroup.procs")) as f:
                members = [int(p) for p in f.read().split()]
            pid = worker_pid(vmm)
            check(pid in members, "worker %d not in %s (%s)" % (pid, cg, members))
            stop(vmm)
        finally:
            vmm.kill()
    finally:
        os.rmdir(cg)


def resolve_syscall(nr):
    """The name mvmd records, from libseccomp as mvmd resolves it."""
    lib = ctypes.util.find_library("seccomp")
    if not lib:
        return None
    seccomp = ctypes.CDLL(lib)
    seccomp.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    seccomp.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    p = seccomp.seccomp_syscall_resolve_num_arch(0, nr)  # 0: the native arch
    if not p:
        return None
    name = ctypes.string_at(p).decode()
    libc = ctypes.CDLL(None)
    libc.free(ctypes.c_void_p(p))
    return name


def case_forbidden(tmp):
    if os.environ.get("MVM_TEST_HOOKS") != "1":
        raise Skip("mvm-vmm built without -Dtest_hooks=true: no --test-forbidden-syscall")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    argv = ([os.environ["MVM_VMM"]] + sandboxed_boot_args("bz", "idle") +
            ["--control-fd", str(theirs.fileno()), "--test-forbidden-syscall"])
    print("+ " + " ".join(argv), flush=True)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),))
    theirs.close()
    try:
        out, err = proc.communicate(timeout=kvmtest.DEFAULT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise TestFailure("worker still running after the forbidden syscall")
    link = b""
    ours.settimeout(2)
    while True:
        chunk = ours.recv(65536)
        if not chunk:
            break
        link += chunk
    print("exit status %d\n--- stderr ---\n%s\n--- link ---\n%s" %
          (proc.returncode, err.decode(errors="replace"), link.decode(errors="replace")))
    check(proc.returncode == -signal.SIGSYS,
          "exit status %d, expected death by SIGSYS" % proc.returncode)
    check(b"MVMTEST" not in out, "the guest ran after a failed lockdown")
    lines = [l for l in link.split(b"\n") if l.startswith(b'{"msg":"seccomp"')]
    check(len(lines) == 1, "expected one seccomp report on the link, got %r" % lines)
    nr = int(lines[0].split(b'"nr":')[1].rstrip(b"}"))
    name = resolve_syscall(nr)
    print("reported syscall %d = %s" % (nr, name))
    check(name == "socket", "report names syscall %d (%s), expected socket" % (nr, name))
    check(("syscall %d" % nr).encode() in err, "stderr does not name syscall %d" % nr)


SANDBOX_UID = 260000 + os.getpid() % 10000


def case_serial_log_full(tmp):
    """A serial log whose file system fills up is switched off where the
    write failed, on a vCPU thread; closing it there broke that thread's
    seccomp filter (no close) and killed the worker with SIGSYS."""
    fs = os.path.join(tmp, "tiny")
    os.mkdir(fs)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "mvm-test-tiny", fs], check=True)
    try:
        with open(os.path.join(fs, "filler"), "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"x" * 4096)
            except OSError:
                pass
        log = os.path.join(fs, "serial.log")
        vmm = kvmtest.run_vmm(kvmtest.boot_args("bz", "hello", extra=["--serial-log", log]))
        check(b"MVMTEST e820 done" in vmm.out.buf, "the console lost output")
        check("serial log write failed" in vmm.err.text(), "no word of the failed log")
    finally:
        subprocess.run(["umount", "-l", fs])


def make_jail(tmp):
    """A per-VM directory as mvmd makes one: 0700, owned by the worker's id."""
    jail = os.path.join(tmp, "vms", "jail")
    os.makedirs(jail, 0o700)
    os.chown(jail, SANDBOX_UID, SANDBOX_UID)
    return jail


def id_args():
    return ["--sandbox-uid", str(SANDBOX_UID), "--sandbox-gid", str(SANDBOX_UID)]


def case_dir_root(tmp):
    """--sandbox-dir: the root is that directory, read-only, and nothing
    else of the host; a bind mount of it, no filesystem of its own."""
    jail = make_jail(tmp)
    with open(os.path.join(jail, "marker"), "w") as f:
        f.write("in the jail\n")
    vmm = start_idle(extra=["--sandbox-dir", jail] + id_args())
    try:
        pid = worker_pid(vmm)
        root = "/proc/%d/root" % pid
        check(os.path.samefile(root, jail), "the worker's root is not the host's %s" % jail)
        check(sorted(os.listdir(root)) == ["marker"], "root holds %s" % os.listdir(root))
        mounts = open("/proc/%d/mounts" % pid).read().splitlines()
        print("worker mounts:\n  " + "\n  ".join(mounts))
        check(len(mounts) == 1, "expected the jail alone, got %d mounts" % len(mounts))
        for m in mounts:
            opts = m.split()[3].split(",")
            check("ro" in opts and "nosuid" in opts and "nodev" in opts and "noexec" in opts,
                  "mount not ro,nosuid,nodev,noexec: %s" % m)
        check(status_fields(pid)["Uid"].split()[0] == str(SANDBOX_UID), "uid not --sandbox-uid")
        stop(vmm)
    finally:
        vmm.kill()


def case_bad_dir_spelling(tmp):
    """A --sandbox-dir the worker cannot mirror exactly is a usage error."""
    jail = make_jail(tmp)
    for bad in (jail + "/", jail + "/.", os.path.relpath(jail), jail.replace("/vms/", "//vms/")):
        vmm = Vmm(sandboxed_boot_args("bz", "hello", extra=["--sandbox-dir", bad]))
        vmm.wait()
        check(vmm.status == 1, "--sandbox-dir %r: exit status %d, expected 1" % (bad, vmm.status))
        check("--sandbox-dir takes an absolute path" in vmm.err.text(), "no usage message")
        check("MVMTEST" not in vmm.out.text(), "the guest ran with --sandbox-dir %r" % bad)


def case_bad_dir(tmp):
    """A failed step names itself and the guest never runs."""
    args = sandboxed_boot_args("bz", "hello", extra=["--sandbox-dir", os.path.join(tmp, "nope")])
    vmm = Vmm(args)
    vmm.wait()
    check(vmm.status == 2, "exit status %d, expected 2" % vmm.status)
    check("sandbox step 'enter namespaces and empty root' failed" in vmm.err.text(),
          "stderr does not name the failed step")
    check("MVMTEST" not in vmm.out.text(), "the guest ran")


CASES = {
    "sandbox-state": case_state,
    "sandbox-state-netns": lambda tmp: case_state(tmp, netns_forced=True),
    "sandbox-cgroup": case_cgroup,
    "sandbox-waiter-killed": case_waiter_killed,
    "sandbox-forbidden-syscall": case_forbidden,
    "sandbox-bad-dir": case_bad_dir,
    "sandbox-dir-root": case_dir_root,
    "sandbox-dir-spelling": case_bad_dir_spelling,
    # The earlier scenarios, unchanged but for --sandbox.
    "sandbox-bz-hello": lambda tmp: kvmtest.case_hello("bz"),
    "sandbox-elf-hello": lambda tmp: kvmtest.case_hello("elf"),
    "sandbox-bz-echo": lambda tmp: kvmtest.case_echo("bz"),
    "sandbox-bz-smp-4": lambda tmp: kvmtest.case_smp("bz", 4),
    "sandbox-elf-smp-4": lambda tmp: kvmtest.case_smp("elf", 4),
    "sandbox-bz-poweroff": lambda tmp: kvmtest.case_poweroff("bz"),
    "sandbox-bz-initrd": lambda tmp: kvmtest.case_initrd("bz", tmp),
    "sandbox-bz-triple": lambda tmp: kvmtest.case_triple("bz"),
    "sandbox-bz-idle": lambda tmp: kvmtest.case_idle("bz"),
    "sandbox-bz-smp-32": lambda tmp: kvmtest.case_smp("bz", 32),   # NPROC = vCPUs + 2
    "sandbox-elf-hello-4g": lambda tmp: kvmtest.case_hello("elf", mem="4G"),
    "sandbox-serial-log": kvmtest.case_serial_log,                 # FSIZE bounds the log
    "sandbox-serial-file": kvmtest.case_serial_file,
    "sandbox-serial-log-full": case_serial_log_full,
}


def not_root():
    return "not root: the lockdown switches uid and mounts" if os.geteuid() != 0 else None


def main(argv):
    return kvmtest.run_main(argv, CASES, "mvm-sandbox-test-", skip_why=not_root)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
