#!/bin/bash
# Snapshot and restore of a Linux guest at work, through the API, along a
# chain of CPU backends. The default guest mounts an ext4 virtio-blk disk
# and counts: each number goes to the console, is appended to a file on
# the disk and is sent over one TCP connection to a listener on the host
# (through a tap in a network namespace). Along the chain (SNAP_CHAIN,
# default "emu emu"; "kvm emu kvm" under TARN_BACKEND=kvm, which the nested
# KVM suite sets) the VM is paused, snapshotted, killed with SIGKILL and
# restored from the snapshot under the next backend, a few numbers later
# each time. Then:
#   - the console's numbers, over all the runs, are 1..N, each once;
#   - so are the lines of the file (read on the host after the guest
#     powered off) and e2fsck finds the file system clean;
#   - so are the lines the host received over the TCP connection;
#   - the snapshot files pass the checks a restore makes, and a corrupt
#     one is refused with a reason; 10,000 corruptions of them (bit flips,
#     cuts, other versions and lengths, invalid states with right
#     checksums) are each refused by a tarn built with ASan and UBSan
#     (tests/fuzz/snap_corrupt.c).
# Without root or network namespaces the TCP part is skipped.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

N=${SNAP_COUNT:-45}
chain_start snapshot "${SNAP_CHAIN:-}" 2

work=$(mktemp -d)
NS=tarn-snap-$$
TAP=tarn-snap0
PORT=7000
net= ns=()
cleanup() {
	[ -n "$net" ] && { ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$NS" 2>/dev/null; }
	pkill -9 -f "api-sock $work/" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && ip netns add "$NS" 2>/dev/null; then
	net=1
	ns=(ip netns exec "$NS") # execs the command: $! is tarn's pid
	ip netns exec "$NS" ip link set lo up
	if ip netns exec "$NS" ip tuntap add "$TAP" mode tap &&
		ip netns exec "$NS" ip addr add 10.0.2.1/24 dev "$TAP" &&
		ip netns exec "$NS" ip link set "$TAP" up; then
		tcp_listener "$NS" 10.0.2.1 "$PORT" "$work/tcp"
	else
		not_ok "$name: network" "cannot make tap $TAP in namespace $NS"
		net= ns=()
	fi
fi

img=$work/disk.img
truncate -s 64M "$img"
mkfs.ext4 -q -F "$img" >/dev/null 2>&1 || { not_ok "$name" "mkfs.ext4 failed"; done_testing; }

script='mount -t ext4 /dev/vda /mnt || exit 1
'"${net:+ip addr add 10.0.2.15/24 dev eth0; ip link set eth0 up
mkfifo /tmp/f; nc 10.0.2.1 $PORT </tmp/f & exec 3>/tmp/f
}"'i=0
while [ $i -lt '"$N"' ]; do
	i=$((i + 1))
	echo "count $i"
	echo "count $i" >>/mnt/log
	'"${net:+echo \"count \$i\" >&3}"'
	sleep 0.2
done
'"${net:+exec 3>&-; wait}"'
sync; umount /mnt; echo "counted to $i"'

opts=(--mem 256M --disk "$img")
# A guest that moves between backends sees the same CPU on both.
[ "$(printf '%s\n' "${chain[@]}" | sort -u | wc -l)" -gt 1 ] && boot_opts=(--cpu-template portable) || boot_opts=()
[ -n "$net" ] && opts+=(--net "tap=$TAP")
api=$work/api.sock


# The first run boots; each later one restores the one before's snapshot.
pid=
for i in "${!chain[@]}"; do
	b=${chain[$i]}
	out=$work/console.$i
	if [ "$i" = 0 ]; then
		GUEST_CMDLINE="$GUEST_CMDLINE cryptomgr.notests"
		"${ns[@]}" "$TARN" run --backend "$b" "${opts[@]}" "${boot_opts[@]}" --api-sock "$api" --kernel "$GUEST_KERNEL" \
			--initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline "$script")" </dev/null >"$out" 2>&1 &
	else
		"${ns[@]}" "$TARN" run -v --backend "$b" --api-sock "$api" --restore "$work/snap" \
			</dev/null >"$out" 2>&1 &
	fi
	pid=$!
	[ "$i" = $((${#chain[@]} - 1)) ] && break
	at=$(((i + 1) * N / ${#chain[@]}))
	if ! wait_for "$out" "^count $at\b" "${BOOT_TIMEOUT:-240}"; then
		not_ok "$name: run $i ($b) reaches count $at" "$(tail -3 "$out" | tr '\r\n' '  ')"
		done_testing
	fi
	if ! "$TARN" ctl --sock "$api" pause || ! "$TARN" ctl --sock "$api" put /snapshot/create \
		"{\"snapshot_path\":\"$work/snap\",\"mem_file_path\":\"$work/snap.mem\"}"; then
		not_ok "$name: snapshot under $b" "tarn ctl failed"
		done_testing
	fi
	kill -9 $pid
	wait $pid 2>/dev/null
	rm -f "$api"
	ok "$name: paused, snapshotted and killed under $b at count $at or later"
done
chain_end "$img"
grep -h "restore: running" "$work"/console.* | sed 's/^/# /'
if [ -n "$net" ]; then
	sleep 1
	seq_ok "the TCP connection to the host" "$work/tcp"
else
	skip "$name: TCP connection" "needs root, /dev/net/tun and network namespaces"
fi

# 10,000 corruptions of the snapshot left behind, each restored under the
# emulator built with ASan and UBSan (tests/fuzz/snap_corrupt.c); 500 of a
# KVM guest's snapshot (in the nested bed every restore runs on QEMU's
# emulator, and the emulator run's 10,000 already hold the loader to it).
corrupt=$O/tests/fuzz/snap_corrupt
n_corrupt=${SNAP_CORRUPT_COUNT:-$([ "$BACKEND" = kvm ] && echo 500 || echo 10000)}
if [ ! -x "$corrupt" ]; then
	not_ok "$name: corrupted snapshots" "$corrupt missing (make tests)"
elif "${ns[@]}" "$corrupt" "$work/snap" "$work/snap.mem" "$n_corrupt" >"$work/corrupt" 2>&1; then
	ok "$name: $n_corrupt corrupted snapshots each refused with a reason (or, changed but valid, restored)"
	grep '^#' "$work/corrupt"
else
	not_ok "$name: corrupted snapshots" "$(grep -v '^# *[a-z]* *[0-9]* refused' "$work/corrupt" | tail -5 | tr '\n' ' ')"
fi

# The snapshot left behind passes the checks; a flipped byte does not.
if "$TARN" run --restore "$work/snap" --paused --backend "${chain[-1]}" </dev/null >"$work/r" 2>&1 &
	p=$! && sleep 1 && kill -0 $p 2>/dev/null; then
	kill -9 $p; wait $p 2>/dev/null
	ok "$name: the snapshot restores again (paused)"
else
	not_ok "$name: restoring the snapshot again" "$(tail -2 "$work/r" | tr '\n' ' ')"
fi
python3 -c 'import sys; p=sys.argv[1]; b=bytearray(open(p,"rb").read()); b[100]^=1; open(p,"wb").write(b)' "$work/snap"
if "$TARN" run --restore "$work/snap" --backend "${chain[-1]}" </dev/null >"$work/r" 2>&1; then
	not_ok "$name: a corrupt snapshot" "was taken"
elif [ $? = 2 ] && grep -q "checksum" "$work/r"; then
	ok "$name: a snapshot with a flipped bit is refused: $(head -1 "$work/r")"
else
	not_ok "$name: a corrupt snapshot" "refused without the reason: $(head -2 "$work/r" | tr '\n' ' ')"
fi
done_testing
