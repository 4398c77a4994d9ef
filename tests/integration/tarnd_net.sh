#!/bin/bash
# Networks through tarnd: tenant t1's network n1 with an uplink (a tap, the
# host side 10.0.6.1) that the admin gave it, two of t1's guests on it,
# tenant t2's guest on t2's own network. tarnd runs tarn's switch and puts
# each NIC's port on it; tarn connects to its port (vhost-user), jailed.
# t1's guests ping each other and the host; t2's reaches neither; tenants
# see only their own networks and cannot attach to another's; a tenant
# cannot give an uplink; a VM's port goes with the VM; a restarted tarnd
# keeps the running switch. All in a network namespace of the test's.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name=tarnd_net
. tests/integration/tarnd_lib.sh
NS=tarn-tn-$$
if [ "$(id -u)" != 0 ] || [ ! -c /dev/net/tun ] || ! ip netns add "$NS" 2>/dev/null; then
	skip "$name" "needs root, /dev/net/tun and a network namespace of its own"
	done_testing
fi
trap 'ip netns pids "$NS" | xargs -r kill -9; ip netns del "$NS"; cleanup' EXIT
eval "$(make -s --no-print-directory guest-vars O="$O")"
if [ ! -f "$GUEST_KERNEL" ] || [ ! -f "$GUEST_INITRD" ]; then
	not_ok "$name" "the default guest is missing (make guest)"
	done_testing
fi
in_ns() { ip netns exec "$NS" "$@"; }
in_ns ip link set lo up
in_ns ip tuntap add tsw1 mode tap && in_ns ip addr add 10.0.6.1/24 dev tsw1 && in_ns ip link set tsw1 up
tarnd_in_ns() {
	in_ns "$TARND" --state-dir "$work/state" --socket "$TARN_SOCKET" >>"$work/tarnd.log" 2>&1 &
	dpid=$!
	for _ in $(seq 100); do [ -S "$TARN_SOCKET" ] && return 0; sleep 0.05; done
	return 1
}
if ! tarnd_in_ns; then
	not_ok "$name: tarnd starts" "$(tail -3 "$work/tarnd.log")"
	done_testing
fi
ctl tenant create t1 >/dev/null && ctl tenant create t2 >/dev/null
tok1=$(ctl tenant token t1) tok2=$(ctl tenant token t2)
t1() { TARN_TOKEN=$tok1 ctl "$@"; }
t2() { TARN_TOKEN=$tok2 ctl "$@"; }

bad=0
t1 net create n1 >/dev/null || bad=1
expect 1 "an uplink is the admin's to give" t1 net create n9 --uplink tap:tsw1
expect 1 "exists already" t1 net create n1
ctl --tenant t1 net delete n1 >/dev/null || bad=2
ctl --tenant t1 net create n1 --uplink tap:tsw1 >/dev/null || bad=3
t2 net create n2 >/dev/null || bad=4
expect 1 "no network named n1" t2 net show n1
t2 net list | grep -q n1 && bad=5
expect 1 "no network named n1" t2 vm create x --kernel "$GUEST_KERNEL" --net n1
expect 1 "a tap is the admin's to give" t2 vm create x --kernel "$GUEST_KERNEL" --tap tsw1
if [ $bad = 0 ] && ctl net list | grep -qE "^n1 +t1 +[0-9]+ +tap:tsw1"; then
	ok "$name: networks are the tenant's: t2 neither sees nor joins t1's, a tenant gives no uplink, the admin does"
else
	not_ok "$name: networks" "$bad: $(ctl net list 2>&1 | tr '\n' ' ')"
fi

# A VXLAN uplink: a tunnel on the switch for the network's VNI, gone with it.
ports() { curl -s --unix-socket "$work/state/switch/api.sock" "http://x/v1/ports$1"; }
if ctl --tenant t2 net create n3 --uplink vxlan:192.168.99.9 >/dev/null &&
	vni3=$(ctl --json --tenant t2 net show n3 | python3 -c "import json,sys; print(json.load(sys.stdin)['vni'])") &&
	ports "/vx$vni3" | grep -q '"kind":"vxlan"' && ctl --tenant t2 net delete n3 >/dev/null &&
	ports "/vx$vni3" | grep -q "no port named"; then
	ok "$name: a VXLAN uplink is a tunnel on the switch for the network's VNI ($vni3), gone with the network"
else
	not_ok "$name: VXLAN uplink" "$(ports | head -c 300)"
fi
expect 1 "vxlan:IPV4" ctl net create n4 --uplink vxlan:nowhere

# The guests: t1's a and b on n1, t2's c on n2 (an address of n1's subnet).
script() { echo "$GUEST_CMDLINE tarn.cmd64=$(printf '%s' "ip addr add $1/24 dev eth0 && ip link set eth0 up && $2" | base64 -w0)"; }
vm() { # WHO NAME NET IP SCRIPT [OPTIONS...]
	"$1" vm create "$2" --kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --mem 256M --backend emu \
		--cmdline "$(script "$4" "$5")" --net "$3,ip=$4" "${@:6}" --start >/dev/null
}
vm t1 b n1 10.0.6.11 "sleep 600" --net-pps 1000
vm t2 c n2 10.0.6.12 "sleep 4; ping -c 3 -W 2 10.0.6.1; ping -c 3 -W 2 10.0.6.11; echo C-DONE"
vm t1 a n1 10.0.6.10 "for i in \$(seq 90); do ping -c 1 -W 1 10.0.6.11 >/dev/null && break; done
ping -c 3 -W 5 10.0.6.1 | sed 's/^/host: /'; ping -c 3 -W 5 10.0.6.11 | sed 's/^/b: /'; echo A-DONE"
logs() { TARN_TOKEN=$2 ctl vm logs "$1"; }
until_ok 240 sh -c "TARN_TOKEN=$tok1 $CTL vm logs a | grep -q A-DONE && TARN_TOKEN=$tok2 $CTL vm logs c | grep -q C-DONE"
if logs a "$tok1" | grep -q "^host: 3 packets transmitted, 3 packets received" &&
	logs a "$tok1" | grep -q "^b: 3 packets transmitted, 3 packets received"; then
	ok "$name: a tenant's guests on its network ping each other and the host (uplink), each jailed tarn on its switch port"
else
	not_ok "$name: one network" "$(logs a "$tok1" | grep -E 'host:|b:|A-DONE' | tr '\n' ' ') $(tail -3 "$work/state/switch/switch.log")"
fi
if [ "$(logs c "$tok2" | grep -c '3 packets transmitted, 0 packets received')" = 2 ]; then
	ok "$name: another tenant's guest on its own network reaches neither the host nor the first tenant's guests"
else
	not_ok "$name: tenants apart" "$(logs c "$tok2" | grep -E 'packets|C-DONE' | tr '\n' ' ')"
fi
t1 --json vm show a | python3 -c "import json,sys; n=json.load(sys.stdin)['nics'][0]; assert n['network']=='n1' and n['ips']=='10.0.6.10', n" ||
	bad=6
# The VM's rates are its port's QoS on the switch, changed at run time.
if ports | grep -q '"limits":{"rx_pps":"100:100:0","tx_pps":"100:100:0"}' && t1 vm set b --net 0,tx_pps=2000 >/dev/null &&
	ports | grep -q '"limits":{"rx_pps":"100:100:0","tx_pps":"200:100:0"}'; then
	ok "$name: a VM's NIC rates are its switch port's QoS, set at its start and changed while it runs"
else
	not_ok "$name: NIC rates on the switch" "$(ports | grep -o '"limits":{[^}]*}' | tr '\n' ' ')"
fi

# tarnd killed and started again: the switch runs on (the same process).
spid=$(cat "$work/state/switch/switch.pid")
kill -9 "$dpid"
tarnd_in_ns
if [ "$(cat "$work/state/switch/switch.pid")" = "$spid" ] && kill -0 "$spid" && ports | grep -q '"name":"vm'; then
	ok "$name: a restarted tarnd keeps the running switch (pid $spid) and its ports"
else
	not_ok "$name: switch adoption" "pid $spid -> $(cat "$work/state/switch/switch.pid"); $(ports | head -c 300)"
fi
# A VM's port goes with it.
n0=$(ports | grep -o '"name":"vm' | wc -l)
t1 vm kill a >/dev/null && until_ok 10 t1 vm delete a
n1=$(ports | grep -o '"name":"vm' | wc -l)
if [ "$n1" = $((n0 - 1)) ] && [ $bad = 0 ]; then
	ok "$name: a deleted VM's port leaves the switch ($n0 ports, then $n1); vm show names the NIC's network and addresses"
else
	not_ok "$name: ports" "$n0 then $n1 ports, bad $bad"
fi
for v in b; do t1 vm kill $v >/dev/null; done
t2 vm kill c >/dev/null
kill -9 "$(cat "$work/state/switch/switch.pid")" 2>/dev/null
done_testing
