/* SPDX-License-Identifier: MIT */
#ifndef MVM_CTL_H
#define MVM_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "proto/proto.h"

/*
 * mvmctl exit codes; `mvmctl help` and the README document them, scripts
 * rely on them.
 */
enum ctl_exit {
	CTL_EXIT_OK      = 0, /* the command did what was asked */
	CTL_EXIT_DAEMON  = 1, /* mvmd answered with an error */
	CTL_EXIT_USAGE   = 2, /* bad command line; nothing was sent */
	CTL_EXIT_CONNECT = 3, /* mvmd could not be reached */
	CTL_EXIT_TEMPFAIL = 75, /* EX_TEMPFAIL: refused for now (`unavailable`) */
};

#define CTL_DEFAULT_SOCKET "/run/mvm/mvmd.sock"
/*
 * Responses may exceed PROTO_MAX_LINE (a list of 10,000 VMs is megabytes),
 * so mvmctl's line buffer takes lines up to this bound.
 */
#define CTL_MAX_RESPONSE (256u << 20)

struct ctl {
	const char *socket_path;
	int fd;              /* connection to mvmd, -1 until ctl_connect */
	struct proto_linebuf lb; /* bytes read but not yet consumed as lines */
	json_int_t next_id;
	bool json;           /* -o json */
};

struct ctl_command {
	const char *name;
	int (*handler)(struct ctl *c, int argc, char **argv);
	const char *usage;
	const char *summary;
};

/* main.c */
int ctl_usage_error(const char *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int ctl_parse_output(const char *arg, struct ctl *c);

/* client.c: connection, framing and request/response matching */
int ctl_connect(struct ctl *c);
int ctl_try_connect(struct ctl *c);
void ctl_disconnect(struct ctl *c);
json_t *ctl_request(struct ctl *c, enum proto_op op);
int ctl_call(struct ctl *c, json_t *req, json_t **ret_result);
int ctl_call_span(struct ctl *c, json_t *req, struct proto_span *ret_result);
int ctl_read_message(struct ctl *c, int timeout_ms, struct proto_response *ret);
void ctl_take_buffered(struct ctl *c, const char **ret_data, size_t *ret_len);
int ctl_write_all(int fd, const void *buf, size_t len);

/* output.c: every byte mvmctl prints for humans or scripts */
int ctl_error(int exit, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void output_set_json_errors(bool on);
struct table;
struct table *table_new(size_t ncols, const char *const *headers);
void table_add(struct table *t, const char *const *cells);
void table_print(struct table *t);
void table_free(struct table *t);
/* s with control characters escaped for a terminal (\n, \x1b, \u009b,
 * a backslash doubled); malloc'd, never NULL (aborts on OOM). */
char *output_escape(const char *s);
void output_json(const json_t *v);
void output_json_span(struct proto_span v);
void output_size_mib(char *buf, size_t n, long long mib);
void output_duration(char *buf, size_t n, double seconds);
void output_time(char *buf, size_t n, double epoch);
void output_vm_list(struct proto_span vms, bool quiet, double now);
void output_vm_show(const json_t *vm, const json_t *events, double now);
void output_event(const json_t *ev);
void output_kv(const json_t *obj);
void output_host(const json_t *host);
double output_now(void);

/* command handlers, one file per group */
int vm_create(struct ctl *c, int argc, char **argv);
int vm_create_request(struct ctl *c, int argc, char **argv, json_t **ret_req);
/* "256", "256M", "1.5G": a whole number of MiB, more than 0. */
int ctl_parse_mib(const char *s, long long *ret_mib);
int ctl_limit_field(json_t *obj, const char *tok, const char *ops, bool allow_none);
/* stats.c: update and stats */
int stats_update(struct ctl *c, int argc, char **argv);
int stats_stats(struct ctl *c, int argc, char **argv);
int vm_start(struct ctl *c, int argc, char **argv);
int vm_stop(struct ctl *c, int argc, char **argv);
int vm_kill(struct ctl *c, int argc, char **argv);
int vm_rm(struct ctl *c, int argc, char **argv);
int vm_restart(struct ctl *c, int argc, char **argv);
int vm_pause(struct ctl *c, int argc, char **argv);
int vm_resume(struct ctl *c, int argc, char **argv);
int list_list(struct ctl *c, int argc, char **argv);
int list_show(struct ctl *c, int argc, char **argv);
int console_console(struct ctl *c, int argc, char **argv);
int console_logs(struct ctl *c, int argc, char **argv);
int console_events(struct ctl *c, int argc, char **argv);
int host_host(struct ctl *c, int argc, char **argv);
int host_version(struct ctl *c, int argc, char **argv);
int host_metrics(struct ctl *c, int argc, char **argv);
int run_run(struct ctl *c, int argc, char **argv);

#endif
