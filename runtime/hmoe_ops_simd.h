/* hmoe_ops_simd: the body of the SIMD kernel tables, written once for any vector width.
 *
 * Included by hmoe_ops_avx2.c and hmoe_ops_avx512.c after they define:
 *   VF                  vector of VW floats
 *   V_ZERO() V_SET1(a) V_LOAD(p) V_FMA(a, b, acc)   (acc + a * b)
 *   V_LOAD_TAIL(p, k)   the first k < VW floats of p, zeros after (no read past p + k)
 *   V_STORE(p, v) V_STORE_TAIL(p, v, k)
 *   V_HSUM(v)           horizontal sum in a fixed order
 *   MAX_T               tokens per register block (accumulators: 4 * MAX_T vectors)
 *   KERNEL(name)        the function name prefix
 *
 * Arithmetic of one output y[t][r] = x[t] . w[r]: ONE vector accumulator over VW-wide
 * steps in ascending order, then the zero-padded tail step, then V_HSUM. Every block
 * shape computes each (r, t) pair exactly this way, so results do not depend on how rows
 * and tokens are blocked (the determinism contract in hmoe_ops.h). Decode still has ILP:
 * a block holds 4 rows, i.e. 4 independent accumulator chains and 4 weight streams.
 */

/* R rows x T tokens, R <= 4, T <= MAX_T; R and T are constants at every call site, so
 * the accumulators stay in registers. */
static inline __attribute__((always_inline)) void
KERNEL(block)(float *y, int ldy, const float *x, int ldx, const float *w, int in, int r,
	      int t, const int R, const int T)
{
	VF acc[4][MAX_T];
	const float *wr[4], *xt[MAX_T];
	int i = 0;

#pragma GCC unroll 4
	for (int a = 0; a < R; a++) {
		wr[a] = w + (size_t)(r + a) * (size_t)in;
#pragma GCC unroll 4
		for (int b = 0; b < T; b++)
			acc[a][b] = V_ZERO();
	}
#pragma GCC unroll 4
	for (int b = 0; b < T; b++)
		xt[b] = x + (size_t)(t + b) * (size_t)ldx;

	for (; i + VW <= in; i += VW) {
		VF xv[MAX_T];

#pragma GCC unroll 4
		for (int b = 0; b < T; b++)
			xv[b] = V_LOAD(xt[b] + i);
#pragma GCC unroll 4
		for (int a = 0; a < R; a++) {
			VF wv = V_LOAD(wr[a] + i);

#pragma GCC unroll 4
			for (int b = 0; b < T; b++)
				acc[a][b] = V_FMA(wv, xv[b], acc[a][b]);
		}
	}
	if (i < in) {
		int k = in - i;
		VF xv[MAX_T];

#pragma GCC unroll 4
		for (int b = 0; b < T; b++)
			xv[b] = V_LOAD_TAIL(xt[b] + i, k);
#pragma GCC unroll 4
		for (int a = 0; a < R; a++) {
			VF wv = V_LOAD_TAIL(wr[a] + i, k);

#pragma GCC unroll 4
			for (int b = 0; b < T; b++)
				acc[a][b] = V_FMA(wv, xv[b], acc[a][b]);
		}
	}
#pragma GCC unroll 4
	for (int a = 0; a < R; a++)
#pragma GCC unroll 4
		for (int b = 0; b < T; b++)
			y[(size_t)(t + b) * (size_t)ldy + (size_t)(r + a)] = V_HSUM(acc[a][b]);
}

/* All tokens against rows with R rows per block; the token remainder in smaller blocks. */
static inline __attribute__((always_inline)) void
KERNEL(rows)(float *y, int ldy, const float *x, int ldx, const float *w, int n, int in,
	     int r, const int R)
{
	int t = 0;

	for (; t + MAX_T <= n; t += MAX_T)
		KERNEL(block)(y, ldy, x, ldx, w, in, r, t, R, MAX_T);
	switch (n - t) {
#if MAX_T > 3
	case 3:
		KERNEL(block)(y, ldy, x, ldx, w, in, r, t, R, 3);
		break;
#endif
#if MAX_T > 2
	case 2:
		KERNEL(block)(y, ldy, x, ldx, w, in, r, t, R, 2);
		break;
#endif
	case 1:
		KERNEL(block)(y, ldy, x, ldx, w, in, r, t, R, 1);
		break;
	default:
		break;
	}
}

static void KERNEL(matmul_rows)(float *y, int ldy, const float *x, int ldx, const float *w,
				int n, int in, int r0, int r1)
{
	int r = r0;

	for (; r + 4 <= r1; r += 4)
		KERNEL(rows)(y, ldy, x, ldx, w, n, in, r, 4);
	for (; r < r1; r++)
		KERNEL(rows)(y, ldy, x, ldx, w, n, in, r, 1);
}

static float KERNEL(dot)(const float *a, const float *b, int n)
{
	float y;

	KERNEL(block)(&y, 1, a, n, b, n, 0, 0, 1, 1);
	return y;
}

static void KERNEL(axpy)(float *y, float a, const float *x, int n)
{
	VF av = V_SET1(a);
	int i = 0;

	for (; i + VW <= n; i += VW)
		V_STORE(y + i, V_FMA(av, V_LOAD(x + i), V_LOAD(y + i)));
	if (i < n)
		V_STORE_TAIL(y + i, V_FMA(av, V_LOAD_TAIL(x + i, n - i), V_LOAD_TAIL(y + i, n - i)),
			     n - i);
}
