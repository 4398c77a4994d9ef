#!/bin/bash
# The serial console through tarnd: tarnctl vm console attaches to a
# running Linux guest's shell (the default guest without a command), types
# a line into it and reads the shell's answer back; another tenant's token
# cannot attach (404); the console log keeps it all. Through the console
# too, the guest reads its disk, held to 1 MB/s: the throttling is an
# event.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

name=tarnd_console
. tests/integration/tarnd_lib.sh
need_guest "$name"
if ! start_tarnd; then
	not_ok "$name: tarnd starts" "$(tail -3 "$work/tarnd.log")"
	done_testing
fi
booted() { ctl vm logs L1 | grep -q "init ready"; }
truncate -s 16M "$work/disk.img"
ctl vm create L1 --kernel "$PWD/$GUEST_KERNEL" --initrd "$PWD/$GUEST_INITRD" --cmdline "$GUEST_CMDLINE" \
	--mem 256M --backend "$BACKEND" --disk "$work/disk.img" --disk-bw 1MB/s --start >/dev/null
if ! until_ok 120 booted; then
	not_ok "$name: the guest boots to its shell" "$(ctl vm logs L1 | tail -3)"
	done_testing
fi
# A line for the shell, a second after attaching; the answer comes back
# down the same console. (With input from a pipe, tarnctl reads on until
# the VM ends: timeout ends it here.)
(sleep 1; printf 'echo tarn-$((6 * 7))-console\n'; sleep 4) | timeout 8 "$CTL" vm console L1 >"$work/con" 2>&1
if grep -q "tarn-42-console" "$work/con" && ctl vm logs L1 | grep -q "tarn-42-console"; then
	ok "$name: vm console: a line typed reaches the guest's shell, and its answer comes back (and is in vm logs)"
else
	not_ok "$name: vm console" "$(tail -c 300 "$work/con" | tr '\r\n' '  ')"
fi
# 4 MiB at 1 MB/s: about 4 s of throttling, seen within QUOTA_WATCH_MS.
(sleep 1; printf 'dd if=/dev/vda of=/dev/null bs=64k count=64 iflag=direct\n'; sleep 7) |
	timeout 10 "$CTL" vm console L1 >"$work/con2" 2>&1
if until_ok 5 sh -c "$CTL events --vm L1 | grep -q 'throttled.*disk or network: [0-9]* waits for its rate limits'"; then
	ok "$name: disk throttling is an event: $(ctl events --vm L1 | grep -o 'throttled.*' | head -1)"
else
	not_ok "$name: throttling event" "$(ctl events --vm L1 | tail -3) $(tail -c 200 "$work/con2" | tr '\r\n' '  ')"
fi
ctl tenant create t2 >/dev/null
out=$(TARN_TOKEN=$(ctl tenant token t2) "$CTL" vm console L1 </dev/null 2>&1)
grep -q "no VM named L1 (HTTP 404)" <<<"$out" && ok "$name: another tenant's token cannot attach (404)" ||
	not_ok "$name: tenant" "$out"
out=$(ctl vm console nope </dev/null 2>&1)
grep -q "no VM named nope" <<<"$out" && ok "$name: an unknown VM: refused with the reason" || not_ok "$name: unknown" "$out"
ctl vm kill L1 >/dev/null
done_testing
