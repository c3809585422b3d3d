#!/bin/bash
# pf_sweep.sh ROUNDS (from the repository root): bench experts --tokens 1 (int8, int4, fp8; 64 resident) per prefetch setting, settings alternating
cfgs=("0,1536 0,3072" "0,0 0,0" "1536,768 1536,768" "0,3072 0,6144" "4096,1536 4096,3072")
for r in $(seq 1 $1); do
 for c in "${cfgs[@]}"; do
  set -- $c
  HMOE_FXP_ROWS4_PREFETCH=$1 HMOE_FXP_FP8_ROWS4_PREFETCH=$2 build/hmoe bench experts --tokens 1 --formats int8,int4,fp8 --f32-experts 0 --experts 64 --json 2>/dev/null | /usr/bin/python3 -c "
import json,sys;d=json.load(sys.stdin)
print('rows4 $1 fp8 $2 probe %.1f'%(d['read_bandwidth_bytes_per_s']/1e9), ' '.join('%s %.3f (%.1f)'%(p['format'],p['bw_ratio'],p['weight_bytes_per_s']/1e9) for p in d['results']))"
 done
done
