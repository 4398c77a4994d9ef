"""TAP output for the Python integration tests: ok, skip and done, each
line named "PREFIX" + the test's name + ": " + what it checked."""
import os
import sys

BACKEND = os.environ.get("TARN_BACKEND", "emu")
PREFIX = BACKEND + "/" if "TARN_BACKEND" in os.environ else ""


class Tap:
    def __init__(self, test):
        self.name, self.n, self.failed = PREFIX + test + ": ", 0, 0

    def ok(self, cond, name, why=""):
        self.n += 1
        if cond:
            print(f"ok {self.n} - {self.name}{name}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} - {self.name}{name}: {why}", flush=True)
        return cond

    def skip(self, name, why):
        self.n += 1
        print(f"ok {self.n} - {self.name}{name} # SKIP {why}", flush=True)

    def done(self):
        print(f"1..{self.n}")
        sys.exit(1 if self.failed else 0)
