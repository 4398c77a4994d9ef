/* For unit tests that run machine code: assemble Intel-syntax x86-64
 * source with binutils' `as` at test time, and map it for the host CPU to
 * run. Included by one test file each, after unit.h. */
#ifndef TARN_TEST_ASSEMBLE_H
#define TARN_TEST_ASSEMBLE_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* Assemble src into buf (at most max bytes of .text); returns the size.
 * Anything that stops it fails the test, with the assembler's messages:
 * a missing `as` too, since make setup installs it (build-essential) and a
 * test that skipped then would hide a typo in its own code as well. */
static size_t assemble(const char *src, uint8_t *buf, size_t max)
{
	char dir[] = "/tmp/tarn-asm-XXXXXX", cmd[512], path[256], err[2048];
	FILE *f;
	size_t n = 0, elen = 0;
	int st;
	bool more = false;

	if (!mkdtemp(dir))
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/a.s", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, ".intel_syntax noprefix\n.code64\n%s\n", src);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && as --64 -o a.o a.s 2>err.txt && objcopy -O binary -j .text a.o a.bin 2>>err.txt", dir);
	st = system(cmd);
	snprintf(path, sizeof(path), "%s/err.txt", dir);
	f = fopen(path, "r");
	if (f) {
		elen = fread(err, 1, sizeof(err) - 1, f);
		fclose(f);
	}
	err[elen] = '\0';
	if (st == 0) {
		snprintf(path, sizeof(path), "%s/a.bin", dir);
		f = fopen(path, "rb");
		if (f) {
			n = fread(buf, 1, max, f);
			more = fgetc(f) != EOF;
			fclose(f);
		}
	}
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
	if (st != 0 && WIFEXITED(st) && WEXITSTATUS(st) == 127)
		fail_msg("`as` or `objcopy` (binutils) is missing: make setup installs it\n%s", err);
	if (st != 0)
		fail_msg("cannot assemble the test code (exit status %d):\n%s", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
			 err);
	if (!n || more)
		fail_msg("the assembled code is %s (at most %zu bytes fit)", n ? "too large" : "empty", max);
	return n;
}

/* A writable, executable mapping of len bytes for running test code on the
 * host CPU, the reference the emulator is compared with. A W^X policy may
 * refuse it (SELinux execmem, systemd's MemoryDenyWriteExecute, prctl
 * PR_SET_MDWE, PaX): this host cannot run the reference then, and the test
 * skips, saying so. Any other error fails it. */
static void *host_exec_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int e = errno;

	if (p == MAP_FAILED && (e == EACCES || e == EPERM))
		SKIP_BECAUSE("this host refuses a writable executable mapping for the host reference run: %s "
			     "(a W^X policy: SELinux execmem, MemoryDenyWriteExecute, PR_SET_MDWE)", strerror(e));
	if (p == MAP_FAILED)
		fail_msg("mmap of %zu bytes, writable and executable: %s", len, strerror(e));
	return p;
}

#endif
