/* SPDX-License-Identifier: MIT */
/* db/: migrations, VM rows, transitions with events, deletes, reopen. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sqlite3.h>

#include "db/db.h"
#include "tests/unit/check.h"

static void make_vm(struct proto_vm *vm, const char *name, uint32_t uid)
{
	memset(vm, 0, sizeof(*vm));
	vm->name = strdup(name);
	vm->state = PROTO_VM_CREATED;
	vm->owner_uid = uid;
	vm->kernel = strdup("/boot/k");
	vm->cmdline = strdup("console=ttyS0");
	vm->vcpus = 2;
	vm->mem_mib = 256;
	vm->disks = json_pack("[{s:s, s:b}]", "path", "/d.img", "readonly", 1);
	vm->nics = json_array();
	vm->labels = json_pack("{s:s}", "role", "web");
	vm->restart = PROTO_RESTART_ON_FAILURE;
	vm->restart_max = 3;
	vm->created_at = 100.25;
}

static void test_insert_get(struct db *db)
{
	struct proto_vm vm, got;

	make_vm(&vm, "web1", 1000);
	CHECK_EQ(db_vm_insert(db, &vm), 0);
	CHECK(vm.id > 0);
	CHECK_EQ(db_vm_get(db, "web1", &got), 0);
	CHECK(got.id == vm.id && !strcmp(got.name, "web1"));
	CHECK(got.state == PROTO_VM_CREATED && got.owner_uid == 1000);
	CHECK(got.initrd == NULL && got.exit_reason == NULL && !got.has_exit_status);
	CHECK(got.vcpus == 2 && got.mem_mib == 256 && got.restart_max == 3);
	CHECK(got.restart == PROTO_RESTART_ON_FAILURE && got.created_at == 100.25);
	CHECK(json_equal(got.disks, vm.disks) && json_equal(got.labels, vm.labels));
	proto_vm_clear(&got);

	/* names are unique */
	proto_vm_clear(&vm);
	make_vm(&vm, "web1", 1001);
	CHECK_EQ(db_vm_insert(db, &vm), -EEXIST);
	proto_vm_clear(&vm);
	CHECK_EQ(db_vm_get(db, "nope", &got), -ENOENT);
}

static void test_transitions(struct db *db)
{
	struct proto_vm vm, got;
	json_t *events;

	CHECK_EQ(db_vm_get(db, "web1", &vm), 0);
	vm.state = PROTO_VM_RUNNING;
	vm.pid = 4242;
	vm.started_at = 101.5;
	CHECK_EQ(db_vm_transition(db, &vm, NULL, 101.5), 0);
	vm.state = PROTO_VM_CRASHED;
	vm.pid = 0;
	vm.has_exit_status = true;
	vm.exit_status = 3;
	vm.exit_reason = strdup("triple-fault");
	CHECK_EQ(db_vm_transition(db, &vm, "triple-fault", 102), 0);
	CHECK_EQ(db_vm_get(db, "web1", &got), 0);
	CHECK(got.state == PROTO_VM_CRASHED && got.pid == 0 && got.started_at == 101.5);
	CHECK(got.has_exit_status && got.exit_status == 3);
	CHECK(got.exit_reason && !strcmp(got.exit_reason, "triple-fault"));
	CHECK_EQ(db_event_list(db, vm.id, &events), 0);
	CHECK_EQ(json_array_size(events), 3);
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(events, 0), "state")), "created"));
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(events, 2), "reason")), "triple-fault"));
	CHECK(json_is_null(json_object_get(json_array_get(events, 1), "reason")));
	json_decref(events);
	proto_vm_clear(&got);
	vm.id = 99999;
	CHECK_EQ(db_vm_transition(db, &vm, NULL, 103), -ENOENT);
	proto_vm_clear(&vm);
}

static void test_list_delete(struct db *db)
{
	struct proto_vm vm, *vms;
	struct db_totals t;
	json_t *events;
	size_t n;
	int64_t id;

	make_vm(&vm, "a-first", 0);
	vm.state = PROTO_VM_RUNNING;
	CHECK_EQ(db_vm_insert(db, &vm), 0);
	id = vm.id;
	CHECK_EQ(db_vm_list(db, NULL, &vms, &n), 0);
	CHECK(n == 2 && !strcmp(vms[0].name, "a-first") && !strcmp(vms[1].name, "web1"));
	db_vm_list_free(vms, n);
	CHECK_EQ(db_vm_list(db, "crashed", &vms, &n), 0);
	CHECK(n == 1 && !strcmp(vms[0].name, "web1"));
	db_vm_list_free(vms, n);
	CHECK_EQ(db_vm_totals(db, &t), 0);
	CHECK(t.vms == 2 && t.active == 1 && t.active_vcpus == 2 && t.active_mem_mib == 256);

	CHECK_EQ(db_vm_delete(db, &vm, 200), 0);
	CHECK_EQ(db_vm_delete(db, &vm, 201), -ENOENT);
	CHECK_EQ(db_vm_get(db, "a-first", &vm), -ENOENT);
	/* the events of a deleted VM stay */
	CHECK_EQ(db_event_list(db, id, &events), 0);
	CHECK_EQ(json_array_size(events), 2);
	json_decref(events);
	proto_vm_clear(&vm);
}

/* Rows written with fields left to their defaults, in an order that is
 * not the name order, and a change after insert. */
static void fill_mirror(struct db *db)
{
	static const char *const names[] = { "m-3", "m-1", "M-0", "m-2" };
	struct proto_vm vm;

	for (size_t i = 0; i < 4; i++) {
		memset(&vm, 0, sizeof(vm));
		vm.name = strdup(names[i]);
		vm.kernel = strdup("/k \"q\" \xc3\xa9");
		vm.vcpus = 1;
		vm.created_at = 1700000000.123456 + (double)i;
		if (i == 1)
			vm.labels = json_pack("{s:s, s:s}", "z", "1", "a", "\n");
		CHECK_EQ(db_vm_insert(db, &vm), 0);
		if (i == 2) {
			vm.state = PROTO_VM_STOPPED;
			vm.has_exit_status = true;
			vm.exit_status = 0;
			vm.exit_reason = strdup("poweroff");
			vm.started_at = 5.5;
			CHECK_EQ(db_vm_transition(db, &vm, "poweroff", 6), 0);
		}
		proto_vm_clear(&vm);
	}
}

/* The in-memory rows: ordered by name, their cached encodings equal a
 * fresh encoding, and (snapshot) equal what a reopen reads from SQLite. */
static char *mirror_snapshot(struct db *db)
{
	size_t n = db_vm_count(db), len, total = 0;
	char *snap = NULL, *enc;
	const char *wire;

	for (size_t i = 0; i < n; i++) {
		const struct proto_vm *vm = db_vm_at(db, i);

		if (i > 0)
			CHECK(strcmp(db_vm_at(db, i - 1)->name, vm->name) < 0);
		CHECK_EQ(db_vm_wire(db, i, &wire, &len), 0);
		CHECK_EQ(proto_vm_encode(vm, &enc, &len), 0);
		CHECK(!strcmp(wire, enc));
		free(enc);
		snap = realloc(snap, total + len + 2);
		memcpy(snap + total, wire, len);
		total += len;
		snap[total++] = '\n';
		snap[total] = '\0';
	}
	CHECK(db_vm_at(db, n) == NULL);
	CHECK_EQ(db_vm_wire(db, n, &wire, &len), -ENOENT);
	return snap;
}

/* A database from a newer mvmd is refused rather than misread, and the
 * reason names both schema versions. */
static void test_newer_schema(const char *path)
{
	char why[256];
	sqlite3 *c;
	struct db *db;

	CHECK_EQ(sqlite3_open(path, &c), SQLITE_OK);
	CHECK_EQ(sqlite3_exec(c, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(c);
	CHECK_EQ(db_open(path, &db), -EPROTO);
	CHECK_EQ(db_open_diag(path, &db, why, sizeof(why)), -EPROTO);
	CHECK(!strcmp(why, "schema 999 > 8"));
}

/* The pid stored after a spawn adds no event; failure counts persist. */
static void test_store_failures(const char *path)
{
	struct proto_vm vm, got;
	json_t *events;
	struct db *db;

	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_vm_get(db, "web1", &vm), 0);
	CHECK_EQ(db_event_list(db, vm.id, &events), 0);
	size_t nev = json_array_size(events);
	json_decref(events);
	vm.state = PROTO_VM_STARTING;
	vm.pid = 4242;
	CHECK_EQ(db_vm_store(db, &vm), 0);
	CHECK_EQ(db_event_list(db, vm.id, &events), 0);
	CHECK_EQ(json_array_size(events), nev);
	json_decref(events);
	CHECK_EQ(db_vm_failures(db, &vm), 0);
	CHECK_EQ(db_vm_set_failures(db, &vm, 3), 0);
	CHECK_EQ(db_vm_failures(db, &vm), 3);
	db_close(db);
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_vm_get(db, "web1", &got), 0);
	CHECK_EQ(got.pid, 4242);
	CHECK_EQ(got.state, PROTO_VM_STARTING);
	CHECK_EQ(db_vm_failures(db, &got), 3);
	got.id = 999999;                /* a row by that name, but not that id */
	CHECK_EQ(db_vm_failures(db, &got), -ENOENT);
	CHECK_EQ(db_vm_set_failures(db, &got, 1), -ENOENT);
	proto_vm_clear(&got);
	proto_vm_clear(&vm);
	db_close(db);
}

static void write_file(const char *path, const void *data, size_t len, off_t at)
{
	FILE *f = fopen(path, at < 0 ? "wb" : "r+b");

	CHECK(f != NULL);
	if (!f)
		return;
	if (at >= 0)
		fseeko(f, at, SEEK_SET);
	CHECK_EQ(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* A file that is not SQLite at all, and a database whose pages were
 * overwritten: refused with a reason, never opened. */
static void test_not_db_and_corrupt(const char *dir)
{
	char path[256], why[256], junk[4096];
	struct proto_vm vm;
	struct db *db;

	snprintf(path, sizeof(path), "%s/junk.db", dir);
	memset(junk, 'x', sizeof(junk));
	write_file(path, junk, sizeof(junk), -1);
	CHECK_EQ(db_open_diag(path, &db, why, sizeof(why)), -EMEDIUMTYPE);
	CHECK(strstr(why, "not a database") != NULL);

	snprintf(path, sizeof(path), "%s/corrupt.db", dir);
	CHECK_EQ(db_open(path, &db), 0);
	for (int i = 0; i < 200; i++) {
		char name[32];

		snprintf(name, sizeof(name), "vm%03d", i);
		make_vm(&vm, name, 1000);
		CHECK_EQ(db_vm_insert(db, &vm), 0);
		proto_vm_clear(&vm);
	}
	db_close(db);                   /* checkpoints the WAL into the file */
	/* page 3 onwards (4096-byte pages): table and index pages, not the header */
	memset(junk, 0xa5, sizeof(junk));
	write_file(path, junk, sizeof(junk), 2 * 4096);
	write_file(path, junk, sizeof(junk), 5 * 4096);
	CHECK_EQ(db_open_diag(path, &db, why, sizeof(why)), -EBADMSG);
	CHECK(why[0] != '\0');
	fprintf(stderr, "corrupt database refused: %s\n", why);
}

static mode_t file_mode(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? st.st_mode & 07777 : (mode_t)-1;
}

/* The database and its WAL are mvmd's alone, a loose existing one too. */
static void test_private(const char *dir)
{
	char path[256], wal[300];
	struct proto_vm vm;
	struct db *db;

	snprintf(path, sizeof(path), "%s/loose.db", dir);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	umask(022);
	CHECK_EQ(db_open(path, &db), 0);
	make_vm(&vm, "p1", 1000);
	CHECK_EQ(db_vm_insert(db, &vm), 0);
	proto_vm_clear(&vm);
	CHECK_EQ(file_mode(path), 0600);
	CHECK_EQ(file_mode(wal), 0600);
	db_close(db);
	CHECK_EQ(chmod(path, 0644), 0);
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(file_mode(path), 0600);
	db_close(db);
}

/* A deleted VM's id is never given again, so its events stay its own;
 * every VM has a uuid of its own. */
static void test_ids_not_reused(struct db *db)
{
	struct proto_vm a, b, c;
	json_t *events;

	make_vm(&a, "reuse", 1000);
	CHECK_EQ(db_vm_insert(db, &a), 0);
	CHECK_EQ(strlen(a.uuid), PROTO_UUID_LEN);
	CHECK_EQ(a.uuid[14], '4');
	a.state = PROTO_VM_RUNNING;
	CHECK_EQ(db_vm_transition(db, &a, "user", 101), 0);
	CHECK_EQ(db_vm_delete(db, &a, 102), 0);
	make_vm(&b, "reuse", 2000);
	CHECK_EQ(db_vm_insert(db, &b), 0);
	CHECK(b.id > a.id);
	CHECK(strcmp(a.uuid, b.uuid) != 0);
	CHECK_EQ(db_event_list(db, b.id, &events), 0);
	CHECK_EQ(json_array_size(events), 1);   /* its own "created" only */
	json_decref(events);
	CHECK_EQ(db_vm_get(db, "reuse", &c), 0);
	CHECK(!strcmp(c.uuid, b.uuid));
	proto_vm_clear(&c);
	CHECK_EQ(db_vm_delete(db, &b, 103), 0);
	proto_vm_clear(&a);
	proto_vm_clear(&b);
}

/* A schema 4 database (ids reused): migration 5 keeps its rows, gives them
 * uuids and starts new ids past every id its events name. */
static void test_migrate_v4(const char *dir)
{
	static const char v4[] =
		"CREATE TABLE vms (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
		" owner_uid INTEGER NOT NULL, state TEXT NOT NULL, kernel TEXT NOT NULL,"
		" initrd TEXT, cmdline TEXT NOT NULL, vcpus INTEGER NOT NULL,"
		" mem_mib INTEGER NOT NULL, disks TEXT NOT NULL, nics TEXT NOT NULL,"
		" labels TEXT NOT NULL, restart TEXT NOT NULL, restart_max INTEGER NOT NULL,"
		" pid INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, started_at REAL,"
		" exit_status INTEGER, exit_reason TEXT, pools TEXT NOT NULL DEFAULT '[]',"
		" autostart INTEGER NOT NULL DEFAULT 0,"
		" restart_failures INTEGER NOT NULL DEFAULT 0);"
		"CREATE INDEX vms_state ON vms(state);"
		"CREATE TABLE events (id INTEGER PRIMARY KEY, vm_id INTEGER NOT NULL,"
		" vm TEXT NOT NULL, state TEXT NOT NULL, reason TEXT, time REAL NOT NULL);"
		"CREATE INDEX events_vm ON events(vm_id, id);"
		"INSERT INTO vms (id, name, owner_uid, state, kernel, cmdline, vcpus, mem_mib,"
		" disks, nics, labels, restart, restart_max, created_at)"
		" VALUES (3, 'old', 1000, 'stopped', '/k', '', 1, 64, '[]', '[]', '{}', 'no', 0, 1);"
		"INSERT INTO events (vm_id, vm, state, time) VALUES (3, 'old', 'created', 1);"
		"INSERT INTO events (vm_id, vm, state, time) VALUES (9, 'gone', 'created', 1);"
		"PRAGMA user_version = 4;";
	char path[256];
	struct proto_vm old, vm;
	sqlite3 *c;
	struct db *db;

	snprintf(path, sizeof(path), "%s/v4.db", dir);
	CHECK_EQ(sqlite3_open(path, &c), SQLITE_OK);
	CHECK_EQ(sqlite3_exec(c, v4, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(c);
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_schema_version(db), 8);
	CHECK_EQ(db_vm_get(db, "old", &old), 0);
	CHECK_EQ(old.id, 3);
	CHECK_EQ(strlen(old.uuid), PROTO_UUID_LEN);
	CHECK_EQ(old.uuid[14], '4');
	CHECK(!old.has_balloon);
	CHECK(!old.has_rng);        /* rows from before the rng column: none */
	CHECK_EQ(old.vsock_cid, 0); /* nor a vsock */
	make_vm(&vm, "gone", 1000);
	CHECK_EQ(db_vm_insert(db, &vm), 0);
	CHECK(vm.id > 9);
	proto_vm_clear(&vm);
	proto_vm_clear(&old);
	db_close(db);
}

/* vm.update's store: limits in the disk objects and the balloon target,
 * in the database and in the in-memory copy, across a reopen. */
static void test_devices(const char *dir)
{
	struct proto_vm vm, got;
	char path[256];
	struct db *db;

	snprintf(path, sizeof(path), "%s/dev.db", dir);
	CHECK_EQ(db_open(path, &db), 0);
	make_vm(&got, "plain", 1000);
	CHECK_EQ(db_vm_insert(db, &got), 0);
	proto_vm_clear(&got);
	make_vm(&vm, "bal", 1000);
	vm.has_balloon = true;
	vm.balloon_mib = 64;
	vm.has_rng = true;
	vm.vsock_cid = 4294967294u;
	CHECK_EQ(db_vm_insert(db, &vm), 0);
	CHECK_EQ(db_vm_get(db, "bal", &got), 0);
	CHECK(got.has_balloon && got.has_rng);
	CHECK_EQ(got.vsock_cid, 4294967294u);
	CHECK_EQ(got.balloon_mib, 64);
	proto_vm_clear(&got);
	json_object_set_new(json_array_get(vm.disks, 0), "bps", json_integer(1048576));
	vm.balloon_mib = 32;
	CHECK_EQ(db_vm_set_devices(db, &vm), 0);
	CHECK_EQ(db_vm_get(db, "bal", &got), 0);
	CHECK_EQ(got.balloon_mib, 32);
	CHECK_EQ(json_integer_value(json_object_get(json_array_get(got.disks, 0), "bps")), 1048576);
	proto_vm_clear(&got);
	db_close(db);
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_vm_get(db, "bal", &got), 0);
	CHECK(got.has_balloon && got.balloon_mib == 32);
	CHECK_EQ(json_integer_value(json_object_get(json_array_get(got.disks, 0), "bps")), 1048576);
	proto_vm_clear(&got);
	CHECK_EQ(db_vm_get(db, "plain", &got), 0);
	CHECK(!got.has_balloon && !got.has_rng && got.vsock_cid == 0);
	proto_vm_clear(&got);
	CHECK_EQ(db_vm_delete(db, &vm, 1), 0);
	vm.id = 999999;
	CHECK_EQ(db_vm_set_devices(db, &vm), -ENOENT);
	proto_vm_clear(&vm);
	db_close(db);
}

static int batch_heard = 1, batch_ends;

static void batch_cb(void *arg, int r)
{
	batch_heard = r;
	batch_ends++;
}

/* The state of row id as another connection reads it: only what is
 * committed (""), or "" when there is no such row. */
static void committed_state(const char *path, int64_t id, char *buf, size_t size)
{
	sqlite3_stmt *st;
	sqlite3 *c;

	buf[0] = '\0';
	CHECK_EQ(sqlite3_open_v2(path, &c, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
	CHECK_EQ(sqlite3_prepare_v2(c, "SELECT state FROM vms WHERE id = ?1", -1, &st, NULL),
	         SQLITE_OK);
	sqlite3_bind_int64(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW)
		snprintf(buf, size, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(c);
}

/* Group commit: batched changes are in the copy at once and on disk only
 * when the batch commits, alone or with the next change of its own; a
 * failing change of its own leaves the batch as it was. */
static void test_batch(const char *dir)
{
	struct proto_vm a, b, got;
	char path[256], st[32];
	struct db_stats s0, s1;
	json_t *events;
	struct db *db;

	snprintf(path, sizeof(path), "%s/batch.db", dir);
	CHECK_EQ(db_open(path, &db), 0);
	db_batch_watch(db, batch_cb, NULL);
	make_vm(&a, "ba", 1000);
	make_vm(&b, "bb", 1000);
	CHECK_EQ(db_vm_insert(db, &a), 0);
	CHECK_EQ(db_vm_insert(db, &b), 0);
	CHECK_EQ(batch_ends, 0);        /* no batch was open */
	db_stats(db, &s0);

	a.state = PROTO_VM_RUNNING;
	a.pid = 77;
	CHECK(!db_batch_open(db));
	CHECK_EQ(db_vm_transition_batched(db, &a, "booted", 101.0), 0);
	CHECK(db_batch_open(db));
	b.pid = 78;
	CHECK_EQ(db_vm_store_batched(db, &b), 0);
	CHECK_EQ(db_vm_get(db, "ba", &got), 0);
	CHECK_EQ(got.state, PROTO_VM_RUNNING);
	proto_vm_clear(&got);
	committed_state(path, a.id, st, sizeof(st));
	CHECK(!strcmp(st, "created"));
	CHECK_EQ(db_batch_commit(db), 0);
	CHECK(!db_batch_open(db) && batch_ends == 1 && batch_heard == 0);
	committed_state(path, a.id, st, sizeof(st));
	CHECK(!strcmp(st, "running"));
	db_stats(db, &s1);
	CHECK_EQ(s1.commits - s0.commits, 1);
	CHECK(s1.write_seconds > s0.write_seconds);

	/* a change of its own that fails (no such row) leaves the batch be */
	a.state = PROTO_VM_CRASHED;
	CHECK_EQ(db_vm_transition_batched(db, &a, "signal 9", 102.0), 0);
	got = b;
	got.id = 999999;
	CHECK_EQ(db_vm_transition(db, &got, NULL, 102.5), -ENOENT);
	CHECK(db_batch_open(db) && batch_ends == 1);
	/* one that succeeds commits the batch with it, events in order */
	b.state = PROTO_VM_STARTING;
	CHECK_EQ(db_vm_transition(db, &b, NULL, 103.0), 0);
	CHECK(!db_batch_open(db) && batch_ends == 2 && batch_heard == 0);
	committed_state(path, a.id, st, sizeof(st));
	CHECK(!strcmp(st, "crashed"));
	CHECK_EQ(db_event_list(db, a.id, &events), 0);
	CHECK_EQ(json_array_size(events), 3);
	CHECK(!strcmp(json_string_value(json_object_get(json_array_get(events, 2), "reason")),
	              "signal 9"));
	json_decref(events);
	db_stats(db, &s0);
	CHECK_EQ(s0.commits - s1.commits, 1);

	/* and so do the writes outside vms.c's path */
	CHECK_EQ(db_vm_store_batched(db, &a), 0);
	CHECK_EQ(db_vm_set_failures(db, &a, 2), 0);
	CHECK(!db_batch_open(db) && batch_ends == 3);
	CHECK_EQ(db_vm_store_batched(db, &a), 0);
	CHECK_EQ(db_vm_delete(db, &b, 104.0), 0);
	CHECK(!db_batch_open(db) && batch_ends == 4);
	committed_state(path, b.id, st, sizeof(st));
	CHECK(!strcmp(st, ""));
	proto_vm_clear(&a);
	proto_vm_clear(&b);
	db_close(db);
}

static long long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* A VM row named <prefix><i>, with cmdline if not NULL. */
static void insert_numbered(struct db *db, const char *prefix, int i, const char *cmdline)
{
	struct proto_vm vm;
	char name[32];

	snprintf(name, sizeof(name), "%s%d", prefix, i);
	make_vm(&vm, name, 1000);
	if (cmdline) {
		free(vm.cmdline);
		vm.cmdline = strdup(cmdline);
	}
	CHECK_EQ(db_vm_insert(db, &vm), 0);
	proto_vm_clear(&vm);
}

/* The checkpointer copies the WAL into the database on its own thread:
 * the database file grows though no commit here checkpoints (the WAL
 * hook replaced the autocheckpoint), and every row is there after. */
static void test_checkpointer(const char *dir)
{
	char path[256], wal[300], *big = malloc(3000);
	struct db_stats st;
	long long size0;
	struct db *db;
	int n;

	snprintf(path, sizeof(path), "%s/ckpt.db", dir);
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_checkpointer_start(db), 0);
	CHECK_EQ(db_checkpointer_start(db), 0);         /* once is enough */
	size0 = file_size(path);
	memset(big, 'x', 2999);
	big[2999] = '\0';
	/* a row of ~3 KB: a page or more of WAL per commit, 1,000 at ~500 */
	for (n = 0; n < 1500; n++)
		insert_numbered(db, "ck", n, big);
	for (int i = 0; i < 500; i++) {
		db_stats(db, &st);
		if (st.checkpoints > 0 && file_size(path) > size0 + (1 << 20))
			break;
		usleep(10000);
	}
	db_stats(db, &st);
	/* one per 1,000 pages or so, never one per commit (nor a spin) */
	CHECK(st.checkpoints > 0 && st.checkpoints < 150);
	CHECK_EQ(st.checkpoint_failures, 0);
	CHECK(st.checkpoint_seconds > 0);
	CHECK(file_size(path) > size0 + (1 << 20));
	/* Commits then pause: the thread catches up, so the next one starts
	 * the WAL over, and journal_size_limit (4 MiB) trims what the burst
	 * grew.  Each try pauses 1.3 s (the thread waits for 1 s of quiet). */
	snprintf(wal, sizeof(wal), "%s-wal", path);
	CHECK(file_size(wal) > (4 << 20));
	for (int i = 0; i < 8 && file_size(wal) > (4 << 20); i++) {
		usleep(1300000);
		insert_numbered(db, "ckq", i, NULL);
		n++;
	}
	CHECK(file_size(wal) <= (4 << 20));
	db_close(db);

	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_vm_count(db), (size_t)n);
	db_stats(db, &st);
	CHECK_EQ(st.checkpoints, 0);                    /* none without one */
	db_close(db);
	free(big);
}

int main(void)
{
	char dir[] = "/tmp/mvm-test-db-XXXXXX";
	char path[256];
	struct db *db;
	struct proto_vm vm;
	char *snap, *snap2;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/state.db", dir);
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_schema_version(db), 8);
	test_insert_get(db);
	test_transitions(db);
	test_list_delete(db);
	test_ids_not_reused(db);
	fill_mirror(db);
	CHECK_EQ(db_vm_count(db), 5);
	snap = mirror_snapshot(db);
	db_close(db);

	/* reopen: migrations are not rerun and the data is still there, read
	 * back exactly as the in-memory copy had it */
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_schema_version(db), 8);
	CHECK_EQ(db_vm_get(db, "web1", &vm), 0);
	proto_vm_clear(&vm);
	snap2 = mirror_snapshot(db);
	CHECK(snap && snap2 && !strcmp(snap, snap2));
	free(snap);
	free(snap2);
	db_close(db);
	test_store_failures(path);
	test_newer_schema(path);
	test_not_db_and_corrupt(dir);
	test_private(dir);
	test_migrate_v4(dir);
	test_devices(dir);
	test_batch(dir);
	test_checkpointer(dir);

	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return check_result("test-db");
}
