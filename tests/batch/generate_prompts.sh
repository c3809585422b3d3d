#!/usr/bin/env bash
# `hmoe generate --prompts` runs three requests together (two at a time, prompts cut into
# chunks of 8, one request arriving late) and must print, for each, exactly the text of
# a separate `hmoe generate --prompt` run with the same seed and limit; other batch
# limits must not change any text either. The 17-token prompt checks the chunk rule
# (8, 7, 2: no one-token chunk, so chunked prefill equals the single run's prefill).
set -u
HMOE=${HMOE:-build/hmoe}
MODEL=${HMOE_EVAL_MODEL:-${HMOE_ROOT:-.}/models/r1-arith}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PY=/usr/bin/python3
fail() {
	echo "FAIL: $*"
	exit 1
}
[ -f "$MODEL/model.safetensors" ] || { echo "skip: $MODEL/model.safetensors not found"; exit 77; }
[ -x $PY ] || { echo "skip: $PY not found (used to read the JSON lines)"; exit 77; }

prompts=("What is 457 + 386?" "What is 12 + 905? Show it." "What is 631 - 248?")
seeds=(1 2 3)
limits=(256 30 256)
cat >"$TMP/p.jsonl" <<JSON
{"prompt": "${prompts[0]}", "seed": ${seeds[0]}}
{"prompt": "${prompts[1]}", "seed": ${seeds[1]}, "max_tokens": ${limits[1]}}

{"prompt": "${prompts[2]}", "seed": ${seeds[2]}, "arrive": 4, "id": "late"}
JSON

"$HMOE" generate --model "$MODEL" --chat --prompts "$TMP/p.jsonl" --max-seqs 2 \
	--prefill-chunk 8 --threads 2 >"$TMP/batch.jsonl" 2>"$TMP/batch.err" ||
	{ cat "$TMP/batch.err"; fail "generate --prompts exited $?"; }
grep -q "^\[batch: 3 requests in [0-9]* steps" "$TMP/batch.err" ||
	{ cat "$TMP/batch.err"; fail "no summary line on stderr"; }
[ "$(wc -l <"$TMP/batch.jsonl")" = 3 ] || { cat "$TMP/batch.jsonl"; fail "expected 3 result lines"; }

for i in 0 1 2; do
	"$HMOE" generate --model "$MODEL" --chat --prompt "${prompts[$i]}" --seed "${seeds[$i]}" \
		--max-tokens "${limits[$i]}" --threads 1 >"$TMP/single$i.txt" 2>"$TMP/single$i.err" ||
		{ cat "$TMP/single$i.err"; fail "single run $i exited $?"; }
done

# a piped single run prints "<think>\n" (the template opened it) + the text + "\n"
$PY - "$TMP" <<'PY' || exit 1
import json, sys
tmp = sys.argv[1]
rows = [json.loads(l) for l in open(tmp + "/batch.jsonl")]
by_index = {r["index"]: r for r in rows}
assert sorted(by_index) == [0, 1, 2], f"indices {sorted(by_index)}"
assert by_index[2]["id"] == "late" and by_index[0]["id"] == 0, "ids not echoed"
assert by_index[1]["finish"] == "length" and by_index[1]["tokens"] == 30, by_index[1]
assert by_index[1]["prompt_tokens"] == 17, "the chunk-rule prompt is no longer 17 tokens"
for i in range(3):
    single = open(f"{tmp}/single{i}.txt", encoding="utf-8").read()
    want = "<think>\n" + by_index[i]["text"] + "\n"
    if single != want:
        print(f"FAIL: request {i} differs from its single run:\n--- single\n{single!r}\n"
              f"--- batched\n{want!r}")
        sys.exit(1)
    print(f"ok: request {i} ({by_index[i]['tokens']} tokens, {by_index[i]['finish']}) "
          "equals its single run")
PY

# other limits: one at a time, and chunks of 5 with a budget of 7
for lim in "--max-seqs 1 --prefill-chunk 64" "--max-seqs 3 --prefill-chunk 5 --max-batch-tokens 7"; do
	# shellcheck disable=SC2086
	"$HMOE" generate --model "$MODEL" --chat --prompts "$TMP/p.jsonl" $lim --threads 1 \
		>"$TMP/other.jsonl" 2>"$TMP/other.err" || { cat "$TMP/other.err"; fail "$lim exited"; }
	$PY - "$TMP/batch.jsonl" "$TMP/other.jsonl" <<'PY' || fail "texts change with $lim"
import json, sys
a, b = ({json.loads(l)["index"]: json.loads(l) for l in open(p)} for p in sys.argv[1:3])
sys.exit(0 if a == b else 1)
PY
	echo "ok: same results with $lim"
done
