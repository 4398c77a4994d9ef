#!/bin/bash
# The virtqueue fuzzer (tests/fuzz/fuzz_virtqueue.c) for FUZZ_VQ_TIME seconds
# (default 20), from a copy of tests/fuzz/corpus/virtqueue/; SEED=N fixes the
# seed. See libfuzzer.sh (replaying a finding).
exec "$(dirname "$0")/libfuzzer.sh" virtqueue "${FUZZ_VQ_TIME:-20}"
