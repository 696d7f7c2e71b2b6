/* SPDX-License-Identifier: MIT */
#ifndef MVMTEST_USER_H
#define MVMTEST_USER_H

#include "lib.h"

/* Runs fn(arg) in ring 3 (interrupts off) and returns its result. */
uint64_t user_run(uint64_t (*fn)(void *), void *arg);

uint64_t user_crc32(const void *p, uint64_t len);
void user_touch(uint64_t addr, uint64_t len);
/* Fills/checks byte i of p with ((base + i) * mul + add) & 0xff; the check
 * returns the first mismatching i, or len if all match. */
void user_pattern_fill(void *p, uint64_t len, uint64_t base, uint64_t mul, uint64_t add);
uint64_t user_pattern_check(const void *p, uint64_t len, uint64_t base, uint64_t mul, uint64_t add);
void user_memset(void *p, uint8_t c, uint64_t len);
/* Fills/checks 64-bit words: the word at byte offset o of p is a hash of
 * (o + seed), so a sector landing in the wrong place is caught too.  len is
 * a multiple of 8; the check returns the first bad offset, or len. */
void user_fill64(void *p, uint64_t len, uint64_t seed);
uint64_t user_check64(const void *p, uint64_t len, uint64_t seed);
void user_loop(uint64_t iterations);
noreturn void user_spin(void);

#endif
