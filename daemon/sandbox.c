/* SPDX-License-Identifier: MIT */
/*
 * The worker sandbox's host side (docs/security.md "Worker sandbox"): the
 * uids (and equal gids) sandbox_uid_base .. + sandbox_uid_count that
 * workers run as, one per live worker, and each worker's directory
 * <run-dir>/vms/<name>/, its whole root.  The worker narrows itself
 * (vmm/sandbox.c); mvmd only hands it a uid nobody else uses and an empty
 * directory only that uid may enter.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/mvmd.h"

/* Sandboxing needs root: only root can give the worker its own uid. */
bool sandbox_on(const struct mvmd *d, const char **ret_why)
{
	bool root = geteuid() == 0;

	if (root && d->cfg.sandbox != 0) {
		*ret_why = NULL;
		return true;
	}
	if (root)
		*ret_why = "config says sandbox = false";
	else if (d->cfg.sandbox > 0)
		*ret_why = "mvmd is not root, so it cannot give a worker its own uid "
		           "(sandbox = true ignored)";
	else
		*ret_why = "mvmd is not root, so it cannot give a worker its own uid";
	return false;
}

bool sandbox_enabled(const struct mvmd *d)
{
	static bool told;
	const char *why;
	bool on = sandbox_on(d, &why);

	if (!on && !told) {
		told = true;
		log_warn("workers run without their sandbox: %s", why);
	}
	return on;
}

/* ---- directories -------------------------------------------------------- */

int sandbox_dir(const struct mvmd *d, const char *name, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/vms/%s", d->cfg.run_dir, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Removes what dfd holds (taking dfd); bounded depth: the directory holds
 * sockets, at most a host application's own subdirectory. */
static void remove_below(int dfd, int depth)
{
	DIR *dp = fdopendir(dfd);
	struct dirent *e;
	int sub;

	if (!dp) {
		close(dfd);
		return;
	}
	while ((e = readdir(dp))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (unlinkat(dirfd(dp), e->d_name, 0) == 0 || errno != EISDIR)
			continue;
		sub = openat(dirfd(dp), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0 && depth > 0)
			remove_below(sub, depth - 1);
		else if (sub >= 0)
			close(sub);
		unlinkat(dirfd(dp), e->d_name, AT_REMOVEDIR);
	}
	closedir(dp);
}

void sandbox_remove(struct mvmd *d, const char *name)
{
	char path[4096];
	int fd;

	if (!name[0] || sandbox_dir(d, name, path, sizeof(path)) < 0)
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	remove_below(fd, 4);
	if (rmdir(path) < 0 && errno != ENOENT)
		log_warn("VM %s: cannot remove its sandbox directory %s: %s", name, path,
		         strerror(errno));
}

/* ---- uids --------------------------------------------------------------- */

uint32_t sandbox_uid_id(const struct mvmd *d, const struct sandbox_uid *u)
{
	return d->cfg.sandbox_uid_base + u->index;
}

/* The real uid of process `name` (a /proc entry), or -1. */
static long long proc_uid(int proc_fd, const char *name)
{
	char path[NAME_MAX + 16], buf[1024], *p;
	unsigned long uid;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/status", name);
	fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "\nUid:");
	return p && sscanf(p + 5, "%lu", &uid) == 1 ? (long long)uid : -1;
}

/* Marks the uids some process on the host runs as: another mvmd's worker
 * (a test daemon beside a real one) or anything else that uses the range.
 * RLIMIT_NPROC counts every task of a uid, and a shared uid would let two
 * VMs' workers signal each other. */
static void uids_in_use_on_host(const struct config *c, uint64_t n, unsigned char *used)
{
	DIR *dp = opendir("/proc");
	struct dirent *e;
	long long uid;

	if (!dp)
		return;
	while ((e = readdir(dp)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9' &&
		    (uid = proc_uid(dirfd(dp), e->d_name)) >= c->sandbox_uid_base &&
		    (uint64_t)uid - c->sandbox_uid_base < n) {
			uid -= c->sandbox_uid_base;
			used[uid / 8] |= (unsigned char)(1u << (uid % 8));
		}
	closedir(dp);
}

/*
 * A host-wide claim on a uid: the abstract Unix socket "mvm-uid-N" can be
 * bound only once per network namespace, so two mvmds (a test daemon
 * beside another) never hand out the same uid in the moment between
 * choosing it and the worker switching to it.  Held until the worker ends.
 */
static int uid_claim(uint32_t uid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

	if (fd < 0)
		return -errno;
	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "mvm-uid-%u", uid);
	if (bind(fd, (struct sockaddr *)&sa,
	         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) < 0) {
		n = -errno;
		close(fd);
		return n;
	}
	return fd;
}

static struct sandbox_uid *uid_new(struct mvmd *d, uint32_t index, int claim_fd)
{
	struct sandbox_uid *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->index = index;
	u->claim_fd = claim_fd;
	TAILQ_INSERT_TAIL(&d->sandbox_uids, u, link);
	return u;
}

void sandbox_uid_release(struct mvmd *d, struct sandbox_uid *u)
{
	if (!u)
		return;
	TAILQ_REMOVE(&d->sandbox_uids, u, link);
	if (u->claim_fd >= 0)
		close(u->claim_fd);
	free(u);
}

/* The lowest uid that no live worker holds, no process uses and no other
 * mvmd claimed: unique per live worker. */
static int uid_alloc(struct mvmd *d, struct sandbox_uid **ret)
{
	uint64_t n = d->cfg.sandbox_uid_count, i;
	struct sandbox_uid *u;
	unsigned char *used;
	int fd = -EUSERS;

	if (d->cfg.sandbox_uid_base + n > 0xffffffffULL)
		n = 0xffffffffULL - d->cfg.sandbox_uid_base;
	used = calloc(n / 8 + 1, 1);
	if (!used)
		return -ENOMEM;
	/* our own first: a worker just spawned still runs as root */
	TAILQ_FOREACH(u, &d->sandbox_uids, link)
		if (u->index < n)
			used[u->index / 8] |= (unsigned char)(1u << (u->index % 8));
	uids_in_use_on_host(&d->cfg, n, used);
	for (i = 0; i < n; i++) {
		if (used[i / 8] & (1u << (i % 8)))
			continue;
		fd = uid_claim(d->cfg.sandbox_uid_base + (uint32_t)i);
		if (fd >= 0 || fd != -EADDRINUSE)
			break;
	}
	free(used);
	if (i == n)
		return -EUSERS;
	if (fd < 0)
		return fd;
	*ret = uid_new(d, (uint32_t)i, fd);
	if (!*ret) {
		close(fd);
		return -ENOMEM;
	}
	return 0;
}

int sandbox_prepare(struct mvmd *d, const char *name, struct sandbox_uid **ret_uid,
                    char *dir, size_t size)
{
	struct sandbox_uid *u;
	uid_t id;
	int r;

	r = uid_alloc(d, &u);
	if (r < 0)
		return r;
	id = sandbox_uid_id(d, u);
	/* what a worker of this VM that died unseen left behind */
	sandbox_remove(d, name);
	r = sandbox_dir(d, "", dir, size);      /* <run-dir>/vms/ first */
	if (r == 0 && mkdir(dir, 0700) < 0 && errno != EEXIST)
		r = -errno;
	if (r == 0)
		r = sandbox_dir(d, name, dir, size);
	if (r == 0 && mkdir(dir, 0700) < 0)
		r = -errno;
	else if (r == 0 && (chown(dir, id, id) < 0 || chmod(dir, 0700) < 0)) {
		r = -errno;
		rmdir(dir);
	}
	if (r < 0) {
		sandbox_uid_release(d, u);
		return r;
	}
	*ret_uid = u;
	return 0;
}

/* Its uid says which (0 before its lockdown or unsandboxed: none). */
struct sandbox_uid *sandbox_uid_of(struct mvmd *d, pid_t pid)
{
	const struct config *c = &d->cfg;
	char name[24];
	long long uid;
	int proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (proc_fd < 0)
		return NULL;
	snprintf(name, sizeof(name), "%d", (int)pid);
	uid = proc_uid(proc_fd, name);
	close(proc_fd);
	if (uid < c->sandbox_uid_base || uid - c->sandbox_uid_base >= c->sandbox_uid_count)
		return NULL;
	return uid_new(d, (uint32_t)(uid - c->sandbox_uid_base), uid_claim((uint32_t)uid));
}
