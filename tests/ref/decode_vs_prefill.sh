#!/usr/bin/env bash
# decode_vs_prefill.sh: `hmoe logits` run as one naive prefill, as absorbed decode one
# token at a time through the KV cache, and as chunked prefill (chunks of 5: naive with
# the cached past) must agree at every position (max rel err <= 1e-4), and 1 vs 2
# threads must be bit-identical. Needs no Python torch for the runs, only for comparing.
set -eu
: "${HMOE:?} ${BUILD:?}"
py=/usr/bin/python3
here=$(dirname "$0")
$py -c 'import numpy, torch' 2>/dev/null || { echo "skip: /usr/bin/python3 lacks numpy/torch"; exit 77; }
dir=$BUILD/tmp/ref/decode_vs_prefill
rm -rf "$dir"
mkdir -p "$dir"
$HMOE mktiny --out "$dir" --seed 5 --no-tokenizer
# YaRN original length 16 so the 32 positions pass it; topk_group 2 so groups are masked
$py - "$dir/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["rope_scaling"]["original_max_position_embeddings"] = 16
c["topk_group"] = 2
json.dump(c, open(p, "w"), indent=1)
PY
vocab=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$dir/config.json")
tokens=$($py -c 'print(",".join(str((i * 104723 + 17) % int(__import__("sys").argv[1])) for i in range(32)))' "$vocab")

$HMOE logits --model "$dir" --tokens "$tokens" --out "$dir/prefill.f32" --threads 2
$HMOE logits --model "$dir" --tokens "$tokens" --out "$dir/decode.f32" --threads 2 --step 1
$HMOE logits --model "$dir" --tokens "$tokens" --out "$dir/chunked.f32" --threads 1 --step 5
$HMOE logits --model "$dir" --tokens "$tokens" --out "$dir/chunked2.f32" --threads 2 --step 5
$py "$here/ref_forward.py" --compare "$dir/decode.f32" "$dir/prefill.f32" --vocab "$vocab"
$py "$here/ref_forward.py" --compare "$dir/chunked.f32" "$dir/prefill.f32" --vocab "$vocab"
cmp "$dir/chunked.f32" "$dir/chunked2.f32" || { echo "FAIL: 1 vs 2 threads differ"; exit 1; }
echo "1 vs 2 threads: bit-identical"
rm -rf "$dir"
