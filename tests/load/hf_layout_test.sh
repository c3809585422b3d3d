#!/usr/bin/env bash
# mktiny output checked by an independent reader (hf_layout.py: json/struct/numpy only):
# the exact HF DeepSeek-V3 names, dtypes, scale shapes, safetensors rules and index, for
# an FP8 checkpoint in 2 shards and a bf16 one.
set -u
HMOE=${HMOE:-build/hmoe}
[ -x /usr/bin/python3 ] || { echo "no /usr/bin/python3; skipping"; exit 77; }
tmp=$(mktemp -d /tmp/hmoe_hf_layout.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
$HMOE mktiny --out "$tmp/fp8" --seed 3 --shards 2 --no-tokenizer >/dev/null || exit 1
/usr/bin/python3 tests/load/hf_layout.py "$tmp/fp8" --mktiny || exit $?
$HMOE mktiny --out "$tmp/bf16" --seed 3 --bf16 --no-tokenizer >/dev/null || exit 1
/usr/bin/python3 tests/load/hf_layout.py "$tmp/bf16" || exit $?
