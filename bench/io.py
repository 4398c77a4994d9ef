#!/usr/bin/env python3
"""I/O throughput: the default guest (make guest) under tarn and under QEMU,
with the same kernel, initramfs, command line and raw disk image, in the
same run, BENCH_IO_RUNS times each (default 3), alternating.

The guest runs one script (tarn.cmd64) that does, on the virtio-blk disk
/dev/vda:
  seq write   dd if=/dev/zero bs=1M count=MIB conv=fsync
  seq read    echo 3 > /proc/sys/vm/drop_caches; dd of=/dev/null bs=1M count=MIB
  rand read   randread -n READS: 4 KiB O_DIRECT preads at random offsets,
              one at a time (guest/tools/randread.c)
and, with a tap device in a network namespace (needs root and
/dev/net/tun; otherwise SKIP with the reason), over virtio-net, guest ->
host TCP received by a listener in the namespace:
  net tx      tcpsend HOST PORT NET_MIB: 64 KiB writes, as iperf makes them
              (guest/tools/tcpsend.c)
  net tx nc   dd if=/dev/zero bs=64k (NET_MIB MiB) | nc HOST PORT: busybox nc
              writes 1 KiB at a time, so this one counts small packets
The guest prints a marker line on the serial console before and after each
step; the figures are host wall-clock times between the markers' arrival
(the net figure: the listener's first to last byte), so a guest clock that
runs wrong cannot flatter either side. All figures are speeds:
tarn/QEMU above 1 means tarn is faster.

Both VMMs get the same caching: tarn's virtio-blk does plain buffered
pread/pwrite on the image (and fdatasync on a flush), which is QEMU's
cache=writeback. The image is a fresh, fully allocated file of IMAGE_MIB
(default 256) next to the build, removed afterwards.

Standard library only; shares bench.py's and boot.py's helpers."""

import base64
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402
import boot  # noqa: E402

MARK = b"@@io "
HOST_IP, GUEST_IP = "10.0.77.1", "10.0.77.2"
NET_PORTS = {"net": 5201, "netnc": 5202}  # a listener each

# (key, title, unit): the order of the table.
FIGURES = (
    ("seqwrite", "seq write (1 MiB, fsync)", "MiB/s"),
    ("seqread", "seq read (1 MiB, cold cache)", "MiB/s"),
    ("randread", "rand read 4 KiB (O_DIRECT)", "IOPS"),
    ("net", "net tx guest->host (TCP, 64 KiB writes)", "MiB/s"),
    ("netnc", "net tx guest->host (busybox nc)", "MiB/s"),
)


def guest_script(mib, reads, net_mib):
    """The guest's part: markers "@@io begin X" / "@@io end X STATUS"."""
    s = """d=/dev/vda
mark() { echo "@@io $*"; }
if [ -b $d ]; then
mark begin seqwrite
dd if=/dev/zero of=$d bs=1M count=%(mib)d conv=fsync 2>/tmp/err
mark end seqwrite $? $(tail -1 /tmp/err)
sync
echo 3 >/proc/sys/vm/drop_caches
mark begin seqread
dd if=$d of=/dev/null bs=1M count=%(mib)d 2>/tmp/err
mark end seqread $? $(tail -1 /tmp/err)
mark begin randread
randread -n %(reads)d $d
mark end randread $?
else mark missing blk $d; fi
""" % {"mib": mib, "reads": reads}
    if net_mib:
        s += """if ip addr add %(gip)s/24 dev eth0 && ip link set eth0 up; then
mark begin net
tcpsend %(hip)s %(port)d %(mib)d
mark end net $?
mark begin netnc
dd if=/dev/zero bs=64k count=%(blocks)d 2>/dev/null | nc %(hip)s %(portnc)d
mark end netnc $?
else mark missing net eth0; fi
""" % {"gip": GUEST_IP, "hip": HOST_IP, "port": NET_PORTS["net"], "portnc": NET_PORTS["netnc"],
       "mib": net_mib, "blocks": net_mib * 16}
    return s


# The guest -> host listener, run inside the namespace: takes exactly N
# bytes, closes (the guest's sender then ends), prints "net BYTES NS" (first
# to last byte).
LISTENER = """
import socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port)); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); got = 0; t0 = None
while got < size:
    b = c.recv(1 << 20)
    if not b: break
    if t0 is None: t0 = time.perf_counter_ns()
    got += len(b)
t1 = time.perf_counter_ns()
c.close()
print("net %d %d" % (got, t1 - (t0 or t1)), flush=True)
"""


class Netns:
    """A network namespace holding a tap device, host side HOST_IP/24."""

    def __init__(self):
        self.ns = "tarn-bench-io-%d" % os.getpid()
        self.tap = "tbio0"
        self.skip = self._make()

    def _make(self):
        if os.geteuid() != 0:
            return "needs root for a network namespace and a tap device"
        if not os.path.exists("/dev/net/tun"):
            return "no /dev/net/tun (modprobe tun)"
        if not shutil.which("ip"):
            return "no ip command (apt-get install iproute2)"
        if subprocess.run(["ip", "netns", "add", self.ns], capture_output=True).returncode:
            return "ip netns add failed (no CAP_SYS_ADMIN?)"
        for cmd in (["ip", "link", "set", "lo", "up"],
                    ["ip", "tuntap", "add", self.tap, "mode", "tap"],
                    ["ip", "addr", "add", HOST_IP + "/24", "dev", self.tap],
                    ["ip", "link", "set", self.tap, "up"]):
            r = subprocess.run(self.wrap(cmd), capture_output=True, text=True)
            if r.returncode:
                return "%s: %s" % (" ".join(cmd), r.stderr.strip()[:80])
        return None

    def wrap(self, argv):
        return ["ip", "netns", "exec", self.ns] + argv

    def listen(self, size, port):
        p = subprocess.Popen(self.wrap([sys.executable, "-c", LISTENER, HOST_IP, str(port),
                                        str(size)]),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        p.stdout.readline()  # "listening" (or an error, seen at the end)
        return p

    def remove(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def one_run(argv, timeout, net, net_mib):
    """One boot: (figures, problems), figures {key: ns} and problems {key:
    why there is no figure}; or a text when the VMM itself failed."""
    lsn = {k: net.listen(net_mib << 20, port) for k, port in NET_PORTS.items()} if net_mib else {}
    lines, off, status, tail = b.run_console(net.wrap(argv) if net_mib else argv, timeout)
    got, begin, problems = {}, {}, {}
    missing = {}  # "blk" or "net" -> what the guest lacks
    for t, line in lines:
        i = line.find(MARK)
        if i < 0:
            continue
        f = line[i + len(MARK):].decode("utf-8", "replace").split() + ["", ""]
        if f[0] == "begin":
            begin[f[1]] = t
        elif f[0] == "end" and f[1] in begin:
            if f[2] != "0":
                problems[f[1]] = ("exit status %s %s" % (f[2], " ".join(f[3:]))).strip()[:80]
            else:
                got[f[1]] = t - begin[f[1]]
        elif f[0] == "missing":
            missing[f[1]] = "the guest has no %s" % f[2]
    for key, p in lsn.items():
        try:
            out, _ = p.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        fields = out.split()
        if key in got and len(fields) == 3 and fields[0] == "net" and int(fields[1]) == net_mib << 20:
            got[key] = int(fields[2])
        elif key in got:
            del got[key]
            problems[key] = "the listener got %s" % (out.strip()[-60:] or "nothing")
    if off is None:
        return "timed out after %.0f s" % timeout
    if status != 0:
        last = tail.decode("utf-8", "replace").strip().splitlines()
        return "exit status %d%s" % (status, ": " + last[-1][:80] if last else "")
    for key, _, _ in FIGURES:
        if key not in got and key not in problems and (key not in NET_PORTS or net_mib):
            problems[key] = missing.get("net" if key in NET_PORTS else "blk", "no marker from the guest")
    return got, problems


def main():
    ap = b.guest_arg_parser("tarn vs QEMU: virtio-blk and virtio-net throughput", "IO", 3, 900)
    ap.add_argument("--image-mib", type=int, default=int(os.environ.get("BENCH_IO_IMAGE_MIB") or 256))
    ap.add_argument("--mib", type=int, default=int(os.environ.get("BENCH_IO_MIB") or 128),
                    help="MiB written, then read, by dd")
    ap.add_argument("--reads", type=int, default=int(os.environ.get("BENCH_IO_READS") or 2000))
    ap.add_argument("--net-mib", type=int, default=int(os.environ.get("BENCH_IO_NET_MIB") or 16))
    ap.add_argument("--dir", default=None, help="where the image goes (default: next to --tarn)")
    a = b.parse_args(ap)
    if a.runs < 1 or a.mib < 1 or a.mib > a.image_mib or a.reads < 1 or a.net_mib < 0:
        sys.exit("bench: io: need runs >= 1, 1 <= mib <= image-mib, reads >= 1, net-mib >= 0")
    for f in (a.kernel, a.initrd):
        if not os.path.isfile(f):
            sys.exit("bench: %s missing (make guest)" % f)
    qaccel, tbackend = b.choose_pair(a.accel, os.path.abspath(a.tarn))
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)
    qemu_path = shutil.which(a.qemu)
    tarn_path = os.path.abspath(a.tarn)
    skip = b.side_skips(tarn_path, a.tarn_unbuilt, qemu_path, a.qemu, tbackend, qaccel)

    net = Netns() if a.net_mib else None
    net_mib = a.net_mib if net and not net.skip else 0
    work = tempfile.mkdtemp(prefix="tarn-bench-io.",
                            dir=a.dir or os.path.dirname(tarn_path) or ".")
    try:
        img = os.path.join(work, "disk.img")
        fd = os.open(img, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.posix_fallocate(fd, 0, a.image_mib << 20)
        os.close(fd)
        script = guest_script(a.mib, a.reads, net_mib)
        cmdline = "%s tarn.cmd64=%s" % (a.cmdline, base64.b64encode(script.encode()).decode())
        targv = boot.tarn_argv(tarn_path, tbackend, a.kernel, a.initrd, cmdline, a.mem) + ["--disk", img]
        qargv = boot.qemu_argv(qemu_path or a.qemu, qaccel, a.kernel, a.initrd, cmdline, a.mem) + [
            "-drive", "file=%s,format=raw,if=none,id=d0,cache=writeback" % img,
            "-device", "virtio-blk-pci,drive=d0"]
        if net_mib:
            targv += ["--net", "tap=" + net.tap]
            qargv += ["-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % net.tap,
                      "-device", "virtio-net-pci,netdev=n0"]
        sides = {"tarn": targv, "qemu": qargv}

        print("tarn bench io: virtio-blk on a %d MiB raw image (dd %d MiB, %d random reads), "
              "virtio-net %s; %d runs each, median (max); a speed: tarn/qemu > 1 means tarn is faster"
              % (a.image_mib, a.mib, a.reads,
                 "%d MiB guest->host" % net_mib if net_mib else "SKIP", a.runs))
        for s, argv in sides.items():
            shown = " ".join(argv).replace(cmdline, "'%s tarn.cmd64=...'" % a.cmdline)
            print("  %s: %s" % (s, shown if not skip[s] else "SKIP (%s)" % skip[s]))
        sys.stdout.flush()
        values = {s: {k: [] for k, _, _ in FIGURES} for s in sides}
        # A failed run is kept and told, and the other runs still count: a
        # VMM that crashes once in three shows both its figures and that.
        failed = {s: [] for s in sides}      # side -> ["run N: why"] (the VMM failed)
        fig_failed = {s: {} for s in sides}  # side -> {key: ["run N: why"]}
        for i in range(a.runs):
            for s in (("tarn", "qemu") if i % 2 else ("qemu", "tarn")):
                if skip[s]:
                    continue
                r = one_run(sides[s], a.timeout, net, net_mib)
                if isinstance(r, str):
                    failed[s].append("run %d: %s" % (i + 1, r))
                    continue
                amount = {"seqwrite": a.mib, "seqread": a.mib, "randread": a.reads, "net": net_mib,
                          "netnc": net_mib}
                for k, ns in r[0].items():
                    values[s][k].append(amount[k] / (ns / 1e9))
                for k, why in r[1].items():
                    fig_failed[s].setdefault(k, []).append("run %d: %s" % (i + 1, why))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if net and not net.skip:
            net.remove()

    def text(s, key, unit):
        if skip[s]:
            return None, "SKIP (%s)" % skip[s]
        if key in NET_PORTS and not net_mib:
            return None, "SKIP (%s)" % (net.skip if net else "BENCH_IO_NET_MIB=0")
        bad = failed[s] + fig_failed[s].get(key, [])
        v = values[s][key]
        if not v:
            return None, "FAILED (%s)" % (bad[0] if bad else "no figure")
        med = statistics.median(v)
        fmt = "%.0f" if unit == "IOPS" else "%.1f"
        told = ("%s %s (max %s" % (fmt, unit, fmt)) % (med, max(v))
        if bad:
            told += "; FAILED %d of %d runs, %s" % (len(bad), a.runs, bad[0])
        return med, told + ")"

    for key, title, unit in FIGURES:
        tm, ts = text("tarn", key, unit)
        qm, qs = text("qemu", key, unit)
        b.print_row(tag, title, ts, qs, "%.3f" % (tm / qm) if tm is not None and qm else "n/a")
    return 0


if __name__ == "__main__":
    # Ctrl-C unwinds through main's cleanup (image, namespace).
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
