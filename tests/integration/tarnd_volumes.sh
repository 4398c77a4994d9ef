#!/bin/bash
# Volumes in tarnd's storage pool, through tarnctl: made (qcow2 and raw),
# cloned as qcow2 overlays (the clone reads its base's data; qemu-img
# agrees), grown, given to VMs as disks (a base only read-only), refused
# while in use (resize, clone of one a running VM writes, delete of a
# disk or a base), kept apart between tenants, and deleted with their
# files.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name=tarnd_volumes
. tests/integration/tarnd_lib.sh
if ! command -v qemu-img >/dev/null; then
	skip "$name" "qemu-img missing (apt-get install qemu-utils): it checks the images"
	done_testing
fi
if ! start_tarnd; then
	not_ok "$name: tarnd starts" "$(tail -3 "$work/tarnd.log")"
	done_testing
fi
vfield() { "$CTL" --json volume show "$1" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2'))"; }
bad=0

# Made: qcow2 (the default) and raw, sparse.
expect 0 "base " ctl volume create base --size 64M --format raw
expect 0 "q1 " ctl volume create q1 --size 1G
expect 1 "exists already" ctl volume create q1 --size 1G
expect 1 "size: bytes" ctl volume create q2 --size lots
expect 1 "format vmdk" ctl volume create q2 --size 1G --format vmdk
base=$(vfield base path) q1=$(vfield q1 path)
if [ $bad = 0 ] && [ "$(stat -c %s "$base")" = $((64 << 20)) ] &&
	qemu-img info "$q1" | grep -q "virtual size: 1 GiB" && qemu-img check -q "$q1" &&
	ctl volume list | grep -qE '^q1 +default +qcow2 +1024M'; then
	ok "$name: volumes made, raw (sparse, 64M) and qcow2 (1G, qemu-img check clean), listed; bad ones refused"
else
	not_ok "$name: create" "$bad refused otherwise; $(ctl volume list)"
fi

# Cloned: a qcow2 overlay that reads what its base holds.
python3 -c "
import random, sys
r = random.Random(13)
sys.stdout.buffer.write(r.randbytes(4 << 20))" | dd of="$base" conv=notrunc status=none
bad=0
expect 0 "c1 " ctl volume clone base c1
c1=$(vfield c1 path)
qemu-img convert -O raw "$c1" "$work/c1.raw"
if [ $bad = 0 ] && cmp -s "$base" "$work/c1.raw" && [ "$(vfield c1 clone_of)" = base ] &&
	qemu-img info "$c1" | grep -q "backing file: $base" && [ "$(vfield base clones)" = 1 ]; then
	ok "$name: a clone is a qcow2 overlay over its base and reads its data (qemu-img convert: the same bytes)"
else
	not_ok "$name: clone" "$(qemu-img info "$c1" | tr '\n' ' ')"
fi

# Grown: the clone to 256M (qemu-img sees it), never shrunk.
bad=0
expect 0 "256M" ctl volume resize c1 --size 256M
expect 1 "do not shrink" ctl volume resize c1 --size 128M
expect 0 "128M" ctl volume resize base --size 128M
if [ $bad = 0 ] && qemu-img info "$c1" | grep -q "virtual size: 256 MiB" && qemu-img check -q "$c1" &&
	[ "$(stat -c %s "$base")" = $((128 << 20)) ]; then
	ok "$name: resize grows a qcow2 clone (qemu-img check clean) and a raw volume; shrinking is refused"
else
	not_ok "$name: resize" "$bad refused otherwise; $(qemu-img info "$c1" | tr '\n' ' ')"
fi

# As disks: a base only read-only; one in use is neither grown nor cloned
# nor deleted.
bad=0
expect 1 "clone(s) rest on it: it can only be a read-only disk" \
	ctl vm create v0 --kernel "$GUEST" --mem 64M --backend emu --volume base
expect 0 "created" ctl vm create v1 --kernel "$GUEST" --mem 64M --backend emu --volume base,ro --volume c1 --start
running() { [ "$(field "$1" state)" = running ]; }
until_ok 10 running v1
pid=$(field v1 pid)
cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)
expect 1 "in use by a running VM" ctl volume resize c1 --size 512M
expect 1 "runs with it writable" ctl volume clone c1 c2
expect 1 "it is a disk of VM(s) v1" ctl volume delete c1
expect 1 "it is a disk of VM(s) v1" ctl volume delete base
if [ $bad = 0 ] && grep -q -- "--disk $base,ro," <<<"$cmd" && grep -q -- "--disk $c1,bw=" <<<"$cmd" &&
	ctl volume list | grep -qE '^c1 .* v1$'; then
	ok "$name: volumes as disks (vda base read-only, vdb its clone); in use: no resize, no clone, no delete"
else
	not_ok "$name: disks" "$bad refused otherwise; tarn: $cmd"
fi

# Tenants: another's volume is not there.
ctl tenant create t1 >/dev/null
tok=$(ctl tenant token t1)
bad=0
TARN_TOKEN=$tok expect 1 "no volume named base" ctl volume show base
TARN_TOKEN=$tok expect 1 "no volume named c1" ctl vm create x --kernel "$GUEST" --volume c1,ro
TARN_TOKEN=$tok expect 0 "NAME" ctl volume list
TARN_TOKEN=$tok ctl volume list | grep -q base && bad=$((bad + 1))
[ $bad = 0 ] && ok "$name: a tenant's token sees, clones and attaches none of another tenant's volumes" ||
	not_ok "$name: tenants" "$bad answered otherwise"

# Deleted, with their files.
ctl vm kill v1 >/dev/null
until_ok 5 ctl vm delete v1
bad=0
expect 1 "volume(s) c1 are clones of it" ctl volume delete base
expect 0 "c1: deleted" ctl volume delete c1
expect 0 "base: deleted" ctl volume delete base
expect 0 "q1: deleted" ctl volume delete q1
if [ $bad = 0 ] && ! [ -e "$base" ] && ! [ -e "$c1" ] && ! [ -e "$q1" ] && ctl tenant delete t1 >/dev/null; then
	ok "$name: deleted, files and all, once no VM and no clone needs them"
else
	not_ok "$name: delete" "$bad refused otherwise; $(ls "$work/state/volumes")"
fi
done_testing
