/* SPDX-License-Identifier: MIT */
/*
 * The token buckets on a clock the input drives.  Input: four le64 limits
 * (bps, bps_burst, ops, ops_burst; kept only if ratelimit_config_check
 * takes them) and then 9-byte steps: u8 kind (bit 0 charge, bit 1 change
 * the limits to the header's rotated by the step's bytes, bit 2 jump the
 * clock to the last answer), le32 nanoseconds to advance, le32 bytes to
 * charge.  Checked: an admission comes no later than the wait it was
 * promised, throttled time never exceeds the time that passed, and an
 * unlimited limiter never refuses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/virtio/ratelimit.h"

#define HDR_SIZE  32
#define STEP_SIZE 9

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void config_from(const uint8_t *p, struct ratelimit_config *c)
{
	struct ratelimit_config n;
	const char *why;

	memcpy(&n.bps, p, 8);
	memcpy(&n.bps_burst, p + 8, 8);
	memcpy(&n.ops, p + 16, 8);
	memcpy(&n.ops_burst, p + 24, 8);
	/* small values are the interesting ones: scale most inputs down */
	n.bps >>= n.bps & 0x3f;
	n.ops >>= n.ops & 0x3f;
	n.bps_burst >>= n.bps_burst & 0x3f;
	n.ops_burst >>= n.ops_burst & 0x3f;
	*c = ratelimit_config_check(&n, &why) == 0 ? n : (struct ratelimit_config){ 0 };
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ratelimit rl = { 0 };
	struct ratelimit_config c;
	uint64_t now = 1000, start = now, promised = 0, w;

	if (size < HDR_SIZE)
		return 0;
	config_from(data, &c);
	ratelimit_set(&rl, &c, now);
	for (size_t off = HDR_SIZE; off + STEP_SIZE <= size; off += STEP_SIZE) {
		const uint8_t *s = data + off;
		uint32_t dt, bytes;

		memcpy(&dt, s + 1, 4);
		memcpy(&bytes, s + 5, 4);
		/* a monotonic clock in ns does not reach 2^62 (146 years) */
		if (now > (1ULL << 62))
			break;
		now += (s[0] & 4) && promised ? promised : dt;
		if (s[0] & 2) {
			uint8_t rot[HDR_SIZE];

			for (unsigned i = 0; i < HDR_SIZE; i++)
				rot[i] = data[(i + s[1]) % HDR_SIZE] ^ s[5 + i % 4];
			config_from(rot, &c);
			ratelimit_set(&rl, &c, now);
			promised = 0;
		}
		w = ratelimit_wait_ns(&rl, now);
		if (!ratelimit_enabled(&rl) && w)
			abort();
		/* waiting exactly what was promised (with nothing charged since)
		 * is always enough */
		if ((s[0] & 4) && promised && w)
			abort();
		if (rl.throttled_ns > now - start)
			abort();
		promised = w;
		if (!w && (s[0] & 1))
			ratelimit_charge(&rl, bytes, 1);
	}
	return 0;
}
