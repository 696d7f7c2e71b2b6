/* SPDX-License-Identifier: MIT */
/*
 * mvmd internals shared by its files: main.c (args, config, loop),
 * config.c, control.c (socket, framing, credentials), dispatch.c (one
 * handler per operation), supervisor.c (workers), access.c (file checks
 * with the client's credentials), notify.c (sd_notify).
 */
#ifndef MVM_MVMD_H
#define MVM_MVMD_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "daemon/capacity.h"
#include "daemon/cgroup.h"
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
	struct cap_limits limits;       /* capacity keys, parsed by capacity.c */
	double health_interval;         /* seconds between pings to a worker; 0: off */
	double health_timeout;          /* no pong for this long: hung, killed */
	/* worker sandbox (supervisor.c): -1 unset, on when mvmd runs as root */
	int sandbox;
	uint32_t sandbox_uid_base;      /* workers run as base + slot (uid and gid) */
	uint32_t sandbox_uid_count;     /* slots: at most this many sandboxed workers */
	char error[256];                /* why config_load failed, if it says */
};

/* Built-in defaults; argv0 locates a build-tree mvm-vmm. */
int config_defaults(struct config *cfg, const char *argv0);
/* `key = value` lines (state_dir, run_dir, socket, log_level, vmm,
 * cgroup_parent, sandbox, sandbox_uid_base, sandbox_uid_count, and the capacity keys of capacity.h including `pool NAME
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

/* ---- the daemon --------------------------------------------------------- */

struct conn;
struct worker;

struct mvmd {
	uv_loop_t *loop;
	struct config cfg;
	struct db *db;
	uid_t uid;                      /* the daemon's own uid */
	uv_pipe_t listener;
	bool listening;
	struct conn *conns;             /* all connections */
	struct worker *workers;         /* one per VM with a live worker */
	uv_signal_t sig_term, sig_int, sig_hup;
	bool shutting_down;
	/* capacity (admit.c) */
	struct cap cap;
	struct cgroup cg;
	struct vm_slot *slots;          /* VMs holding a reservation */
	uv_timer_t start_timer;         /* the start rate's next token */
	bool admit_ready;
	struct adopt_state *adopt;      /* health checks, restart backoff (adopt.c) */
	int lock_fd;                    /* <state-dir>/mvmd.lock, flock'ed; -1 none */
};

double mvmd_now(void);
/* <state-dir>/vms/<name>[/<file>] */
int mvmd_vm_dir(const struct mvmd *d, const char *name, const char *file,
                char *buf, size_t size);

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
	struct conn *next, **pprev;
	uv_pipe_t pipe;
	struct cred cred;
	struct proto_linebuf lb;
	enum conn_mode mode;
	bool reading;
	bool busy;                      /* a request is waiting for the VM */
	bool closing;
	bool ending;                    /* conn_end: shutdown in flight */
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
/* Close now; queued output is dropped. */
void conn_close(struct conn *c);
/* Close once queued output is written (EOF for console and log clients). */
void conn_end(struct conn *c);
/* Caller may see and control VMs owned by owner. */
bool conn_may_access(const struct conn *c, uint32_t owner);

/* ---- dispatch (dispatch.c) ---------------------------------------------- */

/* Handle one decoded request; it answers now or, for requests that wait on
 * a VM, marks the connection busy and answers later. */
void dispatch_request(struct conn *c, struct proto_request *req);
/* Broadcast a lifecycle event to subscribers who may see the VM. */
void dispatch_event(struct mvmd *d, const struct proto_vm *vm, const char *reason,
                    double time);
/* After a VM's row was deleted: tell subscribers, remove its files. */
void dispatch_deleted(struct mvmd *d, const struct proto_vm *vm);
/* Mark rows left starting/running/stopping by an earlier mvmd as crashed. */
int dispatch_recover(struct mvmd *d);
/* A storage_error for a commit that failed with r: says what is wrong
 * with the state dir (locked by another process, read-only, full). */
void dispatch_storage_error(const struct mvmd *d, int r, struct proto_error *err);

/* ---- workers (supervisor.c) --------------------------------------------- */

/* Someone waiting on a worker: answered on a state change or at exit. */
enum waiter_kind { WAIT_RUNNING, WAIT_EXIT };

struct waiter {
	struct waiter *next;
	struct conn *conn;
	json_t *id;
	enum waiter_kind kind;
	bool rm_after;                  /* vm.rm --force: delete after exit */
};

struct worker {
	struct mvmd *d;
	struct worker *next, **pprev;
	struct proto_vm vm;             /* current row, kept in step with the db */
	uv_pipe_t link;
	uv_timer_t timer;               /* stop timeout, kill grace, exit settle */
	int handles;                    /* open libuv handles; freed at 0 */
	struct proto_linebuf lb;
	struct waiter *waiters;
	bool booted, exited, link_eof, finished;
	bool stop_requested, kill_requested;
	int64_t exit_status;
	int term_signal;
	char link_reason[PROTO_LINK_REASON_MAX]; /* from the worker's exit message */
	bool has_link_status;
	int link_status;
	/* Every worker is watched through its pidfd, readable once it
	 * exited.  A spawned one is our child and reaped through it; one
	 * re-adopted from an earlier mvmd (adopt.c) is not, so only its exit
	 * message says how it ended. */
	bool adopted;
	int pidfd;                      /* -1: none */
	bool watched;                   /* pidfd_poll initialised */
	uv_poll_t pidfd_poll;
	/* health (adopt.c): pings over the link, answered by pongs */
	double last_pong;               /* mvmd_now() of the last pong or start */
	double ping_since;              /* the oldest unanswered ping; 0: none */
	int64_t ping_seq;
	bool hung;                      /* killed for not answering */
	/* sandbox (supervisor.c): uid and gid sandbox_uid_base + slot */
	bool has_slot;
	uint32_t slot;
	int slot_fd;                    /* its host-wide claim on the uid; -1: none */
	bool has_seccomp_nr;            /* its SIGSYS handler reported a syscall */
	int64_t seccomp_nr;
};

/* Files opened with the caller's credentials and handed to the worker. */
struct vm_files {
	int kernel_fd, initrd_fd;
	int disk_fds[16];
	int ndisks;
	int nic_fds[8];                 /* TAPs opened by tap_open() */
	int nnics;
};

/* Remove <run-dir>/vms/<name>/, a worker's sandbox directory, and all in it
 * (the VM ended, or its worker is gone). */
void supervisor_sandbox_remove(struct mvmd *d, const char *name);
/* Whether workers start sandboxed; if not, *ret_why says why. */
bool supervisor_sandbox_on(const struct mvmd *d, const char **ret_why);

/* spawn.c: start path with fds[i] as fd i (-1: /dev/null), in its own
 * session, optionally as the init of a new PID namespace. */
#define SPAWN_MAX_FDS 40
struct spawn_req {
	const char *path;
	char *const *argv;
	const int *fds;
	int nfds;
	bool new_pid_ns;
};
/* 0 once the exec succeeded, with the child's pid and a pidfd for it;
 * else -errno of the clone or of the failed exec (child already reaped). */
int spawn_process(const struct spawn_req *r, pid_t *ret_pid, int *ret_pidfd);
/* Reap the child behind pidfd into *si: 0, or -EAGAIN if it still runs
 * (block false), or -ECHILD if it is not our child (an adopted worker). */
int spawn_reap(int pidfd, siginfo_t *si, bool block);

void vm_files_init(struct vm_files *f);
void vm_files_close(struct vm_files *f);

/* Spawn a worker for vm (state must allow it); commits "starting".
 * Takes ownership of the fds in files on success and failure. */
int supervisor_start(struct mvmd *d, const struct proto_vm *vm,
                     struct vm_files *files, struct worker **ret_w,
                     struct proto_error *err);
struct worker *supervisor_find(struct mvmd *d, int64_t vm_id);
/* Graceful stop: Ctrl-Alt-Del now, SIGKILL after timeout_s. */
int supervisor_stop(struct worker *w, int64_t timeout_s);
int supervisor_kill(struct worker *w, int sig);
void supervisor_console_in(struct worker *w, const void *data, size_t len);
void supervisor_add_waiter(struct worker *w, struct conn *c, json_t *id,
                           enum waiter_kind kind, bool rm_after);
/* A connection went away: forget its waiters. */
void supervisor_forget_conn(struct mvmd *d, struct conn *c);
/* Daemon exit: close links, leave the workers running. */
void supervisor_detach_all(struct mvmd *d);
/* Commit a state change of w's VM, then tell subscribers. */
int supervisor_transition(struct worker *w, enum proto_vm_state state,
                          const char *reason);
/* Take over a live worker of an earlier mvmd (adopt.c): link_fd is the
 * connected adoption socket (its hello already read), pidfd the worker's
 * pidfd; both are taken over on success and failure. */
int supervisor_adopt(struct mvmd *d, const struct proto_vm *vm, int link_fd, int pidfd,
                     bool booted, struct worker **ret_w);
/* Health: send a ping; kill a worker that stopped answering as hung. */
int supervisor_ping(struct worker *w);
void supervisor_hung(struct worker *w);

/* ---- reliability (adopt.c) ---------------------------------------------- */

/* <run-dir>/vms/<name>.sock, the worker's adoption socket. */
int adopt_socket_path(const struct mvmd *d, const char *name, char *buf, size_t size);
/* After spawning: record pid and process start time beside the VM's logs,
 * which re-adoption checks so a recycled pid is never taken over. */
void adopt_record_spawn(struct mvmd *d, const char *name, pid_t pid);
/* Daemon start, for a row left starting/running/stopping: re-adopt its
 * worker or record why it is gone.  0 or -errno (storage). */
int adopt_vm(struct mvmd *d, struct proto_vm *vm);
/* Daemon start, after every row: kill workers that have no row (or whose
 * row says they should not run), remove stale sockets, start health
 * checks and the VMs that should run (restart always, autostart). */
int adopt_finish(struct mvmd *d);
/* A worker ended (supervisor.c): remove its socket, apply the restart
 * policy.  requested: the user stopped or killed it. */
void adopt_worker_ended(struct mvmd *d, const struct proto_vm *vm, bool requested,
                        double ran_s);
void adopt_free(struct mvmd *d);

/* ---- capacity: admission, start queue, cgroups (admit.c) ---------------- */

/*
 * One admitted VM: its reservation from admission until it ends, its place
 * in the start queue and the files its start needs while queued, and its
 * cgroup once started.  Only VMs that hold a reservation (queued, starting,
 * running, stopping) have one.
 */
struct vm_slot {
	struct vm_slot *next, **pprev;
	struct mvmd *d;
	int64_t vm_id;
	struct cap_resv resv;
	struct cap_qnode qnode;
	bool starting;                  /* counted by cap_start_try */
	bool attach_failed;             /* its worker could not join the cgroup */
	struct proto_vm vm;             /* queued: the row to start */
	struct vm_files files;          /* queued: opened for the client */
	struct conn *wait_conn;         /* queued create --wait: who waits */
	json_t *wait_id;
	struct cgroup_vm *cg;
};

int admit_init(struct mvmd *d);
void admit_free(struct mvmd *d);
/* Admission of vm (its definition and owner) against every limit, and
 * whether it may start now or must queue: 0 and *ret holding the
 * reservation, or an error (unavailable naming the used-up limit,
 * limit_exceeded when it can never fit, not_found for an undefined pool;
 * --no-queue: unavailable when it would wait).
 * Nothing is stored: a refused vm.create leaves no row. */
int admit_reserve(struct mvmd *d, const struct proto_vm *vm, bool no_queue,
                  struct vm_slot **ret, struct proto_error *err);
/* The row could not be stored after admit_reserve: give it all back. */
void admit_abandon(struct vm_slot *s);
/* Start the admitted vm (stored, vm->id set) now or commit "queued";
 * answers the request (with wait: once running).  Takes files over. */
void admit_launch(struct conn *c, struct proto_request *req, struct vm_slot *s,
                  const struct proto_vm *vm, struct vm_files *files, bool wait);
/* A queued VM stopped (reason: stored as its exit reason, state stopped)
 * or removed (reason NULL): leave the queue and give capacity back.
 * -ENOENT if vm is not queued. */
int admit_cancel(struct mvmd *d, struct proto_vm *vm, const char *reason);
/* Worker hooks (supervisor.c). */
void admit_spawned(struct mvmd *d, int64_t vm_id, pid_t pid);
void admit_booted(struct mvmd *d, int64_t vm_id);
/* Rewrite an exit reason when the kernel OOM-killed the worker. */
void admit_exit_reason(struct mvmd *d, int64_t vm_id, int term_signal, char *reason,
                       size_t size);
void admit_ended(struct mvmd *d, int64_t vm_id);
void admit_forget_conn(struct mvmd *d, struct conn *c);
/* host.info's capacity part, host.set, and SIGHUP. */
json_t *admit_host_json(struct mvmd *d);
void admit_host_set(struct conn *c, struct proto_request *req);
void admit_reload(struct mvmd *d);
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
