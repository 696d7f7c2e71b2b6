#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Cluster suite: mvm VMs as Slurm jobs on a real Slurm (docs/cluster.md).

Each case starts, in a private directory, munged on its own socket and key,
slurmctld and three slurmd (n1..n3, NodeAddr 127.0.0.1, their own ports),
one mvmd per node (own state/run dirs, socket, sandbox uid range, cgroup
parent), wired with contrib/slurm: NodeName lines from mvm-slurm-node, the
Epilog, the HealthCheckProgram and job_submit.lua.  Jobs run `mvmctl run`.
Everything started is stopped at the end; every wait is bounded.

Usage: slurm.py CASE | --list.  Environment as tests/system/run.py, plus
MVM_CONTRIB (contrib/slurm).  Exit 0 pass, 1 fail, 77 skip (no /dev/kvm,
not root, or Slurm/munge not installed).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
from harness import (SKIP, Daemon, TestFailure, check, env_path,  # noqa: E402
                     kvm_usable, wait_for)

CASES = {}
NODES = ("n1", "n2", "n3")
STOP_TIMEOUT = 2        # mvmctl run --stop-timeout; KillWait is larger
KILL_WAIT = 6
CRED_EXPIRE = 5         # a requeued job may start again after this
HEALTH_INTERVAL = 2
PROGRAMS = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel")


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, mvmd_config=None):
        self.root = tempfile.mkdtemp(prefix="mvm-slurm-")
        os.chmod(self.root, 0o755)
        self.mvmctl = os.path.abspath(env_path("MVMCTL"))
        self.guest = os.path.abspath(env_path("MVM_BZIMAGE"))
        self.contrib = os.path.abspath(env_path("MVM_CONTRIB"))
        self.conf = self.path("etc", "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.procs = []         # (name, Popen) of slurm and munge daemons
        self.slurmd = {}
        self.daemons = {}
        mvmd_config = mvmd_config or {}
        for i, n in enumerate(NODES):
            os.makedirs(self.path(n))
            cfg = ["memory_budget = 2048", "vcpu_oversubscription = 2",
                   "sandbox_uid_base = %d" % (400000 + 10000 * i), "sandbox_uid_count = 1000"]
            self.daemons[n] = Daemon(env_path("MVMD"), env_path("MVM_VMM"),
                                     root=self.path(n), config=cfg + mvmd_config.get(n, []))

    def path(self, *p):
        return os.path.join(self.root, *p)

    def sock(self, node):
        return self.daemons[node].sock

    def ctl(self, node, *args, timeout=30):
        e = dict(os.environ, MVM_SOCKET=self.sock(node))
        return subprocess.run([self.mvmctl] + list(args), env=e, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)

    def vms(self, node):
        p = self.ctl(node, "list", "-q")
        check(p.returncode == 0, "mvmctl list on %s: %r" % (node, p.stderr))
        return p.stdout.decode().split()

    # ---- set-up ------------------------------------------------------------

    def start(self):
        for d in ("etc", "munge", "ctld", "spool", "log", "jobs", "out"):
            os.makedirs(self.path(d), exist_ok=True)
        for n in NODES:
            os.makedirs(self.path(n), exist_ok=True)
            self.daemons[n].start()
        self.start_munge()
        self.write_conf()
        self.spawn("slurmctld", ["slurmctld", "-D", "-f", self.conf])
        wait_for(lambda: self.run(["scontrol", "ping"], check_rc=False).returncode == 0
                 and "UP" in self.run(["scontrol", "ping"], check_rc=False).stdout,
                 30, "slurmctld to answer")
        for n in NODES:
            self.start_slurmd(n)
        wait_for(lambda: self.node_states() == {n: "idle" for n in NODES}, 60,
                 "three idle nodes (sinfo: %r)" % self.node_states())

    def start_munge(self):
        key = self.path("munge", "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        os.chmod(self.path("munge"), 0o700)
        self.munge_sock = self.path("munge", "munge.socket")
        self.spawn("munged", ["munged", "-F", "-f", "--socket", self.munge_sock,
                              "--key-file", key, "--pid-file", self.path("munge", "pid"),
                              "--log-file", self.path("log", "munged.log"),
                              "--seed-file", self.path("munge", "seed")])
        wait_for(lambda: os.path.exists(self.munge_sock), 15, "munged's socket")

    def start_slurmd(self, n):
        self.slurmd[n] = self.spawn("slurmd-" + n, ["slurmd", "-D", "-N", n, "-f", self.conf])

    def spawn(self, name, argv):
        log = open(self.path("log", name + ".out"), "ab")
        p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.procs.append((name, p))
        return p

    def node_line(self, n, port):
        e = dict(os.environ, MVMCTL=self.mvmctl, MVM_SOCKET=self.sock(n))
        p = subprocess.run([os.path.join(self.contrib, "mvm-slurm-node"), "--name", n,
                            "NodeAddr=127.0.0.1", "Port=%d" % port],
                           env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        check(p.returncode == 0, "mvm-slurm-node: %r" % p.stderr)
        line = p.stdout.decode().strip()
        check(re.match(r"NodeName=%s CPUs=\d+ RealMemory=\d+ " % n, line), "node line %r" % line)
        return line

    def wrapper(self, name, program):
        """HealthCheckProgram and Epilog take no arguments: a two-line
        script gives contrib's program this cluster's settings."""
        env = self.path("etc", "mvm-slurm.env")
        with open(env, "w") as f:
            f.write("MVMCTL=%s\nMVM_SOCKET=%s\nSLURM_CONF=%s\nexport SLURM_CONF\n"
                    % (self.mvmctl, os.path.join(self.root, "%n", "run", "mvmd.sock"), self.conf))
        p = self.path("etc", name)
        with open(p, "w") as f:
            f.write("#!/bin/sh\nMVM_SLURM_ENV=%s exec %s\n"
                    % (env, os.path.join(self.contrib, program)))
        os.chmod(p, 0o755)
        return p

    def write_conf(self):
        ports = free_ports(1 + len(NODES))
        shutil.copy(os.path.join(self.contrib, "job_submit.lua"), self.path("etc"))
        lines = [
            "ClusterName=mvmtest",
            "SlurmctldHost=%s(127.0.0.1)" % socket.gethostname().split(".")[0],
            "SlurmctldPort=%d" % ports[0],
            "AuthType=auth/munge", "CredType=cred/munge",
            "AuthInfo=socket=%s,cred_expire=%d" % (self.munge_sock, CRED_EXPIRE),
            "SlurmUser=root", "SlurmdUser=root",
            "StateSaveLocation=" + self.path("ctld"),
            "SlurmdSpoolDir=" + self.path("spool", "%n"),
            "SlurmctldPidFile=" + self.path("ctld", "slurmctld.pid"),
            "SlurmdPidFile=" + self.path("spool", "slurmd-%n.pid"),
            "SlurmctldLogFile=" + self.path("log", "slurmctld.log"),
            "SlurmdLogFile=" + self.path("log", "slurmd-%n.log"),
            "SlurmctldDebug=info", "SlurmdDebug=info",
            "ProctrackType=proctrack/pgid", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory",
            "SlurmdParameters=config_overrides",
            "ReturnToService=2", "MpiDefault=none", "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none",
            "SchedulerType=sched/builtin", "SchedulerParameters=sched_interval=1",
            "MinJobAge=600",
            # from contrib/slurm/slurm.conf.mvm, with shorter times
            "RequeueExit=75", "KillWait=%d" % KILL_WAIT,
            "HealthCheckProgram=" + self.wrapper("health", "mvm-slurm-health"),
            "HealthCheckInterval=%d" % HEALTH_INTERVAL, "HealthCheckNodeState=ANY",
            "Epilog=" + self.wrapper("epilog", "mvm-slurm-epilog"),
            "JobSubmitPlugins=lua",
            "Licenses=mvmlic:1",
        ]
        for n, port in zip(NODES, ports[1:]):
            lines.append(self.node_line(n, port))
        lines.append("PartitionName=p Nodes=%s Default=YES MaxTime=INFINITE State=UP"
                     % ",".join(NODES))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    # ---- Slurm commands ----------------------------------------------------

    def run(self, argv, check_rc=True, timeout=30):
        p = subprocess.run(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, universal_newlines=True)
        if check_rc:
            check(p.returncode == 0, "%s: exit %d: %s" % (" ".join(argv), p.returncode, p.stderr))
        return p

    def node_states(self):
        p = self.run(["sinfo", "-h", "-N", "-o", "%N %T"], check_rc=False)
        return dict(line.split()[:2] for line in p.stdout.splitlines() if line.strip())

    def node(self, n):
        p = self.run(["sinfo", "-h", "-N", "-n", n, "-o", "%T|%E"])
        state, _, reason = p.stdout.strip().partition("|")
        return state, reason

    def submit(self, name, scenario, *sbatch, mvm="--mem 16", run_args=()):
        """A batch script that execs mvmctl run on its node's mvmd."""
        script = self.path("jobs", name + ".sh")
        with open(script, "w") as f:
            f.write("#!/bin/sh\n#MVM %s\n" % mvm)
            f.write("export MVM_SOCKET=%s/$SLURMD_NODENAME/run/mvmd.sock\n" % self.root)
            f.write("exec %s run %s-$SLURM_JOB_ID --kernel %s --mem 16 --cmdline "
                    "'console=ttyS0 mvmtest=%s' --rm --stop-timeout %d %s\n"
                    % (self.mvmctl, name, self.guest, scenario, STOP_TIMEOUT,
                       " ".join(run_args)))
        p = self.run(["sbatch", "--parsable", "-J", name, "-o", self.path("out", "%j.out")]
                     + list(sbatch) + [script])
        return p.stdout.strip().split(";")[0]

    def job(self, jid):
        p = self.run(["scontrol", "show", "job", "-o", jid])
        return dict(re.findall(r"(\w+)=(\S*)", p.stdout))

    def wait_job(self, jid, states, timeout, what=None):
        def done():
            j = self.job(jid)
            return j if j.get("JobState") in states else None
        return wait_for(done, timeout, what or "job %s to reach %s (now %r)"
                        % (jid, states, self.job(jid).get("JobState")), interval=0.3)

    def job_output(self, jid):
        try:
            with open(self.path("out", "%s.out" % jid), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def vm_of(self, jid, node):
        return [v for v in self.vms(node) if v.endswith("-" + jid)]

    # ---- tear-down ---------------------------------------------------------

    def stop(self):
        try:
            self.run(["scancel", "-u", "root"], check_rc=False, timeout=10)
        except (subprocess.SubprocessError, OSError):
            pass
        for name, p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.monotonic() + 15
        for name, p in reversed(self.procs):
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        for d in self.daemons.values():
            d.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self):
        out = []
        for f in sorted(os.listdir(self.path("log"))):
            with open(self.path("log", f), errors="replace") as fh:
                out.append("==== %s\n%s" % (f, fh.read()[-3000:]))
        return "\n".join(out)


# ---- cases ---------------------------------------------------------------

@case
def slurm_completed(c):
    """A VM that resets by itself: the job is COMPLETED with exit 0, its
    console in the job's output, the VM gone (--rm); job_submit.lua turned
    "#MVM --vcpus 2 --mem 64M" into 2 CPUs and 64 + 8 MiB."""
    jid = c.submit("done", "uspeed:300", mvm="--vcpus 2 --mem 64M")
    j = c.wait_job(jid, ("COMPLETED", "FAILED"), 60)
    check(j["JobState"] == "COMPLETED" and j["ExitCode"] == "0:0", "job: %r" % j)
    check(j.get("NumCPUs") == "2" and j.get("MinMemoryNode") == "72M",
          "job_submit.lua did not map #MVM: NumCPUs=%s MinMemoryNode=%s"
          % (j.get("NumCPUs"), j.get("MinMemoryNode")))
    check("MVMTEST uspeed done" in c.job_output(jid), "output: %r" % c.job_output(jid))
    check(not c.vm_of(jid, j["NodeList"]), "VM left on %s" % j["NodeList"])


@case
def slurm_scancel(c):
    """scancel of a running VM job: mvmctl run stops the VM gracefully
    (SIGCONT then SIGTERM), the job is CANCELLED and the VM gone."""
    jid = c.submit("cancel", "idle")
    j = c.wait_job(jid, ("RUNNING",), 60)
    node = j["NodeList"]
    wait_for(lambda: "MVMTEST idle" in c.job_output(jid), 30, "the guest's console")
    check(c.vm_of(jid, node), "no VM of job %s on %s" % (jid, node))
    t0 = time.monotonic()
    c.run(["scancel", jid])
    c.wait_job(jid, ("CANCELLED",), 30)
    wait_for(lambda: not c.vm_of(jid, node), KILL_WAIT + 10, "the VM to go")
    took = time.monotonic() - t0
    out = c.job_output(jid)
    check("stopping %s" % ("cancel-" + jid) in out, "no graceful stop in output: %r" % out)
    check(took < KILL_WAIT + 5, "gone after %.1fs" % took)


@case
def slurm_requeue(c):
    """A job placed on a node whose mvmd is full exits 75 and is requeued
    (Restarts=1); once the node has room it runs and completes."""
    p = c.ctl("n1", "create", "blocker", "--kernel", c.guest, "--mem", "16",
              "--cmdline", "console=ttyS0 mvmtest=idle")
    check(p.returncode == 0, "blocker: %r" % p.stderr)
    # n1's mvmd takes one VM; Slurm does not know it is full
    p = c.ctl("n1", "host", "set", "max_vms=1")
    check(p.returncode == 0, "host set: %r" % p.stderr)
    jid = c.submit("requeue", "uspeed:300", "-w", "n1")
    wait_for(lambda: int(c.job(jid).get("Restarts", "0")) >= 1, 60,
             "job %s to be requeued (%r)" % (jid, c.job(jid)))
    j = c.job(jid)
    check(j["JobState"] in ("PENDING", "REQUEUED", "CONFIGURING", "RUNNING", "COMPLETING",
                            "COMPLETED"), "after exit 75: %r" % j)
    check(not c.vm_of(jid, "n1"), "a refused job left a VM")
    c.ctl("n1", "rm", "-f", "blocker")
    j = c.wait_job(jid, ("COMPLETED", "FAILED"), 60)
    check(j["JobState"] == "COMPLETED", "requeued job: %r" % j)


@case
def slurm_licence(c):
    """Licenses=mvmlic:1 and "#MVM --pool mvmlic": while one job holds the
    licence, a second pends with Reason=Licenses."""
    a = c.submit("lic-a", "idle", mvm="--mem 16 --pool mvmlic")
    c.wait_job(a, ("RUNNING",), 60)
    b = c.submit("lic-b", "idle", mvm="--mem 16 --pool mvmlic")
    wait_for(lambda: c.job(b).get("Reason") == "Licenses", 20,
             "job %s to pend on Licenses (%r)" % (b, c.job(b)))
    check(c.job(b)["JobState"] == "PENDING" and "mvmlic" in c.job(b).get("Licenses", ""),
          "job b: %r" % c.job(b))
    c.run(["scancel", a])
    c.wait_job(b, ("RUNNING",), 60, "job b to get the licence")
    c.run(["scancel", b])
    c.wait_job(b, ("CANCELLED",), 30)


@case
def slurm_mvmd_restart(c):
    """mvmd restarts under a running job: the VM is re-adopted, the job
    stays RUNNING and completes when the VM is stopped."""
    jid = c.submit("readopt", "idle", "-w", "n2")
    c.wait_job(jid, ("RUNNING",), 60)
    wait_for(lambda: "MVMTEST idle" in c.job_output(jid), 30, "the guest's console")
    d = c.daemons["n2"]
    d.stop()
    time.sleep(1)
    check(c.job(jid)["JobState"] == "RUNNING", "job ended while mvmd was down")
    d.start()
    time.sleep(2)
    check(c.job(jid)["JobState"] == "RUNNING", "job ended after mvmd came back")
    p = c.ctl("n2", "stop", "readopt-" + jid, "--timeout", "0")
    check(p.returncode == 0, "stop: %r" % p.stderr)
    j = c.wait_job(jid, ("COMPLETED", "FAILED"), 30)
    check(j["JobState"] == "COMPLETED", "job after the stop: %r" % j)
    out = c.job_output(jid)
    check("re-attaching" in out and out.count("MVMTEST idle") == 1, "output: %r" % out)


@case
def slurm_health(c):
    """The HealthCheckProgram drains n3 when its mvmd stops (reason
    "mvmd: unreachable ...") or is over a limit ("mvmd: over limit: ..."),
    and resumes it when mvmd is well again; a drain by an admin with another
    reason is left alone."""
    c.daemons["n3"].stop()
    wait_for(lambda: "drain" in c.node("n3")[0], HEALTH_INTERVAL * 10,
             "n3 to be drained (%r)" % (c.node("n3"),))
    state, reason = c.node("n3")
    check(reason.startswith("mvmd: unreachable"), "reason %r" % reason)
    check(all("drain" not in c.node(n)[0] for n in ("n1", "n2")), "others drained too")
    c.daemons["n3"].start()
    wait_for(lambda: c.node("n3")[0] == "idle", HEALTH_INTERVAL * 10,
             "n3 to be resumed (%r)" % (c.node("n3"),))
    # over a limit lowered below use: drained with its reason, then resumed
    p = c.ctl("n3", "create", "big", "--kernel", c.guest, "--mem", "64",
              "--cmdline", "console=ttyS0 mvmtest=idle")
    check(p.returncode == 0, "create on n3: %r" % p.stderr)
    check(c.ctl("n3", "host", "set", "memory_budget=64").returncode == 0, "host set")
    wait_for(lambda: c.node("n3")[1].startswith("mvmd: over limit: memory"),
             HEALTH_INTERVAL * 10, "n3 drained over limit (%r)" % (c.node("n3"),))
    check(c.ctl("n3", "host", "set", "memory_budget=2048").returncode == 0, "host set")
    wait_for(lambda: c.node("n3")[0] == "idle", HEALTH_INTERVAL * 10,
             "n3 resumed after the limit was raised (%r)" % (c.node("n3"),))
    c.ctl("n3", "rm", "-f", "big")
    c.run(["scontrol", "update", "nodename=n2", "state=drain", "reason=maintenance"])
    time.sleep(HEALTH_INTERVAL * 3)
    check(c.node("n2") == ("drained", "maintenance"), "admin drain touched: %r"
          % (c.node("n2"),))
    c.run(["scontrol", "update", "nodename=n2", "state=resume"])


@case
def slurm_epilog(c):
    """mvmctl run killed with SIGKILL: the job fails, and the Epilog
    removes the VM still labelled slurm_job=ID."""
    jid = c.submit("killed", "idle")
    j = c.wait_job(jid, ("RUNNING",), 60)
    node = j["NodeList"]
    wait_for(lambda: c.vm_of(jid, node), 30, "the VM")
    vm = c.vm_of(jid, node)[0]
    p = c.ctl(node, "show", vm)
    check("slurm_job=%s" % jid in p.stdout.decode(), "no job label: %r" % p.stdout)
    pids = subprocess.run(["pgrep", "-f", "mvmctl run %s" % vm], stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.split()
    check(pids, "no mvmctl run process for %s" % vm)
    for pid in pids:
        os.kill(int(pid), signal.SIGKILL)
    j = c.wait_job(jid, ("FAILED", "CANCELLED", "COMPLETED"), 30)
    check(j["JobState"] == "FAILED", "after SIGKILL: %r" % j)
    wait_for(lambda: not c.vm_of(jid, node), 20, "the Epilog to remove %s" % vm)


def missing():
    if os.geteuid() != 0:
        return "Slurm's daemons run as root here (SlurmUser=root)"
    if not kvm_usable():
        return "/dev/kvm is not usable; the jobs boot the test guest"
    gone = [p for p in PROGRAMS if not shutil.which(p)]
    if gone:
        return "not installed: %s (apt-get install slurm-wlm slurmctld slurmd munge)" % ", ".join(gone)
    return None


def main():
    if len(sys.argv) == 2 and sys.argv[1] == "--list":
        print("\n".join(CASES))
        return 0
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: slurm.py CASE|--list; cases: " + " ".join(CASES), file=sys.stderr)
        return 2
    why = missing()
    if why:
        print("skip: " + why, file=sys.stderr)
        return SKIP
    c = Cluster()
    try:
        c.start()
        CASES[sys.argv[1]](c)
    except (TestFailure, subprocess.TimeoutExpired) as e:
        print("FAIL: %s\n%s" % (e, c.logs()), file=sys.stderr)
        return 1
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
