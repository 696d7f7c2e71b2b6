/* SPDX-License-Identifier: MIT */
#ifndef MVMTEST_SMP_H
#define MVMTEST_SMP_H

#include "lib.h"

uint32_t lapic_read(unsigned reg);
void lapic_write(unsigned reg, uint32_t v);
uint32_t lapic_id(void);
void lapic_enable(void);
void smp_run(void);

#endif
