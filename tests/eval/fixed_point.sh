#!/usr/bin/env bash
# Fixed-point experts keep the model's answers: for each format (fp8, int8, int4) greedy
# accuracy on held-out addition is within one problem of cpu-f32 on the same problems,
# and every fixed-point path of a format (scalar kernel, the SIMD kernel this CPU picks,
# the scheduler over two emulated cards) generates byte-identical outputs.
# docs/model.md has the 500-problem table.
set -u
. "$(dirname "$0")/common.sh"

N=32
run() { # run OUT EXPERTS N [extra flags]: summary to OUT.json, samples to OUT.jsonl
	local out=$1 experts=$2 n=$3
	shift 3
	"$HMOE" eval --model "$MODEL" --task arith --n "$n" --temperature 0 --threads 2 \
		--max-tokens 160 --experts "$experts" --dump "$TMP/$out.jsonl" "$@" >"$TMP/$out.json"
}

if ! run probe cpu-fxp:fp8 1 2>"$TMP/err"; then
	if grep -q "unknown expert backend" "$TMP/err"; then
		echo "skip: the cpu-fxp expert backend is not in this build"
		exit 77
	fi
	cat "$TMP/err"
	fail "cpu-fxp:fp8 failed"
fi
run f32 cpu-f32 $N || fail "cpu-f32 run exited $?"
f32=$(json_field correct <"$TMP/f32.json")
for fmt in fp8 int8 int4; do
	run $fmt cpu-fxp:$fmt $N || fail "cpu-fxp:$fmt exited $?"
	c=$(json_field correct <"$TMP/$fmt.json")
	echo "$fmt: $c of $N correct (cpu-f32: $f32)"
	[ $((c - f32)) -le 1 ] && [ $((f32 - c)) -le 1 ] ||
		fail "$fmt: $c correct vs $f32 with cpu-f32"
	head -n 8 "$TMP/$fmt.jsonl" >"$TMP/$fmt.head"
	HMOE_FXP_SIMD=scalar run ${fmt}_scalar cpu-fxp:$fmt 8 || fail "scalar $fmt exited $?"
	cmp "$TMP/${fmt}_scalar.jsonl" "$TMP/$fmt.head" ||
		fail "$fmt: the scalar kernel's outputs differ from the SIMD kernel's"
	run ${fmt}_sched "sched:cards=2,card=cpu-fxp:$fmt" 8 || fail "sched $fmt exited $?"
	cmp "$TMP/${fmt}_sched.jsonl" "$TMP/$fmt.head" ||
		fail "$fmt: the emulated cards' outputs differ from the CPU kernel's"
done
echo "ok: fp8, int8, int4 within one problem of cpu-f32; scalar, SIMD, cards identical"
