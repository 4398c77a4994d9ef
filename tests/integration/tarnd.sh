#!/bin/bash
# tarnd and tarnctl with micro-guests that count on their console
# (bench/guest_count.S) under the emulator: create and start, the console
# log, pause and resume, stop, kill, delete; the rows survive a kill -9 of
# tarnd, which adopts the running VMs when it comes back; a VM whose tarn
# dies is seen at once and restarted when its policy says so; bad requests
# are refused with a reason and the daemon stays up.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name=tarnd
. tests/integration/tarnd_lib.sh
last_count() { ctl vm logs "$1" --tail 200 | grep -oE 'count [0-9]+' | tail -1 | awk '{print $2}'; }
counting() { [ "$(last_count "$1")" -ge "$2" ] 2>/dev/null; }
has_event() { ctl events --vm "$1" | grep -q "$2"; }
# alive PID: runs (a zombie left to a parent that does not reap has ended)
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit $3 != "Z" }' "/proc/$1/stat"; }
# state_is VM STATE [NOT-PID]: in STATE, and (if given) under another pid
state_is() { [ "$(field "$1" state)" = "$2" ] && { [ -z "$3" ] || [ "$(field "$1" pid)" != "$3" ]; }; }

# The API over TCP too, on a port of this run's.
port=$((20000 + $$ % 20000))
if ! start_tarnd --stop-timeout 1 --listen "127.0.0.1:$port"; then
	not_ok "$name: tarnd starts" "$(tail -3 "$work/tarnd.log")"
	done_testing
fi
ok "$name: tarnd starts and listens on --socket"

# The event stream: tarnd pushes each event down an open GET
# /v1/events?follow=1 (tarnctl events -f) as it happens.
ctl events -f --vm c1 >"$work/stream" 2>&1 &
streamer=$!
if ctl vm create c1 --kernel "$GUEST" --mem 64M --backend emu --start >"$work/out" &&
	until_ok 10 counting c1 5; then
	ok "$name: vm create --start: the guest runs, its console in vm logs"
	if until_ok 5 grep -qE "c1 +started +tarn pid" "$work/stream" && grep -qE "c1 +created" "$work/stream" &&
		kill -0 "$streamer"; then
		ok "$name: events -f: created and started pushed down the open stream as they happened"
	else
		not_ok "$name: event stream" "$(cat "$work/stream")"
	fi
else
	not_ok "$name: vm create --start" "$(cat "$work/out") $(ctl vm logs c1 2>&1 | tail -2)"
fi
ctl vm create c2 --kernel "$GUEST" --mem 64M --backend emu --restart on-failure --start >/dev/null
list=$(ctl vm list)
if grep -qE '^c1 +default +running +1 +64M emu' <<<"$list" && grep -qE '^c2 +default +running' <<<"$list"; then
	ok "$name: vm list shows both running"
else
	not_ok "$name: vm list" "$list"
fi

ctl vm pause c1 >/dev/null
a=$(last_count c1)
sleep 0.5
b=$(last_count c1)
ctl vm resume c1 >/dev/null
until_ok 5 counting c1 $((b + 3))
c=$(last_count c1)
if [ "$a" = "$b" ] && [ "$(field c1 state)" = running ] && [ "$c" -gt "$b" ]; then
	ok "$name: vm pause stops the guest, vm resume lets it go on ($a, $b, then $c)"
else
	not_ok "$name: pause and resume" "counts $a $b $c, state $(field c1 state)"
fi

# kill -9 tarnd: the VMs run on, and a new tarnd adopts them.
pid1=$(field c1 pid)
kill -9 "$dpid"
wait "$dpid" 2>/dev/null
sleep 0.3
n0=$(last_count c1 2>/dev/null)
if alive "$pid1" && start_tarnd --stop-timeout 1 --listen "127.0.0.1:$port" && until_ok 5 has_event c1 adopted &&
	[ "$(field c1 pid)" = "$pid1" ] && [ "$(field c1 state)" = running ] && until_ok 5 counting c1 $((b + 10)); then
	ok "$name: kill -9 of tarnd: the VM runs on and the new tarnd adopts it (pid $pid1)"
else
	not_ok "$name: adoption" "pid $pid1 alive: $(kill -0 "$pid1" 2>&1 && echo yes); $(ctl events --vm c1 2>&1 | tail -2)"
fi
if command -v sqlite3 >/dev/null; then
	r=$(sqlite3 "$work/state/tarnd.db" 'PRAGMA integrity_check' 2>&1)
	[ "$r" = ok ] && ok "$name: the database passes PRAGMA integrity_check" || not_ok "$name: integrity" "$r"
else
	skip "$name: database integrity" "sqlite3 missing"
fi

# A VM's tarn dies: seen at once; c2's policy (on-failure) restarts it.
pid2=$(field c2 pid)
kill -9 "$pid2"
if until_ok 3 has_event c2 crashed && until_ok 5 state_is c2 running "$pid2"; then
	ok "$name: a VM whose tarn is killed is recorded crashed and restarted (on-failure)"
else
	not_ok "$name: crash and restart" "$(ctl events --vm c2 | tail -3)"
fi

t0=$(date +%s%N)
ctl vm stop c1 --timeout 0.2 >/dev/null
if until_ok 10 state_is c1 stopped && ! alive "$pid1"; then
	ok "$name: vm stop: the power button, then ended after the timeout ($((($(date +%s%N) - t0) / 1000000)) ms)"
else
	not_ok "$name: vm stop" "$(ctl vm show c1)"
fi
ctl vm kill c2 >/dev/null
until_ok 5 state_is c2 stopped
if ctl vm delete c1 >/dev/null && ctl vm delete c2 >/dev/null && [ ! -d "$work/state/vms/default/c1" ] &&
	[ "$(ctl --json vm list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["vms"]))')" = 0 ]; then
	ok "$name: vm kill, vm delete: gone, with its directory"
else
	not_ok "$name: delete" "$(ctl vm list)"
fi

# Disk and NIC rates: the VM's for each disk and NIC without its own, on
# tarn's command line at the start; into the running VM's devices at once
# by vm set (read back from its own API). Their accuracy is ratelimit.py's
# to measure.
truncate -s 16M "$work/d1.img" "$work/d2.img"
tap=tarn-td$$ net=()
if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ] && ip tuntap add "$tap" mode tap 2>/dev/null; then
	net=(--tap "$tap,mac=52:54:00:0a:0b:0c,tx_bw=30Mbit/s")
fi
vmconfig() { curl -s --unix-socket "$work/state/vms/default/io1/api.sock" http://x/vm/config; }
# limits KEY PATH...: the values at those places of /vm/config
limits() { vmconfig | python3 -c "
import json, sys
c = json.load(sys.stdin)
for p in sys.argv[1:]:
    v = c
    for k in p.split('.'):
        v = v[int(k)] if k.isdigit() else v.get(k, {})
    print(v, end=' ')" "$@"; }
cmdline() { tr '\0' ' ' <"/proc/$(field io1 pid)/cmdline"; }
if ctl vm create io1 --kernel "$GUEST" --mem 64M --backend emu --disk "$work/d1.img" \
	--disk "$work/d2.img,bw=2MB/s+4MB" --disk-bw 10MB/s --disk-iops 500 "${net[@]}" --net-bw 50Mbit/s \
	--start >/dev/null && until_ok 10 state_is io1 running &&
	cmdline | grep -q -- "--disk $work/d1.img,bw=10MB/s,iops=500 --disk $work/d2.img,bw=2MB/s+4MB,iops=500" &&
	{ [ ${#net[@]} = 0 ] || cmdline | grep -qE "(tap=$tap|fd=[0-9]+),mac=52:54:00:0a:0b:0c,rx_bw=50Mbit/s,tx_bw=30Mbit/s"; } &&
	[ "$(limits drives.0.rate_limiter.bandwidth.size drives.1.rate_limiter.bandwidth.one_time_burst)" = "1000000 4000000 " ] &&
	ctl vm set io1 --disk-bw 5MB/s --disk-iops 200 --net-bw 20Mbit/s --disk 1,iops=100 >/dev/null &&
	got=$(limits drives.0.rate_limiter.bandwidth.size drives.0.rate_limiter.ops.size \
		drives.1.rate_limiter.bandwidth.size drives.1.rate_limiter.bandwidth.one_time_burst \
		drives.1.rate_limiter.ops.size) &&
	[ "$got" = "500000 20 200000 4000000 10 " ] &&
	{ [ ${#net[@]} = 0 ] || { [ "$(limits network-interfaces.0.tx_rate_limiter.bandwidth.size network-interfaces.0.rx_rate_limiter.bandwidth.size)" = "375000 250000 " ] &&
		ctl vm set io1 --net 0,tx_bw=vm >/dev/null &&
		[ "$(limits network-interfaces.0.tx_rate_limiter.bandwidth.size)" = "250000 " ]; }; } &&
	[ "$(field io1 disk_bw)" = 5MB/s ] &&
	ctl --json vm show io1 | python3 -c "
import json, sys
d = json.load(sys.stdin)['disks']
assert [(x['bw'], x['iops']) for x in d] == [('5MB/s', '200'), ('2MB/s+4MB', '100')], d"; then
	ok "$name: disk${net:+ and NIC} rates, the VM's and each device's own: on tarn's command line, and vm set changes them in the running VM ($got)"
else
	not_ok "$name: disk and NIC rates" "$(ctl vm show io1 2>&1 | tr '\n' ' ') config: $(vmconfig | head -c 600)"
fi
# Wrong device changes are refused, and change nothing.
bad=0
expect 1 "the VM has no disk 7" ctl vm set io1 --disk 7,bw=1MB/s
expect 1 "iops 'x': expected a rate" ctl vm set io1 --disk 0,iops=x
expect 1 "unknown field 'speed'" ctl vm set io1 --disk 0,speed=1
expect 2 "N,KEY=RATE" ctl vm set io1 --disk first,bw=1MB/s
expect 1 "the VM has no NIC 9" ctl vm set io1 --disk-bw 1MB/s --net 9,tx_bw=1MB/s
if [ $bad = 0 ] && [ "$(field io1 disk_bw)" = 5MB/s ] && [ "$(limits drives.0.rate_limiter.bandwidth.size)" = "500000 " ]; then
	ok "$name: a wrong disk or NIC in vm set is refused with the reason, and changes nothing"
else
	not_ok "$name: wrong vm set" "$bad answered otherwise; disk_bw $(field io1 disk_bw)"
fi
[ ${#net[@]} = 0 ] && skip "$name: a NIC on a tap" "needs root and /dev/net/tun to make a tap"
ctl vm kill io1 >/dev/null
until_ok 5 ctl vm delete io1
[ ${#net[@]} != 0 ] && ip link del "$tap" 2>/dev/null

# Tenants: each token sees and changes only its own tenant's VMs.
ctl tenant create t1 >/dev/null && ctl tenant create t2 >/dev/null
tok1=$(ctl tenant token t1) tok2=$(ctl tenant token t2)
iso=0
TARN_TOKEN=$tok1 ctl vm create a1 --kernel "$GUEST" --mem 64M --backend emu --start >/dev/null || iso=1
until_ok 5 sh -c "TARN_TOKEN=$tok1 $CTL vm logs a1 | grep -q 'count 2'" || iso=2
TARN_TOKEN=$tok2 ctl vm list | grep -q a1 && iso=3
for v in show stop kill logs delete; do
	out=$(TARN_TOKEN=$tok2 ctl vm $v a1 2>&1) && iso=4
	grep -q "no VM named a1" <<<"$out" || { iso=5; echo "# t2 vm $v a1: $out"; }
done
TARN_TOKEN=$tok2 ctl events | grep -q a1 && iso=6
out=$(TARN_TOKEN=$tok2 ctl tenant list 2>&1) && iso=7
grep -q "HTTP 403" <<<"$out" || iso=8
out=$(TARN_TOKEN=tarn_forged ctl vm list 2>&1) && iso=9
grep -q "HTTP 401" <<<"$out" || iso=10
ctl vm list | grep -qE '^a1 +t1 +running' || iso=11
TARN_TOKEN=$tok1 ctl vm show a1 | grep -q "running" || iso=12
ctl tenant delete t1 >/dev/null 2>&1 && iso=13
# Every call audited, in the table and in the log: who, what, the result.
[ "$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(\"SELECT count(*) FROM audit WHERE who = 'tenant t2' AND method = 'GET' AND path = '/v1/vms/a1' AND status = 404\").fetchone()[0])" "$work/state/tarnd.db")" -ge 1 ] || iso=21
grep -q "audit: tenant t2: GET /v1/vms/a1: 404" "$work/tarnd.log" || iso=22
# The host's own events (tenants, tokens): the admin's, not a tenant's.
ctl events | grep -q "tenant *t1 created" || iso=19
TARN_TOKEN=$tok1 ctl events | grep -q "tenant" && iso=20
# Over TCP (--listen): tokens only, the same isolation.
tcp=http://127.0.0.1:$port
TARN_SOCKET=$tcp TARN_TOKEN=$tok1 ctl vm list | grep -qE '^a1 ' || iso=14
out=$(TARN_SOCKET=$tcp TARN_TOKEN=$tok2 ctl vm show a1 2>&1) && iso=15
grep -q "no VM named a1" <<<"$out" || iso=16
out=$(TARN_SOCKET=$tcp ctl vm list 2>&1) && iso=17
grep -q "a token is needed here.*(HTTP 401)" <<<"$out" || iso=18
if [ $iso = 0 ]; then
	ok "$name: tenants: t2's token cannot see, stop, read or delete t1's VM (404), nor manage tenants (403); a forged token gets 401; the admin sees all; over TCP the same, and no token is 401; each call in the audit table and the log"
else
	not_ok "$name: tenant isolation" "check $iso failed"
fi
TARN_TOKEN=$tok1 ctl vm kill a1 >/dev/null
until_ok 5 sh -c "TARN_TOKEN=$tok1 $CTL vm delete a1" && ctl tenant delete t1 >/dev/null &&
	! TARN_TOKEN=$tok1 ctl vm list >/dev/null 2>&1 && ok "$name: a tenant deleted, its tokens go with it" ||
	not_ok "$name: tenant delete" "$(ctl tenant list)"

# The pool: VMs that are to run are promised vCPUs and memory; one that
# does not fit beside them is refused at its start, with the reason.
pool() { "$CTL" --json host | python3 -c "
import json, sys
p = json.load(sys.stdin)['pool']
print(int(p['vcpus']) - p['vcpus_promised'], int(p['mem_mib']) - p['mem_mib_promised'])"; }
# (tarnd again, with a pool of one vCPU per host CPU: small enough to fill
# with a VM of up to 255 vCPUs on any host.)
kill "$dpid"
wait "$dpid" 2>/dev/null
start_tarnd --stop-timeout 1 --listen "127.0.0.1:$port" --cpu-overcommit 1
read -r free_cpus free_mem <<<"$(pool)"
ctl vm create big --kernel "$GUEST" --mem 64M --backend emu --cpus "$free_cpus" >/dev/null
ctl vm create small --kernel "$GUEST" --mem 64M --backend emu >/dev/null
too_much=$(ctl vm create huge --kernel "$GUEST" --mem "$((free_mem + 1))M" --backend emu --start 2>&1)
if grep -q "does not fit: $((free_mem + 1)) MiB asked" <<<"$too_much" && ! ctl vm show huge >/dev/null 2>&1 &&
	ctl vm start small >/dev/null && refused=$(ctl vm start big 2>&1; echo "exit $?") &&
	grep -q "big: does not fit: $free_cpus vCPUs asked, $((free_cpus - 1)) of" <<<"$refused" &&
	grep -q "exit 1" <<<"$refused" && [ "$(field big desired)" = stopped ] &&
	ctl vm kill small >/dev/null && until_ok 5 state_is small stopped && ctl vm start big >/dev/null &&
	until_ok 10 state_is big running && ctl host | grep -q "^pool: $free_cpus of $(nproc) vCPUs promised (1 per CPU)"; then
	ok "$name: the pool: a VM beyond it is refused (${free_mem}M free, $((free_mem + 1))M asked; $free_cpus vCPUs with one promised), and starts once it fits"
else
	not_ok "$name: the pool" "$too_much | ${refused:-} | $(ctl host | tr '\n' ' ')"
fi
ctl vm kill big >/dev/null
until_ok 5 ctl vm delete big
ctl vm delete small >/dev/null

# Bad input: a reason, exit 1 (2 for bad usage), and the daemon stays up.
bad=0
expect 1 "1 to 63 letters" ctl vm create 'bad/name' --kernel "$GUEST"
expect 1 "No such file" ctl vm create x --kernel /nonexistent
expect 1 "no VM named nope" ctl vm start nope
expect 1 "only a running VM" sh -c "$CTL vm create idle --kernel $GUEST >/dev/null && $CTL vm pause idle"
expect 1 "exists already" ctl vm create idle --kernel "$GUEST"
expect 2 "see 'tarnctl --help'" ctl vm frobnicate x
expect 2 "mem" ctl vm create y --kernel "$GUEST" --mem lots
expect 1 "disk_bw 'fast': expected a rate" ctl vm create y --kernel "$GUEST" --disk-bw fast
expect 1 "disks\[0\] /nonexistent.img: No such file" ctl vm create y --kernel "$GUEST" --disk /nonexistent.img
expect 0 "nics\[0\] tap a,b" curl -s --unix-socket "$TARN_SOCKET" -X POST \
	-d "{\"name\": \"y\", \"kernel\": \"$GUEST\", \"nics\": [{\"tap\": \"a,b\"}]}" http://x/v1/vms
curl_out=$(curl -s --unix-socket "$TARN_SOCKET" -X POST -d '{"name": 1' http://x/v1/vms 2>&1)
grep -q "not JSON" <<<"$curl_out" || { echo "# malformed JSON: $curl_out"; bad=$((bad + 1)); }
if [ $bad = 0 ] && kill -0 "$dpid" && ctl vm list >/dev/null; then
	ok "$name: bad requests are refused with their reason, tarnd stays up"
else
	not_ok "$name: bad requests" "$bad answered otherwise"
fi

# 10,000 malformed requests (SEED replays them): each answered 4xx with a
# fault_message, and tarnd still serves.
if r=$(python3 - "$TARN_SOCKET" "${SEED:-0}" <<'PY'
import http.client, json, random, socket, sys

class C(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)

seed = int(sys.argv[2]) or random.randrange(1, 1 << 31)
rnd = random.Random(seed)
paths = ["/v1/vms", "/v1/vms/idle", "/v1/vms/nope", "/v1/vms/idle/start", "/v1/vms/../x", "/v1/vms/idle/frob",
         "/v1/vms/a%00b", "/v1/events", "/v1/host", "/v2/vms", "/", "/v1/vms/idle/logs", "/v1/vms/" + "x" * 300]
bodies = ['{', '[]', '"s"', 'null', '{"name": 1}', '{"name": "n", "kernel": 5}', '{"name": "", "kernel": "/k"}',
          '{"name": "ok", "kernel": "/nonexistent"}', '{"name": "ok", "kernel": "relative"}',
          '{"name": "ok", "kernel": "/bin/sh", "cpus": 0}', '{"name": "ok", "kernel": "/bin/sh", "mem_mib": 1}',
          '{"name": "ok", "kernel": "/bin/sh", "colour": "red"}', '{"timeout": -1}', '{"timeout": "soon"}',
          '{"a":' * 40, '\x00\xff', '{"name": "idle", "kernel": "/bin/sh"}', "x" * 70000]
others = []
for i in range(10000):
    m = rnd.choice(["POST", "PUT", "PATCH", "DELETE", "GET"])
    p = rnd.choice(paths)
    b = rnd.choice(bodies) if m != "GET" else None
    if m == "GET" and p in ("/v1/vms", "/v1/events", "/v1/host", "/v1/vms/idle", "/v1/vms/idle/logs"):
        continue  # valid reads
    c = C(sys.argv[1])
    try:
        c.request(m, p, body=b)
        res = c.getresponse()
        st, body = res.status, res.read()
    except Exception as e:
        others.append("%s %s: %s" % (m, p, e))
        continue
    finally:
        c.close()
    try:
        fm = json.loads(body).get("fault_message")
    except ValueError:
        fm = None
    if not (400 <= st < 500 and fm):
        others.append("%s %s %r: %d %r" % (m, p, (b or "")[:30], st, body[:60]))
print("seed %d, %d answered otherwise%s" % (seed, len(others), ": " + "; ".join(others[:3]) if others else ""))
sys.exit(1 if others else 0)
PY
) && kill -0 "$dpid" && ctl vm list >/dev/null; then
	ok "$name: 10,000 malformed requests, each 4xx with a reason; tarnd serves on ($r)"
else
	not_ok "$name: malformed requests" "$r"
fi
ctl vm kill idle >/dev/null 2>&1
kill "$dpid"
wait "$dpid"
rc=$?
[ $rc = 0 ] && ok "$name: SIGTERM: tarnd exits 0" || not_ok "$name: SIGTERM" "exit $rc"
dpid=
kill "$streamer" 2>/dev/null
done_testing
