#!/usr/bin/env bash
# bench_nodev.sh: `hmoe bench kmod` on a machine without hmoe.ko: one clear line and
# exit 1 (a missing device), and exit 2 for bad flags; never a crash.
set -u
HMOE=${HMOE:-build/hmoe}
if ls /dev/accel/accel* /dev/dri/renderD* >/dev/null 2>&1 &&
	grep -qs '^hmoe ' /proc/modules; then
	echo "hmoe.ko is loaded here: the no-device path cannot be tested"
	exit 77
fi
out=$("$HMOE" bench kmod --json 2>&1); rc=$?
echo "$out"
[ $rc -eq 1 ] || { echo "FAIL: exit $rc without a card, want 1"; exit 1; }
[ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q 'no hmoe card' ||
	{ echo "FAIL: want one line saying no hmoe card"; exit 1; }
for bad in "--tokens 0" "--format fp9" "--format int8-a9" "--experts 4 --top-k 8" "--bogus"; do
	out=$("$HMOE" bench kmod $bad 2>&1); rc=$?
	echo "$bad -> $rc: $out"
	[ $rc -eq 2 ] || { echo "FAIL: '$bad' exited $rc, want 2"; exit 1; }
done
echo "PASS"
