#!/bin/bash
# virtio-rng over the modern virtio PCI transport (--rng), under the
# emulator with the default guest: its /init loads virtio_pci and
# virtio_rng by modalias, the kernel picks virtio_rng.0 as the hardware
# RNG, /dev/hwrng hands out bytes, and the queue's interrupts arrive as
# MSI-X -- or, with MSI off in the guest (pci=nomsi), through the device's
# INTx line, level-triggered and shared through the IOAPIC (on KVM a
# resampling irqfd). Without --rng there is no hardware RNG.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

need_guest "virtio-rng"

script='echo rng=$(cat /sys/class/misc/hw_random/rng_current)
echo bytes=$(head -c 64 /dev/hwrng | wc -c)
echo big=$(head -c 65536 /dev/hwrng | wc -c)
echo distinct=$(head -c 4096 /dev/hwrng | od -An -v -tx1 | tr " " "\n" | grep . | sort -u | wc -l)
echo msix=$(grep virtio0-input /proc/interrupts | tr -s " " | cut -d" " -f3,4)'
boot "$script" --rng
check "--rng" "^rng=virtio_rng\.0" "the guest's hardware RNG is virtio_rng.0"
check "--rng" "^bytes=64\b" "head -c 64 /dev/hwrng gives 64 bytes"
check "--rng" "^big=65536\b" "64 KiB from /dev/hwrng over many requests"
# 4 KiB of random bytes hit (almost surely) all 256 values; a zero-filled
# or constant buffer gives 1.
check "--rng" "^distinct=(2[0-9][0-9])\b" "the bytes are not constant (>= 200 distinct values in 4 KiB)"
check "--rng" "^msix=[1-9][0-9]* PCI-MSI" "the request queue's interrupts arrive as MSI-X"
[ $rc -eq 0 ] && ok "--rng: power-off, tarn exits 0" || not_ok "--rng: power-off" "tarn exited $rc"
rm -f "$out"

# INTx: the same requests with MSI switched off in the guest.
GUEST_CMDLINE="$GUEST_CMDLINE pci=nomsi" boot 'echo big=$(head -c 65536 /dev/hwrng | wc -c)
echo intx=$(grep virtio0 /proc/interrupts | tr -s " " | cut -d" " -f3,4)' --rng
check "INTx" "^big=65536\b" "64 KiB from /dev/hwrng with MSI off"
check "INTx" "^intx=[1-9][0-9]* IO-APIC" "the interrupts arrive through the IOAPIC"
[ $rc -eq 0 ] && ok "INTx: power-off, tarn exits 0" || not_ok "INTx: power-off" "tarn exited $rc"
rm -f "$out"

boot 'echo rng=$(cat /sys/class/misc/hw_random/rng_current)'
check "no --rng" "^rng=none\b" "no hardware RNG without --rng"
rm -f "$out"
done_testing
