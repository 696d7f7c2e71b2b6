/* SPDX-License-Identifier: MIT */
#ifndef MVM_MEMORY_H
#define MVM_MEMORY_H

#include <stddef.h>
#include <stdint.h>

/*
 * Guest RAM is one anonymous host mapping of `size` bytes.  It appears to the
 * guest as up to two ranges: [0, low_size) below the 32-bit MMIO hole and
 * [HIGH_RAM_START, HIGH_RAM_START + size - low_size) above it.
 * Unit tests and fuzzers build one over a malloc'd buffer with
 * guest_mem_init_buffer(); the VMM maps it with guest_mem_alloc().
 */
struct guest_mem {
	uint8_t *host;      /* base of the host mapping */
	uint64_t size;      /* total bytes of guest RAM */
	uint64_t low_size;  /* bytes mapped at guest-physical 0 */
	int owned;          /* mapping made by guest_mem_alloc() */
};

int guest_mem_alloc(struct guest_mem *m, uint64_t size);
void guest_mem_init_buffer(struct guest_mem *m, void *buf, uint64_t size);
void guest_mem_free(struct guest_mem *m);

/* Host pointer for [gpa, gpa+len) if the whole range is RAM in one piece,
 * else NULL.  Safe against overflow: every guest-supplied range goes here. */
void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len);

/* Copy into / out of guest RAM; -EFAULT when the range is not all RAM. */
int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len);
int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len);

/*
 * Gives the whole guest pages inside the host range [p, p+len) back to the
 * host (MADV_DONTNEED: they read as zero and cost nothing until the guest
 * touches them again); a buffer from guest_mem_init_buffer() is zeroed
 * instead.  The range must lie inside the mapping (-EFAULT); partial pages
 * at either end are kept.  Returns the bytes discarded or -errno.
 */
#define GUEST_PAGE_SIZE 4096ULL
int64_t guest_mem_discard(const struct guest_mem *m, void *p, uint64_t len);

/* Highest guest-physical address + 1 of the low range (= low_size). */
static inline uint64_t guest_mem_low_end(const struct guest_mem *m) { return m->low_size; }

#endif
