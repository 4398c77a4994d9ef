#!/usr/bin/env python3
"""CPU speed: tarn and QEMU side by side in the same run, one line per
figure (bench/README.md, "CPU speed").

  int      guest MIPS on a fixed integer loop, 32-bit, paging off
           (bench/guest_int.S)
  chase    64-bit, 4-level paging, ring 3: a dependent pointer chase over
           8192 pages in one random cycle, more pages than a TLB holds
  syscall  SYSCALL/SYSRET round trips, ring 3 -> ring 0 -> ring 3
  fault    #PF from ring 3, handler maps the page, unmaps the last one
           with INVLPG, IRETQ
           (the last three: bench/guest_long.S, one ELF per figure)

Each VMM boots a figure's workload guest and its baseline guest, BENCH_CPU_RUNS
times each, alternating, after a warm-up run. The figure is

    rate = OPS / (median t(workload) - median t(baseline))

where OPS is exact (the ELF's GUEST_INSNS or GUEST_OPS symbol). The baseline
of the integer loop is the exit-at-once guest (bench/guest_exit.S); that of a
long-mode figure is its set-up twin, the same build with the measured loop
run zero times, so start-up, page tables, shuffles and the host's first
touch of the guest's data pages count against neither CPU. Every guest
writes its result to the debug-exit port: the integer guest a checksum that
must be the same for both VMMs, a long-mode guest GUEST_OK only if its own
checks passed; anything else reads FAILED -- a fast wrong answer is no
answer. Standard library only; shares bench.py's spawn and timeout code."""

import os
import shutil
import signal
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402

# name: (title, unit, scale, what the operation count counts)
FIGURES = {
    "int": ("integer workload (guest MIPS)", "MIPS", 1e6,
            "guest instructions of an 18-instruction loop, 32-bit, paging off"),
    "chase": ("64-bit pointer chase (M loads/s)", "M/s", 1e6,
              "dependent loads, ring 3, over 8192 4 KiB pages in one random cycle"),
    "syscall": ("64-bit syscall+sysret (M/s)", "M/s", 1e6,
                "SYSCALL/SYSRET round trips, ring 3 -> ring 0 (swapgs, stack switch) -> ring 3"),
    "fault": ("64-bit page faults (k/s)", "k/s", 1e3,
              "#PF from ring 3, handler maps the page, unmaps the last with INVLPG, IRETQ"),
}
LONG = ("chase", "syscall", "fault")

# The long-mode guests' exit values other than GUEST_OK (guest_long.S).
LONG_CHECKS = {
    1: "the chase did not end where it began",
    2: "wrong number of system calls",
    3: "wrong sum of system call results",
    4: "wrong number of page faults",
    5: "a page's counter is wrong",
    6: "#PF error code is not user, not present",
    7: "#PF CR2 outside the faulting pages",
}


def elf_symbol(elf, name):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == name:
            return int(f[0], 16)
    sys.exit("bench: %s has no %s symbol" % (elf, name))


def long_failure(code):
    """Why a long-mode guest's exit value is not GUEST_OK."""
    if code in LONG_CHECKS:
        return "guest check %d failed: %s" % (code, LONG_CHECKS[code])
    if 0x20 <= code < 0x40:
        return "guest took exception %d" % (code - 0x20)
    return "guest exit value %#x" % code


class Figure:
    def __init__(self, name, work, base, ops, ok=None):
        self.name = name
        self.title, self.unit, self.scale, self.what = FIGURES[name]
        self.work, self.base, self.ops = work, base, ops
        self.ok = ok  # the long guests' success value, None: compare sides


def measure(fig, argv, skip, runs, tag):
    """Run one figure on both sides and print its line."""
    times = {s: {"work": [], "base": []} for s in argv}
    status = {}
    failed = {}
    for i in range(runs + 1):  # run 0 warms up
        for side in (("tarn", "qemu") if i % 2 else ("qemu", "tarn")):
            if skip[side] or side in failed:
                continue
            for kind, g in (("work", fig.work), ("base", fig.base)):
                r = b.run_plain(argv[side](g))
                if r.error or r.timed_out or not os.WIFEXITED(r.status):
                    failed[side] = "FAILED (%s%s)" % (r.exit_desc(),
                                                      ": " + r.first_stderr_line()
                                                      if r.stderr else "")
                    break
                code = os.WEXITSTATUS(r.status)
                if fig.ok is not None and code != (fig.ok << 1) | 1:
                    failed[side] = "FAILED (%s%s)" % (
                        "baseline: " if kind == "base" else "",
                        long_failure(code >> 1) if code & 1 else "exit status %d" % code)
                    break
                if kind == "base" and fig.ok is None and code != b.EXPECTED_STATUS:
                    failed[side] = "FAILED (empty guest exited %d)" % code
                    break
                if kind == "work":
                    status.setdefault(side, set()).add(code)
                if i:
                    times[side][kind].append(r.wall_ns)

    rate = {}
    text = {}
    base_name = "start" if fig.ok is None else "set-up"
    for side in argv:
        if skip[side]:
            text[side] = "SKIP (%s)" % skip[side]
        elif side in failed:
            text[side] = failed[side]
        elif len(status[side]) != 1 or not (next(iter(status[side])) & 1):
            text[side] = "FAILED (exit statuses %s)" % sorted(status[side])
        else:
            w = statistics.median(times[side]["work"])
            e = statistics.median(times[side]["base"])
            if w <= e:
                text[side] = "FAILED (workload no slower than its baseline)"
                continue
            rate[side] = fig.ops / ((w - e) / 1e9) / fig.scale
            text[side] = "%.2f %s (%.0f ms - %.0f ms %s)" % (rate[side], fig.unit, w / 1e6,
                                                          e / 1e6, base_name)
    if len(rate) == 2 and status["tarn"] != status["qemu"]:
        text["tarn"] = "FAILED (result %s, QEMU's %s)" % (sorted(status["tarn"]),
                                                        sorted(status["qemu"]))
        del rate["tarn"]
    ratio = "%.3f" % (rate["tarn"] / rate["qemu"]) if len(rate) == 2 else "n/a"
    print("%s %-33s tarn: %-38s  qemu: %-38s  tarn/qemu: %s"
          % (tag, fig.title, text["tarn"], text["qemu"], ratio), flush=True)


def main():
    ap = b.arg_parser("tarn vs QEMU: CPU speed", "BENCH_CPU_RUNS", 5, "BENCH_TIMEOUT", 60)
    ap.add_argument("--guest", required=True, help="the integer workload guest")
    ap.add_argument("--empty", required=True, help="the exit-at-once guest")
    ap.add_argument("--long", help="the long-mode guests' path prefix: PREFIX_chase.elf, "
                    "PREFIX_chase_setup.elf, ... (bench/bench.mk builds them)")
    ap.add_argument("--figures", default=os.environ.get("BENCH_CPU_FIGURES") or ",".join(FIGURES),
                    help="comma-separated subset of %s" % ",".join(FIGURES))
    a = b.parse_args(ap)
    names = [f for f in a.figures.split(",") if f]
    bad = [f for f in names if f not in FIGURES]
    if bad or not names:
        sys.exit("bench: BENCH_CPU_FIGURES=%s: expected a comma-separated subset of %s"
                 % (a.figures, ",".join(FIGURES)))
    if not a.long:
        names = [f for f in names if f not in LONG]
    b.TIMEOUT = a.timeout
    signal.signal(signal.SIGALRM, b._on_alarm)
    qaccel, tbackend = b.choose_pair(a.accel, os.path.abspath(a.tarn))
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)

    figs = []
    for name in names:
        if name == "int":
            work, base = os.path.abspath(a.guest), os.path.abspath(a.empty)
            figs.append(Figure(name, work, base, elf_symbol(work, "GUEST_INSNS")))
            continue
        work = os.path.abspath("%s_%s.elf" % (a.long, name))
        base = os.path.abspath("%s_%s_setup.elf" % (a.long, name))
        ok = elf_symbol(work, "GUEST_OK")
        if elf_symbol(base, "GUEST_OPS") != 0 or elf_symbol(base, "GUEST_OK") != ok:
            sys.exit("bench: %s is not the set-up twin of %s" % (base, work))
        figs.append(Figure(name, work, base, elf_symbol(work, "GUEST_OPS"), ok))

    tarn_path = os.path.abspath(a.tarn)
    qemu_path = shutil.which(a.qemu)
    skip = b.side_skips(tarn_path, a.tarn_unbuilt, qemu_path, a.qemu, tbackend, qaccel)
    argv = {
        "tarn": lambda g: b.tarn_argv(tarn_path, tbackend, g),
        "qemu": lambda g: b.qemu_argv(qemu_path or a.qemu, qaccel, g),
    }

    print("tarn bench cpu: %d runs each (after a warm-up), median; speeds: "
          "tarn/qemu > 1 means tarn is faster" % a.runs)
    for f in figs:
        print("  %-8s %d %s" % (f.name + ":", f.ops, f.what))
    sys.stdout.flush()
    for f in figs:
        measure(f, argv, skip, a.runs, tag)
    return 0


if __name__ == "__main__":
    sys.exit(main())
