/* SPDX-License-Identifier: MIT */
/*
 * Fuzz the protocol decoders: the input is a byte stream as a client or a
 * worker would send it.  It goes through the line framing in chunks whose
 * sizes come from the input, and every line is decoded as a request (and
 * the error response encoded), as a server response (also read in place,
 * as mvmctl reads vm.list) and as a link message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The in-place reader: check, pretty-print, decode every member. */
static void fuzz_scan(const char *line, size_t len)
{
	struct proto_span v, k, m;
	size_t pos = 0, n;
	char buf[64], *out;
	long long x;
	double d;

	if (proto_scan_check(line, len, &v) < 0)
		return;
	if (proto_scan_pretty(v, &out, &n) == 0)
		free(out);
	while (proto_scan_next(v, &pos, &k, &m) == 1) {
		if (v.p[0] == '{')
			proto_scan_str(k, buf, sizeof(buf));
		proto_scan_str(m, buf, sizeof(buf));
		proto_scan_int(m, &x);
		proto_scan_num(m, &d);
	}
}

static void fuzz_line(const char *line, size_t len)
{
	struct proto_request req;
	struct proto_response resp;
	struct proto_link_msg link;
	struct proto_error err;
	json_t *msg;
	char *out;
	size_t out_len;

	if (proto_request_decode(line, len, &req, &err) < 0)
		msg = proto_response_error(req.id, &err);
	else
		msg = proto_response_ok(req.id, json_incref(req.args));
	if (msg && proto_encode(msg, &out, &out_len) == 0)
		free(out);
	json_decref(msg);
	proto_request_done(&req);
	if (proto_response_parse(line, len, &resp) == 0)
		proto_response_done(&resp);
	fuzz_scan(line, len);
	if (proto_link_decode(line, len, &link) == 0) {
		if (proto_link_encode(&link, &out, &out_len) == 0)
			free(out);
		proto_link_clear(&link);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proto_linebuf lb;
	size_t off = 0, chunk;
	char *line;
	size_t len;
	int r;

	proto_linebuf_init(&lb);
	/* first byte picks the chunk size, so splits land everywhere */
	chunk = size ? (data[0] % 64) + 1 : 1;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;

		if (proto_linebuf_feed(&lb, data + off, n) < 0)
			break;
		off += n;
		while ((r = proto_linebuf_next(&lb, &line, &len)) != 0)
			if (r > 0)
				fuzz_line(line, len);
	}
	proto_linebuf_free(&lb);
	return 0;
}
