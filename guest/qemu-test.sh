#!/bin/bash
# Boot the default guest under QEMU and check what /init promises:
# the banner, tarn.cmd / tarn.cmd64, the status line, the virtio drivers,
# an interactive shell with job control, and power-off (QEMU exits by itself).
#
#   guest/qemu-test.sh [OUTDIR]        (OUTDIR defaults to build/guest)
#
# QEMU=... picks the binary; GUEST_TEST_TIMEOUT=... the seconds a boot may take.
# Uses KVM when /dev/kvm is usable, TCG otherwise. Ends with 'N passed, N failed'.
set -u
export LC_ALL=C

DIR=${1:-build/guest}
KERNEL=$DIR/vmlinuz
INITRD=$DIR/initramfs.cpio
QEMU=${QEMU:-qemu-system-x86_64}
TIMEOUT=${GUEST_TEST_TIMEOUT:-180}
BASE="console=ttyS0 tsc=reliable panic=-1"
if [ -w /dev/kvm ]; then ACCEL=kvm; else ACCEL=tcg; fi

for f in "$KERNEL" "$INITRD"; do
	[ -f "$f" ] || { echo "missing $f (run: make guest)" >&2; exit 2; }
done
command -v "$QEMU" >/dev/null || { echo "no $QEMU (apt-get install qemu-system-x86)" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tarn-guest-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
PASS=0 FAIL=0

now_us() { local t=${EPOCHREALTIME/./}; echo $((10#$t)); }
secs() { printf '%d.%02d' $(($1 / 1000000)) $(($1 % 1000000 / 10000)); }

# boot NAME APPEND [QEMU ARGS...]: run QEMU with stdin closed; the serial
# output goes to $WORK/NAME.log. Sets RC (QEMU's exit status, 124 = timeout),
# T_BANNER and T_END (microseconds from start to the banner and to exit).
boot() {
	local name=$1 append=$2 line t0
	shift 2
	LOG=$WORK/$name.log
	: >"$LOG"
	T_BANNER=-1
	t0=$(now_us)
	while IFS= read -r line; do
		line=${line%$'\r'}
		case $line in
		*"tarn-guest: init ready "*) [ "$T_BANNER" -ge 0 ] || T_BANNER=$(($(now_us) - t0)) ;;
		__qemu_rc=*) RC=${line#__qemu_rc=}; continue ;;
		esac
		printf '%s\n' "$line" >>"$LOG"
	done < <(timeout "$TIMEOUT" "$QEMU" -accel "$ACCEL" -m 512 -nographic -no-reboot \
		-kernel "$KERNEL" -initrd "$INITRD" -append "$append" "$@" </dev/null 2>&1
		echo "__qemu_rc=$?")
	T_END=$(($(now_us) - t0))
}

ok() { PASS=$((PASS + 1)); echo "ok   $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL $*"; echo "---- $LOG"; tail -n 40 "$LOG"; echo "----"; }
# expect NAME REGEX: the log of the last boot has a line matching REGEX.
expect() { if grep -Eq -- "$2" "$LOG"; then ok "$1: /$2/"; else bad "$1: no line matching /$2/"; fi; }
expect_no() { if grep -Eq -- "$2" "$LOG"; then bad "$1: a line matches /$2/"; else ok "$1: nothing matches /$2/"; fi; }
expect_exit() { if [ "$RC" = 0 ]; then ok "$1: QEMU exited by itself (power-off)"; else bad "$1: QEMU exit status $RC"; fi; }

# (Under QEMU, terminal resets from the firmware may precede it on its line.)
BANNER='tarn-guest: init ready [^ ]+$'

# 1. The plain case, timed.
boot smoke "$BASE tarn.cmd=\"uname -a\"" -smp 1
expect smoke "$BANNER"
expect smoke '^Linux tarn .* x86_64 GNU/Linux$'
expect smoke '^tarn-guest: command exited with status 0$'
expect smoke 'reboot: Power down'
expect_exit smoke
echo "     time to banner $(secs "$T_BANNER") s, to power-off $(secs "$T_END") s ($ACCEL, -smp 1)"

# 2. Quoting: an unquoted word, a quoted value among other quoted params,
#    a failing command, the last tarn.cmd winning, and the quiet default.
boot quoting "$BASE quiet x=\"a b\" tarn.cmd=hostname \"y=c d\" tarn.cmd=\"echo 'a  b' \$((6*7)); exit 5\"" -smp 1
expect quoting "$BANNER"
expect quoting '^a  b 42$'
expect quoting '^tarn-guest: command exited with status 5$'
expect_exit quoting
boot word "$BASE quiet tarn.cmd=hostname" -smp 1
expect word '^tarn$'
expect word '^tarn-guest: command exited with status 0$'

# 3. tarn.cmd64 with awkward characters, 2 CPUs and virtio-pci devices bound.
SCRIPT='echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
for d in virtio_rng virtio_net virtio_blk virtio_balloon virtio_console; do
	set -- /sys/bus/virtio/drivers/$d/virtio*
	[ -e "$1" ] && echo "bound $d"
done
echo "rng=$(cat /sys/class/misc/hw_random/rng_current)"
lsmod | awk '\''NR > 1 { print "mod " $1 }'\''
[ "$(head -c 8 /dev/hwrng | wc -c)" = 8 ] && echo "hwrng ok"
exit 3'
truncate -s 1M "$WORK/disk.img"
boot virtio "$BASE quiet tarn.cmd64=$(printf '%s' "$SCRIPT" | base64 -w0)" -smp 2 \
	-device virtio-rng-pci -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
	-drive file="$WORK/disk.img",format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0 \
	-device virtio-balloon-pci -device virtio-serial-pci
expect virtio '^cpus=2$'
for d in virtio_rng virtio_net virtio_blk virtio_balloon virtio_console; do
	expect virtio "^bound $d\$"
done
expect virtio '^rng=virtio_rng\.0$'
expect virtio '^hwrng ok$'
# init loads the drivers of the devices present (coldplug by modalias), and
# only those: no vsock or virtio-mmio device here, so no such module.
expect virtio '^mod virtio_pci$'
for m in virtio_mmio vmw_vsock_virtio_transport; do
	expect_no virtio "^mod $m\$"
done
expect virtio '^tarn-guest: command exited with status 3$'
expect_exit virtio

# 4. virtio-mmio devices described in ACPI (LNRO0005), as on QEMU's microvm.
#    microvm has no HPET or ACPI PM timer, and under TCG the TSC calibration
#    against the PIT fails now and then (the boot then hangs): give the TSC
#    rate (under TCG the guest's TSC is the host's).
if "$QEMU" -machine help | grep -q '^microvm'; then
	SCRIPT='set -- /sys/bus/virtio/drivers/virtio_rng/virtio*; [ -e "$1" ] && echo "mmio rng bound"'
	KHZ=$(awk -F': *' '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo)
	boot mmio "$BASE quiet ${KHZ:+tsc_early_khz=$KHZ }tarn.cmd64=$(printf '%s' "$SCRIPT" | base64 -w0)" \
		-M microvm -device virtio-rng-device
	expect mmio '^mmio rng bound$'
	expect_exit mmio
fi

# 5. No tarn.cmd: an interactive shell on ttyS0 with job control; exit powers off.
LOG=$WORK/shell.log
: >"$LOG"
coproc QEMU_SHELL { timeout "$TIMEOUT" "$QEMU" -accel "$ACCEL" -m 512 -nographic -no-reboot \
	-kernel "$KERNEL" -initrd "$INITRD" -append "$BASE quiet" 2>&1; }
QPID=$QEMU_SHELL_PID
# Own copies of the pipes: bash closes the coproc's when QEMU exits.
exec {QOUT}<&"${QEMU_SHELL[0]}" {QIN}>&"${QEMU_SHELL[1]}"
while IFS= read -r -t "$TIMEOUT" line <&"$QOUT"; do
	line=${line%$'\r'}
	printf '%s\n' "$line" >>"$LOG"
	case $line in
	*"tarn-guest: init ready "*)
		printf '%s\n' 'sleep 30 &' 'echo "tty=$(tty)"' 'jobs' 'kill %1' 'exit' >&"$QIN"
		;;
	esac
done
RC=0
wait "$QPID" 2>/dev/null || RC=$?
exec {QOUT}<&- {QIN}>&-
expect shell '^tty=/dev/ttyS0$'
expect shell '^\[1\]\+ +Running +sleep 30'
if grep -q "job control turned off" "$LOG"; then bad "shell: job control off"; else ok "shell: job control on"; fi
expect_exit shell

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
