/* SPDX-License-Identifier: MIT */
#ifndef MVM_LOOP_H
#define MVM_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

/*
 * The VMM's main-thread event loop (epoll).  vCPU threads only run KVM_RUN;
 * everything else that waits on a file descriptor (serial input, virtio
 * ioeventfds, the daemon control link) registers here.  Every function is
 * for the main thread only; other threads wake it through an eventfd they
 * register here.
 */
struct loop;

/* `events` are the EPOLL* bits that fired. */
typedef void (*loop_cb)(void *opaque, uint32_t events);

int loop_new(struct loop **ret);
void loop_free(struct loop *l);

/* Watches fd for `events` (EPOLLIN, EPOLLOUT, ...).  -EEXIST if fd is
 * already watched; -EPERM for files epoll cannot watch (regular files). */
int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_cb cb, void *opaque);
/* Changes the watched events; 0 pauses the fd without forgetting it. */
int loop_mod_fd(struct loop *l, int fd, uint32_t events);
/* Stops watching fd; safe from inside any callback. */
int loop_del_fd(struct loop *l, int fd);

/* Dispatches until loop_quit(); returns 0 or a negative errno. */
int loop_run(struct loop *l);
void loop_quit(struct loop *l);

#endif
