/* SPDX-License-Identifier: MIT */
/*
 * Split-virtqueue parser.  Input: a 16-byte header (le16 queue size, le16
 * starting ring index, le32 desc, avail, used guest addresses) followed by
 * the first bytes of a 64 KiB guest RAM.  Every chain the parser accepts
 * must lie inside that RAM; every byte of it is touched so the sanitizers
 * see any stray pointer.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/virtio/queue.h"
#include "tests/fuzz/fuzz-virtio.h"

#define RAM_SIZE 0x10000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_chain(const struct virtq_chain *c, const uint8_t *ram, uint16_t qsize)
{
	uint64_t out = 0, in = 0;
	volatile uint8_t sink = 0;

	if (c->n_out + c->n_in > qsize || c->head >= qsize)
		abort();
	for (unsigned i = 0; i < (unsigned)c->n_out + c->n_in; i++) {
		const uint8_t *p = c->iov[i].iov_base;
		size_t len = c->iov[i].iov_len;

		if (p < ram || p > ram + RAM_SIZE || len > (size_t)(ram + RAM_SIZE - p))
			abort();
		if (len)
			sink ^= p[0] ^ p[len - 1];
		*(i < c->n_out ? &out : &in) += len;
	}
	(void)sink;
	if (out != c->out_len || in != c->in_len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtq_chain *c;
	uint8_t *ram;
	struct guest_mem m;
	struct virtq q;
	const char *err = NULL;
	uint16_t start;
	uint32_t a[3];

	if (size < 16)
		return 0;
	c = malloc(sizeof(*c));
	if (!c)
		abort();
	ram = fuzz_guest_ram(data, size, 16, RAM_SIZE, &m);
	virtq_reset(&q);
	memcpy(&q.size, data, 2);
	memcpy(&start, data + 2, 2);
	memcpy(a, data + 4, 12);
	q.desc_gpa = a[0];
	q.avail_gpa = a[1];
	q.used_gpa = a[2];
	if (virtq_enable(&q, &m, VIRTQ_MAX_SIZE, &err) < 0) {
		if (!err || q.ready)
			abort();
		goto out;
	}
	q.last_avail = q.used_idx = start;
	/* More pops than the ring holds: the parser must stop on its own. */
	for (unsigned i = 0; i < 2u * q.size + 2; i++) {
		int r = virtq_pop(&q, c, &err);

		if (r < 0) {
			if (!err)
				abort();
			break;
		}
		if (r == 0)
			break;
		check_chain(c, ram, q.size);
		if (i == 0) {
			virtq_unpop(&q);
			continue;
		}
		virtq_push(&q, c->head, c->in_len);
		virtq_should_interrupt(&q);
	}
out:
	free(ram);
	free(c);
	return 0;
}
