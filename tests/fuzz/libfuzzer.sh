#!/bin/bash
# libfuzzer.sh NAME SECONDS: run the libFuzzer harness $O/fuzz/fuzz_NAME
# (built by `make tests`, see src/virtio/virtio.mk) for SECONDS, starting from
# a copy of its corpus tests/fuzz/corpus/NAME/ in a temporary directory (the
# repository is never written), and report one TAP line; SKIP with the reason
# the build left in $O/fuzz/fuzz_NAME.skip.
#
# libfuzzer.sh --grow NAME SECONDS (`make fuzz-long`): the same run, then the
# corpus and what the run found are minimised together (-merge=1 into an empty
# directory) and that set replaces tests/fuzz/corpus/NAME/; prints the files
# and coverage edges before and after. Commit the result.
#
# Seeds: SEED=N (environment, or `make check SEED=N`) is passed on as
# -seed=N (its low 32 bits); without it each run draws one. It is printed
# first ("# seed: N") and again in a failure.
# Reproducing a failure: the input that failed is left in $O/fuzz/ (crash-*,
# leak-*, timeout-*, oom-*) and `$O/fuzz/fuzz_NAME <file>` replays it exactly;
# `SEED=N tests/fuzz/fuzz_NAME.sh` runs the same mutations from the same
# corpus again (the run is timed, so it may stop before or after the finding).
O=${O:-build}
grow=0
if [ "$1" = --grow ]; then
	grow=1
	shift
fi
name=fuzz_$1
secs=$2
bin=$O/fuzz/$name
corpus=$(dirname "$0")/corpus/$1
echo "1..1"
if [ -n "$SEED" ]; then
	seed=$((SEED & 0xffffffff))
else
	seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi
[ "$seed" -eq 0 ] && seed=1 # -seed=0 would make libFuzzer draw its own
echo "# seed: $seed"
if [ -f "$bin.skip" ]; then
	echo "ok 1 - $name # SKIP $(cat "$bin.skip")"
	exit 0
fi
if [ ! -x "$bin" ]; then
	echo "not ok 1 - $name: $bin not built (make O=$O tests)"
	exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/run" "$work/min"
[ -d "$corpus" ] && cp -r "$corpus"/. "$work/run"/
nstart=$(find "$work/run" -type f | wc -l)

# "files edges bytes" of a corpus directory: -runs=0 runs each input once.
measure() {
	local edges
	edges=$("$bin" -runs=0 "$1" 2>&1 | sed -n 's/.*INITED cov: \([0-9]*\).*/\1/p' | tail -1)
	echo "$(find "$1" -type f | wc -l) ${edges:-0} $(find "$1" -type f -exec cat {} + | wc -c)"
}
[ $grow = 1 ] && read -r files0 edges0 bytes0 < <(measure "$work/run")

log=$O/fuzz/$name.log
"$bin" -max_total_time="$secs" -seed="$seed" -timeout=10 -print_final_stats=1 \
	-artifact_prefix="$O/fuzz/" "$work/run" >"$log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
cov0=$(sed -n 's/.*INITED cov: \([0-9]*\).*/\1/p' "$log" | tail -1)
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | tr -dc 0-9)
if [ $rc -ne 0 ] || [ -z "$runs" ]; then
	echo "not ok 1 - $name: exit $rc (seed $seed), see $log"
	tail -30 "$log" | sed 's/^/# /'
	artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
	[ -n "$artifact" ] && echo "# replay the failing input: $bin $artifact"
	echo "# run the same again: SEED=$seed O=$O $(dirname "$0")/$name.sh"
	exit 1
fi
echo "ok 1 - $name: $runs runs in $secs s from $nstart corpus files, no finding" \
	"(edges: ${cov0:-?} at start, ${cov:-?} at end; seed $seed)"
[ $grow = 0 ] && exit 0

if ! "$bin" -merge=1 "$work/min" "$work/run" >>"$log" 2>&1; then
	echo "# $name: merge failed, corpus left as it was; see $log"
	exit 1
fi
read -r files1 edges1 bytes1 < <(measure "$work/min")
mkdir -p "$corpus"
added=0
for f in "$work/min"/*; do
	[ -e "$corpus/$(basename "$f")" ] || added=$((added + 1))
done
rm -f "$corpus"/*
cp "$work/min"/* "$corpus"/
echo "# $name corpus: $files0 -> $files1 files ($added new), $edges0 -> $edges1 edges" \
	"($((edges1 - edges0)) added), $bytes0 -> $bytes1 bytes in $corpus"
