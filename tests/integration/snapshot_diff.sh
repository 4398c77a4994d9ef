#!/bin/bash
# Diff snapshots of a Linux guest at work, on the backend under test
# (TARN_BACKEND; the nested KVM suite runs it under KVM, whose dirty log
# then counts). The default guest counts on the console, keeps a log in
# its RAM, reads a fresh part of a virtio-blk disk and a few bytes of
# virtio-rng each count (pages only the devices write). With dirty page
# tracking on:
#   - a diff before any full snapshot is refused, saying why;
#   - full snapshot S0, then two diffs D1 and D2 a few counts apart, and a
#     full F2 right after D2, while still paused: S0's memory with D1's
#     and then D2's pages merged over it (tarn img merge-mem) is F2's
#     memory, byte for byte (a page the guest or a device wrote and the
#     tracking missed would differ), and the diffs are a small part of a
#     full snapshot;
#   - restored from D2's state and the merged memory, the guest counts on
#     from where it was, no gap, no repeat; a diff of the restored VM
#     (based on the restore) merged over that memory is again a full
#     snapshot's.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

name="diff snapshots ($BACKEND)"
command -v cmp >/dev/null || { skip "$name" "cmp missing (diffutils)"; done_testing; }
if [ "$BACKEND" = kvm ] && ! kvm_usable; then
	skip "$name" "no usable KVM here ($("$TARN" probe kvm 2>&1 | head -1))"
	done_testing
fi
need_guest "$name"

work=$(mktemp -d)
api=$work/api.sock
cleanup() {
	pkill -9 -f "api-sock $work/" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

head -c 16M /dev/urandom >"$work/disk.img"
# randread reads the disk with O_DIRECT into one buffer, over and over: a
# page only the disk writes (any page the guest's kernel hands out fresh
# it zeroes first, a write of its own).
script='randread -n 1000000000 -t 100000 /dev/vda >/dev/null &
i=0
while true; do
	i=$((i + 1))
	echo "count $i"
	echo "count $i $(date)" >>/tmp/log
	head -c 64 /dev/hwrng >/dev/null 2>&1
	sleep 0.2
done'

# wait_for FILE PATTERN SECONDS: until FILE has a line matching PATTERN,
# while tarn ($pid) runs.
wait_for() {
	local t=$(($3 * 5))
	while [ $t -gt 0 ] && ! grep -qE "$2" "$1" 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.2
		t=$((t - 1))
	done
	[ $t -gt 0 ]
}
last_count() { grep -oE '^count [0-9]+' "$1" | tail -1 | awk '{print $2}'; }
ctl() { "$TARN" ctl --sock "$api" "$@"; }
# snap ARGS...: snapshot the paused VM; ends the test on error.
snap() {
	local r

	if ! r=$(ctl snapshot "$@" 2>&1); then
		not_ok "$name: snapshot $*" "$r"
		done_testing
	fi
}
# mem_kib FILE: the blocks it takes (holes are free).
mem_kib() { du -k "$1" | cut -f1; }

out=$work/console.0
"$TARN" run --backend "$BACKEND" --mem 256M --track-dirty-pages --rng --disk "$work/disk.img,ro" \
	--api-sock "$api" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
	--cmdline "$(guest_cmdline "$script") cryptomgr.notests" </dev/null >"$out" 2>&1 &
pid=$!
if ! wait_for "$out" '^count 5\b' "${BOOT_TIMEOUT:-240}"; then
	not_ok "$name: the guest counts" "$(tail -3 "$out" | tr '\r\n' '  ')"
	done_testing
fi

ctl pause
if r=$(ctl snapshot --diff "$work/d0" "$work/d0.mem" 2>&1); then
	not_ok "$name: a diff with no base" "was taken"
elif grep -q "no base" <<<"$r"; then
	ok "$name: a diff before any full snapshot is refused: ${r#*snapshot: }"
else
	not_ok "$name: a diff with no base" "refused without the reason: $r"
fi
snap "$work/s0" "$work/s0.mem"
ctl resume
c=$(last_count "$out")
wait_for "$out" "^count $((c + 5))\b" 60
ctl pause
snap --diff "$work/d1" "$work/d1.mem"
ctl resume
c=$(last_count "$out")
wait_for "$out" "^count $((c + 5))\b" 60
ctl pause
snap --diff "$work/d2" "$work/d2.mem"
snap "$work/f2" "$work/f2.mem"
at=$(last_count "$out")
{ kill -9 $pid && wait $pid; } 2>/dev/null
rm -f "$api"

cp --sparse=always "$work/s0.mem" "$work/m.mem"
if "$TARN" img merge-mem "$work/d1.mem" "$work/m.mem" >/dev/null &&
	"$TARN" img merge-mem "$work/d2.mem" "$work/m.mem" >/dev/null && cmp -s "$work/m.mem" "$work/f2.mem"; then
	ok "$name: full S0 + diffs D1 and D2 merged = full F2, byte for byte"
else
	not_ok "$name: S0 + D1 + D2 = F2" "$(cmp "$work/m.mem" "$work/f2.mem" 2>&1 | head -1)"
fi
full=$(mem_kib "$work/f2.mem") d1=$(mem_kib "$work/d1.mem") d2=$(mem_kib "$work/d2.mem")
echo "# memory files: full $full KiB; diffs $d1 KiB and $d2 KiB (5 counts apart each)"
[ $((d1 * 4)) -lt "$full" ] && [ $((d2 * 4)) -lt "$full" ] &&
	ok "$name: each diff takes less than a quarter of a full snapshot" ||
	not_ok "$name: diff sizes" "full $full KiB, diffs $d1 and $d2 KiB"

out=$work/console.1
"$TARN" run -v --backend "$BACKEND" --track-dirty-pages --api-sock "$api" --restore "$work/d2" \
	--restore-mem "$work/m.mem" </dev/null >"$out" 2>&1 &
pid=$!
if wait_for "$out" "^count $((at + 3))\b" 60 && [ "$(grep -oE '^count [0-9]+' "$out" | head -1)" = "count $((at + 1))" ]; then
	ok "$name: restored from D2 over the merged memory, the guest counts on from $at"
else
	not_ok "$name: restored from the diff" "stopped at $at; after: $(grep -oE '^count [0-9]+' "$out" | head -3 | tr '\n' ' ') $(tail -2 "$out" | tr '\r\n' '  ')"
fi
ctl pause
snap --diff "$work/d3" "$work/d3.mem"
snap "$work/f3" "$work/f3.mem"
{ kill -9 $pid && wait $pid; } 2>/dev/null
if "$TARN" img merge-mem "$work/d3.mem" "$work/m.mem" >/dev/null && cmp -s "$work/m.mem" "$work/f3.mem"; then
	ok "$name: a diff of the restored VM, merged over its memory = a full snapshot"
else
	not_ok "$name: restored VM's diff" "$(cmp "$work/m.mem" "$work/f3.mem" 2>&1 | head -1)"
fi
if r=$("$TARN" img merge-mem "$work/d3.mem" "$work/disk.img" 2>&1); then
	not_ok "$name: merging into a file of another size" "was done"
else
	ok "$name: merging into a file of another size is refused: ${r#tarn: }"
fi
done_testing
