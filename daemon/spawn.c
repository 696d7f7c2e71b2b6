/* SPDX-License-Identifier: MIT */
/*
 * Starting a worker process, in place of uv_spawn: libuv cannot put a child
 * into a new PID namespace, and a sandboxed worker must be the init of its
 * own (docs/security.md).  The kernel only lets a process create threads in
 * the PID namespace it was born in, so the namespace has to exist at the
 * clone, not be unshared by the worker later.  clone3 also hands back a
 * pidfd, which is how mvmd watches, signals and reaps every worker.
 *
 * Between clone3 and execve the child is a copy of mvmd that must not touch
 * malloc or locks (raw clone3 runs no atfork handlers): it only makes
 * system calls on memory prepared beforehand.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/mvmd.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

extern char **environ;

/* Only in the child: report errno on the pipe and die. */
static void __attribute__((noreturn)) child_fail(int err_fd)
{
	int e = errno;

	if (write(err_fd, &e, sizeof(e)) < 0) {
		/* the parent sees EOF and a child that exited 127 */
	}
	_exit(127);
}

static void __attribute__((noreturn)) child(const struct spawn_req *r, int err_fd)
{
	int high[SPAWN_MAX_FDS];
	struct sigaction sa;
	sigset_t none;
	int i, fd;

	/* uv_spawn's start state: nothing blocked, every handler default (mvmd
	 * ignores SIGPIPE; the worker chooses its own). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (i = 1; i < _NSIG; i++)
		if (i != SIGKILL && i != SIGSTOP)
			sigaction(i, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	/* its own session: a signal to mvmd's process group spares the VMs */
	if (setsid() < 0)
		child_fail(err_fd);
	/* Every source above the target range first, so no dup2 below can
	 * overwrite a source (or the error pipe) still to be moved. */
	if ((fd = fcntl(err_fd, F_DUPFD_CLOEXEC, r->nfds)) < 0)
		child_fail(err_fd);
	err_fd = fd;
	for (i = 0; i < r->nfds; i++) {
		fd = r->fds[i] >= 0 ? r->fds[i] : open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0 || (high[i] = fcntl(fd, F_DUPFD_CLOEXEC, r->nfds)) < 0)
			child_fail(err_fd);
		if (r->fds[i] < 0)
			close(fd);
	}
	for (i = 0; i < r->nfds; i++)
		if (dup2(high[i], i) < 0)
			child_fail(err_fd);
	/* Nothing else of mvmd's crosses the exec (the error pipe closes
	 * there, which tells the parent the exec worked). */
	if (syscall(SYS_close_range, r->nfds, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
		for (i = r->nfds; i < 4096; i++)
			if (i != err_fd)
				fcntl(i, F_SETFD, FD_CLOEXEC);
	}
	execve(r->path, r->argv, environ);
	child_fail(err_fd);
}

int spawn_reap(int pidfd, siginfo_t *si, bool block)
{
	int r;

	memset(si, 0, sizeof(*si));
	do
		r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, si, WEXITED | (block ? 0 : WNOHANG));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return si->si_pid != 0 ? 0 : -EAGAIN;
}

int spawn_process(const struct spawn_req *r, pid_t *ret_pid, int *ret_pidfd)
{
	struct clone_args args;
	int pidfd = -1, p[2], err = 0;
	ssize_t n;
	long pid;

	if (r->nfds > SPAWN_MAX_FDS)
		return -E2BIG;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	memset(&args, 0, sizeof(args));
	args.flags = CLONE_PIDFD | (r->new_pid_ns ? CLONE_NEWPID : 0);
	args.pidfd = (uint64_t)(uintptr_t)&pidfd;
	args.exit_signal = SIGCHLD;
	pid = syscall(SYS_clone3, &args, sizeof(args));
	if (pid < 0) {
		err = -errno;
		close(p[0]);
		close(p[1]);
		return err;
	}
	if (pid == 0) {
		close(p[0]);
		child(r, p[1]);
	}
	close(p[1]);
	do
		n = read(p[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n > 0) {
		/* exec failed: the child has exited 127; reap it now */
		siginfo_t si;

		spawn_reap(pidfd, &si, true);
		close(pidfd);
		return err > 0 ? -err : -EIO;
	}
	*ret_pid = (pid_t)pid;
	*ret_pidfd = pidfd;
	return 0;
}

int spawn_signal(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}
