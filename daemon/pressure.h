/* SPDX-License-Identifier: MIT */
/*
 * Host memory pressure for admission: Linux PSI (/proc/pressure/memory,
 * "some avg10", the share of the last 10 s in which some task stalled on
 * memory) and MemAvailable (/proc/meminfo).  A leaf: reads files, decides,
 * says why; admit.c refuses starts with it.
 */
#ifndef MVM_PRESSURE_H
#define MVM_PRESSURE_H

#include <stddef.h>
#include <stdint.h>

struct pressure_limits {
	double psi_some_avg10;          /* refuse above this percentage; 0: off */
	uint64_t mem_available_mib;     /* refuse below this; 0: off */
};

/* "some avg10=1.23 ..." of a PSI file into *ret (percent).  0 or -EINVAL. */
int pressure_parse_psi(const char *text, double *ret);
/* "MemAvailable: N kB" of /proc/meminfo into *ret_kib.  0 or -EINVAL. */
int pressure_parse_meminfo(const char *text, uint64_t *ret_kib);
/*
 * 1 when the host is under pressure by l, with msg naming the measure, its
 * value and the config key; 0 when not, or when a measure cannot be read
 * (a kernel without PSI: that check is skipped).  proc: NULL for "/proc"
 * (tests point it elsewhere).
 */
int pressure_check(const struct pressure_limits *l, const char *proc, char *msg, size_t size);

#endif
