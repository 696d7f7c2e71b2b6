/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "vmm/loop.h"

struct watch {
	int fd;
	bool dead;          /* deleted; freed after the current dispatch */
	loop_cb cb;
	void *opaque;
	struct watch *next;
};

struct loop {
	int epfd;
	bool quit;
	struct watch *watches;
};

int loop_new(struct loop **ret)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int r = -errno;

		free(l);
		return r;
	}
	*ret = l;
	return 0;
}

static void reap(struct loop *l)
{
	struct watch **pw = &l->watches;

	while (*pw) {
		struct watch *w = *pw;

		if (w->dead) {
			*pw = w->next;
			free(w);
		} else {
			pw = &w->next;
		}
	}
}

void loop_free(struct loop *l)
{
	struct watch *w;

	if (!l)
		return;
	for (w = l->watches; w; w = w->next)
		w->dead = true;
	reap(l);
	close(l->epfd);
	free(l);
}

static struct watch *find(struct loop *l, int fd)
{
	struct watch *w;

	for (w = l->watches; w; w = w->next)
		if (w->fd == fd && !w->dead)
			return w;
	return NULL;
}

int loop_add_fd(struct loop *l, int fd, uint32_t events, loop_cb cb, void *opaque)
{
	struct epoll_event ev = { .events = events };
	struct watch *w;

	if (find(l, fd))
		return -EEXIST;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	*w = (struct watch){ .fd = fd, .cb = cb, .opaque = opaque, .next = l->watches };
	ev.data.ptr = w;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int r = -errno;

		free(w);
		return r;
	}
	l->watches = w;
	return 0;
}

int loop_mod_fd(struct loop *l, int fd, uint32_t events)
{
	struct watch *w = find(l, fd);
	struct epoll_event ev = { .events = events };

	if (!w)
		return -ENOENT;
	ev.data.ptr = w;
	return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

int loop_del_fd(struct loop *l, int fd)
{
	struct watch *w = find(l, fd);

	if (!w)
		return -ENOENT;
	/* The fd may already be closed by the caller; epoll forgets it then. */
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
	w->dead = true;
	return 0;
}

int loop_run(struct loop *l)
{
	struct epoll_event evs[16];
	int n, i;

	l->quit = false;
	while (!l->quit) {
		n = epoll_wait(l->epfd, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (i = 0; i < n; i++) {
			struct watch *w = evs[i].data.ptr;

			/* A callback earlier in this batch may have deleted it. */
			if (!w->dead)
				w->cb(w->opaque, evs[i].events);
		}
		reap(l);
	}
	return 0;
}

void loop_quit(struct loop *l)
{
	l->quit = true;
}
