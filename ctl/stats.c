/* SPDX-License-Identifier: MIT */
/* Run-time resources of running VMs: update (rate limits, balloon) and
 * stats (docs/protocol.md vm.update, vm.stats). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/ctl.h"
#include "util/util.h"

/* I:LIMIT[,LIMIT]... into {index: I, limits} appended to arr. */
static int add_change(json_t *arr, const char *spec, const char *ops)
{
	char *s = strdup(spec), *colon, *tok, *save = NULL;
	json_t *o = json_object();
	uint64_t idx;
	int r = 0;

	if (!s || !o) {
		free(s);
		json_decref(o);
		return -ENOMEM;
	}
	colon = strchr(s, ':');
	if (!colon || colon == s || !colon[1])
		r = -EINVAL;
	if (!r) {
		*colon = '\0';
		r = util_parse_uint(s, 0, 15, &idx);
	}
	if (!r)
		json_object_set_new(o, "index", json_integer((json_int_t)idx));
	for (tok = r ? NULL : strtok_r(colon + 1, ",", &save); tok && !r;
	     tok = strtok_r(NULL, ",", &save))
		r = ctl_limit_field(o, tok, ops, true) == 1 ? 0 : -EINVAL;
	free(s);
	if (r) {
		json_decref(o);
		return r;
	}
	json_array_append_new(arr, o);
	return 0;
}

int stats_update(struct ctl *c, int argc, char **argv)
{
	enum { O_DISK = 256, O_NET, O_BALLOON };
	static const struct option opts[] = {
		{ "disk", required_argument, NULL, O_DISK },
		{ "net", required_argument, NULL, O_NET },
		{ "balloon", required_argument, NULL, O_BALLOON },
		{ "output", required_argument, NULL, 'o' },
		{ 0 }
	};
	json_t *disks = json_array(), *nics = json_array(), *res = NULL;
	json_t *req = ctl_request(c, PROTO_OP_VM_UPDATE);
	long long mib;
	int o, r = 0;

	opterr = 0;
	while (!r && (o = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
		const char *arg = o == '?' || o == ':' ? argv[optind - 1] : optarg;

		if (o == O_DISK && add_change(disks, arg, "iops") < 0)
			r = ctl_usage_error("update", "--disk wants I:LIMIT[,LIMIT]... with I the "
			                    "disk's index from 0 and LIMIT bps=SIZE, iops=N, "
			                    "bps_burst=SIZE or iops_burst=N (1 to 2^40, or none), "
			                    "not '%s'", arg);
		else if (o == O_NET && add_change(nics, arg, "pps") < 0)
			r = ctl_usage_error("update", "--net wants I:LIMIT[,LIMIT]... with I the "
			                    "NIC's index from 0 and LIMIT bps=SIZE, pps=N, "
			                    "bps_burst=SIZE or pps_burst=N (1 to 2^40, or none), "
			                    "not '%s'", arg);
		else if (o == O_BALLOON) {
			mib = 0;
			if (strcmp(arg, "0") && ctl_parse_mib(arg, &mib) < 0)
				r = ctl_usage_error("update", "--balloon wants a whole number of "
				                    "MiB like 0, 64, 64M or 1G, not '%s'", arg);
			else
				proto_request_set_int(req, "balloon_mib", mib);
		} else if (o == 'o' && ctl_parse_output(arg, c) < 0)
			r = ctl_usage_error("update", "-o wants json or table, not '%s'", arg);
		else if (o == ':')
			r = ctl_usage_error("update", "option '%s' needs a value", arg);
		else if (o == '?')
			r = ctl_usage_error("update", "unknown option '%s'", arg);
	}
	if (!r && optind + 1 != argc)
		r = ctl_usage_error("update", "update wants exactly one NAME");
	if (!r && !json_array_size(disks) && !json_array_size(nics) &&
	    !json_object_get(json_object_get(req, "args"), "balloon_mib"))
		r = ctl_usage_error("update", "nothing to change: give --disk, --net or --balloon");
	if (r) {
		json_decref(disks);
		json_decref(nics);
		json_decref(req);
		return r;
	}
	proto_request_set_str(req, "name", argv[optind]);
	if (json_array_size(disks))
		proto_request_set_json(req, "disks", disks);
	else
		json_decref(disks);
	if (json_array_size(nics))
		proto_request_set_json(req, "nics", nics);
	else
		json_decref(nics);
	r = ctl_connect(c);
	if (r) {
		json_decref(req);
		return r;
	}
	r = ctl_call(c, req, &res);
	if (r)
		return r;
	if (c->json) {
		output_json(res);
	} else {
		char *name = output_escape(argv[optind]);

		printf("%s: updated\n", name);
		free(name);
	}
	json_decref(res);
	return CTL_EXIT_OK;
}

/* ---- stats -------------------------------------------------------------- */

static json_int_t num(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* Sum of one counter over the disks or NICs of a stats object. */
static json_int_t dev_sum(const json_t *vm, const char *devs, const char *k)
{
	json_int_t s = 0;
	size_t i;
	json_t *d;

	json_array_foreach(json_object_get(vm, devs), i, d)
		s += num(d, k);
	return s;
}

static void bytes_human(char *buf, size_t n, double b)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	int u = 0;

	while (b >= 1024 && u < 4) {
		b /= 1024;
		u++;
	}
	snprintf(buf, n, u ? "%.1f %s" : "%.0f %s", b, units[u]);
}

/* One vm.stats call: every running VM visible (name NULL) or one. */
static int fetch(struct ctl *c, const char *name, json_t **ret)
{
	json_t *req = ctl_request(c, PROTO_OP_VM_STATS);

	if (name)
		proto_request_set_str(req, "name", name);
	return ctl_call(c, req, ret);
}

/* name -> stats object of the first sample, by name. */
static const json_t *find_vm(const json_t *vms, const char *name)
{
	size_t i;
	json_t *v;

	json_array_foreach(vms, i, v)
		if (!strcmp(json_string_value(json_object_get(v, "name")) ?: "", name))
			return v;
	return NULL;
}

/* CPU % over the two samples, like docker stats: 100% is one CPU busy. */
static double cpu_percent(const json_t *a, const json_t *b)
{
	double dt = json_real_value(json_object_get(b, "sampled_at")) -
	            json_real_value(json_object_get(a, "sampled_at"));
	json_t *ca = json_object_get(a, "cpu_ns"), *cb = json_object_get(b, "cpu_ns");

	if (!a || dt <= 0 || !json_is_integer(ca) || !json_is_integer(cb))
		return -1;
	return (double)(json_integer_value(cb) - json_integer_value(ca)) / (dt * 1e9) * 100.0;
}

static void print_table(const json_t *first, const json_t *vms)
{
	static const char *const hdr[] = { "NAME", "CPU %", "MEM USAGE / LIMIT", "BALLOON",
	                                   "DISK R/W", "DISK OPS R/W", "NET RX/TX",
	                                   "THROTTLED" };
	struct table *t = table_new(8, hdr);
	char cells[8][64], a[24], b[24];
	const char *row[8];
	size_t i;
	json_t *v, *bal;

	json_array_foreach(vms, i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));
		double pct = cpu_percent(find_vm(first, name ?: ""), v);
		char *esc = output_escape(name ?: "?");

		snprintf(cells[0], 64, "%s", esc);
		free(esc);
		if (pct >= 0)
			snprintf(cells[1], 64, "%.1f%%", pct);
		else
			snprintf(cells[1], 64, "-");
		if (json_is_integer(json_object_get(v, "mem_bytes"))) {
			bytes_human(a, sizeof(a), (double)num(v, "mem_bytes"));
			bytes_human(b, sizeof(b), (double)(json_is_integer(json_object_get(
			            v, "mem_limit_bytes")) ? num(v, "mem_limit_bytes")
			                                   : num(v, "mem_guest_bytes")));
			snprintf(cells[2], 64, "%s / %s", a, b);
		} else {
			snprintf(cells[2], 64, "-");
		}
		bal = json_object_get(v, "balloon");
		if (json_is_object(bal)) {
			bytes_human(a, sizeof(a), (double)num(bal, "actual_bytes"));
			bytes_human(b, sizeof(b), (double)num(bal, "target_bytes"));
			snprintf(cells[3], 64, "%s (target %s)", a, b);
		} else {
			snprintf(cells[3], 64, "-");
		}
		bytes_human(a, sizeof(a), (double)dev_sum(v, "disks", "read_bytes"));
		bytes_human(b, sizeof(b), (double)dev_sum(v, "disks", "write_bytes"));
		snprintf(cells[4], 64, "%s / %s", a, b);
		snprintf(cells[5], 64, "%lld / %lld", (long long)dev_sum(v, "disks", "read_ops"),
		         (long long)dev_sum(v, "disks", "write_ops"));
		bytes_human(a, sizeof(a), (double)dev_sum(v, "nics", "rx_bytes"));
		bytes_human(b, sizeof(b), (double)dev_sum(v, "nics", "tx_bytes"));
		snprintf(cells[6], 64, "%s / %s", a, b);
		snprintf(cells[7], 64, "%.2fs", (double)(dev_sum(v, "disks", "throttled_ns") +
		                                 dev_sum(v, "nics", "throttled_ns") +
		                                 num(v, "cpu_throttled_ns")) / 1e9);
		for (int k = 0; k < 8; k++)
			row[k] = cells[k];
		table_add(t, row);
	}
	table_print(t);
	table_free(t);
}

/* Two samples a second apart (CPU % needs an interval), printed once. */
int stats_stats(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' }, { 0 }
	};
	struct timespec pause = { 1, 0 };
	json_t *first = json_array(), *second = json_array(), *res;
	bool *failed = calloc((size_t)argc + 1, sizeof(bool));
	int o, r = 0, fail = 0;

	if (!failed)
		return ctl_error(CTL_EXIT_DAEMON, "internal", "out of memory");

	opterr = 0;
	while (!r && (o = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
		if (o == 'o' && ctl_parse_output(optarg, c) == 0)
			continue;
		r = ctl_usage_error("stats", o == 'o' ? "-o wants json or table, not '%s'"
		                    : "bad option or value '%s'", argv[optind - 1]);
	}
	if (!r)
		r = ctl_connect(c);
	for (int pass = 0; !r && pass < 2; pass++) {
		json_t *into = pass ? second : first;

		if (pass)
			nanosleep(&pause, NULL);
		for (int i = optind; i < argc || (i == optind && optind == argc); i++) {
			int e;

			if (failed[i])
				continue;       /* said once is enough */
			e = fetch(c, i < argc ? argv[i] : NULL, &res);

			if (e == CTL_EXIT_CONNECT) {
				r = e;
				break;
			}
			if (e) {
				fail = fail ?: e;
				failed[i] = true;
				if (i >= argc)
					break;
				continue;
			}
			json_array_extend(into, json_object_get(res, "vms"));
			json_decref(res);
			if (i >= argc)
				break;
		}
	}
	if (!r && c->json) {
		size_t i;
		json_t *v;

		json_array_foreach(second, i, v) {
			double pct = cpu_percent(find_vm(first, json_string_value(
			                         json_object_get(v, "name")) ?: ""), v);

			json_object_set_new(v, "cpu_percent", pct >= 0 ? json_real(pct) : json_null());
		}
		res = json_pack("{s:O}", "vms", second);
		output_json(res);
		json_decref(res);
	} else if (!r) {
		print_table(first, second);
	}
	json_decref(first);
	json_decref(second);
	free(failed);
	return r ? r : fail;
}
