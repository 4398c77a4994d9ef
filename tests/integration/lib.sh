# TAP helpers for integration tests written in shell.
# Usage: . tests/integration/lib.sh; ok "name"; not_ok "name" "why"; skip "name" "why";
#        done_testing (last, also where a script ends early)
# The guest tests run under the emulator unless TARN_BACKEND names another
# backend (the nested KVM bed runs them with TARN_BACKEND=kvm); then each
# test's name starts with the backend's.
BACKEND=${TARN_BACKEND:-emu}
TAP_PREFIX=${TARN_BACKEND:+$TARN_BACKEND/}
TAP_N=0 TAP_FAILED=0
ok() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $TAP_PREFIX$1"; }
not_ok() { TAP_N=$((TAP_N + 1)) TAP_FAILED=$((TAP_FAILED + 1)); echo "not ok $TAP_N - $TAP_PREFIX$1: $2"; }
skip() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $TAP_PREFIX$1 # SKIP $2"; }
# done_testing: the plan (TAP's "1..N", after the last test) and the end of
# the script, status 1 if a test failed. A script that stops before it, by
# accident or a signal, prints no plan, and tests/run.sh counts a failure.
done_testing() { echo "1..$TAP_N"; exit $((TAP_FAILED > 0)); }
O=${O:-build}
TARN=${TARN:-$O/tarn}
# Usable KVM: tarn's own probe (the one the backend and the runner use).
kvm_usable() { "$TARN" probe kvm >/dev/null 2>&1; }
