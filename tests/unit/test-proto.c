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
	free(line);

	m = (struct proto_link_msg){ .type = PROTO_LINK_EXIT, .status = 3 };
	strcpy(m.reason, "triple-fault");
	CHECK_EQ(proto_link_encode(&m, &line, &n), 0);
	CHECK_EQ(proto_link_decode(line, n, &out), 0);
	CHECK(out.type == PROTO_LINK_EXIT && out.status == 3 && !strcmp(out.reason, "triple-fault"));
	free(line);

	CHECK_EQ(proto_link_decode("{\"msg\":\"booted\"}", 16, &out), 0);
	CHECK_EQ(out.type, PROTO_LINK_BOOTED);
	CHECK_EQ(proto_link_decode("{\"msg\":\"bogus\"}", 15, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("{\"msg\":\"console\",\"data\":\"!!\"}", 29, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("{\"msg\":\"exit\",\"status\":\"x\"}", 27, &out), -EINVAL);
	CHECK_EQ(proto_link_decode("nope", 4, &out), -EINVAL);
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
		.restart = strdup("no"), .pid = 42, .created_at = 1.5,
	}, back;
	json_t *j = proto_vm_to_json(&vm);

	CHECK(j != NULL);
	CHECK(json_is_null(json_object_get(j, "initrd")));
	CHECK(json_is_null(json_object_get(j, "started_at")));
	CHECK(json_is_null(json_object_get(j, "exit_status")));
	CHECK_EQ(proto_vm_from_json(j, &back), 0);
	CHECK(!strcmp(back.name, "v") && back.state == PROTO_VM_RUNNING && back.pid == 42);
	CHECK(back.vcpus == 2 && back.mem_mib == 256 && back.owner_uid == 1000);
	proto_vm_clear(&back);
	proto_vm_clear(&vm);
	json_decref(j);
}

int main(void)
{
	test_decode_ok();
	test_decode_errors();
	test_error_id_echo();
	test_linebuf();
	test_base64();
	test_link();
	test_responses();
	test_client_builder();
	test_names();
	test_vm_json();
	return check_result("test-proto");
}
