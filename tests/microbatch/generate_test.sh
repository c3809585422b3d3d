#!/usr/bin/env bash
# tests/microbatch/generate_test.sh: `hmoe generate --micro-batches 2` on the default
# model prints exactly the text it prints without the flag, with plain and with
# scheduled (emulated-card, asynchronous) experts; one prompt (a batch of one sequence
# runs as one micro-batch) and, with --prompts, several requests batched
# together (really two micro-batches); a bad value, or 2 with --attn cuda, is one line
# and exit 2.
set -u
HMOE=${HMOE:-build/hmoe}
MODEL=${HMOE_ROOT:-.}/models/r1-arith
tmp=$(mktemp -d /tmp/hmoe_micro_gen.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0

gen() { # gen NAME ARGS...: stdout into $tmp/NAME.out
	local name=$1
	shift
	"$HMOE" generate --model "$MODEL" --chat --prompt "What is 457 + 386?" --max-tokens 48 \
		--seed 1 --threads 2 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	local rc=$?
	[ $rc -eq 0 ] || { echo "FAIL $name ($*): exit $rc"; cat "$tmp/$name.err"; fail=1; }
}

same() { # same A B
	if cmp -s "$tmp/$1.out" "$tmp/$2.out" && [ -s "$tmp/$1.out" ]; then
		echo "ok   $2 prints the text of $1"
	else
		echo "FAIL $2 differs from $1"; diff "$tmp/$1.out" "$tmp/$2.out" | head -5; fail=1
	fi
}

gen f32
gen f32_micro2 --micro-batches 2
same f32 f32_micro2
gen fxp --experts cpu-fxp
gen sched_micro2 --experts sched:cards=2 --micro-batches 2
same fxp sched_micro2

printf '%s\n' '{"prompt": "What is 12 + 30?"}' \
	'{"prompt": "What is 457 + 386?", "max_tokens": 20}' \
	'{"prompt": "What is 9 + 9?", "arrive": 3}' '{"prompt": "What is 70 + 5?"}' \
	>"$tmp/prompts.jsonl"
many() { # many NAME ARGS...
	local name=$1
	shift
	"$HMOE" generate --model "$MODEL" --prompts "$tmp/prompts.jsonl" --max-tokens 24 \
		--seed 1 --threads 2 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" ||
		{ echo "FAIL $name ($*)"; cat "$tmp/$name.err"; fail=1; }
}
many many_f32
many many_f32_micro2 --micro-batches 2
same many_f32 many_f32_micro2
many many_fxp --experts cpu-fxp
many many_sched_micro2 --experts sched:cards=2 --micro-batches 2
same many_fxp many_sched_micro2

TMP=$tmp
. "${HMOE_ROOT:-.}/tests/lib/expect_error.sh"
bad() { expect_error "$1" -- "$HMOE" generate --model "$MODEL" --prompt x "${@:2}"; } # bad WHAT ARGS...
bad "expected 1 or 2" --micro-batches 3
bad "expected 1 or 2" --micro-batches 0
bad "expected 1 or 2" --micro-batches two
bad "attn cuda" --micro-batches 2 --attn cuda
exit $fail
