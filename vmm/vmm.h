/* SPDX-License-Identifier: MIT */
#ifndef MVM_VMM_H
#define MVM_VMM_H

/*
 * mvm-vmm exit statuses (documented in docs/architecture.md and --help).
 * The daemon maps them to exit reasons.  SIGINT, SIGTERM and SIGHUP stop the
 * VM cleanly (vCPUs joined, terminal restored) and then end the process by
 * that same signal; the exit observer sees 128 + the signal number.
 */
enum vmm_exit_status {
	VMM_EXIT_OK             = 0,  /* guest reset (i8042 0xFE) or ACPI poweroff */
	VMM_EXIT_USAGE          = 1,  /* bad option or bad input file; nothing ran */
	VMM_EXIT_ERROR          = 2,  /* host-side failure (KVM ioctl, out of memory) */
	VMM_EXIT_TRIPLE_FAULT   = 3,  /* KVM_EXIT_SHUTDOWN: guest triple fault */
	VMM_EXIT_INTERNAL_ERROR = 4,  /* KVM_EXIT_INTERNAL_ERROR (reason prints rip) */
	VMM_EXIT_EMULATION      = 5,  /* failed entry / unhandled exit / emulation failure */
};

#endif
