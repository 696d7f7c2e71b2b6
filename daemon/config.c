/* SPDX-License-Identifier: MIT */
/* mvmd configuration: built-in defaults, a `key = value` file, options. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/mvmd.h"

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
	r = set_str(&cfg->state_dir, "/var/lib/mvm");
	r = r ?: set_str(&cfg->run_dir, "/run/mvm");
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
	if (!strcmp(key, "log_level")) {
		lvl = log_level_parse(value);
		if (lvl < 0)
			return lvl;
		cfg->log_level = lvl;
		return 0;
	}
	return -ENOENT;
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int config_line(struct config *cfg, char *line)
{
	char *eq, *key = trim(line);

	if (*key == '\0' || *key == '#')
		return 0;
	eq = strchr(key, '=');
	if (!eq)
		return -EINVAL;
	*eq = '\0';
	return config_set(cfg, trim(key), trim(eq + 1));
}

int config_load(struct config *cfg, const char *path, int *ret_line)
{
	char line[4096];
	FILE *f = fopen(path, "re");
	int n = 0, r = 0;

	if (!f)
		return -errno;
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
	memset(cfg, 0, sizeof(*cfg));
}
