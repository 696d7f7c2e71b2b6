/* SPDX-License-Identifier: MIT */
/*
 * Reading large responses without a JSON tree.  jansson needs about 100 ms
 * and a quarter of a million allocations to load a vm.list of 10,000 VMs
 * on a small host; the client only walks it once, so it checks the line
 * once and then reads values in place.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

#define SCAN_DEPTH_MAX 64

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static bool is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* p at '"'; returns the byte after the closing quote, or NULL. */
static const char *scan_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			return p + 1;
		if (c < 0x20)
			return NULL;
		if (c != '\\')
			continue;
		if (++p >= end)
			return NULL;
		if (*p == 'u') {
			if (end - p < 5 || !is_hex(p[1]) || !is_hex(p[2]) || !is_hex(p[3]) ||
			    !is_hex(p[4]))
				return NULL;
			p += 4;
		} else if (!strchr("\"\\/bfnrt", *p) || !*p) {
			return NULL;
		}
	}
	return NULL;
}

static const char *scan_digits(const char *p, const char *end)
{
	const char *s = p;

	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p > s ? p : NULL;
}

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static const char *scan_number(const char *p, const char *end)
{
	if (p < end && *p == '-')
		p++;
	if (p < end && *p == '0')
		p++;
	else if (!(p = scan_digits(p, end)))
		return NULL;
	if (p < end && *p == '.' && !(p = scan_digits(p + 1, end)))
		return NULL;
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		p = scan_digits(p, end);
	}
	return p;
}

static const char *scan_literal(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);

	return (size_t)(end - p) >= n && !memcmp(p, word, n) ? p + n : NULL;
}

static const char *scan_value(const char *p, const char *end, int depth);

/* p after '{' or '['; returns the byte after the closing bracket. */
static const char *scan_container(const char *p, const char *end, bool object, int depth)
{
	char close = object ? '}' : ']';

	p = skip_ws(p, end);
	if (p < end && *p == close)
		return p + 1;
	for (;;) {
		if (object) {
			if (p >= end || *p != '"' || !(p = scan_string(p, end)))
				return NULL;
			p = skip_ws(p, end);
			if (p >= end || *p != ':')
				return NULL;
			p = skip_ws(p + 1, end);
		}
		if (!(p = scan_value(p, end, depth + 1)))
			return NULL;
		p = skip_ws(p, end);
		if (p < end && *p == close)
			return p + 1;
		if (p >= end || *p != ',')
			return NULL;
		p = skip_ws(p + 1, end);
	}
}

static const char *scan_value(const char *p, const char *end, int depth)
{
	if (p >= end || depth > SCAN_DEPTH_MAX)
		return NULL;
	switch (*p) {
	case '{': return scan_container(p + 1, end, true, depth);
	case '[': return scan_container(p + 1, end, false, depth);
	case '"': return scan_string(p, end);
	case 't': return scan_literal(p, end, "true");
	case 'f': return scan_literal(p, end, "false");
	case 'n': return scan_literal(p, end, "null");
	default: return scan_number(p, end);
	}
}

int proto_scan_check(const char *s, size_t len, struct proto_span *ret_value)
{
	const char *end = s + len, *p = skip_ws(s, end), *v = p;

	p = scan_value(p, end, 0);
	if (!p || skip_ws(p, end) != end)
		return -EINVAL;
	ret_value->p = v;
	ret_value->n = (size_t)(p - v);
	return 0;
}

/* End of a string in checked text (p at its quote): the next quote not
 * escaped by an odd run of backslashes; memchr makes it fast. */
static const char *skip_string(const char *p, const char *end)
{
	const char *q;
	size_t bs;

	for (p++; p < end; p = q + 1) {
		q = memchr(p, '"', (size_t)(end - p));
		if (!q)
			return end;
		for (bs = 0; q - bs > p && q[-1 - (ptrdiff_t)bs] == '\\'; bs++)
			;
		if (bs % 2 == 0)
			return q + 1;
	}
	return end;
}

/* End of a value in text proto_scan_check accepted: only quotes and
 * brackets matter, so walking a checked line again is cheap. */
static const char *skip_checked(const char *p, const char *end)
{
	int depth = 0;

	while (p < end) {
		switch (*p) {
		case '"':
			p = skip_string(p, end);
			if (depth == 0)
				return p;
			continue;
		case '{':
		case '[':
			depth++;
			break;
		case '}':
		case ']':
			if (--depth <= 0)
				return p + 1;
			break;
		default:
			if (depth == 0) {
				while (p < end && !strchr(",}] \t\r\n", *p))
					p++;
				return p;
			}
		}
		p++;
	}
	return NULL;
}

int proto_scan_next(struct proto_span c, size_t *pos, struct proto_span *ret_key,
                    struct proto_span *ret_val)
{
	const char *end = c.p + c.n, *p, *k, *v;
	bool object = c.n > 0 && c.p[0] == '{';

	if (c.n < 2 || (c.p[0] != '{' && c.p[0] != '['))
		return -EINVAL;
	p = skip_ws(c.p + (*pos ? *pos : 1), end);
	if (p < end && *p == ',')
		p = skip_ws(p + 1, end);
	if (p >= end || *p == '}' || *p == ']')
		return 0;
	k = p;
	if (object) {
		if (*p != '"')
			return -EINVAL;
		p = skip_string(p, end);
		if (ret_key)
			*ret_key = (struct proto_span){ k, (size_t)(p - k) };
		p = skip_ws(p, end);
		if (p >= end || *p != ':')
			return -EINVAL;
		p = skip_ws(p + 1, end);
	}
	v = p;
	if (p >= end || !(p = skip_checked(p, end)) || p == v)
		return -EINVAL;
	*ret_val = (struct proto_span){ v, (size_t)(p - v) };
	*pos = (size_t)(p - c.p);
	return 1;
}

bool proto_scan_key_is(struct proto_span key, const char *name)
{
	size_t n = strlen(name);

	return key.n == n + 2 && !memcmp(key.p + 1, name, n);
}

static unsigned hex4(const char *p)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		char c = p[i];

		v = v << 4 | (unsigned)(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
	}
	return v;
}

static size_t put_utf8(char *o, unsigned cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | cp >> 6);
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | cp >> 12);
		o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | cp >> 18);
	o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* One escape at p (after the backslash, inside a checked string): the
 * bytes it stands for into o; returns how many input bytes it used. */
static size_t unescape(const char *p, const char *end, char *o, size_t *ret_n)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	unsigned cp, lo;

	if (*p != 'u') {
		*o = to[strchr(from, *p) - from];
		*ret_n = 1;
		return 1;
	}
	cp = hex4(p + 1);
	if (cp >= 0xd800 && cp < 0xdc00 && end - p >= 11 && p[5] == '\\' && p[6] == 'u' &&
	    (lo = hex4(p + 7)) >= 0xdc00 && lo < 0xe000) {
		*ret_n = put_utf8(o, 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00));
		return 11;
	}
	if (cp >= 0xd800 && cp < 0xe000)
		cp = 0xfffd;            /* a lone surrogate */
	*ret_n = put_utf8(o, cp);
	return 5;
}

int proto_scan_str(struct proto_span v, char *buf, size_t size)
{
	const char *p = v.p + 1, *end = v.p + v.n - 1;
	char tmp[4];
	size_t o = 0, n;

	if (v.n < 2 || v.p[0] != '"' || size == 0)
		return -EINVAL;
	while (p < end) {
		if (*p != '\\') {
			tmp[0] = *p++;
			n = 1;
		} else {
			p += 1 + unescape(p + 1, end, tmp, &n);
		}
		if (o + n >= size)
			break;          /* truncated */
		memcpy(buf + o, tmp, n);
		o += n;
	}
	buf[o] = '\0';
	return (int)o;
}

bool proto_scan_int(struct proto_span v, long long *ret)
{
	char buf[32], *e;

	if (v.n == 0 || v.n >= sizeof(buf) || memchr(v.p, '.', v.n) || memchr(v.p, 'e', v.n) ||
	    memchr(v.p, 'E', v.n) || !(v.p[0] == '-' || (v.p[0] >= '0' && v.p[0] <= '9')))
		return false;
	memcpy(buf, v.p, v.n);
	buf[v.n] = '\0';
	*ret = strtoll(buf, &e, 10);
	return *e == '\0';
}

bool proto_scan_num(struct proto_span v, double *ret)
{
	char buf[64], *e;

	if (v.n == 0 || v.n >= sizeof(buf) || !(v.p[0] == '-' || (v.p[0] >= '0' && v.p[0] <= '9')))
		return false;
	memcpy(buf, v.p, v.n);
	buf[v.n] = '\0';
	*ret = strtod(buf, &e);
	return *e == '\0';
}

/* ---- pretty printing ---------------------------------------------------- */

struct out {
	char *buf;
	size_t len, cap;
	int error;
};

static void out_put(struct out *o, const char *s, size_t n)
{
	size_t cap = o->cap ? o->cap : 65536;
	char *p;

	if (o->error)
		return;
	if (o->len + n > o->cap) {
		while (cap < o->len + n)
			cap *= 2;
		p = realloc(o->buf, cap);
		if (!p) {
			o->error = -ENOMEM;
			return;
		}
		o->buf = p;
		o->cap = cap;
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void out_indent(struct out *o, int depth)
{
	static const char spaces[] = "                                ";

	out_put(o, "\n", 1);
	for (int n = depth * 2; n > 0; n -= 32)
		out_put(o, spaces, n < 32 ? (size_t)n : 32);
}

struct member {
	struct proto_span key, val;
	char *sort_key;                 /* decoded key; NULL: the raw bytes are it */
};

static int member_cmp(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	size_t xn = x->key.n - 2, yn = y->key.n - 2;
	const char *xs = x->sort_key ? x->sort_key : x->key.p + 1;
	const char *ys = y->sort_key ? y->sort_key : y->key.p + 1;
	int c;

	if (x->sort_key)
		xn = strlen(xs);
	if (y->sort_key)
		yn = strlen(ys);
	c = memcmp(xs, ys, xn < yn ? xn : yn);
	return c ? c : (xn > yn) - (xn < yn);
}

static void pretty_value(struct out *o, struct proto_span v, int depth);

/* Members of a checked container; keys decoded for sorting only where
 * they hold escapes, so the order is strcmp's on the real keys. */
static struct member *collect(struct proto_span c, bool object, size_t *ret_n)
{
	struct member *m = NULL, *p;
	size_t n = 0, cap = 0, pos = 0;
	struct proto_span k = { 0 }, v;

	while (proto_scan_next(c, &pos, &k, &v) == 1) {
		if (n == cap) {
			cap = cap ? cap * 2 : 32;
			p = realloc(m, cap * sizeof(*m));
			if (!p)
				break;
			m = p;
		}
		m[n] = (struct member){ .key = k, .val = v };
		if (object && memchr(k.p, '\\', k.n) && (m[n].sort_key = malloc(k.n)))
			proto_scan_str(k, m[n].sort_key, k.n);
		n++;
	}
	if (object && n > 1)
		qsort(m, n, sizeof(*m), member_cmp);
	*ret_n = n;
	return m;
}

static void pretty_container(struct out *o, struct proto_span c, int depth)
{
	bool object = c.p[0] == '{';
	size_t n;
	struct member *m = collect(c, object, &n);

	out_put(o, c.p, 1);
	for (size_t i = 0; i < n; i++) {
		out_indent(o, depth + 1);
		if (object) {
			out_put(o, m[i].key.p, m[i].key.n);
			out_put(o, ": ", 2);
		}
		pretty_value(o, m[i].val, depth + 1);
		if (i + 1 < n)
			out_put(o, ",", 1);
		free(m[i].sort_key);
	}
	if (n)
		out_indent(o, depth);
	out_put(o, object ? "}" : "]", 1);
	free(m);
}

static void pretty_value(struct out *o, struct proto_span v, int depth)
{
	if (v.n && (v.p[0] == '{' || v.p[0] == '['))
		pretty_container(o, v, depth);
	else
		out_put(o, v.p, v.n);
}

int proto_scan_pretty(struct proto_span v, char **ret_buf, size_t *ret_len)
{
	struct out o = { 0 };

	pretty_value(&o, v, 0);
	out_put(&o, "", 1);
	if (o.error) {
		free(o.buf);
		return o.error;
	}
	*ret_buf = o.buf;
	*ret_len = o.len - 1;
	return 0;
}
