# Fuzz tests. emu_fuzz always runs under ASan + UBSan, also in a plain
# `make check`: the emulator's sources (and guest memory, which bounds every
# guest access) are compiled a second time with the sanitizers into their own
# object directory; anything else the test needs comes from libtarn.a.
# It prints its seed first ("# seed: N"); `SEED=N $(O)/tests/fuzz/emu_fuzz`
# (or `make check SEED=N`) replays a run, and a failure prints the command
# that replays just the failed run (see the top of emu_fuzz.c). The libFuzzer
# harnesses, their corpora and `make fuzz-long` are in src/virtio/virtio.mk
# (the snapshot loader's, which needs all of libtarn, below).

FUZZ_SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
FUZZ_SAN_SRCS := $(patsubst %.o,%.c,$(filter src/cpu/emu/%.o,$(OBJS))) src/mem/gm.c
FUZZ_SAN_OBJS := $(patsubst %.c,$(O)/fuzz-san/%.o,$(FUZZ_SAN_SRCS))
FUZZ_EMU := $(O)/tests/fuzz/emu_fuzz

$(O)/fuzz-san/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC-SAN  $<")
	$(Q)$(CC) $(CFLAGS) $(FUZZ_SAN_FLAGS) -c $< -o $@

$(FUZZ_EMU): tests/fuzz/emu_fuzz.c $(FUZZ_SAN_OBJS) $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $<")
	$(Q)$(CC) $(CFLAGS) $(FUZZ_SAN_FLAGS) -Itests/unit -o $@ $< $(FUZZ_SAN_OBJS) $(LIB) \
		$(LDFLAGS) -fsanitize=address,undefined $(LDLIBS) -lcmocka

TEST_BINS += $(FUZZ_EMU)

# The snapshot corrupter (snap_corrupt.c), against the whole of tarn built
# with the sanitizers (the micro-guest runner's objects, tests/guests/
# guests.mk); tests/integration/snapshot.sh runs it on the snapshot it made.
SNAP_CORRUPT := $(O)/tests/fuzz/snap_corrupt

$(SNAP_CORRUPT): tests/fuzz/snap_corrupt.c $(GUEST_SAN_OBJS)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $<")
	$(Q)$(CC) $(CFLAGS) $(FUZZ_SAN_FLAGS) -o $@ $< $(GUEST_SAN_OBJS) $(LDFLAGS) -fsanitize=address,undefined $(LDLIBS)

tests: $(SNAP_CORRUPT)

# The snapshot loader's libFuzzer harness (fuzz_snapshot.c) builds whole VMs
# from its inputs, so it links all of libtarn, compiled for it with clang
# and the harnesses' flags (virtio.mk's FUZZ_FLAGS) into $(O)/fuzz-lf/, one
# object per source: a rebuild after an edit compiles only that file, in
# parallel with -j (the harness rule of virtio.mk compiles all its sources
# in one command each time). kvm.c's struct-with-header idiom is a GNU
# extension clang warns about. The emulator's instruction interpreter, which
# a restore never runs, is compiled at -O0: at -O1 clang's UBSan takes
# 100 s over it, -O0 2 s.
FUZZ_LF_OBJS := $(addprefix $(O)/fuzz-lf/,$(OBJS))
$(O)/fuzz-lf/src/cpu/emu/exec.o: FUZZ_LF_OPT := -O0

$(O)/fuzz-lf/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ-CC $<")
	$(Q)clang $(FUZZ_FLAGS) $(FUZZ_LF_OPT) -pthread -fno-strict-aliasing -Wno-gnu-variable-sized-type-not-at-end \
		-MMD -MP -c $< -o $@

FUZZERS += snapshot
$(O)/fuzz/fuzz_snapshot: tests/fuzz/fuzz_snapshot.c $(FUZZ_LF_OBJS) src/core/vm.h src/snapshot/snapshot.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ-CC $@")
	$(Q)clang $(FUZZ_FLAGS) -pthread -o $@ $< $(FUZZ_LF_OBJS) $(LDLIBS)
TEST_BINS += tests/fuzz/fuzz_snapshot.sh
