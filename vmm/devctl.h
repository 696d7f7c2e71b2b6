/* SPDX-License-Identifier: MIT */
#ifndef MVM_VMM_DEVCTL_H
#define MVM_VMM_DEVCTL_H

#include "proto/proto.h"
#include "vmm/vm.h"

/*
 * The daemon link's run-time device requests (docs/protocol.md "worker
 * link"): set-limits and balloon are answered with a result, stats with a
 * stats-reply.  Main thread.
 */

/* 1 with *ret_reply filled (free it with proto_link_clear) when m is one of
 * those requests; 0 when it is not. */
int devctl_handle(struct vm *vm, const struct proto_link_msg *m, struct proto_link_msg *ret_reply);

#endif
