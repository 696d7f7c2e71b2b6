/* SPDX-License-Identifier: MIT */
/* mvmd's config file (config.c) and its logger's journald priorities
 * (helpers.c), on real files in a private directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "tests/unit/check.h"

static char dir[] = "/tmp/mvm-test-config-XXXXXX";

static int load(struct config *cfg, const char *text, int *line)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/mvmd.conf", dir);
	f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
	*line = 0;
	CHECK_EQ(config_defaults(cfg, NULL), 0);
	return config_load(cfg, path, line);
}

static void test_config(void)
{
	struct config cfg;
	int line;

	/* the README's spelling: on/off as well as yes/no, true/false */
	CHECK_EQ(load(&cfg, "# comment\n\nsandbox = off\n", &line), 0);
	CHECK_EQ(cfg.sandbox, 0);
	config_free(&cfg);
	CHECK_EQ(load(&cfg, "sandbox=on\nlog_level = debug\n", &line), 0);
	CHECK_EQ(cfg.sandbox, 1);
	CHECK_EQ(cfg.log_level, LOG_DEBUG);
	config_free(&cfg);

	/* an unknown key: its name and line */
	CHECK_EQ(load(&cfg, "sandbox = on\n\n  colour = blue\n", &line), -ENOENT);
	CHECK_EQ(line, 3);
	CHECK(strstr(cfg.error, "unknown key 'colour'") != NULL);
	config_free(&cfg);

	/* a bad value names its key; a line without '=' says so */
	CHECK_EQ(load(&cfg, "sandbox = maybe\n", &line), -EINVAL);
	CHECK_EQ(line, 1);
	CHECK(strstr(cfg.error, "'sandbox'") != NULL);
	config_free(&cfg);
	CHECK_EQ(load(&cfg, "log_level = debug\nsandbox\n", &line), -EINVAL);
	CHECK_EQ(line, 2);
	CHECK(strstr(cfg.error, "key = value") != NULL);
	config_free(&cfg);

	/* metrics_listen: a bare port is loopback; v4 and [v6] literals */
	CHECK_EQ(load(&cfg, "metrics_listen = 9464\n", &line), 0);
	CHECK(cfg.metrics_listen && !strcmp(cfg.metrics_listen, "127.0.0.1:9464"));
	CHECK_EQ(cfg.metrics_addr.ss_family, AF_INET);
	CHECK_EQ(config_set(&cfg, "metrics_listen", "[::1]:80"), 0);
	CHECK(!strcmp(cfg.metrics_listen, "[::1]:80"));
	CHECK_EQ(cfg.metrics_addr.ss_family, AF_INET6);
	CHECK_EQ(config_set(&cfg, "metrics_listen", "0.0.0.0:9100"), 0);
	CHECK(!strcmp(cfg.metrics_listen, "0.0.0.0:9100"));
	CHECK_EQ(config_set(&cfg, "metrics_listen", "off"), 0);
	CHECK(cfg.metrics_listen == NULL);
	CHECK_EQ(config_set(&cfg, "metrics_listen", "localhost:80"), -EINVAL);
	CHECK_EQ(config_set(&cfg, "metrics_listen", "70000"), -EINVAL);
	CHECK_EQ(config_set(&cfg, "metrics_listen", ":80"), -EINVAL);
	CHECK_EQ(config_set(&cfg, "metrics_listen", "1.2.3.4:"), -EINVAL);
	config_free(&cfg);

	/* loop_nice: unset by default (the loop keeps mvmd's own), -20..19 */
	CHECK_EQ(load(&cfg, "loop_nice = -10\n", &line), 0);
	CHECK_EQ(cfg.loop_nice, -10);
	CHECK(cfg.loop_nice_set);
	CHECK_EQ(config_set(&cfg, "loop_nice", "19"), 0);
	CHECK_EQ(cfg.loop_nice, 19);
	CHECK_EQ(config_set(&cfg, "loop_nice", "-20"), 0);
	CHECK_EQ(cfg.loop_nice, -20);
	CHECK_EQ(config_set(&cfg, "loop_nice", "20"), -EINVAL);
	CHECK_EQ(config_set(&cfg, "loop_nice", "-21"), -EINVAL);
	CHECK_EQ(config_set(&cfg, "loop_nice", "--1"), -EINVAL);
	CHECK_EQ(config_set(&cfg, "loop_nice", "high"), -EINVAL);
	CHECK_EQ(cfg.loop_nice, -20);
	config_free(&cfg);
	CHECK_EQ(load(&cfg, "sandbox = on\n", &line), 0);
	CHECK(!cfg.loop_nice_set);
	config_free(&cfg);

	/* a missing file: -ENOENT at line 0, nothing kept */
	CHECK_EQ(config_defaults(&cfg, NULL), 0);
	line = 0;
	CHECK_EQ(config_load(&cfg, "/nonexistent/mvmd.conf", &line), -ENOENT);
	CHECK_EQ(line, 0);
	CHECK(cfg.path == NULL);
	config_free(&cfg);
}

/* Logs one line at each level to a file that stderr points to and returns
 * what was written. */
static void log_to(const char *path, const char *journal_stream, char *out, size_t size)
{
	int saved = dup(STDERR_FILENO);
	FILE *f = freopen(path, "w", stderr);
	size_t n;

	CHECK(f != NULL);
	if (journal_stream) {
		char env[64];
		struct stat st;

		CHECK_EQ(fstat(STDERR_FILENO, &st), 0);
		if (!strcmp(journal_stream, "self"))
			snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
			         (unsigned long long)st.st_ino);
		else
			snprintf(env, sizeof(env), "%s", journal_stream);
		setenv("JOURNAL_STREAM", env, 1);
	} else {
		unsetenv("JOURNAL_STREAM");
	}
	mvmd_log_init();
	mvmd_log_level = LOG_DEBUG;
	log_error("e %d", 1);
	log_warn("w");
	log_info("i");
	log_debug("d");
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	f = fopen(path, "r");
	CHECK(f != NULL);
	n = fread(out, 1, size - 1, f);
	out[n] = '\0';
	fclose(f);
}

static void test_log_prefix(void)
{
	char path[256], out[512];

	snprintf(path, sizeof(path), "%s/log", dir);
	log_to(path, "self", out, sizeof(out));
	CHECK(!strcmp(out, "<3>mvmd: error: e 1\n<4>mvmd: warning: w\n"
	                   "<6>mvmd: info: i\n<7>mvmd: debug: d\n"));
	/* JOURNAL_STREAM of another stream (inherited, stderr redirected):
	 * plain lines, as without it */
	log_to(path, "1:2", out, sizeof(out));
	CHECK(!strcmp(out, "mvmd: error: e 1\nmvmd: warning: w\nmvmd: info: i\nmvmd: debug: d\n"));
	log_to(path, "garbage", out, sizeof(out));
	CHECK(!strncmp(out, "mvmd: error: e 1\n", 17));
	log_to(path, NULL, out, sizeof(out));
	CHECK(!strncmp(out, "mvmd: error: e 1\n", 17));
	unsetenv("JOURNAL_STREAM");
	mvmd_log_init();
}

int main(void)
{
	char path[256];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_config();
	test_log_prefix();
	snprintf(path, sizeof(path), "%s/mvmd.conf", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/log", dir);
	unlink(path);
	rmdir(dir);
	return check_result("config");
}
