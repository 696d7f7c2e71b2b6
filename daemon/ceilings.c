/* SPDX-License-Identifier: MIT */
/*
 * Host ceilings (ceilings.h).  mvm uses no locked memory (RLIMIT_MEMLOCK)
 * and no inotify watches, so neither is a ceiling here.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>

#include "daemon/ceilings.h"

#define NOFILE_WANT ((rlim_t)1 << 20)   /* fds for ~350,000 VMs */

uint64_t ceiling_vms(uint64_t limit, uint64_t used, uint64_t per_vm, uint64_t running)
{
	uint64_t more;

	if (limit == CEIL_UNLIMITED || per_vm == 0)
		return CEIL_UNLIMITED;
	more = used >= limit ? 0 : (limit - used) / per_vm;
	return more > CEIL_UNLIMITED - 1 - running ? CEIL_UNLIMITED - 1 : running + more;
}

uint64_t ceiling_needed(uint64_t limit_now, uint64_t used, uint64_t per_vm,
                        uint64_t running, uint64_t want)
{
	uint64_t more, need;

	if (want <= running)
		return limit_now > used ? limit_now : used;
	more = want - running;
	if (per_vm && more > (CEIL_UNLIMITED - used) / per_vm)
		return CEIL_UNLIMITED;
	need = used + more * per_vm;
	return need > limit_now ? need : limit_now;
}

static const char *const names[CEIL_COUNT] = {
	[CEIL_NOFILE] = "RLIMIT_NOFILE",
	[CEIL_PID_MAX] = "kernel.pid_max",
	[CEIL_THREADS_MAX] = "kernel.threads-max",
	[CEIL_MAP_COUNT] = "vm.max_map_count",
};

void ceilings_compute(struct ceiling c[CEIL_COUNT], uint64_t running, unsigned vcpus,
                      uint64_t want)
{
	for (int i = 0; i < CEIL_COUNT; i++) {
		uint64_t need;

		c[i].name = names[i];
		/* vm.max_map_count bounds one process's mappings (a worker maps
		 * a few dozen), not the fleet */
		c[i].per_vm = i == CEIL_NOFILE ? CEIL_FDS_PER_VM :
		              i == CEIL_MAP_COUNT ? 0 : CEIL_TASKS_PER_VM(vcpus);
		c[i].vms = ceiling_vms(c[i].limit, c[i].used, c[i].per_vm, running);
		c[i].binding = c[i].vms < want;
		c[i].fix[0] = '\0';
		if (!c[i].binding)
			continue;
		need = ceiling_needed(c[i].limit, c[i].used, c[i].per_vm, running, want);
		switch (i) {
		case CEIL_NOFILE:
			snprintf(c[i].fix, sizeof(c[i].fix),
			         "raise mvmd's open-file limit to %" PRIu64 ": LimitNOFILE=%" PRIu64
			         " in mvmd.service (or ulimit -Hn before starting mvmd)", need, need);
			break;
		case CEIL_PID_MAX:
			if (need > CEIL_PID_MAX_LIMIT)
				snprintf(c[i].fix, sizeof(c[i].fix),
				         "sysctl -w kernel.pid_max=%d (the kernel's largest; "
				         "%" PRIu64 " VMs of %u vCPUs need %" PRIu64 ")",
				         CEIL_PID_MAX_LIMIT, want, vcpus, need);
			else
				snprintf(c[i].fix, sizeof(c[i].fix),
				         "sysctl -w kernel.pid_max=%" PRIu64, need);
			break;
		case CEIL_THREADS_MAX:
			snprintf(c[i].fix, sizeof(c[i].fix),
			         "sysctl -w kernel.threads-max=%" PRIu64, need);
			break;
		}
	}
}

static int read_u64(const char *path, uint64_t *v)
{
	FILE *f = fopen(path, "re");
	int ok;

	if (!f)
		return -errno;
	ok = fscanf(f, "%" SCNu64, v) == 1;
	fclose(f);
	return ok ? 0 : -EINVAL;
}

/* Open fds of this process: /proc/self/fd, one entry each. */
static int count_fds(uint64_t *n)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;

	if (!dir)
		return -errno;
	*n = 0;
	while ((e = readdir(dir)))
		if (e->d_name[0] != '.')
			(*n)++;
	closedir(dir);
	if (*n)
		(*n)--;                 /* the directory's own fd */
	return 0;
}

int ceilings_read(struct ceiling c[CEIL_COUNT], uint64_t running, unsigned vcpus,
                  uint64_t want)
{
	struct rlimit rl;
	struct sysinfo si;
	int r = 0, e;

	memset(c, 0, sizeof(*c) * CEIL_COUNT);
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		r = -errno;
	c[CEIL_NOFILE].limit = rl.rlim_cur == RLIM_INFINITY ? CEIL_UNLIMITED : rl.rlim_cur;
	if ((e = count_fds(&c[CEIL_NOFILE].used)) < 0 && !r)
		r = e;
	/* sysinfo's procs is the kernel's count of tasks (threads included):
	 * cheaper than reading /proc, and what pid_max and threads-max bound */
	if (sysinfo(&si) < 0 && !r)
		r = -errno;
	c[CEIL_PID_MAX].used = c[CEIL_THREADS_MAX].used = si.procs;
	if ((e = read_u64("/proc/sys/kernel/pid_max", &c[CEIL_PID_MAX].limit)) < 0 && !r)
		r = e;
	if ((e = read_u64("/proc/sys/kernel/threads-max", &c[CEIL_THREADS_MAX].limit)) < 0 && !r)
		r = e;
	if ((e = read_u64("/proc/sys/vm/max_map_count", &c[CEIL_MAP_COUNT].limit)) < 0 && !r)
		r = e;
	for (int i = 0; i < CEIL_COUNT; i++)
		if (c[i].limit == 0)
			c[i].limit = CEIL_UNLIMITED;   /* unread: not a known bound */
	ceilings_compute(c, running, vcpus, want);
	return r;
}

json_t *ceilings_json(const struct ceiling c[CEIL_COUNT])
{
	json_t *a = json_array();

	for (int i = 0; i < CEIL_COUNT; i++) {
		json_t *o = json_pack("{s:s, s:I, s:I, s:b, s:s?}",
			"name", c[i].name,
			"used", (json_int_t)c[i].used,
			"per_vm", (json_int_t)c[i].per_vm,
			"binding", c[i].binding,
			"fix", c[i].fix[0] ? c[i].fix : NULL);

		json_object_set_new(o, "limit", c[i].limit == CEIL_UNLIMITED ? json_null() :
		                    json_integer((json_int_t)c[i].limit));
		json_object_set_new(o, "vms", c[i].vms == CEIL_UNLIMITED ? json_null() :
		                    json_integer((json_int_t)c[i].vms));
		json_array_append_new(a, o);
	}
	return a;
}

void ceilings_raise_nofile(char *msg, size_t size)
{
	struct rlimit rl;
	uint64_t nr_open = 0;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		snprintf(msg, size, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		return;
	}
	/* 2 fds per VM: a hard limit of 20,000 (a shell's) stops a fleet at
	 * ~10,000 VMs.  With CAP_SYS_RESOURCE (root by hand; the unit sets
	 * LimitNOFILE instead) the hard limit goes up to the kernel's
	 * fs.nr_open, at most NOFILE_WANT. */
	if (read_u64("/proc/sys/fs/nr_open", &nr_open) == 0 && rl.rlim_max != RLIM_INFINITY) {
		rlim_t want = nr_open < NOFILE_WANT ? (rlim_t)nr_open : NOFILE_WANT;
		struct rlimit up = { want, want };

		if (want > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &up) == 0) {
			snprintf(msg, size, "open-file limit raised from %llu (hard %llu) to %llu",
			         (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
			         (unsigned long long)want);
			return;
		}
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t old = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			snprintf(msg, size, "open-file limit %llu; raising it to the hard "
			         "limit %llu failed: %s", (unsigned long long)old,
			         (unsigned long long)rl.rlim_max, strerror(errno));
			return;
		}
		snprintf(msg, size, "open-file limit raised from %llu to the hard limit %llu",
		         (unsigned long long)old, (unsigned long long)rl.rlim_max);
		return;
	}
	snprintf(msg, size, "open-file limit %llu (the hard limit)",
	         (unsigned long long)rl.rlim_cur);
}
