#!/bin/bash
# Runs the virtqueue libFuzzer harness ($O/fuzz/fuzz_virtqueue, built by
# `make tests`) for FUZZ_VQ_TIME seconds (default 20) and reports one TAP
# line. A finding leaves its input in $O/fuzz/ (crash-*, leak-*, timeout-*):
# replay it with `$O/fuzz/fuzz_virtqueue <file>`.
O=${O:-build}
bin=$O/fuzz/fuzz_virtqueue
echo "1..1"
if [ -f "$bin.skip" ]; then
	echo "# SKIP: $(cat "$bin.skip")"
	echo "ok 1 # SKIP fuzz_virtqueue"
	exit 0
fi
if [ ! -x "$bin" ]; then
	echo "not ok 1 - fuzz_virtqueue: $bin not built (make O=$O tests)"
	exit 1
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
log=$O/fuzz/fuzz_virtqueue.log
"$bin" -max_total_time="${FUZZ_VQ_TIME:-20}" -timeout=10 -print_final_stats=1 \
	-artifact_prefix="$O/fuzz/" "$corpus" >"$log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
if [ $rc -eq 0 ] && [ -n "$runs" ]; then
	echo "ok 1 - fuzz_virtqueue: $runs runs, no finding (${cov:-cov: ?} edges)"
else
	echo "not ok 1 - fuzz_virtqueue: exit $rc, see $log"
	tail -30 "$log"
	exit 1
fi
