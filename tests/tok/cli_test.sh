#!/usr/bin/env bash
# tok/cli: `hmoe tokenize` and `hmoe detokenize` as a user meets them (no node needed):
# round trips of a multilingual text, --bos, --skip-special, --tokenizer, and every bad
# input (missing or broken tokenizer.json, bad or out-of-range ids, invalid UTF-8, bad
# flag combinations) giving exit 2 with one error line.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
HMOE=${HMOE:-$BUILD/hmoe}
model=models/deepseek-v3-tokenizer
out=$BUILD/tok/cli
mkdir -p "$out"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_bad WHAT ARGS...: exit 2 and exactly one line on stderr, nothing on stdout
expect_bad() {
	local what=$1
	shift
	"$HMOE" "$@" >"$out/stdout" 2>"$out/stderr"
	local rc=$? lines
	lines=$(wc -l <"$out/stderr")
	if [ $rc -ne 2 ] || [ "$lines" -ne 1 ] || [ -s "$out/stdout" ]; then
		fail "$what: want exit 2 and one error line, got exit $rc, $lines lines:"
		head -5 "$out/stderr"
	else
		echo "ok   $what -> $(cat "$out/stderr")"
	fi
}

# Round trip: the bytes of a multilingual text come back exactly.
ids=$("$HMOE" tokenize --model $model --file tests/tok/prose.txt) || fail "tokenize prose.txt"
"$HMOE" detokenize --model $model --raw --ids "$(echo $ids | tr ' ' ',')" >"$out/prose.txt" ||
	fail "detokenize prose ids"
cmp -s tests/tok/prose.txt "$out/prose.txt" || fail "prose.txt did not survive tokenize + detokenize"
n=$(echo $ids | wc -w)
bytes=$(wc -c <tests/tok/prose.txt)
[ "$n" -gt 100 ] && [ "$n" -lt "$bytes" ] || fail "prose.txt: $n ids for $bytes bytes is implausible"

# stdin and --tokenizer give the same ids as --file and --model
[ "$("$HMOE" tokenize --tokenizer $model/tokenizer.json --file - <tests/tok/prose.txt)" = "$ids" ] ||
	fail "--tokenizer FILE --file - differs from --model DIR --file"

# --bos puts the id of <｜begin▁of▁sentence｜> (from tokenizer_config.json) first, the
# same id as the text of that token gives
with_text=$("$HMOE" tokenize --model $model --text '<｜begin▁of▁sentence｜>Hi there')
with_flag=$("$HMOE" tokenize --model $model --text 'Hi there' --bos)
[ "$(echo $with_text | wc -w)" -ge 3 ] && [ "$with_flag" = "$with_text" ] ||
	fail "--bos gave '$with_flag', the BOS text gives '$with_text'"

# --skip-special drops BOS/EOS but keeps the text; without it they are printed
chat=$("$HMOE" tokenize --model $model --text '<｜begin▁of▁sentence｜>Hi!<｜end▁of▁sentence｜>' | tr ' ' ',')
[ "$("$HMOE" detokenize --model $model --ids "$chat" --skip-special)" = "Hi!" ] || fail "--skip-special"
[ "$("$HMOE" detokenize --model $model --ids "$chat")" = "<｜begin▁of▁sentence｜>Hi!<｜end▁of▁sentence｜>" ] ||
	fail "detokenize without --skip-special lost the special tokens"
# the empty text is no ids, and a line
[ "$("$HMOE" tokenize --model $model --text '')" = "" ] || fail "empty text gave ids"

"$HMOE" tokenize --help | grep -q -- '--tokenizer' || fail "tokenize --help"
"$HMOE" detokenize --help | grep -q -- '--skip-special' || fail "detokenize --help"

# Bad input
mkdir -p "$out/badjson" "$out/nomodel" "$out/badmerge"
printf '{"model": {"type": "BPE", "vocab": {"a": 0,' >"$out/badjson/tokenizer.json"
printf '{"added_tokens": []}' >"$out/nomodel/tokenizer.json"
printf '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}}' >"$out/badmerge/tokenizer.json"
printf 'ok \xff\xfe bytes' >"$out/invalid_utf8.txt"
expect_bad "missing model dir" tokenize --model "$out/no-such-dir" --text hi
expect_bad "truncated tokenizer.json" tokenize --model "$out/badjson" --text hi
expect_bad "tokenizer.json without model" tokenize --model "$out/nomodel" --text hi
expect_bad "merge of a token not in vocab" tokenize --tokenizer "$out/badmerge/tokenizer.json" --text hi
expect_bad "invalid UTF-8 text" tokenize --model $model --file "$out/invalid_utf8.txt"
expect_bad "missing --file" tokenize --model $model --file "$out/no-such-file"
expect_bad "--file is a directory" tokenize --model $model --file "$out"
expect_bad "--tokenizer is a directory" tokenize --tokenizer "$out" --text a
expect_bad "neither --text nor --file" tokenize --model $model
expect_bad "both --text and --file" tokenize --model $model --text a --file tests/tok/prose.txt
expect_bad "both --model and --tokenizer" tokenize --model $model --tokenizer $model/tokenizer.json --text a
expect_bad "no tokenizer given" tokenize --text a
expect_bad "unknown flag" tokenize --model $model --text a --frobnicate
expect_bad "ids not numbers" detokenize --model $model --ids 1,x,3
expect_bad "negative id" detokenize --model $model --ids 5,-1
expect_bad "id past the vocab" detokenize --model $model --ids 5,999999
expect_bad "empty --ids" detokenize --model $model --ids ''
expect_bad "detokenize missing dir" detokenize --model "$out/no-such-dir" --ids 1

[ $fails -eq 0 ] || { echo "$fails failures"; exit 1; }
echo "OK: tokenize/detokenize CLI"
