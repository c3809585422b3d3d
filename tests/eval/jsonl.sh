#!/usr/bin/env bash
# A user's own problems: jsonl with string and number answers is scored like the
# built-in task; the problems here are the first held-out additions of `--task arith`,
# so both paths must agree exactly.
set -u
. "$(dirname "$0")/common.sh"

"$HMOE" eval --model "$MODEL" --task arith --n 12 --temperature 0 --threads 2 \
	--max-tokens 160 --dump "$TMP/task.jsonl" >"$TMP/task.json" || fail "task run exited $?"
# {"prompt": ..., "answer": ...} lines from the dump; odd lines give the answer as a number
awk -F'"' '{ n++; if (n % 2) printf "{\"prompt\": \"%s\", \"answer\": %s}\n", $8, $12;
	     else printf "{\"prompt\": \"%s\", \"answer\": \"%s\"}\n\n", $8, $12 }' \
	"$TMP/task.jsonl" >"$TMP/mine.jsonl"
"$HMOE" eval --model "$MODEL" --jsonl "$TMP/mine.jsonl" --temperature 0 --threads 2 \
	--max-tokens 160 >"$TMP/mine.json" || fail "jsonl run exited $?"
cat "$TMP/mine.json"
[ "$(json_field problems <"$TMP/mine.json")" = 12 ] || fail "expected 12 problems"
for f in accuracy tokens_generated; do
	[ "$(json_field $f <"$TMP/task.json")" = "$(json_field $f <"$TMP/mine.json")" ] ||
		fail "$f differs between --task and the same problems as --jsonl"
done
echo "ok: jsonl scores match the task ($(json_field accuracy <"$TMP/mine.json"))"
