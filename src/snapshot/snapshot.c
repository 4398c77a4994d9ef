/* Snapshots of a whole VM: save, open, map, apply (snapshot.h). */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/vm.h"
#include "hw/lapic.h"
#include "hw/platform_state.h"
#include "snapshot/vcpu_state.h"

#define SNAP_CONF_ID SNAP_ID("CONF")
#define SNAP_CONF_VERSION 1
#define SNAP_CPID_ID SNAP_ID("CPID")
#define SNAP_CPID_VERSION 1
#define SNAP_PLAT_ID SNAP_ID("PLAT")
#define SNAP_PLAT_VERSION 1
#define SNAP_MAX_STRING 4096
#define PAGE 4096

/* ---- the registry ---- */

int snap_register(struct snap_registry *r, const struct snap_ops *ops, void *obj, uint32_t instance)
{
	if (r->nr == r->cap) {
		int cap = r->cap ? 2 * r->cap : 16;
		struct snap_entry *e = realloc(r->e, (size_t)cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		r->e = e;
		r->cap = cap;
	}
	r->e[r->nr++] = (struct snap_entry){ .ops = ops, .obj = obj, .instance = instance };
	return 0;
}

void snap_registry_free(struct snap_registry *r)
{
	free(r->e);
	memset(r, 0, sizeof(*r));
}

/* ---- the configuration section ---- */

static void put_str(struct snap_buf *b, const char *s)
{
	size_t n = s ? strlen(s) + 1 : 0;

	snap_put_u32(b, (uint32_t)n);
	snap_put_bytes(b, s, n);
}

/* A string as written by put_str, pointing into the section: NULL for
 * none; "" on a malformed one (and *bad set). */
static const char *get_str(struct snap_cur *c, bool *bad)
{
	uint32_t n = snap_get_u32(c);
	const char *s = (const char *)c->p + c->off;

	if (!n)
		return NULL;
	if (n > SNAP_MAX_STRING || n > c->len - c->off || memchr(s, 0, n) != s + n - 1) {
		*bad = true;
		c->short_read = true;
		return "";
	}
	c->off += n;
	return s;
}

/* A count, then that many strings (at most max, none NULL). */
static int get_list(struct snap_cur *c, const char **out, int max, bool *bad)
{
	uint32_t n = snap_get_u32(c);

	if (n > (uint32_t)max) {
		*bad = true;
		return 0;
	}
	for (uint32_t i = 0; i < n; i++)
		if (!(out[i] = get_str(c, bad)))
			*bad = true;
	return (int)n;
}

static void put_config(struct snap_buf *b, const struct vm *vm)
{
	const struct vm_config *c = &vm->cfg;

	snap_put_u64(b, c->mem_size);
	snap_put_u32(b, (uint32_t)c->nr_cpus);
	put_str(b, vm->cpu->name);
	snap_put_u8(b, c->ioeventfd);
	snap_put_u32(b, (uint32_t)c->nr_rng);
	put_str(b, c->vconsole);
	snap_put_u32(b, (uint32_t)c->nr_disks);
	for (int i = 0; i < c->nr_disks; i++)
		put_str(b, c->disks[i]);
	snap_put_u32(b, (uint32_t)c->nr_nets);
	for (int i = 0; i < c->nr_nets; i++)
		put_str(b, c->nets[i]);
}

static int get_config(const struct snap_section *s, struct vm_config *vc, char *err, size_t len)
{
	struct snap_cur c;
	bool bad = false;
	uint8_t ioev;

	if (s->version != SNAP_CONF_VERSION)
		return errorf(err, len, -EINVAL, "configuration layout %u; this tarn reads %u", s->version,
			      SNAP_CONF_VERSION);
	snap_cur_init(&c, s->data, s->len);
	vc->mem_size = snap_get_u64(&c);
	vc->nr_cpus = (int)snap_get_u32(&c);
	vc->backend = get_str(&c, &bad);
	ioev = snap_get_u8(&c);
	vc->ioeventfd = ioev == 1;
	vc->nr_rng = (int)snap_get_u32(&c);
	vc->vconsole = get_str(&c, &bad);
	vc->nr_disks = get_list(&c, vc->disks, VM_MAX_DISKS, &bad);
	vc->nr_nets = get_list(&c, vc->nets, VM_MAX_NETS, &bad);
	if (bad || !snap_cur_done(&c) || !vc->backend)
		return errorf(err, len, -EINVAL, "configuration section: malformed (%zu bytes)", (size_t)s->len);
	if (vc->nr_rng > 1 || ioev > 1)
		return errorf(err, len, -EINVAL, "configuration: %d rng devices, ioeventfd %u", vc->nr_rng, ioev);
	if (vc->nr_cpus < 1 || vc->nr_cpus > VM_MAX_CPUS)
		return errorf(err, len, -EINVAL, "configuration: %d vCPUs", vc->nr_cpus);
	if (vc->mem_size < GM_MIN_RAM || (vc->mem_size & (PAGE - 1)) || vc->mem_size > (1ULL << 46))
		return errorf(err, len, -EINVAL, "configuration: memory size %llu", (unsigned long long)vc->mem_size);
	return 0;
}

/* ---- the CPUID section: the CPU the guest saw (vCPU 0's table) ---- */

static void put_cpuid(struct snap_buf *b, const struct cpuid_model *m)
{
	snap_put_u32(b, (uint32_t)m->n);
	for (int i = 0; i < m->n; i++) {
		const struct cpuid_entry *e = &m->e[i];

		snap_put_u32(b, e->function);
		snap_put_u32(b, e->index);
		snap_put_u32(b, e->flags);
		snap_put_u32(b, e->eax);
		snap_put_u32(b, e->ebx);
		snap_put_u32(b, e->ecx);
		snap_put_u32(b, e->edx);
	}
}

static int get_cpuid(const struct snap_section *s, struct cpuid_model *m, char *err, size_t len)
{
	struct snap_cur c;
	uint32_t n;

	if (s->version != SNAP_CPID_VERSION)
		return errorf(err, len, -EINVAL, "CPUID layout %u; this tarn reads %u", s->version, SNAP_CPID_VERSION);
	snap_cur_init(&c, s->data, s->len);
	n = snap_get_u32(&c);
	if (n == 0 || n > CPUID_MODEL_MAX)
		return errorf(err, len, -EINVAL, "CPUID: %u entries (1 to %d)", n, CPUID_MODEL_MAX);
	m->n = (int)n;
	for (uint32_t i = 0; i < n; i++) {
		struct cpuid_entry *e = &m->e[i];

		e->function = snap_get_u32(&c);
		e->index = snap_get_u32(&c);
		e->flags = snap_get_u32(&c);
		e->eax = snap_get_u32(&c);
		e->ebx = snap_get_u32(&c);
		e->ecx = snap_get_u32(&c);
		e->edx = snap_get_u32(&c);
		if (e->flags & ~CPUID_FLAG_INDEXED)
			return errorf(err, len, -EINVAL, "CPUID leaf %#x: flags %#x", e->function, e->flags);
	}
	if (!snap_cur_done(&c))
		return errorf(err, len, -EINVAL, "CPUID section: %zu bytes for %u entries", (size_t)s->len, n);
	return 0;
}

/* ---- the platform section ---- */

static void put_platform(struct snap_buf *b, const struct platform_state *st)
{
	snap_put_bytes(b, &st->pic, sizeof(st->pic));
	snap_put_bytes(b, &st->ioapic, sizeof(st->ioapic));
	snap_put_bytes(b, &st->pit, sizeof(st->pit));
	snap_put_u64(b, st->kvmclock_ns);
}

static void scratch_kick(void *opaque, int cpu)
{
	(void)opaque, (void)cpu;
}

/* The models' own restore checks, on scratch models, so that the KVM
 * backend refuses what the emulator refuses. */
static int platform_check(const struct platform_state *st)
{
	static const struct apic_bus_ops ops = { .kick = scratch_kick };
	struct apic_bus bus;
	struct pic pic;
	struct ioapic io;
	struct pit pit;
	int ret = apic_bus_init(&bus, &ops, NULL);

	if (!ret)
		ret = pic_init(&pic, NULL, NULL, NULL);
	if (!ret)
		ret = ioapic_init(&io, &bus, NULL, IOAPIC_DEFAULT_BASE);
	if (!ret)
		ret = pit_init(&pit, NULL, NULL, NULL);
	if (ret)
		return ret;
	if (pic_restore(&pic, &st->pic))
		ret = -1;
	else if (ioapic_restore(&io, &st->ioapic))
		ret = -2;
	else if (pit_restore(&pit, &st->pit, monotonic_ns()))
		ret = -3;
	pit_destroy(&pit);
	ioapic_destroy(&io);
	pic_destroy(&pic);
	return ret;
}

static int get_platform(const struct snap_section *s, struct platform_state *st, char *err, size_t len)
{
	static const char *const what[] = { "", "8259 PIC", "IOAPIC", "8254 PIT" };
	struct snap_cur c;
	int ret;

	if (s->version != SNAP_PLAT_VERSION)
		return errorf(err, len, -EINVAL, "platform layout %u; this tarn reads %u", s->version, SNAP_PLAT_VERSION);
	snap_cur_init(&c, s->data, s->len);
	snap_get_bytes(&c, &st->pic, sizeof(st->pic));
	snap_get_bytes(&c, &st->ioapic, sizeof(st->ioapic));
	snap_get_bytes(&c, &st->pit, sizeof(st->pit));
	st->kvmclock_ns = snap_get_u64(&c);
	if (!snap_cur_done(&c))
		return errorf(err, len, -EINVAL, "platform section: %zu bytes, layout %u has %s", (size_t)s->len,
			      s->version, c.short_read ? "more" : "fewer");
	ret = platform_check(st);
	if (ret < 0 && ret >= -3)
		return errorf(err, len, -EINVAL, "platform section: the %s state is not one it can be in", what[-ret]);
	return ret;
}

/* ---- memory ---- */

static bool page_zero(const uint8_t *p)
{
	static const uint8_t zero[PAGE];

	return !memcmp(p, zero, PAGE);
}

/* Guest RAM as laid out in the guest (the regions back to back from the
 * reservation's start), on disk when this returns (a memory file has no
 * checksum of its own: a host crash must not leave a torn one behind a
 * snapshot that was reported done). Full (diff NULL): every page, pages of
 * zeros left as holes. Diff: only the pages whose bit is set, zeros
 * written out too, since there a hole means "as in the base". */
static int write_memory(const struct vm *vm, int fd, const uint64_t *diff)
{
	const uint8_t *p = vm->mem.base;
	uint64_t size = vm->mem.ram_size;

	if (ftruncate(fd, (off_t)size))
		return -errno;
	for (uint64_t off = 0; off < size;) {
		uint64_t end = off;

		while (end < size && end - off < (8u << 20) &&
		       (diff ? diff[end / PAGE / 64] >> (end / PAGE % 64) & 1 : !page_zero(p + end)))
			end += PAGE;
		if (end == off) {
			off += PAGE;
			continue;
		}
		for (uint64_t o = off; o < end;) {
			ssize_t n = pwrite(fd, p + o, end - o, (off_t)o);

			if (n < 0)
				return -errno;
			o += (uint64_t)n;
		}
		/* Start writing back while the rest is scanned: the fsync at
		 * the end then has little left to wait for. */
		sync_file_range(fd, (off_t)off, (off_t)(end - off), SYNC_FILE_RANGE_WRITE);
		off = end;
	}
	return fsync(fd) ? -errno : 0;
}

/* The pages written since the last snapshot (or the restore), taken from
 * the backend's log and guest_mem's bitmap: *out NULL when not tracking. */
static int take_dirty(struct vm *vm, uint64_t **out)
{
	uint64_t *bits;
	int ret;

	*out = NULL;
	if (!vm->mem.dirty)
		return 0;
	bits = calloc(gm_dirty_words(&vm->mem), sizeof(uint64_t));
	if (!bits)
		return -ENOMEM;
	if ((ret = vm_dirty_take(vm, bits))) {
		free(bits);
		return ret;
	}
	*out = bits;
	return 0;
}

/* Create path's temporary twin, for rename() when complete. */
static int open_tmp(const char *path, char *tmp, size_t tmp_len)
{
	if ((size_t)snprintf(tmp, tmp_len, "%s.tmp", path) >= tmp_len)
		return -ENAMETOOLONG;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	return fd < 0 ? -errno : fd;
}

/* ---- save ---- */

/* The sections that say what the VM is: its configuration and its CPU.
 * 0, or -errno with the reason in err. */
static int write_identity(struct vm *vm, struct snap_writer *w, struct snap_buf *b, char *err, size_t len)
{
	struct cpuid_model *m;
	int ret;

	put_config(b, vm);
	ret = snap_write_section(w, SNAP_CONF_ID, 0, SNAP_CONF_VERSION, b);
	if (ret)
		return errorf(err, len, ret, "writing the state: %s", strerror(-ret));
	m = malloc(sizeof(*m));
	if (!m || vm->cpu->get_cpuid(&vm->vcpus[0], m)) {
		free(m);
		return errorf(err, len, -EIO, "cannot read vCPU 0's CPUID table");
	}
	b->len = 0;
	put_cpuid(b, m);
	free(m);
	ret = snap_write_section(w, SNAP_CPID_ID, 0, SNAP_CPID_VERSION, b);
	return ret ? errorf(err, len, ret, "writing the state: %s", strerror(-ret)) : 0;
}

static int write_sections(struct vm *vm, struct snap_writer *w, char *err, size_t len)
{
	struct snap_buf b;
	struct platform_state plat;
	int ret;

	snap_buf_init(&b);
	ret = write_identity(vm, w, &b, err, len);
	if (ret) {
		snap_buf_free(&b);
		return ret;
	}
	for (int i = 0; i < vm->nr_vcpus && !ret; i++) {
		struct x86_state st;

		ret = vm->cpu->get_state(&vm->vcpus[i], &st);
		if (ret || (st.parts & X86_STATE_ALL) != X86_STATE_ALL) {
			snap_buf_free(&b);
			return errorf(err, len, ret ? ret : -EIO, "vCPU %d: cannot read its whole state", i);
		}
		b.len = 0;
		snap_put_vcpu(&b, &st);
		ret = snap_write_section(w, SNAP_VCPU_ID, (uint32_t)i, SNAP_VCPU_VERSION, &b);
	}
	if (!ret && (ret = vm->cpu->platform_get(vm, &plat))) {
		snap_buf_free(&b);
		return errorf(err, len, ret, "interrupt controllers: %s", strerror(-ret));
	}
	if (!ret) {
		b.len = 0;
		put_platform(&b, &plat);
		ret = snap_write_section(w, SNAP_PLAT_ID, 0, SNAP_PLAT_VERSION, &b);
	}
	for (int i = 0; i < vm->state.nr && !ret; i++) {
		const struct snap_entry *e = &vm->state.e[i];

		b.len = 0;
		e->ops->save(e->obj, &b);
		ret = snap_write_section(w, e->ops->id, e->instance, e->ops->version, &b);
	}
	snap_buf_free(&b);
	return ret ? errorf(err, len, ret, "writing the state: %s", strerror(-ret)) : 0;
}

int snap_state_write(struct vm *vm, int fd, bool identity_only, char *err, size_t len)
{
	struct snap_writer w;
	struct snap_buf b;
	int ret = snap_write_begin(&w, fd);

	if (ret)
		return errorf(err, len, ret, "%s", strerror(-ret));
	if (identity_only) {
		snap_buf_init(&b);
		ret = write_identity(vm, &w, &b, err, len);
		snap_buf_free(&b);
	} else {
		ret = write_sections(vm, &w, err, len);
	}
	if (!ret && (ret = snap_write_end(&w)))
		errorf(err, len, ret, "%s", strerror(-ret));
	return ret;
}

int vm_snapshot_save(struct vm *vm, const char *path, const char *mem_path, bool diff, char *err, size_t len)
{
	char tmp[4096], mtmp[4096];
	struct snap_writer w;
	uint64_t t0 = monotonic_ns(), *dirty = NULL;
	int fd, mfd, ret;

	if (!vm_is_paused(vm))
		return errorf(err, len, -EBUSY, "the VM is not paused: pause it first");
	if (vm->mem.fd >= 0)
		return errorf(err, len, -EOPNOTSUPP, "a VM with a vhost-user NIC is not snapshotted yet (its back end "
			      "keeps the rings' positions)");
	if (diff && !vm->mem.dirty)
		return errorf(err, len, -EINVAL, "a diff snapshot needs dirty page tracking, which is off "
			      "(vm.track_dirty_pages, from the start)");
	if (diff && !vm->dirty_base)
		return errorf(err, len, -EINVAL, "a diff snapshot has no base yet: take a full snapshot first "
			      "(or restore from one)");
	if (!vm->cpu->platform_get)
		return errorf(err, len, -ENOSYS, "the %s backend cannot save its interrupt controllers",
			      vm->cpu->name);
	if (!strcmp(path, mem_path))
		return errorf(err, len, -EINVAL, "the state and memory files must differ (%s)", path);
	fd = open_tmp(path, tmp, sizeof(tmp));
	if (fd < 0)
		return errorf(err, len, fd, "%s: %s", path, strerror(-fd));
	mfd = open_tmp(mem_path, mtmp, sizeof(mtmp));
	if (mfd < 0) {
		ret = errorf(err, len, mfd, "%s: %s", mem_path, strerror(-mfd));
		goto out;
	}
	ret = snap_write_begin(&w, fd);
	if (!ret)
		ret = write_sections(vm, &w, err, len);
	else
		errorf(err, len, ret, "%s: %s", path, strerror(-ret));
	if (!ret && (ret = snap_write_end(&w)))
		errorf(err, len, ret, "%s: %s", path, strerror(-ret));
	if (!ret && (ret = take_dirty(vm, &dirty)))
		errorf(err, len, ret, "reading the dirty log: %s", strerror(-ret));
	if (!ret && (ret = write_memory(vm, mfd, diff ? dirty : NULL)))
		errorf(err, len, ret, "%s: %s", mem_path, strerror(-ret));
	if (!ret && (rename(mtmp, mem_path) || rename(tmp, path)))
		ret = errorf(err, len, -errno, "renaming into place: %s", strerror(errno));
out:
	close(fd);
	if (mfd >= 0)
		close(mfd);
	if (ret) {
		unlink(tmp);
		unlink(mtmp);
		if (dirty) /* the next snapshot's base is still the last one */
			gm_dirty_restore(&vm->mem, dirty);
	} else {
		vm->dirty_base = true;
		pr_info("snapshot: %s and %s written in %.1f ms (%s)", path, mem_path,
			(double)(monotonic_ns() - t0) / 1e6, diff ? "diff" : "full");
	}
	free(dirty);
	return ret;
}

/* ---- diff snapshots: their memory onto the base's ---- */

int snap_merge_memory(const char *diff, const char *base, uint64_t *merged, char *err, size_t len)
{
	int dfd = open(diff, O_RDONLY | O_CLOEXEC), bfd = -1, ret = 0;
	struct stat ds, bs;
	uint8_t *buf = NULL;
	off_t off = 0, end;

	*merged = 0;
	if (dfd < 0 || fstat(dfd, &ds))
		return errorf(err, len, -errno, "%s: %s", diff, strerror(errno));
	bfd = open(base, O_RDWR | O_CLOEXEC);
	if (bfd < 0 || fstat(bfd, &bs)) {
		ret = errorf(err, len, -errno, "%s: %s", base, strerror(errno));
		goto out;
	}
	if (ds.st_size != bs.st_size || ds.st_size % PAGE) {
		ret = errorf(err, len, -EINVAL, "%s has %lld bytes, %s %lld: not a diff of this base's VM", diff,
			     (long long)ds.st_size, base, (long long)bs.st_size);
		goto out;
	}
	/* A file system that cannot tell holes from data reports it all as
	 * data: copying that would write zeros over the base. */
	if ((uint64_t)ds.st_blocks * 512 < (uint64_t)ds.st_size && lseek(dfd, 0, SEEK_HOLE) >= ds.st_size) {
		ret = errorf(err, len, -EOPNOTSUPP, "%s: its file system does not report holes (SEEK_HOLE)", diff);
		goto out;
	}
	buf = malloc(1 << 20);
	if (!buf) {
		ret = errorf(err, len, -ENOMEM, "out of memory");
		goto out;
	}
	while ((off = lseek(dfd, off, SEEK_DATA)) >= 0 && off < ds.st_size) {
		end = lseek(dfd, off, SEEK_HOLE);
		if (end < 0)
			break;
		while (off < end) {
			size_t n = (size_t)(end - off < (1 << 20) ? end - off : (1 << 20));
			ssize_t r = pread(dfd, buf, n, off);

			if (r <= 0 || pwrite(bfd, buf, (size_t)r, off) != r) {
				ret = errorf(err, len, r < 0 ? -errno : -EIO, "copying at byte %lld: %s", (long long)off,
					     r < 0 ? strerror(errno) : "short read or write");
				goto out;
			}
			off += r;
			*merged += (uint64_t)r;
		}
	}
	if (off < 0 && errno != ENXIO) /* ENXIO: no data after off */
		ret = errorf(err, len, -errno, "%s: %s", diff, strerror(errno));
	else if (fsync(bfd))
		ret = errorf(err, len, -errno, "%s: %s", base, strerror(errno));
out:
	free(buf);
	close(dfd);
	if (bfd >= 0)
		close(bfd);
	return ret;
}

/* ---- restore ---- */

int snap_open_state(struct snap_image *img, int fd, struct vm_config *vc, char *err, size_t len)
{
	const struct snap_section *conf, *cpid;
	int ret;

	memset(img, 0, sizeof(*img));
	img->mem_fd = -1;
	img->open_ns = monotonic_ns();
	memset(vc, 0, sizeof(*vc));
	ret = snap_read(&img->r, fd, err, len);
	if (ret)
		return ret;
	conf = snap_find(&img->r, SNAP_CONF_ID, 0);
	cpid = snap_find(&img->r, SNAP_CPID_ID, 0);
	if (!conf || !cpid)
		ret = errorf(err, len, -EINVAL, "no %s section", conf ? "CPUID" : "configuration");
	else if (!(ret = get_config(conf, vc, err, len)))
		ret = get_cpuid(cpid, &img->cpuid, err, len);
	if (ret) {
		snap_close(img);
		return ret;
	}
	img->mem_size = vc->mem_size;
	vc->restore = img;
	return 0;
}

int snap_open(struct snap_image *img, const char *path, const char *mem_path, struct vm_config *vc, char *err,
	      size_t len)
{
	struct stat sb;
	char why[512];
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		memset(img, 0, sizeof(*img));
		img->mem_fd = -1;
		return errorf(err, len, -errno, "%s: %s", path, strerror(errno));
	}
	ret = snap_open_state(img, fd, vc, why, sizeof(why));
	close(fd);
	if (ret)
		return errorf(err, len, ret, "%s", why);
	img->mem_fd = open(mem_path, O_RDONLY | O_CLOEXEC);
	if (img->mem_fd < 0 || fstat(img->mem_fd, &sb)) {
		ret = errorf(err, len, -errno, "%s: %s", mem_path, strerror(errno));
		goto fail;
	}
	if ((uint64_t)sb.st_size != vc->mem_size) {
		ret = errorf(err, len, -EINVAL, "%s: %llu bytes, but the snapshot's VM has %llu of RAM", mem_path,
			     (unsigned long long)sb.st_size, (unsigned long long)vc->mem_size);
		goto fail;
	}
	return 0;
fail:
	snap_close(img);
	return ret;
}

void snap_close(struct snap_image *img)
{
	snap_reader_free(&img->r);
	if (img->mem_fd >= 0)
		close(img->mem_fd);
	img->mem_fd = -1;
}

int snap_map_memory(struct vm *vm, const struct snap_image *img, bool eager, char *err, size_t len)
{
	uint8_t *base = vm->mem.base;
	uint64_t size = vm->mem.ram_size;

	if (size != img->mem_size)
		return errorf(err, len, -EINVAL, "memory size %llu, memory file %llu", (unsigned long long)size,
			      (unsigned long long)img->mem_size);
	if (!eager) {
		if (mmap(base, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, img->mem_fd, 0) ==
		    MAP_FAILED)
			return errorf(err, len, -errno, "mapping the memory file: %s", strerror(errno));
		madvise(base, size, MADV_MERGEABLE);
		return 0;
	}
	for (uint64_t off = 0; off < size;) {
		ssize_t n = pread(img->mem_fd, base + off, size - off, (off_t)off);

		if (n <= 0)
			return errorf(err, len, n ? -errno : -EIO, "reading the memory file: %s",
				      n ? strerror(errno) : "it ended early");
		off += (uint64_t)n;
	}
	return 0;
}

/* Which part of st the backend refuses, for the error: the registers
 * alone, then each part on its own (the VM is torn down after). */
static const char *refused_part(struct vcpu *v, const struct x86_state *st)
{
	static const struct {
		uint32_t part;
		const char *name;
	} parts[] = { { X86_STATE_FPU, "x87/SSE state" }, { X86_STATE_DEBUG, "debug registers" },
		      { X86_STATE_LAPIC, "local APIC" },   { X86_STATE_MSR, "MSRs" },
		      { X86_STATE_EVENTS, "run state and pending events" } };
	struct x86_state t = *st;

	t.parts = 0;
	if (v->vm->cpu->set_state(v, &t))
		return "registers";
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		t.parts = parts[i].part | (parts[i].part == X86_STATE_MSR ? X86_STATE_LAPIC : 0);
		if (v->vm->cpu->set_state(v, &t))
			return parts[i].name;
	}
	return "state";
}

int snap_apply(struct vm *vm, const struct snap_image *img, char *err, size_t len)
{
	const struct snap_reader *r = &img->r;
	struct platform_state plat;
	const struct snap_section *s;
	uint32_t used = 3; /* CONF, CPID, PLAT */
	char why[256];
	int ret;

	if (!vm->cpu->platform_set)
		return errorf(err, len, -ENOSYS, "the %s backend cannot restore interrupt controllers", vm->cpu->name);
	for (int i = 0; i < vm->nr_vcpus; i++, used++) {
		struct x86_state st;

		if (!(s = snap_find(r, SNAP_VCPU_ID, (uint32_t)i)))
			return errorf(err, len, -EINVAL, "no state for vCPU %d", i);
		ret = snap_get_vcpu(s->data, s->len, s->version, &st, why, sizeof(why));
		if (ret)
			return errorf(err, len, ret, "vCPU %d: %s", i, why);
		ret = vm->cpu->set_state(&vm->vcpus[i], &st);
		if (ret == -EOPNOTSUPP)
			return errorf(err, len, ret,
				      "vCPU %d was delivering an exception or an interrupt from the PIC, which the %s "
				      "backend cannot take over (snapshot it again)",
				      i, vm->cpu->name);
		if (ret)
			return errorf(err, len, ret, "vCPU %d: the %s backend refuses its %s", i, vm->cpu->name,
				      refused_part(&vm->vcpus[i], &st));
	}
	if (snap_find(r, SNAP_VCPU_ID, (uint32_t)vm->nr_vcpus))
		return errorf(err, len, -EINVAL, "more vCPU states than the configuration's %d vCPUs", vm->nr_vcpus);
	if (!(s = snap_find(r, SNAP_PLAT_ID, 0)))
		return errorf(err, len, -EINVAL, "no state for the interrupt controllers");
	if ((ret = get_platform(s, &plat, err, len)))
		return ret;
	if ((ret = vm->cpu->platform_set(vm, &plat)))
		return errorf(err, len, ret, "the %s backend refuses the interrupt controllers' state", vm->cpu->name);
	for (int i = 0; i < vm->state.nr; i++, used++) {
		const struct snap_entry *e = &vm->state.e[i];
		struct snap_cur c;

		if (!(s = snap_find(r, e->ops->id, e->instance)))
			return errorf(err, len, -EINVAL, "no state for %s %u", e->ops->name, e->instance);
		if (s->version != e->ops->version)
			return errorf(err, len, -EINVAL, "%s %u: state layout %u; this tarn reads %u", e->ops->name,
				      e->instance, s->version, e->ops->version);
		snap_cur_init(&c, s->data, s->len);
		ret = e->ops->restore(e->obj, &c, why, sizeof(why));
		if (!ret && !snap_cur_done(&c))
			ret = errorf(why, sizeof(why), -EINVAL, "%zu bytes, layout %u has %s", (size_t)s->len,
				     s->version, c.short_read ? "more" : "fewer");
		if (ret)
			return errorf(err, len, ret, "%s %u: %s", e->ops->name, e->instance, why);
	}
	if (used != r->nr)
		return errorf(err, len, -EINVAL, "%u sections belong to no part of this VM (a device the configuration "
			      "does not have)", r->nr - used);
	return 0;
}
