/* SPDX-License-Identifier: MIT */
/* db/: migrations, VM rows, transitions with events, deletes, reopen. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
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
	vm->restart = strdup("on-failure");
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
	CHECK(!strcmp(got.restart, "on-failure") && got.created_at == 100.25);
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

/* A database from a newer mvmd is refused rather than misread. */
static void test_newer_schema(const char *path)
{
	sqlite3 *c;
	struct db *db;

	CHECK_EQ(sqlite3_open(path, &c), SQLITE_OK);
	CHECK_EQ(sqlite3_exec(c, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(c);
	CHECK_EQ(db_open(path, &db), -EPROTO);
}

int main(void)
{
	char dir[] = "/tmp/mvm-test-db-XXXXXX";
	char path[256];
	struct db *db;
	struct proto_vm vm;

	if (!mkdtemp(dir))
		return 1;
	snprintf(path, sizeof(path), "%s/state.db", dir);
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_schema_version(db), 1);
	test_insert_get(db);
	test_transitions(db);
	test_list_delete(db);
	db_close(db);

	/* reopen: migrations are not rerun and the data is still there */
	CHECK_EQ(db_open(path, &db), 0);
	CHECK_EQ(db_schema_version(db), 1);
	CHECK_EQ(db_vm_get(db, "web1", &vm), 0);
	proto_vm_clear(&vm);
	db_close(db);
	test_newer_schema(path);

	snprintf(path, sizeof(path), "rm -rf '%s'", dir);
	if (system(path) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return check_result("test-db");
}
