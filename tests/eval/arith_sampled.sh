#!/usr/bin/env bash
# R1's protocol (temperature 0.6, top-p 0.95, pass@1 over K samples) on the three held-out
# arithmetic kinds: accuracy stays high, and the same seed gives the same summary.
set -u
. "$(dirname "$0")/common.sh"

"$HMOE" eval --model "$MODEL" --task arith-mix --n 20 --samples 2 --seed 5 --threads 2 \
	--max-tokens 160 >"$TMP/a.json" || fail "hmoe eval exited $?"
cat "$TMP/a.json"
acc=$(json_field accuracy <"$TMP/a.json")
[ "$(json_field total <"$TMP/a.json")" = 40 ] || fail "expected 40 samples"
at_least "$acc" 0.85 || fail "sampled accuracy $acc < 0.85"
"$HMOE" eval --model "$MODEL" --task arith-mix --n 20 --samples 2 --seed 5 --threads 1 \
	--batch 5 --max-tokens 160 >"$TMP/b.json" || fail "second run exited $?"
for f in accuracy tokens_generated mean_reasoning_tokens; do
	[ "$(json_field $f <"$TMP/a.json")" = "$(json_field $f <"$TMP/b.json")" ] ||
		fail "$f differs between --batch 32 --threads 2 and --batch 5 --threads 1"
done
echo "ok: sampled accuracy $acc, reproducible across batch sizes and threads"
