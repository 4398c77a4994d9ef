OBJS += src/virtio/virtqueue.o src/virtio/virtio_pci.o src/virtio/iov.o src/virtio/rng.o
OBJS += src/virtio/console.o
OBJS += src/virtio/blk.o
OBJS += src/virtio/net.o src/virtio/tap.o src/virtio/vhost_user.o src/virtio/net_vhost.o

# libFuzzer harnesses of the virtio parsers. Each is tests/fuzz/fuzz_NAME.c,
# built with the sources named on its line below into $(O)/fuzz/fuzz_NAME,
# and run by tests/fuzz/fuzz_NAME.sh for a short budget from a copy of its
# corpus, tests/fuzz/corpus/NAME/ (see tests/fuzz/libfuzzer.sh: seeds, and
# how to replay a finding). `make fuzz` builds them (clang needed); `make
# check` builds them when clang and libFuzzer are there, else leaves the
# reason in $(O)/fuzz/fuzz_NAME.skip for the .sh to report as a SKIP.
# `make fuzz-long [FUZZ_TIME=600] [SEED=N]` runs each for FUZZ_TIME seconds
# and merges what it found, minimised, back into its corpus: commit that.
# A new harness: one FUZZERS line, one sources line, one TEST_BINS line (and
# its corpus from `make fuzz-long`).
FUZZERS += virtqueue
$(O)/fuzz/fuzz_virtqueue: src/virtio/virtqueue.c src/mem/gm.c
TEST_BINS += tests/fuzz/fuzz_virtqueue.sh
FUZZERS += blk
$(O)/fuzz/fuzz_blk: src/core/ratelimit.c src/virtio/blk.c src/virtio/iov.c src/virtio/virtqueue.c src/mem/gm.c src/core/log.c \
	src/block/qcow2.c
FUZZ_LIBS_blk := -lz -lm
FUZZ_LIBS_net := -lm
TEST_BINS += tests/fuzz/fuzz_blk.sh
FUZZERS += net
$(O)/fuzz/fuzz_net: src/core/ratelimit.c src/virtio/net.c src/virtio/iov.c src/virtio/tap.c src/virtio/virtqueue.c src/mem/gm.c src/core/log.c \
	src/core/evloop.c
TEST_BINS += tests/fuzz/fuzz_net.sh
FUZZERS += qcow2
$(O)/fuzz/fuzz_qcow2: src/block/qcow2.c src/virtio/iov.c src/core/log.c src/block/qcow2.h
FUZZ_LIBS_qcow2 := -lz
TEST_BINS += tests/fuzz/fuzz_qcow2.sh
FUZZERS += switch
$(O)/fuzz/fuzz_switch: src/switch/switch.c src/switch/frame.c src/switch/offload.c src/switch/switch.h src/switch/frame.h \
	src/switch/offload.h
TEST_BINS += tests/fuzz/fuzz_switch.sh

FUZZ_FLAGS := -O1 -g -std=gnu17 $(WARN) -Isrc -D_GNU_SOURCE -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

$(O)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/virtio_stub.h $(wildcard src/virtio/*.h) src/mem/gm.h src/core/log.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ-CC $@")
	$(Q)clang $(FUZZ_FLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS_$*)

fuzz:
	$(Q)$(MAKE) --no-print-directory $(FUZZERS:%=$(O)/fuzz/fuzz_%)

FUZZ_TIME ?= 600
fuzz-long: fuzz
	$(Q)for f in $(FUZZERS); do O=$(O) tests/fuzz/libfuzzer.sh --grow $$f $(FUZZ_TIME) || exit 1; done

fuzz-maybe:
	@mkdir -p $(O)/fuzz; rm -f $(O)/fuzz/*.skip
	$(Q)if ! command -v clang >/dev/null; then \
		why="clang is not installed"; \
	elif ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' | \
		clang -fsanitize=fuzzer -x c - -o $(O)/fuzz/probe >/dev/null 2>&1; then \
		why="clang cannot link libFuzzer (-fsanitize=fuzzer)"; \
	fi; rm -f $(O)/fuzz/probe; \
	if [ -n "$$why" ]; then \
		for f in $(FUZZERS); do echo "$$why" >$(O)/fuzz/fuzz_$$f.skip; done; \
	else \
		$(MAKE) -s --no-print-directory $(FUZZERS:%=$(O)/fuzz/fuzz_%); \
	fi

tests: fuzz-maybe
.PHONY: fuzz-maybe fuzz-long
