#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Density benchmark: fill one mvmd with N idle VMs and hold them.

Starts its own mvmd in a temporary directory (like the system tests), then
creates N (default 4,000) 1-vCPU idle test guests from C parallel clients
and measures, in one run:

  1. start throughput in buckets of B VMs (default 200), from the event
     stream's `running` events: the first and the last bucket's rate and
     their ratio (flat in N means a ratio near 1);
  2. `vm.list` round trips (request sent to the reply's last byte, not
     parsed) every 50 ms while the fleet fills (median, p99, max), from a
     process of their own (bench/listprobe.py: no GIL shared with the fill
     clients), with what the slowest 1% waited for (mvmd's loop thread
     waiting for a CPU, running, or blocked in a system call, sampled);
     beside them the same from a thread of this process, the measure of
     earlier runs;
  3. at each checkpoint (default: the QEMU fleet size, 1,000, 2,000, N): with
     the fill paused, 200 `vm.list` round trips at random spacing, 100 times
     one more create -> running (create with wait, then rm), what clients
     spend on a list (mvmctl list and mvmctl -o json list, and Python's
     json.loads of the reply),
     host memory per VM (MemTotal - MemAvailable
     against the empty host, and the kernel's part: Slab, PageTables,
     KernelStack), the workers' RSS, and the idle CPU of the whole host and
     of mvmd over 10 s;
  4. the same memory and idle CPU for a fleet of F (default 200) QEMU
     `-M microvm` VMs booting the same test guest (ELF), side by side with
     mvm's row at F.

Prints a table; nothing here gates CI.  Needs root (mvmd sandboxes its
workers), /dev/kvm and, for the peer rows, qemu-system-x86_64.

Usage: bench/density.py [--build DIR] [--vms N] [--clients C] [--bucket B]
                        [--mem MIB] [--qemu-fleet F] [--checkpoints A,B,...]
                        [--config 'key = value']... [--strace] [--favordynmods]
                        [--keep DIR] [--no-probe] [--nice N]
"""

import argparse
import json
import math
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "system"))
from harness import Daemon, Raw, TestFailure, check, kvm_usable, wait_for  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")
IDLE_WINDOW_S = 10


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--vms", type=int, default=4000, help="VMs to fill N (default 4000)")
    ap.add_argument("--clients", type=int, default=8, help="parallel clients (default 8)")
    ap.add_argument("--bucket", type=int, default=200, help="rate bucket (default 200)")
    ap.add_argument("--mem", type=int, default=32, help="guest memory MiB (default 32)")
    ap.add_argument("--qemu-fleet", type=int, default=200, help="QEMU VMs F (default 200)")
    ap.add_argument("--qemu", default=shutil.which("qemu-system-x86_64"))
    ap.add_argument("--checkpoints", default=None,
                    help="comma-separated VM counts to measure at (default F,1000,2000,N)")
    ap.add_argument("--config", action="append", default=[],
                    help="extra mvmd config line (repeatable)")
    ap.add_argument("--strace", action="store_true",
                    help="count mvmd's syncs and writes per start during the first fill "
                         "(strace -c on its loop thread; slows the fill, so its rates are not "
                         "comparable)")
    ap.add_argument("--favordynmods", action="store_true",
                    help="for the run, mount a private controller-less cgroup v1 hierarchy with "
                         "favordynmods, which puts the kernel's one threadgroup lock in the mode "
                         "that favours moving tasks (cgroup.procs writes stop waiting for an RCU "
                         "grace period, host-wide while mounted); unmounted at the end")
    ap.add_argument("--keep", metavar="DIR",
                    help="when VMs fail, copy mvmd.log and their vmm.log files here")
    ap.add_argument("--no-probe", dest="probe", action="store_false",
                    help="skip timing the sandbox calls of hand-run workers (strace -T) at "
                         "0 VMs and at each checkpoint")
    ap.add_argument("--nice", type=int, default=None,
                    help="set the nice value of mvmd's loop thread (only that thread: the "
                         "spawner's children keep theirs) and of the list prober to N for the "
                         "fill, to see how much of the list latency is waiting for a CPU")
    ap.add_argument("--slice-us", type=int, default=None,
                    help="give mvmd's loop thread and the list prober a scheduler slice of N us "
                         "(sched_setattr's sched_runtime for SCHED_OTHER, Linux 6.12+: a shorter "
                         "slice lets a waking task preempt sooner) for the fill")
    return ap.parse_args()


def set_slice(tid, us):
    """SCHED_OTHER with a custom slice (sched_attr.sched_runtime) for one
    thread, keeping its nice value."""
    import ctypes
    import struct
    attr = struct.pack("=IIQiIQQQ", 48, 0, 0, os.getpriority(os.PRIO_PROCESS, tid), 0,
                       us * 1000, 0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(314, tid, ctypes.c_char_p(attr), 0) != 0:  # SYS_sched_setattr, x86-64
        sys.exit("density: sched_setattr(%d, slice %d us): %s"
                 % (tid, us, os.strerror(ctypes.get_errno())))


def favordynmods_mount():
    """A named hierarchy with the option (v1 takes it only at mount time);
    returns its mount point for favordynmods_umount."""
    d = tempfile.mkdtemp(prefix="density-fav.")
    name = "mvmdensity%d" % os.getpid()
    subprocess.run(["mount", "-t", "cgroup", "-o", "none,name=%s,favordynmods" % name,
                    "cgroup", d], check=True)
    return d


def favordynmods_umount(d):
    subprocess.run(["umount", d], check=False)
    try:
        os.rmdir(d)
    except OSError as e:
        print("density: %s left: %s" % (d, e), file=sys.stderr)


def paths(build):
    p = {"mvmd": "daemon/mvmd", "vmm": "vmm/mvm-vmm", "mvmctl": "ctl/mvmctl",
         "guest": "tests/guest/mvmtest.bzImage", "elf": "tests/guest/mvmtest.elf"}
    p = {k: os.path.abspath(os.path.join(build, v)) for k, v in p.items()}
    for k, v in p.items():
        if not os.path.exists(v):
            sys.exit("density: %s not found at %s; build first" % (k, v))
    return p


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])  # KiB
    return out


def slabinfo(in_use=False):
    """Bytes each slab cache holds (its slabs, full or not), or with
    in_use the bytes of its objects in use.  The two differ where a cache
    has free room left by objects freed earlier (a fleet that ended):
    new objects fill it without a new slab, so only in_use shows them."""
    out = {}
    try:
        with open("/proc/slabinfo") as f:
            for line in f.readlines()[2:]:
                w = line.split()
                # name active num objsize perslab pagesperslab : tunables
                # ... : slabdata active_slabs num_slabs sharedavail
                out[w[0]] = (int(w[1]) * int(w[3]) if in_use else
                             int(w[14]) * int(w[5]) * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, IndexError, ValueError):
        pass
    return out


def slab_top(base, n, k=10, in_use=False):
    """The k caches that grew most, in KiB per VM."""
    now = slabinfo(in_use)
    d = [(name, (now[name] - base.get(name, 0)) / n / 1024) for name in now]
    d.sort(key=lambda x: -x[1])
    return [x for x in d[:k] if x[1] > 0]


def smaps_rollup(pid):
    """The worker's memory by kind (KiB), from /proc/PID/smaps_rollup."""
    out = {}
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                w = line.split()
                if len(w) == 3 and w[2] == "kB":
                    out[w[0].rstrip(":")] = int(w[1])
    except OSError:
        pass
    return out


def worker_memory(pids):
    """Median over the workers of their Rss, Pss, anonymous, file and
    shmem (memfd) parts, and of their VMA count, in KiB."""
    keys = ("Rss", "Pss", "Anonymous", "Pss_File", "Pss_Shmem")
    rows = [smaps_rollup(pid) for pid in pids[:200]]
    rows = [r for r in rows if r]
    vmas = []
    for pid in pids[:200]:
        try:
            with open("/proc/%d/maps" % pid) as f:
                vmas.append(sum(1 for _ in f))
        except OSError:
            pass
    if not rows:
        return None
    out = {k: statistics.median(r.get(k, 0) for r in rows) for k in keys}
    out["VMAs"] = statistics.median(vmas) if vmas else 0
    return out


def cgroup_memory(pids):
    """Median over the workers of what their memory cgroups are charged,
    in KiB: all of it, the kernel's part and the anonymous pages (v1:
    memory.usage_in_bytes, memory.kmem.usage_in_bytes, memory.stat rss;
    v2: memory.current, memory.stat kernel, anon).  Per VM and free of
    other fleets on the host, but only what the kernel charges to a
    cgroup: not KVM's debugfs inodes, superblocks or shrinker units."""
    rows = []
    for pid in pids[:200]:
        try:
            with open("/proc/%d/cgroup" % pid) as f:
                lines = [l.rstrip("\n").split(":", 2) for l in f]
            v1 = [l[2] for l in lines if "memory" in l[1].split(",")]
            if v1:
                d = "/sys/fs/cgroup/memory" + v1[0]
                files = ("memory.usage_in_bytes", "memory.kmem.usage_in_bytes")
                anon_key = "rss"
            else:
                d = "/sys/fs/cgroup" + [l[2] for l in lines if l[0] == "0"][0]
                files = ("memory.current", None)
                anon_key = "anon"
            with open(os.path.join(d, files[0])) as f:
                used = int(f.read())
            with open(os.path.join(d, "memory.stat")) as f:
                st = dict((w[0], int(w[1])) for w in (l.split() for l in f) if len(w) == 2)
            if files[1]:
                with open(os.path.join(d, files[1])) as f:
                    kmem = int(f.read())
            else:
                kmem = st.get("kernel", 0)
            rows.append((used, kmem, st.get(anon_key, 0)))
        except (OSError, IndexError, ValueError):
            pass
    if not rows:
        return None
    return {k: statistics.median(r[i] for r in rows) / 1024
            for i, k in enumerate(("charged", "kernel", "anon"))}


def cpu_busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]  # everything but idle and iowait


def proc_cpu_jiffies(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return int(v[11]) + int(v[12])  # utime + stime
    except OSError:
        return 0


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/statm" % pid) as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except OSError:
            pass
    return total


def idle_cpu(mvmd_pid=None):
    """Cores busy on the whole host, and mvmd's share, over IDLE_WINDOW_S."""
    b0, m0, t0 = cpu_busy_jiffies(), proc_cpu_jiffies(mvmd_pid) if mvmd_pid else 0, time.monotonic()
    time.sleep(IDLE_WINDOW_S)
    b1, m1, t1 = cpu_busy_jiffies(), proc_cpu_jiffies(mvmd_pid) if mvmd_pid else 0, time.monotonic()
    return (b1 - b0) / HZ / (t1 - t0), (m1 - m0) / HZ / (t1 - t0)


def pct(t, q):
    """Nearest rank: the 99th of 100 samples is p99, the 100th the max."""
    t = sorted(t)
    return t[max(0, min(len(t) - 1, math.ceil(len(t) * q) - 1))]


def ms(t):
    return "%.1f / %.1f / %.1f ms" % (statistics.median(t) * 1e3, pct(t, 0.99) * 1e3, max(t) * 1e3)


# /proc/meminfo lines shown per VM at each checkpoint (the kernel's part
# by kind; SecPageTables: KVM's shadow or TDP page tables).
MEMINFO_KINDS = ("AnonPages", "Shmem", "SReclaimable", "SUnreclaim", "KernelStack",
                 "PageTables", "SecPageTables", "VmallocUsed", "Percpu")


def memory_row(base, n):
    now = meminfo()

    def per(key, sign=1):
        return sign * (now[key] - base[key]) / n / 1024  # MiB per VM
    used = ((now["MemTotal"] - now["MemAvailable"]) - (base["MemTotal"] - base["MemAvailable"])) / n / 1024
    return used, per("Slab"), per("PageTables"), per("KernelStack")


def list_rtt(raw):
    """One vm.list round trip to the reply's last byte.  The reply is
    checked but not parsed: Python's json.loads of 4,000 rows takes tens
    of ms, and with the fill's client threads holding the GIL it took
    far longer, which earlier runs counted as mvmd's latency.  It is read
    into one preallocated buffer: the harness's line reader (join, then
    split) spent ~5 ms of the 7 ms a 4,000-row list was quoted at."""
    check(not raw.buf, "vm.list: bytes left over on the list connection")
    raw.next_id += 1
    rid = raw.next_id
    buf = getattr(raw, "list_buf", None)
    if buf is None:
        buf = raw.list_buf = bytearray(64 << 20)
    mv, got = memoryview(buf), 0
    t0 = time.perf_counter()
    raw.send(b'{"id":%d,"op":"vm.list"}\n' % rid)
    while not got or buf[got - 1] != 10:
        k = raw.s.recv_into(mv[got:])
        check(k > 0, "mvmd closed the list connection")
        got += k
        check(got < len(buf), "vm.list reply larger than 64 MiB")
    t = time.perf_counter() - t0
    head = bytes(buf[:40])
    check(head.startswith(b'{"id":%d,"ok":true' % rid), "vm.list failed: %r" % head)
    return t


SLOW_MS, SAMPLE_MS = 10, 2    # listprobe.py's SLOW_S, SAMPLE_S


def syscall_names():
    """x86-64 system call numbers to names, where the headers are installed."""
    names = {}
    try:
        with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") as f:
            for line in f:
                w = line.split()
                if len(w) == 3 and w[0] == "#define" and w[1].startswith("__NR_"):
                    names[w[2]] = w[1][5:]
    except OSError:
        pass
    return names


def named_sample(k, names):
    state, nr, frame = k.split(" ", 2)
    return "%s %s %s" % (state, names.get(nr, nr), frame)


def clients(p, sock, n=10):
    """What a client spends on a list: mvmctl list and mvmctl -o json list
    (process start to exit), and Python's json.loads of the reply."""
    env = dict(os.environ, MVM_SOCKET=sock)
    out = {}
    for name, args in (("mvmctl list", ["list"]), ("mvmctl -o json list", ["-o", "json", "list"])):
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run([p["mvmctl"]] + args, env=env, stdout=subprocess.DEVNULL, check=True)
            t.append(time.perf_counter() - t0)
        out[name] = t
    raw = Raw(sock, 600)
    raw.send(b'{"id":1,"op":"vm.list"}\n')
    line = raw.read_line()
    raw.close()
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        json.loads(line)
        t.append(time.perf_counter() - t0)
    out["Python json.loads"] = t
    return out, len(line)


class Fleet:
    """The mvmd under test and the clients that fill it."""

    def __init__(self, p, args):
        self.p, self.args = p, args
        # enough vCPUs for the fill and the probes on any host (the cap is 1e6)
        # and memory: only a VM with a balloon shares the overcommit (the
        # idle guest never drives it), and the default vmm_overhead of 8M
        # alone would refuse past ~2,900 VMs on 24 GiB (measured ~1.8 MiB)
        cfg = ["vcpu_oversubscription = %d" % max(1000, args.vms),
               "memory_overcommit = 64", "vmm_overhead = 2M"] + args.config
        self.d = Daemon(p["mvmd"], p["vmm"], config=cfg)
        self.running = []       # monotonic times of running events, in order
        self.failed = []
        self.lock = threading.Lock()
        self.count = 0          # VMs asked for so far
        self.stop_events = False
        self.list_times = []
        self.listing = False

    def start(self):
        self.d.start()
        self.sub = Raw(self.d.sock, 3600)
        self.sub.ok("events.subscribe")
        threading.Thread(target=self._follow, daemon=True).start()
        threading.Thread(target=self._lister, daemon=True).start()

    def _follow(self):
        while not self.stop_events:
            try:
                e = self.sub.read_msg()
            except Exception:
                return
            st = e.get("state")
            if st == "running" and e.get("vm", "").startswith("d"):
                with self.lock:
                    self.running.append(time.monotonic())
            elif st in ("crashed", "stopped") and e.get("vm", "").startswith("d"):
                with self.lock:
                    self.failed.append("%s: %s %s" % (e.get("vm"), st, e.get("reason", "")))

    def _lister(self):
        raw = Raw(self.d.sock, 600)
        while not self.stop_events:
            if self.listing:
                self.list_times.append(list_rtt(raw))
            time.sleep(0.05)

    def vm_args(self, name, wait=False):
        return {"name": name, "kernel": self.p["guest"], "mem_mib": self.args.mem, "vcpus": 1,
                "cmdline": "console=ttyS0 mvmtest=idle", "balloon_mib": 0, "wait": wait}

    def fill_to(self, n):
        """Creates VMs up to n from the parallel clients; returns the list
        round trips seen meanwhile."""
        names = ["d%05d" % i for i in range(self.count, n)]
        errors = []

        def client(k):
            raw = Raw(self.d.sock, 600)
            for nm in names[k::self.args.clients]:
                r = raw.call("vm.create", self.vm_args(nm))
                if not r.get("ok"):
                    errors.append("%s: %s" % (nm, r.get("error")))
                    break
            raw.close()
        self.list_times = []
        self.listing = True
        nice = self.args.nice
        if nice is not None:
            # PRIO_PROCESS acts on the one thread whose tid is the pid: the loop
            os.setpriority(os.PRIO_PROCESS, self.d.proc.pid, nice)
        prober = subprocess.Popen((["nice", "-n", str(nice)] if nice is not None else []) +
                                  [sys.executable, os.path.join(HERE, "listprobe.py"),
                                   self.d.sock, str(self.d.proc.pid)], stdout=subprocess.PIPE)
        if self.args.slice_us:
            set_slice(self.d.proc.pid, self.args.slice_us)
            set_slice(prober.pid, self.args.slice_us)
        ts = [threading.Thread(target=client, args=(k,)) for k in range(self.args.clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(not errors, "creates refused at %d VMs: %s" % (len(self.running), errors[:3]))
        wait_for(lambda: len(self.running) + len(self.failed) >= n, 1800,
                 "%d VMs to run" % n, 0.2)
        self.listing = False
        prober.send_signal(signal.SIGTERM)
        out, _ = prober.communicate(60)
        check(prober.returncode == 0, "listprobe.py failed (status %d)" % prober.returncode)
        check(not self.failed, "VMs failed: %s" % self.failed[:3])
        self.count = n
        res = json.loads(out)
        return res["calls"], res["samples"], list(self.list_times)

    def probe(self, raw, lists_n=200, rounds=100):
        """Idle-fleet samples, enough that p99 is not the max: lists spaced
        at random so they fall at every phase of the health ticks."""
        lists, creates = [], []
        rnd = random.Random(13)
        for _ in range(lists_n):
            lists.append(list_rtt(raw))
            time.sleep(rnd.uniform(0, 0.02))
        for i in range(rounds):
            t0 = time.perf_counter()
            raw.ok("vm.create", self.vm_args("probe%d" % i, wait=True))
            creates.append(time.perf_counter() - t0)
            raw.ok("vm.rm", {"name": "probe%d" % i, "force": True})
        return lists, creates

    def worker_pids(self):
        raw = Raw(self.d.sock, 600)
        vms = raw.ok("vm.list")["vms"]
        raw.close()
        return [v["pid"] for v in vms if v.get("pid")]

    def keep_logs(self):
        """mvmd.log and the failed VMs' vmm.log, into --keep DIR."""
        if not self.args.keep or not self.failed:
            return
        os.makedirs(self.args.keep, exist_ok=True)
        shutil.copy(self.d.logpath, self.args.keep)
        for f in self.failed[:20]:
            name = f.split(":", 1)[0]
            src = os.path.join(self.d.state, "vms", name, "vmm.log")
            if os.path.exists(src):
                shutil.copy(src, os.path.join(self.args.keep, name + ".vmm.log"))

    def close(self):
        self.stop_events = True
        try:
            self.keep_logs()
            self.d.stop()
        finally:
            self.d.cleanup()   # kills the workers left in its cgroups


def check_ceilings(raw, n):
    """Stops before the fill where a host ceiling (mvmd's fds, pid_max,
    threads-max: host.info) allows fewer than the n VMs it needs, rather
    than let clones fail midway."""
    for c in raw.ok("host.info")["host"].get("ceilings", []):
        if c.get("vms") is not None and c["vms"] < n:
            raise TestFailure("%s (limit %d, %d in use, %d per VM) allows %d VMs, not the %d "
                              "this run holds: raise it to at least %d%s"
                              % (c["name"], c["limit"], c["used"], c["per_vm"], c["vms"], n,
                                 c["used"] + n * c["per_vm"],
                                 " (mvmd's fix: %s)" % c["fix"] if c.get("fix") else ""))


def host_tasks():
    """The kernel's count of tasks on the host, kernel threads included
    (/proc/loadavg's fourth field: running/total)."""
    with open("/proc/loadavg") as f:
        return int(f.read().split()[3].split("/")[1])


def fds_and_tasks(mvmd_pid, base_tasks):
    """mvmd's open fds, and the host's tasks beyond the empty host's: a
    worker's own threads are not all (KVM's PIT kthread is no thread of
    it), and kernel.pid_max counts them all."""
    fds = len(os.listdir("/proc/%d/fd" % mvmd_pid))
    return fds, host_tasks() - base_tasks


DB_METRICS = ("mvmd_db_commits_total", "mvmd_db_write_seconds_total",
              "mvmd_db_checkpoints_total", "mvmd_db_checkpoint_seconds_total",
              "mvmd_db_loop_checkpoints_total")


def db_stats(raw):
    """mvmd's state database commits, the seconds its loop spent in them,
    and the checkpoints its checkpointer thread ran and their seconds
    (metrics mvmd_db_*; 0 where an older mvmd has none)."""
    v = {}
    for line in raw.ok("metrics")["text"].splitlines():
        w = line.split()
        if len(w) == 2 and w[0] in DB_METRICS:
            v[w[0]] = float(w[1])
    return tuple(v.get(k, 0.0) for k in DB_METRICS)


STRACE_CALLS = "fdatasync,fsync,write,pwrite64,openat,mkdir,rmdir"


def strace_start(pid):
    out = tempfile.NamedTemporaryFile(prefix="density-strace.", delete=False)
    out.close()
    proc = subprocess.Popen(["strace", "-c", "-o", out.name, "-e", "trace=" + STRACE_CALLS,
                             "-p", str(pid)], stderr=subprocess.DEVNULL)
    time.sleep(1)   # attached
    return proc, out.name


def strace_stop(st, starts):
    proc, path = st
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    calls = {}
    with open(path) as f:
        for line in f:
            w = line.split()
            if len(w) >= 5 and w[-1] in STRACE_CALLS.split(",") and w[3].isdigit():
                calls[w[-1]] = int(w[3])
    os.unlink(path)
    return ", ".join("%s %.1f" % (k, v / starts) for k, v in sorted(calls.items()))


SANDBOX_CALLS = ("unshare", "mount", "pivot_root", "umount2", "chroot")


def sandbox_probe(p, rounds=8):
    """Kernel time of the sandbox's namespace and root calls in workers
    run by hand next to the fleet (strace -T, so the times include
    strace's overhead on each call alike): per call, the median of the
    per-worker sums in ms; and the median wall time of a whole hello boot."""
    if not shutil.which("strace"):
        return None
    sums = {c: [] for c in SANDBOX_CALLS}
    walls = []
    tmp = tempfile.mkdtemp(prefix="mvm-density-probe-")
    try:
        for i in range(rounds):
            out = os.path.join(tmp, "%d.strace" % i)
            t0 = time.monotonic()
            subprocess.run(["strace", "-f", "-T", "-o", out, "-e", "trace=" + ",".join(SANDBOX_CALLS),
                            p["vmm"], "--sandbox", "--kernel", p["guest"], "--mem", "32M",
                            "--cmdline", "console=ttyS0 mvmtest=hello"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=120, check=False)
            walls.append(time.monotonic() - t0)
            per = {c: 0.0 for c in SANDBOX_CALLS}
            with open(out) as f:
                for line in f:
                    w = line.split()
                    name = w[1].split("(", 1)[0] if len(w) > 1 else ""
                    if name in per and line.rstrip().endswith(">") and "<" in line:
                        per[name] += float(line.rsplit("<", 1)[1].rstrip(">\n "))
            for c in SANDBOX_CALLS:
                sums[c].append(per[c] * 1e3)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {c: statistics.median(v) for c, v in sums.items()}, statistics.median(walls)


def bucket_rates(times, t_start, b):
    rates = []
    prev = t_start
    for k in range(b - 1, len(times), b):
        rates.append(b / max(times[k] - prev, 1e-9))
        prev = times[k]
    return rates


def qemu_fleet(p, args, base):
    """Memory per VM and idle CPU of F QEMU microvm guests; None rows when
    QEMU is missing."""
    if not args.qemu:
        return None
    tmp = tempfile.mkdtemp(prefix="mvm-density-qemu-")
    procs = []
    try:
        for i in range(args.qemu_fleet):
            log = os.path.join(tmp, "%d.log" % i)
            procs.append(subprocess.Popen(
                [args.qemu, "-M", "microvm", "-accel", "kvm", "-m", "%dM" % args.mem,
                 "-smp", "1", "-nographic", "-nodefaults", "-no-reboot",
                 "-serial", "file:" + log, "-kernel", p["elf"], "-append", "mvmtest=idle"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def all_idle():
            for i, pr in enumerate(procs):
                if pr.poll() is not None:
                    raise RuntimeError("qemu %d exited with %d" % (i, pr.returncode))
                try:
                    if b"MVMTEST idle" not in open(os.path.join(tmp, "%d.log" % i), "rb").read():
                        return False
                except OSError:
                    return False
            return True
        wait_for(all_idle, 600, "the QEMU fleet to idle", 0.5)
        time.sleep(2)
        mem = memory_row(base, len(procs))
        rss = rss_kib([pr.pid for pr in procs]) / len(procs) / 1024
        busy, _ = idle_cpu()
        return mem, rss, busy
    finally:
        for pr in procs:
            pr.kill()
        for pr in procs:
            pr.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("density: run as root (mvmd sandboxes its workers)")
    if not kvm_usable():
        sys.exit("density: /dev/kvm is not usable")
    p = paths(args.build)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.checkpoints:
        cps = sorted({int(x) for x in args.checkpoints.split(",") if int(x) > 0} | {args.vms})
    else:
        cps = sorted({c for c in (args.qemu_fleet, 1000, 2000) if 0 < c < args.vms} | {args.vms})

    print("density: empty host baseline (%ds idle)" % IDLE_WINDOW_S, file=sys.stderr)
    base = meminfo()
    base_slab, base_objs = slabinfo(), slabinfo(True)
    base_busy, _ = idle_cpu()
    base_tasks = host_tasks()
    loads = [("before", os.getloadavg())]
    rows = []
    peer = None
    try:
        peer = qemu_fleet(p, args, base) if args.qemu_fleet else None
    except Exception as e:  # the peer's failure is a result, not a crash
        print("density: QEMU fleet failed: %s" % e, file=sys.stderr)
        peer = "failed: %s" % e
    fav = favordynmods_mount() if args.favordynmods else None
    fl = Fleet(p, args)
    storm_lists = []
    storm_thread = []
    storm_samples = {}
    traced = None
    dbcost = None
    health = None
    dynmods = None
    slabs = []
    client_times = []
    probes = [(0, sandbox_probe(p) if args.probe else None)]
    try:
        fl.start()
        t_start = time.monotonic()
        raw = Raw(fl.d.sock, 600)
        check_ceilings(raw, cps[-1] + 1)
        for n in cps:
            print("density: filling to %d VMs" % n, file=sys.stderr)
            st = strace_start(fl.d.proc.pid) if args.strace and not rows else None
            db0 = db_stats(raw) if not rows else None
            calls, samples, thread_times = fl.fill_to(n)
            loads.append(("filled to %d" % n, os.getloadavg()))
            storm_lists += calls
            for k, v in samples.items():
                storm_samples[k] = storm_samples.get(k, 0) + v
            storm_thread += thread_times
            if st:
                traced = strace_stop(st, n)
            if db0:
                db1 = db_stats(raw)
                dbcost = ((db1[0] - db0[0]) / n, (db1[1] - db0[1]) / n,
                          db1[2] - db0[2], db1[3] - db0[3], db1[4] - db0[4])
            time.sleep(3)
            lists, creates = fl.probe(raw)
            client_times.append((n,) + clients(p, fl.d.sock))
            used, slab, pt, ks = memory_row(base, n)
            pids = fl.worker_pids()
            rss = rss_kib(pids) / n / 1024
            fds, tasks = fds_and_tasks(fl.d.proc.pid, base_tasks)
            now = meminfo()
            kinds = {k: (now[k] - base[k]) / n for k in MEMINFO_KINDS if k in now}
            slabs.append((n, slab_top(base_slab, n), slab_top(base_objs, n, 12, True),
                          worker_memory(pids), kinds, cgroup_memory(pids)))
            probes.append((n, sandbox_probe(p) if args.probe else None))
            busy, mvmd_busy = idle_cpu(fl.d.proc.pid)
            rows.append((n, lists, creates, used, slab, pt, ks, rss, busy - base_busy, mvmd_busy,
                         fds / n, tasks / n))
        rates = bucket_rates(fl.running, t_start, args.bucket)
        info = raw.ok("host.info")["host"]
        health = info.get("health")
        dynmods = info.get("capacity", {}).get("cgroup", {}).get("favordynmods")
        raw.close()
        fl.d.check_sanitizers()
    finally:
        fl.close()
        if fav:
            favordynmods_umount(fav)

    print("\nmvm density, %d x 1-vCPU %d MiB idle test guests, %d clients, config: %s"
          % (args.vms, args.mem, args.clients, "; ".join(args.config) or "defaults"))
    print("host: %d CPUs, %.1f GiB; empty host busy %.3f cores; cgroup favordynmods: %s"
          % (os.cpu_count(), base["MemTotal"] / 1048576, base_busy,
             "?" if dynmods is None else "on" if dynmods else "off"))
    print("load averages (1, 5, 15 min): %s\n"
          % "; ".join("%s %.2f %.2f %.2f" % ((k,) + v) for k, v in loads))
    if rates:
        print("start throughput (running events, buckets of %d): first %.1f/s, last %.1f/s, "
              "last/first %.2fx, median bucket %.1f/s, min..max %.1f..%.1f/s"
              % (args.bucket, rates[0], rates[-1], rates[-1] / rates[0], statistics.median(rates),
                 min(rates), max(rates)))
    if dbcost:
        print("state database per start, first fill: %.2f commits, %.0f us of the loop in "
              "SQLite writes; %d checkpoints off the loop, %.1f ms each; %d tried on the loop"
              % (dbcost[0], dbcost[1] * 1e6, dbcost[2],
                 dbcost[3] / dbcost[2] * 1e3 if dbcost[2] else 0.0, dbcost[4]))
    if traced is not None:
        print("mvmd loop thread per start, first fill (strace -c): %s" % traced)
    if health and health.get("enabled"):
        print("health checks: every %gs in %d slices of %.0f ms; %d pings, %.1f us of mvmd CPU "
              "per ping, %.3f ms per tick; %d verdicts postponed (loop waiting for a CPU)"
              % (health["interval_s"], health["slices"], health["tick_ms"], health["pings"],
                 health["cpu_us_per_ping"], health["cpu_ms_per_tick"], health.get("starved", 0)))
    if storm_lists:
        rtt = [c[0] for c in storm_lists]
        print("vm.list during the fill (median / p99 / max): %s (%d calls, from a process of "
              "its own)" % (ms(rtt), len(rtt)))
        slow = sorted(storm_lists, key=lambda c: -c[0])[:max(1, len(storm_lists) // 100)]
        print("  its slowest 1%% (%d calls), medians: round trip %.1f ms; meanwhile mvmd's loop "
              "waited for a CPU %.1f ms, ran %.1f ms and did neither (blocked, or the request "
              "not yet read) %.1f ms; the prober waited for a CPU %.1f ms"
              % (len(slow), statistics.median(c[0] for c in slow) * 1e3,
                 statistics.median(c[1] for c in slow) * 1e3,
                 statistics.median(c[2] for c in slow) * 1e3,
                 statistics.median(max(0, c[0] - c[1] - c[2]) for c in slow) * 1e3,
                 statistics.median(c[3] for c in slow) * 1e3))
        print("  all calls, sums: round trips %.2f s, mvmd's loop waited %.2f s and ran %.2f s, "
              "the prober waited %.2f s"
              % tuple(sum(c[k] for c in storm_lists) for k in range(4)))
    if storm_samples:
        names = syscall_names()
        tot = sum(storm_samples.values())
        top = sorted(storm_samples.items(), key=lambda kv: -kv[1])[:8]
        print("  mvmd's loop thread while calls over %.0f ms awaited their reply (%d samples, "
              "every %.0f ms; state, system call, kernel frame): %s"
              % (SLOW_MS, tot, SAMPLE_MS, "; ".join(
                  "%s %.0f%%" % (named_sample(k, names), 100 * v / tot) for k, v in top)))
    if storm_thread:
        print("vm.list during the fill, from a thread of the benchmark beside its fill clients "
              "(median / p99 / max): %s (%d calls)" % (ms(storm_thread), len(storm_thread)))
    print()
    hdr = ("VMs", "list med/p99/max", "create->running med/p99/max", "host MiB/VM",
           "slab", "pgtbl", "kstack", "worker RSS", "idle cores", "mvmd cores",
           "fds/VM", "tasks/VM")
    fmt = "%-6s  %-24s  %-28s  %11s  %6s  %6s  %6s  %10s  %10s  %10s  %6s  %8s"
    if rows:
        print("(idle fleet: %d list round trips and %d create -> running per row; p99 by "
              "nearest rank)" % (len(rows[0][1]), len(rows[0][2])))
    print(fmt % hdr)
    for n, lists, creates, used, slab, pt, ks, rss, busy, mb, fpv, tpv in rows:
        print(fmt % (n, ms(lists), ms(creates), "%.2f" % used, "%.2f" % slab, "%.2f" % pt,
                     "%.2f" % ks, "%.2f" % rss, "%.3f" % busy, "%.3f" % mb,
                     "%.2f" % fpv, "%.2f" % tpv))
    for n, ct, size in client_times:
        print("clients at %d VMs (a %.1f MB reply; median / p99 / max): %s"
              % (n, size / 1e6, "; ".join("%s %s" % (k, ms(v)) for k, v in ct.items())))
    if isinstance(peer, tuple):
        (used, slab, pt, ks), rss, busy = peer
        mine = [r for r in rows if r[0] == args.qemu_fleet]
        print(fmt % ("Q%d" % args.qemu_fleet, "-", "-", "%.2f" % used, "%.2f" % slab, "%.2f" % pt,
                     "%.2f" % ks, "%.2f" % rss, "%.3f" % (busy - base_busy), "-", "-", "-"))
        if mine:
            print("\nmvm / QEMU microvm at %d VMs: host memory per VM %.2fx, worker RSS %.2fx"
                  % (args.qemu_fleet, mine[0][3] / used, mine[0][7] / rss))
    elif peer:
        print("QEMU microvm fleet: %s" % peer)
    elif not args.qemu_fleet:
        print("QEMU microvm fleet: not run (--qemu-fleet 0)")
    else:
        print("QEMU microvm fleet: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
    if any(pr for _, pr in probes):
        print("\nsandbox calls of a hand-run worker (strace -T, median of 8, ms; wall = whole "
              "hello boot):")
        for n, pr in probes:
            if pr:
                calls, wall = pr
                print("  at %5d VMs: %s; wall %.0f ms"
                      % (n, ", ".join("%s %.2f" % (c, calls[c]) for c in SANDBOX_CALLS),
                         wall * 1e3))
    for n, top, objs, wm, kinds, cg in slabs:
        if cg:
            print("\nat %d VMs, each VM's memory cgroup, median of %d (KiB): %s"
                  % (n, min(n, 200), ", ".join("%s %.0f" % x for x in cg.items())))
        print("at %d VMs, /proc/meminfo per VM (KiB): %s"
              % (n, ", ".join("%s %.1f" % x for x in kinds.items())))
        print("at %d VMs, slab caches that grew (KiB per VM): %s"
              % (n, ", ".join("%s %.1f" % x for x in top) or "none"))
        print("at %d VMs, objects in use that grew (KiB per VM): %s"
              % (n, ", ".join("%s %.1f" % x for x in objs) or "none"))
        if wm:
            print("worker memory, median of %d (smaps_rollup, KiB): %s"
                  % (min(n, 200), ", ".join("%s %.0f" % (k, v) for k, v in wm.items())))
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
