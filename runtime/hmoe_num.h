/* hmoe_num: scalar number formats of DeepSeek checkpoints: bf16, fp16, FP8 e4m3fn.
 *
 * e4m3fn (torch.float8_e4m3fn): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no
 * infinities; S.1111.111 (0x7f, 0xff) is NaN; largest finite 448; subnormals 2^-9 * m.
 */
#ifndef HMOE_NUM_H
#define HMOE_NUM_H

#include <stdint.h>
#include <string.h>

static inline float hmoe_bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Round to nearest even, as torch's .to(bfloat16); NaN stays NaN. */
static inline uint16_t hmoe_f32_to_bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/* Rounds an fp32 value to the nearest bf16 value and back. */
static inline float hmoe_round_bf16(float f)
{
	return hmoe_bf16_to_f32(hmoe_f32_to_bf16(f));
}

float hmoe_f16_to_f32(uint16_t h);

/* Exact value of an e4m3fn code (NaN for 0x7f / 0xff). Table-driven. */
extern const float hmoe_fp8_e4m3_table[256];
static inline float hmoe_fp8_e4m3_to_f32(uint8_t c)
{
	return hmoe_fp8_e4m3_table[c];
}

/* Nearest e4m3fn code, ties to even, saturating to +-448 (as torch's cast does for
 * finite inputs within range; values past 448 saturate rather than become NaN). */
uint8_t hmoe_f32_to_fp8_e4m3(float f);

#endif
