/* SPDX-License-Identifier: MIT */
/*
 * Ring-3 work.  User mode runs at native speed here while CPL0 is emulated,
 * so anything proportional to RAM or initrd size happens in ring 3.  The
 * functions named u_* run in ring 3: no port I/O, no privileged instructions.
 */
#include "user.h"

uint64_t user_call(uint64_t (*fn)(void *), void *arg, void *stack_top);

static uint8_t user_stack[USER_STACK_SIZE] __attribute__((aligned(16), section(".stack")));

uint64_t user_run(uint64_t (*fn)(void *), void *arg)
{
	return user_call(fn, arg, user_stack + sizeof(user_stack));
}

struct span { const uint8_t *p; uint64_t len; };

/* zlib's CRC-32: reflected, polynomial 0xedb88320, pre/post inverted. */
static uint64_t u_crc32(void *arg)
{
	const struct span *s = arg;
	uint32_t table[256], crc = 0xffffffff;

	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0xedb88320 : c >> 1;
		table[i] = c;
	}
	for (uint64_t i = 0; i < s->len; i++)
		crc = table[(crc ^ s->p[i]) & 0xff] ^ (crc >> 8);
	return crc ^ 0xffffffff;
}

uint64_t user_crc32(const void *p, uint64_t len)
{
	struct span s = { p, len };

	return user_run(u_crc32, &s);
}

static uint64_t u_touch(void *arg)
{
	const struct span *s = arg;
	volatile uint8_t *p = (volatile uint8_t *)s->p;

	for (uint64_t off = 0; off < s->len; off += 4096)
		p[off] = (uint8_t)(off >> 12);
	return 0;
}

void user_touch(uint64_t addr, uint64_t len)
{
	struct span s = { (const uint8_t *)addr, len };

	user_run(u_touch, &s);
}

struct pattern { uint8_t *p; uint64_t len, base, mul, add; };

/* Pattern byte for disk offset base + i: ((base + i) * mul + add) & 0xff. */
static uint64_t u_pattern_fill(void *arg)
{
	const struct pattern *t = arg;

	for (uint64_t i = 0; i < t->len; i++)
		t->p[i] = (uint8_t)((t->base + i) * t->mul + t->add);
	return 0;
}

static uint64_t u_pattern_check(void *arg)
{
	const struct pattern *t = arg;

	for (uint64_t i = 0; i < t->len; i++)
		if (t->p[i] != (uint8_t)((t->base + i) * t->mul + t->add))
			return i;
	return t->len;
}

void user_pattern_fill(void *p, uint64_t len, uint64_t base, uint64_t mul, uint64_t add)
{
	struct pattern t = { p, len, base, mul, add };

	user_run(u_pattern_fill, &t);
}

uint64_t user_pattern_check(const void *p, uint64_t len, uint64_t base, uint64_t mul, uint64_t add)
{
	struct pattern t = { (uint8_t *)p, len, base, mul, add };

	return user_run(u_pattern_check, &t);
}

/* mul = 0, add = c: a plain memset, at native speed. */
void user_memset(void *p, uint8_t c, uint64_t len)
{
	user_pattern_fill(p, len, 0, 0, c);
}

struct words { uint64_t *p; uint64_t len, seed; };

/* Fibonacci hashing plus a fold of the high bits into the low ones. */
static uint64_t word_at(uint64_t off, uint64_t seed)
{
	uint64_t v = (off + seed) * 0x9e3779b97f4a7c15UL;

	return v ^ (v >> 29);
}

static uint64_t u_fill64(void *arg)
{
	const struct words *w = arg;

	for (uint64_t i = 0; i < w->len / 8; i++)
		w->p[i] = word_at(i * 8, w->seed);
	return 0;
}

static uint64_t u_check64(void *arg)
{
	const struct words *w = arg;

	for (uint64_t i = 0; i < w->len / 8; i++)
		if (w->p[i] != word_at(i * 8, w->seed))
			return i * 8;
	return w->len;
}

void user_fill64(void *p, uint64_t len, uint64_t seed)
{
	struct words w = { p, len, seed };

	user_run(u_fill64, &w);
}

uint64_t user_check64(const void *p, uint64_t len, uint64_t seed)
{
	struct words w = { (uint64_t *)p, len, seed };

	return user_run(u_check64, &w);
}

/* The same two-instruction loop as kspeed, so the two can be compared. */
static uint64_t u_loop(void *arg)
{
	uint64_t n = *(const uint64_t *)arg;

	if (n)
		__asm__ volatile("1: dec %0; jnz 1b" : "+r"(n));
	return 0;
}

void user_loop(uint64_t iterations)
{
	user_run(u_loop, &iterations);
}

static uint64_t u_spin(void *arg)
{
	for (;;)
		__asm__ volatile("" ::: "memory");
	return 0;
}

noreturn void user_spin(void)
{
	user_run(u_spin, NULL);
	for (;;)
		__asm__ volatile("cli; hlt");
}
