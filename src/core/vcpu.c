#include "core/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/jail.h"
#include "core/log.h"
#include "core/vm.h"

/* Only the vCPU's thread writes its counters; vm_metrics reads them. */
static void vcpu_count(uint64_t *c)
{
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
}

static void vcpu_handle_io(struct vcpu *vcpu, struct vcpu_exit *e)
{
	struct vm *vm = vcpu->vm;

	vcpu_count(&vcpu->exits[e->io.write ? VCPU_EXITS_IO_OUT : VCPU_EXITS_IO_IN]);
	for (uint32_t i = 0; i < e->io.count; i++) {
		uint8_t *d = e->io.data + (size_t)i * e->io.size;

		if (bus_access(&vm->pio, e->io.port, d, e->io.size, e->io.write))
			pr_debug("vCPU %d: unclaimed port %s %#x", vcpu->id,
				 e->io.write ? "write to" : "read from", e->io.port);
	}
}

static void vcpu_handle_mmio(struct vcpu *vcpu, struct vcpu_exit *e)
{
	vcpu_count(&vcpu->exits[e->mmio.write ? VCPU_EXITS_MMIO_WRITE : VCPU_EXITS_MMIO_READ]);
	/* guest-controlled: gpa and len; the bus checks both. */
	if (bus_access(&vcpu->vm->mmio, e->mmio.gpa, e->mmio.data, e->mmio.len, e->mmio.write))
		pr_warn_ratelimited("vCPU %d: %u-byte %s unmapped MMIO at %#llx (%s)", vcpu->id,
				    e->mmio.len, e->mmio.write ? "write to" : "read from",
				    (unsigned long long)e->mmio.gpa,
				    e->mmio.write ? "dropped" : "reads all-ones");
}

void vcpu_dump(struct vcpu *vcpu, const char *why)
{
	static const char *const names[16] = {
		"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
		"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
	};
	struct x86_state s;
	char buf[1024];
	int n = 0;

	if (vcpu->vm->cpu->get_state(vcpu, &s)) {
		fprintf(stderr, "tarn: vCPU %d: %s (registers unavailable)\n", vcpu->id, why);
		return;
	}
	n += snprintf(buf + n, sizeof(buf) - (size_t)n, "tarn: vCPU %d: %s\n", vcpu->id, why);
	for (int i = 0; i < 16; i++)
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, "  %-3s %016llx%s", names[i],
			      (unsigned long long)s.gpr[i], i % 4 == 3 ? "\n" : "");
	n += snprintf(buf + n, sizeof(buf) - (size_t)n,
		      "  rip %016llx  rflags %08llx  cs %04x ss %04x\n"
		      "  cr0 %08llx cr2 %016llx cr3 %016llx cr4 %08llx efer %llx\n",
		      (unsigned long long)s.rip, (unsigned long long)s.rflags, s.cs.sel, s.ss.sel,
		      (unsigned long long)s.cr0, (unsigned long long)s.cr2,
		      (unsigned long long)s.cr3, (unsigned long long)s.cr4,
		      (unsigned long long)s.efer);
	fputs(buf, stderr);
}

/* Wait while the VM is paused (vm_pause counts the parked vCPUs). */
static void vcpu_park(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->pause_flag) && !vm->stopping)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->lock);
}

/* Auto-converge's sleep (vm_throttle): pct/(100-pct) of a slice, so
 * that of each slice run and its sleep the vCPU sleeps pct percent. A
 * pause or stop ends it early. */
static void vcpu_throttle(struct vcpu *vcpu)
{
	struct vm *vm = vcpu->vm;
	int pct = atomic_load(&vm->throttle_pct);
	uint64_t end = monotonic_ns() + VM_THROTTLE_SLICE_NS * (uint64_t)pct / (uint64_t)(100 - pct);

	while (pct && monotonic_ns() < end && !atomic_load(&vm->pause_flag) && !atomic_load(&vm->stop_flag)) {
		uint64_t left = end - monotonic_ns();

		if ((int64_t)left <= 0)
			break;
		left = left > 1000000 ? 1000000 : left; /* look at the flags each ms */
		nanosleep(&(struct timespec){ 0, (long)left }, NULL);
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *vcpu = arg;
	struct vm *vm = vcpu->vm;
	struct vcpu_exit *e = &vcpu->exit;
	bool boundary = true; /* between instructions: nothing half done */
	char name[16];

	snprintf(name, sizeof(name), "vcpu%d", vcpu->id);
	pthread_setname_np(pthread_self(), name);
	jail_vcpu_thread();
	while (!atomic_load(&vm->stop_flag)) {
		/* A pause kicks us; the kick's exit (INTR) comes once the
		 * instruction of a port or MMIO exit has been completed, so
		 * that is where we stop. */
		if (boundary && atomic_load(&vm->pause_flag)) {
			vcpu_park(vcpu);
			continue;
		}
		if (boundary && atomic_exchange(&vcpu->throttle_due, false)) {
			vcpu_throttle(vcpu);
			continue;
		}
		int ret = vm->cpu->vcpu_run(vcpu, e);

		if (ret) {
			pr_err("vCPU %d: run failed: %s", vcpu->id, strerror(-ret));
			vm_request_stop(vm, VM_EXIT_VMM_ERROR);
			break;
		}
		boundary = e->reason == VCPU_EXIT_INTR;
		switch (e->reason) {
		case VCPU_EXIT_IO:
			vcpu_handle_io(vcpu, e);
			break;
		case VCPU_EXIT_MMIO:
			vcpu_handle_mmio(vcpu, e);
			break;
		case VCPU_EXIT_HLT:
			/* Reported once per hlt; the next vcpu_run sleeps inside
			 * the backend until an interrupt, IPI or kick wakes it
			 * (emu: halt_wait; KVM halts in the kernel). */
			break;
		case VCPU_EXIT_INTR:
			break;
		case VCPU_EXIT_SHUTDOWN:
			if (e->shutdown.state_lost)
				fprintf(stderr, "tarn: vCPU %d: triple fault: the guest crashed (its registers "
					"are lost: KVM on AMD SVM resets the vCPU on a triple fault)\n", vcpu->id);
			else
				vcpu_dump(vcpu, "triple fault: the guest crashed");
			vm_request_stop(vm, VM_EXIT_CRASH);
			break;
		case VCPU_EXIT_RESET:
			vm_request_stop(vm, VM_EXIT_RESET);
			break;
		case VCPU_EXIT_POWEROFF:
			vm_request_stop(vm, VM_EXIT_POWEROFF);
			break;
		case VCPU_EXIT_ERROR:
			pr_err("vCPU %d: %s%s", vcpu->id, e->error.msg,
			       e->error.code == VCPU_ERR_INTERNAL ? " (an internal error in tarn: please report it)"
								  : "");
			vcpu_dump(vcpu, "backend error");
			vm_request_stop(vm, VM_EXIT_VMM_ERROR);
			break;
		}
	}
	return NULL;
}

void vcpu_start(struct vcpu *vcpu)
{
	sigset_t all, old;
	int ret;

	/* vCPU threads take no process signals but the kick (SIGUSR1). */
	sigfillset(&all);
	sigdelset(&all, SIGUSR1);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGSYS); /* the jail's filter says why it ends us */
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		pr_err("vCPU %d: cannot start thread: %s", vcpu->id, strerror(ret));
		vm_request_stop(vcpu->vm, VM_EXIT_VMM_ERROR);
		return;
	}
	vcpu->thread_started = true;
}
