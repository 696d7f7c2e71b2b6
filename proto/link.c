/* SPDX-License-Identifier: MIT */
/* Worker link messages (mvmd <-> mvm-vmm), same framing as the client
 * protocol with "msg" naming the message. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static const char *const link_names[] = {
#define PROTO_LINK_NAME_(id, name) [PROTO_LINK_##id] = name,
	PROTO_LINK_MSGS(PROTO_LINK_NAME_)
#undef PROTO_LINK_NAME_
};

const char *proto_link_name(enum proto_link_type t)
{
	return (unsigned)t < PROTO_LINK_COUNT_ ? link_names[t] : "?";
}

static int link_type(const char *name)
{
	for (int i = 0; name && i < PROTO_LINK_COUNT_; i++)
		if (!strcmp(link_names[i], name))
			return i;
	return -EINVAL;
}

static int link_decode_data(json_t *root, struct proto_link_msg *m)
{
	json_t *d = json_object_get(root, "data");
	size_t n;
	int r;

	if (!json_is_string(d))
		return -EINVAL;
	n = json_string_length(d);
	if (n > PROTO_BASE64_ENC_LEN(PROTO_LINK_CONSOLE_MAX))
		return -EINVAL;
	m->data = malloc(PROTO_BASE64_DEC_MAX(n));
	if (!m->data)
		return -ENOMEM;
	r = proto_base64_decode(json_string_value(d), n, m->data, &m->data_len);
	if (r < 0) {
		free(m->data);
		m->data = NULL;
	}
	return r;
}

static int link_decode_exit(json_t *root, struct proto_link_msg *m)
{
	json_t *st = json_object_get(root, "status");
	json_t *rs = json_object_get(root, "reason");

	if (!json_is_integer(st) || json_integer_value(st) < 0 || json_integer_value(st) > 255)
		return -EINVAL;
	m->status = json_integer_value(st);
	if (rs && !json_is_string(rs) && !json_is_null(rs))
		return -EINVAL;
	if (json_is_string(rs))
		snprintf(m->reason, sizeof(m->reason), "%s", json_string_value(rs));
	return 0;
}

static int link_decode_hello(json_t *root, struct proto_link_msg *m)
{
	json_t *pid = json_object_get(root, "pid");
	json_t *st = json_object_get(root, "start_time");
	json_t *booted = json_object_get(root, "booted");
	json_t *name = json_object_get(root, "name");

	if (!json_is_integer(pid) || json_integer_value(pid) <= 0 ||
	    json_integer_value(pid) > INT32_MAX || !json_is_integer(st) ||
	    json_integer_value(st) < 0 || !json_is_boolean(booted) ||
	    (name && !json_is_string(name)))
		return -EINVAL;
	if (name && json_string_length(name) >= sizeof(m->name))
		return -EINVAL;
	m->pid = json_integer_value(pid);
	m->start_time = (uint64_t)json_integer_value(st);
	m->booted = json_is_true(booted);
	if (name)
		snprintf(m->name, sizeof(m->name), "%s", json_string_value(name));
	return 0;
}

static int link_decode_seq(json_t *root, struct proto_link_msg *m)
{
	json_t *seq = json_object_get(root, "seq");

	if (!json_is_integer(seq) || json_integer_value(seq) < 0)
		return -EINVAL;
	m->seq = json_integer_value(seq);
	return 0;
}

/* The worker's SIGSYS handler writes this line itself (vmm/sandbox.c);
 * the number is checked here, its name resolved by mvmd. */
static int link_decode_seccomp(json_t *root, struct proto_link_msg *m)
{
	json_t *nr = json_object_get(root, "nr");

	if (!json_is_integer(nr) || json_integer_value(nr) < 0 ||
	    json_integer_value(nr) > INT32_MAX)
		return -EINVAL;
	m->nr = json_integer_value(nr);
	return 0;
}

int proto_link_decode(const char *line, size_t len, struct proto_link_msg *ret)
{
	struct proto_link_msg m = { 0 };
	json_t *root;
	int r;

	if (len > PROTO_MAX_LINE)
		return -EINVAL;
	root = json_loadb(line, len, 0, NULL);
	if (!json_is_object(root)) {
		r = -EINVAL;
		goto out;
	}
	r = link_type(json_string_value(json_object_get(root, "msg")));
	if (r < 0)
		goto out;
	m.type = r;
	r = 0;
	if (m.type == PROTO_LINK_CONSOLE || m.type == PROTO_LINK_CONSOLE_IN)
		r = link_decode_data(root, &m);
	else if (m.type == PROTO_LINK_EXIT)
		r = link_decode_exit(root, &m);
	else if (m.type == PROTO_LINK_HELLO)
		r = link_decode_hello(root, &m);
	else if (m.type == PROTO_LINK_PING || m.type == PROTO_LINK_PONG)
		r = link_decode_seq(root, &m);
	else if (m.type == PROTO_LINK_SECCOMP)
		r = link_decode_seccomp(root, &m);
	if (r == 0)
		*ret = m;
out:
	json_decref(root);
	return r;
}

void proto_link_clear(struct proto_link_msg *msg)
{
	free(msg->data);
	msg->data = NULL;
	msg->data_len = 0;
}

static json_t *link_to_json(const struct proto_link_msg *m)
{
	json_t *o = json_pack("{s:s}", "msg", proto_link_name(m->type));
	char *b64;

	if (!o)
		return NULL;
	if (m->type == PROTO_LINK_EXIT) {
		if (json_object_set_new(o, "status", json_integer(m->status)) < 0 ||
		    (m->reason[0] && json_object_set_new(o, "reason", json_string(m->reason)) < 0))
			goto fail;
	} else if (m->type == PROTO_LINK_HELLO) {
		if (json_object_set_new(o, "pid", json_integer(m->pid)) < 0 ||
		    json_object_set_new(o, "start_time", json_integer((json_int_t)m->start_time)) < 0 ||
		    json_object_set_new(o, "booted", json_boolean(m->booted)) < 0 ||
		    json_object_set_new(o, "name", json_string(m->name)) < 0)
			goto fail;
	} else if (m->type == PROTO_LINK_PING || m->type == PROTO_LINK_PONG) {
		if (json_object_set_new(o, "seq", json_integer(m->seq)) < 0)
			goto fail;
	} else if (m->type == PROTO_LINK_SECCOMP) {
		if (json_object_set_new(o, "nr", json_integer(m->nr)) < 0)
			goto fail;
	} else if (m->type == PROTO_LINK_CONSOLE || m->type == PROTO_LINK_CONSOLE_IN) {
		b64 = malloc(PROTO_BASE64_ENC_LEN(m->data_len) + 1);
		if (!b64)
			goto fail;
		proto_base64_encode(m->data, m->data_len, b64);
		if (json_object_set_new(o, "data", json_string(b64)) < 0) {
			free(b64);
			goto fail;
		}
		free(b64);
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

int proto_link_encode_console(const void *data, size_t len, char *buf, size_t size)
{
	static const char head[] = "{\"msg\":\"console\",\"data\":\"";
	static const char tail[] = "\"}\n";
	size_t n = sizeof(head) - 1 + PROTO_BASE64_ENC_LEN(len) + sizeof(tail) - 1;

	if (len > PROTO_LINK_CONSOLE_MAX)
		return -EMSGSIZE;
	if (n + 1 > size)               /* base64's NUL, overwritten by the tail */
		return -ENOBUFS;
	memcpy(buf, head, sizeof(head) - 1);
	proto_base64_encode(data, len, buf + sizeof(head) - 1);
	memcpy(buf + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
	return (int)n;
}

int proto_link_encode(const struct proto_link_msg *msg, char **ret_buf, size_t *ret_len)
{
	json_t *o;
	int r;

	if ((msg->type == PROTO_LINK_CONSOLE || msg->type == PROTO_LINK_CONSOLE_IN) &&
	    msg->data_len > PROTO_LINK_CONSOLE_MAX)
		return -EMSGSIZE;
	o = link_to_json(msg);
	if (!o)
		return -ENOMEM;
	r = proto_encode(o, ret_buf, ret_len);
	json_decref(o);
	return r;
}
