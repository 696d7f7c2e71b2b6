/* SPDX-License-Identifier: MIT */
/* Shared between the files of proto/ only. */
#ifndef MVM_PROTO_INTERNAL_H
#define MVM_PROTO_INTERNAL_H

#include "proto/proto.h"

/* Check root["args"] against the op's field table, fill defaults, and
 * return the args object (borrowed from root) in *ret_args. */
int proto_args_check(enum proto_op op, json_t *root, json_t **ret_args,
                     struct proto_error *err);

#endif
