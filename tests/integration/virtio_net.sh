#!/bin/bash
# virtio-net with a tap backend (--net tap=NAME), under the emulator with
# the default guest. The test makes a network namespace holding a tap
# device, host side 10.0.2.1/24, and runs tarn inside it. The guest (its
# /init loads virtio_net by modalias) takes 10.0.2.15/24 on eth0, pings the
# host, fetches NET_MIB MiB (default 2) of seeded pseudo-random data from a
# host HTTP server (host -> guest), sends it back with nc to a host listener
# (guest -> host, small writes) and serves it with busybox httpd for the host
# to fetch (guest -> host by sendfile: large TSO frames); every checksum must
# match the host's file.
#   NET_OPTS=",offload=off"  more --net options (e.g. to compare offloads)
#   NET_GUEST_SETUP="CMD"     run first in the guest (e.g. a sysctl)
# The rates both ways are printed as TAP comments.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

NS=tarn-net-$$
TAP=tarn-tap0
MIB=${NET_MIB:-2}

if [ "$(id -u)" != 0 ]; then
	skip "virtio-net tap" "needs root to make a network namespace and a tap device"
	done_testing
fi
if [ ! -c /dev/net/tun ]; then
	skip "virtio-net tap" "no /dev/net/tun (modprobe tun)"
	done_testing
fi
if ! command -v ip >/dev/null || ! ip netns add "$NS" 2>/dev/null; then
	skip "virtio-net tap" "cannot make a network namespace (ip netns add; iproute2 missing or no CAP_SYS_ADMIN)"
	done_testing
fi
work=$(mktemp -d)
cleanup() {
	ip netns pids "$NS" 2>/dev/null | xargs -r kill 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
in_ns() { ip netns exec "$NS" "$@"; }

need_guest "virtio-net"
if ! grep -q '^ko virtio_net ' "$(dirname "$GUEST_INITRD")/manifest.txt"; then
	not_ok "virtio-net" "virtio_net is not in the guest's initramfs ($(dirname "$GUEST_INITRD")/manifest.txt)"
	done_testing
fi
if ! command -v python3 >/dev/null; then
	skip "virtio-net tap" "python3 missing (the host-side servers)"
	done_testing
fi

in_ns ip link set lo up
if ! in_ns ip tuntap add "$TAP" mode tap || ! in_ns ip addr add 10.0.2.1/24 dev "$TAP" ||
	! in_ns ip link set "$TAP" up; then
	not_ok "virtio-net" "cannot make tap $TAP in namespace $NS"
	done_testing
fi

# Seeded data, the same on every run.
python3 -c "
import random, sys
r = random.Random(20261123)
sys.stdout.buffer.write(r.randbytes($MIB << 20))" >"$work/data"
want=$(sha256sum <"$work/data" | cut -d' ' -f1)

# Host side, one helper: HTTP on :8000 serves the file (host -> guest),
# then a sink on :5001 takes exactly its size and closes (the guest's nc
# then ends), then on GET /pull it fetches the file from the guest's httpd.
# For each transfer it notes the wall time and the CPU time tarn spent (so
# the rates mean something on a busy host).
cat >"$work/host.py" <<'PY'
import os, socket, sys, time, urllib.request
work, size = sys.argv[1], os.path.getsize(sys.argv[1] + '/data')
def tarn_cpu():  # CPU seconds of the tarn process in this namespace
    me = os.readlink('/proc/self/ns/net')
    for p in filter(str.isdigit, os.listdir('/proc')):
        try:
            if os.readlink('/proc/%s/ns/net' % p) != me: continue
            if not open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')[0].endswith(b'tarn'): continue
            f = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()
            return (int(f[11]) + int(f[12])) / os.sysconf('SC_CLK_TCK')
        except OSError: pass
    return 0.0
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('10.0.2.1', port)); s.listen(1); return s
def rate(name, n, t0, c0):
    wall, cpu = time.monotonic() - t0, tarn_cpu() - c0
    mib = n / (1 << 20)
    open(work + '/rate', 'a').write('# %s: %.2f MiB/s wall (%.2f MiB in %.2f s), %.2f MiB per CPU-second of tarn (%.2f s)\n'
        % (name, mib / max(wall, 1e-6), mib, wall, mib / max(cpu, 1e-6), cpu))
http, sink = listen(8000), listen(5001)
open(work + '/ready', 'w').close()
c, _ = http.accept(); req = b''
while b'\r\n\r\n' not in req and len(req) < 4096:
    b = c.recv(4096)
    if not b: break
    req += b
data = open(work + '/data', 'rb').read()
t0, c0 = time.monotonic(), tarn_cpu()
c.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n' % size + data)
c.shutdown(socket.SHUT_WR)
while c.recv(4096): pass  # the guest closes once it has everything
rate('host -> guest', size, t0, c0); c.close()
c, _ = sink.accept(); got = bytearray(); t0 = None
while len(got) < size:
    b = c.recv(1 << 16)
    if not b: break
    if t0 is None: t0, c0 = time.monotonic(), tarn_cpu()
    got += b
open(work + '/back', 'wb').write(got)
if t0 is not None: rate('guest -> host, nc', len(got), t0, c0)
c.close()
c, _ = http.accept(); req = b''  # GET /pull: fetch the file from the guest's httpd
while b'\r\n\r\n' not in req and len(req) < 4096:
    b = c.recv(4096)
    if not b: break
    req += b
t0, c0 = time.monotonic(), tarn_cpu()
try: got = urllib.request.urlopen('http://10.0.2.15:8080/in', timeout=300).read()
except Exception: got = b''
open(work + '/pulled', 'wb').write(got)
rate('guest -> host, httpd', len(got), t0, c0)
c.sendall(b'HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok'); c.close()
PY
in_ns python3 "$work/host.py" "$work" 2>"$work/host.err" &
helper=$!
for _ in $(seq 100); do [ -f "$work/ready" ] && break; sleep 0.1; done

script="${NET_GUEST_SETUP:-:}
ip addr add 10.0.2.15/24 dev eth0 && ip link set eth0 up
echo mac=\$(cat /sys/class/net/eth0/address)
echo driver=\$(basename \$(readlink /sys/class/net/eth0/device/driver))
ping -c 3 -W 5 10.0.2.1 | grep 'packets transmitted'
wget -q -O /tmp/in http://10.0.2.1:8000/data; echo wget=\$?
echo got=\$(sha256sum </tmp/in | cut -d' ' -f1)
nc 10.0.2.1 5001 </tmp/in; echo nc=\$?
httpd -p 10.0.2.15:8080 -h /tmp && echo pull=\$(wget -q -O - http://10.0.2.1:8000/pull)
echo features=\$(cat /sys/class/net/eth0/device/features)"
out=$work/console BOOT_TIMEOUT=${BOOT_TIMEOUT:-900} BOOT_PREFIX=(ip netns exec "$NS")
boot "$script" --net "tap=$TAP,mac=52:54:00:12:34:56${NET_OPTS:-}"
wait "$helper" 2>/dev/null

# same_data FILE WHAT NAME: FILE holds what the host served.
same_data() {
	local got
	got=$(sha256sum <"$1" 2>/dev/null | cut -d' ' -f1)
	if [ "$got" = "$want" ]; then
		ok "$2"
	else
		not_ok "$3" "sha256 ${got:-none} of $(stat -c %s "$1" 2>/dev/null || echo 0) bytes, want $want"
	fi
}
check "" "^mac=52:54:00:12:34:56" "the guest's eth0 has the MAC given with mac="
check "" "^driver=virtio_net" "eth0 is driven by virtio_net"
check "" "3 packets transmitted, 3 packets received" "the guest pings the host: 3 replies"
check "" "^wget=0" "the guest fetches $MIB MiB over HTTP from the host"
check "" "^got=$want" "host -> guest: the guest's sha256 matches the host's file"
check "" "^nc=0" "the guest sends it back over TCP"
same_data "$work/back" "guest -> host: the host receives $MIB MiB with a matching sha256" "guest -> host"
check "" "^pull=ok" "the host fetches it from the guest's httpd"
same_data "$work/pulled" "guest -> host by sendfile (TSO-sized frames with offload=on): sha256 matches" \
	"guest -> host by httpd"
cat "$work/rate" 2>/dev/null
grep "^features=" "$out" | sed 's/^/# /'
[ $rc -eq 0 ] && ok "power-off, tarn exits 0" || not_ok "power-off" "tarn exited $rc: $(tail -3 "$out" | tr '\r\n' '  ')"

# Errors the user sees: a bad MAC, an unknown key, a tap that is busy.
err=$(timeout 20 ip netns exec "$NS" "$TARN" run --backend "$BACKEND" --kernel "$GUEST_KERNEL" --net "tap=$TAP,mac=zz" 2>&1)
[ $? -eq 2 ] && grep -q "mac=zz" <<<"$err" && ok "--net mac=zz is refused with a reason" ||
	not_ok "--net mac=zz" "$err"
err=$(timeout 20 ip netns exec "$NS" "$TARN" run --backend "$BACKEND" --kernel "$GUEST_KERNEL" --net "tap=$TAP,colour=blue" 2>&1)
[ $? -eq 2 ] && grep -q "unknown key 'colour'" <<<"$err" && ok "--net with an unknown key is refused" ||
	not_ok "--net colour=blue" "$err"
# Another process holds the tap (a tap without multi_queue takes one).
in_ns python3 -c "
import fcntl, os, struct, sys, time
fd = os.open('/dev/net/tun', os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack('16sH', b'$TAP', 0x5002))  # TUNSETIFF: TAP|NO_PI|VNET_HDR
print('held', flush=True)
time.sleep(60)" >"$work/held" &
holder=$!
for _ in $(seq 50); do grep -q held "$work/held" && break; sleep 0.1; done
err=$(timeout 20 ip netns exec "$NS" "$TARN" run --backend "$BACKEND" --kernel "$GUEST_KERNEL" --net "tap=$TAP" 2>&1)
[ $? -eq 2 ] && grep -q "busy" <<<"$err" && ok "--net tap=NAME of a tap in use: refused, 'busy'" ||
	not_ok "--net busy tap" "$err"
kill $holder 2>/dev/null
done_testing
