#!/bin/bash
# Bad input gets one line saying what is wrong and exit status 2, no core
# dump: missing, truncated, corrupt and non-kernel files, --mem too small or too
# large, --cpus 0, and --backend kvm without a usable /dev/kvm.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'just some text, not a kernel\n' >"$tmp/text"
# A truncated bzImage: a real header whose payload is cut short.
python3 - "$tmp/trunc" <<'PY'
import struct, sys
img = bytearray(0x1400)
img[0x1f1] = 4                                  # setup_sects
struct.pack_into('<I', img, 0x1f4, 0x100000 // 16)  # syssize: 1 MiB, file is far shorter
struct.pack_into('<H', img, 0x1fe, 0xaa55)
img[0x200:0x202] = b'\xeb\x6a'
img[0x202:0x206] = b'HdrS'
struct.pack_into('<H', img, 0x206, 0x020f)
struct.pack_into('<H', img, 0x236, 1)            # XLF_KERNEL_64
open(sys.argv[1], 'wb').write(img)
PY
# A bzImage whose LZ4 payload (the kernel's legacy frame) is corrupt.
python3 - "$tmp/badlz4" <<'PY'
import struct, sys
img = bytearray(0x1400)
img[0x1f1] = 4                                   # setup_sects: payload at 0xa00
struct.pack_into('<I', img, 0x1f4, 0xa00 // 16)  # syssize: the rest of the file
struct.pack_into('<H', img, 0x1fe, 0xaa55)
img[0x200:0x202] = b'\xeb\x6a'
img[0x202:0x206] = b'HdrS'
struct.pack_into('<H', img, 0x206, 0x020f)
struct.pack_into('<H', img, 0x236, 1)            # XLF_KERNEL_64
struct.pack_into('<II', img, 0x248, 0, 52)       # payload_offset, payload_length
struct.pack_into('<I', img, 0x260, 0x100000)     # init_size
lz4 = struct.pack('<II', 0x184c2102, 40) + b'\xff' * 40 + struct.pack('<I', 4096)
img[0xa00:0xa00 + len(lz4)] = lz4
open(sys.argv[1], 'wb').write(img)
PY
head -c 100 "$TARN" >"$tmp/trunc-elf"   # an ELF header cut short

# expect NAME WORD ARGS...: exit status 2, one line on stderr containing WORD.
expect() {
	local name=$1 word=$2
	shift 2
	local err rc lines
	err=$("${EXPECT_WRAP[@]}" "$TARN" run "$@" 2>&1 >/dev/null </dev/null)
	rc=$?
	lines=$(printf '%s\n' "$err" | grep -c .)
	if [ $rc -ne 2 ]; then
		not_ok "$name" "exit status $rc, expected 2 (stderr: $err)"
	elif [ "$lines" -ne 1 ]; then
		not_ok "$name" "expected one line on stderr, got $lines: $err"
	elif ! printf '%s' "$err" | grep -qi -- "$word"; then
		not_ok "$name" "message lacks '$word': $err"
	else
		ok "$name ($err)"
	fi
}

expect "missing kernel file" "no such file" --kernel "$tmp/nope"
expect "no --kernel" "kernel" --mem 64M
expect "truncated bzImage" "truncated" --kernel "$tmp/trunc" --backend emu
expect "truncated ELF" "truncated" --kernel "$tmp/trunc-elf" --backend emu
expect "corrupt LZ4 payload" "corrupt" --kernel "$tmp/badlz4" --backend emu
expect "--unpack nonsense" "host or guest" --kernel "$tmp/badlz4" --unpack sideways
expect "not a kernel" "not a kernel" --kernel "$tmp/text" --backend emu
expect "--mem too small" "at least 16 MiB" --kernel "$tmp/text" --mem 8M
expect "--mem larger than the host" "larger than this host" --kernel "$tmp/text" --mem 64T
expect "--mem not a size" "not a size" --kernel "$tmp/text" --mem lots
expect "--cpus 0" "between 1 and" --kernel "$tmp/text" --cpus 0
expect "unknown backend" "unknown backend" --kernel "$tmp/text" --backend xen
expect "--ioeventfd maybe" "expected on or off" --kernel "$tmp/text" --ioeventfd maybe
# Without /dev/kvm: where the host has one, hide it in a mount namespace
# (an empty /dev) for this one command.
EXPECT_WRAP=()
if kvm_usable; then
	EXPECT_WRAP=(unshare -m sh -c 'mount -t tmpfs tmpfs /dev && exec "$0" "$@"')
	"${EXPECT_WRAP[@]}" true 2>/dev/null || EXPECT_WRAP=(false)
fi
if [ "${EXPECT_WRAP[0]}" = false ]; then
	skip "--backend kvm without /dev/kvm" "this host has /dev/kvm and cannot hide it (unshare -m needs root)"
else
	expect "--backend kvm without /dev/kvm" "/dev/kvm" --kernel "$tmp/text" --backend kvm
	probe=$("${EXPECT_WRAP[@]}" "$TARN" probe kvm)
	rc=$?
	[ $rc -eq 1 ] && [[ $probe == "kvm: unusable: cannot open /dev/kvm: "* ]] &&
		ok "probe without /dev/kvm ($probe)" || not_ok "probe without /dev/kvm" "exit $rc: $probe"
fi
EXPECT_WRAP=()
# An unknown option: usage hint, status 2.
"$TARN" run --frobnicate >/dev/null 2>&1 </dev/null
rc=$?
[ $rc -eq 2 ] && ok "unknown option" || not_ok "unknown option" "exit status $rc"
"$TARN" run --help | grep -q -- "--backend" && ok "run --help" || not_ok "run --help" "no options listed"
done_testing
