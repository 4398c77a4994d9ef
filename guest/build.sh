#!/bin/sh
# Build tarn's default guest: a Debian cloud kernel + a busybox initramfs.
#
#   guest/build.sh OUTDIR
#
# Produces OUTDIR/vmlinuz (bzImage), OUTDIR/initramfs.cpio (uncompressed newc)
# and OUTDIR/manifest.txt (what went in). Downloaded .debs are kept in
# OUTDIR/cache and reused. Everything comes from Debian's archive via apt-get.
#
# Environment:
#   GUEST_KERNEL_PKG   real kernel package to use (default: whatever
#                      linux-image-cloud-amd64 depends on)
#   SOURCE_DATE_EPOCH  mtime stored for every initramfs entry (default 0)
set -eu

usage() { echo "usage: $0 OUTDIR" >&2; exit 2; }
[ $# -eq 1 ] || usage
log() { echo "guest: $*" >&2; }
die() { echo "guest: error: $*" >&2; exit 1; }

export LC_ALL=C
PATH=$PATH:/usr/sbin:/sbin
export PATH
umask 022

HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1/cache"
OUT=$(cd "$1" && pwd)
CACHE=$OUT/cache
EPOCH=${SOURCE_DATE_EPOCH:-0}

for t in apt-get apt-cache dpkg-deb cpio depmod modinfo find sort; do
	command -v "$t" >/dev/null 2>&1 ||
		die "'$t' not found (apt-get install apt dpkg cpio kmod findutils coreutils)"
done

# Modules wanted in the guest. Each one is copied (with its dependencies,
# found with modinfo) when the kernel builds it as a module (=m); when it is
# built in (=y) there is nothing to copy. REQUIRED ones must exist one way or
# the other; OPTIONAL ones are taken when the kernel has them.
REQUIRED="virtio virtio_ring virtio_pci virtio_mmio virtio_blk virtio_net
	virtio_console virtio_rng virtio_balloon vmw_vsock_virtio_transport"
OPTIONAL="virtio_pci_modern_dev virtio_pci_legacy_dev net_failover failover
	rng_core vmw_vsock_virtio_transport_common vsock
	ext4 jbd2 mbcache crc16 crc32c_generic"

# ---- apt helpers -----------------------------------------------------------
APT_UPDATED=0
apt_update_once() {
	[ "$APT_UPDATED" = 0 ] || return 1
	APT_UPDATED=1
	log "apt lists missing or stale: running apt-get update"
	[ "$(id -u)" = 0 ] || die "apt-get update needs root (run it once as root, then retry)"
	apt-get update -qq >&2 || die "apt-get update failed"
}

# Print the kernel package linux-image-cloud-amd64 depends on.
resolve_kernel_pkg() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-cloud-amd64$/ { print $2; exit }'
}

# Download package $1 into the cache unless a .deb of it is already there.
# Prints the path of the .deb.
fetch() {
	pkg=$1
	deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*_amd64.deb" | sort | tail -n 1)
	if [ -z "$deb" ]; then
		log "downloading $pkg"
		if ! (cd "$CACHE" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2); then
			apt_update_once || die "apt-get download $pkg failed"
			(cd "$CACHE" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" >&2) ||
				die "apt-get download $pkg failed"
		fi
		deb=$(find "$CACHE" -maxdepth 1 -name "${pkg}_*_amd64.deb" | sort | tail -n 1)
		[ -n "$deb" ] || die "no .deb for $pkg after download"
	fi
	echo "$deb"
}

# ---- fetch and extract -----------------------------------------------------
KPKG=${GUEST_KERNEL_PKG:-}
if [ -z "$KPKG" ]; then
	KPKG=$(resolve_kernel_pkg)
	if [ -z "$KPKG" ]; then
		apt_update_once || true
		KPKG=$(resolve_kernel_pkg)
	fi
	[ -n "$KPKG" ] || die "cannot resolve the dependency of linux-image-cloud-amd64"
fi
KDEB=$(fetch "$KPKG")
BDEB=$(fetch busybox-static)
# Drop kernels of older ABIs that an earlier build left in the cache.
find "$CACHE" -maxdepth 1 -name 'linux-image-*_amd64.deb' ! -path "$KDEB" -exec rm -f {} +

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tarn-guest.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
log "extracting $(basename "$KDEB") and $(basename "$BDEB")"
dpkg-deb -x "$KDEB" "$WORK/k"
dpkg-deb -x "$BDEB" "$WORK/bb"

set -- "$WORK"/k/boot/vmlinuz-*
[ $# -eq 1 ] && [ -f "$1" ] || die "expected one vmlinuz in $KPKG"
VMLINUZ=$1
KVER=${VMLINUZ##*/vmlinuz-}
KCONFIG=$WORK/k/boot/config-$KVER
KMOD=$WORK/k/lib/modules/$KVER
[ -f "$KCONFIG" ] && [ -d "$KMOD" ] || die "unexpected layout in $KPKG"
BUSYBOX=$WORK/bb/bin/busybox
[ -x "$BUSYBOX" ] || die "no bin/busybox in busybox-static"

# ---- modules ---------------------------------------------------------------
# name -> path (relative to $KMOD) of every module file in the package;
# module names use '_' where file names may use '-' (virtio-rng.ko).
(cd "$KMOD" && find kernel -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz') |
	sort | awk '{ n = $0; sub(/.*\//, "", n); sub(/\.ko(\.(xz|zst|gz))?$/, "", n);
		gsub(/-/, "_", n); print n, $0 }' >"$WORK/index"
modpath() { awk -v n="$1" '$1 == n { print $2; exit }' "$WORK/index"; }
is_builtin() {
	sed 's,.*/,,; s,\.ko$,,; s,-,_,g' "$KMOD/modules.builtin" | grep -qx "$1"
}

: >"$WORK/picked"
: >"$WORK/kinds"
pick() { # pick NAME: add NAME and its dependencies; returns 1 if unknown
	local n p d deps
	n=$(echo "$1" | tr - _)
	grep -qx "$n" "$WORK/picked" && return 0
	p=$(modpath "$n")
	if [ -z "$p" ]; then
		is_builtin "$n" || return 1
		echo "$n builtin" >>"$WORK/kinds"
		return 0
	fi
	echo "$n" >>"$WORK/picked"
	echo "$n module $p" >>"$WORK/kinds"
	deps=$(modinfo -F depends "$KMOD/$p" | tr , ' ')
	for d in $deps; do
		pick "$d" || die "$n depends on $d, which is not in $KPKG"
	done
}
for m in $REQUIRED; do
	pick "$m" || die "$m is neither a module nor built into $KVER"
done
for m in $OPTIONAL; do
	pick "$m" || echo "$(echo "$m" | tr - _) absent" >>"$WORK/kinds"
done

# ---- root tree -------------------------------------------------------------
R=$WORK/root
mkdir -p "$R"
for d in bin sbin usr/bin usr/sbin etc dev proc sys tmp run root mnt lib/modules/$KVER; do
	mkdir -p "$R/$d"
done
chmod 1777 "$R/tmp"
chmod 0700 "$R/root"
cp "$BUSYBOX" "$R/bin/busybox"
chmod 0755 "$R/bin/busybox"
# One symlink per applet, where busybox would install it (bin/sh, sbin/modprobe, ...).
"$R/bin/busybox" --list-full | sort | while read -r a; do
	[ "$a" = bin/busybox ] && continue
	[ -e "$R/$a" ] || [ -L "$R/$a" ] || ln -s /bin/busybox "$R/$a"
done
[ -L "$R/bin/sh" ] || die "busybox provides no sh"
cp "$HERE/init" "$R/init"
chmod 0755 "$R/init"
# Our own guest tools (guest/tools/*.c), static so they need no libc in the
# guest: randread (4 KiB O_DIRECT random reads) and tcpsend (TCP in 64 KiB
# writes), for bench/io.py.
for t in randread tcpsend; do
	${GUEST_TOOLS_CC:-gcc} -static -O2 -s -Wall -Werror -o "$R/usr/bin/$t" "$HERE/tools/$t.c" ||
		die "cannot build guest/tools/$t.c (apt-get install gcc libc6-dev)"
done

# Copy the picked modules, decompressed, preserving their paths.
MD=$R/lib/modules/$KVER
while read -r n; do
	p=$(modpath "$n")
	mkdir -p "$MD/$(dirname "$p")"
	case $p in
	*.ko) cp "$KMOD/$p" "$MD/$p" ;;
	*.ko.xz) xz -dc "$KMOD/$p" >"$MD/${p%.xz}" ;;
	*.ko.zst) zstd -qdc "$KMOD/$p" >"$MD/${p%.zst}" ;;
	*.ko.gz) gzip -dc "$KMOD/$p" >"$MD/${p%.gz}" ;;
	esac
done <"$WORK/picked"
cp "$KMOD/modules.builtin" "$KMOD/modules.builtin.modinfo" "$MD/"
# modules.order restricted to what we ship (and with the .ko names we ship).
sed 's/\.ko\.\(xz\|zst\|gz\)$/.ko/' "$KMOD/modules.order" | while read -r p; do
	if [ -f "$MD/$p" ]; then echo "$p"; fi
done >"$MD/modules.order"
depmod -b "$R" "$KVER" || die "depmod failed"
# Binary indexes are for kmod's modprobe; busybox reads the text files.
rm -f "$MD"/*.bin
sort "$MD/modules.dep" | grep -q . || die "empty modules.dep"

echo "tarn" >"$R/etc/hostname"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"
printf 'root:x:0:\n' >"$R/etc/group"

# ---- pack ------------------------------------------------------------------
# Fixed owners, modes from the tree, fixed mtimes, sorted names, no inode or
# device numbers from this machine: the same inputs give the same bytes.
find "$R" -exec touch -h -d "@$EPOCH" {} +
(cd "$R" && find . -mindepth 1 | sed 's,^\./,,' | sort |
	cpio -o -H newc -R 0:0 --reproducible --quiet) >"$WORK/initramfs.cpio"

# /dev/console must exist before /init runs (the kernel opens it for init's
# stdio); add it as a second archive so that no mknod (root) is needed.
newc() { # newc NAME MODE RDEVMAJOR RDEVMINOR INO; entries without data
	name=$1
	nlen=$((${#name} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		"$5" "$2" 0 0 1 "$EPOCH" 0 0 0 "$3" "$4" "$nlen" 0 "$name"
	pad=$(((4 - (110 + nlen) % 4) % 4))
	[ "$pad" -eq 0 ] || head -c "$pad" /dev/zero
}
{
	newc dev/console $((0020600)) 5 1 1
	newc TRAILER!!! 0 0 0 0
} >"$WORK/console.cpio"
# Pad to a 512-byte block, like cpio does.
sz=$(wc -c <"$WORK/console.cpio")
head -c $(((512 - sz % 512) % 512)) /dev/zero >>"$WORK/console.cpio"
cat "$WORK/console.cpio" >>"$WORK/initramfs.cpio"

# ---- outputs ---------------------------------------------------------------
{
	echo "kernel-package $KPKG $(dpkg-deb -f "$KDEB" Version)"
	echo "kernel-release $KVER"
	echo "busybox $(dpkg-deb -f "$BDEB" Version)"
	grep -E '^CONFIG_(VIRTIO|VIRTIO_[A-Z_]*|HW_RANDOM(_VIRTIO)?|VSOCKETS|VIRTIO_VSOCKETS(_COMMON)?|NET_FAILOVER|FAILOVER|EXT4_FS|JBD2|BLK_DEV_INITRD|DEVTMPFS|SERIAL_8250_CONSOLE|ACPI)=' "$KCONFIG" |
		sed 's/^/config /'
	sort "$WORK/kinds" | sed 's/^/ko /'
	echo "initramfs-bytes $(wc -c <"$WORK/initramfs.cpio")"
} >"$WORK/manifest.txt"

# Each output is moved into place whole; the initramfs last.
install_out() { cp "$1" "$OUT/.$2.tmp" && mv -f "$OUT/.$2.tmp" "$OUT/$2"; }
install_out "$VMLINUZ" vmlinuz
install_out "$WORK/manifest.txt" manifest.txt
install_out "$WORK/initramfs.cpio" initramfs.cpio
log "kernel $KVER, initramfs $(wc -c <"$OUT/initramfs.cpio") bytes, $(wc -l <"$WORK/picked") modules"
