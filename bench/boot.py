#!/usr/bin/env python3
"""Linux boot time: the default guest (make guest) booted to power-off under
tarn and under QEMU, with the same kernel, initramfs and command line, in the
same run, BENCH_BOOT_RUNS times each (default 5), in turns.

QEMU boots two machines: -M pc (SeaBIOS, the PC every distribution's QEMU
defaults to) and -M microvm,rtc=on (qboot, no PCI firmware scan: the
closest to tarn's direct boot; rtc=on because without the CMOS clock the
guest waits for one), so firmware time is visible.

Two command lines: the stock one (what `make run` gives, less
cryptomgr.notests: a user's command line does not carry it) -- the
headline -- and with cryptomgr.notests, which skips the crypto API's
boot-time self-tests (about 1 G instructions of integer work: ~20 s under
tarn's interpreter, under 1 s under QEMU's JIT or on KVM).

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


def qemu_argv(qemu, accel, kernel, initrd, cmdline, mem, machine="pc"):
    return [qemu, "-M", machine, "-accel", accel, "-m", mem, "-nodefaults", "-no-user-config",
            "-display", "none", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel, "-initrd", initrd, "-append", cmdline]


QEMU_MACHINES = (("qemu", "pc"), ("qemu-microvm", "microvm,rtc=on"))
NOTESTS = "cryptomgr.notests"


def boot_once(argv, timeout):
    """(banner_ns, exit_ns, status, tail) of one boot; None for what did not happen."""
    lines, off, status, tail = b.run_console(argv, timeout)
    banner = next((t for t, line in lines if BANNER in line), None)
    return banner, off, status, tail


def measure(a, sides, skip, tag, label):
    """BENCH_BOOT_RUNS boots of each side in turns; print the rows."""
    figures = {s: {"banner": [], "off": []} for s in sides}
    failed = {}
    names = list(sides)
    for i in range(a.runs):
        for s in names[i % len(names):] + names[:i % len(names)]:
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

    for m, title in (("banner", "banner"), ("off", "power-off")):
        tm, ts = text("tarn", m)
        for q, machine in QEMU_MACHINES:
            qm, qs = text(q, m)
            b.print_row(tag, "%s: %s vs %s" % (label, title, machine.split(",")[0]), ts, qs,
                        "%.2f" % (tm / qm) if tm is not None and qm else "n/a")


def main():
    ap = b.guest_arg_parser("tarn vs QEMU: Linux boot to init and to power-off", "BOOT", 5, 120)
    a = b.parse_args(ap)
    qaccel, tbackend = b.choose_pair(a.accel, os.path.abspath(a.tarn))
    tag = "[tarn=%s qemu=%s]" % (tbackend, qaccel)
    for f in (a.kernel, a.initrd):
        if not os.path.isfile(f):
            sys.exit("bench: %s missing (make guest)" % f)
    stock = " ".join(w for w in a.cmdline.split() if w != NOTESTS)
    qemu_path = shutil.which(a.qemu)
    tarn_path = os.path.abspath(a.tarn)
    skip1 = b.side_skips(tarn_path, a.tarn_unbuilt, qemu_path, a.qemu, tbackend, qaccel)
    skip = {"tarn": skip1["tarn"]}
    for q, _ in QEMU_MACHINES:
        skip[q] = skip1["qemu"]
    # tarn exits 0 on power-off; QEMU with -no-reboot exits 0 too.
    print("tarn bench boot: default guest to power-off, %d runs each, median (min)" % a.runs)
    for label, cmdline in (("stock", stock), ("notests", stock + " " + NOTESTS)):
        cmdline += " tarn.cmd=true"
        sides = {"tarn": tarn_argv(tarn_path, tbackend, a.kernel, a.initrd, cmdline, a.mem)}
        for q, machine in QEMU_MACHINES:
            sides[q] = qemu_argv(qemu_path or a.qemu, qaccel, a.kernel, a.initrd, cmdline, a.mem,
                                 machine)
        print("  %s command line:" % label)
        for s, argv in sides.items():
            print("    %s: %s" % (s, " ".join(argv) if not skip[s] else "SKIP (%s)" % skip[s]))
        sys.stdout.flush()
        measure(a, sides, skip, tag, label)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    sys.exit(main())
