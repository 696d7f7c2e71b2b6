/* SPDX-License-Identifier: MIT */
/*
 * All of mvmd's SQL: schema migrations keyed by PRAGMA user_version, and
 * prepared statements compiled once at open and finalized at close.  Each
 * state change is atomic with its event, so the daemon can tell a client
 * only after the commit returned.
 *
 * Group commit: a fact (db_vm_*_batched) goes into one transaction left
 * open for the rest of the loop turn, as a savepoint of its own; the next
 * change of its own (an intent: create, start, stop, rm) or the turn's end
 * (db_batch_commit) commits the lot, and the batch's owner hears whether
 * it was stored.
 *
 * mvmd is the only writer, so the vms table is also kept in memory (loaded
 * at open, updated after each commit succeeds, or for a fact as soon as it
 * is in the batch): reads of VM rows need no SQL and no JSON parsing, and
 * each row caches its wire encoding for vm.list.  Whatever can fail is
 * allocated before the commit, so a committed change always reaches the
 * copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>

#include "db/db.h"

/* A random (version 4) uuid, for rows that predate the column. */
#define UUID_V4_SQL "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||" \
	" substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + abs(random() % 4), 1) ||" \
	" substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"

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
	/* 2: quota pools a VM counts in (capacity admission); states need no
	 * change: the column is free text, "queued" included */
	"ALTER TABLE vms ADD COLUMN pools TEXT NOT NULL DEFAULT '[]';",
	/* 3: start the VM again after a host reboot (restart policies) */
	"ALTER TABLE vms ADD COLUMN autostart INTEGER NOT NULL DEFAULT 0;",
	/* 4: restart-policy failures in a row, so a crash loop is still
	 * counted across an mvmd restart */
	"ALTER TABLE vms ADD COLUMN restart_failures INTEGER NOT NULL DEFAULT 0;",
	/* 5: ids never reused (AUTOINCREMENT), so a new VM never lists a
	 * deleted one's events, and a uuid per VM.  SQLite cannot add
	 * AUTOINCREMENT to a table: rebuild it.  The sequence starts past every
	 * id an event names, deleted VMs' included. */
	"ALTER TABLE vms RENAME TO vms_v4;"
	"DROP INDEX vms_state;"
	"CREATE TABLE vms ("
	" id INTEGER PRIMARY KEY AUTOINCREMENT,"
	" name TEXT NOT NULL UNIQUE,"
	" owner_uid INTEGER NOT NULL,"
	" state TEXT NOT NULL,"
	" kernel TEXT NOT NULL,"
	" initrd TEXT,"
	" cmdline TEXT NOT NULL,"
	" vcpus INTEGER NOT NULL,"
	" mem_mib INTEGER NOT NULL,"
	" disks TEXT NOT NULL,"
	" nics TEXT NOT NULL,"
	" labels TEXT NOT NULL,"
	" restart TEXT NOT NULL,"
	" restart_max INTEGER NOT NULL,"
	" pid INTEGER NOT NULL DEFAULT 0,"
	" created_at REAL NOT NULL,"
	" started_at REAL,"
	" exit_status INTEGER,"
	" exit_reason TEXT,"
	" pools TEXT NOT NULL DEFAULT '[]',"
	" autostart INTEGER NOT NULL DEFAULT 0,"
	" restart_failures INTEGER NOT NULL DEFAULT 0,"
	" uuid TEXT NOT NULL UNIQUE);"
	"INSERT INTO vms SELECT *, " UUID_V4_SQL " FROM vms_v4;"
	"DROP TABLE vms_v4;"
	"CREATE INDEX vms_state ON vms(state);"
	"DELETE FROM sqlite_sequence WHERE name = 'vms';"
	"INSERT INTO sqlite_sequence (name, seq) SELECT 'vms', max("
	" (SELECT coalesce(max(id), 0) FROM vms),"
	" (SELECT coalesce(max(vm_id), 0) FROM events));",
	/* 6: a balloon device and its target (NULL: none); rate limits live
	 * in the disks and nics JSON objects */
	"ALTER TABLE vms ADD COLUMN balloon_mib INTEGER;",
	/* 7: a virtio-rng device */
	"ALTER TABLE vms ADD COLUMN rng INTEGER NOT NULL DEFAULT 0;",
	/* 8: a virtio-vsock device's guest CID (NULL: none) */
	"ALTER TABLE vms ADD COLUMN vsock_cid INTEGER;",
};

#define VM_COLUMNS "id, name, owner_uid, state, kernel, initrd, cmdline, vcpus, mem_mib," \
	" disks, nics, labels, restart, restart_max, pid, created_at, started_at," \
	" exit_status, exit_reason, pools, autostart, restart_failures, uuid, balloon_mib, rng, vsock_cid"

enum stmt_id {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_VM_INSERT,
	ST_VM_LIST,
	ST_VM_UPDATE,
	ST_VM_FAILURES,
	ST_VM_DEVICES,
	ST_VM_DELETE,
	ST_EVENT_INSERT,
	ST_EVENT_LIST,
	ST_EVENT_SINCE,
	ST_TOTALS,
	ST_COUNT_
};

static const char *const stmt_sql[ST_COUNT_] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT one",
	[ST_RELEASE] = "RELEASE one",
	[ST_ROLLBACK_TO] = "ROLLBACK TO one",
	[ST_VM_INSERT] = "INSERT INTO vms (name, owner_uid, state, kernel, initrd, cmdline,"
		" vcpus, mem_mib, disks, nics, labels, restart, restart_max, created_at, pools,"
		" autostart, uuid, balloon_mib, rng, vsock_cid)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,"
		" ?18, ?19, ?20)",
	[ST_VM_LIST] = "SELECT " VM_COLUMNS " FROM vms ORDER BY name",
	[ST_VM_UPDATE] = "UPDATE vms SET state = ?2, pid = ?3, started_at = ?4,"
		" exit_status = ?5, exit_reason = ?6 WHERE id = ?1",
	[ST_VM_FAILURES] = "UPDATE vms SET restart_failures = ?2 WHERE id = ?1",
	[ST_VM_DEVICES] = "UPDATE vms SET disks = ?2, nics = ?3, balloon_mib = ?4 WHERE id = ?1",
	[ST_VM_DELETE] = "DELETE FROM vms WHERE id = ?1",
	[ST_EVENT_INSERT] = "INSERT INTO events (vm_id, vm, state, reason, time)"
		" VALUES (?1, ?2, ?3, ?4, ?5)",
	[ST_EVENT_LIST] = "SELECT state, reason, time FROM events WHERE vm_id = ?1 ORDER BY id",
	/* a deleted VM's events have no owner left: -1 */
	[ST_EVENT_SINCE] = "SELECT e.id, e.vm, e.state, e.reason, e.time,"
		" coalesce(v.owner_uid, -1) FROM events e LEFT JOIN vms v ON v.id = e.vm_id"
		" WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
	[ST_TOTALS] = "SELECT count(*),"
		" coalesce(sum(state IN ('starting','running','paused','stopping')), 0),"
		" coalesce(sum(CASE WHEN state IN ('starting','running','paused','stopping') THEN vcpus END), 0),"
		" coalesce(sum(CASE WHEN state IN ('starting','running','paused','stopping') THEN mem_mib END), 0)"
		" FROM vms",
};

/* One committed row of vms. */
struct vm_rec {
	struct proto_vm vm;
	char *wire;                     /* proto_vm_encode(vm); NULL until asked */
	size_t wire_len;
	int failures;                   /* restart_failures (not on the wire) */
};

struct db {
	sqlite3 *conn;
	sqlite3_stmt *stmt[ST_COUNT_];
	int64_t last_event_id;          /* of the last event inserted */
	struct vm_rec **recs;           /* every row, ordered by name (strcmp) */
	size_t nrecs, caprecs;
	struct db_stats stats;
	bool batch;                     /* a batch's transaction is open */
	void (*batch_cb)(void *arg, int r);
	void *batch_arg;
	struct db_ckpt *ckpt;           /* db_checkpointer_start()'s, or NULL */
};

static int recs_load(struct db *db);
static void recs_free(struct db *db);

static bool errno_tells(int e)
{
	return e == EROFS || e == ENOSPC || e == EDQUOT || e == EACCES || e == EPERM;
}

/* The errno of the last failed call on the database file, or on its WAL
 * (SQLITE_FCNTL_JOURNAL_POINTER), where commits write first. */
static int file_errno(sqlite3 *conn, bool wal)
{
	sqlite3_file *f = NULL;
	int e = 0;

	if (!wal)
		sqlite3_file_control(conn, "main", SQLITE_FCNTL_LAST_ERRNO, &e);
	else if (sqlite3_file_control(conn, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f) == SQLITE_OK &&
	         f && f->pMethods)
		f->pMethods->xFileControl(f, SQLITE_FCNTL_LAST_ERRNO, &e);
	return e;
}

/* The OS error behind an I/O-ish SQLite failure (a read-only file system
 * shows as SQLITE_IOERR), when it says more.  sqlite3_system_errno() may
 * hold a later call's errno, so the files' own records count too. */
static int errno_from_os(sqlite3 *conn, int r)
{
	int e;

	if (!conn)
		return r;
	if (errno_tells(e = sqlite3_system_errno(conn)) || errno_tells(e = file_errno(conn, true)) ||
	    errno_tells(e = file_errno(conn, false)))
		return -e;
	return r;
}

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
	case SQLITE_CORRUPT:
		return -EBADMSG;
	case SQLITE_NOTADB:
		return -EMEDIUMTYPE;
	default:
		return -EIO;
	}
}

/* errno_from_sqlite, refined by the OS error where SQLite only says
 * "I/O error", "full", "cannot open" or "read-only". */
static int db_errno(sqlite3 *conn, int rc)
{
	int r = errno_from_sqlite(rc);

	switch (rc & 0xff) {
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
		return errno_from_os(conn, r);
	default:
		return r;
	}
}

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Run a statement that returns no rows, then reset it for reuse.  Every
 * write and commit steps here, so its time is what writes cost mvmd. */
static int stmt_run(struct db *db, sqlite3_stmt *st)
{
	double t0 = mono_s();
	int rc = sqlite3_step(st);
	/* before the reset, which may record a later OS error */
	int r = rc == SQLITE_DONE ? 0 : db_errno(db->conn, rc);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	db->stats.write_seconds += mono_s() - t0;
	return r;
}

/* SQLite calls this at each commit, explicit or a lone statement's. */
static int commit_hook_cb(void *arg)
{
	((struct db *)arg)->stats.commits++;
	return 0;       /* go on with the commit */
}

static void ckpt_stats(struct db_ckpt *c, struct db_stats *ret);

void db_stats(const struct db *db, struct db_stats *ret)
{
	*ret = db->stats;
	if (db->ckpt)
		ckpt_stats(db->ckpt, ret);
}

static void stmt_done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int db_exec(struct db *db, const char *sql)
{
	return db_errno(db->conn, sqlite3_exec(db->conn, sql, NULL, NULL, NULL));
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

static void why_set(char *why, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void why_set(char *why, size_t size, const char *fmt, ...)
{
	va_list ap;

	if (!why || size == 0 || why[0])
		return;                 /* the first reason is the one that counts */
	va_start(ap, fmt);
	vsnprintf(why, size, fmt, ap);
	va_end(ap);
	for (char *p = why; *p; p++)
		if (*p == '\n')
			*p = ' ';       /* one line: it goes into a log line */
}

static int db_migrate(struct db *db, char *why, size_t size)
{
	int n = (int)(sizeof(migrations) / sizeof(migrations[0]));
	int v, r;

	r = db_get_user_version(db, &v);
	if (r < 0)
		return r;
	if (v > n) {
		why_set(why, size, "schema %d > %d", v, n);
		return -EPROTO;         /* written by a newer mvmd */
	}
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

	/* mvmd is the only writer; a lock held longer is someone else's (an
	 * admin's sqlite3 shell), and the whole daemon waits meanwhile */
	sqlite3_busy_timeout(db->conn, DB_BUSY_TIMEOUT_MS);
	r = db_exec(db, "PRAGMA journal_mode = WAL");
	/* NORMAL with WAL: a commit is in the WAL (the kernel's page cache)
	 * before the client hears of it, so it survives mvmd crashing or being
	 * killed; the WAL is synced only at a checkpoint, so a power loss or
	 * kernel crash may roll back the changes since the last one (never
	 * tearing the file).  FULL synced the WAL at every commit: 2-3
	 * fdatasync per VM start on the loop's only thread (docs/architecture.md
	 * "Durability"). */
	if (r == 0)
		r = db_exec(db, "PRAGMA synchronous = NORMAL");
	if (r == 0)
		r = db_exec(db, "PRAGMA foreign_keys = ON");
	return r;
}

/* PRAGMA integrity_check(1): every page and record well formed and every
 * index (UNIQUE(name) included) in step with its table.  With 10,000 VMs
 * and 50,000 events it takes 60-140 ms against quick_check's 30-70 ms
 * (docs/architecture.md, "Storage faults"): cheap enough at start for
 * the index check it adds. */
static int db_check(struct db *db, char *why, size_t size)
{
	const char *msg;
	sqlite3_stmt *st;
	int rc, r;

	rc = sqlite3_prepare_v2(db->conn, "PRAGMA integrity_check(1)", -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_errno(db->conn, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		msg = (const char *)sqlite3_column_text(st, 0);
		r = msg && !strcmp(msg, "ok") ? 0 : -EBADMSG;
		if (r < 0)
			why_set(why, size, "integrity_check: %s", msg ? msg : "no result");
	} else {
		r = db_errno(db->conn, rc);
	}
	sqlite3_finalize(st);
	return r;
}

/* The database holds every VM's command line and labels: only mvmd may
 * read it.  Create it 0600 before SQLite does (SQLite would take 0644 less
 * the umask) and tighten an existing one; SQLite creates -wal and -shm with
 * the database's own mode, and existing ones are tightened here too. */
static int db_files_private(const char *path)
{
	static const char *const suffixes[] = { "", "-wal", "-shm" };
	char p[4096];
	struct stat st;
	int fd, r;

	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if ((size_t)snprintf(p, sizeof(p), "%s%s", path, suffixes[i]) >= sizeof(p))
			return -ENAMETOOLONG;
		fd = open(p, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | (i == 0 ? O_CREAT : 0),
		          0600);
		if (fd < 0) {
			if (errno == ENOENT && i > 0)
				continue;
			return -errno;
		}
		r = fstat(fd, &st) < 0 ? -errno : 0;
		if (r == 0 && (st.st_mode & 077) && fchmod(fd, st.st_mode & 0700) < 0)
			r = -errno;
		close(fd);
		if (r < 0)
			return r;
	}
	return 0;
}

int db_open(const char *path, struct db **ret_db)
{
	return db_open_diag(path, ret_db, NULL, 0);
}

int db_open_diag(const char *path, struct db **ret_db, char *why, size_t why_size)
{
	struct db *db = calloc(1, sizeof(*db));
	int rc, r;

	if (why && why_size)
		why[0] = '\0';
	if (!db)
		return -ENOMEM;
	r = db_files_private(path);
	if (r < 0) {
		why_set(why, why_size, "cannot make %s private (mode 0600): %s", path, strerror(-r));
		free(db);
		return r;
	}
	rc = sqlite3_open_v2(path, &db->conn,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                     NULL);
	r = db_errno(db->conn, rc);
	if (r < 0)
		goto fail;
	r = db_configure(db);
	if (r == 0)
		r = db_check(db, why, why_size);
	if (r < 0)
		goto fail;
	r = db_migrate(db, why, why_size);
	if (r < 0)
		goto fail;
	r = db_prepare_all(db);
	if (r < 0)
		goto fail;
	r = recs_load(db);
	if (r < 0)
		goto fail;
	/* counted from here: the migrations are not mvmd's running cost */
	sqlite3_commit_hook(db->conn, commit_hook_cb, db);
	*ret_db = db;
	return 0;
fail:
	/* SQLite's own words ("file is not a database", "disk I/O error") */
	why_set(why, why_size, "%s", db->conn ? sqlite3_errmsg(db->conn) : strerror(-r));
	db_close(db);
	return r;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	db_checkpointer_stop(db);
	recs_free(db);
	for (int i = 0; i < ST_COUNT_; i++)
		sqlite3_finalize(db->stmt[i]);
	sqlite3_close(db->conn);
	free(db);
}

/* ---- checkpoints on a thread of their own ------------------------------ */

/*
 * With WAL and synchronous=NORMAL a commit only writes the WAL; the syncs
 * come with a checkpoint, which SQLite by default runs inside the commit
 * that takes the WAL past 1,000 pages: the copy and two fdatasyncs on the
 * writer's thread, mvmd's loop (the slowest vm.list calls of a fill
 * waited in one).  The checkpointer runs them on a thread with a
 * connection of its own instead.  Its checkpoints are PASSIVE: they never
 * take the write lock, so the writer goes on appending meanwhile, and a
 * commit is as durable as before (in the WAL before anyone hears of it).
 * The WAL starts over only at a write after a checkpoint that caught up
 * with every commit, which a burst of commits never lets happen: so the
 * thread checkpoints once more when commits paused for a second, and
 * journal_size_limit then trims the file the burst grew.
 */
#define CKPT_PAGES 1000                 /* SQLite's own autocheckpoint */
#define CKPT_WAL_MAX (16 * CKPT_PAGES)  /* then the writer checkpoints too */
#define CKPT_QUIET_MS 1000              /* a pause, to catch up in */
#define CKPT_QUIET_MIN 100              /* pages worth catching up on */
#define CKPT_FILE_LIMIT (4LL << 20)

struct db_ckpt {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	sqlite3 *conn;                  /* the thread's alone once it runs */
	bool want, stop;
	int next_at;                    /* WAL pages that ask for the next one */
	int last_pages;                 /* at the last commit */
	int backfilled;                 /* of those, known copied */
	uint64_t commits;               /* the hook's calls: did they pause? */
	uint64_t restarts;              /* of the WAL, as the hook saw them */
	uint64_t quiet_at;              /* commits at the last catch-up tried */
	uint64_t runs, failures, on_writer;
	double seconds;
};

/* After each commit, on the writer's thread: pages is the WAL's length. */
static int ckpt_wal_hook(void *arg, sqlite3 *conn, const char *name, int pages)
{
	struct db_ckpt *c = arg;
	bool here = pages >= CKPT_WAL_MAX;

	pthread_mutex_lock(&c->lock);
	if (pages < c->last_pages) {    /* the WAL started over */
		c->next_at = CKPT_PAGES;
		c->backfilled = 0;
		c->restarts++;
	}
	c->last_pages = pages;
	c->commits++;
	if (pages >= c->next_at && !c->want) {
		c->want = true;
		pthread_cond_signal(&c->cond);
	}
	if (here)
		c->on_writer++;
	pthread_mutex_unlock(&c->lock);
	/* The thread's checkpoints never caught up with the commits, so the
	 * WAL never started over: one here, as SQLite's own would, copies the
	 * little the thread left and lets the next write start it over (it
	 * is SQLITE_BUSY at once while the thread runs one). */
	if (here)
		sqlite3_wal_checkpoint_v2(conn, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return SQLITE_OK;
}

static void *ckpt_main(void *arg)
{
	struct db_ckpt *c = arg;
	int log = 0, done = 0, rc;
	struct timespec ts;
	uint64_t seen, gen;
	double t0;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		while (!c->want && !c->stop) {
			/* one try per pause: a failing one waits for commits */
			if (c->last_pages <= c->backfilled || c->last_pages < CKPT_QUIET_MIN ||
			    c->commits == c->quiet_at) {
				pthread_cond_wait(&c->cond, &c->lock);
				continue;
			}
			/* behind: catch up once commits pause */
			seen = c->commits;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += CKPT_QUIET_MS / 1000;
			if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT &&
			    c->commits == seen) {
				c->want = true;
				c->quiet_at = seen;
			}
		}
		if (c->stop)
			break;
		gen = c->restarts;
		pthread_mutex_unlock(&c->lock);
		t0 = mono_s();
		rc = sqlite3_wal_checkpoint_v2(c->conn, NULL, SQLITE_CHECKPOINT_PASSIVE, &log, &done);
		pthread_mutex_lock(&c->lock);
		c->seconds += mono_s() - t0;
		c->runs++;
		/* a failed one (a full disk, an admin's checkpoint running) is
		 * tried again a batch of pages later; the WAL keeps every commit */
		if (rc != SQLITE_OK || log < 0) {
			c->failures++;
			log = c->last_pages;
		} else if (gen == c->restarts) {
			c->backfilled = done;   /* else of a WAL since started over */
		}
		c->next_at = log + CKPT_PAGES;
		c->want = c->last_pages >= c->next_at;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static void ckpt_stats(struct db_ckpt *c, struct db_stats *ret)
{
	pthread_mutex_lock(&c->lock);
	ret->checkpoints = c->runs;
	ret->checkpoint_failures = c->failures;
	ret->checkpoints_on_writer = c->on_writer;
	ret->checkpoint_seconds = c->seconds;
	pthread_mutex_unlock(&c->lock);
}

int db_checkpointer_start(struct db *db)
{
	const char *path = sqlite3_db_filename(db->conn, "main");
	pthread_condattr_t ca;
	struct db_ckpt *c;
	sigset_t all, old;
	char limit[64];
	int rc, r;

	if (db->ckpt)
		return 0;
	if (!path || !path[0])
		return -EINVAL;         /* a temporary or in-memory database */
	if (!sqlite3_threadsafe())
		return -ENOTSUP;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->next_at = CKPT_PAGES;
	rc = sqlite3_open_v2(path, &c->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
	r = db_errno(c->conn, rc);
	/* a first read opens its WAL: a checkpoint before it does nothing */
	if (r == 0)
		r = db_errno(c->conn, sqlite3_exec(c->conn, "SELECT count(*) FROM sqlite_master",
		                                   NULL, NULL, NULL));
	snprintf(limit, sizeof(limit), "PRAGMA journal_size_limit = %lld", CKPT_FILE_LIMIT);
	if (r == 0)
		r = db_exec(db, limit);
	if (r < 0) {
		sqlite3_close(c->conn);
		free(c);
		return r;
	}
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* signals are the loop's to take */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&c->thread, NULL, ckpt_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0)
		pthread_setname_np(c->thread, "db-checkpoint");
	if (r < 0) {
		pthread_cond_destroy(&c->cond);
		pthread_mutex_destroy(&c->lock);
		sqlite3_close(c->conn);
		free(c);
		return r;
	}
	db->ckpt = c;
	/* replaces the autocheckpoint, which is a WAL hook too */
	sqlite3_wal_hook(db->conn, ckpt_wal_hook, c);
	return 0;
}

void db_checkpointer_stop(struct db *db)
{
	struct db_ckpt *c = db->ckpt;

	if (!c)
		return;
	sqlite3_wal_autocheckpoint(db->conn, CKPT_PAGES);
	pthread_mutex_lock(&c->lock);
	c->stop = true;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
	pthread_join(c->thread, NULL);
	/* not the last connection: closing it leaves the WAL to db->conn */
	sqlite3_close(c->conn);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
	db->ckpt = NULL;
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

static int col_restart(sqlite3_stmt *st, int col, enum proto_restart *ret)
{
	int p = proto_restart_from_name((const char *)sqlite3_column_text(st, col));

	if (p < 0)
		return -EINVAL;
	*ret = p;
	return 0;
}

static int col_json(sqlite3_stmt *st, int col, json_t **ret)
{
	const char *s = (const char *)sqlite3_column_text(st, col);

	*ret = s ? json_loads(s, 0, NULL) : NULL;
	return *ret ? 0 : -EINVAL;
}

static bool col_uuid(sqlite3_stmt *st, int col, char ret[static PROTO_UUID_LEN + 1])
{
	const char *s = (const char *)sqlite3_column_text(st, col);

	if (!s || strlen(s) != PROTO_UUID_LEN)
		return false;
	memcpy(ret, s, PROTO_UUID_LEN + 1);
	return true;
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
	vm.autostart = sqlite3_column_int(st, 20) != 0;
	vm.pid = sqlite3_column_int64(st, 14);
	vm.created_at = sqlite3_column_double(st, 15);
	vm.started_at = sqlite3_column_double(st, 16);
	vm.has_exit_status = sqlite3_column_type(st, 17) != SQLITE_NULL;
	vm.exit_status = sqlite3_column_int(st, 17);
	vm.has_balloon = sqlite3_column_type(st, 23) != SQLITE_NULL;
	vm.balloon_mib = sqlite3_column_int64(st, 23);
	vm.has_rng = sqlite3_column_int(st, 24) != 0;
	vm.vsock_cid = (uint32_t)sqlite3_column_int64(st, 25);      /* NULL reads 0 */
	r = col_strdup(st, 1, false, &vm.name);
	r = r ?: col_strdup(st, 4, false, &vm.kernel);
	r = r ?: col_strdup(st, 5, true, &vm.initrd);
	r = r ?: col_strdup(st, 6, false, &vm.cmdline);
	r = r ?: col_json(st, 9, &vm.disks);
	r = r ?: col_json(st, 10, &vm.nics);
	r = r ?: col_json(st, 11, &vm.labels);
	r = r ?: col_restart(st, 12, &vm.restart);
	r = r ?: col_strdup(st, 18, true, &vm.exit_reason);
	r = r ?: col_json(st, 19, &vm.pools);
	if (r == 0 && !col_uuid(st, 22, vm.uuid))
		r = -EINVAL;
	if (r < 0) {
		proto_vm_clear(&vm);
		return r;
	}
	*ret = vm;
	return 0;
}

/* ---- the in-memory copy of vms --------------------------------------- */

static void rec_free(struct vm_rec *rec)
{
	if (!rec)
		return;
	proto_vm_clear(&rec->vm);
	free(rec->wire);
	free(rec);
}

static void recs_free(struct db *db)
{
	for (size_t i = 0; i < db->nrecs; i++)
		rec_free(db->recs[i]);
	free(db->recs);
	db->recs = NULL;
	db->nrecs = db->caprecs = 0;
}

/* Room for one more record, so adding it after a commit cannot fail. */
static int recs_reserve(struct db *db)
{
	size_t cap = db->caprecs ? db->caprecs * 2 : 64;
	struct vm_rec **p;

	if (db->nrecs < db->caprecs)
		return 0;
	p = realloc(db->recs, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	db->recs = p;
	db->caprecs = cap;
	return 0;
}

/* Index of the record named name, or where it belongs (*ret_found false). */
static size_t recs_search(const struct db *db, const char *name, bool *ret_found)
{
	size_t lo = 0, hi = db->nrecs;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(db->recs[mid]->vm.name, name);

		if (c == 0) {
			*ret_found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*ret_found = false;
	return lo;
}

/* The record of vm (found by name, checked by id), or NULL. */
static struct vm_rec *recs_find(const struct db *db, const struct proto_vm *vm,
                                size_t *ret_i)
{
	bool found;
	size_t i = vm->name ? recs_search(db, vm->name, &found) : 0;

	if (!vm->name || !found || db->recs[i]->vm.id != vm->id)
		return NULL;
	*ret_i = i;
	return db->recs[i];
}

/* Encode now, on the write path, so no vm.list pays for it; on ENOMEM
 * db_vm_wire tries again. */
static void rec_encode(struct vm_rec *rec)
{
	free(rec->wire);
	rec->wire = NULL;
	if (proto_vm_encode(&rec->vm, &rec->wire, &rec->wire_len) < 0)
		rec->wire = NULL;
}

static void recs_insert_at(struct db *db, size_t i, struct vm_rec *rec)
{
	memmove(&db->recs[i + 1], &db->recs[i], (db->nrecs - i) * sizeof(*db->recs));
	db->recs[i] = rec;
	db->nrecs++;
}

static void recs_remove_at(struct db *db, size_t i)
{
	rec_free(db->recs[i]);
	memmove(&db->recs[i], &db->recs[i + 1], (db->nrecs - i - 1) * sizeof(*db->recs));
	db->nrecs--;
}

/* Every row, as the statement orders them (by name; BINARY collation
 * compares like strcmp). */
static int recs_load(struct db *db)
{
	sqlite3_stmt *st = db->stmt[ST_VM_LIST];
	struct vm_rec *rec;
	int rc = SQLITE_DONE, r = 0;

	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		rec = calloc(1, sizeof(*rec));
		r = rec ? recs_reserve(db) : -ENOMEM;
		r = r ?: row_to_vm(st, &rec->vm);
		if (r < 0) {
			free(rec);
			break;
		}
		rec->failures = sqlite3_column_int(st, 21);
		rec_encode(rec);
		db->recs[db->nrecs++] = rec;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = errno_from_sqlite(rc);
	stmt_done(st);
	return r;
}

/* A copy of vm as its row will read back (the defaults bind_vm_insert
 * stores for absent fields). */
static int rec_new(const struct proto_vm *vm, struct vm_rec **ret)
{
	struct vm_rec *rec = calloc(1, sizeof(*rec));
	struct proto_vm *c;
	int r;

	if (!rec)
		return -ENOMEM;
	c = &rec->vm;
	r = proto_vm_copy(vm, c);
	if (r == 0 && !c->cmdline && !(c->cmdline = strdup("")))
		r = -ENOMEM;
	if (r == 0 && !c->disks && !(c->disks = json_array()))
		r = -ENOMEM;
	if (r == 0 && !c->nics && !(c->nics = json_array()))
		r = -ENOMEM;
	if (r == 0 && !c->labels && !(c->labels = json_object()))
		r = -ENOMEM;
	if (r == 0 && !c->pools && !(c->pools = json_array()))
		r = -ENOMEM;
	if (r < 0) {
		rec_free(rec);
		return r;
	}
	rec_encode(rec);
	*ret = rec;
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
	sqlite3_bind_text(st, 12, proto_restart_name(vm->restart), -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 13, vm->restart_max);
	sqlite3_bind_double(st, 14, vm->created_at);
	r = r ?: bind_json(st, 15, vm->pools, "[]");
	sqlite3_bind_int(st, 16, vm->autostart);
	sqlite3_bind_text(st, 17, vm->uuid, -1, SQLITE_STATIC);
	if (vm->has_balloon)
		sqlite3_bind_int64(st, 18, vm->balloon_mib);
	else
		sqlite3_bind_null(st, 18);
	sqlite3_bind_int(st, 19, vm->has_rng);
	if (vm->vsock_cid)
		sqlite3_bind_int64(st, 20, vm->vsock_cid);
	else
		sqlite3_bind_null(st, 20);
	return r;
}

/* ---- transactions ---------------------------------------------------- */

/* End the open batch: commit it when r == 0, else roll it back; the
 * owner hears which (its changes are in the copy already). */
static int batch_end(struct db *db, int r)
{
	if (r == 0)
		r = stmt_run(db, db->stmt[ST_COMMIT]);
	if (r < 0)
		stmt_run(db, db->stmt[ST_ROLLBACK]);
	db->batch = false;
	if (db->batch_cb)
		db->batch_cb(db->batch_arg, r);
	return r;
}

/* A change of its own.  Inside an open batch it is a savepoint, so that
 * its failure undoes only it, and its commit commits the batch too. */
static int tx_begin(struct db *db)
{
	return stmt_run(db, db->stmt[db->batch ? ST_SAVEPOINT : ST_BEGIN]);
}

/* Commit when r == 0, otherwise roll back; returns the first error. */
static int tx_end(struct db *db, int r)
{
	if (db->batch) {
		if (r < 0)
			stmt_run(db, db->stmt[ST_ROLLBACK_TO]);
		stmt_run(db, db->stmt[ST_RELEASE]);
		return r < 0 ? r : batch_end(db, 0);
	}
	if (r == 0) {
		r = stmt_run(db, db->stmt[ST_COMMIT]);
		if (r == 0)
			return 0;
	}
	stmt_run(db, db->stmt[ST_ROLLBACK]);
	return r;
}

/* A change into the batch, which the first one opens. */
static int batch_begin(struct db *db)
{
	int r;

	if (!db->batch) {
		r = stmt_run(db, db->stmt[ST_BEGIN]);
		if (r < 0)
			return r;
		db->batch = true;
	}
	return stmt_run(db, db->stmt[ST_SAVEPOINT]);
}

/* The change stays in the batch when r == 0; else only it is undone. */
static int batch_put(struct db *db, int r)
{
	if (r < 0)
		stmt_run(db, db->stmt[ST_ROLLBACK_TO]);
	stmt_run(db, db->stmt[ST_RELEASE]);
	return r;
}

void db_batch_watch(struct db *db, void (*cb)(void *arg, int r), void *arg)
{
	db->batch_cb = cb;
	db->batch_arg = arg;
}

bool db_batch_open(const struct db *db)
{
	return db->batch;
}

int db_batch_commit(struct db *db)
{
	return db->batch ? batch_end(db, 0) : 0;
}

static int event_insert(struct db *db, int64_t vm_id, const char *vm,
                        enum proto_vm_state state, const char *reason, double time)
{
	sqlite3_stmt *st = db->stmt[ST_EVENT_INSERT];
	int r;

	sqlite3_bind_int64(st, 1, vm_id);
	sqlite3_bind_text(st, 2, vm, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, proto_vm_state_name(state), -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC);
	sqlite3_bind_double(st, 5, time);
	r = stmt_run(db, st);
	if (r == 0)
		db->last_event_id = sqlite3_last_insert_rowid(db->conn);
	return r;
}

int db_vm_insert(struct db *db, struct proto_vm *vm)
{
	sqlite3_stmt *st = db->stmt[ST_VM_INSERT];
	struct vm_rec *rec = NULL;
	int64_t id = 0;
	bool found;
	int r;

	r = proto_uuid_new(vm->uuid);
	r = r ?: rec_new(vm, &rec);
	r = r ?: recs_reserve(db);
	r = r ?: tx_begin(db);
	if (r < 0) {
		rec_free(rec);
		return r;
	}
	r = bind_vm_insert(st, vm);
	if (r == 0)
		r = stmt_run(db, st);
	else
		stmt_done(st);
	if (r == 0) {
		id = sqlite3_last_insert_rowid(db->conn);
		r = event_insert(db, id, vm->name, vm->state, NULL, vm->created_at);
	}
	r = tx_end(db, r);
	if (r < 0) {
		rec_free(rec);
		return r;
	}
	vm->id = rec->vm.id = id;
	/* UNIQUE(name) held in SQL, so the name is not in the copy either */
	recs_insert_at(db, recs_search(db, vm->name, &found), rec);
	return 0;
}

/* UPDATE vm's runtime columns (inside or outside a transaction). */
static int runtime_update(struct db *db, const struct proto_vm *vm)
{
	sqlite3_stmt *st = db->stmt[ST_VM_UPDATE];
	int r;

	sqlite3_bind_int64(st, 1, vm->id);
	sqlite3_bind_text(st, 2, proto_vm_state_name(vm->state), -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, vm->pid);
	if (vm->started_at != 0)
		sqlite3_bind_double(st, 4, vm->started_at);
	if (vm->has_exit_status)
		sqlite3_bind_int(st, 5, vm->exit_status);
	sqlite3_bind_text(st, 6, vm->exit_reason, -1, SQLITE_STATIC);
	r = stmt_run(db, st);
	if (r == 0 && sqlite3_changes(db->conn) == 0)
		r = -ENOENT;
	return r;
}

/* After the commit: the copy takes vm's runtime columns (reason_copy is
 * its exit_reason, taken over). */
static void runtime_apply(struct db *db, const struct proto_vm *vm, char *reason_copy)
{
	struct vm_rec *rec;
	size_t i;

	rec = recs_find(db, vm, &i);
	if (!rec) {
		free(reason_copy);
		return;
	}
	rec->vm.state = vm->state;
	rec->vm.pid = vm->pid;
	rec->vm.started_at = vm->started_at;
	rec->vm.has_exit_status = vm->has_exit_status;
	rec->vm.exit_status = vm->has_exit_status ? vm->exit_status : 0;
	free(rec->vm.exit_reason);
	rec->vm.exit_reason = reason_copy;
	rec_encode(rec);
}

static int transition(struct db *db, const struct proto_vm *vm, const char *reason,
                      double time, bool batched)
{
	char *reason_copy = NULL;
	int r;

	if (vm->exit_reason && !(reason_copy = strdup(vm->exit_reason)))
		return -ENOMEM;
	r = batched ? batch_begin(db) : tx_begin(db);
	if (r == 0) {
		r = runtime_update(db, vm);
		if (r == 0)
			r = event_insert(db, vm->id, vm->name, vm->state, reason, time);
		r = batched ? batch_put(db, r) : tx_end(db, r);
	}
	if (r < 0) {
		free(reason_copy);
		return r;
	}
	runtime_apply(db, vm, reason_copy);
	return 0;
}

int db_vm_transition(struct db *db, const struct proto_vm *vm,
                     const char *reason, double time)
{
	return transition(db, vm, reason, time, false);
}

int db_vm_transition_batched(struct db *db, const struct proto_vm *vm,
                             const char *reason, double time)
{
	return transition(db, vm, reason, time, true);
}

int db_vm_remember(struct db *db, const struct proto_vm *vm)
{
	char *reason_copy = NULL;

	if (vm->exit_reason && !(reason_copy = strdup(vm->exit_reason)))
		return -ENOMEM;
	runtime_apply(db, vm, reason_copy);
	return 0;
}

static int store(struct db *db, const struct proto_vm *vm, bool batched)
{
	char *reason_copy = NULL;
	int r;

	if (vm->exit_reason && !(reason_copy = strdup(vm->exit_reason)))
		return -ENOMEM;
	r = batched ? batch_begin(db) : tx_begin(db);
	if (r == 0) {
		r = runtime_update(db, vm);
		r = batched ? batch_put(db, r) : tx_end(db, r);
	}
	if (r < 0) {
		free(reason_copy);
		return r;
	}
	runtime_apply(db, vm, reason_copy);
	return 0;
}

int db_vm_store(struct db *db, const struct proto_vm *vm)
{
	return store(db, vm, false);
}

int db_vm_store_batched(struct db *db, const struct proto_vm *vm)
{
	return store(db, vm, true);
}

int db_vm_set_devices(struct db *db, const struct proto_vm *vm)
{
	sqlite3_stmt *st = db->stmt[ST_VM_DEVICES];
	json_t *disks = NULL, *nics = NULL;
	struct vm_rec *rec;
	size_t i;
	int r;

	rec = recs_find(db, vm, &i);
	if (!rec)
		return -ENOENT;
	disks = json_deep_copy(vm->disks);
	nics = json_deep_copy(vm->nics);
	if (!disks || !nics) {
		json_decref(disks);
		json_decref(nics);
		return -ENOMEM;
	}
	sqlite3_bind_int64(st, 1, vm->id);
	r = bind_json(st, 2, vm->disks, "[]");
	r = r ?: bind_json(st, 3, vm->nics, "[]");
	if (vm->has_balloon)
		sqlite3_bind_int64(st, 4, vm->balloon_mib);
	else
		sqlite3_bind_null(st, 4);
	r = r ?: tx_begin(db);
	if (r == 0)
		r = tx_end(db, stmt_run(db, st));
	if (r < 0) {
		sqlite3_clear_bindings(st);
		json_decref(disks);
		json_decref(nics);
		return r;
	}
	json_decref(rec->vm.disks);
	json_decref(rec->vm.nics);
	rec->vm.disks = disks;
	rec->vm.nics = nics;
	rec->vm.has_balloon = vm->has_balloon;
	rec->vm.balloon_mib = vm->balloon_mib;
	free(rec->wire);
	rec->wire = NULL;
	return 0;
}

int db_vm_delete(struct db *db, const struct proto_vm *vm, double time)
{
	sqlite3_stmt *st = db->stmt[ST_VM_DELETE];
	size_t i;
	int r;

	r = tx_begin(db);
	if (r < 0)
		return r;
	sqlite3_bind_int64(st, 1, vm->id);
	r = stmt_run(db, st);
	if (r == 0 && sqlite3_changes(db->conn) == 0)
		r = -ENOENT;
	if (r == 0)
		r = event_insert(db, vm->id, vm->name, PROTO_VM_DELETED, NULL, time);
	r = tx_end(db, r);
	if (r == 0 && recs_find(db, vm, &i))
		recs_remove_at(db, i);
	return r;
}

/* ---- queries --------------------------------------------------------- */

int db_vm_get(struct db *db, const char *name, struct proto_vm *ret_vm)
{
	bool found;
	size_t i = recs_search(db, name, &found);

	return found ? proto_vm_copy(&db->recs[i]->vm, ret_vm) : -ENOENT;
}

void db_vm_list_free(struct proto_vm *vms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		proto_vm_clear(&vms[i]);
	free(vms);
}

int db_vm_list(struct db *db, const char *state, struct proto_vm **ret_vms,
               size_t *ret_n)
{
	struct proto_vm *vms = calloc(db->nrecs + 1, sizeof(*vms));
	size_t n = 0;
	int r = vms ? 0 : -ENOMEM;

	for (size_t i = 0; i < db->nrecs && r == 0; i++) {
		const struct proto_vm *vm = &db->recs[i]->vm;

		if (state && strcmp(proto_vm_state_name(vm->state), state))
			continue;
		r = proto_vm_copy(vm, &vms[n]);
		if (r == 0)
			n++;
	}
	if (r < 0) {
		db_vm_list_free(vms, n);
		return r;
	}
	*ret_vms = vms;
	*ret_n = n;
	return 0;
}

size_t db_vm_count(const struct db *db)
{
	return db->nrecs;
}

const struct proto_vm *db_vm_at(const struct db *db, size_t i)
{
	return i < db->nrecs ? &db->recs[i]->vm : NULL;
}

int db_vm_wire(struct db *db, size_t i, const char **ret, size_t *ret_len)
{
	struct vm_rec *rec;
	int r;

	if (i >= db->nrecs)
		return -ENOENT;
	rec = db->recs[i];
	if (!rec->wire) {
		r = proto_vm_encode(&rec->vm, &rec->wire, &rec->wire_len);
		if (r < 0)
			return r;
	}
	*ret = rec->wire;
	*ret_len = rec->wire_len;
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

int64_t db_last_event_id(struct db *db)
{
	return db->last_event_id;
}

int db_event_since(struct db *db, int64_t since, size_t max, json_t **ret_events)
{
	sqlite3_stmt *st = db->stmt[ST_EVENT_SINCE];
	json_t *arr = json_array();
	int rc = SQLITE_DONE, r = arr ? 0 : -ENOMEM;

	sqlite3_bind_int64(st, 1, since);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *e = json_pack("{s:I, s:s, s:s, s:s?, s:f, s:I}",
			"id", (json_int_t)sqlite3_column_int64(st, 0),
			"vm", (const char *)sqlite3_column_text(st, 1),
			"state", (const char *)sqlite3_column_text(st, 2),
			"reason", (const char *)sqlite3_column_text(st, 3),
			"time", sqlite3_column_double(st, 4),
			"owner_uid", (json_int_t)sqlite3_column_int64(st, 5));

		if (!e || json_array_append_new(arr, e) < 0)
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

int db_vm_failures(struct db *db, const struct proto_vm *vm)
{
	size_t i;
	struct vm_rec *rec = recs_find(db, vm, &i);

	return rec ? rec->failures : -ENOENT;
}

int db_vm_set_failures(struct db *db, const struct proto_vm *vm, int failures)
{
	sqlite3_stmt *st = db->stmt[ST_VM_FAILURES];
	struct vm_rec *rec;
	size_t i;
	int r;

	rec = recs_find(db, vm, &i);
	if (!rec)
		return -ENOENT;
	if (rec->failures == failures)
		return 0;
	sqlite3_bind_int64(st, 1, vm->id);
	sqlite3_bind_int(st, 2, failures);
	r = tx_begin(db);
	if (r == 0)
		r = tx_end(db, stmt_run(db, st));
	else
		stmt_done(st);
	if (r == 0)
		rec->failures = failures;
	return r;
}
