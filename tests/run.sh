#!/bin/bash
# tests/run.sh PROGRAM...: run test programs that speak TAP and tally them.
# Each runs without arguments, with CMOCKA_MESSAGE_OUTPUT=TAP. Only its
# standard output is read as TAP; its standard error is shown, with the
# output, when it fails. The lines that count:
#
#   1..N                          the plan: exactly one, before the first test
#                                 line or after the last; N = the test lines
#   ok N - desc                   passed ("ok N" alone too)
#   not ok N - desc               failed
#   ok N - desc # SKIP reason     skipped ("ok N # SKIP reason" too): upper
#                                 case, after " # ", with a reason
#   not ok N # SKIP name          skipped: what cmocka prints for skip();
#                                 SKIP_BECAUSE (tests/unit/unit.h) prints the
#                                 reason before it as "# SKIP: reason"
#   not ok N - desc # TODO why    an expected failure, counted apart (TAP's
#                                 TODO; "ok ... # TODO" is a failure)
#
# Anything else that looks like a skip is a failure: "not ok ... # SKIP why",
# "# skip", "#SKIP", a skip with no reason. A program that exits non-zero
# without a "not ok", prints no test line, or has no plan or a wrong one
# counts as one failure, with the reason. A test number, where given, must
# be the next one. A program that took 10 s or more gets a line "# S s:
# name". Prints "N passed, N failed, N skipped" last (with ", N
# expected failures" when there are any); exits 0 only when nothing failed.
pass=0 fail=0 skip=0 xfail=0
export CMOCKA_MESSAGE_OUTPUT=TAP

re_plan='^1\.\.([0-9]+)( +#.*)?$'
re_test='^(not ok|ok)( ([0-9]+))?( |$)'
re_skip='^ok [0-9]+( - (.*))? # SKIP ([^ ].*)$'
re_cmocka_skip='^not ok [0-9]+ # SKIP ([A-Za-z_][A-Za-z0-9_]*)$'
re_skipish='#[[:space:]]*skip' # matched against the line in lower case

# show WHAT MARK FILE: the last lines of FILE, if any, marked.
show() {
	[ -s "$3" ] || return 0
	echo "    $1 (last 40 lines):"
	tail -40 "$3" | sed "s/^/    $2 /"
}

# run_one PROGRAM: run it, tally its lines into the counters above.
run_one() {
	local t=$1 name out err rc line n=0 bad=0 plans=0 plan=-1 plan_at=0 reason= numbering= why=()
	name=$(basename "$t")
	out=$(mktemp) err=$(mktemp)
	local t0=$SECONDS
	"$t" >"$out" 2>"$err"
	rc=$?
	# Where the time goes (make check is held to about 25 minutes).
	[ $((SECONDS - t0)) -ge 10 ] && echo "# $((SECONDS - t0)) s: $name"
	while IFS= read -r line; do
		if [[ $line =~ $re_plan ]]; then
			plans=$((plans + 1)) plan=${BASH_REMATCH[1]} plan_at=$n
			continue
		fi
		if [[ $line == "# SKIP: "* ]]; then
			reason=${line#\# SKIP: }
			continue
		fi
		[[ $line =~ $re_test ]] || continue
		n=$((n + 1))
		if [ -z "$numbering" ] && [ -n "${BASH_REMATCH[3]}" ] && [ "${BASH_REMATCH[3]}" -ne $n ]; then
			numbering="test $n is numbered ${BASH_REMATCH[3]}"
		fi
		case "$line" in
		"not ok"*"# TODO "*)
			xfail=$((xfail + 1))
			echo "XFAIL $name: ${line#not ok }" ;;
		"ok"*"# TODO"*)
			bad=$((bad + 1))
			echo "FAIL $name: $line (passed, but is marked expected to fail)" ;;
		*)
			if [[ $line =~ $re_skip ]]; then
				skip=$((skip + 1))
				echo "SKIP $name: ${BASH_REMATCH[2]:+${BASH_REMATCH[2]}: }${BASH_REMATCH[3]}"
			elif [[ $line =~ $re_cmocka_skip ]]; then
				skip=$((skip + 1))
				echo "SKIP $name: ${BASH_REMATCH[1]}${reason:+: $reason}"
			elif [[ $line == "not ok"* ]]; then
				bad=$((bad + 1))
				if [[ ${line,,} =~ $re_skipish ]]; then
					echo "FAIL $name: $line (a \"not ok\" line is a failure: a skip is \"ok N - desc # SKIP reason\")"
				else
					echo "FAIL $name: $line"
				fi
			elif [[ ${line,,} =~ $re_skipish ]]; then
				bad=$((bad + 1))
				echo "FAIL $name: $line (malformed SKIP directive: the form is \"ok N - desc # SKIP reason\")"
			else
				pass=$((pass + 1))
			fi ;;
		esac
		reason=
	done <"$out"

	# What the program as a whole did wrong: one failure, every reason.
	[ -n "$numbering" ] && why+=("$numbering")
	[ $rc -ne 0 ] && [ $bad -eq 0 ] && why+=("exited with status $rc")
	if [ $n -eq 0 ]; then
		if grep -qE '^(not )?ok( |$)' "$err"; then
			why+=("no test line on standard output (TAP on standard error does not count)")
		else
			why+=("no test line: it ran nothing")
		fi
	fi
	if [ $plans -eq 0 ]; then
		why+=("no plan (a line 1..N)")
	elif [ $plans -gt 1 ]; then
		why+=("$plans plans, TAP allows one")
	else
		[ "$plan" -ne $n ] && why+=("planned $plan tests, reported $n")
		[ $plan_at -ne 0 ] && [ $plan_at -ne $n ] && why+=("the plan is in the middle, after test $plan_at")
	fi
	if [ ${#why[@]} -gt 0 ]; then
		bad=$((bad + 1))
		line=$(printf '%s; ' "${why[@]}")
		echo "FAIL $name: ${line%; }"
	fi
	fail=$((fail + bad))
	if [ $bad -gt 0 ]; then
		show "standard output" "|" "$out"
		show "standard error" "!" "$err"
	fi
	rm -f "$out" "$err"
}

for t in "$@"; do
	run_one "$t"
done
# Expected failures (TAP "not ok ... # TODO why": a defect shown to lie in
# what tarn runs on, e.g. one kind of KVM) are neither passes nor failures.
tally="$pass passed, $fail failed, $skip skipped"
[ $xfail -gt 0 ] && tally="$tally, $xfail expected failures"
echo "$tally"
[ $fail -eq 0 ]
