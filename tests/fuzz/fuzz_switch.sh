#!/bin/bash
# The switch's fuzzer (tests/fuzz/fuzz_switch.c) for FUZZ_SWITCH_TIME
# seconds (default 20), from a copy of tests/fuzz/corpus/switch/; SEED=N
# fixes the seed. See libfuzzer.sh (replaying a finding).
exec "$(dirname "$0")/libfuzzer.sh" switch "${FUZZ_SWITCH_TIME:-20}"
