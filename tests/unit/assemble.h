/* For unit tests that run machine code: assemble Intel-syntax x86-64
 * source with binutils' `as` at test time. Included by one test file each. */
#ifndef TARN_TEST_ASSEMBLE_H
#define TARN_TEST_ASSEMBLE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Assemble src into buf (at most max bytes of .text); returns the size, 0
 * when `as` failed or is missing (its errors go to stderr). */
static size_t assemble(const char *src, uint8_t *buf, size_t max)
{
	char dir[] = "/tmp/tarn-asm-XXXXXX", cmd[512], path[256];
	FILE *f;
	size_t n;

	if (!mkdtemp(dir))
		fail_msg("mkdtemp: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/a.s", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, ".intel_syntax noprefix\n.code64\n%s\n", src);
	fclose(f);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && as --64 -o a.o a.s 2>err.txt && objcopy -O binary -j .text a.o a.bin", dir);
	if (system(cmd) != 0) {
		snprintf(cmd, sizeof(cmd), "cat %s/err.txt >&2; rm -rf %s", dir, dir);
		(void)!system(cmd);
		return 0;
	}
	snprintf(path, sizeof(path), "%s/a.bin", dir);
	f = fopen(path, "rb");
	assert_non_null(f);
	n = fread(buf, 1, max, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
	return n;
}

#endif
