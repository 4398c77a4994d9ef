#!/bin/bash
# libfuzzer.sh NAME SECONDS: run the libFuzzer harness $O/fuzz/fuzz_NAME
# (built by `make tests`, see src/virtio/virtio.mk) for SECONDS from an empty
# corpus and report one TAP line; SKIP with the reason the build left in
# $O/fuzz/fuzz_NAME.skip. A finding leaves its input in $O/fuzz/ (crash-*,
# leak-*, timeout-*): replay it with `$O/fuzz/fuzz_NAME <file>`.
O=${O:-build}
name=fuzz_$1
bin=$O/fuzz/$name
echo "1..1"
if [ -f "$bin.skip" ]; then
	echo "ok 1 - $name # SKIP $(cat "$bin.skip")"
	exit 0
fi
if [ ! -x "$bin" ]; then
	echo "not ok 1 - $name: $bin not built (make O=$O tests)"
	exit 1
fi
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
log=$O/fuzz/$name.log
"$bin" -max_total_time="$2" -timeout=10 -print_final_stats=1 -artifact_prefix="$O/fuzz/" "$corpus" >"$log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
if [ $rc -eq 0 ] && [ -n "$runs" ]; then
	echo "ok 1 - $name: $runs runs in $2 s, no finding (${cov:-cov: ?} edges)"
else
	echo "not ok 1 - $name: exit $rc, see $log"
	tail -30 "$log" >&2
	exit 1
fi
