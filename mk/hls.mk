# mk/hls.mk: the fixed-point expert kernel's C simulation (issue 3, docs/fxp.md).
#
#   make hls-csim   builds the hls/tb testbench with gcc, makes the golden vectors with the
#                   independent Python reference (hls/tb/ffn_ref.py), runs the testbench
#                   on them (PASSED / FAILED, exit status), and checks that every hls/*.c
#                   compiles as freestanding kernel C (-nostdinc -D__KERNEL__).
# tests/fxp/tests.list runs it as part of `make test`. Vitis HLS itself: hls/vitis/.

CSIM_DIR := $(BUILD)/hls-csim
CSIM_TB := $(CSIM_DIR)/tb_hmoe_ffn
CSIM_GOLDEN := $(CSIM_DIR)/golden/.stamp
HLS_KERNEL_SRC := $(wildcard hls/*.c)
HLS_HDR := $(wildcard hls/*.h)
CSIM_CFLAGS := -std=c11 -O2 -g -Wall -Wextra -Werror -Wno-unknown-pragmas -Ihls $(SAN_FLAGS)

$(CSIM_TB): hls/tb/tb_hmoe_ffn.c $(HLS_KERNEL_SRC) $(HLS_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CSIM_CFLAGS) -o $@ hls/tb/tb_hmoe_ffn.c $(HLS_KERNEL_SRC) $(SAN_FLAGS)

$(CSIM_GOLDEN): hls/tb/ffn_ref.py
	@mkdir -p $(dir $@)
	rm -f $(dir $@)case_*.bin
	/usr/bin/python3 hls/tb/ffn_ref.py $(dir $@)
	@touch $@

# Kernel C: no libc headers at all; <linux/types.h> is a stub giving the fixed-width types
# the kernel's own header provides.
$(CSIM_DIR)/kernel-c.stamp: $(HLS_KERNEL_SRC) $(HLS_HDR)
	@mkdir -p $(CSIM_DIR)/kinc/linux
	@printf '%s\n' '#pragma once' 'typedef __INT8_TYPE__ int8_t;' 'typedef __UINT8_TYPE__ uint8_t;' \
		'typedef __INT16_TYPE__ int16_t;' 'typedef __UINT16_TYPE__ uint16_t;' \
		'typedef __INT32_TYPE__ int32_t;' 'typedef __UINT32_TYPE__ uint32_t;' \
		'typedef __INT64_TYPE__ int64_t;' 'typedef __UINT64_TYPE__ uint64_t;' \
		>$(CSIM_DIR)/kinc/linux/types.h
	for f in $(HLS_KERNEL_SRC); do \
		$(CC) -std=c11 -Wall -Wextra -Werror -Wno-unknown-pragmas -Wframe-larger-than=1024 \
			-ffreestanding -nostdinc -D__KERNEL__ -I$(CSIM_DIR)/kinc -Ihls -c $$f \
			-o $(CSIM_DIR)/kernel-$$(basename $$f .c).o || exit 1; \
	done
	@touch $@

hls-csim: $(CSIM_TB) $(CSIM_GOLDEN) $(CSIM_DIR)/kernel-c.stamp
	$(CSIM_TB) $(CSIM_DIR)/golden/case_*.bin
