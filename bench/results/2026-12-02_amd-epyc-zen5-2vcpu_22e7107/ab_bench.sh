#!/bin/bash
# From the repository root; OLD = the hmoe binary of the commit before (e.g. a worktree built with `make build/hmoe`), new = build/hmoe.
# ab_bench.sh ROUNDS FORMATS : old / new bench experts --tokens 1 alternately
for r in $(seq 1 $1); do
 for b in old new; do
  if [ $b = old ]; then bin=$OLD; else bin=build/hmoe; fi
  $bin bench experts --tokens 1 --formats $2 --f32-experts ${F32:-0} --json 2>/dev/null | /usr/bin/python3 -c "
import json,sys;d=json.load(sys.stdin)
print('$b', 'probe %.1f'%(d['read_bandwidth_bytes_per_s']/1e9), ' '.join('%s %.3f (%.1f GB/s, fp %s)'%(p['format'],p['bw_ratio'],p['weight_bytes_per_s']/1e9,p.get('first_pass_ratio','-')) for p in d['results']))"
 done
done
