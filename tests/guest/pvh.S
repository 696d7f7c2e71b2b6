/* SPDX-License-Identifier: MIT */
/*
 * PVH entry: the loader read XEN_ELFNOTE_PHYS32_ENTRY and starts us in flat
 * 32-bit protected mode, paging off, %ebx = struct hvm_start_info.
 */
#include "guest.h"

#define XEN_ELFNOTE_PHYS32_ENTRY 18

	.section .note.Xen, "a"
	.p2align 2
	.long 4				/* namesz: "Xen\0" */
	.long 8				/* descsz: an address, as Linux writes it */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.p2align 2
	.quad pvh_entry

	.text
	.code32
	.globl pvh_entry
pvh_entry:
	early_putc_m
	cli
	cld
	mov %ebx, %esi
	lgdt gdt_desc
	enter_long_mode pvh_entry64

	.code64
pvh_entry64:
	mov %esi, %esi			/* upper half is undefined after the switch */
	mov $ENTRY_PVH, %edi
	jmp common64
