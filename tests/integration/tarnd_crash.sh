#!/bin/bash
# Crash safety: kill -9 of tarnd in the middle of 100 concurrent operations
# (create, start, kill, pause, resume, delete on 20 micro-guest VMs), then a
# new tarnd: the database passes PRAGMA integrity_check, and every VM's row
# matches what runs: a VM recorded running has a live tarn serving its API
# socket under the recorded pid, and no tarn runs that no row records.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name="tarnd crash safety"
. tests/integration/tarnd_lib.sh
start_tarnd --stop-timeout 0 --cpu-overcommit 25 || { not_ok "$name: tarnd starts" "$(tail -2 "$work/tarnd.log")"; done_testing; }
for i in $(seq 20); do
	"$CTL" vm create "v$i" --kernel "$GUEST" --mem 32M --backend emu --cpu-limit 0.02 >/dev/null
done
seed=${SEED:-$RANDOM}
echo "# seed $seed (SEED=$seed replays the operations)"
RANDOM=$seed
verbs=(start start start kill pause resume delete create)
for k in $(seq 100); do
	v=${verbs[RANDOM % ${#verbs[@]}]} i=$((RANDOM % 20 + 1))
	if [ "$v" = create ]; then
		"$CTL" vm create "v$i" --kernel "$GUEST" --mem 32M --backend emu --cpu-limit 0.02 --start >/dev/null 2>&1 &
	else
		"$CTL" vm "$v" "v$i" >/dev/null 2>&1 &
	fi
	[ "$k" = 60 ] && { sleep 0.15; kill -9 "$dpid"; }
done
wait "$dpid" 2>/dev/null
wait 2>/dev/null
start_tarnd --stop-timeout 0 --cpu-overcommit 25 || { not_ok "$name: tarnd starts again" "$(tail -2 "$work/tarnd.log")"; done_testing; }
sleep 2 # a few passes of its loop

r=$(sqlite3 "$work/state/tarnd.db" 'PRAGMA integrity_check' 2>&1)
[ "$r" = ok ] && ok "$name: the database passes PRAGMA integrity_check" || not_ok "$name: integrity" "$r"

# Every row against what runs.
bad=$("$CTL" --json vm list | python3 -c '
import json, os, socket, struct, sys
work = sys.argv[1]
rows = json.load(sys.stdin)["vms"]
bad = []
def served_by(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    except OSError:
        return 0
    finally:
        s.close()
recorded = set()
for v in rows:
    sock = "%s/state/vms/%s/%s/api.sock" % (work, v["tenant"], v["name"])
    owner = served_by(sock)
    if v["state"] in ("running", "paused"):
        recorded.add(v["pid"])
        if owner != v["pid"]:
            bad.append("%s %s pid %s, its socket served by %s" % (v["name"], v["state"], v["pid"], owner))
    elif owner:
        bad.append("%s %s, yet pid %d serves its socket" % (v["name"], v["state"], owner))
for p in os.listdir("/proc"):
    try:
        cmd = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
        state = open("/proc/%s/stat" % p).read().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        continue
    if state != "Z" and any(a.startswith((work + "/state/vms/").encode()) for a in cmd) and int(p) not in recorded:
        bad.append("pid %s runs a VM no row records: %s" % (p, b" ".join(cmd)[:120]))
print("; ".join(bad))
' "$work")
n=$("$CTL" vm list | tail -n +2 | wc -l)
running=$("$CTL" vm list | grep -cE ' (running|paused) ')
if [ -z "$bad" ]; then
	ok "$name: after kill -9 amid 100 operations, all $n VMs' rows match what runs ($running running)"
else
	not_ok "$name: rows against processes" "$bad"
fi
kill "$dpid"
wait "$dpid"
dpid=
done_testing
