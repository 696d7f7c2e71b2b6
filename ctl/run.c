/* SPDX-License-Identifier: MIT */
/*
 * run: a VM as a foreground job, for batch schedulers (docs/cluster.md).
 * Creates and starts the VM (waiting in mvmd's queue), prints its console,
 * and exits when it ends with a status a scheduler can act on.  SIGTERM and
 * SIGINT stop the VM gracefully; an mvmd restart is waited out and the
 * console re-attached.  State is polled with vm.show rather than followed
 * by events, so a reconnect needs no replay: the next answer is the truth.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "util/util.h"

#define RUN_EX_TEMPFAIL       75      /* sysexits.h: try again later */
#define RUN_POLL_MS           250     /* vm.show while queued, reconnects */
#define RUN_FIRST_CONNECT_MS  10000   /* mvmd down when the job starts */
#define RUN_STOP_TIMEOUT_S    10      /* mvmctl stop's default */

static volatile sig_atomic_t run_signal;

static void run_signal_cb(int sig)
{
	run_signal = sig;
}

struct run {
	struct ctl *c;
	const char *name;
	unsigned stop_timeout_s;
	bool rm;
	bool said_waiting;      /* "mvmd unreachable" printed once per outage */
	size_t printed;         /* console bytes already on stdout */
	int stopped_by;         /* the signal that made us stop the VM */
};

static const char *str_of(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);   /* a signal cuts it short, which is wanted */
}

/* mvmd restarting looks like this; other errors will not go away. */
static bool unreachable(int err)
{
	return err == ENOENT || err == ECONNREFUSED || err == EAGAIN;
}

/*
 * Connects c, waiting while mvmd is unreachable: up to max_ms (-1: as long
 * as it takes, the scheduler's time limit bounds the job).  0, or the exit
 * status to end with.
 */
static int run_connect(struct run *r, struct ctl *c, long max_ms)
{
	long waited = 0;
	int k;

	while ((k = ctl_try_connect(c)) < 0 && unreachable(-k)) {
		if (!r->said_waiting)
			fprintf(stderr, "mvmctl: mvmd at %s is unreachable (%s); waiting\n",
			        c->socket_path, strerror(-k));
		r->said_waiting = true;
		if (max_ms >= 0 && waited >= max_ms) {
			fprintf(stderr, "mvmctl: gave up on mvmd after %ld s; the job may "
			        "run later or elsewhere\n", waited / 1000);
			return RUN_EX_TEMPFAIL;
		}
		/* asked to stop: wait for mvmd only as long as the stop may take;
		 * the VM keeps its job label, so the Epilog removes it */
		if (run_signal && waited >= (long)r->stop_timeout_s * 1000) {
			fprintf(stderr, "mvmctl: mvmd still unreachable; %s left to the "
			        "job's cleanup\n", r->name);
			return 128 + run_signal;
		}
		sleep_ms(RUN_POLL_MS);
		waited += RUN_POLL_MS;
	}
	if (k < 0)
		return ctl_connect(c) == CTL_EXIT_OK ? 0 : CTL_EXIT_DAEMON;
	if (r->said_waiting)
		fprintf(stderr, "mvmctl: mvmd is back; re-attaching to %s\n", r->name);
	r->said_waiting = false;
	return 0;
}

/* One request on a fresh connection: 0 and *ret_res, or an exit status;
 * CTL_EXIT_CONNECT when mvmd went away (the caller retries). */
static int run_call(struct run *r, json_t *req, json_t **ret_res)
{
	struct ctl c = { .socket_path = r->c->socket_path, .fd = -1 };
	int k = run_connect(r, &c, -1);

	if (k) {
		json_decref(req);
		return k;
	}
	k = ctl_call(&c, req, ret_res);
	ctl_disconnect(&c);
	return k;
}

static json_t *run_request(struct run *r, enum proto_op op)
{
	json_t *req = ctl_request(r->c, op);

	proto_request_set_str(req, "name", r->name);
	return req;
}

/* Console bytes from offset `at` of the log; skips what is already out. */
static void run_print(struct run *r, const char *data, size_t at)
{
	size_t n = strlen(data);

	if (at + n <= r->printed)
		return;
	if (at < r->printed) {
		data += r->printed - at;
		n -= r->printed - at;
	}
	ctl_write_all(STDOUT_FILENO, data, n);
	r->printed += n;
}

/*
 * After an mvmd restart the worker sends the new link what it queued while
 * mvmd was away, which its serial log (read just before, at re-attach)
 * already holds.  Live chunks are held in acc while they are a run of the
 * log that reaches its end: once they reach it they were all printed; a
 * chunk that breaks the run, or a quiet poll, prints what is held.
 * Returns whether to keep checking.
 */
static bool reattach_dedupe(struct run *r, const char *log, char **acc, const char *data)
{
	size_t ll = strlen(log), al = *acc ? strlen(*acc) : 0, dl = strlen(data), p;
	char *n = realloc(*acc, al + dl + 1);

	if (!n) {
		run_print(r, data, r->printed);
		return false;
	}
	memcpy(n + al, data, dl + 1);
	*acc = n;
	al += dl;
	for (p = ll >= al ? ll - al + 1 : 0; p-- > 0;)
		if (!memcmp(log + p, n, al)) {
			if (p + al < ll)
				return true;            /* more of the run may follow */
			free(*acc);             /* the run reached the log's end */
			*acc = NULL;
			return false;
		}
	run_print(r, n, r->printed);
	free(*acc);
	*acc = NULL;
	return false;
}

static void flush_held(struct run *r, char **acc)
{
	if (*acc)
		run_print(r, *acc, r->printed);
	free(*acc);
	*acc = NULL;
}

/*
 * Follows the console log until the worker ends, mvmd goes away or a
 * signal asks us to stop.  Re-attaching reads the log from its start and
 * prints only what is new (reattach_dedupe() for the worker's replay).
 */
static void run_follow(struct run *r)
{
	struct ctl c = { .socket_path = r->c->socket_path, .fd = -1 };
	struct proto_response msg;
	json_t *req = run_request(r, PROTO_OP_VM_LOGS), *res = NULL;
	int k;

	proto_request_set_bool(req, "follow", true);
	if (run_connect(r, &c, -1)) {
		json_decref(req);
		return;
	}
	if (ctl_call(&c, req, &res) == CTL_EXIT_OK) {
		const char *log = str_of(res, "data");
		bool check = r->printed > 0;   /* a re-attach */
		char *acc = NULL;

		run_print(r, log, 0);
		while (!run_signal) {
			k = ctl_read_message(&c, RUN_POLL_MS, &msg);
			if (k == -ETIMEDOUT) {
				flush_held(r, &acc);
				check = false;
				continue;
			}
			if (k < 0)
				break;  /* the worker ended, or mvmd went away */
			if (msg.is_event && !strcmp(msg.event, "log")) {
				const char *data = str_of(msg.root, "data");

				if (check)
					check = reattach_dedupe(r, log, &acc, data);
				else
					run_print(r, data, r->printed);
			}
			proto_response_done(&msg);
		}
		flush_held(r, &acc);
		json_decref(res);
	}
	ctl_disconnect(&c);
}

/* A graceful stop: mvmd sends Ctrl-Alt-Del and kills after the timeout. */
static int run_stop(struct run *r)
{
	json_t *req = run_request(r, PROTO_OP_VM_STOP);

	r->stopped_by = run_signal;
	fprintf(stderr, "mvmctl: %s received, stopping %s (up to %u s)\n",
	        strsignal(r->stopped_by), r->name, r->stop_timeout_s);
	proto_request_set_int(req, "timeout_s", r->stop_timeout_s);
	return run_call(r, req, NULL);
}

/* The job's exit status for a VM that ended (docs/cluster.md). */
static int run_exit_status(const struct run *r, const json_t *vm)
{
	const char *state = str_of(vm, "state");
	const char *reason = json_string_value(json_object_get(vm, "exit_reason"));
	json_int_t status = json_integer_value(json_object_get(vm, "exit_status"));

	fprintf(stderr, "mvmctl: %s ended %s%s%s%s\n", r->name, state,
	        reason ? " (" : "", reason ? reason : "", reason ? ")" : "");
	if (r->stopped_by)
		return 128 + r->stopped_by;
	if (!strcmp(state, "stopped"))
		/* "stopped while queued", "daemon restarted while queued": it never ran */
		return reason && strstr(reason, "queued") ? RUN_EX_TEMPFAIL : 0;
	return status > 0 && status < 256 ? (int)status : 1;
}

static bool run_ended(const char *state)
{
	return !strcmp(state, "stopped") || !strcmp(state, "crashed") ||
	       !strcmp(state, "created");
}

/* Until the VM ends: its final record in *ret_vm, or an exit status. */
static int run_wait(struct run *r, json_t **ret_vm)
{
	bool said_queued = false;
	json_t *res, *vm;
	const char *state;
	int k;

	for (;;) {
		if (run_signal && !r->stopped_by) {
			k = run_stop(r);
			if (k && k != CTL_EXIT_CONNECT)
				return k;
		}
		k = run_call(r, run_request(r, PROTO_OP_VM_SHOW), &res);
		if (k == CTL_EXIT_CONNECT) {
			sleep_ms(RUN_POLL_MS);
			continue;
		}
		if (k)
			return k == RUN_EX_TEMPFAIL || k > 128 ? k : CTL_EXIT_DAEMON;
		vm = json_incref(json_object_get(res, "vm"));
		json_decref(res);
		state = str_of(vm, "state");
		if (run_ended(state)) {
			/* a short VM can start and end between two polls of a
			 * queued one: print what its log holds that is not out */
			run_follow(r);
			*ret_vm = vm;
			return 0;
		}
		if (!strcmp(state, "queued")) {
			if (!said_queued)
				fprintf(stderr, "mvmctl: %s is queued for a start slot\n", r->name);
			said_queued = true;
			sleep_ms(RUN_POLL_MS);
		} else {
			run_follow(r);
			/* the log ends a moment before the state does */
			if (!run_signal)
				sleep_ms(RUN_POLL_MS / 5);
		}
		json_decref(vm);
	}
}

/* Takes --rm and --stop-timeout S out of argv; create parses the rest. */
static int run_options(struct run *r, int *argc, char **argv)
{
	int i, j = 0;
	uint64_t v;
	const char *val;

	for (i = 0; i < *argc; i++) {
		val = NULL;
		if (!strcmp(argv[i], "--rm")) {
			r->rm = true;
			continue;
		}
		if (!strncmp(argv[i], "--stop-timeout=", 15))
			val = argv[i] + 15;
		else if (!strcmp(argv[i], "--stop-timeout") && i + 1 < *argc)
			val = argv[++i];
		else if (!strcmp(argv[i], "--stop-timeout"))
			return ctl_usage_error("run", "option '--stop-timeout' needs a value");
		if (!val) {
			argv[j++] = argv[i];
			continue;
		}
		if (util_parse_uint(val, 0, 86400, &v) < 0)
			return ctl_usage_error("run", "--stop-timeout wants whole seconds "
			                       "(0 to 86400), not '%s'", val);
		r->stop_timeout_s = (unsigned)v;
	}
	*argc = j;
	argv[j] = NULL;
	return 0;
}

/* Labels that tie the VM to its scheduler job, unless given already. */
static void run_labels(json_t *req)
{
	json_t *labels = json_object_get(json_object_get(req, "args"), "labels");
	const char *job = getenv("SLURM_JOB_ID");

	if (job && *job && !json_object_get(labels, "slurm_job"))
		json_object_set_new(labels, "slurm_job", json_string(job));
}

static void run_signals(void)
{
	struct sigaction sa = { .sa_handler = run_signal_cb };

	/* no SA_RESTART: a signal cuts the sleeps short */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* Slurm sends SIGCONT before SIGTERM; it must not read as a stop */
	signal(SIGCONT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
}

static int run_create(struct run *r, json_t *req)
{
	int k = run_connect(r, r->c, RUN_FIRST_CONNECT_MS);

	if (k) {
		json_decref(req);
		return k;
	}
	k = ctl_call(r->c, req, NULL);
	ctl_disconnect(r->c);
	/* answers as ctl_call: 75 for `unavailable`; mvmd lost mid-create is
	 * "not now" too, unless the VM turns out to exist */
	return k == CTL_EXIT_CONNECT ? RUN_EX_TEMPFAIL : k;
}

int run_run(struct ctl *c, int argc, char **argv)
{
	struct run r = { .c = c, .stop_timeout_s = RUN_STOP_TIMEOUT_S };
	json_t *req, *vm = NULL;
	int k, status;

	k = run_options(&r, &argc, argv);
	if (!k)
		k = vm_create_request(c, argc, argv, &req);
	if (k)
		return k;
	r.name = json_string_value(json_object_get(json_object_get(req, "args"), "name"));
	r.name = strdup(r.name ? r.name : "");
	if (!r.name)
		abort();        /* as ctl_request: nothing better to do */
	run_labels(req);
	run_signals();
	status = run_create(&r, req);
	if (status == CTL_EXIT_OK) {
		status = run_wait(&r, &vm);
		if (vm)
			status = run_exit_status(&r, vm);
		json_decref(vm);
		if (r.rm) {
			req = run_request(&r, PROTO_OP_VM_RM);
			proto_request_set_bool(req, "force", true);
			if (run_call(&r, req, NULL) == CTL_EXIT_OK)
				fprintf(stderr, "mvmctl: %s removed\n", r.name);
		}
	}
	free((char *)r.name);
	return status;
}
