#!/usr/bin/env bash
# bad_input.sh: `hmoe logits` with bad flags fails with exit 2 and one line naming the problem.
set -u
: "${HMOE:?} ${BUILD:?}"
dir=$BUILD/tmp/ref/bad_input
rm -rf "$dir"
mkdir -p "$dir"
$HMOE mktiny --out "$dir" --seed 1 --no-tokenizer >/dev/null || exit 2
vocab=$(sed -n 's/.*"vocab_size":[[:space:]]*\([0-9]*\).*/\1/p' "$dir/config.json")
fails=0
expect() { # expect WORD ARGS...: exit 2 and WORD in the one-line message
	local word=$1 out rc
	shift
	out=$("$HMOE" logits "$@" 2>&1)
	rc=$?
	if [ $rc -ne 2 ] || ! grep -q -- "$word" <<<"$out" || [ "$(wc -l <<<"$out")" -ne 1 ]; then
		echo "FAIL: hmoe logits $*: exit $rc, output: $out"
		fails=$((fails + 1))
	else
		echo "ok: $* -> $out"
	fi
}
expect "vocab_size" --model "$dir" --tokens "0,$vocab"
expect "tokens" --model "$dir" --tokens "0,-3"
expect "tokens" --model "$dir" --tokens "1,,2"
expect "attention form" --model "$dir" --tokens 0 --attn fast
expect "expert backend" --model "$dir" --tokens 0 --experts nosuch
expect "model" --tokens 0
expect "config.json" --model "$dir/missing" --tokens 0
expect "threads" --model "$dir" --tokens 0 --threads -1
expect "out" --model "$dir" --tokens 0 --out "$dir/no/such/dir/x.f32"
rm -rf "$dir"
[ $fails -eq 0 ]
