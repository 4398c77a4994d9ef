#!/bin/bash
# tarnd's CPU and memory quotas, through the cgroups this host has (v2, or
# v1's cpu, cpuacct and memory hierarchies), with micro-guests under the
# emulator: the CPU time of a VM held to 0.5 of a core, then to 0.25 set
# while it runs, within 10 % of each; the throttling event; two VMs of
# weights 1:2 on one core share it 1:2; a guest over its memory limit is
# killed alone and the event says why; each VM's CPU time in /v1/metrics.
# On a host with cgroup v1, the nested bed runs it on v2 as well
# (tests/nested/kvm_suite.sh).
cd "$(dirname "$0")/../.." || exit 1
. tests/integration/lib.sh

name=tarnd_quota
. tests/integration/tarnd_lib.sh
has_event() { ctl events --vm "$1" | grep -q "$2"; }
# state_is VM STATE: in STATE
state_is() { [ "$(field "$1" state)" = "$2" ]; }
if ! start_tarnd; then
	not_ok "$name: tarnd starts" "$(tail -3 "$work/tarnd.log")"
	done_testing
fi
if [ -e /sys/fs/cgroup/cgroup.controllers ]; then
	echo "# cgroup v2 ($(cat /sys/fs/cgroup/cgroup.controllers))"
else
	echo "# cgroup v1 ($(awk '$3 == "cgroup" { print $2 }' /proc/mounts | xargs -n1 basename | tr '\n' ' '))"
fi

# Quotas through cgroups. The counting guest keeps its vCPU busy (it polls
# the PIT): held to 0.5 of a core, then 0.25 set while it runs, the CPU
# time its group used over 3 s must be within 10 % of each.
ctl vm create q1 --kernel "$GUEST" --mem 64M --backend emu --cpu-limit 0.5 --start >/dev/null
sleep 0.5
if has_event q1 "quota.*not applied"; then
	skip "$name: CPU quota" "$(ctl events --vm q1 | grep quota | head -1 | cut -c22-)"
	skip "$name: memory quota" "the same"
else
	rate() { # rate SECONDS: cores q1 used over that time, by its group's accounting
		python3 - "$CTL" "$1" <<'PY'
import json, subprocess, sys, time
def used():
    return json.loads(subprocess.check_output([sys.argv[1], "--json", "vm", "show", "q1"]))["usage"]["cpu_ns"]
a, t = used(), time.monotonic()
time.sleep(float(sys.argv[2]))
print("%.3f" % ((used() - a) / 1e9 / (time.monotonic() - t)))
PY
	}
	r1=$(rate 3)
	ctl vm set q1 --cpu-limit 0.25 >/dev/null
	sleep 1
	r2=$(rate 3)
	echo "# CPU quota: set 0.50, measured $r1 cores; set 0.25 at run time, measured $r2 (3 s each)"
	if python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(not (0.45 <= a <= 0.55 and 0.225 <= b <= 0.275))" "$r1" "$r2"; then
		ok "$name: CPU quota within 10 %: 0.5 -> $r1, then 0.25 set at run time -> $r2 cores"
	else
		not_ok "$name: CPU quota" "0.5 -> $r1, 0.25 -> $r2"
	fi
	if until_ok 5 has_event q1 "throttled.*CPU: .* held back by its limit of 0.25 cores\|throttled.*CPU: .* held back by its limit of 0.50 cores"; then
		ok "$name: quota throttling is an event: $(ctl events --vm q1 | grep -o 'throttled .*' | head -1)"
	else
		not_ok "$name: throttling event" "$(ctl events --vm q1 | tail -3)"
	fi
	# Weights: two busy VMs with weights 100 and 200 on one core (pinned
	# there here, with taskset) share it 1:2.
	ctl vm create wa --kernel "$GUEST" --mem 32M --backend emu --cpu-weight 100 --start >/dev/null
	ctl vm create wb --kernel "$GUEST" --mem 32M --backend emu --cpu-weight 200 --start >/dev/null
	sleep 0.3
	for v in wa wb; do taskset -a -p 1 "$(field $v pid)" >/dev/null; done
	share=$(python3 - "$CTL" <<'PY'
import json, subprocess, sys, time
def used(v):
    return json.loads(subprocess.check_output([sys.argv[1], "--json", "vm", "show", v]))["usage"]["cpu_ns"]
a = [used("wa"), used("wb")]
time.sleep(3)
b = [used("wa"), used("wb")]
print("%.3f %.3f" % ((b[0] - a[0]) / 3e9, (b[1] - a[1]) / 3e9))
PY
)
	read -r sa sb <<<"$share"
	echo "# CPU weights 100:200 on one core: $sa and $sb cores"
	if python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(not (1.8 <= b / a <= 2.2))" "$sa" "$sb"; then
		ok "$name: CPU weights 1:2 competing for one core share it $sa:$sb"
	else
		not_ok "$name: CPU weights" "$sa and $sb cores"
	fi
	ctl vm kill wa >/dev/null
	ctl vm kill wb >/dev/null
	# A guest that touches 256 MiB under a 128 MiB limit: killed alone, and
	# the event says why.
	ctl vm create m1 --kernel "$TOUCH" --mem 512M --backend emu --mem-limit 128M --start >/dev/null
	if until_ok 20 has_event m1 "memory limit" && state_is m1 crashed && state_is q1 running; then
		ok "$name: memory quota: a guest over its limit is killed alone: $(ctl events --vm m1 | grep -o 'tarn was.*')"
	else
		not_ok "$name: memory quota" "$(ctl events --vm m1 | tail -2)"
	fi
	ctl vm delete m1 >/dev/null
fi
# Prometheus text: each VM's CPU time from its cgroup, each series once.
prom=$(curl -s --unix-socket "$TARN_SOCKET" http://x/v1/metrics)
if grep -q '^tarn_vm_up{tenant="default",vm="q1"} 1$' <<<"$prom" &&
	grep -qE '^tarn_vm_cpu_seconds_total\{tenant="default",vm="q1"\} [0-9]*\.[0-9]+$' <<<"$prom" &&
	grep -q '^# TYPE tarn_vm_disk_read_bytes_total counter$' <<<"$prom" &&
	[ "$(grep -c '^# TYPE tarn_vm_cpu_seconds_total' <<<"$prom")" = 1 ]; then
	ok "$name: GET /v1/metrics in Prometheus' text format: $(grep -c '^tarn_' <<<"$prom") samples"
else
	not_ok "$name: metrics" "$(head -c 600 <<<"$prom" | tr '\n' ' ')"
fi
ctl vm kill q1 >/dev/null
until_ok 5 ctl vm delete q1
done_testing

