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

int pressure_check(const struct pressure_limits *l, const char *proc, char *msg, size_t size)
{
	char text[4096];
	uint64_t kib;
	double avg10;

	if (l->psi_some_avg10 > 0 && read_proc(proc, "pressure/memory", text, sizeof(text)) >= 0 &&
	    pressure_parse_psi(text, &avg10) == 0 && avg10 > l->psi_some_avg10) {
		snprintf(msg, size, "host memory pressure: PSI memory some avg10 is %.2f%%, above "
		         "admit_memory_psi %.2f%%; retry when it eases", avg10, l->psi_some_avg10);
		return 1;
	}
	if (l->mem_available_mib && read_proc(proc, "meminfo", text, sizeof(text)) >= 0 &&
	    pressure_parse_meminfo(text, &kib) == 0 && kib / 1024 < l->mem_available_mib) {
		snprintf(msg, size, "host memory pressure: MemAvailable is %llu MiB, below "
		         "admit_mem_available_mib %llu MiB; retry when memory is freed",
		         (unsigned long long)(kib / 1024), (unsigned long long)l->mem_available_mib);
		return 1;
	}
	return 0;
}
