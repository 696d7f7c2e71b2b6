/* SPDX-License-Identifier: MIT */
/* VM lifecycle commands: create, start, stop, kill, rm. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "util/util.h"

/* A size (util_parse_size: MiB when no unit is given), a whole number of
 * MiB: "256", "256M", "1.5G", "2048K". */
static int parse_mem(const char *s, long long *ret_mib)
{
	uint64_t b;
	int r = util_parse_size(s, 1 << 20, &b);

	if (r < 0)
		return r;
	if (b == 0 || b % (1 << 20))
		return -EINVAL;
	if ((b >> 20) > LLONG_MAX)
		return -ERANGE;
	*ret_mib = (long long)(b >> 20);
	return 0;
}

/* The daemon resolves paths in its own cwd, so send absolute ones. */
static json_t *abs_path(const char *p)
{
	char cwd[PATH_MAX];
	char *s;
	json_t *j;

	if (p[0] == '/')
		return json_string(p);
	if (!getcwd(cwd, sizeof(cwd)) || asprintf(&s, "%s/%s", cwd, p) < 0)
		return NULL;
	j = json_string(s);
	free(s);
	return j;
}

static int add_disk(json_t *disks, const char *spec)
{
	char *path = strdup(spec);
	char *comma = path ? strrchr(path, ',') : NULL;
	bool ro = false;
	json_t *p;

	if (!path)
		return -ENOMEM;
	if (comma && !strcmp(comma, ",ro")) {
		*comma = '\0';
		ro = true;
	} else if (comma && !strcmp(comma, ",rw")) {
		*comma = '\0';
	}
	p = *path ? abs_path(path) : NULL;
	free(path);
	if (!p)
		return -EINVAL;
	json_array_append_new(disks, json_pack("{s:o, s:b}", "path", p, "readonly", ro));
	return 0;
}

/* tap=IF[,mac=M] */
static int add_nic(json_t *nics, const char *spec)
{
	char *s = strdup(spec), *save = NULL, *tok;
	json_t *nic = json_object();
	int r = 0;

	if (!s || !nic) {
		free(s);
		json_decref(nic);
		return -ENOMEM;
	}
	for (tok = strtok_r(s, ",", &save); tok && !r; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "tap=", 4) && tok[4])
			json_object_set_new(nic, "tap", json_string(tok + 4));
		else if (!strncmp(tok, "mac=", 4) && tok[4])
			json_object_set_new(nic, "mac", json_string(tok + 4));
		else
			r = -EINVAL;
	}
	free(s);
	if (!r && !json_object_get(nic, "tap"))
		r = -EINVAL;
	if (r) {
		json_decref(nic);
		return r;
	}
	json_array_append_new(nics, nic);
	return 0;
}

static int add_label(json_t *labels, const char *kv)
{
	const char *eq = strchr(kv, '=');
	char *k;

	if (!eq || eq == kv)
		return -EINVAL;
	k = strndup(kv, (size_t)(eq - kv));
	if (!k)
		return -ENOMEM;
	json_object_set_new(labels, k, json_string(eq + 1));
	free(k);
	return 0;
}

/* no | on-failure[:N] | always */
static int parse_restart(json_t *req, const char *s)
{
	uint64_t max = 0;

	if (!strncmp(s, "on-failure:", 11)) {
		if (util_parse_uint(s + 11, 0, INT_MAX, &max) < 0)
			return -EINVAL;
		s = "on-failure";
	} else if (strcmp(s, "no") && strcmp(s, "on-failure") && strcmp(s, "always")) {
		return -EINVAL;
	}
	if (proto_request_set_str(req, "restart", s) < 0 ||
	    proto_request_set_int(req, "restart_max", (json_int_t)max) < 0)
		return -ENOMEM;
	return 0;
}

/* Prints the VM a lifecycle call returned: JSON, or "NAME: STATE (reason)". */
static int print_vm_result(struct ctl *c, json_t *res)
{
	json_t *vm = json_object_get(res, "vm");
	const char *reason = json_string_value(json_object_get(vm, "exit_reason"));

	if (c->json)
		output_json(res);
	else
		printf("%s: %s%s%s%s\n",
		       json_string_value(json_object_get(vm, "name")),
		       json_string_value(json_object_get(vm, "state")),
		       reason ? " (" : "", reason ? reason : "", reason ? ")" : "");
	json_decref(res);
	return CTL_EXIT_OK;
}

/* Connects, sends req (consumed) and prints the VM it returns. */
static int call_and_print(struct ctl *c, json_t *req)
{
	json_t *res = NULL;
	int r = ctl_connect(c);

	if (r) {
		json_decref(req);
		return r;
	}
	r = ctl_call(c, req, &res);
	if (r)
		return r;
	return print_vm_result(c, res);
}

enum { O_KERNEL = 256, O_INITRD, O_CMDLINE, O_VCPUS, O_MEM, O_DISK, O_NET,
       O_LABEL, O_RESTART, O_NOSTART, O_WAIT, O_TIMEOUT, O_SIGNAL, O_POOL, O_NOQUEUE,
       O_AUTOSTART };

/* The repeatable create options, collected before they go into the request. */
struct create_lists {
	json_t *disks, *nics, *labels, *pools;
};

/* One create option into req or lists; a usage error code or 0. */
static int create_opt(struct ctl *c, json_t *req, struct create_lists *l,
		      int o, const char *arg)
{
	long long v;
	uint64_t n;
	json_t *p;

	switch (o) {
	case O_KERNEL:
	case O_INITRD:
		p = abs_path(arg);
		if (!p)
			return ctl_usage_error("create", "cannot make '%s' absolute", arg);
		proto_request_set_json(req, o == O_KERNEL ? "kernel" : "initrd", p);
		return 0;
	case O_CMDLINE:
		proto_request_set_str(req, "cmdline", arg);
		return 0;
	case O_VCPUS:
		if (util_parse_uint(arg, 1, INT_MAX, &n) < 0)
			return ctl_usage_error("create", "--vcpus wants a positive number, not '%s'", arg);
		proto_request_set_int(req, "vcpus", (json_int_t)n);
		return 0;
	case O_MEM:
		if (parse_mem(arg, &v) < 0)
			return ctl_usage_error("create", "--mem wants a whole number of MiB like 256, 256M, 1.5G or 2048K, not '%s'", arg);
		proto_request_set_int(req, "mem_mib", v);
		return 0;
	case O_DISK:
		if (add_disk(l->disks, arg) < 0)
			return ctl_usage_error("create", "--disk wants PATH or PATH,ro, not '%s'", arg);
		return 0;
	case O_NET:
		if (add_nic(l->nics, arg) < 0)
			return ctl_usage_error("create", "--net wants tap=IF[,mac=M], not '%s'", arg);
		return 0;
	case O_LABEL:
		if (add_label(l->labels, arg) < 0)
			return ctl_usage_error("create", "--label wants KEY=VALUE, not '%s'", arg);
		return 0;
	case O_RESTART:
		if (parse_restart(req, arg) < 0)
			return ctl_usage_error("create", "--restart wants no, on-failure[:N] or always, not '%s'", arg);
		return 0;
	case O_NOSTART:
		proto_request_set_bool(req, "start", false);
		return 0;
	case O_WAIT:
		proto_request_set_bool(req, "wait", true);
		return 0;
	case O_POOL:
		/* mvmd checks the name against its pools */
		json_array_append_new(l->pools, json_string(arg));
		return 0;
	case O_NOQUEUE:
		proto_request_set_bool(req, "no_queue", true);
		return 0;
	case O_AUTOSTART:
		proto_request_set_bool(req, "autostart", true);
		return 0;
	case 'o':
		if (ctl_parse_output(arg, c) < 0)
			return ctl_usage_error("create", "-o wants json or table, not '%s'", arg);
		return 0;
	}
	if (o == ':')
		return ctl_usage_error("create", "option '%s' needs a value", arg);
	return ctl_usage_error("create", "unknown option '%s'", arg);
}

int vm_create(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, O_KERNEL },
		{ "initrd", required_argument, NULL, O_INITRD },
		{ "cmdline", required_argument, NULL, O_CMDLINE },
		{ "vcpus", required_argument, NULL, O_VCPUS },
		{ "mem", required_argument, NULL, O_MEM },
		{ "disk", required_argument, NULL, O_DISK },
		{ "net", required_argument, NULL, O_NET },
		{ "label", required_argument, NULL, O_LABEL },
		{ "restart", required_argument, NULL, O_RESTART },
		{ "no-start", no_argument, NULL, O_NOSTART },
		{ "wait", no_argument, NULL, O_WAIT },
		{ "pool", required_argument, NULL, O_POOL },
		{ "no-queue", no_argument, NULL, O_NOQUEUE },
		{ "autostart", no_argument, NULL, O_AUTOSTART },
		{ "output", required_argument, NULL, 'o' },
		{ 0 }
	};
	struct create_lists l = { json_array(), json_array(), json_object(), json_array() };
	json_t *req = ctl_request(c, PROTO_OP_VM_CREATE);
	int o, r = 0;

	opterr = 0;
	/* ':' first: a missing value is reported as such, not as unknown */
	while (!r && (o = getopt_long(argc, argv, ":o:", opts, NULL)) != -1)
		r = create_opt(c, req, &l, o, o == '?' || o == ':' ? argv[optind - 1] : optarg);
	if (!r && optind + 1 != argc)
		r = ctl_usage_error("create", "create wants exactly one NAME");
	if (!r && !json_object_get(json_object_get(req, "args"), "kernel"))
		r = ctl_usage_error("create", "create needs --kernel PATH");
	if (!r && !proto_vm_name_valid(argv[optind]))
		r = ctl_usage_error("create", "'%s' is not a valid VM name: use letters, "
				    "digits, '_', '.' and '-' (1 to 63, starting with "
				    "a letter or digit)", argv[optind]);
	if (r) {
		json_decref(l.disks);
		json_decref(l.nics);
		json_decref(l.labels);
		json_decref(l.pools);
		json_decref(req);
		return r;
	}
	proto_request_set_str(req, "name", argv[optind]);
	proto_request_set_json(req, "disks", l.disks);
	proto_request_set_json(req, "nics", l.nics);
	proto_request_set_json(req, "labels", l.labels);
	proto_request_set_json(req, "pools", l.pools);
	return call_and_print(c, req);
}

/* NAME plus the -o option every lifecycle command takes, and one extra. */
static int parse_simple(struct ctl *c, int argc, char **argv,
			const struct option *extra, json_t *req)
{
	struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		extra ? *extra : (struct option){ 0 },
		{ 0 }
	};
	int o, sig;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		uint64_t v;

		if (o == 'o' && ctl_parse_output(optarg, c) == 0)
			continue;
		if (o == O_TIMEOUT && util_parse_uint(optarg, 0, 86400, &v) == 0) {
			proto_request_set_int(req, "timeout_s", (json_int_t)v);
			continue;
		}
		/* the protocol spells signals "SIGTERM"; accept "TERM" and "15" too */
		sig = o == O_SIGNAL ? proto_signal_from_name(optarg) : -ENOENT;
		if (sig > 0) {
			proto_request_set_str(req, "signal", proto_signal_name(sig));
			continue;
		}
		if (o == O_TIMEOUT)
			return ctl_usage_error(argv[0], "--timeout wants whole seconds "
					       "(0 to 86400), not '%s'", optarg);
		if (o == O_SIGNAL)
			return ctl_usage_error(argv[0], "unknown signal '%s'; use a name "
					       "such as SIGTERM, TERM or a number", optarg);
		return ctl_usage_error(argv[0], "bad option or value '%s'", argv[optind - 1]);
	}
	if (optind + 1 != argc)
		return ctl_usage_error(argv[0], "%s wants exactly one NAME", argv[0]);
	proto_request_set_str(req, "name", argv[optind]);
	return 0;
}

static int simple_command(struct ctl *c, int argc, char **argv,
			  const struct option *extra, enum proto_op op)
{
	json_t *req = ctl_request(c, op);
	int r = parse_simple(c, argc, argv, extra, req);

	if (r) {
		json_decref(req);
		return r;
	}
	return call_and_print(c, req);
}

int vm_start(struct ctl *c, int argc, char **argv)
{
	return simple_command(c, argc, argv, NULL, PROTO_OP_VM_START);
}

int vm_stop(struct ctl *c, int argc, char **argv)
{
	static const struct option o = { "timeout", required_argument, NULL, O_TIMEOUT };

	return simple_command(c, argc, argv, &o, PROTO_OP_VM_STOP);
}

int vm_kill(struct ctl *c, int argc, char **argv)
{
	static const struct option o = { "signal", required_argument, NULL, O_SIGNAL };

	return simple_command(c, argc, argv, &o, PROTO_OP_VM_KILL);
}

int vm_rm(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "force", no_argument, NULL, 'f' },
		{ 0 }
	};
	json_t *req;
	bool force = false;
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (o != 'f')
			return ctl_usage_error("rm", "unknown option '%s'", argv[optind - 1]);
		force = true;
	}
	if (optind + 1 != argc)
		return ctl_usage_error("rm", "rm wants exactly one NAME");
	r = ctl_connect(c);
	if (r)
		return r;
	req = ctl_request(c, PROTO_OP_VM_RM);
	proto_request_set_str(req, "name", argv[optind]);
	proto_request_set_bool(req, "force", force);
	r = ctl_call(c, req, NULL);
	if (r == CTL_EXIT_OK)
		printf("%s: deleted\n", argv[optind]);
	return r;
}
