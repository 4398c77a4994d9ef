#!/usr/bin/env python3
"""Disk and network rate limits (token buckets, core/ratelimit.h), measured
as a user would: the default guest reads its disk with dd and moves data
over TCP, and the host times it. Speaks TAP.

One guest, under the emulator (or TARN_BACKEND), with
  --disk IMG,bw=10MB/s,iops=500
  --net tap=T,tx_bw=50Mbit/s,rx_bw=50Mbit/s   (a tap in a network namespace)
  --api-sock S
runs, each step between two marker lines on the console. The disk rates
are from tarn's own counters (GET /metrics), sampled by the host every
0.2 s: the median of their rates from one sample to the next between the
step's markers (which only say which step runs: a busy host reads them
late). The network rates are the host receiver's:
  bw     dd 64 KiB O_DIRECT reads, 800 of them (52 MB: 5.2 s at 10 MB/s)
  iops   dd 4 KiB O_DIRECT reads, 2500 of them (5 s at 500 IOPS)
  tx     tcpsend 30 MiB to a host listener (guest -> host, 5 s at 50 Mbit/s)
  rx     wget 30 MiB from a host server (host -> guest)
  change 64 KiB reads, one after another, a marker after each; at the 4th
         the host PATCHes the drive to 1 MB/s through the API, and the reads
         that end from 1 s after the PATCH's reply on must go at that rate.
Each rate must be within 10 % of its limit. Without root, /dev/net/tun or
ip(8) the network steps are SKIPs with the reason (the disk ones run)."""
import base64
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
os.chdir(ROOT)
O = os.environ.get("O", "build")
TARN = os.environ.get("TARN", os.path.join(O, "tarn"))
BACKEND = os.environ.get("TARN_BACKEND", "emu")
KERNEL = os.path.join(O, "guest", "vmlinuz")
INITRD = os.path.join(O, "guest", "initramfs.cpio")
CMDLINE = "console=ttyS0 tsc=reliable panic=-1 quiet cryptomgr.notests"
HOST_IP, GUEST_IP = "10.0.3.1", "10.0.3.2"
NET_MIB = 30
CHUNK = 64 << 10
CHUNKS = 88
PATCH_AT = 4
LIMITS = {"bw": 10e6, "iops": 500, "tx": 50e6 / 8, "rx": 50e6 / 8, "change": 1e6}

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Tap  # noqa: E402

T = Tap("ratelimit")
ok, skip, done = T.ok, T.skip, T.done


def run(*argv):
    return subprocess.run(argv, capture_output=True, text=True)


class Netns:
    """A network namespace with a tap, host side HOST_IP/24; .skip says why not."""

    def __init__(self):
        self.name, self.tap = "tarn-rl-%d" % os.getpid(), "tarn-rl0"
        self.skip = self._make()

    def _make(self):
        if os.geteuid() != 0:
            return "needs root for a network namespace and a tap device"
        if not os.path.exists("/dev/net/tun"):
            return "no /dev/net/tun (modprobe tun)"
        if not shutil.which("ip") or run("ip", "netns", "add", self.name).returncode:
            return "cannot make a network namespace (ip netns add; iproute2 missing or no CAP_SYS_ADMIN)"
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "tuntap", "add", self.tap, "mode", "tap"],
                    ["ip", "addr", "add", HOST_IP + "/24", "dev", self.tap], ["ip", "link", "set", self.tap, "up"]):
            r = run(*self.wrap(cmd))
            if r.returncode:
                return "%s: %s" % (" ".join(cmd), r.stderr.strip()[:80])
        return None

    def wrap(self, argv):
        return ["ip", "netns", "exec", self.name] + argv

    def close(self):
        run("ip", "netns", "del", self.name)


# The host's servers, run inside the namespace: a sink on 5301 that takes
# exactly SIZE bytes (the guest's tcpsend), then an HTTP server on 5302 that
# serves SIZE bytes once (the guest's wget). Each prints "NAME BYTES NS",
# first to last byte.
SERVERS = r"""
import socket, sys, time
host, size = sys.argv[1], int(sys.argv[2])
def listen(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port)); s.listen(1); return s
sink, web = listen(5301), listen(5302)
print("listening", flush=True)
c, _ = sink.accept(); got = 0; t0 = None
while got < size:
    b = c.recv(1 << 20)
    if not b: break
    if t0 is None: t0 = time.perf_counter_ns()
    got += len(b)
print("tx %d %d" % (got, time.perf_counter_ns() - (t0 or 0)), flush=True)
c.close()
c, _ = web.accept(); req = b""
while b"\r\n\r\n" not in req:
    b = c.recv(4096)
    if not b: break
    req += b
t0 = time.perf_counter_ns()
c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % size + bytes(size))
c.shutdown(socket.SHUT_WR)
while c.recv(65536): pass  # the guest closes once it has everything
print("rx %d %d" % (size, time.perf_counter_ns() - t0), flush=True)
"""


class Counters(threading.Thread):
    """tarn's disk counters (GET /metrics, totals since the start), every
    0.2 s, stamped with the host's clock: (time, bytes read, reads)."""

    def __init__(self, sock):
        super().__init__(daemon=True)
        self.sock, self.samples, self.done = sock, [], False

    def run(self):
        while not self.done:
            t0 = time.monotonic()
            r = run("curl", "-s", "--max-time", "2", "--unix-socket", self.sock, "http://localhost/metrics")
            t = (t0 + time.monotonic()) / 2
            try:
                blk = json.loads(r.stdout)["block"]
                self.samples.append((t, blk["read_bytes"], blk["read_count"]))
            except (ValueError, KeyError, TypeError):
                pass
            time.sleep(0.2)

    def climb(self, t0, k):
        """Counter k's rate from t0 until it stops climbing (the step's
        end, however late its marker came). None with too few samples."""
        win = [x for x in self.samples if x[0] >= t0]
        if len(win) < 5:
            return None
        top = next(x for x in win if x[k] == win[-1][k])
        return (top[k] - win[0][k]) / (top[0] - win[0][0]) if top[0] > win[0][0] else None

    def rate(self, t0, t1, k):
        """Counter k's rate between t0 and t1 (when the marker lines came:
        a step may begin before and end after, and the next one begin,
        by as much as the host read them late): the median of its rates
        between one sample and the next. None with fewer than 5."""
        win = [x for x in self.samples if t0 <= x[0] <= t1]
        rates = [(b[k] - a[k]) / (b[0] - a[0]) for a, b in zip(win, win[1:]) if b[0] > a[0]]
        return statistics.median(rates) if len(rates) >= 5 else None


def guest_script(net):
    s = """d=/dev/vda
mark() { echo "@@rl $*"; }
mark bw-begin; dd if=$d of=/dev/null bs=64k count=800 iflag=direct 2>/dev/null; mark bw-end $?
mark iops-begin; dd if=$d of=/dev/null bs=4k count=2500 iflag=direct 2>/dev/null; mark iops-end $?
"""
    if net:
        s += """ip addr add %(g)s/24 dev eth0 && ip link set eth0 up
mark tx-begin; tcpsend %(h)s 5301 %(mib)d >/dev/null; mark tx-end $?
mark rx-begin; wget -q -O /dev/null http://%(h)s:5302/data; mark rx-end $?
""" % {"g": GUEST_IP, "h": HOST_IP, "mib": NET_MIB}
    s += """i=0; while [ $i -lt %(chunks)d ]; do
dd if=$d of=/dev/null bs=%(chunk)d count=1 skip=$i iflag=direct 2>/dev/null; mark chunk $i; i=$((i + 1)); done
""" % {"chunks": CHUNKS, "chunk": CHUNK}
    return s


def main():
    if not (os.path.exists(KERNEL) and os.path.exists(INITRD)):
        ok(False, "default guest", "missing: %s (make guest)" % KERNEL)
        done()
    if not shutil.which("curl"):
        ok(False, "curl", "curl is missing (apt-get install curl)")
        done()
    work = tempfile.mkdtemp(prefix="tarn-rl-")
    ns = Netns()
    try:
        steps(work, ns)
    finally:
        if not ns.skip:
            ns.close()
        shutil.rmtree(work, ignore_errors=True)
    done()


def steps(work, ns):
    img, sock = os.path.join(work, "disk.img"), os.path.join(work, "api.sock")
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    argv = [TARN, "run", "--backend", BACKEND, "--mem", "256M", "--api-sock", sock, "--kernel", KERNEL,
            "--initrd", INITRD, "--disk", img + ",bw=10MB/s,iops=500",
            "--cmdline", CMDLINE + " tarn.cmd64=" + base64.b64encode(guest_script(not ns.skip).encode()).decode()]
    servers = None
    if not ns.skip:
        argv += ["--net", "tap=%s,tx_bw=50Mbit/s,rx_bw=50Mbit/s" % ns.tap]
        argv = ns.wrap(argv)
        servers = subprocess.Popen(ns.wrap([sys.executable, "-c", SERVERS, HOST_IP, str(NET_MIB << 20)]),
                                   stdout=subprocess.PIPE, text=True)
        servers.stdout.readline()  # listening
    marks, lines = {}, []
    patched = []
    vm = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = Counters(sock)
    sampler.start()
    killer = threading.Timer(float(os.environ.get("BOOT_TIMEOUT", "600")), vm.kill)
    killer.start()
    for raw in vm.stdout:
        t = time.monotonic()
        line = raw.decode(errors="replace").strip()
        lines.append(line)
        if not line.startswith("@@rl "):
            continue
        w = line.split()
        marks[w[1] if w[1] != "chunk" else "chunk%s" % w[2]] = (t, w[2:])
        if w[1] == "chunk" and int(w[2]) == PATCH_AT - 1:
            # The guest reads on meanwhile: its next reads feel the change.
            r = run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", sock, "-X", "PATCH",
                    "-H", "Content-Type: application/json", "http://localhost/drives/cli0",
                    "-d", '{"drive_id": "cli0", "rate_limiter": {"bandwidth": {"size": 100000, "refill_time": 100}}}')
            patched = [time.monotonic(), r.stdout.strip()]
    rc = vm.wait()
    killer.cancel()
    ok(rc == 0, "the guest ran every step and powered off, tarn exited 0",
       "exit %s: %s" % (rc, " | ".join(lines[-5:])))

    def rate_of(step, counter, unit):
        b, e = marks.get(step + "-begin"), marks.get(step + "-end")
        if not b or not e or e[1] != ["0"]:
            return ok(False, step, "the step did not finish (%s, %s)" % (b, e))
        r = sampler.rate(b[0], e[0], counter)
        if r is None:
            return ok(False, step, "too few samples of tarn's counters")
        check(step, r, unit)

    sampler.done = True
    sampler.join()
    rate_of("bw", 1, "B/s")
    rate_of("iops", 2, "IOPS")
    if ns.skip:
        for step in ("tx", "rx"):
            skip("network %s at 50 Mbit/s" % step, ns.skip)
    else:
        try:
            out = servers.communicate(timeout=30)[0]
        except subprocess.TimeoutExpired:  # the guest never connected
            servers.kill()
            out = servers.communicate()[0]
        got = {w[0]: (int(w[1]), int(w[2])) for w in (x.split() for x in out.splitlines()) if len(w) == 3}
        for step in ("tx", "rx"):
            if step not in got or got[step][0] != NET_MIB << 20 or marks.get(step + "-end", (0, []))[1] != ["0"]:
                ok(False, "network " + step, "the transfer did not finish: %s %s" % (got, marks.get(step + "-end")))
            else:
                check(step, got[step][0] / (got[step][1] / 1e9), "B/s")
    # The runtime change.
    if not ok(patched and patched[1] == "204", "PATCH /drives/cli0 with a new rate_limiter while reading: 204",
              "got %s" % patched):
        return
    last = marks.get("chunk%d" % (CHUNKS - 1))
    r = sampler.climb(patched[0] + 1.0, 1) if last else None
    if r is None:
        ok(False, "change", "the reads did not end, or too few samples of tarn's counters after the change")
    else:
        check("change", r, "B/s")


NAMES = {"bw": "disk bw=10MB/s", "iops": "disk iops=500", "tx": "network tx_bw=50Mbit/s (guest -> host TCP)",
         "rx": "network rx_bw=50Mbit/s (host -> guest TCP)",
         "change": "disk limit changed at runtime to 1 MB/s: in force within 1 s"}


def check(step, measured, unit):
    want = LIMITS[step]
    ok(abs(measured - want) <= 0.1 * want, "%s: %.4g %s measured (%+.1f %%)" % (
        NAMES[step], measured, unit, 100 * (measured / want - 1)),
       "%.4g %s, want %.4g within 10 %%" % (measured, unit, want))


main()
