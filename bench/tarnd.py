#!/usr/bin/env python3
"""VM creation rate and API latency: tarnd beside libvirt (QEMU from Debian)
on the same micro-guest, in the same run.

Each side is asked for BENCH_TARND_VMS VMs (default 20) at once, one
request per VM from as many client threads: tarnd's POST /v1/vms with
start (what `tarnctl vm create --start` sends; its jail on, as root), and
libvirt's `virsh create` of a transient domain. The guest is the counting
micro-guest (bench/guest_count.S) with 64 MiB; a VM counts as up when its
first line reaches its serial console's file. Figures:

  rate        VMs up per host core per second: VMS / (first request to the
              last VM up) / cores
  latency     each request's time to its answer (p50, p99)
  memory      PSS of a VM's own process (tarn, qemu-system-x86_64): shared
              library pages split among the processes that share them; and
              that without its largest anonymous mapping, the guest's RAM
              (what the guest touched, in the huge pages both VMMs ask for):
              the VMM's own overhead
  daemon RSS  tarnd and libvirtd, before and with the VMs

KVM when it is usable for micro-guests (PVM counts), else tarn's emulator
beside QEMU's TCG (BENCH_ACCEL as bench.py). Firecracker's published
figure, 5 VMs per core per second (its SPECIFICATION.md), is printed for
reference. libvirt must be running (apt-get install libvirt-daemon-system;
systemctl start libvirtd); its side reads SKIP with the reason otherwise.

Standard library only; shares bench.py's helpers."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402
from snapshot import UnixHTTP  # noqa: E402

VIRSH = ["virsh", "-q", "-c", "qemu:///system"]
FIRECRACKER_RATE = 5.0  # VMs per core per second, Firecracker's SPECIFICATION.md


def proc_kib(pid, path, key):
    """KEY's kB figure of /proc/PID/PATH (smaps_rollup Pss:, status VmRSS:)."""
    try:
        with open("/proc/%d/%s" % (pid, path)) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pss_kib(pid):
    return proc_kib(pid, "smaps_rollup", "Pss:")


def guest_ram_pss_kib(pid):
    """PSS of the process's largest anonymous mapping: the guest's RAM, in
    tarn and in QEMU alike (what the guest touched of it, in the huge
    pages both ask for)."""
    best = (0, 0)  # (size, pss)
    size = pss = None
    anon = False
    try:
        with open("/proc/%d/smaps" % pid) as f:
            for line in f:
                w = line.split()
                if "-" in w[0] and len(w) >= 5:
                    lo, hi = (int(x, 16) for x in w[0].split("-"))
                    size, anon = hi - lo, len(w) == 5
                elif w[0] == "Pss:" and anon:
                    best = max(best, (size, int(w[1])))
    except (OSError, ValueError):
        return None
    return best[1]


def rss_kib(pid):
    return proc_kib(pid, "status", "VmRSS:")


def pids_of(exe_suffix, arg):
    """Processes whose argv[0] ends with exe_suffix and whose command line
    holds arg."""
    out = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(exe_suffix.encode()) and any(arg.encode() in a for a in argv):
            out.append(int(p))
    return out


def wait_outputs(files, timeout):
    """The time (perf_counter) the last of files got its first line, or
    None (and how many did) when timeout passed."""
    left = set(files)
    deadline = time.perf_counter() + timeout
    while left and time.perf_counter() < deadline:
        for f in list(left):
            try:
                if os.path.getsize(f) > 0:
                    left.discard(f)
            except OSError:
                pass
        if left:
            time.sleep(0.005)
    return (time.perf_counter(), 0) if not left else (None, len(files) - len(left))


def in_threads(n, fn):
    """fn(i) for i < n, all at once; the list of its results."""
    res = [None] * n

    def go(i):
        res[i] = fn(i)

    ts = [threading.Thread(target=go, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return res


def measure(a, side, res, logs, vm_pids):
    """Wait for the VMs' first output (logs); the side's rate, latencies
    (res: (start, end, ...) of each request) and a VM process's PSS. False
    when they did not all come up."""
    end, up = wait_outputs(logs, a.timeout)
    if end is None:
        side.failed = "FAILED (%d of %d VMs up in %d s)" % (up, a.vms, a.timeout)
        return False
    t0 = min(r[0] for r in res)
    side.rate = a.vms / (end - t0) / os.cpu_count()
    lat = sorted(r[1] - r[0] for r in res)
    side.p50, side.p99 = statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    pss = [(pss_kib(p), guest_ram_pss_kib(p)) for p in vm_pids]
    pss = [p for p in pss if p[0] and p[1] is not None]
    side.pss = statistics.mean(p[0] for p in pss) if pss else None
    side.overhead = statistics.mean(p[0] - p[1] for p in pss) if pss else None
    return True


class Side:
    def __init__(self, name):
        self.name, self.skip, self.failed = name, None, None
        self.rate = self.p50 = self.p99 = self.pss = self.overhead = self.rss0 = self.rssn = None


def run_tarnd(a, backend, side):
    work = tempfile.mkdtemp(prefix="tarn-bench-tarnd-")
    sock = os.path.join(work, "tarnd.sock")
    d = subprocess.Popen([a.tarnd, "--state-dir", os.path.join(work, "state"), "--socket", sock,
                          "--tarn", a.tarn, "--cpu-overcommit", "100"],
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "tarnd.log"), "w"))
    try:
        for _ in range(100):
            if os.path.exists(sock):
                break
            time.sleep(0.05)
        else:
            side.failed = "tarnd did not listen (%s)" % os.path.join(work, "tarnd.log")
            return
        time.sleep(0.2)
        side.rss0 = rss_kib(d.pid)

        def create(i):
            body = ('{"name": "b%d", "kernel": "%s", "mem_mib": 64, "backend": "%s", "start": true}'
                    % (i, os.path.abspath(a.guest), backend))
            c = UnixHTTP(sock)
            t0 = time.perf_counter()
            c.request("POST", "/v1/vms", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            t1 = time.perf_counter()
            c.close()
            return (t0, t1, r.status)

        res = in_threads(a.vms, create)
        bad = [r[2] for r in res if r[2] != 201]
        if bad:
            side.failed = "FAILED (create answered %s)" % bad[0]
            return
        logs = [os.path.join(work, "state", "vms", "default", "b%d" % i, "console.log") for i in range(a.vms)]
        if measure(a, side, res, logs, pids_of("tarn", work)):
            side.rssn = rss_kib(d.pid)
    finally:
        for p in pids_of("tarn", work):
            try:
                os.kill(p, 9)
            except OSError:
                pass
        d.kill()
        d.wait()
        shutil.rmtree(work, ignore_errors=True)


DOMAIN = """<domain type='%(type)s'>
  <name>%(name)s</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>%(kernel)s</kernel></os>
  <devices>
    <emulator>%(qemu)s</emulator>
    <serial type='file'><source path='%(log)s'/><target port='0'/></serial>
    <controller type='usb' model='none'/>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
"""


def libvirtd_pid():
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/comm" % p) as f:
                if f.read().strip() in ("libvirtd", "virtqemud"):
                    return int(p)
        except OSError:
            pass
    return None


def run_libvirt(a, qaccel, side):
    if not shutil.which("virsh"):
        side.skip = "virsh missing (apt-get install libvirt-clients libvirt-daemon-system)"
        return
    r = subprocess.run(VIRSH + ["version"], capture_output=True, text=True)
    if r.returncode:
        side.skip = "libvirt not running (systemctl start libvirtd): %s" % (r.stderr.strip().splitlines() or ["?"])[-1]
        return
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        side.skip = "qemu-system-x86_64 missing (apt-get install qemu-system-x86)"
        return
    work = tempfile.mkdtemp(prefix="tarn-bench-libvirt-")
    os.chmod(work, 0o755)
    names = ["tarnbench-%d-%d" % (os.getpid(), i) for i in range(a.vms)]
    logs = [os.path.join(work, n + ".log") for n in names]
    pid = libvirtd_pid()
    side.rss0 = rss_kib(pid) if pid else None
    try:
        xmls = []
        for n, log in zip(names, logs):
            x = os.path.join(work, n + ".xml")
            with open(x, "w") as f:
                f.write(DOMAIN % {"type": "kvm" if qaccel == "kvm" else "qemu", "name": n,
                                  "kernel": os.path.abspath(a.guest), "qemu": qemu, "log": log})
            xmls.append(x)

        def create(i):
            t0 = time.perf_counter()
            r = subprocess.run(VIRSH + ["create", xmls[i]], capture_output=True, text=True)
            return (t0, time.perf_counter(), r.returncode, r.stderr.strip())

        res = in_threads(a.vms, create)
        bad = [r[3] for r in res if r[2]]
        if bad:
            side.failed = "FAILED (virsh create: %s)" % bad[0][:80]
            return
        if measure(a, side, res, logs, pids_of("qemu-system-x86_64", "tarnbench-%d-" % os.getpid())) and pid:
            side.rssn = rss_kib(pid)
    finally:
        for n in names:
            subprocess.run(VIRSH + ["destroy", n], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def text(side, v, fmt):
    if side.skip:
        return "SKIP (%s)" % side.skip
    if side.failed:
        return side.failed
    return fmt(v) if v is not None else "n/a"


def row(title, t, q, attr, fmt, higher_better=False):
    tv, qv = getattr(t, attr), getattr(q, attr)
    ratio = "n/a"
    if tv is not None and qv and not (t.skip or t.failed or q.skip or q.failed):
        ratio = "%.3f" % (tv / qv)
    b.print_row("tarnd", title, text(t, tv, fmt), text(q, qv, fmt), ratio)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tarn", required=True)
    ap.add_argument("--tarnd", required=True)
    ap.add_argument("--guest", required=True, help="the counting micro-guest")
    ap.add_argument("--vms", type=int, default=int(os.environ.get("BENCH_TARND_VMS", "20")))
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("BENCH_TIMEOUT", "60")))
    ap.add_argument("--tarn-unbuilt", action="store_true")
    a = ap.parse_args()
    qaccel, tbackend = b.choose_pair(os.environ.get("BENCH_ACCEL", ""), a.tarn)
    if tbackend == "kvm" and b.kvm_usable(a.tarn, pvm_ok=True):
        qaccel, tbackend = "tcg", "emu"
    print("# tarnd vs libvirt: %d micro-guest VMs at once, %d cores; tarn %s, libvirt/QEMU %s; "
          "the second column is libvirt's" % (a.vms, os.cpu_count(), tbackend, qaccel), flush=True)
    t, q = Side("tarnd"), Side("libvirt")
    if a.tarn_unbuilt or not os.access(a.tarnd, os.X_OK):
        t.skip = "tarnd not built"
    else:
        run_tarnd(a, tbackend, t)
    run_libvirt(a, qaccel, q)
    row("VMs up /core/s", t, q, "rate", lambda v: "%.2f" % v)
    row("create latency p50", t, q, "p50", lambda v: "%.1f ms" % (v * 1e3))
    row("create latency p99", t, q, "p99", lambda v: "%.1f ms" % (v * 1e3))
    row("memory per VM (PSS)", t, q, "pss", lambda v: "%.1f MiB" % (v / 1024))
    row("  of it, not guest RAM", t, q, "overhead", lambda v: "%.1f MiB" % (v / 1024))
    row("daemon RSS, no VM", t, q, "rss0", lambda v: "%.1f MiB" % (v / 1024))
    row("daemon RSS, %d VMs" % a.vms, t, q, "rssn", lambda v: "%.1f MiB" % (v / 1024))
    print("# reference: Firecracker publishes %.0f VMs per core per second%s" % (
        FIRECRACKER_RATE, "; tarnd: %.2f, %.1fx that" % (t.rate, t.rate / FIRECRACKER_RATE) if t.rate else ""),
        flush=True)


if __name__ == "__main__":
    main()
