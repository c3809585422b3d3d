#!/usr/bin/env bash
# gpu_device_run.sh: one prepared run on a lent GPU machine (an H100/H200 reached through
# the workplace's device tool), from binaries built on the dev machine and carried along.
#
#   scripts/gpu_device_pack.sh              (dev machine: builds, fills .gpulibs/)
#   scripts/gpu_device_run.sh OUTDIR        (GPU machine, repository root)
#
# Runs, each step under a time limit and within GPU_RUN_BUDGET_S seconds overall:
#   1. environment: nvidia-smi, driver, nvcc, which libraries resolve;
#   2. every tests/gpu test (the real GPU ones and the CPU stand-in ones); 2a. the host
#      CPU's fixed-point SIMD test and `bench experts` at all its cores; 2b. the same
#      through the other SIMD variants (amx where the host has AMX-INT8, avx2, AVX-512
#      without VBMI, half the threads);
#   3. the heterogeneous CLI for real (GPU attention + cpu-fxp experts) and its speed;
#   4. `hmoe bench mla --json`: version 2 of both kernels, and version 1 on a few points;
#   5. compute-sanitizer (memcheck, racecheck, synccheck) on the attention kernel tests,
#      as far as the time allows;
#   6. Nsight Compute's counters for one launch of each version-2 attention kernel
#      (HMOE_NCU=0 skips them).
# Everything lands in OUTDIR: summary.txt (printed last), bench JSON, logs.tgz.
set -u
out=${1:?usage: scripts/gpu_device_run.sh OUTDIR}
mkdir -p "$out/logs"
logs=$out/logs
t0=$(date +%s)
budget=${GPU_RUN_BUDGET_S:-420}
summary=$out/summary.txt
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
left() { echo $((budget - ($(date +%s) - t0))); }

# Debian libraries the carried binaries link (libcjson, libpcre2-8, libdrm); the CUDA
# libraries come from the machine (its CUDA toolkit, else the pip wheels' copies).
export LD_LIBRARY_PATH=$PWD/.gpulibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ldd build/libhmoe_cuda.so 2>/dev/null | grep -q "not found"; then
	for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
		 /usr/lib/x86_64-linux-gnu $(ls -d /opt/*/.venv/lib/python3*/site-packages/nvidia/*/lib \
		 /usr/local/lib/python3*/dist-packages/nvidia/*/lib 2>/dev/null); do
		ls "$d"/libcublas.so.13* >/dev/null 2>&1 && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
		ls "$d"/libcudart.so.13* >/dev/null 2>&1 && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d
	done
fi
{
	date -u; uname -a; nvidia-smi; nvidia-smi -q | grep -iE "product name|driver version|cuda version|bus id|persistence|clocks|power limit" | head -30
	command -v nvcc && nvcc --version
	echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
	for f in build/hmoe build/tests/gpu/test_cuda build/tests/gpu/test_cuda_model build/libhmoe_cuda.so; do
		echo "== ldd $f"; ldd "$f"
	done
	ls /usr/lib/x86_64-linux-gnu/libnvidia-ml* 2>&1
} >"$logs/env.txt" 2>&1
say "gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
if ldd build/libhmoe_cuda.so | grep -q "not found"; then
	say "the carried libhmoe_cuda.so does not resolve; rebuilding it here with nvcc"
	make -B NVCC="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)" -j16 build/libhmoe_cuda.so \
		>"$logs/rebuild.txt" 2>&1 || say "rebuild failed (logs/rebuild.txt)"
fi

# ---- 2. the GPU tests (every kernel version), then the whole model with AUTO = v1 ----
TEST_TIMEOUT=120 BUILD=build TESTS='^gpu/' timeout 200 tests/run.sh >"$logs/tests.txt" 2>&1
say "tests: $(tail -n 1 "$logs/tests.txt")"
grep -E "^(FAIL|SKIP) " "$logs/tests.txt" | tee -a "$summary"
cp -r build/test-logs "$logs/test-logs" 2>/dev/null
HMOE_MLA_AUTO_V1=1 BUILD=build timeout 120 build/tests/gpu/test_cuda_model >"$logs/model-auto-v1.txt" 2>&1
say "gpu/model with HMOE_MLA_AUTO_V1=1: exit $? $(tail -n 1 "$logs/model-auto-v1.txt")"

# ---- 2a. the host CPU's fixed-point experts (issue 3's bandwidth target on a server
# CPU): the SIMD bit-exactness test for every variant the host has (amx included where
# it has AMX-INT8), then the whole `bench experts` at all of the host's cores ----
experts_table() { # experts_table JSON: one line per point into the summary
	/usr/bin/env python3 - "$1" <<'EOF' 2>&1 | tee -a "$summary"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("  (no JSON:", e, ")"); sys.exit(0)
print("  variant %s, %d threads, read bandwidth %.1f GB/s, footprint %.2f GB" % (r["fxp_variant"], r["threads"], r["read_bandwidth_bytes_per_s"] / 1e9, r["dram_footprint_bytes"] / 1e9))
for p in r["results"]:
    print("  %-8s %3d tokens %6.1f GB/s ratio %.3f (start %.3f) %9.3g ops/s, %d resident" % (p["format"], p["tokens"], p["weight_bytes_per_s"] / 1e9, p["bw_ratio"], p["bw_ratio_start"], p.get("int_ops_per_s", p.get("flops_per_s", 0)), p["resident"]))
EOF
}
say "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-) x $(nproc); flags: $(grep -o -w -E 'avx512_vnni|avx512_vbmi|avx512vbmi|amx_int8|amx_tile|avx_vnni' /proc/cpuinfo | sort -u | tr '\n' ' ')"
lscpu >"$logs/lscpu.txt" 2>&1
if [ -x build/tests/gpu/test_fxp_simd ]; then
	timeout 90 build/tests/gpu/test_fxp_simd >"$logs/fxp-simd.txt" 2>&1
	say "fxp simd: test_fxp_simd exit $? ($(grep -c '^FAIL' "$logs/fxp-simd.txt") FAIL lines, $(grep -c '^SKIP' "$logs/fxp-simd.txt") SKIP lines): $(tail -n 1 "$logs/fxp-simd.txt")"
fi
if [ "$(left)" -gt 150 ]; then
	timeout 150 build/hmoe bench experts --json --min-time 0.3 >"$out/experts-host.json" \
		2>"$logs/experts-host.err"
	say "bench experts (all cores, default variant): exit $?"
	experts_table "$out/experts-host.json"
fi

# ---- 2b. the same through the other SIMD variants, for what each CPU family should be
# dispatched to (HMOE_EXPERT_RUNS overrides: NAME|ENV|ARGS;...; amx only where the host
# has AMX-INT8); JSON in logs/ ----
runs=${HMOE_EXPERT_RUNS:-"amx|HMOE_FXP_SIMD=amx|--tokens 1,64,256 --formats int8,int8-a8;avx512|HMOE_FXP_SIMD=avx512|--tokens 1,64,256 --formats int8,int8-a8;novbmi|HMOE_FXP_NO_VBMI=1|--tokens 1,4 --formats fp8,fp8-a8;avx2|HMOE_FXP_SIMD=avx2|--tokens 1,4 --formats fp8,int8,int4;half-threads|HMOE_FXP_SIMD=avx512|--threads $(($(nproc) / 2)) --tokens 1 --formats fp8,int8,int4"}
IFS=';' read -ra run_list <<<"$runs"
for r in "${run_list[@]}"; do
	IFS='|' read -r name envs args <<<"$r"
	if [ "$name" = amx ] && ! grep -qw amx_int8 /proc/cpuinfo; then
		say "bench experts amx: the host has no AMX-INT8"
		continue
	fi
	[ "$(left)" -gt 120 ] || { say "bench experts $name: skipped, out of time"; continue; }
	env $envs timeout 90 build/hmoe bench experts --json --f32-experts 0 --min-time 0.3 $args \
		>"$logs/experts-$name.json" 2>"$logs/experts-$name.err"
	say "bench experts $name ($envs $args): exit $?"
	experts_table "$logs/experts-$name.json"
done

# ---- 3. the heterogeneous CLI, for real ----
gen() { # gen NAME ARGS...
	local name=$1
	shift
	timeout 120 build/hmoe generate --model models/r1-arith --chat --prompt "What is 457 + 386?" \
		--max-tokens 128 --temperature 0 "$@" >"$logs/gen-$name.out" 2>"$logs/gen-$name.err"
	say "generate $name (exit $?): $(grep -o 'The answer is [0-9]*' "$logs/gen-$name.out" | tail -1) | $(grep -h '^\[prompt' "$logs/gen-$name.err")"
}
if [ "$(left)" -gt 60 ]; then
	env -u HMOE_CUDA_LIB timeout 150 tests/gpu/generate_hetero.sh >"$logs/hetero.txt" 2>&1
	say "generate-hetero (real GPU, exit $?): $(tail -n 1 "$logs/hetero.txt")"
	gen cpu-f32 --experts cpu-f32
	gen cuda --attn cuda
	gen cuda-fxp --attn cuda --experts cpu-fxp:fp8
	HMOE_MLA_AUTO_V1=1 gen cuda-v1 --attn cuda
	grep -h "^\[energy" "$logs/gen-cuda.err" | tee -a "$summary"
fi

# ---- 4. the MLA benchmark: version 2 of both kernels, then version 1 on a few points for
# a same-run comparison (HMOE_MLA_RUNS overrides: NAME=ARGS;...) ----
runs=${HMOE_MLA_RUNS:-"v2=--version 2 --prefill-version 2;v1=--version 1 --prefill-version 1 --batch 1,64 --context 4096 --prefill 1024"}
IFS=';' read -ra run_list <<<"$runs"
for r in "${run_list[@]}"; do
	v=${r%%=*}
	arg=${r#*=}
	[ "$(left)" -gt 40 ] || { say "bench mla $v: skipped, out of time"; continue; }
	timeout 120 build/hmoe bench mla --json $arg >"$out/mla-$v.json" 2>"$logs/mla-$v.err"
	say "bench mla $v (exit $?): $(head -c 300 "$logs/mla-$v.err")"
	/usr/bin/env python3 - "$out/mla-$v.json" <<'EOF' 2>&1 | tee -a "$summary"
import json, sys
try:
    r = json.load(open(sys.argv[1]))
except Exception as e:
    print("  (no JSON:", e, ")"); sys.exit(0)
print("  memcpy %.0f GB/s, gemm %.0f TFLOP/s" % (r["memcpy_d2d"]["GBps_read_plus_write"], r.get("gemm_bf16_peak", {}).get("TFLOPs", 0)))
for d in r["decode"]:
    print("  decode b=%-3d ctx=%-5d %8.3f ms %7.1f GB/s ratio %.3f, %6.1f TFLOP/s, roofline %.3f" % (d["batch"], d["context"], d["ms"], d["GBps"], d["ratio_vs_memcpy"], d["TFLOPs"], d.get("roofline_ratio", 0)))
for p in r["prefill"]:
    print("  prefill n=%-5d %8.3f ms %6.2f TFLOP/s, gemm %6.1f TFLOP/s, ratio %.3f" % (p["n"], p["ms"], p["TFLOPs"], p["gemm_peer"]["TFLOPs"], p["ratio_vs_gemm"]))
EOF
done

# ---- 5. compute-sanitizer over the kernel tests (HMOE_SANITIZE: TOOL:TEST ...) ----
if command -v compute-sanitizer >/dev/null; then
	for tk in ${HMOE_SANITIZE:-memcheck:mla_decode memcheck:mla_prefill racecheck:mla_decode racecheck:mla_prefill synccheck:mla_decode}; do
		tool=${tk%%:*} k=${tk#*:}
		[ "$(left)" -gt 25 ] || { say "$tool $k: skipped, out of time"; continue; }
		timeout $(($(left) - 15)) compute-sanitizer --tool "$tool" --error-exitcode 9 \
			build/tests/gpu/test_cuda "$k" >"$logs/$tool-$k.txt" 2>&1
		say "$tool $k: exit $? $(grep -m1 'ERROR SUMMARY' "$logs/$tool-$k.txt")"
	done
else
	say "compute-sanitizer not found"
fi
# ---- 6. Nsight Compute on one decode and one prefill launch of version 2 (the hardware
# counters: what bounds each kernel), as far as the time allows ----
ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -n 1)
for kp in "decode2 mla_decode_kernel2" "prefill2 mla_prefill_kernel2"; do
	name=${kp%% *} kernel=${kp#* }
	[ "${HMOE_NCU:-1}" = 1 ] || break
	[ -n "$ncu_bin" ] || { say "ncu not found"; break; }
	[ "$(left)" -gt 60 ] || { say "ncu $name: skipped, out of time"; continue; }
	timeout $(($(left) - 20)) "$ncu_bin" --clock-control none --launch-count 1 \
		--kernel-name "regex:$kernel" --section SpeedOfLight --section Occupancy \
		--section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
		--section WarpStateStats build/hmoe bench mla --json --version 2 \
		--prefill-version 2 --batch 64 --context 4096 --prefill 4096 --reps 3 \
		>"$logs/ncu-$name.txt" 2>&1
	say "ncu $name: exit $? ($(grep -c . "$logs/ncu-$name.txt") lines)"
done
say "elapsed $(($(date +%s) - t0)) s"
tar czf "$out/logs.tgz" -C "$out" logs && rm -rf "$logs"
