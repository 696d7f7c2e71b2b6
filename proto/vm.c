/* SPDX-License-Identifier: MIT */
/* The VM object, names, signals, and lossy UTF-8 strings. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "proto/proto.h"
#include "proto/proto-internal.h"

bool proto_vm_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		             (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return false;
	}
	return true;
}

static const struct { int sig; const char *name; } signals[] = {
	{ SIGHUP, "SIGHUP" }, { SIGINT, "SIGINT" }, { SIGQUIT, "SIGQUIT" },
	{ SIGILL, "SIGILL" }, { SIGTRAP, "SIGTRAP" }, { SIGABRT, "SIGABRT" },
	{ SIGBUS, "SIGBUS" }, { SIGFPE, "SIGFPE" }, { SIGKILL, "SIGKILL" },
	{ SIGUSR1, "SIGUSR1" }, { SIGSEGV, "SIGSEGV" }, { SIGUSR2, "SIGUSR2" },
	{ SIGPIPE, "SIGPIPE" }, { SIGALRM, "SIGALRM" }, { SIGTERM, "SIGTERM" },
	{ SIGCHLD, "SIGCHLD" }, { SIGCONT, "SIGCONT" }, { SIGSTOP, "SIGSTOP" },
	{ SIGTSTP, "SIGTSTP" }, { SIGSYS, "SIGSYS" }, { SIGXCPU, "SIGXCPU" },
	{ SIGXFSZ, "SIGXFSZ" }, { SIGWINCH, "SIGWINCH" },
};

int proto_signal_from_name(const char *name)
{
	char *end;
	long n;

	if (name[0] >= '0' && name[0] <= '9') {
		n = strtol(name, &end, 10);
		return (*end || n < 1 || n > 64) ? -ENOENT : (int)n;
	}
	if (!strncmp(name, "SIG", 3))
		name += 3;
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (!strcmp(signals[i].name + 3, name))
			return signals[i].sig;
	return -ENOENT;
}

bool proto_signal_ends_process(int sig)
{
	return sig != SIGCONT && sig != SIGSTOP && sig != SIGTSTP && sig != SIGCHLD &&
	       sig != SIGWINCH && sig != SIGURG;
}

const int proto_vmm_stop_signals[] = {
	SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2, SIGALRM, 0
};

bool proto_signal_worker_honours(int sig)
{
	if (sig == SIGKILL || sig == SIGSTOP || sig == SIGCONT)
		return true;
	for (const int *s = proto_vmm_stop_signals; *s; s++)
		if (*s == sig)
			return true;
	return false;
}

int proto_exit_signal(int status)
{
	return status > 128 && status < 128 + 65 ? status - 128 : 0;
}

const char *proto_signal_name(int sig)
{
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		if (signals[i].sig == sig)
			return signals[i].name;
	return "SIG?";
}

/* Length of a valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	size_t len;
	uint32_t cp;

	if (s[0] < 0x80)
		return s[0] ? 1 : 0;
	if ((s[0] & 0xe0) == 0xc0)
		len = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f;
	else if ((s[0] & 0xf8) == 0xf0)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	/* reject overlong forms, surrogates and values past U+10FFFF */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

json_t *proto_json_string_lossy(const void *data, size_t len)
{
	const unsigned char *s = data;
	char *buf = malloc(len * 3 + 1);
	size_t o = 0;
	json_t *j;

	if (!buf)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t k = utf8_seq(s + i, len - i);

		if (k == 0) {
			memcpy(buf + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memcpy(buf + o, s + i, k);
		o += k;
		i += k;
	}
	j = json_stringn_nocheck(buf, o);
	free(buf);
	return j;
}

void proto_vm_clear(struct proto_vm *vm)
{
	free(vm->name);
	free(vm->kernel);
	free(vm->initrd);
	free(vm->cmdline);
	free(vm->exit_reason);
	json_decref(vm->disks);
	json_decref(vm->nics);
	json_decref(vm->labels);
	json_decref(vm->pools);
	memset(vm, 0, sizeof(*vm));
}

int proto_uuid_new(char ret[static PROTO_UUID_LEN + 1])
{
	unsigned char b[16];
	char *p = ret;

	if (getrandom(b, sizeof(b), 0) != (ssize_t)sizeof(b))
		return -EAGAIN;
	b[6] = (b[6] & 0x0f) | 0x40;    /* version 4 */
	b[8] = (b[8] & 0x3f) | 0x80;    /* RFC 4122 variant */
	for (int i = 0; i < 16; i++) {
		p += sprintf(p, "%02x", b[i]);
		if (i == 3 || i == 5 || i == 7 || i == 9)
			*p++ = '-';
	}
	return 0;
}

json_t *proto_vm_to_json(const struct proto_vm *vm)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:s?, s:s, s:i, s:I, s:O?, s:O?, s:O?,"
	                      " s:s, s:i, s:I, s:f, s:f}",
	                      "name", vm->name, "state", proto_vm_state_name(vm->state),
	                      "owner_uid", (json_int_t)vm->owner_uid, "kernel", vm->kernel,
	                      "initrd", vm->initrd, "cmdline", vm->cmdline,
	                      "vcpus", vm->vcpus, "mem_mib", (json_int_t)vm->mem_mib,
	                      "disks", vm->disks, "nics", vm->nics, "labels", vm->labels,
	                      "restart", proto_restart_name(vm->restart),
	                      "restart_max", vm->restart_max,
	                      "pid", (json_int_t)vm->pid,
	                      "created_at", vm->created_at, "started_at", vm->started_at);
	int r = 0;

	if (!o)
		return NULL;
	if (vm->pid == 0)
		r |= json_object_set_new(o, "pid", json_null());
	if (vm->started_at == 0)
		r |= json_object_set_new(o, "started_at", json_null());
	r |= json_object_set_new(o, "exit_status",
	                         vm->has_exit_status ? json_integer(vm->exit_status) : json_null());
	r |= json_object_set_new(o, "exit_reason",
	                         vm->exit_reason ? json_string(vm->exit_reason) : json_null());
	r |= json_object_set_new(o, "pools", vm->pools ? json_incref(vm->pools) : json_array());
	r |= json_object_set_new(o, "autostart", json_boolean(vm->autostart));
	if (vm->uuid[0])
		r |= json_object_set_new(o, "uuid", json_string(vm->uuid));
	r |= json_object_set_new(o, "balloon_mib", vm->has_balloon ?
	                         json_integer(vm->balloon_mib) : json_null());
	r |= json_object_set_new(o, "rng", json_boolean(vm->has_rng));
	r |= json_object_set_new(o, "vsock", vm->vsock_cid ? json_integer(vm->vsock_cid) : json_null());
	if (r) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int proto_vm_encode(const struct proto_vm *vm, char **ret_buf, size_t *ret_len)
{
	json_t *o = proto_vm_to_json(vm);
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (!s)
		return -ENOMEM;
	*ret_buf = s;
	*ret_len = strlen(s);
	return 0;
}

static int copy_str(const char *s, char **ret)
{
	*ret = s ? strdup(s) : NULL;
	return (s && !*ret) ? -ENOMEM : 0;
}

static int copy_json(json_t *j, json_t **ret)
{
	*ret = j ? json_deep_copy(j) : NULL;
	return (j && !*ret) ? -ENOMEM : 0;
}

int proto_vm_copy(const struct proto_vm *vm, struct proto_vm *ret_vm)
{
	struct proto_vm c = *vm;
	int r;

	c.name = c.kernel = c.initrd = c.cmdline = c.exit_reason = NULL;
	c.disks = c.nics = c.labels = c.pools = NULL;
	r = copy_str(vm->name, &c.name);
	r = r ?: copy_str(vm->kernel, &c.kernel);
	r = r ?: copy_str(vm->initrd, &c.initrd);
	r = r ?: copy_str(vm->cmdline, &c.cmdline);
	r = r ?: copy_str(vm->exit_reason, &c.exit_reason);
	r = r ?: copy_json(vm->disks, &c.disks);
	r = r ?: copy_json(vm->nics, &c.nics);
	r = r ?: copy_json(vm->labels, &c.labels);
	r = r ?: copy_json(vm->pools, &c.pools);
	if (r < 0) {
		proto_vm_clear(&c);
		return r;
	}
	*ret_vm = c;
	return 0;
}

static int dup_str(json_t *o, const char *key, bool nullable, char **ret)
{
	json_t *v = json_object_get(o, key);

	if (nullable && (!v || json_is_null(v))) {
		*ret = NULL;
		return 0;
	}
	if (!json_is_string(v))
		return -EINVAL;
	*ret = strdup(json_string_value(v));
	return *ret ? 0 : -ENOMEM;
}

static int64_t get_int(json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static double get_real(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

int proto_vm_from_json(const json_t *cobj, struct proto_vm *ret_vm)
{
	json_t *o = (json_t *)cobj;
	struct proto_vm vm = { 0 };
	json_t *es = json_object_get(o, "exit_status");
	const char *uuid = json_string_value(json_object_get(o, "uuid"));
	int r, st, pol;

	if (!json_is_object(o))
		return -EINVAL;
	st = proto_vm_state_from_name(json_string_value(json_object_get(o, "state")));
	pol = proto_restart_from_name(json_string_value(json_object_get(o, "restart")));
	if (st < 0 || pol < 0)
		return -EINVAL;
	vm.state = st;
	vm.restart = pol;
	r = dup_str(o, "name", false, &vm.name);
	r = r ?: dup_str(o, "kernel", false, &vm.kernel);
	r = r ?: dup_str(o, "initrd", true, &vm.initrd);
	r = r ?: dup_str(o, "cmdline", false, &vm.cmdline);
	r = r ?: dup_str(o, "exit_reason", true, &vm.exit_reason);
	if (r < 0) {
		proto_vm_clear(&vm);
		return r;
	}
	vm.owner_uid = get_int(o, "owner_uid");
	vm.vcpus = get_int(o, "vcpus");
	vm.mem_mib = get_int(o, "mem_mib");
	vm.has_balloon = json_is_integer(json_object_get(o, "balloon_mib"));
	vm.balloon_mib = get_int(o, "balloon_mib");
	vm.has_rng = json_is_true(json_object_get(o, "rng"));
	vm.vsock_cid = (uint32_t)get_int(o, "vsock");
	vm.restart_max = get_int(o, "restart_max");
	vm.autostart = json_is_true(json_object_get(o, "autostart"));
	vm.pid = get_int(o, "pid");
	vm.created_at = get_real(o, "created_at");
	vm.started_at = get_real(o, "started_at");
	vm.has_exit_status = json_is_integer(es);
	vm.exit_status = get_int(o, "exit_status");
	vm.disks = json_incref(json_object_get(o, "disks"));
	vm.nics = json_incref(json_object_get(o, "nics"));
	vm.labels = json_incref(json_object_get(o, "labels"));
	vm.pools = json_incref(json_object_get(o, "pools"));
	if (uuid && strlen(uuid) == PROTO_UUID_LEN)
		memcpy(vm.uuid, uuid, PROTO_UUID_LEN + 1);
	*ret_vm = vm;
	return 0;
}
