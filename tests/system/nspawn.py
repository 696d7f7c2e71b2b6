#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""mvmd under a real systemd: the installed unit, hardening included.

Boots systemd in `systemd-nspawn -b` on a tmpfs overlay of the host's root
(so nothing on the host changes), with /dev/kvm bound in, installs the
build's mvmd.service there (ExecStart pointed at the build's mvmd), and
checks through systemctl in the container:

  notify     `systemctl start` returns once mvmd said READY=1: active
  cgroupfs   mvmd's view of /sys/fs/cgroup is as writable as systemd's
  vm         a sandboxed VM with a TAP (the container's own netns) boots
             under the hardened unit: /dev/kvm and /dev/net/tun reachable
  reload     `systemctl reload` signals mvmd alone: same MainPID, VM alive
  restart    `systemctl restart`: new MainPID, the VM's worker re-adopted
  watchdog   SIGSTOP on mvmd: the watchdog (3 s in a drop-in) restarts it,
             the VM keeps its pid
  guests     mvm-guests.service's stop (what host shutdown runs): with
             MVM_GUESTS_ON_SHUTDOWN=ignore the VM keeps running, with stop
             it is stopped within MVM_GUESTS_TIMEOUT
  poweroff   the container shuts down with the VM running: mvm-guests
             stops it first, as mvmd's database (read afterwards) says

Exits 77 with the reason where nspawn cannot run (not root, no
systemd-nspawn, no overlayfs, no /dev/kvm, the container does not boot).
Every wait is bounded; the whole test takes well under two minutes.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SKIP, TestFailure, check, env_path, kvm_usable, wait_for  # noqa: E402

SOCK = "/run/mvm/mvmd.sock"
# RLIMIT_NPROC counts per uid, host-wide: a uid range of our own (not
# sandbox.py's) so that no other test's workers count against ours
UID_BASE = 900000 + (os.getpid() % 5000) * 100


def skip(why):
    print("nspawn: skipped: " + why)
    sys.exit(SKIP)



def tree_dirs():
    """The source tree and the build tree (when it is elsewhere): the
    binaries, the unit and the test guest the container runs."""
    src = os.path.realpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    build = os.path.dirname(os.path.dirname(os.path.realpath(env_path("MVMD"))))
    out = [src]
    if os.path.relpath(build, src).startswith(".."):
        out.append(build)
    return out

class Container:
    def __init__(self, top):
        self.top = top
        self.lower_tmp = os.path.join(top, "t")
        self.root = os.path.join(top, "root")
        self.proc = None
        self.leader = None
        self.mounted = []

    def mount(self):
        os.makedirs(self.lower_tmp)
        os.makedirs(self.root)
        # upper and work dirs on a tmpfs: overlayfs refuses layers that nest
        for args in (["-t", "tmpfs", "tmpfs", self.lower_tmp],
                     None,
                     ["-t", "overlay", "overlay", "-o",
                      "lowerdir=/,upperdir=%s/u,workdir=%s/w" % (self.lower_tmp, self.lower_tmp),
                      self.root]):
            if args is None:
                os.makedirs(self.lower_tmp + "/u")
                os.makedirs(self.lower_tmp + "/w")
                continue
            r = subprocess.run(["mount"] + args, capture_output=True, text=True)
            if r.returncode:
                skip("cannot mount %s: %s" % (args[-1], r.stderr.strip()))
            self.mounted.insert(0, args[-1])

    def write(self, path, text):
        p = self.root + path
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)

    def boot(self, log):
        # The tree under test at its own path: the overlay holds only the
        # root file system, and nspawn puts a tmpfs on /tmp (where CI's
        # clone may be) unless told not to.
        binds = ["--bind-ro=%s" % d for d in tree_dirs()]
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-q", "-D", self.root, "-b", "--register=no",
             "--keep-unit", "--bind=/dev/kvm", "--console=pipe", "--private-network",
             "--link-journal=no"] + binds + ["systemd.unit=mvmtest.target"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=dict(os.environ, SYSTEMD_NSPAWN_TMPFS_TMP="0"))

        def leader():
            if self.proc.poll() is not None:
                return "dead"
            # the child that has become systemd, not a helper nspawn forked
            r = subprocess.run(["ps", "-o", "pid=,comm=", "--ppid", str(self.proc.pid)],
                               capture_output=True, text=True)
            for line in r.stdout.splitlines():
                pid, comm = line.split(None, 1)
                if comm.strip() == "systemd":
                    return pid
            return None

        pid = wait_for(leader, 30, "the container's init")
        if pid == "dead":
            return False
        self.leader = pid

        def booted():
            r = self.sh("systemctl is-system-running", check_rc=False)
            return r.stdout.strip() in ("running", "degraded") or self.proc.poll() is not None
        try:
            wait_for(booted, 60, "the container's systemd to finish booting", 0.5)
        except TestFailure:
            jobs = self.sh("systemctl list-jobs --no-pager", check_rc=False).stdout
            raise TestFailure("the container's systemd did not finish booting in 60s; "
                              "jobs:\n" + jobs)
        return self.proc.poll() is None

    def sh(self, cmd, check_rc=True, timeout=60):
        r = subprocess.run(["nsenter", "-t", self.leader, "-m", "-u", "-i", "-n", "-p",
                            "--", "/bin/sh", "-c", cmd],
                           capture_output=True, text=True, timeout=timeout)
        if check_rc and r.returncode:
            raise TestFailure("in the container, '%s' exited %d: %s%s"
                              % (cmd, r.returncode, r.stdout, r.stderr))
        return r

    def prop(self, name):
        return self.sh("systemctl show -P %s mvmd" % name).stdout.strip()

    def poweroff(self):
        """nspawn turns SIGTERM into a clean poweroff of the container."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            raise TestFailure("the container did not power off within 40s")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            # nspawn turns SIGTERM into a clean poweroff of the container
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for m in self.mounted:
            subprocess.run(["umount", "-l", m])


def unit_text(unit, mvmd, vmm):
    with open(unit) as f:
        text = f.read()
    start = [line for line in text.splitlines() if line.startswith("ExecStart=")]
    check(len(start) == 1, "mvmd.service has no single ExecStart= line")
    exe = start[0].split("=", 1)[1].split()[0]
    return text.replace("ExecStart=" + exe, "ExecStart=%s --config /etc/mvm/mvmd.conf --vmm %s"
                        % (mvmd, vmm))


def install_guests(c, unit):
    """mvm-guests.service and its script, pointed at the build's mvmctl."""
    with open(os.path.join(os.path.dirname(unit), "mvm-guests")) as f:
        script = f.read()
    exe = [line for line in script.splitlines() if line.startswith("mvmctl=")]
    check(len(exe) == 1, "mvm-guests has no single mvmctl= line")
    c.write("/etc/mvm-test/mvm-guests", script.replace(exe[0], "mvmctl=" + MVMCTL))
    with open(os.path.join(os.path.dirname(unit), "mvm-guests.service")) as f:
        text = f.read()
    stop = [line for line in text.splitlines() if line.startswith("ExecStop=")]
    check(len(stop) == 1, "mvm-guests.service has no single ExecStop= line")
    c.write("/etc/systemd/system/mvm-guests.service",
            text.replace(stop[0], "ExecStop=/bin/sh /etc/mvm-test/mvm-guests"))


def guests_stop(c, wpid):
    c.write("/etc/default/mvm-guests", "MVM_GUESTS_ON_SHUTDOWN=ignore\n")
    c.sh("systemctl start mvm-guests && systemctl stop mvm-guests", timeout=30)
    check(vm_pid(c, "t1") == ("running", wpid), "mvm-guests (ignore) ended t1")
    c.write("/etc/default/mvm-guests", "MVM_GUESTS_ON_SHUTDOWN=stop\nMVM_GUESTS_TIMEOUT=1\n")
    t0 = time.monotonic()
    c.sh("systemctl start mvm-guests && systemctl stop mvm-guests", timeout=30)
    state, _ = vm_pid(c, "t1")
    check(state in ("stopped", "crashed"), "after mvm-guests (stop), t1 is %s" % state)
    print("guests: ignore kept t1; stop ended it (%s) in %.1fs"
          % (state, time.monotonic() - t0))


def poweroff(c):
    c.sh("%s --socket %s start t1" % (MVMCTL, SOCK))
    wait_for(lambda: vm_pid(c, "t1")[0] == "running", 30, "t1 to run again", 0.2)
    c.write("/etc/default/mvm-guests", "MVM_GUESTS_TIMEOUT=2\n")
    c.sh("systemctl start mvm-guests")
    t0 = time.monotonic()
    c.poweroff()
    db = os.path.join(c.lower_tmp, "u", "var", "lib", "mvm", "mvmd.db")
    check(os.path.exists(db), "no mvmd.db in the container's upper layer")
    con = sqlite3.connect(db)
    try:
        state = con.execute("SELECT state FROM vms WHERE name = 't1'").fetchone()
    finally:
        con.close()
    check(state and state[0] == "stopped",
          "after the container's poweroff t1 is %r in mvmd's database, not stopped" % (state,))
    print("poweroff: t1 stopped by mvm-guests before mvmd; container down in %.1fs"
          % (time.monotonic() - t0))


def sanitized(exe):
    r = subprocess.run(["ldd", exe], capture_output=True, text=True)
    return "libasan" in r.stdout


def vm_pid(c, name):
    r = c.sh("%s --socket %s show %s -o json" % (MVMCTL, SOCK, name))
    vm = json.loads(r.stdout)["vm"]
    return vm["state"], vm.get("pid")


def main():
    global MVMCTL
    if os.geteuid() != 0:
        skip("needs root to mount an overlay and boot a container")
    if not shutil.which("systemd-nspawn") or not shutil.which("nsenter"):
        skip("systemd-nspawn or nsenter is not installed (Debian: systemd-container)")
    if not kvm_usable():
        skip("/dev/kvm is missing or not accessible")
    if not os.path.exists("/lib/systemd/systemd"):
        skip("the host has no systemd to boot in the container")
    mvmd, vmm = env_path("MVMD"), env_path("MVM_VMM")
    MVMCTL = env_path("MVMCTL")
    bz = env_path("MVM_BZIMAGE")
    unit = env_path("MVMD_UNIT")
    top = tempfile.mkdtemp(prefix="mvm-nspawn-")
    c = Container(top)
    log_path = os.path.join(top, "nspawn.log")
    try:
        c.mount()
        c.write("/etc/systemd/system/mvmd.service", unit_text(unit, mvmd, vmm))
        install_guests(c, unit)
        c.write("/etc/mvm/mvmd.conf", "sandbox_uid_base = %d\nsandbox_uid_count = 100\n"
                % UID_BASE)
        dropin = "[Service]\nWatchdogSec=3\n"
        if sanitized(mvmd):
            # LeakSanitizer stops the world with ptrace (@debug), in mvmd
            # and in each worker, which inherit the unit's filter
            dropin += "SystemCallFilter=@debug\n"
            print("sanitizer build: @debug allowed for LeakSanitizer")
        c.write("/etc/systemd/system/mvmd.service.d/test.conf", dropin)
        # a target with nothing but the basics, so the host's services stay off
        c.write("/etc/systemd/system/mvmtest.target",
                "[Unit]\nRequires=basic.target\nAfter=basic.target\nAllowIsolate=yes\n")
        with open(log_path, "w") as log:
            if not c.boot(log):
                with open(log_path) as f:
                    skip("the container did not boot: " + f.read()[-500:])
        t0 = time.monotonic()
        c.sh("systemctl start mvmd", timeout=30)
        check(c.prop("ActiveState") == "active", "mvmd is not active after start")
        print("notify: active after %.1fs" % (time.monotonic() - t0))
        pid0 = c.prop("MainPID")

        mine = c.sh("findmnt -rno TARGET,VFS-OPTIONS -R /sys/fs/cgroup").stdout
        theirs = c.sh("nsenter -t %s -m findmnt -rno TARGET,VFS-OPTIONS -R /sys/fs/cgroup"
                      % pid0).stdout
        ro = lambda out: sorted(l.split()[0] for l in out.splitlines()
                                if "ro" in l.split()[1].split(","))
        check(ro(mine) == ro(theirs), "read-only cgroup mounts differ: systemd %s, mvmd %s"
              % (ro(mine), ro(theirs)))
        print("cgroupfs: read-only in mvmd's namespace only where systemd's is: %s"
              % (ro(theirs) or "none"))

        c.sh("ip tuntap add dev mvmtap0 mode tap user root")
        c.sh("%s --socket %s create t1 --kernel %s --cmdline mvmtest=idle --mem 64M "
             "--net tap=mvmtap0 --wait" % (MVMCTL, SOCK, bz), timeout=60)
        state, wpid = vm_pid(c, "t1")
        check(state == "running" and wpid, "t1 is %s, not running" % state)
        uid = c.sh("awk '/^Uid:/ {print $2}' /proc/%d/status" % wpid).stdout.strip()
        check(uid.isdigit() and int(uid) >= 100000,
              "t1's worker runs as uid %s, not a sandbox uid" % uid)
        print("vm: t1 running as worker pid %s, uid %s, with a TAP" % (wpid, uid))

        c.sh("systemctl reload mvmd")
        time.sleep(0.5)
        check(c.prop("MainPID") == pid0, "reload changed mvmd's pid")
        check(vm_pid(c, "t1") == ("running", wpid), "reload ended or changed t1")
        print("reload: mvmd %s kept, t1 kept" % pid0)

        # a paused VM stays paused over the restart
        c.sh("%s --socket %s pause t1" % (MVMCTL, SOCK))
        c.sh("systemctl restart mvmd", timeout=30)
        pid1 = c.prop("MainPID")
        check(pid1 != pid0, "restart did not replace mvmd")
        check(vm_pid(c, "t1") == ("paused", wpid), "restart ended, changed or resumed t1")
        c.sh("%s --socket %s resume t1" % (MVMCTL, SOCK))
        check(vm_pid(c, "t1") == ("running", wpid), "t1 did not resume")
        print("restart: mvmd %s -> %s, t1 re-adopted paused as %s, resumed" % (pid0, pid1, wpid))
        # the VM's lines carry its name as a journal field
        out = c.sh("journalctl --no-pager -o cat MVM_VM=t1").stdout
        check("VM t1: re-adopted worker" in out, "journalctl MVM_VM=t1: %r" % out)
        prio = c.sh("journalctl --no-pager -o export MVM_VM=t1 | grep -a '^PRIORITY=' "
                    "| sort -u").stdout.split()
        check(prio and all(p in ("PRIORITY=3", "PRIORITY=4", "PRIORITY=6") for p in prio), prio)
        print("journal: MVM_VM=t1 selects %d lines (%s)" % (len(out.splitlines()), ",".join(prio)))

        c.sh("kill -STOP %s" % pid1)
        t0 = time.monotonic()

        def restarted():
            p = c.prop("MainPID")
            return p not in (pid1, "0") and c.prop("ActiveState") == "active"
        wait_for(restarted, 30, "the watchdog to restart a stopped mvmd", 0.5)
        check(vm_pid(c, "t1") == ("running", wpid), "the watchdog restart ended t1")
        print("watchdog: restarted after %.1fs, t1 kept" % (time.monotonic() - t0))
        guests_stop(c, wpid)
        poweroff(c)
        return 0
    except TestFailure as e:
        print("nspawn: FAIL: %s" % e)
        r = c.sh("journalctl -u mvmd --no-pager -n 40; tail -n 20 /var/lib/mvm/vms/*/vmm.log",
                 check_rc=False) if c.leader else None
        if r:
            print(r.stdout)
        return 1
    finally:
        c.stop()
        if not os.path.ismount(c.root) and not os.path.ismount(c.lower_tmp):
            shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
