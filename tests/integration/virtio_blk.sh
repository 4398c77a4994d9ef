#!/bin/bash
# virtio-blk (--disk) under the emulator with the default guest. The host
# makes an ext4 image; the guest mounts /dev/vda, writes a file of seeded
# pseudo-random data, syncs and powers off; the host reads the file out of
# the image with debugfs and its SHA-256 matches the one computed here from
# the seed, as does a 1 MiB file of the guest's random bytes with the sum
# the guest printed; e2fsck finds the file system clean. A second boot, with
# ,direct (O_DIRECT on the host), reads the file back intact. With ,ro the
# guest sees a read-only disk, its writes fail, and the image is bit for bit
# unchanged. Bad specs, a missing file and an image locked by another
# process stop tarn with exit 2 and a clear message.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

for t in mkfs.ext4 debugfs e2fsck; do
	if ! command -v "$t" >/dev/null && ! [ -x "/sbin/$t" ]; then
		skip "virtio-blk" "$t is not installed (e2fsprogs)"
		done_testing
	fi
done
PATH=$PATH:/sbin:/usr/sbin

need_guest "virtio-blk"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
img=$tmp/disk.img

# ---- bad input: exit 2, one clear line, nothing boots ----
bad() { # NAME PATTERN SPEC
	local msg rc
	msg=$(timeout 60 "$TARN" run --backend "$BACKEND" --kernel "$GUEST_KERNEL" --disk "$3" </dev/null 2>&1)
	rc=$?
	if [ $rc -eq 2 ] && grep -qF -- "$2" <<<"$msg"; then
		ok "$1: exit 2, '$(head -1 <<<"$msg")'"
	else
		not_ok "$1" "exit $rc, expected 2 and '$2': $(head -3 <<<"$msg" | tr '\n' ' ')"
	fi
}
truncate -s 1000 "$tmp/odd.img"
truncate -s 1M "$img"
bad "unknown flag" "--disk $img,rw: unknown option 'rw'" "$img,rw"
bad "missing file" "--disk $tmp/nope.img: cannot open: No such file or directory" "$tmp/nope.img"
bad "a directory" "not a regular file or block device" "$tmp,ro"
bad "size not a multiple of 512" "size 1000 bytes is not a multiple of 512" "$tmp/odd.img"
bad "bad serial" "serial=" "$img,serial=has space"
if command -v flock >/dev/null; then
	# Another process holds the image's lock: tarn must not write it too.
	msg=$(flock -x "$img" timeout 60 "$TARN" run --backend "$BACKEND" --kernel "$GUEST_KERNEL" --disk "$img" \
		</dev/null 2>&1)
	rc=$?
	if [ $rc -eq 2 ] && grep -q "in use by another process" <<<"$msg"; then
		ok "locked image: exit 2, '$msg'"
	else
		not_ok "locked image" "exit $rc: $msg"
	fi
else
	skip "locked image" "flock(1) is not installed (util-linux)"
fi

# ---- the guest writes a file, the host reads it ----
SEED=${SEED:-5021}
BYTES=$((64 * 1024))
want=$(seeded_sum "$SEED" $BYTES)
out=$tmp/console # boot's console

rm -f "$img"
truncate -s 64M "$img"
mkfs.ext4 -q -F "$img" >/dev/null 2>&1 || { not_ok "mkfs.ext4" "cannot make the image"; done_testing; }

script="mkdir -p /mnt && mount /dev/vda /mnt && echo mounted
$GEN_PROLOGUE
sh /tmp/gen.sh $SEED $BYTES > /mnt/f
head -c 1048576 /dev/urandom > /mnt/big
sync
echo \"big=\$(sha256sum < /mnt/big | cut -d' ' -f1)\"
echo \"sum=\$(sha256sum < /mnt/f | cut -d' ' -f1)\"
echo size=\$(cat /sys/block/vda/size) serial=\$(cat /sys/block/vda/serial) ro=\$(cat /sys/block/vda/ro)
fstrim /mnt && echo trimmed
umount /mnt && echo unmounted"
boot "$script" --disk "$img,serial=tarn-disk-1"
check "write" "^mounted" "the guest mounts the ext4 image on /dev/vda"
check "write" "^sum=$want" "the guest's file has the seeded data"
check "write" "^size=131072 serial=tarn-disk-1 ro=0" "the disk's size (64 MiB), serial (GET_ID), read-write flag"
check "write" "^trimmed" "fstrim (discard) succeeds"
check "write" "^unmounted" "unmount (flushes) succeeds"
[ $rc -eq 0 ] && ok "write: power-off, tarn exits 0" || not_ok "write: power-off" "tarn exited $rc"

if debugfs -R "dump /f $tmp/f" "$img" >/dev/null 2>&1 && [ -f "$tmp/f" ]; then
	got=$(sha256sum <"$tmp/f" | cut -d' ' -f1)
	[ "$got" = "$want" ] && ok "host: the file read out of the image with debugfs matches" ||
		not_ok "host: file checksum" "debugfs gives $got, expected $want"
else
	not_ok "host: debugfs dump /f" "$(debugfs -R "dump /f $tmp/f" "$img" 2>&1 | tail -1)"
fi
# 1 MiB of the guest's random bytes, checked against the sum it printed.
big=$(grep -m1 -o '^big=[0-9a-f]*' "$out" | cut -d= -f2)
debugfs -R "dump /big $tmp/big" "$img" >/dev/null 2>&1
if [ -n "$big" ] && [ -f "$tmp/big" ] && [ "$(sha256sum <"$tmp/big" | cut -d' ' -f1)" = "$big" ]; then
	ok "host: a 1 MiB file of the guest's random bytes matches the guest's checksum"
else
	not_ok "host: 1 MiB file" "guest said '${big:-nothing}', the image holds $(sha256sum <"$tmp/big" 2>&1 | cut -c1-64)"
fi
if fsck_out=$(e2fsck -fn "$img" 2>&1); then
	ok "host: e2fsck -fn finds the file system clean"
else
	not_ok "host: e2fsck" "$(tail -3 <<<"$fsck_out" | tr '\n' ' ')"
fi

# ---- a second boot reads it back, through O_DIRECT this time ----
boot 'mkdir -p /mnt && mount /dev/vda /mnt && echo "sum=$(sha256sum < /mnt/f | cut -d" " -f1)"; umount /mnt' \
	--disk "$img,direct"
check "read back" "^sum=$want" "a second boot (,direct) reads the file back intact"
[ $rc -eq 0 ] && ok "read back: power-off, tarn exits 0" || not_ok "read back: power-off" "tarn exited $rc"

# ---- read-only: writes fail, the image does not change ----
before=$(sha256sum <"$img")
boot 'mkdir -p /mnt; mount /dev/vda /mnt; echo ro=$(cat /sys/block/vda/ro)
echo "sum=$(sha256sum < /mnt/f | cut -d" " -f1)"
(echo more > /mnt/g) 2>&1 | sed "s/^/write: /"
dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=fsync 2>&1 | sed "s/^/dd: /"' \
	--disk "$img,ro"
check "ro" "^ro=1" "the guest sees a read-only disk"
check "ro" "^sum=$want" "reads still work"
check "ro" "^write: .*(Read-only file system|I/O error)" "a file write fails with EROFS/EIO"
check "ro" "^dd: .*(Read-only file system|I/O error|Operation not permitted|Permission denied)" \
	"a raw write to /dev/vda fails"
[ $rc -eq 0 ] && ok "ro: power-off, tarn exits 0" || not_ok "ro: power-off" "tarn exited $rc"
[ "$(sha256sum <"$img")" = "$before" ] && ok "ro: the image is unchanged (whole-file checksum)" ||
	not_ok "ro: image unchanged" "the image's checksum changed"
done_testing
