#!/usr/bin/env python3
"""Linux boot time: the default guest (make guest) booted to power-off under
tarn and under QEMU, with the same kernel, initramfs and command line, in the
same run, BENCH_BOOT_RUNS times each (default 5), alternating.

Two figures per VMM, medians over the runs:
  banner     exec of the VMM -> our init's "tarn-guest: init ready" line on
             the serial console (read from the VMM's stdout as it arrives)
  power-off  exec of the VMM -> the VMM exited after the guest's ACPI
             power-off (and its exit status must say so)
Both are costs: tarn/QEMU below 1 means tarn boots faster. The guest runs
tarn.cmd=true, so init starts, runs nothing and powers off.

Standard library only; shares bench.py's helpers for choosing the pair."""

import os
import shutil
import signal
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402

BANNER = b"tarn-guest: init ready"


def tarn_argv(tarn, backend, kernel, initrd, cmdline, mem):
    return [tarn, "run", "--backend", backend, "--kernel", kernel, "--initrd", initrd,
            "--cmdline", cmdline, "--mem", mem]


def qemu_argv(qemu, accel, kernel, initrd, cmdline, mem):
    return [qemu, "-M", "pc", "-accel", accel, "-m", mem, "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline]


def boot_once(argv, timeout):
    """(banner_ns, exit_ns, status, tail) of one boot; None for what did not happen."""
    lines, off, status, tail = b.run_console(argv, timeout)
    banner = next((t for t, line in lines if BANNER in line), None)
    return banner, off, status, tail


def main():
    ap = b.guest_arg_parser("tarn vs QEMU: Linux boot to init and to power-off", "BOOT", 5, 120)
    a = ap.parse_args()
    qaccel, tbackend = b.choose_pair(a.accel)
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)
    cmdline = a.cmdline + " tarn.cmd=true"
    for f in (a.kernel, a.initrd):
        if not os.path.isfile(f):
            sys.exit("bench: %s missing (make guest)" % f)

    qemu_path = shutil.which(a.qemu)
    tarn_path = os.path.abspath(a.tarn)
    sides = {
        "tarn": tarn_argv(tarn_path, tbackend, a.kernel, a.initrd, cmdline, a.mem),
        "qemu": qemu_argv(qemu_path or a.qemu, qaccel, a.kernel, a.initrd, cmdline, a.mem),
    }
    skip = b.side_skips(tarn_path, a.tarn_unbuilt, qemu_path, a.qemu, tbackend, qaccel)
    # tarn exits 0 on power-off; QEMU with -no-reboot exits 0 too.
    figures = {s: {"banner": [], "off": []} for s in sides}
    failed = {}

    print("tarn bench boot: default guest to power-off, %d runs each, median (min)" % a.runs)
    for s, argv in sides.items():
        print("  %s: %s" % (s, " ".join(argv) if not skip[s] else "SKIP (%s)" % skip[s]))
    sys.stdout.flush()
    for i in range(a.runs):
        for s in (("tarn", "qemu") if i % 2 else ("qemu", "tarn")):
            if skip[s] or s in failed:
                continue
            banner, off, status, tail = boot_once(sides[s], a.timeout)
            if banner is None or off is None or status != 0:
                why = ("timed out after %.0f s" % a.timeout if off is None
                       else "no banner" if banner is None else "exit status %d" % status)
                last = tail.decode("utf-8", "replace").strip().splitlines()
                failed[s] = "FAILED (run %d: %s%s)" % (i + 1, why,
                                                      ": " + last[-1][:80] if last else "")
                continue
            figures[s]["banner"].append(banner)
            figures[s]["off"].append(off)

    def text(s, m):
        if skip[s]:
            return None, "SKIP (%s)" % skip[s]
        if s in failed:
            return None, failed[s]
        v = figures[s][m]
        med = statistics.median(v)
        return med, "%.2f s (min %.2f)" % (med / 1e9, min(v) / 1e9)

    for m, title in (("banner", "boot to init's banner"), ("off", "boot to power-off")):
        tm, ts = text("tarn", m)
        qm, qs = text("qemu", m)
        b.print_row(tag, title, ts, qs, "%.2f" % (tm / qm) if tm is not None and qm else "n/a")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
