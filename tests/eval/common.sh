# Shared by the tests/eval scripts: the committed model, JSON field extraction, skips.
MODEL=${HMOE_EVAL_MODEL:-$HMOE_ROOT/models/r1-arith}
HMOE=${HMOE:-build/hmoe}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# json_field NAME < summary: the value of a top-level field of `hmoe eval`'s summary.
json_field() {
	sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}[[:space:]]*$/\1/p" | head -n 1
}

# at_least A B: exit status 0 when the number A >= B.
at_least() {
	awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'
}

fail() {
	echo "FAIL: $*"
	exit 1
}

if [ ! -f "$MODEL/model.safetensors" ]; then
	echo "skip: $MODEL/model.safetensors not found (the trained model is not in this checkout)"
	exit 77
fi
