/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "vmm/virtio_devs.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"
#include "vmm/devices/virtio/mmio.h"
#include "vmm/devices/virtio/blk.h"
#include "vmm/devices/virtio/net.h"
#include "vmm/devices/virtio/rng.h"
#include "vmm/devices/virtio/vsock.h"
#include "vmm/devices/virtio/balloon.h"
#include "util/util.h"

/* Guest-triggered messages: a burst, then at most one per second, with a
 * count of what was dropped, so a hostile guest cannot flood the log. */
#define LOG_BURST 20

/* What differs between device kinds, as seen from the VMM.  kinds[] below
 * lists them in slot order; everything that walks the devices goes through
 * it. */
struct vdev_kind {
	const char *name;
	unsigned (*count)(const struct virtio_devs_config *c);
	/* Opens the backend of the index-th device of this kind. */
	int (*make)(const struct virtio_devs_config *c, unsigned index,
	            const struct guest_mem *m, void **ret, struct vm_error *err);
	/* The fd number the caller passed for that device, or -1. */
	int (*passed_fd)(const struct virtio_devs_config *c, unsigned index);
	struct virtio_dev *(*dev)(void *model);
	void (*destroy)(void *model);
	int (*fd)(const void *model);      /* backend fd for the loop, or NULL */
	uint32_t fd_events;
	void (*ready)(void *model);        /* backend fd fired (transport locked) */
	int (*timer_fd)(const void *model); /* rate-limit timer for the loop, or NULL */
	void (*timer)(void *model);        /* it fired (transport locked) */
};

struct vdev_slot;

struct vdev_notify {
	struct vdev_slot *slot;
	uint32_t queue;
	int fd;
};

struct vdev_slot {
	const struct vdev_kind *kind;
	void *model;
	struct virtio_mmio t;
	uint64_t base;
	uint32_t gsi;
	int irqfd;
	struct vdev_notify notify[VIRTIO_MAX_QUEUES];
	unsigned nnotify;
	struct loop *loop;                 /* set once fds are registered */
	bool backend_watched, timer_watched;
	atomic_ulong mmio_exits, notifies, irqs;
};

struct virtio_devs {
	struct vdev_slot slot[VIRTIO_MMIO_MAX];
	unsigned n;
};

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned log_budget = LOG_BURST;
static unsigned long log_dropped;
static time_t log_refill;

static void guest_log(const struct vdev_slot *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void guest_log(const struct vdev_slot *s, const char *fmt, ...)
{
	time_t now = time(NULL);
	va_list ap;

	pthread_mutex_lock(&log_lock);
	if (now != log_refill && log_budget == 0) {
		log_budget = 1;
		log_refill = now;
	}
	if (log_budget == 0) {
		log_dropped++;
		pthread_mutex_unlock(&log_lock);
		return;
	}
	log_budget--;
	if (log_dropped)
		fprintf(stderr, "mvm-vmm: virtio: %lu more guest errors not logged\n", log_dropped);
	log_dropped = 0;
	fprintf(stderr, "mvm-vmm: virtio-%s: ", s->kind->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	pthread_mutex_unlock(&log_lock);
}

/* ---- backends --------------------------------------------------------------- */

/* Takes fd n over (close-on-exec from now on); -errno if it isn't open or
 * lacks the access mode the disk needs. */
static int adopt_fd(int n, bool need_write)
{
	int fl = fcntl(n, F_GETFL);

	if (fl < 0)
		return -errno;
	if (need_write && (fl & O_ACCMODE) != O_RDWR)
		return -EACCES;
	if (fcntl(n, F_SETFD, FD_CLOEXEC) < 0)
		return -errno;
	return n;
}

static int disk_open(const struct vm_disk *d, struct vm_error *err)
{
	int fd, flags = (d->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	/* "/proc/self/fd/N": a file mvmd opened with its client's rights; use
	 * that very fd rather than reopening it with ours */
	int n = util_proc_fd_number(d->path);

	fd = n >= 0 ? adopt_fd(n, !d->read_only) : open(d->path, flags);
	if (fd < 0 && n < 0)
		fd = -errno;
	if (fd >= 0)
		return fd;
	if (!d->read_only && (fd == -EACCES || fd == -EROFS || fd == -EPERM))
		return vm_fail(err, VMM_EXIT_USAGE, fd, "cannot open disk '%s' for writing: %s; "
		                 "fix its permissions or add ,ro", d->path, strerror(-fd));
	return vm_fail(err, VMM_EXIT_USAGE, fd, "cannot open disk '%s': %s; check the path",
	                 d->path, strerror(-fd));
}

static int blk_make(const struct vm_disk *d, const struct guest_mem *m, void **ret,
                    struct vm_error *err)
{
	struct virtio_blk *b;
	struct stat st;
	int fd = disk_open(d, err), r;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < VIRTIO_BLK_SECTOR_SIZE) {
		close(fd);
		return vm_fail(err, VMM_EXIT_USAGE, -EINVAL, "disk '%s' is not a raw image of at "
		                 "least %d bytes; pass a regular file", d->path, VIRTIO_BLK_SECTOR_SIZE);
	}
	r = virtio_blk_create(fd, d->read_only, d->id, m, &b);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot set up disk '%s': %s; free some memory",
		                 d->path, strerror(-r));
	virtio_blk_set_limits(b, &d->limits);
	*ret = b;
	return 0;
}

/* 52:54:00 (the usual locally-administered KVM prefix) and three bytes of
 * FNV-1a over the TAP name (or fd number) and the NIC's index: stable
 * across restarts, different for each NIC of a VM. */
static void nic_default_mac(const struct vm_nic *n, unsigned index, uint8_t mac[6])
{
	char key[64];
	uint32_t h = 2166136261u;

	if (n->tap)
		snprintf(key, sizeof(key), "tap=%s/%u", n->tap, index);
	else
		snprintf(key, sizeof(key), "fd=%d/%u", n->fd, index);
	for (const char *p = key; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	mac[0] = 0x52; mac[1] = 0x54; mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16); mac[4] = (uint8_t)(h >> 8); mac[5] = (uint8_t)h;
}

static int nic_fd(const struct vm_nic *n, struct vm_error *err)
{
	int fd, r;

	if (!n->tap) {
		fd = fcntl(n->fd, F_GETFD) < 0 ? -errno : n->fd;
		if (fd >= 0 && fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
			fd = -errno;
		if (fd < 0)
			return vm_fail(err, VMM_EXIT_USAGE, fd, "cannot use --net fd=%d: %s; "
			                 "pass an open TAP fd", n->fd, strerror(-fd));
		return fd;
	}
	r = virtio_net_tap_open(n->tap, &fd);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_USAGE, r, "cannot open TAP '%s': %s; create it "
		                 "first or run with CAP_NET_ADMIN", n->tap, strerror(-r));
	return fd;
}

static int net_make(const struct vm_nic *n, unsigned index, const struct guest_mem *m,
                     void **ret, struct vm_error *err)
{
	struct virtio_net *dev;
	uint8_t mac[6];
	int fd = nic_fd(n, err), r;

	if (fd < 0)
		return fd;
	if (n->has_mac)
		memcpy(mac, n->mac, sizeof(mac));
	else
		nic_default_mac(n, index, mac);
	r = virtio_net_create(fd, mac, m, &dev);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot set up NIC %u: %s; free some memory",
		                 index, strerror(-r));
	virtio_net_set_limits(dev, &n->limits);
	*ret = dev;
	return 0;
}

static int rng_make(const struct guest_mem *m, void **ret, struct vm_error *err)
{
	struct virtio_rng *dev;
	int r = virtio_rng_create(m, &dev);

	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot set up virtio-rng: %s; "
		                 "free some memory", strerror(-r));
	*ret = dev;
	return 0;
}

static int vsock_make(const struct virtio_devs_config *c, const struct guest_mem *m,
                      void **ret, struct vm_error *err)
{
	struct virtio_vsock *dev;
	int r = virtio_vsock_create(c->vsock_cid, c->vsock_uds, m, &dev);

	if (r < 0)
		return vm_fail(err, VMM_EXIT_USAGE, r, "cannot listen on vsock socket '%s': %s; "
		                 "check the path and its directory", c->vsock_uds, strerror(-r));
	/* The socket file, not what a link in its place names: the
	 * directory may be the VM owner's (mvmd's per-VM directory). */
	if (c->vsock_chown &&
	    fchownat(AT_FDCWD, c->vsock_uds, (uid_t)c->vsock_uid, (gid_t)-1,
	             AT_SYMLINK_NOFOLLOW) < 0) {
		r = -errno;
		virtio_vsock_destroy(dev);
		return vm_fail(err, VMM_EXIT_USAGE, r, "cannot give vsock socket '%s' to uid %lld: "
		               "%s; uid= needs root", c->vsock_uds, (long long)c->vsock_uid,
		               strerror(-r));
	}
	*ret = dev;
	return 0;
}

static int balloon_make(const struct virtio_devs_config *c, const struct guest_mem *m,
                        void **ret, struct vm_error *err)
{
	struct virtio_balloon *dev;
	int r = virtio_balloon_create(m, (uint32_t)(c->balloon_target >> VIRTIO_BALLOON_PFN_SHIFT),
	                              &dev);

	if (r == -EINVAL)
		return vm_fail(err, VMM_EXIT_USAGE, r, "balloon target %" PRIu64 " bytes is larger "
		                 "than the guest's %" PRIu64 " bytes of RAM; lower it",
		                 c->balloon_target, m->size);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot set up virtio-balloon: %s; "
		                 "free some memory", strerror(-r));
	*ret = dev;
	return 0;
}

/* ---- kinds ---------------------------------------------------------------- */

static unsigned blk_count(const struct virtio_devs_config *c) { return c->ndisks; }
static int blk_make_i(const struct virtio_devs_config *c, unsigned i, const struct guest_mem *m,
                      void **ret, struct vm_error *err)
{
	return blk_make(&c->disks[i], m, ret, err);
}
static int blk_passed_fd(const struct virtio_devs_config *c, unsigned i)
{
	return util_proc_fd_number(c->disks[i].path);
}
static struct virtio_dev *blk_dev(void *m) { return virtio_blk_dev(m); }
static void blk_destroy(void *m) { virtio_blk_destroy(m); }
static int blk_timer_fd(const void *m) { return virtio_blk_timer_fd(m); }
static void blk_timer(void *m) { virtio_blk_timer(m); }

static unsigned net_count(const struct virtio_devs_config *c) { return c->nnics; }
static int net_make_i(const struct virtio_devs_config *c, unsigned i, const struct guest_mem *m,
                      void **ret, struct vm_error *err)
{
	return net_make(&c->nics[i], i, m, ret, err);
}
static int net_passed_fd(const struct virtio_devs_config *c, unsigned i)
{
	return c->nics[i].tap ? -1 : c->nics[i].fd;
}
static struct virtio_dev *net_dev(void *m) { return virtio_net_dev(m); }
static void net_destroy(void *m) { virtio_net_destroy(m); }
static int net_fd(const void *m) { return virtio_net_fd(m); }
static void net_ready(void *m) { virtio_net_rx_ready(m); }
static int net_timer_fd(const void *m) { return virtio_net_timer_fd(m); }
static void net_timer(void *m) { virtio_net_timer(m); }

static unsigned rng_count(const struct virtio_devs_config *c) { return c->rng ? 1 : 0; }
static int rng_make_i(const struct virtio_devs_config *c, unsigned i, const struct guest_mem *m,
                      void **ret, struct vm_error *err)
{
	(void)c; (void)i;
	return rng_make(m, ret, err);
}
static struct virtio_dev *rng_dev(void *m) { return virtio_rng_dev(m); }
static void rng_destroy(void *m) { virtio_rng_destroy(m); }

static unsigned vsock_count(const struct virtio_devs_config *c) { return c->vsock_cid ? 1 : 0; }
static int vsock_make_i(const struct virtio_devs_config *c, unsigned i, const struct guest_mem *m,
                        void **ret, struct vm_error *err)
{
	(void)i;
	return vsock_make(c, m, ret, err);
}
static struct virtio_dev *vsock_dev(void *m) { return virtio_vsock_dev(m); }
static void vsock_destroy(void *m) { virtio_vsock_destroy(m); }
static int vsock_fd(const void *m) { return virtio_vsock_fd(m); }
static void vsock_ready(void *m) { virtio_vsock_ready(m); }

static unsigned balloon_count(const struct virtio_devs_config *c) { return c->balloon ? 1 : 0; }
static int balloon_make_i(const struct virtio_devs_config *c, unsigned i,
                          const struct guest_mem *m, void **ret, struct vm_error *err)
{
	(void)i;
	return balloon_make(c, m, ret, err);
}
static struct virtio_dev *balloon_dev(void *m) { return virtio_balloon_dev(m); }
static void balloon_destroy(void *m) { virtio_balloon_destroy(m); }

static const struct vdev_kind kind_blk = {
	.name = "blk", .count = blk_count, .make = blk_make_i, .passed_fd = blk_passed_fd,
	.dev = blk_dev, .destroy = blk_destroy, .timer_fd = blk_timer_fd, .timer = blk_timer,
};
/* Edge-triggered: the model reads until EAGAIN, or keeps the frame and
 * resumes on the guest's next RX notify when it has no buffers. */
static const struct vdev_kind kind_net = {
	.name = "net", .count = net_count, .make = net_make_i, .passed_fd = net_passed_fd,
	.dev = net_dev, .destroy = net_destroy,
	.fd = net_fd, .fd_events = EPOLLIN | EPOLLET, .ready = net_ready,
	.timer_fd = net_timer_fd, .timer = net_timer,
};
static const struct vdev_kind kind_rng = {
	.name = "rng", .count = rng_count, .make = rng_make_i,
	.dev = rng_dev, .destroy = rng_destroy,
};
static const struct vdev_kind kind_vsock = {
	.name = "vsock", .count = vsock_count, .make = vsock_make_i,
	.dev = vsock_dev, .destroy = vsock_destroy,
	.fd = vsock_fd, .fd_events = EPOLLIN, .ready = vsock_ready,
};
static const struct vdev_kind kind_balloon = {
	.name = "balloon", .count = balloon_count, .make = balloon_make_i,
	.dev = balloon_dev, .destroy = balloon_destroy,
};

/* The slot order, written once: the command line, the DSDT, the device
 * models and the guest's view all follow it. */
static const struct vdev_kind *const kinds[] = {
	&kind_blk, &kind_net, &kind_rng, &kind_vsock, &kind_balloon,
};
#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

unsigned virtio_devs_count(const struct virtio_devs_config *c)
{
	unsigned k, n = 0;

	for (k = 0; k < NKINDS; k++)
		n += kinds[k]->count(c);
	return n;
}

/* The kind of slot i and the device's index among those of its kind;
 * NULL past the last device. */
static const struct vdev_kind *slot_kind(const struct virtio_devs_config *c, unsigned i,
                                         unsigned *index)
{
	unsigned k, n;

	for (k = 0; k < NKINDS; k++) {
		n = kinds[k]->count(c);
		if (i < n) {
			*index = i;
			return kinds[k];
		}
		i -= n;
	}
	return NULL;
}

int virtio_devs_announce(const struct virtio_devs_config *c, bool on_cmdline,
                         char *cmdline, size_t size,
                         struct acpi_mmio_dev *devs, unsigned *ret_n)
{
	unsigned i, n = virtio_devs_count(c);
	uint64_t base;
	uint32_t gsi;
	int r;

	if (n > VIRTIO_MMIO_MAX)
		return -ENOSPC;
	*ret_n = 0;
	for (i = 0; i < n; i++) {
		if ((r = virtio_mmio_slot(i, &base, &gsi)) < 0)
			return r;
		if (on_cmdline && (r = virtio_mmio_cmdline_append(cmdline, size, base, gsi)) < 0)
			return r;
		if (!on_cmdline)
			devs[(*ret_n)++] = (struct acpi_mmio_dev){
				.base = base, .size = VIRTIO_MMIO_SIZE, .gsi = gsi,
			};
	}
	return 0;
}

/* ---- transport glue ------------------------------------------------------- */

static void irq_raise_cb(void *opaque)
{
	struct vdev_slot *s = opaque;
	uint64_t one = 1;

	atomic_fetch_add(&s->irqs, 1);
	/* An eventfd write only fails when the counter is saturated, and then
	 * the interrupt is pending anyway. */
	if (write(s->irqfd, &one, sizeof(one)) < 0) {
	}
}

static void error_cb(void *opaque, const char *reason)
{
	guest_log(opaque, "%s", reason);
}

static void mmio_read_cb(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct vdev_slot *s = opaque;

	atomic_fetch_add(&s->mmio_exits, 1);
	if (virtio_mmio_read(&s->t, off, data, len) < 0)
		guest_log(s, "rejected %u-byte read at offset 0x%" PRIx64, len, off);
}

static void mmio_write_cb(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct vdev_slot *s = opaque;

	atomic_fetch_add(&s->mmio_exits, 1);
	if (virtio_mmio_write(&s->t, off, data, len) < 0)
		guest_log(s, "rejected %u-byte write at offset 0x%" PRIx64, len, off);
}

static const struct io_ops mmio_ops = { .read = mmio_read_cb, .write = mmio_write_cb };

static void notify_cb(void *opaque, uint32_t events)
{
	struct vdev_notify *n = opaque;
	uint64_t v;

	if (read(n->fd, &v, sizeof(v)) != sizeof(v))
		return;  /* EAGAIN: nothing new */
	atomic_fetch_add(&n->slot->notifies, 1);
	virtio_mmio_notify(&n->slot->t, n->queue);
}

static void timer_cb(void *opaque, uint32_t events)
{
	struct vdev_slot *s = opaque;

	virtio_mmio_lock(&s->t);
	s->kind->timer(s->model);
	virtio_mmio_unlock(&s->t);
}

static void backend_cb(void *opaque, uint32_t events)
{
	struct vdev_slot *s = opaque;

	virtio_mmio_lock(&s->t);
	s->kind->ready(s->model);
	virtio_mmio_unlock(&s->t);
}

/* ---- lifecycle ------------------------------------------------------------- */

static void slot_init(struct vdev_slot *s, const struct vdev_kind *kind, void *model,
                      unsigned index)
{
	struct virtio_mmio_callbacks cb = {
		.irq_raise = irq_raise_cb, .error = error_cb, .opaque = s,
	};

	s->kind = kind;
	s->model = model;
	s->irqfd = -1;
	virtio_mmio_slot(index, &s->base, &s->gsi);  /* index < VIRTIO_MMIO_MAX: checked */
	virtio_mmio_init(&s->t, kind->dev(model), &cb);
}

static void slot_teardown(struct vdev_slot *s)
{
	unsigned q;

	if (s->backend_watched)
		loop_del_fd(s->loop, s->kind->fd(s->model));
	if (s->timer_watched)
		loop_del_fd(s->loop, s->kind->timer_fd(s->model));
	for (q = 0; q < s->nnotify; q++) {
		if (s->loop)
			loop_del_fd(s->loop, s->notify[q].fd);
		close(s->notify[q].fd);
	}
	if (s->irqfd >= 0)
		close(s->irqfd);
	virtio_mmio_destroy(&s->t);
	s->kind->destroy(s->model);
}

/* fds passed by number that no device took yet (from `from` on, the failed
 * one included): the caller gave them to us, so a failed start must not
 * leak them.  Runs before the VM opens anything else, so the numbers are
 * still the caller's; closing one twice only gives EBADF. */
static void close_passed_fds(const struct virtio_devs_config *c, unsigned from)
{
	const struct vdev_kind *kind;
	unsigned i, index;
	int n;

	for (i = from; (kind = slot_kind(c, i, &index)) != NULL; i++) {
		n = kind->passed_fd ? kind->passed_fd(c, index) : -1;
		if (n > 2)
			close(n);
	}
}

int virtio_devs_create(const struct virtio_devs_config *c, const struct guest_mem *m,
                       struct virtio_devs **ret, struct vm_error *err)
{
	unsigned total = virtio_devs_count(c);
	struct virtio_devs *d;
	const struct vdev_kind *kind;
	unsigned index;
	void *model = NULL;
	int r;

	if (total > VIRTIO_MMIO_MAX)
		return vm_fail(err, VMM_EXIT_USAGE, -ENOSPC, "%u virtio devices asked for; "
		                 "use at most %d", total, VIRTIO_MMIO_MAX);
	d = calloc(1, sizeof(*d));
	if (!d) {
		close_passed_fds(c, 0);
		return vm_fail(err, VMM_EXIT_ERROR, -ENOMEM, "out of memory; free some memory");
	}
	for (d->n = 0; d->n < total; d->n++) {
		kind = slot_kind(c, d->n, &index);  /* d->n < total: not NULL */
		r = kind->make(c, index, m, &model, err);
		if (r < 0) {
			close_passed_fds(c, d->n);
			virtio_devs_destroy(d);
			return r;
		}
		slot_init(&d->slot[d->n], kind, model, d->n);
	}
	*ret = d;
	return 0;
}

static int kvm_irqfd(int vm_fd, struct vdev_slot *s)
{
	struct kvm_irqfd irqfd = { .gsi = s->gsi };

	s->irqfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->irqfd < 0)
		return -errno;
	irqfd.fd = (uint32_t)s->irqfd;
	return ioctl(vm_fd, KVM_IRQFD, &irqfd) < 0 ? -errno : 0;
}

/* One eventfd per queue, matched on the queue index written to QueueNotify:
 * KVM completes the guest's store itself, the main loop does the work. */
static int kvm_ioeventfds(int vm_fd, struct vdev_slot *s)
{
	struct kvm_ioeventfd io = {
		.addr = s->base + VIRTIO_MMIO_QUEUE_NOTIFY, .len = 4,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
	};
	unsigned q, nq = s->t.vd->ops->num_queues;

	for (q = 0; q < nq && q < VIRTIO_MAX_QUEUES; q++) {
		struct vdev_notify *n = &s->notify[q];

		n->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (n->fd < 0)
			return -errno;
		n->slot = s;
		n->queue = q;
		s->nnotify++;
		io.datamatch = q;
		io.fd = n->fd;
		if (ioctl(vm_fd, KVM_IOEVENTFD, &io) < 0)
			return -errno;
	}
	return 0;
}

static int slot_watch(struct vdev_slot *s, struct loop *loop)
{
	unsigned q;
	int r;

	s->loop = loop;
	for (q = 0; q < s->nnotify; q++)
		if ((r = loop_add_fd(loop, s->notify[q].fd, EPOLLIN, notify_cb, &s->notify[q])) < 0)
			return r;
	if (s->kind->timer_fd) {
		r = loop_add_fd(loop, s->kind->timer_fd(s->model), EPOLLIN, timer_cb, s);
		if (r < 0)
			return r;
		s->timer_watched = true;
	}
	if (!s->kind->fd)
		return 0;
	r = loop_add_fd(loop, s->kind->fd(s->model), s->kind->fd_events, backend_cb, s);
	s->backend_watched = r == 0;
	return r;
}

int virtio_devs_attach(struct virtio_devs *d, int vm_fd, struct io_bus *mmio,
                       struct loop *loop, struct vm_error *err)
{
	unsigned i;
	int r;

	for (i = 0; i < d->n; i++) {
		struct vdev_slot *s = &d->slot[i];

		if ((r = kvm_irqfd(vm_fd, s)) < 0 || (r = kvm_ioeventfds(vm_fd, s)) < 0)
			return vm_fail(err, VMM_EXIT_ERROR, r, "cannot wire virtio-%s to KVM: %s; "
			                 "check the host's KVM", s->kind->name, strerror(-r));
		if ((r = io_bus_register(mmio, s->base, VIRTIO_MMIO_SIZE, &mmio_ops, s)) < 0 ||
		    (r = slot_watch(s, loop)) < 0)
			return vm_fail(err, VMM_EXIT_ERROR, r, "cannot attach virtio-%s: %s; "
			                 "raise the open file limit", s->kind->name, strerror(-r));
	}
	return 0;
}

void virtio_devs_destroy(struct virtio_devs *d)
{
	if (!d)
		return;
	while (d->n > 0)
		slot_teardown(&d->slot[--d->n]);
	free(d);
}

/* The index-th device of a kind, or NULL. */
static struct vdev_slot *find_slot(struct virtio_devs *d, const struct vdev_kind *kind,
                                   unsigned index)
{
	for (unsigned i = 0; d && i < d->n; i++)
		if (d->slot[i].kind == kind && index-- == 0)
			return &d->slot[i];
	return NULL;
}

int virtio_devs_set_limits(struct virtio_devs *d, enum virtio_devs_kind kind, unsigned index,
                           const struct ratelimit_config *c)
{
	struct vdev_slot *s = find_slot(d, kind == VIRTIO_DEVS_DISK ? &kind_blk : &kind_net, index);
	const char *why;

	if (!s)
		return -ENODEV;
	if (ratelimit_config_check(c, &why) < 0)
		return -EINVAL;
	virtio_mmio_lock(&s->t);
	if (kind == VIRTIO_DEVS_DISK)
		virtio_blk_set_limits(s->model, c);
	else
		virtio_net_set_limits(s->model, c);
	virtio_mmio_unlock(&s->t);
	return 0;
}

void virtio_devs_rebase(struct virtio_devs *d, const char *dir)
{
	struct vdev_slot *s = d ? find_slot(d, &kind_vsock, 0) : NULL;

	if (s)
		virtio_vsock_rebase(s->model, dir);
}

int virtio_devs_set_balloon(struct virtio_devs *d, uint64_t bytes)
{
	struct vdev_slot *s = find_slot(d, &kind_balloon, 0);
	int r;

	if (!s)
		return -ENODEV;
	virtio_mmio_lock(&s->t);
	r = virtio_balloon_set_target(s->model, bytes >> VIRTIO_BALLOON_PFN_SHIFT);
	virtio_mmio_unlock(&s->t);
	return r;
}

static void blk_fill(struct virtio_devs_dev_stats *o, const struct virtio_blk *b)
{
	const struct virtio_blk_stats *st = virtio_blk_stats(b);
	const struct ratelimit *rl = virtio_blk_limiter(b);

	o->kind = VIRTIO_DEVS_DISK;
	o->rd_bytes = st->read_bytes;
	o->wr_bytes = st->write_bytes;
	o->rd_ops = st->reads;
	o->wr_ops = st->writes;
	o->flushes = st->flushes;
	o->errors = st->errors;
	o->throttled_ns = rl->throttled_ns;
	o->limits = rl->config;
}

static void net_fill(struct virtio_devs_dev_stats *o, const struct virtio_net *n)
{
	const struct virtio_net_stats *st = virtio_net_stats(n);

	o->kind = VIRTIO_DEVS_NET;
	o->rd_bytes = st->rx_bytes;
	o->wr_bytes = st->tx_bytes;
	o->rd_ops = st->rx_frames;
	o->wr_ops = st->tx_frames;
	o->errors = st->rx_dropped + st->tx_dropped;
	o->throttled_ns = virtio_net_limiter(n, false)->throttled_ns +
	                  virtio_net_limiter(n, true)->throttled_ns;
	o->limits = virtio_net_limiter(n, false)->config;
}

void virtio_devs_get_stats(struct virtio_devs *d, struct virtio_devs_stats *ret)
{
	unsigned ndisk = 0, nnet = 0;

	memset(ret, 0, sizeof(*ret));
	for (unsigned i = 0; d && i < d->n; i++) {
		struct vdev_slot *s = &d->slot[i];
		struct virtio_devs_dev_stats *o = &ret->dev[ret->n];

		virtio_mmio_lock(&s->t);
		if (s->kind == &kind_blk) {
			blk_fill(o, s->model);
			o->index = ndisk++;
			ret->n++;
		} else if (s->kind == &kind_net) {
			net_fill(o, s->model);
			o->index = nnet++;
			ret->n++;
		} else if (s->kind == &kind_balloon) {
			ret->has_balloon = true;
			ret->balloon = *virtio_balloon_stats(s->model);
			ret->balloon_max_pages = virtio_balloon_max_pages(s->model);
			virtio_balloon_request_stats(s->model);
		}
		virtio_mmio_unlock(&s->t);
	}
}

void virtio_devs_print_stats(const struct virtio_devs *d)
{
	unsigned i;

	for (i = 0; d && i < d->n; i++) {
		const struct vdev_slot *s = &d->slot[i];

		fprintf(stderr, "mvm-vmm: stats virtio-%s slot=%u mmio_exits=%lu notifies=%lu irqs=%lu",
		        s->kind->name, i, atomic_load(&s->mmio_exits), atomic_load(&s->notifies),
		        atomic_load(&s->irqs));
		if (s->kind == &kind_blk) {
			const struct virtio_blk_stats *b = virtio_blk_stats(s->model);

			fprintf(stderr, " reads=%" PRIu64 " writes=%" PRIu64 " flushes=%" PRIu64
			        " errors=%" PRIu64, b->reads, b->writes, b->flushes, b->errors);
		}
		fputc('\n', stderr);
	}
}
