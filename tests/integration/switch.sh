#!/bin/bash
# tarn's switch (tarn-switch) with three guests on their vhost-user ports
# (--net vhost-user=PATH; c's port added through the switch's API) and a
# tap uplink, in a network namespace:
# a and b on network 1 with the uplink (the host side, 10.0.5.1), c on
# network 2 with an address of the same subnet. a pings the host through the
# uplink and b through the switch alone; c reaches neither, and the switch
# forwarded nothing to c's port; a's frames from an address that is not its
# own (port security) are dropped and counted; each guest's MAC is
# announced at the uplink when it starts; of 10^6 frames the host sends into
# network 1 (spoofed, broadcast, multicast, unknown, c's MAC), none goes to
# c's port. a sends 2 MiB of random bytes by TCP to b and to the host: with
# the checksum and segmentation offloads both guests negotiate, the switch
# passes a's 64 KiB segments to b as they are and writes them into the tap
# with their header for the host's kernel to cut; both get every byte.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

name=switch
NS=tarn-sw-$$
SWITCH=$O/tarn-switch

if [ "$(id -u)" != 0 ]; then
	skip "$name" "needs root to make a network namespace and a tap device"
	done_testing
fi
if [ ! -c /dev/net/tun ] || ! command -v ip >/dev/null || ! ip netns add "$NS" 2>/dev/null; then
	skip "$name" "cannot make a network namespace with a tap device (/dev/net/tun, iproute2, CAP_SYS_ADMIN)"
	done_testing
fi
work=$(mktemp -d)
cleanup() {
	ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }
need_guest "$name"
[ -x "$SWITCH" ] || { not_ok "$name" "$SWITCH missing (make)"; done_testing; }

in_ns ip link set lo up
if ! in_ns ip tuntap add tsw0 mode tap || ! in_ns ip addr add 10.0.5.1/24 dev tsw0 || ! in_ns ip link set tsw0 up; then
	not_ok "$name" "cannot make tap tsw0 in namespace $NS"
	done_testing
fi
in_ns "$SWITCH" --dir "$work" --api-sock "$work/api.sock" --tap tsw0,net=1 \
	--port a,net=1,mac=52:54:00:00:05:0a,ip=10.0.5.10 --port b,net=1,mac=52:54:00:00:05:0b,ip=10.0.5.11 \
	>"$work/switch.out" 2>"$work/switch.err" &
for _ in $(seq 50); do [ -S "$work/api.sock" ] && break; sleep 0.1; done
# c comes through the API, as tarnd adds ports.
api() { curl -s --unix-socket "$work/api.sock" -X "$1" "http://x/v1/ports$2" ${3:+-d "$3"}; }
c='{"net": 2, "mac": "52:54:00:00:05:0c", "ips": ["10.0.5.12"]}'
if api PUT /c "$c" | grep -q '"name":"c"' && api PUT /c "$c" | grep -q "exists already" &&
	api PUT /d '{"net": 2, "ips": ["10.0.5.13"]}' | grep -q "port security needs mac" && [ -S "$work/c.sock" ]; then
	ok "$name: the API adds a port (its socket appears), and refuses a name taken and addresses without a MAC"
else
	not_ok "$name: the API" "$(api GET "")"
fi

# What reaches the host side of the uplink: RARPs (EtherType 0x8035), by source.
in_ns python3 -c "
import socket, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x8035))
s.bind(('tsw0', 0)); s.settimeout(1)
seen, end = set(), time.time() + 120
while time.time() < end and len(seen) < 2:
    try: f = s.recv(2048)
    except socket.timeout: continue
    seen.add(f[6:12].hex(':'))
    open('$work/rarp', 'w').write(' '.join(sorted(seen)))
" &
up() { echo "ip addr add $1/24 dev eth0 && ip link set eth0 up"; }
# b answers until the test ends; a and c try what they try, then stop.
BOOT_PREFIX=(ip netns exec "$NS")
vm() { # NAME SCRIPT
	out=$work/$1.out
	boot "$2" --mem 256M --net "vhost-user=$work/$1.sock,mac=52:54:00:00:05:0$1"
}
# The host's receiver of a's stream: the MD5 of what came.
md5_receiver "$NS" 10.0.5.1 5002 "$work/host-got" &
(vm b "$(up 10.0.5.11) && nc -l -p 5001 | md5sum | sed 's/^/b-got: /'; sleep 600") &
bpid=$!
(vm c "$(up 10.0.5.12) && sleep 4; ping -c 3 -W 2 10.0.5.1; ping -c 3 -W 2 10.0.5.11; echo C-DONE") &
cpid=$!
vm a "$(up 10.0.5.10) && for i in \$(seq 60); do ping -c 1 -W 1 10.0.5.11 >/dev/null && break; done
ping -c 3 -W 5 10.0.5.1 | sed 's/^/host: /'
ping -c 3 -W 5 10.0.5.11 | sed 's/^/b: /'
dd if=/dev/urandom of=/tmp/d bs=64k count=32 2>/dev/null; md5sum /tmp/d | sed 's/^/a-sent: /'
nc 10.0.5.11 5001 </tmp/d; nc 10.0.5.1 5002 </tmp/d
ip addr add 10.0.5.99/24 dev eth0 && ping -c 3 -W 2 -I 10.0.5.99 10.0.5.1 | sed 's/^/spoofed: /'"
wait $cpid
for _ in $(seq 100); do grep -q "^b-got:" "$work/b.out" && break; sleep 0.1; done
in_ns pkill -f "vhost-user=$work/b.sock"
wait $bpid 2>/dev/null
cstats=$(api GET /c)
# 10^6 frames into network 1 by its uplink, as hostile as a host can make
# them: sources spoofed (a's, b's, c's own MAC, random), to broadcast,
# multicast, unknown unicast and c's MAC; the switch must hand none of
# them to c's port on network 2 (neither delivered nor tried: no drop).
in_ns python3 - "$work/api.sock" <<'PY' >"$work/inject"
import http.client, json, os, random, socket, sys
class U(http.client.HTTPConnection):
    def __init__(s): super().__init__("x")
    def connect(s):
        s.sock = socket.socket(socket.AF_UNIX); s.sock.connect(sys.argv[1])
def rx():
    c = U(); c.request("GET", "/v1/ports/tsw0"); return json.loads(c.getresponse().read())["stats"]["rx_frames"]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("tsw0", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
macs = [bytes.fromhex(m) for m in ("5254000005" "0a", "5254000005" "0b", "5254000005" "0c")]
dsts = [b"\xff" * 6, bytes.fromhex("01005e000001"), bytes.fromhex("333300000001"), bytes.fromhex("02deadbeef01"), macs[2]]
rnd = random.Random(int(os.environ.get("SEED", "1")))
frames = []
for i in range(4096):
    src = macs[i % 3] if i % 4 else bytes([2]) + rnd.randbytes(5)
    frames.append(dsts[i % len(dsts)] + src + b"\x88\xb5" + rnd.randbytes(46))
start, sent = rx(), 0
while rx() - start < 1000000:
    for f in frames:
        try: s.send(f); sent += 1
        except BlockingIOError: pass
print(sent, rx() - start)
PY
read -r sent taken <"$work/inject"
c2=$(api GET /c)
in_ns pkill -TERM -f "$SWITCH --dir $work"
for _ in $(seq 50); do grep -q "^port c:" "$work/switch.out" && break; sleep 0.1; done
stats() { grep "^port $1:" "$work/switch.out"; }
echo "# $(stats a)"
echo "# $(stats c)"
echo "# $(stats tsw0)"

out=$work/a.out
check "$name" "^host: 3 packets transmitted, 3 packets received" "a guest pings the host through the switch's tap uplink"
check "$name" "^b: 3 packets transmitted, 3 packets received" "two guests (tarn, vhost-user) ping each other through the switch"
sent=$(sed -n 's/^a-sent: \([0-9a-f]*\).*/\1/p' "$out") got_b=$(sed -n 's/^b-got: \([0-9a-f]*\).*/\1/p' "$work/b.out")
# a's port: the largest frames it took show whether TSO was on.
a_avg=$(stats a | sed -n 's/.*rx \([0-9]*\) frames \([0-9]*\) bytes.*/\2 \1/p' | awk '{ print $2 ? int($1 / $2) : 0 }')
if [ -n "$sent" ] && [ "$sent" = "$got_b" ] && [ "$sent" = "$(cat "$work/host-got" 2>/dev/null)" ] && [ "${a_avg:-0}" -gt 1514 ]; then
	ok "$name: 2 MiB by TCP from a guest to a guest and to the host, every byte there (offloads on: a's frames $a_avg bytes on average)"
else
	not_ok "$name: TCP with offloads" "sent $sent, b got $got_b, the host got $(cat "$work/host-got" 2>/dev/null), a's frames $a_avg bytes on average"
fi
if grep -qE "^spoofed: 3 packets transmitted, 0 packets received" "$out" && stats a | grep -qE "spoofed_ip=[1-9]"; then
	ok "$name: port security: a guest's frames from an address not its own are dropped and counted ($(stats a | grep -oE 'spoofed_ip=[0-9]+'))"
else
	not_ok "$name: port security" "$(grep spoofed: "$out" | tail -2 | tr '\n' ' ') $(stats a)"
fi
if grep -q "52:54:00:00:05:0a 52:54:00:00:05:0b" "$work/rarp" 2>/dev/null; then
	ok "$name: a guest's port announces its MAC (RARP) when its VM starts its rings, so the network learns where it is"
else
	not_ok "$name: announce" "RARPs seen from: $(cat "$work/rarp" 2>/dev/null)"
fi
if [ "${taken:-0}" -ge 1000000 ] && [ "$(python3 -c "import json,sys; s=json.loads(sys.argv[1])['stats']; print(s['tx_frames'] + sum(s['drops'].values()) - sum(json.loads(sys.argv[2])['stats']['drops'].values()))" "$c2" "$cstats")" = 0 ]; then
	ok "$name: of $taken frames into network 1 (spoofed sources, broadcast, multicast, unknown and network 2's MAC as destinations), 0 reached or were tried on network 2's port"
else
	not_ok "$name: 10^6 frames" "sent $sent, taken $taken; c: $c2"
fi
if grep -q C-DONE "$work/c.out" && [ "$(grep -cE '3 packets transmitted, 0 packets received' "$work/c.out")" = 2 ] &&
	stats c | grep -q "tx 0 frames" && [ "$(python3 -c "import json,sys; print(json.load(sys.stdin)['stats']['tx_frames'])" <<<"$cstats")" = 0 ]; then
	ok "$name: networks apart: a guest on network 2 reaches neither the host nor network 1's guests, and nothing of network 1 reaches it"
else
	not_ok "$name: networks apart" "$(grep -E 'packets|C-DONE' "$work/c.out" | tr '\n' ' ') $(stats c)"
fi
done_testing
