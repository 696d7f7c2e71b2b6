/* SPDX-License-Identifier: MIT */
/*
 * The worker sandbox's host side (docs/security.md "Worker sandbox"): the
 * uids (and equal gids) sandbox_uid_base .. + sandbox_uid_count that
 * workers run as, one per live worker, each held by a host-wide lease
 * (util/uid_lease.h) that the worker inherits, and each worker's
 * directory <run-dir>/vms/<name>/, its whole root.  The worker narrows
 * itself (vmm/sandbox.c); mvmd only hands it a uid nobody else holds and
 * an empty directory only that uid may enter.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "util/uid_lease.h"

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

/* path and all in it; 0 or -errno (-ENOENT: nothing there).  Touches
 * nothing of mvmd's: the preparer thread calls it too. */
static int remove_tree(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	remove_below(fd, 4);
	return rmdir(path) < 0 ? -errno : 0;
}

void sandbox_remove(struct mvmd *d, const char *name)
{
	char path[4096];
	int r;

	if (!name[0] || sandbox_dir(d, name, path, sizeof(path)) < 0)
		return;
	r = remove_tree(path);
	if (r < 0 && r != -ENOENT)
		log_warn("VM %s: cannot remove its sandbox directory %s: %s", name, path,
		         strerror(-r));
}

/* ---- uids --------------------------------------------------------------- */

uint32_t sandbox_uid_id(const struct mvmd *d, const struct sandbox_uid *u)
{
	return d->cfg.sandbox_uid_base + u->index;
}

/* The real uid of process pid, or -1: one read of /proc/PID/status. */
static long long proc_uid(pid_t pid)
{
	char path[48], buf[1024], *p;
	unsigned long uid;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
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

static struct sandbox_uid *uid_new(struct mvmd *d, uint32_t index, int lease_fd)
{
	struct sandbox_uid *u = calloc(1, sizeof(*u));

	if (!u)
		return NULL;
	u->index = index;
	u->lease_fd = lease_fd;
	TAILQ_INSERT_TAIL(&d->sandbox_uids, u, link);
	return u;
}

void sandbox_uid_release(struct mvmd *d, struct sandbox_uid *u)
{
	if (!u)
		return;
	TAILQ_REMOVE(&d->sandbox_uids, u, link);
	if (u->lease_fd >= 0)
		close(u->lease_fd);
	free(u);
}

int sandbox_uid_lease_fd(const struct sandbox_uid *u)
{
	return u ? u->lease_fd : -1;
}

static uint64_t uid_count(const struct config *c)
{
	uint64_t n = c->sandbox_uid_count;

	return c->sandbox_uid_base + n > 0xffffffffULL ? 0xffffffffULL - c->sandbox_uid_base : n;
}

/*
 * The next uid whose lease we can take (util/uid_lease.h), searched from
 * where the last search stopped: a lease is taken by no one else, our own
 * workers and other mvmds' included (flock excludes every other open of
 * the file, in this process too), so no bitmap is needed and a start
 * costs one open and one flock while the range has room.
 */
static int uid_alloc(struct mvmd *d, struct sandbox_uid **ret, char *why, size_t whylen)
{
	uint64_t n = uid_count(&d->cfg), i, idx = 0;
	int dfd, fd = -EUSERS;

	if (n == 0)
		return -EUSERS;
	dfd = uid_lease_dir_open(d->cfg.sandbox_lease_dir, why, whylen);
	if (dfd < 0)
		return dfd;
	for (i = 0; i < n; i++) {
		idx = (d->sandbox_next + i) % n;
		fd = uid_lease_take(dfd, d->cfg.sandbox_uid_base + (uint32_t)idx);
		if (fd != -EWOULDBLOCK)
			break;
	}
	close(dfd);
	if (fd == -EWOULDBLOCK)
		return -EUSERS;
	if (fd < 0) {
		snprintf(why, whylen, "cannot take the lease on uid %u in %s: %s",
		         d->cfg.sandbox_uid_base + (uint32_t)idx, d->cfg.sandbox_lease_dir,
		         strerror(-fd));
		return fd;
	}
	d->sandbox_next = (uint32_t)((idx + 1) % n);
	*ret = uid_new(d, (uint32_t)idx, fd);
	if (!*ret) {
		close(fd);
		return -ENOMEM;
	}
	return 0;
}

static int dir_plan(const struct mvmd *d, const char *name, uid_t uid, gid_t gid, mode_t mode,
                    struct sandbox_dir_plan *p)
{
	p->uid = uid;
	p->gid = gid;
	p->mode = mode;
	return sandbox_dir(d, name, p->path, sizeof(p->path));  /* <run-dir>/vms/ is main.c's */
}

/* Made 0700 root's, so nobody else can enter it before it is handed
 * over, and removed again if that fails. */
int sandbox_dir_make(const struct sandbox_dir_plan *p)
{
	int r = 0;

	/* what a worker of this VM that died unseen left behind */
	remove_tree(p->path);
	if (mkdir(p->path, 0700) < 0)
		return -errno;
	if (chown(p->path, p->uid, p->gid) < 0 || chmod(p->path, p->mode) < 0) {
		r = -errno;
		rmdir(p->path);
	}
	return r;
}

int sandbox_vsock_path(const struct mvmd *d, const char *name, char *buf, size_t size)
{
	struct sockaddr_un sa;
	int n = snprintf(buf, size, "%s/vms/%s/vsock.sock", d->cfg.run_dir, name);

	/* + "_4294967295", the longest listener of a guest-initiated connection */
	if (n < 0 || (size_t)n >= size || (size_t)n + 11 >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

int sandbox_prepare(struct mvmd *d, const struct proto_vm *vm, struct sandbox_uid **ret_uid,
                    struct sandbox_dir_plan *plan, char *why, size_t whylen)
{
	struct sandbox_uid *u;
	uid_t id;
	int r;

	why[0] = '\0';
	r = uid_alloc(d, &u, why, whylen);
	if (r < 0)
		return r;
	id = sandbox_uid_id(d, u);
	/* With a vsock the owner makes its uds_PORT listeners here and the
	 * worker's gid only searches it; setgid, so a listener gets that
	 * group and 0660 lets the worker dial it.  The worker binds
	 * vsock.sock before its lockdown, as root. */
	if (vm->vsock_cid)
		r = dir_plan(d, vm->name, vm->owner_uid, id, 02710, plan);
	else
		r = dir_plan(d, vm->name, id, id, 0700, plan);
	if (r < 0) {
		sandbox_uid_release(d, u);
		return r;
	}
	*ret_uid = u;
	return 0;
}

int sandbox_vsock_dir(const struct mvmd *d, const struct proto_vm *vm,
                      struct sandbox_dir_plan *plan)
{
	/* a non-root mvmd serves only its own uid: the directory is its own */
	return dir_plan(d, vm->name, geteuid() == 0 ? vm->owner_uid : (uid_t)-1, (gid_t)-1, 0700,
	                plan);
}

/*
 * Its uid says which (0 before its lockdown or unsandboxed: none).  The
 * worker still holds its lease (the copy it inherited): taking it again
 * fails, and the uid stays ours until the worker ends.  If the lease is
 * free (a worker of an mvmd before leases), we take it now.
 */
struct sandbox_uid *sandbox_uid_of(struct mvmd *d, pid_t pid)
{
	const struct config *c = &d->cfg;
	long long uid = proc_uid(pid);
	char why[256];
	int dfd, fd = -1;

	if (uid < c->sandbox_uid_base || (uint64_t)(uid - c->sandbox_uid_base) >= uid_count(c))
		return NULL;
	dfd = uid_lease_dir_open(c->sandbox_lease_dir, why, sizeof(why));
	if (dfd < 0)
		log_warn("worker %d: %s", (int)pid, why);
	else if ((fd = uid_lease_take(dfd, (uint32_t)uid)) < 0)
		fd = -1;
	if (dfd >= 0)
		close(dfd);
	return uid_new(d, (uint32_t)(uid - c->sandbox_uid_base), fd);
}
