#!/bin/bash
# The default guest's kernel starts under KVM: it enters its 64-bit entry
# with our boot_params, and its decompressor sets up the console named on
# our command line, programming the 8250's divisor latch through tarn's
# model (--unpack guest: the decompressor runs in the guest, not in tarn).
# tarn -v logs that moment; we wait up to 60 s for it.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name="Linux under KVM programs the UART divisor"
if ! kvm_usable; then
	skip "$name" "no usable /dev/kvm on this host"
	exit 0
fi
. <(make -s --no-print-directory guest-vars O="$O")
if [ ! -f "$GUEST_KERNEL" ]; then
	not_ok "$name" "default guest kernel missing: $GUEST_KERNEL (make guest)"
	exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
timeout 60 "$TARN" run -v --backend kvm --unpack guest --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
	--mem 512M --cmdline "console=uart8250,io,0x3f8 earlyprintk=serial" \
	</dev/null >/dev/null 2>"$log" &
pid=$!
for _ in $(seq 1 120); do
	grep -q "guest set divisor" "$log" && break
	kill -0 $pid 2>/dev/null || break
	sleep 0.5
done
kill $pid 2>/dev/null
wait $pid 2>/dev/null
if grep -q "guest set divisor" "$log"; then
	ok "$name ($(grep -m1 'guest set divisor' "$log"))"
else
	not_ok "$name" "no divisor programming seen in 60 s: $(tail -3 "$log" | tr '\n' ' ')"
fi
