#!/usr/bin/env bash
# The loader through the CLI: hmoe mktiny and hmoe info on good and broken checkpoints.
# Every broken input must give exit 2 and one stderr line naming the problem.
set -u
HMOE=${HMOE:-build/hmoe}
BUILD=${BUILD:-build}
ST_EDIT=$BUILD/tests/load/st_edit
tmp=$(mktemp -d /tmp/hmoe_load_cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# expect_err WANT_TEXT CMD...: exit 2, exactly one stderr line, containing WANT_TEXT.
expect_err() {
	local want=$1; shift
	"$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$? lines
	lines=$(wc -l <"$tmp/err")
	if [ $rc -ne 2 ]; then fail "'$*': exit $rc, want 2 ($(head -c 300 "$tmp/err"))"; return; fi
	if [ "$lines" -ne 1 ]; then fail "'$*': $lines stderr lines, want 1"; cat "$tmp/err"; return; fi
	grep -qF -- "$want" "$tmp/err" || fail "'$*': stderr '$(cat "$tmp/err")' lacks '$want'"
}

[ -x "$ST_EDIT" ] || { echo "st_edit not built ($ST_EDIT); run make"; exit 1; }

# A good tiny checkpoint (real vocab, FP8).
$HMOE mktiny --out "$tmp/a" --seed 5 --no-tokenizer >/dev/null || { echo "mktiny failed"; exit 1; }
$HMOE info --model "$tmp/a" >"$tmp/info" 2>&1 || fail "info on a good checkpoint: $(cat "$tmp/info")"
grep -q "layers      3 (1 dense, 2 MoE)" "$tmp/info" || fail "info layers: $(cat "$tmp/info")"
grep -q "16 routed + 1 shared, top-4, 4 groups keep 2" "$tmp/info" || fail "info experts"
grep -q "YaRN factor 40, original 64" "$tmp/info" || fail "info rope"
grep -q "linears F8_E4M3" "$tmp/info" || fail "info dtype"
$HMOE info --model "$tmp/a" --json >"$tmp/a.json" || fail "info --json"
total=$(/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["params_total"], d["params_active"], d["bytes_per_token"])' "$tmp/a.json") \
	|| fail "info --json is not JSON"
read -r ptotal pactive bpt <<<"$total"
[ "${ptotal:-0}" -gt 52000000 ] && [ "${pactive:-0}" -lt "${ptotal:-0}" ] && [ "${bpt:-0}" -gt 0 ] \
	|| fail "params total $ptotal active $pactive bytes/token $bpt"

# Determinism: same seed, same bytes (other seeds: test_model); 3 shards, same totals.
# b also takes the committed tokenizer when there is one (copied, else a clear error).
if [ -f models/deepseek-v3-tokenizer/tokenizer.json ]; then
	$HMOE mktiny --out "$tmp/b" --seed 5 >/dev/null || fail "mktiny b (default tokenizer)"
	cmp -s models/deepseek-v3-tokenizer/tokenizer.json "$tmp/b/tokenizer.json" || fail "tokenizer.json not copied"
	cmp -s models/deepseek-v3-tokenizer/tokenizer_config.json "$tmp/b/tokenizer_config.json" \
		|| fail "tokenizer_config.json not copied"
else
	$HMOE mktiny --out "$tmp/b" --seed 5 --no-tokenizer >/dev/null || fail "mktiny b"
fi
cmp -s "$tmp/a/model.safetensors" "$tmp/b/model.safetensors" || fail "same seed, different bytes"
cmp -s "$tmp/a/config.json" "$tmp/b/config.json" || fail "same seed, different config.json"
$HMOE mktiny --out "$tmp/c" --seed 5 --shards 3 --no-tokenizer >/dev/null || fail "mktiny --shards 3"
[ -f "$tmp/c/model-00003-of-00003.safetensors" ] && [ -f "$tmp/c/model.safetensors.index.json" ] \
	|| fail "shard files missing: $(ls "$tmp/c")"
$HMOE info --model "$tmp/c" --json | grep -v '"model"' | grep -v '"files"' >"$tmp/c.json"
grep -v '"model"' "$tmp/a.json" | grep -v '"files"' | diff -q - "$tmp/c.json" >/dev/null \
	|| fail "sharded checkpoint summarises differently"

expect_err "tokenizer.json: cannot open" $HMOE mktiny --out "$tmp/t2" --tokenizer "$tmp/none"

# Bad flags.
expect_err "unknown preset \"huge\"" $HMOE mktiny --out "$tmp/x" --preset huge
expect_err "--shards 0 is out of range" $HMOE mktiny --out "$tmp/x" --shards 0
expect_err "--out is required" $HMOE mktiny --seed 3
expect_err "--seed 'abc'" $HMOE mktiny --out "$tmp/x" --seed abc
expect_err "--model is required" $HMOE info
expect_err "unknown flag --modle" $HMOE info --modle "$tmp/a"
expect_err "/nonexistent/config.json: cannot open" $HMOE info --model /nonexistent

# Broken checkpoints: c (3 shards) with one shard rewritten by st_edit (the writer), so
# each case rewrites only the small middle shard (layers); expect exit 2 naming the broken thing.
# broken NAME: fresh copy of c's config and index, shards linked, and sets $shard to the
# shard holding NAME (edits replace that link with a file).
broken() {
	rm -rf "$tmp/e"; mkdir "$tmp/e"
	cp "$tmp/c/config.json" "$tmp/c/model.safetensors.index.json" "$tmp/e/"
	ln -s "$tmp/c"/model-*.safetensors "$tmp/e/"
	shard=$(grep -o "\"$1\":[[:space:]]*\"[^\"]*\"" "$tmp/c/model.safetensors.index.json" |
		sed 's/.*:[[:space:]]*"//; s/"$//')
	[ -n "$shard" ] || fail "no shard holds $1"
}
edit() { # edit NAME OP [ARG]
	local name=$1; shift
	broken "$name"
	$ST_EDIT "$tmp/c/$shard" "$tmp/e/$shard.new" "$1" "$name" ${2:+"$2"} || fail "st_edit $* $name"
	rm "$tmp/e/$shard"; mv "$tmp/e/$shard.new" "$tmp/e/$shard"
}
edit model.layers.1.self_attn.kv_b_proj.weight reshape 64,256
expect_err "tensor model.layers.1.self_attn.kv_b_proj.weight: expected shape [256, 64] F8_E4M3|BF16|F32|F16, found [64, 256] F8_E4M3" \
	$HMOE info --model "$tmp/e"
edit model.layers.0.input_layernorm.weight dtype F16
$HMOE info --model "$tmp/e" >/dev/null || fail "an F16 norm should load"
edit model.layers.0.mlp.up_proj.weight dtype U8
expect_err "tensor model.layers.0.mlp.up_proj.weight: expected shape [320, 192] F8_E4M3|BF16|F32|F16, found [320, 192] U8" \
	$HMOE info --model "$tmp/e"
# Dropped from the shard but still in the index: the index is checked against the files.
edit model.layers.2.mlp.gate.e_score_correction_bias drop
expect_err "tensor model.layers.2.mlp.gate.e_score_correction_bias: the index puts it in" $HMOE info --model "$tmp/e"
# Dropped from both: the loader names the missing tensor.
sed -i '/model.layers.2.mlp.gate.e_score_correction_bias"/d' "$tmp/e/model.safetensors.index.json"
expect_err "tensor model.layers.2.mlp.gate.e_score_correction_bias: missing" $HMOE info --model "$tmp/e"
broken model.layers.1.self_attn.o_proj.weight
rm "$tmp/e/$shard"
head -c $(($(stat -c %s "$tmp/c/$shard") / 2)) "$tmp/c/$shard" >"$tmp/e/$shard"
expect_err "past the end of the data" $HMOE info --model "$tmp/e"
truncate -s 100 "$tmp/e/$shard"
expect_err "runs past the end of the 100-byte file" $HMOE info --model "$tmp/e"
head -c 1000 /dev/urandom >"$tmp/e/$shard"
expect_err "$shard" $HMOE info --model "$tmp/e"
# Config problems, on the single-file checkpoint a.
broken() { rm -rf "$tmp/e"; mkdir "$tmp/e"; cp "$tmp/a/config.json" "$tmp/e/"; ln -s "$tmp/a/model.safetensors" "$tmp/e/"; }
broken
sed -i 's/"hidden_size":.*192,/"hidden_size": "wide",/' "$tmp/e/config.json"
expect_err "config.json: field hidden_size must be an integer" $HMOE info --model "$tmp/e"
broken
sed -i 's/"topk_group":.*2,/"topk_group": 5,/' "$tmp/e/config.json"
expect_err "topk_group 5 must be in [1, n_group 4]" $HMOE info --model "$tmp/e"
broken
sed -i 's/"hidden_size":.*192,/"hidden_size": 200,/' "$tmp/e/config.json"
expect_err "tensor model.embed_tokens.weight: expected shape [129280, 200]" $HMOE info --model "$tmp/e"

if [ $fails -ne 0 ]; then echo "$fails failures"; exit 1; fi
echo "load cli: all checks passed"
