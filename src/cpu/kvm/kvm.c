/* The KVM backend. The in-kernel irqchip (PIC, IOAPIC, LAPIC) and PIT serve
 * the guest: they are the fastest path on KVM and the guest programs them
 * through ACPI's MADT like on hardware. The emulator backend has userspace
 * models of the same chips. */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/vm.h"
#include "cpu/cpu.h"
#include "hw/ioapic.h"
#include "hw/pic.h"
#include "hw/platform_state.h"
#include "pci/pci.h"

#define KVM_DEV "/dev/kvm"
/* Three pages KVM needs inside the guest-physical space on Intel (real-mode
 * TSS and the EPT identity map), placed in the MMIO hole below the BIOS. */
#define KVM_IDENTITY_MAP_ADDR 0xfeffc000ULL
#define KVM_TSS_ADDR 0xfeffd000ULL
#define KVM_MAX_CPUID 256

/* GSIs from here up carry MSIs for irqfds (below: the irqchip pins). */
#define KVM_MSI_GSI_BASE IOAPIC_NR_PINS
#define KVM_MSI_GSIS 1024

/* A PCI INTx line raised through an irqfd (KVM_IRQFD_FLAG_RESAMPLE): a write
 * to fd asserts the GSI; KVM lowers it when the guest acknowledges the
 * interrupt (EOI) and signals resample_fd, and tarn raises it again if the
 * device's line is still high -- a level-triggered line without an ioctl.
 * fd < 0: this line uses KVM_IRQ_LINE. */
struct kvm_intx {
	int fd, resample_fd;
	bool level; /* the line as the devices drive it (intx_lock) */
};

struct kvm_vm {
	int sys_fd;
	int vm_fd;
	int run_size;
	struct kvm_cpuid2 *supported;
	bool tsc_deadline; /* KVM_CAP_TSC_DEADLINE_TIMER */
	/* The GSI routing table: the irqchip routes, then one MSI route per
	 * irqfd (gsi KVM_MSI_GSI_BASE + i, used[i]). KVM takes the whole
	 * table at each change. */
	pthread_mutex_t routes_lock;
	struct kvm_irq_routing *routes;
	unsigned nr_chip_routes;
	bool msi_used[KVM_MSI_GSIS];
	struct kvm_irq_routing_msi msi[KVM_MSI_GSIS];
	struct evloop *loop; /* serves the resample eventfds */
	uint64_t paused_clock; /* kvmclock when the VM was paused */
	pthread_mutex_t intx_lock;
	struct kvm_intx intx[PCI_INTX_LINES];
};

struct kvm_vcpu {
	int fd;
	struct kvm_run *run;
	uint64_t paused_tsc; /* the guest's TSC when the VM was paused */
};

static int kvm_open(char *why, size_t why_len)
{
	int fd = open(KVM_DEV, O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		snprintf(why, why_len, "cannot open %s: %s", KVM_DEV, strerror(errno));
		return -errno;
	}
	if (ioctl(fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) {
		snprintf(why, why_len, "%s speaks an unsupported KVM API version", KVM_DEV);
		close(fd);
		return -ENOTSUP;
	}
	static const struct { int cap; const char *name; } need[] = {
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
		{ KVM_CAP_USER_MEMORY, "user memory" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
		{ KVM_CAP_PIT2, "PIT" },
		{ KVM_CAP_EXT_CPUID, "CPUID" },
	};
	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (ioctl(fd, KVM_CHECK_EXTENSION, need[i].cap) <= 0) {
			snprintf(why, why_len, "KVM lacks the %s capability", need[i].name);
			close(fd);
			return -ENOTSUP;
		}
	}
	return fd;
}

static int kvm_probe(char *why, size_t why_len)
{
	int fd = kvm_open(why, why_len);

	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

static void kvm_signal_handler(int sig)
{
	/* Only interrupts KVM_RUN; immediate_exit does the rest. */
}

/* The interrupt routing of the emulator's platform (emu_platform_irq_line,
 * pit_irq): GSI n < 16 drives PIC input n, and IOAPIC pin n, but the PIT's
 * GSI 0 goes to pin 2 as the MADT's override says. KVM's default table
 * sends GSI 0 to pin 0 instead. GSI 2 is the PIC cascade: no route. */
static unsigned kvm_chip_routes(struct kvm_irq_routing_entry *e)
{
	unsigned n = 0;

	for (unsigned gsi = 0; gsi < IOAPIC_NR_PINS; gsi++) {
		if (gsi == IOAPIC_PIT_PIN)
			continue;
		if (gsi < 16)
			e[n++] = (struct kvm_irq_routing_entry){
				.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
				.u.irqchip = { gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, gsi % 8 },
			};
		e[n++] = (struct kvm_irq_routing_entry){
			.gsi = gsi, .type = KVM_IRQ_ROUTING_IRQCHIP,
			.u.irqchip = { KVM_IRQCHIP_IOAPIC, gsi ? gsi : IOAPIC_PIT_PIN },
		};
	}
	return n;
}

/* Give KVM the table: the irqchip routes and every MSI route in use
 * (routes_lock held). */
static int kvm_commit_routes(struct kvm_vm *k)
{
	unsigned n = k->nr_chip_routes;

	for (unsigned i = 0; i < KVM_MSI_GSIS; i++)
		if (k->msi_used[i])
			k->routes->entries[n++] = (struct kvm_irq_routing_entry){
				.gsi = KVM_MSI_GSI_BASE + i, .type = KVM_IRQ_ROUTING_MSI, .u.msi = k->msi[i],
			};
	k->routes->nr = n;
	if (ioctl(k->vm_fd, KVM_SET_GSI_ROUTING, k->routes) < 0)
		return -errno;
	return 0;
}

static int kvm_init_routes(struct kvm_vm *k)
{
	size_t max = 16 + IOAPIC_NR_PINS + KVM_MSI_GSIS;

	k->routes = calloc(1, sizeof(*k->routes) + max * sizeof(struct kvm_irq_routing_entry));
	if (!k->routes)
		return -ENOMEM;
	pthread_mutex_init(&k->routes_lock, NULL);
	k->nr_chip_routes = kvm_chip_routes(k->routes->entries);
	return kvm_commit_routes(k);
}

/* cpu_ops.msi_irqfd: *gsi < 0 takes a free GSI, routes it to the MSI and
 * binds fd to it (KVM_IRQFD); otherwise re-targets *gsi's route. */
static int kvm_msi_irqfd(struct vm *vm, int *gsi, int fd, uint64_t addr, uint32_t data)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_irq_routing_msi m = { .address_lo = (uint32_t)addr, .address_hi = (uint32_t)(addr >> 32),
					 .data = data };
	unsigned i;
	int ret;

	pthread_mutex_lock(&k->routes_lock);
	if (*gsi >= 0) {
		i = (unsigned)(*gsi - KVM_MSI_GSI_BASE);
		k->msi[i] = m;
		ret = kvm_commit_routes(k);
		goto out;
	}
	for (i = 0; i < KVM_MSI_GSIS && k->msi_used[i]; i++)
		;
	ret = -ENOSPC;
	if (i == KVM_MSI_GSIS)
		goto out;
	k->msi_used[i] = true;
	k->msi[i] = m;
	ret = kvm_commit_routes(k);
	if (!ret) {
		struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = KVM_MSI_GSI_BASE + i };

		if (ioctl(k->vm_fd, KVM_IRQFD, &irqfd) < 0)
			ret = -errno;
	}
	if (ret) {
		k->msi_used[i] = false;
		(void)kvm_commit_routes(k);
		goto out;
	}
	*gsi = (int)(KVM_MSI_GSI_BASE + i);
out:
	pthread_mutex_unlock(&k->routes_lock);
	return ret;
}

static void kvm_msi_irqfd_release(struct vm *vm, int gsi, int fd)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = (uint32_t)gsi, .flags = KVM_IRQFD_FLAG_DEASSIGN };

	pthread_mutex_lock(&k->routes_lock);
	(void)ioctl(k->vm_fd, KVM_IRQFD, &irqfd);
	k->msi_used[gsi - KVM_MSI_GSI_BASE] = false;
	(void)kvm_commit_routes(k);
	pthread_mutex_unlock(&k->routes_lock);
}

/* KVM's PIC starts as after a reset (vector base 0, nothing masked); give
 * it the firmware hand-off state the emulator's PIC has (hw/pic.h). */
static int kvm_pic_firmware_setup(int vm_fd)
{
	static const struct { uint32_t id; uint8_t vector, imr; } chips[] = {
		{ KVM_IRQCHIP_PIC_MASTER, PIC_FW_MASTER_VECTOR, PIC_FW_MASTER_IMR },
		{ KVM_IRQCHIP_PIC_SLAVE, PIC_FW_SLAVE_VECTOR, PIC_FW_SLAVE_IMR },
	};

	for (size_t i = 0; i < sizeof(chips) / sizeof(chips[0]); i++) {
		struct kvm_irqchip chip = { .chip_id = chips[i].id };

		if (ioctl(vm_fd, KVM_GET_IRQCHIP, &chip) < 0)
			return -errno;
		chip.chip.pic.irq_base = chips[i].vector;
		chip.chip.pic.imr = chips[i].imr;
		chip.chip.pic.init_state = 0;
		chip.chip.pic.init4 = 1;
		if (ioctl(vm_fd, KVM_SET_IRQCHIP, &chip) < 0)
			return -errno;
	}
	return 0;
}

/* The MSR policy on KVM, as on the emulator (arch/x86/cpuid.h): no PMU --
 * KVM's virtual one switched off (KVM_CAP_PMU_CAPABILITY) and the counter
 * MSRs filtered to tarn (KVM_X86_SET_MSR_FILTER), since KVM would take
 * writes to AMD's legacy counters and log "Unhandled WRMSR" in the host's
 * kernel log for every guest whose perf probes one -- and every MSR KVM
 * does not know exits to tarn too (KVM_CAP_X86_USER_SPACE_MSR). tarn
 * answers both with #GP, as hardware does. Kernels without these
 * capabilities keep KVM's own behaviour. */
static void kvm_msr_policy(int vm_fd)
{
	static uint8_t deny[64]; /* all zero: each bit denies one MSR */
	struct kvm_enable_cap pmu = { .cap = KVM_CAP_PMU_CAPABILITY, .args[0] = KVM_PMU_CAP_DISABLE };
	struct kvm_enable_cap msr = { .cap = KVM_CAP_X86_USER_SPACE_MSR,
				      .args[0] = KVM_MSR_EXIT_REASON_UNKNOWN | KVM_MSR_EXIT_REASON_FILTER };
	struct kvm_msr_filter f = { .flags = KVM_MSR_FILTER_DEFAULT_ALLOW };

	if (ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PMU_CAPABILITY) > 0 && ioctl(vm_fd, KVM_ENABLE_CAP, &pmu) < 0)
		pr_debug("KVM: cannot switch the virtual PMU off: %s", strerror(errno));
	if (ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_USER_SPACE_MSR) <= 0 ||
	    ioctl(vm_fd, KVM_ENABLE_CAP, &msr) < 0) {
		pr_debug("KVM: MSRs stay KVM's: %s", strerror(errno));
		return;
	}
	for (unsigned i = 0; i < msr_pmu_nr_ranges && i < KVM_MSR_FILTER_MAX_RANGES; i++)
		f.ranges[i] = (struct kvm_msr_filter_range){
			.flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE,
			.nmsrs = msr_pmu_ranges[i].last - msr_pmu_ranges[i].first + 1,
			.base = msr_pmu_ranges[i].first,
			.bitmap = deny,
		};
	if (ioctl(vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_MSR_FILTER) <= 0 ||
	    ioctl(vm_fd, KVM_X86_SET_MSR_FILTER, &f) < 0)
		pr_debug("KVM: PMU MSRs stay KVM's: %s", strerror(errno));
}

static void intx_raise(struct kvm_intx *l)
{
	if (write(l->fd, &(uint64_t){ 1 }, sizeof(uint64_t)) < 0) {
		/* Only an overflow of the counter (2^64 - 1 raises) fails. */
	}
}

/* The guest acknowledged a PCI INTx interrupt and KVM lowered the line:
 * raise it again while a device still holds it high. */
static void intx_resample(void *opaque, uint32_t events)
{
	struct kvm_vm *k = opaque;

	pthread_mutex_lock(&k->intx_lock);
	for (unsigned i = 0; i < PCI_INTX_LINES; i++) {
		struct kvm_intx *l = &k->intx[i];
		uint64_t n;

		if (l->fd >= 0 && read(l->resample_fd, &n, sizeof(n)) == (ssize_t)sizeof(n) && l->level)
			intx_raise(l);
	}
	pthread_mutex_unlock(&k->intx_lock);
}

/* Put the PCI INTx GSIs on resampling irqfds. A line that cannot be (a
 * kernel without KVM_CAP_IRQFD_RESAMPLE) stays on KVM_IRQ_LINE. */
static void kvm_intx_init(struct vm *vm, struct kvm_vm *k)
{
	bool resample = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQFD_RESAMPLE) > 0;

	k->loop = vm->loop;
	pthread_mutex_init(&k->intx_lock, NULL);
	for (unsigned i = 0; i < PCI_INTX_LINES; i++) {
		struct kvm_intx *l = &k->intx[i];
		struct kvm_irqfd irqfd = { .gsi = PCI_INTX_GSI_BASE + i, .flags = KVM_IRQFD_FLAG_RESAMPLE };

		l->fd = resample ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
		l->resample_fd = resample ? eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) : -1;
		irqfd.fd = (uint32_t)l->fd;
		irqfd.resamplefd = (uint32_t)l->resample_fd;
		if (l->fd >= 0 && l->resample_fd >= 0 && ioctl(k->vm_fd, KVM_IRQFD, &irqfd) == 0) {
			if (!evloop_add(k->loop, l->resample_fd, EPOLLIN, intx_resample, k))
				continue;
			irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
			(void)ioctl(k->vm_fd, KVM_IRQFD, &irqfd);
		}
		if (resample)
			pr_debug("KVM: INTx GSI %u stays on KVM_IRQ_LINE: %s", irqfd.gsi, strerror(errno));
		if (l->fd >= 0)
			close(l->fd);
		if (l->resample_fd >= 0)
			close(l->resample_fd);
		l->fd = l->resample_fd = -1;
	}
}

static void kvm_intx_destroy(struct kvm_vm *k)
{
	if (!k->loop)
		return;
	for (unsigned i = 0; i < PCI_INTX_LINES; i++) {
		struct kvm_intx *l = &k->intx[i];
		struct kvm_irqfd irqfd = { .fd = (uint32_t)l->fd, .gsi = PCI_INTX_GSI_BASE + i,
					   .flags = KVM_IRQFD_FLAG_DEASSIGN };

		if (l->fd < 0)
			continue;
		(void)ioctl(k->vm_fd, KVM_IRQFD, &irqfd);
		evloop_del(k->loop, l->resample_fd);
		close(l->fd);
		close(l->resample_fd);
	}
	pthread_mutex_destroy(&k->intx_lock);
}

/* Guest RAM as KVM's memory slots, one per region of vm->mem (slot i is
 * region i), logging dirty pages or not: again on a running VM changes
 * only the flag (a migration starts the log). 0 or -errno. */
static int kvm_set_slots(struct vm *vm, int vm_fd, bool log)
{
	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct gm_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region mr = {
			.slot = (uint32_t)i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
			.flags = log ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		};

		if (ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &mr) < 0) {
			int e = errno;

			pr_err("KVM_SET_USER_MEMORY_REGION: %s", strerror(e));
			return -e;
		}
	}
	return 0;
}

static int kvm_vm_init(struct vm *vm)
{
	struct kvm_vm *k = calloc(1, sizeof(*k));
	struct kvm_pit_config pit = { .flags = 0 };
	char why[160];
	int ret;

	if (!k)
		return -ENOMEM;
	k->vm_fd = -1;
	k->sys_fd = kvm_open(why, sizeof(why));
	if (k->sys_fd < 0) {
		pr_err("%s", why);
		ret = k->sys_fd;
		goto err;
	}
	k->vm_fd = ioctl(k->sys_fd, KVM_CREATE_VM, 0);
	if (k->vm_fd < 0) {
		ret = -errno;
		pr_err("KVM_CREATE_VM: %s", strerror(errno));
		goto err;
	}
	k->run_size = ioctl(k->sys_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->run_size <= 0) {
		ret = -EINVAL;
		goto err;
	}
	/* Only Intel's VMX uses these pages; other KVM flavours may refuse
	 * the calls, which costs them nothing. */
	if (ioctl(k->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &(uint64_t){ KVM_IDENTITY_MAP_ADDR }) < 0 ||
	    ioctl(k->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
		pr_debug("KVM: no real-mode TSS/identity map pages: %s", strerror(errno));
	if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0 ||
	    ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		ret = -errno;
		pr_err("KVM VM set-up: %s", strerror(errno));
		goto err;
	}
	ret = kvm_pic_firmware_setup(k->vm_fd);
	if (!ret)
		ret = kvm_init_routes(k);
	if (ret) {
		pr_err("KVM interrupt controller set-up: %s", strerror(-ret));
		goto err;
	}
	kvm_intx_init(vm, k);
	ret = kvm_set_slots(vm, k->vm_fd, vm->cfg.track_dirty);
	if (ret)
		goto err;
	k->supported = calloc(1, sizeof(*k->supported) + KVM_MAX_CPUID * sizeof(struct kvm_cpuid_entry2));
	if (!k->supported) {
		ret = -ENOMEM;
		goto err;
	}
	k->supported->nent = KVM_MAX_CPUID;
	if (ioctl(k->sys_fd, KVM_GET_SUPPORTED_CPUID, k->supported) < 0) {
		ret = -errno;
		pr_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
		goto err;
	}
	k->tsc_deadline = ioctl(k->sys_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
	kvm_msr_policy(k->vm_fd);
	struct sigaction sa = { .sa_handler = kvm_signal_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL); /* no SA_RESTART: KVM_RUN returns EINTR */
	vm->cpu_priv = k;
	return 0;
err:
	kvm_intx_destroy(k);
	if (k->vm_fd >= 0)
		close(k->vm_fd);
	if (k->sys_fd >= 0)
		close(k->sys_fd);
	free(k->supported);
	if (k->routes)
		pthread_mutex_destroy(&k->routes_lock);
	free(k->routes);
	free(k);
	return ret;
}

static void kvm_vm_destroy(struct vm *vm)
{
	struct kvm_vm *k = vm->cpu_priv;

	if (!k)
		return;
	kvm_intx_destroy(k);
	close(k->vm_fd);
	close(k->sys_fd);
	free(k->supported);
	if (k->routes)
		pthread_mutex_destroy(&k->routes_lock);
	free(k->routes);
	free(k);
	vm->cpu_priv = NULL;
}

/* LINT0 as ExtINT and LINT1 as NMI: the "virtual wire" set-up firmware
 * leaves behind, which Linux expects when it first looks at the PIC. */
static int kvm_set_lint(int fd)
{
	struct kvm_lapic_state la;
	uint32_t *lvt0, *lvt1;

	if (ioctl(fd, KVM_GET_LAPIC, &la) < 0)
		return -errno;
	lvt0 = (uint32_t *)&la.regs[0x350];
	lvt1 = (uint32_t *)&la.regs[0x360];
	*lvt0 = (*lvt0 & ~0x700u) | (7u << 8); /* ExtINT */
	*lvt1 = (*lvt1 & ~0x700u) | (4u << 8); /* NMI */
	if (ioctl(fd, KVM_SET_LAPIC, &la) < 0)
		return -errno;
	return 0;
}

static int kvm_set_boot_msrs(int fd)
{
	static const uint32_t zero_msrs[] = {
		0x174, 0x175, 0x176,	/* SYSENTER_CS/ESP/EIP */
		0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR, LSTAR, CSTAR, SFMASK */
		0xc0000102,		/* KERNEL_GS_BASE */
		0x10,			/* TSC */
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[16];
	} m;
	unsigned n = 0;

	memset(&m, 0, sizeof(m));
	for (size_t i = 0; i < sizeof(zero_msrs) / sizeof(zero_msrs[0]); i++)
		m.e[n++].index = zero_msrs[i];
	m.e[n].index = 0x1a0; /* IA32_MISC_ENABLE: fast strings */
	m.e[n++].data = 1;
	m.e[n].index = 0x2ff; /* MTRRdefType: MTRRs enabled, write-back default */
	m.e[n++].data = (1u << 11) | 6;
	m.hdr.nmsrs = n;
	if (ioctl(fd, KVM_SET_MSRS, &m) != (int)n)
		return -EIO;
	return 0;
}

static int kvm_vcpu_init(struct vcpu *vcpu)
{
	struct kvm_vm *k = vcpu->vm->cpu_priv;
	struct kvm_vcpu *v = calloc(1, sizeof(*v));
	/* FCW as at power-up. KVM_SET_FPU carries no MXCSR (see kvm_get_fx);
	 * KVM's own reset value is 0x1f80, which the state micro-guest checks. */
	struct kvm_fpu fpu = { .fcw = 0x37f };
	int ret;

	if (!v)
		return -ENOMEM;
	v->fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, (unsigned long)vcpu->id);
	if (v->fd < 0) {
		ret = -errno;
		pr_err("KVM_CREATE_VCPU %d: %s", vcpu->id, strerror(errno));
		free(v);
		return ret;
	}
	v->run = mmap(NULL, (size_t)k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		ret = -errno;
		close(v->fd);
		free(v);
		return ret;
	}
	vcpu->priv = v;
	ret = kvm_set_lint(v->fd);
	if (!ret && ioctl(v->fd, KVM_SET_FPU, &fpu) < 0)
		ret = -errno;
	if (ret)
		pr_err("vCPU %d set-up: %s", vcpu->id, strerror(-ret));
	return ret;
}

static void kvm_vcpu_destroy(struct vcpu *vcpu)
{
	struct kvm_vm *k = vcpu->vm->cpu_priv;
	struct kvm_vcpu *v = vcpu->priv;

	if (!v)
		return;
	munmap(v->run, (size_t)k->run_size);
	close(v->fd);
	free(v);
	vcpu->priv = NULL;
}

static struct cpuid_entry entry_from_kvm(const struct kvm_cpuid_entry2 *s)
{
	return (struct cpuid_entry){ s->function, s->index,
				     s->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX ? CPUID_FLAG_INDEXED : 0,
				     s->eax, s->ebx, s->ecx, s->edx };
}

/* KVM's own table: what it supports, TSC deadline added. */
static void kvm_host_model(struct kvm_vm *k, struct cpuid_model *m)
{
	m->n = 0;
	for (uint32_t i = 0; i < k->supported->nent && m->n < CPUID_MODEL_MAX; i++) {
		const struct kvm_cpuid_entry2 *s = &k->supported->entries[i];

		m->e[m->n] = entry_from_kvm(s);
		/* KVM emulates the LAPIC's TSC-deadline mode on every host but
		 * leaves the bit out of KVM_GET_SUPPORTED_CPUID where the host
		 * CPU lacks it (KVM API: KVM_CAP_TSC_DEADLINE_TIMER). */
		if (s->function == 1 && k->tsc_deadline)
			m->e[m->n].ecx |= CPUID_1_ECX_TSC_DEADLINE;
		m->n++;
	}
}

/* A model that advertises a TSC frequency (a snapshot's, a template's)
 * gets it where KVM can scale the TSC (KVM_SET_TSC_KHZ); where it cannot,
 * the guest's timers run at the ratio of the two, which is said once. */
static void kvm_model_tsc(struct kvm_vcpu *v, uint32_t want_khz)
{
	static bool warned;
	int have = ioctl(v->fd, KVM_GET_TSC_KHZ, 0);

	if (!want_khz || have <= 0 || (uint32_t)have == want_khz)
		return;
	if (ioctl(v->fd, KVM_SET_TSC_KHZ, want_khz) < 0 && !warned) {
		warned = true;
		pr_warn("the guest was told its TSC runs at %u kHz; this host's KVM cannot scale its %d kHz "
			"(%s): the guest's timers run %.2fx as fast as it asks",
			want_khz, have, strerror(errno), (double)have / want_khz);
	}
}

static int kvm_get_cpuid(struct vcpu *vcpu, struct cpuid_model *m);
static int kvm_set_cpuid(struct vcpu *vcpu, const struct cpuid_model *model);

/* Whether KVM gives a vCPU everything model has: what it says it supports,
 * or else what a vCPU reads back after being given that (some KVMs, PVM,
 * give more than they list, and a snapshot taken here carries it). */
static bool kvm_has_model(struct vcpu *vcpu, const struct cpuid_model *model, const struct cpuid_model *host)
{
	struct cpuid_model *eff;
	bool ok;

	if (!cpuid_missing(model, host, NULL, 0))
		return true;
	eff = malloc(sizeof(*eff));
	ok = eff && !kvm_set_cpuid(vcpu, NULL) && !kvm_get_cpuid(vcpu, eff) && !cpuid_missing(model, eff, NULL, 0);
	free(eff);
	return ok;
}

static int kvm_set_cpuid(struct vcpu *vcpu, const struct cpuid_model *model)
{
	struct kvm_vm *k = vcpu->vm->cpu_priv;
	struct kvm_vcpu *v = vcpu->priv;
	struct cpuid_model *m = malloc(sizeof(*m)), host;
	struct kvm_cpuid2 *c = NULL;
	int ret = 0;

	if (!m)
		return -ENOMEM;
	kvm_host_model(k, &host);
	if (model && !kvm_has_model(vcpu, model, &host)) {
		ret = -EOPNOTSUPP;
		goto out;
	}
	*m = model ? *model : host;
	m->n = cpuid_apply_policy(m->e, m->n, (unsigned)vcpu->id, (unsigned)vcpu->vm->nr_vcpus);
	c = calloc(1, sizeof(*c) + (size_t)m->n * sizeof(struct kvm_cpuid_entry2));
	if (!c) {
		ret = -ENOMEM;
		goto out;
	}
	c->nent = (uint32_t)m->n;
	for (int i = 0; i < m->n; i++) {
		const struct cpuid_entry *e = &m->e[i];

		c->entries[i] = (struct kvm_cpuid_entry2){
			.function = e->function, .index = e->index,
			.flags = e->flags & CPUID_FLAG_INDEXED ? KVM_CPUID_FLAG_SIGNIFCANT_INDEX : 0,
			.eax = e->eax, .ebx = e->ebx, .ecx = e->ecx, .edx = e->edx,
		};
	}
	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0)
		ret = -errno;
	/* MSR writes are checked against the CPUID just set: after it. */
	if (!ret)
		ret = kvm_set_boot_msrs(v->fd);
	if (!ret && model)
		kvm_model_tsc(v, cpuid_tsc_khz(model));
out:
	free(c);
	free(m);
	return ret;
}

static int kvm_get_cpuid(struct vcpu *vcpu, struct cpuid_model *m)
{
	struct kvm_vcpu *v = vcpu->priv;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CPUID_MODEL_MAX * sizeof(struct kvm_cpuid_entry2));
	int ret = 0;

	if (!c)
		return -ENOMEM;
	c->nent = CPUID_MODEL_MAX;
	if (ioctl(v->fd, KVM_GET_CPUID2, c) < 0) {
		ret = -errno;
	} else {
		m->n = (int)c->nent;
		for (int i = 0; i < m->n; i++) {
			const struct kvm_cpuid_entry2 *s = &c->entries[i];

			m->e[i] = entry_from_kvm(s);
		}
	}
	free(c);
	return ret;
}

static void seg_to_kvm(struct kvm_segment *k, const struct x86_seg *s)
{
	*k = (struct kvm_segment){
		.base = s->base, .limit = s->limit, .selector = s->sel, .type = s->type,
		.present = s->present, .dpl = s->dpl, .db = s->db, .s = s->s, .l = s->l,
		.g = s->g, .avl = s->avl, .unusable = s->unusable,
	};
}

static void seg_from_kvm(struct x86_seg *s, const struct kvm_segment *k)
{
	*s = (struct x86_seg){
		.base = k->base, .limit = k->limit, .sel = k->selector, .type = k->type,
		.present = k->present, .dpl = k->dpl, .db = k->db, .s = k->s, .l = k->l,
		.g = k->g, .avl = k->avl, .unusable = k->unusable,
	};
}

/* x87 and SSE go through KVM_GET/SET_XSAVE, whose first 512 bytes are the
 * FXSAVE layout of x86_state.fxsave: KVM_GET/SET_FPU leave MXCSR out (in
 * both directions, Linux's kvm_arch_vcpu_ioctl_get_fpu and _set_fpu), as
 * g_state found. On set, the XSAVE header's XSTATE_BV marks x87 and SSE
 * as given; the other components keep what KVM has. */
#define XSAVE_HDR 512
#define XSTATE_X87_SSE 3ULL

static int kvm_get_fx(struct kvm_vcpu *v, uint8_t *img)
{
	struct kvm_xsave x;
	uint64_t bv;

	if (ioctl(v->fd, KVM_GET_XSAVE, &x) < 0)
		return -errno;
	memcpy(img, x.region, 512);
	memcpy(&bv, (uint8_t *)x.region + XSAVE_HDR, 8);
	/* A component not in XSTATE_BV is in its initial state, whatever the
	 * bytes say: x87 then FCW 0x37f, the rest 0; SSE then XMM 0 (MXCSR
	 * is kept either way with XSAVE, not XSAVEOPT's init optimisation). */
	if (!(bv & 1)) {
		uint16_t fcw = 0x37f;

		memset(img, 0, 24);
		memcpy(img, &fcw, 2);
		memset(img + 32, 0, 128);
	}
	if (!(bv & 2))
		memset(img + 160, 0, 256);
	memset(img + 416, 0, 96);
	return 0;
}

static int kvm_set_fx(struct kvm_vcpu *v, const uint8_t *img)
{
	struct kvm_xsave x;
	uint64_t bv;

	if (ioctl(v->fd, KVM_GET_XSAVE, &x) < 0)
		return -errno;
	memcpy(x.region, img, 416); /* the mask (28..31) is ignored by KVM */
	memcpy(&bv, (uint8_t *)x.region + XSAVE_HDR, 8);
	bv |= XSTATE_X87_SSE;
	memcpy((uint8_t *)x.region + XSAVE_HDR, &bv, 8);
	return ioctl(v->fd, KVM_SET_XSAVE, &x) < 0 ? -EINVAL : 0;
}

/* The MSRs of x86_state.msr[] in one KVM_GET_MSRS or KVM_SET_MSRS: -EIO
 * naming the first one KVM would not take. */
static int kvm_msr_list(int fd, uint64_t *val, bool write)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[X86_STATE_NR_MSRS];
	} m;
	int n;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = X86_STATE_NR_MSRS;
	for (int i = 0; i < X86_STATE_NR_MSRS; i++)
		m.e[i] = (struct kvm_msr_entry){ .index = x86_state_msr_index[i], .data = val[i] };
	n = ioctl(fd, write ? KVM_SET_MSRS : KVM_GET_MSRS, &m);
	if (n != X86_STATE_NR_MSRS) {
		if (n >= 0)
			pr_warn("KVM %s MSR %#x", write ? "refused to set" : "cannot read", x86_state_msr_index[n]);
		return n < 0 ? -errno : write ? -EINVAL : -EIO;
	}
	for (int i = 0; i < X86_STATE_NR_MSRS && !write; i++)
		val[i] = m.e[i].data;
	return 0;
}

/* MP state and vCPU events, to and from x86_events. KVM's SIPI_RECEIVED
 * (a SIPI the vCPU has not acted on yet) reads as running; the other states
 * (AP_RESET_HOLD, SEV's) do not occur in a tarn guest. */
static int kvm_get_events(int fd, struct x86_events *ev)
{
	struct kvm_mp_state mp;
	struct kvm_vcpu_events e;

	if (ioctl(fd, KVM_GET_MP_STATE, &mp) < 0 || ioctl(fd, KVM_GET_VCPU_EVENTS, &e) < 0)
		return -errno;
	*ev = (struct x86_events){
		.mp_state = mp.mp_state == KVM_MP_STATE_HALTED	       ? X86_MP_HALTED
			    : mp.mp_state == KVM_MP_STATE_INIT_RECEIVED ? X86_MP_WAIT_SIPI
									: X86_MP_RUNNING,
		.shadow = e.interrupt.shadow != 0,
		.nmi_pending = e.nmi.pending != 0,
		.nmi_masked = e.nmi.masked != 0,
		.exc_injected = e.exception.injected || e.exception.pending,
		.exc_vector = e.exception.nr,
		.exc_has_err = e.exception.has_error_code != 0,
		.irq_injected = e.interrupt.injected != 0,
		.irq_vector = e.interrupt.nr,
		.irq_soft = e.interrupt.soft != 0,
		.exc_err = e.exception.has_error_code ? e.exception.error_code : 0,
	};
	if (!ev->exc_injected)
		ev->exc_vector = ev->exc_has_err = 0, ev->exc_err = 0;
	if (!ev->irq_injected)
		ev->irq_vector = ev->irq_soft = 0;
	return 0;
}

static int kvm_set_events(int fd, const struct x86_events *ev)
{
	static const uint32_t mp_states[] = { KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_HALTED,
					      KVM_MP_STATE_INIT_RECEIVED };
	struct kvm_mp_state mp = { .mp_state = mp_states[ev->mp_state] };
	struct kvm_vcpu_events e = {
		.exception = { .injected = ev->exc_injected, .nr = ev->exc_vector,
			       .has_error_code = ev->exc_has_err, .error_code = ev->exc_err },
		.interrupt = { .injected = ev->irq_injected, .nr = ev->irq_vector, .soft = ev->irq_soft,
			       .shadow = ev->shadow ? KVM_X86_SHADOW_INT_STI : 0 },
		.nmi = { .pending = ev->nmi_pending, .masked = ev->nmi_masked },
		.flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW,
	};

	if (ev->mp_state > X86_MP_WAIT_SIPI)
		return -EINVAL;
	if (ioctl(fd, KVM_SET_VCPU_EVENTS, &e) < 0 || ioctl(fd, KVM_SET_MP_STATE, &mp) < 0)
		return -EINVAL;
	return 0;
}

static int kvm_get_parts(struct kvm_vcpu *v, struct x86_state *st)
{
	struct kvm_debugregs dr;
	int ret = kvm_get_fx(v, st->fxsave);

	if (ret)
		return ret;
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &dr) < 0)
		return -errno;
	memcpy(st->dr, dr.db, sizeof(st->dr));
	st->dr6 = dr.dr6;
	st->dr7 = dr.dr7;
	st->parts = X86_STATE_FPU | X86_STATE_DEBUG;
	if (ioctl(v->fd, KVM_GET_LAPIC, (struct kvm_lapic_state *)st->lapic) == 0)
		st->parts |= X86_STATE_LAPIC;
	/* A KVM without one of them (TSC_AUX without RDTSCP) still gives the
	 * rest of the state: the MSR part is then missing, not the call. */
	if (!kvm_msr_list(v->fd, st->msr, false))
		st->parts |= X86_STATE_MSR;
	if (!kvm_get_events(v->fd, &st->ev))
		st->parts |= X86_STATE_EVENTS;
	return 0;
}

/* The parts set_state was given; what KVM refuses is -EINVAL. */
static int kvm_set_parts(struct kvm_vcpu *v, const struct x86_state *st)
{
	struct kvm_debugregs dr = { .dr6 = st->dr6, .dr7 = st->dr7 };
	uint64_t msr[X86_STATE_NR_MSRS];
	int ret;

	if ((st->parts & X86_STATE_FPU) && (ret = kvm_set_fx(v, st->fxsave)))
		return ret;
	memcpy(dr.db, st->dr, sizeof(dr.db));
	if ((st->parts & X86_STATE_DEBUG) && ioctl(v->fd, KVM_SET_DEBUGREGS, &dr) < 0)
		return -EINVAL;
	/* The LAPIC before IA32_TSC_DEADLINE: the timer's mode. */
	if ((st->parts & X86_STATE_LAPIC) && ioctl(v->fd, KVM_SET_LAPIC, (struct kvm_lapic_state *)st->lapic) < 0)
		return -EINVAL;
	memcpy(msr, st->msr, sizeof(msr));
	return st->parts & X86_STATE_MSR ? kvm_msr_list(v->fd, msr, true) : 0;
}

static int kvm_get_state(struct vcpu *vcpu, struct x86_state *st)
{
	struct kvm_vcpu *v = vcpu->priv;
	struct kvm_regs r;
	struct kvm_sregs s;

	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	memset(st, 0, sizeof(*st));
	uint64_t g[16] = { r.rax, r.rcx, r.rdx, r.rbx, r.rsp, r.rbp, r.rsi, r.rdi,
			   r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15 };
	memcpy(st->gpr, g, sizeof(g));
	st->rip = r.rip;
	st->rflags = r.rflags;
	seg_from_kvm(&st->cs, &s.cs);
	seg_from_kvm(&st->ds, &s.ds);
	seg_from_kvm(&st->es, &s.es);
	seg_from_kvm(&st->fs, &s.fs);
	seg_from_kvm(&st->gs, &s.gs);
	seg_from_kvm(&st->ss, &s.ss);
	seg_from_kvm(&st->tr, &s.tr);
	seg_from_kvm(&st->ldt, &s.ldt);
	st->gdt = (struct x86_dtable){ s.gdt.base, s.gdt.limit };
	st->idt = (struct x86_dtable){ s.idt.base, s.idt.limit };
	st->cr0 = s.cr0;
	st->cr2 = s.cr2;
	st->cr3 = s.cr3;
	st->cr4 = s.cr4;
	st->cr8 = s.cr8;
	st->efer = s.efer;
	st->apic_base = s.apic_base;
	return kvm_get_parts(v, st);
}

static int kvm_set_state(struct vcpu *vcpu, const struct x86_state *st)
{
	struct kvm_vcpu *v = vcpu->priv;
	struct kvm_regs r = {
		.rax = st->gpr[R_RAX], .rcx = st->gpr[R_RCX], .rdx = st->gpr[R_RDX],
		.rbx = st->gpr[R_RBX], .rsp = st->gpr[R_RSP], .rbp = st->gpr[R_RBP],
		.rsi = st->gpr[R_RSI], .rdi = st->gpr[R_RDI], .r8 = st->gpr[R_R8],
		.r9 = st->gpr[R_R9], .r10 = st->gpr[R_R10], .r11 = st->gpr[R_R11],
		.r12 = st->gpr[R_R12], .r13 = st->gpr[R_R13], .r14 = st->gpr[R_R14],
		.r15 = st->gpr[R_R15], .rip = st->rip, .rflags = st->rflags,
	};
	struct kvm_sregs s;
	int ret;

	/* Start from KVM's view so fields we do not model (interrupt bitmap)
	 * keep their values. */
	if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0)
		return -errno;
	seg_to_kvm(&s.cs, &st->cs);
	seg_to_kvm(&s.ds, &st->ds);
	seg_to_kvm(&s.es, &st->es);
	seg_to_kvm(&s.fs, &st->fs);
	seg_to_kvm(&s.gs, &st->gs);
	seg_to_kvm(&s.ss, &st->ss);
	seg_to_kvm(&s.tr, &st->tr);
	seg_to_kvm(&s.ldt, &st->ldt);
	s.gdt = (struct kvm_dtable){ .base = st->gdt.base, .limit = st->gdt.limit };
	s.idt = (struct kvm_dtable){ .base = st->idt.base, .limit = st->idt.limit };
	s.cr0 = st->cr0;
	s.cr2 = st->cr2;
	s.cr3 = st->cr3;
	s.cr4 = st->cr4;
	s.cr8 = st->cr8;
	s.efer = st->efer;
	if (st->apic_base)
		s.apic_base = st->apic_base;
	if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0 || ioctl(v->fd, KVM_SET_REGS, &r) < 0)
		return -errno;
	ret = kvm_set_parts(v, st);
	if (ret)
		return ret;
	if (st->parts & X86_STATE_EVENTS)
		return kvm_set_events(v->fd, &st->ev);
	/* An AP given a boot state runs at once instead of waiting for SIPI. */
	struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };
	if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0)
		return -errno;
	return 0;
}

/* On AMD, KVM answers a triple fault by re-initialising the vCPU, since the
 * VMCB is undefined after a SHUTDOWN intercept (Linux arch/x86/kvm/svm/
 * svm.c, shutdown_interception): the registers read back as after INIT,
 * not as at the crash. VMX keeps them. */
static bool kvm_shutdown_state_lost(int fd)
{
	unsigned a, b, c, d;
	struct kvm_regs r;
	struct kvm_sregs s;

	if (!__get_cpuid(0, &a, &b, &c, &d) ||
	    !((b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163) || /* AuthenticAMD */
	      (b == 0x6f677948 && d == 0x6e65476e && c == 0x656e6975)))  /* HygonGenuine */
		return false;
	if (ioctl(fd, KVM_GET_REGS, &r) < 0 || ioctl(fd, KVM_GET_SREGS, &s) < 0)
		return true;
	return r.rip == 0xfff0 && s.cs.selector == 0xf000;
}

/* KVM gave up on the guest. An emulation failure names the instruction
 * KVM's emulator could not run (when KVM reports its bytes): the first
 * thing to look at, e.g. a software KVM that emulates what hardware runs. */
static void kvm_describe_internal_error(const struct kvm_run *run, char *msg, size_t len)
{
	const __typeof__(run->emulation_failure) *ef = &run->emulation_failure;
	int n;

	if (run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION) {
		snprintf(msg, len, "KVM internal error (suberror %u)", run->internal.suberror);
		return;
	}
	n = snprintf(msg, len, "KVM internal error: its instruction emulator failed");
	if (ef->ndata >= 3 && (ef->flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
	    ef->insn_size <= sizeof(ef->insn_bytes)) {
		n += snprintf(msg + n, len - (size_t)n, " on the instruction");
		for (unsigned i = 0; i < ef->insn_size && (size_t)n + 4 < len; i++)
			n += snprintf(msg + n, len - (size_t)n, " %02x", ef->insn_bytes[i]);
	}
}

static int kvm_vcpu_run(struct vcpu *vcpu, struct vcpu_exit *exit)
{
	struct kvm_vcpu *v = vcpu->priv;
	struct kvm_run *run = v->run;

again:
	if (ioctl(v->fd, KVM_RUN, 0) < 0) {
		if (errno == EINTR || errno == EAGAIN) {
			__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_RELAXED);
			exit->reason = VCPU_EXIT_INTR;
			return 0;
		}
		return -errno;
	}
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		exit->reason = VCPU_EXIT_IO;
		exit->io.port = run->io.port;
		exit->io.size = run->io.size;
		exit->io.write = run->io.direction == KVM_EXIT_IO_OUT;
		exit->io.count = run->io.count;
		exit->io.data = (uint8_t *)run + run->io.data_offset;
		return 0;
	case KVM_EXIT_MMIO:
		exit->reason = VCPU_EXIT_MMIO;
		exit->mmio.gpa = run->mmio.phys_addr;
		exit->mmio.len = (uint8_t)run->mmio.len;
		exit->mmio.write = run->mmio.is_write;
		exit->mmio.data = run->mmio.data;
		return 0;
	case KVM_EXIT_HLT:
		exit->reason = VCPU_EXIT_HLT;
		return 0;
	case KVM_EXIT_X86_RDMSR:
	case KVM_EXIT_X86_WRMSR:
		/* An MSR KVM does not know (kvm_msr_policy): #GP, as the
		 * emulator answers one outside its model (cpuid.h). */
		if (!msr_is_pmu(run->msr.index))
			pr_warn_ratelimited("vCPU %d: %s 0x%x: unknown MSR (#GP)", vcpu->id,
					    run->exit_reason == KVM_EXIT_X86_RDMSR ? "rdmsr" : "wrmsr",
					    run->msr.index);
		run->msr.error = 1;
		goto again;
	case KVM_EXIT_SHUTDOWN:
		exit->reason = VCPU_EXIT_SHUTDOWN;
		exit->shutdown.state_lost = kvm_shutdown_state_lost(v->fd);
		return 0;
	case KVM_EXIT_INTR:
		exit->reason = VCPU_EXIT_INTR;
		return 0;
	case KVM_EXIT_SYSTEM_EVENT:
		exit->reason = run->system_event.type == KVM_SYSTEM_EVENT_RESET ? VCPU_EXIT_RESET
										 : VCPU_EXIT_POWEROFF;
		return 0;
	case KVM_EXIT_FAIL_ENTRY:
		exit->reason = VCPU_EXIT_ERROR;
		exit->error.code = VCPU_ERR_HOST;
		snprintf(exit->error.msg, sizeof(exit->error.msg),
			 "KVM could not enter the guest (hardware reason %#llx)",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return 0;
	case KVM_EXIT_INTERNAL_ERROR:
		exit->reason = VCPU_EXIT_ERROR;
		exit->error.code = run->internal.suberror == KVM_INTERNAL_ERROR_DELIVERY_EV ? VCPU_ERR_EVENT_MMIO
											    : VCPU_ERR_HOST;
		kvm_describe_internal_error(run, exit->error.msg, sizeof(exit->error.msg));
		return 0;
	default:
		exit->reason = VCPU_EXIT_ERROR;
		exit->error.code = VCPU_ERR_INTERNAL;
		snprintf(exit->error.msg, sizeof(exit->error.msg), "unexpected KVM exit %u",
			 run->exit_reason);
		return 0;
	}
}

static void kvm_kick(struct vcpu *vcpu)
{
	struct kvm_vcpu *v = vcpu->priv;

	if (!v)
		return;
	/* immediate_exit covers the window before the thread enters KVM_RUN;
	 * the signal covers a thread already inside it. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_RELEASE);
	if (vcpu->thread_started)
		pthread_kill(vcpu->thread, SIGUSR1);
}

static int kvm_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_irq_level irq = { .irq = gsi, .level = (uint32_t)level };
	unsigned i = gsi - PCI_INTX_GSI_BASE;

	if (i < PCI_INTX_LINES && k->intx[i].fd >= 0) {
		/* Lowered by KVM at the guest's EOI, not here (intx_resample). */
		pthread_mutex_lock(&k->intx_lock);
		k->intx[i].level = level;
		if (level) {
			intx_raise(&k->intx[i]);
			__atomic_fetch_add(&vm->intx_sent_irqfd, 1, __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&k->intx_lock);
		return 0;
	}
	if (ioctl(k->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		return -errno;
	return 0;
}

/* KVM_SIGNAL_MSI (KVM API 4.71): returns >0 delivered, 0 blocked by the
 * guest (e.g. a masked LAPIC), <0 on error. Needs KVM_CAP_SIGNAL_MSI, which
 * every kernel with an in-kernel irqchip (KVM_CREATE_IRQCHIP) has. */
static int kvm_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_msi msi = {
		.address_lo = (uint32_t)addr,
		.address_hi = (uint32_t)(addr >> 32),
		.data = data,
	};

	if (ioctl(k->vm_fd, KVM_SIGNAL_MSI, &msi) < 0)
		return -errno;
	return 0;
}

/* KVM_IOEVENTFD (KVM API 4.59): MMIO writes of len bytes at gpa, any
 * value, signal fd inside KVM_RUN. */
static int kvm_ioeventfd(struct vm *vm, uint64_t gpa, unsigned len, int fd, bool assign)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_ioeventfd io = {
		.addr = gpa,
		.len = len,
		.fd = fd,
		.flags = assign ? 0 : KVM_IOEVENTFD_FLAG_DEASSIGN,
	};

	if (ioctl(k->vm_fd, KVM_IOEVENTFD, &io) < 0)
		return -errno;
	return 0;
}

/* One MSR of a vCPU: read (write false) or write. 0 or -EIO. */
static int kvm_msr(int fd, uint32_t index, uint64_t *val, bool write)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e = { .index = index, .data = *val } };

	if (ioctl(fd, write ? KVM_SET_MSRS : KVM_GET_MSRS, &m) != 1)
		return -EIO;
	*val = m.e.data;
	return 0;
}

/* ---- the interrupt controllers and PIT in a snapshot ---- */

/* KVM's i8259 and ours both follow QEMU's model field for field; KVM has no
 * single (no-cascade) mode. */
static void pic_from_kvm(struct pic_chip_state *s, const struct kvm_pic_state *k)
{
	*s = (struct pic_chip_state){
		.irr = k->irr, .imr = k->imr, .isr = k->isr, .last_irr = k->last_irr, .elcr = k->elcr,
		.priority_add = k->priority_add, .irq_base = k->irq_base, .init_state = k->init_state,
		.read_isr = k->read_reg_select, .poll = k->poll, .special_mask = k->special_mask,
		.auto_eoi = k->auto_eoi, .rotate_on_auto_eoi = k->rotate_on_auto_eoi,
		.sfnm = k->special_fully_nested_mode, .init4 = k->init4,
	};
}

static void pic_to_kvm(struct kvm_pic_state *k, const struct pic_chip_state *s, uint8_t elcr_mask)
{
	*k = (struct kvm_pic_state){
		.irr = s->irr, .imr = s->imr, .isr = s->isr, .last_irr = s->last_irr, .elcr = s->elcr,
		.elcr_mask = elcr_mask, .priority_add = s->priority_add, .irq_base = s->irq_base,
		.init_state = s->init_state, .read_reg_select = s->read_isr, .poll = s->poll,
		.special_mask = s->special_mask, .auto_eoi = s->auto_eoi,
		.rotate_on_auto_eoi = s->rotate_on_auto_eoi, .special_fully_nested_mode = s->sfnm,
		.init4 = s->init4,
	};
}

/* KVM keeps the IOAPIC's ID as its 4 bits and the asserted pins in irr;
 * the PIT's count_load_time is CLOCK_MONOTONIC (ktime_get). A channel
 * from KVM is taken as loaded, with its next edge worked out from the
 * mode (KVM does not say whether a one-shot fired). */
static int kvm_platform_get(struct vm *vm, struct platform_state *st)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_irqchip chip[3] = { { .chip_id = KVM_IRQCHIP_PIC_MASTER }, { .chip_id = KVM_IRQCHIP_PIC_SLAVE },
				       { .chip_id = KVM_IRQCHIP_IOAPIC } };
	struct kvm_pit_state2 pit;
	uint64_t now = monotonic_ns();

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < 3; i++)
		if (ioctl(k->vm_fd, KVM_GET_IRQCHIP, &chip[i]) < 0)
			return -errno;
	if (ioctl(k->vm_fd, KVM_GET_PIT2, &pit) < 0)
		return -errno;
	for (int i = 0; i < 2; i++)
		pic_from_kvm(&st->pic.chip[i], &chip[i].chip.pic);
	st->ioapic.ioregsel = chip[2].chip.ioapic.ioregsel;
	st->ioapic.id = (chip[2].chip.ioapic.id & 0xf) << 24;
	st->ioapic.level = chip[2].chip.ioapic.irr & ((1u << IOAPIC_NR_PINS) - 1);
	for (int i = 0; i < IOAPIC_NR_PINS; i++)
		st->ioapic.rte[i] = chip[2].chip.ioapic.redirtbl[i].bits;
	for (int i = 0; i < 3; i++) {
		const struct kvm_pit_channel_state *c = &pit.channels[i];
		struct pit_channel_state *s = &st->pit.ch[i];
		int64_t el = (int64_t)now - c->count_load_time;

		*s = (struct pit_channel_state){
			.count = c->count ? c->count : 0x10000, .latched_count = c->latched_count,
			.count_latched = c->count_latched, .status = c->status,
			.status_latched = c->status_latched, .read_state = c->read_state,
			.write_state = c->write_state, .write_latch = c->write_latch, .rw_mode = c->rw_mode,
			.mode = c->mode, .bcd = c->bcd, .gate = c->gate, .loaded = 1, .triggered = c->gate,
			.elapsed_ns = el > 0 ? (uint64_t)el : 0, .irq_in_ns = i ? UINT64_MAX : PIT_IRQ_REARM,
		};
		if (s->bcd && s->count > 10000)
			s->count = 10000;
		if (c->mode == 0xff) { /* KVM's "never programmed" (kvm_pit_reset) */
			s->mode = s->loaded = 0;
			s->irq_in_ns = UINT64_MAX;
		} else if (c->mode > 5) {
			s->mode = c->mode & 3; /* 6 and 7 are modes 2 and 3 */
		}
	}
	st->pit.speaker_en = !!(pit.flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON);
	st->kvmclock_ns = k->paused_clock;
	return 0;
}

static int kvm_platform_set(struct vm *vm, const struct platform_state *st)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_irqchip chip[3] = { { .chip_id = KVM_IRQCHIP_PIC_MASTER }, { .chip_id = KVM_IRQCHIP_PIC_SLAVE },
				       { .chip_id = KVM_IRQCHIP_IOAPIC } };
	struct kvm_pit_state2 pit = { .flags = st->pit.speaker_en ? KVM_PIT_FLAGS_SPEAKER_DATA_ON : 0 };
	uint64_t now = monotonic_ns();

	pic_to_kvm(&chip[0].chip.pic, &st->pic.chip[0], 0xf8);
	pic_to_kvm(&chip[1].chip.pic, &st->pic.chip[1], 0xde);
	chip[2].chip.ioapic.base_address = IOAPIC_DEFAULT_BASE;
	chip[2].chip.ioapic.ioregsel = st->ioapic.ioregsel;
	chip[2].chip.ioapic.id = st->ioapic.id >> 24 & 0xf;
	chip[2].chip.ioapic.irr = st->ioapic.level;
	for (int i = 0; i < IOAPIC_NR_PINS; i++)
		chip[2].chip.ioapic.redirtbl[i].bits = st->ioapic.rte[i];
	for (int i = 0; i < 3; i++) {
		const struct pit_channel_state *s = &st->pit.ch[i];

		pit.channels[i] = (struct kvm_pit_channel_state){
			.count = s->count, .latched_count = s->latched_count,
			.count_latched = s->count_latched, .status_latched = s->status_latched,
			.status = s->status, .read_state = s->read_state, .write_state = s->write_state,
			.write_latch = s->write_latch, .rw_mode = s->rw_mode,
			.mode = s->rw_mode ? s->mode : 0xff, /* no control word yet: as KVM resets it */
			.bcd = s->bcd,
			.gate = s->gate, .count_load_time = (int64_t)(now - s->elapsed_ns),
		};
	}
	for (int i = 0; i < 3; i++)
		if (ioctl(k->vm_fd, KVM_SET_IRQCHIP, &chip[i]) < 0)
			return -EINVAL;
	if (ioctl(k->vm_fd, KVM_SET_PIT2, &pit) < 0)
		return -EINVAL;
	/* As a pause leaves them, for the resume that follows: the clock,
	 * and each vCPU's TSC as its set_state wrote it. */
	k->paused_clock = st->kvmclock_ns;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct kvm_vcpu *v = vm->vcpus[i].priv;

		if (kvm_msr(v->fd, 0x10 /* IA32_TSC */, &v->paused_tsc, false))
			return -EIO;
	}
	return 0;
}

/* While paused the guest's kvmclock and TSCs stand still: read at the
 * pause, written back at the resume (as QEMU keeps kvmclock across a
 * stop). Written back one vCPU after another within microseconds, the TSCs
 * stay in step: KVM takes such writes as one synchronisation. */
static int kvm_vm_pause(struct vm *vm, bool pause)
{
	struct kvm_vm *k = vm->cpu_priv;
	struct kvm_clock_data clock = { .clock = k->paused_clock };
	int ret;

	if (pause && ioctl(k->vm_fd, KVM_GET_CLOCK, &clock) < 0)
		return -errno;
	k->paused_clock = clock.clock;
	for (int i = 0; i < vm->nr_vcpus; i++) {
		struct kvm_vcpu *v = vm->vcpus[i].priv;

		ret = kvm_msr(v->fd, 0x10 /* IA32_TSC */, &v->paused_tsc, !pause);
		if (ret)
			return ret;
	}
	if (!pause && ioctl(k->vm_fd, KVM_SET_CLOCK, &clock) < 0)
		return -errno;
	return 0;
}

/* KVM's dirty log, slot by slot (a slot is a region of vm->mem), into
 * bits at the region's place in the reservation. */
static int kvm_dirty_log(struct vm *vm, uint64_t *bits)
{
	struct kvm_vm *k = vm->cpu_priv;

	for (int i = 0; i < vm->mem.nr_regions; i++) {
		const struct gm_region *r = &vm->mem.regions[i];
		uint64_t pages = r->size / GM_PAGE, first = (uint64_t)(r->hva - vm->mem.base) / GM_PAGE;
		uint64_t *log = calloc((pages + 63) / 64, sizeof(uint64_t));
		struct kvm_dirty_log d = { .slot = (uint32_t)i, .dirty_bitmap = log };

		if (!log)
			return -ENOMEM;
		if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &d) < 0) {
			free(log);
			return -errno;
		}
		for (uint64_t pg = 0; pg < pages; pg++)
			if (log[pg / 64] >> (pg % 64) & 1)
				bits[(first + pg) / 64] |= 1ULL << ((first + pg) % 64);
		free(log);
	}
	return 0;
}

static int kvm_dirty_log_start(struct vm *vm)
{
	struct kvm_vm *k = vm->cpu_priv;

	return kvm_set_slots(vm, k->vm_fd, true);
}

const struct cpu_ops kvm_cpu_ops = {
	.name = "kvm",
	.probe = kvm_probe,
	.vm_init = kvm_vm_init,
	.vm_destroy = kvm_vm_destroy,
	.vcpu_init = kvm_vcpu_init,
	.vcpu_destroy = kvm_vcpu_destroy,
	.vcpu_run = kvm_vcpu_run,
	.get_state = kvm_get_state,
	.set_state = kvm_set_state,
	.kick = kvm_kick,
	.irq_line = kvm_irq_line,
	.signal_msi = kvm_signal_msi,
	.set_cpuid = kvm_set_cpuid,
	.get_cpuid = kvm_get_cpuid,
	.ioeventfd = kvm_ioeventfd,
	.msi_irqfd = kvm_msi_irqfd,
	.msi_irqfd_release = kvm_msi_irqfd_release,
	.vm_pause = kvm_vm_pause,
	.platform_get = kvm_platform_get,
	.platform_set = kvm_platform_set,
	.dirty_log = kvm_dirty_log,
	.dirty_log_start = kvm_dirty_log_start,
};
