/* SPDX-License-Identifier: MIT */
/* Line framing with the PROTO_MAX_LINE limit and discard-to-newline. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

void proto_linebuf_init(struct proto_linebuf *lb)
{
	memset(lb, 0, sizeof(*lb));
}

void proto_linebuf_free(struct proto_linebuf *lb)
{
	free(lb->buf);
	proto_linebuf_init(lb);
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

/* Drop the start of a too-long line up to and including its newline. */
static size_t linebuf_skip(struct proto_linebuf *lb, const char *data, size_t n)
{
	const char *nl = memchr(data, '\n', n);

	if (!nl)
		return n;
	lb->discarding = false;
	return (size_t)(nl - data) + 1;
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
	if (lb->len - lb->head > PROTO_MAX_LINE &&
	    !memchr(lb->buf + lb->head, '\n', lb->len - lb->head)) {
		lb->head = lb->len = 0;
		lb->discarding = true;
		lb->overflow_pending = true;
	}
	return 0;
}

int proto_linebuf_next(struct proto_linebuf *lb, char **ret_line, size_t *ret_len)
{
	char *start = lb->buf + lb->head, *nl;
	size_t avail = lb->len - lb->head, n;

	if (lb->overflow_pending) {
		lb->overflow_pending = false;
		return -EMSGSIZE;
	}
	if (avail == 0)
		return 0;
	nl = memchr(start, '\n', avail);
	if (!nl) {
		if (avail <= PROTO_MAX_LINE)
			return 0;
		lb->head = lb->len = 0;
		lb->discarding = true;
		return -EMSGSIZE;
	}
	n = (size_t)(nl - start);
	lb->head += n + 1;
	if (n > PROTO_MAX_LINE)
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
	lb->head = lb->len = 0;
	lb->discarding = lb->overflow_pending = false;
}
