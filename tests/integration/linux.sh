#!/bin/bash
# The default guest boots to userspace under the emulator (or the backend
# TARN_BACKEND names): our init's banner, `uname -a`, /proc/cpuinfo, and the
# SHA-256 of a file of pseudo-random data the guest generates from a seed,
# compared with the value computed here from the same seed; the TSC
# frequency known without calibration (kvmclock: 1 GHz on the emulator, the
# host's on KVM), the wall clock right; then ACPI power-off, exit 0.
# With --cpus 2 the guest must see both CPUs online and run the workload
# pinned to each of them at once. A guest kernel panic ends in a reset (4).
# The kernel is unpacked by tarn (the default) except in the last boot.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

need_guest "the default guest boots"

SEED=${SEED:-20261123}
KIB=64
# ---- one CPU ----
# The generator as a script file in the guest (GEN_PROLOGUE), so taskset can run it.
script="$GEN_PROLOGUE
uname -a
echo cpus=\$(grep -c ^processor /proc/cpuinfo)
echo clock=\$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource) epoch=\$(date +%s)
dmesg | grep -E 'tsc: (Detected|Fast TSC|Refined)'
sh /tmp/gen.sh $SEED $((KIB * 1024)) > /tmp/data
echo \"sum=\$(sha256sum < /tmp/data | cut -d' ' -f1)\""
# KVM's complaints about the guest land in the host's kernel log (e.g.
# "Unhandled WRMSR"): count them around the first boot.
kvm_log() { dmesg 2>/dev/null | grep -c -E "kvm.*([Uu]nhandled|unimplemented)"; }
[ "$BACKEND" = kvm ] && kvm_before=$(kvm_log)
boot "$script" --cpus 1
check "1 vCPU" "tarn-guest: init ready" "init's banner"
check "1 vCPU" "^Linux .* x86_64" "uname -a"
check "1 vCPU" "^cpus=1" "/proc/cpuinfo lists 1 CPU"
# The TSC frequency comes from kvmclock: no calibration against the PIT.
if [ "$BACKEND" = emu ]; then
	check "1 vCPU" "tsc: Detected 1000.000 MHz" "TSC frequency known (1 GHz)"
else
	check "1 vCPU" "tsc: Detected [0-9]+\.[0-9]+ MHz" "TSC frequency known"
fi
if grep -qE "Fast TSC calibration|Refined TSC" "$out"; then
	not_ok "1 vCPU: no TSC calibration" "$(grep -m1 -E 'Fast TSC|Refined TSC' "$out")"
else
	ok "1 vCPU: no TSC calibration loop"
fi
check "1 vCPU" "^clock=kvm-clock" "kvm-clock is the clocksource"
guest_epoch=$(grep -m1 -o 'epoch=[0-9]*' "$out" | cut -d= -f2)
if [ -n "$guest_epoch" ] && [ $(( $(date +%s) - guest_epoch )) -lt 600 ] && [ $(( guest_epoch - $(date +%s) )) -lt 60 ]; then
	ok "1 vCPU: guest wall clock matches the host's"
else
	not_ok "1 vCPU: guest wall clock" "guest says ${guest_epoch:-nothing}, host $(date +%s)"
fi
want=$(seeded_sum "$SEED" $((KIB * 1024)))
check "1 vCPU" "^sum=$want" "sha256 of seeded data matches the host's"
check "1 vCPU" "command exited with status 0" "command status 0"
[ $rc -eq 0 ] && ok "1 vCPU: power-off, tarn exits 0" || not_ok "1 vCPU: power-off" "tarn exited $rc"
# A normal boot makes tarn warn about nothing (every MSR the guest touches
# is handled or deliberately answered, README "platform"), nor KVM.
if grep -q "^tarn: warning" "$out"; then
	not_ok "1 vCPU: no warnings" "$(grep -m2 '^tarn: warning' "$out" | tr '\n' ' ')"
else
	ok "1 vCPU: tarn warned about nothing"
fi
if [ "$BACKEND" = kvm ]; then
	if [ "$(kvm_log)" = "$kvm_before" ]; then
		ok "1 vCPU: KVM logged nothing about the guest"
	else
		not_ok "1 vCPU: KVM logged nothing" "$(dmesg | grep -E 'kvm.*([Uu]nhandled|unimplemented)' | tail -2 | tr '\n' ' ')"
	fi
fi
rm -f "$out"

# ---- two CPUs: both online, a workload pinned to each at once ----
script="$GEN_PROLOGUE
echo online=\$(cat /sys/devices/system/cpu/online) nproc=\$(nproc)
for c in 0 1; do (taskset -c \$c sh /tmp/gen.sh \$(($SEED + c)) $((KIB * 1024)) | sha256sum | sed \"s/^/cpu\$c=/\") & done
wait"
boot "$script" --cpus 2
check "2 vCPUs" "^online=0-1 nproc=2" "both CPUs online"
check "2 vCPUs" "^cpu0=$(seeded_sum "$SEED" $((KIB * 1024)))" "workload on CPU 0 matches"
check "2 vCPUs" "^cpu1=$(seeded_sum $((SEED + 1)) $((KIB * 1024)))" "workload on CPU 1 matches"
[ $rc -eq 0 ] && ok "2 vCPUs: power-off, tarn exits 0" || not_ok "2 vCPUs: power-off" "tarn exited $rc"
rm -f "$out"

# ---- a guest kernel panic: panic=-1 reboots at once, tarn reports a reset
# (exit status 4) and says so; nothing of tarn crashes ----
boot "echo c > /proc/sysrq-trigger" --cpus 1
check "panic" "Kernel panic" "the guest kernel panicked"
[ $rc -eq 4 ] && ok "panic: tarn exits 4 (guest reset)" || not_ok "panic" "tarn exited $rc, expected 4 (reset)"
rm -f "$out"

# ---- the kernel's own decompressor in the guest (--unpack guest) ----
boot "echo unpacked-by-guest" --cpus 1 --unpack guest
check "guest unpack" "^unpacked-by-guest" "the guest-decompressed kernel runs the command"
[ $rc -eq 0 ] && ok "guest unpack: power-off, tarn exits 0" || not_ok "guest unpack: power-off" "tarn exited $rc"
rm -f "$out"
done_testing
