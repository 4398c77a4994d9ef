/* libFuzzer harness for the snapshot loader (snapshot/snapfile.c, snapshot.c,
 * vcpu_state.c, and every component's restore): the input is the state file,
 * the whole of it. It is opened with snap_open and, when that takes it, a VM
 * is built from it under the emulator (vm_create with restore: every section
 * applied, the VM left paused; no vCPU runs) and destroyed. What is looked
 * for: reads and writes out of bounds, leaks (ASan), undefined behaviour
 * (UBSan), crashes, hangs, a refusal without a reason, and file descriptors
 * left open.
 *
 * Memory: the memory file is a sparse memfd as long as the input's CONF
 * section asks (its first 8 bytes), up to MAX_MEM; an input asking for more
 * gets an empty one and is refused for it, as a restore with the wrong
 * memory file is.
 *
 * The host stays out of reach: the CONF section's device option strings name
 * host files and network devices (--disk PATH opens PATH for writing, --net
 * tap=NAME can create a tap, --net fd=N takes over this process's fd N,
 * --vconsole file=PATH creates PATH). Like `tarn run --restore --disk
 * --net`, the harness gives each device a stand-in and keeps the options
 * after it: a disk is a memfd of its own (1 MiB of zeros: never qcow2, so no
 * backing file is opened), a NIC one end of a datagram socketpair at a fixed
 * high fd, a console file /dev/null. `--vconsole pty` is kept (it opens a
 * pseudo-terminal pair and closes it again). A NIC's rebuilt option string
 * that does not fit is not tried (cutting it could name another fd).
 *
 * Mutations: libFuzzer's own, then the checksums are made right (see
 * LLVMFuzzerCustomMutator), or else nearly every mutation would stop at a
 * checksum.
 *
 * The seeds (tests/fuzz/corpus/snapshot/, grown by `make fuzz-long`) were
 * taken with `tarn ctl snapshot` of micro-guests (g_spin: 1-3 vCPUs, the
 * virtio devices on and off, one under KVM, also with the emulator's CPUID
 * table put in) and of the default Linux guest at work (2 vCPUs, a disk,
 * two NICs, rng, console); in one copy of the Linux one the enabled queues'
 * ring positions are zeroed, as the indices in this harness's memory of
 * zeros are, so that it restores whole.
 *
 * FUZZ_VERBOSE=1 prints each input's outcome: "restored" or the refusal. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/vm.h"
#include "snapshot/snapshot.h"

#define CHECK(x)                                                              \
	do {                                                                  \
		if (!(x))                                                     \
			__builtin_trap();                                     \
	} while (0)

#define MAX_MEM (512ULL << 20) /* the default guest's snapshots are 256 MiB */
#define DISK_SIZE (1 << 20)
#define NET_FD 900 /* + NIC index: far above the fds the process opens, below the usual limit of 1024 */
#define SPEC_LEN 4200 /* a CONF string (at most 4096) with its stand-in */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned seed);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max);

static int devnull = -1, disk_fd[VM_MAX_DISKS];
static bool verbose; /* FUZZ_VERBOSE=1: each input's outcome on stderr */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_threshold = LOG_ERR; /* refusals are expected: only errors */
	verbose = getenv("FUZZ_VERBOSE");
	devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	CHECK(devnull >= 0);
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		disk_fd[i] = memfd_create("fuzz-snapshot-disk", MFD_CLOEXEC);
		CHECK(disk_fd[i] >= 0 && !ftruncate(disk_fd[i], DISK_SIZE));
	}
	return 0;
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

/* Make a mutated input's checksums right: every section's, as far as the
 * sections can be walked by their lengths, and the header's, after its
 * length (and, when the walk reached the end, its count) are made right. */
static void fix_checksums(uint8_t *d, size_t size)
{
	size_t off = SNAP_HEADER_SIZE;
	uint64_t len, total;
	uint32_t n = 0;

	if (size < SNAP_HEADER_SIZE)
		return;
	while (size - off >= SNAP_SECTION_HEADER_SIZE) {
		memcpy(&len, d + off + 16, 8);
		if (len > size - off - SNAP_SECTION_HEADER_SIZE)
			break;
		total = SNAP_SECTION_HEADER_SIZE + ((len + 7) & ~7ULL) + 8;
		if (total > size - off)
			break;
		put32(d + off + total - 8, crc32c(0, d + off, SNAP_SECTION_HEADER_SIZE + len));
		off += total;
		n++;
	}
	if (off == size)
		put32(d + 12, n);
	total = size;
	memcpy(d + 16, &total, 8);
	put32(d + 28, crc32c(0, d, 28));
}

/* libFuzzer's mutations, then the checksums made right (but in one input in
 * eight), so that the mutations reach past snap_read into the sections'
 * fields; the inputs stay state files tarn itself reads the same way. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max, unsigned seed)
{
	size = LLVMFuzzerMutate(data, size, max);
	if (seed % 8)
		fix_checksums(data, size);
	return size;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	CHECK(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* The memory size the input's CONF section asks for, 0 when it has none
 * this harness gives (snap_open then refuses the empty memory file). */
static uint64_t conf_mem_size(int fd)
{
	struct snap_reader r;
	const struct snap_section *conf;
	uint64_t mem = 0;
	char err[256];

	if (snap_read(&r, fd, err, sizeof(err)))
		return 0;
	conf = snap_find(&r, SNAP_ID("CONF"), 0);
	if (conf && conf->len >= 8)
		memcpy(&mem, conf->data, 8);
	snap_reader_free(&r);
	return mem <= MAX_MEM && !(mem & 4095) ? mem : 0;
}

/* The part of a device option string after its first ',' (or ""). */
static const char *spec_options(const char *spec)
{
	const char *comma = strchr(spec, ',');

	return comma ? comma : "";
}

/* NIC i's option string with its backend (tap=, fd=) replaced by fd=NET_FD+i.
 * false when the result does not fit. */
static bool net_spec(char *out, size_t len, const char *spec, int i)
{
	size_t n = 0;

	out[0] = 0;
	while (*spec) {
		size_t tok = strcspn(spec, ",");
		int w;

		if (!strncmp(spec, "tap=", 4) || !strncmp(spec, "fd=", 3))
			w = snprintf(out + n, len - n, "%sfd=%d", n ? "," : "", NET_FD + i);
		else
			w = snprintf(out + n, len - n, "%s%.*s", n ? "," : "", (int)tok, spec);
		if (w < 0 || (size_t)w >= len - n)
			return false;
		n += (size_t)w;
		spec += tok + (spec[tok] == ',');
	}
	return true;
}

/* The stand-ins for the devices (see the top): false when a NIC's option
 * string does not fit. */
static bool stand_ins(struct vm_config *vc, char disks[][SPEC_LEN], char nets[][SPEC_LEN], char *con)
{
	for (int i = 0; i < vc->nr_disks; i++) {
		snprintf(disks[i], SPEC_LEN, "/proc/self/fd/%d%s", disk_fd[i], spec_options(vc->disks[i]));
		vc->disks[i] = disks[i];
	}
	for (int i = 0; i < vc->nr_nets; i++) {
		int sv[2];

		if (!net_spec(nets[i], SPEC_LEN, vc->nets[i], i))
			return false;
		vc->nets[i] = nets[i];
		CHECK(!socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv));
		CHECK(dup2(sv[0], NET_FD + i) == NET_FD + i);
		close(sv[0]);
		close(sv[1]); /* nothing is sent: no vCPU runs */
	}
	if (vc->vconsole && !strncmp(vc->vconsole, "file=", 5)) {
		strcpy(con, "file=/dev/null");
		vc->vconsole = con;
	}
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char disks[VM_MAX_DISKS][SPEC_LEN], nets[VM_MAX_NETS][SPEC_LEN], con[32];
	struct snap_image *img = malloc(sizeof(*img));
	char state[64], mem[64], err[512] = "";
	int fds = count_fds();
	int sfd = memfd_create("fuzz-snapshot-state", MFD_CLOEXEC);
	int mfd = memfd_create("fuzz-snapshot-mem", MFD_CLOEXEC);
	struct vm_config vc;
	struct vm *vm;

	CHECK(img && sfd >= 0 && mfd >= 0);
	CHECK(write(sfd, data, size) == (ssize_t)size);
	CHECK(!ftruncate(mfd, (off_t)conf_mem_size(sfd)));
	snprintf(state, sizeof(state), "/proc/self/fd/%d", sfd);
	snprintf(mem, sizeof(mem), "/proc/self/fd/%d", mfd);
	if (snap_open(img, state, mem, &vc, err, sizeof(err))) {
		CHECK(err[0]); /* a refusal says why */
		goto out;
	}
	if (!stand_ins(&vc, disks, nets, con)) {
		snprintf(err, sizeof(err), "not tried: a NIC's options are too long with its stand-in");
	} else {
		vc.backend = "emu";
		vc.console_in = -1;
		vc.console_out = devnull;
		if (!vm_create(&vm, &vc, err, sizeof(err)))
			vm_destroy(vm);
		else
			CHECK(err[0]);
	}
	snap_close(img);
	/* A NIC that opened its fd closed it again; one that did not left it. */
	for (int i = 0; i < VM_MAX_NETS; i++)
		close(NET_FD + i);
out:
	free(img);
	close(sfd);
	close(mfd);
	if (verbose)
		fprintf(stderr, "fuzz_snapshot: %s\n", err[0] ? err : "restored");
	CHECK(count_fds() == fds); /* nothing the restore opened is left open */
	return 0;
}
