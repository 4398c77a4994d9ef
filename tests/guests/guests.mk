# Micro-guests: freestanding 64-bit C and assembly, linked at 2 MiB, one ELF
# per test; the host side is tests/guests/runner.c.

GUEST_CC := gcc
GUEST_CFLAGS := -O2 -g -std=gnu17 -Wall -Wextra -Werror -Wno-unused-parameter \
	-ffreestanding -fno-pic -no-pie -fno-stack-protector -mno-red-zone \
	-mgeneral-regs-only -fno-asynchronous-unwind-tables -fcf-protection=none \
	-Itests/guests
GUEST_LDFLAGS := -nostdlib -static -Wl,-T,tests/guests/lib/link.ld -Wl,--build-id=none \
	-Wl,-z,noexecstack -Wl,--no-warn-rwx-segments

GUEST_LIB := tests/guests/lib/start.S tests/guests/lib/isr.S tests/guests/lib/runtime.c
GUEST_SRCS := $(wildcard tests/guests/g_*.c)
GUEST_ELFS := $(patsubst tests/guests/%.c,$(O)/tests/guests/%.elf,$(GUEST_SRCS))

$(O)/tests/guests/%.elf: tests/guests/%.c $(GUEST_LIB) tests/guests/lib/guest.h tests/guests/lib/acpi.h tests/guests/lib/link.ld
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GUEST   $@")
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $< $(GUEST_LIB)

GUEST_RUNNER := $(O)/tests/guests/runner

$(GUEST_RUNNER): tests/guests/runner.c tests/guests/lib/guest.h $(LIB) | $(GUEST_ELFS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $<")
	$(Q)$(CC) $(CFLAGS) -DTARN_HOST -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

TEST_BINS += $(GUEST_RUNNER)
