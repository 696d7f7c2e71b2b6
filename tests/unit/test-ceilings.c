/* SPDX-License-Identifier: MIT */
/*
 * Host ceilings' arithmetic (daemon/ceilings.c): the VMs a limit allows,
 * the limit a VM count needs, saturation at the edges, which ceilings
 * bind and the fix each names; then one read of this host's real values.
 */
#include <string.h>

#include "daemon/ceilings.h"
#include "tests/unit/check.h"

static void test_vms(void)
{
	/* 1024 fds, 24 in use, 3 per VM: 333 more; with 10 running, 343 */
	CHECK_EQ(ceiling_vms(1024, 24, 3, 0), 333);
	CHECK_EQ(ceiling_vms(1024, 24, 3, 10), 343);
	/* used past the limit: only the running ones */
	CHECK_EQ(ceiling_vms(100, 150, 3, 7), 7);
	CHECK_EQ(ceiling_vms(100, 100, 3, 7), 7);
	/* no limit, or not per VM: unbounded */
	CHECK(ceiling_vms(CEIL_UNLIMITED, 5, 3, 0) == CEIL_UNLIMITED);
	CHECK(ceiling_vms(65530, 5, 0, 0) == CEIL_UNLIMITED);
	/* a huge limit saturates below "unlimited" instead of wrapping */
	CHECK(ceiling_vms(CEIL_UNLIMITED - 1, 0, 1, CEIL_UNLIMITED - 1) == CEIL_UNLIMITED - 1);
}

static void test_needed(void)
{
	/* 20,000 more 1-vCPU VMs at 3 tasks each on top of 500 tasks */
	CHECK_EQ(ceiling_needed(32768, 500, 3, 0, 20000), 60500);
	CHECK_EQ(ceiling_needed(32768, 500, 3, 5000, 20000), 45500);
	/* never suggests lowering a limit */
	CHECK_EQ(ceiling_needed(32768, 500, 3, 0, 100), 32768);
	CHECK_EQ(ceiling_needed(32768, 500, 3, 200, 100), 32768);
	/* overflow saturates */
	CHECK(ceiling_needed(10, 10, UINT64_MAX / 2, 0, 3) == CEIL_UNLIMITED);
}

static void test_compute(void)
{
	struct ceiling c[CEIL_COUNT];
	char want[64];

	memset(c, 0, sizeof(c));
	c[CEIL_NOFILE].limit = 1024;
	c[CEIL_NOFILE].used = 24;
	c[CEIL_PID_MAX].limit = 32768;
	c[CEIL_PID_MAX].used = 300;
	c[CEIL_THREADS_MAX].limit = 190000;
	c[CEIL_THREADS_MAX].used = 300;
	c[CEIL_MAP_COUNT].limit = 65530;
	ceilings_compute(c, 0, 1, 12000);

	CHECK(!strcmp(c[CEIL_NOFILE].name, "RLIMIT_NOFILE"));
	CHECK_EQ(c[CEIL_NOFILE].per_vm, CEIL_FDS_PER_VM);
	CHECK_EQ(c[CEIL_NOFILE].vms, (1024 - 24) / CEIL_FDS_PER_VM);
	CHECK(c[CEIL_NOFILE].binding);
	/* 12,000 VMs' fds and the 24 in use */
	snprintf(want, sizeof(want), "LimitNOFILE=%d", 12000 * CEIL_FDS_PER_VM + 24);
	CHECK(strstr(c[CEIL_NOFILE].fix, want) != NULL);

	CHECK_EQ(c[CEIL_PID_MAX].per_vm, CEIL_TASKS_PER_VM(1));
	CHECK_EQ(c[CEIL_PID_MAX].vms, (32768 - 300) / CEIL_TASKS_PER_VM(1));
	CHECK(c[CEIL_PID_MAX].binding);
	CHECK(strstr(c[CEIL_PID_MAX].fix, "sysctl -w kernel.pid_max=48300") != NULL);

	/* 190,000 threads allow 47,425 VMs: not binding, no fix */
	CHECK_EQ(c[CEIL_THREADS_MAX].vms, (190000 - 300) / 4);
	CHECK(!c[CEIL_THREADS_MAX].binding);
	CHECK_EQ(c[CEIL_THREADS_MAX].fix[0], '\0');

	/* per process, not per fleet */
	CHECK(c[CEIL_MAP_COUNT].vms == CEIL_UNLIMITED);
	CHECK(!c[CEIL_MAP_COUNT].binding);

	/* more vCPUs, more tasks; pid_max beyond the kernel's largest */
	ceilings_compute(c, 0, 4, 1000000);
	CHECK_EQ(c[CEIL_PID_MAX].per_vm, 7);
	CHECK(strstr(c[CEIL_PID_MAX].fix, "kernel.pid_max=4194304 (the kernel's largest") != NULL);
}

static void test_read(void)
{
	struct ceiling c[CEIL_COUNT];

	/* this host: every value readable, mvmd-like usage */
	CHECK_EQ(ceilings_read(c, 0, 1, 1), 0);
	CHECK(c[CEIL_NOFILE].used >= 3);        /* stdin, stdout, stderr at least */
	CHECK(c[CEIL_PID_MAX].limit > 0 && c[CEIL_PID_MAX].used > 0);
	CHECK(c[CEIL_THREADS_MAX].used == c[CEIL_PID_MAX].used);
}

int main(void)
{
	char msg[160];

	test_vms();
	test_needed();
	test_compute();
	test_read();
	ceilings_raise_nofile(msg, sizeof(msg));
	CHECK(strstr(msg, "open-file limit") != NULL);
	return check_result("test-ceilings");
}
