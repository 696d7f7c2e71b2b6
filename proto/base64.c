/* SPDX-License-Identifier: MIT */
/* Base64 (RFC 4648 section 4, padded) for console bytes on the worker link. */
#include <errno.h>
#include <stdint.h>

#include "proto/proto.h"

static const char b64_alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t proto_base64_encode(const void *data, size_t n, char *out)
{
	const unsigned char *in = data;
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = b64_alphabet[(v >> 18) & 63];
		out[o++] = b64_alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* One 4-char group; pad counts the trailing '=' allowed only in the last. */
static int b64_group(const char *g, bool last, unsigned char *out, size_t *ret_n)
{
	int v[4], pad = 0;

	for (int i = 0; i < 4; i++) {
		if (g[i] == '=' && last && i >= 2) {
			pad++;
			v[i] = 0;
			continue;
		}
		if (pad)
			return -EINVAL;         /* data after padding */
		v[i] = b64_value(g[i]);
		if (v[i] < 0)
			return -EINVAL;
	}
	uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
	out[0] = x >> 16;
	out[1] = x >> 8;
	out[2] = x;
	*ret_n = 3 - pad;
	return 0;
}

int proto_base64_decode(const char *in, size_t len, void *out, size_t *ret_len)
{
	unsigned char *o = out;
	size_t total = 0, n;
	int r;

	if (len % 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i += 4) {
		r = b64_group(in + i, i + 4 == len, o + total, &n);
		if (r < 0)
			return r;
		total += n;
	}
	*ret_len = total;
	return 0;
}
