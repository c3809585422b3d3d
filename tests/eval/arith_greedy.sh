#!/usr/bin/env bash
# The issue's proof, on a CI-sized slice: held-out 3-digit addition, greedy, cpu-f32
# experts: accuracy >= 95%, every answer reached with visible reasoning (no truncation,
# tens of reasoning tokens each). docs/model.md has the full 500-problem numbers.
set -u
. "$(dirname "$0")/common.sh"

"$HMOE" eval --model "$MODEL" --task arith --n 64 --temperature 0 --threads 2 \
	--max-tokens 160 --dump "$TMP/dump.jsonl" >"$TMP/out.json" || fail "hmoe eval exited $?"
cat "$TMP/out.json"
acc=$(json_field accuracy <"$TMP/out.json")
think=$(json_field mean_reasoning_tokens <"$TMP/out.json")
trunc=$(json_field truncated <"$TMP/out.json")
total=$(json_field total <"$TMP/out.json")
[ "$total" = 64 ] || fail "total $total, expected 64"
at_least "$acc" 0.95 || fail "greedy accuracy $acc < 0.95"
at_least "$think" 20 || fail "mean reasoning length $think tokens: the model does not reason"
[ "$trunc" = 0 ] || fail "$trunc samples hit --max-tokens"
grep -q '"output":".*carry.*</think>' "$TMP/dump.jsonl" || fail "no column working in the outputs"
echo "ok: accuracy $acc, mean reasoning $think tokens"
