#!/bin/bash
# A guest that spins with interrupts off never exits to tarn; SIGTERM must
# still stop the VM (vCPU threads are kicked out of the backend), with or
# without device threads beside them: tarn
# exits 0 promptly, with no crash. Under the emulator and, where /dev/kvm
# is usable, under KVM (or only under the backend TARN_BACKEND names). The time is printed; the test fails only if tarn is
# still running 5 s after the signal.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

spin=$O/tests/guests/g_spin.elf
if [ ! -f "$spin" ]; then
	not_ok "stop a spinning guest" "$spin missing (make tests)"
	done_testing
fi
backends=${TARN_BACKEND:-emu}
if [ -z "$TARN_BACKEND" ] && kvm_usable; then
	backends="emu kvm"
fi
# Once plain, once with a disk: its worker threads must not take the
# signal for themselves (they once did, and the default action ended tarn
# with status 143, before the disk's last flush).
img=$(mktemp)
truncate -s 1M "$img"
trap 'rm -f "$img"' EXIT
for be_dev in $(for be in $backends; do echo "$be:" "$be:disk"; done); do
	be=${be_dev%%:*} dev=${be_dev#*:}
	n="$be: " # lib.sh prefixes the backend already when TARN_BACKEND is set
	[ -n "$TARN_BACKEND" ] && n=
	extra=()
	[ "$dev" = disk ] && n="${n}with a disk: " extra=(--disk "$img" --rng)
	"$TARN" run --backend "$be" --kernel "$spin" --mem 64M --cpus 2 "${extra[@]}" </dev/null >/dev/null 2>&1 &
	pid=$!
	sleep 1
	if ! kill -0 $pid 2>/dev/null; then
		wait $pid
		not_ok "${n}stop a spinning guest" "tarn ended by itself (status $?) before the signal"
		continue
	fi
	t0=$(date +%s%N)
	kill -TERM $pid
	for _ in $(seq 1 500); do
		kill -0 $pid 2>/dev/null || break
		sleep 0.01
	done
	if kill -0 $pid 2>/dev/null; then
		kill -KILL $pid
		wait $pid 2>/dev/null
		not_ok "${n}stop a spinning guest" "tarn still running 5 s after SIGTERM"
		continue
	fi
	wait $pid
	rc=$?
	ms=$(( ($(date +%s%N) - t0) / 1000000 ))
	[ $rc -eq 0 ] && ok "${n}SIGTERM stops a guest spinning with interrupts off (exit 0 in $ms ms)" ||
		not_ok "${n}stop a spinning guest" "tarn exited $rc after SIGTERM (expected 0)"
done
done_testing
