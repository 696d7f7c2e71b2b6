/* SPDX-License-Identifier: MIT */
/*
 * Corpus replay driver, linked into each fuzz target when it is not built
 * with libFuzzer: runs LLVMFuzzerTestOneInput() once on every file in each
 * directory (or on each file) named on the command line.  Every input is
 * passed in a buffer of exactly its size, so the sanitizers catch any read
 * past the end.  An empty or missing corpus is an error: a replay that ran
 * nothing must not pass.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	struct stat st;
	size_t n;

	if (!f || fstat(fileno(f), &st) < 0) {
		fprintf(stderr, "fuzz replay: %s: %s\n", path, strerror(errno));
		goto fail;
	}
	/* malloc(0) may return NULL; keep a real (zero-length) allocation. */
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf)
		goto fail;
	n = fread(buf, 1, (size_t)st.st_size, f);
	if (n != (size_t)st.st_size) {
		fprintf(stderr, "fuzz replay: %s: short read\n", path);
		goto fail;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	free(buf);
	return 0;
fail:
	free(buf);
	if (f)
		fclose(f);
	return -1;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir, in name order; returns how many, or -1. */
static int run_dir(const char *dir)
{
	struct dirent **ents;
	int n = scandir(dir, &ents, NULL, NULL), i, ran = 0, bad = 0;

	if (n < 0) {
		fprintf(stderr, "fuzz replay: corpus %s: %s\n", dir, strerror(errno));
		return -1;
	}
	qsort(ents, (size_t)n, sizeof(*ents), name_cmp);
	for (i = 0; i < n; i++) {
		char path[4096];

		if (ents[i]->d_name[0] != '.' && !bad) {
			snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
			if (run_file(path) < 0)
				bad = 1;
			else
				ran++;
		}
		free(ents[i]);
	}
	free(ents);
	return bad ? -1 : ran;
}

int main(int argc, char **argv)
{
	int i, total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CORPUS_DIR|FILE...\n", argv[0]);
		return 2;
	}
	for (i = 1; i < argc; i++) {
		struct stat st;
		int n;

		if (stat(argv[i], &st) == 0 && S_ISREG(st.st_mode))
			n = run_file(argv[i]) < 0 ? -1 : 1;
		else
			n = run_dir(argv[i]);
		if (n < 0)
			return 1;
		if (n == 0) {
			fprintf(stderr, "fuzz replay: corpus %s is empty; nothing was tested\n", argv[i]);
			return 1;
		}
		total += n;
	}
	printf("fuzz replay: %d input(s) ran without a crash\n", total);
	return 0;
}
