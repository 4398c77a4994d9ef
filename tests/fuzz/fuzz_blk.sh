#!/bin/bash
# The virtio-blk request fuzzer (tests/fuzz/fuzz_blk.c) for FUZZ_BLK_TIME
# seconds (default 30); see libfuzzer.sh.
exec "$(dirname "$0")/libfuzzer.sh" blk "${FUZZ_BLK_TIME:-30}"
