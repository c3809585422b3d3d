#!/usr/bin/env bash
# check_logits.sh: hmoe logits against the independent Python reference (ref_forward.py).
#
#   tests/ref/check_logits.sh NAME SEED "MKTINY FLAGS" "LOGITS FLAGS" [N_TOKENS]
#
# Makes a mktiny checkpoint ($BUILD/tmp/ref/NAME), rewrites its config so the test
# exercises what the default tiny config would not (YaRN original length 16, so the
# sequence runs past it; topk_group 2, so group-limited routing masks groups), runs
# `hmoe logits` on a varied token sequence and requires max |c - ref| / max |ref| <= 1e-4
# at every position. Exit 0 pass, 1 fail, 77 skip (no torch), 2 setup error.
set -eu
name=$1 seed=$2 mk_flags=$3 logits_flags=$4 n_tok=${5:-36}
: "${HMOE:?} ${BUILD:?}"
py=/usr/bin/python3
here=$(dirname "$0")
$py -c 'import numpy, torch' 2>/dev/null || { echo "skip: /usr/bin/python3 lacks numpy/torch"; exit 77; }

dir=$BUILD/tmp/ref/$name
rm -rf "$dir"
mkdir -p "$dir"
# shellcheck disable=SC2086
$HMOE mktiny --out "$dir" --seed "$seed" --no-tokenizer $mk_flags
$py - "$dir/config.json" <<'PY'
import json, sys
p = sys.argv[1]
c = json.load(open(p))
c["rope_scaling"]["original_max_position_embeddings"] = 16
if c.get("n_group", 1) > 2:
    c["topk_group"] = 2
json.dump(c, open(p, "w"), indent=1)
PY
vocab=$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["vocab_size"])' "$dir/config.json")
# varied ids over the whole vocabulary, BOS first, with repeats
tokens=$($py -c '
import sys
n, v, s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ids = [0] + [(i * 7919 + s * 104729 + (i * i * 31) % 977) % v for i in range(1, n)]
ids[n // 2] = ids[3]
print(",".join(map(str, ids)))' "$n_tok" "$vocab" "$seed")

# shellcheck disable=SC2086
$HMOE logits --model "$dir" --tokens "$tokens" --out "$dir/c.f32" $logits_flags
$py "$here/ref_forward.py" --model "$dir" --tokens "$tokens" --check "$dir/c.f32" --tol 1e-4
rc=$?
rm -rf "$dir"
exit $rc
