/* SPDX-License-Identifier: MIT */
#ifndef MVMTEST_USER_H
#define MVMTEST_USER_H

#include "lib.h"

/* Runs fn(arg) in ring 3 (interrupts off) and returns its result. */
uint64_t user_run(uint64_t (*fn)(void *), void *arg);

uint64_t user_crc32(const void *p, uint64_t len);
void user_touch(uint64_t addr, uint64_t len);
void user_loop(uint64_t iterations);
noreturn void user_spin(void);

#endif
