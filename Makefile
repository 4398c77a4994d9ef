# tarn: one plain GNU Makefile. `make` builds, `make check` tests, `make run`
# boots the default guest, `make bench` compares with QEMU.
#   WERROR=0  relax -Werror      SAN=1  build with ASan + UBSan
#   V=1       show commands

CC ?= gcc
ifeq ($(CC),cc)
CC := gcc
endif
WERROR ?= 1
SAN ?= 0
O ?= build

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wpointer-arith -Wformat=2 -Wno-unused-parameter -Wno-missing-field-initializers
ifeq ($(WERROR),1)
WARN += -Werror
endif

CFLAGS ?= -O2 -g
CFLAGS += -std=gnu17 $(WARN) -Isrc -D_GNU_SOURCE -pthread -fno-strict-aliasing \
	-MMD -MP
LDFLAGS += -pthread
LDLIBS += -lm -llz4 -lmicrohttpd -ljansson -lz -lseccomp

ifeq ($(SAN),1)
O := build-san
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

all: tarn

# ---- the VMM core (libtarn.a: everything but main) ----
OBJS += src/core/log.o
OBJS += src/core/config.o
OBJS += src/core/evloop.o
OBJS += src/core/ratelimit.o
OBJS += src/core/jail.o
OBJS += src/core/vm.o
OBJS += src/core/vm_config.o
OBJS += src/api/http.o
OBJS += src/api/api.o
OBJS += src/api/http_client.o
OBJS += src/api/ctl.o
OBJS += src/snapshot/snapfile.o
OBJS += src/snapshot/vcpu_state.o
OBJS += src/snapshot/snapshot.o
OBJS += src/migrate/migrate.o
OBJS += src/block/qcow2.o
OBJS += src/core/vcpu.o
OBJS += src/core/console.o
OBJS += src/mem/gm.o
OBJS += src/bus/bus.o
OBJS += src/pci/pci.o
OBJS += src/cpu/cpu.o
OBJS += src/cpu/kvm/kvm.o
OBJS += src/arch/x86/cpu_state.o
OBJS += src/arch/x86/boot.o
OBJS += src/arch/x86/kpayload.o
OBJS += src/arch/x86/acpi.o
OBJS += src/arch/x86/aml.o
OBJS += src/arch/x86/cpuid.o
OBJS += src/hw/uart8250.o
OBJS += src/hw/i8042.o
OBJS += src/hw/rtc.o
OBJS += src/hw/debug_port.o
OBJS += src/hw/acpi_pm.o
OBJS += src/hw/lapic.o
OBJS += src/hw/ioapic.o
OBJS += src/hw/pic.o
OBJS += src/hw/pit.o
OBJS += src/switch/frame.o src/switch/switch.o src/switch/vport.o src/switch/offload.o
-include src/cpu/emu/emu.mk
-include src/virtio/virtio.mk

LIB := $(O)/libtarn.a
BIN := $(O)/tarn

tarn: $(BIN) $(O)/tarnd $(O)/tarnctl $(O)/tarn-switch

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(addprefix $(O)/,$(OBJS))
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(BIN): $(O)/src/tarn.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---- the host daemon and its command line (src/daemon/) ----
TARND_OBJS := src/daemon/main.o src/daemon/db.o src/daemon/supervise.o src/daemon/routes.o src/daemon/volumes.o src/daemon/snapshots.o src/daemon/vmconsole.o src/daemon/cgroup.o src/daemon/networks.o

$(O)/tarnd: $(addprefix $(O)/,$(TARND_OBJS)) $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lsqlite3 -lnettle

# ---- the virtual switch (src/switch/) ----
$(O)/tarn-switch: $(O)/src/switch/main.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/tarnctl: $(O)/src/daemon/tarnctl.o $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lnettle

include tests/tests.mk
include guest/guest.mk
include bench/bench.mk

# Install missing Debian packages (needs root; does nothing when all present).
DEBS := build-essential clang llvm lld libclang-rt-14-dev qemu-system-x86 acpica-tools busybox-static \
	cpio lz4 zstd e2fsprogs qemu-utils zlib1g-dev libcapstone-dev libcmocka-dev liblz4-dev libmicrohttpd-dev libjansson-dev libcurl4-openssl-dev libsqlite3-dev sqlite3 nettle-dev libseccomp-dev \
	iproute2 ethtool python3 curl kmod time
setup:
	$(Q)./tools/setup.sh $(DEBS)

run: setup tarn guest
	$(BIN) run --kernel $(GUEST_KERNEL) --initrd $(GUEST_INITRD) --mem 512M \
		--cmdline "$(GUEST_CMDLINE)" $(RUN_ARGS)

# For scripts: the default guest's paths as shell assignments.
guest-vars:
	@echo "GUEST_KERNEL='$(GUEST_KERNEL)'"
	@echo "GUEST_INITRD='$(GUEST_INITRD)'"
	@echo "GUEST_CMDLINE='$(GUEST_CMDLINE)'"

clean:
	rm -rf build build-san build-mutants

.PHONY: all tarn setup run clean check bench guest fuzz guest-vars

-include $(shell find $(O) -name '*.d' 2>/dev/null)
