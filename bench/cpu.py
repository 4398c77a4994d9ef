#!/usr/bin/env python3
"""Emulator speed: guest instructions per second on a fixed integer workload
(bench/guest_int.S), tarn and QEMU side by side in the same run.

Each VMM boots the workload guest and, separately, the exit-at-once guest
(bench/guest_exit.S), BENCH_RUNS times each, alternating. The workload's
time is its median wall time minus the same VMM's median start-to-exit time
on the empty guest, so VMM start-up does not count against either CPU:

    guest MIPS = GUEST_INSNS / (median t(workload) - median t(empty)) / 1e6

GUEST_INSNS is exact (read from the guest ELF's symbol table). Both VMMs must
end with the same exit status -- the guest writes its result to the
debug-exit port -- or the figure reads FAILED: a fast wrong answer is no
answer. Standard library only; shares bench.py's spawn and timeout code."""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402


def guest_insns(elf):
    out = subprocess.run(["nm", elf], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[2] == "GUEST_INSNS":
            return int(f[0], 16)
    sys.exit("bench: %s has no GUEST_INSNS symbol" % elf)


def main():
    ap = argparse.ArgumentParser(description="tarn vs QEMU: guest instructions per second")
    ap.add_argument("--tarn", required=True)
    ap.add_argument("--tarn-unbuilt", action="store_true")
    ap.add_argument("--qemu", default=os.environ.get("BENCH_QEMU") or "qemu-system-x86_64")
    ap.add_argument("--guest", required=True, help="the integer workload guest")
    ap.add_argument("--empty", required=True, help="the exit-at-once guest")
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_CPU_RUNS") or 5))
    ap.add_argument("--accel", default=os.environ.get("BENCH_ACCEL", ""))
    ap.add_argument("--timeout", type=float, default=float(os.environ.get("BENCH_TIMEOUT") or 60))
    a = ap.parse_args()
    b.TIMEOUT = max(a.timeout, 1.0)
    signal.signal(signal.SIGALRM, b._on_alarm)
    qaccel, tbackend = b.choose_pair(a.accel, os.path.abspath(a.tarn))
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)
    insns = guest_insns(a.guest)
    guest, empty = os.path.abspath(a.guest), os.path.abspath(a.empty)

    tarn_path = os.path.abspath(a.tarn)
    qemu_path = shutil.which(a.qemu)
    skip = b.side_skips(tarn_path, a.tarn_unbuilt, qemu_path, a.qemu, tbackend, qaccel)
    argv = {
        "tarn": lambda g: b.tarn_argv(tarn_path, tbackend, g),
        "qemu": lambda g: b.qemu_argv(qemu_path or a.qemu, qaccel, g),
    }
    times = {s: {"work": [], "empty": []} for s in argv}
    status = {}
    failed = {}

    print("tarn bench cpu: integer workload, %d guest instructions, %d runs each, median"
          % (insns, a.runs), flush=True)
    for i in range(a.runs + 1):  # run 0 warms up
        for side in (("tarn", "qemu") if i % 2 else ("qemu", "tarn")):
            if skip[side] or side in failed:
                continue
            for kind, g in (("work", guest), ("empty", empty)):
                r = b.run_plain(argv[side](g))
                if r.error or r.timed_out or not os.WIFEXITED(r.status):
                    failed[side] = "FAILED (%s%s)" % (r.exit_desc(),
                                                      ": " + r.first_stderr_line()
                                                      if r.stderr else "")
                    break
                code = os.WEXITSTATUS(r.status)
                if kind == "empty" and code != b.EXPECTED_STATUS:
                    failed[side] = "FAILED (empty guest exited %d)" % code
                    break
                if kind == "work":
                    status.setdefault(side, set()).add(code)
                if i:
                    times[side][kind].append(r.wall_ns)

    mips = {}
    text = {}
    for side in argv:
        if skip[side]:
            text[side] = "SKIP (%s)" % skip[side]
        elif side in failed:
            text[side] = failed[side]
        elif len(status[side]) != 1 or not (next(iter(status[side])) & 1):
            text[side] = "FAILED (exit statuses %s)" % sorted(status[side])
        else:
            w = statistics.median(times[side]["work"])
            e = statistics.median(times[side]["empty"])
            if w <= e:
                text[side] = "FAILED (workload no slower than the empty guest)"
                continue
            mips[side] = insns / ((w - e) / 1e9) / 1e6
            text[side] = "%.1f MIPS (%.0f ms - %.0f ms start)" % (mips[side], w / 1e6, e / 1e6)
    if len(mips) == 2 and status["tarn"] != status["qemu"]:
        text["tarn"] = "FAILED (result %s, QEMU's %s)" % (sorted(status["tarn"]),
                                                        sorted(status["qemu"]))
        del mips["tarn"]
    ratio = "%.3f" % (mips["tarn"] / mips["qemu"]) if len(mips) == 2 else "n/a"
    print("%s %-30s tarn: %-34s  qemu: %-34s  tarn/qemu: %s"
          % (tag, "integer workload (guest MIPS)", text["tarn"], text["qemu"], ratio), flush=True)
    print("  (a speed: tarn/qemu > 1 means tarn is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
