/* hmoe_num: number-format conversions (see hmoe_num.h). */
#include "hmoe_num.h"

#include <math.h>

/* The table is built from the format definition at compile time by this macro so it is
 * a constant: value = (-1)^s * (e ? (1 + m/8) * 2^(e-7) : m/8 * 2^-6). */
#define E4M3_MAG(c) \
	(((c) & 0x78) ? (1.0f + (float)((c) & 7) / 8.0f) * \
		(float)(1u << (((c) >> 3) & 15)) / 128.0f \
		      : (float)((c) & 7) / 512.0f)
#define E4M3(c) (((c) & 0x7f) == 0x7f ? NAN : (((c) & 0x80) ? -E4M3_MAG(c) : E4M3_MAG(c)))
#define E4M3_4(c) E4M3(c), E4M3((c) + 1), E4M3((c) + 2), E4M3((c) + 3)
#define E4M3_16(c) E4M3_4(c), E4M3_4((c) + 4), E4M3_4((c) + 8), E4M3_4((c) + 12)
#define E4M3_64(c) E4M3_16(c), E4M3_16((c) + 16), E4M3_16((c) + 32), E4M3_16((c) + 48)

const float hmoe_fp8_e4m3_table[256] = {
	E4M3_64(0), E4M3_64(64), E4M3_64(128), E4M3_64(192),
};

float hmoe_f16_to_f32(uint16_t h)
{
	int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
	float v;

	if (e == 0)
		v = ldexpf((float)m, -24);
	else if (e == 31)
		v = m ? NAN : INFINITY;
	else
		v = ldexpf((float)(m | 1024), e - 25);
	return s ? -v : v;
}

uint8_t hmoe_f32_to_fp8_e4m3(float f)
{
	uint8_t sign = signbit(f) ? 0x80 : 0;
	float a = fabsf(f);
	uint8_t best = 0;
	float best_err;

	if (isnan(f))
		return 0x7f | sign;
	if (a >= 448.0f)
		return 0x7e | sign;
	/* Magnitudes are monotonic in the code for 0..0x7e: binary search the bracket. */
	{
		int lo = 0, hi = 0x7e;

		while (hi - lo > 1) {
			int mid = (lo + hi) / 2;

			if (hmoe_fp8_e4m3_table[mid] <= a)
				lo = mid;
			else
				hi = mid;
		}
		best = (uint8_t)lo;
		best_err = a - hmoe_fp8_e4m3_table[lo];
		if (hmoe_fp8_e4m3_table[hi] - a < best_err ||
		    (hmoe_fp8_e4m3_table[hi] - a == best_err && (hi & 1) == 0))
			best = (uint8_t)hi;
	}
	return best | sign;
}
