/* SPDX-License-Identifier: MIT */
/*
 * Host memory pressure for admission: Linux PSI (/proc/pressure/memory,
 * "some avg10", the share of the last 10 s in which some task stalled on
 * memory) and MemAvailable (/proc/meminfo).  A leaf: reads files, decides,
 * says why; admit.c refuses starts with it.
 */
#ifndef MVM_PRESSURE_H
#define MVM_PRESSURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct pressure_limits {
	double psi_some_avg10;          /* refuse above this percentage; 0: off */
	uint64_t mem_available_mib;     /* refuse below this; 0: off */
	/* reclaim through balloons (reclaim.c) above / below these; 0: off */
	double reclaim_psi_some_avg10;
	uint64_t reclaim_mem_available_mib;
	double reclaim_interval;        /* seconds between looks; 0: off */
	uint64_t reclaim_step_mib;      /* taken from (given to) one VM a look */
	uint64_t reclaim_min_guest_mib; /* a guest keeps at least this */
};

#define PRESSURE_RECLAIM_PSI        10.0
#define PRESSURE_RECLAIM_AVAIL_MIB  256
#define PRESSURE_RECLAIM_INTERVAL   5.0
#define PRESSURE_RECLAIM_STEP_MIB   64
#define PRESSURE_RECLAIM_MIN_MIB    64

/* The reclaim defaults into l (admission's checks stay off); inline so
 * config.c needs nothing else of pressure.c. */
static inline void pressure_limits_init(struct pressure_limits *l)
{
	*l = (struct pressure_limits){
		.reclaim_psi_some_avg10 = PRESSURE_RECLAIM_PSI,
		.reclaim_mem_available_mib = PRESSURE_RECLAIM_AVAIL_MIB,
		.reclaim_interval = PRESSURE_RECLAIM_INTERVAL,
		.reclaim_step_mib = PRESSURE_RECLAIM_STEP_MIB,
		.reclaim_min_guest_mib = PRESSURE_RECLAIM_MIN_MIB,
	};
}
bool pressure_reclaim_enabled(const struct pressure_limits *l);

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
/* The same for the reclaim thresholds (reclaim_memory_psi and
 * reclaim_mem_available_mib). */
int pressure_reclaim_check(const struct pressure_limits *l, const char *proc, char *msg,
                           size_t size);

#endif
