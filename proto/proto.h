/* SPDX-License-Identifier: MIT */
/*
 * The mvm wire protocol (docs/protocol.md): newline-delimited JSON between
 * clients and mvmd, and the worker link between mvmd and mvm-vmm.
 *
 * Every message is defined once: in the X-macros below (op names, error
 * codes, VM states, restart policies, link messages) and in args.c's table
 * of each op's argument fields.  One decoder checks keys, types and lengths of every request.
 * Nothing here prints; functions return negative errno or fill a
 * struct proto_error that the caller sends back.
 */
#ifndef MVM_PROTO_H
#define MVM_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define PROTO_VERSION   1
#define PROTO_MAX_LINE  65536          /* bytes per line, newline excluded */
/* A guest vsock CID: 0-2 are reserved (hypervisor, local, host), 2^32-1 is
 * VMADDR_CID_ANY. */
#define PROTO_VSOCK_CID_MIN 3
#define PROTO_VSOCK_CID_MAX 4294967294LL
#define PROTO_SERVER    "mvmd " PROTO_SERVER_VERSION
#define PROTO_SERVER_VERSION "0.1.0"

/* ---- operations (client -> mvmd) ------------------------------------- */

#define PROTO_OPS(X) \
	X(HELLO,            "hello")            \
	X(VERSION,          "version")          \
	X(VM_CREATE,        "vm.create")        \
	X(VM_START,         "vm.start")         \
	X(VM_STOP,          "vm.stop")          \
	X(VM_KILL,          "vm.kill")          \
	X(VM_RM,            "vm.rm")            \
	X(VM_LIST,          "vm.list")          \
	X(VM_SHOW,          "vm.show")          \
	X(VM_LOGS,          "vm.logs")          \
	X(VM_CONSOLE,       "vm.console")       \
	X(EVENTS_SUBSCRIBE, "events.subscribe") \
	X(HOST_INFO,        "host.info")        \
	X(HOST_SET,         "host.set")         \
	X(VM_UPDATE,        "vm.update")        \
	X(VM_STATS,         "vm.stats") \
	X(METRICS,          "metrics")          \
	X(VM_PAUSE,         "vm.pause")         \
	X(VM_RESUME,        "vm.resume")

enum proto_op {
#define PROTO_OP_ENUM_(id, name) PROTO_OP_##id,
	PROTO_OPS(PROTO_OP_ENUM_)
#undef PROTO_OP_ENUM_
	PROTO_OP_COUNT_
};

const char *proto_op_name(enum proto_op op);
/* Returns the op, or -ENOENT. */
int proto_op_from_name(const char *name);

/* ---- error codes -------------------------------------------------------- */

#define PROTO_ERRORS(X) \
	X(BAD_JSON,            "bad_json")            \
	X(TOO_LARGE,           "too_large")           \
	X(BAD_REQUEST,         "bad_request")         \
	X(UNKNOWN_OP,          "unknown_op")          \
	X(UNSUPPORTED_VERSION, "unsupported_version") \
	X(NOT_FOUND,           "not_found")           \
	X(EXISTS,              "exists")              \
	X(PERMISSION_DENIED,   "permission_denied")   \
	X(INVALID_STATE,       "invalid_state")       \
	X(FILE_ERROR,          "file_error")          \
	X(LIMIT_EXCEEDED,      "limit_exceeded")      \
	X(UNAVAILABLE,         "unavailable")         \
	X(STORAGE_ERROR,       "storage_error")       \
	X(INTERNAL,            "internal")

enum proto_err {
	PROTO_ERR_NONE = 0,
#define PROTO_ERR_ENUM_(id, name) PROTO_ERR_##id,
	PROTO_ERRORS(PROTO_ERR_ENUM_)
#undef PROTO_ERR_ENUM_
	PROTO_ERR_COUNT_
};

const char *proto_err_name(enum proto_err code);
/* Returns the code, or -ENOENT for a name this version does not know. */
int proto_err_from_name(const char *name);

struct proto_error {
	enum proto_err code;
	char message[512];
	char field[64];                 /* "" when no single field is at fault */
};

/* Fill *err; field may be NULL.  Returns -EINVAL for call-site convenience. */
int proto_error_set(struct proto_error *err, enum proto_err code,
                    const char *field, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- VM states ---------------------------------------------------------- */

#define PROTO_VM_STATES(X) \
	X(CREATED,  "created")  \
	X(QUEUED,   "queued")   \
	X(STARTING, "starting") \
	X(RUNNING,  "running")  \
	X(STOPPING, "stopping") \
	X(STOPPED,  "stopped")  \
	X(CRASHED,  "crashed")  \
	X(DELETED,  "deleted")  \
	X(PAUSED,   "paused")

enum proto_vm_state {
#define PROTO_STATE_ENUM_(id, name) PROTO_VM_##id,
	PROTO_VM_STATES(PROTO_STATE_ENUM_)
#undef PROTO_STATE_ENUM_
	PROTO_VM_STATE_COUNT_
};

const char *proto_vm_state_name(enum proto_vm_state s);
int proto_vm_state_from_name(const char *name);   /* state or -ENOENT */

/* Restart policies (docs/protocol.md): what mvmd does when a VM ends
 * without being asked to; on the wire and in the database by name. */
#define PROTO_RESTART_POLICIES(X) \
	X(NO,         "no")         \
	X(ON_FAILURE, "on-failure") \
	X(ALWAYS,     "always")

enum proto_restart {
#define PROTO_RESTART_ENUM_(id, name) PROTO_RESTART_##id,
	PROTO_RESTART_POLICIES(PROTO_RESTART_ENUM_)
#undef PROTO_RESTART_ENUM_
	PROTO_RESTART_COUNT_
};

const char *proto_restart_name(enum proto_restart p);
int proto_restart_from_name(const char *name);    /* policy or -ENOENT */

/* The VM object of docs/protocol.md.  Strings and JSON are owned by the
 * struct and released by proto_vm_clear(). */
/* "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx", lower case */
#define PROTO_UUID_LEN 36

struct proto_vm {
	int64_t id;                     /* database row id, never reused; not on the wire */
	char uuid[PROTO_UUID_LEN + 1];  /* never reused either; "" until stored */
	char *name;
	enum proto_vm_state state;
	uint32_t owner_uid;
	char *kernel;
	char *initrd;                   /* NULL: none */
	char *cmdline;
	int vcpus;
	int64_t mem_mib;
	json_t *disks;                  /* array of {path, readonly[, limits]} */
	json_t *nics;                   /* array of {tap, mac[, limits]} */
	bool has_balloon;               /* a virtio-balloon device */
	int64_t balloon_mib;            /* its target: memory taken from the guest */
	bool has_rng;                   /* a virtio-rng device */
	uint32_t vsock_cid;             /* a virtio-vsock device's guest CID; 0: none */
	json_t *labels;                 /* object of strings */
	json_t *pools;                  /* array of quota pool names */
	enum proto_restart restart;
	int restart_max;
	bool autostart;                 /* start when mvmd starts after a host boot */
	int64_t pid;                    /* 0: no worker */
	double created_at;
	double started_at;              /* 0: never started */
	bool has_exit_status;
	int exit_status;
	char *exit_reason;              /* NULL: none */
};

void proto_vm_clear(struct proto_vm *vm);
/* A new random (version 4) uuid from getrandom(2).  0 or -errno. */
int proto_uuid_new(char ret[static PROTO_UUID_LEN + 1]);
/* Deep copy into *ret_vm.  0 or -ENOMEM (then *ret_vm is untouched). */
int proto_vm_copy(const struct proto_vm *vm, struct proto_vm *ret_vm);
/* New JSON object for the wire; NULL on allocation failure. */
json_t *proto_vm_to_json(const struct proto_vm *vm);
/* The wire object as compact JSON text, exactly as proto_encode writes it
 * inside a message (no newline).  *ret_buf is malloc'd.  0 or -ENOMEM. */
int proto_vm_encode(const struct proto_vm *vm, char **ret_buf, size_t *ret_len);
/* Parse a VM object (as a client receives it).  0 or -EINVAL/-ENOMEM. */
int proto_vm_from_json(const json_t *obj, struct proto_vm *ret_vm);

/* Signal names as the protocol spells them ("SIGKILL"; "KILL" and "9" are
 * accepted too).  Returns the number, or -ENOENT. */
int proto_signal_from_name(const char *name);
/* "SIGKILL" etc.; "SIG?" for numbers without a name. */
const char *proto_signal_name(int sig);
/* Whether the signal's default action ends a process (SIGCONT, SIGSTOP and
 * the like do not): decides whether vm.kill waits for the worker's exit. */
bool proto_signal_ends_process(int sig);
/*
 * The signals mvm-vmm catches to stop its VM and end by (a signalfd in its
 * loop); ends with 0.  SIGUSR1 is not one: it kicks vCPU threads out of
 * KVM_RUN.  A sandboxed worker is the init of its own PID namespace, where
 * the kernel drops every other signal from outside but SIGKILL, SIGSTOP and
 * SIGCONT, so vm.kill takes only those and these, for any worker
 * (proto_signal_worker_honours).
 */
extern const int proto_vmm_stop_signals[];
bool proto_signal_worker_honours(int sig);
/* mvm-vmm exits 128 + N only when signal N stopped it (a PID namespace's
 * init cannot die by a signal it raises): N for such an exit status, else
 * 0. */
int proto_exit_signal(int status);

/* `[A-Za-z0-9][A-Za-z0-9_.-]{0,62}` */
bool proto_vm_name_valid(const char *name);

/* ---- line framing ------------------------------------------------------- */

/*
 * Collects bytes from a stream and hands out complete lines.  A line longer
 * than the buffer's maximum (PROTO_MAX_LINE unless set with
 * proto_linebuf_init_max) is dropped up to its newline and reported once,
 * in order, as -EMSGSIZE.  A buffer that holds no complete line never grows
 * beyond about twice the maximum; complete lines wait until the caller
 * takes them (a busy caller stops feeding when proto_linebuf_pending() is
 * large).  Each byte is searched for a newline once, so a line of
 * megabytes fed in small pieces costs linear time.
 */
struct proto_linebuf {
	char *buf;
	size_t head;                    /* first unconsumed byte */
	size_t len;                     /* bytes in buf */
	size_t cap;
	size_t scanned;                 /* bytes after head known to hold no newline */
	size_t max;                     /* longest line, newline excluded */
	bool discarding;                /* dropping the rest of a too-long line */
	bool overflow_pending;          /* a too_large not yet reported */
};

/* Requests: lines up to PROTO_MAX_LINE. */
void proto_linebuf_init(struct proto_linebuf *lb);
/* Lines up to max bytes: clients reading responses, which may be far
 * longer than requests (vm.list of thousands of VMs). */
void proto_linebuf_init_max(struct proto_linebuf *lb, size_t max);
void proto_linebuf_free(struct proto_linebuf *lb);
/* Append bytes.  0 or -ENOMEM. */
int proto_linebuf_feed(struct proto_linebuf *lb, const void *data, size_t n);
/*
 * Take the next line: 1 and *ret_line (NUL-terminated, newline and a
 * trailing '\r' stripped, valid until the next feed/next call) and
 * *ret_len; 0 when no complete line is buffered; -EMSGSIZE for a line
 * that was too long (already dropped).
 */
int proto_linebuf_next(struct proto_linebuf *lb, char **ret_line, size_t *ret_len);
/* Bytes buffered and not yet returned. */
size_t proto_linebuf_pending(const struct proto_linebuf *lb);
/* Hand the unconsumed bytes to a raw consumer (console mode) and empty the
 * buffer.  *ret_data is valid until the next feed. */
void proto_linebuf_take_rest(struct proto_linebuf *lb, const char **ret_data,
                             size_t *ret_len);

/* ---- requests: server side ---------------------------------------------- */

struct proto_request {
	json_t *root;                   /* whole message, owned */
	json_t *id;                     /* borrowed from root; json null if absent */
	enum proto_op op;
	json_t *args;                   /* borrowed; every field checked, defaults filled */
};

/*
 * Decode and check one request line.  On success returns 0 and *ret_req.
 * On failure returns a negative errno and fills *err; *ret_req then holds
 * the id (json null when unknown) so the caller can answer it, and
 * proto_request_done() must still be called.
 */
int proto_request_decode(const char *line, size_t len,
                         struct proto_request *ret_req, struct proto_error *err);
void proto_request_done(struct proto_request *req);

/* Typed access to checked args.  Absent optional fields without a default:
 * NULL / def. */
const char *proto_arg_str(const struct proto_request *req, const char *key);
int64_t proto_arg_int(const struct proto_request *req, const char *key, int64_t def);
bool proto_arg_bool(const struct proto_request *req, const char *key, bool def);
json_t *proto_arg_json(const struct proto_request *req, const char *key);

/* ---- requests: client side ---------------------------------------------- */

/* {"id": id, "op": ..., "args": {}}; NULL on allocation failure. */
json_t *proto_request_new(json_int_t id, enum proto_op op);
/* Set args[key].  0 or -ENOMEM. */
int proto_request_set_str(json_t *req, const char *key, const char *value);
int proto_request_set_int(json_t *req, const char *key, json_int_t value);
int proto_request_set_bool(json_t *req, const char *key, bool value);
/* Steals value (arrays, objects). */
int proto_request_set_json(json_t *req, const char *key, json_t *value);

/* ---- responses and events ----------------------------------------------- */

/* Server side.  result is stolen (NULL means {}).  NULL on ENOMEM. */
json_t *proto_response_ok(json_t *id, json_t *result);
json_t *proto_response_error(json_t *id, const struct proto_error *err);
json_t *proto_event_vm(const char *vm, enum proto_vm_state state,
                       const char *reason, double time);
json_t *proto_event_log(const char *vm, const void *data, size_t len);

/* A JSON string from arbitrary bytes (console output): invalid UTF-8 and
 * NUL become U+FFFD, so the result always encodes as valid JSON. */
json_t *proto_json_string_lossy(const void *data, size_t len);

/* Client side: one parsed line from the server. */
struct proto_response {
	json_t *root;                   /* owned */
	bool is_event;                  /* no id: an event */
	json_t *id;                     /* borrowed (responses) */
	bool ok;
	json_t *result;                 /* borrowed; on ok */
	enum proto_err err_code;        /* on !ok; PROTO_ERR_INTERNAL if unknown name */
	const char *err_name;           /* as sent */
	const char *err_message;
	const char *err_field;          /* NULL if none */
	const char *event;              /* "vm", "log" (events) */
};

/* 0, -EINVAL (not a well-formed response/event), -ENOMEM. */
int proto_response_parse(const char *line, size_t len, struct proto_response *ret);
void proto_response_done(struct proto_response *resp);

/*
 * A response `{"id":ID,"ok":true,"result":{"KEY":[E1,...]}}` + '\n' built
 * from elements already encoded as compact JSON (proto_vm_encode), byte for
 * byte what proto_encode(proto_response_ok(id, {KEY: [...]})) writes, but
 * without building a JSON tree: vm.list of 10,000 VMs is then one memcpy
 * per VM.  Errors are sticky: add after a failure does nothing and
 * proto_listbuf_finish reports it.
 */
struct proto_listbuf {
	char *buf;
	size_t len, cap;
	size_t count;                   /* elements added */
	int error;                      /* first error, 0 if none */
};

/* id NULL means json null; key must be a plain ASCII key.  0 or -ENOMEM. */
int proto_listbuf_begin(struct proto_listbuf *lb, const json_t *id, const char *key,
                        size_t size_hint);
void proto_listbuf_add(struct proto_listbuf *lb, const char *elem, size_t len);
/* Close the message; 0 with *ret_buf (malloc'd, the caller owns it) and
 * *ret_len, or the first error with everything freed. */
int proto_listbuf_finish(struct proto_listbuf *lb, char **ret_buf, size_t *ret_len);

/* Serialise one message as a compact line ending in '\n'.  *ret_buf is
 * malloc'd.  0, -ENOMEM, -EMSGSIZE (longer than PROTO_MAX_LINE for
 * requests; responses may be longer). */
int proto_encode(const json_t *msg, char **ret_buf, size_t *ret_len);

/* ---- reading large responses in place (scan.c) -------------------------- */

/* The text of one JSON value inside a checked line. */
struct proto_span {
	const char *p;
	size_t n;
};

/* Check that s[0..len) is one well-formed JSON value (whitespace around
 * it allowed) and return its span.  0 or -EINVAL.  No allocation. */
int proto_scan_check(const char *s, size_t len, struct proto_span *ret_value);
/* Walk an object or array from a checked line (unchecked text gives
 * unspecified spans, never reads outside c): *pos starts at 0.  1 with the
 * next member (ret_key: the quoted key, objects only; may be NULL), 0
 * after the last, -EINVAL if c is not a container. */
int proto_scan_next(struct proto_span c, size_t *pos, struct proto_span *ret_key,
                    struct proto_span *ret_val);
/* The quoted key span equals name (plain keys without escapes). */
bool proto_scan_key_is(struct proto_span key, const char *name);
/* Decode a checked string value into buf (NUL-terminated, cut to size).
 * Its length, or -EINVAL if v is not a string. */
int proto_scan_str(struct proto_span v, char *buf, size_t size);
/* An integer / any number; false if v is not one. */
bool proto_scan_int(struct proto_span v, long long *ret);
bool proto_scan_num(struct proto_span v, double *ret);
/* v indented by two spaces with sorted keys, byte for byte what jansson's
 * json_dumps(JSON_INDENT(2) | JSON_SORT_KEYS) writes for text that jansson
 * encoded (scalars are copied as they are).  *ret_buf malloc'd and
 * NUL-terminated.  0 or -ENOMEM. */
int proto_scan_pretty(struct proto_span v, char **ret_buf, size_t *ret_len);

/* ---- base64 (RFC 4648, with padding) ------------------------------------ */

#define PROTO_BASE64_ENC_LEN(n) ((((n) + 2) / 3) * 4)
#define PROTO_BASE64_DEC_MAX(n) (((n) / 4) * 3 + 3)

/* Writes PROTO_BASE64_ENC_LEN(n) chars plus a NUL; returns the length. */
size_t proto_base64_encode(const void *data, size_t n, char *out);
/* Decodes into out (PROTO_BASE64_DEC_MAX(len) bytes).  0 or -EINVAL. */
int proto_base64_decode(const char *in, size_t len, void *out, size_t *ret_len);

/* ---- worker link (mvmd <-> mvm-vmm) ------------------------------------- */

#define PROTO_LINK_MSGS(X) \
	X(BOOTED,     "booted")     \
	X(CONSOLE,    "console")    \
	X(EXIT,       "exit")       \
	X(CONSOLE_IN, "console-in") \
	X(SHUTDOWN,   "shutdown")   \
	X(HELLO,      "hello")      \
	X(PING,       "ping")       \
	X(PONG,       "pong")       \
	X(SECCOMP,    "seccomp")    \
	X(SET_LIMITS, "set-limits") \
	X(BALLOON,    "balloon")    \
	X(STATS,      "stats")      \
	X(RESULT,     "result")     \
	X(STATS_REPLY, "stats-reply") \
	X(PAUSE,      "pause")      \
	X(RESUME,     "resume")

enum proto_link_type {
#define PROTO_LINK_ENUM_(id, name) PROTO_LINK_##id,
	PROTO_LINK_MSGS(PROTO_LINK_ENUM_)
#undef PROTO_LINK_ENUM_
	PROTO_LINK_COUNT_
};

/* Console chunks per message: keeps a link line well under PROTO_MAX_LINE. */
#define PROTO_LINK_CONSOLE_MAX 16384
/* An exit reason, "vmm-error: " and the worker's own message included. */
#define PROTO_LINK_REASON_MAX 256

/* Longest result error, in bytes. */
#define PROTO_LINK_ERROR_MAX 255
/* Devices in a stats reply at most (the worker's virtio slots). */
#define PROTO_LINK_DEVS_MAX 16
/* Guest balloon statistics by tag (virtio spec 5.5.6.3): tags 0..9. */
#define PROTO_LINK_GUEST_STATS 10

enum proto_link_dev_kind { PROTO_LINK_DISK, PROTO_LINK_NET };

/* A rate limit: 0 is none; bursts need their rate. */
struct proto_link_limits {
	uint64_t bps, bps_burst, ops, ops_burst;
};

/* Counters of one disk or NIC.  rd/wr: disk reads and writes, NIC
 * received and sent frames (on the wire: read_bytes/rx_bytes ...). */
struct proto_link_dev_stats {
	enum proto_link_dev_kind kind;
	int64_t index;
	uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops, flushes, errors, throttled_ns;
	struct proto_link_limits limits;
};

struct proto_link_balloon_stats {
	uint64_t target_pages, actual_pages, max_pages;  /* 4 KiB pages */
	uint64_t inflated, deflated, discarded_bytes, reported_bytes, bad_pfns, updates;
	uint32_t guest_valid;                           /* bit t: guest[t] present */
	uint64_t guest[PROTO_LINK_GUEST_STATS];
};

struct proto_link_stats {
	unsigned ndev;
	struct proto_link_dev_stats dev[PROTO_LINK_DEVS_MAX];
	bool has_balloon;
	struct proto_link_balloon_stats balloon;
};

struct proto_link_msg {
	enum proto_link_type type;
	int status;                     /* exit */
	char reason[PROTO_LINK_REASON_MAX]; /* exit; "" if none */
	unsigned char *data;            /* console, console-in: malloc'd by decode */
	size_t data_len;
	/* hello: a worker greets a daemon that connected to its adoption
	 * socket (docs/protocol.md "Re-adoption") */
	int64_t pid;
	uint64_t start_time;            /* /proc/PID/stat field 22, clock ticks */
	bool booted;
	bool paused;                    /* hello: its vCPUs are held (vm.pause) */
	char name[64];                  /* the VM; "" if unknown */
	int64_t seq;                    /* ping, pong, and the requests below: echoed back */
	int64_t nr;                     /* seccomp: the forbidden syscall's number */
	/* set-limits: device kind and index among its kind, and the limits */
	enum proto_link_dev_kind dev_kind;
	int64_t dev_index;
	struct proto_link_limits limits;
	uint64_t target;                /* balloon: target in bytes */
	char *error;                    /* result: NULL when done; malloc'd by decode */
	struct proto_link_stats *stats; /* stats-reply: malloc'd by decode */
};

const char *proto_link_name(enum proto_link_type t);
/* 0, -EINVAL (malformed or unknown), -ENOMEM.  Free with proto_link_clear. */
int proto_link_decode(const char *line, size_t len, struct proto_link_msg *ret);
void proto_link_clear(struct proto_link_msg *msg);
/* Serialise (data borrowed).  Same contract as proto_encode. */
int proto_link_encode(const struct proto_link_msg *msg, char **ret_buf, size_t *ret_len);
/* The console message of len (<= PROTO_LINK_CONSOLE_MAX) bytes, newline
 * included, written into buf without allocating (the worker's hot path:
 * its sandbox makes every allocation count).  The line proto_link_encode
 * writes; its length, or -ENOBUFS when it does not fit in size bytes,
 * -EMSGSIZE for too much data. */
int proto_link_encode_console(const void *data, size_t len, char *buf, size_t size);

#endif
