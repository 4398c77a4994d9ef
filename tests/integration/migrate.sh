#!/bin/bash
# Live migration of a Linux guest at work from one tarn to another, along a
# chain of CPU backends (MIG_CHAIN, default "emu emu emu"; "kvm emu kvm"
# under TARN_BACKEND=kvm, which the nested KVM suite sets). The guest
# mounts an ext4 disk (the same file on both sides: shared storage) and
# counts: each number, with the guest's uptime, goes to the console and
# onto the disk; meanwhile it writes memory, 10 MB/s from the start and
# 50 MB/s from the second hop on. Along the chain:
#   - before the first hop (when the chain starts under the emulator), the
#     failures: the destination killed while memory streams, the
#     destination frozen (a dead link) and the migration cancelled, a disk
#     copy onto the source's own file: each time the source's guest counts
#     on;
#   - each hop (TCP first, then a Unix socket, copying the disk onto a file
#     of the destination's own: block migration) completes, the source tarn
#     ends with status 0 saying where the VM went, the destination's guest
#     counts on;
#   - the console's numbers over all the runs are 1..N, each once; so are
#     the disk's, and e2fsck finds the disk clean;
#   - the guest's NIC moves from tap to tap on one bridge (as from host to
#     host on one network): its TCP connection to a listener on the bridge
#     carries 1..N once each, and each destination announced the guest's
#     MAC there (RARP); without root or network namespaces this is skipped;
#   - the figures of each hop (rounds, bytes, downtime as tarn measured it,
#     and the step in the guest's uptime stamps across it) are printed.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

# Counts: the emulator's chain runs the failures first (150); under KVM
# (the nested bed) 60 are enough for the hops.
N=${MIG_COUNT:-$([ "$BACKEND" = kvm ] && echo 60 || echo 150)}
chain_start migrate "${MIG_CHAIN:-}" 3

work=$(mktemp -d)
NS=tarn-mig-$$
PORT=7001
MAC=52:54:00:00:0a:0f
net= ns=()
cleanup() {
	[ -n "$net" ] && { ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$NS" 2>/dev/null; }
	pkill -9 -f "$work/" 2>/dev/null
	[ -n "${MIG_KEEP:-}" ] && echo "# kept $work" || rm -rf "$work"
}
trap cleanup EXIT

# The network the guest's NIC follows: a bridge in a namespace of its own
# with two taps, tap0 and tap1, each hop's destination taking the one its
# source does not hold (as two hosts' taps on one network). The host's end
# of the guest's TCP connection is on the bridge; a watcher there notes
# the RARP frames that announce the guest's MAC.
# Like the failures, it runs where the chain starts under the emulator (the
# nested bed's kernel has no bridge).
if [ "${chain[0]}" = emu ] && [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && ip netns add "$NS" 2>/dev/null; then
	net=1
	ns=(ip netns exec "$NS") # execs the command: $! is tarn's pid
	if ip -n "$NS" link set lo up && ip -n "$NS" link add br0 type bridge &&
		ip -n "$NS" addr add 10.0.3.1/24 dev br0 && ip -n "$NS" link set br0 up &&
		ip -n "$NS" tuntap add tap0 mode tap && ip -n "$NS" tuntap add tap1 mode tap &&
		ip -n "$NS" link set tap0 master br0 up && ip -n "$NS" link set tap1 master br0 up; then
		tcp_listener "$NS" 10.0.3.1 "$PORT" "$work/tcp"
		ip netns exec "$NS" python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8035)); s.bind(("br0", 0))
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
with open(sys.argv[2], "a", buffering=1) as f:
    while True:
        b = s.recv(2048)
        if b[6:12] == mac and b[20:22] == b"\x00\x03":
            f.write("rarp %.3f\n" % time.time())
' "$MAC" "$work/rarp" &
	else
		not_ok "$name: network" "cannot make a bridge and taps in namespace $NS"
		net= ns=()
	fi
fi

img=$work/disk.img
truncate -s 64M "$img"
mkfs.ext4 -q -F "$img" >/dev/null 2>&1 || { not_ok "$name" "mkfs.ext4 failed"; done_testing; }

# dirty RATE_MB: rewrite RATE_MB MiB of a 16 MiB buffer each second, in
# 1 MiB pieces of data that is not zeros (a buffer of random bytes).
script='mount -t ext4 /dev/vda /mnt || exit 1
'"${net:+ip addr add 10.0.3.15/24 dev eth0; ip link set eth0 up
mkfifo /tmp/f; nc 10.0.3.1 $PORT </tmp/f & ncpid=\$!; exec 3>/tmp/f
}"'head -c 1048576 /dev/urandom >/tmp/blob
dirty() { j=0; while :; do k=0; while [ $k -lt $1 ]; do
	dd if=/tmp/blob of=/tmp/buf bs=1M count=1 seek=$((j % 16)) conv=notrunc 2>/dev/null
	j=$((j + 1)); k=$((k + 1)); done; sleep 0.1; done; }
dirty 1 & d1=$!
i=0
while [ $i -lt '"$N"' ]; do
	i=$((i + 1))
	read up idle </proc/uptime
	echo "count $i $up"
	echo "count $i" >>/mnt/log
	'"${net:+echo \"count \$i\" >&3}"'
	[ $i = '"$((N / 2))"' ] && { dirty 4 & d2=$!; }
	sleep 0.2
done
kill $d1 $d2
'"${net:+exec 3>&-; wait \$ncpid}"'
sync; umount /mnt; echo "counted to $i"'

opts=(--mem 256M --disk "$img")
[ -n "$net" ] && opts+=(--net "tap=tap0,mac=$MAC")
[ "$(printf '%s\n' "${chain[@]}" | sort -u | wc -l)" -gt 1 ] && opts+=(--cpu-template portable)

last_count() { grep -oE '^count [0-9]+' "$1" | tail -1 | awk '{print $2}'; }
# wait_count FILE N SECONDS: until FILE's last count is N or more, while
# tarn ($pid) runs.
wait_count() {
	for ((t = $3 * 5; t > 0; t--)); do
		[ "$(last_count "$1")" -ge "$2" ] 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.2
	done
	return 1
}
mig() { "$TARN" ctl --sock "$api" --json get /migrate 2>/dev/null; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }
# mig_wait: until the migration is no longer active (at most 120 s).
mig_wait() {
	local s
	for _ in $(seq 1200); do
		s=$(mig | field state)
		[ "$s" != active ] && break
		sleep 0.1
	done
	echo "$s"
}
# counts_on WHAT: the source's guest counts on after a failure.
counts_on() {
	local c0 c1
	c0=$(last_count "$out")
	sleep 1.5
	c1=$(last_count "$out")
	if [ -n "$c0" ] && [ "$c1" -gt "$c0" ] && kill -0 "$pid" 2>/dev/null; then
		ok "$name: $1: the source's guest counts on ($c0 -> $c1)"
	else
		not_ok "$name: $1: the source's guest counts on" "count $c0 -> $c1; $(tail -2 "$out" | tr '\r\n' '  ')"
	fi
}
# incoming BACKEND ADDR OUT [OPTION...]: a destination tarn, its NIC on
# the tap the source does not hold; its pid in $dpid.
incoming() {
	local nic=()
	[ -n "$net" ] && nic=(--net "tap=$([ "$cur_tap" = tap0 ] && echo tap1 || echo tap0),mac=$MAC")
	"${ns[@]}" "$TARN" run -v --backend "$1" --api-sock "$work/dst.sock" --incoming "$2" "${nic[@]}" "${@:4}" \
		</dev/null >"$3" 2>&1 &
	dpid=$!
	for _ in $(seq 100); do
		grep -q "waiting for a migration" "$3" && return 0
		sleep 0.1
	done
	return 1
}

# A destination and what is not a source: a connection that does not
# greet as a migration is dropped (the destination waits on); a source of
# another stream version is told why, and the destination ends.
"$TARN" run --backend emu --incoming "unix:$work/in.sock" </dev/null >"$work/in.out" 2>&1 &
ipid=$!
for _ in $(seq 100); do [ -S "$work/in.sock" ] && break; sleep 0.05; done
reply=$(python3 - "$work/in.sock" <<'PY'
import socket, struct, sys, time
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(15); return s
s = conn(); s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
try:
    print("dropped" if s.recv(100) == b"" else "answered")
except ConnectionResetError:
    print("dropped")
s = conn(); s.sendall(b"TARNMIGR" + struct.pack("<II", 99, 0))
h = s.recv(24, socket.MSG_WAITALL)
t, n = struct.unpack("<II", h[:8])
print(t, s.recv(n, socket.MSG_WAITALL).decode())
PY
)
for _ in $(seq 50); do kill -0 $ipid 2>/dev/null || break; sleep 0.1; done
kill -9 $ipid 2>/dev/null # it should have ended: the test fails below
wait $ipid
irc=$?
if [[ $reply == dropped*"19 "*"version 99"* ]] && [ $irc = 2 ] && grep -q "not a tarn migration" "$work/in.out"; then
	ok "$name: the destination drops a connection that is not a migration, refuses another version (exit 2)"
else
	not_ok "$name: a destination and strangers" "reply '$reply', status $irc: $(tail -2 "$work/in.out" | tr '\n' ' ')"
fi

GUEST_CMDLINE="$GUEST_CMDLINE cryptomgr.notests"
api=$work/src.sock
out=$work/console.0
cur_tap=tap0 # the source's
"${ns[@]}" "$TARN" run -v --backend "${chain[0]}" "${opts[@]}" --api-sock "$api" --kernel "$GUEST_KERNEL" \
	--initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline "$script")" </dev/null >"$out" 2>&1 &
pid=$!
if ! wait_for "$out" "^count 5\b" "${BOOT_TIMEOUT:-240}"; then
	not_ok "$name: the guest boots under ${chain[0]} and counts" "$(tail -3 "$out" | tr '\r\n' '  ')"
	done_testing
fi

# The failures, each on a migration held to 8 MiB/s (round 1 then takes
# seconds): start one to a new destination, wait until 2 MiB went.
slow_migration() {
	incoming "${chain[1]}" "unix:$work/mig.sock" "$1" || return 1
	"$TARN" ctl --sock "$api" put /migrate \
		"{\"destination\":\"unix:$work/mig.sock\",\"max_bandwidth_mib\":8}" >/dev/null || return 1
	for _ in $(seq 500); do
		[ "$(mig | field bytes_sent)" -gt 2000000 ] 2>/dev/null && [ "$(mig | field state)" = active ] && return 0
		sleep 0.02
	done
	return 1
}

# The failures are the source's own logic, the same whatever runs the
# guest; they run where the chain starts under the emulator (in the nested
# KVM bed each request takes a second or more, longer than the guest's
# count lasts).
failures() {
	# 1. The destination killed while memory streams.
	if ! slow_migration "$work/dst.fail1"; then
		not_ok "$name: a migration to kill" "$(mig) $(tail -2 "$work/dst.fail1")"
		done_testing
	fi
	kill -9 $dpid
	wait $dpid 2>/dev/null
	s=$(mig_wait)
	e=$(mig | field error)
	[ "$s" = failed ] && [[ $e == *"runs on here"* ]] &&
		ok "$name: the destination killed mid-migration: failed ($e)" ||
		not_ok "$name: the destination killed mid-migration" "state $s: $e"
	counts_on "after the dead destination"

	# 2. A destination that stops answering (a dead link), then a cancel:
	# the migration ends at once, the destination gives up too.
	if ! slow_migration "$work/dst.fail2"; then
		not_ok "$name: a migration to cancel" "$(mig) $(tail -2 "$work/dst.fail2")"
		done_testing
	fi
	kill -STOP $dpid
	sleep 0.5
	t0=$(date +%s%N)
	"$TARN" ctl --sock "$api" put /migrate/cancel "{}" >/dev/null
	s=$(mig_wait)
	t1=$(date +%s%N)
	kill -CONT $dpid
	timeout 40 tail --pid=$dpid -f /dev/null
	wait $dpid
	drc=$?
	[ "$s" = cancelled ] && [ $(((t1 - t0) / 1000000)) -lt 5000 ] &&
		ok "$name: a cancel over a dead link: cancelled in $(((t1 - t0) / 1000000)) ms" ||
		not_ok "$name: a cancel over a dead link" "state $s after $(((t1 - t0) / 1000000)) ms: $(mig | field error)"
	[ $drc != 0 ] && grep -q "incoming migration:" "$work/dst.fail2" &&
		ok "$name: the destination gave up with the reason (status $drc: $(grep -o 'incoming migration:.*' "$work/dst.fail2" | head -1))" ||
		not_ok "$name: the destination gives up" "status $drc: $(tail -2 "$work/dst.fail2" | tr '\n' ' ')"
	counts_on "after the cancel"

	# 3. A disk copy onto the source's own file (the destination given
	# no --disk of its own): refused before anything is written.
	incoming "${chain[1]}" "unix:$work/mig.sock" "$work/dst.fail3"
	m=$("$TARN" ctl --sock "$api" --json migrate --copy-disks "unix:$work/mig.sock" 2>/dev/null)
	wait $dpid
	drc=$?
	e=$(field error <<<"$m")
	[[ $e == *"the source's own file"*"runs on here"* ]] && [ $drc = 2 ] &&
		ok "$name: a disk copy onto the source's own file: refused ($e)" ||
		not_ok "$name: a disk copy onto the source's own file" "destination status $drc: $e"
	counts_on "after the refused disk copy"
}
if [ "${chain[0]}" = emu ]; then
	failures
else
	echo "# the failures run in the emulator's chain (make check runs both)"
fi

# 3. The hops, each to a new tarn.
for ((h = 1; h < ${#chain[@]}; h++)); do
	b=${chain[$h]}
	[ $h = 1 ] && addr=127.0.0.1:$((20000 + RANDOM % 20000)) || addr=unix:$work/mig.sock
	dout=$work/console.$h
	# From the second hop on the guest writes 50 MB/s.
	if [ $h -ge 2 ] && ! wait_count "$out" $((N / 2 + 5)) 120; then
		not_ok "$name: hop $h: the guest counts past $((N / 2 + 5))" "$(tail -2 "$out" | tr '\r\n' '  ')"
		done_testing
	fi
	# The second hop copies the disk onto a file of the destination's own
	# (block migration); the first shares it.
	copy=() dst_opts=()
	if [ $h = 2 ]; then
		truncate -s 64M "$work/disk2.img"
		copy=(--copy-disks) dst_opts=(--disk "$work/disk2.img")
	fi
	if ! incoming "$b" "$addr" "$dout" "${dst_opts[@]}"; then
		not_ok "$name: hop $h: a destination listens on $addr" "$(tail -2 "$dout" | tr '\n' ' ')"
		done_testing
	fi
	at=$(last_count "$out")
	m=$("$TARN" ctl --sock "$api" --json migrate "${copy[@]}" "$addr" 2>"$work/ctl.err")
	crc=$?
	wait $pid
	rc=$?
	if [ $crc = 0 ] && [ "$(field state <<<"$m")" = completed ] && [ $rc = 0 ] && grep -q "the VM migrated" "$out"; then
		ok "$name: hop $h (${chain[$((h - 1))]} -> $b over ${addr%%:*}${copy:+, the disk copied}) at count $at: completed, the source exited 0"
		[ $h = 2 ] && img=$work/disk2.img # the guest's disk from now on
	else
		not_ok "$name: hop $h (${chain[$((h - 1))]} -> $b)" "tarn ctl $crc: $(cat "$work/ctl.err") source status $rc: $(tail -2 "$out" | tr '\n' ' ')"
		kill -9 $dpid 2>/dev/null
		done_testing
	fi
	python3 - "$h" "$m" <<'PY'
import json, sys
m = json.loads(sys.argv[2])
print(f"# hop {sys.argv[1]}: {m['rounds']} rounds {m['pages_per_round']}, {m['pages_sent']} pages "
      f"({m['pages_filled']} filled), {m.get('disk_bytes_sent', 0) / 1048576:.1f} MiB of disk, "
      f"{m['bytes_sent'] / 1048576:.1f} MiB on the wire, {m['total_ms']} ms in all, "
      f"downtime {m['downtime_ms']} ms, throttle {m['throttle_pct']}%")
PY
	at=$(last_count "$out") # the source's last
	cur_tap=$([ "$cur_tap" = tap0 ] && echo tap1 || echo tap0)
	pid=$dpid
	api=$work/src.sock.$h
	rm -f "$api"
	mv "$work/dst.sock" "$api" 2>/dev/null
	out=$dout
	if wait_for "$out" "^count $((at + 3))\b" 60; then
		ok "$name: hop $h: the guest counts on under $b"
	else
		not_ok "$name: hop $h: the guest counts on under $b" "$(tail -3 "$out" | tr '\r\n' '  ')"
		done_testing
	fi
done

chain_end "$img"
if [ -n "$net" ]; then
	sleep 1
	seq_ok "the TCP connection to the host, across the hops and taps" "$work/tcp"
	hops=$((${#chain[@]} - 1)) seen=$(grep -c '^rarp' "$work/rarp" 2>/dev/null)
	[ "${seen:-0}" -ge $((5 * hops)) ] &&
		ok "$name: each destination announced the guest's MAC on the bridge ($seen RARP frames for $hops hops)" ||
		not_ok "$name: the MAC announced" "${seen:-0} RARP frames from $MAC on the bridge, want 5 a hop"
elif [ "${chain[0]}" = emu ]; then
	skip "$name: TCP connection and MAC announcements" "needs root, /dev/net/tun and network namespaces"
else
	echo "# the network part runs in the emulator's chain (make check runs both)"
fi
# Each hop in the guest's uptime stamps (0.2 s apart, plus what the loop
# costs) where the console changes hands: its clock stands still while the
# VM is paused, as across a pause, so the hop shows as an ordinary step.
for ((h = 1; h < ${#chain[@]}; h++)); do
	last=$(grep -E '^count [0-9]+ ' "$work/console.$((h - 1))" | tail -1 | awk '{print $3}')
	first=$(grep -E '^count [0-9]+ ' "$work/console.$h" | head -1 | awk '{print $3}')
	echo "# hop $h, as the guest saw it: ${last:-?} s -> ${first:-?} s of uptime between the last count before and the first after"
done
done_testing
