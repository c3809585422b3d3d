#!/bin/bash
# ab.sh NEWNAME "OLDFLAGS" FORMAT THREADS T...: tile_ab.c (..._intel-xeon-2vcpu_4d813ff) with
# "old" = an AVX-512 kernel file ($OLD_SRC, default the tree's) compiled with OLDFLAGS and
# renamed, "new" = $B/NEWNAME/libhmoe.a (B: a scratch folder, default /tmp/b), built from
# the tree by
#   make -j2 BUILD=$B/NEWNAME EXTRA_CFLAGS="..." $B/NEWNAME/hmoe
# During the sweep the four-row distances were #ifndef-guarded defines
# (-DROWS4_PREFETCH_BYTES=... -DROWS4_PREFETCH_L1_BYTES=...); since e7f424a they are the
# runtime plan, so one build and HMOE_FXP_ROWS4_PREFETCH / HMOE_FXP_FP8_ROWS4_PREFETCH do
# the same. ROUNDS (default 8), PF (HMOE_FXP_FP8_PREFETCH, default 1).
set -e
N=$1; OF=$2; shift 2
B=${B:-/tmp/b}
cd "$(dirname "$0")/../../.."  # the repository root
gcc -c -O2 -D_GNU_SOURCE -Iruntime -Ihls -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl \
	-mavx512dq -mavx512vnni -mavx512bf16 $OF -Dhmoe_fxp_simd_avx512=hmoe_fxp_simd_avx512_old \
	${OLD_SRC:-runtime/hmoe_fxp_cpu_avx512.c} -o /tmp/ab_old.o
gcc -O2 -Iruntime -Ihls bench/results/2026-12-01_intel-xeon-2vcpu_4d813ff/tile_ab.c /tmp/ab_old.o \
	"$B/$N/libhmoe.a" -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread -o /tmp/ab_$N
HMOE_FXP_FP8_PREFETCH=${PF:-1} ROUNDS=${ROUNDS:-8} /tmp/ab_$N "$@" | grep -v "^  T="
