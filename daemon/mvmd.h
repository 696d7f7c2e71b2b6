/* SPDX-License-Identifier: MIT */
/*
 * mvmd internals shared by its files.  Calls run one way, top to bottom
 * (docs/architecture.md "Layers"); a lower layer reports upward only
 * through callbacks (worker_hooks, vm_observer):
 *   main.c        options, config, the loop, start-up order
 *   control.c     the socket, framing, credentials
 *   dispatch.c    one handler per operation; every reply, waiter and
 *                 event/console fan-out
 *   adopt.c       start-up reconciliation with what an earlier mvmd left
 *   restart.c     restart policies and health checks (a worker observer)
 *   vmstats.c     a running VM's counters (worker link + cgroup)
 *   admit.c       admission, the start queue, cgroups; never replies
 *   supervisor.c  worker processes: spawn, pidfd, link, exit decision
 *   vms.c         one record per VM, one commit path (store, update,
 *                 publish) over db/
 * Leaves: capacity.c, cgroup.c, pressure.c, sandbox.c (worker uids and run dirs),
 * spawn.c, access.c, tap.c, config.c, notify.c, helpers.c (log, clock,
 * paths).
 */
#ifndef MVM_MVMD_H
#define MVM_MVMD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/capacity.h"
#include "daemon/pressure.h"
#include "daemon/restart_policy.h"
#include "daemon/cgroup.h"
#include "daemon/workq.h"
#include "db/db.h"
#include "proto/proto.h"

/* ---- config ------------------------------------------------------------- */

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct config {
	char *state_dir;
	char *run_dir;
	char *socket_path;
	char *vmm_path;
	enum log_level log_level;
	char *path;                     /* the config file, for SIGHUP; NULL: none */
	char *cgroup_parent;            /* NULL: "mvm" beneath mvmd's own cgroup */
	const char *cgroup_root;        /* not a key: NULL /sys/fs/cgroup (unit tests) */
	struct cap_limits limits;       /* capacity keys, parsed by capacity.c */
	double health_interval;         /* seconds between pings to a worker; 0: off */
	double health_timeout;          /* no pong for this long: hung, killed */
	/* worker sandbox (sandbox.c): -1 unset, on when mvmd runs as root */
	int sandbox;
	uint32_t sandbox_uid_base;      /* workers run as base + index (uid and gid) */
	uint32_t sandbox_uid_count;     /* uids: at most this many sandboxed workers */
	char *sandbox_lease_dir;        /* host-wide uid leases (util/uid_lease.h) */
	/* control.c's bounds on clients (README "Configuration") */
	uint32_t client_max;            /* connections in all (root's not counted) */
	uint32_t client_max_per_uid;    /* connections of one uid (root: none) */
	uint64_t client_output_max_per_uid;     /* unsent bytes of one uid's clients */
	double client_line_timeout;     /* an unfinished request line, seconds */
	uint32_t fd_reserve;            /* fds kept for workers and restarts */
	/* the nice value of mvmd's loop thread alone (main.c), so that clients
	 * are answered while booting guests and other work keep the CPUs busy */
	int loop_nice;
	bool loop_nice_set;
	/* admission refuses starts while the host's memory is under pressure */
	struct pressure_limits pressure;
	const char *proc_root;          /* not a key: NULL /proc (tests) */
	/* metrics over TCP (metrics.c): "[HOST:]PORT", NULL off; parsed */
	char *metrics_listen;
	struct sockaddr_storage metrics_addr;
	int metrics_vms;                /* per-VM series on the HTTP endpoints too */
	char error[256];                /* why config_load failed, if it says */
};

/* Built-in defaults; argv0 locates a build-tree mvm-vmm. */
int config_defaults(struct config *cfg, const char *argv0);
/* `key = value` lines (state_dir, run_dir, socket, log_level, vmm,
 * cgroup_parent, sandbox, sandbox_uid_base, sandbox_uid_count, sandbox_lease_dir,
 * admit_memory_psi, admit_mem_available_mib, and the capacity keys of capacity.h including `pool NAME
 * max N`); '#' comments.  On error *ret_line says where and cfg->error,
 * when set, why. */
int config_load(struct config *cfg, const char *path, int *ret_line);
int config_set(struct config *cfg, const char *key, const char *value);
void config_free(struct config *cfg);
int log_level_parse(const char *s);

void mvmd_log(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
#define log_error(...) mvmd_log(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) mvmd_log(LOG_WARN, __VA_ARGS__)
#define log_info(...) mvmd_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...) mvmd_log(LOG_DEBUG, __VA_ARGS__)
extern enum log_level mvmd_log_level;
/* Prefix lines with journald's <N> priority when stderr is the journal
 * stream systemd named in JOURNAL_STREAM; true if so. */
bool mvmd_log_init(void);

/* ---- the daemon --------------------------------------------------------- */

struct conn;
struct vm;
struct worker;
struct worker_hooks;
struct pending;
struct admission;
struct waiter;
struct start_cgroup;
struct restart_rec;
struct vm_observer;
struct vm_files;
struct metrics;

TAILQ_HEAD(conn_list, conn);
TAILQ_HEAD(worker_list, worker);
TAILQ_HEAD(admission_list, admission);
TAILQ_HEAD(waiter_list, waiter);
TAILQ_HEAD(vm_observer_list, vm_observer);
TAILQ_HEAD(vm_list, vm);
TAILQ_HEAD(client_uid_list, client_uid);
TAILQ_HEAD(sandbox_uid_list, sandbox_uid);
TAILQ_HEAD(worker_call_list, worker_call);
TAILQ_HEAD(write_req_list, write_req);

#define WORKER_HOOKS_MAX 8

struct mvmd {
	uv_loop_t *loop;
	struct config cfg;
	struct db *db;
	uid_t uid;                      /* the daemon's own uid */
	uv_pipe_t listener;
	bool listening;
	struct conn_list conns;         /* all connections (control.c) */
	struct client_uid_list client_uids;     /* per-uid use (control.c) */
	uint32_t nconns_counted;        /* connections under client_max */
	uv_timer_t line_timer;          /* unfinished request lines (control.c) */
	bool line_timer_init;
	/* the loop turn's end: commit the batch, then send held output */
	uv_prepare_t turn_prepare;
	uv_check_t turn_check;
	bool turn_init;
	bool output_held;               /* some connection holds output */
	struct worker_list workers;     /* live workers (supervisor.c) */
	uint64_t workers_gen;           /* bumped at each change of workers */
	struct vm **vms;                /* hash of per-VM records by row id (vms.c) */
	size_t vms_buckets, nvms;
	struct vm_observer_list vm_observers;
	struct vm_list unstored;        /* facts to store again (vms.c) */
	uv_timer_t unstored_timer;
	bool unstored_timer_init;
	const struct worker_hooks *worker_hooks[WORKER_HOOKS_MAX];
	int nworker_hooks;
	struct sandbox_uid_list sandbox_uids;   /* uids held by our workers (sandbox.c) */
	uint32_t sandbox_next;          /* index the next uid search starts at */
	uv_signal_t sig_term, sig_int, sig_hup;
	bool shutting_down;
	/* capacity (admit.c) */
	struct cap cap;
	struct cgroup cg;
	struct admission_list admissions;       /* VMs holding a reservation */
	uv_timer_t start_timer;         /* the start rate's next token */
	struct workq *cg_reaper;        /* removes ended VMs' cgroups off the loop */
	struct workq *spawner;          /* spawns workers off the loop (spawn.c) */
	struct workq *preparer;         /* runs spawn jobs' prepare() ahead of it */
	bool admit_ready;
	/* a queued VM's start failed: dispatch.c answers whoever waits */
	void (*admit_start_failed_cb)(struct vm *vm, const struct proto_error *err);
	/* how admit.c starts a worker: supervisor_start (main.c sets it), or
	 * a unit test's own */
	int (*start_worker)(struct vm *vm, struct vm_files *files, const struct start_cgroup *cg,
	                    struct proto_error *err);
	struct restart_state *restart;  /* health checks, restart backoff (restart.c) */
	int lock_fd;                    /* <state-dir>/mvmd.lock, flock'ed; -1 none */
	int run_lock_fd;                /* <run-dir>/mvmd.lock, the same */
	/* metrics.c: its counters and HTTP server; admit.c counts refusals
	 * here by the error code it answers */
	struct metrics *metrics;
	uint64_t start_refusals[PROTO_ERR_COUNT_];
	struct reclaim *reclaim;        /* reclaim.c */
};

/* reclaim.c: balloons give memory back under host memory pressure and
 * get it back once the pressure is gone (the file's comment says how). */
extern const struct worker_hooks reclaim_worker_hooks;
int reclaim_init(struct mvmd *d);
/* cfg.pressure changed (SIGHUP): restart or stop the timer. */
void reclaim_reload(struct mvmd *d);
void reclaim_free(struct mvmd *d);
/* host.info's "reclaim": settings, pressure now, what is held, counts. */
json_t *reclaim_json(struct mvmd *d);

/* metrics.c: Prometheus text of the capacity, the queue, the VMs by state
 * and the counters its worker hooks keep; served over HTTP on
 * <run-dir>/metrics.sock and cfg.metrics_listen, and by the metrics op. */
extern const struct worker_hooks metrics_worker_hooks;
int metrics_init(struct mvmd *d);
int metrics_listen(struct mvmd *d);
/* may_see(arg, owner uid): the VMs whose per-VM series it shows; NULL:
 * none (the HTTP endpoints unless metrics_vms is on). */
int metrics_render(struct mvmd *d, bool (*may_see)(void *arg, uint32_t owner), void *arg,
                   char **ret, size_t *ret_len);
void metrics_close(struct mvmd *d);
void metrics_free(struct mvmd *d);

/* helpers.c: no role, called from every file, calling none. */
/* Wall-clock seconds: timestamps people read (rows, events). */
double mvmd_now(void);
/* Monotonic seconds: every interval (health, backoff, run length). */
double mvmd_mono(void);
/* <state-dir>/vms/<name>[/<file>] */
int mvmd_vm_dir(const struct mvmd *d, const char *name, const char *file,
                char *buf, size_t size);
/* <run-dir>/vms/<name>.sock, the worker's adoption socket (creates
 * <run-dir>/vms). */
int mvmd_adopt_socket(const struct mvmd *d, const char *name, char *buf, size_t size);
int mvmd_proc_stat(long pid, char *state, uint64_t *cpu_ns);
#ifdef MVM_TEST_HOOKS
long mvmd_test_stall_ms(const char *var);
void mvmd_sleep_ms(long ms);
#endif

/* ---- per-VM records (vms.c) --------------------------------------------- */

/*
 * One record per VM that some layer holds state for (a worker, an
 * admission, a restart record, a waiting client), found by row id.  Each
 * layer keeps its part here and holds a reference while it does.  row is
 * the VM's row, kept in step with the database: every state change goes
 * through vm_commit().
 */
struct vm {
	struct mvmd *d;
	struct vm *hnext;               /* hash chain */
	int refs;
	struct proto_vm row;
	struct worker *worker;          /* supervisor.c: its live worker */
	struct admission *adm;          /* admit.c: its reservation */
	struct restart_rec *restart;    /* restart.c: its restart policy state */
	struct waiter_list waiters;     /* dispatch.c: clients waiting on it */
	/* vms.c: a fact (a worker's end) or a detail (its pid) not yet known
	 * stored: in the open batch (unstored_batched) or refused by the
	 * disk and retried; unstored_event: the change kept has an event */
	bool unstored, unstored_batched, unstored_event;
	char *unstored_reason;
	TAILQ_ENTRY(vm) unstored_link;
	/* reclaim.c: MiB its balloon holds above the row's balloon_mib, the
	 * guest's last balloon stats, and a request in flight */
	int64_t reclaim_mib, reclaim_actual_mib;
	uint64_t reclaim_avail;
	bool reclaim_busy;
};

/* Told of every committed change (and of deletion: state "deleted"). */
struct vm_observer {
	TAILQ_ENTRY(vm_observer) link;
	void (*changed_cb)(struct vm_observer *o, struct vm *vm, const char *reason,
	                   double time);
};

void vms_init(struct mvmd *d);
/* Daemon exit, after every holder let go. */
void vms_free(struct mvmd *d);
void vms_observe(struct mvmd *d, struct vm_observer *o);
/* The record of row->id, created with a copy of row; a reference. */
struct vm *vms_hold(struct mvmd *d, const struct proto_vm *row);
struct vm *vm_ref(struct vm *vm);
void vm_release(struct vm *vm);
struct vm *vms_find(struct mvmd *d, int64_t id);
/* The one transition path: set the state, store the row with an event,
 * publish to observers.  On a storage error (-errno) the row in memory is
 * unchanged and nobody hears of it; the caller logs. */
int vm_commit(struct vm *vm, enum proto_vm_state state, const char *reason);
/* vm_commit for a fact that already happened (a worker ended, a restart
 * failed): the record and every reader see it at once and observers hear
 * of it; it goes into the open batch, and if the database cannot take it
 * (now or when the batch commits) it is stored again every VMS_RETRY_S
 * seconds until it is; returns the storage error of now (logged by the
 * caller) or 0. */
int vm_commit_fact(struct vm *vm, enum proto_vm_state state, const char *reason);
#define VMS_RETRY_S 2
/* Daemon exit: one last try to store the facts, then stop retrying. */
void vms_flush(struct mvmd *d);
/* Store the row's runtime columns without an event (a spawned pid). */
int vm_store(struct vm *vm);
/* vm_store into the batch, like a fact: 0, or the error of opening the
 * batch; one lost later is kept and retried like a fact. */
int vm_store_batched(struct vm *vm);
/* Group commit (vms.c's opening comment): tell db.c whom to report a
 * batch's end to, once it is open; whether one is open; commit it. */
void vms_db_opened(struct mvmd *d);
bool vms_batch_open(const struct mvmd *d);
void vms_commit_batch(struct mvmd *d);
/* Delete the row; observers hear state "deleted". */
int vm_delete(struct vm *vm);
/* struct vm_files (below): none open; close what is open. */
void vm_files_init(struct vm_files *f);
void vm_files_close(struct vm_files *f);
/* A storage_error for a commit that failed with r: says what is wrong
 * with the state dir (locked by another process, read-only, full). */
void vms_storage_error(const struct mvmd *d, int r, struct proto_error *err);

/* ---- control connections (control.c) ----------------------------------- */

struct cred {
	uid_t uid;
	gid_t gid;
	pid_t pid;
	int ngroups;
	gid_t groups[64];
};

enum conn_mode { CONN_JSON, CONN_CONSOLE };

struct conn {
	struct mvmd *d;
	TAILQ_ENTRY(conn) link;
	struct client_uid *u;           /* its uid's use (control.c) */
	bool counted;                   /* in u's and the total's connections */
	double line_since;              /* first byte of an unfinished line, 0 none */
	bool out_paused;                /* requests wait: too much unsent output */
	bool console_paused;            /* console input waits for the worker link */
	uv_pipe_t pipe;
	struct cred cred;
	struct proto_linebuf lb;
	bool reading;
	bool busy;                      /* a request is waiting for the VM */
	bool closing;
	bool ending;                    /* conn_end: shutdown in flight */
	/* output waiting for the open batch's commit, then the shutdown */
	struct write_req_list held;
	size_t held_bytes;
	uv_shutdown_t *end_held;
	/* dispatch.c's, per connection */
	enum conn_mode mode;
	struct waiter *waiter;          /* its busy request's waiter, if any */
	struct pending *pending;        /* or its worker requests (update, stats) */
	int64_t console_vm;             /* CONN_CONSOLE: the VM row id */
	int64_t follow_vm;              /* vm.logs follow: row id, 0 none */
	bool subscribed;                /* events.subscribe */
	char sub_vm[64];                /* "" all visible VMs */
};

int control_listen(struct mvmd *d);
void control_close_all(struct mvmd *d);
/* Send one JSON message (steals msg).  Never fails the caller: a
 * connection that cannot take it is closed. */
void conn_send(struct conn *c, json_t *msg);
void conn_send_raw(struct conn *c, const void *data, size_t len);
/* Send an encoded message line (buf taken over, freed after writing). */
void conn_send_line(struct conn *c, char *buf, size_t len);
void conn_reply_ok(struct conn *c, json_t *id, json_t *result);
void conn_reply_error(struct conn *c, json_t *id, const struct proto_error *err);
/* A busy request finished: go on with the next buffered line. */
void conn_resume(struct conn *c);
/* Console input: stop reading it while the worker link is full, go on
 * when it drained. */
void conn_console_pause(struct conn *c, bool paused);
/* Close now; queued output is dropped. */
void conn_close(struct conn *c);
/* Close once queued output is written (EOF for console and log clients). */
void conn_end(struct conn *c);
/* Caller may see and control VMs owned by owner. */
bool conn_may_access(const struct conn *c, uint32_t owner);

/* ---- dispatch (dispatch.c) ---------------------------------------------- */

/* Subscribe to VM changes and admission failures. */
void dispatch_init(struct mvmd *d);
/* What dispatch.c, admit.c and restart.c hear from workers; main.c adds
 * them to the supervisor in that order. */
extern const struct worker_hooks dispatch_worker_hooks, admit_worker_hooks,
	restart_worker_hooks;
/* Handle one decoded request; it answers now or, for requests that wait on
 * a VM, marks the connection busy and answers later. */
void dispatch_request(struct conn *c, struct proto_request *req);
/* Bytes a console client typed. */
void dispatch_console_in(struct conn *c, const void *data, size_t len);
/* A connection is closing: forget what waits for it. */
void dispatch_conn_closed(struct conn *c);

/* ---- workers (supervisor.c) --------------------------------------------- */

/* How the supervisor reports: each observer's hooks, in the order they
 * were added (main.c: dispatch, admission, restart policy).  Any may be
 * NULL. */
struct worker_hooks {
	/* right after the spawn: it has only exec'd */
	void (*spawned_cb)(struct vm *vm, pid_t pid);
	/* a start supervisor_start() accepted is done: r 0 and err NULL, the
	 * worker runs and its pid is stored; else -errno and why the start
	 * failed: a worker that never ran (vm->worker NULL) leaves its row
	 * crashed ("start failed: ...") and no other hook follows; one that
	 * ran is killed, and its end follows */
	void (*start_done_cb)(struct vm *vm, int r, const struct proto_error *err);
	/* its first output; vm is committed running */
	void (*booted_cb)(struct vm *vm);
	void (*console_cb)(struct vm *vm, const unsigned char *data, size_t len);
	/* console input queued to it fell below its bound again */
	void (*console_drained_cb)(struct vm *vm);
	/* it died by a SIGKILL nobody asked for: a better reason, if known */
	void (*exit_reason_cb)(struct vm *vm, char *reason, size_t size);
	/* it ended and its final state is committed; requested: the user
	 * stopped or killed it; ran_s: how long it ran */
	void (*ended_cb)(struct vm *vm, bool requested, double ran_s);
};

void supervisor_observe(struct mvmd *d, const struct worker_hooks *h);

struct worker {
	struct mvmd *d;
	TAILQ_ENTRY(worker) link;
	bool linked;
	struct vm *vm;                  /* its record (a reference) */
	uv_pipe_t link_pipe;
	uv_timer_t timer;               /* stop timeout, kill grace, exit settle */
	int handles;                    /* open libuv handles; freed at 0 */
	struct proto_linebuf lb;
	bool booted, exited, link_eof, finished;
	bool boot_early;                /* it said booted before its spawn was done */
	bool stop_requested, kill_requested;
	bool stop_forced;               /* the stop timeout's SIGKILL was sent */
	int64_t stop_timeout_s;         /* of the stop requested */
	int64_t exit_status;
	int term_signal;
	bool has_status;                /* exit_status/term_signal are known */
	char link_reason[PROTO_LINK_REASON_MAX]; /* from the worker's exit message */
	bool has_link_status;
	int link_status;
	/* A worker is watched through its pidfd, readable once it exited,
	 * from its link's EOF on; while the link is up mvmd holds none (it
	 * opens one to signal).  A spawned one is our child and reaped
	 * through it; one re-adopted from an earlier mvmd (adopt.c) is not,
	 * so only its exit message says how it ended, and its pid is
	 * trusted only with the process start time adoption checked. */
	bool adopted;
	pid_t pid;
	uint64_t start_time;            /* adopted: /proc/PID/stat's starttime */
	int pidfd;                      /* -1: none */
	bool watched;                   /* pidfd_poll initialised */
	uv_poll_t pidfd_poll;
	double started_mono;            /* mvmd_mono() when it started */
	/* health (restart.c): pings over the link, answered by pongs */
	TAILQ_ENTRY(worker) slice_link; /* its health slice's list */
	double last_pong;               /* mvmd_mono() of the last pong or start */
	double ping_since;              /* the oldest unanswered ping; 0: none */
	int64_t ping_seq;
	bool answered;                  /* its loop sent anything: set up */
	/* overdue: what its loop thread had done when first found overdue
	 * (restart.c judges it one interval later) */
	bool overdue;
	double overdue_since;
	struct health_sample overdue_sample;
	bool starved_logged;
	bool watch_warned;              /* its pidfd could not be opened: logged */
	bool hung;                      /* killed for not answering */
	/* on the spawner thread still: no pid, no pidfd; the signals asked
	 * for meanwhile (bit N: signal N) are sent once it runs */
	bool spawning;
	uint64_t pending_signals;
	bool console_full;              /* console input on the link at its bound */
	struct sandbox_uid *uid;        /* sandbox.c: its uid; NULL unsandboxed */
	bool has_seccomp_nr;            /* its SIGSYS handler reported a syscall */
	int64_t seccomp_nr;
	/* run-time device requests in flight (supervisor_request) */
	struct worker_call_list calls;
	int64_t call_seq;
};

/* Files opened with the caller's credentials and handed to the worker. */
struct vm_files {
	int kernel_fd, initrd_fd;
	int disk_fds[16];
	int ndisks;
	int nic_fds[8];                 /* TAPs opened by tap_open() */
	int nnics;
};


/*
 * A VM's cgroup, made on the preparer thread right before its worker's
 * clone (admit.c fills it in): the mkdirs and limit writes wait on the
 * kernel's cgroup locks, and a cpu.cfs_quota_us write walks every CPU
 * cgroup of the host, so they must not run on mvmd's loop.
 */
struct start_cgroup {
	struct mvmd *d;
	char name[64];
	uint64_t mem_bytes;
	unsigned vcpus;
	/* on the preparer thread: 0 and *ret, or -errno and err[] (-EBUSY: it
	 * holds processes this mvmd did not start) */
	int (*make)(const struct start_cgroup *sc, struct cgroup_vm **ret, char *err, size_t n);
	/* on the loop, before the start_done_cb hook: the cgroup made is the
	 * callee's from now on */
	void (*made)(struct vm *vm, struct cgroup_vm *cg);
};

/* Start a worker for vm (state must allow it) in the cgroup cg describes
 * (NULL: none): commits "starting" and hands the spawn to the spawner
 * thread; 0 then, and the start_done_cb hook tells how it went (a cgroup
 * that could not be made fails it there).  Takes ownership of the fds in
 * files on success and failure. */
int supervisor_start(struct vm *vm, struct vm_files *files, const struct start_cgroup *cg,
                     struct proto_error *err);
/* Graceful stop: Ctrl-Alt-Del now, SIGKILL after timeout_s. */
int supervisor_stop(struct worker *w, int64_t timeout_s);
int supervisor_kill(struct worker *w, int sig);
/* Queue console input; false: the link is at its bound, stop reading the
 * client until console_drained_cb. */
bool supervisor_console_in(struct worker *w, const void *data, size_t len);
/* Daemon exit: close links, leave the workers running. */
void supervisor_detach_all(struct mvmd *d);
/* Take over a live worker of an earlier mvmd (adopt.c): link_fd is the
 * connected adoption socket (its hello already read), taken over on
 * success and failure; start_time the process start time of its pid
 * that adoption checked (util_proc_start_time). */
int supervisor_adopt(struct vm *vm, int link_fd, uint64_t start_time, bool booted,
                     struct worker **ret_w);
/* Health: send a ping; kill a worker that stopped answering as hung. */
int supervisor_ping(struct worker *w);
/*
 * A run-time device request to a running worker (set-limits, balloon or
 * stats; docs/protocol.md "Worker link"); m->seq is set here.  cb hears its
 * reply (result or stats-reply, borrowed for the call) or NULL when the
 * worker ended or was let go first: exactly once, never from inside this
 * call.  0, or -EPIPE (link closed) / -ENOMEM / -EINVAL, and then cb is
 * never called.  Bounding the wait is the caller's business.
 */
typedef void (*worker_reply_fn)(void *arg, const struct proto_link_msg *reply);
int supervisor_request(struct worker *w, struct proto_link_msg *m, worker_reply_fn cb,
                       void *arg);
void supervisor_hung(struct worker *w, const char *why);
/* Bytes from the worker wait unread on its link (a pong among them, maybe). */
bool supervisor_link_unread(struct worker *w);
/* The pid and process start time supervisor_start recorded beside the VM's
 * logs, which re-adoption checks so a recycled pid is never taken over:
 * 0, or -errno (none recorded). */
int supervisor_spawn_record(struct mvmd *d, const char *name, pid_t *ret_pid,
                            uint64_t *ret_start);
/* What a worker of name left in the run dir: its socket, its spawn
 * record, its sandbox directory. */
void supervisor_remove_runtime(struct mvmd *d, const char *name);

/* spawn.c: start path with fds[i] as fd i (-1: /dev/null), in its own
 * session, optionally as the init of a new PID namespace. */
#define SPAWN_MAX_FDS 40
#define SPAWN_MAX_ATTACH 8
struct spawn_req {
	const char *path;
	char *const *argv;
	const int *fds;
	int nfds;
	bool new_pid_ns;
	/* cgroup.procs fds the child writes itself into before its exec */
	const int *attach_fds;
	int nattach;
	unsigned test_stall_ms;         /* test builds: the child waits before its exec */
};
/* What a failed spawn_process() failed at: the exec (or the child's
 * steps before it), the clone (or the pipes and stack it needs), or the
 * attach_fds[] index whose write failed. */
#define SPAWN_STAGE_EXEC (-1)
#define SPAWN_STAGE_CLONE (-2)
/* the job's prepare() step, before the clone */
#define SPAWN_STAGE_PREPARE (-3)
/* 0 once the exec succeeded, with the child's pid and a pidfd for it;
 * else -errno of the clone, of an attach or of the failed exec (child
 * already reaped), and *ret_stage says which. */
int spawn_process(const struct spawn_req *r, pid_t *ret_pid, int *ret_pidfd, int *ret_stage);
/* Takes the fd slots spawn_process() hands a child its fds in, while
 * mvmd's fd numbers are small (start-up); else the first spawn does. */
void spawn_init(void);
/* Reap the child behind pidfd into *si: 0, or -EAGAIN if it still runs
 * (block false), or -ECHILD if it is not our child (an adopted worker). */
int spawn_reap(int pidfd, siginfo_t *si, bool block);
/* The pidfd names its process even if its pid were reused: 0 or -errno. */
int spawn_signal(int pidfd, int sig);
/* A worker's command line and fd layout (docs/protocol.md "Worker link"):
 * the VM's files as fds 4.., the link as fd 3, the VMM log as 1 and 2. */
struct spawn_worker_req {
	const char *vmm_path;
	const struct proto_vm *vm;
	const struct vm_files *files;
	const char *console_log;        /* --serial-log */
	const char *adopt_socket;       /* NULL: none */
	int log_fd, link_fd;
	const char *sandbox_dir;        /* NULL: unsandboxed */
	uint32_t sandbox_id;            /* its uid and gid */
	int sandbox_lease_fd;           /* its uid lease (a copy it keeps); -1: none */
	const char *vsock_uds;          /* --vsock uds=; NULL: the VM has no vsock */
	int64_t vsock_uid;              /* --vsock uid=, the socket's owner; -1: none */
};
/* A spawn for the spawner thread: the request, and its outcome for done_cb
 * (on the loop).  The fds it names are the submitter's, open until then. */
struct spawn_job {
	struct workq_job wq;            /* on the spawner */
	struct workq_job prep_wq;       /* on the preparer, before it */
	struct workq *spawner;          /* where the preparer hands it on */
	int holds;                      /* the queues' dones still to come */
	struct spawn_req req;
	int fds[SPAWN_MAX_FDS];
	int attach_fds[SPAWN_MAX_ATTACH];
	int nattach;                    /* set by prepare() or before spawn_worker_job() */
	struct spawn_args *args;        /* spawn.c's command line */
	/* NULL, or run on the preparer thread before the spawner takes the
	 * job (it may fill attach_fds and fds): < 0 fails the job at
	 * SPAWN_STAGE_PREPARE */
	int (*prepare)(struct spawn_job *j);
	/* NULL, or run on the spawner thread after a spawn that succeeded */
	void (*spawned)(struct spawn_job *j);
	void (*done_cb)(struct spawn_job *j);
	int r;                          /* spawn_process()'s */
	int stage;
	pid_t pid;
	int pidfd;
	/* the worker's process start time (util_proc_start_time), read on
	 * the spawner thread: reading /proc/PID/stat of a worker just past
	 * its exec can sleep, and the loop must not; start_r < 0: unread */
	int start_r;
	uint64_t start_time;
};
/* Fill j's request from r (0 or -ENOMEM); spawn_job_clear() frees it. */
int spawn_worker_job(const struct spawn_worker_req *r, struct spawn_job *j);
void spawn_job_clear(struct spawn_job *j);
/* The preparer and spawner threads (d->preparer, d->spawner):
 * spawner_submit() runs j's prepare() on the first, its spawn on the
 * second, then its done_cb on the loop.  spawner_free() runs every job
 * submitted and its done_cb before it returns. */
int spawner_init(struct mvmd *d);
void spawner_submit(struct mvmd *d, struct spawn_job *j);
void spawner_free(struct mvmd *d);

/* ---- worker sandbox: uids and run dirs (sandbox.c) ---------------------- */

/* One uid (and gid) of the sandbox range held by one of our workers. */
struct sandbox_uid {
	TAILQ_ENTRY(sandbox_uid) link;
	uint32_t index;                 /* uid sandbox_uid_base + index */
	/* its lease (util/uid_lease.h); the worker holds a copy.  -1: an
	 * adopted worker holds it alone. */
	int lease_fd;
};

/* Whether workers start sandboxed; if not, *ret_why says why. */
bool sandbox_on(const struct mvmd *d, const char **ret_why);
/* The same, said once in the log when it is off. */
bool sandbox_enabled(const struct mvmd *d);
/* A per-VM directory <run-dir>/vms/<name>/ to be made: by
 * sandbox_dir_make(), which touches nothing of mvmd's (the preparer
 * thread makes it, in a start's first stage). */
struct sandbox_dir_plan {
	char path[4096];
	uid_t uid;
	gid_t gid;
	mode_t mode;
};
/* A leased uid, and the plan of a fresh, empty directory only it may
 * enter (with a vsock: the VM owner's, which the worker may search; see
 * docs/security.md "vsock sockets"): 0, or -EUSERS (every uid leased) or
 * -errno; for a failure of the lease directory, why[] says what is wrong. */
int sandbox_prepare(struct mvmd *d, const struct proto_vm *vm, struct sandbox_uid **ret_uid,
                    struct sandbox_dir_plan *plan, char *why, size_t whylen);
/* The plan for an unsandboxed worker of a VM with a vsock: the owner's,
 * 0700.  0 or -errno. */
int sandbox_vsock_dir(const struct mvmd *d, const struct proto_vm *vm,
                      struct sandbox_dir_plan *plan);
/* What an earlier worker left there removed, the directory made as
 * planned: 0 or -errno. */
int sandbox_dir_make(const struct sandbox_dir_plan *plan);
/* <run-dir>/vms/<name>/vsock.sock, the VM's vsock host socket (guest-
 * initiated connections dial its _<port> siblings): 0, or -ENAMETOOLONG
 * when that path with the longest _<port> would not fit a Unix socket. */
int sandbox_vsock_path(const struct mvmd *d, const char *name, char *buf, size_t size);
/* An adopted worker keeps its uid (and its lease): NULL if pid runs as
 * none of ours. */
struct sandbox_uid *sandbox_uid_of(struct mvmd *d, pid_t pid);
uint32_t sandbox_uid_id(const struct mvmd *d, const struct sandbox_uid *u);
void sandbox_uid_release(struct mvmd *d, struct sandbox_uid *u);
/* The fd the worker inherits to hold its lease with us; -1: none. */
int sandbox_uid_lease_fd(const struct sandbox_uid *u);
/* <run-dir>/vms/<name>: the worker's sandbox directory, its whole root. */
int sandbox_dir(const struct mvmd *d, const char *name, char *buf, size_t size);
/* Remove <run-dir>/vms/<name>/ and all in it. */
void sandbox_remove(struct mvmd *d, const char *name);

/* ---- start-up reconciliation (adopt.c) ---------------------------------- */

/* Daemon start, for every row left queued/starting/running/stopping:
 * re-adopt its worker or record why it is gone.  0 or -errno (storage). */
int adopt_recover(struct mvmd *d);
/* Daemon start, after every row: kill workers that have no row (or whose
 * row says they should not run), remove stale sockets and files. */
void adopt_sweep(struct mvmd *d);

/* ---- restart policies and health (restart.c) ---------------------------- */

/* Watch worker ends for the restart policy. */
void restart_init(struct mvmd *d);
/* A VM ended without a worker to say so (adopt.c found it gone). */
void restart_vm_ended(struct vm *vm, bool requested, double ran_s);
/* Daemon start, after adopt_sweep: health checks, the systemd watchdog,
 * restarts an earlier mvmd left waiting, autostart after a host boot. */
void restart_start(struct mvmd *d);
void restart_free(struct mvmd *d);
/* Health checks: their ticks per interval (each worker is pinged in one),
 * and host.info's "health" object (timing and mvmd's CPU per ping). */
unsigned restart_health_slices(double interval_s);
/* A worker joined or left d->workers (supervisor.c): its health slice's
 * list follows. */
void restart_worker_linked(struct worker *w);
void restart_worker_unlinked(struct worker *w);
json_t *restart_health_json(struct mvmd *d);

/* ---- run-time stats of a VM (vmstats.c) --------------------------------- */

/*
 * One VM's stats object (docs/protocol.md "vm.stats"): the worker's device
 * and balloon counters (a stats request over its link) and its cgroup's
 * memory and CPU.  cb gets it (stolen; NULL only when out of memory) once
 * the worker answered, or without the worker's part (a "worker_error") if
 * it ended first; never from inside vmstats_collect.  The worker is not
 * timed out here: a caller that must answer in bounded time (vm.stats; a
 * metrics scrape) keeps its own timer and treats a late cb as stale.
 * 0, or -ESRCH (no running worker) / -errno, and then cb is not called.
 */
typedef void (*vmstats_fn)(void *arg, struct vm *vm, json_t *stats);
int vmstats_collect(struct vm *vm, vmstats_fn cb, void *arg);

/* ---- capacity: admission, start queue, cgroups (admit.c) ---------------- */

int admit_init(struct mvmd *d);
void admit_free(struct mvmd *d);
/* Admission of vm (its definition and owner) against every limit, and
 * whether it may start now or must queue: 0 and *ret holding the
 * reservation, or an error (unavailable naming the used-up limit,
 * limit_exceeded when it can never fit, not_found for an undefined pool;
 * --no-queue: unavailable when it would wait).
 * Nothing is stored: a refused vm.create leaves no row. */
int admit_reserve(struct mvmd *d, const struct proto_vm *vm, bool no_queue,
                  struct admission **ret, struct proto_error *err);
/* The cgroup a VM's worker runs in, NULL when none. */
const struct cgroup_vm *admit_vm_cgroup(const struct vm *vm);
/* The row could not be stored after admit_reserve: give it all back. */
void admit_abandon(struct admission *a);
/* Start the admitted vm (stored) now or commit "queued"; takes files
 * over.  0 started, 1 queued, or -errno with err saying why (the
 * reservation given back).  It answers nobody: d->admit_start_failed_cb
 * hears when a queued VM's turn came and its start failed. */
int admit_launch(struct admission *a, struct vm *vm, struct vm_files *files,
                 struct proto_error *err);
/* A queued VM stopped (reason: stored as its exit reason, state stopped)
 * or removed (reason NULL): leave the queue and give capacity back.
 * -ENOENT if vm is not queued. */
int admit_cancel(struct vm *vm, const char *reason);
/* An adopted worker holds capacity again (forced: it runs already). */
void admit_adopted(struct vm *vm);
/* host.info's capacity part; host.set's change of one key; new limits
 * (SIGHUP) in force: 0, or -errno with msg saying why (nothing changed). */
json_t *admit_host_json(struct mvmd *d);
int admit_host_set(struct mvmd *d, const char *key, const char *value, char *msg,
                   size_t size);
int admit_set_limits(struct mvmd *d, const struct cap_limits *l, char *msg, size_t size);
/* Daemon start: remove the cgroup an earlier mvmd left for a VM. */
void admit_cleanup_stale(struct mvmd *d, const char *name);

/* ---- file access (access.c) --------------------------------------------- */

/* Open path for the worker as the client would (read, or read-write when
 * write): 0 and *ret_fd, or -errno with err filled (file_error or
 * permission_denied, field named). */
int access_open(const struct mvmd *d, const struct cred *cred, const char *field,
                const char *path, bool write, bool regular_only, int *ret_fd,
                struct proto_error *err);

/* ---- sd_notify (notify.c) ----------------------------------------------- */

int notify_ready(void);
/* Any state line ("WATCHDOG=1"); 0 when not started by systemd. */
int notify_send(const char *msg);

#endif
