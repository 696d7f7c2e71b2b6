/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "vmm/io.h"

/* Index of the last range with base <= addr, or -1. */
static int find_le(const struct io_bus *bus, uint64_t addr)
{
	int lo = 0, hi = (int)bus->n - 1, found = -1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;

		if (bus->ranges[mid].base <= addr) {
			found = mid;
			lo = mid + 1;
		} else {
			hi = mid - 1;
		}
	}
	return found;
}

int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len,
                    const struct io_ops *ops, void *opaque)
{
	int i;

	if (len == 0 || base + len - 1 < base || !ops)
		return -EINVAL;
	if (bus->n == IO_BUS_MAX)
		return -ENOSPC;
	i = find_le(bus, base + len - 1);
	/* The only candidate for overlap is the last range starting at or
	 * before our end; ranges are disjoint so earlier ones end before it. */
	if (i >= 0 && bus->ranges[i].base + bus->ranges[i].len - 1 >= base)
		return -EEXIST;
	i++;
	memmove(&bus->ranges[i + 1], &bus->ranges[i],
	        (bus->n - (unsigned)i) * sizeof(bus->ranges[0]));
	bus->ranges[i] = (struct io_range){ base, len, ops, opaque };
	bus->n++;
	return 0;
}

static const struct io_range *lookup(const struct io_bus *bus, uint64_t addr, uint32_t len)
{
	int i = find_le(bus, addr);
	const struct io_range *r;

	if (i < 0 || len == 0)
		return NULL;
	r = &bus->ranges[i];
	/* Written to avoid overflow: guest-controlled addr and len. */
	if (addr - r->base >= r->len || len > r->len - (addr - r->base))
		return NULL;
	return r;
}

int io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len)
{
	const struct io_range *r = lookup(bus, addr, len);

	memset(data, 0xff, len);
	if (!r)
		return -ENOENT;
	if (r->ops->read)
		r->ops->read(r->opaque, addr - r->base, data, len);
	return 0;
}

int io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, uint32_t len)
{
	const struct io_range *r = lookup(bus, addr, len);

	if (!r)
		return -ENOENT;
	if (r->ops->write)
		r->ops->write(r->opaque, addr - r->base, data, len);
	return 0;
}
