# hmoe: top-level build. `make` builds libhmoe and the hmoe program into build/;
# `make run` sets up and runs the main job; `make test` runs every test;
# `make bench` runs the benchmarks (JSON); `make kmod` builds the kernel module.
#
#   make test SANITIZE=1    ASan + UBSan build (into build/san)
#   make kmod KDIR=...      build hmoe.ko against another kernel tree

SHELL := /bin/bash
CC ?= cc
SANITIZE ?= 0
BUILD ?= build
ifeq ($(SANITIZE),1)
BUILD := build/san
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
endif
OPT ?= -O2

DEPS_STAMP := build/.deps-build
PKG_CFLAGS = $(shell pkg-config --cflags libcjson libpcre2-8 2>/dev/null)
CFLAGS := -std=c11 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread \
	-Iruntime -Ihls -Ikmod/uapi -Ihost $(SAN_FLAGS) $(EXTRA_CFLAGS)
LDFLAGS := -pthread $(SAN_FLAGS)
LDLIBS := -lcjson -lpcre2-8 -ldl -lm

# SIMD variants are separate files, compiled for their ISA and chosen at run time.
AVX2_FLAGS := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16
AMX_FLAGS := $(AVX512_FLAGS) -mamx-tile -mamx-int8

# runtime/cuda/hmoe_cuda_fwd.c is plain C (the dlopen side of the GPU backend); *.cu go to mk/cuda.mk.
RUNTIME_SRC := $(wildcard runtime/*.c) runtime/cuda/hmoe_cuda_fwd.c
HLS_SRC := $(wildcard hls/*.c)
HOST_SRC := $(wildcard host/*.c)
UNIT_SRC := $(wildcard tests/unit/test_*.c)

LIB_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(RUNTIME_SRC) $(HLS_SRC))
HOST_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(HOST_SRC))
HOST_LIB_OBJ := $(filter-out $(BUILD)/obj/host/hmoe.o,$(HOST_OBJ))
UNIT_BIN := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))

LIB := $(BUILD)/libhmoe.a
HMOE := $(BUILD)/hmoe

.PHONY: all deps run test test-unit test-kmod bench kmod hls-csim clean
all: $(HMOE) $(UNIT_BIN)

$(DEPS_STAMP): scripts/deps.sh
	@scripts/deps.sh build
	@mkdir -p $(dir $@) && touch $@

deps: $(DEPS_STAMP)

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(ISA_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx2.o: ISA_FLAGS = $(AVX2_FLAGS)
$(BUILD)/obj/%_avxvnni.o: ISA_FLAGS = $(AVX2_FLAGS) -mavxvnni
$(BUILD)/obj/%_avx512.o: ISA_FLAGS = $(AVX512_FLAGS)
$(BUILD)/obj/%_amx.o: ISA_FLAGS = $(AMX_FLAGS)
# HLS pragmas are for Vitis; gcc ignores them.
$(BUILD)/obj/hls/%.o: ISA_FLAGS += -Wno-unknown-pragmas

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(HMOE): $(HOST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(HOST_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/unit/%: tests/unit/%.c $(HOST_LIB_OBJ) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -Itests/unit $(LDFLAGS) -o $@ $< $(HOST_LIB_OBJ) $(LIB) $(LDLIBS)

include $(wildcard mk/*.mk)
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

# The default model: r1-arith, a small DeepSeek-V3-architecture model trained to reason
# about arithmetic in R1's format (models/r1-arith/README.md, docs/model.md).
DEFAULT_MODEL ?= models/r1-arith
PROMPT ?= What is 457 + 386?

run: $(HMOE)
	$(HMOE) info --model $(DEFAULT_MODEL)
	$(HMOE) generate --model $(DEFAULT_MODEL) --chat --prompt "$(PROMPT)" --max-tokens 128 --seed 1

test: all
	@scripts/deps.sh all
	@BUILD=$(BUILD) SANITIZE=$(SANITIZE) tests/run.sh

bench: $(HMOE)
	@scripts/deps.sh test
	@BUILD=$(BUILD) tests/bench.sh

clean:
	rm -rf build
