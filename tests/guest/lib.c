/* SPDX-License-Identifier: MIT */
/* String helpers and a small printf for the test guest. */
#include "lib.h"

/* The compiler may emit calls to these even with -ffreestanding. */
void *memcpy(void *dst, const void *src, size_t n)
{
	uint8_t *d = dst;
	const uint8_t *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *dst, int c, size_t n)
{
	uint8_t *d = dst;

	while (n--)
		*d++ = (uint8_t)c;
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const uint8_t *x = a, *y = b;

	for (; n; n--, x++, y++)
		if (*x != *y)
			return *x - *y;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return (uint8_t)*a - (uint8_t)*b;
}

/* Decimal only; rejects empty strings, junk and overflow. */
bool parse_u64(const char *s, uint64_t *ret)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > (~0UL - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*ret = v;
	return true;
}

void delay(unsigned loops)
{
	while (loops--)
		cpu_relax();
}

static void put_num(uint64_t v, unsigned base, unsigned width, char pad)
{
	char buf[24];
	unsigned n = 0;

	do {
		buf[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (width > n && width--)
		serial_putc(pad);
	while (n)
		serial_putc(buf[--n]);
}

static void put_signed(int64_t v, unsigned width, char pad)
{
	if (v < 0) {
		serial_putc('-');
		put_num(-(uint64_t)v, 10, width ? width - 1 : 0, pad);
	} else {
		put_num((uint64_t)v, 10, width, pad);
	}
}

/* Supports %s %c %d %u %x %%, an 'l' modifier and a zero-padded width. */
void kvprintf(const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		unsigned width = 0;
		bool is_long = false;
		char pad = ' ';
		const char *s;

		if (*fmt != '%') {
			serial_putc(*fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0')
			pad = '0';
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (unsigned)(*fmt++ - '0');
		while (*fmt == 'l')
			is_long = true, fmt++;
		switch (*fmt) {
		case 's':
			for (s = va_arg(ap, const char *); *s; s++)
				serial_putc(*s);
			break;
		case 'c':
			serial_putc((char)va_arg(ap, int));
			break;
		case 'd':
			put_signed(is_long ? va_arg(ap, int64_t) : va_arg(ap, int), width, pad);
			break;
		case 'u':
			put_num(is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10, width, pad);
			break;
		case 'x':
			put_num(is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16, width, pad);
			break;
		case '\0':
			return;
		default:
			serial_putc(*fmt);
		}
	}
}

/* One whole line per call, under the serial lock, so CPUs don't interleave. */
void kprintf(const char *fmt, ...)
{
	va_list ap;

	serial_lock();
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	serial_unlock();
}
