#!/bin/bash
# The snapshot loader fuzzer (tests/fuzz/fuzz_snapshot.c) for
# FUZZ_SNAPSHOT_TIME seconds (default 10), from a copy of
# tests/fuzz/corpus/snapshot/; SEED=N fixes the seed. See libfuzzer.sh
# (replaying a finding).
exec "$(dirname "$0")/libfuzzer.sh" snapshot "${FUZZ_SNAPSHOT_TIME:-10}"
