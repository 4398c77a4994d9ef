#!/bin/bash
# Clones: ten VMs restored from one snapshot, at once, each on a qcow2
# overlay of its own over the frozen disk of the original, each with a disk
# serial of its own (the guest reads it anew from the device: its identity).
#
# The default guest's disk is a qcow2 overlay (tarn img create) over a raw
# ext4 base. It counts, appending "SERIAL N" to a file on the disk every
# 0.3 s. The original is snapshotted at N >= 5 and killed; ten clones are
# restored from that snapshot side by side (CLONES, default 10), clone K on
# overlay cloneK.qcow2 over the original's overlay, with serial cloneK,
# under the emulator (or TARN_BACKEND). Then:
#   - every clone counts to the end and powers off;
#   - qemu-img check finds every overlay clean, e2fsck every clone's file
#     system (read through qemu-img convert);
#   - each clone's file holds the original's lines up to the snapshot and
#     then its own, no other clone's: their writes stayed apart;
#   - the original's overlay and the base are as they were at the snapshot.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

N=${CLONE_COUNT:-30}
CLONES=${CLONES:-10}
name="clone x$CLONES"
for t in mkfs.ext4 debugfs e2fsck qemu-img; do
	command -v $t >/dev/null || { skip "$name" "$t missing (e2fsprogs, qemu-utils)"; done_testing; }
done
if [ "$BACKEND" = kvm ] && ! kvm_usable; then
	skip "$name" "no usable KVM here"
	done_testing
fi
need_guest "$name"
work=$(mktemp -d)
trap 'pkill -9 -f "restore $work/" 2>/dev/null; pkill -9 -f "api-sock $work/" 2>/dev/null; rm -rf "$work"' EXIT

truncate -s 64M "$work/base.raw"
mkfs.ext4 -q -F "$work/base.raw" >/dev/null 2>&1 || { not_ok "$name" "mkfs.ext4 failed"; done_testing; }
if ! "$TARN" img create -b base.raw "$work/disk0.qcow2" >"$work/img.err" 2>&1; then
	not_ok "$name: tarn img create" "$(cat "$work/img.err")"
	done_testing
fi
base_sum=$(sha256sum <"$work/base.raw")

script='mount -t ext4 /dev/vda /mnt || exit 1
i=0
while [ $i -lt '"$N"' ]; do
	i=$((i + 1))
	s=$(cat /sys/block/vda/serial)
	echo "$s $i" >>/mnt/log
	sync
	echo "count $i $s"
	sleep 0.3
done
umount /mnt; echo "counted to $i"'

wait_for() { # FILE PATTERN SECONDS PID
	local t=$(($3 * 5))
	while [ $t -gt 0 ] && ! grep -qE "$2" "$1" 2>/dev/null; do
		kill -0 "$4" 2>/dev/null || break
		sleep 0.2
		t=$((t - 1))
	done
	grep -qE "$2" "$1" 2>/dev/null
}

"$TARN" run --backend "$BACKEND" --mem 256M --disk "$work/disk0.qcow2,serial=orig" --api-sock "$work/api.sock" \
	--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline "$script") cryptomgr.notests" \
	</dev/null >"$work/orig.out" 2>&1 &
pid=$!
if ! wait_for "$work/orig.out" "^count 5 orig" "${BOOT_TIMEOUT:-240}" $pid; then
	not_ok "$name: the original counts" "$(tail -3 "$work/orig.out" | tr '\r\n' '  ')"
	done_testing
fi
if ! "$TARN" ctl --sock "$work/api.sock" pause || ! "$TARN" ctl --sock "$work/api.sock" snapshot "$work/snap" \
	"$work/snap.mem"; then
	not_ok "$name: snapshot" "tarn ctl failed"
	done_testing
fi
{ kill -9 $pid; wait $pid; } 2>/dev/null
at=$(grep -oE '^count [0-9]+' "$work/orig.out" | tail -1 | cut -d' ' -f2)
disk0_sum=$(sha256sum <"$work/disk0.qcow2")
ok "$name: the original snapshotted at count $at, on a qcow2 overlay over a raw base"

pids=()
for k in $(seq "$CLONES"); do
	if ! "$TARN" img create -b disk0.qcow2 "$work/clone$k.qcow2" >"$work/img.err" 2>&1; then
		not_ok "$name: overlay for clone $k" "$(cat "$work/img.err")"
		done_testing
	fi
	"$TARN" run --backend "$BACKEND" --restore "$work/snap" --disk "$work/clone$k.qcow2,serial=clone$k" \
		</dev/null >"$work/clone$k.out" 2>&1 &
	pids+=($!)
done
failed=0
for k in $(seq "$CLONES"); do
	if ! wait "${pids[$((k - 1))]}"; then
		failed=$((failed + 1))
		[ $failed -le 3 ] && echo "# clone $k: $(tail -2 "$work/clone$k.out" | tr '\r\n' '  ')"
	fi
done
if [ $failed = 0 ] && [ "$(grep -l "^counted to $N" "$work"/clone*.out | wc -l)" = "$CLONES" ]; then
	ok "$name: $CLONES clones restored side by side, each counted to $N and powered off"
else
	not_ok "$name: clones" "$failed of $CLONES failed or did not count to $N"
fi

bad_check= bad_fsck= bad_log=
for k in $(seq "$CLONES"); do
	qemu-img check -q "$work/clone$k.qcow2" >/dev/null 2>&1 || bad_check+=" $k"
	qemu-img convert -O raw "$work/clone$k.qcow2" "$work/c.raw" 2>/dev/null || { bad_check+=" $k"; continue; }
	e2fsck -fn "$work/c.raw" >/dev/null 2>&1 || bad_fsck+=" $k"
	# The original's lines 1..at, then this clone's at+1..N, nothing else.
	want=$( (seq 1 "$at" | sed 's/^/orig /'; seq $((at + 1)) "$N" | sed "s/^/clone$k /") | tr '\n' ' ')
	got=$(debugfs -R "cat /log" "$work/c.raw" 2>/dev/null | tr '\n' ' ')
	[ "$got" = "$want" ] || { bad_log+=" $k"; [ -z "${shown:-}" ] && shown=1 && echo "# clone $k's log: $got"; }
	rm -f "$work/c.raw"
done
[ -z "$bad_check" ] && ok "$name: qemu-img check finds every clone's overlay clean" ||
	not_ok "$name: qemu-img check" "not clean:$bad_check"
[ -z "$bad_fsck" ] && ok "$name: e2fsck finds every clone's file system clean" ||
	not_ok "$name: e2fsck" "not clean:$bad_fsck"
[ -z "$bad_log" ] && ok "$name: each clone's file: the original's lines to $at, then its own, no other clone's" ||
	not_ok "$name: the clones' files" "wrong in clones$bad_log"
[ "$(sha256sum <"$work/disk0.qcow2")" = "$disk0_sum" ] && [ "$(sha256sum <"$work/base.raw")" = "$base_sum" ] &&
	ok "$name: the original's overlay and the base are untouched" ||
	not_ok "$name: frozen images" "the original's overlay or the base changed"
du=$(du -k "$work/snap.mem" | cut -f1)
echo "# the memory file, shared copy-on-write by all $CLONES: ${du} KiB on disk"
done_testing
