# TAP helpers for integration tests written in shell.
# Usage: . tests/integration/lib.sh; ok "name"; not_ok "name" "why"; skip "name" "why"
TAP_N=0
ok() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $1"; }
not_ok() { TAP_N=$((TAP_N + 1)); echo "not ok $TAP_N - $1: $2"; }
skip() { TAP_N=$((TAP_N + 1)); echo "# SKIP: $2"; echo "ok $TAP_N # SKIP $1"; }
O=${O:-build}
TARN=${TARN:-$O/tarn}
# Usable KVM: the device opens read-write.
kvm_usable() { [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] && : 2>/dev/null </dev/kvm; }
