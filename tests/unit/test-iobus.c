/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "vmm/io.h"

struct dev {
	uint64_t last_off;
	uint32_t last_len;
	int reads, writes;
	uint8_t last_write;
};

static void dev_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct dev *d = opaque;

	d->reads++;
	d->last_off = off;
	d->last_len = len;
	memset(data, 0x5a, len);
}

static void dev_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct dev *d = opaque;

	d->writes++;
	d->last_off = off;
	d->last_len = len;
	d->last_write = data[0];
}

static const struct io_ops ops = { dev_read, dev_write };

static void test_register(void)
{
	static struct io_bus bus;
	struct dev d = { 0 };
	unsigned i;

	CHECK_EQ(io_bus_register(&bus, 0x100, 0x10, &ops, &d), 0);
	CHECK_EQ(io_bus_register(&bus, 0x100, 0x10, &ops, &d), -EEXIST);
	CHECK_EQ(io_bus_register(&bus, 0xf8, 0x9, &ops, &d), -EEXIST);   /* tail overlaps */
	CHECK_EQ(io_bus_register(&bus, 0x10f, 1, &ops, &d), -EEXIST);    /* last byte */
	CHECK_EQ(io_bus_register(&bus, 0x80, 0x100, &ops, &d), -EEXIST); /* covers it */
	CHECK_EQ(io_bus_register(&bus, 0xf0, 0x10, &ops, &d), 0);        /* adjacent below */
	CHECK_EQ(io_bus_register(&bus, 0x110, 0x10, &ops, &d), 0);       /* adjacent above */
	CHECK_EQ(io_bus_register(&bus, 0x200, 0, &ops, &d), -EINVAL);
	CHECK_EQ(io_bus_register(&bus, ~0ULL, 2, &ops, &d), -EINVAL);    /* wraps */
	CHECK_EQ(io_bus_register(&bus, ~0ULL, 1, &ops, &d), 0);          /* last byte is fine */
	CHECK_EQ(io_bus_register(&bus, 0x300, 1, NULL, &d), -EINVAL);
	for (i = 0; bus.n < IO_BUS_MAX; i++)
		CHECK_EQ(io_bus_register(&bus, 0x1000 + 16 * i, 8, &ops, &d), 0);
	CHECK_EQ(io_bus_register(&bus, 0x100000, 8, &ops, &d), -ENOSPC);
	for (i = 1; i < bus.n; i++)
		CHECK(bus.ranges[i - 1].base + bus.ranges[i - 1].len <= bus.ranges[i].base);
}

static void test_dispatch(void)
{
	static struct io_bus bus;
	struct dev a = { 0 }, b = { 0 };
	uint8_t buf[8];

	CHECK_EQ(io_bus_register(&bus, 0xd0000000, 0x1000, &ops, &b), 0);
	CHECK_EQ(io_bus_register(&bus, 0x3f8, 8, &ops, &a), 0);
	CHECK_EQ(io_bus_read(&bus, 0x3fd, buf, 1), 0);
	CHECK_EQ(a.last_off, 5);
	CHECK_EQ(buf[0], 0x5a);
	CHECK_EQ(io_bus_write(&bus, 0xd0000ffc, (uint8_t[]){ 7, 0, 0, 0 }, 4), 0);
	CHECK_EQ(b.last_off, 0xffc);
	CHECK_EQ(b.last_len, 4);
	CHECK_EQ(b.last_write, 7);
	/* Unclaimed: reads are all ones, writes vanish, nobody is called. */
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(io_bus_read(&bus, 0x3f7, buf, 1), -ENOENT);
	CHECK_EQ(buf[0], 0xff);
	CHECK_EQ(io_bus_read(&bus, 0xd0000ffe, buf, 4), -ENOENT);       /* straddles the end */
	CHECK_EQ(buf[3], 0xff);
	CHECK_EQ(io_bus_write(&bus, 0x400, buf, 1), -ENOENT);
	CHECK_EQ(io_bus_read(&bus, ~0ULL, buf, 8), -ENOENT);
	CHECK_EQ(io_bus_read(&bus, 0, buf, 1), -ENOENT);
	CHECK_EQ(a.reads + b.reads, 1);
	CHECK_EQ(a.writes + b.writes, 1);
}

int main(void)
{
	test_register();
	test_dispatch();
	return check_result("iobus");
}
