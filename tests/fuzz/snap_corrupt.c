/* snap_corrupt STATE MEM [COUNT [SEED]]: corrupt a real snapshot COUNT
 * times (default 10000) and restore each under the emulator, built with
 * ASan and UBSan (tests/fuzz/fuzz.mk). tests/integration/snapshot.sh runs
 * it on the snapshot of a Linux guest with disk and network it has just
 * made (and from within the network namespace that holds its tap).
 *
 * The corruptions, in turn:
 *   flip       one bit of one byte, anywhere
 *   cut        the file cut short at a random length
 *   version    another format version (header checksum made right)
 *   length     a section's length changed (its checksum made right)
 *   invalid    a field set to a value no machine can be in, checksum made
 *              right: CR0.PG without PE, EFER.LMA without LME, RFLAGS bit 1
 *              clear, a CR4 reserved bit, an interrupt-in-delivery flag of
 *              2, a queue's next index beyond the ring, a queue size above
 *              the device's, a virtio status bit nobody defined, a PIC
 *              priority of 9, a PIT mode of 7, one vCPU more than the
 *              configuration, a memory size the memory file does not have
 *   noise      random bytes of a section changed, checksum made right
 * Each but noise must be refused, with a reason; noise may be refused or
 * restore (a register's value changed is still a machine), and then the VM
 * is torn down again. Nothing may crash or leak. Prints the tally per kind;
 * exits 1 when a corruption was taken that must not be. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/vm.h"
#include "snapshot/snapshot.h"

enum kind { K_FLIP, K_CUT, K_VERSION, K_LENGTH, K_INVALID, K_NOISE, K_NR };
static const char *const kind_name[K_NR] = { "flip", "cut", "version", "length", "invalid", "noise" };

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static uint8_t *orig;
static size_t orig_len;
static struct snap_reader layout; /* the sections of the original */

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static void fix_header(uint8_t *b)
{
	put32(b + 28, crc32c(0, b, 28));
}

/* Section i's data in b (a copy of the original, same layout). */
static uint8_t *data_of(uint8_t *b, uint32_t i)
{
	return b + (layout.s[i].data - layout.buf);
}

static void fix_section(uint8_t *b, uint32_t i, uint64_t len)
{
	uint8_t *d = data_of(b, i);

	put32(d + ((len + 7) & ~7ULL), crc32c(0, d - SNAP_SECTION_HEADER_SIZE, SNAP_SECTION_HEADER_SIZE + len));
}

static int find(uint32_t id, uint32_t instance)
{
	for (uint32_t i = 0; i < layout.nr; i++)
		if (layout.s[i].id == id && layout.s[i].instance == instance)
			return (int)i;
	return -1;
}

/* Offsets in the sections' layouts (docs/snapshot.md). */
#define VCPU_RFLAGS 136
#define VCPU_CR0 300 /* after 16 GPRs, RIP, RFLAGS, 8 segments of 17 bytes, GDTR, IDTR */
#define VCPU_CR4 324
#define VCPU_EFER 340
#define VIRT_STATUS 20
#define VIRT_QUEUE0 24
#define VQ_SIZE 0
#define VQ_ENABLED 4
#define VQ_LAST_AVAIL 32
#define PLAT_PIC_PRIORITY 5
#define PLAT_PIT_MODE0 (32 + 208 + 13)

/* One invalid field, by number; false when the snapshot has no such part. */
static bool make_invalid(uint8_t *b, unsigned which, const char **want)
{
	int v = find(SNAP_ID("VCPU"), 0), q = -1, p = find(SNAP_ID("PLAT"), 0), c = find(SNAP_ID("CONF"), 0);
	uint8_t *d;

	for (uint32_t i = 0; i < layout.nr && q < 0; i++)
		if (layout.s[i].id == SNAP_ID("VIRT") && data_of(orig, i)[VIRT_QUEUE0 + VQ_ENABLED])
			q = (int)i;
	switch (which) {
	case 0: case 1: case 2: case 3: case 4:
		d = data_of(b, (uint32_t)v);
		if (which == 0)
			put64(d + VCPU_CR0, 0x80000000); /* PG without PE */
		else if (which == 1)
			put64(d + VCPU_EFER, 0x400); /* LMA alone */
		else if (which == 2)
			put64(d + VCPU_RFLAGS, 0);
		else if (which == 3)
			put64(d + VCPU_CR4, 1ULL << 40);
		else
			d[layout.s[v].len - 14 + 7] = 2; /* irq_injected */
		fix_section(b, (uint32_t)v, layout.s[v].len);
		*want = "vCPU";
		return true;
	case 5: case 6: case 7:
		if (q < 0)
			return false;
		d = data_of(b, (uint32_t)q);
		if (which == 5)
			d[VIRT_QUEUE0 + VQ_LAST_AVAIL] ^= 0x80, d[VIRT_QUEUE0 + VQ_LAST_AVAIL + 1] ^= 0x40;
		else if (which == 6)
			d[VIRT_QUEUE0 + VQ_SIZE + 1] = 0x80; /* 32768 + low byte */
		else
			d[VIRT_STATUS] |= 0x10; /* undefined status bit */
		fix_section(b, (uint32_t)q, layout.s[q].len);
		*want = "virtio";
		return true;
	case 8: case 9:
		d = data_of(b, (uint32_t)p);
		d[which == 8 ? PLAT_PIC_PRIORITY : PLAT_PIT_MODE0] = which == 8 ? 9 : 7;
		fix_section(b, (uint32_t)p, layout.s[p].len);
		*want = which == 8 ? "PIC" : "PIT";
		return true;
	case 10: case 11:
		d = data_of(b, (uint32_t)c);
		if (which == 10) {
			uint32_t n;

			memcpy(&n, d + 8, 4);
			put32(d + 8, n + 1);
			*want = "vCPU";
		} else {
			uint64_t m;

			memcpy(&m, d, 8);
			put64(d, m + (1 << 20));
			*want = "bytes";
		}
		fix_section(b, (uint32_t)c, layout.s[c].len);
		return true;
	}
	return false;
}

static int write_file(const char *path, const uint8_t *b, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	int ok = fd >= 0 && write(fd, b, len) == (ssize_t)len;

	if (fd >= 0)
		close(fd);
	return ok ? 0 : -1;
}

/* Restore path/mem under the emulator: 0 taken (and torn down), else
 * refused with the reason in err. */
static int try_restore(const char *path, const char *mem, int devnull, char *err, size_t len)
{
	struct snap_image *img = malloc(sizeof(*img));
	struct vm_config vc;
	struct vm *vm;
	int ret;

	if (!img)
		abort();
	err[0] = 0;
	ret = snap_open(img, path, mem, &vc, err, len);
	if (!ret) {
		vc.backend = "emu";
		vc.console_in = -1;
		vc.console_out = devnull;
		ret = vm_create(&vm, &vc, err, len);
		if (!ret)
			vm_destroy(vm);
		snap_close(img);
	}
	free(img);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned long count = argc > 3 ? strtoul(argv[3], NULL, 0) : 10000;
	unsigned long refused[K_NR] = { 0 }, taken[K_NR] = { 0 }, bad = 0;
	char tmp[] = "/tmp/snap-corrupt-XXXXXX", path[64], err[512];
	int fd, devnull = open("/dev/null", O_WRONLY);
	uint8_t *b;

	if (argc < 3) {
		fprintf(stderr, "usage: snap_corrupt STATE MEM [COUNT [SEED]]\n");
		return 2;
	}
	rng_state = argc > 4 ? strtoull(argv[4], NULL, 0) : 0x5eed5eedULL;
	log_threshold = LOG_ERR; /* the refusals are expected: only errors */
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || snap_read(&layout, fd, err, sizeof(err))) {
		fprintf(stderr, "snap_corrupt: %s: %s\n", argv[1], fd < 0 ? strerror(errno) : err);
		return 2;
	}
	orig = layout.buf;
	orig_len = layout.size;
	if (!mkdtemp(tmp))
		return 2;
	snprintf(path, sizeof(path), "%s/state", tmp);
	b = malloc(orig_len);
	if (!b)
		return 2;
	for (unsigned long n = 0; n < count; n++) {
		enum kind k = n % 10 < 4 ? K_FLIP : n % 10 < 6 ? K_CUT : n % 10 == 6 ? K_NOISE
			      : n % 10 == 7 ? K_INVALID : n % 20 == 8 ? K_VERSION : n % 20 == 18 ? K_LENGTH
			      : K_NOISE;
		size_t len = orig_len;
		const char *want = NULL;
		uint32_t s = (uint32_t)(rnd() % layout.nr);
		int ret;

		memcpy(b, orig, orig_len);
		switch (k) {
		case K_FLIP:
			b[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case K_CUT:
			len = rnd() % len;
			break;
		case K_VERSION:
			put32(b + 8, 2 + (uint32_t)(rnd() % 100));
			fix_header(b);
			want = "version";
			break;
		case K_LENGTH: {
			uint8_t *h = data_of(b, s) - SNAP_SECTION_HEADER_SIZE;
			uint64_t l = layout.s[s].len + 1 + rnd() % 64;

			if (rnd() & 1)
				l = layout.s[s].len ? layout.s[s].len - 1 - rnd() % layout.s[s].len : 1;
			put64(h + 16, l);
			if (l <= layout.s[s].len)
				fix_section(b, s, l);
			break;
		}
		case K_INVALID:
			if (!make_invalid(b, (unsigned)((n / 10) % 12), &want))
				continue;
			break;
		case K_NOISE:
			for (int i = 0, m = 1 + (int)(rnd() % 4); i < m && layout.s[s].len; i++)
				data_of(b, s)[rnd() % layout.s[s].len] = (uint8_t)rnd();
			fix_section(b, s, layout.s[s].len);
			break;
		default:
			break;
		}
		if (write_file(path, b, len))
			return 2;
		ret = try_restore(path, argv[2], devnull, err, sizeof(err));
		if (ret) {
			refused[k]++;
			if (!err[0] || (want && !strstr(err, want))) {
				if (bad++ < 10)
					printf("# %s #%lu refused without the reason (want '%s'): '%s'\n", kind_name[k], n,
					       want ? want : "any", err);
			}
		} else {
			taken[k]++;
			if (k != K_NOISE && bad++ < 10)
				printf("# %s #%lu was restored\n", kind_name[k], n);
		}
	}
	for (int k = 0; k < K_NR; k++)
		printf("# %-8s %6lu refused, %6lu restored\n", kind_name[k], refused[k], taken[k]);
	unlink(path);
	rmdir(tmp);
	free(b);
	snap_reader_free(&layout);
	close(devnull);
	printf("# %lu corrupted snapshots, %lu handled wrongly\n", count, bad);
	return bad ? 1 : 0;
}
