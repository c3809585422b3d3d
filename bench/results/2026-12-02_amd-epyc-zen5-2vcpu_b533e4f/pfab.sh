#!/bin/bash
# pfab.sh ROUNDS FORMATS CFG... (from the repository root): bench experts --tokens 1
# --experts 16 per rows4 prefetch setting (HMOE_FXP_ROWS4_PREFETCH=L2,L1), alternating
R=$1; F=$2; shift 2
for r in $(seq 1 $R); do
 for c in "$@"; do
  HMOE_FXP_ROWS4_PREFETCH=$c build/hmoe bench experts --tokens 1 --formats $F --f32-experts 0 --experts 16 --json 2>/dev/null | /usr/bin/python3 -c "
import json,sys;d=json.load(sys.stdin)
print('rows4 %-10s probe %.1f'%('$c',d['read_bandwidth_bytes_per_s']/1e9), ' '.join('%s %.3f (%.1f/%.1f)'%(p['format'],p['bw_ratio'],p['weight_bytes_per_s']/1e9,p['read_bw_around']/1e9) for p in d['results']))"
 done
done
