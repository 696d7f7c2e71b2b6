/* SPDX-License-Identifier: MIT */
#ifndef MVM_VMM_CONTROL_H
#define MVM_VMM_CONTROL_H

#include "vmm/vm.h"

/*
 * The worker's end of the daemon link (--control-fd N, docs/protocol.md):
 * sends booted, console output and exit; takes console-in and shutdown.
 * If the daemon goes away the link is dropped and the VM keeps running.
 */
struct control;

/* Takes fd; registers the VM hooks.  Call between vm_create and vm_run. */
int control_attach(struct vm *vm, int fd, struct control **ret);
/* Listen on the Unix socket path for a daemon that re-adopts this worker
 * (--adopt-socket; docs/protocol.md "Re-adoption").  Call before the
 * sandbox: it needs the filesystem and /proc.  Only the uid that started
 * the worker may connect. */
int control_listen(struct control *c, const char *path);
void control_free(struct control *c);
/* Before there is a VM (a kernel that does not load): tell the daemon on
 * the link fd why, as the exit message "vmm-error: msg", so the client
 * that waits hears the worker's own words.  Best effort, one blocking
 * write of one short line. */
void control_report_setup_error(int fd, int status, const char *msg);

#endif
