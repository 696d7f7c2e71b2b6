/* SPDX-License-Identifier: MIT */
/* Line framing with a per-buffer line limit and discard-to-newline. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

void proto_linebuf_init_max(struct proto_linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof(*lb));
	lb->max = max;
}

void proto_linebuf_init(struct proto_linebuf *lb)
{
	proto_linebuf_init_max(lb, PROTO_MAX_LINE);
}

void proto_linebuf_free(struct proto_linebuf *lb)
{
	free(lb->buf);
	proto_linebuf_init_max(lb, lb->max);
}

size_t proto_linebuf_pending(const struct proto_linebuf *lb)
{
	return lb->len - lb->head;
}

static int linebuf_reserve(struct proto_linebuf *lb, size_t n)
{
	size_t cap;
	char *p;

	if (lb->head > 0) {
		memmove(lb->buf, lb->buf + lb->head, lb->len - lb->head);
		lb->len -= lb->head;
		lb->head = 0;
	}
	if (lb->len + n + 1 <= lb->cap)
		return 0;
	cap = lb->cap ? lb->cap : 4096;
	while (cap < lb->len + n + 1)
		cap *= 2;
	p = realloc(lb->buf, cap);
	if (!p)
		return -ENOMEM;
	lb->buf = p;
	lb->cap = cap;
	return 0;
}

/* The first newline after head, searching only bytes not searched before;
 * NULL if none is buffered. */
static char *linebuf_find(struct proto_linebuf *lb)
{
	char *start = lb->buf + lb->head;
	size_t avail = lb->len - lb->head;
	char *nl;

	if (lb->scanned >= avail)
		return NULL;
	nl = memchr(start + lb->scanned, '\n', avail - lb->scanned);
	/* stop on the newline itself, so finding it again is one compare */
	lb->scanned = nl ? (size_t)(nl - start) : avail;
	return nl;
}

/* Drop the start of a too-long line up to and including its newline. */
static size_t linebuf_skip(struct proto_linebuf *lb, const char *data, size_t n)
{
	const char *nl = memchr(data, '\n', n);

	if (!nl)
		return n;
	lb->discarding = false;
	return (size_t)(nl - data) + 1;
}

static void linebuf_drop(struct proto_linebuf *lb)
{
	lb->head = lb->len = lb->scanned = 0;
	lb->discarding = true;
}

int proto_linebuf_feed(struct proto_linebuf *lb, const void *data, size_t n)
{
	const char *p = data;
	size_t skip;
	int r;

	if (lb->discarding) {
		skip = linebuf_skip(lb, p, n);
		p += skip;
		n -= skip;
	}
	if (n == 0)
		return 0;
	r = linebuf_reserve(lb, n);
	if (r < 0)
		return r;
	memcpy(lb->buf + lb->len, p, n);
	lb->len += n;
	/* No complete line buffered and already too long: nothing queued
	 * before it, so it can be dropped now, which bounds memory. */
	if (lb->len - lb->head > lb->max && !linebuf_find(lb)) {
		linebuf_drop(lb);
		lb->overflow_pending = true;
	}
	return 0;
}

int proto_linebuf_next(struct proto_linebuf *lb, char **ret_line, size_t *ret_len)
{
	char *start = lb->buf + lb->head, *nl;
	size_t n;

	if (lb->overflow_pending) {
		lb->overflow_pending = false;
		return -EMSGSIZE;
	}
	if (lb->len == lb->head)
		return 0;
	nl = linebuf_find(lb);
	if (!nl) {
		if (lb->len - lb->head <= lb->max)
			return 0;
		linebuf_drop(lb);
		return -EMSGSIZE;
	}
	n = (size_t)(nl - start);
	lb->head += n + 1;
	lb->scanned = 0;
	if (n > lb->max)
		return -EMSGSIZE;
	if (n > 0 && start[n - 1] == '\r')
		n--;
	start[n] = '\0';
	*ret_line = start;
	*ret_len = n;
	return 1;
}

void proto_linebuf_take_rest(struct proto_linebuf *lb, const char **ret_data,
                             size_t *ret_len)
{
	*ret_data = lb->buf ? lb->buf + lb->head : "";
	*ret_len = lb->len - lb->head;
	lb->head = lb->len = lb->scanned = 0;
	lb->discarding = lb->overflow_pending = false;
}
