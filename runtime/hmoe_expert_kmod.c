/* hmoe_expert_kmod: the routed-expert backend "kmod[:MODE][,cards=N|card=I]" (see
 * hmoe_expert.h) on hmoe cards through hmoe.ko (runtime/hmoe_kmod.c, docs/kmod.md).
 *
 * Spec: MODE is a kernel mode by name (hmoe_fxp_format_parse): fp8 (default), int8 or
 * int4 with two activation planes (A16), or fp8-a8 / int8-a8 / int4-a8 with one; cards=N
 * (default 1) opens the first N hmoe cards in node order; card=I opens only the card
 * of node index I (a sched device; exclusive with cards=).
 *
 * Residency: a table (layer, expert) -> (card, slot in that card's weight BO).
 * set_resident(mask) gives each newly resident expert a card (the one with the most
 * free slots, then the lowest index; an expert already resident stays where it is) and
 * a free slot, forgets the experts no longer resident (their slots are reused), grows a
 * card's weight BO when its slots run out (re-uploading that card's experts), and
 * uploads the new ones: packed with the cpu-fxp packer (hmoe_fxp_pack_mlp) into a host
 * staging BO, one layer at a time, one H2C copy per expert. A card holds at most
 * (card_mem_bytes - hmoe_kmod_act_reserve()) / pack bytes experts: a larger mask is an
 * HMOE_EINPUT error that says how many fit. Without a set_resident call before the first
 * batch, that batch makes every expert resident as before set_resident existed: expert
 * e of layer l on card (l * n_routed + e) % N. A batch naming a non-resident expert is
 * an HMOE_EINTERNAL error.
 *
 * init:   opens the cards, checks the mode, creates the queues (no upload yet).
 * submit: every token is quantised once (hmoe_fxp_quant_x, the contract quantiser, with
 *         the mode's planes); the (token, slot) pairs are grouped by expert in ascending
 *         (expert, token, slot) order and cut into tiles of at most max_tokens_per_job;
 *         per card: one H2C copy of its tiles' activations, ONE submit of its FFN jobs
 *         chained to that copy's fence, one C2H copy of the outputs chained to the last
 *         FFN job's fence; then it returns, the card works on its own.
 * wait:   per card, a wait per job (so a failed one is known by itself) and for the C2H
 *         copy; then Q16 -> float with hmoe_fxp_out_to_f32, as cpu-fxp does. The card
 *         runs hmoe_ffn(), which cpu-fxp's kernels equal bit for bit, so the outputs
 *         equal cpu-fxp's.
 * run:    submit + wait.
 * Up to HMOE_EXPERT_MAX_INFLIGHT batches are in flight: each has its own set of
 * activation/output BOs, tiles and job arrays (struct km_set), so a second batch's
 * upload and jobs queue behind the first's on the same card queues while the caller
 * computes. Submit and wait are called from one thread (not thread-safe).
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
#define KM_SETS HMOE_EXPERT_MAX_INFLIGHT
#define KM_WAIT_MS 60000   /* per wait; a hung job ends TIMEDOUT sooner (job_timeout_ms) */

/* ---------------------------------------------------------------- types */

/* One card's share of one in-flight batch. */
struct km_card_set {
	struct hmoe_kmod_bo xh, xc;       /* host / card: the batch's activation tiles */
	struct hmoe_kmod_bo yc, yh;       /* card / host: its output tiles */
	uint64_t x_cap, y_cap;            /* bytes of xh/xc and yc/yh */
	uint64_t x_bytes, y_bytes;        /* used by this batch */
	struct drm_hmoe_job *jobs;        /* [n_pairs + n_routed max] the batch's FFN jobs */
	uint8_t *job_ok;                  /* [same] 1 when job j and both copies ended OK */
	int n_jobs;
	uint64_t h2c_seq, last_seq, c2h_seq; /* submitted jobs' seqnos; 0: not submitted */
	int waited;                       /* job_ok[] is final (km_wait_card ran) */
	char why[256];                    /* first failure seen on this card, "" if none */
};

struct km_card {
	struct hmoe_kmod k;
	int open;
	uint32_t q_h2c, q_comp, q_c2h;
	struct hmoe_kmod_bo w;            /* card: n_slots expert packs */
	int n_slots;                      /* packs w holds */
	int cap_slots;                    /* packs the card's memory holds next to the
					   * activation reserve */
	int32_t *slot_owner;              /* [n_slots] g = l * n_routed + e there, or -1 */
	struct km_card_set set[KM_SETS];
};

/* One tile: up to `tile` pairs of one expert. */
struct km_tile {
	int expert, card, n;
	int first;                        /* index into order[] of its first pair */
	uint64_t x_off, y_off;            /* in its card's x and y BOs */
};

/* One batch between submit and wait; its arrays grow as needed and are kept. */
struct km_set {
	struct hmoe_expert_batch batch;   /* the caller's (its arrays stay the caller's) */
	int8_t *xq;                       /* (n_tokens, planes, groups * 128) */
	int32_t *xs;                      /* (n_tokens, groups) */
	int *order;                       /* [n_pairs] pairs sorted by expert */
	struct km_tile *tiles;            /* [n_pairs + n_routed] */
	int n_tiles;
	int cap_tokens, cap_pairs;
};

struct km_priv {
	int mode, format, planes;         /* kernel mode; its weight format and planes */
	int dim, inter, n_routed, groups, tile;
	int n_cards, card_base;           /* cards[i] is node index card_base + i */
	int card_one;                     /* opened with card=I */
	struct km_card cards[KM_MAX_CARDS];
	int n_layers;
	int placed;                       /* residency set (set_resident or first batch) */
	int8_t *card_of;                  /* [n_layers * n_routed] card holding g, or -1 */
	int32_t *slot_of;                 /* [same] its slot in that card's weight BO */
	uint64_t pack_bytes;              /* one expert pack, bytes (64-multiple) */
	uint64_t xq_tok, x_tok, y_tok;    /* one token's xq planes / x (xq + scales) / y bytes */
	int *count;                       /* [n_routed + 1] pairs per expert (submit only) */
	struct km_set sets[KM_SETS];
	int oldest, n_inflight;           /* sets[oldest] is waited next; in flight */
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

/* "fp8", "int8-a8,cards=2", "cards=2", "fp8,card=1" -> mode, n_cards, card (-1: none). */
static int km_parse(const char *arg, int *mode, int *n_cards, int *card)
{
	char buf[128], *save = NULL, *tok;
	int have_mode = 0, have_cards = 0;

	*mode = HMOE_FXP_FP8 | HMOE_FXP_A16;
	*n_cards = 1;
	*card = -1;
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
			have_cards = 1;
		} else if (!strncmp(tok, "card=", 5)) {
			char *end;
			long n = strtol(tok + 5, &end, 10);

			if (end == tok + 5 || *end || n < 0 || n > 63)
				return hmoe_err(HMOE_EINPUT, "expert backend kmod: '%s': card must be "
						"a card index 0..63", tok);
			*card = (int)n;
		} else if (!have_mode && !strchr(tok, '=')) {
			int ret = hmoe_fxp_format_parse(tok, mode);

			if (ret)
				return hmoe_err_ctx(ret, "expert backend kmod");
			have_mode = 1;
		} else {
			return hmoe_err(HMOE_EINPUT, "expert backend kmod: unknown option '%s' (use "
					"kmod[:fp8|int8|int4[-a8]][,cards=N|,card=I])", tok);
		}
	}
	if (have_cards && *card >= 0)
		return hmoe_err(HMOE_EINPUT, "expert backend kmod: card=%d and cards=%d exclude "
				"each other (card= opens one card by index, cards= the first N)",
				*card, *n_cards);
	return 0;
}

/* ---------------------------------------------------------------- lifetime */

static void km_card_fini(struct km_card *c)
{
	if (!c->open)
		return;
	hmoe_kmod_bo_free(&c->k, &c->w);
	free(c->slot_owner);
	for (int s = 0; s < KM_SETS; s++) {
		struct km_card_set *cs = &c->set[s];

		hmoe_kmod_bo_free(&c->k, &cs->xh);
		hmoe_kmod_bo_free(&c->k, &cs->xc);
		hmoe_kmod_bo_free(&c->k, &cs->yc);
		hmoe_kmod_bo_free(&c->k, &cs->yh);
		free(cs->jobs);
		free(cs->job_ok);
	}
	/* jobs still queued (a batch never waited) hold their own BO references */
	if (c->q_h2c)
		hmoe_kmod_queue_destroy(&c->k, c->q_h2c);
	if (c->q_comp)
		hmoe_kmod_queue_destroy(&c->k, c->q_comp);
	if (c->q_c2h)
		hmoe_kmod_queue_destroy(&c->k, c->q_c2h);
	hmoe_kmod_close(&c->k);
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
	for (int s = 0; s < KM_SETS; s++) {
		free(p->sets[s].xq);
		free(p->sets[s].xs);
		free(p->sets[s].order);
		free(p->sets[s].tiles);
	}
	free(p->count);
	free(p->card_of);
	free(p->slot_of);
	free(p->scratch);
	free(p->fb_pack);
	free(p->fb_y);
	free(p);
	b->priv = NULL;
}

/* Packs the n experts gs[] (all of one layer) into the staging BO st and copies each
 * into its slot on card ci; on failure those experts are made non-resident. */
static int km_upload(struct km_priv *p, const struct hmoe_model *m, int ci, const int *gs,
		     int n, const struct hmoe_kmod_bo *st)
{
	struct km_card *c = &p->cards[ci];
	struct drm_hmoe_job cp[16];
	int chunk = (int)c->k.info.max_jobs_per_submit, ret = 0, done = 0;

	if (chunk > 16)
		chunk = 16;  /* the H2C ring's size (km_card_init) */
	for (int i = 0; i < n && !ret; i++) {
		int l = gs[i] / p->n_routed, e = gs[i] % p->n_routed;

		ret = hmoe_fxp_pack_mlp((struct hmoe_fxp_line *)((uint8_t *)st->map +
								  (uint64_t)i * p->pack_bytes),
					&m->layers[l].experts[e], p->format);
		if (ret)
			ret = hmoe_err_ctx(ret, "kmod:%s layer %d expert %d",
					   hmoe_fxp_format_name(p->mode), l, e);
	}
	while (!ret && done < n) {
		int k = n - done < chunk ? n - done : chunk;
		uint64_t seq;

		for (int i = 0; i < k; i++)
			cp[i] = hmoe_kmod_copy(st, (uint64_t)(done + i) * p->pack_bytes, &c->w,
					       (uint64_t)p->slot_of[gs[done + i]] * p->pack_bytes,
					       p->pack_bytes);
		ret = hmoe_kmod_submit(&c->k, c->q_h2c, cp, (uint32_t)k, &seq);
		/* every copy's own status: one that failed leaves its slot undefined */
		for (int i = 0; !ret && i < k; i++)
			ret = hmoe_kmod_wait(&c->k, c->q_h2c, seq - (uint64_t)(k - 1 - i), KM_WAIT_MS);
		if (!ret)
			done += k;
	}
	if (ret) {
		for (int i = done; i < n; i++) {
			c->slot_owner[p->slot_of[gs[i]]] = -1;
			p->card_of[gs[i]] = -1;
		}
		return hmoe_err_ctx(ret, "kmod: uploading layer %d experts to card %d",
				    gs[0] / p->n_routed, p->card_base + ci);
	}
	return 0;
}

/* Makes the experts g with want[g] = card index resident there (want[g] < 0: not
 * resident), keeping those already in place; see the top of this file. */
static int km_apply(struct km_priv *p, const struct hmoe_model *m, const int8_t *want)
{
	int G = p->n_layers * p->n_routed, ret = 0;
	int *gs = malloc((size_t)(p->n_routed > 0 ? p->n_routed : 1) * sizeof(int));
	struct hmoe_kmod_bo st = { 0 };

	if (!gs)
		return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory");
	for (int ci = 0; ci < p->n_cards; ci++) {
		struct km_card *c = &p->cards[ci];
		int need = 0;

		for (int g = 0; g < G; g++)
			need += want[g] == ci;
		if (need > c->cap_slots) {
			uint64_t reserve = hmoe_kmod_act_reserve(p->mode, p->dim);

			free(gs);
			return hmoe_err(HMOE_EINPUT, "kmod card %d (%s): %d experts asked resident, "
					"%d fit (card memory %llu MiB minus %llu MiB of activation "
					"buffers, %llu bytes per expert)", p->card_base + ci,
					c->k.path, need, c->cap_slots,
					(unsigned long long)(c->k.info.card_mem_bytes >> 20),
					(unsigned long long)(reserve >> 20),
					(unsigned long long)p->pack_bytes);
		}
	}
	p->placed = 1;
	/* forget what moves or leaves */
	for (int g = 0; g < G; g++)
		if (p->card_of[g] >= 0 && p->card_of[g] != want[g]) {
			p->cards[p->card_of[g]].slot_owner[p->slot_of[g]] = -1;
			p->card_of[g] = -1;
		}
	for (int ci = 0; ci < p->n_cards && !ret; ci++) {
		struct km_card *c = &p->cards[ci];
		int need = 0, free_at = 0;

		for (int g = 0; g < G; g++)
			need += want[g] == ci;
		if (need > c->n_slots) {
			/* a larger weight BO (some room to grow, up to the card's capacity); the
			 * card's experts are uploaded again into it */
			int n = need + need / 4 < c->cap_slots ? need + need / 4 : c->cap_slots;
			int32_t *own = malloc((size_t)n * sizeof(*own));

			if (!own) {
				ret = hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory");
				break;
			}
			for (int g = 0; g < G; g++)
				if (p->card_of[g] == ci)
					p->card_of[g] = -1;
			free(c->slot_owner);
			c->slot_owner = own;
			for (int i = 0; i < n; i++)
				own[i] = -1;
			hmoe_kmod_bo_free(&c->k, &c->w);
			c->n_slots = 0;
			ret = hmoe_kmod_bo_create(&c->k, (uint64_t)n * p->pack_bytes, HMOE_BO_CARD,
						  &c->w);
			if (ret) {
				ret = hmoe_err_ctx(ret, "kmod: %d expert packs of %llu bytes on card %d",
						   n, (unsigned long long)p->pack_bytes,
						   p->card_base + ci);
				break;
			}
			c->n_slots = n;
		}
		if (!need)
			continue;
		if (!st.handle) {
			ret = hmoe_kmod_bo_create(&c->k, (uint64_t)p->n_routed * p->pack_bytes, 0, &st);
			if (ret)
				break;
		}
		/* new residents, a layer at a time, into the lowest free slots */
		for (int l = 0; l < p->n_layers && !ret; l++) {
			int n = 0;

			for (int e = 0; e < p->n_routed; e++) {
				int g = l * p->n_routed + e;

				if (want[g] != ci || p->card_of[g] == ci)
					continue;
				while (c->slot_owner[free_at] >= 0)
					free_at++;  /* need <= n_slots: a free slot exists */
				c->slot_owner[free_at] = g;
				p->slot_of[g] = free_at;
				p->card_of[g] = (int8_t)ci;
				gs[n++] = g;
			}
			if (n)
				ret = km_upload(p, m, ci, gs, n, &st);
		}
		/* the staging BO belongs to card ci's file */
		hmoe_kmod_bo_free(&c->k, &st);
		memset(&st, 0, sizeof(st));
	}
	free(gs);
	return ret;
}

/* Residency before set_resident existed: every expert, round-robin over the cards. */
static int km_place_all(struct km_priv *p, const struct hmoe_model *m)
{
	int G = p->n_layers * p->n_routed, ret;
	int8_t *want = malloc((size_t)G);

	if (!want)
		return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory");
	for (int g = 0; g < G; g++)
		want[g] = m->layers[g / p->n_routed].is_moe ? (int8_t)(g % p->n_cards) : -1;
	ret = km_apply(p, m, want);
	free(want);
	return ret;
}

static int km_set_resident(struct hmoe_expert_backend *b, const uint8_t *mask)
{
	struct km_priv *p = b->priv;
	int G = p->n_layers * p->n_routed, free_slots[KM_MAX_CARDS], ret;
	int8_t *want;

	if (p->n_inflight)
		return hmoe_err(HMOE_EINTERNAL, "kmod experts: set_resident with %d batches in "
				"flight", p->n_inflight);
	want = malloc((size_t)G);
	if (!want)
		return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory");
	for (int ci = 0; ci < p->n_cards; ci++)
		free_slots[ci] = p->cards[ci].cap_slots;
	/* those that stay keep their card */
	for (int g = 0; g < G; g++) {
		want[g] = mask[g] ? p->card_of[g] : -1;
		if (want[g] >= 0)
			free_slots[want[g]]--;
	}
	for (int g = 0; g < G; g++) {
		int best = 0;

		if (!mask[g] || want[g] >= 0)
			continue;
		for (int ci = 1; ci < p->n_cards; ci++)
			if (free_slots[ci] > free_slots[best])
				best = ci;
		want[g] = (int8_t)best;
		free_slots[best]--;
	}
	ret = km_apply(p, b->model, want);
	free(want);
	return ret;
}

static int km_card_init(struct km_priv *p, int ci)
{
	struct km_card *c = &p->cards[ci];
	uint64_t reserve = hmoe_kmod_act_reserve(p->mode, p->dim), mem;
	int ret;

	ret = hmoe_kmod_open(&c->k, p->card_base + ci);
	if (ret)
		return ret;
	c->open = 1;
	ret = hmoe_kmod_check_mode(&c->k, p->mode);
	if (ret)
		return ret;
	if ((int)c->k.info.max_tokens_per_job < p->tile)
		p->tile = (int)c->k.info.max_tokens_per_job;
	if ((ret = hmoe_kmod_queue_create(&c->k, HMOE_QUEUE_H2C, 16, &c->q_h2c)) ||
	    (ret = hmoe_kmod_queue_create(&c->k, HMOE_QUEUE_C2H, 16, &c->q_c2h)) ||
	    (ret = hmoe_kmod_queue_create(&c->k, HMOE_QUEUE_COMPUTE, c->k.info.max_ring_size,
					  &c->q_comp)))
		return ret;
	mem = c->k.info.card_mem_bytes;
	c->cap_slots = mem > reserve ? (int)((mem - reserve) / p->pack_bytes) : 0;
	return 0;
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
	ret = km_parse(arg, &p->mode, &p->n_cards, &p->card_base);
	if (ret)
		goto err;
	p->card_one = p->card_base >= 0;
	if (!p->card_one)
		p->card_base = 0;
	p->n_layers = cfg->num_hidden_layers;
	p->format = hmoe_fxp_mode_format(p->mode);
	p->planes = hmoe_fxp_mode_planes(p->mode);
	b->act_planes = p->planes;
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
	p->xq_tok = (uint64_t)p->planes * p->groups * HMOE_FXP_GROUP;
	p->x_tok = p->xq_tok + (uint64_t)p->groups * sizeof(int32_t);
	p->y_tok = (uint64_t)p->dim * sizeof(int32_t);
	p->scratch = malloc(sizeof(*p->scratch));
	p->fb_pack = aligned_alloc(HMOE_FXP_LINE_BYTES, p->pack_bytes);
	p->fb_y = malloc((size_t)HMOE_FXP_TILE * p->y_tok);
	p->count = calloc((size_t)p->n_routed + 1, sizeof(*p->count));
	p->card_of = malloc((size_t)p->n_layers * p->n_routed);
	p->slot_of = calloc((size_t)p->n_layers * p->n_routed, sizeof(*p->slot_of));
	if (!p->scratch || !p->fb_pack || !p->fb_y || !p->count || !p->card_of || !p->slot_of) {
		ret = hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory");
		goto err;
	}
	memset(p->card_of, -1, (size_t)p->n_layers * p->n_routed);
	for (int i = 0; i < p->n_cards; i++) {
		ret = km_card_init(p, i);
		if (ret) {
			if (!p->cards[i].open && p->card_one)
				ret = hmoe_err_ctx(ret, "expert backend kmod (card=%d)", p->card_base);
			else if (!p->cards[i].open)
				ret = hmoe_err_ctx(ret, "expert backend kmod (cards=%d)", p->n_cards);
			goto err;
		}
	}
	return 0;
err:
	km_fini(b);
	return ret;
}

/* Grows a BO pair (host + card) to hold at least `need` bytes. */
static int km_grow(struct km_card *c, struct hmoe_kmod_bo *host, struct hmoe_kmod_bo *card,
		   uint64_t *cap, uint64_t need)
{
	uint64_t grow;
	int ret;

	if (need <= *cap)
		return 0;
	hmoe_kmod_bo_free(&c->k, host);
	hmoe_kmod_bo_free(&c->k, card);
	*cap = 0;
	/* room to grow, unless the card (full of resident experts) has only what is
	 * needed now */
	grow = need * 2 > need + (1u << 20) ? need * 2 : need + (1u << 20);
	if (hmoe_kmod_bo_create(&c->k, grow, HMOE_BO_CARD, card)) {
		grow = need;
		if ((ret = hmoe_kmod_bo_create(&c->k, grow, HMOE_BO_CARD, card)))
			return ret;
	}
	if ((ret = hmoe_kmod_bo_create(&c->k, grow, 0, host)))
		return ret;
	*cap = grow;
	return 0;
}

/* Grows set si's host arrays (and its job arrays on every card) for a batch. */
static int km_reserve(struct km_priv *p, int si, int n_tokens, int n_pairs)
{
	struct km_set *s = &p->sets[si];

	if (n_tokens > s->cap_tokens) {
		free(s->xq);
		free(s->xs);
		s->xq = malloc((size_t)n_tokens * p->xq_tok);
		s->xs = malloc((size_t)n_tokens * p->groups * sizeof(int32_t));
		s->cap_tokens = s->xq && s->xs ? n_tokens : 0;
		if (!s->cap_tokens)
			return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory (%d tokens)",
					n_tokens);
	}
	if (n_pairs > s->cap_pairs) {
		size_t n_max = (size_t)n_pairs + (size_t)p->n_routed; /* tiles, jobs: at most */

		free(s->order);
		free(s->tiles);
		s->order = malloc((size_t)n_pairs * sizeof(*s->order));
		s->tiles = malloc(n_max * sizeof(*s->tiles));
		s->cap_pairs = s->order && s->tiles ? n_pairs : 0;
		for (int i = 0; i < p->n_cards; i++) {
			struct km_card_set *cs = &p->cards[i].set[si];

			free(cs->jobs);
			free(cs->job_ok);
			cs->jobs = malloc(n_max * sizeof(*cs->jobs));
			cs->job_ok = malloc(n_max);
			if (!cs->jobs || !cs->job_ok)
				s->cap_pairs = 0;
		}
		if (!s->cap_pairs)
			return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory (%d pairs)", n_pairs);
	}
	return 0;
}

/* ---------------------------------------------------------------- compute */

/* Writes tile t's activations (xq planes per token, then scale rows) at dst. */
static void km_fill_x(const struct km_priv *p, const struct km_set *s,
		      const struct km_tile *t, uint8_t *dst)
{
	int32_t *xs = (int32_t *)(dst + (size_t)t->n * p->xq_tok);

	for (int i = 0; i < t->n; i++) {
		int tok = s->order[t->first + i] / s->batch.top_k;

		memcpy(dst + i * p->xq_tok, s->xq + tok * p->xq_tok, p->xq_tok);
		memcpy(xs + (size_t)i * p->groups, s->xs + (size_t)tok * p->groups,
		       (size_t)p->groups * sizeof(int32_t));
	}
}

/* Tile t on the CPU into p->fb_y (t->n, dim) Q16: the same hmoe_ffn() the card runs, on
 * the same bytes (the expert is packed again from the model: no second copy is kept). */
static int km_cpu_tile(struct km_priv *p, const struct hmoe_model *m, const struct km_set *s,
		       const struct km_tile *t)
{
	uint8_t *x = malloc((size_t)t->n * p->x_tok);
	int layer = s->batch.layer, ret;

	if (!x)
		return hmoe_err(HMOE_ENOMEM, "kmod experts: out of memory (CPU tile)");
	km_fill_x(p, s, t, x);
	ret = hmoe_fxp_pack_mlp(p->fb_pack, &m->layers[layer].experts[t->expert], p->format);
	if (!ret && hmoe_ffn(p->fb_pack, (const int8_t *)x,
			     (const int32_t *)(x + t->n * p->xq_tok), p->fb_y, p->scratch,
			     p->mode, t->n, p->dim, p->inter))
		ret = hmoe_err(HMOE_EINTERNAL, "kmod experts: hmoe_ffn rejected layer %d expert %d",
			       layer, t->expert);
	free(x);
	return ret;
}

/* Q16 outputs (t->n, dim) of tile t -> y rows of its pairs, as cpu-fxp converts them. */
static void km_scatter(const struct km_priv *p, const struct km_set *s,
		       const struct km_tile *t, const int32_t *yq)
{
	for (int i = 0; i < t->n; i++)
		for (int d = 0; d < p->dim; d++)
			s->batch.y[(size_t)s->order[t->first + i] * p->dim + d] =
				hmoe_fxp_out_to_f32(yq[(size_t)i * p->dim + d]);
}

/* A tile whose card job failed: redone on the CPU, one line on stderr, counted. */
static int km_fallback(struct km_priv *p, const struct hmoe_model *m, const struct km_set *s,
		       const struct km_tile *t, const char *why)
{
	int ret = km_cpu_tile(p, m, s, t);

	if (ret)
		return ret;
	km_scatter(p, s, t, p->fb_y);
	p->fallbacks++;
	fprintf(stderr, "hmoe: kmod card %d: layer %d expert %d (%d tokens) redone on the CPU: "
		"%s\n", t->card, s->batch.layer, t->expert, t->n, why);
	return 0;
}

/* HMOE_KMOD_VERIFY=1: every card tile is recomputed on the CPU and compared. */
static int km_verify(struct km_priv *p, const struct hmoe_model *m, const struct km_set *s,
		     const struct km_tile *t, const int32_t *yq)
{
	int ret = km_cpu_tile(p, m, s, t);

	for (int i = 0; !ret && i < t->n * p->dim; i++)
		if (yq[i] != p->fb_y[i])
			ret = hmoe_err(HMOE_EDEVICE, "kmod card %d: layer %d expert %d token %d "
				       "output %d: card %d, CPU %d", t->card, s->batch.layer,
				       t->expert, i / p->dim, i % p->dim, yq[i], p->fb_y[i]);
	return ret;
}

/* Set si's batch: quantised tokens, pairs in ascending (expert, token, slot) order,
 * tiles with their places in their cards' BOs, the activations in the host BOs and the
 * FFN jobs. Nothing is queued yet. */
static int km_plan(struct km_priv *p, int si)
{
	struct km_set *s = &p->sets[si];
	const struct hmoe_expert_batch *batch = &s->batch;
	int n_pairs = batch->n_tokens * batch->top_k, ret;

	ret = km_reserve(p, si, batch->n_tokens, n_pairs);
	if (ret)
		return ret;
	if (batch->xq && batch->xs && batch->xq_planes == p->planes) {  /* e.g. from the GPU */
		memcpy(s->xq, batch->xq, (size_t)batch->n_tokens * p->xq_tok);
		memcpy(s->xs, batch->xs, sizeof(int32_t) * (size_t)batch->n_tokens * p->groups);
	} else {
		for (int t = 0; t < batch->n_tokens; t++)
			hmoe_fxp_quant_x(batch->x + (size_t)t * p->dim, p->dim, p->planes,
					 s->xq + (size_t)t * p->xq_tok,
					 s->xs + (size_t)t * p->groups);
	}
	memset(p->count, 0, sizeof(*p->count) * (p->n_routed + 1));
	for (int i = 0; i < n_pairs; i++)
		p->count[batch->expert_ids[i] + 1]++;
	for (int e = 0; e < p->n_routed; e++)
		p->count[e + 1] += p->count[e];
	for (int i = 0; i < n_pairs; i++)
		s->order[p->count[batch->expert_ids[i]]++] = i;
	for (int e = 0; e < p->n_routed; e++) {
		long g = (long)batch->layer * p->n_routed + e;

		/* count[e] is now the end of e's run in order[] */
		for (int i = e ? p->count[e - 1] : 0; i < p->count[e]; i += p->tile) {
			struct km_tile *t = &s->tiles[s->n_tiles++];
			struct km_card_set *cs;

			t->expert = e;
			t->card = p->card_of[g];
			t->first = i;
			t->n = p->count[e] - i < p->tile ? p->count[e] - i : p->tile;
			cs = &p->cards[t->card].set[si];
			t->x_off = cs->x_bytes;
			t->y_off = cs->y_bytes;
			cs->x_bytes += align64((uint64_t)t->n * p->x_tok);
			cs->y_bytes += align64((uint64_t)t->n * p->y_tok);
		}
	}
	for (int i = 0; i < p->n_cards; i++) {
		struct km_card *c = &p->cards[i];
		struct km_card_set *cs = &c->set[si];

		if ((ret = km_grow(c, &cs->xh, &cs->xc, &cs->x_cap, cs->x_bytes)) ||
		    (ret = km_grow(c, &cs->yh, &cs->yc, &cs->y_cap, cs->y_bytes)))
			return ret;
	}
	for (int ti = 0; ti < s->n_tiles; ti++) {
		struct km_tile *t = &s->tiles[ti];
		struct km_card *c = &p->cards[t->card];
		struct km_card_set *cs = &c->set[si];
		long g = (long)batch->layer * p->n_routed + t->expert;

		km_fill_x(p, s, t, (uint8_t *)cs->xh.map + t->x_off);
		cs->jobs[cs->n_jobs++] = hmoe_kmod_ffn(&c->w,
						       (uint64_t)p->slot_of[g] * p->pack_bytes,
						       &cs->xc, t->x_off, &cs->yc, t->y_off,
						       (uint32_t)p->mode, (uint32_t)p->dim,
						       (uint32_t)p->inter, (uint32_t)t->n);
	}
	return 0;
}

/* Queues card c's share cs of a batch: H2C, its FFN jobs chained to the H2C fence (one
 * submit, or more past max_jobs_per_submit), C2H chained to the last FFN job's fence.
 * A failure is kept in cs->why (the card's tiles then fall back in wait), not returned. */
static void km_queue_card(struct km_card *c, struct km_card_set *cs)
{
	uint32_t max_n = c->k.info.max_jobs_per_submit;
	struct drm_hmoe_job cp;
	int in = -1, out = -1, err;

	cp = hmoe_kmod_copy(&cs->xh, 0, &cs->xc, 0, cs->x_bytes);
	err = hmoe_kmod_submit_chain(&c->k, c->q_h2c, &cp, 1, -1, &in, &cs->h2c_seq);
	for (int j = 0; !err && j < cs->n_jobs; j += (int)max_n) {
		uint32_t n = (uint32_t)(cs->n_jobs - j) < max_n ? (uint32_t)(cs->n_jobs - j)
								: max_n;

		/* submits of one queue run in order: only the first needs the in-fence,
		 * only the last gives the out-fence */
		err = hmoe_kmod_submit_chain(&c->k, c->q_comp, cs->jobs + j, n, j ? -1 : in,
					     j + (int)n >= cs->n_jobs ? &out : NULL,
					     &cs->last_seq);
	}
	if (in >= 0)
		close(in);
	if (err) {
		snprintf(cs->why, sizeof(cs->why), "%s", hmoe_last_error());
		return;
	}
	/* If this submit fails, or the copy is cancelled because the last job failed, wait
	 * copies the outputs again on its own. */
	cp = hmoe_kmod_copy(&cs->yc, 0, &cs->yh, 0, cs->y_bytes);
	if (hmoe_kmod_submit_chain(&c->k, c->q_c2h, &cp, 1, out, NULL, &cs->c2h_seq))
		cs->c2h_seq = 0;
	if (out >= 0)
		close(out);
}

/* Waits for card c's share cs of a batch and sets job_ok[] of its jobs. */
static void km_wait_card(struct km_card *c, struct km_card_set *cs)
{
	struct drm_hmoe_job cp;
	int x_ok, any_ok = 0;
	uint64_t seq;

	cs->waited = 1;
	memset(cs->job_ok, 0, (size_t)cs->n_jobs);
	if (cs->why[0]) {
		/* queueing failed: what was queued must finish before the BOs are reused */
		if (cs->last_seq)
			hmoe_kmod_wait(&c->k, c->q_comp, cs->last_seq, KM_WAIT_MS);
		else if (cs->h2c_seq)
			hmoe_kmod_wait(&c->k, c->q_h2c, cs->h2c_seq, KM_WAIT_MS);
		return;
	}
	/* a failed copy cancels the jobs chained to it: name the copy */
	x_ok = !hmoe_kmod_wait(&c->k, c->q_h2c, cs->h2c_seq, KM_WAIT_MS);
	if (!x_ok)
		snprintf(cs->why, sizeof(cs->why), "%s", hmoe_last_error());
	for (int j = 0; j < cs->n_jobs; j++) {
		uint64_t s = cs->last_seq - (uint64_t)(cs->n_jobs - 1 - j);

		if (hmoe_kmod_wait(&c->k, c->q_comp, s, KM_WAIT_MS)) {
			if (!cs->why[0])
				snprintf(cs->why, sizeof(cs->why), "%s", hmoe_last_error());
		} else {
			cs->job_ok[j] = (uint8_t)x_ok;
			any_ok |= x_ok;
		}
	}
	if (!any_ok) {
		if (cs->c2h_seq) /* cancelled or done: it must not write into the next batch */
			hmoe_kmod_wait(&c->k, c->q_c2h, cs->c2h_seq, KM_WAIT_MS);
		return;
	}
	if (cs->c2h_seq && !hmoe_kmod_wait(&c->k, c->q_c2h, cs->c2h_seq, KM_WAIT_MS))
		return;
	cp = hmoe_kmod_copy(&cs->yc, 0, &cs->yh, 0, cs->y_bytes);
	if (hmoe_kmod_submit(&c->k, c->q_c2h, &cp, 1, &seq) ||
	    hmoe_kmod_wait(&c->k, c->q_c2h, seq, KM_WAIT_MS)) {
		if (!cs->why[0])
			snprintf(cs->why, sizeof(cs->why), "%s", hmoe_last_error());
		memset(cs->job_ok, 0, (size_t)cs->n_jobs);
	}
}

static int km_submit(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch,
		     int *ticket)
{
	struct km_priv *p = b->priv;
	int n_pairs = batch->n_tokens * batch->top_k, si, ret;

	if (p->n_inflight >= KM_SETS)
		return hmoe_err(HMOE_EINTERNAL, "kmod experts: %d batches already in flight",
				p->n_inflight);
	if (batch->layer < 0 || batch->layer >= b->model->cfg.num_hidden_layers ||
	    !b->model->layers[batch->layer].is_moe)
		return hmoe_err(HMOE_EINTERNAL, "kmod experts: layer %d is not an MoE layer",
				batch->layer);
	for (int i = 0; i < n_pairs; i++)
		if (batch->expert_ids[i] < 0 || batch->expert_ids[i] >= p->n_routed)
			return hmoe_err(HMOE_EINPUT, "kmod experts: expert %d of token %d is out of "
					"range", batch->expert_ids[i], i / batch->top_k);
	if (!p->placed && n_pairs > 0) {
		ret = km_place_all(p, b->model);
		if (ret)
			return ret;
	}
	for (int i = 0; i < n_pairs; i++)
		if (p->card_of[(size_t)batch->layer * p->n_routed + batch->expert_ids[i]] < 0)
			return hmoe_err(HMOE_EINTERNAL, "kmod experts: layer %d expert %d is not "
					"resident on this backend's cards (token %d)", batch->layer,
					batch->expert_ids[i], i / batch->top_k);
	si = (p->oldest + p->n_inflight) % KM_SETS;
	p->sets[si].batch = *batch;
	p->sets[si].n_tiles = 0;
	for (int i = 0; i < p->n_cards; i++) {
		struct km_card_set *cs = &p->cards[i].set[si];

		cs->x_bytes = cs->y_bytes = 0;
		cs->n_jobs = 0;
		cs->h2c_seq = cs->last_seq = cs->c2h_seq = 0;
		cs->waited = 0;
		cs->why[0] = 0;
	}
	if (n_pairs > 0) {
		ret = km_plan(p, si);
		if (ret)
			return ret;
	}
	for (int i = 0; i < p->n_cards; i++) {
		struct km_card *c = &p->cards[i];

		if (!c->set[si].n_jobs)
			continue;
		/* A queue remembers the statuses of its last ring_size jobs only: when the
		 * batch in flight and this one overflow that, collect the older batch's
		 * statuses now (it loses its overlap on this card, not its results). */
		for (int o = 0; o < KM_SETS; o++) {
			struct km_card_set *other = &c->set[o];

			if (o != si && p->n_inflight && other->n_jobs && !other->waited &&
			    (uint64_t)other->n_jobs + (uint64_t)c->set[si].n_jobs >
				    c->k.info.max_ring_size)
				km_wait_card(c, other);
		}
		km_queue_card(c, &c->set[si]);
	}
	p->n_inflight++;
	*ticket = si;
	return 0;
}

static int km_wait(struct hmoe_expert_backend *b, int ticket)
{
	struct km_priv *p = b->priv;
	struct km_set *s;
	int next[KM_MAX_CARDS] = { 0 }, ret = 0;

	if (!p->n_inflight || ticket != p->oldest)
		return hmoe_err(HMOE_EINTERNAL, "kmod experts: wait for ticket %d, but %s", ticket,
				p->n_inflight ? "batches are waited in submission order"
					      : "no batch is in flight");
	s = &p->sets[ticket];
	for (int i = 0; i < p->n_cards; i++)
		if (p->cards[i].set[ticket].n_jobs && !p->cards[i].set[ticket].waited)
			km_wait_card(&p->cards[i], &p->cards[i].set[ticket]);
	/* outputs: in tile order, which is each card's job order */
	for (int ti = 0; ti < s->n_tiles; ti++) {
		struct km_tile *t = &s->tiles[ti];
		struct km_card_set *cs = &p->cards[t->card].set[ticket];
		int j = next[t->card]++;

		if (cs->job_ok[j]) {
			const int32_t *yq = (const int32_t *)((const uint8_t *)cs->yh.map + t->y_off);

			if (p->verify && !ret)
				ret = km_verify(p, b->model, s, t, yq);
			km_scatter(p, s, t, yq);
		} else if (!ret) {
			ret = km_fallback(p, b->model, s, t, cs->why[0] ? cs->why : "card job failed");
		}
	}
	p->oldest = (p->oldest + 1) % KM_SETS;
	p->n_inflight--;
	return ret;
}

static int km_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	int ticket, ret = km_submit(b, batch, &ticket);

	return ret ? ret : km_wait(b, ticket);
}

const struct hmoe_expert_ops hmoe_expert_kmod_ops = {
	.name = "kmod",
	.init = km_init,
	.run = km_run,
	.fini = km_fini,
	.submit = km_submit,
	.wait = km_wait,
	.set_resident = km_set_resident,
};
