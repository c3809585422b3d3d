#!/bin/sh
# run.sh: rebuilds this folder's harnesses and reruns every measurement into OUT (default
# ./out). From the repository root, after `make` at 416a48c (or later, with
# drv.patch still applying to runtime/hmoe_fxp_cpu.c):
#   sh bench/results/2026-12-03_amd-epyc-zen5-2vcpu_8d28501/run.sh
# It also builds the session's base, 6ac0686, in a git worktree (a few minutes). About 10
# minutes on the 2-vCPU dev VM, which should be otherwise idle.
set -e
H=$(dirname "$0"); OUT=${OUT:-out}; W=$(mktemp -d); mkdir -p "$OUT"
P26=bench/results/2026-12-02_amd-epyc-zen5-2vcpu_44279cd
P25=bench/results/2026-12-02_amd-epyc-zen5-2vcpu_3bd77c9
P24=bench/results/2026-12-02_amd-epyc-zen5-2vcpu_deeac41
V="-std=c11 -O2 -D_GNU_SOURCE -pthread -Wno-unknown-pragmas"
I="-O2 -D_GNU_SOURCE -pthread -Ikmod/uapi -I/usr/include/cjson"
L="build/obj/host/bench_read_avx512.o build/obj/host/bench_common.o build/obj/host/cli.o
   build/libhmoe.a -lcjson -lpcre2-8 -ldl -lm -ldrm -lpthread"
printf 'int g_var;\n' > "$W/gv.c"
# the layer-call harness (24th session, 25th's thread count) and its derivatives
patch -s -o "$W/var_ab.c" "$P24/var_ab.c" < "$P25/var_ab.patch"
patch -s -o "$W/pat_ab.c" "$W/var_ab.c" < "$P26/pat_ab.patch"
patch -s -o "$W/pat_spin.c" "$W/pat_ab.c" < "$H/pat_spin.patch"
patch -s -o "$W/pat2.c" "$W/pat_spin.c" < "$H/pat2.patch"
patch -s -o "$W/base_ab.c" "$W/var_ab.c" < "$H/base_ab.patch"
patch -s -o "$W/drv.c" runtime/hmoe_fxp_cpu.c < "$H/drv.patch"
# the base, 6ac0686: its build, and its fixed-point objects with every symbol they define
# renamed b_* (base_ab runs them beside this tree's in one process)
git worktree add -q "$W/base" 6ac0686
make -C "$W/base" -j2 >/dev/null
B="$W/base/build/obj/runtime"
nm --defined-only -g "$B/hmoe_fxp_cpu.o" "$B/hmoe_fxp_cpu_avx512.o" "$B/hmoe_fxp_cpu_amx.o" \
	"$B/hmoe_fxp_cpu_avx2.o" | awk 'NF == 3 { print $3 " b_" $3 }' | sort -u > "$W/syms"
for o in hmoe_fxp_cpu hmoe_fxp_cpu_avx512 hmoe_fxp_cpu_amx hmoe_fxp_cpu_avx2; do
	objcopy --redefine-syms="$W/syms" "$B/$o.o" "$W/b_$o.o"
done
gcc $I -Iruntime -Ihls -Ihost "$W/base_ab.c" "$W/gv.c" "$W"/b_*.o $L -o "$W/base_ab"
# pat_spin against the base's build (row_acc4's contract before 1cb4bd6)
(cd "$W/base" && gcc $I -Iruntime -Ihls -Ihost -mavx512f -mavx512bw "$W/pat_spin.c" "$W/gv.c" \
	$L -o "$W/pat_spin")
gcc $I -Iruntime -Ihls -Ihost -mavx512f -mavx512bw "$W/pat2.c" "$W/gv.c" $L -o "$W/pat2"
gcc $V -Iruntime -Ihls -c "$W/drv.c" -o "$W/drv.o"
gcc $I -Iruntime -Ihls -Ihost "$W/var_ab.c" "$W/gv.c" "$W/drv.o" $L -o "$W/var_drv"

# 1. this session's code against the base's, one process (1: base, 0: this tree)
for m in fp8 fp8-a8 int8 int4 int8-a8; do "$W/base_ab" $m 4 8 1 0 1 0; done > "$OUT/base-vs-new.txt"
# 2. at the base: CPU work between the kernels' calls is not overlapped with the loads
{ for s in 0 100 400; do printf 'no reads, SPIN=%s: ' $s
	SPIN=$s LOOPV=15 PAT=15 "$W/pat_spin" int8 1 1 0 8; done
  for s in 100 400; do for m in int8 fp8-a8; do
	SPIN=$s NOHOT=1 "$W/pat_spin" $m 3 8 0 14 9; done; done
  for m in int8 fp8-a8; do SPIN=100 NOHOT=1 "$W/pat_spin" $m 3 8 17 9 16; done; } > "$OUT/spin.txt"
# 3. at 8d28501, paired: runs against a call per quad (1), the driver converting a run's
#    results after it without (9) and with (5) the reference's branch, fp8 and int items
#    (10x: x times the usual), the float outputs skipped (11, wrong results)
for m in fp8 fp8-a8 int8 int4 int8-a8; do "$W/var_drv" $m 3 8 1 0 9 5; done > "$OUT/driver.txt"
{ for m in fp8 fp8-a8; do NOHOT=1 "$W/var_drv" $m 3 8 0 101 102 104 108; done
  for m in int4 int8; do NOHOT=1 "$W/var_drv" $m 3 8 0 102 108; done
  for m in int4 int8 fp8-a8; do NOHOT=1 "$W/var_drv" $m 3 8 0 11; done; } > "$OUT/items.txt"
# 4. at 8d28501: the read pattern, the kernels, and a call with no reads at all
{ for m in fp8 fp8-a8 int8 int4 int8-a8; do NOHOT=1 "$W/pat2" $m 3 8 0 9
	printf '%s, no reads: ' $m; LOOPV=8 "$W/pat2" $m 1 1 0 8; done; } > "$OUT/pattern.txt"
# 5. bench experts, the default points
HMOE_COMMIT=$(git rev-parse --short HEAD) build/hmoe bench experts --json > "$OUT/experts.json"
git worktree remove --force "$W/base"
rm -rf "$W"
