/* SPDX-License-Identifier: MIT */
/*
 * Helpers every mvmd file may use and that belong to no role: the logger,
 * the clocks (wall time for what people read, monotonic time for every
 * interval) and the paths of a VM's files.  They call nothing of mvmd.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "util/util.h"

enum log_level mvmd_log_level = LOG_INFO;
static bool log_journal;

/* systemd sets JOURNAL_STREAM to "DEV:INO" of the stream it connected to
 * stderr; only when stderr is still that stream does journald read a
 * leading <N> as the line's syslog priority (sd-daemon(3)). */
bool mvmd_log_init(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;

	log_journal = env && sscanf(env, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
	              fstat(STDERR_FILENO, &st) == 0 &&
	              (unsigned long long)st.st_dev == dev &&
	              (unsigned long long)st.st_ino == ino;
	return log_journal;
}

/*
 * Under journald, each line also goes as one datagram of the journal's
 * native protocol (systemd.journal-fields(7)), so a VM's lines carry its
 * name: MVM_VM=NAME, taken from the "VM NAME: " every per-VM line starts
 * with (journalctl MVM_VM=web1).  MESSAGE uses the length-prefixed form,
 * so no text can forge a field.  $MVMD_JOURNAL_SOCKET replaces
 * /run/systemd/journal/socket (tests).  When a datagram cannot be sent
 * (no journald there, its queue full) the line goes to stderr as before.
 */
#define JOURNAL_SOCKET "/run/systemd/journal/socket"

static int journal_fd = -2;             /* -2: not opened yet; -1: none */
static struct sockaddr_un journal_addr;

static bool journal_open(void)
{
	const char *path = getenv("MVMD_JOURNAL_SOCKET");

	if (journal_fd != -2)
		return journal_fd >= 0;
	journal_fd = -1;
	if (!path)
		path = JOURNAL_SOCKET;
	if (strlen(path) >= sizeof(journal_addr.sun_path))
		return false;
	journal_addr.sun_family = AF_UNIX;
	memcpy(journal_addr.sun_path, path, strlen(path) + 1);
	journal_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	return journal_fd >= 0;
}

/* The NAME of a leading "VM NAME: ", its length; 0 if none. */
static size_t vm_field(const char *msg)
{
	size_t n;

	if (strncmp(msg, "VM ", 3))
		return 0;
	n = strcspn(msg + 3, ": ");
	return n > 0 && n < 64 && msg[3 + n] == ':' ? n : 0;
}

static bool journal_send(char prio, const char *msg)
{
	char head[160];
	size_t vm = vm_field(msg), len = strlen(msg);
	uint64_t le = 0;
	struct iovec iov[4];
	struct msghdr mh = { .msg_name = &journal_addr, .msg_namelen = sizeof(journal_addr),
	                     .msg_iov = iov, .msg_iovlen = 4 };
	int n;

	if (!journal_open())
		return false;
	n = snprintf(head, sizeof(head), "PRIORITY=%c\nSYSLOG_IDENTIFIER=mvmd\n%s%.*s%s"
	             "MESSAGE\n", prio, vm ? "MVM_VM=" : "", (int)vm, msg + 3, vm ? "\n" : "");
	for (int i = 0; i < 8; i++)
		((unsigned char *)&le)[i] = (unsigned char)((uint64_t)len >> (8 * i));
	iov[0] = (struct iovec){ head, (size_t)n };
	iov[1] = (struct iovec){ &le, sizeof(le) };
	iov[2] = (struct iovec){ (void *)msg, len };
	iov[3] = (struct iovec){ "\n", 1 };
	return sendmsg(journal_fd, &mh, MSG_NOSIGNAL) >= 0;
}

void mvmd_log(enum log_level level, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	/* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG of syslog.h */
	static const char prio[] = { '3', '4', '6', '7' };
	char msg[2048];
	va_list ap;

	if (level > mvmd_log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (log_journal && journal_send(prio[level], msg))
		return;
	if (log_journal)
		fprintf(stderr, "<%c>", prio[level]);
	fprintf(stderr, "mvmd: %s: %s\n", tags[level], msg);
}

double mvmd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double mvmd_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int mvmd_vm_dir(const struct mvmd *d, const char *name, const char *file,
                char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/vms/%s%s%s", d->cfg.state_dir, name,
	                 file ? "/" : "", file ? file : "");

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* /proc/PID/stat of a process: its state (R, S, D, T, ...) and utime +
 * stime of all its threads in ns; either pointer may be NULL.  The name
 * may hold spaces and parentheses, so the fields follow the last ')'. */
int mvmd_proc_stat(long pid, char *state, uint64_t *cpu_ns)
{
	unsigned long long ut, st;
	char path[64], buf[1024], *p, c;
	long hz = sysconf(_SC_CLK_TCK);
	int r;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	r = util_read_file(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	/* state is field 3, utime 14, stime 15 */
	if (!(p = strrchr(buf, ')')) || hz <= 0 ||
	    sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
	           &c, &ut, &st) != 3)
		return -EINVAL;
	if (state)
		*state = c;
	if (cpu_ns)
		*cpu_ns = (ut + st) * (1000000000ULL / (uint64_t)hz);
	return 0;
}

int mvmd_adopt_socket(const struct mvmd *d, const char *name, char *buf, size_t size)
{
	struct sockaddr_un sa;
	int n;

	n = snprintf(buf, size, "%s/vms/%s.sock", d->cfg.run_dir, name);
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

#ifdef MVM_TEST_HOOKS
/* Test builds only: the milliseconds named by environment variable VAR
 * (0 when unset or not positive), and a sleep that EINTR does not cut short;
 * the stall hooks that open race windows for the tests use both. */
long mvmd_test_stall_ms(const char *var)
{
	const char *t = getenv(var);
	long ms = t ? atol(t) : 0;

	return ms > 0 ? ms : 0;
}

void mvmd_sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
#endif
