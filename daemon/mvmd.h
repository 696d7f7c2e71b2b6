/* SPDX-License-Identifier: MIT */
/*
 * mvmd internals shared by its files: main.c (args, config, loop),
 * config.c, control.c (socket, framing, credentials), dispatch.c (one
 * handler per operation), supervisor.c (workers), access.c (file checks
 * with the client's credentials), notify.c (sd_notify).
 */
#ifndef MVM_MVMD_H
#define MVM_MVMD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

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
};

/* Built-in defaults; argv0 locates a build-tree mvm-vmm. */
int config_defaults(struct config *cfg, const char *argv0);
/* `key = value` lines (state_dir, run_dir, socket, log_level, vmm); '#'
 * comments.  On error *ret_line says where. */
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
	uv_signal_t sig_term, sig_int;
	bool shutting_down;
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
	uv_process_t proc;
	uv_pipe_t link;
	uv_timer_t timer;               /* stop timeout, kill grace, exit settle */
	int handles;                    /* open libuv handles; freed at 0 */
	struct proto_linebuf lb;
	struct waiter *waiters;
	bool booted, exited, link_eof, finished;
	bool stop_requested, kill_requested;
	int64_t exit_status;
	int term_signal;
	char link_reason[64];           /* from the worker's exit message */
	bool has_link_status;
	int link_status;
};

/* Files opened with the caller's credentials and handed to the worker. */
struct vm_files {
	int kernel_fd, initrd_fd;
	int disk_fds[16];
	int ndisks;
};

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

/* ---- file access (access.c) --------------------------------------------- */

/* Open path for the worker as the client would (read, or read-write when
 * write): 0 and *ret_fd, or -errno with err filled (file_error or
 * permission_denied, field named). */
int access_open(const struct mvmd *d, const struct cred *cred, const char *field,
                const char *path, bool write, bool regular_only, int *ret_fd,
                struct proto_error *err);

/* ---- sd_notify (notify.c) ----------------------------------------------- */

int notify_ready(void);

#endif
