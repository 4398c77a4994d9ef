#!/bin/bash
# The virtio-net fuzzer (tests/fuzz/fuzz_net.c) for FUZZ_NET_TIME seconds
# (default 30); see libfuzzer.sh.
exec "$(dirname "$0")/libfuzzer.sh" net "${FUZZ_NET_TIME:-30}"
