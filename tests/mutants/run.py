#!/usr/bin/env python3
"""Mutation testing: do the fast tests notice small, realistic bugs?

`make mutants` (or tests/mutants/run.py) applies each mutation declared in
tests/mutants/mutants.txt -- a flipped comparison, a dropped flag update, a
skipped bounds check, an off-by-one length -- one at a time to a scratch
copy of the tree, rebuilds what the tests of that file need, runs them, and
prints a table and `N/M killed (P %)`.

  killed     a mapped test failed (or hung past the time limit: "killed
             (timeout)"; a hang is something a user notices)
  survived   every mapped test passed: the tests miss this bug
  invalid    the mutant does not compile; reported, never counted
  equivalent the list gives a reason why no test can tell (an `equivalent`
             field); reported with its reason, left out of the ratio

The user's working tree is never touched: the sources (git's tracked and
untracked-but-not-ignored files) are copied to SCRATCH/tree (default
build-mutants/, next to build/), built there with O=build WERROR=0, and
kept between runs so only what changed is rebuilt. The mutated file is
restored after each mutant, also on Ctrl-C, and every run first brings the
copy back in line with the working tree. Before any mutant, the mapped
tests must pass on the unmutated copy (else every mutant would look
killed). Build and test output of each mutant goes to SCRATCH/logs/ID.log.

Usage: run.py [--only REGEX] [--list] [--scratch DIR] [--timeout S] [--min P]
  --only REGEX   run the mutants whose id or file matches (make MUTANTS=REGEX)
  --list         print the mutants and the tests mapped to them; run nothing
  --timeout S    test time allowed per mutant (default 60 s)
  --min P        exit 1 when fewer than P % are killed (default 90)
Exit status: 0 ok, 1 below --min, 2 a bad list (a snippet not found, or
found twice: the source moved on and the list must follow) or a failing
baseline.
"""

import argparse
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIST = os.path.join(ROOT, "tests", "mutants", "mutants.txt")
O = "build"  # the build directory inside the scratch tree


class ListError(Exception):
    pass


class Mutant:
    def __init__(self, mid, where):
        self.id = mid
        self.where = where  # mutants.txt:LINE, for error messages
        self.file = self.find = self.replace = self.why = self.equivalent = None
        self.line = 0  # line of the snippet in the source, once located
        self.tests = []


def unescape(s):
    """\\n, \\t and \\\\ in a snippet: multi-line snippets stay one list line."""
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "\\": "\\"}.get(m.group(1), m.group(0)), s)


def parse_list(path):
    maps, mutants, cur = [], [], None
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            where = "%s:%d" % (os.path.relpath(path, ROOT), n)
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if line.startswith("map "):
                prefix, sep, tests = line[4:].partition(":")
                if not sep or not tests.split():
                    raise ListError("%s: expected 'map PATH-PREFIX: TEST...'" % where)
                maps.append((prefix.strip(), tests.split()))
                cur = None
            elif line.startswith("mutant "):
                cur = Mutant(line[7:].strip(), where)
                if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", cur.id):
                    raise ListError("%s: mutant id '%s': lower-case letters, digits, '-'" % (where, cur.id))
                mutants.append(cur)
            elif line[:1] in " \t" and cur:
                key, _, val = line.strip().partition(" ")
                if key not in ("file", "find", "replace", "why", "equivalent"):
                    raise ListError("%s: unknown key '%s'" % (where, key))
                if getattr(cur, key) is not None:
                    raise ListError("%s: %s given twice for %s" % (where, key, cur.id))
                setattr(cur, key, unescape(val) if key in ("find", "replace") else val)
            else:
                raise ListError("%s: expected 'map', 'mutant' or an indented key" % where)
    seen = set()
    for m in mutants:
        for key in ("file", "find", "replace", "why"):
            if getattr(m, key) is None:
                raise ListError("%s: mutant %s has no '%s'" % (m.where, m.id, key))
        if m.id in seen:
            raise ListError("%s: mutant id %s used twice" % (m.where, m.id))
        seen.add(m.id)
        if m.find == m.replace:
            raise ListError("%s: mutant %s replaces its snippet with itself" % (m.where, m.id))
        if m.equivalent == "":
            raise ListError("%s: mutant %s: 'equivalent' needs its reason" % (m.where, m.id))
        for prefix, tests in maps:
            if m.file.startswith(prefix):
                m.tests = tests
                break
        else:
            raise ListError("%s: no 'map' line covers %s" % (m.where, m.file))
    return mutants


def locate(m, tree):
    """Check m's snippet occurs exactly once in its file; set m.line."""
    path = os.path.join(tree, m.file)
    try:
        with open(path) as f:
            src = f.read()
    except OSError as e:
        return "%s: mutant %s: %s: %s" % (m.where, m.id, m.file, e.strerror)
    n = src.count(m.find)
    if n != 1:
        return "%s: mutant %s: snippet %s %s in %s" % (
            m.where, m.id, repr(m.find), "not found" if n == 0 else "found %d times" % n, m.file)
    m.line = src[: src.index(m.find)].count("\n") + 1
    return None


# ---- the scratch copy ----

def source_files():
    out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         check=True, stdout=subprocess.PIPE).stdout
    return sorted(p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(ROOT, p)))


def same(a, b):
    try:
        if os.path.getsize(a) != os.path.getsize(b):
            return False
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return fa.read() == fb.read()
    except OSError:
        return False


def sync(tree):
    """Make tree a copy of the working tree's sources. A changed file gets a
    new mtime (copyfile, not copy2), so make rebuilds what depends on it."""
    files = source_files()
    manifest = os.path.join(tree, ".mutants-files")
    old = set()
    if os.path.exists(manifest):
        with open(manifest) as f:
            old = set(f.read().split("\0")) - {""}
    changed = 0
    for p in files:
        src, dst = os.path.join(ROOT, p), os.path.join(tree, p)
        if not same(src, dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)
            shutil.copymode(src, dst)
            changed += 1
    for p in old - set(files):  # deleted since: wildcard rules must not see it
        try:
            os.remove(os.path.join(tree, p))
        except FileNotFoundError:
            pass
    with open(manifest, "w") as f:
        f.write("\0".join(files))
    return changed


# ---- running things ----

class Timeout(Exception):
    pass


def run(cmd, cwd, log, timeout, env=None):
    """Run cmd in its own process group, output appended to log; its exit
    status, or Timeout. Any exit (timeout, Ctrl-C) kills the whole group."""
    log.write("$ %s\n" % " ".join(cmd))
    log.flush()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True, env=env)
    start = time.monotonic()
    try:
        rc = p.wait(timeout=timeout)
        log.write("# exit status %d after %.1f s\n" % (rc, time.monotonic() - start))
        return rc
    except subprocess.TimeoutExpired:
        raise Timeout()
    finally:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()


def target(test):
    """The build target a test needs (path inside the scratch tree)."""
    kind, _, arg = test.partition("/")
    if kind == "unit":
        return "%s/tests/unit/%s" % (O, arg)
    if kind == "runner":
        return "%s/tests/guests/runner" % O
    if kind == "difftest":
        return "%s/tests/difftest/difftest" % O
    if kind == "fuzz":
        return "%s/fuzz/fuzz_%s" % (O, arg.split("/")[0])
    raise ListError("unknown test '%s' (unit/NAME, runner[/NAME,...], difftest/N, fuzz/NAME/RUNS)" % test)


def commands(tests, tmp):
    """(label, argv) for each test, in the list's order (cheapest first)."""
    out = []
    for t in tests:
        kind, _, arg = t.partition("/")
        if kind == "unit":
            out.append((t, ["tests/run.sh", target(t)]))
        elif kind == "runner":
            out.append((t, [target(t), "-b", "emu"] + (arg.split(",") if arg else [])))
        elif kind == "difftest":
            n = arg or "20000"
            out.append((t, [target(t), "-n", n, "-l", n]))
        elif kind == "fuzz":
            name, _, runs = arg.partition("/")
            corpus = tempfile.mkdtemp(dir=tmp)
            # A fixed seed and run count: the same inputs every time.
            out.append((t, [target(t), "-seed=1", "-runs=%s" % (runs or "100000"), "-timeout=10",
                            "-artifact_prefix=%s/" % tmp, corpus]))
    return out


def test_env():
    env = dict(os.environ, O=O)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        env.pop(k, None)
    return env


def build(tree, tests, log, jobs):
    targets = sorted({target(t) for t in tests})
    try:
        return run(["make", "--no-print-directory", "-j%d" % jobs, "O=" + O, "WERROR=0"] + targets,
                   tree, log, 900, env=test_env())
    except Timeout:
        log.write("# the build timed out\n")
        return -1


def run_tests(tree, tests, log, budget, tmp):
    """None when all pass, else (label of the first failing test, timed out?)."""
    start = time.monotonic()
    for label, argv in commands(tests, tmp):
        left = budget - (time.monotonic() - start)
        try:
            if left <= 0:
                raise Timeout()
            rc = run(argv, tree, log, left, env=test_env())
        except Timeout:
            log.write("# timed out after %.0f s in total\n" % budget)
            return label, True
        if rc != 0:
            return label, False
    return None


# ---- the report ----

def rel(m):
    return "%s:%d" % (m.file, m.line)


def oneline(snippet):
    return " ".join(snippet.split()) or "(nothing)"


def report(results, total_time, out):
    w_id = max([len(m.id) for m, *_ in results] + [6])
    w_loc = max([len(rel(m)) for m, *_ in results] + [9])
    w_by = max([len(by or "") for _, _, by, _ in results] + [12])
    lines = ["%-*s  %-*s  %-16s  %-*s  %5s" % (w_id, "MUTANT", w_loc, "FILE:LINE", "RESULT", w_by, "FIRST FAILED",
                                                "TIME")]
    for m, res, by, secs in results:
        shown = "equivalent" if m.equivalent and res == "survived" else res
        lines.append("%-*s  %-*s  %-16s  %-*s  %4.0fs" % (w_id, m.id, w_loc, rel(m), shown, w_by, by or "-", secs))
    killed = [m for m, res, *_ in results if res.startswith("killed") and not m.equivalent]
    survived = [m for m, res, *_ in results if res == "survived" and not m.equivalent]
    equiv = [(m, res) for m, res, *_ in results if m.equivalent]
    invalid = [m for m, res, *_ in results if res == "invalid"]
    hangs = sum(1 for m, res, *_ in results if res == "killed (timeout)")
    if survived:
        lines += ["", "Survivors (the tests miss these):"]
        lines += ["  %s: %s: %s\n      %s  ->  %s" % (rel(m), m.id, m.why, oneline(m.find), oneline(m.replace))
                  for m in survived]
    if equiv:
        lines += ["", "Equivalent (left out of the ratio, with the list's reason):"]
        for m, res in equiv:
            note = "" if res == "survived" else "  ** %s: the tests do tell it apart; remove 'equivalent' **" % res
            lines.append("  %s: %s: %s%s" % (rel(m), m.id, m.equivalent, note))
    if invalid:
        lines += ["", "Invalid (did not compile; not counted):"]
        lines += ["  %s: %s: %s" % (rel(m), m.id, m.why) for m in invalid]
    counted = len(killed) + len(survived)
    pct = 100.0 * len(killed) / counted if counted else 0.0
    lines += ["", "%d/%d killed (%.1f %%)%s; %d equivalent, %d invalid; %d s" % (
        len(killed), counted, pct, " (%d by a hang)" % hangs if hangs else "", len(equiv), len(invalid),
        total_time)]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(out, "w") as f:
        f.write(text)
    return pct, counted


def on_sigterm(signum, frame):
    raise KeyboardInterrupt()  # ends the run like Ctrl-C, through the finally blocks


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="regex on mutant id or file")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--scratch", default=os.path.join(ROOT, "build-mutants"))
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--min", type=float, default=90.0)
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    try:
        mutants = parse_list(LIST)
        for m in mutants:
            for t in m.tests:
                target(t)
    except ListError as e:
        print("mutants: %s" % e, file=sys.stderr)
        return 2
    if args.only:
        rx = re.compile(args.only)
        mutants = [m for m in mutants if rx.search(m.id) or rx.search(m.file)]
        if not mutants:
            print("mutants: nothing matches '%s'" % args.only, file=sys.stderr)
            return 2
    errors = [e for e in (locate(m, ROOT) for m in mutants) if e]
    if errors:
        print("mutants: the list no longer fits the source; fix tests/mutants/mutants.txt:", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 2
    if args.list:
        for m in mutants:
            print("%-28s %s  %s%s\n    tests: %s" % (m.id, rel(m), m.why,
                                                   "  [equivalent: %s]" % m.equivalent if m.equivalent else "",
                                                   " ".join(m.tests)))
        return 0

    scratch = os.path.abspath(args.scratch)
    tree, logs = os.path.join(scratch, "tree"), os.path.join(scratch, "logs")
    os.makedirs(tree, exist_ok=True)
    os.makedirs(logs, exist_ok=True)
    lock = open(os.path.join(scratch, "lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("mutants: %s is in use by another run" % scratch, file=sys.stderr)
        return 2
    if shutil.which("clang") is None:
        for m in mutants:
            m.tests = [t for t in m.tests if not t.startswith("fuzz/")]
        print("mutants: clang not installed: the fuzz/ tests are left out")
    signal.signal(signal.SIGTERM, on_sigterm)

    t0 = time.monotonic()
    tmp = tempfile.mkdtemp(prefix="tarn-mutants-")
    results = []
    try:
        print("mutants: scratch copy %s (%d files changed)" % (tree, sync(tree)))
        # Baseline: each distinct test set must pass unmutated.
        for tests in sorted({tuple(m.tests) for m in mutants}):
            with open(os.path.join(logs, "baseline.log"), "a") as log:
                if build(tree, tests, log, args.jobs) != 0:
                    print("mutants: the unmutated tree does not build; see %s/baseline.log" % logs,
                          file=sys.stderr)
                    return 2
                failed = run_tests(tree, list(tests), log, max(args.timeout, 300), tmp)
            if failed:
                print("mutants: %s fails without any mutation; fix that first (see %s/baseline.log)" %
                      (failed[0], logs), file=sys.stderr)
                return 2
        print("mutants: baseline passes; %d mutants, up to %.0f s of tests each" % (len(mutants), args.timeout))
        for i, m in enumerate(mutants, 1):
            path = os.path.join(tree, m.file)
            with open(path) as f:
                orig = f.read()
            start = time.monotonic()
            with open(os.path.join(logs, m.id + ".log"), "w") as log:
                log.write("# %s at %s: %s\n# %r -> %r\n" % (m.id, rel(m), m.why, m.find, m.replace))
                try:
                    with open(path, "w") as f:
                        f.write(orig.replace(m.find, m.replace, 1))
                    if build(tree, m.tests, log, args.jobs) != 0:
                        res, by = "invalid", None
                    else:
                        failed = run_tests(tree, m.tests, log, args.timeout, tmp)
                        if failed is None:
                            res, by = "survived", None
                        else:
                            res, by = "killed (timeout)" if failed[1] else "killed", failed[0]
                finally:
                    with open(path, "w") as f:
                        f.write(orig)
            secs = time.monotonic() - start
            results.append((m, res, by, secs))
            print("[%d/%d] %-28s %-16s %s%s (%.0f s)" % (i, len(mutants), m.id, res, rel(m),
                                                        " by " + by if by else "", secs), flush=True)
    except KeyboardInterrupt:
        print("\nmutants: interrupted; the scratch copy is restored", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    pct, counted = report(results, time.monotonic() - t0, os.path.join(scratch, "results.txt"))
    return 1 if counted and pct < args.min else 0


if __name__ == "__main__":
    sys.exit(main())
