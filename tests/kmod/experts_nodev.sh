#!/usr/bin/env bash
# experts_nodev.sh: the kmod expert backend (runtime/hmoe_expert_kmod.c) on a machine
# without hmoe.ko: `--experts kmod` is one clear "no hmoe card" line and exit 1 (a
# missing device), also through card=I and the sched backend's card=kmod devices; a
# malformed backend spec (card= with cards=, replan=0, ...) is exit 2; never a crash.
# The end-to-end runs on cards are the e2e and sched steps of kmod/qemu
# (tests/kmod/vm_init.sh).
set -u
HMOE=${HMOE:-build/hmoe}
BUILD=${BUILD:-build}
if ls /dev/accel/accel* /dev/dri/renderD* >/dev/null 2>&1 &&
	grep -qs '^hmoe ' /proc/modules; then
	echo "hmoe.ko is loaded here: the no-device path cannot be tested"
	exit 77
fi
[ -r models/deepseek-v3-tokenizer/tokenizer.json ] ||
	{ echo "no tokenizer in models/deepseek-v3-tokenizer"; exit 77; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/hmoe_kmod_nodev.XXXXXX")
trap 'rm -rf "$dir"' EXIT
"$HMOE" mktiny --out "$dir/m" --seed 3 >/dev/null || { echo "FAIL: mktiny"; exit 1; }
gen() { "$HMOE" generate --model "$dir/m" --temperature 0 --max-tokens 2 --prompt hi --experts "$@"; }
for spec in kmod kmod:fp8,cards=2 kmod:int4 kmod:int8-a8,cards=2 kmod:fp8,card=1 \
	sched:card=kmod sched:card=kmod:int8,cards=1,mem=1M; do
	out=$(gen "$spec" 2>&1 >/dev/null); rc=$?
	echo "$spec -> $rc: $out"
	[ $rc -eq 1 ] || { echo "FAIL: '$spec' exited $rc without a card, want 1"; exit 1; }
	[ "$(echo "$out" | wc -l)" -eq 1 ] && echo "$out" | grep -q 'no hmoe card' ||
		{ echo "FAIL: want one line saying no hmoe card"; exit 1; }
done
for spec in kmod:fp9 kmod:fp8-a4 kmod:cards=0 kmod:cards=9 kmod:cards=x kmod:fp8,bogus=1 kmod:fp8,int8 \
	kmod:card=0,cards=2 kmod:card=x kmod:card=-1 sched:card=kmod:card=1 sched:card=kmod:fp9 \
	sched:card=kmod,replan=0; do
	out=$(gen "$spec" 2>&1 >/dev/null); rc=$?
	echo "$spec -> $rc: $out"
	[ $rc -eq 2 ] || { echo "FAIL: '$spec' exited $rc, want 2"; exit 1; }
	[ "$(echo "$out" | wc -l)" -eq 1 ] || { echo "FAIL: want one error line"; exit 1; }
done
echo "PASS"
