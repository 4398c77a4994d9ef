#!/bin/bash
# Snapshots through tarnd with a counting micro-guest: taken while it runs
# (it counts on after), restored (the running VM goes back: its count
# starts again from the snapshot's), cloned (a second VM counts on from
# the same point), listed; with a writable disk, which the snapshot keeps
# a copy of; bad requests refused with the reason.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name=tarnd_snapshot
. tests/integration/tarnd_lib.sh
if ! start_tarnd; then
	not_ok "$name: tarnd starts" "$(tail -3 "$work/tarnd.log")"
	done_testing
fi
last_count() { ctl vm logs "$1" --tail 300 | grep -oE 'count [0-9]+' | tail -1 | awk '{print $2}'; }
counting() { [ "$(last_count "$1")" -ge "$2" ] 2>/dev/null; }
log_of() { echo "$work/state/vms/default/$1/console.log"; }
# first_count_after VM BYTES: the first count the console wrote past BYTES
first_count_after() { tail -c +$(($2 + 1)) "$(log_of "$1")" | grep -oE 'count [0-9]+' | head -1 | awk '{print $2}'; }

ctl vm create s1 --kernel "$GUEST" --mem 64M --backend emu --start >/dev/null
if ! until_ok 10 counting s1 20; then
	not_ok "$name: the VM runs" "$(ctl vm logs s1 | tail -2)"
	done_testing
fi
if out=$(ctl vm snapshot s1 snapA) && a=$(last_count s1) && until_ok 10 counting s1 $((a + 30)) &&
	ctl vm snapshots s1 | grep -qE '^snapA +[0-9-]+ [0-9:]+ +[0-9]+M'; then
	ok "$name: vm snapshot while it runs (at count ~$a): it counts on after, and vm snapshots lists it"
else
	not_ok "$name: snapshot" "$out $(ctl vm snapshots s1 2>&1) $(tail -2 "$work/state/vms/default/s1/tarn.log")"
fi
pid=$(field s1 pid) b=$(last_count s1) size=$(stat -c %s "$(log_of s1)")
# back_to VM BYTES: the count the console went back to past BYTES (the
# first one below the one before it, or than $b, where it stood), if it did
back_to() { tail -c +$(($2 + 1)) "$(log_of "$1")" | grep -oE 'count [0-9]+' | awk -v last="$b" '$2 < last { print $2; exit } { last = $2 }'; }
if ctl vm restore s1 snapA >/dev/null && until_ok 10 sh -c "[ \"\$($CTL --json vm show s1 | grep -o '\"pid\": [0-9]*')\" != '\"pid\": $pid' ]" &&
	until_ok 10 sh -c "[ -n \"\$(tail -c +$((size + 1)) $(log_of s1) | grep -oE 'count [0-9]+' | awk -v last=$b '\$2 < last { print; exit } { last = \$2 }')\" ]"; then
	first=$(back_to s1 "$size")
	if [ "$first" -le $((a + 1)) ] && [ "$first" -ge 1 ] && [ "$(field s1 state)" = running ]; then
		ok "$name: vm restore: the running VM goes back (it was at $b; it counts on from $first, the snapshot's point)"
	else
		not_ok "$name: restore" "went back to $first (snapshot ~$a, before $b), pid $pid -> $(field s1 pid)"
	fi
else
	not_ok "$name: restore" "$(ctl events --vm s1 | tail -3)"
fi
if ctl vm clone s1 s2 --snapshot snapA >/dev/null && until_ok 10 counting s2 1; then
	first=$(first_count_after s2 0)
	[ "$first" -le $((a + 1)) ] && [ "$first" -ge 1 ] && [ "$(field s1 state)" = running ] &&
		ok "$name: vm clone: a second VM counts on from the snapshot's point ($first), the first runs on" ||
		not_ok "$name: clone" "first count $first (snapshot ~$a)"
else
	not_ok "$name: clone" "$(ctl events --vm s2 | tail -3)"
fi

# A writable disk goes with the snapshot: a restore puts it back as it was,
# a clone starts on a copy of its own. What the VM wrote after the
# snapshot is written here from the host, into the disk's file.
truncate -s 1M "$work/d.img"
printf 'taken' | dd of="$work/d.img" conv=notrunc status=none
head6() { head -c 5 "$1" 2>/dev/null; }
pid_changed() { [ "$(field "$1" pid)" != "$2" ] && [ "$(field "$1" state)" = running ]; }
ctl vm create withdisk --kernel "$GUEST" --mem 64M --backend emu --disk "$work/d.img" --start >/dev/null
until_ok 10 counting withdisk 1
if ctl vm snapshot withdisk w1 >/dev/null && printf 'later' | dd of="$work/d.img" conv=notrunc status=none &&
	ctl vm clone withdisk w2 --snapshot w1 >/dev/null && until_ok 10 counting w2 1 &&
	w2disk=$(ctl --json vm show w2 | python3 -c "import json,sys; print(json.load(sys.stdin)['disks'][0]['path'])") &&
	[ "$(head6 "$w2disk")" = taken ] && [ "$(head6 "$work/d.img")" = later ] &&
	[ "$w2disk" = "$work/state/vms/default/w2/disk0" ]; then
	ok "$name: a clone of a VM with a writable disk starts on its own copy of it, as the snapshot found it; the source's is untouched"
else
	not_ok "$name: clone with a disk" "w2 disk ${w2disk:-?}: $(head6 "${w2disk:-/nonexistent}"); source: $(head6 "$work/d.img"); $(ctl events --vm w2 | tail -2)"
fi
pid=$(field withdisk pid)
if ctl vm restore withdisk w1 >/dev/null && until_ok 10 pid_changed withdisk "$pid" && [ "$(head6 "$work/d.img")" = taken ]; then
	ok "$name: vm restore of a VM with a writable disk: the disk goes back to what it held at the snapshot"
else
	not_ok "$name: restore with a disk" "disk: $(head6 "$work/d.img"); $(ctl events --vm withdisk | tail -2)"
fi

# Bad requests.
bad=0
ctl vm create idle --kernel "$GUEST" --mem 64M --backend emu >/dev/null
expect 1 "only a running or paused VM" ctl vm snapshot idle x
expect 1 "has a snapshot named snapA already" ctl vm snapshot s1 snapA
expect 1 "has no snapshot named nope" ctl vm restore s1 nope
expect 1 "exists already" ctl vm clone s1 s2 --snapshot snapA
expect 1 "has 0 NIC(s) on taps: the clone needs as many" ctl vm clone withdisk w3 --snapshot w1 --tap tap-x
expect 2 "see 'tarnctl --help'" ctl vm clone withdisk w3 --snapshot w1 --tap
expect 1 "no VM named nope" ctl vm snapshot nope x
expect 2 "see 'tarnctl --help'" ctl vm clone s1 s3
ctl tenant create t1 >/dev/null
TARN_TOKEN=$(ctl tenant token t1) expect 1 "no VM named s1" ctl vm snapshot s1 mine
[ $bad = 0 ] && ok "$name: bad requests refused with their reason (a stopped VM, names taken or unknown, a clone without as many NICs, another tenant's VM)" ||
	not_ok "$name: bad requests" "$bad answered otherwise"
for v in s1 s2 withdisk w2; do ctl vm kill $v >/dev/null; done
for v in s1 s2 withdisk w2 idle; do until_ok 5 ctl vm delete $v; done
ctl vm list | grep -q . && [ "$(ctl vm list | wc -l)" = 1 ] && ! [ -e "$work/state/vms/default/s1" ] &&
	ok "$name: the VMs deleted, their snapshots with them" || not_ok "$name: delete" "$(ctl vm list)"
done_testing
