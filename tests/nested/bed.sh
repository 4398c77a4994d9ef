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
# (set-up failed, L1 crashed), 2 bad usage. Needs root (apt-get install of
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
APPEND="console=ttyS0 quiet loglevel=3 panic=-1 bed.mode=$mode"
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
	if [ -n "$TAP" ]; then
		wait $qpid
		rc=$?
		cat "$RUN/out" >"$TAP" 2>/dev/null
	else
		# Pass COMMAND's output on as it comes (long benchmarks).
		tail -n +1 -F --pid=$qpid "$RUN/out" 2>/dev/null
		wait $qpid
		rc=$?
	fi
	cat "$RUN/err" >>"$WORK/l1.log" 2>/dev/null
fi
if [ $rc -eq 124 ]; then
	log "the nested VM ran past $TIMEOUT s; its console: $WORK/l1.log"
	exit 124
fi
if [ ! -f "$RUN/rc" ]; then
	log "the nested VM did not run the command (QEMU exit $rc); its console, last lines:"
	tail -15 "$WORK/l1.log" | sed 's/^/    /' >&2
	exit 125
fi
exit "$(cat "$RUN/rc")"
