#!/bin/bash
# The virtio-blk request fuzzer (tests/fuzz/fuzz_blk.c) for FUZZ_BLK_TIME
# seconds (default 20), from a copy of tests/fuzz/corpus/blk/; SEED=N fixes
# the seed. See libfuzzer.sh (replaying a finding).
exec "$(dirname "$0")/libfuzzer.sh" blk "${FUZZ_BLK_TIME:-20}"
