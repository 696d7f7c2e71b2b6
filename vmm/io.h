/* SPDX-License-Identifier: MIT */
#ifndef MVM_IO_H
#define MVM_IO_H

#include <stdint.h>

/*
 * A bus of address ranges for port I/O or MMIO.  Devices plug in with an ops
 * table; `off` is relative to the range base and `len` is the access width
 * (1, 2, 4 or 8).  Ranges are registered before any vCPU runs and never
 * change afterwards, so lookups take no lock; each device locks itself.
 */
struct io_ops {
	void (*read)(void *opaque, uint64_t off, uint8_t *data, uint32_t len);
	void (*write)(void *opaque, uint64_t off, const uint8_t *data, uint32_t len);
};

struct io_range {
	uint64_t base, len;
	const struct io_ops *ops;
	void *opaque;
};

#define IO_BUS_MAX 48

struct io_bus {
	struct io_range ranges[IO_BUS_MAX];  /* sorted by base, never overlapping */
	unsigned n;
};

/* -EINVAL for an empty or wrapping range, -EEXIST if it overlaps one already
 * registered, -ENOSPC when the bus is full. */
int io_bus_register(struct io_bus *bus, uint64_t base, uint64_t len,
                    const struct io_ops *ops, void *opaque);

/* Dispatch one access.  -ENOENT when no range claims all of it: a read then
 * fills `data` with 0xff bytes (what an empty bus returns), a write is
 * dropped.  Accesses straddling the end of a range count as unclaimed. */
int io_bus_read(const struct io_bus *bus, uint64_t addr, uint8_t *data, uint32_t len);
int io_bus_write(const struct io_bus *bus, uint64_t addr, const uint8_t *data, uint32_t len);

#endif
