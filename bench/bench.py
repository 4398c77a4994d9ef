#!/usr/bin/env python3
"""tarn's benchmarks, side by side with QEMU in the same run (bench/README.md).

Every figure is a median over BENCH_RUNS runs (with the minimum), measured for
tarn and for QEMU alternately in one invocation, and printed on one line with
the ratio tarn/QEMU (lower is better: every figure here is a cost).

  start     exec of the VMM -> the VMM process has exited and been reaped
            (wall clock, untraced runs). The guest's first instructions
            write to the debug-exit port, so this is exec -> first port
            write, plus the VMM's way of ending, plus process teardown.
  teardown  exit_group() -> process reaped, measured in separate runs under
            ptrace (each thread stops at PTRACE_EVENT_EXIT, before the
            kernel frees its memory), so tracing does not touch "start".
  peak RSS  VmHWM (the high-water resident set of the VMM's address space)
            read from /proc at that exit_group stop, in the traced runs;
            with RssFile at that moment: the part that is the binary and
            its shared libraries (page cache, shared between VMs).
            Not wait4's ru_maxrss: the kernel folds the pre-exec address
            space's peak into it, and a child spawned from this Python
            process would report Python's ~16 MiB.
  exec->exit_group, derived: median start - median teardown, the nearest
            figure to "exec -> the guest's first port write".
  start above floor, derived: median start - the median start of
            /bin/false through the same harness (spawn, exec, exit, reap
            cost on this host): what the VMM itself adds.

A side that cannot run prints SKIP (and why); a run that fails or times out
prints FAILED (and why). Neither ever prints a number.

Standard library only (Python >= 3.8): os.posix_spawn, os.wait4, ctypes.
"""

import argparse
import ctypes
import fcntl
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# The guest writes 0 to port 0xf4: both VMMs exit with (0 << 1) | 1.
EXPECTED_STATUS = 1

QEMU_MACHINE = "microvm,x-option-roms=off,rtc=off,pit=off,pic=off,isa-serial=off"


def qemu_argv(qemu, accel, guest):
    return [qemu, "-M", QEMU_MACHINE, "-accel", accel, "-m", "64M",
            "-nodefaults", "-no-user-config", "-nographic", "-display", "none",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", guest]


def tarn_argv(tarn, backend, guest):
    return [tarn, "run", "--kernel", guest, "--mem", "64M", "--backend", backend]


# ---------------------------------------------------------------- running

class Run:
    """The outcome of one VMM run."""

    def __init__(self):
        self.status = None      # raw wait status
        self.timed_out = False
        self.wall_ns = None     # exec -> reaped (untraced runs)
        self.teardown_ns = None  # exit_group -> reaped (traced runs)
        self.hwm_kib = None     # VmHWM at the exit_group stop (traced runs)
        self.file_kib = None    # RssFile at that stop
        self.stderr = ""
        self.error = None       # set when the run itself could not be made

    def exit_desc(self):
        if self.error:
            return self.error
        if self.timed_out:
            return "timed out after %g s" % TIMEOUT
        if os.WIFSIGNALED(self.status):
            sig = os.WTERMSIG(self.status)
            try:
                name = signal.Signals(sig).name
            except ValueError:
                name = "?"
            return "killed by signal %d (%s)" % (sig, name)
        return "exit status %d" % os.WEXITSTATUS(self.status)

    def first_stderr_line(self):
        for line in self.stderr.splitlines():
            if line.strip():
                return line.strip()[:160]
        return "no output on stderr"


TIMEOUT = 20.0
_current_pid = None
_alarm_fired = False


def _on_alarm(signum, frame):
    global _alarm_fired
    _alarm_fired = True
    if _current_pid:
        try:
            os.kill(_current_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _arm():
    global _alarm_fired, _current_pid
    _alarm_fired = False
    _current_pid = None
    signal.setitimer(signal.ITIMER_REAL, TIMEOUT)


def _disarm():
    global _current_pid
    signal.setitimer(signal.ITIMER_REAL, 0)
    _current_pid = None


def _read_stderr(f):
    f.seek(0)
    return f.read().decode("utf-8", "replace")


def run_plain(argv):
    """One untraced run: wall clock from just before exec to reaped.
    posix_spawn (glibc: clone(CLONE_VM|CLONE_VFORK))
    returns once the exec is done, so t0 is taken right before it."""
    r = Run()
    with tempfile.TemporaryFile() as err, open(os.devnull, "r+b") as null:
        fa = [(os.POSIX_SPAWN_DUP2, null.fileno(), 0),
              (os.POSIX_SPAWN_DUP2, null.fileno(), 1),
              (os.POSIX_SPAWN_DUP2, err.fileno(), 2)]
        global _current_pid
        _arm()
        t0 = time.perf_counter_ns()
        try:
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=fa)
        except OSError as e:
            _disarm()
            r.error = "cannot exec %s: %s" % (argv[0], e.strerror)
            return r
        _current_pid = pid
        _, status, _ = os.wait4(pid, 0)
        t1 = time.perf_counter_ns()
        _disarm()
        r.status = status
        r.timed_out = _alarm_fired and os.WIFSIGNALED(status)
        r.wall_ns = t1 - t0
        r.stderr = _read_stderr(err)
    return r


# ptrace, through libc (no pip packages)
PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_O_TRACECLONE = 0x8
PTRACE_O_TRACEEXIT = 0x40
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_CLONE = 3
PTRACE_EVENT_EXIT = 6
WALL = 0x40000000  # __WALL: wait for threads too

_libc = None


def libc():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
        _libc.ptrace.restype = ctypes.c_long
    return _libc


def _ptrace(req, pid, addr=None, data=None):
    return libc().ptrace(req, pid, addr, data)


def mem_status_kib(pid, tid):
    """(VmHWM, RssFile) of thread tid's address space, the whole
    process's, in KiB. Read through the thread's own entry: the group
    leader may be past exit_mm already."""
    got = {}
    try:
        with open("/proc/%d/task/%d/status" % (pid, tid)) as f:
            for l in f:
                k = l.split(":", 1)[0]
                if k in ("VmHWM", "RssFile"):
                    got[k] = int(l.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return got.get("VmHWM"), got.get("RssFile")


def run_traced(argv):
    """One run under ptrace, following every thread (PTRACE_O_TRACECLONE)
    and stopping each at the start of its exit (PTRACE_O_TRACEEXIT, before
    the kernel tears down its memory). The first stop whose exit code is the
    guest's status marks the exit_group() call: it is the caller's own stop
    or that of a thread it killed, both after the call (a thread that ends
    on its own exits with 0). Teardown is from there to the moment no child
    is left to reap. At that stop the thread still holds the address space:
    its VmHWM and RssFile are read then."""
    r = Run()
    with tempfile.TemporaryFile() as err, open(os.devnull, "r+b") as null:
        libc()
        global _current_pid
        _arm()
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(null.fileno(), 0)
                os.dup2(null.fileno(), 1)
                os.dup2(err.fileno(), 2)
                if _ptrace(PTRACE_TRACEME, 0) != 0:
                    os.write(2, b"ptrace(PTRACE_TRACEME) failed: %s\n"
                             % os.strerror(ctypes.get_errno()).encode())
                    os._exit(126)
                os.execv(argv[0], argv)
            except BaseException as e:
                try:
                    os.write(2, ("cannot exec %s: %s\n" % (argv[0], e)).encode())
                finally:
                    os._exit(127)
            os._exit(127)
        _current_pid = pid
        t_exit = None
        leader_status = None
        first = True
        while True:
            try:
                tid, status, _ = os.wait4(-1, WALL)
            except ChildProcessError:
                t_end = time.perf_counter_ns()
                break
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                if tid == pid:
                    leader_status = status
                continue
            if not os.WIFSTOPPED(status):
                continue
            sig = os.WSTOPSIG(status)
            event = status >> 16
            deliver = 0
            if first and tid == pid:
                # The SIGTRAP after exec: start following threads and exits.
                first = False
                _ptrace(PTRACE_SETOPTIONS, pid, None,
                        PTRACE_O_TRACECLONE | PTRACE_O_TRACEEXIT | PTRACE_O_EXITKILL)
            elif event == PTRACE_EVENT_EXIT:
                msg = ctypes.c_ulong(0)
                _ptrace(PTRACE_GETEVENTMSG, tid, None, ctypes.addressof(msg))
                if t_exit is None and msg.value == (EXPECTED_STATUS << 8):
                    # Read first: the thread is stopped, so the read costs
                    # the tracer, not the teardown.
                    r.hwm_kib, r.file_kib = mem_status_kib(pid, tid)
                    t_exit = time.perf_counter_ns()
            elif event == PTRACE_EVENT_CLONE or sig == signal.SIGSTOP:
                pass  # a new thread's first stop, or its parent's clone event
            elif sig != signal.SIGTRAP:
                deliver = sig  # an ordinary signal: hand it on
            _ptrace(PTRACE_CONT, tid, None, deliver)
        _disarm()
        r.status = leader_status if leader_status is not None else 0
        r.timed_out = _alarm_fired and leader_status is not None and os.WIFSIGNALED(leader_status)
        r.stderr = _read_stderr(err)
        if leader_status is None:
            r.error = "the traced process vanished"
        elif t_exit is not None:
            r.teardown_ns = t_end - t_exit
    return r


def run_console(argv, timeout):
    """Run a VMM that boots a Linux guest, with its serial console (stdout,
    stderr merged) on a pipe, and note when each console line arrives.
    Returns (lines, exit_ns, status, tail): lines is [(ns since the spawn,
    line)] in order (bytes, line ends stripped), exit_ns the time the VMM had
    exited, status its exit status; both None when it timed out (it is then
    killed). tail is the console's last 300 bytes. For boot.py and io.py."""
    t0 = time.perf_counter_ns()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    lines = []
    part = b""
    tail = b""
    deadline = t0 + int(timeout * 1e9)
    while True:
        left = (deadline - time.perf_counter_ns()) / 1e9
        if left <= 0:
            p.kill()
            p.wait()
            return lines, None, None, tail
        if not sel.select(timeout=left):
            continue
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        now = time.perf_counter_ns() - t0
        tail = (tail + chunk)[-300:]
        *done, part = (part + chunk).split(b"\n")
        lines += [(now, l.rstrip(b"\r")) for l in done]
        part = part[-65536:]
    status = p.wait()
    if part:
        lines.append((time.perf_counter_ns() - t0, part))
    return lines, time.perf_counter_ns() - t0, status, tail


# ---------------------------------------------------------------- the VMMs

class Side:
    """One VMM: how to run it, and whether it can run at all."""

    def __init__(self, name, argv, skip=None, check_stderr=False):
        self.name = name
        self.argv = argv
        self.skip = skip          # reason this side cannot run, or None
        self.failed = None        # "FAILED (...)" once a run has failed
        self.check_stderr = check_stderr
        self.values = {}          # metric -> [figures]
        self.metric_failed = {}   # metric -> SKIP/FAILED text

    def judge(self, r, what):
        """None if run r reached the guest's exit, else a FAILED text."""
        ok = (r.error is None and not r.timed_out and os.WIFEXITED(r.status)
              and os.WEXITSTATUS(r.status) == EXPECTED_STATUS)
        # QEMU also exits 1 on its own errors ("could not load kernel"); the
        # guest's exit leaves stderr empty but for warnings.
        if ok and self.check_stderr:
            bad = [l for l in r.stderr.splitlines() if l.strip() and "warning" not in l]
            if bad:
                ok = False
        if ok:
            return None
        return "FAILED (%s%s: %s)" % (what, r.exit_desc(), r.first_stderr_line())


def arg_parser(description, runs_var, runs, timeout_var, timeout):
    """A parser with the options every bench script takes: the two VMMs, the
    pair, runs and timeout (the variables runs_var and timeout_var override
    their defaults). parse_args() checks runs and timeout."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--tarn", required=True, help="the tarn binary")
    ap.add_argument("--tarn-unbuilt", action="store_true",
                    help="tarn's build failed: report its figures as SKIP")
    ap.add_argument("--qemu", default=os.environ.get("BENCH_QEMU") or "qemu-system-x86_64")
    ap.add_argument("--runs", type=int, default=int(os.environ.get(runs_var) or runs))
    ap.add_argument("--accel", default=os.environ.get("BENCH_ACCEL", ""))
    ap.add_argument("--timeout", type=float, default=float(os.environ.get(timeout_var) or timeout))
    ap.set_defaults(runs_var=runs_var, timeout_var=timeout_var)
    return ap


def parse_args(ap):
    a = ap.parse_args()
    if a.runs < 1:
        sys.exit("bench: %s must be at least 1" % a.runs_var)
    if a.timeout <= 0:
        sys.exit("bench: %s must be positive" % a.timeout_var)
    return a


def guest_arg_parser(description, what, runs, timeout):
    """The options every default-guest benchmark takes; BENCH_<WHAT>_RUNS and
    BENCH_<WHAT>_TIMEOUT override the defaults."""
    ap = arg_parser(description, "BENCH_%s_RUNS" % what, runs, "BENCH_%s_TIMEOUT" % what, timeout)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--cmdline", required=True)
    ap.add_argument("--mem", default="512M")
    return ap


def kvm_usable(tarn=None, pvm_ok=False):
    """None when KVM can run the benchmark guests, else why not. Where tarn
    is built its own probe decides (`tarn probe kvm`, the one the tests use):
    PVM, a software KVM that runs only kernels built as PVM guests, does
    not count unless pvm_ok (a benchmark of micro-guests only, which PVM
    runs). Without tarn: /dev/kvm must open and speak API 12."""
    if tarn and os.access(tarn, os.X_OK):
        r = subprocess.run([tarn, "probe", "kvm"], capture_output=True, text=True)
        line = r.stdout.strip()
        if r.returncode != 0:
            return line.split("unusable: ", 1)[-1] or "tarn probe kvm failed"
        if line.endswith(", pvm") and not pvm_ok:
            return "/dev/kvm is PVM, which runs only kernels built as PVM guests"
        return None
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return "/dev/kvm: %s" % e.strerror
    try:
        v = fcntl.ioctl(fd, 0xAE00)  # KVM_GET_API_VERSION
        if v != 12:
            return "/dev/kvm: API version %d, not 12" % v
    except OSError as e:
        return "/dev/kvm: KVM_GET_API_VERSION: %s" % e.strerror
    finally:
        os.close(fd)
    return None


def side_skips(tarn_path, tarn_unbuilt, qemu_path, qemu_name, tbackend, qaccel, pvm_ok=False):
    """{'tarn': why or None, 'qemu': why or None}: which side cannot run.
    For the scripts that share this file's helpers (cpu.py, boot.py);
    pvm_ok as kvm_usable's."""
    skip = {"tarn": None, "qemu": None}
    if tarn_unbuilt or not os.access(tarn_path, os.X_OK):
        skip["tarn"] = "tarn not built"
    if not qemu_path:
        skip["qemu"] = "%s not found (apt-get install qemu-system-x86)" % qemu_name
    why = kvm_usable(tarn_path, pvm_ok)
    for side, acc in (("tarn", tbackend), ("qemu", qaccel)):
        if acc == "kvm" and why:
            skip[side] = skip[side] or why
    return skip


def choose_pair(spec, tarn=None):
    """BENCH_ACCEL -> (qemu accel, tarn backend). Empty: kvm when KVM is
    usable (kvm_usable), else the software pair tcg/emu. 'kvm', 'tcg' or
    'emu' name a pair; 'QEMU/TARN' (e.g. tcg/kvm) names each side."""
    if not spec:
        return ("kvm", "kvm") if kvm_usable(tarn) is None else ("tcg", "emu")
    if "/" in spec:
        q, t = spec.split("/", 1)
        return q, t
    if spec == "kvm":
        return "kvm", "kvm"
    if spec in ("tcg", "emu"):
        return "tcg", "emu"
    sys.exit("bench: BENCH_ACCEL=%s: expected kvm, tcg, emu or QEMU/TARN (e.g. tcg/emu)" % spec)


# ---------------------------------------------------------------- output

def tool_version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].strip() if out else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for l in f:
                if l.startswith("model name"):
                    return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


# ---------------------------------------------------------------- main

def side_text(side, metric, fmt, unit):
    """(median or None, text) of one side's figure for one metric."""
    if side.skip:
        return None, "SKIP (%s)" % side.skip
    if side.failed:
        return None, side.failed
    fail = side.metric_failed.get(metric)
    if fail:
        return None, fail
    v = side.values.get(metric)
    if not v:
        return None, "SKIP (no figure)"
    if metric in DERIVED:
        return v[0], "%s %s" % (fmt(v[0]), unit)
    med = statistics.median(v)
    return med, "%s %s (min %s)" % (fmt(med), unit, fmt(min(v)))


def print_row(tag, title, tarn_text, qemu_text, ratio):
    """One figure's line, the same in every bench script."""
    print("%s %-30s tarn: %-26s  qemu: %-26s  tarn/qemu: %s"
          % (tag, title, tarn_text, qemu_text, ratio), flush=True)


def print_line(tag, title, tarn, qemu, metric, fmt, unit):
    tm, ts = side_text(tarn, metric, fmt, unit)
    qm, qs = side_text(qemu, metric, fmt, unit)
    print_row(tag, title, ts, qs, "%.3f" % (tm / qm) if tm is not None and qm else "n/a")


def ms(ns):
    return "%.2f" % (ns / 1e6)


def mib(kib):
    return "%.1f" % (kib / 1024.0)


# Figures computed from other figures' medians: one value, no min.
DERIVED = ("exit_group", "above_floor")


def main():
    global TIMEOUT
    ap = arg_parser("tarn vs QEMU: start latency, teardown, peak RSS",
                    "BENCH_RUNS", 10, "BENCH_TIMEOUT", 20)
    ap.add_argument("--guest", required=True, help="the exit-at-once PVH micro-guest")
    a = parse_args(ap)
    TIMEOUT = a.timeout
    if not os.path.isfile(a.guest):
        sys.exit("bench: no guest at %s (make bench builds it)" % a.guest)
    signal.signal(signal.SIGALRM, _on_alarm)

    qaccel, tbackend = choose_pair(a.accel, os.path.abspath(a.tarn))
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)
    guest = os.path.abspath(a.guest)

    # Who can run at all.
    tarn_path = os.path.abspath(a.tarn)
    tskip = qskip = None
    if a.tarn_unbuilt:
        tskip = "make tarn failed; not measuring a stale %s" % a.tarn
    elif not os.access(tarn_path, os.X_OK):
        tskip = "%s not built" % a.tarn
    qemu_path = shutil.which(a.qemu)
    if not qemu_path:
        qskip = "%s not found (apt-get install qemu-system-x86)" % a.qemu
    if "kvm" in (qaccel, tbackend):
        why = kvm_usable(tarn_path)
        if why and qaccel == "kvm":
            qskip = qskip or "accel kvm: " + why
        if why and tbackend == "kvm":
            tskip = tskip or "backend kvm: " + why
    tarn = Side("tarn", tarn_argv(tarn_path, tbackend, guest), tskip)
    qemu = Side("qemu", qemu_argv(qemu_path or a.qemu, qaccel, guest), qskip, check_stderr=True)
    # The harness floor: the smallest process that exits with the same
    # status, through the same spawn, wait and trace code.
    false_path = shutil.which("false")
    floor = Side("floor", [false_path or "false"], None if false_path else "no 'false' in PATH")
    sides = [tarn, qemu, floor]

    print("tarn bench: %d runs per figure (after 1 warm-up run each), median (min); "
          "tarn/qemu < 1 means tarn costs less" % a.runs)
    print("  host:  %s, %d CPUs, Linux %s" % (cpu_model(), os.cpu_count() or 0, os.uname().release))
    for s in (tarn, qemu):
        print("  %s:  %s" % (s.name, " ".join(s.argv) if not s.skip else "SKIP (%s)" % s.skip))
    if not qemu.skip:
        print("         (%s)" % tool_version([qemu_path, "--version"]))
    print("  guest: %s (PVH note, 32-bit entry: out %%eax=0 to port 0xf4; expected exit status %d)"
          % (a.guest, EXPECTED_STATUS), flush=True)

    # Warm-up (page cache, dynamic linker caches): one run each, not
    # counted. A failure here ends that side.
    for s in sides:
        if not s.skip:
            s.failed = s.judge(run_plain(s.argv), "")

    # Sides take turns, rotating who goes first, so host noise falls on all.
    def rounds():
        for i in range(a.runs):
            k = i % len(sides)
            for s in sides[k:] + sides[:k]:
                yield i, s

    # start: untraced runs.
    for i, s in rounds():
        if s.skip or s.failed:
            continue
        r = run_plain(s.argv)
        s.failed = s.judge(r, "run %d/%d: " % (i + 1, a.runs))
        if not s.failed:
            s.values.setdefault("start", []).append(r.wall_ns)

    # teardown and peak RSS: traced runs.
    traced = ("teardown", "peak_rss", "rss_file", "exit_group")
    for i, s in rounds():
        if s.skip or s.failed or "teardown" in s.metric_failed:
            continue
        r = run_traced(s.argv)
        if (r.status is not None and os.WIFEXITED(r.status) and os.WEXITSTATUS(r.status) == 126
                and "PTRACE_TRACEME" in r.stderr):
            why = "SKIP (%s)" % r.first_stderr_line()
        else:
            why = s.judge(r, "traced run %d/%d: " % (i + 1, a.runs))
        if why is None and (r.teardown_ns is None or r.hwm_kib is None or r.file_kib is None):
            why = "FAILED (traced run %d/%d: no exit_group stop seen)" % (i + 1, a.runs)
        if why:
            for m in traced:
                s.metric_failed[m] = why
            continue
        s.values.setdefault("teardown", []).append(r.teardown_ns)
        s.values.setdefault("peak_rss", []).append(r.hwm_kib)
        s.values.setdefault("rss_file", []).append(r.file_kib)

    def med(s, m):
        v = s.values.get(m)
        return statistics.median(v) if v and m not in s.metric_failed else None

    fstart = med(floor, "start")
    for s in sides:
        start, td = med(s, "start"), med(s, "teardown")
        if start is not None and td is not None:
            s.values["exit_group"] = [start - td]
        if s is not floor:
            if start is not None and fstart is not None:
                s.values["above_floor"] = [start - fstart]
            else:
                s.metric_failed["above_floor"] = "SKIP (no floor figure)"

    print_line(tag, "start (exec->exit, wall)", tarn, qemu, "start", ms, "ms")
    print_line(tag, "teardown (exit_group->reaped)", tarn, qemu, "teardown", ms, "ms")
    print_line(tag, "exec->exit_group (derived)", tarn, qemu, "exit_group", ms, "ms")
    print_line(tag, "start above floor (derived)", tarn, qemu, "above_floor", ms, "ms")
    print_line(tag, "peak RSS (VmHWM)", tarn, qemu, "peak_rss", mib, "MiB")
    print_line(tag, "  of it file-backed (RssFile)", tarn, qemu, "rss_file", mib, "MiB")
    print("[harness floor] %s, same spawn/trace code: start %s, teardown %s, peak RSS %s"
          % (floor.argv[0], side_text(floor, "start", ms, "ms")[1],
             side_text(floor, "teardown", ms, "ms")[1],
             side_text(floor, "peak_rss", mib, "MiB")[1]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
