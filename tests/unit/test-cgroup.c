/* SPDX-License-Identifier: MIT */
/*
 * Real per-VM cgroups under a unique test parent: the values written,
 * attaching real processes, the kernel's OOM kill inside the memory limit,
 * the CPU quota holding busy loops to it, the pids limit, and removal.
 * Needs root and writable memory, cpu and pids controllers (v1 or v2);
 * exits 77 naming what is missing otherwise.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cgroup.h"
#include "tests/unit/check.h"

#define MIB (UINT64_C(1) << 20)

static char err[1024];

static int read_at(const char *dir, const char *name, char *buf, size_t len)
{
	char path[4200];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* The file's first line must equal want. */
static void check_file(const char *dir, const char *name, const char *want)
{
	char got[256];

	if (read_at(dir, name, got, sizeof(got)) < 0 || strcmp(got, want)) {
		fprintf(stderr, "%s/%s: got '%s', want '%s'\n", dir, name, got, want);
		check_failures++;
	}
}

static bool gone(const char *dir)
{
	struct stat st;

	return stat(dir, &st) < 0 && errno == ENOENT;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A child that waits for a byte on a pipe, then runs fn. */
struct child {
	pid_t pid;
	int go;
};

static struct child spawn(void (*fn)(void))
{
	struct child c = { -1, -1 };
	int p[2];
	char b;

	if (pipe(p) < 0)
		return c;
	c.pid = fork();
	if (c.pid == 0) {
		close(p[1]);
		if (read(p[0], &b, 1) != 1)
			_exit(90);
		fn();
		_exit(0);
	}
	close(p[0]);
	c.go = p[1];
	return c;
}

static void release(struct child *c)
{
	if (write(c->go, "g", 1) != 1)
		check_failures++;
	close(c->go);
}

static void idle(void)
{
	pause();
}

static void spin(void)
{
	volatile uint64_t x = 0;

	for (;;)
		x++;
}

/* Touch 256 MiB with no swap allowed: the memory cgroup must kill us. */
static void hog(void)
{
	size_t len = 256 * MIB, off;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		_exit(91);
	for (off = 0; off < len; off += 4096)
		p[off] = 1;
	_exit(92);
}

/* Fork 10 idle children; exit with how many forks succeeded. */
static void forker(void)
{
	pid_t kids[10];
	int i, ok = 0;

	for (i = 0; i < 10; i++) {
		kids[i] = fork();
		if (kids[i] == 0)
			idle();
		if (kids[i] > 0)
			ok++;
	}
	for (i = 0; i < 10; i++)
		if (kids[i] > 0) {
			kill(kids[i], SIGKILL);
			waitpid(kids[i], NULL, 0);
		}
	_exit(ok);
}

static bool listed(const char *dir, pid_t pid)
{
	char path[4200], buf[4096], want[32], *p, *save;
	FILE *f;
	size_t n;

	snprintf(want, sizeof(want), "%d", (int)pid);
	snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	f = fopen(path, "re");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	for (p = strtok_r(buf, "\n", &save); p; p = strtok_r(NULL, "\n", &save))
		if (!strcmp(p, want))
			return true;
	return false;
}

/* ---- the tests ----------------------------------------------------------- */

static void test_unusable(void)
{
	char tmp[] = "/tmp/mvm-cg-XXXXXX";
	struct cgroup_opts o = { .root = tmp };
	struct cgroup cg;
	struct cgroup_vm *v = NULL;

	CHECK(mkdtemp(tmp) != NULL);
	CHECK_EQ(cgroup_init(&cg, &o), 0);
	CHECK(!cgroup_usable(&cg));
	CHECK(strstr(cgroup_reason(&cg), "memory: unusable (v2: no cgroup v2 hierarchy; v1: "));
	CHECK(strstr(cgroup_reason(&cg), "pids: unusable"));
	/* Everything else is a no-op that succeeds. */
	CHECK_EQ(cgroup_vm_create(&cg, "vm1", 64 * MIB, 1, 0, &v, err, sizeof(err)), 0);
	CHECK(v && !cgroup_vm_dir(v, CGROUP_MEMORY));
	CHECK_EQ(cgroup_vm_attach(v, getpid(), err, sizeof(err)), 0);
	CHECK_EQ(cgroup_vm_oom_killed(v), -EOPNOTSUPP);
	CHECK_EQ(cgroup_parent_set_budget(&cg, MIB, err, sizeof(err)), 0);
	CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), 0);
	o.parent = "../escape";
	CHECK_EQ(cgroup_init(&cg, &o), -EINVAL);
	rmdir(tmp);
}

static void test_values(const struct cgroup *cg)
{
	struct cgroup_vm *v = NULL;
	const char *m, *c, *p;
	bool v2;

	CHECK_EQ(cgroup_vm_create(cg, "../x", 64 * MIB, 1, 0, &v, err, sizeof(err)), -EINVAL);
	if (cgroup_vm_create(cg, "values", 64 * MIB, 2, 16, &v, err, sizeof(err))) {
		fprintf(stderr, "create: %s\n", err);
		check_failures++;
		return;
	}
	m = cgroup_vm_dir(v, CGROUP_MEMORY);
	c = cgroup_vm_dir(v, CGROUP_CPU);
	p = cgroup_vm_dir(v, CGROUP_PIDS);
	printf("values: memory %s, cpu %s, pids %s%s%s\n", m, c, p,
	       v->note[0] ? "; note: " : "", v->note);
	v2 = v->mode[CGROUP_MEMORY] == CGROUP_V2;
	check_file(m, v2 ? "memory.max" : "memory.limit_in_bytes", "67108864");
	if (!v->note[0])
		check_file(m, v2 ? "memory.swap.max" : "memory.memsw.limit_in_bytes",
		           v2 ? "0" : "67108864");
	if (v->mode[CGROUP_CPU] == CGROUP_V2) {
		check_file(c, "cpu.max", "200000 100000");
		check_file(c, "cpu.weight", "200");
	} else {
		check_file(c, "cpu.cfs_period_us", "100000");
		check_file(c, "cpu.cfs_quota_us", "200000");
		check_file(c, "cpu.shares", "2048");
	}
	check_file(p, "pids.max", "16");
	CHECK_EQ(cgroup_vm_oom_killed(v), 0);

	/* A re-adopted VM's handle finds the same directories. */
	struct cgroup_vm *again = NULL;
	CHECK_EQ(cgroup_vm_open(cg, "values", &again, err, sizeof(err)), 0);
	if (again) {
		CHECK(!strcmp(cgroup_vm_dir(again, CGROUP_MEMORY), m));
		cgroup_vm_close(again);
	}
	CHECK(cgroup_vm_open(cg, "nosuchvm", &again, err, sizeof(err)) == -ENOENT);

	char dirs[3][4200];
	snprintf(dirs[0], sizeof(dirs[0]), "%s", m);
	snprintf(dirs[1], sizeof(dirs[1]), "%s", c);
	snprintf(dirs[2], sizeof(dirs[2]), "%s", p);
	CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), 0);
	CHECK(gone(dirs[0]) && gone(dirs[1]) && gone(dirs[2]));
}

/*
 * Attach a real process.  Destroying the cgroup with it inside never kills
 * it (mvmd destroys a VM's cgroup only after its worker ended: anything
 * left is not its to kill) and says which pid holds it; creating the same
 * VM's cgroup again is refused while it is occupied, reused once empty.
 */
static void test_attach_and_leftovers(const struct cgroup *cg)
{
	struct cgroup_vm *v = NULL, *again = NULL;
	struct child ch = spawn(idle);
	char dir[4200], pid[32];
	int i, st = 0;

	CHECK(ch.pid > 0);
	CHECK_EQ(cgroup_vm_create(cg, "attach", 64 * MIB, 1, 0, &v, err, sizeof(err)), 0);
	if (!v)
		goto out;
	CHECK_EQ(cgroup_vm_attach(v, ch.pid, err, sizeof(err)), 0);
	for (i = 0; i < CGROUP_NCTRL; i++)
		CHECK(listed(cgroup_vm_dir(v, (enum cgroup_ctrl)i), ch.pid));
	check_file(cgroup_vm_dir(v, CGROUP_PIDS), "pids.current", "1");
	snprintf(dir, sizeof(dir), "%s", cgroup_vm_dir(v, CGROUP_MEMORY));
	snprintf(pid, sizeof(pid), "%d", (int)ch.pid);
	CHECK_EQ(cgroup_vm_create(cg, "attach", 64 * MIB, 1, 0, &again, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, pid) && strstr(err, "not a worker this mvmd started"));
	CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), -EBUSY);
	CHECK(strstr(err, pid) && strstr(err, "left in place"));
	CHECK(!gone(dir));
	CHECK_EQ(waitpid(ch.pid, &st, WNOHANG), 0);     /* still alive */
	kill(ch.pid, SIGKILL);
	CHECK_EQ(waitpid(ch.pid, &st, 0), ch.pid);
	close(ch.go);
	/* empty now: reused, then removed */
	CHECK_EQ(cgroup_vm_create(cg, "attach", 64 * MIB, 1, 0, &again, err, sizeof(err)), 0);
	CHECK_EQ(cgroup_vm_destroy(again, err, sizeof(err)), 0);
	CHECK(gone(dir));
	return;
out:
	kill(ch.pid, SIGKILL);
	waitpid(ch.pid, NULL, 0);
	close(ch.go);
}

/* VM names that are cgroup control files' names are directories like any
 * other (vm-<name>), beside the files. */
static void test_file_names(const struct cgroup *cg)
{
	static const char *const names[] = { "tasks", "cgroup.procs", "pids.max",
	                                     "memory.limit_in_bytes", "cgroup.kill" };
	struct cgroup_vm *v;
	char dir[4200];
	unsigned i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		v = NULL;
		if (cgroup_vm_create(cg, names[i], 64 * MIB, 1, 0, &v, err, sizeof(err)) != 0) {
			fprintf(stderr, "VM name %s: %s\n", names[i], err);
			check_failures++;
			continue;
		}
		snprintf(dir, sizeof(dir), "%s", cgroup_vm_dir(v, CGROUP_PIDS));
		check_file(dir, "pids.max", "64");
		CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), 0);
		CHECK(gone(dir));
	}
}

/* Two instances on one parent get two subtrees. */
static void test_instances(void)
{
	struct cgroup_opts o = { 0 };
	struct cgroup a, b;
	struct cgroup_vm *va = NULL, *vb = NULL;
	char parent[64], ia[32], ib[32], ia2[32];
	int i;

	cgroup_instance_id("/var/lib/mvm-a", ia, sizeof(ia));
	cgroup_instance_id("/var/lib/mvm-a", ia2, sizeof(ia2));
	cgroup_instance_id("/var/lib/mvm-b", ib, sizeof(ib));
	CHECK(!strcmp(ia, ia2) && strcmp(ia, ib) && strlen(ia) == 16);
	snprintf(parent, sizeof(parent), "/mvm-test-inst-%d", (int)getpid());
	o.parent = parent;
	o.instance = ia;
	CHECK_EQ(cgroup_init(&a, &o), 0);
	o.instance = ib;
	CHECK_EQ(cgroup_init(&b, &o), 0);
	CHECK_EQ(cgroup_vm_create(&a, "same", 64 * MIB, 1, 0, &va, err, sizeof(err)), 0);
	CHECK_EQ(cgroup_vm_create(&b, "same", 64 * MIB, 1, 0, &vb, err, sizeof(err)), 0);
	for (i = 0; va && vb && i < CGROUP_NCTRL; i++) {
		CHECK(strcmp(cgroup_vm_dir(va, (enum cgroup_ctrl)i), cgroup_vm_dir(vb, (enum cgroup_ctrl)i)));
		CHECK(strstr(cgroup_vm_dir(va, (enum cgroup_ctrl)i), ia) != NULL);
	}
	CHECK_EQ(cgroup_vm_destroy(va, err, sizeof(err)), 0);
	CHECK_EQ(cgroup_vm_destroy(vb, err, sizeof(err)), 0);
	/* b found the parent a made: b goes first, a takes the parent too */
	CHECK_EQ(cgroup_parent_remove(&b, err, sizeof(err)), 0);
	CHECK_EQ(cgroup_parent_remove(&a, err, sizeof(err)), 0);
	cgroup_free(&a);
	cgroup_free(&b);
	o.instance = "a/b";
	CHECK_EQ(cgroup_init(&a, &o), -EINVAL);
}

static void test_oom(const struct cgroup *cg)
{
	struct cgroup_vm *v = NULL;
	struct child ch;
	int st = 0;

	if (cgroup_vm_create(cg, "oom", 32 * MIB, 1, 0, &v, err, sizeof(err))) {
		fprintf(stderr, "create: %s\n", err);
		check_failures++;
		return;
	}
	ch = spawn(hog);
	CHECK_EQ(cgroup_vm_attach(v, ch.pid, err, sizeof(err)), 0);
	CHECK_EQ(cgroup_vm_oom_killed(v), 0);
	release(&ch);
	CHECK_EQ(waitpid(ch.pid, &st, 0), ch.pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) {
		fprintf(stderr, "oom: child status %#x, want SIGKILL (%s)\n", st, v->note);
		check_failures++;
	}
	CHECK_EQ(cgroup_vm_oom_killed(v), 1);
	CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), 0);
}

/* Run n spinners in v for about a second; return cores used. */
static double spin_cores(struct cgroup_vm *v, int n)
{
	struct child ch[4];
	struct rusage ru;
	struct timespec sec = { 1, 0 };
	double t0, wall, cpu = 0;
	int i;

	for (i = 0; i < n; i++) {
		ch[i] = spawn(spin);
		CHECK_EQ(cgroup_vm_attach(v, ch[i].pid, err, sizeof(err)), 0);
	}
	t0 = now_s();
	for (i = 0; i < n; i++)
		release(&ch[i]);
	nanosleep(&sec, NULL);
	for (i = 0; i < n; i++)
		kill(ch[i].pid, SIGKILL);
	wall = now_s() - t0;
	for (i = 0; i < n; i++) {
		CHECK_EQ(wait4(ch[i].pid, NULL, 0, &ru), ch[i].pid);
		cpu += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	}
	return cpu / wall;
}

static uint64_t throttled(const struct cgroup_vm *v)
{
	char path[4200], line[256];
	unsigned long long n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/cpu.stat", cgroup_vm_dir(v, CGROUP_CPU));
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "nr_throttled %llu", &n) == 1)
			break;
	fclose(f);
	return n;
}

static void test_cpu(const struct cgroup *cg)
{
	struct cgroup_vm *v = NULL;
	double cores;

	if (cgroup_vm_create(cg, "cpu", 64 * MIB, 1, 0, &v, err, sizeof(err))) {
		fprintf(stderr, "create: %s\n", err);
		check_failures++;
		return;
	}
	/* Two busy loops against a 1-vCPU quota: at most about one core. */
	cores = spin_cores(v, 2);
	printf("cpu: 2 spinners with 1 vCPU used %.2f cores\n", cores);
	CHECK(cores <= 1.15);
	/* Half a core makes the cap unmistakable even on a 1-CPU host. */
	CHECK_EQ(cgroup_vm_set_cpu(v, 500, err, sizeof(err)), 0);
	cores = spin_cores(v, 1);
	printf("cpu: 1 spinner with 0.5 CPU used %.2f cores\n", cores);
	CHECK(cores <= 0.65);
	CHECK(cores >= 0.05);
	/* Proof the quota, not a busy host, held it: unless other load kept the
	 * spinner under its quota, the scheduler must have throttled it. */
	if (cores >= 0.45)
		CHECK(throttled(v) > 0);
	CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), 0);
}

static void test_pids(const struct cgroup *cg)
{
	struct cgroup_vm *v = NULL;
	struct child ch;
	int st = 0;

	if (cgroup_vm_create(cg, "pids", 64 * MIB, 1, 4, &v, err, sizeof(err))) {
		fprintf(stderr, "create: %s\n", err);
		check_failures++;
		return;
	}
	ch = spawn(forker);
	CHECK_EQ(cgroup_vm_attach(v, ch.pid, err, sizeof(err)), 0);
	release(&ch);
	CHECK_EQ(waitpid(ch.pid, &st, 0), ch.pid);
	/* The forker itself is one of the 4. */
	CHECK(WIFEXITED(st));
	CHECK_EQ(WEXITSTATUS(st), 3);
	CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), 0);
}

static void test_budget(const struct cgroup *cg)
{
	const char *dir = cg->parent[CGROUP_MEMORY];
	bool v2 = cg->mode[CGROUP_MEMORY] == CGROUP_V2;
	const char *file = v2 ? "memory.max" : "memory.limit_in_bytes";
	char buf[64];

	CHECK_EQ(cgroup_parent_set_budget(cg, 1024 * MIB, err, sizeof(err)), 0);
	check_file(dir, file, "1073741824");
	CHECK_EQ(cgroup_parent_set_budget(cg, 0, err, sizeof(err)), 0);
	CHECK_EQ(read_at(dir, file, buf, sizeof(buf)), 0);
	CHECK(v2 ? !strcmp(buf, "max") : strtoull(buf, NULL, 10) > (UINT64_C(1) << 60));
}

/* The default kind of parent: relative, beneath our own cgroup. */
static void test_relative_parent(void)
{
	struct cgroup_opts o = { 0 };
	struct cgroup cg;
	char name[64], own[512], line[1024], *path;
	FILE *f;
	int i;

	snprintf(name, sizeof(name), "mvm-test-rel-%d", (int)getpid());
	o.parent = name;
	CHECK_EQ(cgroup_init(&cg, &o), 0);
	printf("relative: %s\n", cgroup_reason(&cg));
	for (i = 0; i < CGROUP_NCTRL; i++) {
		if (cg.mode[i] != CGROUP_V1)
			continue;
		/* Expect <root>/<ctrl><own path>/<name>. */
		own[0] = '\0';
		f = fopen("/proc/self/cgroup", "re");
		while (f && fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			path = strchr(strchr(line, ':') + 1, ':');
			*path++ = '\0';
			if (strstr(line, cgroup_ctrl_name((enum cgroup_ctrl)i)))
				snprintf(own, sizeof(own), "%s", strcmp(path, "/") ? path : "");
		}
		if (f)
			fclose(f);
		snprintf(line, sizeof(line), "/sys/fs/cgroup/%s%s/%s",
		         cgroup_ctrl_name((enum cgroup_ctrl)i), own, name);
		if (strcmp(cg.parent[i], line)) {
			fprintf(stderr, "relative parent: got %s, want %s\n", cg.parent[i], line);
			check_failures++;
		}
		CHECK(!gone(cg.parent[i]));
	}
	CHECK_EQ(cgroup_parent_remove(&cg, err, sizeof(err)), 0);
	for (i = 0; i < CGROUP_NCTRL; i++)
		CHECK(!cg.parent[i] || gone(cg.parent[i]));
	cgroup_free(&cg);
}

/* A fresh cgroup gets only the values that differ from the kernel's
 * defaults; an empty leftover with other values gets every one rewritten
 * (the 1-vCPU weight and the period included, which a fresh one skips). */
static void test_reused_values(const struct cgroup *cg)
{
	struct cgroup_vm *v = NULL;
	char c[4200];
	const char *m;
	bool v2c;

	if (cgroup_vm_create(cg, "reused", 64 * MIB, 1, 0, &v, err, sizeof(err))) {
		fprintf(stderr, "create: %s\n", err);
		check_failures++;
		return;
	}
	snprintf(c, sizeof(c), "%s", cgroup_vm_dir(v, CGROUP_CPU));
	v2c = v->mode[CGROUP_CPU] == CGROUP_V2;
	/* fresh, 1 vCPU: the default weight and period, the quota written */
	check_file(c, v2c ? "cpu.weight" : "cpu.shares", v2c ? "100" : "1024");
	if (v2c) {
		check_file(c, "cpu.max", "100000 100000");
	} else {
		check_file(c, "cpu.cfs_period_us", "100000");
		check_file(c, "cpu.cfs_quota_us", "100000");
	}
	cgroup_vm_close(v);     /* left behind, as by a crashed mvmd */
	v = NULL;
	/* the leftover with a larger VM's values */
	CHECK_EQ(cgroup_vm_open(cg, "reused", &v, err, sizeof(err)), 0);
	if (!v)
		return;
	CHECK_EQ(cgroup_vm_set_cpu(v, 3000, err, sizeof(err)), 0);
	cgroup_vm_close(v);
	v = NULL;
	if (cgroup_vm_create(cg, "reused", 128 * MIB, 4, 0, &v, err, sizeof(err))) {
		fprintf(stderr, "create 4: %s\n", err);
		check_failures++;
		return;
	}
	cgroup_vm_close(v);
	v = NULL;
	/* reused again for a 1-vCPU 64 MiB VM: each value back */
	if (cgroup_vm_create(cg, "reused", 64 * MIB, 1, 0, &v, err, sizeof(err))) {
		fprintf(stderr, "create again: %s\n", err);
		check_failures++;
		return;
	}
	m = cgroup_vm_dir(v, CGROUP_MEMORY);
	check_file(m, v->mode[CGROUP_MEMORY] == CGROUP_V2 ? "memory.max" : "memory.limit_in_bytes",
	           "67108864");
	if (!v->note[0] && v->mode[CGROUP_MEMORY] == CGROUP_V1)
		check_file(m, "memory.memsw.limit_in_bytes", "67108864");
	check_file(c, v2c ? "cpu.weight" : "cpu.shares", v2c ? "100" : "1024");
	if (v2c)
		check_file(c, "cpu.max", "100000 100000");
	else
		check_file(c, "cpu.cfs_quota_us", "100000");
	CHECK_EQ(cgroup_vm_destroy(v, err, sizeof(err)), 0);
}

/* favordynmods from /proc/self/mounts and /proc/cmdline text. */
static void test_dynmods(void)
{
	static const char plain[] =
		"proc /proc proc rw,relatime 0 0\n"
		"cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
		"cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
	static const char v1fav[] =
		"cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
		"cgroup /tmp/x cgroup rw,relatime,favordynmods,name=x 0 0\n";
	static const char v2fav[] =
		"cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate,favordynmods 0 0";
	/* the word elsewhere than in a cgroup mount's options */
	static const char other[] =
		"tmpfs /favordynmods tmpfs rw,favordynmods_not 0 0\n"
		"none /mnt ext4 rw,favordynmods 0 0\n"
		"cgroup /sys/fs/cgroup/cpu cgroup rw,xfavordynmods 0 0\n";

	CHECK(!cgroup_dynmods_favored(plain, "root=/dev/vda ro"));
	CHECK(cgroup_dynmods_favored(v1fav, ""));
	CHECK(cgroup_dynmods_favored(v2fav, NULL));
	CHECK(!cgroup_dynmods_favored(other, NULL));
	CHECK(!cgroup_dynmods_favored(NULL, NULL));
	CHECK(cgroup_dynmods_favored(plain, "ro cgroup_favordynmods=true quiet"));
	CHECK(cgroup_dynmods_favored(plain, "cgroup_favordynmods=1"));
	CHECK(cgroup_dynmods_favored(plain, "cgroup_favordynmods=on"));
	CHECK(!cgroup_dynmods_favored(plain, "cgroup_favordynmods=false"));
	CHECK(!cgroup_dynmods_favored(plain, "cgroup_favordynmods=0"));
	CHECK(!cgroup_dynmods_favored(plain, "xcgroup_favordynmods=1"));
}

int main(void)
{
	struct cgroup_opts o = { 0 };
	struct cgroup cg;
	char parent[64];
	int i;

	test_unusable();
	test_dynmods();
	if (geteuid() != 0) {
		fprintf(stderr, "test-cgroup: skipped: needs root to create cgroups\n");
		return check_failures ? 1 : 77;
	}
	/* Absolute, beneath each hierarchy's root: on v2 the root may hand
	 * controllers down although it holds processes. */
	snprintf(parent, sizeof(parent), "/mvm-test-%d", (int)getpid());
	o.parent = parent;
	CHECK_EQ(cgroup_init(&cg, &o), 0);
	printf("cgroups: %s\n", cgroup_reason(&cg));
	for (i = 0; i < CGROUP_NCTRL; i++)
		if (cg.mode[i] == CGROUP_NONE) {
			fprintf(stderr, "test-cgroup: skipped: %s\n", cgroup_reason(&cg));
			cgroup_parent_remove(&cg, err, sizeof(err));
			cgroup_free(&cg);
			return check_failures ? 1 : 77;
		}
	test_values(&cg);
	test_reused_values(&cg);
	test_attach_and_leftovers(&cg);
	test_file_names(&cg);
	test_instances();
	test_oom(&cg);
	test_cpu(&cg);
	test_pids(&cg);
	test_budget(&cg);
	test_relative_parent();
	CHECK_EQ(cgroup_parent_remove(&cg, err, sizeof(err)), 0);
	for (i = 0; i < CGROUP_NCTRL; i++)
		CHECK(gone(cg.parent[i]));
	cgroup_free(&cg);
	return check_result("test-cgroup");
}
