#!/bin/bash
# bed.sh: run a command on a real Linux KVM on a host that has none.
#
#   tests/nested/bed.sh [options] [-- COMMAND [ARG...]]
#
# Boots Debian's generic kernel (L1) under QEMU's software emulator with
# AMD SVM and nested paging exposed (-cpu max), loads kvm_amd there, and
# runs COMMAND as root with /dev/kvm, in this directory, on this host's
# own file system: the host's / is shared read-only over virtio-9p, with
# a fresh /run (tmpfs) and /tmp (ext4 on a RAM disk); writes there stay
# inside the VM. COMMAND's standard output goes to --tap FILE at the end, or
# to this terminal as it comes; its standard error and L1's console go to
# WORK/l1.log. Without COMMAND: an interactive shell.
#
#   --work DIR     cache and logs (default build/nested): the kernel package
#                  (apt-get download), its modules, the L1 initramfs
#   --tap FILE     COMMAND's standard output (default: this terminal)
#   --timeout S    stop the VM after S seconds (default 1500)
#   --mem SIZE     L1 RAM (default 6G; QEMU allocates only what L1 touches)
#   --smp N        L1 vCPUs (default: this host's CPUs, at most 4)
#   -h, --help     this text
#
# Exit status: COMMAND's, or 124 timeout, 125 the VM did not run COMMAND
# to its end (set-up failed, QEMU died), 126 L1's own kernel failed (the
# VM is stopped then; see below), 2 bad
# usage. On a failure the end of L1's console and of COMMAND's output go to
# standard error; on 126 what showed the failure to WORK/l1-failure. L1 is
# taken for failed, and stopped, on a lockup, an oops or a panic on its
# console, or when its init shows no sign of life for BED_STALL_S seconds
# (default 120): a kernel whose CPUs are stuck runs no shell. Needs root (apt-get install of
# qemu-system-x86 busybox-static cpio kmod when missing). Measured on a
# 2-core host: about 6 s from QEMU's start to COMMAND, KVM modules included.
set -uo pipefail

WORK=build/nested TAP= TIMEOUT=1500 MEM=6G SMP=$(nproc)
[ "$SMP" -gt 4 ] && SMP=4
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
	case $1 in
	--work) WORK=$2; shift 2 ;;
	--tap) TAP=$2; shift 2 ;;
	--timeout) TIMEOUT=$2; shift 2 ;;
	--mem) MEM=$2; shift 2 ;;
	--smp) SMP=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	--) shift; break ;;
	*) echo "bed.sh: unknown option '$1' (bed.sh --help)" >&2; exit 2 ;;
	esac
done
log() { echo "bed.sh: $*" >&2; }
mkdir -p "$WORK" || exit 125
WORK=$(cd "$WORK" && pwd)

# ---- what the host needs ----
need=
for p in qemu-system-x86 busybox-static cpio kmod; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
	log "installing$need"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -q $need >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q $need >/dev/null; } ||
		{ log "cannot install$need"; exit 125; }
fi

# ---- L1's kernel: Debian's generic one (the cloud kernel has no 9p) ----
kpkg() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
KPKG=$(kpkg)
[ -n "$KPKG" ] || { apt-get update -q >/dev/null 2>&1; KPKG=$(kpkg); }
[ -n "$KPKG" ] || { log "apt knows no linux-image-amd64"; exit 125; }
KREL=${KPKG#linux-image-}
KDIR=$WORK/$KPKG
if [ ! -f "$KDIR/boot/vmlinuz-$KREL" ]; then
	log "downloading $KPKG"
	mkdir -p "$WORK/cache"
	ls "$WORK/cache/${KPKG}_"*.deb >/dev/null 2>&1 ||
		(cd "$WORK/cache" && apt-get download -q "$KPKG" >/dev/null 2>&1) ||
		{ log "apt-get download $KPKG failed"; exit 125; }
	rm -rf "$KDIR.tmp" && dpkg-deb -x "$WORK/cache/${KPKG}_"*.deb "$KDIR.tmp" &&
		depmod -b "$KDIR.tmp" "$KREL" && mv "$KDIR.tmp" "$KDIR" ||
		{ log "cannot unpack $KPKG"; exit 125; }
fi

# ---- L1's initramfs: busybox, the modules below with their dependencies,
# and l1-init. Rebuilt when l1-init or this script changes. ----
MODS="virtio_pci 9pnet_virtio 9p kvm_amd tun veth brd ext4"
INITRD=$WORK/l1-initrd.cpio.gz
HERE=$(cd "$(dirname "$0")" && pwd)
if [ ! -f "$INITRD" ] || [ "$HERE/l1-init" -nt "$INITRD" ] || [ "$0" -nt "$INITRD" ] ||
	[ "$KDIR" -nt "$INITRD" ]; then
	R=$WORK/initrd
	rm -rf "$R" && mkdir -p "$R"/{bin,proc,sys,dev,host,modules} || exit 125
	cp /bin/busybox "$R/bin/busybox" && cp "$HERE/l1-init" "$R/init" || exit 125
	# modprobe --show-depends lists "insmod PATH" in load order.
	modprobe -d "$KDIR" -S "$KREL" --show-depends -a $MODS 2>/dev/null | awk '$1 == "insmod" { print $2 }' |
		awk '!seen[$0]++' >"$WORK/modules.list"
	[ -s "$WORK/modules.list" ] || { log "no modules for $MODS in $KPKG"; exit 125; }
	i=0
	while read -r m; do
		i=$((i + 1))
		cp "$m" "$R/modules/$(printf %02d $i)-$(basename "$m")" || exit 125
	done <"$WORK/modules.list"
	(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1 >"$INITRD.tmp") && mv "$INITRD.tmp" "$INITRD" || exit 125
fi

# What L1's kernel prints when it has failed (its console shows messages
# of level 4, KERN_ERR, and above: RCU stalls and hung tasks show too, for
# the record, but stop nothing).
L1_FAILED='soft lockup|hard LOCKUP|Kernel panic|BUG: |Oops: |general protection fault'
STALL_S=${BED_STALL_S:-120}

# ---- the run: COMMAND, its environment and results travel through a
# second, writable 9p share (WORK/run) ----
RUN=$WORK/run
rm -rf "$RUN" && mkdir -p "$RUN" || exit 125
echo "$PWD" >"$RUN/workdir"
{
	printf 'cd %q\n' "$PWD"
	printf 'export PATH=%q\n' "$PATH"
	printf 'exec'
	[ $# -gt 0 ] && printf ' %q' "$@"
	[ $# -eq 0 ] && printf ' bash -i'
	printf '\n'
} >"$RUN/cmd.sh"
[ -n "$TAP" ] && : >"$TAP"
mode=batch
[ $# -eq 0 ] && mode=shell
APPEND="console=ttyS0 quiet loglevel=4 panic=-1 bed.mode=$mode"
QEMU=(qemu-system-x86_64 -accel tcg -M pc -cpu max -m "$MEM" -smp "$SMP" -nographic -no-reboot -net none
	-kernel "$KDIR/boot/vmlinuz-$KREL" -initrd "$INITRD" -append "$APPEND"
	-virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap
	-virtfs local,path="$RUN",mount_tag=run,security_model=none,multidevs=remap)
log "L1: ${QEMU[*]}"
if [ $mode = shell ]; then
	timeout --foreground "$TIMEOUT" "${QEMU[@]}"
	rc=$?
else
	timeout "$TIMEOUT" "${QEMU[@]}" </dev/null >"$WORK/l1.log" 2>&1 &
	qpid=$!
	# Pass COMMAND's output on as it comes (long benchmarks).
	[ -z "$TAP" ] && tail -n +1 -F --pid=$qpid "$RUN/out" 2>/dev/null &
	# Watch L1: once its kernel reports a lockup, an oops or a panic on
	# the console, or its sign of life (l1-init writes RUN/alive every 5 s)
	# is older than STALL_S, the VM is stopped (a CPU stuck in the kernel
	# never comes back).
	l1_failed= t0=$SECONDS
	while kill -0 $qpid 2>/dev/null; do
		if grep -q -E "$L1_FAILED" "$WORK/l1.log" 2>/dev/null; then
			l1_failed=$(grep -m 1 -o -a -E "($L1_FAILED).*" "$WORK/l1.log" | tr -d '\r')
			sleep 2 # the rest of the message
		else
			alive=$(stat -c %Y "$RUN/alive" 2>/dev/null || echo $(($(date +%s) - SECONDS + t0)))
			[ $(($(date +%s) - alive)) -gt $STALL_S ] &&
				l1_failed="no sign of life from the nested VM for more than $STALL_S s"
		fi
		[ -n "$l1_failed" ] && { kill $qpid 2>/dev/null; break; }
		sleep 2
	done
	wait $qpid
	rc=$?
	wait # tail
	# A panic ends QEMU by itself (panic=-1, -no-reboot).
	[ ! -f "$RUN/rc" ] && [ -z "$l1_failed" ] && grep -q -E "$L1_FAILED" "$WORK/l1.log" 2>/dev/null &&
		l1_failed=$(grep -m 1 -o -a -E "($L1_FAILED).*" "$WORK/l1.log" | tr -d '\r')
	[ -n "$TAP" ] && cat "$RUN/out" >"$TAP" 2>/dev/null
	cat "$RUN/err" >>"$WORK/l1.log" 2>/dev/null
fi
# console_report: what a failed run leaves to go on, on standard error:
# L1's own kernel failures (first lines), the end of the console with
# COMMAND's standard error, and the last lines COMMAND printed.
console_report() {
	local oops
	oops=$(grep -m 8 -E "$L1_FAILED|RIP:" "$WORK/l1.log")
	[ -n "$oops" ] && { log "L1's kernel reported:"; echo "$oops" | sed 's/^/    /' >&2; }
	log "its console and COMMAND's standard error, last lines ($WORK/l1.log):"
	tail -15 "$WORK/l1.log" | sed 's/^/    /' >&2
	log "COMMAND's last output:"
	tail -5 "$RUN/out" 2>/dev/null | sed 's/^/    /' >&2
}
rm -f "$WORK/l1-failure"
if [ -n "${l1_failed:-}" ]; then
	echo "$l1_failed" >"$WORK/l1-failure"
	log "the nested VM's own kernel failed ($l1_failed); the VM was stopped"
	console_report
	exit 126
fi
if [ $rc -eq 124 ]; then
	log "the nested VM ran past $TIMEOUT s"
	console_report
	exit 124
fi
if [ ! -f "$RUN/rc" ]; then
	log "the nested VM did not run the command to its end (QEMU exit $rc)"
	console_report
	exit 125
fi
exit "$(cat "$RUN/rc")"
