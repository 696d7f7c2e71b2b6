/* SPDX-License-Identifier: MIT */
/*
 * mvmd's durable state: VM definitions and lifecycle events in SQLite (WAL).
 * All SQL lives in db.c.  Functions return 0 or a negative errno and never
 * print: -ENOENT (no such row), -EEXIST (name taken), -ENOSPC/-EROFS/-EIO
 * (the commit failed; nothing changed), -EBUSY (locked past the timeout),
 * -ENOMEM, -EINVAL (corrupt row).
 */
#ifndef MVM_DB_H
#define MVM_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

struct db;

/* A commit waits this long for a lock someone else holds, then -EBUSY. */
#define DB_BUSY_TIMEOUT_MS 2000

/* Open or create the database, check it (PRAGMA integrity_check) and run
 * pending migrations.  Besides the errors above: -EBADMSG (corrupt),
 * -EMEDIUMTYPE (not a SQLite database), -EPROTO (written by a newer
 * mvmd: its schema is newer than every migration here). */
int db_open(const char *path, struct db **ret_db);
/* db_open, and on failure a one-line reason in why ("integrity_check: ...",
 * "schema 9 > 4", "file is not a database"). */
int db_open_diag(const char *path, struct db **ret_db, char *why, size_t why_size);
void db_close(struct db *db);
/* Schema version after migrations (PRAGMA user_version). */
int db_schema_version(struct db *db);

/* Insert a new VM and its "created" event in one transaction; sets vm->id. */
int db_vm_insert(struct db *db, struct proto_vm *vm);
/* Reads below come from an in-memory copy of the committed rows, which
 * db.c updates after each commit: mvmd must be the database's only writer,
 * and every write must go through these functions. */

/* Look up by name into *ret_vm (clear with proto_vm_clear). */
int db_vm_get(struct db *db, const char *name, struct proto_vm *ret_vm);
/* All VMs (optionally only those in state), ordered by name.  *ret_vms is
 * an array of *ret_n entries; free with db_vm_list_free. */
int db_vm_list(struct db *db, const char *state, struct proto_vm **ret_vms,
               size_t *ret_n);
void db_vm_list_free(struct proto_vm *vms, size_t n);
/* The same rows without copying, for hot paths (vm.list): row i of
 * db_vm_count(), ordered by name.  Valid until the next write. */
size_t db_vm_count(const struct db *db);
const struct proto_vm *db_vm_at(const struct db *db, size_t i);
/* Row i's wire object as compact JSON (proto_vm_encode), cached until the
 * row changes.  0 or -ENOMEM/-ENOENT; *ret valid until the next write. */
int db_vm_wire(struct db *db, size_t i, const char **ret, size_t *ret_len);
/* Store vm's runtime columns (state, pid, started_at, exit_status,
 * exit_reason) and append an event {state, reason, time} atomically.
 * reason may be NULL. */
int db_vm_transition(struct db *db, const struct proto_vm *vm,
                     const char *reason, double time);
/* Store vm's runtime columns like db_vm_transition, without an event: a
 * detail of the current state (the pid once a worker was spawned). */
int db_vm_store(struct db *db, const struct proto_vm *vm);
/* Group commit.  These two write into the open batch (opening one: an
 * error then is -EBUSY and the like) and the copy takes the change at
 * once; it is stored when the batch commits: at db_batch_commit() or at
 * any other write above, which commits the batch with its own change.
 * Either way the watcher (db_batch_watch) hears cb(arg, 0) for stored or
 * cb(arg, -errno) for the whole batch rolled back; every other write's
 * error is its own alone. */
int db_vm_transition_batched(struct db *db, const struct proto_vm *vm,
                             const char *reason, double time);
int db_vm_store_batched(struct db *db, const struct proto_vm *vm);
void db_batch_watch(struct db *db, void (*cb)(void *arg, int r), void *arg);
bool db_batch_open(const struct db *db);
/* Commit the open batch, if any: 0 or the error cb heard. */
int db_batch_commit(struct db *db);
/* Only the in-memory copy of vm's runtime columns, storing nothing: a
 * fact mvmd could not store (a full disk) stays what every reader sees
 * until a later db_vm_transition stores it. */
int db_vm_remember(struct db *db, const struct proto_vm *vm);
/* Restart-policy failures in a row of vm (by name and id), kept in its row
 * so a crash loop is still counted after an mvmd restart.  >= 0 or
 * -ENOENT; set: 0 or -errno. */
int db_vm_failures(struct db *db, const struct proto_vm *vm);
int db_vm_set_failures(struct db *db, const struct proto_vm *vm, int failures);
/* Delete the VM and append its "deleted" event atomically. */
/* Store the row's disks, nics (rate limits included) and balloon target
 * (vm.update). */
int db_vm_set_devices(struct db *db, const struct proto_vm *vm);
int db_vm_delete(struct db *db, const struct proto_vm *vm, double time);
/* The events of one VM, oldest first, as a JSON array of
 * {state, reason, time}. */
int db_event_list(struct db *db, int64_t vm_id, json_t **ret_events);
/* The id of the last event this db inserted (its row id; ids only grow). */
int64_t db_last_event_id(struct db *db);
/* At most max events with id > since, oldest first, as a JSON array of
 * {id, vm, state, reason, time, owner_uid} (owner_uid -1: VM deleted). */
int db_event_since(struct db *db, int64_t since, size_t max, json_t **ret_events);
struct db_totals {
	int64_t vms;                    /* all defined VMs */
	int64_t active;                 /* starting, running or stopping */
	int64_t active_vcpus;
	int64_t active_mem_mib;
};
int db_vm_totals(struct db *db, struct db_totals *ret);
/* What writes cost the caller's thread since db_open: commits (a
 * transaction, or a statement on its own) and the seconds spent stepping
 * writes and commits, the WAL's writes included, and the checkpoints'
 * syncs too without a checkpointer; with one, its checkpoints apart. */
struct db_stats {
	uint64_t commits;
	double write_seconds;
	uint64_t checkpoints, checkpoint_failures;
	double checkpoint_seconds;
	/* tried by the caller's thread (inside a commit) as the WAL grew past
	 * 16,000 pages: the thread's never caught up during a long burst */
	uint64_t checkpoints_on_writer;
};
void db_stats(const struct db *db, struct db_stats *ret);
/* Checkpoints (the WAL copied into the database, and the syncs) on a
 * thread of db's own instead of inside the commit that grew the WAL past
 * 1,000 pages: 0 or -errno (db then checkpoints as before).  db_close()
 * stops it; after stop, db checkpoints as before. */
int db_checkpointer_start(struct db *db);
void db_checkpointer_stop(struct db *db);

#endif
