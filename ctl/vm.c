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
int ctl_parse_mib(const char *s, long long *ret_mib)
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

/*
 * A rate limit field "bps=SIZE", "OPS=N", "bps_burst=SIZE", "OPS_burst=N"
 * (OPS: iops for disks, pps for NICs) into obj: 1 if tok was one, 0 if not,
 * -EINVAL for a bad value.  With allow_none (update), "none" sets null,
 * which removes the limit.  Bytes take K, M, G suffixes (powers of 1024).
 */
int ctl_limit_field(json_t *obj, const char *tok, const char *ops, bool allow_none)
{
	const char *eq = strchr(tok, '=');
	char key[24];
	uint64_t v;
	size_t n;
	bool bytes;

	if (!eq || (n = (size_t)(eq - tok)) >= sizeof(key))
		return 0;
	memcpy(key, tok, n);
	key[n] = '\0';
	bytes = !strcmp(key, "bps") || !strcmp(key, "bps_burst");
	if (!bytes && strcmp(key, ops) && (strncmp(key, ops, strlen(ops)) ||
	                                   strcmp(key + strlen(ops), "_burst")))
		return 0;
	if (allow_none && !strcmp(eq + 1, "none")) {
		json_object_set_new(obj, key, json_null());
		return 1;
	}
	if ((bytes ? util_parse_size(eq + 1, 1, &v) : util_parse_uint(eq + 1, 0, UINT64_MAX, &v)) < 0 ||
	    v == 0 || v > (1ULL << 40))
		return -EINVAL;
	json_object_set_new(obj, key, json_integer((json_int_t)v));
	return 1;
}

/* PATH[,ro|,rw][,bps=SIZE][,iops=N][,bps_burst=SIZE][,iops_burst=N]: the
 * options are taken off the end, so a path may hold commas. */
static int add_disk(json_t *disks, const char *spec)
{
	char *path = strdup(spec), *comma;
	json_t *disk = json_object(), *p;
	bool ro = false;
	int r = 0;

	if (!path || !disk) {
		free(path);
		json_decref(disk);
		return -ENOMEM;
	}
	while (r >= 0 && (comma = strrchr(path, ','))) {
		if (!strcmp(comma, ",ro"))
			ro = true;
		else if (strcmp(comma, ",rw") && (r = ctl_limit_field(disk, comma + 1, "iops",
		                                                     false)) <= 0) {
			/* ",word=..." is an option mistyped, not part of a path */
			if (r == 0 && strchr(comma, '=') &&
			    strspn(comma + 1, "abcdefghijklmnopqrstuvwxyz_") ==
			    (size_t)(strchr(comma, '=') - comma - 1))
				r = -EINVAL;
			break;
		}
		*comma = '\0';
	}
	p = r >= 0 && *path ? abs_path(path) : NULL;
	free(path);
	if (!p) {
		json_decref(disk);
		return -EINVAL;
	}
	json_object_set_new(disk, "path", p);
	json_object_set_new(disk, "readonly", json_boolean(ro));
	json_array_append_new(disks, disk);
	return 0;
}

/* tap=IF[,mac=M][,bps=SIZE][,pps=N][,bps_burst=SIZE][,pps_burst=N] */
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
			r = ctl_limit_field(nic, tok, "pps", false) == 1 ? 0 : -EINVAL;
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

/* Prints the VM a lifecycle call returned: JSON, or "NAME: STATE (reason)".
 * A VM waited for (--wait) that crashed instead of running is a failure:
 * its reason (the worker's own message) goes to stderr, exit 1. */
static int print_vm_result(struct ctl *c, json_t *res, bool waited)
{
	json_t *vm = json_object_get(res, "vm");
	const char *reason = json_string_value(json_object_get(vm, "exit_reason"));
	const char *state = json_string_value(json_object_get(vm, "state"));
	char *name = output_escape(json_string_value(json_object_get(vm, "name")) ?: "?");
	char *why = output_escape(reason ? reason : "");
	bool crashed = waited && state && !strcmp(state, "crashed");

	if (c->json)
		output_json(res);
	else if (!crashed)
		printf("%s: %s%s%s%s\n", name, state ? state : "?",
		       reason ? " (" : "", why, reason ? ")" : "");
	if (crashed)
		fprintf(stderr, "mvmctl: VM %s crashed instead of starting: %s; fix that and "
		        "run 'mvmctl start %s'\n", name, reason ? why : "no reason given", name);
	free(name);
	free(why);
	json_decref(res);
	return crashed ? CTL_EXIT_DAEMON : CTL_EXIT_OK;
}

/* Connects, sends req (consumed) and prints the VM it returns. */
static int call_and_print(struct ctl *c, json_t *req)
{
	bool waited = json_is_true(json_object_get(json_object_get(req, "args"), "wait"));
	json_t *res = NULL;
	int r = ctl_connect(c);

	if (r) {
		json_decref(req);
		return r;
	}
	r = ctl_call(c, req, &res);
	if (r)
		return r;
	return print_vm_result(c, res, waited);
}

enum { O_KERNEL = 256, O_INITRD, O_CMDLINE, O_VCPUS, O_MEM, O_DISK, O_NET,
       O_LABEL, O_RESTART, O_NOSTART, O_WAIT, O_TIMEOUT, O_SIGNAL, O_POOL, O_NOQUEUE,
       O_AUTOSTART, O_BALLOON, O_RNG, O_VSOCK, O_FILE };

/* The repeatable create options, collected before they go into the request. */
struct create_lists {
	json_t *disks, *nics, *labels, *pools;
	const char *file;               /* -f: a spec; "-" stdin */
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
		if (ctl_parse_mib(arg, &v) < 0)
			return ctl_usage_error("create", "--mem wants a whole number of MiB like 256, 256M, 1.5G or 2048K, not '%s'", arg);
		proto_request_set_int(req, "mem_mib", v);
		return 0;
	case O_DISK:
		if (add_disk(l->disks, arg) < 0)
			return ctl_usage_error("create", "--disk wants PATH[,ro][,bps=SIZE][,iops=N]"
			                       "[,bps_burst=SIZE][,iops_burst=N] (limits 1 to 2^40), "
			                       "not '%s'", arg);
		return 0;
	case O_NET:
		if (add_nic(l->nics, arg) < 0)
			return ctl_usage_error("create", "--net wants tap=IF[,mac=M][,bps=SIZE][,pps=N]"
			                       "[,bps_burst=SIZE][,pps_burst=N] (limits 1 to 2^40), "
			                       "not '%s'", arg);
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
	case O_BALLOON:
		/* the memory the balloon holds at boot; 0: a balloon, empty */
		v = 0;
		if (strcmp(arg, "0") && ctl_parse_mib(arg, &v) < 0)
			return ctl_usage_error("create", "--balloon wants a whole number of MiB "
			                       "like 0, 64, 64M or 1G, not '%s'", arg);
		proto_request_set_int(req, "balloon_mib", v);
		return 0;
	case O_RNG:
		proto_request_set_bool(req, "rng", true);
		return 0;
	case O_VSOCK:
		/* 0-2 are reserved (hypervisor, local, host), 2^32-1 is "any" */
		if (util_parse_uint(arg, PROTO_VSOCK_CID_MIN, PROTO_VSOCK_CID_MAX, &n) < 0)
			return ctl_usage_error("create", "--vsock wants the guest's CID, a number from "
			                       "3 to 4294967294 (0-2 are reserved), not '%s'", arg);
		proto_request_set_int(req, "vsock", (json_int_t)n);
		return 0;
	case 'o':
		if (ctl_parse_output(arg, c) < 0)
			return ctl_usage_error("create", "-o wants json or table, not '%s'", arg);
		return 0;
	case 'f':
		if (l->file)
			return ctl_usage_error("create", "-f FILE given twice; give one spec");
		l->file = arg;
		return 0;
	}
	if (o == ':')
		return ctl_usage_error("create", "option '%s' needs a value", arg);
	return ctl_usage_error("create", "unknown option '%s'", arg);
}

/* ---- create -f: a spec, the VM object 'mvmctl show -o json' prints --- */

/* The VM object's keys vm.create takes ... */
static const char *const spec_keys[] = {
	"name", "kernel", "initrd", "cmdline", "vcpus", "mem_mib", "disks", "nics", "labels",
	"restart", "restart_max", "autostart", "pools", "balloon_mib", "rng", "vsock", NULL
};
/* ... and those of one run of it, which a spec may carry (a saved show)
 * and which say nothing about the VM to create. */
static const char *const spec_ignored[] = {
	"state", "owner_uid", "pid", "created_at", "started_at", "exit_status", "exit_reason",
	"uuid", "vsock_path", NULL
};

static bool in_list(const char *const *list, const char *k)
{
	for (; *list; list++)
		if (!strcmp(*list, k))
			return true;
	return false;
}

/* A relative path in a spec file is relative to the file's directory
 * (stdin's: the working directory, as a flag's). */
static json_t *spec_path(const char *file, json_t *v)
{
	const char *p = json_string_value(v), *slash;
	char *s;
	json_t *j;

	if (!p || p[0] == '/' || !file || strcmp(file, "-") == 0 || !(slash = strrchr(file, '/')))
		return p ? abs_path(p) : json_incref(v);
	if (asprintf(&s, "%.*s/%s", (int)(slash - file), file, p) < 0)
		return NULL;
	j = abs_path(s);
	free(s);
	return j;
}

/* The VM object of FILE (a whole show document, or its "vm" alone), its
 * keys checked; a usage error code, printed, otherwise. */
static int spec_load(const char *file, json_t **ret)
{
	const char *where = strcmp(file, "-") ? file : "stdin";
	json_error_t e;
	json_t *doc = strcmp(file, "-") ? json_load_file(file, JSON_REJECT_DUPLICATES, &e)
	                                : json_loadf(stdin, JSON_REJECT_DUPLICATES, &e);
	json_t *vm, *v;
	const char *k;

	if (!doc)
		return ctl_usage_error("create", "%s: %s (line %d, column %d); a spec is the "
		                       "JSON 'mvmctl show NAME -o json' prints", where, e.text,
		                       e.line, e.column);
	vm = json_is_object(doc) ? json_object_get(doc, "vm") : NULL;
	if (json_is_object(doc) && vm) {
		json_object_foreach(doc, k, v)
			if (strcmp(k, "vm") && strcmp(k, "events")) {
				ctl_usage_error("create", "%s: unknown key '%s' beside \"vm\"; a spec "
				                "has \"vm\" (and \"events\", ignored)", where, k);
				json_decref(doc);
				return CTL_EXIT_USAGE;
			}
	} else {
		vm = doc;
	}
	if (!json_is_object(vm)) {
		json_decref(doc);
		return ctl_usage_error("create", "%s: a spec is a JSON object (the VM of "
		                       "'mvmctl show NAME -o json')", where);
	}
	json_object_foreach(vm, k, v)
		if (!in_list(spec_keys, k) && !in_list(spec_ignored, k)) {
			ctl_usage_error("create", "%s: unknown key '%s'; a spec takes name, kernel, "
			                "initrd, cmdline, vcpus, mem_mib, disks, nics, labels, restart, "
			                "restart_max, autostart, pools, balloon_mib, rng and vsock", where, k);
			json_decref(doc);
			return CTL_EXIT_USAGE;
		}
	*ret = json_incref(vm);
	json_decref(doc);
	return 0;
}

/* The spec under the flags: a key a flag set keeps the flag's value; a
 * list flag (--disk, --net, --pool) replaces the spec's list; --label
 * pairs win over the spec's of the same key. */
static int spec_apply(const char *file, json_t *spec, json_t *req, struct create_lists *l)
{
	json_t *args = json_object_get(req, "args"), *v, *d, *p;
	const char *k;
	size_t i;

	json_object_foreach(spec, k, v) {
		if (in_list(spec_ignored, k) || json_is_null(v))
			continue;
		if (!strcmp(k, "labels") && json_is_object(v)) {
			json_t *lv;
			const char *lk;

			json_object_foreach(v, lk, lv)
				if (!json_object_get(l->labels, lk))
					json_object_set(l->labels, lk, lv);
			continue;
		}
		if (!strcmp(k, "disks") || !strcmp(k, "nics") || !strcmp(k, "pools")) {
			json_t **list = k[0] == 'd' ? &l->disks : k[0] == 'n' ? &l->nics : &l->pools;

			if (json_array_size(*list))
				continue;
			json_decref(*list);
			*list = json_deep_copy(v);
			if (!*list)
				return -ENOMEM;
			json_array_foreach(*list, i, d) {
				if (k[0] != 'd' || !json_is_string(json_object_get(d, "path")))
					continue;
				p = spec_path(file, json_object_get(d, "path"));
				if (!p || json_object_set_new(d, "path", p) < 0)
					return -ENOMEM;
			}
			continue;
		}
		if (json_object_get(args, k))
			continue;               /* a flag said it */
		p = !strcmp(k, "kernel") || !strcmp(k, "initrd") ? spec_path(file, v) : json_incref(v);
		if (!p || proto_request_set_json(req, k, p) < 0)
			return -ENOMEM;
	}
	return 0;
}

/*
 * Parses create's options and NAME into a vm.create request (*ret_req,
 * owned by the caller); a usage error code, printed, otherwise.  `run`
 * shares it, so both take the same options.
 */
int vm_create_request(struct ctl *c, int argc, char **argv, json_t **ret_req)
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
		{ "balloon", required_argument, NULL, O_BALLOON },
		{ "rng", no_argument, NULL, O_RNG },
		{ "vsock", required_argument, NULL, O_VSOCK },
		{ "output", required_argument, NULL, 'o' },
		{ "file", required_argument, NULL, 'f' },
		{ 0 }
	};
	struct create_lists l = { json_array(), json_array(), json_object(), json_array(), NULL };
	json_t *req = ctl_request(c, PROTO_OP_VM_CREATE), *spec = NULL;
	const char *name = NULL;
	int o, r = 0;

	opterr = 0;
	/* ':' first: a missing value is reported as such, not as unknown */
	while (!r && (o = getopt_long(argc, argv, ":o:f:", opts, NULL)) != -1)
		r = create_opt(c, req, &l, o, o == '?' || o == ':' ? argv[optind - 1] : optarg);
	if (!r && l.file && (r = spec_load(l.file, &spec)) == 0 &&
	    spec_apply(l.file, spec, req, &l) < 0)
		r = ctl_usage_error("create", "out of memory");
	/* with a spec, NAME may come from it; a NAME given wins */
	if (!r && optind < argc)
		name = argv[optind];
	else if (!r && spec)
		name = json_string_value(json_object_get(spec, "name"));
	if (!r && (optind + 1 < argc || (optind == argc && !l.file)))
		r = ctl_usage_error("create", "create wants exactly one NAME");
	if (!r && !name)
		r = ctl_usage_error("create", "%s has no \"name\" string; give NAME too",
		                    strcmp(l.file, "-") ? l.file : "stdin");
	if (!r && !json_is_string(json_object_get(json_object_get(req, "args"), "kernel")))
		r = ctl_usage_error("create", "create needs --kernel PATH (or \"kernel\" in "
		                    "the -f spec)");
	if (!r && !proto_vm_name_valid(name))
		r = ctl_usage_error("create", "'%s' is not a valid VM name: use letters, "
				    "digits, '_', '.' and '-' (1 to 63, starting with "
				    "a letter or digit)", name);
	if (r) {
		json_decref(spec);
		json_decref(l.disks);
		json_decref(l.nics);
		json_decref(l.labels);
		json_decref(l.pools);
		json_decref(req);
		return r;
	}
	proto_request_set_str(req, "name", name);
	json_decref(spec);              /* name was its */
	proto_request_set_json(req, "disks", l.disks);
	proto_request_set_json(req, "nics", l.nics);
	proto_request_set_json(req, "labels", l.labels);
	proto_request_set_json(req, "pools", l.pools);
	*ret_req = req;
	return 0;
}

int vm_create(struct ctl *c, int argc, char **argv)
{
	json_t *req;
	int r = vm_create_request(c, argc, argv, &req);

	return r ? r : call_and_print(c, req);
}

/*
 * The VMs a lifecycle command acts on: its NAMEs, or the VMs with every
 * --label K=V, and the options copied into each request.
 */
struct selector {
	json_t *labels;   /* --label filters */
	json_t *args;     /* timeout_s, signal, force: set in every request */
	char **names;
	int nnames;
};

static void selector_done(struct selector *s)
{
	json_decref(s->labels);
	json_decref(s->args);
}

/* One option of a lifecycle command; a usage error code or 0. */
static int selector_opt(struct ctl *c, const char *cmd, struct selector *s, int o,
			const char *arg)
{
	uint64_t v;
	int sig;

	switch (o) {
	case 'o':
		if (ctl_parse_output(arg, c) < 0)
			return ctl_usage_error(cmd, "-o wants json or table, not '%s'", arg);
		return 0;
	case O_LABEL:
		if (add_label(s->labels, arg) < 0)
			return ctl_usage_error(cmd, "--label wants KEY=VALUE, not '%s'", arg);
		return 0;
	case O_TIMEOUT:
		if (util_parse_uint(arg, 0, 86400, &v) < 0)
			return ctl_usage_error(cmd, "--timeout wants whole seconds "
					       "(0 to 86400), not '%s'", arg);
		json_object_set_new(s->args, "timeout_s", json_integer((json_int_t)v));
		return 0;
	case O_SIGNAL:
		/* the protocol spells signals "SIGTERM"; accept "TERM" and "15" too */
		sig = proto_signal_from_name(arg);
		if (sig <= 0)
			return ctl_usage_error(cmd, "unknown signal '%s'; use a name "
					       "such as SIGTERM, TERM or a number", arg);
		json_object_set_new(s->args, "signal", json_string(proto_signal_name(sig)));
		return 0;
	case 'f':
		json_object_set_new(s->args, "force", json_true());
		return 0;
	case O_WAIT:
		json_object_set_new(s->args, "wait", json_true());
		return 0;
	case ':':
		return ctl_usage_error(cmd, "option '%s' needs a value", arg);
	}
	return ctl_usage_error(cmd, "unknown option '%s'", arg);
}

/* extra: the command's own options ({0}-terminated); shortopts starts with
 * ":" so that a missing value is reported as such */
static int parse_selector(struct ctl *c, int argc, char **argv, const struct option *extra,
			  const char *shortopts, struct selector *s)
{
	struct option opts[8] = {
		{ "output", required_argument, NULL, 'o' },
		{ "label", required_argument, NULL, O_LABEL },
	};
	size_t n = 2;
	int o, r = 0;

	for (; extra && extra->name && n < sizeof(opts) / sizeof(opts[0]) - 1; extra++)
		opts[n++] = *extra;
	s->labels = json_object();
	s->args = json_object();
	opterr = 0;
	while (!r && (o = getopt_long(argc, argv, shortopts, opts, NULL)) != -1)
		r = selector_opt(c, argv[0], s, o, o == '?' || o == ':' ? argv[optind - 1] : optarg);
	if (r)
		return r;
	s->names = argv + optind;
	s->nnames = argc - optind;
	if (s->nnames && json_object_size(s->labels))
		return ctl_usage_error(argv[0], "name VMs or select them with --label, not both");
	if (!s->nnames && !json_object_size(s->labels))
		return ctl_usage_error(argv[0], "%s wants a NAME (or several) or --label K=V", argv[0]);
	return 0;
}

/* The names of the VMs with every label in s (vm.list filters them). */
static int select_by_label(struct ctl *c, struct selector *s, json_t **ret_names)
{
	json_t *req = ctl_request(c, PROTO_OP_VM_LIST), *res = NULL, *names, *vm;
	size_t i;
	int r;

	proto_request_set_json(req, "labels", json_incref(s->labels));
	r = ctl_call(c, req, &res);
	if (r)
		return r;
	names = json_array();
	json_array_foreach(json_object_get(res, "vms"), i, vm)
		json_array_append(names, json_object_get(vm, "name"));
	json_decref(res);
	*ret_names = names;
	return CTL_EXIT_OK;
}

/* A request for op on name with the selector's options. */
static json_t *vm_request(struct ctl *c, enum proto_op op, const char *name,
			  const struct selector *s)
{
	json_t *req = ctl_request(c, op), *v;
	const char *k;

	proto_request_set_str(req, "name", name);
	json_object_foreach(s->args, k, v)
		proto_request_set_json(req, k, json_incref(v));
	return req;
}

typedef int (*vm_action_fn)(struct ctl *c, enum proto_op op, const char *name,
			    const struct selector *s);

/* Sends op for name and prints the VM it returns. */
static int act_print(struct ctl *c, enum proto_op op, const char *name,
		     const struct selector *s)
{
	json_t *res = NULL;
	int r = ctl_call(c, vm_request(c, op, name, s), &res);

	return r ? r : print_vm_result(c, res, json_is_true(json_object_get(s->args, "wait")));
}

/*
 * Runs act on every selected VM in turn over one connection.  A failure
 * does not stop the others; the first failure's status is the result.
 */
static int for_each_selected(struct ctl *c, struct selector *s, enum proto_op op,
			     vm_action_fn act)
{
	json_t *names = NULL;
	int r = ctl_connect(c), first = CTL_EXIT_OK;

	if (!r && s->nnames) {
		names = json_array();
		for (int i = 0; i < s->nnames; i++)
			json_array_append_new(names, json_string(s->names[i]));
	} else if (!r) {
		r = select_by_label(c, s, &names);
	}
	if (!r && json_array_size(names) == 0)
		fprintf(stderr, "mvmctl: no VM has all the labels given; nothing to do\n");
	for (size_t i = 0; !r && i < json_array_size(names); i++) {
		int one = act(c, op, json_string_value(json_array_get(names, i)), s);

		if (one == CTL_EXIT_CONNECT)
			r = one; /* mvmd is gone: the rest would fail the same way */
		else if (one && !first)
			first = one;
	}
	json_decref(names);
	selector_done(s);
	return r ? r : first;
}

static int selector_command(struct ctl *c, int argc, char **argv, const struct option *extra,
			    const char *shortopts, enum proto_op op, vm_action_fn act)
{
	struct selector s = { 0 };
	int r = parse_selector(c, argc, argv, extra, shortopts, &s);

	if (r) {
		selector_done(&s);
		return r;
	}
	return for_each_selected(c, &s, op, act);
}

int vm_start(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = { { "wait", no_argument, NULL, O_WAIT }, { 0 } };

	return selector_command(c, argc, argv, o, ":o:", PROTO_OP_VM_START, act_print);
}

int vm_stop(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "timeout", required_argument, NULL, O_TIMEOUT }, { 0 } };

	return selector_command(c, argc, argv, o, ":o:", PROTO_OP_VM_STOP, act_print);
}

int vm_kill(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "signal", required_argument, NULL, O_SIGNAL }, { 0 } };

	return selector_command(c, argc, argv, o, ":o:", PROTO_OP_VM_KILL, act_print);
}

static int act_rm(struct ctl *c, enum proto_op op, const char *name,
		  const struct selector *s)
{
	json_t *out;
	int r = ctl_call(c, vm_request(c, op, name, s), NULL);

	if (r)
		return r;
	if (!c->json) {
		printf("%s: deleted\n", name);
		return CTL_EXIT_OK;
	}
	out = json_pack("{s:s, s:b}", "name", name, "deleted", 1);
	output_json(out);
	json_decref(out);
	return CTL_EXIT_OK;
}

int vm_rm(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "force", no_argument, NULL, 'f' }, { 0 } };

	return selector_command(c, argc, argv, o, ":fo:", PROTO_OP_VM_RM, act_rm);
}

/* Stops the VM where it holds a worker or a queue slot, then starts it. */
static int act_restart(struct ctl *c, enum proto_op op, const char *name,
		       const struct selector *s)
{
	json_t *req = ctl_request(c, PROTO_OP_VM_SHOW), *res = NULL;
	const char *state;
	bool stop;
	int r;

	proto_request_set_str(req, "name", name);
	r = ctl_call(c, req, &res);
	if (r)
		return r;
	state = json_string_value(json_object_get(json_object_get(res, "vm"), "state"));
	stop = state && strcmp(state, "created") && strcmp(state, "stopped") &&
	       strcmp(state, "crashed");
	json_decref(res);
	res = NULL;
	if (stop) {
		r = ctl_call(c, vm_request(c, PROTO_OP_VM_STOP, name, s), &res);
		if (r)
			return r;
		if (!c->json)
			print_vm_result(c, res, false);
		else
			json_decref(res);
	}
	return act_print(c, op, name, &(struct selector){ .args = NULL });
}

int vm_restart(struct ctl *c, int argc, char **argv)
{
	static const struct option o[] = {
		{ "timeout", required_argument, NULL, O_TIMEOUT }, { 0 } };

	return selector_command(c, argc, argv, o, ":o:", PROTO_OP_VM_START, act_restart);
}

int vm_pause(struct ctl *c, int argc, char **argv)
{
	return selector_command(c, argc, argv, NULL, ":o:", PROTO_OP_VM_PAUSE, act_print);
}

int vm_resume(struct ctl *c, int argc, char **argv)
{
	return selector_command(c, argc, argv, NULL, ":o:", PROTO_OP_VM_RESUME, act_print);
}
