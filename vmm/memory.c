/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/memory.h"
#include "vmm/arch/x86/layout.h"

static void split(struct guest_mem *m, uint64_t size)
{
	m->size = size;
	m->low_size = size < MMIO_HOLE_START ? size : MMIO_HOLE_START;
}

int guest_mem_alloc(struct guest_mem *m, uint64_t size)
{
	/* MAP_NORESERVE: guest RAM is overcommitted by design; pages are only
	 * charged (to the VM's cgroup) when the guest touches them. */
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	madvise(p, size, MADV_MERGEABLE);
	m->host = p;
	m->owned = 1;
	split(m, size);
	return 0;
}

void guest_mem_init_buffer(struct guest_mem *m, void *buf, uint64_t size)
{
	m->host = buf;
	m->owned = 0;
	split(m, size);
}

void guest_mem_free(struct guest_mem *m)
{
	if (m->owned && m->host)
		munmap(m->host, m->size);
	m->host = NULL;
	m->size = m->low_size = 0;
}

void *guest_mem_ptr(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	uint64_t off;

	if (gpa < m->low_size) {
		if (len > m->low_size - gpa)
			return NULL;
		return m->host + gpa;
	}
	if (gpa < HIGH_RAM_START)
		return NULL;
	off = gpa - HIGH_RAM_START;
	if (off >= m->size - m->low_size || len > m->size - m->low_size - off)
		return NULL;
	return m->host + m->low_size + off;
}

int guest_mem_write(const struct guest_mem *m, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	return 0;
}

int guest_mem_read(const struct guest_mem *m, uint64_t gpa, void *dst, uint64_t len)
{
	const void *p = guest_mem_ptr(m, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int64_t guest_mem_discard(const struct guest_mem *m, void *p, uint64_t len)
{
	uint64_t off = (uint64_t)((uint8_t *)p - m->host), start, end;

	if ((uint8_t *)p < m->host || off > m->size || len > m->size - off)
		return -EFAULT;
	/* guest-physical pages: offsets in the mapping are page-aligned
	 * exactly where guest addresses are */
	start = (off + GUEST_PAGE_SIZE - 1) & ~(GUEST_PAGE_SIZE - 1);
	end = (off + len) & ~(GUEST_PAGE_SIZE - 1);
	if (end <= start)
		return 0;
	if (!m->owned)
		memset(m->host + start, 0, end - start);
	else if (madvise(m->host + start, end - start, MADV_DONTNEED) < 0)
		return -errno;
	return (int64_t)(end - start);
}
