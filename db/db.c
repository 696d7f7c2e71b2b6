/* SPDX-License-Identifier: MIT */
/*
 * All of mvmd's SQL: schema migrations keyed by PRAGMA user_version, and
 * prepared statements compiled once at open and finalized at close.  Each
 * state change is one transaction that also appends its event, so the
 * daemon can tell a client only after the commit returned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>

#include "db/db.h"

/* Ordered migrations: entry i brings user_version from i to i + 1.  Never
 * edit an entry once released; append a new one. */
static const char *const migrations[] = {
	/* 1: VM definitions and lifecycle events */
	"CREATE TABLE vms ("
	" id INTEGER PRIMARY KEY,"
	" name TEXT NOT NULL UNIQUE,"
	" owner_uid INTEGER NOT NULL,"
	" state TEXT NOT NULL,"
	" kernel TEXT NOT NULL,"
	" initrd TEXT,"
	" cmdline TEXT NOT NULL,"
	" vcpus INTEGER NOT NULL,"
	" mem_mib INTEGER NOT NULL,"
	" disks TEXT NOT NULL,"          /* JSON array */
	" nics TEXT NOT NULL,"           /* JSON array */
	" labels TEXT NOT NULL,"         /* JSON object */
	" restart TEXT NOT NULL,"
	" restart_max INTEGER NOT NULL,"
	" pid INTEGER NOT NULL DEFAULT 0,"
	" created_at REAL NOT NULL,"
	" started_at REAL,"
	" exit_status INTEGER,"
	" exit_reason TEXT);"
	"CREATE INDEX vms_state ON vms(state);"
	/* events outlive their VM (vm.rm), so no foreign key */
	"CREATE TABLE events ("
	" id INTEGER PRIMARY KEY,"
	" vm_id INTEGER NOT NULL,"
	" vm TEXT NOT NULL,"
	" state TEXT NOT NULL,"
	" reason TEXT,"
	" time REAL NOT NULL);"
	"CREATE INDEX events_vm ON events(vm_id, id);",
};

#define VM_COLUMNS "id, name, owner_uid, state, kernel, initrd, cmdline, vcpus, mem_mib," \
	" disks, nics, labels, restart, restart_max, pid, created_at, started_at," \
	" exit_status, exit_reason"

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_VM_INSERT,
	ST_VM_GET,
	ST_VM_LIST,
	ST_VM_LIST_STATE,
	ST_VM_UPDATE,
	ST_VM_DELETE,
	ST_EVENT_INSERT,
	ST_EVENT_LIST,
	ST_TOTALS,
	ST_COUNT_
};

static const char *const stmt_sql[ST_COUNT_] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_VM_INSERT] = "INSERT INTO vms (name, owner_uid, state, kernel, initrd, cmdline,"
		" vcpus, mem_mib, disks, nics, labels, restart, restart_max, created_at)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
	[ST_VM_GET] = "SELECT " VM_COLUMNS " FROM vms WHERE name = ?1",
	[ST_VM_LIST] = "SELECT " VM_COLUMNS " FROM vms ORDER BY name",
	[ST_VM_LIST_STATE] = "SELECT " VM_COLUMNS " FROM vms WHERE state = ?1 ORDER BY name",
	[ST_VM_UPDATE] = "UPDATE vms SET state = ?2, pid = ?3, started_at = ?4,"
		" exit_status = ?5, exit_reason = ?6 WHERE id = ?1",
	[ST_VM_DELETE] = "DELETE FROM vms WHERE id = ?1",
	[ST_EVENT_INSERT] = "INSERT INTO events (vm_id, vm, state, reason, time)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_EVENT_LIST] = "SELECT state, reason, time FROM events WHERE vm_id = ?1 ORDER BY id",
	[ST_TOTALS] = "SELECT count(*),"
		" coalesce(sum(state IN ('starting','running','stopping')), 0),"
		" coalesce(sum(CASE WHEN state IN ('starting','running','stopping') THEN vcpus END), 0),"
		" coalesce(sum(CASE WHEN state IN ('starting','running','stopping') THEN mem_mib END), 0)"
		" FROM vms",
};

struct db {
	sqlite3 *conn;
	sqlite3_stmt *stmt[ST_COUNT_];
};

static int errno_from_sqlite(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return -EROFS;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_CANTOPEN:
		return -EACCES;
	default:
		return -EIO;
	}
}

/* Run a statement that returns no rows, then reset it for reuse. */
static int stmt_run(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
}

static void stmt_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int db_exec(struct db *db, const char *sql)
{
	return errno_from_sqlite(sqlite3_exec(db->conn, sql, NULL, NULL, NULL));
}

static int db_get_user_version(struct db *db, int *ret)
{
	sqlite3_stmt *st;
	int rc;

	rc = sqlite3_prepare_v2(db->conn, "PRAGMA user_version", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return errno_from_sqlite(rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW ? 0 : errno_from_sqlite(rc);
}

int db_schema_version(struct db *db)
{
	int v = 0;
	int r = db_get_user_version(db, &v);

	return r < 0 ? r : v;
}

/* Apply migration i and bump user_version in the same transaction. */
static int db_migrate_one(struct db *db, int i)
{
	char pragma[64];
	int r;

	r = db_exec(db, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", i + 1);
	r = db_exec(db, migrations[i]);
	if (r == 0)
		r = db_exec(db, pragma);
	if (r == 0)
		r = db_exec(db, "COMMIT");
	if (r < 0)
		db_exec(db, "ROLLBACK");
	return r;
}

static int db_migrate(struct db *db)
{
	int n = (int)(sizeof(migrations) / sizeof(migrations[0]));
	int v, r;

	r = db_get_user_version(db, &v);
	if (r < 0)
		return r;
	if (v > n)
		return -EPROTO;         /* written by a newer mvmd */
	for (int i = v; i < n; i++) {
		r = db_migrate_one(db, i);
		if (r < 0)
			return r;
	}
	return 0;
}

static int db_prepare_all(struct db *db)
{
	for (int i = 0; i < ST_COUNT_; i++) {
		int rc = sqlite3_prepare_v3(db->conn, stmt_sql[i], -1,
		                            SQLITE_PREPARE_PERSISTENT, &db->stmt[i], NULL);
		if (rc != SQLITE_OK)
			return errno_from_sqlite(rc);
	}
	return 0;
}

static int db_configure(struct db *db)
{
	int r;

	sqlite3_busy_timeout(db->conn, 5000);
	r = db_exec(db, "PRAGMA journal_mode = WAL");
	/* FULL: a commit is on disk when the client hears of the change. */
	if (r == 0)
		r = db_exec(db, "PRAGMA synchronous = FULL");
	if (r == 0)
		r = db_exec(db, "PRAGMA foreign_keys = ON");
	return r;
}

int db_open(const char *path, struct db **ret_db)
{
	struct db *db = calloc(1, sizeof(*db));
	int rc, r;

	if (!db)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &db->conn,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                     NULL);
	r = errno_from_sqlite(rc);
	if (r < 0)
		goto fail;
	r = db_configure(db);
	if (r < 0)
		goto fail;
	r = db_migrate(db);
	if (r < 0)
		goto fail;
	r = db_prepare_all(db);
	if (r < 0)
		goto fail;
	*ret_db = db;
	return 0;
fail:
	db_close(db);
	return r;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	for (int i = 0; i < ST_COUNT_; i++)
		sqlite3_finalize(db->stmt[i]);
	sqlite3_close(db->conn);
	free(db);
}

/* ---- row <-> struct -------------------------------------------------- */

static int col_strdup(sqlite3_stmt *st, int col, bool nullable, char **ret)
{
	const unsigned char *s = sqlite3_column_text(st, col);

	if (!s) {
		*ret = NULL;
		return nullable ? 0 : -EINVAL;
	}
	*ret = strdup((const char *)s);
	return *ret ? 0 : -ENOMEM;
}

static int col_json(sqlite3_stmt *st, int col, json_t **ret)
{
	const char *s = (const char *)sqlite3_column_text(st, col);

	*ret = s ? json_loads(s, 0, NULL) : NULL;
	return *ret ? 0 : -EINVAL;
}

static int row_to_vm(sqlite3_stmt *st, struct proto_vm *ret)
{
	struct proto_vm vm = { 0 };
	int state, r;

	vm.id = sqlite3_column_int64(st, 0);
	state = proto_vm_state_from_name((const char *)sqlite3_column_text(st, 3));
	vm.state = state < 0 ? PROTO_VM_CRASHED : state;
	vm.owner_uid = (uint32_t)sqlite3_column_int64(st, 2);
	vm.vcpus = sqlite3_column_int(st, 7);
	vm.mem_mib = sqlite3_column_int64(st, 8);
	vm.restart_max = sqlite3_column_int(st, 13);
	vm.pid = sqlite3_column_int64(st, 14);
	vm.created_at = sqlite3_column_double(st, 15);
	vm.started_at = sqlite3_column_double(st, 16);
	vm.has_exit_status = sqlite3_column_type(st, 17) != SQLITE_NULL;
	vm.exit_status = sqlite3_column_int(st, 17);
	r = col_strdup(st, 1, false, &vm.name);
	r = r ?: col_strdup(st, 4, false, &vm.kernel);
	r = r ?: col_strdup(st, 5, true, &vm.initrd);
	r = r ?: col_strdup(st, 6, false, &vm.cmdline);
	r = r ?: col_json(st, 9, &vm.disks);
	r = r ?: col_json(st, 10, &vm.nics);
	r = r ?: col_json(st, 11, &vm.labels);
	r = r ?: col_strdup(st, 12, false, &vm.restart);
	r = r ?: col_strdup(st, 18, true, &vm.exit_reason);
	if (r < 0) {
		proto_vm_clear(&vm);
		return r;
	}
	*ret = vm;
	return 0;
}

/* Bind a JSON value as compact text; the text is handed to SQLite. */
static int bind_json(sqlite3_stmt *st, int idx, const json_t *v, const char *def)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : strdup(def);

	if (!s)
		return -ENOMEM;
	return errno_from_sqlite(sqlite3_bind_text(st, idx, s, -1, free));
}

static int bind_vm_insert(sqlite3_stmt *st, const struct proto_vm *vm)
{
	int r = 0;

	sqlite3_bind_text(st, 1, vm->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, vm->owner_uid);
	sqlite3_bind_text(st, 3, proto_vm_state_name(vm->state), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, vm->kernel, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 5, vm->initrd, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 6, vm->cmdline ? vm->cmdline : "", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 7, vm->vcpus);
	sqlite3_bind_int64(st, 8, vm->mem_mib);
	r = r ?: bind_json(st, 9, vm->disks, "[]");
	r = r ?: bind_json(st, 10, vm->nics, "[]");
	r = r ?: bind_json(st, 11, vm->labels, "{}");
	sqlite3_bind_text(st, 12, vm->restart ? vm->restart : "no", -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 13, vm->restart_max);
	sqlite3_bind_double(st, 14, vm->created_at);
	return r;
}

/* ---- transactions ---------------------------------------------------- */

static int tx_begin(struct db *db)
{
	return stmt_run(db->stmt[ST_BEGIN]);
}

/* Commit when r == 0, otherwise roll back; returns the first error. */
static int tx_end(struct db *db, int r)
{
	if (r == 0) {
		r = stmt_run(db->stmt[ST_COMMIT]);
		if (r == 0)
			return 0;
	}
	stmt_run(db->stmt[ST_ROLLBACK]);
	return r;
}

static int event_insert(struct db *db, int64_t vm_id, const char *vm,
                        enum proto_vm_state state, const char *reason, double time)
{
	sqlite3_stmt *st = db->stmt[ST_EVENT_INSERT];

	sqlite3_bind_int64(st, 1, vm_id);
	sqlite3_bind_text(st, 2, vm, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, proto_vm_state_name(state), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 5, time);
	return stmt_run(st);
}

int db_vm_insert(struct db *db, struct proto_vm *vm)
{
	sqlite3_stmt *st = db->stmt[ST_VM_INSERT];
	int64_t id = 0;
	int r;

	r = tx_begin(db);
	if (r < 0)
		return r;
	r = bind_vm_insert(st, vm);
	if (r == 0)
		r = stmt_run(st);
	else
		stmt_done(st);
	if (r == 0) {
		id = sqlite3_last_insert_rowid(db->conn);
		r = event_insert(db, id, vm->name, vm->state, NULL, vm->created_at);
	}
	r = tx_end(db, r);
	if (r == 0)
		vm->id = id;
	return r;
}

int db_vm_transition(struct db *db, const struct proto_vm *vm,
                     const char *reason, double time)
{
	sqlite3_stmt *st = db->stmt[ST_VM_UPDATE];
	int r;

	r = tx_begin(db);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, vm->id);
	sqlite3_bind_text(st, 2, proto_vm_state_name(vm->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, vm->pid);
	if (vm->started_at != 0)
		sqlite3_bind_double(st, 4, vm->started_at);
	if (vm->has_exit_status)
		sqlite3_bind_int(st, 5, vm->exit_status);
	sqlite3_bind_text(st, 6, vm->exit_reason, -1, SQLITE_STATIC);
	r = stmt_run(st);
	if (r == 0 && sqlite3_changes(db->conn) == 0)
		r = -ENOENT;
	if (r == 0)
		r = event_insert(db, vm->id, vm->name, vm->state, reason, time);
	return tx_end(db, r);
}

int db_vm_delete(struct db *db, const struct proto_vm *vm, double time)
{
	sqlite3_stmt *st = db->stmt[ST_VM_DELETE];
	int r;

	r = tx_begin(db);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, vm->id);
	r = stmt_run(st);
	if (r == 0 && sqlite3_changes(db->conn) == 0)
		r = -ENOENT;
	if (r == 0)
		r = event_insert(db, vm->id, vm->name, PROTO_VM_DELETED, NULL, time);
	return tx_end(db, r);
}

/* ---- queries --------------------------------------------------------- */

int db_vm_get(struct db *db, const char *name, struct proto_vm *ret_vm)
{
	sqlite3_stmt *st = db->stmt[ST_VM_GET];
	int rc, r;

	sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		r = row_to_vm(st, ret_vm);
	else
		r = rc == SQLITE_DONE ? -ENOENT : errno_from_sqlite(rc);
	stmt_done(st);
	return r;
}

void db_vm_list_free(struct proto_vm *vms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		proto_vm_clear(&vms[i]);
	free(vms);
}

static int list_append(sqlite3_stmt *st, struct proto_vm **vms, size_t *n, size_t *cap)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		struct proto_vm *p = realloc(*vms, ncap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		*vms = p;
		*cap = ncap;
	}
	int r = row_to_vm(st, &(*vms)[*n]);
	if (r == 0)
		(*n)++;
	return r;
}

int db_vm_list(struct db *db, const char *state, struct proto_vm **ret_vms,
               size_t *ret_n)
{
	sqlite3_stmt *st = db->stmt[state ? ST_VM_LIST_STATE : ST_VM_LIST];
	struct proto_vm *vms = NULL;
	size_t n = 0, cap = 0;
	int rc = SQLITE_DONE, r = 0;

	if (state)
		sqlite3_bind_text(st, 1, state, -1, SQLITE_STATIC);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW)
		r = list_append(st, &vms, &n, &cap);
	if (r == 0 && rc != SQLITE_DONE)
		r = errno_from_sqlite(rc);
	stmt_done(st);
	if (r < 0) {
		db_vm_list_free(vms, n);
		return r;
	}
	*ret_vms = vms;
	*ret_n = n;
	return 0;
}

static json_t *event_row(sqlite3_stmt *st)
{
	return json_pack("{s:s, s:s?, s:f}",
	                 "state", (const char *)sqlite3_column_text(st, 0),
	                 "reason", (const char *)sqlite3_column_text(st, 1),
	                 "time", sqlite3_column_double(st, 2));
}

int db_event_list(struct db *db, int64_t vm_id, json_t **ret_events)
{
	sqlite3_stmt *st = db->stmt[ST_EVENT_LIST];
	json_t *arr = json_array();
	int rc = SQLITE_DONE, r = arr ? 0 : -ENOMEM;

	sqlite3_bind_int64(st, 1, vm_id);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (json_array_append_new(arr, event_row(st)) < 0)
			r = -ENOMEM;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = errno_from_sqlite(rc);
	stmt_done(st);
	if (r < 0) {
		json_decref(arr);
		return r;
	}
	*ret_events = arr;
	return 0;
}

int db_vm_totals(struct db *db, struct db_totals *ret)
{
	sqlite3_stmt *st = db->stmt[ST_TOTALS];
	int rc = sqlite3_step(st);

	if (rc == SQLITE_ROW) {
		ret->vms = sqlite3_column_int64(st, 0);
		ret->active = sqlite3_column_int64(st, 1);
		ret->active_vcpus = sqlite3_column_int64(st, 2);
		ret->active_mem_mib = sqlite3_column_int64(st, 3);
	}
	stmt_done(st);
	return rc == SQLITE_ROW ? 0 : errno_from_sqlite(rc);
}
