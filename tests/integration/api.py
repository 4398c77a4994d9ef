#!/usr/bin/env python3
"""The per-VM API (tarn run --api-sock), as a client sees it. Speaks TAP.

Without a guest: each endpoint's answers, and bad requests of every kind
answered 4xx with a fault_message. Then a Linux guest configured and started
through the API prints a counter and its clock; it is paused (the counter
stops, the state says Paused), resumed (the counter goes on with no gap or
repeat, and the guest's clock has not jumped by the pause), hit with 1000
malformed requests while it runs (each answered 4xx, the guest goes on), and
stopped with SIGTERM (exit 0, the socket gone). Every reply, and every request
tarn accepted, is held against docs/api.json. Under the emulator, or the
backend TARN_BACKEND names."""
import base64
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
os.chdir(ROOT)
O = os.environ.get("O", "build")
TARN = os.environ.get("TARN", os.path.join(O, "tarn"))
BACKEND = os.environ.get("TARN_BACKEND", "emu")
KERNEL = os.path.join(O, "guest", "vmlinuz")
INITRD = os.path.join(O, "guest", "initramfs.cpio")
BOOT_TIMEOUT = float(os.environ.get("BOOT_TIMEOUT", "600"))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import Tap  # noqa: E402

T = Tap("api")
ok, done = T.ok, T.done


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(30)
        self.sock.connect(self.path)


SPEC = json.load(open("docs/api.json"))
spec_errors = []  # replies (and accepted requests) that docs/api.json does not describe


def schema_errors(v, sch, where="body"):
    """Why v does not match the (Swagger 2.0 subset of) JSON schema sch."""
    if "$ref" in sch:
        sch = SPEC["definitions"][sch["$ref"].split("/")[-1]]
    types = {"object": dict, "array": list, "string": str, "boolean": bool}
    t = sch.get("type")
    if t == "integer":
        if not isinstance(v, int) or isinstance(v, bool):
            return [f"{where}: not an integer"]
    elif t and not isinstance(v, types[t]):
        return [f"{where}: not {t}"]
    errs = []
    if "enum" in sch and v not in sch["enum"]:
        errs.append(f"{where}: {v!r} not in {sch['enum']}")
    if "minimum" in sch and v < sch["minimum"] or "maximum" in sch and v > sch["maximum"]:
        errs.append(f"{where}: {v} out of range")
    if "pattern" in sch and not re.search(sch["pattern"], v):
        errs.append(f"{where}: {v!r} does not match {sch['pattern']}")
    if t == "object":
        props = sch.get("properties", {})
        errs += [f"{where}: missing {k}" for k in sch.get("required", []) if k not in v]
        if sch.get("additionalProperties") is False:
            errs += [f"{where}: unknown {k}" for k in v if k not in props]
        for k, sub in props.items():
            if k in v:
                errs += schema_errors(v[k], sub, f"{where}.{k}")
    if t == "array":
        for i, e in enumerate(v):
            errs += schema_errors(e, sch["items"], f"{where}[{i}]")
    return errs


def spec_check(method, path, req, status, body):
    """Hold a reply, and a request tarn accepted, against docs/api.json."""
    op = None
    for tmpl, ops in SPEC["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", tmpl), path.split("?")[0]):
            op = ops.get(method.lower())
            if op is None and status != 405:
                spec_errors.append(f"{method} {path}: {status}, but the spec has no {method} there")
            break
    else:
        if status != 404:
            spec_errors.append(f"{method} {path}: {status} for a path the spec does not have")
    if op is None:
        if body is None or schema_errors(body, {"$ref": "#/definitions/Error"}):
            spec_errors.append(f"{method} {path}: {status} without an Error body")
        return
    r = op["responses"].get(str(status))
    if r is None:
        spec_errors.append(f"{method} {path}: status {status} not in the spec")
        return
    if "schema" in r:
        spec_errors.extend(f"{method} {path} {status}: {e}" for e in schema_errors(body, r["schema"]))
    elif body is not None:
        spec_errors.append(f"{method} {path} {status}: a body where the spec has none")
    if 200 <= status < 300 and req is not None:
        for prm in op.get("parameters", []):
            if prm["in"] == "body":
                spec_errors.extend(f"{method} {path}, accepted request: {e}"
                                   for e in schema_errors(req, prm["schema"], "request"))


def call(sock, method, path, body=None, raw=None):
    """(status, parsed JSON body or None, raw text), held against the spec."""
    c = UnixHTTP(sock)
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    text = r.read().decode(errors="replace")
    c.close()
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = None
        spec_errors.append(f"{method} {path}: {r.status} with a body that is not JSON: {text[:80]!r}")
    if parsed is not None and r.getheader("Content-Type") != "application/json":
        spec_errors.append(f"{method} {path}: Content-Type {r.getheader('Content-Type')}")
    req = None
    if data is not None:
        try:
            req = json.loads(data)
        except ValueError:
            pass
    spec_check(method, path, req, r.status, parsed)
    return r.status, parsed, text


def is_fault(res, lo=400, hi=499):
    st, body, _ = res
    return lo <= st <= hi and isinstance(body, dict) and isinstance(body.get("fault_message"), str) \
        and body["fault_message"] != ""


def start_tarn(sock, *args, stdout=subprocess.DEVNULL):
    """tarn with its standard error in a file (p.err()): a pipe nobody
    reads would fill up with its log and stop it."""
    err = tempfile.TemporaryFile()
    p = subprocess.Popen([TARN, "run", "--api-sock", sock, "--backend", BACKEND, *args],
                         stdin=subprocess.DEVNULL, stdout=stdout, stderr=err)
    p.err = lambda: (err.seek(0), err.read().decode(errors="replace"))[1]
    for _ in range(500):  # until it answers, or exits
        if p.poll() is not None:
            break
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(sock)
            break
        except OSError:
            time.sleep(0.02)
    return p


def stop_tarn(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            return p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            return None
    return p.returncode


work = tempfile.mkdtemp(prefix="tarn-api.")
sock = os.path.join(work, "api.sock")

# ---- without a guest ----
p = start_tarn(sock)
if not ok(os.path.exists(sock), "the socket appears", f"tarn exited {p.poll()}: {p.err()}"
          if p.poll() is not None else "no socket after 10 s"):
    stop_tarn(p)
    done()

st, b, t = call(sock, "GET", "/")
ok(st == 200 and b.get("state") == "Not started" and b.get("app_name") == "tarn" and "id" in b
   and "vmm_version" in b, "GET / says Not started", f"{st} {t}")
st, b, t = call(sock, "GET", "/version")
ok(st == 200 and isinstance(b.get("firecracker_version"), str), "GET /version", f"{st} {t}")
st, b, t = call(sock, "GET", "/machine-config")
ok(st == 200 and b.get("vcpu_count") == 1 and b.get("mem_size_mib") == 512, "GET /machine-config: the defaults",
   f"{st} {t}")
st, b, t = call(sock, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})
st2, b2, t2 = call(sock, "GET", "/machine-config")
ok(st == 204 and b2.get("vcpu_count") == 2 and b2.get("mem_size_mib") == 256,
   "PUT /machine-config is what GET returns", f"{st} {t} / {t2}")
st, b, t = call(sock, "PATCH", "/machine-config", {"mem_size_mib": 384})
st2, b2, t2 = call(sock, "GET", "/vm/config")
ok(st == 204 and b2.get("machine-config", {}).get("mem_size_mib") == 384
   and b2["machine-config"].get("vcpu_count") == 2, "PATCH /machine-config changes one field", f"{st} {t2}")

disk = os.path.join(work, "disk.img")
with open(disk, "wb") as f:
    f.truncate(4 << 20)

bad = [
    ("a body that is not JSON", "PUT", "/machine-config", None, '{"vcpu_count": 2', 400),
    ("a JSON array body", "PUT", "/machine-config", None, "[1, 2]", 400),
    ("an unknown field", "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128, "colour": "blue"},
     None, 400),
    ("a field of the wrong type", "PUT", "/machine-config", {"vcpu_count": "2", "mem_size_mib": 128}, None, 400),
    ("a missing required field", "PUT", "/machine-config", {"vcpu_count": 2}, None, 400),
    ("vcpu_count 0", "PUT", "/machine-config", {"vcpu_count": 0, "mem_size_mib": 128}, None, 400),
    ("smt true", "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 128, "smt": True}, None, 400),
    ("a duplicate key", "PUT", "/machine-config", None, '{"vcpu_count": 1, "vcpu_count": 2, "mem_size_mib": 64}',
     400),
    ("a body over 64 KiB", "PUT", "/boot-source", None, '{"boot_args": "' + "x" * 70000 + '"}', 413),
    ("a kernel that does not exist", "PUT", "/boot-source", {"kernel_image_path": "/nonexistent/vmlinuz"}, None,
     400),
    ("a drive id that differs from the path's", "PUT", "/drives/rootfs",
     {"drive_id": "other", "path_on_host": disk, "is_root_device": False}, None, 400),
    ("a drive id with a slash", "PUT", "/drives/a%2Fb",
     {"drive_id": "a/b", "path_on_host": disk, "is_root_device": False}, None, 400),
    ("a drive file that does not exist", "PUT", "/drives/d1",
     {"drive_id": "d1", "path_on_host": "/nonexistent.img", "is_root_device": False}, None, 400),
    ("a rate limiter bucket without refill_time", "PUT", "/drives/d1",
     {"drive_id": "d1", "path_on_host": disk, "is_root_device": False,
      "rate_limiter": {"bandwidth": {"size": 1000}}}, None, 400),
    ("a rate limiter bucket of negative size", "PUT", "/network-interfaces/eth0",
     {"iface_id": "eth0", "host_dev_name": "tap0", "tx_rate_limiter": {"ops": {"size": -1, "refill_time": 100}}},
     None, 400),
    ("a rate limiter with an unknown bucket", "PATCH", "/drives/d1",
     {"drive_id": "d1", "rate_limiter": {"iops": {"size": 1, "refill_time": 100}}}, None, 400),
    ("PATCH of a drive that is not there", "PATCH", "/drives/nosuch",
     {"drive_id": "nosuch", "rate_limiter": {"bandwidth": {"size": 1, "refill_time": 100}}}, None, 404),
    ("a bad MAC address", "PUT", "/network-interfaces/eth0",
     {"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "52:54:00:zz:34:56"}, None, 400),
    ("an unknown action", "PUT", "/actions", {"action_type": "Explode"}, None, 400),
    ("InstanceStart without a boot source", "PUT", "/actions", {"action_type": "InstanceStart"}, None, 400),
    ("SendCtrlAltDel before the start", "PUT", "/actions", {"action_type": "SendCtrlAltDel"}, None, 400),
    ("PATCH /vm before the start", "PATCH", "/vm", {"state": "Paused"}, None, 400),
    ("PATCH /vm with a bad state", "PATCH", "/vm", {"state": "Sleeping"}, None, 400),
    ("a snapshot before the start", "PUT", "/snapshot/create",
     {"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m"}, None, 400),
    ("a diff snapshot before the start", "PUT", "/snapshot/create",
     {"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m", "snapshot_type": "Diff"}, None, 400),
    ("an unknown snapshot_type", "PUT", "/snapshot/create",
     {"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m", "snapshot_type": "Partial"}, None, 400),
    ("a snapshot load without its memory file", "PUT", "/snapshot/load", {"snapshot_path": "/tmp/s"}, None, 400),
    ("a snapshot load from a Uffd backend (not supported)", "PUT", "/snapshot/load",
     {"snapshot_path": "/tmp/s", "mem_backend": {"backend_type": "Uffd", "backend_path": "/tmp/u"}}, None, 400),
    ("a snapshot load of a file that is not there", "PUT", "/snapshot/load",
     {"snapshot_path": "/nonexistent.snap", "mem_file_path": "/nonexistent.mem"}, None, 400),
    ("a snapshot load under an unknown backend", "PUT", "/snapshot/load",
     {"snapshot_path": "/tmp/s", "mem_file_path": "/tmp/m", "backend": "xen"}, None, 400),
    ("a migration before the start", "PUT", "/migrate", {"destination": "127.0.0.1:1"}, None, 400),
    ("a migration without a destination", "PUT", "/migrate", {"downtime_ms": 10}, None, 400),
    ("a migration with a downtime of 0 ms", "PUT", "/migrate", {"destination": "127.0.0.1:1", "downtime_ms": 0},
     None, 400),
    ("a migration with an unknown field", "PUT", "/migrate", {"destination": "127.0.0.1:1", "speed": 9}, None, 400),
    ("a cancel with no migration under way", "PUT", "/migrate/cancel", None, None, 400),
    ("FlushMetrics before PUT /metrics", "PUT", "/actions", {"action_type": "FlushMetrics"}, None, 400),
    ("a metrics file in a directory that is not there", "PUT", "/metrics",
     {"metrics_path": "/nonexistent/dir/metrics"}, None, 400),
    ("PUT /metrics with an unknown field", "PUT", "/metrics", {"metrics_path": "/tmp/m", "format": "csv"}, None,
     400),
    ("an unknown path", "GET", "/no/such/thing", None, None, 404),
    ("a method the path does not take", "DELETE", "/machine-config", None, None, 405),
    ("PUT without a body", "PUT", "/boot-source", None, None, 400),
]
for name, m, path, body, raw, want in bad:
    res = call(sock, m, path, body, raw)
    ok(res[0] == want and is_fault(res), f"{name}: {want} with a fault_message", f"{res[0]} {res[2][:200]}")
st, b, t = call(sock, "PUT", "/drives/rootfs", {"drive_id": "rootfs", "path_on_host": disk, "is_root_device": True})
st2, b2, t2 = call(sock, "PUT", "/drives/second",
                   {"drive_id": "second", "path_on_host": disk, "is_root_device": True})
ok(st == 204 and st2 == 400 and "root device" in b2.get("fault_message", ""),
   "a second root device is refused", f"{st} {st2} {t2}")
st, b, t = call(sock, "GET", "/")
ok(st == 200 and b.get("state") == "Not started" and p.poll() is None,
   "after every bad request tarn still serves, not started", f"{st} {t} (tarn: {p.poll()})")

# A second tarn on a socket that is listened on is refused; the first keeps it.
q = subprocess.run([TARN, "run", "--api-sock", sock, "--backend", BACKEND], stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=30)
ok(q.returncode == 2 and b"another process listens" in q.stderr and call(sock, "GET", "/")[0] == 200,
   "a second tarn on a socket in use: refused (status 2)", f"{q.returncode} {q.stderr.decode()}")
rc = stop_tarn(p)
ok(rc == 0 and not os.path.exists(sock), "SIGTERM before the start: exit 0, the socket removed",
   f"status {rc}, socket {'still there' if os.path.exists(sock) else 'gone'}")

# A socket left behind by a dead process is taken over.
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sock)
s.close()
p = start_tarn(sock)
ok(call(sock, "GET", "/")[0] == 200 if p.poll() is None else False,
   "a socket left by a dead process is taken over", p.err() if p.poll() is not None else "")
stop_tarn(p)

# ---- a guest configured and started through the API ----
if not (os.path.exists(KERNEL) and os.path.exists(INITRD)):
    ok(False, "the guest", f"{KERNEL} or {INITRD} missing (make guest)")
    done()
script = ("echo serial=$(cat /sys/block/vda/serial); i=0; while [ $i -lt 100000 ]; do "
          "echo tick $i $(cut -d' ' -f1 /proc/uptime); i=$((i+1)); sleep 0.2; done")
cmdline = "console=ttyS0 quiet panic=-1 tsc=reliable tarn.cmd64=" + base64.b64encode(script.encode()).decode()
console = os.path.join(work, "console")
out = open(console, "wb")
p = start_tarn(sock, "-v", stdout=out)  # -v: tarn logs how long the pause took
call(sock, "PUT", "/machine-config", {"vcpu_count": 2, "mem_size_mib": 256})
metrics = os.path.join(work, "metrics")
st, b, t = call(sock, "PUT", "/metrics", {"metrics_path": metrics})
st2, b2, t2 = call(sock, "PUT", "/metrics", {"metrics_path": metrics})
ok(st == 204 and st2 == 400 and is_fault((st2, b2, t2)), "PUT /metrics: 204; a second time: 400",
   f"{st} {t} / {st2} {t2}")
st, b, t = call(sock, "PUT", "/boot-source",
                {"kernel_image_path": KERNEL, "initrd_path": INITRD, "boot_args": cmdline})
st2, _, t2 = call(sock, "PUT", "/drives/data1", {"drive_id": "data1", "path_on_host": disk,
                                                  "is_root_device": False, "is_read_only": True})
st3, _, t3 = call(sock, "PUT", "/actions", {"action_type": "InstanceStart"})
ok(st == 204 and st2 == 204 and st3 == 204, "boot-source, a drive and InstanceStart: 204 each",
   f"{st} {t} / {st2} {t2} / {st3} {t3}")
st, b, t = call(sock, "GET", "/")
ok(st == 200 and b.get("state") == "Running", "GET / says Running", f"{st} {t}")
st, b, t = call(sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
ok(st == 400 and is_fault((st, b, t)), "PUT /machine-config after the start: 400", f"{st} {t}")
st, b, t = call(sock, "PUT", "/actions", {"action_type": "InstanceStart"})
ok(st == 400 and is_fault((st, b, t)), "a second InstanceStart: 400", f"{st} {t}")


def ticks():
    with open(console, "rb") as f:
        return [(int(m.group(1)), float(m.group(2)))
                for m in re.finditer(rb"tick (\d+) ([0-9.]+)", f.read())]


def console_text():
    with open(console, "rb") as f:
        return f.read().decode(errors="replace")


deadline = time.time() + BOOT_TIMEOUT
while time.time() < deadline and len(ticks()) < 5 and p.poll() is None:
    time.sleep(0.2)
if not ok(len(ticks()) >= 5, "the guest runs its counter",
          f"{len(ticks())} ticks; tarn {p.poll()}; console tail: {console_text()[-300:]!r}"):
    stop_tarn(p)
    done()
ok("serial=data1" in console_text(), "the drive's serial is its drive_id", console_text()[-200:])

t0 = time.time()
st, b, t = call(sock, "PATCH", "/vm", {"state": "Paused"})
pause_ms = (time.time() - t0) * 1000
print(f"# PATCH /vm Paused answered in {pause_ms:.1f} ms")
st2, b2, t2 = call(sock, "GET", "/")
ok(st == 204 and b2.get("state") == "Paused", "PATCH /vm Paused: 204, GET / says Paused", f"{st} {t} / {t2}")
time.sleep(0.3)  # a line on its way out
before = ticks()
time.sleep(2.0)
during = ticks()
ok(len(during) == len(before), "paused: the counter stands still for 2 s",
   f"{len(before)} ticks, then {len(during)}")
st, b, t = call(sock, "PATCH", "/vm", {"state": "Paused"})
ok(st == 204, "pausing a paused VM: 204", f"{st} {t}")
st, b, t = call(sock, "PATCH", "/vm", {"state": "Resumed"})
st2, b2, t2 = call(sock, "GET", "/")
ok(st == 204 and b2.get("state") == "Running", "PATCH /vm Resumed: 204, Running again", f"{st} {t} / {t2}")
deadline = time.time() + 60
while time.time() < deadline and len(ticks()) < len(during) + 5:
    time.sleep(0.1)
after = ticks()
nums = [i for i, _ in after]
ok(len(after) >= len(during) + 5 and nums == list(range(len(nums))),
   "resumed: the counter goes on with no gap or repeat", f"{len(during)} -> {len(after)} ticks: {nums[-12:]}")
if len(after) > len(during) and during:
    gap = after[len(during)][1] - during[-1][1]
    print(f"# guest uptime between the last tick before the pause and the first after: {gap:.2f} s "
          f"(ticks every 0.2 s; paused for 2.3 s)")
    ok(gap < 1.5, "the guest's clock did not jump by the pause", f"{gap:.2f} s between ticks")

# Metrics: one line per FlushMetrics, counters since the line before.
def metric_lines():
    with open(metrics) as f:
        return [json.loads(l) for l in f.read().splitlines()]


st, b, t = call(sock, "PUT", "/actions", {"action_type": "FlushMetrics"})
time.sleep(0.5)
st2, b2, t2 = call(sock, "PUT", "/actions", {"action_type": "FlushMetrics"})
try:
    m1, m2 = metric_lines()[-2:]
except (ValueError, OSError):
    m1 = m2 = {}
g = lambda m, grp, k: m.get(grp, {}).get(k, -1)  # noqa: E731
print(f"# metrics, first line: vcpu {m1.get('vcpu')} uart {m1.get('uart')} block_data1 {m1.get('block_data1')} "
      f"latencies_us {m1.get('latencies_us')}")
ok(st == 204 and st2 == 204 and g(m1, "vcpu", "exit_io_out") > 0 and g(m1, "uart", "write_count") > 0
   and g(m1, "block_data1", "read_count") > 0 and g(m1, "block_data1", "read_bytes") >= 512 * g(m1, "block_data1",
                                                                                            "read_count")
   and g(m1, "block", "read_bytes") == g(m1, "block_data1", "read_bytes")
   and g(m1, "latencies_us", "pause_vm") > 0 and g(m1, "latencies_us", "resume_vm") > 0
   and g(m1, "block_data1", "write_count") == 0 and isinstance(m1.get("utc_timestamp_ms"), int),
   "FlushMetrics: vCPU exits, console bytes, the drive's reads by its id, the pause's latency",
   f"{st} {t} / {st2} {t2}: {m1}")
ok(0 < g(m2, "uart", "write_count") < g(m1, "uart", "write_count") and g(m2, "block_data1", "read_count") == 0
   and g(m2, "latencies_us", "pause_vm") == g(m1, "latencies_us", "pause_vm"),
   "the next line counts only what happened since (0.5 s of console, no reads); latencies stay",
   f"uart {m1.get('uart')} -> {m2.get('uart')}, block_data1 reads {g(m2, 'block_data1', 'read_count')}")
st, b, t = call(sock, "PUT", "/metrics", {"metrics_path": metrics})
ok(st == 400 and is_fault((st, b, t)), "PUT /metrics after the start: 400", f"{st} {t}")

# 1000 malformed requests while the guest runs.
seed = int(os.environ.get("SEED", "0")) or random.randrange(1, 1 << 31)
print(f"# seed: {seed} (SEED={seed} replays the malformed requests)")
rnd = random.Random(seed)
paths = ["/", "/vm", "/actions", "/machine-config", "/boot-source", "/drives/x", "/network-interfaces/y",
         "/logger", "/metrics", "/entropy", "/snapshot/create", "/snapshot/load", "/vm/config", "/migrate", "/nope"]
junk = ['{', '[]', '"str"', '{"state": 1}', '{"action_type": null}', '{"state": "Paused", "x": 1}',
        '{"vcpu_count": -1, "mem_size_mib": 1e99}', '\x00\xff', '{"drive_id": {}}', 'null', '{"a":' * 50]
bad_answers = []
for i in range(1000):
    m = rnd.choice(["PUT", "PATCH", "POST", "DELETE"])
    res = call(sock, m, rnd.choice(paths), raw=rnd.choice(junk) + ("x" * rnd.randrange(0, 64)))
    if not (400 <= res[0] < 500 and is_fault(res)):
        bad_answers.append(f"{m} -> {res[0]} {res[2][:80]}")
ok(not bad_answers, "1000 malformed requests: each a 4xx with a fault_message",
   f"{len(bad_answers)} others, first: {bad_answers[:3]}")
n0 = len(ticks())
time.sleep(1.5)
ok(len(ticks()) > n0 and call(sock, "GET", "/")[1].get("state") == "Running",
   "the guest kept running through them", f"{n0} ticks before, {len(ticks())} after")

# A migration to where nobody listens: accepted, then failed with the
# reason, the guest running on (tests/integration/migrate.sh migrates).
st0, b0, _ = call(sock, "GET", "/migrate")
st, b, t = call(sock, "PUT", "/migrate", {"destination": "127.0.0.1:1", "downtime_ms": 20})
deadline = time.time() + 30
while time.time() < deadline and call(sock, "GET", "/migrate")[1].get("state") == "active":
    time.sleep(0.1)
st2, b2, t2 = call(sock, "GET", "/migrate")
n0 = len(ticks())
time.sleep(1.0)
ok(st0 == 200 and b0 == {"state": "none"} and st == 202 and b2.get("state") == "failed"
   and "connecting to 127.0.0.1:1" in b2.get("error", "") and "runs on here" in b2.get("error", "")
   and len(ticks()) > n0 and call(sock, "GET", "/")[1].get("state") == "Running",
   "PUT /migrate to a port nobody listens on: 202, then failed with the reason, the guest running on",
   f"{st0} {b0} / {st} {t} / {t2}")

# tarn ctl, the command line over the same API.
def ctl(*args):
    return subprocess.run([TARN, "ctl", "--sock", sock, *args], capture_output=True, text=True, timeout=60)


r1, r2, r3 = ctl("pause"), ctl("info"), ctl("resume")
r4 = ctl("info")
ok(r1.returncode == 0 and "state: Paused" in r2.stdout and r3.returncode == 0 and "state: Running" in r4.stdout,
   "tarn ctl pause, info, resume", f"{r1.returncode} {r1.stderr} / {r2.stdout} / {r4.stdout}")
r = ctl("put", "/machine-config", '{"vcpu_count": 1, "mem_size_mib": 64}')
ok(r.returncode == 1 and "before it starts" in r.stderr, "tarn ctl: a refused request exits 1 with tarn's reason",
   f"{r.returncode} {r.stderr}")
r = ctl("--json", "config")
try:
    cfg = json.loads(r.stdout)
except ValueError:
    cfg = {}
ok(r.returncode == 0 and cfg.get("drives", [{}])[0].get("drive_id") == "data1", "tarn ctl --json config",
   f"{r.returncode} {r.stdout[:200]}")
r = subprocess.run([TARN, "ctl", "--sock", sock + ".none", "info"], capture_output=True, text=True, timeout=60)
ok(r.returncode == 1 and "no such socket" in r.stderr, "tarn ctl on a socket that is not there: exit 1, said",
   f"{r.returncode} {r.stderr}")
r = ctl("frobnicate")
ok(r.returncode == 2, "tarn ctl with an unknown verb: exit 2", f"{r.returncode} {r.stderr}")

# A snapshot: only of a paused VM; then restored through the API of a new tarn.
snap, snap_mem = os.path.join(work, "vm.snap"), os.path.join(work, "vm.mem")
snap_req = {"snapshot_path": snap, "mem_file_path": snap_mem}
st, b, t = call(sock, "PUT", "/snapshot/create", snap_req)
ok(st == 400 and "not paused" in t, "a snapshot of a running VM: 400, it must be paused", f"{st} {t}")
call(sock, "PATCH", "/vm", {"state": "Paused"})
st, b, t = call(sock, "PUT", "/snapshot/create", dict(snap_req, snapshot_type="Diff"))
ok(st == 400 and "tracking" in t, "a diff snapshot without track_dirty_pages: 400, saying so", f"{st} {t}")
time.sleep(0.3)
snap_ticks = ticks()
t0 = time.time()
st, b, t = call(sock, "PUT", "/snapshot/create", snap_req)
print(f"# PUT /snapshot/create answered in {(time.time() - t0) * 1000:.1f} ms "
      f"({os.path.getsize(snap) if os.path.exists(snap) else 0} bytes of state)")
ok(st == 204 and os.path.exists(snap) and os.path.getsize(snap_mem) == 256 << 20,
   "PUT /snapshot/create of the paused VM: 204, state and a 256 MiB memory file", f"{st} {t}")
call(sock, "PATCH", "/vm", {"state": "Resumed"})

t0 = time.time()
rc = stop_tarn(p)
ok(rc == 0 and not os.path.exists(sock), "SIGTERM: exit 0, the socket removed",
   f"status {rc} after {time.time() - t0:.1f} s, socket {'still there' if os.path.exists(sock) else 'gone'}")
out.close()
err = p.err()

console = os.path.join(work, "console2")
out = open(console, "wb")
p2 = start_tarn(sock, stdout=out)
load = {"snapshot_path": snap, "mem_backend": {"backend_type": "File", "backend_path": snap_mem},
        "resume_vm": True}
t0 = time.time()
st, b, t = call(sock, "PUT", "/snapshot/load", load)
print(f"# PUT /snapshot/load answered in {(time.time() - t0) * 1000:.1f} ms")
st2, b2, t2 = call(sock, "GET", "/")
ok(st == 204 and b2.get("state") == "Running", "PUT /snapshot/load into a new tarn: 204, Running",
   f"{st} {t} / {t2}")
deadline = time.time() + 60
while time.time() < deadline and len(ticks()) < 5 and p2.poll() is None:
    time.sleep(0.1)
nums = [i for i, _ in ticks()]
want = snap_ticks[-1][0] + 1 if snap_ticks else -1
ok(len(nums) >= 5 and nums == list(range(want, want + len(nums))),
   "the restored guest counts on from the snapshot, no gap, no repeat",
   f"{len(snap_ticks)} ticks at the snapshot; restored: {nums[:8]}")
st, b, t = call(sock, "PUT", "/snapshot/load", load)
ok(st == 400 and is_fault((st, b, t)), "a second /snapshot/load: 400", f"{st} {t}")

# Ctrl+Alt+Del on the restored guest's keyboard: refused while paused;
# then Linux restarts, and tarn ends with status 4 (the guest's reboot).
call(sock, "PATCH", "/vm", {"state": "Paused"})
st, b, t = call(sock, "PUT", "/actions", {"action_type": "SendCtrlAltDel"})
st2, b2, t2 = call(sock, "PUT", "/actions", {"action_type": "PowerButton"})
call(sock, "PATCH", "/vm", {"state": "Resumed"})
st3, b3, t3 = call(sock, "PUT", "/actions", {"action_type": "PowerButton"})
ok(st2 == 400 and st3 == 204 and p2.poll() is None,
   "PowerButton (tarn's): 400 while paused, 204 running (this guest has no ACPI daemon: it runs on)",
   f"{st2} {t2} / {st3} {t3}")
ok(st == 400 and "paused" in t, "SendCtrlAltDel while paused: 400", f"{st} {t}")
st, b, t = call(sock, "PUT", "/actions", {"action_type": "SendCtrlAltDel"})
try:
    rc = p2.wait(60)
except subprocess.TimeoutExpired:
    rc = stop_tarn(p2)
out.close()
ok(st == 204 and rc == 4 and "Restarting system" in console_text(),
   "SendCtrlAltDel: 204, the guest restarts, tarn exits 4", f"{st} {t}; status {rc}; {console_text()[-200:]!r}")
err += p2.err()
ok(not spec_errors, f"every reply (and every request accepted) is as docs/api.json says",
   f"{len(spec_errors)} not: {spec_errors[:4]}")
for line in err.splitlines():
    if "paused: vCPUs stopped" in line:
        print("# " + line)
# The one warning asked for: the migration to nowhere.
warns = [l for l in err.splitlines() if l.startswith(("tarn: warning", "tarn: error"))
         and "migration to 127.0.0.1:1 failed" not in l]
ok(not warns, "tarn warned about nothing else than the failed migration", "; ".join(warns[:3]))
subprocess.run(["rm", "-rf", work])
done()
