#!/bin/bash
# binab.sh ROUNDS FORMATS BIN... : bench experts --tokens 1 --experts 16 with each binary in
# turn (the order swapped every other round); bw_ratio, pattern and kernel_pattern ratios
R=$1; F=$2; shift 2
for r in $(seq 1 $R); do
 if [ $((r % 2)) = 0 ]; then set -- $(printf '%s\n' "$@" | tac); fi
 for b in "$@"; do
  $b bench experts --tokens 1 --formats $F --f32-experts 0 --experts 16 --json 2>/dev/null | /usr/bin/python3 -c "
import json,sys;d=json.load(sys.stdin)
print('%-28s probe %.1f'%('$b',d['read_bandwidth_bytes_per_s']/1e9), ' '.join('%s %.3f (%.1f/%.1f) kp %s pat %s'%(p['format'],p['bw_ratio'],p['weight_bytes_per_s']/1e9,p['read_bw_around']/1e9,p.get('kernel_pattern_ratio'),p.get('pattern_ratio')) for p in d['results']))"
 done
done
