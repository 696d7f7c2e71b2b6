/* SPDX-License-Identifier: MIT */
/* Host memory pressure for admission (pressure.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/pressure.h"
#include "util/util.h"

int pressure_parse_psi(const char *text, double *ret)
{
	const char *p = strstr(text, "some ");
	char *end;

	if (!p || !(p = strstr(p, "avg10=")))
		return -EINVAL;
	*ret = strtod(p + 6, &end);
	return end == p + 6 || !(*ret >= 0 && *ret <= 100) ? -EINVAL : 0;
}

int pressure_parse_meminfo(const char *text, uint64_t *ret_kib)
{
	const char *p = strstr(text, "MemAvailable:");
	char *end;

	if (!p)
		return -EINVAL;
	*ret_kib = strtoull(p + 13, &end, 10);
	return end == p + 13 ? -EINVAL : 0;
}

static int read_proc(const char *proc, const char *name, char *buf, size_t size)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", proc ? proc : "/proc", name);
	return util_read_file(path, buf, size);
}

bool pressure_reclaim_enabled(const struct pressure_limits *l)
{
	return (l->reclaim_psi_some_avg10 > 0 || l->reclaim_mem_available_mib) &&
	       l->reclaim_interval > 0 && l->reclaim_step_mib;
}

/* Pressure by either measure, above psi_max or below avail_min (0: not
 * checked); msg names the measure, the key and the advice for it. */
static int check(double psi_max, uint64_t avail_min, const char *psi_key,
                 const char *avail_key, const char *psi_advice, const char *avail_advice,
                 const char *proc, char *msg, size_t size)
{
	char text[4096];
	uint64_t kib;
	double avg10;

	if (psi_max > 0 && read_proc(proc, "pressure/memory", text, sizeof(text)) >= 0 &&
	    pressure_parse_psi(text, &avg10) == 0 && avg10 > psi_max) {
		snprintf(msg, size, "host memory pressure: PSI memory some avg10 is %.2f%%, above "
		         "%s %.2f%%%s", avg10, psi_key, psi_max, psi_advice);
		return 1;
	}
	if (avail_min && read_proc(proc, "meminfo", text, sizeof(text)) >= 0 &&
	    pressure_parse_meminfo(text, &kib) == 0 && kib / 1024 < avail_min) {
		snprintf(msg, size, "host memory pressure: MemAvailable is %llu MiB, below "
		         "%s %llu MiB%s", (unsigned long long)(kib / 1024), avail_key,
		         (unsigned long long)avail_min, avail_advice);
		return 1;
	}
	return 0;
}

int pressure_check(const struct pressure_limits *l, const char *proc, char *msg, size_t size)
{
	return check(l->psi_some_avg10, l->mem_available_mib, "admit_memory_psi",
	             "admit_mem_available_mib", "; retry when it eases",
	             "; retry when memory is freed", proc, msg, size);
}

int pressure_reclaim_check(const struct pressure_limits *l, const char *proc, char *msg,
                           size_t size)
{
	return check(l->reclaim_psi_some_avg10, l->reclaim_mem_available_mib,
	             "reclaim_memory_psi", "reclaim_mem_available_mib", "", "", proc, msg, size);
}
