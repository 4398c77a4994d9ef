#!/usr/bin/env python3
"""Snapshots: tarn against QEMU in the same run, on the default guest (make
guest) at 256 MiB and 1 GiB of RAM and on a micro-guest (--micro, the
counting bench/guest_count.S: 192 bytes of code) at 64 MiB, BENCH_SNAP_RUNS
times each (default 3).

Each run boots the guest with a counter running (the default guest: a line
every 0.2 s from a shell loop; the micro-guest: a line every 10 ms of PIT
time), waits for it, then through each VMM's own control socket (tarn's API,
QEMU's QMP):
  pause      the pause request's round trip (PATCH /vm Paused; QMP stop)
  create     the snapshot of the paused VM to files, request to done
             (PUT /snapshot/create; QMP migrate to "exec:cat > FILE" with
             the bandwidth limit lifted, polled with query-migrate until
             completed: QEMU's way of saving a VM to a file)
  size       the files on disk (du: blocks allocated; tarn leaves the
             memory file's zero pages as holes)
  resume     the resume request's round trip (PATCH /vm Resumed; QMP cont)
  restore    exec of a new VMM from the files -> the VM reported running by
             its socket (tarn run --restore with --api-sock, polled with
             GET /; QEMU -incoming "exec:cat FILE", polled with
             query-status, then cont, since the source was stopped)
  first line exec of the restored VMM -> the guest's next counter line on
             its console (the guest is running again, whatever it reports)
Costs all: tarn/qemu below 1 is tarn ahead. The counter must go on after
the restore without a repeat, or the run counts as FAILED: the restored
console, joined to the line the pause may have cut, must start with the
line after the last one printed before the snapshot.

QEMU boots the default guest with -M pc and the micro-guest with the microvm
machine bench.py uses, its PIT and serial port switched on (the guest counts
on the one and prints on the other); tarn with its defaults. Where /dev/kvm is
PVM, the kvm pair is skipped for the default guest only: PVM runs the
micro-guest.

Standard library only; bench.py's helpers choose the pair (BENCH_ACCEL)."""

import base64
import http.client
import json
import os
import re
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402

SCRIPT = "i=0; while true; do i=$((i+1)); echo count $i; sleep 0.2; done"
# Whole lines only: a line the pause cut counts once the restored VMM has
# completed it, and a restored guest that began it again does not count.
COUNT = re.compile(rb"(?m)^count (\d+)\r?\n")
MICRO_MACHINE = "microvm,x-option-roms=off,rtc=off,pit=on,pic=off,isa-serial=on"


class Guest:
    """One block of rows: the same files and RAM sizes on both sides."""

    def __init__(self, label, mems, tarn_args, qemu_machine, qemu_args, pvm_ok, skip=None):
        self.label, self.mems, self.tarn_args = label, mems, tarn_args
        self.qemu_machine, self.qemu_args, self.pvm_ok = qemu_machine, qemu_args, pvm_ok
        self.skip = skip  # why neither side can boot it, or None


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(self.path)


class Console:
    """A VMM's stdout (the guest's serial console), read as it comes."""

    def __init__(self, p, buf=b""):
        self.p, self.buf = p, buf
        self.sel = selectors.DefaultSelector()
        self.sel.register(p.stdout, selectors.EVENT_READ)

    def counts(self):
        return [int(m) for m in COUNT.findall(self.buf)]

    def wait(self, pred, timeout):
        """Read until pred(self) or timeout; the time it became true (ns)."""
        deadline = time.perf_counter() + timeout
        while not pred(self):
            left = deadline - time.perf_counter()
            if left <= 0 or not self.sel.select(timeout=left):
                if time.perf_counter() >= deadline:
                    return None
                continue
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                return None if not pred(self) else time.perf_counter_ns()
            self.buf += chunk
        return time.perf_counter_ns()


class Tarn:
    name = "tarn"

    def __init__(self, path, backend, work):
        self.path, self.backend, self.work = path, backend, work
        self.sock = os.path.join(work, "tarn.sock")

    def req(self, method, url, body=None):
        c = UnixHTTP(self.sock)
        c.request(method, url, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json"} if body is not None else {})
        r = c.getresponse()
        data = r.read()
        c.close()
        if r.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, url, r.status, data[:200]))
        return json.loads(data) if data else None

    def boot_argv(self, guest, mem):
        return [self.path, "run", "--backend", self.backend, "--api-sock", self.sock] + guest.tarn_args + [
            "--mem", mem]

    def files(self):
        return [os.path.join(self.work, "tarn.snap"), os.path.join(self.work, "tarn.mem")]

    def pause(self):
        self.req("PATCH", "/vm", {"state": "Paused"})

    def resume(self):
        self.req("PATCH", "/vm", {"state": "Resumed"})

    def create(self):
        s, m = self.files()
        self.req("PUT", "/snapshot/create", {"snapshot_path": s, "mem_file_path": m})

    def restore_argv(self):
        s, m = self.files()
        return [self.path, "run", "--backend", self.backend, "--api-sock", self.sock, "--restore", s,
                "--restore-mem", m]

    def running(self):
        try:
            return self.req("GET", "/").get("state") == "Running"
        except (OSError, RuntimeError):
            return False

    def start_restored(self):
        pass


class Qemu:
    name = "qemu"

    def __init__(self, path, accel, work):
        self.path, self.accel, self.work = path, accel, work
        self.sock = os.path.join(work, "qmp.sock")
        self.s = None

    def connect(self):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(self.sock)
        self.f = self.s.makefile("rb")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, args=None):
        if self.s is None:
            self.connect()
        self.s.sendall(json.dumps({"execute": name, "arguments": args or {}}).encode() + b"\n")
        while True:
            r = json.loads(self.f.readline())
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError("QMP %s: %s" % (name, r["error"].get("desc")))

    def close(self):
        if self.s:
            self.s.close()
            self.s = None

    def base(self, machine, mem):
        return [self.path, "-M", machine, "-accel", self.accel, "-m", mem, "-nodefaults", "-no-user-config",
                "-display", "none", "-serial", "stdio", "-no-reboot", "-qmp",
                "unix:%s,server=on,wait=off" % self.sock]

    def boot_argv(self, guest, mem):
        self.machine, self.mem = guest.qemu_machine, mem
        return self.base(self.machine, mem) + guest.qemu_args

    def files(self):
        return [os.path.join(self.work, "qemu.state")]

    def pause(self):
        self.cmd("stop")

    def resume(self):
        self.cmd("cont")

    def create(self):
        self.cmd("migrate-set-parameters", {"max-bandwidth": 1 << 40})
        self.cmd("migrate", {"uri": "exec:cat > %s" % self.files()[0]})
        while True:
            st = self.cmd("query-migrate").get("status")
            if st == "completed":
                return
            if st in ("failed", "cancelled"):
                raise RuntimeError("QEMU migration %s" % st)
            time.sleep(0.001)

    def restore_argv(self):
        self.close()
        return self.base(self.machine, self.mem) + ["-incoming", "exec:cat %s" % self.files()[0]]

    def running(self):
        try:
            st = self.cmd("query-status").get("status")
        except (OSError, RuntimeError, ValueError):
            self.close()
            return False
        if st == "paused" or st == "postmigrate":
            self.cmd("cont")  # the source was stopped: so is the loaded VM
            return True
        return st == "running"


def du(paths):
    return sum(os.stat(p).st_blocks * 512 for p in paths if os.path.exists(p))


def spawn(argv):
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def kill(p):
    if p.poll() is None:
        p.kill()
    p.wait()


def one_run(vmm, guest, mem, timeout):
    """{figure: value} of one boot-snapshot-restore cycle, or raise."""
    for f in vmm.files() + [vmm.sock]:
        if os.path.exists(f):
            os.unlink(f)
    fig = {}
    p = spawn(vmm.boot_argv(guest, mem))
    try:
        con = Console(p)
        if con.wait(lambda c: len(c.counts()) >= 3, timeout) is None:
            raise RuntimeError("the guest did not count: %r" % con.buf[-200:])
        t = time.perf_counter_ns()
        vmm.pause()
        fig["pause"] = time.perf_counter_ns() - t
        time.sleep(0.3)
        con.wait(lambda c: False, 0.05)
        last = con.counts()[-1]
        cut = con.buf[con.buf.rfind(b"\n") + 1:]  # the line the pause may have cut
        t = time.perf_counter_ns()
        vmm.create()
        fig["create"] = time.perf_counter_ns() - t
        fig["size"] = du(vmm.files())
        t = time.perf_counter_ns()
        vmm.resume()
        fig["resume"] = time.perf_counter_ns() - t
    finally:
        if isinstance(vmm, Qemu):
            vmm.close()
        kill(p)
    os.path.exists(vmm.sock) and os.unlink(vmm.sock)
    t0 = time.perf_counter_ns()
    p = spawn(vmm.restore_argv())
    try:
        con = Console(p, cut)
        while not vmm.running():
            if p.poll() is not None or time.perf_counter_ns() - t0 > timeout * 1e9:
                con.wait(lambda c: False, 0.1)
                raise RuntimeError("the restore did not run: %r" % con.buf[-200:])
            time.sleep(0.0005)
        fig["restore"] = time.perf_counter_ns() - t0
        t = con.wait(lambda c: bool(c.counts()), timeout)
        if t is None:
            raise RuntimeError("no counter line after the restore")
        fig["first"] = t - t0
        if con.counts()[0] != last + 1:
            raise RuntimeError("the counter went on at %d after %d" % (con.counts()[0], last))
    finally:
        if isinstance(vmm, Qemu):
            vmm.close()
        kill(p)
    return fig


FIGURES = (("pause", "pause", "ms"), ("create", "create", "ms"), ("size", "size on disk", "MiB"),
           ("resume", "resume", "ms"), ("restore", "restore to running", "ms"),
           ("first", "restore to the next line", "ms"))


def bench_guest(guest, vmms, skip, runs, timeout, tag):
    """Run and print one guest's rows, for each of its memory sizes."""
    for mem in guest.mems:
        figs = {v.name: {k: [] for k, _, _ in FIGURES} for v in vmms}
        failed = {}
        for i in range(runs):
            for v in (vmms if i % 2 == 0 else vmms[::-1]):
                if skip[v.name] or v.name in failed:
                    continue
                try:
                    for k, x in one_run(v, guest, mem, timeout).items():
                        figs[v.name][k].append(x)
                except (RuntimeError, OSError, ValueError) as e:
                    failed[v.name] = "FAILED (run %d: %s)" % (i + 1, str(e)[:100])
        for k, title, unit in FIGURES:
            vals, texts = {}, {}
            for v in vmms:
                if skip[v.name]:
                    texts[v.name] = "SKIP (%s)" % skip[v.name]
                    continue
                if v.name in failed:
                    texts[v.name] = failed[v.name]
                    continue
                xs = figs[v.name][k]
                div = 1 << 20 if unit == "MiB" else 1e6
                vals[v.name] = statistics.median(xs)
                texts[v.name] = "%.2f %s (min %.2f)" % (vals[v.name] / div, unit, min(xs) / div)
            ratio = ("%.3f" % (vals["tarn"] / vals["qemu"]) if "tarn" in vals and vals.get("qemu")
                     else "n/a")
            b.print_row(tag, "%s%s: %s" % (guest.label, mem, title), texts["tarn"], texts["qemu"], ratio)


def main():
    ap = b.guest_arg_parser("tarn vs QEMU: snapshot create, size, restore", "SNAP", 3, 240)
    ap.add_argument("--micro", help="the counting micro-guest, bench/guest_count.S (make bench builds it); "
                    "without it the micro-guest's rows read SKIP")
    a = b.parse_args(ap)
    qaccel, tbackend = b.choose_pair(a.accel, os.path.abspath(a.tarn))
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)
    tarn_path, qemu_path = os.path.abspath(a.tarn), shutil.which(a.qemu)
    cmdline = a.cmdline + " tarn.cmd64=" + base64.b64encode(SCRIPT.encode()).decode()
    micro = os.path.abspath(a.micro or "")
    micro_skip = None if a.micro and os.path.isfile(micro) else (
        "no micro-guest at %s (make bench builds it)" % a.micro if a.micro else "no --micro guest given")
    guests = [Guest("", ("256M", "1G"), ["--kernel", a.kernel, "--initrd", a.initrd, "--cmdline", cmdline],
                    "pc", ["-kernel", a.kernel, "-initrd", a.initrd, "-append", cmdline], False),
              Guest("micro ", ("64M",), ["--kernel", micro], MICRO_MACHINE, ["-kernel", micro], True,
                    micro_skip)]
    work = tempfile.mkdtemp(prefix="tarn-bench-snap.")
    print("tarn bench snapshot: default guest and micro-guest counting, %d runs each, median (min)" % a.runs)
    try:
        for g in guests:
            skip = b.side_skips(tarn_path, a.tarn_unbuilt, qemu_path, a.qemu, tbackend, qaccel, g.pvm_ok)
            skip = {side: why or g.skip for side, why in skip.items()}
            bench_guest(g, [Tarn(tarn_path, tbackend, work), Qemu(qemu_path or a.qemu, qaccel, work)],
                        skip, a.runs, a.timeout, tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
