#!/bin/bash
# fp8pf.sh ROUNDS CFG...: bench experts --tokens 1 fp8,fp8-a8 per fp8 four-row prefetch setting, alternating
# (from the repository root)
R=$1; shift
for r in $(seq 1 $R); do
 for c in "$@"; do
  HMOE_FXP_FP8_ROWS4_PREFETCH=$c build/hmoe bench experts --tokens 1 --formats fp8,fp8-a8 --f32-experts 0 --experts 32 --json 2>/dev/null | /usr/bin/python3 -c "
import json,sys;d=json.load(sys.stdin)
print('fp8_rows4 %-10s'%'$c', ' '.join('%s %.3f (%.1f/%.1f) pat %.3f kp %.3f'%(p['format'],p['bw_ratio'],p['weight_bytes_per_s']/1e9,p['read_bw_around']/1e9,p['pattern_ratio'],p['kernel_pattern_ratio']) for p in d['results']))"
 done
done
