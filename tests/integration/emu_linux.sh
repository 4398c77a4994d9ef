#!/bin/bash
# The default guest boots to userspace under the emulator (--backend emu):
# our init's banner, `uname -a`, /proc/cpuinfo, and the SHA-256 of a file of
# pseudo-random data the guest generates from a seed, compared with the
# value computed here from the same seed; the TSC frequency known without
# calibration (kvmclock), the wall clock right; then ACPI power-off, exit 0.
# With --cpus 2 the guest must see both CPUs online and run the workload
# pinned to each of them at once. A guest kernel panic ends in a reset (4).
# The kernel is unpacked by tarn (the default) except in the last boot.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

. <(make -s --no-print-directory guest-vars O="$O")
if [ ! -f "$GUEST_KERNEL" ] || [ ! -f "$GUEST_INITRD" ]; then
	not_ok "emu boots the default guest" "default guest missing: $GUEST_KERNEL (make guest)"
	exit 0
fi

SEED=${SEED:-20261123}
KIB=64
# MINSTD (x = x * 48271 mod 2^31-1): exact in awk's doubles, so the guest's
# busybox awk and this host's python agree bit for bit. One byte per step.
gen='awk -v s=$1 -v n=$2 "BEGIN { x = s % 2147483647; if (x == 0) x = 1;
	for (i = 0; i < n; i++) { x = (x * 48271) % 2147483647;
	printf \"%02x\", int(x / 8388608) % 256; if (i % 32 == 31) printf \"\\n\" } }" | xxd -r -p'
expect_sum() { # SEED BYTES
	python3 -c '
import hashlib, sys
x, n = int(sys.argv[1]) % 2147483647 or 1, int(sys.argv[2])
b = bytearray()
for _ in range(n):
    x = x * 48271 % 2147483647
    b.append(x // 8388608 % 256)
print(hashlib.sha256(b).hexdigest())' "$1" "$2"
}

# boot NAME CPUS SCRIPT [TARN-OPTIONS...]: run SCRIPT as tarn.cmd64 in the
# default guest; leaves the console in $out and tarn's status in $rc.
boot() {
	local cmd64
	cmd64=$(printf '%s' "$3" | base64 -w0)
	out=$(mktemp)
	timeout 600 "$TARN" run --backend emu --cpus "$2" --mem 512M "${@:4}" --kernel "$GUEST_KERNEL" \
		--initrd "$GUEST_INITRD" --cmdline "$GUEST_CMDLINE tarn.cmd64=$cmd64" \
		</dev/null >"$out" 2>&1
	rc=$?
}

check() { # NAME PATTERN WHAT
	if grep -qE "$2" "$out"; then ok "$1: $3"; else not_ok "$1" "no '$2' on the console: $(tail -5 "$out" | tr '\r\n' '  ')"; fi
}

# ---- one CPU ----
# The generator as a script file in the guest, so taskset can run it.
prologue="cat > /tmp/gen.sh <<'GEN'
$gen
GEN"
script="$prologue
uname -a
echo cpus=\$(grep -c ^processor /proc/cpuinfo)
echo clock=\$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource) epoch=\$(date +%s)
dmesg | grep -E 'tsc: (Detected|Fast TSC|Refined)'
sh /tmp/gen.sh $SEED $((KIB * 1024)) > /tmp/data
echo \"sum=\$(sha256sum < /tmp/data | cut -d' ' -f1)\""
boot "1 vCPU" 1 "$script"
check "1 vCPU" "tarn-guest: init ready" "init's banner"
check "1 vCPU" "^Linux .* x86_64" "uname -a"
check "1 vCPU" "^cpus=1" "/proc/cpuinfo lists 1 CPU"
# The TSC frequency comes from kvmclock: no calibration against the PIT.
check "1 vCPU" "tsc: Detected 1000.000 MHz" "TSC frequency known (1 GHz)"
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
want=$(expect_sum "$SEED" $((KIB * 1024)))
check "1 vCPU" "^sum=$want" "sha256 of seeded data matches the host's"
check "1 vCPU" "command exited with status 0" "command status 0"
[ $rc -eq 0 ] && ok "1 vCPU: power-off, tarn exits 0" || not_ok "1 vCPU: power-off" "tarn exited $rc"
rm -f "$out"

# ---- two CPUs: both online, a workload pinned to each at once ----
script="$prologue
echo online=\$(cat /sys/devices/system/cpu/online) nproc=\$(nproc)
for c in 0 1; do (taskset -c \$c sh /tmp/gen.sh \$(($SEED + c)) $((KIB * 1024)) | sha256sum | sed \"s/^/cpu\$c=/\") & done
wait"
boot "2 vCPUs" 2 "$script"
check "2 vCPUs" "^online=0-1 nproc=2" "both CPUs online"
check "2 vCPUs" "^cpu0=$(expect_sum "$SEED" $((KIB * 1024)))" "workload on CPU 0 matches"
check "2 vCPUs" "^cpu1=$(expect_sum $((SEED + 1)) $((KIB * 1024)))" "workload on CPU 1 matches"
[ $rc -eq 0 ] && ok "2 vCPUs: power-off, tarn exits 0" || not_ok "2 vCPUs: power-off" "tarn exited $rc"
rm -f "$out"

# ---- a guest kernel panic: panic=-1 reboots at once, tarn reports a reset
# (exit status 4) and says so; nothing of tarn crashes ----
boot "panic" 1 "echo c > /proc/sysrq-trigger"
check "panic" "Kernel panic" "the guest kernel panicked"
[ $rc -eq 4 ] && ok "panic: tarn exits 4 (guest reset)" || not_ok "panic" "tarn exited $rc, expected 4 (reset)"
rm -f "$out"

# ---- the kernel's own decompressor in the guest (--unpack guest) ----
boot "guest unpack" 1 "echo unpacked-by-guest" --unpack guest
check "guest unpack" "^unpacked-by-guest" "the guest-decompressed kernel runs the command"
[ $rc -eq 0 ] && ok "guest unpack: power-off, tarn exits 0" || not_ok "guest unpack: power-off" "tarn exited $rc"
rm -f "$out"
