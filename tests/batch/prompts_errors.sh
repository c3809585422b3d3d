#!/usr/bin/env bash
# Bad --prompts input is one line on stderr naming the file (and line), exit status 2,
# never a crash. The file is read before the model is opened.
set -u
HMOE=${HMOE:-build/hmoe}
MODEL=${HMOE_EVAL_MODEL:-${HMOE_ROOT:-.}/models/r1-arith}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0

printf '{"prompt": "What is 1 + 1?"}\n{"prompt": "x", "seed": }\n' >"$TMP/badjson.jsonl"
printf '\n{"prompt": "What is 1 + 1?", "max_token": 5}\n' >"$TMP/unknown.jsonl"
printf '{"prompt": "What is 1 + 1?", "max_tokens": 0}\n' >"$TMP/maxtok.jsonl"
printf '{"prompt": "a"}\n{"prompt": "b"}\n{"seed": 3}\n' >"$TMP/noprompt.jsonl"
printf '{"prompt": "a", "arrive": -1}\n' >"$TMP/arrive.jsonl"
printf '[1, 2]\n' >"$TMP/array.jsonl"
printf '\n  \n' >"$TMP/blank.jsonl"
: >"$TMP/empty.jsonl"
printf '{"prompt": "a"}\n{"prompt": "b\0"}\n' >"$TMP/nul.jsonl"
printf '{"prompt": "What is 1 + 1?"}\n' >"$TMP/ok.jsonl"

. "${HMOE_ROOT:-.}/tests/lib/expect_error.sh"
expect() { expect_error "$1" -- "$HMOE" generate --model "$MODEL" "${@:3}"; } # expect WORDS -- ARGS...

expect "$TMP/nope.jsonl: cannot open" -- --prompts "$TMP/nope.jsonl"
expect "$TMP/badjson.jsonl line 2: not a JSON object" -- --prompts "$TMP/badjson.jsonl"
expect "$TMP/array.jsonl line 1: not a JSON object" -- --prompts "$TMP/array.jsonl"
expect "$TMP/unknown.jsonl line 2: unknown field \"max_token\"" -- --prompts "$TMP/unknown.jsonl"
expect "$TMP/maxtok.jsonl line 1: \"max_tokens\" must be" -- --prompts "$TMP/maxtok.jsonl"
expect "$TMP/noprompt.jsonl line 3: \"prompt\" missing" -- --prompts "$TMP/noprompt.jsonl"
expect "$TMP/arrive.jsonl line 1: \"arrive\"" -- --prompts "$TMP/arrive.jsonl"
expect "$TMP/nul.jsonl line 2: contains a NUL byte" -- --prompts "$TMP/nul.jsonl"
expect "$TMP/empty.jsonl: no prompts" -- --prompts "$TMP/empty.jsonl"
expect "$TMP/blank.jsonl: no prompts" -- --prompts "$TMP/blank.jsonl"
expect "--prefill-chunk 32 is larger than --max-batch-tokens 16" -- --prompts "$TMP/ok.jsonl" \
	--prefill-chunk 32 --max-batch-tokens 16
expect "--max-seqs" -- --prompts "$TMP/ok.jsonl" --max-seqs 0
expect "give --prompt or --prompts, not both" -- --prompts "$TMP/ok.jsonl" --prompt hi
expect "--max-seqs needs --prompts" -- --prompt hi --max-seqs 2
expect "with --attn cuda give one --prompt per run" -- --prompts "$TMP/ok.jsonl" --attn cuda
exit $fail
