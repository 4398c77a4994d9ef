# Differential testing of the emulator against the host CPU, and of its
# instruction lengths against capstone (tests/difftest/difftest.h).
#
# `make check` runs the default count (100,000 cases, 100,000 lengths) from
# a seed that is new each run (time-based) and printed in the TAP output;
# `make difftest N=... SEED=... LEN=...` runs as many as asked from a given
# seed (SEED=0x... N=1 reruns one reported case); `make difftest-long` runs
# 10^7 cases and 10^6 lengths (about 10 minutes here; not part of
# check), printing progress every 10 s. X=1 also generates what the
# emulator is known to get wrong (difftest.h, DT_F_GAPS).

DIFFTEST := $(O)/tests/difftest/difftest
DIFFTEST_SRCS := $(wildcard tests/difftest/*.c)
DIFFTEST_ARGS = $(if $(SEED),-s $(SEED)) $(if $(X),-X)

$(DIFFTEST): $(DIFFTEST_SRCS) tests/difftest/difftest.h $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $@")
	$(Q)$(CC) $(CFLAGS) -Itests/difftest -o $@ $(DIFFTEST_SRCS) $(LIB) $(LDFLAGS) $(LDLIBS) -lcapstone

TEST_BINS += $(DIFFTEST)

difftest: $(DIFFTEST)
	$(Q)$(DIFFTEST) $(if $(N),-n $(N)) $(DIFFTEST_ARGS) $(if $(LEN),-l $(LEN),$(if $(N),-l 0))

difftest-long: $(DIFFTEST)
	$(Q)$(DIFFTEST) -n $(or $(N),10000000) -l $(or $(LEN),1000000) $(DIFFTEST_ARGS)

.PHONY: difftest difftest-long
