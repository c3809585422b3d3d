#!/bin/sh
# items_ab.sh ROUNDS: bench experts --tokens 1 (int modes) with HMOE_FXP_ONE_TOKEN_ITEMS=1
# (work items of 32 / 128 rows, as before) and the default 4 (128 / 512) in turn, the
# order swapped every other round; prints each run's one-token bw_ratio per format.
HMOE=${HMOE:-./build/hmoe}
for r in $(seq 1 "${1:-3}"); do
	if [ $((r % 2)) = 1 ]; then order="1 4"; else order="4 1"; fi
	for s in $order; do
		HMOE_FXP_ONE_TOKEN_ITEMS=$s "$HMOE" bench experts --json --tokens 1 \
			--formats int8,int4,int8-a8 --f32-experts 0 --experts 16 2>/dev/null |
		/usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
print("round %s items x%s:" % (sys.argv[1], d["one_token_items"]), " ".join(
    "%s %.3f (bw %.1f, rows %s, kp %.3f)" % (p["format"], p["bw_ratio"], p["read_bw_around"] / 1e9,
    p["work_item_rows"], p["kernel_pattern_ratio"]) for p in d["results"]))' "$r"
	done
done
