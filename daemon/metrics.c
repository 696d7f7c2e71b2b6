/* SPDX-License-Identifier: MIT */
/*
 * Prometheus metrics: counters kept from the supervisor's worker hooks,
 * the text exposition format (version 0.0.4) rendered on demand from the
 * capacity accounting and the database, and a small HTTP/1.x server that
 * answers GET /metrics on <run-dir>/metrics.sock and, when metrics_listen
 * is set, on a TCP address.
 *
 * The server faces every local user, so it is bounded: at most
 * METRICS_MAX_CONNS connections (more are closed at once), a request head
 * of at most METRICS_MAX_REQUEST bytes, METRICS_TIMEOUT_MS for the whole
 * exchange, one request per connection (Connection: close).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/mvmd.h"

#define METRICS_MAX_CONNS   16
#define METRICS_MAX_REQUEST 4096
#define METRICS_TIMEOUT_MS  5000
#define METRICS_MAX_REASONS 32          /* distinct crash reasons kept */
#define METRICS_REASON_MAX  32
/* Per-VM series come from a cache of vm.stats samples: a render whose
 * cache is older than METRICS_VM_MAX_AGE_S asks every running worker
 * again (one link request each, answered by its main loop) and renders
 * what it has; the answers serve the next scrape.  A round not answered
 * within METRICS_VM_ROUND_S is given up. */
#define METRICS_VM_MAX_AGE_S 5.0
#define METRICS_VM_ROUND_S   30.0

/* Start latency buckets, seconds: a boot with an emulated guest kernel
 * takes seconds, a native one well under one. */
static const double buckets[] = { 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };
#define NBUCKETS (sizeof(buckets) / sizeof(buckets[0]))

struct mconn {
	struct metrics *m;
	TAILQ_ENTRY(mconn) link;
	union {
		uv_pipe_t pipe;
		uv_tcp_t tcp;
		uv_stream_t stream;
	} h;
	uv_timer_t timer;
	uv_write_t wreq;
	uv_shutdown_t sreq;
	int handles;
	bool closing, answered;
	size_t len;
	char buf[METRICS_MAX_REQUEST];
	char *out;
};

TAILQ_HEAD(mconn_list, mconn);

struct metrics {
	struct mvmd *d;
	uint64_t starts;
	uint64_t hist[NBUCKETS];        /* cumulative at render time, not here */
	uint64_t hist_count;
	double hist_sum;
	size_t nreasons;
	struct { char name[METRICS_REASON_MAX + 1]; uint64_t n; } crashes[METRICS_MAX_REASONS + 1];
	uint64_t http_rejected;         /* connections closed: too many */
	uv_pipe_t unix_l;
	uv_tcp_t tcp_l;
	bool unix_on, tcp_on;
	char path[108];
	struct mconn_list conns;
	size_t nconns;
	/* per-VM samples: name -> vm.stats object plus "owner" */
	json_t *samples;                /* the last complete round */
	json_t *next;                   /* the round in flight */
	double sampled_at;              /* mvmd_mono() the last round began; 0 none */
	double round_at;                /* the round in flight began */
	unsigned round, waiting;
};

struct sample_call {
	struct metrics *m;
	unsigned round;
};

/* ---- counters, from the worker hooks ------------------------------------ */

static void spawned_cb(struct vm *vm, pid_t pid)
{
	(void)pid;
	if (vm->d->metrics)
		vm->d->metrics->starts++;
}

/* From the worker's start to the guest's first output. */
static void booted_cb(struct vm *vm)
{
	struct metrics *m = vm->d->metrics;
	double s;

	if (!m || !vm->worker)
		return;
	s = mvmd_mono() - vm->worker->started_mono;
	if (s < 0)
		s = 0;
	for (size_t i = 0; i < NBUCKETS; i++)
		if (s <= buckets[i]) {
			m->hist[i]++;
			break;
		}
	m->hist_count++;
	m->hist_sum += s;
}

/* A crash reason's class: its first word ("signal", "oom-killed",
 * "worker-exit", "hung", ...), in [a-z0-9_-] so it is a safe label value;
 * past METRICS_MAX_REASONS distinct ones, "other". */
static void count_crash(struct metrics *m, const char *reason)
{
	char name[METRICS_REASON_MAX + 1];
	size_t n = 0, i;

	for (; reason && reason[n] && n < METRICS_REASON_MAX; n++) {
		char c = reason[n];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
			break;
		name[n] = c;
	}
	name[n] = '\0';
	if (n == 0)
		snprintf(name, sizeof(name), "unknown");
	for (i = 0; i < m->nreasons; i++)
		if (!strcmp(m->crashes[i].name, name))
			break;
	if (i == m->nreasons) {
		if (m->nreasons == METRICS_MAX_REASONS) {
			snprintf(name, sizeof(name), "other");
			for (i = 0; i < m->nreasons && strcmp(m->crashes[i].name, name); i++)
				;
		}
		if (i == m->nreasons) {
			snprintf(m->crashes[i].name, sizeof(m->crashes[i].name), "%s", name);
			m->crashes[i].n = 0;
			m->nreasons++;
		}
	}
	m->crashes[i].n++;
}

static void ended_cb(struct vm *vm, bool requested, double ran_s)
{
	(void)ran_s;
	if (vm->d->metrics && !requested && vm->row.state == PROTO_VM_CRASHED)
		count_crash(vm->d->metrics, vm->row.exit_reason);
}

const struct worker_hooks metrics_worker_hooks = {
	.spawned_cb = spawned_cb,
	.booted_cb = booted_cb,
	.ended_cb = ended_cb,
};

/* ---- per-VM samples ------------------------------------------------------ */

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


static void round_done(struct metrics *m)
{
	json_decref(m->samples);
	m->samples = m->next;
	m->next = NULL;
	m->sampled_at = m->round_at;
}

static void sample_cb(void *arg, struct vm *vm, json_t *stats)
{
	struct sample_call *sc = arg;
	struct metrics *m = sc->m;

	if (sc->round == m->round && m->next && stats) {
		json_object_set_new(stats, "owner", json_integer(vm->row.owner_uid));
		json_object_set(m->next, vm->row.name, stats);
	}
	json_decref(stats);
	if (sc->round == m->round && --m->waiting == 0)
		round_done(m);
	free(sc);
}

/* A new round over every running worker, unless one is fresh or busy. */
static void sample_vms(struct metrics *m)
{
	double now = mvmd_mono();
	struct worker *w;

	if (m->sampled_at && now - m->sampled_at < METRICS_VM_MAX_AGE_S)
		return;
	if (m->next && now - m->round_at < METRICS_VM_ROUND_S)
		return;
	json_decref(m->next);
	m->next = json_object();
	if (!m->next)
		return;
	m->round++;
	m->waiting = 0;
	m->round_at = now;
	TAILQ_FOREACH(w, &m->d->workers, link) {
		struct sample_call *sc;

		if (w->finished || !w->linked || !(sc = calloc(1, sizeof(*sc))))
			continue;
		sc->m = m;
		sc->round = m->round;
		if (vmstats_collect(w->vm, sample_cb, sc) < 0)
			free(sc);
		else
			m->waiting++;
	}
	if (m->waiting == 0)
		round_done(m);
}

static uint64_t num(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v)
	                                                        : 0;
}

/* One family over the samples shown: per VM, or per device of a kind. */
static void vm_family(FILE *f, json_t *shown, const char *name, const char *type,
                      const char *help, const char *devs, const char *key, double scale)
{
	const char *vm;
	json_t *s, *dev;
	size_t i;

	head(f, name, type, help);
	json_object_foreach(shown, vm, s) {
		if (!devs) {
			json_t *v = json_object_get(s, key);

			if (json_is_integer(v))
				fprintf(f, "%s{vm=\"%s\"} %.9g\n", name, vm,
				        (double)num(s, key) * scale);
			continue;
		}
		json_array_foreach(json_object_get(s, devs), i, dev)
			fprintf(f, "%s{vm=\"%s\",%s=\"%llu\"} %llu\n", name, vm,
			        devs[0] == 'd' ? "disk" : "nic", (unsigned long long)num(dev, "index"),
			        (unsigned long long)num(dev, key));
	}
}

static void vm_series(FILE *f, struct metrics *m, bool (*may_see)(void *, uint32_t), void *arg)
{
	json_t *shown = json_object(), *s, *b;
	const char *vm;

	if (!shown)
		return;
	json_object_foreach(m->samples, vm, s)
		if (may_see(arg, (uint32_t)num(s, "owner")))
			json_object_set(shown, vm, s);
	head(f, "mvmd_vm_stats_age_seconds", "gauge",
	     "Age of the per-VM samples below (taken at most every 5 s, on a scrape).");
	fprintf(f, "mvmd_vm_stats_age_seconds %.3f\n",
	        m->sampled_at ? mvmd_mono() - m->sampled_at : 0.0);
	head(f, "mvmd_vm_state", "gauge", "A running VM's state when sampled; always 1.");
	json_object_foreach(shown, vm, s)
		fprintf(f, "mvmd_vm_state{vm=\"%s\",state=\"%s\"} 1\n", vm,
		        json_string_value(json_object_get(s, "state")) ?: "unknown");
	vm_family(f, shown, "mvmd_vm_cpu_seconds_total", "counter",
	          "CPU time of the VM's worker (its cgroup, else /proc).", NULL, "cpu_ns", 1e-9);
	vm_family(f, shown, "mvmd_vm_memory_bytes", "gauge",
	          "Memory charged to the VM's cgroup.", NULL, "mem_bytes", 1);
	vm_family(f, shown, "mvmd_vm_guest_memory_bytes", "gauge",
	          "The guest's RAM as defined.", NULL, "mem_guest_bytes", 1);
	vm_family(f, shown, "mvmd_vm_disk_read_bytes_total", "counter", "Bytes a disk read.",
	          "disks", "read_bytes", 1);
	vm_family(f, shown, "mvmd_vm_disk_written_bytes_total", "counter",
	          "Bytes a disk wrote.", "disks", "write_bytes", 1);
	vm_family(f, shown, "mvmd_vm_disk_reads_total", "counter", "Read requests of a disk.",
	          "disks", "read_ops", 1);
	vm_family(f, shown, "mvmd_vm_disk_writes_total", "counter", "Write requests of a disk.",
	          "disks", "write_ops", 1);
	vm_family(f, shown, "mvmd_vm_net_received_bytes_total", "counter",
	          "Bytes a NIC received.", "nics", "rx_bytes", 1);
	vm_family(f, shown, "mvmd_vm_net_sent_bytes_total", "counter", "Bytes a NIC sent.",
	          "nics", "tx_bytes", 1);
	vm_family(f, shown, "mvmd_vm_net_received_frames_total", "counter",
	          "Frames a NIC received.", "nics", "rx_frames", 1);
	vm_family(f, shown, "mvmd_vm_net_sent_frames_total", "counter", "Frames a NIC sent.",
	          "nics", "tx_frames", 1);
	head(f, "mvmd_vm_balloon_bytes", "gauge",
	     "Guest memory the balloon holds (what the driver says).");
	json_object_foreach(shown, vm, s)
		if (json_is_object(b = json_object_get(s, "balloon")))
			fprintf(f, "mvmd_vm_balloon_bytes{vm=\"%s\"} %llu\n", vm,
			        (unsigned long long)num(b, "actual_bytes"));
	head(f, "mvmd_vm_balloon_target_bytes", "gauge", "The balloon's target.");
	json_object_foreach(shown, vm, s)
		if (json_is_object(b = json_object_get(s, "balloon")))
			fprintf(f, "mvmd_vm_balloon_target_bytes{vm=\"%s\"} %llu\n", vm,
			        (unsigned long long)num(b, "target_bytes"));
	json_decref(shown);
}

static bool see_all(void *arg, uint32_t owner)
{
	(void)arg;
	(void)owner;
	return true;
}

/* ---- the exposition ------------------------------------------------------ */

static void gauge(FILE *f, const char *name, const char *help, uint64_t v)
{
	head(f, name, "gauge", help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

int metrics_render(struct mvmd *d, bool (*may_see)(void *arg, uint32_t owner), void *arg,
                   char **ret, size_t *ret_len)
{
	struct metrics *m = d->metrics;
	uint64_t states[PROTO_VM_STATE_COUNT_] = { 0 }, cum = 0;
	struct proto_vm *vms = NULL;
	struct db_stats dbs;
	struct cap_usage u;
	size_t n = 0;
	FILE *f;
	int r;

	r = db_vm_list(d->db, NULL, &vms, &n);
	if (r < 0)
		return r;
	for (size_t i = 0; i < n; i++)
		if ((unsigned)vms[i].state < PROTO_VM_STATE_COUNT_)
			states[vms[i].state]++;
	db_vm_list_free(vms, n);
	*ret = NULL;
	f = open_memstream(ret, ret_len);
	if (!f)
		return -ENOMEM;
	cap_usage_get(&d->cap, &u);

	head(f, "mvmd_build_info", "gauge", "mvmd's version; always 1.");
	fprintf(f, "mvmd_build_info{version=\"%s\"} 1\n", PROTO_SERVER_VERSION);
	gauge(f, "mvmd_capacity_memory_bytes",
	      "Memory VMs may reserve (guest memory plus worker overhead, after overcommit).",
	      u.mem_limit_mib << 20);
	gauge(f, "mvmd_used_memory_bytes", "Memory reserved by admitted VMs.", u.mem_mib << 20);
	gauge(f, "mvmd_capacity_vcpus", "vCPUs VMs may reserve (after oversubscription).",
	      u.vcpus_limit);
	gauge(f, "mvmd_used_vcpus", "vCPUs reserved by admitted VMs.", u.vcpus);
	gauge(f, "mvmd_capacity_vms", "The max_vms limit; 0: unlimited.", u.vms_limit);
	gauge(f, "mvmd_used_vms", "VMs holding a reservation (queued, starting or running).",
	      u.vms);
	gauge(f, "mvmd_capacity_concurrent_starts", "The max_concurrent_starts limit; 0: unlimited.",
	      u.starting_limit);
	gauge(f, "mvmd_starting_vms", "VMs in their starting phase (before the first output).",
	      u.starting);
	gauge(f, "mvmd_start_queue_length", "VMs queued for a start.", u.queued);
	head(f, "mvmd_pool_capacity", "gauge", "A pool's max.");
	for (size_t i = 0; i < u.npools; i++)
		fprintf(f, "mvmd_pool_capacity{pool=\"%s\"} %llu\n", u.pools[i].name,
		        (unsigned long long)u.pools[i].max);
	head(f, "mvmd_pool_used", "gauge", "A pool's units held by admitted VMs.");
	for (size_t i = 0; i < u.npools; i++)
		fprintf(f, "mvmd_pool_used{pool=\"%s\"} %llu\n", u.pools[i].name,
		        (unsigned long long)u.pools[i].used);

	head(f, "mvmd_vms", "gauge", "Defined VMs by state.");
	for (int s = 0; s < PROTO_VM_STATE_COUNT_; s++)
		if (s != PROTO_VM_DELETED)
			fprintf(f, "mvmd_vms{state=\"%s\"} %llu\n", proto_vm_state_name(s),
			        (unsigned long long)states[s]);

	head(f, "mvmd_vm_starts_total", "counter", "Workers started (first starts and restarts).");
	fprintf(f, "mvmd_vm_starts_total %llu\n", (unsigned long long)(m ? m->starts : 0));
	head(f, "mvmd_start_refusals_total", "counter",
	     "Starts refused at admission, by error code (unavailable: may fit later).");
	for (int e = 1; e < PROTO_ERR_COUNT_; e++)
		if (e == PROTO_ERR_UNAVAILABLE || e == PROTO_ERR_LIMIT_EXCEEDED ||
		    d->start_refusals[e])
			fprintf(f, "mvmd_start_refusals_total{reason=\"%s\"} %llu\n",
			        proto_err_name(e), (unsigned long long)d->start_refusals[e]);

	head(f, "mvmd_vm_start_seconds", "histogram",
	     "From a worker's start to its guest's first output.");
	for (size_t i = 0; i < NBUCKETS; i++) {
		cum += m ? m->hist[i] : 0;
		fprintf(f, "mvmd_vm_start_seconds_bucket{le=\"%g\"} %llu\n", buckets[i],
		        (unsigned long long)cum);
	}
	fprintf(f, "mvmd_vm_start_seconds_bucket{le=\"+Inf\"} %llu\n",
	        (unsigned long long)(m ? m->hist_count : 0));
	fprintf(f, "mvmd_vm_start_seconds_sum %.6f\n", m ? m->hist_sum : 0.0);
	fprintf(f, "mvmd_vm_start_seconds_count %llu\n",
	        (unsigned long long)(m ? m->hist_count : 0));

	head(f, "mvmd_worker_crashes_total", "counter",
	     "Workers that ended crashed without being asked to, by the first word of the reason.");
	for (size_t i = 0; m && i < m->nreasons; i++)
		fprintf(f, "mvmd_worker_crashes_total{reason=\"%s\"} %llu\n", m->crashes[i].name,
		        (unsigned long long)m->crashes[i].n);
	db_stats(d->db, &dbs);
	head(f, "mvmd_db_commits_total", "counter", "State database commits.");
	fprintf(f, "mvmd_db_commits_total %llu\n", (unsigned long long)dbs.commits);
	head(f, "mvmd_db_write_seconds_total", "counter",
	     "Time mvmd's loop spent in state database writes and commits.");
	fprintf(f, "mvmd_db_write_seconds_total %.6f\n", dbs.write_seconds);
	head(f, "mvmd_db_checkpoints_total", "counter",
	     "State database checkpoints on the checkpointer thread, failed ones included.");
	fprintf(f, "mvmd_db_checkpoints_total %llu\n", (unsigned long long)dbs.checkpoints);
	head(f, "mvmd_db_checkpoint_failures_total", "counter",
	     "Checkpoints that failed (tried again later; the WAL keeps every commit).");
	fprintf(f, "mvmd_db_checkpoint_failures_total %llu\n",
	        (unsigned long long)dbs.checkpoint_failures);
	head(f, "mvmd_db_checkpoint_seconds_total", "counter",
	     "Time the checkpointer thread spent copying the WAL and syncing.");
	fprintf(f, "mvmd_db_checkpoint_seconds_total %.6f\n", dbs.checkpoint_seconds);
	head(f, "mvmd_db_loop_checkpoints_total", "counter",
	     "Checkpoints mvmd's loop tried itself, as the WAL passed 16,000 pages during a long "
	     "burst of commits.");
	fprintf(f, "mvmd_db_loop_checkpoints_total %llu\n",
	        (unsigned long long)dbs.checkpoints_on_writer);
	head(f, "mvmd_metrics_connections_rejected_total", "counter",
	     "Metrics HTTP connections closed at once: too many open.");
	fprintf(f, "mvmd_metrics_connections_rejected_total %llu\n",
	        (unsigned long long)(m ? m->http_rejected : 0));
	if (m && may_see) {
		sample_vms(m);
		vm_series(f, m, may_see, arg);
	}
	if (fclose(f) != 0) {
		free(*ret);
		*ret = NULL;
		return -ENOMEM;
	}
	return 0;
}

/* ---- the HTTP server ----------------------------------------------------- */

static void mconn_closed(uv_handle_t *h)
{
	struct mconn *c = h->data;

	if (--c->handles == 0) {
		free(c->out);
		free(c);
	}
}

static void mconn_close(struct mconn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	TAILQ_REMOVE(&c->m->conns, c, link);
	c->m->nconns--;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, mconn_closed);
	uv_close((uv_handle_t *)&c->h.stream, mconn_closed);
}

/* Answered: the client closes, or the timer does.  Closing at once could
 * reset a connection whose client still sends, losing the answer. */
static void shutdown_cb(uv_shutdown_t *req, int status)
{
	if (status < 0)
		mconn_close(req->data);
}

static void written_cb(uv_write_t *req, int status)
{
	struct mconn *c = req->data;

	if (status < 0 || c->closing || uv_shutdown(&c->sreq, &c->h.stream, shutdown_cb) < 0)
		mconn_close(c);
}

static void respond(struct mconn *c, const char *status, const char *type,
                    const char *body, size_t len, bool with_body)
{
	char hdr[256];
	int n;
	uv_buf_t b;

	c->answered = true;
	c->len = 0;
	n = snprintf(hdr, sizeof(hdr),
	             "HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	             "Connection: close\r\n\r\n", status, type, len);
	c->out = malloc((size_t)n + (with_body ? len : 0));
	if (!c->out) {
		mconn_close(c);
		return;
	}
	memcpy(c->out, hdr, (size_t)n);
	if (with_body)
		memcpy(c->out + n, body, len);
	b = uv_buf_init(c->out, (unsigned)((size_t)n + (with_body ? len : 0)));
	c->wreq.data = c;
	c->sreq.data = c;
	if (uv_write(&c->wreq, &c->h.stream, &b, 1, written_cb) < 0)
		mconn_close(c);
}

static void respond_text(struct mconn *c, const char *status, const char *msg)
{
	respond(c, status, "text/plain; charset=utf-8", msg, strlen(msg), true);
}

/* The request line of a complete head: GET (or HEAD) /metrics. */
static void handle(struct mconn *c)
{
	char method[8], target[64], version[16], *body = NULL;
	size_t len = 0;
	int r;

	c->buf[c->len] = '\0';
	if (sscanf(c->buf, "%7s %63s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7)) {
		respond_text(c, "400 Bad Request", "expected: GET /metrics HTTP/1.1\n");
		return;
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		respond_text(c, "405 Method Not Allowed", "only GET and HEAD\n");
		return;
	}
	if (strcmp(target, "/metrics") && strncmp(target, "/metrics?", 9)) {
		respond_text(c, "404 Not Found", "metrics are at /metrics\n");
		return;
	}
	r = metrics_render(c->m->d, c->m->d->cfg.metrics_vms == 1 ? see_all : NULL, NULL,
	                   &body, &len);
	if (r < 0) {
		log_warn("metrics: cannot render: %s", strerror(-r));
		respond_text(c, "500 Internal Server Error", "cannot read mvmd's state; see its log\n");
		return;
	}
	respond(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, len,
	        !strcmp(method, "GET"));
	free(body);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct mconn *c = h->data;

	(void)hint;
	/* one byte kept for the terminating NUL */
	*buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - 1 - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct mconn *c = s->data;

	(void)buf;
	if (n < 0) {
		mconn_close(c);
		return;
	}
	if (c->answered)
		c->len = 0;             /* after the answer: read and drop */
	if (n == 0 || c->answered)
		return;
	c->len += (size_t)n;
	c->buf[c->len] = '\0';
	if (strstr(c->buf, "\r\n\r\n") || strstr(c->buf, "\n\n"))
		handle(c);
	else if (c->len >= sizeof(c->buf) - 1)
		respond_text(c, "431 Request Header Fields Too Large", "request head over 4 KiB\n");
}

static void timeout_cb(uv_timer_t *t)
{
	mconn_close(t->data);
}

static void connection_cb(uv_stream_t *server, int status)
{
	struct metrics *m = server->data;
	bool tcp = server == (uv_stream_t *)&m->tcp_l;
	struct mconn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->m = m;
	if (tcp)
		uv_tcp_init(m->d->loop, &c->h.tcp);
	else
		uv_pipe_init(m->d->loop, &c->h.pipe, 0);
	uv_timer_init(m->d->loop, &c->timer);
	c->h.stream.data = c->timer.data = c;
	c->handles = 2;
	TAILQ_INSERT_TAIL(&m->conns, c, link);
	m->nconns++;
	if (uv_accept(server, &c->h.stream) < 0) {
		mconn_close(c);
		return;
	}
	if (m->nconns > METRICS_MAX_CONNS) {
		m->http_rejected++;
		mconn_close(c);
		return;
	}
	uv_timer_start(&c->timer, timeout_cb, METRICS_TIMEOUT_MS, 0);
	if (uv_read_start(&c->h.stream, alloc_cb, read_cb) < 0)
		mconn_close(c);
}

int metrics_init(struct mvmd *d)
{
	struct metrics *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->d = d;
	TAILQ_INIT(&m->conns);
	d->metrics = m;
	return 0;
}

static int listen_unix(struct metrics *m)
{
	struct mvmd *d = m->d;
	int n = snprintf(m->path, sizeof(m->path), "%s/metrics.sock", d->cfg.run_dir);
	int r;

	if (n < 0 || (size_t)n >= sizeof(m->path)) {
		log_error("metrics socket: %s/metrics.sock is too long for a socket path",
		          d->cfg.run_dir);
		return -ENAMETOOLONG;
	}
	/* ours from an earlier run: the run dir is mvmd's and locked with the
	 * state dir */
	if (unlink(m->path) < 0 && errno != ENOENT) {
		log_error("metrics socket %s: %s", m->path, strerror(errno));
		return -errno;
	}
	uv_pipe_init(d->loop, &m->unix_l, 0);
	m->unix_l.data = m;
	m->unix_on = true;
	r = uv_pipe_bind(&m->unix_l, m->path);
	/* counts and capacity only, no names: any local user may read them */
	if (r == 0 && chmod(m->path, 0666) < 0)
		r = -errno;
	if (r == 0)
		r = uv_listen((uv_stream_t *)&m->unix_l, 64, connection_cb);
	if (r < 0)
		log_error("cannot serve metrics on %s: %s", m->path, uv_strerror(r));
	return r;
}

static int listen_tcp(struct metrics *m)
{
	struct mvmd *d = m->d;
	int r;

	uv_tcp_init(d->loop, &m->tcp_l);
	m->tcp_l.data = m;
	m->tcp_on = true;
	r = uv_tcp_bind(&m->tcp_l, (const struct sockaddr *)&d->cfg.metrics_addr, 0);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&m->tcp_l, 64, connection_cb);
	if (r == UV_EAFNOSUPPORT)
		log_error("cannot serve metrics on %s: %s; mvmd.service allows only AF_UNIX: "
		          "add RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 and "
		          "IPAddressAllow=localhost with systemctl edit mvmd", d->cfg.metrics_listen,
		          uv_strerror(r));
	else if (r < 0)
		log_error("cannot serve metrics on %s: %s; fix metrics_listen or free the port",
		          d->cfg.metrics_listen, uv_strerror(r));
	else
		log_info("metrics on http://%s/metrics", d->cfg.metrics_listen);
	return r;
}

int metrics_listen(struct mvmd *d)
{
	int r = listen_unix(d->metrics);

	if (r == 0 && d->cfg.metrics_listen)
		r = listen_tcp(d->metrics);
	return r;
}

void metrics_close(struct mvmd *d)
{
	struct metrics *m = d->metrics;

	if (!m)
		return;
	while (!TAILQ_EMPTY(&m->conns))
		mconn_close(TAILQ_FIRST(&m->conns));
	if (m->unix_on) {
		m->unix_on = false;
		uv_close((uv_handle_t *)&m->unix_l, NULL);
		unlink(m->path);
	}
	if (m->tcp_on) {
		m->tcp_on = false;
		uv_close((uv_handle_t *)&m->tcp_l, NULL);
	}
}

void metrics_free(struct mvmd *d)
{
	if (d->metrics) {
		json_decref(d->metrics->samples);
		json_decref(d->metrics->next);
	}
	free(d->metrics);
	d->metrics = NULL;
}
