/* SPDX-License-Identifier: MIT */
/* proto/: request decoder, framing, base64, link messages, VM object. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "proto/proto.h"
#include "tests/unit/check.h"

/* Decode a request; returns r and leaves err filled. */
static int decode(const char *line, struct proto_request *req, struct proto_error *err)
{
	return proto_request_decode(line, strlen(line), req, err);
}

static void expect_error(const char *line, enum proto_err code, const char *field)
{
	struct proto_request req;
	struct proto_error err;
	int r = decode(line, &req, &err);

	CHECK(r < 0);
	CHECK_EQ(err.code, code);
	if (field && strcmp(err.field, field)) {
		fprintf(stderr, "line %s: field '%s', expected '%s'\n", line, err.field, field);
		check_failures++;
	}
	CHECK(err.message[0] != '\0');
	CHECK(req.id != NULL);
	proto_request_done(&req);
}

static void test_decode_ok(void)
{
	struct proto_request req;
	struct proto_error err;
	json_t *disks;

	CHECK_EQ(decode("{\"id\":7,\"op\":\"vm.create\",\"args\":{\"name\":\"web1\","
	                "\"kernel\":\"/k\",\"disks\":[{\"path\":\"/d\"}]}}", &req, &err), 0);
	CHECK_EQ(req.op, PROTO_OP_VM_CREATE);
	CHECK_EQ(json_integer_value(req.id), 7);
	CHECK(!strcmp(proto_arg_str(&req, "name"), "web1"));
	CHECK(!strcmp(proto_arg_str(&req, "cmdline"), "console=ttyS0 reboot=k panic=1"));
	CHECK_EQ(proto_arg_int(&req, "vcpus", -1), 1);
	CHECK_EQ(proto_arg_int(&req, "mem_mib", -1), 128);
	CHECK_EQ(proto_arg_bool(&req, "start", false), true);
	CHECK_EQ(proto_arg_bool(&req, "wait", true), false);
	CHECK(!strcmp(proto_arg_str(&req, "restart"), "no"));
	CHECK(proto_arg_str(&req, "initrd") == NULL);
	CHECK(json_is_object(proto_arg_json(&req, "labels")));
	disks = proto_arg_json(&req, "disks");
	CHECK_EQ(json_array_size(disks), 1);
	CHECK(json_is_false(json_object_get(json_array_get(disks, 0), "readonly")));
	proto_request_done(&req);

	/* args may be omitted; string ids are echoed */
	CHECK_EQ(decode("{\"id\":\"a\",\"op\":\"version\"}", &req, &err), 0);
	CHECK(!strcmp(json_string_value(req.id), "a"));
	proto_request_done(&req);

	CHECK_EQ(decode("{\"id\":1,\"op\":\"vm.stop\",\"args\":{\"name\":\"x\"}}", &req, &err), 0);
	CHECK_EQ(proto_arg_int(&req, "timeout_s", -1), 10);
	proto_request_done(&req);

	CHECK_EQ(decode("{\"id\":1,\"op\":\"vm.list\",\"args\":{\"labels\":{\"a\":\"b\"}}}", &req, &err), 0);
	CHECK(proto_arg_str(&req, "state") == NULL);
	proto_request_done(&req);
}

static void test_decode_errors(void)
{
	expect_error("{", PROTO_ERR_BAD_JSON, NULL);
	expect_error("[1,2]", PROTO_ERR_BAD_JSON, NULL);
	expect_error("", PROTO_ERR_BAD_JSON, NULL);
	expect_error("{\"id\":1,\"id\":2,\"op\":\"version\"}", PROTO_ERR_BAD_JSON, NULL);
	expect_error("{\"id\":1,\"op\":\"vm.nope\"}", PROTO_ERR_UNKNOWN_OP, "op");
	expect_error("{\"id\":1}", PROTO_ERR_BAD_REQUEST, "op");
	expect_error("{\"id\":1,\"op\":5}", PROTO_ERR_BAD_REQUEST, "op");
	expect_error("{\"op\":\"version\"}", PROTO_ERR_BAD_REQUEST, "id");
	expect_error("{\"id\":1.5,\"op\":\"version\"}", PROTO_ERR_BAD_REQUEST, "id");
	expect_error("{\"id\":1,\"op\":\"version\",\"x\":1}", PROTO_ERR_BAD_REQUEST, "x");
	expect_error("{\"id\":1,\"op\":\"version\",\"args\":[]}", PROTO_ERR_BAD_REQUEST, "args");
	expect_error("{\"id\":1,\"op\":\"vm.show\",\"args\":{}}", PROTO_ERR_BAD_REQUEST, "name");
	expect_error("{\"id\":1,\"op\":\"vm.show\",\"args\":{\"name\":3}}", PROTO_ERR_BAD_REQUEST, "name");
	expect_error("{\"id\":1,\"op\":\"vm.show\",\"args\":{\"name\":\"-x\"}}", PROTO_ERR_BAD_REQUEST, "name");
	expect_error("{\"id\":1,\"op\":\"vm.show\",\"args\":{\"name\":\"a\",\"zz\":1}}", PROTO_ERR_BAD_REQUEST, "zz");
	expect_error("{\"id\":1,\"op\":\"vm.show\",\"args\":{\"name\":\"a\\u0000b\"}}", PROTO_ERR_BAD_REQUEST, "name");
	expect_error("{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"rel\"}}",
	             PROTO_ERR_BAD_REQUEST, "kernel");
	expect_error("{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"/k\",\"vcpus\":0}}",
	             PROTO_ERR_BAD_REQUEST, "vcpus");
	expect_error("{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"/k\",\"vcpus\":\"2\"}}",
	             PROTO_ERR_BAD_REQUEST, "vcpus");
	expect_error("{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"/k\",\"disks\":[{\"path\":\"/d\",\"x\":1}]}}",
	             PROTO_ERR_BAD_REQUEST, "disks");
	expect_error("{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"/k\",\"nics\":[{\"tap\":\"tap0\",\"mac\":\"zz\"}]}}",
	             PROTO_ERR_BAD_REQUEST, "nics");
	expect_error("{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"/k\",\"labels\":{\"a\":1}}}",
	             PROTO_ERR_BAD_REQUEST, "labels");
	expect_error("{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"/k\",\"restart\":\"sometimes\"}}",
	             PROTO_ERR_BAD_REQUEST, "restart");
	expect_error("{\"id\":1,\"op\":\"vm.kill\",\"args\":{\"name\":\"a\",\"signal\":\"SIGNOPE\"}}",
	             PROTO_ERR_BAD_REQUEST, "signal");
	expect_error("{\"id\":1,\"op\":\"vm.list\",\"args\":{\"state\":\"asleep\"}}", PROTO_ERR_BAD_REQUEST, "state");
}

static void test_error_id_echo(void)
{
	struct proto_request req;
	struct proto_error err;

	CHECK(decode("{\"id\":42,\"op\":\"nope\"}", &req, &err) < 0);
	CHECK_EQ(json_integer_value(req.id), 42);
	proto_request_done(&req);
	CHECK(decode("{\"id\":{},\"op\":\"version\"}", &req, &err) < 0);
	CHECK(json_is_null(req.id));
	proto_request_done(&req);
}

static void test_linebuf(void)
{
	struct proto_linebuf lb;
	char *line, *big;
	size_t n;

	proto_linebuf_init(&lb);
	CHECK_EQ(proto_linebuf_feed(&lb, "ab", 2), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);
	CHECK_EQ(proto_linebuf_feed(&lb, "c\r\nde\n", 6), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(n == 3 && !strcmp(line, "abc"));
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(n == 2 && !strcmp(line, "de"));
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);

	/* an over-long line is dropped and reported once, in order, and the
	 * buffer stays bounded while it streams in */
	big = malloc(PROTO_MAX_LINE + 10);
	memset(big, 'x', PROTO_MAX_LINE + 10);
	CHECK_EQ(proto_linebuf_feed(&lb, "ok1\n", 4), 0);
	CHECK_EQ(proto_linebuf_feed(&lb, big, PROTO_MAX_LINE + 10), 0);
	CHECK_EQ(proto_linebuf_feed(&lb, big, PROTO_MAX_LINE + 10), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(!strcmp(line, "ok1"));
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), -EMSGSIZE);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);
	CHECK(proto_linebuf_pending(&lb) == 0);
	CHECK_EQ(proto_linebuf_feed(&lb, big, PROTO_MAX_LINE + 10), 0);
	CHECK_EQ(proto_linebuf_feed(&lb, "tail\nok2\n", 9), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(!strcmp(line, "ok2"));

	/* exactly the limit is fine */
	CHECK_EQ(proto_linebuf_feed(&lb, big, PROTO_MAX_LINE), 0);
	CHECK_EQ(proto_linebuf_feed(&lb, "\nrest", 5), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(n == PROTO_MAX_LINE);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);
	{
		const char *rest;
		size_t rn;

		proto_linebuf_take_rest(&lb, &rest, &rn);
		CHECK(rn == 4 && !memcmp(rest, "rest", 4));
	}
	proto_linebuf_free(&lb);

	/* with no complete line queued, memory stays near one line */
	proto_linebuf_init(&lb);
	for (int i = 0; i < 8; i++)
		CHECK_EQ(proto_linebuf_feed(&lb, big, PROTO_MAX_LINE / 2), 0);
	CHECK(lb.cap <= 4 * PROTO_MAX_LINE);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), -EMSGSIZE);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);
	proto_linebuf_free(&lb);
	free(big);
}

static void test_base64(void)
{
	const char *cases[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	char enc[64];
	unsigned char dec[64];
	size_t n;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_EQ(proto_base64_encode(cases[i][0], strlen(cases[i][0]), enc), strlen(cases[i][1]));
		CHECK(!strcmp(enc, cases[i][1]));
		CHECK_EQ(proto_base64_decode(cases[i][1], strlen(cases[i][1]), dec, &n), 0);
		CHECK(n == strlen(cases[i][0]) && !memcmp(dec, cases[i][0], n));
	}
	CHECK_EQ(proto_base64_decode("Zg=", 3, dec, &n), -EINVAL);
	CHECK_EQ(proto_base64_decode("Z===", 4, dec, &n), -EINVAL);
	CHECK_EQ(proto_base64_decode("Zg=a", 4, dec, &n), -EINVAL);
	CHECK_EQ(proto_base64_decode("Zg==Zg==", 8, dec, &n), -EINVAL);
	CHECK_EQ(proto_base64_decode("Z!==", 4, dec, &n), -EINVAL);
}

static void test_link(void)
{
	unsigned char bytes[256];
	struct proto_link_msg m = { .type = PROTO_LINK_CONSOLE, .data = bytes, .data_len = sizeof(bytes) };
	struct proto_link_msg out;
	char *line;
	size_t n;

	for (int i = 0; i < 256; i++)
		bytes[i] = i;
	CHECK_EQ(proto_link_encode(&m, &line, &n), 0);
	CHECK(line[n - 1] == '\n');
	CHECK_EQ(proto_link_decode(line, n - 1, &out), 0);
	CHECK_EQ(out.type, PROTO_LINK_CONSOLE);
	CHECK(out.data_len == 256 && !memcmp(out.data, bytes, 256));
	proto_link_clear(&out);
	/* the allocation-free encoder writes the same line, or nothing */
	{
		char buf[512];
		int k = proto_link_encode_console(bytes, sizeof(bytes), buf, sizeof(buf));

		CHECK(k > 0 && (size_t)k == n && !memcmp(buf, line, n));
		CHECK_EQ(proto_link_encode_console(bytes, sizeof(bytes), buf, n), -ENOBUFS);
		CHECK_EQ(proto_link_encode_console(bytes, PROTO_LINK_CONSOLE_MAX + 1, buf,
		                                   sizeof(buf)), -EMSGSIZE);
		CHECK_EQ(proto_link_encode_console(bytes, 0, buf, sizeof(buf)), 28);
		CHECK_EQ(proto_link_decode(buf, 27, &out), 0);
		CHECK(out.type == PROTO_LINK_CONSOLE && out.data_len == 0);
		proto_link_clear(&out);
	}
	free(line);

	m = (struct proto_link_msg){ .type = PROTO_LINK_EXIT, .status = 3 };
	strcpy(m.reason, "triple-fault");
	CHECK_EQ(proto_link_encode(&m, &line, &n), 0);
	CHECK_EQ(proto_link_decode(line, n, &out), 0);
	CHECK(out.type == PROTO_LINK_EXIT && out.status == 3 && !strcmp(out.reason, "triple-fault"));
	free(line);

	CHECK_EQ(proto_link_decode("{\"msg\":\"booted\"}", 16, &out), 0);
	CHECK_EQ(out.type, PROTO_LINK_BOOTED);
	CHECK_EQ(proto_link_decode("{\"msg\":\"seccomp\",\"nr\":41}", 25, &out), 0);
	CHECK(out.type == PROTO_LINK_SECCOMP && out.nr == 41);
	CHECK_EQ(proto_link_decode("{\"msg\":\"seccomp\",\"nr\":-1}", 25, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("{\"msg\":\"seccomp\"}", 17, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("{\"msg\":\"bogus\"}", 15, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("{\"msg\":\"console\",\"data\":\"!!\"}", 29, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("{\"msg\":\"exit\",\"status\":\"x\"}", 27, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("nope", 4, &out), -EINVAL);
}

static int link_dec(const char *s, struct proto_link_msg *out)
{
	return proto_link_decode(s, strlen(s), out);
}

/* Encodes m and decodes it again into *out. */
static int link_roundtrip(const struct proto_link_msg *m, struct proto_link_msg *out)
{
	char *line;
	size_t n;
	int r = proto_link_encode(m, &line, &n);

	if (r < 0)
		return r;
	r = proto_link_decode(line, n, out);
	free(line);
	return r;
}

/* set-limits, balloon, stats and their answers (the worker's run-time
 * controls). */
static void test_link_control(void)
{
	struct proto_link_msg m = { .type = PROTO_LINK_SET_LIMITS, .seq = 7, .dev_kind = PROTO_LINK_NET,
	                            .dev_index = 2, .limits = { 1000, 0, 50, 10 } };
	struct proto_link_msg out;
	struct proto_link_stats st = { .ndev = 2, .has_balloon = true };
	char err[PROTO_LINK_ERROR_MAX + 2], line[400];

	CHECK_EQ(link_roundtrip(&m, &out), 0);
	CHECK(out.type == PROTO_LINK_SET_LIMITS && out.seq == 7 && out.dev_kind == PROTO_LINK_NET &&
	      out.dev_index == 2 && out.limits.bps == 1000 && out.limits.ops == 50 &&
	      out.limits.ops_burst == 10 && out.limits.bps_burst == 0);
	proto_link_clear(&out);
	/* absent limits are 0 (none) */
	CHECK_EQ(link_dec("{\"msg\":\"set-limits\",\"seq\":1,\"device\":\"disk\",\"index\":0}", &out), 0);
	CHECK(out.dev_kind == PROTO_LINK_DISK && out.limits.bps == 0 && out.limits.ops == 0);
	CHECK_EQ(link_dec("{\"msg\":\"set-limits\",\"seq\":1,\"device\":\"disk\",\"index\":0,\"bps\":-1}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"set-limits\",\"seq\":1,\"device\":\"disk\",\"index\":16}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"set-limits\",\"seq\":1,\"device\":\"tape\",\"index\":0}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"set-limits\",\"seq\":1,\"device\":\"disk\"}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"set-limits\",\"device\":\"disk\",\"index\":0}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"set-limits\",\"seq\":1,\"device\":\"disk\",\"index\":0,\"ops\":\"1\"}", &out), -EINVAL);

	m = (struct proto_link_msg){ .type = PROTO_LINK_BALLOON, .seq = 3, .target = 64 << 20 };
	CHECK_EQ(link_roundtrip(&m, &out), 0);
	CHECK(out.type == PROTO_LINK_BALLOON && out.seq == 3 && out.target == 64 << 20);
	CHECK_EQ(link_dec("{\"msg\":\"balloon\",\"seq\":3}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"balloon\",\"seq\":3,\"target\":-4096}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"stats\",\"seq\":9}", &out), 0);
	CHECK(out.type == PROTO_LINK_STATS && out.seq == 9);

	m = (struct proto_link_msg){ .type = PROTO_LINK_RESULT, .seq = 4 };
	CHECK_EQ(link_roundtrip(&m, &out), 0);
	CHECK(out.type == PROTO_LINK_RESULT && out.seq == 4 && !out.error);
	m.error = "no disk 3";
	CHECK_EQ(link_roundtrip(&m, &out), 0);
	CHECK(out.error && !strcmp(out.error, "no disk 3"));
	proto_link_clear(&out);
	CHECK(!out.error);
	memset(err, 'x', sizeof(err) - 1);
	err[sizeof(err) - 1] = '\0';
	snprintf(line, sizeof(line), "{\"msg\":\"result\",\"seq\":1,\"error\":\"%s\"}", err);
	CHECK_EQ(link_dec(line, &out), -EINVAL);

	st.dev[0] = (struct proto_link_dev_stats){ .kind = PROTO_LINK_DISK, .index = 0, .rd_bytes = 1 << 20,
		.wr_bytes = 512, .rd_ops = 8, .wr_ops = 1, .flushes = 2, .errors = 1,
		.throttled_ns = 123456789, .limits = { .bps = 1 << 20, .ops = 100 } };
	st.dev[1] = (struct proto_link_dev_stats){ .kind = PROTO_LINK_NET, .index = 0, .rd_bytes = 60,
		.wr_bytes = 70, .rd_ops = 1, .wr_ops = 1, .flushes = 99, .errors = 3 };
	st.balloon = (struct proto_link_balloon_stats){ .target_pages = 8192, .actual_pages = 4096,
		.max_pages = 65536, .inflated = 4096, .reported_bytes = 1 << 22,
		.guest_valid = 1u << 4 | 1u << 5, .guest = { [4] = 100, [5] = 200, [6] = 300 } };
	m = (struct proto_link_msg){ .type = PROTO_LINK_STATS_REPLY, .seq = 5, .stats = &st };
	CHECK_EQ(link_roundtrip(&m, &out), 0);
	CHECK(out.type == PROTO_LINK_STATS_REPLY && out.seq == 5 && out.stats);
	if (out.stats) {
		const struct proto_link_stats *o = out.stats;

		CHECK_EQ(o->ndev, 2);
		CHECK(!memcmp(&o->dev[0], &st.dev[0], sizeof(st.dev[0])));
		/* NICs have no flushes: not sent */
		CHECK(o->dev[1].kind == PROTO_LINK_NET && o->dev[1].errors == 3 && o->dev[1].flushes == 0 &&
		      o->dev[1].wr_bytes == 70);
		CHECK(o->has_balloon && o->balloon.actual_pages == 4096 && o->balloon.max_pages == 65536 &&
		      o->balloon.reported_bytes == 1 << 22);
		/* only the guest statistics it sent */
		CHECK(o->balloon.guest_valid == (1u << 4 | 1u << 5) && o->balloon.guest[5] == 200 &&
		      o->balloon.guest[6] == 0);
	}
	proto_link_clear(&out);
	CHECK_EQ(link_dec("{\"msg\":\"stats-reply\",\"seq\":1,\"devices\":[]}", &out), 0);
	CHECK(out.stats && out.stats->ndev == 0 && !out.stats->has_balloon);
	proto_link_clear(&out);
	CHECK_EQ(link_dec("{\"msg\":\"stats-reply\",\"seq\":1}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"stats-reply\",\"seq\":1,\"devices\":[{\"device\":\"disk\",\"index\":0,\"reads\":-1}]}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"stats-reply\",\"seq\":1,\"devices\":[1]}", &out), -EINVAL);
	CHECK_EQ(link_dec("{\"msg\":\"stats-reply\",\"seq\":1,\"devices\":[],\"balloon\":{\"guest\":{\"free_memory\":\"x\"}}}", &out), -EINVAL);
	snprintf(line, sizeof(line), "{\"msg\":\"stats-reply\",\"seq\":1,\"devices\":[%s]}",
	         "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}");
	CHECK_EQ(link_dec(line, &out), -EINVAL);
}

static void test_responses(void)
{
	struct proto_error err;
	struct proto_response resp;
	json_t *id = json_integer(9), *msg;
	char *line;
	size_t n;

	proto_error_set(&err, PROTO_ERR_NOT_FOUND, "name", "no VM named '%s'", "x");
	msg = proto_response_error(id, &err);
	CHECK_EQ(proto_encode(msg, &line, &n), 0);
	CHECK(memchr(line, '\n', n) == line + n - 1);
	CHECK_EQ(proto_response_parse(line, n, &resp), 0);
	CHECK(!resp.ok && !resp.is_event);
	CHECK_EQ(resp.err_code, PROTO_ERR_NOT_FOUND);
	CHECK(!strcmp(resp.err_field, "name"));
	CHECK(!strcmp(resp.err_message, "no VM named 'x'"));
	CHECK_EQ(json_integer_value(resp.id), 9);
	proto_response_done(&resp);
	free(line);
	json_decref(msg);

	msg = proto_response_ok(id, json_pack("{s:i}", "version", 1));
	CHECK_EQ(proto_encode(msg, &line, &n), 0);
	CHECK_EQ(proto_response_parse(line, n, &resp), 0);
	CHECK(resp.ok);
	CHECK_EQ(json_integer_value(json_object_get(resp.result, "version")), 1);
	proto_response_done(&resp);
	free(line);
	json_decref(msg);
	json_decref(id);

	/* console bytes that are not UTF-8 still make valid JSON */
	msg = proto_event_log("vm1", "a\xff\0b", 4);
	CHECK_EQ(proto_encode(msg, &line, &n), 0);
	CHECK_EQ(proto_response_parse(line, n, &resp), 0);
	CHECK(resp.is_event && !strcmp(resp.event, "log"));
	CHECK(!strcmp(json_string_value(json_object_get(resp.root, "data")),
	              "a\xef\xbf\xbd\xef\xbf\xbd" "b"));
	proto_response_done(&resp);
	free(line);
	json_decref(msg);

	CHECK_EQ(proto_response_parse("{\"id\":1}", 8, &resp), -EINVAL);
	CHECK_EQ(proto_response_parse("[]", 2, &resp), -EINVAL);
}

static void test_client_builder(void)
{
	json_t *req = proto_request_new(3, PROTO_OP_VM_CREATE);
	struct proto_request dec;
	struct proto_error err;
	char *line;
	size_t n;

	CHECK_EQ(proto_request_set_str(req, "name", "a1"), 0);
	CHECK_EQ(proto_request_set_str(req, "kernel", "/boot/k"), 0);
	CHECK_EQ(proto_request_set_int(req, "vcpus", 2), 0);
	CHECK_EQ(proto_request_set_bool(req, "start", false), 0);
	CHECK_EQ(proto_encode(req, &line, &n), 0);
	CHECK_EQ(proto_request_decode(line, n - 1, &dec, &err), 0);
	CHECK_EQ(proto_arg_int(&dec, "vcpus", 0), 2);
	CHECK_EQ(proto_arg_bool(&dec, "start", true), false);
	proto_request_done(&dec);
	free(line);
	json_decref(req);
}

static void test_names(void)
{
	CHECK(proto_vm_name_valid("a"));
	CHECK(proto_vm_name_valid("Web-1.x_y"));
	CHECK(!proto_vm_name_valid(""));
	CHECK(!proto_vm_name_valid(".a"));
	CHECK(!proto_vm_name_valid("a/b"));
	CHECK(!proto_vm_name_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
	CHECK_EQ(proto_signal_from_name("SIGKILL"), SIGKILL);
	CHECK_EQ(proto_signal_from_name("TERM"), SIGTERM);
	CHECK_EQ(proto_signal_from_name("9"), 9);
	CHECK(proto_signal_from_name("SIGFOO") < 0);
	CHECK(!strcmp(proto_signal_name(SIGSEGV), "SIGSEGV"));
	/* what a PID namespace's init acts on: mvm-vmm's stop signals, and the
	 * three the kernel forces; never the vCPU kick (SIGUSR1) */
	CHECK(proto_signal_worker_honours(SIGTERM));
	CHECK(proto_signal_worker_honours(SIGKILL));
	CHECK(proto_signal_worker_honours(SIGCONT));
	CHECK(!proto_signal_worker_honours(SIGUSR1));
	CHECK(!proto_signal_worker_honours(SIGSEGV));
	CHECK(!proto_signal_worker_honours(SIGTSTP));
	for (const int *sp = proto_vmm_stop_signals; *sp; sp++)
		CHECK(proto_signal_ends_process(*sp) && *sp != SIGUSR1);
	CHECK_EQ(proto_op_from_name("vm.logs"), PROTO_OP_VM_LOGS);
	CHECK(!strcmp(proto_err_name(PROTO_ERR_TOO_LARGE), "too_large"));
	CHECK_EQ(proto_err_from_name("storage_error"), PROTO_ERR_STORAGE_ERROR);
}

static void test_vm_json(void)
{
	struct proto_vm vm = {
		.name = strdup("v"), .state = PROTO_VM_RUNNING, .owner_uid = 1000,
		.kernel = strdup("/k"), .cmdline = strdup("c"), .vcpus = 2, .mem_mib = 256,
		.disks = json_array(), .nics = json_array(), .labels = json_object(),
		.restart = PROTO_RESTART_NO, .pid = 42, .created_at = 1.5,
	}, back;
	json_t *j = proto_vm_to_json(&vm);

	CHECK(j != NULL);
	CHECK(json_is_null(json_object_get(j, "initrd")));
	CHECK(json_is_null(json_object_get(j, "started_at")));
	CHECK(json_is_null(json_object_get(j, "exit_status")));
	CHECK_EQ(proto_vm_from_json(j, &back), 0);
	CHECK(!strcmp(back.name, "v") && back.state == PROTO_VM_RUNNING && back.pid == 42);
	CHECK(back.vcpus == 2 && back.mem_mib == 256 && back.owner_uid == 1000);
	CHECK(json_is_null(json_object_get(j, "balloon_mib")) && !back.has_balloon);
	CHECK(json_is_false(json_object_get(j, "rng")) && !back.has_rng);
	CHECK(json_is_null(json_object_get(j, "vsock")) && back.vsock_cid == 0);
	proto_vm_clear(&back);
	json_decref(j);
	vm.has_balloon = true;      /* a balloon of 0 is one, empty */
	vm.has_rng = true;
	vm.vsock_cid = 7;
	j = proto_vm_to_json(&vm);
	CHECK(json_is_integer(json_object_get(j, "balloon_mib")));
	CHECK(json_is_true(json_object_get(j, "rng")));
	CHECK_EQ(proto_vm_from_json(j, &back), 0);
	CHECK(back.has_balloon && back.balloon_mib == 0 && back.has_rng);
	CHECK_EQ(back.vsock_cid, 7);
	proto_vm_clear(&back);
	proto_vm_clear(&vm);
	json_decref(j);
}

/* A response built from pre-encoded elements equals the same response
 * built as a JSON tree and encoded. */
static void check_listbuf(json_t *id, json_t *elems)
{
	json_t *want = proto_response_ok(id, json_pack("{s:O}", "vms", elems));
	struct proto_listbuf lb;
	char *a, *b, *e;
	size_t alen, blen;
	json_t *v;
	size_t i;

	CHECK_EQ(proto_encode(want, &a, &alen), 0);
	CHECK_EQ(proto_listbuf_begin(&lb, json_is_null(id) ? NULL : id, "vms", 0), 0);
	json_array_foreach(elems, i, v) {
		e = json_dumps(v, JSON_COMPACT);
		proto_listbuf_add(&lb, e, strlen(e));
		free(e);
	}
	CHECK_EQ(lb.count, json_array_size(elems));
	CHECK_EQ(proto_listbuf_finish(&lb, &b, &blen), 0);
	CHECK(alen == blen && !memcmp(a, b, alen));
	if (alen != blen || memcmp(a, b, alen))
		fprintf(stderr, "tree:   %.*s\nlistbuf: %.*s\n", (int)alen, a, (int)blen, b);
	free(a);
	free(b);
	json_decref(want);
}

static void test_listbuf(void)
{
	struct proto_vm vm = {
		.name = strdup("v\xc3\xa9"), .state = PROTO_VM_STOPPED, .owner_uid = 7,
		.kernel = strdup("/k\"\\/\t"), .initrd = strdup("/i"), .cmdline = strdup(""),
		.vcpus = 1, .mem_mib = 64, .disks = json_pack("[{s:s,s:b}]", "path", "/d", "readonly", 0),
		.nics = json_array(), .labels = json_pack("{s:s,s:s}", "b", "2", "a", "1"),
		.restart = PROTO_RESTART_ALWAYS, .created_at = 1712345678.123456789,
		.started_at = 0.1, .has_exit_status = true, .exit_status = -1,
		.exit_reason = strdup("signal"),
	};
	json_t *elems = json_array(), *j = proto_vm_to_json(&vm), *id;
	char *enc;
	size_t len;

	/* proto_vm_encode is the compact text of proto_vm_to_json */
	CHECK_EQ(proto_vm_encode(&vm, &enc, &len), 0);
	{
		char *d = json_dumps(j, JSON_COMPACT);

		CHECK(d && strlen(d) == len && !strcmp(d, enc));
		free(d);
	}
	free(enc);
	check_listbuf(json_null(), elems);
	json_array_append(elems, j);
	id = json_integer(42);
	check_listbuf(id, elems);
	json_decref(id);
	json_array_append_new(elems, json_pack("{s:[], s:{}}", "x", "y"));
	json_array_append(elems, j);
	id = json_string("req \"7\"");
	check_listbuf(id, elems);
	json_decref(id);
	json_decref(elems);
	json_decref(j);
	proto_vm_clear(&vm);
}

/* Clients read responses with a larger per-buffer limit. */
static void test_linebuf_max(void)
{
	size_t max = 4 * PROTO_MAX_LINE, n;
	struct proto_linebuf lb;
	char *big = malloc(max + 1), *line;

	memset(big, 'y', max + 1);
	proto_linebuf_init_max(&lb, max);
	/* a line of exactly max bytes, fed in small pieces */
	for (size_t off = 0; off < max; off += 1000)
		CHECK_EQ(proto_linebuf_feed(&lb, big + off, off + 1000 <= max ? 1000 : max - off), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);
	CHECK_EQ(proto_linebuf_feed(&lb, "\nnext", 5), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(n == max && line[0] == 'y' && line[max - 1] == 'y' && line[max] == '\0');
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);
	/* one byte more is too long, dropped to its newline, reported once */
	CHECK_EQ(proto_linebuf_feed(&lb, "\n", 1), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(n == 4 && !strcmp(line, "next"));
	CHECK_EQ(proto_linebuf_feed(&lb, big, max + 1), 0);
	CHECK(lb.cap <= 2 * max + 2);
	CHECK_EQ(proto_linebuf_feed(&lb, big, 100), 0);
	CHECK_EQ(proto_linebuf_feed(&lb, "\nok\n", 4), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), -EMSGSIZE);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 1);
	CHECK(n == 2 && !strcmp(line, "ok"));
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), 0);
	/* the maximum survives free, for a buffer that is reused */
	proto_linebuf_free(&lb);
	CHECK(lb.max == max);
	proto_linebuf_free(&lb);
	/* the default is PROTO_MAX_LINE */
	proto_linebuf_init(&lb);
	CHECK(lb.max == PROTO_MAX_LINE);
	CHECK_EQ(proto_linebuf_feed(&lb, big, PROTO_MAX_LINE + 1), 0);
	CHECK_EQ(proto_linebuf_next(&lb, &line, &n), -EMSGSIZE);
	proto_linebuf_free(&lb);
	free(big);
}

/* Pretty printing in place equals jansson's, on jansson-encoded text. */
static void check_pretty(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	char *compact = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	char *want = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	struct proto_span v;
	char *got;
	size_t n;

	CHECK(j && compact && want);
	CHECK_EQ(proto_scan_check(compact, strlen(compact), &v), 0);
	CHECK_EQ(proto_scan_pretty(v, &got, &n), 0);
	CHECK(n == strlen(want) && !strcmp(got, want));
	if (strcmp(got, want))
		fprintf(stderr, "jansson:\n%s\nscan:\n%s\n", want, got);
	free(got);
	free(want);
	free(compact);
	json_decref(j);
}

static void test_scan(void)
{
	static const char *const bad[] = {
		"", "{", "}", "{\"a\":}", "{\"a\" 1}", "{a:1}", "[1,]", "[1 2]", "01", "1.",
		"-", "1e", "tru", "nul", "\"\x01\"", "\"\\x\"", "\"\\u12\"", "\"abc",
		"[1]x", "{\"a\":1,}", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	};
	const char *doc = " {\"id\": 3, \"ok\": true, \"result\": {\"vms\": [{\"name\": \"a\\u00e9\\ud83d\\ude00\\n\","
	                  " \"pid\": null, \"mem_mib\": -12, \"t\": 1.5e3}]}} ";
	struct proto_span v, k, res = { 0 }, vms = { 0 }, vm, f;
	size_t pos = 0;
	char buf[64];
	long long x;
	double d;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (proto_scan_check(bad[i], strlen(bad[i]), &v) == 0) {
			fprintf(stderr, "accepted bad JSON: %s\n", bad[i]);
			check_failures++;
		}
	}
	CHECK_EQ(proto_scan_check(doc, strlen(doc), &v), 0);
	CHECK(v.p[0] == '{' && v.p[v.n - 1] == '}');
	while (proto_scan_next(v, &pos, &k, &f) == 1)
		if (proto_scan_key_is(k, "result"))
			res = f;
	pos = 0;
	CHECK_EQ(proto_scan_next(res, &pos, &k, &vms), 1);
	CHECK(proto_scan_key_is(k, "vms") && !proto_scan_key_is(k, "vm"));
	CHECK_EQ(proto_scan_next(res, &pos, &k, &f), 0);
	pos = 0;
	CHECK_EQ(proto_scan_next(vms, &pos, NULL, &vm), 1);
	CHECK_EQ(proto_scan_next(vms, &pos, NULL, &f), 0);
	pos = 0;
	CHECK_EQ(proto_scan_next(vm, &pos, &k, &f), 1);
	CHECK_EQ(proto_scan_str(f, buf, sizeof(buf)), 8);
	CHECK(!strcmp(buf, "a\xc3\xa9\xf0\x9f\x98\x80\n"));
	CHECK_EQ(proto_scan_str(f, buf, 4), 3);           /* cut, never split */
	CHECK(!strcmp(buf, "a\xc3\xa9"));
	CHECK_EQ(proto_scan_next(vm, &pos, &k, &f), 1);
	CHECK(!proto_scan_int(f, &x) && proto_scan_str(f, buf, sizeof(buf)) < 0);
	CHECK_EQ(proto_scan_next(vm, &pos, &k, &f), 1);
	CHECK(proto_scan_int(f, &x) && x == -12);
	CHECK_EQ(proto_scan_next(vm, &pos, &k, &f), 1);
	CHECK(!proto_scan_int(f, &x) && proto_scan_num(f, &d) && d == 1500.0);
	CHECK_EQ(proto_scan_next(vm, &pos, &k, &f), 0);
	CHECK(proto_scan_next(f, &pos, &k, &f) < 0);

	check_pretty(doc);
	check_pretty("{}");
	check_pretty("[]");
	check_pretty("\"x\"");
	check_pretty("{\"b\":[],\"a\":{},\"c\":[1,{\"y\":2,\"x\":[3, null, false]}],\"d\":{\"k\":\"v\"}}");
	/* sorted by the real keys: "\\u0041" is "A", before "B" and after "@" */
	check_pretty("{\"B\":1,\"\\u0041\":2,\"@\":3,\"\\\"q\":4,\"\\n\":5,\"ab\":6,\"a\":7}");
	{
		struct proto_vm vm2 = {
			.name = strdup("deep"), .state = PROTO_VM_RUNNING, .kernel = strdup("/k"),
			.cmdline = strdup("c \"q\" \\ \t"), .vcpus = 4, .mem_mib = 2048,
			.disks = json_pack("[{s:s,s:b},{s:s,s:b}]", "path", "/a", "readonly", 1,
			                   "path", "/b", "readonly", 0),
			.nics = json_pack("[{s:s,s:n}]", "tap", "tap0", "mac"),
			.labels = json_pack("{s:s,s:s,s:s}", "zz", "1", "\xc3\xa9", "2", "a b", "3"),
			.restart = PROTO_RESTART_ON_FAILURE, .restart_max = 3, .pid = 99,
			.created_at = 1712345678.987654321, .started_at = 1712345679.5,
		};
		char *enc;
		size_t len;

		CHECK_EQ(proto_vm_encode(&vm2, &enc, &len), 0);
		check_pretty(enc);
		free(enc);
		proto_vm_clear(&vm2);
	}
}

/* Rate limits in vm.create's disks and nics, its balloon, vm.update's
 * changes and vm.stats. */
#define CREATE_ "{\"id\":1,\"op\":\"vm.create\",\"args\":{\"name\":\"a\",\"kernel\":\"/k\","
#define UPDATE_ "{\"id\":1,\"op\":\"vm.update\",\"args\":{\"name\":\"a\","
static void test_limits(void)
{
	struct proto_request req;
	struct proto_error err;
	json_t *d;

	CHECK_EQ(decode(CREATE_ "\"disks\":[{\"path\":\"/d\",\"bps\":1048576,\"iops\":100,"
	                "\"iops_burst\":50}],\"nics\":[{\"tap\":\"t0\",\"pps\":1000}],"
	                "\"balloon_mib\":0}}", &req, &err), 0);
	d = json_array_get(proto_arg_json(&req, "disks"), 0);
	CHECK_EQ(json_integer_value(json_object_get(d, "bps")), 1048576);
	CHECK_EQ(json_integer_value(json_object_get(d, "iops_burst")), 50);
	CHECK_EQ(proto_arg_int(&req, "balloon_mib", -1), 0);
	proto_request_done(&req);
	CHECK_EQ(decode(CREATE_ "\"disks\":[]}}", &req, &err), 0);
	CHECK_EQ(proto_arg_int(&req, "balloon_mib", -1), -1);     /* no balloon */
	CHECK(!proto_arg_bool(&req, "rng", false));
	proto_request_done(&req);
	CHECK_EQ(decode(CREATE_ "\"rng\":true}}", &req, &err), 0);
	CHECK(proto_arg_bool(&req, "rng", false));
	proto_request_done(&req);
	expect_error(CREATE_ "\"rng\":1}}", PROTO_ERR_BAD_REQUEST, "rng");
	CHECK_EQ(decode(CREATE_ "\"vsock\":4294967294}}", &req, &err), 0);
	CHECK_EQ(proto_arg_int(&req, "vsock", 0), 4294967294LL);
	proto_request_done(&req);
	/* the reserved CIDs 0-2 and VMADDR_CID_ANY */
	expect_error(CREATE_ "\"vsock\":2}}", PROTO_ERR_BAD_REQUEST, "vsock");
	expect_error(CREATE_ "\"vsock\":4294967295}}", PROTO_ERR_BAD_REQUEST, "vsock");
	expect_error(CREATE_ "\"vsock\":\"7\"}}", PROTO_ERR_BAD_REQUEST, "vsock");
	/* 0, negative, absurd, wrong type, a burst alone, a NIC's ops on a disk */
	expect_error(CREATE_ "\"disks\":[{\"path\":\"/d\",\"bps\":0}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(CREATE_ "\"disks\":[{\"path\":\"/d\",\"iops\":-5}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(CREATE_ "\"disks\":[{\"path\":\"/d\",\"bps\":1099511627777}]}}",
	             PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(CREATE_ "\"disks\":[{\"path\":\"/d\",\"bps\":\"1M\"}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(CREATE_ "\"disks\":[{\"path\":\"/d\",\"bps_burst\":4096}]}}",
	             PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(CREATE_ "\"disks\":[{\"path\":\"/d\",\"pps\":5}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(CREATE_ "\"nics\":[{\"tap\":\"t0\",\"iops\":5}]}}", PROTO_ERR_BAD_REQUEST, "nics");
	expect_error(CREATE_ "\"nics\":[{\"tap\":\"t0\",\"pps\":0}]}}", PROTO_ERR_BAD_REQUEST, "nics");
	expect_error(CREATE_ "\"balloon_mib\":-1}}", PROTO_ERR_BAD_REQUEST, "balloon_mib");
	expect_error(CREATE_ "\"balloon_mib\":99999999}}", PROTO_ERR_BAD_REQUEST, "balloon_mib");

	/* vm.update: null removes a limit; index in range, once */
	CHECK_EQ(decode(UPDATE_ "\"disks\":[{\"index\":1,\"bps\":4096,\"iops\":null}],"
	                "\"nics\":[{\"index\":0,\"pps_burst\":10}],\"balloon_mib\":64}}",
	                &req, &err), 0);
	d = json_array_get(proto_arg_json(&req, "disks"), 0);
	CHECK(json_is_null(json_object_get(d, "iops")));
	CHECK_EQ(proto_arg_int(&req, "balloon_mib", -1), 64);
	proto_request_done(&req);
	CHECK_EQ(decode(UPDATE_ "\"balloon_mib\":0}}", &req, &err), 0);
	proto_request_done(&req);
	expect_error(UPDATE_ "\"disks\":[{\"bps\":4096}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(UPDATE_ "\"disks\":[{\"index\":16,\"bps\":4096}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(UPDATE_ "\"nics\":[{\"index\":8,\"bps\":4096}]}}", PROTO_ERR_BAD_REQUEST, "nics");
	expect_error(UPDATE_ "\"disks\":[{\"index\":0,\"bps\":1},{\"index\":0,\"iops\":1}]}}",
	             PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(UPDATE_ "\"disks\":[{\"index\":0,\"bps\":0}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(UPDATE_ "\"disks\":[{\"index\":0,\"path\":\"/x\"}]}}", PROTO_ERR_BAD_REQUEST, "disks");
	expect_error(UPDATE_ "\"nics\":[{\"index\":0,\"iops\":3}]}}", PROTO_ERR_BAD_REQUEST, "nics");
	expect_error(UPDATE_ "\"balloon_mib\":-64}}", PROTO_ERR_BAD_REQUEST, "balloon_mib");
	expect_error("{\"id\":1,\"op\":\"vm.update\",\"args\":{}}", PROTO_ERR_BAD_REQUEST, "name");

	/* vm.stats: a name, or none for every visible VM */
	CHECK_EQ(decode("{\"id\":1,\"op\":\"vm.stats\"}", &req, &err), 0);
	CHECK(!proto_arg_str(&req, "name"));
	proto_request_done(&req);
	CHECK_EQ(decode("{\"id\":1,\"op\":\"vm.stats\",\"args\":{\"name\":\"a\"}}", &req, &err), 0);
	CHECK(!strcmp(proto_arg_str(&req, "name"), "a"));
	proto_request_done(&req);
	expect_error("{\"id\":1,\"op\":\"vm.stats\",\"args\":{\"name\":\"-x\"}}",
	             PROTO_ERR_BAD_REQUEST, "name");
}

int main(void)
{
	test_limits();
	test_decode_ok();
	test_decode_errors();
	test_error_id_echo();
	test_linebuf();
	test_base64();
	test_link();
	test_link_control();
	test_responses();
	test_client_builder();
	test_names();
	test_vm_json();
	test_listbuf();
	test_linebuf_max();
	test_scan();
	return check_result("test-proto");
}
