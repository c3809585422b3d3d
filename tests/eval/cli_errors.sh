#!/usr/bin/env bash
# Bad input to `hmoe eval` is one clear line on stderr and exit status 2, never a crash.
set -u
HMOE=${HMOE:-build/hmoe}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Flags and problem files are checked before the model is opened, so no model is needed.
MODEL=$TMP

printf '{"prompt": "What is 1 + 1?", "answer": "2"}\n{"prompt": "x", "answer": }\n' >"$TMP/bad.jsonl"
printf '{"prompt": "What is 1 + 1?"}\n' >"$TMP/noans.jsonl"
: >"$TMP/empty.jsonl"

. "${HMOE_ROOT:-.}/tests/lib/expect_error.sh"
expect() { expect_error "$1" -- "$HMOE" eval "${@:3}"; } # expect WORDS -- ARGS...

expect "unknown-task" -- --model "$MODEL" --task unknown-task
expect "exactly one of --task and --jsonl" -- --model "$MODEL"
expect "exactly one of --task and --jsonl" -- --model "$MODEL" --task arith --jsonl "$TMP/bad.jsonl"
expect "line 2: not a JSON object" -- --model "$MODEL" --jsonl "$TMP/bad.jsonl"
expect "line 1: \"answer\" missing" -- --model "$MODEL" --jsonl "$TMP/noans.jsonl"
expect "no problems" -- --model "$MODEL" --jsonl "$TMP/empty.jsonl"
expect "nope.jsonl" -- --model "$MODEL" --jsonl "$TMP/nope.jsonl"
expect "--n" -- --model "$MODEL" --task arith --n 0
expect "--top-p" -- --model "$MODEL" --task arith --top-p 0
expect "--samples" -- --model "$MODEL" --task arith --samples x
expect "no-such-dir" -- --model "$TMP/no-such-dir" --task arith --n 1
expect "unknown flag" -- --model "$MODEL" --task arith --bogus 1
exit $fail
