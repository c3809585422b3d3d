#!/usr/bin/env bash
# gpu_device_pack.sh: on the dev machine, before a run on a lent GPU machine: builds the
# CPU side, the GPU backend and the GPU test programs, and copies the Debian libraries
# they link (not libc) into .gpulibs/, so that the GPU machine, which has CUDA but not
# these packages, can run them. Carry: build/hmoe build/libhmoe_cuda.so build/tests/gpu
# .gpulibs (see scripts/gpu_device_run.sh). build/tests/gpu/mktiny is removed: the model
# test writes it again.
set -eu
cd "$(dirname "$0")/.."
make -s all cuda
rm -rf .gpulibs build/tests/gpu/mktiny
# the fixed-point SIMD test, for the AMX step (travels with build/tests/gpu)
cp build/tests/unit/test_fxp_simd build/tests/gpu/
mkdir -p .gpulibs
for lib in libcjson.so.1 libpcre2-8.so.0 libdrm.so.2; do
	cp -L "/lib/x86_64-linux-gnu/$lib" .gpulibs/
done
du -sh .gpulibs build/hmoe build/libhmoe_cuda.so build/tests/gpu
