#!/bin/bash
# sweep.sh ROUNDS FORMATS TOKENS NAME...: `hmoe bench experts` of the builds $B/NAME/hmoe (B:
# a scratch folder, default /tmp/b) in
# alternating rounds (2 threads, 16 resident experts, --min-time 0.3); prints per run the
# probe (GB/s) and each mode's bw_ratio. sweep-rows4-*.txt ran it with
# HMOE_FXP_FP8_PREFETCH=1 for every build; bench-ab-1token-*.txt without (each build's own
# default: base = 7bf3c05, no fp8 prefetch on AMD; new2 = the plan).
R=$1; F=$2; T=$3; shift 3
B=${B:-/tmp/b}
for i in $(seq $R); do for v in "$@"; do
 "$B/$v/hmoe" bench experts --json --tokens $T --f32-experts 0 --experts 16 --threads 2 \
	--min-time 0.3 --formats $F 2>/dev/null | /usr/bin/python3 -c "
import json,sys
d=json.load(sys.stdin)
print('$v', round(d['read_bandwidth_bytes_per_s']/1e9,1), ' '.join('%s=%.3f'%(r['format'],r['bw_ratio']) for r in d['results']))"
done; done
