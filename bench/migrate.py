#!/usr/bin/env python3
"""Live migration: tarn against QEMU in the same run, on the default guest (make
guest) at 256 MiB and 1 GiB of RAM, idle and writing 10 and 50 MB/s of memory,
BENCH_MIG_RUNS times each (default 2), each VMM to a second one of its own
kind on this host over a Unix socket.

The guest prints a tick every 20 ms of its time (a shell loop) and, loaded,
rewrites MB/s of a 16 MiB buffer each second (dd of 1 MiB pieces of random
bytes). Each run boots it, waits for 50 ticks, starts the destination (tarn
run --incoming unix:PATH; QEMU -incoming unix:PATH), then migrates through the
source's own control socket:
  tarn   PUT /migrate {"destination": ..., "wait": true}: the default budget
         of 50 ms and no bandwidth cap; its answer's figures
  QEMU   QMP migrate-set-parameters downtime-limit 50 (its default is 300)
         and max-bandwidth lifted, migrate, query-migrate polled until
         completed; its figures
Figures, per VMM:
  total      request to completion, as the VMM reports it
  wire       bytes on the wire (tarn: bytes_sent; QEMU: ram.transferred)
  downtime   the VMM's own: the VM stopped at the source to running at the
             destination (tarn: downtime_ms; QEMU: downtime)
  guest gap  the largest step between two ticks as they reached this host
             (each VMM's console stamped on arrival), the tick period
             included: what a client of the guest saw. The guest's own
             clock stands still while it is stopped, on both VMMs.
The ticks must go on at the destination without a repeat, or the run counts as
FAILED. Costs all: tarn/qemu below 1 is tarn ahead.

Standard library only; bench.py's helpers choose the pair (BENCH_ACCEL)."""

import base64
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402
import snapshot as s  # noqa: E402

TICK = re.compile(rb"^tick (\d+)\r?$")
# BENCH_MIG_MEMS, BENCH_MIG_LOADS (MB/s written) pick the rows.
MEMS = os.environ.get("BENCH_MIG_MEMS", "256M 1G").split()
LOADS = [int(x) for x in os.environ.get("BENCH_MIG_LOADS", "0 10 50").split()]


def script(rate):
    """The guest: rate MB/s written (in 1 MiB pieces, rate/10 each 0.1 s),
    and a tick every 20 ms."""
    dirty = ""
    if rate:
        dirty = ("head -c 1048576 /dev/urandom >/tmp/blob; "
                 "( j=0; while :; do k=0; while [ $k -lt %d ]; do "
                 "dd if=/tmp/blob of=/tmp/buf bs=1M count=1 seek=$((j %% 16)) conv=notrunc 2>/dev/null; "
                 "j=$((j+1)); k=$((k+1)); done; sleep 0.1; done ) & " % max(1, rate // 10))
    return dirty + "i=0; while true; do i=$((i+1)); echo tick $i; usleep 20000; done"


class Stamped(s.Console):
    """A console whose lines are stamped with the time they arrived."""

    def __init__(self, p):
        super().__init__(p)
        self.lines = []  # (ns, tick)
        self.part = b""

    def pump(self, timeout):
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if not self.sel.select(timeout=max(0.0, end - time.perf_counter())):
                continue
            chunk = os.read(self.p.stdout.fileno(), 65536)
            now = time.perf_counter_ns()
            if not chunk:
                return
            self.buf = (self.buf + chunk)[-4096:]  # for errors
            self.part += chunk
            *full, self.part = self.part.split(b"\n")
            for line in full:
                m = TICK.match(line)
                if m:
                    self.lines.append((now, int(m.group(1))))

    def until(self, n, timeout):
        end = time.perf_counter() + timeout
        while len(self.lines) < n and time.perf_counter() < end and self.p.poll() is None:
            self.pump(0.05)
        return len(self.lines) >= n


class TarnSide:
    name = "tarn"

    def __init__(self, path, backend, work):
        self.path, self.backend, self.work = path, backend, work

    def source(self, argv_guest, mem):
        self.api = s.Tarn(self.path, self.backend, self.work)
        return [self.path, "run", "--backend", self.backend, "--api-sock", self.api.sock, "--mem", mem] + argv_guest

    def destination(self, addr, mem, argv_guest):
        return [self.path, "run", "--backend", self.backend, "--incoming", "unix:" + addr]

    def migrate(self, addr):
        r = self.api.req("PUT", "/migrate", {"destination": "unix:" + addr, "wait": True})
        if r.get("state") != "completed":
            raise RuntimeError("migration %s: %s" % (r.get("state"), r.get("error")))
        return {"total": r["total_ms"] * 1e6, "wire": r["bytes_sent"], "downtime": r["downtime_ms"] * 1e6}


class QemuSide:
    name = "qemu"

    def __init__(self, path, accel, work):
        self.path, self.accel, self.work = path, accel, work

    def source(self, argv_guest, mem):
        self.q = s.Qemu(self.path, self.accel, self.work)
        return self.q.base("pc", mem) + argv_guest

    def destination(self, addr, mem, argv_guest):
        d = s.Qemu(self.path, self.accel, self.work)
        d.sock = os.path.join(self.work, "qmp-dst.sock")
        return d.base("pc", mem) + argv_guest + ["-incoming", "unix:" + addr]

    def migrate(self, addr):
        q = self.q
        q.cmd("migrate-set-parameters", {"downtime-limit": 50, "max-bandwidth": 1 << 40})
        q.cmd("migrate", {"uri": "unix:" + addr})
        while True:
            r = q.cmd("query-migrate")
            if r.get("status") == "completed":
                break
            if r.get("status") in ("failed", "cancelled"):
                raise RuntimeError("QEMU migration %s: %s" % (r.get("status"), r.get("error-desc")))
            time.sleep(0.005)
        q.close()
        return {"total": r["total-time"] * 1e6, "wire": r["ram"]["transferred"], "downtime": r["downtime"] * 1e6}


def one_run(side, guest_argv, mem, rate, timeout, work):
    """{figure: value} of one boot and migration, or raise."""
    addr = os.path.join(work, "mig.sock")
    for f in (addr, os.path.join(work, "tarn.sock"), os.path.join(work, "qmp.sock"),
              os.path.join(work, "qmp-dst.sock")):
        if os.path.exists(f):
            os.unlink(f)
    src = s.spawn(side.source(guest_argv, mem))
    dst = None
    try:
        con = Stamped(src)
        if not con.until(50, timeout):
            raise RuntimeError("the guest did not tick: %r" % con.buf[-200:])
        dst = s.spawn(side.destination(addr, mem, guest_argv))
        dcon = Stamped(dst)
        for _ in range(2000):
            if os.path.exists(addr) or dst.poll() is not None:
                break
            con.pump(0.005)
        if not os.path.exists(addr):
            raise RuntimeError("the destination did not listen")
        # The consoles are read (and their lines stamped) while the
        # migration runs, in this thread; the request waits in another.
        res, err = {}, []
        def run():
            try:
                res.update(side.migrate(addr))
            except (RuntimeError, OSError, ValueError, KeyError) as e:
                err.append(e)
        th = threading.Thread(target=run)
        th.start()
        while th.is_alive():
            con.pump(0.002)
            dcon.pump(0.002)
        th.join()
        if err:
            raise err[0]
        fig = res
        con.pump(0.2)
        if not dcon.until(30, timeout):
            raise RuntimeError("no ticks at the destination: %r" % dcon.buf[-120:])
        ticks = sorted(con.lines + dcon.lines, key=lambda x: x[1])
        nums = [n for _, n in ticks]
        if len(set(nums)) != len(nums) or nums != list(range(nums[0], nums[0] + len(nums))):
            raise RuntimeError("the ticks did not go on once each across the migration")
        last = con.lines[-1][1]
        around = [ticks[i + 1][0] - ticks[i][0] for i in range(len(ticks) - 1)
                  if last - 20 <= ticks[i][1] <= last + 20]
        fig["gap"] = max(around)
        return fig
    finally:
        s.kill(src)
        if dst:
            s.kill(dst)


FIGURES = (("total", "total", "ms"), ("wire", "on the wire", "MiB"), ("downtime", "downtime (VMM's)", "ms"),
           ("gap", "largest tick gap (20 ms ticks)", "ms"))


def main():
    ap = b.guest_arg_parser("tarn vs QEMU: live migration", "MIG", 2, 240)
    a = b.parse_args(ap)
    qaccel, tbackend = b.choose_pair(a.accel, os.path.abspath(a.tarn))
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)
    tarn_path, qemu_path = os.path.abspath(a.tarn), shutil.which(a.qemu)
    skip = b.side_skips(tarn_path, a.tarn_unbuilt, qemu_path, a.qemu, tbackend, qaccel, False)
    work = tempfile.mkdtemp(prefix="tarn-bench-mig.")
    sides = [TarnSide(tarn_path, tbackend, work), QemuSide(qemu_path or a.qemu, qaccel, work)]
    print("tarn bench migrate: default guest, to a second VMM on this host, %d runs each, median (min)" % a.runs)
    try:
        for mem in MEMS:
            for rate in LOADS:
                cmdline = a.cmdline + " tarn.cmd64=" + base64.b64encode(script(rate).encode()).decode()
                argv = {"tarn": ["--kernel", a.kernel, "--initrd", a.initrd, "--cmdline", cmdline],
                        "qemu": ["-kernel", a.kernel, "-initrd", a.initrd, "-append", cmdline]}
                figs = {v.name: {k: [] for k, _, _ in FIGURES} for v in sides}
                failed = {}
                for i in range(a.runs):
                    for v in (sides if i % 2 == 0 else sides[::-1]):
                        if skip[v.name] or v.name in failed:
                            continue
                        try:
                            for k, x in one_run(v, argv[v.name], mem, rate, a.timeout, work).items():
                                figs[v.name][k].append(x)
                        except (RuntimeError, OSError, ValueError, KeyError) as e:
                            failed[v.name] = "FAILED (run %d: %s)" % (i + 1, str(e)[:100])
                load = "idle" if not rate else "%d MB/s written" % rate
                for k, title, unit in FIGURES:
                    vals, texts = {}, {}
                    for v in sides:
                        if skip[v.name] or v.name in failed:
                            texts[v.name] = "SKIP (%s)" % skip[v.name] if skip[v.name] else failed[v.name]
                            continue
                        xs = figs[v.name][k]
                        div = 1 << 20 if unit == "MiB" else 1e6
                        vals[v.name] = statistics.median(xs)
                        texts[v.name] = "%.1f %s (min %.1f)" % (vals[v.name] / div, unit, min(xs) / div)
                    ratio = ("%.3f" % (vals["tarn"] / vals["qemu"]) if "tarn" in vals and vals.get("qemu")
                             else "n/a")
                    b.print_row(tag, "%s %s: %s" % (mem, load, title), texts["tarn"], texts["qemu"], ratio)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
