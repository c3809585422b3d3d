#!/usr/bin/env bash
# The heterogeneous configuration from the command line: `hmoe generate --attn cuda
# --experts cpu-fxp:fp8` (attention, router, dense parts and shared expert on the GPU
# backend; routed experts on the fixed-point expert backend) gives the same answer as the
# CPU forward pass with the same experts. Run against the CPU stand-in of the GPU backend
# (HMOE_CUDA_LIB, tests/gpu/fake_cuda.c) it checks the orchestration on any machine;
# with a GPU, unset HMOE_CUDA_LIB to run it for real.
set -u
HMOE=${HMOE:-build/hmoe}
MODEL=${HMOE_EVAL_MODEL:-${HMOE_ROOT:-.}/models/r1-arith}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
run() { # run OUT ARGS...
	local out=$1
	shift
	"$HMOE" generate --model "$MODEL" --chat --prompt "What is 457 + 386?" --max-tokens 128 \
		--temperature 0 "$@" >"$TMP/$out" 2>"$TMP/$out.err" || {
		echo "FAIL: generate $* exited $?"; cat "$TMP/$out.err"; exit 1; }
}
run cpu --experts cpu-fxp:fp8
run gpu --attn cuda --experts cpu-fxp:fp8
grep -q "experts cpu-fxp" "$TMP/gpu.err" || { echo "FAIL: the routed experts did not run on cpu-fxp:"; cat "$TMP/gpu.err"; exit 1; }
want=$(grep -o "The answer is [0-9]*" "$TMP/cpu" | tail -1)
got=$(grep -o "The answer is [0-9]*" "$TMP/gpu" | tail -1)
echo "cpu: '$want'  gpu + cpu-fxp experts: '$got'"
[ -n "$want" ] && [ "$want" = "$got" ] || { echo "FAIL: answers differ"; exit 1; }
cmp -s "$TMP/cpu" "$TMP/gpu" && echo "(identical text)"
echo PASS
