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

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

struct db;

/* Open or create the database and run pending migrations. */
int db_open(const char *path, struct db **ret_db);
void db_close(struct db *db);
/* Schema version after migrations (PRAGMA user_version). */
int db_schema_version(struct db *db);

/* Insert a new VM and its "created" event in one transaction; sets vm->id. */
int db_vm_insert(struct db *db, struct proto_vm *vm);
/* Look up by name into *ret_vm (clear with proto_vm_clear). */
int db_vm_get(struct db *db, const char *name, struct proto_vm *ret_vm);
/* All VMs (optionally only those in state), ordered by name.  *ret_vms is
 * an array of *ret_n entries; free with db_vm_list_free. */
int db_vm_list(struct db *db, const char *state, struct proto_vm **ret_vms,
               size_t *ret_n);
void db_vm_list_free(struct proto_vm *vms, size_t n);
/* Store vm's runtime columns (state, pid, started_at, exit_status,
 * exit_reason) and append an event {state, reason, time} atomically.
 * reason may be NULL. */
int db_vm_transition(struct db *db, const struct proto_vm *vm,
                     const char *reason, double time);
/* Delete the VM and append its "deleted" event atomically. */
int db_vm_delete(struct db *db, const struct proto_vm *vm, double time);
/* The events of one VM, oldest first, as a JSON array of
 * {state, reason, time}. */
int db_event_list(struct db *db, int64_t vm_id, json_t **ret_events);
struct db_totals {
	int64_t vms;                    /* all defined VMs */
	int64_t active;                 /* starting, running or stopping */
	int64_t active_vcpus;
	int64_t active_mem_mib;
};
int db_vm_totals(struct db *db, struct db_totals *ret);

#endif
