/* SPDX-License-Identifier: MIT */
/* mvmd: options and config, directories, the database, the event loop. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/mvmd.h"

enum log_level mvmd_log_level = LOG_INFO;

void mvmd_log(enum log_level level, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	va_list ap;

	if (level > mvmd_log_level)
		return;
	fprintf(stderr, "mvmd: %s: ", tags[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

double mvmd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int mvmd_vm_dir(const struct mvmd *d, const char *name, const char *file,
                char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/vms/%s%s%s", d->cfg.state_dir, name,
	                 file ? "/" : "", file ? file : "");

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mvmd [OPTIONS]\n"
		"  --config FILE      key = value settings (state_dir, run_dir, socket, log_level, vmm)\n"
		"  --state-dir DIR    database and VM logs (default /var/lib/mvm)\n"
		"  --run-dir DIR      sockets and per-VM runtime files (default /run/mvm)\n"
		"  --socket PATH      control socket (default <run-dir>/mvmd.sock)\n"
		"  --log-level LEVEL  error, warn, info or debug (default info)\n"
		"  --vmm PATH         the mvm-vmm worker binary\n"
		"  --help\n");
}

/* Options override the config file, so the file is read first. */
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
		{ NULL, 0, NULL, 0 },
	};
	static const char *const keys[] = {
		['s'] = "state_dir", ['r'] = "run_dir", ['S'] = "socket",
		['l'] = "log_level", ['v'] = "vmm",
	};
	int c, line = 0, r;

	for (int pass = 0; pass < 2; pass++) {
		optind = 1;
		while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
			if (c == 'h') {
				usage(stdout);
				exit(0);
			}
			if (c == '?')
				return -EINVAL;
			if (pass == 0 && c == 'c') {
				r = config_load(cfg, optarg, &line);
				if (r < 0) {
					fprintf(stderr, "mvmd: config %s%s%d: %s; fix the file or drop --config\n",
					        optarg, line ? " line " : "", line,
					        r == -ENOENT && line ? "unknown key" : strerror(-r));
					return r;
				}
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

static int setup_dirs(struct mvmd *d)
{
	char path[4096];
	int r;

	r = mkdir_p(d->cfg.state_dir, 0750);
	if (r == 0) {
		snprintf(path, sizeof(path), "%s/vms", d->cfg.state_dir);
		r = mkdir_p(path, 0750);
	}
	if (r < 0) {
		log_error("cannot create state dir %s: %s; pass --state-dir DIR you can write",
		          d->cfg.state_dir, strerror(-r));
		return r;
	}
	r = mkdir_p(d->cfg.run_dir, 0755);
	if (r < 0)
		log_error("cannot create run dir %s: %s; pass --run-dir DIR you can write",
		          d->cfg.run_dir, strerror(-r));
	return r;
}

static int open_db(struct mvmd *d)
{
	char path[4096];
	int r;

	snprintf(path, sizeof(path), "%s/mvmd.db", d->cfg.state_dir);
	r = db_open(path, &d->db);
	if (r == -EPROTO)
		log_error("%s was written by a newer mvmd; run that version", path);
	else if (r < 0)
		log_error("cannot open database %s: %s", path, strerror(-r));
	return r;
}

static void signal_cb(uv_signal_t *h, int signum)
{
	struct mvmd *d = h->data;

	if (d->shutting_down)
		return;
	log_info("%s: shutting down; workers keep running", strsignal(signum));
	d->shutting_down = true;
	control_close_all(d);
	supervisor_detach_all(d);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
}

static int setup_signals(struct mvmd *d)
{
	int r;

	signal(SIGPIPE, SIG_IGN);
	uv_signal_init(d->loop, &d->sig_term);
	uv_signal_init(d->loop, &d->sig_int);
	d->sig_term.data = d->sig_int.data = d;
	r = uv_signal_start(&d->sig_term, signal_cb, SIGTERM);
	if (r == 0)
		r = uv_signal_start(&d->sig_int, signal_cb, SIGINT);
	if (r < 0)
		log_error("cannot watch SIGTERM/SIGINT: %s", uv_strerror(r));
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

static int run(struct mvmd *d)
{
	int r;

	r = setup_dirs(d);
	if (r < 0)
		return r;
	r = open_db(d);
	if (r < 0)
		return r;
	r = dispatch_recover(d);
	if (r < 0)
		log_warn("could not mark VMs of an earlier mvmd as crashed: %s", strerror(-r));
	r = control_listen(d);
	if (r < 0)
		return r;
	r = setup_signals(d);
	if (r < 0)
		return r;
	r = notify_ready();
	if (r < 0)
		log_warn("sd_notify READY=1 failed: %s", strerror(-r));
	log_info("listening on %s (state %s, worker %s)", d->cfg.socket_path,
	         d->cfg.state_dir, d->cfg.vmm_path);
	return uv_run(d->loop, UV_RUN_DEFAULT);
}

int main(int argc, char **argv)
{
	struct mvmd d = { .uid = getuid() };
	int r;

	if (config_defaults(&d.cfg, argv[0]) < 0 || parse_args(&d.cfg, argc, argv) < 0 ||
	    finish_config(&d) < 0) {
		config_free(&d.cfg);
		return 2;
	}
	d.loop = uv_default_loop();
	r = run(&d);
	if (d.listening)
		control_close_all(&d);
	uv_run(d.loop, UV_RUN_DEFAULT);
	if (uv_loop_close(d.loop) != 0)
		log_debug("handles left open at exit");
	db_close(d.db);
	config_free(&d.cfg);
	return r < 0 ? 1 : 0;
}
