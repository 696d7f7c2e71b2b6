/* SPDX-License-Identifier: MIT */
/* Per-VM cgroups on v2 or v1, detected per controller; see cgroup.h. */
#include "daemon/cgroup.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_ROOT "/sys/fs/cgroup"
#define DEFAULT_PARENT "mvm"

static const char *const ctrl_names[CGROUP_NCTRL] = { "memory", "cpu", "pids" };

/* Append to a fixed buffer, truncating quietly. */
static void append(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void append(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

const char *cgroup_mode_name(enum cgroup_mode m)
{
	return m == CGROUP_V2 ? "v2" : m == CGROUP_V1 ? "v1" : "none";
}

const char *cgroup_ctrl_name(enum cgroup_ctrl c)
{
	return c < CGROUP_NCTRL ? ctrl_names[c] : "?";
}

/* ---- files ---------------------------------------------------------------- */

static int write_file(const char *dir, const char *name, const char *value)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	return util_write_file(path, value);
}

static int read_in(const char *dir, const char *name, char *buf, size_t len)
{
	char path[4096];

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
		return -ENAMETOOLONG;
	return util_read_file(path, buf, len);
}

static bool exists(const char *dir, const char *name)
{
	char path[4096];

	util_bprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* "key N" line of a flat-keyed file (memory.events, memory.oom_control). */
static int keyed_value(const char *text, const char *key, uint64_t *ret)
{
	size_t klen = strlen(key);
	const char *p = text;

	while (p && *p) {
		if (!strncmp(p, key, klen) && p[klen] == ' ') {
			*ret = strtoull(p + klen + 1, NULL, 10);
			return 0;
		}
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -ENOENT;
}

/* ---- where we are: /proc/self/cgroup ---------------------------------------- */

/* Our path in the v1 hierarchy holding ctrl, or in v2 when ctrl is "". */
static int own_path(const char *ctrl, char *buf, size_t len)
{
	char line[4096], *ctrls, *path, *tok, *save;
	FILE *f = fopen("/proc/self/cgroup", "re");
	int r = -ENOENT;

	if (!f)
		return -errno;
	while (r < 0 && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = '\0';
		ctrls = strchr(line, ':');
		path = ctrls ? strchr(ctrls + 1, ':') : NULL;
		if (!path)
			continue;
		*path++ = '\0';
		*ctrls++ = '\0';
		if (!*ctrl) {
			if (!strncmp(line, "0", 2) && !*ctrls)
				r = 0;
		} else {
			for (tok = strtok_r(ctrls, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
				if (!strcmp(tok, ctrl))
					r = 0;
		}
		if (r == 0)
			util_bprintf(buf, len, "%s", strcmp(path, "/") ? path : "");
	}
	fclose(f);
	return r;
}

static bool word_listed(const char *text, const char *word)
{
	size_t n = strlen(word);
	const char *p = text;

	while ((p = strstr(p, word))) {
		if ((p == text || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
			return true;
		p += n;
	}
	return false;
}

/* ---- building the parent ---------------------------------------------------- */

struct setup {
	const struct cgroup_opts *opts;
	enum cgroup_ctrl ctrl;
	enum cgroup_mode mode;
	char base[4096];        /* the hierarchy's mount */
	char own[4096];         /* our cgroup in it, "" for the root */
	char why[512];
};

static int v2_enable(struct setup *s, const char *dir);

/*
 * v2 forbids processes in a cgroup that hands controllers to children; if
 * we sit in the cgroup we start from (a systemd service), move its
 * processes into a "daemon" leaf first, as delegated managers do.
 */
static int v2_evacuate(struct setup *s, const char *dir)
{
	char leaf[4200], procs[8192], pid[32], *p, *end;
	int r;

	util_bprintf(leaf, sizeof(leaf), "%s/daemon", dir);
	if (mkdir(leaf, 0755) < 0 && errno != EEXIST)
		return -errno;
	r = read_in(dir, "cgroup.procs", procs, sizeof(procs));
	if (r < 0)
		return r;
	for (p = procs; *p; p = end) {
		strtol(p, &end, 10);
		if (end == p)
			break;
		util_bprintf(pid, sizeof(pid), "%.*s", (int)(end - p), p);
		r = write_file(leaf, "cgroup.procs", pid);
		if (r < 0 && r != -ESRCH)
			return r;
		while (*end == '\n')
			end++;
	}
	return 0;
}

static int v2_enable(struct setup *s, const char *dir)
{
	char val[32];
	int r;

	util_bprintf(val, sizeof(val), "+%s", ctrl_names[s->ctrl]);
	r = write_file(dir, "cgroup.subtree_control", val);
	if (r == -EBUSY && s->opts->move_to_leaf) {
		r = v2_evacuate(s, dir);
		if (r == 0)
			r = write_file(dir, "cgroup.subtree_control", val);
	}
	if (r < 0)
		util_bprintf(s->why, sizeof(s->why), "cannot enable it in %s/cgroup.subtree_control: %s",
		              dir, strerror(-r));
	return r;
}

/* mkdir -p from the starting cgroup down to the parent; on v2 enable the
 * controller at each level so the VMs' cgroups get it. */
static int build_parent(struct setup *s, const char *rel, struct cgroup *cg)
{
	char dir[4096], comp[4096], *tok, *save;
	unsigned made = 0;
	int r;

	util_bprintf(dir, sizeof(dir), "%s%s", s->base, rel[0] == '/' ? "" : s->own);
	util_bprintf(comp, sizeof(comp), "%s", rel);
	for (tok = strtok_r(comp, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (s->mode == CGROUP_V2 && (r = v2_enable(s, dir)) < 0)
			return r;
		append(dir, sizeof(dir), "/%s", tok);
		if (mkdir(dir, 0755) == 0) {
			made++;
		} else if (errno != EEXIST) {
			r = -errno;
			util_bprintf(s->why, sizeof(s->why), "mkdir %s: %s", dir, strerror(errno));
			return r;
		}
	}
	if (s->mode == CGROUP_V2 && (r = v2_enable(s, dir)) < 0)
		return r;
	if (access(dir, W_OK) < 0) {
		r = -errno;
		util_bprintf(s->why, sizeof(s->why), "%s not writable: %s", dir, strerror(errno));
		return r;
	}
	cg->parent[s->ctrl] = strdup(dir);
	if (!cg->parent[s->ctrl])
		return -ENOMEM;
	cg->created[s->ctrl] = made;
	cg->mode[s->ctrl] = s->mode;
	return 0;
}

static int try_v2(struct setup *s, const char *rel, struct cgroup *cg)
{
	const char *root = s->opts->root ? s->opts->root : DEFAULT_ROOT;
	char text[1024], start[4200];

	util_bprintf(s->base, sizeof(s->base), "%s", root);
	if (!exists(s->base, "cgroup.controllers"))
		util_bprintf(s->base, sizeof(s->base), "%s/unified", root);
	if (!exists(s->base, "cgroup.controllers")) {
		util_bprintf(s->why, sizeof(s->why), "no cgroup v2 hierarchy");
		return -ENOENT;
	}
	if (own_path("", s->own, sizeof(s->own)) < 0)
		s->own[0] = '\0';
	util_bprintf(start, sizeof(start), "%s%s", s->base, rel[0] == '/' ? "" : s->own);
	if (read_in(start, "cgroup.controllers", text, sizeof(text)) < 0 ||
	    !word_listed(text, ctrl_names[s->ctrl])) {
		util_bprintf(s->why, sizeof(s->why), "%s not in %s/cgroup.controllers",
		              ctrl_names[s->ctrl], start);
		return -ENOENT;
	}
	s->mode = CGROUP_V2;
	return build_parent(s, rel, cg);
}

static int try_v1(struct setup *s, const char *rel, struct cgroup *cg)
{
	const char *root = s->opts->root ? s->opts->root : DEFAULT_ROOT;

	util_bprintf(s->base, sizeof(s->base), "%s/%s", root, ctrl_names[s->ctrl]);
	if (!exists(s->base, "cgroup.procs") || exists(s->base, "cgroup.controllers")) {
		util_bprintf(s->why, sizeof(s->why), "%s not mounted", s->base);
		return -ENOENT;
	}
	if (own_path(ctrl_names[s->ctrl], s->own, sizeof(s->own)) < 0)
		s->own[0] = '\0';
	s->mode = CGROUP_V1;
	return build_parent(s, rel, cg);
}

static bool parent_valid(const char *p)
{
	const char *c;

	if (!*p || strstr(p, "//") || strspn(p, "/") == strlen(p))
		return false;
	for (c = p; *c; c++)
		if (*c == '.' && (c == p || c[-1] == '/') && (c[1] == '/' || !c[1] ||
		    (c[1] == '.' && (c[2] == '/' || !c[2]))))
			return false;
	return true;
}

void cgroup_instance_id(const char *key, char *buf, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;     /* FNV-1a, 64 bits */
	const unsigned char *p;

	for (p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	util_bprintf(buf, len, "%016" PRIx64, h);
}

static bool opt_listed(const char *opts, size_t len, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = opts, *end = opts + len; p < end; ) {
		const char *c = memchr(p, ',', (size_t)(end - p));
		size_t l = c ? (size_t)(c - p) : (size_t)(end - p);

		if (l == n && !memcmp(p, word, n))
			return true;
		p += l + 1;
	}
	return false;
}

bool cgroup_dynmods_favored(const char *mounts, const char *cmdline)
{
	const char *p, *line, *nl, *f[4];
	size_t flen[4];
	int i;

	for (line = mounts; line && *line; line = nl ? nl + 1 : NULL) {
		nl = strchr(line, '\n');
		/* device, mount point, type, options */
		for (i = 0, p = line; i < 4; i++) {
			p += strspn(p, " ");
			f[i] = p;
			flen[i] = strcspn(p, " \n");
			p += flen[i];
		}
		if (((flen[2] == 6 && !memcmp(f[2], "cgroup", 6)) ||
		     (flen[2] == 7 && !memcmp(f[2], "cgroup2", 7))) &&
		    opt_listed(f[3], flen[3], "favordynmods"))
			return true;
	}
	for (p = cmdline; p && (p = strstr(p, "cgroup_favordynmods=")); p++) {
		if (p != cmdline && p[-1] != ' ')
			continue;
		p += strlen("cgroup_favordynmods=");
		/* the kernel's kstrtobool */
		if (strchr("yYtT1", *p) || !strncasecmp(p, "on", 2))
			return true;
	}
	return false;
}

/* The whole of a small /proc file, NUL-terminated; NULL if unreadable. */
static char *slurp(const char *path)
{
	size_t cap = 4096, len = 0;
	ssize_t n;
	char *buf = malloc(cap), *nb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !buf)
		goto fail;
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len > 1)
			continue;
		if (cap >= (1u << 24) || !(nb = realloc(buf, cap * 2)))
			goto fail;
		buf = nb;
		cap *= 2;
	}
	close(fd);
	buf[len] = '\0';
	return buf;
fail:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

int cgroup_init(struct cgroup *cg, const struct cgroup_opts *opts)
{
	static const struct cgroup_opts dflt = { 0 };
	char v2why[512], relbuf[4096];
	const char *rel;
	struct setup s;
	int i, r;

	memset(cg, 0, sizeof(*cg));
	opts = opts ? opts : &dflt;
	rel = opts->parent ? opts->parent : DEFAULT_PARENT;
	if (!parent_valid(rel))
		return -EINVAL;
	if (opts->instance) {
		if (!*opts->instance || strchr(opts->instance, '/') ||
		    (size_t)snprintf(relbuf, sizeof(relbuf), "%s/mvm-%s", rel, opts->instance) >=
		    sizeof(relbuf))
			return -EINVAL;
		rel = relbuf;
	}
	for (i = 0; i < CGROUP_NCTRL; i++) {
		memset(&s, 0, sizeof(s));
		s.opts = opts;
		s.ctrl = (enum cgroup_ctrl)i;
		if (opts->no_v2) {
			r = -ENOENT;
			util_bprintf(s.why, sizeof(s.why), "not wanted");
		} else {
			r = try_v2(&s, rel, cg);
		}
		util_bprintf(v2why, sizeof(v2why), "%s", s.why);
		if (r < 0 && r != -ENOMEM)
			r = try_v1(&s, rel, cg);
		if (r == -ENOMEM) {
			cgroup_free(cg);
			return r;
		}
		if (r < 0)
			append(cg->reason, sizeof(cg->reason), "%s%s: unusable (v2: %s; v1: %s)",
			       i ? "; " : "", ctrl_names[i], v2why, s.why);
		else
			append(cg->reason, sizeof(cg->reason), "%s%s: %s at %s",
			       i ? "; " : "", ctrl_names[i], cgroup_mode_name(cg->mode[i]),
			       cg->parent[i]);
	}
	{
		char *mounts = slurp("/proc/self/mounts"), *cmdline = slurp("/proc/cmdline");

		cg->favordynmods = cgroup_dynmods_favored(mounts, cmdline);
		free(mounts);
		free(cmdline);
	}
	return 0;
}

void cgroup_free(struct cgroup *cg)
{
	int i;

	for (i = 0; i < CGROUP_NCTRL; i++) {
		free(cg->parent[i]);
		cg->parent[i] = NULL;
		cg->mode[i] = CGROUP_NONE;
	}
}

bool cgroup_usable(const struct cgroup *cg)
{
	int i;

	for (i = 0; i < CGROUP_NCTRL; i++)
		if (cg->mode[i] != CGROUP_NONE)
			return true;
	return false;
}

const char *cgroup_reason(const struct cgroup *cg)
{
	return cg->reason;
}

int cgroup_parent_set_budget(const struct cgroup *cg, uint64_t mem_bytes,
                             char *err, size_t errlen)
{
	const char *dir = cg->parent[CGROUP_MEMORY];
	char val[32];
	int r;

	if (!dir)
		return 0;
	if (cg->mode[CGROUP_MEMORY] == CGROUP_V2) {
		util_bprintf(val, sizeof(val), mem_bytes ? "%" PRIu64 : "max", mem_bytes);
		r = write_file(dir, "memory.max", val);
	} else {
		util_bprintf(val, sizeof(val), "%" PRId64, mem_bytes ? (int64_t)mem_bytes : -1);
		r = write_file(dir, "memory.limit_in_bytes", val);
	}
	if (r < 0)
		util_bprintf(err, errlen, "memory budget %s in %s: %s", val, dir, strerror(-r));
	return r;
}

int cgroup_parent_remove(struct cgroup *cg, char *err, size_t errlen)
{
	char dir[4096], *slash;
	int i, first = 0;
	unsigned k;

	for (i = 0; i < CGROUP_NCTRL; i++) {
		if (!cg->parent[i])
			continue;
		util_bprintf(dir, sizeof(dir), "%s", cg->parent[i]);
		for (k = 0; k < cg->created[i]; k++) {
			if (rmdir(dir) < 0 && errno != ENOENT && !first) {
				first = -errno;
				util_bprintf(err, errlen, "rmdir %s: %s", dir, strerror(errno));
			}
			slash = strrchr(dir, '/');
			if (!slash)
				break;
			*slash = '\0';
		}
		cg->created[i] = 0;
	}
	return first;
}

/* ---- per-VM cgroups -------------------------------------------------------- */

static bool vm_name_valid(const char *n)
{
	size_t len = strlen(n);

	if (len < 1 || len > 63 || n[0] == '.' || n[0] == '-' || n[0] == '_')
		return false;
	return strspn(n, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                 "0123456789_.-") == len;
}

static int vm_alloc(const struct cgroup *cg, const char *vm_name, struct cgroup_vm **ret,
                    char *err, size_t errlen)
{
	struct cgroup_vm *v;
	int i;

	if (!vm_name_valid(vm_name)) {
		util_bprintf(err, errlen, "cgroup: VM name '%s' is not a safe directory name", vm_name);
		return -EINVAL;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (i = 0; i < CGROUP_NCTRL; i++) {
		if (cg->mode[i] == CGROUP_NONE)
			continue;
		if (asprintf(&v->dir[i], "%s/vm-%s", cg->parent[i], vm_name) < 0) {
			v->dir[i] = NULL;
			cgroup_vm_destroy(v, NULL, 0);
			return -ENOMEM;
		}
		v->mode[i] = cg->mode[i];
	}
	*ret = v;
	return 0;
}

/* -EBUSY (err says which pids) if processes are in the cgroup at dir,
 * 0 if none, or -errno. */
static int occupied(const char *dir, char *err, size_t errlen)
{
	char procs[128];
	int r = read_in(dir, "cgroup.procs", procs, sizeof(procs));
	size_t n;

	if (r < 0)
		return r;
	n = strlen(procs);
	while (n && (procs[n - 1] == '\n' || procs[n - 1] == ' '))
		procs[--n] = '\0';
	if (!n)
		return 0;
	for (char *p = procs; *p; p++)
		if (*p == '\n')
			*p = ' ';
	util_bprintf(err, errlen, "cgroup %s already holds processes (pids %.40s%s), not a worker "
	             "this mvmd started: stop them or move them out, then retry", dir, procs,
	             n > 40 ? " ..." : "");
	return -EBUSY;
}

/* fresh: the directory was just made, so every file holds the kernel's
 * default (no limit, a 100 ms period, the default weight): only what
 * differs is written, since each write costs the start path. */
static int set_memory(struct cgroup_vm *v, uint64_t bytes, bool fresh, char *err, size_t errlen)
{
	const char *dir = v->dir[CGROUP_MEMORY];
	bool v2 = v->mode[CGROUP_MEMORY] == CGROUP_V2;
	char val[32];
	const char *file = v2 ? "memory.max" : "memory.limit_in_bytes";
	const char *swap = v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes";
	int r;

	util_bprintf(val, sizeof(val), "%" PRIu64, bytes);
	/* v1 wants memsw >= limit at every step: lift a reused cgroup's memsw
	 * first so a larger new limit is accepted. */
	if (!v2 && !fresh)
		write_file(dir, swap, "-1");
	r = write_file(dir, file, val);
	if (r == 0) {
		/* v2 counts swap apart (0 = none); v1 counts memory+swap (= the
		 * memory limit).  Without swap accounting there is no such file. */
		file = swap;
		r = write_file(dir, swap, v2 ? "0" : val);
		if (r == -ENOENT) {
			util_bprintf(v->note, sizeof(v->note), "%s missing (swap accounting off): "
			              "swap not limited", swap);
			r = 0;
		}
	}
	if (r < 0)
		util_bprintf(err, errlen, "memory (%s): writing %s to %s/%s: %s",
		            cgroup_mode_name(v->mode[CGROUP_MEMORY]), val, dir, file, strerror(-r));
	v->mem_bytes = bytes;
	return r;
}

static int set_quota(const struct cgroup_vm *v, uint64_t millicpus, bool fresh, char *err,
                     size_t errlen)
{
	const char *dir = v->dir[CGROUP_CPU];
	uint64_t quota = millicpus * CGROUP_CPU_PERIOD_US / 1000;
	char val[64];
	const char *file;
	int r;

	if (!dir)
		return 0;
	if (v->mode[CGROUP_CPU] == CGROUP_V2) {
		file = "cpu.max";
		if (millicpus)
			util_bprintf(val, sizeof(val), "%" PRIu64 " %d", quota, CGROUP_CPU_PERIOD_US);
		else
			util_bprintf(val, sizeof(val), "max %d", CGROUP_CPU_PERIOD_US);
		r = write_file(dir, file, val);
	} else {
		file = "cpu.cfs_period_us";
		util_bprintf(val, sizeof(val), "%d", CGROUP_CPU_PERIOD_US);
		r = fresh ? 0 : write_file(dir, file, val);
		if (r == 0) {
			file = "cpu.cfs_quota_us";
			util_bprintf(val, sizeof(val), "%" PRId64, millicpus ? (int64_t)quota : -1);
			r = write_file(dir, file, val);
		}
	}
	if (r < 0)
		util_bprintf(err, errlen, "cpu (%s): writing %s to %s/%s: %s",
		            cgroup_mode_name(v->mode[CGROUP_CPU]), val, dir, file, strerror(-r));
	return r;
}

int cgroup_vm_set_cpu(const struct cgroup_vm *v, uint64_t millicpus, char *err, size_t errlen)
{
	return set_quota(v, millicpus, false, err, errlen);
}

static int set_cpu(const struct cgroup_vm *v, unsigned vcpus, bool fresh, char *err,
                   size_t errlen)
{
	bool v2 = v->mode[CGROUP_CPU] == CGROUP_V2;
	const char *file = v2 ? "cpu.weight" : "cpu.shares";
	uint64_t weight = v2 ? 100 * (uint64_t)vcpus : 1024 * (uint64_t)vcpus;
	char val[32];
	int r;

	r = set_quota(v, (uint64_t)vcpus * 1000, fresh, err, errlen);
	if (r < 0)
		return r;
	/* Weights proportional to vCPUs, within each version's range. */
	if (v2 && weight > 10000)
		weight = 10000;
	if (!v2 && weight > 262144)
		weight = 262144;
	if (fresh && weight == (v2 ? 100 : 1024))
		return 0;
	util_bprintf(val, sizeof(val), "%" PRIu64, weight);
	r = write_file(v->dir[CGROUP_CPU], file, val);
	if (r < 0)
		util_bprintf(err, errlen, "cpu (%s): writing %s to %s/%s: %s",
		            cgroup_mode_name(v->mode[CGROUP_CPU]), val, v->dir[CGROUP_CPU], file,
		            strerror(-r));
	return r;
}

static int set_pids(const struct cgroup_vm *v, uint64_t pids_max, char *err, size_t errlen)
{
	char val[32];
	int r;

	util_bprintf(val, sizeof(val), "%" PRIu64, pids_max ? pids_max : CGROUP_DEFAULT_PIDS_MAX);
	r = write_file(v->dir[CGROUP_PIDS], "pids.max", val);
	if (r < 0)
		util_bprintf(err, errlen, "pids (%s): writing %s to %s/pids.max: %s",
		            cgroup_mode_name(v->mode[CGROUP_PIDS]), val, v->dir[CGROUP_PIDS],
		            strerror(-r));
	return r;
}

int cgroup_vm_create(const struct cgroup *cg, const char *vm_name, uint64_t mem_bytes,
                     unsigned vcpus, uint64_t pids_max, struct cgroup_vm **ret,
                     char *err, size_t errlen)
{
	bool fresh[CGROUP_NCTRL] = { false };
	struct cgroup_vm *v;
	int i, r;

	if (!vcpus || !mem_bytes) {
		util_bprintf(err, errlen, "cgroup: vcpus and memory must be at least 1");
		return -EINVAL;
	}
	r = vm_alloc(cg, vm_name, &v, err, errlen);
	if (r < 0)
		return r;
	/* An empty leftover of a crashed daemon is reused (rewritten below);
	 * one with processes in it is someone else's. */
	for (i = 0; i < CGROUP_NCTRL; i++) {
		if (!v->dir[i])
			continue;
		if (mkdir(v->dir[i], 0755) == 0) {
			fresh[i] = true;
			continue;
		}
		r = -errno;
		if (r == -EEXIST && (r = occupied(v->dir[i], err, errlen)) == 0)
			continue;
		if (r != -EBUSY)
			util_bprintf(err, errlen, "mkdir %s: %s", v->dir[i], strerror(-r));
		cgroup_vm_close(v);     /* not ours to remove */
		return r;
	}
	r = v->dir[CGROUP_MEMORY] ? set_memory(v, mem_bytes, fresh[CGROUP_MEMORY], err, errlen)
	                          : 0;
	if (r == 0 && v->dir[CGROUP_CPU])
		r = set_cpu(v, vcpus, fresh[CGROUP_CPU], err, errlen);
	if (r == 0 && v->dir[CGROUP_PIDS])
		r = set_pids(v, pids_max, err, errlen);
	if (r < 0)
		goto fail;
	*ret = v;
	return 0;
fail:
	cgroup_vm_destroy(v, NULL, 0);
	return r;
}

int cgroup_vm_open(const struct cgroup *cg, const char *vm_name, struct cgroup_vm **ret,
                   char *err, size_t errlen)
{
	struct cgroup_vm *v;
	int i, r;

	r = vm_alloc(cg, vm_name, &v, err, errlen);
	if (r < 0)
		return r;
	for (i = 0; i < CGROUP_NCTRL; i++)
		if (v->dir[i] && access(v->dir[i], F_OK) < 0) {
			r = -errno;
			util_bprintf(err, errlen, "%s: %s", v->dir[i], strerror(errno));
			cgroup_vm_close(v);
			return r;
		}
	*ret = v;
	return 0;
}

int cgroup_vm_attach(const struct cgroup_vm *v, pid_t pid, char *err, size_t errlen)
{
	char val[32];
	int i, r;

	util_bprintf(val, sizeof(val), "%d", (int)pid);
	for (i = 0; i < CGROUP_NCTRL; i++) {
		if (!v->dir[i])
			continue;
		/* cgroup.procs moves the whole process, on v1 as on v2. */
		r = write_file(v->dir[i], "cgroup.procs", val);
		if (r < 0) {
			util_bprintf(err, errlen, "attaching pid %s to %s: %s", val, v->dir[i], strerror(-r));
			return r;
		}
	}
	return 0;
}

int cgroup_vm_open_procs(const struct cgroup_vm *v, int *fds, const char **ret_dirs, int max,
                         char *err, size_t errlen)
{
	char path[4200];
	int i, k, n = 0;

	for (i = 0; i < CGROUP_NCTRL; i++) {
		if (!v->dir[i])
			continue;
		/* v2 names one directory for every controller: one write */
		for (k = 0; k < i && !(v->dir[k] && !strcmp(v->dir[k], v->dir[i])); k++)
			;
		if (k < i)
			continue;
		util_bprintf(path, sizeof(path), "%s/cgroup.procs", v->dir[i]);
		if (n == max || (fds[n] = open(path, O_WRONLY | O_CLOEXEC)) < 0) {
			int r = n == max ? -E2BIG : -errno;

			util_bprintf(err, errlen, "opening %s: %s", path, strerror(-r));
			while (n > 0)
				close(fds[--n]);
			return r;
		}
		ret_dirs[n++] = v->dir[i];
	}
	return n;
}

int cgroup_vm_oom_killed(const struct cgroup_vm *v)
{
	const char *dir = v->dir[CGROUP_MEMORY];
	char text[1024];
	uint64_t n;
	int r;

	if (!dir)
		return -EOPNOTSUPP;
	r = read_in(dir, v->mode[CGROUP_MEMORY] == CGROUP_V2 ? "memory.events"
	                                                     : "memory.oom_control",
	            text, sizeof(text));
	if (r < 0)
		return r;
	if (keyed_value(text, "oom_kill", &n) == 0)
		return n > 0;
	/* Kernels before 4.13 lack the v1 counter: the limit was hit at least. */
	r = read_in(dir, "memory.failcnt", text, sizeof(text));
	if (r < 0)
		return r;
	return strtoull(text, NULL, 10) > 0;
}

/* One number from a file of its own; "max" (v2, no limit) reads as 0. */
static int read_u64(const char *dir, const char *name, uint64_t *ret)
{
	char text[64];
	int r = read_in(dir, name, text, sizeof(text));

	if (r < 0)
		return r;
	*ret = strncmp(text, "max", 3) ? strtoull(text, NULL, 10) : 0;
	return 0;
}

int cgroup_vm_read_stats(const struct cgroup_vm *v, struct cgroup_vm_stats *ret)
{
	const char *mem = v->dir[CGROUP_MEMORY], *cpu = v->dir[CGROUP_CPU];
	char text[1024];
	uint64_t n;

	memset(ret, 0, sizeof(*ret));
	if (mem && v->mode[CGROUP_MEMORY] == CGROUP_V2)
		ret->has_mem = read_u64(mem, "memory.current", &ret->mem_bytes) == 0 &&
		               read_u64(mem, "memory.max", &ret->mem_limit_bytes) == 0;
	else if (mem)
		ret->has_mem = read_u64(mem, "memory.usage_in_bytes", &ret->mem_bytes) == 0 &&
		               read_u64(mem, "memory.limit_in_bytes", &ret->mem_limit_bytes) == 0;
	if (!cpu || read_in(cpu, "cpu.stat", text, sizeof(text)) < 0)
		return 0;
	if (v->mode[CGROUP_CPU] == CGROUP_V2) {
		ret->has_cpu = keyed_value(text, "usage_usec", &n) == 0;
		ret->cpu_ns = n * 1000;
		if (keyed_value(text, "throttled_usec", &n) == 0)
			ret->throttled_ns = n * 1000;
	} else {
		/* usage is cpuacct's: co-mounted with cpu on most systems */
		ret->has_cpu = read_u64(cpu, "cpuacct.usage", &ret->cpu_ns) == 0;
		if (keyed_value(text, "throttled_time", &n) == 0)
			ret->throttled_ns = n;
	}
	return 0;
}

const char *cgroup_vm_dir(const struct cgroup_vm *v, enum cgroup_ctrl c)
{
	return c < CGROUP_NCTRL ? v->dir[c] : NULL;
}

static int remove_dir(const char *dir)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };
	int tries;

	for (tries = 0; tries < 100; tries++) {
		if (rmdir(dir) == 0 || errno == ENOENT)
			return 0;
		if (errno != EBUSY)
			return -errno;
		nanosleep(&ts, NULL);
	}
	return -EBUSY;
}

int cgroup_vm_destroy(struct cgroup_vm *v, char *err, size_t errlen)
{
	char why[512];
	int i, r, first = 0;

	if (!v)
		return 0;
	for (i = CGROUP_NCTRL - 1; i >= 0; i--) {
		if (!v->dir[i])
			continue;
		r = remove_dir(v->dir[i]);
		if (r < 0 && !first) {
			first = r;
			if (r == -EBUSY && occupied(v->dir[i], why, sizeof(why)) == -EBUSY)
				util_bprintf(err, errlen, "%s; left in place", why);
			else
				util_bprintf(err, errlen, "removing %s: %s", v->dir[i], strerror(-r));
		}
		free(v->dir[i]);
	}
	free(v);
	return first;
}

void cgroup_vm_close(struct cgroup_vm *v)
{
	int i;

	if (!v)
		return;
	for (i = 0; i < CGROUP_NCTRL; i++)
		free(v->dir[i]);
	free(v);
}
