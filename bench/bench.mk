# Benchmarks: tarn side by side with QEMU, in the same run (bench/README.md).
# Included by the top-level Makefile (uses O, Q, BIN).
#   BENCH_RUNS=N       runs per figure (default 10)
#   BENCH_ACCEL=A      kvm | tcg | emu | QEMU/TARN (e.g. tcg/emu); default kvm
#                      when /dev/kvm works, else QEMU tcg and tarn emu
#   BENCH_TIMEOUT=S    seconds before a run is killed (default 20)
#   BENCH_QEMU=PATH    the peer (default qemu-system-x86_64)
#   BENCH_CPU_RUNS=N   runs of each CPU figure (default 5)
#   BENCH_CPU_FIGURES=int,chase,syscall,fault  which CPU figures (default all)
#   BENCH_BOOT_RUNS=N  Linux boots per VMM (default 5)
#   BENCH_IO_RUNS=N    I/O benchmark boots per VMM (default 3; bench/io.py
#                      lists BENCH_IO_MIB, _READS, _NET_MIB, _IMAGE_MIB)
#   BENCH_SNAP_RUNS=N  snapshot cycles per VMM and memory size (default 3)
#   BENCH_MIG_RUNS=N   live migrations per VMM, memory size and load (default 2);
#                      BENCH_MIG_MEMS="256M 1G", BENCH_MIG_LOADS="0 10 50" (MB/s)
#   BENCH_TARND_VMS=N  VMs asked of tarnd and of libvirt at once (default 20)
#   BENCH_SWITCH_RUNS=N, _MIB, _FRAMES, _BACKEND, _PARTS  tarn's switch against the
#                      Linux bridge (bench/switch.sh)

BENCH_PYTHON ?= python3
BENCH_GUEST_CC ?= $(or $(GUEST_CC),gcc)
# The micro-guest style of tests/guests/guests.mk, with a linker script of
# its own: the guest is one assembly file with a PT_NOTE segment.
BENCH_GUEST_CFLAGS := -g -Wall -Wextra -Werror -ffreestanding -fno-pic -no-pie \
	-fno-asynchronous-unwind-tables -fcf-protection=none
BENCH_GUEST_LDFLAGS := -nostdlib -static -Wl,-T,bench/guest.ld -Wl,--build-id=none \
	-Wl,-z,noexecstack -Wl,--no-warn-rwx-segments

BENCH_GUEST := $(O)/bench/guest_exit.elf
BENCH_INT_GUEST := $(O)/bench/guest_int.elf
# The counting micro-guest of bench/snapshot.py.
BENCH_COUNT_GUEST := $(O)/bench/guest_count.elf
# bench/guest_long.S, one ELF per figure and its set-up-only twin:
# $(O)/bench/long_chase.elf, long_chase_setup.elf, ... (bench/cpu.py --long).
BENCH_LONG := $(O)/bench/long
BENCH_LONG_FIGURE_chase := 1
BENCH_LONG_FIGURE_syscall := 2
BENCH_LONG_FIGURE_fault := 3
BENCH_LONG_GUESTS := $(foreach f,chase syscall fault,$(BENCH_LONG)_$(f).elf $(BENCH_LONG)_$(f)_setup.elf)
BENCH_GUESTS := $(BENCH_GUEST) $(BENCH_INT_GUEST) $(BENCH_COUNT_GUEST) $(BENCH_LONG_GUESTS)
# The frame injector of bench/switch.sh, a host program.
BENCH_INJECT := $(O)/bench/inject

$(BENCH_INJECT): bench/inject.c src/virtio/vhost_user.c src/virtio/vhost_user.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -O2 -Wall -Wextra -Werror -pthread -Isrc bench/inject.c src/virtio/vhost_user.c -o $@

define bench_guest_build
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GUEST   $@")
	$(Q)$(BENCH_GUEST_CC) $(BENCH_GUEST_CFLAGS) $(BENCH_GUEST_LDFLAGS) $(1) -o $@ $<
endef

$(O)/bench/%.elf: bench/%.S bench/guest.ld bench/pvh_note.h
	$(call bench_guest_build)
# (long_chase_setup.elf: the shorter stem wins, so this rule.)
$(BENCH_LONG)_%_setup.elf: bench/guest_long.S bench/guest.ld bench/pvh_note.h
	$(call bench_guest_build,-DFIGURE=$(BENCH_LONG_FIGURE_$*) -DSETUP)
$(BENCH_LONG)_%.elf: bench/guest_long.S bench/guest.ld bench/pvh_note.h
	$(call bench_guest_build,-DFIGURE=$(BENCH_LONG_FIGURE_$*))

BENCH_CPU = $(BENCH_PYTHON) bench/cpu.py --tarn $(BIN) --guest $(BENCH_INT_GUEST) \
	--empty $(BENCH_GUEST) --long $(BENCH_LONG)

# tarn is built first, but a failed build does not stop the benchmark: QEMU's
# figures still print and tarn's read SKIP (never those of a stale binary).
# Two recipe lines, so that `make -n bench` only shows the second.
BENCH_UNBUILT := $(O)/bench/tarn-unbuilt

bench: $(BENCH_GUESTS) $(BENCH_INJECT) $(GUEST_KERNEL) $(GUEST_INITRD)
	$(Q)rm -f $(BENCH_UNBUILT); $(MAKE) --no-print-directory $(if $(Q),-s) tarn || { \
		echo "bench: 'make tarn' failed; tarn's figures will read SKIP" >&2; \
		touch $(BENCH_UNBUILT); }
	$(Q)$(BENCH_PYTHON) bench/bench.py --tarn $(BIN) --guest $(BENCH_GUEST) \
		$$(test -e $(BENCH_UNBUILT) && echo --tarn-unbuilt)
	$(Q)$(BENCH_CPU) $$(test -e $(BENCH_UNBUILT) && echo --tarn-unbuilt)
	$(Q)$(BENCH_PYTHON) bench/boot.py --tarn $(BIN) --kernel $(GUEST_KERNEL) \
		--initrd $(GUEST_INITRD) --cmdline "$(GUEST_CMDLINE)" \
		$$(test -e $(BENCH_UNBUILT) && echo --tarn-unbuilt)
	$(Q)$(BENCH_PYTHON) bench/io.py --tarn $(BIN) --kernel $(GUEST_KERNEL) \
		--initrd $(GUEST_INITRD) --cmdline "$(GUEST_CMDLINE)" \
		$$(test -e $(BENCH_UNBUILT) && echo --tarn-unbuilt)
	$(Q)$(BENCH_PYTHON) bench/snapshot.py --tarn $(BIN) --kernel $(GUEST_KERNEL) \
		--initrd $(GUEST_INITRD) --cmdline "$(GUEST_CMDLINE)" --micro $(BENCH_COUNT_GUEST) \
		$$(test -e $(BENCH_UNBUILT) && echo --tarn-unbuilt)
	$(Q)$(BENCH_PYTHON) bench/migrate.py --tarn $(BIN) --kernel $(GUEST_KERNEL) \
		--initrd $(GUEST_INITRD) --cmdline "$(GUEST_CMDLINE)" \
		$$(test -e $(BENCH_UNBUILT) && echo --tarn-unbuilt)
	$(Q)$(BENCH_PYTHON) bench/tarnd.py --tarn $(BIN) --tarnd $(O)/tarnd --guest $(BENCH_COUNT_GUEST) \
		$$(test -e $(BENCH_UNBUILT) && echo --tarn-unbuilt)
	$(Q)test -e $(BENCH_UNBUILT) || O=$(O) bench/switch.sh
	$(Q)test -e $(BENCH_UNBUILT) || bench/kvm.sh $(abspath $(BIN)) $(abspath $(GUEST_KERNEL)) \
		$(abspath $(GUEST_INITRD)) "$(GUEST_CMDLINE)" $(abspath $(BENCH_GUEST))

bench-guest: $(BENCH_GUESTS)

# The CPU figures alone (bench/cpu.py), with the tarn built here.
bench-cpu: $(BIN) $(BENCH_GUESTS)
	$(Q)$(BENCH_CPU)

.PHONY: bench bench-guest bench-cpu
