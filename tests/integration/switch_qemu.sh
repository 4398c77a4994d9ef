#!/bin/bash
# A QEMU VM and a tarn VM on tarn's switch: QEMU 7.2 attaches to a port as
# a vhost-user front end (-netdev vhost-user, guest memory in a shared
# memfd), as tarn does (--net vhost-user=PATH), and the two guests ping each
# other. QEMU drives vhost-user only under KVM (under its emulator it has no
# ioeventfds), so this needs a KVM that runs Linux: hardware, or the nested
# bed's (tests/nested/kvm_suite.sh runs it there).
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/guest.sh

name=switch_qemu
SWITCH=$O/tarn-switch
probe=$("$TARN" probe kvm 2>/dev/null)
case "$probe" in
"kvm: usable, hardware"|"kvm: usable, nested"|"kvm: usable, nested-tcg") ;;
*) skip "$name" "QEMU's vhost-user needs a KVM that runs Linux (${probe#kvm: })"; done_testing ;;
esac
command -v qemu-system-x86_64 >/dev/null || { skip "$name" "qemu-system-x86_64 missing"; done_testing; }
need_guest "$name"
work=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
"$SWITCH" --dir "$work" --port q,net=7,mac=52:54:00:00:07:01 --port t,net=7,mac=52:54:00:00:07:02 \
	>"$work/switch.out" 2>"$work/switch.err" &
sw=$!
for _ in $(seq 50); do [ -S "$work/t.sock" ] && break; sleep 0.1; done
timeout 120 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nographic -no-reboot \
	-object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
	-chardev socket,id=c0,path="$work/q.sock" -netdev vhost-user,id=n0,chardev=c0 \
	-device virtio-net-pci,netdev=n0,mac=52:54:00:00:07:01,romfile= \
	-kernel "$GUEST_KERNEL" -initrd "$GUEST_INITRD" \
	-append "$(guest_cmdline "ip addr add 10.0.7.1/24 dev eth0 && ip link set eth0 up && sleep 600")" \
	</dev/null >"$work/qemu.out" 2>&1 &
qemu=$!
out=$work/tarn.out
boot "ip addr add 10.0.7.2/24 dev eth0 && ip link set eth0 up &&
for i in \$(seq 60); do ping -c 1 -W 1 10.0.7.1 >/dev/null && break; done; ping -c 3 -W 5 10.0.7.1" \
	--mem 256M --net "vhost-user=$work/t.sock,mac=52:54:00:00:07:02"
kill $qemu 2>/dev/null
kill -TERM $sw
wait $sw
echo "# $(grep '^port q' "$work/switch.out")"
if grep -q "unable to start vhost" "$work/qemu.out"; then
	not_ok "$name" "QEMU fell back from vhost-user: $(grep -a vhost "$work/qemu.out" | head -2)"
else
	check "$name" "3 packets transmitted, 3 packets received" "a QEMU VM and a tarn VM on the switch ping each other"
fi
done_testing
