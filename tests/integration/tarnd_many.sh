#!/bin/bash
# 50 micro-guest VMs at once under one tarnd on this (2-core) host: all
# created and started, each running (its console counts), listed, killed
# and deleted. Each is held to 0.02 of a core where the host has cgroups,
# so that together they leave the host one core. Prints tarnd's resident
# memory with none and with 50 VMs, and a VM's (its tarn process's).
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name="tarnd, 50 VMs"
N=${TARND_MANY:-50}
. tests/integration/tarnd_lib.sh
start_tarnd --cpu-overcommit 25 || { not_ok "$name: tarnd starts" "$(tail -2 "$work/tarnd.log")"; done_testing; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
# pss PID: its resident memory with shared pages split among their sharers
pss() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup" 2>/dev/null; }
rss0=$(rss "$dpid")

t0=$(date +%s%N)
fails=0
for i in $(seq "$N"); do
	"$CTL" vm create "vm$i" --kernel "$GUEST" --mem 32M --backend emu --cpu-limit 0.02 --start >/dev/null ||
		fails=$((fails + 1))
done
t1=$(date +%s%N)
running() { [ "$("$CTL" vm list | grep -c ' running ')" = "$N" ]; }
counting() { # every VM's console has a line
	for i in $(seq "$N"); do
		"$CTL" vm logs "vm$i" --tail 64 | grep -q 'count' || return 1
	done
}
for _ in $(seq 300); do running && counting && break; sleep 0.1; done
if [ $fails = 0 ] && running && counting; then
	ok "$name: $N created and started in $(((t1 - t0) / 1000000)) ms, all running, each console counting"
else
	not_ok "$name: create and run" "$fails refused; $("$CTL" vm list | grep -vc ' running ') not running"
fi
rss1=$(rss "$dpid")
pids=$("$CTL" --json vm list | python3 -c 'import json,sys; print(" ".join(str(v["pid"]) for v in json.load(sys.stdin)["vms"]))')
avg() { awk '{ s += $1; n++ } END { if (n) printf "%d", s / n }'; }
vm_rss=$(for p in $pids; do rss "$p"; done | avg)
vm_pss=$(for p in $pids; do pss "$p"; done | avg)
echo "# tarnd RSS: $rss0 KiB with no VM, $rss1 KiB with $N; a VM's tarn process: RSS $vm_rss KiB, PSS $vm_pss KiB on average"
[ "$("$CTL" --json vm list | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["vms"]))')" = "$N" ] &&
	ok "$name: vm list lists $N" || not_ok "$name: vm list" "$("$CTL" vm list | wc -l) lines"

for i in $(seq "$N"); do "$CTL" vm kill "vm$i" >/dev/null; done
for _ in $(seq 100); do [ "$("$CTL" vm list | grep -c ' stopped ')" = "$N" ] && break; sleep 0.1; done
left=$(pgrep -fc "api-sock $work/")
for i in $(seq "$N"); do "$CTL" vm delete "vm$i" >/dev/null || fails=$((fails + 1)); done
if [ "${left:-0}" = 0 ] && [ $fails = 0 ] && [ "$("$CTL" vm list | wc -l)" = 1 ]; then
	ok "$name: all killed (no tarn process left) and deleted"
else
	not_ok "$name: kill and delete" "$left tarn processes left, $fails deletes refused"
fi
kill "$dpid"
wait "$dpid"
dpid=
done_testing
