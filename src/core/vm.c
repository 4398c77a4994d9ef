/* A VM: build it from a config, run it, tear it down. */
#include "core/vm.h"

#include <errno.h>
#include <stddef.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "arch/x86/boot.h"
#include "arch/x86/cpuid.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/vcpu.h"
#include "hw/acpi_pm.h"
#include "hw/legacy.h"
#include "hw/uart8250.h"
#include "pci/pci.h"
#include "virtio/devices.h"
#include "virtio/net_backend.h"
#include "virtio/virtio_pci.h"

#define VM_MAX_VIRTIO (2 + VM_MAX_DISKS + VM_MAX_NETS)

struct vm_devices {
	struct uart8250 com1;
	struct i8042 kbc;
	struct cmos_rtc rtc;
	struct acpi_pm pm;
	struct pci_root pci;
	struct virtio_dev *virtio[VM_MAX_VIRTIO];
	int nr_virtio;
};

static const struct devctx_ops vm_devctx_ops;

static int vm_check_config(const struct vm_config *cfg, char *err, size_t len)
{
	struct sysinfo si;
	uint64_t host;

	if (!cfg->kernel && !cfg->restore)
		return errorf(err, len, -EINVAL, "no kernel given (--kernel PATH)");
	if (cfg->nr_cpus < 1 || cfg->nr_cpus > VM_MAX_CPUS)
		return errorf(err, len, -EINVAL, "--cpus %d: must be between 1 and %d",
			       cfg->nr_cpus, VM_MAX_CPUS);
	if (cfg->mem_size < GM_MIN_RAM)
		return errorf(err, len, -EINVAL, "--mem %lluM: memory must be at least %llu MiB",
			       (unsigned long long)(cfg->mem_size >> 20),
			       (unsigned long long)(GM_MIN_RAM >> 20));
	if (cfg->mem_size & 0xfff)
		return errorf(err, len, -EINVAL, "--mem %lluK: must be a whole number of 4 KiB pages",
			       (unsigned long long)(cfg->mem_size >> 10));
	if (sysinfo(&si) == 0) {
		host = ((uint64_t)si.totalram + si.totalswap) * si.mem_unit;
		if (cfg->mem_size > host)
			return errorf(err, len, -ENOMEM,
				       "--mem %lluM: larger than this host can give (%llu MiB of RAM and swap)",
				       (unsigned long long)(cfg->mem_size >> 20),
				       (unsigned long long)(host >> 20));
	}
	return 0;
}

static int vm_add_virtio(struct vm *vm, virtio_create_fn *create, const char *spec, char *err, size_t len)
{
	struct vm_devices *d = vm->devs;

	if (d->nr_virtio == VM_MAX_VIRTIO)
		return errorf(err, len, -ENOSPC, "too many virtio devices (at most %d)", VM_MAX_VIRTIO);
	return create(&vm->dev, spec, &d->virtio[d->nr_virtio++], err, len);
}

/* A NIC whose rings a vhost-user back end serves (net_vhost.c): guest
 * memory must then be shared, and the VM cannot be snapshotted. */
static bool net_is_vhost(const char *spec)
{
	return !strncmp(spec, "vhost-user=", 11);
}

static bool any_vhost(const struct vm_config *c)
{
	for (int i = 0; i < c->nr_nets; i++)
		if (net_is_vhost(c->nets[i]))
			return true;
	return false;
}

/* The virtio devices, in a fixed order so that PCI slots are stable. */
static int vm_add_virtio_devices(struct vm *vm, char *err, size_t len)
{
	const struct vm_config *c = &vm->cfg;
	int ret = 0;

	for (int i = 0; i < c->nr_rng && !ret; i++)
		ret = vm_add_virtio(vm, virtio_rng_create, NULL, err, len);
	for (int i = 0; i < c->nr_disks && !ret; i++)
		ret = vm_add_virtio(vm, virtio_blk_create, c->disks[i], err, len);
	if (c->vconsole && !ret)
		ret = vm_add_virtio(vm, virtio_console_create, c->vconsole, err, len);
	for (int i = 0; i < c->nr_nets && !ret; i++)
		ret = vm_add_virtio(vm, net_is_vhost(c->nets[i]) ? virtio_net_vhost_create : virtio_net_create, c->nets[i],
				    err, len);
	return ret;
}

static int vm_add_devices(struct vm *vm, char *err, size_t len)
{
	struct vm_devices *d = calloc(1, sizeof(*d));
	int ret;

	if (!d)
		return errorf(err, len, -ENOMEM, "out of memory");
	vm->devs = d;
	vm->dev = (struct devctx){
		.pio = &vm->pio,
		.mmio = &vm->mmio,
		.mem = &vm->mem,
		.clock = &vm->clock,
		.loop = vm->loop,
		.pci = &d->pci,
		.state = &vm->state,
		.irqfd = vm->cpu->msi_irqfd != NULL,
		.defer_locks = vm->cfg.incoming,
		.ops = &vm_devctx_ops,
	};
	ret = uart8250_init(&d->com1, &vm->dev, UART_COM1_BASE, UART_COM1_IRQ, vm->cfg.console_out);
	if (!ret)
		ret = i8042_init(&d->kbc, &vm->dev);
	if (!ret)
		ret = cmos_rtc_init(&d->rtc, &vm->dev);
	if (!ret)
		ret = debug_ports_init(&vm->dev);
	if (!ret)
		ret = acpi_pm_init(&d->pm, &vm->dev);
	if (!ret)
		ret = pci_root_init(&d->pci, &vm->dev);
	if (ret)
		return errorf(err, len, ret, "platform devices: %s", strerror(-ret));
	vm->uart = &d->com1;
	vm->pci = &d->pci;
	return vm_add_virtio_devices(vm, err, len);
}

/* The CPUID table every vCPU gets (vm_config.cpu_template), NULL for the
 * backend's own. */
static const struct cpuid_model *vm_cpu_model(struct vm *vm, struct cpuid_model *buf)
{
	if (vm->cfg.restore)
		return &vm->cfg.restore->cpuid;
	if (vm->cfg.cpu_template && !strcmp(vm->cfg.cpu_template, "portable")) {
		cpuid_emu_model(buf, CPUID_EMU_TSC_KHZ);
		return buf;
	}
	return NULL;
}

static int vm_add_vcpus(struct vm *vm, char *err, size_t len)
{
	struct cpuid_model *buf = malloc(sizeof(*buf));
	const struct cpuid_model *model;
	char what[64] = "";
	int ret = 0;

	vm->vcpus = calloc((size_t)vm->cfg.nr_cpus, sizeof(*vm->vcpus));
	if (!vm->vcpus || !buf) {
		free(buf);
		return errorf(err, len, -ENOMEM, "out of memory");
	}
	model = vm_cpu_model(vm, buf);
	vm->nr_vcpus = vm->cfg.nr_cpus;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		v->vm = vm;
		v->id = i;
		ret = vm->cpu->vcpu_init(v);
		if (!ret && (ret = vm->cpu->set_cpuid(v, model)) == -EOPNOTSUPP) {
			struct cpuid_model have;

			if (!vm->cpu->set_cpuid(v, NULL) && !vm->cpu->get_cpuid(v, &have))
				cpuid_missing(model, &have, what, sizeof(what));
			ret = errorf(err, len, ret, "the guest's CPU has a feature (%s) the %s backend does not; a VM "
				     "that moves between backends starts with --cpu-template portable", what, vm->cpu->name);
			break;
		}
		/* APs wait for INIT/SIPI from the BSP, as on hardware, unless
		 * the caller (micro-guests) wants them all at the entry. */
		if (!ret && (i == 0 || vm->cfg.all_cpus_at_entry))
			ret = vm->cpu->set_state(v, &vm->boot_state);
		if (ret) {
			errorf(err, len, ret, "vCPU %d: %s", i, strerror(-ret));
			break;
		}
	}
	free(buf);
	return ret;
}

static void vm_pause_devices(struct vm *vm, bool pause);

/* The restore's end: the guest's clock stands still while every section
 * is applied (times in them are relative to the save), and the VM is left
 * as vm_pause leaves one, for vm_resume. */
static int vm_restore_paused(struct vm *vm, char *err, size_t len)
{
	uint64_t t0 = monotonic_ns();
	int ret;

	if (vm->paused)
		return errorf(err, len, -EBUSY, "the state was applied already");
	guest_clock_stop(&vm->clock);
	ret = snap_apply(vm, vm->cfg.restore, err, len);
	if (ret)
		return ret;
	vm_pause_devices(vm, true);
	vm->paused = true;
	atomic_store(&vm->pause_flag, true);
	pr_info("restore: state applied in %.3f ms (%.3f ms since the snapshot was opened)",
		(double)(monotonic_ns() - t0) / 1e6, (double)(monotonic_ns() - vm->cfg.restore->open_ns) / 1e6);
	return 0;
}

int vm_create(struct vm **out, const struct vm_config *cfg, char *err, size_t len)
{
	struct vm *vm;
	char why[200];
	int ret;

	*out = NULL;
	ret = vm_check_config(cfg, err, len);
	if (ret)
		return ret;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return errorf(err, len, -ENOMEM, "out of memory");
	vm->cfg = *cfg;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->cond, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	bus_init(&vm->pio, "pio");
	bus_init(&vm->mmio, "mmio");
	vm->nr_vcpus = cfg->nr_cpus; /* the ACPI tables and CPUID need it early */

	vm->cpu = cpu_select(cfg->backend, why, sizeof(why));
	if (!vm->cpu) {
		ret = errorf(err, len, -ENODEV, "%s", why);
		goto fail;
	}
	if (any_vhost(cfg) && (cfg->restore || cfg->track_dirty)) {
		ret = errorf(err, len, -EINVAL, "a vhost-user NIC: %s not yet (the back end writes guest memory tarn "
						"cannot follow)", cfg->restore ? "restoring a snapshot is" : "dirty tracking is");
		goto fail;
	}
	ret = any_vhost(cfg) ? gm_init_shared(&vm->mem, cfg->mem_size) : gm_init(&vm->mem, cfg->mem_size);
	if (ret) {
		errorf(err, len, ret, "--mem %lluM: cannot reserve guest memory: %s",
			(unsigned long long)(cfg->mem_size >> 20), strerror(-ret));
		goto fail;
	}
	vm->loop = calloc(1, sizeof(*vm->loop));
	if (!vm->loop || evloop_init(vm->loop)) {
		free(vm->loop);
		vm->loop = NULL;
		ret = errorf(err, len, -ENOMEM, "cannot create the event loop");
		goto fail;
	}
	if (cfg->restore && cfg->restore->mem_fd >= 0 &&
	    (ret = snap_map_memory(vm, cfg->restore, cfg->restore_eager, err, len)))
		goto fail;
	if (cfg->track_dirty && (ret = gm_dirty_start(&vm->mem))) {
		errorf(err, len, ret, "cannot track dirty pages: %s", strerror(-ret));
		goto fail;
	}
	vm->dirty_base = cfg->restore != NULL; /* dirty since the snapshot */
	ret = vm->cpu->vm_init(vm);
	if (ret) {
		errorf(err, len, ret, "%s backend: cannot create the VM: %s", vm->cpu->name, strerror(-ret));
		goto fail;
	}
	ret = vm_add_devices(vm, err, len);
	if (ret)
		goto fail;
	if (!cfg->restore && (ret = x86_boot_setup(vm, err, len)))
		goto fail;
	ret = vm_add_vcpus(vm, err, len);
	if (ret)
		goto fail;
	if (cfg->restore && !cfg->incoming && (ret = vm_restore_paused(vm, err, len)))
		goto fail;
	*out = vm;
	return 0;
fail:
	vm_destroy(vm);
	return ret;
}

void vm_request_stop(struct vm *vm, int status)
{
	pthread_mutex_lock(&vm->lock);
	if (!vm->stopping) {
		vm->stopping = true;
		vm->status = status;
		atomic_store(&vm->stop_flag, true);
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	if (vm->loop)
		evloop_stop(vm->loop);
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++)
		vm->cpu->kick(&vm->vcpus[i]);
}

/* Pause or resume every virtio device (virtio_device_pause). */
static void vm_pause_devices(struct vm *vm, bool pause)
{
	for (int i = 0; vm->devs && i < vm->devs->nr_virtio; i++)
		virtio_device_pause(vm->devs->virtio[i], pause);
}

/* Stop every vCPU at an instruction boundary (pause_flag set, each
 * parked), under pause_lock. 0, or -ESHUTDOWN when the VM is stopping (then
 * pause_flag is cleared again). */
static int park_vcpus(struct vm *vm)
{
	atomic_store(&vm->pause_flag, true);
	for (int i = 0; i < vm->nr_vcpus; i++)
		vm->cpu->kick(&vm->vcpus[i]);
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->nr_vcpus && !vm->stopping)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return vm->stopping ? -ESHUTDOWN : 0;
}

static void unpark_vcpus(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->pause_flag, false);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

int vm_pause(struct vm *vm)
{
	uint64_t t0 = monotonic_ns(), t1;
	int ret = 0;

	pthread_mutex_lock(&vm->pause_lock);
	pthread_mutex_lock(&vm->lock);
	if (vm->paused || vm->stopping) {
		ret = vm->stopping ? -ESHUTDOWN : 0;
		pthread_mutex_unlock(&vm->lock);
		goto out;
	}
	pthread_mutex_unlock(&vm->lock);
	if ((ret = park_vcpus(vm)))
		goto out;
	t1 = monotonic_ns();
	vm_pause_devices(vm, true);
	guest_clock_stop(&vm->clock);
	if (vm->cpu->vm_pause && (ret = vm->cpu->vm_pause(vm, true))) {
		pr_err("pause: %s", strerror(-ret));
		guest_clock_start(&vm->clock);
		vm_pause_devices(vm, false);
		unpark_vcpus(vm);
		goto out;
	}
	pthread_mutex_lock(&vm->lock);
	vm->paused = true;
	vm->pause_ns = monotonic_ns() - t0;
	pthread_mutex_unlock(&vm->lock);
	pr_info("paused: vCPUs stopped in %.3f ms, devices quiet in %.3f ms more",
		(double)(t1 - t0) / 1e6, (double)(monotonic_ns() - t1) / 1e6);
out:
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

int vm_resume(struct vm *vm)
{
	uint64_t t0 = monotonic_ns();
	int ret = 0;

	pthread_mutex_lock(&vm->pause_lock);
	if (!vm_is_paused(vm))
		goto out;
	guest_clock_start(&vm->clock);
	if (vm->cpu->vm_pause && (ret = vm->cpu->vm_pause(vm, false)))
		pr_err("resume: %s (the guest's clocks may have jumped)", strerror(-ret));
	vm_pause_devices(vm, false);
	pthread_mutex_lock(&vm->lock);
	vm->paused = false;
	vm->resume_ns = monotonic_ns() - t0;
	pthread_mutex_unlock(&vm->lock);
	unpark_vcpus(vm);
	pr_info("resumed in %.3f ms", (double)(monotonic_ns() - t0) / 1e6);
	ret = 0;
out:
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

bool vm_is_paused(struct vm *vm)
{
	bool p;

	pthread_mutex_lock(&vm->lock);
	p = vm->paused;
	pthread_mutex_unlock(&vm->lock);
	return p;
}

/* ---- migrations ---- */

int vm_restore_state(struct vm *vm, const struct snap_image *img, char *err, size_t len)
{
	if (!vm->cfg.incoming)
		return errorf(err, len, -EINVAL, "the VM was not built for a migration");
	vm->cfg.restore = img;
	return vm_restore_paused(vm, err, len);
}

struct virtio_dev *vm_disk(struct vm *vm, int i)
{
	for (int k = 0; vm->devs && k < vm->devs->nr_virtio; k++)
		if (vm->devs->virtio[k]->ops->device_type == 2 /* block */ && !i--)
			return vm->devs->virtio[k];
	return NULL;
}

void vm_announce(struct vm *vm)
{
	for (int i = 0; vm->devs && i < vm->devs->nr_virtio; i++)
		if (vm->devs->virtio[i]->ops->device_type == 1 /* net */)
			(void)virtio_net_announce(vm->devs->virtio[i]);
}

int vm_handover(struct vm *vm, bool give, char *err, size_t len)
{
	char why[256];

	for (int i = 0; vm->devs && i < vm->devs->nr_virtio; i++) {
		int ret = virtio_device_handover(vm->devs->virtio[i], give, why, sizeof(why));

		if (ret)
			return errorf(err, len, ret, "virtio device %d: %s", i, why);
	}
	return 0;
}

/* ---- dirty pages and throttling ---- */

int vm_dirty_start(struct vm *vm)
{
	int ret;

	if (vm->mem.fd >= 0)
		return -EOPNOTSUPP; /* a vhost-user back end writes unseen */
	if (vm->mem.dirty)
		return 0;
	if (vm->cpu->dirty_log && !vm->cpu->dirty_log_start)
		return -EOPNOTSUPP;
	if ((ret = gm_dirty_start(&vm->mem)))
		return ret;
	return vm->cpu->dirty_log_start ? vm->cpu->dirty_log_start(vm) : 0;
}

static int take_dirty(struct vm *vm, uint64_t *bits)
{
	int ret = vm->cpu->dirty_log ? vm->cpu->dirty_log(vm, bits) : 0;

	if (!ret)
		gm_dirty_take(&vm->mem, bits);
	return ret;
}

int vm_dirty_take(struct vm *vm, uint64_t *bits)
{
	int ret;

	if (!vm->mem.dirty)
		return 0;
	/* KVM write-protects as it reads its log. A CPU that caches
	 * writable pages (the emulator's TLB) must not write through them
	 * between the take and its flush: the vCPUs stand still meanwhile,
	 * and flush as they go on. */
	if (vm->cpu->dirty_log)
		return take_dirty(vm, bits);
	pthread_mutex_lock(&vm->pause_lock);
	if (vm_is_paused(vm) || !vm->vcpus[0].thread_started) {
		ret = take_dirty(vm, bits);
	} else if (!(ret = park_vcpus(vm))) {
		ret = take_dirty(vm, bits);
		unpark_vcpus(vm);
	}
	pthread_mutex_unlock(&vm->pause_lock);
	return ret;
}

void vm_throttle(struct vm *vm, int pct)
{
	atomic_store(&vm->throttle_pct, pct < 0 ? 0 : pct > VM_THROTTLE_MAX ? VM_THROTTLE_MAX : pct);
}

void vm_throttle_tick(struct vm *vm)
{
	if (!atomic_load(&vm->throttle_pct))
		return;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		atomic_store(&vm->vcpus[i].throttle_due, true);
		vm->cpu->kick(&vm->vcpus[i]);
	}
}

int vm_power_button(struct vm *vm)
{
	if (vm_is_paused(vm))
		return -EBUSY;
	acpi_pm_set_status(&vm->devs->pm, ACPI_PM1_PWRBTN);
	return 0;
}

int vm_ctrl_alt_del(struct vm *vm)
{
	if (vm_is_paused(vm))
		return -EBUSY;
	return i8042_ctrl_alt_del(&vm->devs->kbc);
}

void vm_metrics(struct vm *vm, vm_metric_fn *fn, void *opaque)
{
	static const char *const exit_names[VCPU_EXITS_NR] = {
		"exit_io_in", "exit_io_out", "exit_mmio_read", "exit_mmio_write",
	};
	struct virtio_metric m[VIRTIO_METRICS_MAX];
	uint64_t pause_ns, resume_ns;

	for (int k = 0; k < VCPU_EXITS_NR; k++) {
		uint64_t sum = 0;

		for (int i = 0; i < vm->nr_vcpus; i++)
			sum += __atomic_load_n(&vm->vcpus[i].exits[k], __ATOMIC_RELAXED);
		fn(opaque, "vcpu", -1, exit_names[k], sum);
	}
	if (vm->uart) {
		fn(opaque, "uart", -1, "write_count", __atomic_load_n(&vm->uart->tx_bytes, __ATOMIC_RELAXED));
		fn(opaque, "uart", -1, "missed_write_count", __atomic_load_n(&vm->uart->tx_dropped, __ATOMIC_RELAXED));
	}
	for (int d = 0; vm->devs && d < vm->devs->nr_virtio; d++) {
		const struct virtio_dev_ops *ops = vm->devs->virtio[d]->ops;
		int same = 0;

		if (!ops->metrics)
			continue;
		for (int e = 0; e < d; e++) /* its index among its kind's */
			same += vm->devs->virtio[e]->ops->metrics && !strcmp(vm->devs->virtio[e]->ops->metrics_group,
									       ops->metrics_group);
		for (unsigned i = 0, n = ops->metrics(vm->devs->virtio[d], m); i < n; i++)
			fn(opaque, ops->metrics_group, same, m[i].name, m[i].value);
	}
	pthread_mutex_lock(&vm->lock);
	pause_ns = vm->pause_ns;
	resume_ns = vm->resume_ns;
	pthread_mutex_unlock(&vm->lock);
	fn(opaque, "latencies_us", -1, "pause_vm", pause_ns / 1000);
	fn(opaque, "latencies_us", -1, "resume_vm", resume_ns / 1000);
}

int vm_set_limits(struct vm *vm, const char *group, int index, const char *spec, char *err, size_t len)
{
	for (int d = 0, seen = 0; vm->devs && d < vm->devs->nr_virtio; d++) {
		struct virtio_dev *vd = vm->devs->virtio[d];

		if (!vd->ops->metrics_group || strcmp(vd->ops->metrics_group, group) || seen++ != index)
			continue;
		if (!vd->ops->set_limits)
			break;
		return vd->ops->set_limits(vd, spec, err, len);
	}
	snprintf(err, len, "no %s device %d with rate limits", group, index);
	return -ENOENT;
}

/* The VM's services to its devices (core/devctx.h), on the backend. */
static struct vm *ctx_vm(const struct devctx *c)
{
	return (struct vm *)((char *)c - offsetof(struct vm, dev));
}

static int ctx_irq_line(const struct devctx *c, unsigned gsi, int level)
{
	struct vm *vm = ctx_vm(c);

	return vm->cpu->irq_line ? vm->cpu->irq_line(vm, gsi, level) : -ENOSYS;
}

static int ctx_signal_msi(const struct devctx *c, uint64_t addr, uint32_t data)
{
	struct vm *vm = ctx_vm(c);

	return vm->cpu->signal_msi ? vm->cpu->signal_msi(vm, addr, data) : -ENOSYS;
}

static int ctx_ioeventfd(const struct devctx *c, uint64_t gpa, unsigned len, int fd, bool assign)
{
	struct vm *vm = ctx_vm(c);

	if (!vm->cfg.ioeventfd || !vm->cpu->ioeventfd)
		return -ENOSYS;
	return vm->cpu->ioeventfd(vm, gpa, len, fd, assign);
}

/* Bind r on first use, re-target it when the message changed, signal it. */
static int ctx_irqfd_send(const struct devctx *c, struct vm_irqfd *r, uint64_t addr, uint32_t data)
{
	struct vm *vm = ctx_vm(c);
	int ret;

	if (!vm->cpu->msi_irqfd)
		return -ENOSYS;
	if (r->fd < 0) {
		r->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (r->fd < 0)
			return -errno;
	}
	if (r->gsi < 0 || r->addr != addr || r->data != data) {
		ret = vm->cpu->msi_irqfd(vm, &r->gsi, r->fd, addr, data);
		if (ret)
			return ret;
		r->addr = addr;
		r->data = data;
	}
	if (write(r->fd, &(uint64_t){ 1 }, sizeof(uint64_t)) != sizeof(uint64_t))
		return -errno;
	return 0;
}

static void ctx_irqfd_release(const struct devctx *c, struct vm_irqfd *r)
{
	struct vm *vm = ctx_vm(c);

	if (r->gsi >= 0 && vm->cpu_priv && vm->cpu->msi_irqfd_release)
		vm->cpu->msi_irqfd_release(vm, r->gsi, r->fd);
	if (r->fd >= 0)
		close(r->fd);
	r->fd = r->gsi = -1;
}

static void ctx_request_stop(const struct devctx *c, int status)
{
	vm_request_stop(ctx_vm(c), status);
}

static const struct devctx_ops vm_devctx_ops = {
	.irq_line = ctx_irq_line,
	.signal_msi = ctx_signal_msi,
	.irqfd_send = ctx_irqfd_send,
	.irqfd_release = ctx_irqfd_release,
	.ioeventfd = ctx_ioeventfd,
	.request_stop = ctx_request_stop,
};

int vm_run(struct vm *vm)
{
	int ret;

	for (int i = 0; i < vm->nr_vcpus; i++)
		vcpu_start(&vm->vcpus[i]);
	ret = evloop_run(vm->loop);
	if (ret) {
		pr_err("event loop failed: %s", strerror(-ret));
		vm_request_stop(vm, VM_EXIT_VMM_ERROR);
	}
	/* evloop_run returns once a stop was requested; wait for it to be
	 * recorded in case the loop ended for another reason. */
	pthread_mutex_lock(&vm->lock);
	while (!vm->stopping)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->thread_started) {
			vm->cpu->kick(v);
			pthread_join(v->thread, NULL);
			v->thread_started = false;
		}
	}
	return vm->status;
}

void vm_destroy(struct vm *vm)
{
	if (!vm)
		return;
	/* Virtio devices and the PCI bus first: their I/O threads and irqfds
	 * still use the backend. */
	for (int i = 0; vm->devs && i < vm->devs->nr_virtio; i++)
		virtio_device_destroy(vm->devs->virtio[i]);
	if (vm->devs)
		pci_root_destroy(&vm->devs->pci);
	for (int i = 0; vm->vcpus && i < vm->nr_vcpus; i++)
		vm->cpu->vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	if (vm->cpu && vm->cpu_priv)
		vm->cpu->vm_destroy(vm);
	if (vm->devs) {
		if (vm->uart)
			uart8250_destroy(vm->uart);
		acpi_pm_destroy(&vm->devs->pm);
		free(vm->devs);
	}
	if (vm->loop) {
		evloop_destroy(vm->loop);
		free(vm->loop);
	}
	gm_destroy(&vm->mem);
	snap_registry_free(&vm->state);
	bus_destroy(&vm->pio);
	bus_destroy(&vm->mmio);
	pthread_mutex_destroy(&vm->lock);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->pause_lock);
	free(vm);
}
