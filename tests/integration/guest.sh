# Helpers for integration tests that boot the default guest under the
# emulator and run a shell script in it (the guest's /init runs the script
# given as tarn.cmd64=<base64> and powers off). Sources lib.sh.
# Usage: . tests/integration/guest.sh; need_guest "name"; boot "script" [TARN-OPTIONS...];
#        check "name" "pattern" "what"
. tests/integration/lib.sh

# need_guest NAME: GUEST_KERNEL, GUEST_INITRD and GUEST_CMDLINE from the
# Makefile; without the guest, report NAME not ok and end the test.
need_guest() {
	. <(make -s --no-print-directory guest-vars O="$O")
	if [ ! -f "$GUEST_KERNEL" ] || [ ! -f "$GUEST_INITRD" ]; then
		not_ok "$1" "default guest missing: $GUEST_KERNEL (make guest)"
		done_testing
	fi
}

# guest_cmdline SCRIPT: the guest's kernel command line running SCRIPT.
guest_cmdline() { echo "$GUEST_CMDLINE tarn.cmd64=$(printf '%s' "$1" | base64 -w0)"; }

# boot SCRIPT [TARN-OPTIONS...]: run SCRIPT in the guest (512M, emu, at
# most BOOT_TIMEOUT seconds, 600 by default; tarn started under the
# command in the array BOOT_PREFIX if set). The console goes to the file
# $out (a new temporary file unless $out is set), tarn's status to $rc.
boot() {
	: "${out:=$(mktemp)}"
	timeout "${BOOT_TIMEOUT:-600}" "${BOOT_PREFIX[@]}" "$TARN" run --backend "$BACKEND" --mem 512M "${@:2}" \
		--kernel "$GUEST_KERNEL" --initrd "$GUEST_INITRD" --cmdline "$(guest_cmdline "$1")" \
		</dev/null >"$out" 2>&1
	rc=$?
}

# check NAME PATTERN WHAT: ok "NAME: WHAT" if the console ($out) has a line
# matching the extended regex PATTERN (just "WHAT" if NAME is empty).
check() {
	if grep -qE "$2" "$out"; then
		ok "${1:+$1: }$3"
	else
		not_ok "${1:-$3}" "no '$2' on the console: $(tail -5 "$out" | tr '\r\n' '  ')"
	fi
}

# Seeded pseudo-random bytes, the same in the guest and on the host: MINSTD
# (x = x * 48271 mod 2^31-1, exact in awk's doubles, so the guest's busybox
# awk and python here agree bit for bit), one byte per step.
# GEN_PROLOGUE is guest shell that installs the generator as /tmp/gen.sh
# (sh /tmp/gen.sh SEED BYTES writes the bytes); seeded_sum SEED BYTES
# prints their SHA-256, computed here.
GEN_PROLOGUE="cat > /tmp/gen.sh <<'GEN'
"'awk -v s=$1 -v n=$2 "BEGIN { x = s % 2147483647; if (x == 0) x = 1;
	for (i = 0; i < n; i++) { x = (x * 48271) % 2147483647;
	printf \"%02x\", int(x / 8388608) % 256; if (i % 32 == 31) printf \"\\n\" } }" | xxd -r -p'"
GEN"
seeded_sum() {
	python3 -c '
import hashlib, sys
x, n = int(sys.argv[1]) % 2147483647 or 1, int(sys.argv[2])
b = bytearray()
for _ in range(n):
    x = x * 48271 % 2147483647
    b.append(x // 8388608 % 256)
print(hashlib.sha256(b).hexdigest())' "$1" "$2"
}

# md5_receiver NS ADDR PORT FILE: in network namespace NS, accept one TCP
# connection on ADDR:PORT (within 300 s), read it to its end and write the
# MD5 of what came to FILE. Run it in the background.
md5_receiver() {
	ip netns exec "$1" python3 -c '
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(300)
c, _ = s.accept(); c.settimeout(60); h = hashlib.md5()
while (b := c.recv(1 << 16)): h.update(b)
open(sys.argv[3], "w").write(h.hexdigest())' "${@:2}"
}

# A test that moves a counting Linux guest along a chain of CPU backends
# (snapshot.sh, migrate.sh). chain_start KIND CHAIN LENGTH: sets the array
# $chain (CHAIN's words if given; else "kvm emu kvm" under TARN_BACKEND=kvm,
# which the nested KVM suite sets; else $BACKEND LENGTH times) and $name
# ("KIND a->b->c"); skips the test without e2fsprogs or python3, or with
# "kvm" in the chain and no usable KVM; needs the guest.
chain_start() {
	local b t
	if [ -n "$2" ]; then
		read -ra chain <<<"$2"
	elif [ "$BACKEND" = kvm ]; then
		chain=(kvm emu kvm)
	else
		chain=()
		for ((t = 0; t < $3; t++)); do chain+=("$BACKEND"); done
	fi
	name="$1 $(printf '%s->' "${chain[@]}")"
	name=${name%->}
	for t in mkfs.ext4 debugfs e2fsck python3; do
		command -v $t >/dev/null || { skip "$name" "$t missing (e2fsprogs, python3)"; done_testing; }
	done
	for b in "${chain[@]}"; do
		if [ "$b" = kvm ] && ! kvm_usable; then
			skip "$name" "no usable KVM here ($("$TARN" probe kvm 2>&1 | head -1))"
			done_testing
		fi
	done
	need_guest "$name"
}

# wait_for FILE PATTERN SECONDS: until FILE has a line matching PATTERN,
# while tarn ($pid) runs.
wait_for() {
	local t=$(($3 * 5))
	while [ $t -gt 0 ] && ! grep -qE "$2" "$1" 2>/dev/null; do
		kill -0 "$pid" 2>/dev/null || { grep -qE "$2" "$1"; return; }
		sleep 0.2
		t=$((t - 1))
	done
	[ $t -gt 0 ]
}

# seq_ok WHAT FILE: FILE's "count K" lines are 1..$N, each once, in order
# (reported under $name).
seq_ok() {
	local got
	got=$(grep -ohE '^count [0-9]+' "$2" | awk '{print $2}' | tr '\n' ' ')
	if [ "$got" = "$(seq -s ' ' 1 "$N") " ]; then
		ok "$name: $1: 1..$N, no gap, no repeat"
	else
		not_ok "$name: $1" "got: $(cut -c1-200 <<<"$got")"
	fi
}

# chain_end IMG: the end of a chain test: the last tarn ($pid, console
# $out) counts to $N and powers off; the consoles $work/console.0, .1, ...
# together count 1..$N once each, and so does the file /log on the ext4
# disk IMG, which e2fsck finds clean.
chain_end() {
	local rc fsck_out
	if ! wait_for "$out" "^counted to $N" 300; then
		not_ok "$name: the last tarn (${chain[-1]}) counts to $N" "$(tail -3 "$out" | tr '\r\n' '  ')"
		done_testing
	fi
	wait $pid
	rc=$?
	[ $rc = 0 ] && ok "$name: the guest counted to $N and powered off under ${chain[-1]}" ||
		not_ok "$name: the last tarn" "exit status $rc: $(tail -3 "$out" | tr '\r\n' '  ')"
	cat "$work"/console.[0-9]* >"$work/console"
	seq_ok "the console" "$work/console"
	if fsck_out=$(e2fsck -fn "$1" 2>&1); then
		ok "$name: e2fsck finds the disk clean"
	else
		not_ok "$name: e2fsck" "$(tail -3 <<<"$fsck_out" | tr '\n' ' ')"
	fi
	debugfs -R "cat /log" "$1" >"$work/log" 2>/dev/null
	seq_ok "the file on the disk" "$work/log"
}

# tcp_listener NS ADDR PORT FILE: in network namespace NS, take one TCP
# connection on ADDR:PORT and write what it brings to FILE, in the
# background; returns once it listens (python3 starts slowly in a nested
# VM: it must listen before the guest connects).
tcp_listener() {
	ip netns exec "$1" python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
open(sys.argv[3] + ".ready", "w").close()
c, _ = s.accept()
with open(sys.argv[3], "wb", buffering=0) as f:
    while True:
        b = c.recv(4096)
        if not b: break
        f.write(b)
' "$2" "$3" "$4" &
	for _ in $(seq 300); do [ -e "$4.ready" ] && break; sleep 0.1; done
}
