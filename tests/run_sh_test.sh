#!/bin/bash
# tests/run.sh must not be lied to: fake test programs that print nothing,
# speak TAP on standard error only, break their plan, skip in a form it does
# not accept, or fail without saying so must each count as a failure; good
# programs, skips, expected failures and cmocka's own skip must tally as
# before. Each case runs tests/run.sh (or $RUN_SH) on one or more fakes and
# checks its last line and its exit status. Speaks TAP.
here=$(cd "$(dirname "$0")" && pwd)
RUN_SH=${RUN_SH:-$here/run.sh}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# fake NAME BODY: a bash script $tmp/NAME running BODY.
fake() { printf '#!/bin/bash\n%s\n' "$2" >"$tmp/$1" && chmod +x "$tmp/$1"; }

fake silent 'exit 0'
fake stderr_only 'printf "1..2\nok 1 - a\nok 2 - b\n" >&2'
fake short_plan 'printf "1..3\nok 1 - a\nok 2 - b\n"'
fake lower_skip 'printf "1..2\nok 1 - a\nok 2 - b # skip no reason\n"'
fake not_ok_skip 'printf "1..2\nok 1 - a\nnot ok 2 - b # SKIP it failed\n"'
fake exit1_all_ok 'printf "1..2\nok 1 - a\nok 2 - b\n"; exit 1'
fake good 'printf "1..2\nok 1 - a\nok 2 - b\n"'
fake good_plan_last 'printf "ok 1 - a\n# a comment\nok 2\n1..2\n"'
fake good_skip 'printf "1..3\nok 1 - a\nok 2 - b # SKIP no widget here\nok 3 # SKIP no gadget\n"'
fake xfail 'printf "1..2\nok 1 - a\nnot ok 2 - b # TODO a known defect of the host\n"'
fake passing_todo 'printf "1..2\nok 1 - a\nok 2 - b # TODO a known defect of the host\n"'
fake no_plan 'printf "ok 1 - a\nok 2 - b\n"'
fake plan_middle 'printf "ok 1 - a\n1..2\nok 2 - b\n"'
fake two_plans 'printf "1..1\nok 1 - a\n1..1\nok 1 - b\n"'
fake long_plan 'printf "1..1\nok 1 - a\nok 2 - b\n"'
fake skip_no_reason 'printf "1..2\nok 1 - a\nok 2 - b # SKIP\n"'
fake skip_no_space 'printf "1..2\nok 1 - a\nok 2 - b #SKIP why\n"'
fake numbered_twice 'printf "1..2\nok 1 - a\nok 1 - b\n"'
fake not_ok_exit0 'printf "1..2\nok 1 - a\nnot ok 2 - b\n"'
fake crash 'printf "1..3\nok 1 - a\n"; kill -KILL $$'
fake plan_zero 'printf "1..0\n"'

# cmocka's own skip: a real cmocka program using SKIP_BECAUSE (unit.h).
cat >"$tmp/cm.c" <<'EOF'
#include "unit.h"
static void passes(void **state) { (void)state; }
static void skips(void **state) { (void)state; SKIP_BECAUSE("no %s here", "widget"); }
int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(passes), cmocka_unit_test(skips) };

	return cmocka_run_group_tests(tests, NULL, NULL);
}
EOF
cc_err=$(cc -I"$here/unit" -o "$tmp/cmocka_skip" "$tmp/cm.c" -lcmocka 2>&1)

cases=(
	# fakes | last line | exit status | a line run.sh must print (ERE)
	"silent|0 passed, 1 failed, 0 skipped|1|FAIL silent: .*ran nothing"
	"stderr_only|0 passed, 1 failed, 0 skipped|1|FAIL stderr_only: .*standard error does not count"
	"short_plan|2 passed, 1 failed, 0 skipped|1|FAIL short_plan: planned 3 tests, reported 2"
	"lower_skip|1 passed, 1 failed, 0 skipped|1|FAIL lower_skip: .*malformed SKIP directive"
	"not_ok_skip|1 passed, 1 failed, 0 skipped|1|FAIL not_ok_skip: not ok 2 .*is a failure"
	"exit1_all_ok|2 passed, 1 failed, 0 skipped|1|FAIL exit1_all_ok: exited with status 1"
	"silent stderr_only short_plan lower_skip not_ok_skip|4 passed, 5 failed, 0 skipped|1|"
	"good|2 passed, 0 failed, 0 skipped|0|"
	"good_plan_last|2 passed, 0 failed, 0 skipped|0|"
	"good_skip|1 passed, 0 failed, 2 skipped|0|SKIP good_skip: b: no widget here"
	"cmocka_skip|1 passed, 0 failed, 1 skipped|0|SKIP cmocka_skip: skips: no widget here"
	"xfail|1 passed, 0 failed, 0 skipped, 1 expected failures|0|XFAIL xfail: 2 - b # TODO"
	"passing_todo|1 passed, 1 failed, 0 skipped|1|marked expected to fail"
	"no_plan|2 passed, 1 failed, 0 skipped|1|FAIL no_plan: no plan"
	"plan_middle|2 passed, 1 failed, 0 skipped|1|plan is in the middle"
	"two_plans|2 passed, 1 failed, 0 skipped|1|2 plans"
	"long_plan|2 passed, 1 failed, 0 skipped|1|planned 1 tests, reported 2"
	"skip_no_reason|1 passed, 1 failed, 0 skipped|1|malformed SKIP directive"
	"skip_no_space|1 passed, 1 failed, 0 skipped|1|malformed SKIP directive"
	"numbered_twice|2 passed, 1 failed, 0 skipped|1|test 2 is numbered 1"
	"not_ok_exit0|1 passed, 1 failed, 0 skipped|1|FAIL not_ok_exit0: not ok 2 - b$"
	"crash|1 passed, 1 failed, 0 skipped|1|exited with status 137; planned 3 tests, reported 1"
	"plan_zero|0 passed, 1 failed, 0 skipped|1|ran nothing"
	"good good_skip xfail|4 passed, 0 failed, 2 skipped, 1 expected failures|0|"
)
echo "1..${#cases[@]}"
i=0
for c in "${cases[@]}"; do
	IFS='|' read -r fakes want want_rc must <<<"$c"
	i=$((i + 1))
	progs=()
	for f in $fakes; do progs+=("$tmp/$f"); done
	out=$("$RUN_SH" "${progs[@]}" 2>&1)
	rc=$?
	last=$(tail -1 <<<"$out")
	[ $rc -ne 0 ] && rc=1
	if [ "$last" = "$want" ] && [ $rc -eq "$want_rc" ] && { [ -z "$must" ] || grep -qE -- "$must" <<<"$out"; }; then
		echo "ok $i - $fakes: $want"
	else
		echo "not ok $i - $fakes: got \"$last\" (exit $rc), want \"$want\" (exit $want_rc)${must:+ and a line /$must/}"
		[ "$fakes" = cmocka_skip ] && [ -n "$cc_err" ] && sed 's/^/# cc: /' <<<"$cc_err"
		sed 's/^/# | /' <<<"$out"
	fi
done
