OBJS += src/virtio/virtqueue.o src/virtio/virtio_pci.o src/virtio/rng.o

# Virtqueue fuzzing with libFuzzer. `make fuzz` builds it (clang needed);
# `make check` builds it when clang and libFuzzer are there, else leaves the
# reason for tests/fuzz/fuzz_virtqueue.sh to report as a SKIP, and runs it
# for a short budget (FUZZ_VQ_TIME seconds, default 20).
FUZZ_VQ := $(O)/fuzz/fuzz_virtqueue
FUZZ_VQ_SRCS := tests/fuzz/fuzz_virtqueue.c src/virtio/virtqueue.c src/mem/gm.c
FUZZ_VQ_FLAGS := -O1 -g -std=gnu17 $(WARN) -Isrc -D_GNU_SOURCE -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined

fuzz: $(FUZZ_VQ)

$(FUZZ_VQ): $(FUZZ_VQ_SRCS) src/virtio/virtqueue.h src/mem/gm.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ-CC $@")
	$(Q)clang $(FUZZ_VQ_FLAGS) -o $@ $(FUZZ_VQ_SRCS)

fuzz-vq-maybe:
	@mkdir -p $(O)/fuzz; rm -f $(FUZZ_VQ).skip
	$(Q)if ! command -v clang >/dev/null; then \
		echo "clang is not installed" >$(FUZZ_VQ).skip; \
	elif ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' | \
		clang -fsanitize=fuzzer -x c - -o $(O)/fuzz/probe >/dev/null 2>&1; then \
		echo "clang cannot link libFuzzer (-fsanitize=fuzzer)" >$(FUZZ_VQ).skip; \
	else \
		$(MAKE) -s --no-print-directory $(FUZZ_VQ); \
	fi; rm -f $(O)/fuzz/probe

tests: fuzz-vq-maybe
TEST_BINS += tests/fuzz/fuzz_virtqueue.sh
.PHONY: fuzz-vq-maybe
