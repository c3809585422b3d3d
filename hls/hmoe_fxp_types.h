/* hmoe_fxp_types: the fixed-width integer types of the fixed-point expert datapath.
 *
 * hls/ is compiled three ways: natively into libhmoe, by Vitis HLS, and into the Linux
 * kernel module's emulated card. Only this header knows which: under __KERNEL__ the
 * types come from <linux/types.h>, everywhere else from <stdint.h>. Nothing in hls/
 * includes any other system header.
 */
#ifndef HMOE_FXP_TYPES_H
#define HMOE_FXP_TYPES_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdint.h>
#endif

#define HMOE_FXP_INT64_MAX ((int64_t)0x7fffffffffffffffLL)
#define HMOE_FXP_INT32_MAX ((int32_t)0x7fffffff)
#define HMOE_FXP_INT32_MIN (-HMOE_FXP_INT32_MAX - 1)

#endif
