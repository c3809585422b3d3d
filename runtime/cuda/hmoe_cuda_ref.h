/* hmoe_cuda_ref: plain C CPU references for every kernel of the GPU backend (the oracles
 * of tests/gpu). One function per kernel, same arguments as the hmoe_cuda_api entry
 * point but on host memory, written for clarity: fp32 or double, obvious loop order.
 * bf16 tensors are uint16_t bit patterns; outputs that the GPU rounds to bf16 are given
 * here unrounded (float), so a test can state its tolerance against the exact value. */
#ifndef HMOE_CUDA_REF_H
#define HMOE_CUDA_REF_H

#include <stdint.h>

/* out (n_rows, dim): bf16(bf16(x * r) * w) as float, r = 1 / sqrtf(sum x^2 / dim + eps). */
void hcu_ref_rmsnorm(float *out, const uint16_t *x, const uint16_t *w, int n_rows, int dim,
		     float eps);
/* The rotated values (unrounded) of hmoe_cuda_api.rope, written to out (same layout as
 * x, untouched elements copied). */
void hcu_ref_rope(float *out, const uint16_t *x, int n_tokens, int token_stride, int n_heads,
		  int head_stride, int offset, int rope_dim, const int32_t *pos,
		  const float *freqs);
/* YaRN frequencies (rope_dim / 2) per MODEL.md section 4 (model.py formula); yarn == 0
 * or factor <= 1 gives the plain base^(-2i/d). */
void hcu_ref_yarn_freqs(float *freqs, int rope_dim, float base, float factor, int orig_len,
			float beta_fast, float beta_slow, int yarn);
/* y (n, out) = x . W^T in double (for tolerance: also sum |x||w| per output in absy). */
void hcu_ref_gemm(double *y, double *absy, const uint16_t *x, const uint16_t *w, int n,
		  int in, int out);
/* The same with W = e4m3(codes) * scale block. */
void hcu_ref_fp8_matvec(double *y, double *absy, const uint16_t *x, const uint8_t *codes,
			const float *scale, int n, int in, int out);
/* bf16(e4m3(code) * scale): bit-exact contract. */
void hcu_ref_fp8_dequant(uint16_t *w, const uint8_t *codes, const float *scale, int rows,
			 int cols);
/* Argmax of l[0, n), lowest id on ties. */
int hcu_ref_argmax(const float *l, int n);
/* Whether id is a correct top-p draw for u (in double, with slack tol on the kept set
 * boundary and on u's position): id must be kept and u * kept mass must fall in id's
 * cumulative interval (ascending ids). why: reason when not. */
int hcu_ref_sample_ok(const float *l, int n, float temperature, float top_p, float u, int id,
		      double tol, char *why, int why_n);
/* Router, same contract as hmoe_cuda_api.route; ids ascending. sel_out (n_experts) gets
 * the masked selection scores of the last token (for tie diagnostics), may be NULL. */
void hcu_ref_route(int32_t *ids, float *weights, const float *logits, const float *bias,
		   int n, int n_experts, int n_group, int topk_group, int top_k, int softmax,
		   int norm, float scale, float *sel_out);
/* Absorbed decode over pages, in double: out (batch, H, L) unrounded. spread (same
 * shape, may be NULL) gets sum_t p_t |v_t - o| with p the softmax weights: the factor by
 * which rounding each weight to relative precision u moves o (at most u x spread), the
 * error term of kernels that feed bf16 probabilities to tensor cores. */
void hcu_ref_mla_decode(double *out, const uint16_t *q, const uint16_t *pages,
			const int32_t *block_table, const int32_t *seq_lens, int page_size,
			int max_pages, int batch, int H, int L, int R, float scale, double *spread);
/* Causal naive prefill, in double: out (n, H, dv) unrounded; spread as for decode. */
void hcu_ref_mla_prefill(double *out, const uint16_t *q, const uint16_t *k, const uint16_t *v,
			 int n, int H, int dqk, int dv, float scale, double *spread);
/* qc (n, H, L) = q_nope . W_UK and o (n, H, v) = oc . W_UV^T, in double; abs: sum |a||b|. */
void hcu_ref_absorb_q(double *qc, double *abs_qc, const uint16_t *q, int q_stride,
		      const uint16_t *wkv_b, int n, int H, int nope, int v, int L);
void hcu_ref_absorb_o(double *o, double *abs_o, const uint16_t *oc, const uint16_t *wkv_b,
		      int n, int H, int nope, int v, int L);

#endif
