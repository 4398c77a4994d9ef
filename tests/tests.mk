# Tests. Every test program speaks TAP (cmocka with CMOCKA_MESSAGE_OUTPUT=TAP,
# or our own micro-guest runner); tests/run.sh runs them all and prints the
# tally "N passed, N failed, N skipped".

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/unit/%,$(UNIT_SRCS))

$(O)/tests/unit/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST-CC $<")
	$(Q)$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS) -lcmocka

TEST_BINS += $(UNIT_BINS)

include tests/guests/guests.mk
include tests/integration/integration.mk
include tests/difftest/difftest.mk
include tests/fuzz/fuzz.mk

tests: $(TEST_BINS) $(BIN)

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
