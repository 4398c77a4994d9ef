# What the tarnd tests share (source after lib.sh, with name set): the
# binaries and micro-guests, a work directory removed at the end with every
# VM process of the test, TARN_SOCKET in it, and start_tarnd [OPTIONS...]
# (tarnd on that state and socket, its pid in dpid; fails when it does not
# listen within 5 s); ctl (tarnctl), field VM KEY (a VM's KEY from
# tarnctl --json) and until_ok SECONDS COMMAND... (every 0.1 s until it
# succeeds).
TARND=$O/tarnd CTL=$O/tarnctl GUEST=$O/bench/guest_count.elf TOUCH=$O/bench/guest_touch.elf
for f in "$TARND" "$CTL" "$GUEST" "$TOUCH"; do
	[ -e "$f" ] || { not_ok "$name" "$f missing (make tests)"; done_testing; }
done
work=$(mktemp -d)
export TARN_SOCKET=$work/tarnd.sock
dpid=
cleanup() {
	[ -n "$dpid" ] && kill -9 "$dpid" 2>/dev/null
	pkill -9 -f "api-sock $work/" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
start_tarnd() {
	"$TARND" --state-dir "$work/state" --socket "$TARN_SOCKET" "$@" >>"$work/tarnd.log" 2>&1 &
	dpid=$!
	for _ in $(seq 100); do [ -S "$TARN_SOCKET" ] && return 0; sleep 0.05; done
	return 1
}
ctl() { "$CTL" "$@"; }
field() { "$CTL" --json vm show "$1" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$2'))"; }
until_ok() {
	local t=$(($1 * 10))
	shift
	while [ $t -gt 0 ]; do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; t=$((t - 1)); done
	return 1
}
# expect STATUS PATTERN COMMAND...: COMMAND exits STATUS and says PATTERN;
# else a comment line naming it, and one more in bad.
bad=0
expect() {
	local want=$1 pat=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	if [ $rc != "$want" ] || ! grep -q -- "$pat" <<<"$out"; then
		echo "# $*: exit $rc: $out"
		bad=$((bad + 1))
	fi
}
