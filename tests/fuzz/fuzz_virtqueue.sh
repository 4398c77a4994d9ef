#!/bin/bash
# The virtqueue fuzzer (tests/fuzz/fuzz_virtqueue.c) for FUZZ_VQ_TIME seconds
# (default 30); see libfuzzer.sh.
exec "$(dirname "$0")/libfuzzer.sh" virtqueue "${FUZZ_VQ_TIME:-30}"
