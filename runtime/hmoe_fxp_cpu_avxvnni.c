/* hmoe_fxp_cpu_avxvnni: the AVX2 variant's kernels with AVX-VNNI (256-bit vpdpbusd and
 * vpdpwssd; Intel since Alder Lake, including the E-core-only Atom / N-series and Sierra
 * Forest parts that have no AVX-512, and AMD since Zen 5). One source: see
 * hmoe_fxp_cpu_avx2.c, HMOE_FXP_AVX2_VNNI. */
#define HMOE_FXP_AVX2_VNNI 1
#include "hmoe_fxp_cpu_avx2.c"
