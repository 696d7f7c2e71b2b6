/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_AML_H
#define MVM_X86_AML_H

#include <stddef.h>
#include <stdint.h>

/*
 * A small ACPI Machine Language encoder for the DSDT.  It writes into a
 * caller-supplied buffer; the first error (-ENOSPC when the buffer is full,
 * -EINVAL for a bad name) sticks in `err` and turns later calls into no-ops,
 * so a builder checks once at the end.
 *
 * Objects with a PkgLength (Scope, Device, Package, Buffer) are written as
 * begin ... end: begin returns a mark, end inserts the PkgLength there once the
 * body's size is known.  Resource templates are built in their own struct aml
 * with the aml_res_* helpers, closed with aml_res_end(), then emitted with
 * aml_buffer().
 */
struct aml {
	uint8_t *buf;
	size_t len, cap;
	int err;
};

void aml_init(struct aml *a, void *buf, size_t cap);
void aml_byte(struct aml *a, uint8_t v);
void aml_bytes(struct aml *a, const void *p, size_t n);
/* Records err unless an earlier error is already recorded. */
void aml_fail(struct aml *a, int err);

/* Encodes PkgLength value `total` (which counts its own bytes) into out;
 * returns 1-4 bytes used, or 0 if total exceeds 2^28 - 1. */
unsigned aml_pkglength_encode(uint32_t total, uint8_t out[4]);

/* NamePath such as "\\_SB_", "_S5_", "COM1", "^PARENT.CHLD" (segments are
 * padded to four characters with '_'). */
void aml_name_string(struct aml *a, const char *path);
/* Smallest encoding: ZeroOp, OneOp, Byte/Word/DWord/QWordConst. */
void aml_integer(struct aml *a, uint64_t v);
void aml_string(struct aml *a, const char *s);
/* EISAID("PNP0501"): the compressed 32-bit id, as an integer. */
void aml_eisaid(struct aml *a, const char *id);
/* NameOp + name; the caller writes the data object next. */
void aml_name(struct aml *a, const char *name);
void aml_buffer(struct aml *a, const void *bytes, size_t n);

size_t aml_scope_begin(struct aml *a, const char *name);
size_t aml_device_begin(struct aml *a, const char *name);
size_t aml_package_begin(struct aml *a, uint8_t nelems);
void aml_end(struct aml *a, size_t mark);

/* Resource descriptors (ACPI 6.5 section 6.4). */
void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len);
void aml_res_irq_noflags(struct aml *a, unsigned irq);
void aml_res_mem32_fixed(struct aml *a, int writable, uint32_t base, uint32_t size);
enum { AML_IRQ_LEVEL = 0, AML_IRQ_EDGE = 1 };
enum { AML_IRQ_ACTIVE_HIGH = 0, AML_IRQ_ACTIVE_LOW = 1 };
void aml_res_interrupt(struct aml *a, int edge, int active_low, uint32_t gsi);
/* End tag with a checksum that makes the whole template sum to zero. */
void aml_res_end(struct aml *a);

#endif
