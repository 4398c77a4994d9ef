#!/bin/bash
# The KVM benchmarks where this host's /dev/kvm cannot run Linux (none, or
# PVM): tarn --backend kvm against QEMU -accel kvm inside the nested bed
# (tests/nested/bed.sh, a real KVM under QEMU's software emulator), with the
# same scripts and arguments `make bench` uses (the disk image in the VM's
# /tmp, ext4 on a RAM disk: the host's / is read-only there). Absolute times there are
# slow (every L2 exit crosses an emulated SVM); the ratios are the result.
# Where this host's KVM runs Linux, `make bench` has measured KVM already.
#
#   bench/kvm.sh TARN KERNEL INITRD CMDLINE GUEST_EXIT_ELF
#
# BENCH_* variables pass through (bench/README.md).
cd "$(dirname "$0")/.." || exit 1
[ $# -eq 5 ] || { sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
tarn=$1 kernel=$2 initrd=$3 cmdline=$4 guest=$5
probe=$("$tarn" probe kvm)
case "$probe" in
"kvm: usable, pvm"|"kvm: unusable"*) ;;
*) echo "bench: KVM figures above ($probe)"; exit 0 ;;
esac
echo "bench: this host's KVM cannot run Linux (${probe#kvm: }): KVM figures from the nested bed"

# A Linux boot with the I/O steps takes about a minute in the bed; one that
# hangs there (the nested layer's problem as often as a VMM's: README) should
# not cost the 900 s io.py waits by default.
export BENCH_IO_TIMEOUT=${BENCH_IO_TIMEOUT:-300}
# The nested VM starts with a clean environment: hand the BENCH_* settings on.
mapfile -t settings < <(env | grep '^BENCH_' | grep -v '^BENCH_ACCEL=')
exec tests/nested/bed.sh --work "${BENCH_NESTED_WORK:-$(dirname "$tarn")/nested}" -- \
	env "${settings[@]}" BENCH_ACCEL=kvm bash -c '
	python3 bench/bench.py --tarn "$1" --guest "$5" &&
	python3 bench/boot.py --tarn "$1" --kernel "$2" --initrd "$3" --cmdline "$4" &&
	python3 bench/io.py --tarn "$1" --kernel "$2" --initrd "$3" --cmdline "$4" --dir /tmp' bench "$tarn" "$kernel" "$initrd" "$cmdline" "$guest"
