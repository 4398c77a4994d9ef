# Tests. Every test program speaks TAP on its standard output, with a plan
# (cmocka with CMOCKA_MESSAGE_OUTPUT=TAP, our own micro-guest runner, shell
# scripts through tests/integration/lib.sh); tests/run.sh runs them all,
# checks each one's plan and exit status, and prints the tally "N passed,
# N failed, N skipped" (the forms it accepts: atop tests/run.sh).

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/unit/%,$(UNIT_SRCS))

$(O)/tests/unit/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $<")
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

# test_cgroup also links tarnd's cgroup code.
$(O)/tests/unit/test_cgroup: tests/unit/test_cgroup.c $(O)/src/daemon/cgroup.o $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $<")
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(O)/src/daemon/cgroup.o $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

# The tallier's own test: fake programs that lie to tests/run.sh.
TEST_BINS += tests/run_sh_test.sh $(UNIT_BINS)

include tests/guests/guests.mk
include tests/integration/integration.mk
include tests/difftest/difftest.mk
include tests/fuzz/fuzz.mk

tests: $(TEST_BINS) $(BIN) $(O)/tarnd $(O)/tarnctl $(O)/tarn-switch $(O)/bench/guest_count.elf $(O)/bench/guest_touch.elf

check: setup
	$(Q)$(MAKE) --no-print-directory tests guest
	$(Q)O=$(O) ./tests/run.sh $(TEST_BINS) $(INTEGRATION_TESTS)

# Mutation testing (tests/mutants/run.py, list in tests/mutants/mutants.txt):
# each listed bug is put into a scratch copy of the tree ($(O)-mutants/) and
# the fast tests covering its file must fail. MUTANTS=REGEX picks mutants by
# id or file. Takes about half a minute per mutant.
mutants:
	$(Q)python3 tests/mutants/run.py --scratch $(O)-mutants $(if $(MUTANTS),--only '$(MUTANTS)')

.PHONY: tests mutants
