#!/bin/bash
# The KVM half of the suite: every micro-guest (and the sanitized virtio
# ones under ASan/UBSan) and every Linux integration test, under
# --backend kvm, on a real KVM. Speaks TAP; each inner test is one line.
#
#   tests/nested/kvm_suite.sh            where make check runs it: decide
#   tests/nested/kvm_suite.sh --direct   run on this host's /dev/kvm now
#
# Where it runs (tarn probe kvm decides, the same probe tarn and the
# runner use):
#   hardware or nested KVM  directly on this host. The micro-guests already
#                           ran on it in make check's runner, so only the
#                           Linux tests run here.
#   PVM or no /dev/kvm      inside a nested VM that has a real KVM
#                           (tests/nested/bed.sh: QEMU's emulator with AMD
#                           SVM, a Debian kernel, kvm_amd), everything.
#                           PVM runs only kernels built as PVM guests (see
#                           tarn probe --help), so no Linux test can use it.
# Inside the nested VM TARN_REQUIRE_KVM=1 is set: a test that finds no KVM
# there fails instead of skipping.
cd "$(dirname "$0")/../.." || exit 1
O=${O:-build}
export O
O_ABS=$(cd "$O" && pwd)

# run_tap NAME CMD...: run a TAP program, re-number its lines into this
# stream and pass its comments on; a SKIP becomes a failure when
# TARN_REQUIRE_KVM=1; an exit status != 0 with no failure reported, or no
# result at all, is a failure.
n=0
run_tap() {
	local name=$1 line out rc results=0 failed=0
	shift
	out=$(mktemp)
	"$@" >"$out" 2>&1
	rc=$?
	while IFS= read -r line; do
		case "$line" in
		"ok "*"# SKIP"*)
			n=$((n + 1)) results=$((results + 1))
			if [ "${TARN_REQUIRE_KVM:-0}" = 1 ]; then
				failed=$((failed + 1))
				echo "not ok $n - ${line#ok * # SKIP }: skipped, but TARN_REQUIRE_KVM=1"
			else
				echo "ok $n # SKIP ${line#ok * # SKIP }"
			fi ;;
		"ok "*|"not ok "*)
			n=$((n + 1)) results=$((results + 1))
			[[ $line == "not ok "* && $line != *"# TODO "* ]] && failed=$((failed + 1))
			# "ok 12 - x" -> "ok N - x"
			echo "$line" | sed -E "s/^(not ok|ok) [0-9]+/\\1 $n/" ;;
		"#"*) echo "$line" ;;
		esac
	done <"$out"
	if [ $results -eq 0 ] || { [ $rc -ne 0 ] && [ $failed -eq 0 ]; }; then
		n=$((n + 1))
		echo "not ok $n - $name: exited with status $rc after $results results"
		tail -20 "$out" | sed 's/^/# | /'
	fi
	rm -f "$out"
}

direct() {
	local micro=$1
	if [ "$micro" = yes ]; then
		run_tap runner "$O/tests/guests/runner" -b kvm
		run_tap runner-san "$O/tests/guests/runner-san" -b kvm
	fi
	for t in linux virtio_rng virtio_console virtio_blk virtio_net stop; do
		run_tap "kvm/$t" env TARN_BACKEND=kvm "tests/integration/$t.sh"
	done
}

if [ "$1" = --direct ]; then
	direct "${2:-yes}"
	echo "1..$n"
	exit 0
fi

probe=$("$O/tarn" probe kvm)
case "$probe" in
"kvm: usable, hardware"|"kvm: usable, nested"|"kvm: usable, nested-tcg")
	echo "# the KVM suite runs on this host's KVM ($probe)"
	direct no
	echo "1..$n"
	exit 0 ;;
esac
echo "# the KVM suite runs in a nested VM: this host's /dev/kvm cannot run Linux (${probe#kvm: })"
tap=$(mktemp)
trap 'rm -f "$tap"' EXIT
tests/nested/bed.sh --work "$O_ABS/nested" --timeout 900 --tap "$tap" -- \
	env O="$O_ABS" TARN_REQUIRE_KVM=1 tests/nested/kvm_suite.sh --direct
rc=$?
run_tap nested cat "$tap"
[ $rc -eq 0 ] || { n=$((n + 1)); echo "not ok $n - the nested VM: bed.sh exited $rc (log: $O/nested/l1.log)"; }
echo "1..$n"
