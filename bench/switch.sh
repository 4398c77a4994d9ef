#!/bin/bash
# tarn's switch against the Linux bridge, in the same run (make bench):
#   VM to VM    two default guests (tarn, under BENCH_SWITCH_BACKEND, emu by
#               default) on one network: TCP throughput (BENCH_SWITCH_MIB MiB,
#               default 16, through busybox nc, timed in the sender by its
#               /proc/uptime) and
#               round trip (ping, 20 of them, the median)
#               tarn: vhost-user ports of tarn-switch (no offloads yet)
#               bridge: tap NICs in a Linux bridge, offloads on (what a user
#               gets) and off (the switch's feature set)
#   forwarding  64-byte frames a second, BENCH_SWITCH_FRAMES (default
#               2000000) sent by bench/inject.c, counted where they arrive:
#               VM ports  two VMs' NICs without the guests: the injector
#                         drives a vhost-user port's transmit ring and
#                         another's receive ring, as two guests' drivers
#                         would; the bridge: two tap NICs in it, written
#                         and read as a VMM's tap back end does
#               uplinks   a host interface into the switch (a tap uplink)
#                         and out by another (AF_PACKET, sendmmsg); the
#                         bridge: the same between two veths
# Each figure is BENCH_SWITCH_RUNS runs (default 3), the median printed;
# BENCH_SWITCH_PARTS=vm or fwd runs only that half (default vm,fwd).
# Needs root (namespaces, taps, a bridge). Lines: "switch TITLE tarn: X
# bridge: Y tarn/bridge: R" (higher is better for throughput and rate,
# lower for the round trip).
cd "$(dirname "$0")/.." || exit 1
O=${O:-build}
TARN=$O/tarn SWITCH=$O/tarn-switch INJECT=$O/bench/inject
RUNS=${BENCH_SWITCH_RUNS:-3} MIB=${BENCH_SWITCH_MIB:-16} FRAMES=${BENCH_SWITCH_FRAMES:-2000000}
BACKEND=${BENCH_SWITCH_BACKEND:-emu} PARTS=,${BENCH_SWITCH_PARTS:-vm,fwd},
if [ "$(id -u)" != 0 ] || [ ! -x "$SWITCH" ] || [ ! -x "$INJECT" ]; then
	echo "switch: SKIP (needs root, $SWITCH and $INJECT)"
	exit 0
fi
eval "$(make -s --no-print-directory guest-vars O="$O")"
NS=tarn-bsw-$$
work=$(mktemp -d)
trap 'ip netns pids "$NS" 2>/dev/null | xargs -r kill -9; ip netns del "$NS" 2>/dev/null; rm -rf "$work"' EXIT
ip netns add "$NS"
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up

# guest NAME NET-OPTION SCRIPT: boot a default guest with the NIC given.
guest() {
	in_ns "$TARN" run --backend "$BACKEND" --mem 256M --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" \
		--cmdline "$GUEST_CMDLINE tarn.cmd64=$(printf '%s' "$3" | base64 -w0)" --net "$2" \
		</dev/null >"$work/$1.out" 2>&1
}
# vm_pair NET-A NET-B: the two guests; prints "MBIT RTT_MS".
vm_pair() {
	guest b "$2" "ip addr add 10.0.8.2/24 dev eth0 && ip link set eth0 up && nc -l -p 5001 >/dev/null; sleep 1" &
	local b=$!
	guest a "$1" "ip addr add 10.0.8.1/24 dev eth0 && ip link set eth0 up &&
for i in \$(seq 60); do ping -c 1 -W 1 10.0.8.2 >/dev/null && break; done
ping -c 20 -i 0.2 10.0.8.2 | tail -1; t0=\$(tr -d . </proc/uptime | cut -d' ' -f1)
dd if=/dev/zero bs=64k count=$((MIB * 16)) 2>/dev/null | nc 10.0.8.2 5001; t1=\$(tr -d . </proc/uptime | cut -d' ' -f1)
echo \"RESULT \$(( $MIB * 8 * 1048576 * 100 / (t1 - t0) ))\""
	wait $b
	python3 - "$work/a.out" <<'PY'
import re, sys
t = open(sys.argv[1], errors="replace").read()
r = re.search(r"RESULT (\d+)", t); p = re.search(r"min/avg/max = [\d.]+/([\d.]+)/", t)
print("%.1f %.3f" % (int(r.group(1)) / 1e6 if r else 0, float(p.group(1)) if p else 0))
PY
}
median() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
row() { # TITLE TARN BRIDGE UNIT BETTER(hi|lo)
	python3 -c "
import sys
t, b = float(sys.argv[2]), float(sys.argv[3])
f = lambda v: ('%.0f' if v >= 1000 else '%g') % v + ' ' + sys.argv[4]
print('switch %-38s tarn: %-14s bridge: %-14s tarn/bridge: %s' % (sys.argv[1], f(t), f(b), '%.3f' % (t / b) if b else 'n/a'))" "$@"
}

# ---- VM to VM ----
declare -A tp rtt
[[ $PARTS == *,vm,* ]] && for side in switch bridge bridge_off; do
	tps=() rtts=()
	for _ in $(seq "$RUNS"); do
		case $side in
		switch)
			rm -f "$work/a.sock" "$work/b.sock"
			in_ns "$SWITCH" --dir "$work" --port a,net=1 --port b,net=1 >/dev/null 2>&1 &
			for _ in $(seq 50); do [ -S "$work/b.sock" ] && break; sleep 0.1; done
			read -r m r < <(vm_pair "vhost-user=$work/a.sock" "vhost-user=$work/b.sock")
			in_ns pkill -f "$SWITCH --dir $work"; sleep 0.2 ;;
		bridge*)
			off=; [ $side = bridge_off ] && off=,offload=off
			in_ns ip link add br0 type bridge && in_ns ip link set br0 up
			for t in ta tb; do in_ns ip tuntap add $t mode tap && in_ns ip link set $t master br0 up; done
			read -r m r < <(vm_pair "tap=ta$off" "tap=tb$off")
			in_ns ip link del ta; in_ns ip link del tb; in_ns ip link del br0 ;;
		esac
		tps+=("$m") rtts+=("$r")
	done
	tp[$side]=$(median "${tps[@]}") rtt[$side]=$(median "${rtts[@]}")
done
[[ $PARTS == *,vm,* ]] && {
echo "# switch: VM to VM, $BACKEND guests, $MIB MiB, $RUNS runs; bridge with offloads on, and off: ${tp[bridge_off]} Mbit/s, ${rtt[bridge_off]} ms"
row "VM to VM TCP (Mbit/s)" "${tp[switch]}" "${tp[bridge]}" Mbit/s
row "VM to VM TCP, no offloads" "${tp[switch]}" "${tp[bridge_off]}" Mbit/s
row "VM to VM round trip (ms)" "${rtt[switch]}" "${rtt[bridge]}" ms
}

# ---- 64-byte forwarding ----
# fwd ARGS...: bench/inject's frames a second.
fwd() { in_ns "$INJECT" "$@" "$FRAMES"; }
rv=() rt=() rs=() rb=()
[[ $PARTS == *,fwd,* ]] || exit 0
for _ in $(seq "$RUNS"); do
	rm -f "$work/a.sock" "$work/b.sock"
	in_ns "$SWITCH" --dir "$work" --port a,net=1 --port b,net=1 >/dev/null 2>&1 &
	for _ in $(seq 50); do [ -S "$work/b.sock" ] && break; sleep 0.1; done
	rv+=("$(fwd --vhost-user "$work/a.sock" "$work/b.sock")")
	in_ns pkill -f "$SWITCH --dir $work"; sleep 0.2
	in_ns ip link add br1 type bridge && in_ns ip link set br1 up
	for t in ta tb; do in_ns ip tuntap add $t mode tap && in_ns ip link set $t master br1 up; done
	rt+=("$(fwd --tap ta tb)")
	in_ns ip link del ta; in_ns ip link del tb; in_ns ip link del br1

	for t in fa fb; do in_ns ip tuntap add $t mode tap && in_ns ip link set $t up; done
	in_ns "$SWITCH" --dir "$work" --tap fa,net=1 --tap fb,net=1 >/dev/null 2>&1 &
	sleep 0.3
	rs+=("$(fwd fa fb)")
	in_ns pkill -f "$SWITCH --dir $work"; sleep 0.2
	in_ns ip link del fa; in_ns ip link del fb
	in_ns ip link add br1 type bridge && in_ns ip link set br1 up
	in_ns ip link add va type veth peer name va2 && in_ns ip link add vb type veth peer name vb2
	for v in va2 vb2; do in_ns ip link set $v master br1 up; done
	in_ns ip link set va up && in_ns ip link set vb up
	rb+=("$(fwd va vb)")
	in_ns ip link del va; in_ns ip link del vb; in_ns ip link del br1
done
row "64-byte frames VM port to VM port (/s)" "$(median "${rv[@]}")" "$(median "${rt[@]}")" /s
row "64-byte frames uplink to uplink (/s)" "$(median "${rs[@]}")" "$(median "${rb[@]}")" /s
