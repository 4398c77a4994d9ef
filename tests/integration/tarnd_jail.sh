#!/bin/bash
# The jail around each VM tarnd runs (tarn run --jail; README "The jail"),
# seen from outside as an operator would check it: a running VM's tarn has
# no capabilities, NoNewPrivs, a seccomp filter on every thread (a second
# one on its vCPU threads), a uid of its own, and mount, PID, network, IPC
# and UTS namespaces other than the host's, with only its jail directory
# as /. A VM whose tarn makes a forbidden system call (the TARN_JAIL_TEST
# hook has its vCPU thread call openat) ends alone, with the call named,
# while the other runs on. Needs root.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name=tarnd_jail
if [ "$(id -u)" != 0 ]; then
	skip "$name" "the jail needs root (namespaces, pivot_root, another uid)"
	done_testing
fi
. tests/integration/tarnd_lib.sh
counting() { ctl vm logs "$1" --tail 200 | grep -oE 'count [0-9]+' | tail -1 | awk '{ exit !($2 >= 5) }'; }
has_event() { ctl events --vm "$1" | grep -q "$2"; }

if ! TARN_JAIL_TEST="openat:$work/state/vms/default/victim/root" start_tarnd; then
	not_ok "$name: tarnd starts" "$(tail -3 "$work/tarnd.log")"
	done_testing
fi
if ! ctl vm create j1 --kernel "$GUEST" --mem 64M --backend emu --start >/dev/null || ! until_ok 10 counting j1; then
	not_ok "$name: a jailed VM runs" "$(ctl vm logs j1 2>&1 | tail -2) $(tail -2 "$work/state/vms/default/j1/tarn.log")"
	done_testing
fi
pid=$(field j1 pid)
ok "$name: a jailed VM runs (tarn pid $pid)"

st=/proc/$pid/status
status_is() { grep -qE "^$1:[[:space:]]+$2\$" "$st"; }
if status_is CapEff 0000000000000000 && status_is CapPrm 0000000000000000 && status_is CapBnd 0000000000000000 &&
	status_is NoNewPrivs 1 && status_is Seccomp 2; then
	ok "$name: /proc/PID/status: CapEff, CapPrm and CapBnd 0, NoNewPrivs 1, Seccomp 2 (filter)"
else
	not_ok "$name: status" "$(grep -E '^(Cap|NoNewPrivs|Seccomp)' "$st" | tr '\n' ' ')"
fi
uid=$(awk '/^Uid:/ { print $2 }' "$st")
dir_uid=$(stat -c %u "$work/state/vms/default/j1/root")
if [ "$uid" -ge 1000 ] && [ "$uid" = "$dir_uid" ] && [ "$(awk '/^Uid:/ { print $2 $3 $4 $5 }' "$st")" = "$uid$uid$uid$uid" ]; then
	ok "$name: it runs as uid $uid (real, effective, saved, file system), the owner of its jail directory alone"
else
	not_ok "$name: uid" "$(grep -E '^(Uid|Gid)' "$st" | tr '\n' ' '), jail directory owned by $dir_uid"
fi
same=
for ns in mnt pid net ipc uts; do
	[ "$(readlink "/proc/$pid/ns/$ns")" = "$(readlink /proc/self/ns/$ns)" ] && same="$same $ns"
done
[ -z "$same" ] && ok "$name: mount, PID, network, IPC and UTS namespaces of its own" ||
	not_ok "$name: namespaces" "shares the host's:$same"
# Its PID namespace: it is process 1 there. Its /: the jail directory.
nspid=$(awk '/^NSpid:/ { print $NF }' "$st")
inside=$(ls -A "/proc/$pid/root/" | tr '\n' ' ')
if [ "$nspid" = 1 ] && [ "$inside" = "snapshots " ] && ! [ -e "/proc/$pid/root/etc" ] && touch "$work/state/vms/default/j1/root/mark" &&
	[ -e "/proc/$pid/root/mark" ]; then
	ok "$name: it is process 1 of its PID namespace, and its / is its jail directory (its snapshots/ alone, nothing of the host's)"
else
	not_ok "$name: pid 1 and root" "NSpid $nspid, / holds: $inside"
fi
filters=
for t in /proc/$pid/task/*; do
	filters="$filters $(cat "$t/comm")=$(awk '/^Seccomp_filters:/ { print $2 }' "$t/status")"
done
if grep -qE " vcpu0=2( |$)" <<<"$filters" && ! grep -qE "=[^12]( |$)|=1[0-9]" <<<"$filters" &&
	! grep -qE "tarn=[^1]" <<<"$filters"; then
	ok "$name: every thread filtered; the vCPU thread by one more filter of its own:$filters"
else
	not_ok "$name: per-thread filters" "$filters"
fi

# A forbidden call: that VM ends, with the call named; the other runs on.
ctl vm create victim --kernel "$GUEST" --mem 64M --backend emu --start >/dev/null
if until_ok 10 has_event victim "forbidden system call openat" && [ "$(field victim state)" = crashed ] &&
	kill -0 "$pid" && [ "$(field j1 state)" = running ]; then
	ok "$name: a forbidden system call ends that VM alone: $(ctl events --vm victim | grep -o 'tarn: jail.*' | head -1)"
else
	not_ok "$name: forbidden call" "$(ctl events --vm victim | tail -2 | tr '\n' ' ') j1 $(field j1 state)"
fi
ctl vm kill j1 >/dev/null
ctl vm kill victim >/dev/null 2>&1
until_ok 5 ctl vm delete j1 && ! [ -e "$work/state/vms/default/j1" ] &&
	ok "$name: vm delete removes the VM's directory, its jail's files with it" ||
	not_ok "$name: delete" "$(ls -la "$work/state/vms/default/j1" 2>&1 | head -5)"
done_testing
