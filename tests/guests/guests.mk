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
GUEST_HDRS := $(wildcard tests/guests/lib/*.h)
GUEST_SRCS := $(wildcard tests/guests/g_*.c)
GUEST_ELFS := $(patsubst tests/guests/%.c,$(O)/tests/guests/%.elf,$(GUEST_SRCS))

$(O)/tests/guests/%.elf: tests/guests/%.c $(GUEST_LIB) $(GUEST_HDRS) tests/guests/lib/link.ld
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GUEST   $@")
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $< $(GUEST_LIB)

GUEST_RUNNER := $(O)/tests/guests/runner

$(GUEST_RUNNER): tests/guests/runner.c $(GUEST_HDRS) $(LIB) | $(GUEST_ELFS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $<")
	$(Q)$(CC) $(CFLAGS) -DTARN_HOST -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

TEST_BINS += $(GUEST_RUNNER)

# The same runner with all of tarn built under ASan + UBSan: every object
# of libtarn compiled with the sanitizers by the rule the emulator fuzzer
# uses (tests/fuzz/fuzz.mk: $(O)/fuzz-san/, FUZZ_SAN_FLAGS), so the two
# share their objects. It sits next to the guest ELFs; without arguments it
# runs the tests marked .sanitized in runner.c (the virtio ones) on every
# backend. UBSan does not recover and ASan/LSan end the process with an
# error, so any sanitizer report fails it in tests/run.sh.
GUEST_SAN_OBJS := $(addprefix $(O)/fuzz-san/,$(OBJS))
GUEST_RUNNER_SAN := $(O)/tests/guests/runner-san

$(GUEST_RUNNER_SAN): tests/guests/runner.c $(GUEST_HDRS) $(GUEST_SAN_OBJS) | $(GUEST_ELFS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $@")
	$(Q)$(CC) $(CFLAGS) $(FUZZ_SAN_FLAGS) -DTARN_HOST -DRUNNER_SAN_ONLY -o $@ $< $(GUEST_SAN_OBJS) \
		$(LDFLAGS) -fsanitize=address,undefined $(LDLIBS)

TEST_BINS += $(GUEST_RUNNER_SAN)
