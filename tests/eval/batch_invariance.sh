#!/usr/bin/env bash
# Batching many problems per forward call must not change any output: the per-sample
# dumps of --batch 1 and --batch 6 are byte-identical (sampling on, two samples each).
set -u
. "$(dirname "$0")/common.sh"

for b in 1 6; do
	"$HMOE" eval --model "$MODEL" --task arith-mix --n 6 --samples 2 --seed 11 \
		--batch $b --threads 1 --max-tokens 120 --dump "$TMP/d$b.jsonl" >/dev/null ||
		fail "--batch $b exited $?"
done
[ "$(wc -l <"$TMP/d1.jsonl")" = 12 ] || fail "expected 12 dump lines"
cmp "$TMP/d1.jsonl" "$TMP/d6.jsonl" || fail "outputs depend on --batch"
echo "ok: 12 samples identical with --batch 1 and --batch 6"
