/* hmoe_expert_kmod: the routed-expert backend "kmod[:FORMAT][,cards=N]" (see hmoe_expert.h)
 * on hmoe cards through hmoe.ko (runtime/hmoe_kmod.c, docs/kmod.md).
 *
 * Spec: FORMAT is fp8 (default), int8 or int4; cards=N (default 1) opens the first N hmoe
 * cards in node order. Expert e of layer l lives on card (l * n_routed + e) % N, in that
 * card's weight BO at slot (l * n_routed + e) / N.
 *
 * init: every routed expert is packed with the cpu-fxp packer (hmoe_fxp_pack_mlp) into a
 *       host staging BO, one layer per card at a time, and copied into card memory.
 * run:  every token is quantised once (hmoe_fxp_quant_x, the contract quantiser); the
 *       (token, slot) pairs are grouped by expert in ascending (expert, token, slot) order
 *       and cut into tiles of at most max_tokens_per_job; per card: one H2C copy of its
 *       tiles' activations, ONE submit of its FFN jobs chained to that copy's fence, a
 *       wait per job, one C2H copy of the outputs; then Q16 -> float with
 *       hmoe_fxp_out_to_f32, as cpu-fxp does. The card runs hmoe_ffn(), which cpu-fxp's
 *       kernels equal bit for bit, so the outputs equal cpu-fxp's.
 * A tile whose job (or whose card's copies) did not end OK is recomputed on the CPU with
 * hmoe_ffn() on the same quantised input (same result), with one line on stderr, and
 * counted; the count is printed on stderr when the backend closes
 * ("hmoe: kmod experts: N CPU fallbacks").
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_ffn.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_kmod.h"

#define KM_MAX_CARDS 8
#define KM_WAIT_MS 60000   /* per wait; a hung job ends TIMEDOUT sooner (job_timeout_ms) */

struct km_card {
	struct hmoe_kmod k;
	int open;
	uint32_t q_h2c, q_comp, q_c2h;
	struct hmoe_kmod_bo w;            /* card: n_slots expert packs */
	struct hmoe_kmod_bo xh, xc;       /* host / card: this layer's activation tiles */
	struct hmoe_kmod_bo yc, yh;       /* card / host: this layer's output tiles */
	uint64_t x_cap, y_cap;            /* bytes of xh/xc and yc/yh */
	uint64_t x_bytes, y_bytes;        /* used by this layer */
	struct drm_hmoe_job *jobs;        /* [n_pairs max] this layer's FFN jobs */
	int n_jobs, jobs_cap;
};

/* One tile: up to `tile` pairs of one expert. */
struct km_tile {
	int expert, card, n;
	int first;                        /* index into order[] of its first pair */
	uint64_t x_off, y_off;            /* in its card's x and y BOs */
};

struct km_priv {
	int format, dim, inter, n_routed, groups, tile;
	int n_cards;
	struct km_card cards[KM_MAX_CARDS];
	uint64_t pack_bytes;              /* one expert pack, bytes (64-multiple) */
	uint64_t x_tok, y_tok;            /* one token's x (int8 + scales) / y bytes */
	/* per-layer work, grown as needed */
	int8_t *xq;                       /* (n_tokens, groups * 128) */
	int32_t *xs;                      /* (n_tokens, groups) */
	int *order, *count;               /* pairs sorted by expert; [n_routed + 1] */
	struct km_tile *tiles;
	int cap_tokens, cap_pairs;
	/* CPU fallback */
	struct hmoe_ffn_scratch *scratch;
	struct hmoe_fxp_line *fb_pack;
	int32_t *fb_y;                    /* (tile, dim) */
	long fallbacks;
	int verify;                       /* $HMOE_KMOD_VERIFY set: check against the CPU */
};

static uint64_t align64(uint64_t v)
{
	return (v + 63) & ~(uint64_t)63;
}

/* "fp8", "int8,cards=2", "cards=2" -> format, n_cards. */
static int km_parse(const char *arg, int *format, int *n_cards)
{
	char buf[128], *save = NULL, *tok;
	int have_format = 0;

	*format = HMOE_FXP_FP8;
	*n_cards = 1;
	if (!arg || !*arg)
		return 0;
	if (strlen(arg) >= sizeof(buf))
		return hmoe_err(HMOE_EINPUT, "expert backend kmod: spec '%s' is too long", arg);
	strcpy(buf, arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "cards=", 6)) {
			char *end;
			long n = strtol(tok + 6, &end, 10);

			if (end == tok + 6 || *end || n < 1 || n > KM_MAX_CARDS)
				return hmoe_err(HMOE_EINPUT, "expert backend kmod: '%s': cards must "
						"be 1..%d", tok, KM_MAX_CARDS);
			*n_cards = (int)n;
		} else if (!have_format && !strchr(tok, '=')) {
			int ret = hmoe_fxp_format_parse(tok, format);

			if (ret)
				return hmoe_err_ctx(ret, "expert backend kmod");
			have_format = 1;
		} else {
			return hmoe_err(HMOE_EINPUT, "expert backend kmod: unknown option '%s' (use "
					"kmod[:fp8|int8|int4][,cards=N])", tok);
		}
	}
	return 0;
}

static void km_card_fini(struct km_card *c)
{
	if (!c->open)
		return;
	hmoe_kmod_bo_free(&c->k, &c->w);
	hmoe_kmod_bo_free(&c->k, &c->xh);
	hmoe_kmod_bo_free(&c->k, &c->xc);
	hmoe_kmod_bo_free(&c->k, &c->yc);
	hmoe_kmod_bo_free(&c->k, &c->yh);
	if (c->q_h2c)
		hmoe_kmod_queue_destroy(&c->k, c->q_h2c);
	if (c->q_comp)
		hmoe_kmod_queue_destroy(&c->k, c->q_comp);
	if (c->q_c2h)
		hmoe_kmod_queue_destroy(&c->k, c->q_c2h);
	hmoe_kmod_close(&c->k);
	free(c->jobs);
	memset(c, 0, sizeof(*c));
}

static void km_fini(struct hmoe_expert_backend *b)
{
	struct km_priv *p = b->priv;

	if (!p)
		return;
	if (p->fallbacks)
		fprintf(stderr, "hmoe: kmod experts: %ld CPU fallbacks\n", p->fallbacks);
	for (int i = 0; i < p->n_cards; i++)
		km_card_fini(&p->cards[i]);
	free(p->xq);
	free(p->xs);
	free(p->order);
	free(p->count);
	free(p->tiles);
	free(p->scratch);
	free(p->fb_pack);
	free(p->fb_y);
	free(p);
	b->priv = NULL;
}

/* Packs every routed expert of layer l that lives on card ci into the staging BO st and
 * copies them into the card's weight BO. */
static int km_upload_layer(struct km_priv *p, const struct hmoe_model *m, int l, int ci,
			   const struct hmoe_kmod_bo *st)
{
	struct km_card *c = &p->cards[ci];
	uint64_t first_slot = UINT64_MAX, n = 0, seq;
	struct drm_hmoe_job cp;
	int ret;

	for (int e = 0; e < p->n_routed; e++) {
		long g = (long)l * p->n_routed + e;

		if (g % p->n_cards != ci)
			continue;
		if (first_slot == UINT64_MAX)
			first_slot = (uint64_t)(g / p->n_cards);
		ret = hmoe_fxp_pack_mlp((struct hmoe_fxp_line *)((uint8_t *)st->map +
								  n * p->pack_bytes),
					&m->layers[l].experts[e], p->format);
		if (ret)
			return hmoe_err_ctx(ret, "kmod:%s layer %d expert %d",
					    hmoe_fxp_format_name(p->format), l, e);
		n++;
	}
	if (!n)
		return 0;
	cp = hmoe_kmod_copy(st, 0, &c->w, first_slot * p->pack_bytes, n * p->pack_bytes);
	ret = hmoe_kmod_submit(&c->k, c->q_h2c, &cp, 1, &seq);
	if (!ret)
		ret = hmoe_kmod_wait(&c->k, c->q_h2c, seq, KM_WAIT_MS);
	if (ret)
		return hmoe_err_ctx(ret, "kmod: uploading layer %d experts", l);
	return 0;
}

static int km_card_init(struct km_priv *p, const struct hmoe_model *m, int ci)
{
	const struct hmoe_config *cfg = &m->cfg;
	struct km_card *c = &p->cards[ci];
	uint64_t slots = ((uint64_t)cfg->num_hidden_layers * p->n_routed + p->n_cards - 1 - ci) /
			 p->n_cards;
	struct hmoe_kmod_bo st = { 0 };
	int ret;

	ret = hmoe_kmod_open(&c->k, ci);
	if (ret)
		return ret;
	c->open = 1;
	if (!(c->k.info.weight_formats & (1u << p->format)))
		return hmoe_err(HMOE_EDEVICE, "kmod %s: card does not run format %s", c->k.path,
				hmoe_fxp_format_name(p->format));
	if ((int)c->k.info.max_tokens_per_job < p->tile)
		p->tile = (int)c->k.info.max_tokens_per_job;
	if ((ret = hmoe_kmod_queue_create(&c->k, HMOE_QUEUE_H2C, 16, &c->q_h2c)) ||
	    (ret = hmoe_kmod_queue_create(&c->k, HMOE_QUEUE_C2H, 16, &c->q_c2h)) ||
	    (ret = hmoe_kmod_queue_create(&c->k, HMOE_QUEUE_COMPUTE, c->k.info.max_ring_size,
					  &c->q_comp)))
		return ret;
	ret = hmoe_kmod_bo_create(&c->k, slots * p->pack_bytes, HMOE_BO_CARD, &c->w);
	if (ret)
		return hmoe_err_ctx(ret, "kmod: %llu expert packs of %llu bytes on card %d",
				    (unsigned long long)slots, (unsigned long long)p->pack_bytes,
				    ci);
	ret = hmoe_kmod_bo_create(&c->k, (uint64_t)p->n_routed * p->pack_bytes, 0, &st);
	if (ret)
		return ret;
	for (int l = 0; l < cfg->num_hidden_layers && !ret; l++)
		if (m->layers[l].is_moe)
			ret = km_upload_layer(p, m, l, ci, &st);
	hmoe_kmod_bo_free(&c->k, &st);
	return ret;
}

static int km_init(struct hmoe_expert_backend *b, const struct hmoe_model *m, const char *arg)
{
	const struct hmoe_config *cfg = &m->cfg;
	struct km_priv *p;
	int ret;

	p = calloc(1, sizeof(*p));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory");
	b->priv = p;
	ret = km_parse(arg, &p->format, &p->n_cards);
	if (ret)
		goto err;
	p->dim = cfg->hidden_size;
	p->inter = cfg->moe_intermediate_size;
	p->n_routed = cfg->n_routed_experts;
	if (p->dim > HMOE_FXP_MAX_DIM || p->inter > HMOE_FXP_MAX_INTER) {
		ret = hmoe_err(HMOE_EINPUT, "kmod experts: hidden_size %d / moe_intermediate_size "
			       "%d exceed the kernel's bounds %d / %d", p->dim, p->inter,
			       HMOE_FXP_MAX_DIM, HMOE_FXP_MAX_INTER);
		goto err;
	}
	p->groups = hmoe_fxp_groups(p->dim);
	p->verify = getenv("HMOE_KMOD_VERIFY") && *getenv("HMOE_KMOD_VERIFY") &&
		    strcmp(getenv("HMOE_KMOD_VERIFY"), "0");
	p->tile = HMOE_FXP_TILE;
	p->pack_bytes = (uint64_t)hmoe_fxp_expert_lines(p->format, p->dim, p->inter) *
			HMOE_FXP_LINE_BYTES;
	p->x_tok = (uint64_t)p->groups * (HMOE_FXP_GROUP + 4);
	p->y_tok = (uint64_t)p->dim * 4;
	p->scratch = malloc(sizeof(*p->scratch));
	p->fb_pack = aligned_alloc(HMOE_FXP_LINE_BYTES, p->pack_bytes);
	p->fb_y = malloc((size_t)HMOE_FXP_TILE * p->y_tok);
	p->count = calloc((size_t)p->n_routed + 1, sizeof(*p->count));
	if (!p->scratch || !p->fb_pack || !p->fb_y || !p->count) {
		ret = hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory");
		goto err;
	}
	for (int i = 0; i < p->n_cards; i++) {
		ret = km_card_init(p, m, i);
		if (ret) {
			if (!p->cards[i].open)
				ret = hmoe_err_ctx(ret, "expert backend kmod (cards=%d)", p->n_cards);
			goto err;
		}
	}
	return 0;
err:
	km_fini(b);
	return ret;
}

/* Grows a host BO pair (host + card) to hold at least `need` bytes. */
static int km_grow(struct km_card *c, struct hmoe_kmod_bo *host, struct hmoe_kmod_bo *card,
		   uint64_t *cap, uint64_t need)
{
	int ret;

	if (need <= *cap)
		return 0;
	need = need * 2 > need + (1u << 20) ? need * 2 : need + (1u << 20);
	hmoe_kmod_bo_free(&c->k, host);
	hmoe_kmod_bo_free(&c->k, card);
	*cap = 0;
	if ((ret = hmoe_kmod_bo_create(&c->k, need, 0, host)) ||
	    (ret = hmoe_kmod_bo_create(&c->k, need, HMOE_BO_CARD, card)))
		return ret;
	*cap = need;
	return 0;
}

static int km_reserve(struct km_priv *p, int n_tokens, int n_pairs)
{
	if (n_tokens > p->cap_tokens) {
		free(p->xq);
		free(p->xs);
		p->xq = malloc((size_t)n_tokens * p->groups * HMOE_FXP_GROUP);
		p->xs = malloc((size_t)n_tokens * p->groups * sizeof(int32_t));
		p->cap_tokens = p->xq && p->xs ? n_tokens : 0;
		if (!p->cap_tokens)
			return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory (%d tokens)",
					n_tokens);
	}
	if (n_pairs > p->cap_pairs) {
		free(p->order);
		free(p->tiles);
		p->order = malloc((size_t)n_pairs * sizeof(*p->order));
		p->tiles = malloc((size_t)(n_pairs + p->n_routed) * sizeof(*p->tiles));
		p->cap_pairs = p->order && p->tiles ? n_pairs : 0;
		for (int i = 0; i < p->n_cards; i++) {
			struct km_card *c = &p->cards[i];

			free(c->jobs);
			c->jobs = malloc((size_t)(n_pairs + p->n_routed) * sizeof(*c->jobs));
			if (!c->jobs)
				p->cap_pairs = 0;
		}
		if (!p->cap_pairs)
			return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory (%d pairs)", n_pairs);
	}
	return 0;
}

/* Writes tile t's activations (xq rows, then scale rows) at dst. */
static void km_fill_x(const struct km_priv *p, const struct km_tile *t, int top_k, uint8_t *dst)
{
	size_t row = (size_t)p->groups * HMOE_FXP_GROUP;
	int32_t *xs = (int32_t *)(dst + (size_t)t->n * row);

	for (int i = 0; i < t->n; i++) {
		int tok = p->order[t->first + i] / top_k;

		memcpy(dst + i * row, p->xq + tok * row, row);
		memcpy(xs + (size_t)i * p->groups, p->xs + (size_t)tok * p->groups,
		       (size_t)p->groups * sizeof(int32_t));
	}
}

/* Tile t on the CPU into p->fb_y (t->n, dim) Q16: the same hmoe_ffn() the card runs, on
 * the same bytes (the expert is packed again from the model: no second copy is kept). */
static int km_cpu_tile(struct km_priv *p, const struct hmoe_model *m, int layer,
		       const struct km_tile *t, int top_k)
{
	size_t row = (size_t)p->groups * HMOE_FXP_GROUP;
	uint8_t *x = malloc((size_t)t->n * p->x_tok);
	int ret;

	if (!x)
		return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory (CPU tile)");
	km_fill_x(p, t, top_k, x);
	ret = hmoe_fxp_pack_mlp(p->fb_pack, &m->layers[layer].experts[t->expert], p->format);
	if (!ret && hmoe_ffn(p->fb_pack, (const int8_t *)x, (const int32_t *)(x + t->n * row),
			     p->fb_y, p->scratch, p->format, t->n, p->dim, p->inter))
		ret = hmoe_err(HMOE_EINTERNAL, "kmod experts: hmoe_ffn rejected layer %d expert %d",
			       layer, t->expert);
	free(x);
	return ret;
}

/* Q16 outputs (t->n, dim) of tile t -> y rows of its pairs, as cpu-fxp converts them. */
static void km_scatter(const struct km_priv *p, const struct km_tile *t, const int32_t *yq,
		       float *y)
{
	for (int i = 0; i < t->n; i++)
		for (int d = 0; d < p->dim; d++)
			y[(size_t)p->order[t->first + i] * p->dim + d] =
				hmoe_fxp_out_to_f32(yq[(size_t)i * p->dim + d]);
}

/* A tile whose card job failed: redone on the CPU, one line on stderr, counted. */
static int km_fallback(struct km_priv *p, const struct hmoe_model *m, int layer,
		       const struct km_tile *t, int top_k, float *y, const char *why)
{
	int ret = km_cpu_tile(p, m, layer, t, top_k);

	if (ret)
		return ret;
	km_scatter(p, t, p->fb_y, y);
	p->fallbacks++;
	fprintf(stderr, "hmoe: kmod card %d: layer %d expert %d (%d tokens) redone on the CPU: "
		"%s\n", t->card, layer, t->expert, t->n, why);
	return 0;
}

/* HMOE_KMOD_VERIFY=1: every card tile is recomputed on the CPU and compared. */
static int km_verify(struct km_priv *p, const struct hmoe_model *m, int layer,
		     const struct km_tile *t, int top_k, const int32_t *yq)
{
	int ret = km_cpu_tile(p, m, layer, t, top_k);

	for (int i = 0; !ret && i < t->n * p->dim; i++)
		if (yq[i] != p->fb_y[i])
			ret = hmoe_err(HMOE_EDEVICE, "kmod card %d: layer %d expert %d token %d "
				       "output %d: card %d, CPU %d", t->card, layer, t->expert,
				       i / p->dim, i % p->dim, yq[i], p->fb_y[i]);
	return ret;
}

static int km_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	struct km_priv *p = b->priv;
	int n_pairs = batch->n_tokens * batch->top_k, n_tiles = 0, ret;
	char why[KM_MAX_CARDS][256];          /* first failure seen on each card */
	uint64_t last[KM_MAX_CARDS] = { 0 };  /* seqno of each card's last FFN job */
	uint64_t h2c[KM_MAX_CARDS] = { 0 };   /* seqno of each card's activation copy */
	uint8_t *job_ok[KM_MAX_CARDS] = { 0 }; /* [n_jobs] per card */
	int next[KM_MAX_CARDS] = { 0 };

	if (batch->layer < 0 || batch->layer >= b->model->cfg.num_hidden_layers ||
	    !b->model->layers[batch->layer].is_moe)
		return hmoe_err(HMOE_EINTERNAL, "kmod experts: layer %d is not an MoE layer",
				batch->layer);
	if (n_pairs <= 0)
		return 0;
	for (int i = 0; i < n_pairs; i++)
		if (batch->expert_ids[i] < 0 || batch->expert_ids[i] >= p->n_routed)
			return hmoe_err(HMOE_EINPUT, "kmod experts: expert %d of token %d is out of "
					"range", batch->expert_ids[i], i / batch->top_k);
	ret = km_reserve(p, batch->n_tokens, n_pairs);
	if (ret)
		return ret;
	for (int t = 0; t < batch->n_tokens; t++)
		hmoe_fxp_quant_x(batch->x + (size_t)t * p->dim, p->dim,
				 p->xq + (size_t)t * p->groups * HMOE_FXP_GROUP,
				 p->xs + (size_t)t * p->groups);
	/* pairs in ascending (expert, token, slot) order */
	memset(p->count, 0, sizeof(*p->count) * (p->n_routed + 1));
	for (int i = 0; i < n_pairs; i++)
		p->count[batch->expert_ids[i] + 1]++;
	for (int e = 0; e < p->n_routed; e++)
		p->count[e + 1] += p->count[e];
	for (int i = 0; i < n_pairs; i++)
		p->order[p->count[batch->expert_ids[i]]++] = i;
	for (int i = 0; i < p->n_cards; i++) {
		p->cards[i].x_bytes = p->cards[i].y_bytes = 0;
		p->cards[i].n_jobs = 0;
		why[i][0] = 0;
	}
	/* tiles, and their places in their card's BOs */
	for (int e = 0; e < p->n_routed; e++) {
		long g = (long)batch->layer * p->n_routed + e;

		/* count[e] is now the end of e's run in order[] */
		for (int i = e ? p->count[e - 1] : 0; i < p->count[e]; i += p->tile) {
			struct km_tile *t = &p->tiles[n_tiles++];
			struct km_card *c;

			t->expert = e;
			t->card = (int)(g % p->n_cards);
			t->first = i;
			t->n = p->count[e] - i < p->tile ? p->count[e] - i : p->tile;
			c = &p->cards[t->card];
			t->x_off = c->x_bytes;
			t->y_off = c->y_bytes;
			c->x_bytes += align64((uint64_t)t->n * p->x_tok);
			c->y_bytes += align64((uint64_t)t->n * p->y_tok);
		}
	}
	for (int i = 0; i < p->n_cards; i++) {
		struct km_card *c = &p->cards[i];

		if ((ret = km_grow(c, &c->xh, &c->xc, &c->x_cap, c->x_bytes)) ||
		    (ret = km_grow(c, &c->yh, &c->yc, &c->y_cap, c->y_bytes)))
			return ret;
	}
	for (int ti = 0; ti < n_tiles; ti++) {
		struct km_tile *t = &p->tiles[ti];
		struct km_card *c = &p->cards[t->card];
		long g = (long)batch->layer * p->n_routed + t->expert;

		km_fill_x(p, t, batch->top_k, (uint8_t *)c->xh.map + t->x_off);
		c->jobs[c->n_jobs++] = hmoe_kmod_ffn(&c->w, (uint64_t)(g / p->n_cards) * p->pack_bytes,
						     &c->xc, t->x_off, &c->yc, t->y_off,
						     (uint32_t)p->format, (uint32_t)p->dim,
						     (uint32_t)p->inter, (uint32_t)t->n);
	}
	/* Per card: H2C, then its FFN jobs chained to it (one submit), then wait for each
	 * job so a failed one is known by itself, then C2H. Cards run at the same time. */
	for (int i = 0; i < p->n_cards; i++) {
		struct km_card *c = &p->cards[i];
		struct drm_hmoe_job cp;
		int fence = -1, err = 0;

		if (!c->n_jobs)
			continue;
		cp = hmoe_kmod_copy(&c->xh, 0, &c->xc, 0, c->x_bytes);
		err = hmoe_kmod_submit_chain(&c->k, c->q_h2c, &cp, 1, -1, &fence, &h2c[i]);
		for (int j = 0; !err && j < c->n_jobs; j += (int)c->k.info.max_jobs_per_submit) {
			uint32_t n = (uint32_t)(c->n_jobs - j);

			if (n > c->k.info.max_jobs_per_submit)
				n = c->k.info.max_jobs_per_submit;
			err = hmoe_kmod_submit_chain(&c->k, c->q_comp, c->jobs + j, n,
						     j ? -1 : fence, NULL, &last[i]);
		}
		if (fence >= 0)
			close(fence);
		if (err) {
			snprintf(why[i], sizeof(why[i]), "%s", hmoe_last_error());
			/* jobs of earlier submits must not write into the next layer's run */
			if (last[i])
				hmoe_kmod_wait(&c->k, c->q_comp, last[i], KM_WAIT_MS);
		}
	}
	for (int i = 0; i < p->n_cards; i++) {
		struct km_card *c = &p->cards[i];
		struct drm_hmoe_job cp;
		uint64_t seq;
		int x_ok;

		if (!c->n_jobs || why[i][0])
			continue;
		job_ok[i] = calloc((size_t)c->n_jobs, 1);
		if (!job_ok[i]) {
			snprintf(why[i], sizeof(why[i]), "out of memory");
			continue;
		}
		/* a failed copy cancels the jobs chained to it: name the copy */
		x_ok = !hmoe_kmod_wait(&c->k, c->q_h2c, h2c[i], KM_WAIT_MS);
		if (!x_ok)
			snprintf(why[i], sizeof(why[i]), "%s", hmoe_last_error());
		for (int j = 0; j < c->n_jobs; j++) {
			uint64_t s = last[i] - (uint64_t)(c->n_jobs - 1 - j);

			if (hmoe_kmod_wait(&c->k, c->q_comp, s, KM_WAIT_MS)) {
				if (!why[i][0])
					snprintf(why[i], sizeof(why[i]), "%s", hmoe_last_error());
			} else {
				job_ok[i][j] = (uint8_t)x_ok;
			}
		}
		cp = hmoe_kmod_copy(&c->yc, 0, &c->yh, 0, c->y_bytes);
		if (hmoe_kmod_submit(&c->k, c->q_c2h, &cp, 1, &seq) ||
		    hmoe_kmod_wait(&c->k, c->q_c2h, seq, KM_WAIT_MS)) {
			if (!why[i][0])
				snprintf(why[i], sizeof(why[i]), "%s", hmoe_last_error());
			memset(job_ok[i], 0, (size_t)c->n_jobs);
		}
	}
	/* outputs: in tile order, which is each card's job order */
	ret = 0;
	for (int ti = 0; ti < n_tiles; ti++) {
		struct km_tile *t = &p->tiles[ti];
		struct km_card *c = &p->cards[t->card];
		int j = next[t->card]++;

		if (job_ok[t->card] && job_ok[t->card][j]) {
			const int32_t *yq = (const int32_t *)((const uint8_t *)c->yh.map + t->y_off);

			if (p->verify && !ret)
				ret = km_verify(p, b->model, batch->layer, t, batch->top_k, yq);
			km_scatter(p, t, yq, batch->y);
		} else if (!ret) {
			ret = km_fallback(p, b->model, batch->layer, t, batch->top_k, batch->y,
					  why[t->card][0] ? why[t->card] : "card job failed");
		}
	}
	for (int i = 0; i < p->n_cards; i++)
		free(job_ok[i]);
	return ret;
}

const struct hmoe_expert_ops hmoe_expert_kmod_ops = {
	.name = "kmod",
	.init = km_init,
	.run = km_run,
	.fini = km_fini,
};
