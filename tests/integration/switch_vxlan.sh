#!/bin/bash
# Two hosts' switches over VXLAN, and Linux's own vxlan device as a third:
# three network namespaces stand for the hosts, joined by veth pairs.
#   A: tarn-switch, guest a1 (network 5, 10.0.9.1); tunnels for VNI 5 to B
#      and to C, for VNI 6 to B
#   B: tarn-switch, guests b1 (network 5, 10.0.9.2) and b2 (network 6,
#      10.0.9.3); tunnels for VNI 5 and 6 to A
#   C: a Linux vxlan device, VNI 5, remote A, 10.0.9.100
# a1 pings b1 on the other host and Linux's device (interoperability); C
# pings b1 through A's switch (tunnel to tunnel); b2, on network 6, reaches
# nobody on network 5 though its frames cross to A on VNI 6. a1 sends 1 MiB
# by TCP to C: its guest hands over 64 KiB TCP segments (TSO), which the
# switch cuts into frames with their own checksums for the tunnel, and
# Linux's stack, which checks them, gets every byte; then to b1, with
# frames of the guests' full MTU (the tunnel's datagrams fragmented).
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

name=switch_vxlan
SWITCH=$O/tarn-switch
A=tarn-vxa-$$ B=tarn-vxb-$$ C=tarn-vxc-$$
if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ] || ! ip netns add "$A" 2>/dev/null; then
	skip "$name" "needs root, /dev/net/tun and network namespaces"
	done_testing
fi
ip netns add "$B" && ip netns add "$C"
work=$(mktemp -d)
cleanup() {
	for ns in "$A" "$B" "$C"; do ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null; done
	for ns in "$A" "$B" "$C"; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
need_guest "$name"
if ! ip link add vab type veth peer name vba || ! ip link add vac type veth peer name vca ||
	! modprobe -q vxlan 2>/dev/null && ! ip link add vxprobe$$ type vxlan id 1 dstport 4789 2>/dev/null; then
	skip "$name" "no veth or vxlan support in this kernel"
	done_testing
fi
ip link del vxprobe$$ 2>/dev/null
ip link set vab netns "$A" && ip link set vac netns "$A" && ip link set vba netns "$B" && ip link set vca netns "$C"
net() { ip netns exec "$1" ip "${@:2}"; }
for ns in "$A" "$B" "$C"; do net "$ns" link set lo up; done
net "$A" addr add 192.168.77.1/24 dev vab && net "$A" link set vab up
net "$A" addr add 192.168.78.1/24 dev vac && net "$A" link set vac up
net "$B" addr add 192.168.77.2/24 dev vba && net "$B" link set vba up
net "$C" addr add 192.168.78.2/24 dev vca && net "$C" link set vca up
net "$C" link add vx5 type vxlan id 5 remote 192.168.78.1 local 192.168.78.2 dstport 4789 dev vca &&
	net "$C" addr add 10.0.9.100/24 dev vx5 && net "$C" link set vx5 up ||
	{ not_ok "$name" "cannot make Linux's vxlan device in $C"; done_testing; }
# Between namespaces a veth leaves the inner TCP checksum of what C's
# vxlan device sends for a NIC to fill in (CHECKSUM_PARTIAL), which no NIC
# does here: the switch would read an unfinished checksum from its UDP
# socket. With checksumming off on C's veth the kernel finishes it, as a
# real NIC would.
tx_csum=; ip netns exec "$C" ethtool -K vca tx off >/dev/null 2>&1 && tx_csum=off

mkdir "$work/a" "$work/b"
ip netns exec "$A" "$SWITCH" --dir "$work/a" --port a1,net=5,mac=52:54:00:00:09:01 \
	--vxlan toB5,net=5,remote=192.168.77.2 --vxlan toC5,net=5,remote=192.168.78.2 \
	--vxlan toB6,net=6,remote=192.168.77.2 >"$work/a.stats" 2>"$work/a.err" &
ip netns exec "$B" "$SWITCH" --dir "$work/b" --port b1,net=5,mac=52:54:00:00:09:02 \
	--port b2,net=6,mac=52:54:00:00:09:03 --vxlan toA5,net=5,remote=192.168.77.1 \
	--vxlan toA6,net=6,remote=192.168.77.1 >"$work/b.stats" 2>"$work/b.err" &
for _ in $(seq 50); do [ -S "$work/a/a1.sock" ] && [ -S "$work/b/b2.sock" ] && break; sleep 0.1; done

up() { echo "ip addr add $1/24 dev eth0 && ip link set eth0 up"; }
vm() { # NS DIR NAME MAC SCRIPT
	out=$work/$3.out
	BOOT_PREFIX=(ip netns exec "$1")
	boot "$5" --mem 256M --net "vhost-user=$work/$2/$3.sock,mac=$4"
}
(vm "$B" b b1 52:54:00:00:09:02 "$(up 10.0.9.2) && nc -l -p 5004 | md5sum | sed 's/^/b1-got: /'; sleep 600") &
b1=$!
(vm "$B" b b2 52:54:00:00:09:03 "$(up 10.0.9.3) && sleep 6; ping -c 3 -W 2 10.0.9.1; echo B2-DONE") &
b2=$!
md5_receiver "$C" 10.0.9.100 5003 "$work/c-got" &
vm "$A" a a1 52:54:00:00:09:01 "$(up 10.0.9.1) && for i in \$(seq 60); do ping -c 1 -W 1 10.0.9.2 >/dev/null && break; done
ping -c 3 -W 5 10.0.9.2 | sed 's/^/b1: /'; ping -c 3 -W 5 10.0.9.100 | sed 's/^/linux: /'
dd if=/dev/urandom of=/tmp/d bs=64k count=16 2>/dev/null; md5sum /tmp/d | sed 's/^/sent: /'; nc 10.0.9.100 5003 </tmp/d
nc 10.0.9.2 5004 </tmp/d
sleep 1; echo A1-DONE" &
a1=$!
# Linux (C) pings b1 while a1's guest runs: A's switch carries it from one
# tunnel to the other.
for _ in $(seq 120); do grep -q "^b1: 3 packets" "$work/a1.out" 2>/dev/null && break; sleep 0.5; done
cping=$(ip netns exec "$C" busybox ping -c 3 -W 5 10.0.9.2 2>&1 | grep "packets transmitted")
wait $a1 $b2
for _ in $(seq 100); do grep -q "^b1-got:" "$work/b1.out" && break; sleep 0.1; done
ip netns exec "$B" pkill -f "vhost-user=$work/b/b1.sock"
wait $b1 2>/dev/null
for ns in "$A" "$B"; do ip netns exec "$ns" pkill -TERM -f "$SWITCH --dir $work"; done
for _ in $(seq 50); do grep -q "^port toA6" "$work/b.stats" && grep -q "^port toB6" "$work/a.stats" && break; sleep 0.1; done
grep "^port" "$work/a.stats" "$work/b.stats" | sed 's/^/# /'

out=$work/a1.out
check "$name" "^b1: 3 packets transmitted, 3 packets received" "a guest pings a guest on another host's switch through VXLAN"
check "$name" "^linux: 3 packets transmitted, 3 packets received" "and Linux's vxlan device on a third host (VNI 5)"
if grep -q "3 packets transmitted, 3 packets received" <<<"$cping"; then
	ok "$name: Linux's device reaches the guest on the far switch through the switch between (tunnel to tunnel)"
else
	not_ok "$name: tunnel to tunnel" "$cping"
fi
if grep -q "3 packets transmitted, 0 packets received" "$work/b2.out" && grep -q "^port toB6: rx [1-9]" "$work/a.stats" &&
	grep -q "^port a1: .*" "$work/a.stats"; then
	ok "$name: network 6's frames cross to the other host on VNI 6 and reach nobody on network 5"
else
	not_ok "$name: VNIs apart" "$(grep packets "$work/b2.out") $(grep toB6 "$work/a.stats")"
fi
sent=$(sed -n 's/^sent: \([0-9a-f]*\).*/\1/p' "$out")
# what went into the tunnel to C
big=$(grep "^port toC5:" "$work/a.stats" | sed -n 's/.*tx \([0-9]*\) frames \([0-9]*\) bytes.*/\1 frames, \2 bytes/p')
if [ -z "$tx_csum" ]; then
	skip "$name: TCP through the tunnel" "ethtool cannot switch off checksum offload on a veth here (make setup installs ethtool)"
elif [ -n "$sent" ] && [ "$sent" = "$(cat "$work/c-got" 2>/dev/null)" ]; then
	ok "$name: 1 MiB by TCP from a guest with TSO to Linux through the tunnel, cut into frames by the switch (into the tunnel: $big)"
else
	not_ok "$name: TCP through the tunnel" "sent $sent, Linux got $(cat "$work/c-got" 2>/dev/null); toC5 $big"
	grep -v "^\[" "$out" | tail -8 | sed 's/^/# a1: /'
	ip netns exec "$C" cat /proc/net/snmp | grep -E "^Tcp:" | sed 's/^/# C: /'
fi
# Guest to guest, switch to switch, with the guests' 1500-byte MTU: each
# datagram is 50 bytes past the underlay's MTU and goes fragmented, as
# Linux's vxlan device sends it.
got=$(sed -n 's/^b1-got: \([0-9a-f]*\).*/\1/p' "$work/b1.out")
if [ -n "$sent" ] && [ "$sent" = "$got" ]; then
	ok "$name: 1 MiB by TCP from a guest to a guest on the other host, full-size frames through the tunnel"
else
	not_ok "$name: TCP guest to guest through the tunnel" "sent $sent, b1 got $got; $(grep "^port toB5" "$work/a.stats")"
fi
done_testing
