#!/bin/bash
# virtio-console (--vconsole) under the emulator with the default guest: its
# /init loads virtio_console by modalias and the port is /dev/hvc0.
#   file=PATH  what the guest writes to /dev/hvc0 is appended to PATH
#   pty        tarn prints the pseudo-terminal's path; a line the test writes
#              into it is read by the guest from /dev/hvc0 (and echoed to the
#              serial console), and the guest's output comes out of it
# A bad spec stops tarn with status 2 and says what is expected.
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

need_guest "virtio-console"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# ---- bad specs: refused before anything runs ----
for spec in bogus file= "file=$tmp/no/such/dir/log"; do
	err=$("$TARN" run --backend "$BACKEND" --vconsole "$spec" --kernel "$GUEST_KERNEL" </dev/null 2>&1 >/dev/null)
	rc=$?
	if [ $rc -eq 2 ] && grep -q -- "--vconsole" <<<"$err"; then
		ok "--vconsole '$spec': exit 2 ($err)"
	else
		not_ok "--vconsole '$spec'" "exit $rc, stderr: $err"
	fi
done

# ---- file=: guest output appended ----
log=$tmp/hvc.log
echo "line already there" >"$log"
token=hvc-$RANDOM$RANDOM
out=$tmp/console
boot "echo $token >/dev/hvc0; echo wrote=\$?" --vconsole "file=$log"
check "file=" "^wrote=0" "the guest has /dev/hvc0 and writes to it"
if grep -q "^$token" "$log" && head -1 "$log" | grep -qx "line already there"; then
	ok "file=: the line the guest wrote is appended to the file"
else
	not_ok "file=: output" "file holds: $(head -c 200 "$log" | tr '\r\n' '  ')"
fi
[ $rc -eq 0 ] && ok "file=: power-off, tarn exits 0" || not_ok "file=: power-off" "tarn exited $rc"

# ---- pty: both directions ----
# The guest keeps hvc0 open, says hello through it, waits for a line and
# echoes it on the serial console.
script='exec 3<>/dev/hvc0
echo hello-from-guest >&3
read -r line <&3
echo "got=$line"'
token=pty-$RANDOM$RANDOM
python3 - "$TARN" "$BACKEND" "$GUEST_KERNEL" "$GUEST_INITRD" "$(guest_cmdline "$script")" "$token" >"$tmp/pty" 2>&1 <<'EOF'
import os, re, select, subprocess, sys, time

tarn, backend, kernel, initrd, cmdline, token = sys.argv[1:]
p = subprocess.Popen([tarn, "run", "--backend", backend, "--mem", "512M", "--vconsole", "pty",
                      "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline],
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
deadline = time.monotonic() + 600
out, err = p.stdout.fileno(), p.stderr.fileno()
bufs = {out: b"", err: b""}
open_fds = {out, err}
pty = None
from_guest = b""
sent = False
while time.monotonic() < deadline:
    fds = list(open_fds) + ([pty] if pty is not None else [])
    r, _, _ = select.select(fds, [], [], 1)
    for fd in r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if fd == pty:
            from_guest += chunk
            continue
        if not chunk:
            open_fds.discard(fd)
            continue
        bufs[fd] += chunk
    m = re.search(rb"tarn: virtio-console on (/dev/pts/\d+)", bufs[err])
    if m and pty is None:
        print("pty=%s" % m.group(1).decode())
        pty = os.open(m.group(1), os.O_RDWR | os.O_NOCTTY)
    if pty is not None and not sent and b"hello-from-guest" in from_guest:
        os.write(pty, token.encode() + b"\n")
        sent = True
    if not open_fds:
        break
else:
    p.kill()
    print("timed out")
print("status=%s" % p.wait())
print("from-guest=%s" % from_guest.decode(errors="replace").replace("\r", "").replace("\n", "|"))
sys.stdout.write((bufs[out] + bufs[err]).decode(errors="replace"))
EOF
console=$(cat "$tmp/pty")
if grep -q "^pty=/dev/pts/[0-9]" <<<"$console"; then
	ok "pty: tarn prints the pseudo-terminal's path ($(grep -o '/dev/pts/[0-9]*' <<<"$console" | head -1))"
else
	not_ok "pty: path" "$(tail -5 "$tmp/pty" | tr '\r\n' '  ')"
fi
if grep -q "^from-guest=.*hello-from-guest" <<<"$console"; then
	ok "pty: what the guest writes to /dev/hvc0 comes out of the pty"
else
	not_ok "pty: guest -> host" "$(tail -5 "$tmp/pty" | tr '\r\n' '  ')"
fi
if grep -q "^got=$token" <<<"$console"; then
	ok "pty: a line written into the pty is read by the guest from /dev/hvc0"
else
	not_ok "pty: host -> guest" "$(tail -5 "$tmp/pty" | tr '\r\n' '  ')"
fi
grep -q "^status=0$" <<<"$console" && ok "pty: power-off, tarn exits 0" ||
	not_ok "pty: power-off" "$(grep '^status=' <<<"$console")"
done_testing
