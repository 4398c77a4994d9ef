#!/bin/bash
# The qcow2 image fuzzer (tests/fuzz/fuzz_qcow2.c) for FUZZ_QCOW2_TIME
# seconds (default 20), from a copy of tests/fuzz/corpus/qcow2/; SEED=N fixes
# the seed. See libfuzzer.sh (replaying a finding).
exec "$(dirname "$0")/libfuzzer.sh" qcow2 "${FUZZ_QCOW2_TIME:-20}"
