/* SPDX-License-Identifier: MIT */
/* Names, the top level of request decoding, client builders, responses. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/proto-internal.h"

static const char *const op_names[] = {
#define PROTO_OP_NAME_(id, name) [PROTO_OP_##id] = name,
	PROTO_OPS(PROTO_OP_NAME_)
#undef PROTO_OP_NAME_
};

static const char *const err_names[] = {
	[PROTO_ERR_NONE] = "none",
#define PROTO_ERR_NAME_(id, name) [PROTO_ERR_##id] = name,
	PROTO_ERRORS(PROTO_ERR_NAME_)
#undef PROTO_ERR_NAME_
};

static const char *const state_names[] = {
#define PROTO_STATE_NAME_(id, name) [PROTO_VM_##id] = name,
	PROTO_VM_STATES(PROTO_STATE_NAME_)
#undef PROTO_STATE_NAME_
};

static const char *const restart_names[] = {
#define PROTO_RESTART_NAME_(id, name) [PROTO_RESTART_##id] = name,
	PROTO_RESTART_POLICIES(PROTO_RESTART_NAME_)
#undef PROTO_RESTART_NAME_
};

static int name_lookup(const char *const *names, int n, int first, const char *name)
{
	if (!name)
		return -ENOENT;
	for (int i = first; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return i;
	return -ENOENT;
}

const char *proto_op_name(enum proto_op op)
{
	return (unsigned)op < PROTO_OP_COUNT_ ? op_names[op] : "?";
}

int proto_op_from_name(const char *name)
{
	return name_lookup(op_names, PROTO_OP_COUNT_, 0, name);
}

const char *proto_err_name(enum proto_err code)
{
	return (unsigned)code < PROTO_ERR_COUNT_ ? err_names[code] : "internal";
}

int proto_err_from_name(const char *name)
{
	return name_lookup(err_names, PROTO_ERR_COUNT_, 1, name);
}

const char *proto_vm_state_name(enum proto_vm_state s)
{
	return (unsigned)s < PROTO_VM_STATE_COUNT_ ? state_names[s] : "?";
}

int proto_vm_state_from_name(const char *name)
{
	return name_lookup(state_names, PROTO_VM_STATE_COUNT_, 0, name);
}

const char *proto_restart_name(enum proto_restart p)
{
	return (unsigned)p < PROTO_RESTART_COUNT_ ? restart_names[p] : "?";
}

int proto_restart_from_name(const char *name)
{
	return name_lookup(restart_names, PROTO_RESTART_COUNT_, 0, name);
}

int proto_error_set(struct proto_error *err, enum proto_err code,
                    const char *field, const char *fmt, ...)
{
	va_list ap;

	err->code = code;
	snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* ---- request decoding ---------------------------------------------------- */

static void request_set_id(struct proto_request *req, json_t *root)
{
	json_t *id = json_object_get(root, "id");

	if (id && (json_is_integer(id) || json_is_string(id)))
		req->id = id;
}

static int request_check_top(json_t *root, struct proto_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(root, key, v) {
		if (strcmp(key, "id") && strcmp(key, "op") && strcmp(key, "args"))
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
			                       "unknown field '%.40s' in request; allowed: id, op, args",
			                       key);
	}
	v = json_object_get(root, "id");
	if (!v)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "id",
		                       "missing field 'id': every request needs an integer or string id");
	if (!json_is_integer(v) && !json_is_string(v))
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "id",
		                       "field 'id' must be an integer or a string");
	return 0;
}

static int request_find_op(json_t *root, struct proto_error *err)
{
	json_t *v = json_object_get(root, "op");
	int op;

	if (!v)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "op",
		                       "missing field 'op': name the operation, e.g. \"vm.list\"");
	if (!json_is_string(v))
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "op",
		                       "field 'op' must be a string");
	op = proto_op_from_name(json_string_value(v));
	if (op < 0)
		return proto_error_set(err, PROTO_ERR_UNKNOWN_OP, "op",
		                       "unknown operation '%.64s'; see docs/protocol.md",
		                       json_string_value(v));
	return op;
}

static int request_parse(const char *line, size_t len, json_t **ret_root,
                         struct proto_error *err)
{
	json_error_t jerr;
	json_t *root;

	if (len > PROTO_MAX_LINE)
		return proto_error_set(err, PROTO_ERR_TOO_LARGE, NULL,
		                       "request longer than %d bytes", PROTO_MAX_LINE);
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root)
		return proto_error_set(err, PROTO_ERR_BAD_JSON, NULL,
		                       "malformed JSON at line %d column %d: %s; send one JSON object per line",
		                       jerr.line, jerr.column, jerr.text);
	if (!json_is_object(root)) {
		json_decref(root);
		return proto_error_set(err, PROTO_ERR_BAD_JSON, NULL,
		                       "a request must be a JSON object, e.g. {\"id\":1,\"op\":\"version\"}");
	}
	*ret_root = root;
	return 0;
}

int proto_request_decode(const char *line, size_t len,
                         struct proto_request *ret_req, struct proto_error *err)
{
	struct proto_request req = { .id = json_null() };
	json_t *root = NULL;
	int r;

	err->code = PROTO_ERR_NONE;
	err->message[0] = err->field[0] = '\0';
	r = request_parse(line, len, &root, err);
	if (r < 0)
		goto out;
	req.root = root;
	request_set_id(&req, root);
	r = request_check_top(root, err);
	if (r < 0)
		goto out;
	r = request_find_op(root, err);
	if (r < 0)
		goto out;
	req.op = r;
	r = proto_args_check(req.op, root, &req.args, err);
out:
	*ret_req = req;
	return r < 0 ? r : 0;
}

void proto_request_done(struct proto_request *req)
{
	json_decref(req->root);
	req->root = req->args = NULL;
	req->id = NULL;
}

const char *proto_arg_str(const struct proto_request *req, const char *key)
{
	return json_string_value(json_object_get(req->args, key));
}

int64_t proto_arg_int(const struct proto_request *req, const char *key, int64_t def)
{
	json_t *v = json_object_get(req->args, key);

	return json_is_integer(v) ? json_integer_value(v) : def;
}

bool proto_arg_bool(const struct proto_request *req, const char *key, bool def)
{
	json_t *v = json_object_get(req->args, key);

	return json_is_boolean(v) ? json_is_true(v) : def;
}

json_t *proto_arg_json(const struct proto_request *req, const char *key)
{
	return json_object_get(req->args, key);
}

/* ---- client builders ----------------------------------------------------- */

json_t *proto_request_new(json_int_t id, enum proto_op op)
{
	return json_pack("{s:I, s:s, s:{}}", "id", id, "op", proto_op_name(op), "args");
}

int proto_request_set_json(json_t *req, const char *key, json_t *value)
{
	json_t *args = json_object_get(req, "args");

	if (!value || !args || json_object_set_new(args, key, value) < 0)
		return -ENOMEM;
	return 0;
}

int proto_request_set_str(json_t *req, const char *key, const char *value)
{
	return proto_request_set_json(req, key, json_string(value));
}

int proto_request_set_int(json_t *req, const char *key, json_int_t value)
{
	return proto_request_set_json(req, key, json_integer(value));
}

int proto_request_set_bool(json_t *req, const char *key, bool value)
{
	return proto_request_set_json(req, key, json_boolean(value));
}

/* ---- responses and events ------------------------------------------------ */

json_t *proto_response_ok(json_t *id, json_t *result)
{
	if (!result)
		result = json_object();
	return json_pack("{s:O, s:b, s:o}", "id", id ? id : json_null(), "ok", 1,
	                 "result", result);
}

json_t *proto_response_error(json_t *id, const struct proto_error *err)
{
	json_t *e = json_pack("{s:s, s:s}", "code", proto_err_name(err->code),
	                      "message", err->message);

	if (e && err->field[0] && json_object_set_new(e, "field", json_string(err->field)) < 0) {
		json_decref(e);
		return NULL;
	}
	return json_pack("{s:O, s:b, s:o}", "id", id ? id : json_null(), "ok", 0,
	                 "error", e);
}

json_t *proto_event_vm(const char *vm, enum proto_vm_state state,
                       const char *reason, double time)
{
	return json_pack("{s:s, s:s, s:s, s:s?, s:f}", "event", "vm", "vm", vm,
	                 "state", proto_vm_state_name(state), "reason", reason,
	                 "time", time);
}

json_t *proto_event_log(const char *vm, const void *data, size_t len)
{
	/* Console bytes need not be UTF-8; json_stringn_nocheck would emit
	 * invalid JSON, so non-UTF-8 bytes become U+FFFD. */
	json_t *s = proto_json_string_lossy(data, len);

	return json_pack("{s:s, s:s, s:o}", "event", "log", "vm", vm, "data", s);
}

static int response_fill_error(json_t *e, struct proto_response *r)
{
	int code;

	if (!json_is_object(e))
		return -EINVAL;
	r->err_name = json_string_value(json_object_get(e, "code"));
	r->err_message = json_string_value(json_object_get(e, "message"));
	r->err_field = json_string_value(json_object_get(e, "field"));
	if (!r->err_name || !r->err_message)
		return -EINVAL;
	code = proto_err_from_name(r->err_name);
	r->err_code = code < 0 ? PROTO_ERR_INTERNAL : code;
	return 0;
}

static int response_fill(json_t *root, struct proto_response *r)
{
	json_t *ok;

	r->id = json_object_get(root, "id");
	if (!r->id) {
		r->event = json_string_value(json_object_get(root, "event"));
		r->is_event = true;
		return r->event ? 0 : -EINVAL;
	}
	ok = json_object_get(root, "ok");
	if (!json_is_boolean(ok))
		return -EINVAL;
	r->ok = json_is_true(ok);
	if (!r->ok)
		return response_fill_error(json_object_get(root, "error"), r);
	r->result = json_object_get(root, "result");
	return json_is_object(r->result) ? 0 : -EINVAL;
}

int proto_response_parse(const char *line, size_t len, struct proto_response *ret)
{
	struct proto_response r = { 0 };
	int rc;

	r.root = json_loadb(line, len, 0, NULL);
	if (!json_is_object(r.root)) {
		json_decref(r.root);
		return -EINVAL;
	}
	rc = response_fill(r.root, &r);
	if (rc < 0) {
		json_decref(r.root);
		return rc;
	}
	*ret = r;
	return 0;
}

void proto_response_done(struct proto_response *resp)
{
	json_decref(resp->root);
	memset(resp, 0, sizeof(*resp));
}

/* ---- list responses from pre-encoded elements ---------------------------- */

static void listbuf_put(struct proto_listbuf *lb, const char *s, size_t n)
{
	size_t cap;
	char *p;

	if (lb->error)
		return;
	if (lb->len + n > lb->cap) {
		cap = lb->cap ? lb->cap : 4096;
		while (cap < lb->len + n)
			cap *= 2;
		p = realloc(lb->buf, cap);
		if (!p) {
			lb->error = -ENOMEM;
			return;
		}
		lb->buf = p;
		lb->cap = cap;
	}
	memcpy(lb->buf + lb->len, s, n);
	lb->len += n;
}

static void listbuf_puts(struct proto_listbuf *lb, const char *s)
{
	listbuf_put(lb, s, strlen(s));
}

static void listbuf_put_json(struct proto_listbuf *lb, const json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (!s) {
		lb->error = lb->error ?: -ENOMEM;
		return;
	}
	listbuf_put(lb, s, strlen(s));
	free(s);
}

int proto_listbuf_begin(struct proto_listbuf *lb, const json_t *id, const char *key,
                        size_t size_hint)
{
	json_t *k = json_string(key);

	memset(lb, 0, sizeof(*lb));
	lb->buf = malloc(size_hint + 64);
	lb->cap = lb->buf ? size_hint + 64 : 0;
	/* the key order of proto_response_ok: id, ok, result */
	listbuf_puts(lb, "{\"id\":");
	listbuf_put_json(lb, id ? id : json_null());
	listbuf_puts(lb, ",\"ok\":true,\"result\":{");
	if (k)
		listbuf_put_json(lb, k);
	else
		lb->error = -ENOMEM;
	json_decref(k);
	listbuf_puts(lb, ":[");
	return lb->error;
}

void proto_listbuf_add(struct proto_listbuf *lb, const char *elem, size_t len)
{
	if (lb->count++ > 0)
		listbuf_put(lb, ",", 1);
	listbuf_put(lb, elem, len);
}

int proto_listbuf_finish(struct proto_listbuf *lb, char **ret_buf, size_t *ret_len)
{
	int r;

	listbuf_puts(lb, "]}}\n");
	r = lb->error;
	if (r < 0) {
		free(lb->buf);
	} else {
		*ret_buf = lb->buf;
		*ret_len = lb->len;
	}
	memset(lb, 0, sizeof(*lb));
	return r;
}

int proto_encode(const json_t *msg, char **ret_buf, size_t *ret_len)
{
	char *s = json_dumps(msg, JSON_COMPACT);
	size_t n;
	char *buf;

	if (!s)
		return -ENOMEM;
	n = strlen(s);
	if (json_object_get(msg, "op") && n > PROTO_MAX_LINE) {
		free(s);
		return -EMSGSIZE;
	}
	buf = realloc(s, n + 2);
	if (!buf) {
		free(s);
		return -ENOMEM;
	}
	buf[n] = '\n';
	buf[n + 1] = '\0';
	*ret_buf = buf;
	*ret_len = n + 1;
	return 0;
}
