/* SPDX-License-Identifier: MIT */
/* mvmd configuration: built-in defaults, a `key = value` file, options. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "util/uid_lease.h"
#include "util/util.h"

#ifndef MVM_VMM_INSTALLED
#define MVM_VMM_INSTALLED "/usr/local/bin/mvm-vmm"
#endif

static int set_str(char **slot, const char *value)
{
	char *s = strdup(value);

	if (!s)
		return -ENOMEM;
	free(*slot);
	*slot = s;
	return 0;
}

/* The build tree keeps mvm-vmm at <dir of mvmd>/../vmm/mvm-vmm; prefer it so
 * an uninstalled mvmd runs the worker built with it. */
static int default_vmm(struct config *cfg, const char *argv0)
{
	char self[PATH_MAX], cand[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	(void)argv0;
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(cand, sizeof(cand), "%s/../vmm/mvm-vmm", self);
			if (access(cand, X_OK) == 0)
				return set_str(&cfg->vmm_path, cand);
		}
	}
	return set_str(&cfg->vmm_path, MVM_VMM_INSTALLED);
}

int config_defaults(struct config *cfg, const char *argv0)
{
	int r;

	memset(cfg, 0, sizeof(*cfg));
	cfg->log_level = LOG_INFO;
	cfg->health_interval = 5;
	cfg->health_timeout = 15;
	cfg->sandbox = -1;
	cfg->sandbox_uid_base = 100000;
	cfg->sandbox_uid_count = 65536;
	cfg->client_max = 4096;
	cfg->client_max_per_uid = 256;
	cfg->client_output_max_per_uid = 64 * 1024 * 1024;
	cfg->client_line_timeout = 30;
	cfg->fd_reserve = 512;
	cap_limits_init(&cfg->limits);
	pressure_limits_init(&cfg->pressure);
	/* without /proc/meminfo the memory limit is 0 until configured */
	cap_host_defaults(&cfg->limits);
	r = set_str(&cfg->state_dir, "/var/lib/mvm");
	r = r ?: set_str(&cfg->run_dir, "/run/mvm");
	r = r ?: set_str(&cfg->sandbox_lease_dir, UID_LEASE_DIR_DEFAULT);
	r = r ?: default_vmm(cfg, argv0);
	return r;
}

int log_level_parse(const char *s)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };

	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i]))
			return i;
	return -EINVAL;
}

/* Worker health timing (restart.c): seconds, fractions allowed, 0 to a day. */
static int set_seconds(double *ret, const char *value)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(value, &end);
	if (errno || end == value || *end || !(v >= 0 && v <= 86400))
		return -EINVAL;
	*ret = v;
	return 0;
}

/* A PSI threshold: a percentage, 0 (off) to 100. */
static int set_percent(double *ret, const char *value)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(value, &end);
	if (errno || end == value || *end || !(v >= 0 && v <= 100))
		return -EINVAL;
	*ret = v;
	return 0;
}

static int set_bool(int *ret, const char *value)
{
	if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "on") ||
	    !strcmp(value, "1"))
		*ret = 1;
	else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "off") ||
	         !strcmp(value, "0"))
		*ret = 0;
	else
		return -EINVAL;
	return 0;
}

/* Sandbox uids: never 0 (root) and never the overflow id 2^32 - 1. */
static int set_uid_range(uint32_t *ret, const char *value, bool is_base)
{
	uint64_t v;

	if (util_parse_uint(value, is_base ? 1000 : 1, 0xfffffffeULL, &v) < 0)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

/* A size (MiB unless it says K/M/G/T), at least 1 MiB: one reply fits. */
static int set_output_max(uint64_t *ret, const char *value)
{
	uint64_t v;

	if (util_parse_size(value, 1 << 20, &v) < 0 || v < (1 << 20))
		return -EINVAL;
	*ret = v;
	return 0;
}

static int set_u32(uint32_t *ret, const char *value, uint64_t min)
{
	uint64_t v;

	if (util_parse_uint(value, min, UINT32_MAX, &v) < 0)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

/* "PORT" (loopback), "IPV4:PORT" or "[IPV6]:PORT"; "" or "off": none. */
static int set_listen(struct config *cfg, const char *value)
{
	struct sockaddr_in *in = (struct sockaddr_in *)&cfg->metrics_addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&cfg->metrics_addr;
	char host[64] = "127.0.0.1", shown[96];
	const char *colon = strrchr(value, ':'), *port = value;
	uint64_t p;

	if (!*value || !strcmp(value, "off")) {
		free(cfg->metrics_listen);
		cfg->metrics_listen = NULL;
		return 0;
	}
	if (colon) {
		size_t n = (size_t)(colon - value);

		if (value[0] == '[' && n >= 2 && value[n - 1] == ']') {
			value++;
			n -= 2;
		}
		if (n == 0 || n >= sizeof(host))
			return -EINVAL;
		memcpy(host, value, n);
		host[n] = '\0';
		port = colon + 1;
	}
	if (util_parse_uint(port, 1, 65535, &p) < 0)
		return -EINVAL;
	memset(&cfg->metrics_addr, 0, sizeof(cfg->metrics_addr));
	if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)p);
	} else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)p);
	} else {
		return -EINVAL;
	}
	snprintf(shown, sizeof(shown), "%s%s%s:%u", in6->sin6_family == AF_INET6 ? "[" : "",
	         host, in6->sin6_family == AF_INET6 ? "]" : "", (unsigned)p);
	return set_str(&cfg->metrics_listen, shown);
}

/* A nice value, -20..19. */
static int set_nice(struct config *cfg, const char *value)
{
	bool neg = value[0] == '-';
	uint64_t v;

	if (util_parse_uint(value + neg, 0, neg ? 20 : 19, &v) < 0)
		return -EINVAL;
	cfg->loop_nice = neg ? -(int)v : (int)v;
	cfg->loop_nice_set = true;
	return 0;
}

int config_set(struct config *cfg, const char *key, const char *value)
{
	int lvl;

	if (!strcmp(key, "state_dir"))
		return set_str(&cfg->state_dir, value);
	if (!strcmp(key, "run_dir"))
		return set_str(&cfg->run_dir, value);
	if (!strcmp(key, "socket"))
		return set_str(&cfg->socket_path, value);
	if (!strcmp(key, "vmm"))
		return set_str(&cfg->vmm_path, value);
	if (!strcmp(key, "cgroup_parent"))
		return set_str(&cfg->cgroup_parent, value);
	if (!strcmp(key, "health_interval"))
		return set_seconds(&cfg->health_interval, value);
	if (!strcmp(key, "health_timeout"))
		return set_seconds(&cfg->health_timeout, value);
	if (!strcmp(key, "sandbox"))
		return set_bool(&cfg->sandbox, value);
	if (!strcmp(key, "sandbox_uid_base"))
		return set_uid_range(&cfg->sandbox_uid_base, value, true);
	if (!strcmp(key, "sandbox_uid_count"))
		return set_uid_range(&cfg->sandbox_uid_count, value, false);
	if (!strcmp(key, "sandbox_lease_dir"))
		return set_str(&cfg->sandbox_lease_dir, value);
	if (!strcmp(key, "client_max"))
		return set_u32(&cfg->client_max, value, 1);
	if (!strcmp(key, "client_max_per_uid"))
		return set_u32(&cfg->client_max_per_uid, value, 1);
	if (!strcmp(key, "client_output_max_per_uid"))
		return set_output_max(&cfg->client_output_max_per_uid, value);
	if (!strcmp(key, "client_line_timeout"))
		return set_seconds(&cfg->client_line_timeout, value);
	if (!strcmp(key, "fd_reserve"))
		return set_u32(&cfg->fd_reserve, value, 16);
	if (!strcmp(key, "loop_nice"))
		return set_nice(cfg, value);
	if (!strcmp(key, "admit_memory_psi"))
		return set_percent(&cfg->pressure.psi_some_avg10, value);
	if (!strcmp(key, "admit_mem_available_mib"))
		return util_parse_uint(value, 0, 1ULL << 40, &cfg->pressure.mem_available_mib) < 0
		       ? -EINVAL : 0;
	if (!strcmp(key, "reclaim_memory_psi"))
		return set_percent(&cfg->pressure.reclaim_psi_some_avg10, value);
	if (!strcmp(key, "reclaim_mem_available_mib"))
		return util_parse_uint(value, 0, 1ULL << 40,
		                       &cfg->pressure.reclaim_mem_available_mib) < 0 ? -EINVAL : 0;
	if (!strcmp(key, "reclaim_interval"))
		return set_seconds(&cfg->pressure.reclaim_interval, value);
	if (!strcmp(key, "reclaim_step_mib"))
		return util_parse_uint(value, 1, 1ULL << 20, &cfg->pressure.reclaim_step_mib) < 0
		       ? -EINVAL : 0;
	if (!strcmp(key, "reclaim_min_guest_mib"))
		return util_parse_uint(value, 0, 1ULL << 40,
		                       &cfg->pressure.reclaim_min_guest_mib) < 0 ? -EINVAL : 0;
	if (!strcmp(key, "metrics_listen"))
		return set_listen(cfg, value);
	if (!strcmp(key, "metrics_vms"))
		return set_bool(&cfg->metrics_vms, value);
	if (!strcmp(key, "log_level")) {
		lvl = log_level_parse(value);
		if (lvl < 0)
			return lvl;
		cfg->log_level = lvl;
		return 0;
	}
	return -ENOENT;
}

/* Capacity keys first (capacity.c knows them and says what is wrong with
 * a value), then mvmd's own. */
static int config_line(struct config *cfg, char *line)
{
	char *eq, *key = util_trim(line);
	int r;

	if (*key == '\0' || *key == '#')
		return 0;
	r = cap_limits_parse_line(&cfg->limits, key, cfg->error, sizeof(cfg->error));
	if (r <= 0)
		return r;
	eq = strchr(key, '=');
	if (!eq) {
		snprintf(cfg->error, sizeof(cfg->error), "'%s' is not `key = value`", key);
		return -EINVAL;
	}
	*eq = '\0';
	key = util_trim(key);
	r = config_set(cfg, key, util_trim(eq + 1));
	if (r == -ENOENT)
		snprintf(cfg->error, sizeof(cfg->error),
		         "unknown key '%s' (mvmd.conf(5) lists the keys)", key);
	else if (r == -EINVAL)
		snprintf(cfg->error, sizeof(cfg->error), "invalid value for '%s'", key);
	return r;
}

int config_load(struct config *cfg, const char *path, int *ret_line)
{
	char line[4096];
	FILE *f = fopen(path, "re");
	int n = 0, r = 0;

	if (!f)
		return -errno;
	cfg->error[0] = '\0';
	if (set_str(&cfg->path, path) < 0) {
		fclose(f);
		return -ENOMEM;
	}
	while (r == 0 && fgets(line, sizeof(line), f)) {
		n++;
		r = config_line(cfg, line);
	}
	fclose(f);
	if (r < 0)
		*ret_line = n;
	return r;
}

void config_free(struct config *cfg)
{
	free(cfg->state_dir);
	free(cfg->run_dir);
	free(cfg->socket_path);
	free(cfg->vmm_path);
	free(cfg->path);
	free(cfg->cgroup_parent);
	free(cfg->sandbox_lease_dir);
	free(cfg->metrics_listen);
	memset(cfg, 0, sizeof(*cfg));
}
