# Differential testing of the emulator against the host CPU, and of its
# instruction lengths against capstone (tests/difftest/difftest.h).
# `make check` runs the default count (100,000 cases, 100,000 lengths);
# `make difftest N=... SEED=... LEN=...` runs as many as asked.

DIFFTEST := $(O)/tests/difftest/difftest
DIFFTEST_SRCS := $(wildcard tests/difftest/*.c)

$(DIFFTEST): $(DIFFTEST_SRCS) tests/difftest/difftest.h $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $@")
	$(Q)$(CC) $(CFLAGS) -Itests/difftest -o $@ $(DIFFTEST_SRCS) $(LIB) $(LDFLAGS) $(LDLIBS) -lcapstone

TEST_BINS += $(DIFFTEST)

difftest: $(DIFFTEST)
	$(Q)$(DIFFTEST) $(if $(N),-n $(N)) $(if $(SEED),-s $(SEED)) $(if $(LEN),-l $(LEN),$(if $(N),-l 0))

.PHONY: difftest
