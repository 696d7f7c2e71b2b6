/* SPDX-License-Identifier: MIT */
/*
 * A guest probe for the thread-local storage fault of hosts that emulate
 * guest kernel code (docs/guests.md): forks and execs itself N times
 * (PAR at a time); each child checks, straight after exec and then after
 * ROUNDS sleeps and yields, that %fs:0 equals the FS base the kernel holds
 * (arch_prctl), that a .tdata variable has its initial value, and that a
 * fresh mapping at a fixed address and a heap block keep what it wrote.
 * A child that dies before main() (in libc's startup) counts as bad too.
 *
 *   gcc -O2 -static -o DIR/bin/tlsprobe guest/tools/tlsprobe.c
 *   guest/build-rootfs.sh --add DIR root.img
 *   (guest) tlsprobe [N [PAR [ROUNDS]]]   -> PROBE-RESULT children N bad B
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static __thread volatile long tv;
static __thread volatile long tinit = 0x1234567;  /* .tdata: copied at exec */

static int child(long tag, int rounds)
{
	volatile long *p = mmap((void *)0x7e0000000000UL, 4096, PROT_READ | PROT_WRITE,
	                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	unsigned long fsb = 0, self, deref, pv;
	long t;
	int i;

	volatile long *heap = malloc(64 * 1024);   /* brk, like libc's TLS block */

	if (p == MAP_FAILED || !heap)
		return 2;
	if (tinit != 0x1234567) {
		printf("PROBE-BAD tag %ld: .tdata variable reads %#lx at start\n", tag, (long)tinit);
		return 1;
	}
	heap[0] = tag;
	heap[8191] = tag;
	p[0] = tag;
	tv = tag;
	for (i = 0; i < rounds; i++) {
		if (i == 0)
			;       /* first look: straight after exec */
		else if (i & 1)
			sched_yield();
		else
			usleep(200);
		syscall(SYS_arch_prctl, ARCH_GET_FS, &fsb);
		__asm__ volatile("mov %%fs:0, %0" : "=r"(self));
		deref = *(volatile unsigned long *)fsb;
		t = tv;
		pv = p[0];
		if (heap[0] != tag || heap[8191] != tag || tinit != 0x1234567) {
			printf("PROBE-BAD tag %ld round %d: heap %ld %ld tdata %#lx\n", tag, i,
			       (long)heap[0], (long)heap[8191], (long)tinit);
			return 1;
		}
		if (self != fsb || deref != fsb || t != tag || (long)pv != tag) {
			printf("PROBE-BAD tag %ld round %d: fsbase %#lx %%fs:0 %#lx *fsbase %#lx tls %ld page %ld\n",
			       tag, i, fsb, self, deref, t, (long)pv);
			fflush(stdout);
			return 1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 40, par = argc > 2 ? atoi(argv[2]) : 4;
	int rounds = argc > 3 ? atoi(argv[3]) : 20, bad = 0, done = 0, st, i;

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 3 && !strcmp(argv[1], "-c"))
		return child(atol(argv[2]), atoi(argv[3]));
	for (i = 0; i < n; i++) {
		pid_t pid = fork();

		if (pid == 0) {
			char tag[16], r[16];

			snprintf(tag, sizeof(tag), "%d", 1000 + i);
			snprintf(r, sizeof(r), "%d", rounds);
			execl("/proc/self/exe", "tlsprobe", "-c", tag, r, (char *)NULL);
			_exit(3);
		}
		if (i + 1 >= par) {
			wait(&st);
			done++;
			bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
		}
	}
	while (wait(&st) > 0) {
		done++;
		bad += !WIFEXITED(st) || WEXITSTATUS(st) != 0;
	}
	printf("PROBE-RESULT children %d bad %d\n", done, bad);
	return bad != 0;
}
