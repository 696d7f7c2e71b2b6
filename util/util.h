/* SPDX-License-Identifier: MIT */
/*
 * Small helpers shared by mvmd, mvmctl and mvm-vmm: strict number parsing,
 * one-shot reads and writes of small (proc, sys, cgroup) files, and
 * bounded message formatting.  No allocation, no printing, no globals.
 */
#ifndef MVM_UTIL_UTIL_H
#define MVM_UTIL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Decimal digits at the start of s (a digit first: no sign, no blanks).
 * On success *ret_end points after them.  -EINVAL: no digit first;
 * -ERANGE: more than 64 bits. */
int util_parse_u64_prefix(const char *s, uint64_t *ret, const char **ret_end);

/* The whole of s as a decimal in [min, max].  -EINVAL: not a plain
 * decimal; -ERANGE: out of range. */
int util_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/*
 * The one size grammar of mvmctl, the mvmd config file and mvm-vmm
 * (docs/architecture.md "Sizes"):
 *   SIZE   = DIGITS [ "." DIGITS ] [ UNIT ]
 *   UNIT   = ( "K" | "M" | "G" | "T" ) [ "B" | "iB" ]   (letters in any case)
 * Units are binary: 1K = 1KB = 1KiB = 1024.  A number without a unit counts
 * in `unit` bytes (1 for mvm-vmm's byte sizes, 1 MiB for memory in MiB).
 * A fraction must come out as a whole number of bytes.  0 and *ret_bytes,
 * -EINVAL (not a size) or -ERANGE (more than 64 bits).
 */
int util_parse_size(const char *s, uint64_t unit, uint64_t *ret_bytes);

/* A ratio for people: 1.0, 2.5, 1.25 (at least one decimal, at most
 * three, no trailing zeros beyond the first).  Returns buf. */
const char *util_fmt_ratio(char *buf, size_t len, double v);

/* "/proc/self/fd/N" (how mvmd hands a worker a file it opened) gives N,
 * 0 to 65535; any other path gives -1. */
int util_proc_fd_number(const char *path);

/* Reads up to len - 1 bytes of a small file with one read(2) and
 * NUL-terminates them: the byte count or -errno. */
int util_read_file(const char *path, char *buf, size_t len);

/* Writes s to an existing file with one write(2): sysfs, procfs and cgroup
 * files take one value per write and report a refusal there. */
int util_write_file(const char *path, const char *s);

/* Field 22 of a /proc/PID/stat: the start time in clock ticks, which with
 * the pid names a process across pid reuse; pid 0 is this process (by
 * /proc/self: a pid namespace may number it otherwise).  -ESRCH for a
 * zombie. */
int util_proc_start_time(pid_t pid, uint64_t *ret);
/* This process's pid as the namespace of the /proc mount sees it (the
 * first NSpid field): the host's view even inside a PID namespace of its
 * own, where getpid() says 1.  Falls back to getpid() without NSpid. */
pid_t util_proc_outer_pid(void);

/*
 * The one credential switch (mvmd acting for a client): the calling
 * thread's effective uid, gid and supplementary groups become the client's,
 * so the kernel's own checks (file permissions, the tun driver's owner and
 * group) judge the client, not root.  Raw syscalls change only this thread
 * (the glibc wrappers would change every thread).  Leaving euid 0 clears
 * the thread's effective capabilities; util_cred_leave restores them from
 * the permitted set, which needs the real and saved uids to be 0.  On
 * failure of util_cred_enter, call util_cred_leave all the same.
 */
struct util_saved_cred {
	int ngroups;                    /* -1: nothing to restore */
	gid_t groups[64];
};
int util_cred_enter(uid_t uid, gid_t gid, int ngroups, const gid_t *groups,
                    struct util_saved_cred *saved);
void util_cred_leave(const struct util_saved_cred *saved);

/* Clears the forbidden mode bits of the directory path (not followed if a
 * symlink).  1: it had some and now has none (*ret_old its old mode);
 * 0: it had none; -errno: cannot open or chmod it (-EPERM: not ours). */
int util_dir_tighten(const char *path, mode_t forbidden, mode_t *ret_old);

/* snprintf into buf that truncates quietly; buf may be NULL. */
void util_bprintf(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Strips blanks before and blanks and line ends after, in place. */
char *util_trim(char *s);

#endif
