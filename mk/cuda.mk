# mk/cuda.mk: the GPU backend (runtime/cuda/, issue 5).
#
#   make cuda       build/libhmoe_cuda.so (when nvcc is found) and the GPU test program
#   make test-gpu   the above, then every tests/gpu test (they skip without a GPU)
#
# The CPU build never needs CUDA: hmoe and the tests open libhmoe_cuda.so with dlopen.
# The tensor-core attention kernels also run on a host emulator (tests/gpu/emu, g++ only):
# `make` always builds it, and tests gpu/emu/* run it on any machine.
# The GPU test program is plain C (it only dlopens the backend), so `make` always builds
# it and `make test` reports its tests skipped, with the reason, where no GPU is visible.
# nvcc: $(NVCC), else nvcc on PATH, else /usr/local/cuda/bin/nvcc. Targets: sm_90 code
# plus compute_80 PTX (JIT-compiled on any newer GPU); override with CUDA_ARCH.

ifeq ($(origin NVCC),undefined)
NVCC := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
endif
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_80,code=compute_80
# No fast-math anywhere: the kernels promise IEEE sqrt/division and matched roundings.
NVCC_FLAGS := -std=c++17 -O3 -lineinfo $(CUDA_ARCH) -Iruntime -Iruntime/cuda -Ihls \
	-Xcompiler -fPIC,-fvisibility=hidden,-Wall,-Wextra,-Werror -Werror all-warnings

# The .so is not sanitized (nvcc and ASan do not mix); one copy serves build/ and build/san/.
CUDA_LIB := build/libhmoe_cuda.so
CUDA_SRC := $(wildcard runtime/cuda/*.cu)
CUDA_OBJ := $(patsubst runtime/cuda/%.cu,build/cuda/%.o,$(CUDA_SRC))
CUDA_HDR := $(wildcard runtime/cuda/*.cuh runtime/cuda/*.h) runtime/hmoe_err.h hls/hmoe_fxp.h \
	hls/hmoe_fxp_types.h
GPU_TEST := $(BUILD)/tests/gpu/test_cuda
GPU_MODEL_TEST := $(BUILD)/tests/gpu/test_cuda_model
GPU_FAKE := $(BUILD)/tests/gpu/libfake_cuda.so
EMU_ATTN := $(BUILD)/tests/gpu/emu_attn

.PHONY: cuda test-gpu

all: $(GPU_TEST) $(GPU_MODEL_TEST) $(GPU_FAKE) $(EMU_ATTN)

# The version-2 attention kernels' real device code (hmoe_cuda_decode2.cuh with the split-K
# combine, hmoe_cuda_prefill2.cuh) built by g++ with HMOE_CUDA_EMU for the host emulator
# (tests/gpu/emu/hmoe_cuda_emu.h), against the CPU references; sanitized like the other
# test programs (SAN_FLAGS).
EMU_SRC := tests/gpu/emu/emu_attn.cpp tests/gpu/emu/hmoe_cuda_emu.cpp
EMU_OBJ := $(BUILD)/obj/runtime/cuda/hmoe_cuda_ref.o $(BUILD)/obj/runtime/hmoe_num.o
EMU_HDR := tests/gpu/emu/hmoe_cuda_emu.h tests/gpu/gpu_check.h runtime/cuda/hmoe_cuda_decode2.cuh \
	runtime/cuda/hmoe_cuda_prefill2.cuh runtime/cuda/hmoe_cuda_mma.cuh \
	runtime/cuda/hmoe_cuda_ref.h runtime/hmoe_num.h
EMU_CXXFLAGS := -std=c++20 -O1 -g -Wall -Wextra -Werror -Wno-unknown-pragmas \
	-fno-strict-aliasing -pthread -DHMOE_CUDA_EMU -Iruntime -Iruntime/cuda -Ihls \
	-Itests/gpu/emu -Itests/gpu $(SAN_FLAGS)

$(EMU_ATTN): $(EMU_SRC) $(EMU_HDR) $(EMU_OBJ)
	@mkdir -p $(dir $@)
	$(CXX) $(EMU_CXXFLAGS) $(LDFLAGS) -o $@ $(EMU_SRC) $(EMU_OBJ) -lm

# The whole-model test: the GPU forward driver (plain C over the API) vs hmoe_forward.
$(GPU_MODEL_TEST): tests/gpu/test_cuda_model.c runtime/cuda/hmoe_cuda_fwd.c \
		runtime/cuda/hmoe_cuda_fwd.h runtime/cuda/hmoe_cuda.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ tests/gpu/test_cuda_model.c \
		runtime/cuda/hmoe_cuda_fwd.c $(LIB) $(LDLIBS)

# A CPU stand-in for the backend (tests/gpu/fake_cuda.c): runs the GPU tests' harness
# and the mirrored algorithms on any machine (tests gpu/fake/*).
$(GPU_FAKE): tests/gpu/fake_cuda.c runtime/cuda/hmoe_cuda_ref.c runtime/cuda/hmoe_cuda_ref.h \
		runtime/cuda/hmoe_cuda.h runtime/hmoe_num.c hls/hmoe_fxp.c hls/hmoe_fxp.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Wno-unknown-pragmas -fPIC -shared $(LDFLAGS) -o $@ tests/gpu/fake_cuda.c \
		runtime/cuda/hmoe_cuda_ref.c runtime/hmoe_num.c hls/hmoe_fxp.c -lm

$(GPU_TEST): tests/gpu/test_cuda.c tests/gpu/gpu_check.h runtime/cuda/hmoe_cuda_ref.c \
		runtime/cuda/hmoe_cuda_ref.h runtime/cuda/hmoe_cuda.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ tests/gpu/test_cuda.c \
		runtime/cuda/hmoe_cuda_ref.c $(LIB) $(LDLIBS)

ifeq ($(NVCC),)
cuda: $(GPU_TEST) $(GPU_MODEL_TEST)
	@echo "cuda: nvcc not found, skipping GPU backend"
else
cuda: $(CUDA_LIB) $(GPU_TEST) $(GPU_MODEL_TEST)

build/cuda/%.o: runtime/cuda/%.cu $(CUDA_HDR)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCC_FLAGS) -c $< -o $@

$(CUDA_LIB): $(CUDA_OBJ)
	$(NVCC) -shared -cudart shared $(CUDA_ARCH) -o $@ $^ -lcublas \
		-Xlinker -rpath=$(CUDA_HOME)/lib64
endif

# `make test` also compiles the GPU backend where nvcc exists (-Werror), so a change that
# breaks the .cu sources fails the tests on a machine without a GPU too.
test: cuda

test-gpu: cuda all
	@BUILD=$(BUILD) TESTS='^gpu/' tests/run.sh
