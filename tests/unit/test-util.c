/* SPDX-License-Identifier: MIT */
/* util/: strict number parsing, /proc/self/fd/N, small file I/O, the
 * /proc/PID/stat start time, bounded formatting and trimming. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/uid_lease.h"
#include "util/util.h"
#include "tests/unit/check.h"

static void test_parse(void)
{
	const char *end;
	uint64_t v = 7;

	CHECK_EQ(util_parse_u64_prefix("128M", &v, &end), 0);
	CHECK_EQ(v, 128);
	CHECK(!strcmp(end, "M"));
	CHECK_EQ(util_parse_u64_prefix("18446744073709551615", &v, &end), 0);
	CHECK(v == UINT64_MAX && *end == '\0');
	v = 7;
	/* no sign, no blanks, no wrap-around, ret untouched on failure */
	CHECK_EQ(util_parse_u64_prefix("-1", &v, &end), -EINVAL);
	CHECK_EQ(util_parse_u64_prefix("+1", &v, &end), -EINVAL);
	CHECK_EQ(util_parse_u64_prefix(" 1", &v, &end), -EINVAL);
	CHECK_EQ(util_parse_u64_prefix("", &v, &end), -EINVAL);
	CHECK_EQ(util_parse_u64_prefix("18446744073709551616", &v, &end), -ERANGE);
	CHECK_EQ(v, 7);

	CHECK_EQ(util_parse_uint("42", 1, 42, &v), 0);
	CHECK_EQ(v, 42);
	CHECK_EQ(util_parse_uint("43", 1, 42, &v), -ERANGE);
	CHECK_EQ(util_parse_uint("0", 1, 42, &v), -ERANGE);
	CHECK_EQ(util_parse_uint("4x", 0, 42, &v), -EINVAL);
	CHECK_EQ(util_parse_uint("x", 0, 42, &v), -EINVAL);
	CHECK_EQ(util_parse_uint("4294967294", 1, 0xfffffffeULL, &v), 0);
	CHECK_EQ(util_parse_uint("4294967295", 1, 0xfffffffeULL, &v), -ERANGE);
	CHECK_EQ(v, 0xfffffffeULL);
}

static void test_proc_fd(void)
{
	CHECK_EQ(util_proc_fd_number("/proc/self/fd/7"), 7);
	CHECK_EQ(util_proc_fd_number("/proc/self/fd/65535"), 65535);
	CHECK_EQ(util_proc_fd_number("/proc/self/fd/65536"), -1);
	CHECK_EQ(util_proc_fd_number("/proc/self/fd/"), -1);
	CHECK_EQ(util_proc_fd_number("/proc/self/fd/-1"), -1);
	CHECK_EQ(util_proc_fd_number("/proc/self/fd/3/x"), -1);
	CHECK_EQ(util_proc_fd_number("/var/lib/disk.img"), -1);
	CHECK_EQ(util_proc_fd_number(NULL), -1);
}

static void test_files(void)
{
	char path[] = "/tmp/mvm-test-util-XXXXXX", buf[8];
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	close(fd);
	CHECK_EQ(util_write_file(path, "hello world"), 0);
	/* one read, truncated to fit with its NUL */
	CHECK_EQ(util_read_file(path, buf, sizeof(buf)), 7);
	CHECK(!strcmp(buf, "hello w"));
	CHECK_EQ(util_read_file(path, buf, 0), -EINVAL);
	unlink(path);
	CHECK_EQ(util_read_file(path, buf, sizeof(buf)), -ENOENT);
	/* writes an existing file only: never creates one */
	CHECK_EQ(util_write_file(path, "x"), -ENOENT);
	CHECK_EQ(access(path, F_OK), -1);
}

static void test_start_time(void)
{
	uint64_t self = 0, by_pid = 0, zombie;
	siginfo_t si;
	pid_t pid;

	CHECK_EQ(util_proc_start_time(0, &self), 0);
	CHECK_EQ(util_proc_start_time(getpid(), &by_pid), 0);
	CHECK(self > 0 && self == by_pid);
	pid = fork();
	if (pid == 0)
		_exit(0);
	CHECK(pid > 0);
	/* the child is a zombie until reaped: waitid with WNOWAIT leaves it so */
	CHECK_EQ(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	CHECK_EQ(util_proc_start_time(pid, &zombie), -ESRCH);
	waitpid(pid, NULL, 0);
	CHECK_EQ(util_proc_start_time(pid, &zombie), -ENOENT);
}

static void test_text(void)
{
	char buf[8], line[] = " \t key = v \r\n";

	util_bprintf(buf, sizeof(buf), "%s-%d", "abcdef", 12);
	CHECK(!strcmp(buf, "abcdef-"));
	util_bprintf(NULL, 0, "%d", 1);  /* no buffer: nothing written */
	CHECK(!strcmp(util_trim(line), "key = v"));
	CHECK(!strcmp(util_trim(line + sizeof(line) - 1), ""));
}

/* Loose bits go, kept ones stay; a symlink is not followed. */
static void test_dir_tighten(void)
{
	char dir[] = "/tmp/mvm-test-tighten-XXXXXX", link[64];
	struct stat st;
	mode_t old = 0;
	int r;

	CHECK(mkdtemp(dir) != NULL);
	CHECK_EQ(chmod(dir, 0777), 0);
	CHECK_EQ(util_dir_tighten(dir, 027, &old), 1);
	CHECK_EQ(old, 0777);
	CHECK_EQ(stat(dir, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0750);
	CHECK_EQ(util_dir_tighten(dir, 027, &old), 0);
	snprintf(link, sizeof(link), "%s.link", dir);
	CHECK_EQ(symlink(dir, link), 0);
	r = util_dir_tighten(link, 027, NULL);
	CHECK(r == -ELOOP || r == -ENOTDIR);
	unlink(link);
	rmdir(dir);
	CHECK_EQ(util_dir_tighten(dir, 027, NULL), -ENOENT);
}

/* uid leases: one holder per uid, a second open in this process or a
 * forked child's included; the lease outlives the fd it was taken by while
 * a copy (a worker's) is open; the directory's mode is checked. */
static void test_uid_lease(void)
{
	char dir[] = "/tmp/mvm-test-lease-XXXXXX", sub[64], why[512], path[96];
	struct stat st;
	int dfd, a, b, copy, st_child = 0;
	pid_t pid;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(sub, sizeof(sub), "%s/leases", dir);
	dfd = uid_lease_dir_open(sub, why, sizeof(why));
	CHECK(dfd >= 0);
	if (dfd < 0)
		return;
	CHECK_EQ(stat(sub, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0700);
	a = uid_lease_take(dfd, 4242);
	CHECK(a >= 0);
	CHECK_EQ(uid_lease_take(dfd, 4242), -EWOULDBLOCK);
	b = uid_lease_take(dfd, 4243);
	CHECK(b >= 0);
	pid = fork();
	if (pid == 0)
		_exit(uid_lease_take(dfd, 4242) == -EWOULDBLOCK ? 0 : 1);
	CHECK_EQ(waitpid(pid, &st_child, 0), pid);
	CHECK(WIFEXITED(st_child) && WEXITSTATUS(st_child) == 0);
	copy = dup(a);          /* what the worker inherits */
	close(a);
	CHECK_EQ(uid_lease_take(dfd, 4242), -EWOULDBLOCK);
	close(copy);
	a = uid_lease_take(dfd, 4242);
	CHECK(a >= 0);
	close(a);
	close(b);
	close(dfd);
	/* only readable by others: closed; writable by others: refused */
	CHECK_EQ(chmod(sub, 0755), 0);
	dfd = uid_lease_dir_open(sub, why, sizeof(why));
	CHECK(dfd >= 0);
	if (dfd >= 0)
		close(dfd);
	CHECK_EQ(stat(sub, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0700);
	CHECK_EQ(chmod(sub, 0777), 0);
	CHECK_EQ(uid_lease_dir_open(sub, why, sizeof(why)), -EPERM);
	CHECK(strstr(why, "chmod 0700") != NULL);
	snprintf(path, sizeof(path), "%s/4242", sub);
	unlink(path);
	snprintf(path, sizeof(path), "%s/4243", sub);
	unlink(path);
	rmdir(sub);
	rmdir(dir);
}

/* As root: the thread takes the client's ids and gives them back. */
static void test_cred(void)
{
	char dir[] = "/tmp/mvm-test-cred-XXXXXX";
	gid_t groups[1] = { 65534 };
	struct util_saved_cred saved;
	int fd;

	if (geteuid() != 0) {
		fprintf(stderr, "util: not root, credential switch not tested\n");
		return;
	}
	CHECK(mkdtemp(dir) != NULL);   /* 0700, root's */
	CHECK_EQ(util_cred_enter(65534, 65534, 1, groups, &saved), 0);
	CHECK_EQ(geteuid(), 65534);
	CHECK_EQ(getegid(), 65534);
	/* the kernel judges 65534 now: a 0700 directory of root's is closed */
	CHECK_EQ(open(dir, O_RDONLY | O_DIRECTORY), -1);
	CHECK_EQ(errno, EACCES);
	util_cred_leave(&saved);
	CHECK_EQ(geteuid(), 0);
	CHECK_EQ(getegid(), 0);
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0);
	close(fd);
	rmdir(dir);
}

/* One grammar for mvmctl --mem, the config file's sizes and mvm-vmm. */
static void test_size(void)
{
	static const struct { const char *s; uint64_t unit, want; } ok[] = {
		{ "4096", 1, 4096 }, { "256", 1 << 20, 256ull << 20 },
		{ "1.5G", 1 << 20, 1536ull << 20 }, { "2048K", 1 << 20, 2ull << 20 },
		{ "64GB", 1, 64ull << 30 }, { "64gib", 1, 64ull << 30 },
		{ "1T", 1, 1ull << 40 }, { "0.5k", 1, 512 }, { "48MiB", 1, 48ull << 20 },
		{ "0", 1 << 20, 0 }, { "16777215T", 1, 16777215ull << 40 },
	};
	static const char *const bad[] = {
		"", "G", "-1", "+1", " 1", "1 G", "1.", ".5", "1.5", "1X", "1GiBB", "1Gb2",
		"0.3K",         /* 307.2 bytes: not whole */
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 7;
		CHECK_EQ(util_parse_size(ok[i].s, ok[i].unit, &v), 0);
		CHECK_EQ(v, ok[i].want);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		CHECK_EQ(util_parse_size(bad[i], 1, &v), -EINVAL);
		CHECK_EQ(v, 7);         /* untouched on failure */
	}
	CHECK_EQ(util_parse_size("16777216T", 1, &v), -ERANGE);
	CHECK_EQ(util_parse_size("18446744073709551615", 1, &v), 0);
	CHECK_EQ(util_parse_size("18446744073709551615K", 1, &v), -ERANGE);
}

static void test_ratio(void)
{
	char b[32];

	CHECK(!strcmp(util_fmt_ratio(b, sizeof(b), 1), "1.0"));
	CHECK(!strcmp(util_fmt_ratio(b, sizeof(b), 2.5), "2.5"));
	CHECK(!strcmp(util_fmt_ratio(b, sizeof(b), 1.25), "1.25"));
	CHECK(!strcmp(util_fmt_ratio(b, sizeof(b), 0.125), "0.125"));
	CHECK(!strcmp(util_fmt_ratio(b, sizeof(b), 10), "10.0"));
}

int main(void)
{
	test_parse();
	test_ratio();
	test_size();
	test_proc_fd();
	test_files();
	test_start_time();
	test_text();
	test_dir_tighten();
	test_uid_lease();
	test_cred();
	return check_result("util");
}
