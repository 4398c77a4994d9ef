#!/bin/bash
# The virtio-net fuzzer (tests/fuzz/fuzz_net.c) for FUZZ_NET_TIME seconds
# (default 20), from a copy of tests/fuzz/corpus/net/; SEED=N fixes the
# seed. See libfuzzer.sh (replaying a finding).
exec "$(dirname "$0")/libfuzzer.sh" net "${FUZZ_NET_TIME:-20}"
