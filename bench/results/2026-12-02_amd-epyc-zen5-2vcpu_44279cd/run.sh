#!/bin/sh
# run.sh: rebuilds this folder's harnesses from the repository (after `make` at 44279cd)
# and the earlier results folders' files, and reruns every measurement into OUT (default
# ./out). From the repository root: sh bench/results/2026-12-02_amd-epyc-zen5-2vcpu_44279cd/run.sh
# About 20 minutes on the 2-vCPU dev VM; the machine should be otherwise idle.
set -e
H=$(dirname "$0"); OUT=${OUT:-out}; W=$(mktemp -d); mkdir -p "$OUT"
P25=bench/results/2026-12-02_amd-epyc-zen5-2vcpu_3bd77c9
P24=bench/results/2026-12-02_amd-epyc-zen5-2vcpu_deeac41
V="-std=c11 -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw
   -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mgfni -Wno-unknown-pragmas"
L="build/obj/host/bench_read_avx512.o build/obj/host/bench_common.o build/obj/host/cli.o
   build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread"
I="-O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Ihost -Ikmod/uapi -I/usr/include/cjson"
# the layer-call harness (24th session, 25th's thread count) and its token-count version
patch -s -o "$W/var_ab.c" "$P24/var_ab.c" < "$P25/var_ab.patch"
patch -s -o "$W/var_abt.c" "$W/var_ab.c" < "$H/var_ab-tokens.patch"
# the kernels before 44279cd with the variants (g_var): 0 as built, 1 rows unrolled,
# 2 no prefetch, 3 both, 4 rows and pairs unrolled, 5 rows unrolled in the terms too,
# 6 rows unrolled for any token count, 11-18 rows unrolled with other prefetch distances
git show 26aa95f:runtime/hmoe_fxp_cpu_avx512.c > "$W/base.c"
patch -s -o "$W/avx512_u.c" "$W/base.c" < "$H/avx512-unroll.patch"
# the kernels of 44279cd, g_var defined (as in the 25th session's kern_rates.c) and,
# avx512_x.c, g_var 70: the int one-token kernels' x read from the first groups' lines
sed -e 's/^#include "hmoe_fxp_cpu.h"$/#include "hmoe_fxp_cpu.h"\nint g_var;/' \
    runtime/hmoe_fxp_cpu_avx512.c > "$W/avx512_h.c"
patch -s -o "$W/avx512_x.c" "$W/avx512_h.c" < "$H/avx512-xfixed.patch"
# the driver with the 25th session's variants (50-52 larger fp8 items) and 60 (no down
# pass) / 61 (no up pass)
patch -s -o "$W/cpu_v.c" runtime/hmoe_fxp_cpu.c < "$H/driver-phases.patch"
patch -s -o "$W/avx512_pf.c" "$W/avx512_h.c" < "$H/avx512-pfpos.patch"
for f in avx512_u avx512_h avx512_x avx512_pf; do gcc $V -c "$W/$f.c" -o "$W/$f.o"; done
gcc -std=c11 -O2 -D_GNU_SOURCE -pthread -Iruntime -Ihls -Wno-unknown-pragmas -c "$W/cpu_v.c" -o "$W/cpu_v.o"
gcc $I "$W/var_ab.c" "$W/avx512_u.o" $L -o "$W/var_u"
gcc $I "$W/var_abt.c" "$W/avx512_u.o" $L -o "$W/var_ut"
gcc $I "$W/var_ab.c" "$W/avx512_x.o" $L -o "$W/var_x"
gcc $I "$W/var_ab.c" "$W/avx512_pf.o" $L -o "$W/var_pf"
gcc $I "$W/var_ab.c" "$W/avx512_h.o" "$W/cpu_v.o" $L -o "$W/var_items"
patch -s -o "$W/pat_ab.c" "$W/var_ab.c" < "$H/pat_ab.patch"
printf 'int g_var;\n' > "$W/gv.c"
gcc $I -mavx512f -mavx512bw "$W/pat_ab.c" "$W/gv.c" $L -o "$W/pat_ab"
gcc $I -mavx512f -mavx512bw "$W/pat_ab.c" "$W/cpu_v.o" "$W/avx512_h.o" $L -o "$W/pat_items"
patch -s -o "$W/pat_mem.c" "$W/pat_ab.c" < "$H/pat_mem.patch"
gcc $I -mavx512f -mavx512bw "$W/pat_mem.c" "$W/gv.c" $L -o "$W/pat_mem"
gcc $I "$H/pg.c" $L -o "$W/pg"
patch -s -o "$W/ov.c" "$P25/overlap.c" < "$H/overlap-ip.patch"
gcc -O2 -march=native -pthread "$W/ov.c" -o "$W/ov"
for t in 2 1; do for m in fp8-a8 fp8; do
	THREADS=$t "$W/var_u" $m 3 8 0 1 2 3 4 5; done; done > "$OUT/unroll.txt"
for k in 2 3 4; do for m in fp8-a8 fp8; do
	TOK=$k NOHOT=1 "$W/var_ut" $m 3 6 0 6; done; done > "$OUT/unroll-tokens.txt"
for m in fp8-a8 fp8; do NOHOT=1 "$W/var_u" $m 3 8 1 18 11 12 13
	NOHOT=1 "$W/var_u" $m 3 8 1 14 15 16 17; done > "$OUT/unroll-distances.txt"
for m in int8 int4; do "$W/var_x" $m 3 8 0 70; done > "$OUT/int-x-fixed.txt"
{ THREADS=2 "$W/var_pf" fp8-a8 4 8 0 3 0 3; THREADS=2 "$W/var_pf" fp8 3 8 0 3 5
  THREADS=1 NOHOT=1 "$W/var_pf" fp8-a8 3 8 0 3; } > "$OUT/prefetch-position.txt"
for m in fp8-a8 fp8; do NOHOT=1 "$W/var_items" $m 3 8 0 51 50 52; done > "$OUT/fp8-items.txt"
for m in fp8-a8 fp8 int8 int4; do NOHOT=1 "$W/var_items" $m 3 8 0 60 61; done > "$OUT/phases.txt"
{ NOHOT=1 "$W/pat_ab" fp8-a8 3 8 0 1 2 3 4 5 6 9; NOHOT=1 "$W/pat_ab" fp8-a8 3 8 0 6 10 11 12 9
  NOHOT=1 "$W/pat_ab" int8 3 8 0 1 3 6 7 9; } > "$OUT/pattern-variants.txt"
{ PAT=0 NOHOT=1 "$W/pat_items" fp8-a8 3 8 0 51 50 52
  PAT=9 NOHOT=1 "$W/pat_items" fp8-a8 3 8 0 51 50 52; } > "$OUT/pattern-items.txt"
{ NOHOT=1 "$W/pat_mem" fp8-a8 3 8 0 30 31 9; NOHOT=1 "$W/pat_mem" int8 3 8 0 30 9; } \
	> "$OUT/pattern-vs-sequential.txt"
"$W/pg" 4 32 > "$OUT/pages.txt"
CFG="0,0,4,256,2 0,0,4,256,3 20,0,4,256,2 20,0,4,256,3 20,2048,4,256,3 8,0,4,256,2 16,0,4,256,2" \
	"$W/ov" 3 > "$OUT/overlap-ip.txt"
rm -rf "$W"
