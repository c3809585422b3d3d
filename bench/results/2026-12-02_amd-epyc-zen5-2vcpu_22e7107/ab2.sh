#!/bin/bash
# ab2.sh ROUNDS FORMATS: $OLD ("var", another build of hmoe) vs build/hmoe ("cur"), from the repository root, bench experts --tokens 1 --experts 64, alternately
for r in $(seq 1 $1); do
 for b in var cur; do
  if [ $b = var ]; then bin=$OLD; else bin=build/hmoe; fi
  $bin bench experts --tokens ${TOK:-1} --formats $2 --f32-experts 0 --experts 64 --json 2>/dev/null | /usr/bin/python3 -c "
import json,sys;d=json.load(sys.stdin)
print('$b', 'probe %.1f'%(d['read_bandwidth_bytes_per_s']/1e9), ' '.join('%s/%d %.3f (%.1f)'%(p['format'],p['tokens'],p['bw_ratio'],p['weight_bytes_per_s']/1e9) for p in d['results']))"
 done
done
