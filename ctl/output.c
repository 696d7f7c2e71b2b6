/* SPDX-License-Identifier: MIT */
/*
 * Everything mvmctl prints on stdout: aligned tables with units for humans,
 * and `-o json`, which is the daemon's result object with sorted keys so
 * that scripts and diffs see a stable shape.  Strings a client chose
 * (names, labels, command lines, paths, reasons) are printed for humans
 * with control characters escaped (output_escape): another user's label
 * must not move the operator's cursor or retitle the terminal.
 */
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "ctl/ctl.h"
#include "util/util.h"

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* row-major, row 0 is the header */
};

/* The escape of one byte of s at i (advancing *i past what it took), or
 * NULL when the byte prints as itself.  C0 controls, DEL and the C1
 * controls (U+0080 to U+009F: 8-bit CSI and friends) are escaped, and so is
 * the backslash, so an escape cannot be faked. */
static const char *escape_at(const char *s, size_t *i, char buf[8])
{
	unsigned char c = (unsigned char)s[*i];

	switch (c) {
	case '\\': (*i)++; return "\\\\";
	case '\n': (*i)++; return "\\n";
	case '\r': (*i)++; return "\\r";
	case '\t': (*i)++; return "\\t";
	default: break;
	}
	if (c < 0x20 || c == 0x7f) {
		snprintf(buf, 8, "\\x%02x", c);
		(*i)++;
		return buf;
	}
	if (c == 0xc2 && (unsigned char)s[*i + 1] >= 0x80 && (unsigned char)s[*i + 1] <= 0x9f) {
		snprintf(buf, 8, "\\u%04x", (unsigned char)s[*i + 1]);
		*i += 2;
		return buf;
	}
	return NULL;
}

char *output_escape(const char *s)
{
	size_t n = strlen(s), o = 0, i = 0;
	char *out = malloc(n * 4 + 1), b[8];  /* 1 byte grows to 4 at most */
	const char *e;

	if (!out)
		abort(); /* out of memory while printing */
	while (s[i]) {
		e = escape_at(s, &i, b);
		if (e) {
			memcpy(out + o, e, strlen(e));
			o += strlen(e);
		} else {
			out[o++] = s[i++];
		}
	}
	out[o] = '\0';
	return out;
}

/* "Label:      value\n" with the value escaped */
static void put_field(const char *label, const char *value)
{
	char *e = output_escape(value ? value : "");

	printf("%-12s %s\n", label, e);
	free(e);
}

struct table *table_new(size_t ncols, const char *const *headers)
{
	struct table *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->ncols = ncols;
	table_add(t, headers);
	return t;
}

void table_add(struct table *t, const char *const *cells)
{
	size_t need = (t->nrows + 1) * t->ncols;

	if (need > t->cap) {
		size_t cap = need * 2;
		char **c = realloc(t->cells, cap * sizeof(*c));

		if (!c)
			abort(); /* out of memory while printing: nothing sane to do */
		t->cells = c;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		t->cells[t->nrows * t->ncols + i] = output_escape(cells[i] ? cells[i] : "-");
	}
	t->nrows++;
}

void table_print(struct table *t)
{
	size_t *w = calloc(t->ncols, sizeof(*w));

	if (!w)
		abort();
	for (size_t i = 0; i < t->nrows * t->ncols; i++) {
		size_t l = strlen(t->cells[i]);

		if (l > w[i % t->ncols])
			w[i % t->ncols] = l;
	}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t col = 0; col < t->ncols; col++) {
			const char *s = t->cells[r * t->ncols + col];

			/* no trailing blanks after the last column */
			if (col + 1 == t->ncols)
				printf("%s\n", s);
			else
				printf("%-*s  ", (int)w[col], s);
		}
	}
	free(w);
}

void table_free(struct table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

static bool json_errors;

/* With -o json, errors are also written to stdout as a JSON document. */
void output_set_json_errors(bool on)
{
	json_errors = on;
}

/*
 * Every error mvmctl reports: "mvmctl: MESSAGE" on stderr and, with -o
 * json, {"error": {"code": CODE, "message": MESSAGE}, "exit": EXIT} on
 * stdout, where a script reads the result it asked for.  Returns exit.
 */
int ctl_error(int exit, const char *code, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "mvmctl: %s\n", msg);
	if (json_errors) {
		json_t *e = json_pack("{s:{s:s, s:s}, s:i}", "error", "code", code,
				      "message", msg, "exit", exit);

		if (e)
			output_json(e);
		json_decref(e);
	}
	return exit;
}

void output_json(const json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	putchar('\n');
}

/* The same bytes as output_json, for a result read in place. */
void output_json_span(struct proto_span v)
{
	size_t len;
	char *s;

	if (proto_scan_pretty(v, &s, &len) < 0)
		abort(); /* out of memory while printing */
	fwrite(s, 1, len, stdout);
	putchar('\n');
	free(s);
}

void output_size_mib(char *buf, size_t n, long long mib)
{
	if (mib >= 1024 && mib % 1024 == 0)
		snprintf(buf, n, "%lld GiB", mib / 1024);
	else if (mib >= 1024)
		snprintf(buf, n, "%.1f GiB", (double)mib / 1024.0);
	else
		snprintf(buf, n, "%lld MiB", mib);
}

/* "45s", "3m12s", "2h05m", "4d03h": the two most significant units. */
void output_duration(char *buf, size_t n, double seconds)
{
	long long s = seconds > 0 ? (long long)seconds : 0;

	if (s < 60)
		snprintf(buf, n, "%llds", s);
	else if (s < 3600)
		snprintf(buf, n, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, n, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, n, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}

void output_time(char *buf, size_t n, double epoch)
{
	time_t t = (time_t)epoch;
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, n, "%.3f", epoch);
}

double output_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static const char *str(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static bool is_live(const char *state)
{
	return state && (!strcmp(state, "running") || !strcmp(state, "starting") ||
			 !strcmp(state, "paused") || !strcmp(state, "stopping"));
}

static void fmt_uptime(char *buf, size_t n, const json_t *vm, double now)
{
	json_t *started = json_object_get(vm, "started_at");

	if (is_live(str(vm, "state")) && json_is_number(started))
		output_duration(buf, n, now - json_number_value(started));
	else
		snprintf(buf, n, "-");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of obj in sorted order (NULL-terminated), so output is stable. */
static const char **sorted_keys(const json_t *obj, size_t *ret_n)
{
	const char **keys = calloc(json_object_size(obj) + 1, sizeof(*keys));
	const char *key;
	size_t n = 0;
	json_t *v;

	if (!keys)
		abort();
	json_object_foreach((json_t *)obj, key, v)
		keys[n++] = key;
	qsort(keys, n, sizeof(*keys), cmp_str);
	*ret_n = n;
	return keys;
}

/* "k=v,k2=v2" in key order */
static void fmt_labels(char *buf, size_t n, const json_t *labels)
{
	size_t nk, off = 0;
	const char **keys = sorted_keys(labels, &nk);

	for (size_t i = 0; i < nk; i++) {
		const char *v = json_string_value(json_object_get(labels, keys[i]));
		int w = snprintf(buf + off, n - off, "%s%s=%s", off ? "," : "",
				 keys[i], v ? v : "");

		if (w < 0 || (size_t)w >= n - off)
			break;
		off += (size_t)w;
	}
	free(keys);
	if (!off)
		snprintf(buf, n, "-");
}

/* The members of one VM the list shows, read in place (vm.list results
 * are megabytes; see proto_scan_check). */
struct list_fields {
	struct proto_span name, state, vcpus, mem_mib, started_at, pid, owner_uid, labels;
};

static void list_fields(struct proto_span vm, struct list_fields *f)
{
#define LIST_KEY(k) { "\"" #k "\"", sizeof(#k) + 1, offsetof(struct list_fields, k) }
	static const struct { const char *quoted; size_t n, off; } keys[] = {
		LIST_KEY(name), LIST_KEY(state), LIST_KEY(vcpus), LIST_KEY(mem_mib),
		LIST_KEY(started_at), LIST_KEY(pid), LIST_KEY(owner_uid), LIST_KEY(labels),
	};
#undef LIST_KEY
	struct proto_span k, v;
	size_t pos = 0;

	memset(f, 0, sizeof(*f));
	while (proto_scan_next(vm, &pos, &k, &v) == 1)
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (k.n == keys[i].n && !memcmp(k.p, keys[i].quoted, k.n))
				*(struct proto_span *)((char *)f + keys[i].off) = v;
}

/* A string member, or NULL (absent or not a string). */
static const char *span_str(struct proto_span v, char *buf, size_t n)
{
	return v.p && proto_scan_str(v, buf, n) >= 0 ? buf : NULL;
}

static long long span_int(struct proto_span v)
{
	long long x = 0;

	return v.p && proto_scan_int(v, &x) ? x : 0;
}

struct label {
	char key[64], value[256];
};

static int cmp_label(const void *a, const void *b)
{
	return strcmp(((const struct label *)a)->key, ((const struct label *)b)->key);
}

/* "k=v,k2=v2" in key order, like fmt_labels */
static void fmt_labels_span(char *buf, size_t n, struct proto_span labels)
{
	struct label l[64];
	struct proto_span k, v;
	size_t nl = 0, pos = 0, off = 0;

	while (labels.p && nl < 64 && proto_scan_next(labels, &pos, &k, &v) == 1) {
		proto_scan_str(k, l[nl].key, sizeof(l[nl].key));
		if (!span_str(v, l[nl].value, sizeof(l[nl].value)))
			l[nl].value[0] = '\0';
		nl++;
	}
	qsort(l, nl, sizeof(l[0]), cmp_label);
	for (size_t i = 0; i < nl; i++) {
		int w = snprintf(buf + off, n - off, "%s%s=%s", off ? "," : "",
				 l[i].key, l[i].value);

		if (w < 0 || (size_t)w >= n - off)
			break;
		off += (size_t)w;
	}
	if (!off)
		snprintf(buf, n, "-");
}

static void list_row(struct table *t, struct proto_span vm, double now)
{
	char name[256], state[32], vcpus[24], mem[32], up[32], pid[24], owner[24], labels[512];
	const char *st;
	struct list_fields f;
	double started;
	long long x;

	list_fields(vm, &f);
	st = span_str(f.state, state, sizeof(state));
	snprintf(vcpus, sizeof(vcpus), "%lld", span_int(f.vcpus));
	output_size_mib(mem, sizeof(mem), span_int(f.mem_mib));
	if (is_live(st) && f.started_at.p && proto_scan_num(f.started_at, &started))
		output_duration(up, sizeof(up), now - started);
	else
		snprintf(up, sizeof(up), "-");
	if (f.pid.p && proto_scan_int(f.pid, &x))
		snprintf(pid, sizeof(pid), "%lld", x);
	else
		snprintf(pid, sizeof(pid), "-");
	snprintf(owner, sizeof(owner), "%lld", span_int(f.owner_uid));
	fmt_labels_span(labels, sizeof(labels), f.labels);
	table_add(t, (const char *[]){ span_str(f.name, name, sizeof(name)), st, vcpus,
		  mem, up, pid, owner, labels });
}

/* vms: the span of the result's "vms" array. */
void output_vm_list(struct proto_span vms, bool quiet, double now)
{
	static const char *const hdr[] = { "NAME", "STATE", "VCPUS", "MEMORY",
		"UPTIME", "PID", "OWNER", "LABELS" };
	struct proto_span vm;
	struct list_fields f;
	struct table *t;
	char name[256], *e;
	size_t pos = 0;

	if (quiet) {
		while (vms.p && proto_scan_next(vms, &pos, NULL, &vm) == 1) {
			list_fields(vm, &f);
			e = output_escape(span_str(f.name, name, sizeof(name)) ? name : "");
			printf("%s\n", e);
			free(e);
		}
		return;
	}
	t = table_new(8, hdr);
	if (!t)
		abort();
	while (vms.p && proto_scan_next(vms, &pos, NULL, &vm) == 1)
		list_row(t, vm, now);
	table_print(t);
	table_free(t);
}

static void show_files(const json_t *vm)
{
	char line[4600];
	size_t i;
	json_t *d;

	json_array_foreach(json_object_get(vm, "disks"), i, d) {
		snprintf(line, sizeof(line), "%s%s", str(d, "path") ? str(d, "path") : "?",
		         json_is_true(json_object_get(d, "readonly")) ? " (read-only)" : "");
		put_field(i ? "" : "Disks:", line);
	}
	json_array_foreach(json_object_get(vm, "nics"), i, d) {
		snprintf(line, sizeof(line), "tap=%s mac=%s", str(d, "tap") ? str(d, "tap") : "?",
		         str(d, "mac") ? str(d, "mac") : "auto");
		put_field(i ? "" : "NICs:", line);
	}
}

/* The devices beyond disks and NICs; the vsock line says where to connect. */
static void show_devices(const json_t *vm)
{
	json_t *cid = json_object_get(vm, "vsock");
	char line[4200];

	if (json_is_true(json_object_get(vm, "rng")))
		put_field("RNG:", "virtio-rng");
	if (!json_is_integer(cid))
		return;
	snprintf(line, sizeof(line), "cid=%lld %s", (long long)json_integer_value(cid),
	         str(vm, "vsock_path") ? str(vm, "vsock_path") : "");
	put_field("Vsock:", line);
}

static void show_events(const json_t *events)
{
	static const char *const hdr[] = { "TIME", "STATE", "REASON" };
	struct table *t;
	char when[64];
	size_t i;
	json_t *ev;

	if (!json_array_size(events))
		return;
	printf("\nEvents:\n");
	t = table_new(3, hdr);
	if (!t)
		abort();
	json_array_foreach(events, i, ev) {
		output_time(when, sizeof(when), json_number_value(json_object_get(ev, "time")));
		table_add(t, (const char *[]){ when, str(ev, "state"), str(ev, "reason") });
	}
	table_print(t);
	table_free(t);
}

void output_vm_show(const json_t *vm, const json_t *events, double now)
{
	char mem[32], up[32], when[64], labels[1024];
	json_t *pid = json_object_get(vm, "pid");
	json_t *status = json_object_get(vm, "exit_status");
	const char *restart = str(vm, "restart");

	output_size_mib(mem, sizeof(mem), json_integer_value(json_object_get(vm, "mem_mib")));
	fmt_uptime(up, sizeof(up), vm, now);
	output_time(when, sizeof(when), json_number_value(json_object_get(vm, "created_at")));
	fmt_labels(labels, sizeof(labels), json_object_get(vm, "labels"));
	put_field("Name:", str(vm, "name"));
	put_field("State:", str(vm, "state"));
	if (str(vm, "exit_reason"))
		put_field("Exit reason:", str(vm, "exit_reason"));
	if (json_is_integer(status))
		printf("%-12s %lld\n", "Exit status:", (long long)json_integer_value(status));
	printf("%-12s %lld\n", "Owner uid:", (long long)json_integer_value(json_object_get(vm, "owner_uid")));
	if (json_is_integer(pid))
		printf("%-12s %lld\n", "PID:", (long long)json_integer_value(pid));
	printf("%-12s %s\n", "Uptime:", up);
	printf("%-12s %s\n", "Created:", when);
	printf("%-12s %lld\n", "vCPUs:", (long long)json_integer_value(json_object_get(vm, "vcpus")));
	printf("%-12s %s\n", "Memory:", mem);
	put_field("Kernel:", str(vm, "kernel"));
	put_field("Initrd:", str(vm, "initrd") ? str(vm, "initrd") : "-");
	put_field("Cmdline:", str(vm, "cmdline"));
	show_files(vm);
	show_devices(vm);
	put_field("Labels:", labels);
	if (restart && !strcmp(restart, "on-failure"))
		printf("%-12s on-failure (max %lld, 0 = unlimited)\n", "Restart:",
		       (long long)json_integer_value(json_object_get(vm, "restart_max")));
	else
		put_field("Restart:", restart ? restart : "no");
	show_events(events);
}

/* One line per event for `mvmctl events`: time, VM, state, reason. */
void output_event(const json_t *ev)
{
	const char *reason = str(ev, "reason");
	char *state = output_escape(str(ev, "state") ? str(ev, "state") : "?");
	char *vm = output_escape(str(ev, "vm") ? str(ev, "vm") : "?");
	char *why = reason ? output_escape(reason) : NULL;
	char when[64];

	output_time(when, sizeof(when), json_number_value(json_object_get(ev, "time")));
	if (why)
		printf("%s  %-20s %-9s %s\n", when, vm, state, why);
	else
		printf("%s  %-20s %s\n", when, vm, state);
	fflush(stdout);
	free(state);
	free(vm);
	free(why);
}

static void kv_value(const char *key, const json_t *v)
{
	char buf[64];

	/* mem_mib, mem_mib_used, ...: sizes in MiB get their unit */
	if (json_is_integer(v) && strstr(key, "_mib")) {
		output_size_mib(buf, sizeof(buf), json_integer_value(v));
		printf("%s\n", buf);
	} else if (json_is_string(v)) {
		char *e = output_escape(json_string_value(v));

		printf("%s\n", e);
		free(e);
	} else {
		char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

		printf("%s\n", s ? s : "?");
		free(s);
	}
}

/* Generic "Key: value" listing (host info), with units for *_mib* keys. */
void output_kv(const json_t *obj)
{
	size_t n, w = 0;
	const char **keys = sorted_keys(obj, &n);

	for (size_t i = 0; i < n; i++)
		if (strlen(keys[i]) > w)
			w = strlen(keys[i]);
	for (size_t i = 0; i < n; i++) {
		printf("%-*s  ", (int)w, keys[i]);
		kv_value(keys[i], json_object_get(obj, keys[i]));
	}
	free(keys);
}

/* ---- host --------------------------------------------------------------- */

static long long num(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* Count limits: 0 means no limit. */
static const char *fmt_count(char *buf, size_t n, long long v, bool zero_unlimited)
{
	if (v == 0 && zero_unlimited)
		snprintf(buf, n, "unlimited");
	else
		snprintf(buf, n, "%lld", v);
	return buf;
}

static const char *fmt_mib(char *buf, size_t n, long long mib, bool zero_unlimited)
{
	if (mib == 0 && zero_unlimited)
		snprintf(buf, n, "unlimited");
	else
		output_size_mib(buf, n, mib);
	return buf;
}

/* One resource row: limit, used, and what is left (or how far over). */
static void host_row(struct table *t, const char *name, long long limit, long long used,
		     bool mib, bool zero_unlimited)
{
	char lim[32], use[32], left[48], over[32];
	const char *(*fmt)(char *, size_t, long long, bool) = mib ? fmt_mib : fmt_count;

	fmt(lim, sizeof(lim), limit, zero_unlimited);
	fmt(use, sizeof(use), used, false);
	if (limit == 0 && zero_unlimited)
		snprintf(left, sizeof(left), "unlimited");
	else if (used > limit)
		snprintf(left, sizeof(left), "0 (over by %s)", fmt(over, sizeof(over), used - limit, false));
	else
		fmt(left, sizeof(left), limit - used, false);
	table_add(t, (const char *const[]){ name, lim, use, left });
}

static void host_resources(const json_t *lim, const json_t *use)
{
	static const char *const hdr[] = { "RESOURCE", "LIMIT", "USED", "LEFT" };
	struct table *t = table_new(4, hdr);
	const json_t *pools = json_object_get(use, "pools"), *p;
	const char *name;
	char label[64];

	if (!t)
		abort();
	host_row(t, "VMs", num(lim, "max_vms"), num(use, "vms"), false, true);
	host_row(t, "memory", num(lim, "memory_limit_mib"), num(use, "mem_mib"), true, false);
	host_row(t, "vCPUs", num(lim, "vcpus_limit"), num(use, "vcpus"), false, false);
	/* a pool's max of 0 means none available, not unlimited */
	json_object_foreach((json_t *)pools, name, p) {
		snprintf(label, sizeof(label), "pool %s%s", name,
			 json_is_false(json_object_get(p, "defined")) ? " (not configured)" : "");
		host_row(t, label, num(p, "max"), num(p, "used"), false, false);
	}
	table_print(t);
	table_free(t);
}

/* How the memory and vCPU limits above are made. */
static void host_limit_terms(const json_t *lim)
{
	char a[32], b[32], c[32], d[32], e[32];

	printf("\nmemory limit  %s = budget %s x overcommit %s (reserved for the host %s; "
	       "each VM also charged %s)\n",
	       fmt_mib(a, sizeof(a), num(lim, "memory_limit_mib"), false),
	       fmt_mib(b, sizeof(b), num(lim, "memory_budget_mib"), false),
	       util_fmt_ratio(c, sizeof(c), json_real_value(json_object_get(lim, "memory_overcommit"))),
	       fmt_mib(d, sizeof(d), num(lim, "memory_reserved_mib"), false),
	       fmt_mib(e, sizeof(e), num(lim, "vmm_overhead_mib"), false));
	printf("vCPU limit    %lld = %lld host CPUs x oversubscription %s\n",
	       num(lim, "vcpus_limit"), num(lim, "host_cpus"),
	       util_fmt_ratio(c, sizeof(c), json_real_value(json_object_get(lim, "vcpu_oversubscription"))));
}

static void owner_row(struct table *t, const char *who, const json_t *q)
{
	char vms[32], mem[32], vcpus[32];

	table_add(t, (const char *const[]){ who,
		fmt_count(vms, sizeof(vms), num(q, "max_vms"), true),
		fmt_mib(mem, sizeof(mem), num(q, "max_mem_mib"), true),
		fmt_count(vcpus, sizeof(vcpus), num(q, "max_vcpus"), true) });
}

/* Per-owner quotas: the default for every uid, then the named ones. */
static void host_owners(const json_t *lim)
{
	static const char *const hdr[] = { "OWNER QUOTA", "VMS", "MEMORY", "VCPUS" };
	struct table *t = table_new(4, hdr);
	const json_t *owners = json_object_get(lim, "owners"), *q;
	char who[32];
	size_t i;

	if (!t)
		abort();
	owner_row(t, "default", json_object_get(lim, "owner_default"));
	json_array_foreach(owners, i, q) {
		snprintf(who, sizeof(who), "uid %lld", num(q, "uid"));
		owner_row(t, who, q);
	}
	putchar('\n');
	table_print(t);
	table_free(t);
}

/* Starts in progress against their limits, and the queue behind them. */
static void host_starts(const json_t *lim, const json_t *use)
{
	double rate = json_real_value(json_object_get(lim, "start_rate"));
	char a[32], b[48], r[32];

	printf("\nstarts        %lld in progress (at most %s at once), %lld queued\n",
	       num(use, "starting"), fmt_count(a, sizeof(a), num(lim, "max_concurrent_starts"), true),
	       num(use, "queued"));
	if (rate > 0)
		snprintf(b, sizeof(b), "%s per second", util_fmt_ratio(r, sizeof(r), rate));
	printf("start rate    %s, bursts of %lld\n", rate > 0 ? b : "unlimited",
	       num(lim, "start_burst"));
}

static void host_capacity(const json_t *cap)
{
	const json_t *lim = json_object_get(cap, "limits"), *use = json_object_get(cap, "usage");
	const json_t *cg = json_object_get(cap, "cgroup");
	const char *over = str(cap, "over_limit_reason");

	host_resources(lim, use);
	host_limit_terms(lim);
	host_owners(lim);
	host_starts(lim, use);
	printf("over limit    %s\n", over ? over : "no");
	printf("cgroups       %s%s\n", json_is_true(json_object_get(cg, "usable")) ? "" : "not used: ",
	       str(cg, "status") ? str(cg, "status") : "?");
	if (str(cg, "attach_note"))
		printf("cgroup attach %s\n", str(cg, "attach_note"));
}

static void host_sandbox(const json_t *sb)
{
	long long base = num(sb, "uid_base"), count = num(sb, "uid_count");

	if (!sb)
		return;
	if (json_is_true(json_object_get(sb, "enabled")))
		printf("sandbox       on: workers run as uids %lld to %lld\n", base, base + count - 1);
	else
		printf("sandbox       off: %s\n", str(sb, "reason") ? str(sb, "reason") : "?");
}

/* Health checks: spread over the interval, and what they cost mvmd. */
static void host_health(const json_t *h)
{
	if (!h)
		return;
	if (!json_is_true(json_object_get(h, "enabled"))) {
		printf("health        off\n");
		return;
	}
	printf("health        every %gs in %lld slices of %.0f ms; %lld pings, "
	       "%.1f us of mvmd CPU each\n",
	       json_number_value(json_object_get(h, "interval_s")), num(h, "slices"),
	       json_number_value(json_object_get(h, "tick_ms")), num(h, "pings"),
	       json_number_value(json_object_get(h, "cpu_us_per_ping")));
}

/* Kernel and process limits, with the VMs each allows and the fix of any
 * that bind before the capacity limits. */
static void host_ceilings(const json_t *a)
{
	static const char *const hdr[] = { "HOST CEILING", "LIMIT", "USED", "PER VM", "VMS" };
	struct table *t;
	const json_t *c;
	char lim[32], used[32], per[32], vms[32];
	size_t i;

	if (!json_is_array(a) || !(t = table_new(5, hdr)))
		return;
	json_array_foreach(a, i, c) {
		const json_t *l = json_object_get(c, "limit"), *v = json_object_get(c, "vms");

		snprintf(lim, sizeof(lim), l && !json_is_null(l) ? "%lld" : "none", num(c, "limit"));
		snprintf(used, sizeof(used), "%lld", num(c, "used"));
		snprintf(per, sizeof(per), num(c, "per_vm") ? "%lld" : "-", num(c, "per_vm"));
		snprintf(vms, sizeof(vms), v && !json_is_null(v) ? "%lld" :
		         num(c, "per_vm") ? "no limit" : "per process", num(c, "vms"));
		table_add(t, (const char *const[]){ str(c, "name") ? str(c, "name") : "?",
			lim, used, per, vms });
	}
	putchar('\n');
	table_print(t);
	table_free(t);
	json_array_foreach(a, i, c)
		if (str(c, "fix"))
			printf("ceiling       %s binds first: %s\n", str(c, "name"), str(c, "fix"));
}

/* host.info's "host" (the machine, then its capacity), or host.set's,
 * which is the capacity alone. */
void output_host(const json_t *host)
{
	const json_t *cap = json_object_get(host, "capacity");
	char mem[32];

	if (json_object_get(host, "limits")) {
		host_capacity(host);
		return;
	}
	output_size_mib(mem, sizeof(mem), num(host, "mem_mib"));
	printf("daemon        %s, protocol %lld\n", str(host, "server") ? str(host, "server") : "?",
	       num(host, "version"));
	printf("host          %lld CPUs, %s memory\n", num(host, "cpus"), mem);
	printf("VMs           %lld defined, %lld active\n\n", num(host, "vms"),
	       num(host, "vms_active"));
	if (cap)
		host_capacity(cap);
	host_sandbox(json_object_get(host, "sandbox"));
	host_health(json_object_get(host, "health"));
	host_ceilings(json_object_get(host, "ceilings"));
}
