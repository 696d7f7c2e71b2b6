/* SPDX-License-Identifier: MIT */
/* mvmd: options and config, directories, the database, the event loop. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/ceilings.h"
#include "daemon/mvmd.h"
#include "util/util.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mvmd [OPTIONS]\n"
		"  --config FILE      key = value settings (state_dir, run_dir, socket, log_level, vmm,\n"
		"                     cgroup_parent, capacity limits: mvmd.conf(5)); default\n"
		"                     " MVMD_CONFIG_DEFAULT " when it exists; SIGHUP reloads the\n"
		"                     capacity limits\n"
		"  --state-dir DIR    database and VM logs (default /var/lib/mvm)\n"
		"  --run-dir DIR      sockets and per-VM runtime files (default /run/mvm)\n"
		"  --socket PATH      control socket (default <run-dir>/mvmd.sock)\n"
		"  --log-level LEVEL  error, warn, info or debug (default info)\n"
		"  --vmm PATH         the mvm-vmm worker binary\n"
		"  --help\n"
		"  --version\n");
}

/* The config file read without --config; MVMD_CONFIG names another (tests
 * use a private one and never touch /etc/mvm). */
static const char *default_config_path(void)
{
	const char *env = getenv("MVMD_CONFIG");

	return env && *env ? env : MVMD_CONFIG_DEFAULT;
}

/* A missing default file is no error: mvmd runs on its defaults. */
static int load_config(struct config *cfg, const char *path, bool required)
{
	int line = 0, r = config_load(cfg, path, &line);
	char where[32] = "";

	if (r == -ENOENT && line == 0 && !required)
		return 0;
	if (r == 0)
		return 0;
	if (line)
		snprintf(where, sizeof(where), " line %d", line);
	fprintf(stderr, "mvmd: config %s%s: %s; fix the file or %s\n", path, where,
	        cfg->error[0] ? cfg->error : strerror(-r),
	        required ? "drop --config" : "pass --config with another one");
	return r;
}

/* Options override the config file, so the file is read first: --config's,
 * else the default one when it exists. */
static int parse_args(struct config *cfg, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "run-dir", required_argument, NULL, 'r' },
		{ "socket", required_argument, NULL, 'S' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "vmm", required_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	static const char *const keys[] = {
		['s'] = "state_dir", ['r'] = "run_dir", ['S'] = "socket",
		['l'] = "log_level", ['v'] = "vmm",
	};
	bool given = false;
	int c, r;

	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1 && !given) {
			r = load_config(cfg, default_config_path(), false);
			if (r < 0)
				return r;
		}
		optind = 1;
		while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
			if (c == 'h') {
				usage(stdout);
				exit(0);
			}
			if (c == 'V') {
				puts(PROTO_SERVER);
				exit(0);
			}
			if (c == '?')
				return -EINVAL;
			if (pass == 0 && c == 'c') {
				r = load_config(cfg, optarg, true);
				if (r < 0)
					return r;
				given = true;
			}
			if (pass == 1 && c != 'c' && config_set(cfg, keys[c], optarg) < 0) {
				fprintf(stderr, "mvmd: invalid value '%s' for --%s\n", optarg, keys[c]);
				return -EINVAL;
			}
		}
	}
	if (optind < argc) {
		fprintf(stderr, "mvmd: unexpected argument '%s'\n", argv[optind]);
		return -EINVAL;
	}
	return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, mode) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static void log_readonly(const struct mvmd *d)
{
	log_error("state dir %s is on a read-only file system; remount it read-write "
	          "(running VMs keep running; mvmd re-adopts them once it starts)",
	          d->cfg.state_dir);
}

/* Other users must not read the state dir (the database, vmm.log) nor
 * the group write it: tighten a loose one, or refuse naming the fix. */
static int tighten_dir(const char *dir)
{
	mode_t old = 0;
	int r = util_dir_tighten(dir, 027, &old);

	if (r == 1)
		log_warn("%s was mode %04o; made it %04o so other users cannot read VM "
		         "definitions", dir, (unsigned)old, (unsigned)(old & ~027));
	else if (r < 0)
		log_error("cannot make %s private (%s); run 'chmod 0750 %s' as its owner",
		          dir, strerror(-r), dir);
	return r < 0 ? r : 0;
}

static int setup_dirs(struct mvmd *d)
{
	char path[4096];
	int r;

	r = mkdir_p(d->cfg.state_dir, 0750);
	if (r == 0) {
		snprintf(path, sizeof(path), "%s/vms", d->cfg.state_dir);
		r = mkdir_p(path, 0750);
	}
	if (r == 0 && access(d->cfg.state_dir, W_OK) < 0)
		r = -errno;
	if (r == 0 && (tighten_dir(d->cfg.state_dir) < 0 || tighten_dir(path) < 0))
		return -EPERM;
	if (r == -EROFS) {
		log_readonly(d);
		return r;
	}
	if (r < 0) {
		log_error("cannot create state dir %s: %s; pass --state-dir DIR you can write",
		          d->cfg.state_dir, strerror(-r));
		return r;
	}
	r = mkdir_p(d->cfg.run_dir, 0755);
	if (r < 0) {
		log_error("cannot create run dir %s: %s; pass --run-dir DIR you can write",
		          d->cfg.run_dir, strerror(-r));
		return r;
	}
	/* <run-dir>/vms/ holds the adopt sockets and the VMs' sandbox
	 * directories: 0711, so a VM's owner reaches its vsock socket below
	 * it and nobody lists the names.  chmod opens up an older mvmd's 0700. */
	snprintf(path, sizeof(path), "%s/vms", d->cfg.run_dir);
	if ((mkdir(path, 0711) < 0 && errno != EEXIST) || chmod(path, 0711) < 0) {
		r = -errno;
		log_error("cannot create %s: %s; pass --run-dir DIR you can write", path,
		          strerror(-r));
	}
	return r;
}

/* The pid a holder of the lock wrote into it, or 0. */
static long lock_holder(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/* The exclusive flock on a lock file, or -EBUSY with its holder's pid.
 * An mvmd killed while spawning leaves a child that holds a copy of each
 * of its fds until the child's first instructions close them (spawn.c),
 * a scheduling delay at most: while the pid the file names is gone, that
 * copy is all that holds the lock, so it is waited out (2 s at most). */
static int lock_take(int fd, long *ret_holder)
{
	double until = mvmd_mono() + 2;

	for (;;) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK)
			return -errno;
		*ret_holder = lock_holder(fd);
		if (mvmd_mono() > until || *ret_holder <= 0 || kill((pid_t)*ret_holder, 0) == 0 ||
		    errno != ESRCH)
			return -EBUSY;
		usleep(10000);
	}
}

/* One mvmd per state dir: an exclusive flock on <state-dir>/mvmd.lock,
 * held until exit (the kernel drops it when mvmd dies, kill -9 too).
 * O_CLOEXEC matters: a worker that inherited it would hold it forever. */
static int lock_state_dir(struct mvmd *d)
{
	char path[4096], pid[32];
	long holder;
	int fd, n, r;

	snprintf(path, sizeof(path), "%s/mvmd.lock", d->cfg.state_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		r = -errno;
		if (r == -EROFS)
			log_readonly(d);
		else
			log_error("cannot open lock file %s: %s; the state dir must be writable",
			          path, strerror(-r));
		return r;
	}
	holder = 0;
	r = lock_take(fd, &holder);
	if (r < 0) {
		if (r == -EBUSY && holder > 0)
			log_error("another mvmd (pid %ld) uses state dir %s; stop it first, or give "
			          "this one its own --state-dir", holder, d->cfg.state_dir);
		else
			log_error("cannot lock %s: %s; is another mvmd using state dir %s?", path,
			          strerror(-r), d->cfg.state_dir);
		close(fd);
		return r;
	}
	/* for the message above, in the next mvmd that finds it locked */
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n)
		log_warn("cannot write pid to %s: %s", path, strerror(errno));
	d->lock_fd = fd;
	return 0;
}

static void log_db_error(const char *path, int r, const char *why)
{
	static const char recover[] = "stop mvmd, move the file aside and restore it from a "
		"backup (running VMs keep running; mvmd re-adopts them once it starts with a "
		"good database)";

	if (r == -EBADMSG)
		log_error("state database %s is corrupt (%s); %s", path, why, recover);
	else if (r == -EMEDIUMTYPE)
		log_error("state database %s is not a SQLite database (%s); %s", path, why, recover);
	else if (r == -EPROTO)
		log_error("state database %s was written by a newer mvmd (%s); upgrade mvmd",
		          path, why);
	else if (r == -EBUSY)
		log_error("state database %s is locked by another process (%s); close it "
		          "(an sqlite3 shell?) and start mvmd again", path, why);
	else if (r == -EROFS)
		log_error("cannot open state database %s: it is on a read-only file system; "
		          "remount it read-write", path);
	else
		log_error("cannot open state database %s: %s (%s)", path, strerror(-r), why);
}

static int open_db(struct mvmd *d)
{
	char path[4096], why[512];
	int r;

	snprintf(path, sizeof(path), "%s/mvmd.db", d->cfg.state_dir);
	r = db_open_diag(path, &d->db, why, sizeof(why));
	if (r < 0) {
		log_db_error(path, r, why);
		return r;
	}
	vms_db_opened(d);
	/* the checkpoints' syncs off the loop (db.c); without the thread
	 * they run inside a commit as before, slower but as safe */
	r = db_checkpointer_start(d->db);
	if (r < 0)
		log_warn("state database %s: checkpoints stay on the loop: %s", path, strerror(-r));
	return 0;
}

static void signal_cb(uv_signal_t *h, int signum)
{
	struct mvmd *d = h->data;

	if (d->shutting_down)
		return;
	log_info("%s: shutting down; workers keep running", strsignal(signum));
	d->shutting_down = true;
	control_close_all(d);
	metrics_close(d);
	supervisor_detach_all(d);
	spawner_free(d);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	admit_free(d);
	restart_free(d);
	reclaim_free(d);
	vms_flush(d);
}

/* SIGHUP: the capacity limits again from the config file. */
static void reload_limits(struct mvmd *d)
{
	struct config cfg;
	char msg[512];
	int line = 0, r;

	if (!d->cfg.path) {
		log_info("SIGHUP: no config file was read at start; limits unchanged");
		return;
	}
	r = config_defaults(&cfg, NULL);
	if (r == 0)
		r = config_load(&cfg, d->cfg.path, &line);
	if (r < 0) {
		log_error("SIGHUP: config %s line %d: %s; limits unchanged", d->cfg.path, line,
		          cfg.error[0] ? cfg.error : strerror(-r));
	} else if (admit_set_limits(d, &cfg.limits, msg, sizeof(msg)) < 0) {
		log_error("SIGHUP: %s; limits unchanged", msg);
	} else {
		d->cfg.pressure = cfg.pressure;
		reclaim_reload(d);
		log_info("SIGHUP: capacity limits reloaded from %s", d->cfg.path);
	}
	config_free(&cfg);
}

static void sighup_cb(uv_signal_t *h, int signum)
{
	(void)signum;
	reload_limits(h->data);
}

static int setup_signals(struct mvmd *d)
{
	int r;

	signal(SIGPIPE, SIG_IGN);
	uv_signal_init(d->loop, &d->sig_term);
	uv_signal_init(d->loop, &d->sig_int);
	uv_signal_init(d->loop, &d->sig_hup);
	d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
	r = uv_signal_start(&d->sig_term, signal_cb, SIGTERM);
	if (r == 0)
		r = uv_signal_start(&d->sig_int, signal_cb, SIGINT);
	if (r == 0)
		r = uv_signal_start(&d->sig_hup, sighup_cb, SIGHUP);
	if (r < 0)
		log_error("cannot watch SIGTERM/SIGINT/SIGHUP: %s", uv_strerror(r));
	return r;
}

static int finish_config(struct mvmd *d)
{
	char path[4096];

	mvmd_log_level = d->cfg.log_level;
	if (d->cfg.socket_path)
		return 0;
	snprintf(path, sizeof(path), "%s/mvmd.sock", d->cfg.run_dir);
	return config_set(&d->cfg, "socket", path);
}

/* Start-up: each host ceiling the configured limits would meet first,
 * with its fix (also in host.info); mvmd's open-file limit was raised to
 * the hard one, since queued VMs hold their files open until they start. */
static void log_ceilings(struct mvmd *d, const char *nofile)
{
	struct ceiling c[CEIL_COUNT];
	struct cap_usage u;
	uint64_t want = cap_limits_vms(cap_limits(&d->cap), CEIL_VM_MIB, CEIL_VM_VCPUS);
	int r;

	cap_usage_get(&d->cap, &u);
	r = ceilings_read(c, u.vms, CEIL_VM_VCPUS, want);
	if (r < 0)
		log_warn("host ceilings: cannot read all of them: %s", strerror(-r));
	log_info("host ceilings: %s", nofile);
	for (int i = 0; i < CEIL_COUNT; i++)
		if (c[i].binding)
			log_warn("host ceiling %s (%llu) allows %llu VMs of %d vCPU, below the %llu "
			         "the capacity limits admit: %s", c[i].name,
			         (unsigned long long)c[i].limit, (unsigned long long)c[i].vms,
			         CEIL_VM_VCPUS, (unsigned long long)want, c[i].fix);
}

/* One mvmd per run dir too: its workers' directories and adopt sockets
 * are named by VM there, so two mvmds (with different sockets) sharing
 * one would take each other's. */
static int lock_run_dir(struct mvmd *d)
{
	char path[4096];
	long holder;
	int fd, r;

	snprintf(path, sizeof(path), "%s/mvmd.lock", d->cfg.run_dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		r = -errno;
		log_error("cannot open lock file %s: %s; the run dir must be writable", path,
		          strerror(-r));
		return r;
	}
	holder = 0;
	r = lock_take(fd, &holder);
	if (r < 0) {
		log_error("another mvmd (pid %ld) uses run dir %s: its workers' directories and "
		          "sockets are there; give this one its own --run-dir", holder,
		          d->cfg.run_dir);
		close(fd);
		return r;
	}
	if (ftruncate(fd, 0) < 0 || dprintf(fd, "%ld\n", (long)getpid()) < 0)
		log_warn("cannot write pid to %s: %s", path, strerror(errno));
	d->run_lock_fd = fd;
	return 0;
}

/* loop_nice: only the loop thread's (on Linux a nice value is a thread's),
 * set after the spawner and reaper threads exist, so they, and the workers
 * the spawner clones, keep mvmd's own. */
static void set_loop_nice(const struct mvmd *d)
{
	int n = d->cfg.loop_nice;

	if (!d->cfg.loop_nice_set)
		return;
	if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), n) < 0)
		log_warn("loop_nice = %d: cannot set the nice value of mvmd's loop thread: %s; "
		         "a value below the current one needs CAP_SYS_NICE or a LimitNICE= (RLIMIT_NICE) "
		         "that allows it (mvmd.conf(5)), or leave loop_nice unset", n,
		         strerror(errno));
	else
		log_info("loop thread at nice %d (loop_nice)", n);
}

static int run(struct mvmd *d)
{
	char nofile[160];
	int r;

	ceilings_raise_nofile(nofile, sizeof(nofile));
	spawn_init();
	r = setup_dirs(d);
	if (r < 0)
		return r;
	r = lock_state_dir(d);
	if (r == 0)
		r = lock_run_dir(d);
	if (r < 0)
		return r;
	r = open_db(d);
	if (r < 0)
		return r;
	/* the order observers hear a worker's end in: waiting clients first,
	 * then capacity given back, then the restart policy */
	supervisor_observe(d, &dispatch_worker_hooks);
	supervisor_observe(d, &admit_worker_hooks);
	supervisor_observe(d, &restart_worker_hooks);
	supervisor_observe(d, &metrics_worker_hooks);
	supervisor_observe(d, &reclaim_worker_hooks);
	d->start_worker = supervisor_start;
	r = spawner_init(d);
	if (r < 0) {
		log_error("cannot start the spawner thread: %s", strerror(-r));
		return r;
	}
	dispatch_init(d);
	r = admit_init(d);
	if (r < 0)
		return r;
	restart_init(d);
	r = reclaim_init(d);
	if (r < 0)
		return r;
	r = adopt_recover(d);
	if (r < 0)
		log_warn("could not mark VMs of an earlier mvmd as crashed: %s", strerror(-r));
	adopt_sweep(d);
	log_ceilings(d, nofile);
	restart_start(d);
	r = control_listen(d);
	if (r < 0)
		return r;
	r = metrics_init(d);
	if (r == 0)
		r = metrics_listen(d);
	if (r < 0)
		return r;
	r = setup_signals(d);
	if (r < 0)
		return r;
	set_loop_nice(d);
	r = notify_ready();
	if (r < 0)
		log_warn("sd_notify READY=1 failed: %s", strerror(-r));
	log_info("listening on %s (state %s, worker %s)", d->cfg.socket_path,
	         d->cfg.state_dir, d->cfg.vmm_path);
	return uv_run(d->loop, UV_RUN_DEFAULT);
}

#ifdef MVM_TEST_HOOKS
static void walk_cb(uv_handle_t *h, void *arg)
{
	fprintf(stderr, " %s%s", uv_handle_type_name(uv_handle_get_type(h)),
	        uv_is_closing(h) ? "(closing)" : "");
}
#endif

/* Every handle closed, as libuv's own tests assert (MAKE_VALGRIND_HAPPY).
 * A test build fails on a leftover; a release build only says so. */
static int loop_close(uv_loop_t *loop)
{
	if (uv_loop_close(loop) == 0)
		return 0;
#ifdef MVM_TEST_HOOKS
	log_error("libuv handles left open at exit:");
	uv_walk(loop, walk_cb, NULL);
	fputc('\n', stderr);
	return -EBUSY;
#else
	log_debug("libuv handles left open at exit");
	return 0;
#endif
}

int main(int argc, char **argv)
{
	struct mvmd d = { .uid = getuid(), .lock_fd = -1, .run_lock_fd = -1 };
	int r;

	mvmd_log_init();
	if (config_defaults(&d.cfg, argv[0]) < 0 || parse_args(&d.cfg, argc, argv) < 0 ||
	    finish_config(&d) < 0) {
		config_free(&d.cfg);
		return 2;
	}
	d.loop = uv_default_loop();
	TAILQ_INIT(&d.conns);
	TAILQ_INIT(&d.workers);
	TAILQ_INIT(&d.sandbox_uids);
	vms_init(&d);
	r = run(&d);
	if (d.listening)
		control_close_all(&d);
	metrics_close(&d);
	spawner_free(&d);
	uv_run(d.loop, UV_RUN_DEFAULT);
	admit_free(&d);
	restart_free(&d);
	reclaim_free(&d);
	vms_flush(&d);
	uv_run(d.loop, UV_RUN_DEFAULT);
	vms_free(&d);
	metrics_free(&d);
	if (loop_close(d.loop) < 0)
		r = -EBUSY;
	db_close(d.db);
	if (d.lock_fd >= 0)
		close(d.lock_fd);       /* after the database: the lock guards it */
	if (d.run_lock_fd >= 0)
		close(d.run_lock_fd);
	config_free(&d.cfg);
	return r < 0 ? 1 : 0;
}
