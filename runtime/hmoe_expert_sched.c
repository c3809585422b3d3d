/* hmoe_expert_sched: the composite routed-expert backend "sched" (see hmoe_expert.h,
 * hmoe_sched.h, docs/runtime.md).
 *
 *   --experts sched[:KEY=VALUE[,KEY=VALUE...]]
 *     cards=N          expert devices (default 2; 0: CPU tier only)
 *     card=SPEC        backend of each device (default cpu-fxp: a card emulated by a CPU
 *                      backend on its own thread); kmod[:MODE]: device d is the hmoe
 *                      card of node index d (kmod:MODE,card=d)
 *     cpu=SPEC         backend of the host CPU tier (default: the card SPEC; cpu-fxp
 *                      with the same MODE for card=kmod[:MODE])
 *     mem=BYTES        expert memory per device, suffix K/M/G/T (binary) allowed
 *                      (default: room for its share of every expert plus 25%; for kmod
 *                      cards, the card's memory as the driver reports it minus the
 *                      kmod backend's activation reserve)
 *     replicas=N       copies of a hot expert at most (default 2; needs routing counts,
 *                      so it takes effect through place-out= then place=)
 *     place=FILE       load the placement (devices and capacities come from it)
 *     place-out=FILE   at close, write a placement built from the routing counts seen
 *                      during the run (hot experts replicated)
 *     timeout-ms=N     a device silent this long is hung (default 10000)
 *     micro=N          micro-batches per layer call (default 1); with submit/wait (the
 *                      forward pass's --micro-batches 2) the parts but the last run at
 *                      submit and the last stays in flight
 *     threads=N        worker threads of each device's backend (default 1)
 *     replan=N         after every N MoE-layer calls, build the placement again from the
 *                      routing counts seen so far (hot experts replicated) and move the
 *                      experts (set_resident) where it changed; N >= 1
 *     fault=D@K[-L]:MODE  tests: device D fails from its K-th call on (to its L-th);
 *                      MODE error (returns
 *                      an error) or hang (answers only after 3 x timeout-ms); several
 *                      joined by '+'
 *     verbose          print the scheduler's counters at close
 * Child SPECs may contain ':' (cpu-fxp:int8) but not ','.
 *
 * Every device backend is opened over the whole model, then told which experts the
 * placement puts on it (hmoe_expert_set_resident, by the scheduler): a kmod card uploads
 * only those; a CPU backend (an emulated card) holds every pack and only records the
 * mask. The CPU tier holds everything.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hmoe_err.h"
#include "hmoe_expert.h"
#include "hmoe_fxp_pack.h"
#include "hmoe_kmod.h"
#include "hmoe_place.h"
#include "hmoe_pool.h"
#include "hmoe_sched.h"

#define SCHED_MAX_FAULTS 8

struct sched_fault {
	int device, from_call, to_call;   /* to_call 0: for ever */
	int hang;
};

struct sched_cfg {
	int cards;
	char card[128], cpu[128];
	int64_t mem;                  /* 0: automatic */
	int replicas;
	char place[512], place_out[512];
	int timeout_ms, micro, threads, verbose, replan;
	int kmod;                     /* card=kmod[:MODE]: device d opens card node d */
	int kmod_mode;                /* its kernel mode */
	struct sched_fault faults[SCHED_MAX_FAULTS];
	int n_faults;
};

struct sched_priv {
	struct sched_cfg cfg;
	struct hmoe_place *place;
	struct hmoe_sched *sched;
	unsigned char *is_moe;        /* (n_layers) */
	int64_t expert_bytes;
};

/* ---- the fault-injection wrapper (tests) --------------------------------------------- */

struct fault_priv {
	struct hmoe_expert_backend *child;
	int from_call, to_call, hang, hang_ms;
	int calls;
};

static int fault_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	struct fault_priv *f = b->priv;

	if (++f->calls < f->from_call || (f->to_call && f->calls > f->to_call))
		return hmoe_expert_run(f->child, batch);
	if (f->hang) {
		struct timespec ts = { f->hang_ms / 1000, (long)(f->hang_ms % 1000) * 1000000L };

		while (nanosleep(&ts, &ts) && errno == EINTR)
			;
		return hmoe_err(HMOE_EDEVICE, "fault injected: hung for %d ms (call %d)",
				f->hang_ms, f->calls);
	}
	return hmoe_err(HMOE_EDEVICE, "fault injected: error on call %d", f->calls);
}

static void fault_fini(struct hmoe_expert_backend *b)
{
	struct fault_priv *f = b->priv;

	if (f)
		hmoe_expert_close(f->child);
	free(f);
	b->priv = NULL;
}

static int fault_init(struct hmoe_expert_backend *b, const struct hmoe_model *m, const char *arg)
{
	(void)b, (void)m, (void)arg;
	return hmoe_err(HMOE_EINTERNAL, "the fault wrapper is made by the sched backend only");
}

static int fault_set_resident(struct hmoe_expert_backend *b, const uint8_t *mask)
{
	struct fault_priv *f = b->priv;

	return hmoe_expert_set_resident(f->child, mask);
}

static const struct hmoe_expert_ops fault_ops = {
	.name = "fault",
	.init = fault_init,
	.run = fault_run,
	.fini = fault_fini,
	.set_resident = fault_set_resident,
};

/* Wraps *child (taking it over) so that calls from from_call on fail. */
static int fault_wrap(struct hmoe_expert_backend **child, const struct sched_fault *fl,
		      int timeout_ms)
{
	struct hmoe_expert_backend *b = calloc(1, sizeof(*b));
	struct fault_priv *f = calloc(1, sizeof(*f));

	if (!b || !f) {
		free(b);
		free(f);
		return hmoe_err(HMOE_ENOMEM, "sched: out of memory");
	}
	f->child = *child;
	f->from_call = fl->from_call;
	f->to_call = fl->to_call;
	f->hang = fl->hang;
	f->hang_ms = 3 * timeout_ms;
	b->ops = &fault_ops;
	b->model = (*child)->model;
	b->pool = (*child)->pool;
	b->priv = f;
	*child = b;
	return 0;
}

/* ---- the spec ------------------------------------------------------------------------ */

static int parse_long(const char *key, const char *v, long lo, long hi, long *out)
{
	char *end;
	long x;

	errno = 0;
	x = strtol(v, &end, 10);
	if (errno || end == v || *end || x < lo || x > hi)
		return hmoe_err(HMOE_EINPUT, "expert backend sched: %s=%s: expected an integer in "
				"[%ld, %ld]", key, v, lo, hi);
	*out = x;
	return 0;
}

static int parse_bytes(const char *v, int64_t *out)
{
	char *end;
	unsigned long long x;
	int shift = 0;

	errno = 0;
	x = strtoull(v, &end, 10);
	if (end != v && *end && !end[1]) {
		const char *units = "KMGT", *u = strchr(units, *end);

		if (u) {
			shift = 10 * (int)(u - units + 1);
			end++;
		}
	}
	if (errno || end == v || *end || v[0] == '-' || x == 0 || x > (1ull << (62 - shift)))
		return hmoe_err(HMOE_EINPUT, "expert backend sched: mem=%s: expected bytes > 0 with "
				"an optional K, M, G or T suffix", v);
	*out = (int64_t)(x << shift);
	return 0;
}

static int parse_faults(struct sched_cfg *c, const char *v)
{
	char buf[256], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", v);
	for (tok = strtok_r(buf, "+", &save); tok; tok = strtok_r(NULL, "+", &save)) {
		struct sched_fault *f = &c->faults[c->n_faults];
		char mode[16];
		int n = 0;

		if (c->n_faults >= SCHED_MAX_FAULTS)
			return hmoe_err(HMOE_EINPUT, "expert backend sched: more than %d faults",
					SCHED_MAX_FAULTS);
		f->to_call = 0;
		if ((sscanf(tok, "%d@%d:%15[a-z]%n", &f->device, &f->from_call, mode, &n) != 3 &&
		     (n = 0, sscanf(tok, "%d@%d-%d:%15[a-z]%n", &f->device, &f->from_call,
				    &f->to_call, mode, &n) != 4)) ||
		    tok[n] || f->device < 0 || f->from_call < 1 ||
		    (f->to_call && f->to_call < f->from_call) ||
		    (strcmp(mode, "error") && strcmp(mode, "hang")))
			return hmoe_err(HMOE_EINPUT, "expert backend sched: fault '%s': expected "
					"DEVICE@CALL[-LAST]:error or DEVICE@CALL[-LAST]:hang (1 <= CALL "
					"<= LAST)", tok);
		f->hang = !strcmp(mode, "hang");
		c->n_faults++;
	}
	return 0;
}

static int parse_spec(struct sched_cfg *c, const char *arg)
{
	char buf[1024], *save = NULL, *tok;
	int have_cpu = 0, ret;
	long v;

	memset(c, 0, sizeof(*c));
	c->cards = 2;
	snprintf(c->card, sizeof(c->card), "cpu-fxp");
	c->replicas = 2;
	c->timeout_ms = 10000;
	c->micro = 1;
	c->threads = 1;
	if (!arg)
		arg = "";
	if (strlen(arg) >= sizeof(buf))
		return hmoe_err(HMOE_EINPUT, "expert backend sched: spec longer than %zu characters",
				sizeof(buf) - 1);
	snprintf(buf, sizeof(buf), "%s", arg);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');
		const char *key = tok, *val = eq ? eq + 1 : NULL;

		if (eq)
			*eq = '\0';
		if (!strcmp(key, "verbose") && !val) {
			c->verbose = 1;
			continue;
		}
		if (!val || !*val)
			return hmoe_err(HMOE_EINPUT, "expert backend sched: '%s' needs =VALUE (keys: "
					"cards, card, cpu, mem, replicas, place, place-out, timeout-ms, "
					"micro, threads, replan, fault, verbose)", key);
		if (!strcmp(key, "cards")) {
			ret = parse_long(key, val, 0, HMOE_PLACE_MAX_DEVICES, &v);
			c->cards = (int)v;
		} else if (!strcmp(key, "card") || !strcmp(key, "cpu")) {
			char *dst = key[1] == 'a' ? c->card : c->cpu;

			if (strlen(val) >= sizeof(c->card) || !strncmp(val, "sched", 5))
				return hmoe_err(HMOE_EINPUT, "expert backend sched: %s=%s: not a device "
						"backend", key, val);
			snprintf(dst, sizeof(c->card), "%s", val);
			have_cpu |= key[1] == 'p';
			ret = 0;
		} else if (!strcmp(key, "mem")) {
			ret = parse_bytes(val, &c->mem);
		} else if (!strcmp(key, "replicas")) {
			ret = parse_long(key, val, 1, HMOE_PLACE_MAX_REPLICAS, &v);
			c->replicas = (int)v;
		} else if (!strcmp(key, "place") || !strcmp(key, "place-out")) {
			char *dst = key[5] ? c->place_out : c->place;

			if (strlen(val) >= sizeof(c->place))
				return hmoe_err(HMOE_EINPUT, "expert backend sched: %s: path too long",
						key);
			snprintf(dst, sizeof(c->place), "%s", val);
			ret = 0;
		} else if (!strcmp(key, "timeout-ms")) {
			ret = parse_long(key, val, 1, 3600 * 1000, &v);
			c->timeout_ms = (int)v;
		} else if (!strcmp(key, "micro")) {
			ret = parse_long(key, val, 1, 64, &v);
			c->micro = (int)v;
		} else if (!strcmp(key, "threads")) {
			ret = parse_long(key, val, 1, 1024, &v);
			c->threads = (int)v;
		} else if (!strcmp(key, "replan")) {
			ret = parse_long(key, val, 1, 1000000000, &v);
			c->replan = (int)v;
		} else if (!strcmp(key, "fault")) {
			ret = parse_faults(c, val);
		} else {
			return hmoe_err(HMOE_EINPUT, "expert backend sched: unknown key '%s' (keys: "
					"cards, card, cpu, mem, replicas, place, place-out, timeout-ms, "
					"micro, threads, replan, fault, verbose)", key);
		}
		if (ret)
			return ret;
	}
	c->kmod = !strncmp(c->card, "kmod", 4) && (!c->card[4] || c->card[4] == ':');
	if (c->kmod) {
		const char *mode = c->card[4] ? c->card + 5 : "";

		if (strchr(mode, '='))
			return hmoe_err(HMOE_EINPUT, "expert backend sched: card=%s: give only the "
					"mode (card=kmod[:MODE]); device d opens card d itself", c->card);
		ret = hmoe_fxp_format_parse(*mode ? mode : "fp8", &c->kmod_mode);
		if (ret)
			return hmoe_err_ctx(ret, "expert backend sched: card=%s", c->card);
	}
	if (!have_cpu && c->kmod)
		snprintf(c->cpu, sizeof(c->cpu), "cpu-fxp%s%s", c->card[4] ? ":" : "",
			 c->card[4] ? c->card + 5 : "");
	else if (!have_cpu)
		snprintf(c->cpu, sizeof(c->cpu), "%s", c->card);
	return 0;
}

/* Bytes one expert takes on a device running `spec`: the fixed-point pack for cpu-fxp
 * (and the cards, which hold the same packs), fp32 weights for cpu-f32. */
static int expert_bytes(const char *spec, const struct hmoe_config *c, int64_t *out)
{
	const char *colon = strchr(spec, ':');
	int format = HMOE_FXP_FP8;

	if (!strncmp(spec, "cpu-f32", 7)) {
		*out = 3 * (int64_t)c->hidden_size * c->moe_intermediate_size * (int64_t)sizeof(float);
		return 0;
	}
	if (colon && (!strncmp(spec, "cpu-fxp", 7) || !strncmp(spec, "kmod", 4))) {
		int ret = hmoe_fxp_format_parse(colon + 1, &format);

		if (ret)
			return hmoe_err_ctx(ret, "expert backend sched: card=%s", spec);
	}
	*out = hmoe_fxp_expert_lines(format, c->hidden_size, c->moe_intermediate_size) *
	       HMOE_FXP_LINE_BYTES;
	return 0;
}

/* ---- the backend --------------------------------------------------------------------- */

static void sched_fini(struct hmoe_expert_backend *b)
{
	struct sched_priv *p = b->priv;

	if (!p)
		return;
	if (p->sched) {
		const struct hmoe_sched_stats *st = hmoe_sched_stats(p->sched);

		if (p->cfg.verbose || st->failures || st->timeouts)
			hmoe_sched_print_stats(p->sched, stderr);
		if (p->cfg.place_out[0]) {
			const struct hmoe_config *c = &b->model->cfg;
			struct hmoe_place_opts o = {
				.n_layers = c->num_hidden_layers, .n_experts = c->n_routed_experts,
				.is_moe = p->is_moe, .expert_bytes = p->expert_bytes,
				.n_devices = p->place->n_devices, .devices = p->place->devices,
				.counts = st->routed, .max_replicas = p->cfg.replicas,
			};
			struct hmoe_place *np = NULL;

			if (hmoe_place_build(&np, &o) || hmoe_place_save(np, p->cfg.place_out))
				fprintf(stderr, "hmoe: sched: place-out: %s\n", hmoe_last_error());
			else
				fprintf(stderr, "hmoe: sched: placement from the observed routing "
					"written to %s\n", p->cfg.place_out);
			hmoe_place_free(np);
		}
	}
	hmoe_sched_free(p->sched);
	hmoe_place_free(p->place);
	free(p->is_moe);
	free(p);
	b->priv = NULL;
}

static int make_placement(struct sched_priv *p, const struct hmoe_model *m)
{
	const struct hmoe_config *c = &m->cfg;
	struct hmoe_place_device devs[HMOE_PLACE_MAX_DEVICES];
	struct hmoe_place_opts o = {
		.n_layers = c->num_hidden_layers, .n_experts = c->n_routed_experts,
		.is_moe = p->is_moe, .expert_bytes = p->expert_bytes, .n_devices = p->cfg.cards,
		.devices = devs, .max_replicas = p->cfg.replicas,
	};
	int n_moe = 0, ret;

	if (p->cfg.place[0]) {
		ret = hmoe_place_load(&p->place, p->cfg.place);
		if (ret)
			return ret;
		ret = hmoe_place_check(p->place, c->num_hidden_layers, c->n_routed_experts,
				       p->is_moe, p->expert_bytes, p->cfg.place);
		if (ret)
			return ret;
		p->cfg.cards = p->place->n_devices;
		return 0;
	}
	for (int l = 0; l < c->num_hidden_layers; l++)
		n_moe += p->is_moe[l];
	for (int d = 0; d < p->cfg.cards; d++) {
		int64_t share = ((int64_t)n_moe * c->n_routed_experts + p->cfg.cards - 1) /
				p->cfg.cards;

		snprintf(devs[d].name, sizeof(devs[d].name), "card%d", d);
		devs[d].capacity_bytes = p->cfg.mem ? p->cfg.mem
						    : (share + (share + 3) / 4) * p->expert_bytes;
		if (p->cfg.kmod && !p->cfg.mem) {
			/* what the card holds next to the kmod backend's activation buffers */
			uint64_t mem, reserve = hmoe_kmod_act_reserve(p->cfg.kmod_mode,
								       c->hidden_size);

			ret = hmoe_kmod_card_mem(d, &mem);
			if (ret)
				return hmoe_err_ctx(ret, "expert backend sched: card%d", d);
			devs[d].capacity_bytes = mem > reserve ? (int64_t)(mem - reserve) : 0;
		}
	}
	return hmoe_place_build(&p->place, &o);
}

static int sched_init(struct hmoe_expert_backend *b, const struct hmoe_model *m, const char *arg)
{
	const struct hmoe_config *c = &m->cfg;
	struct hmoe_sched_device devs[HMOE_SCHED_MAX_DEVICES];
	struct hmoe_sched_opts so = { 0 };
	struct sched_priv *p = calloc(1, sizeof(*p));
	int D, ret;

	memset(devs, 0, sizeof(devs));
	if (!p)
		return hmoe_err(HMOE_ENOMEM, "expert backend sched: out of memory");
	b->priv = p;
	ret = parse_spec(&p->cfg, arg);
	if (ret)
		goto err;
	ret = expert_bytes(p->cfg.card, c, &p->expert_bytes);
	if (ret)
		goto err;
	p->is_moe = calloc((size_t)c->num_hidden_layers, 1);
	if (!p->is_moe) {
		ret = hmoe_err(HMOE_ENOMEM, "expert backend sched: out of memory");
		goto err;
	}
	for (int l = 0; l < c->num_hidden_layers; l++)
		p->is_moe[l] = (unsigned char)(m->layers[l].is_moe != 0);
	ret = make_placement(p, m);
	if (ret)
		goto err;
	D = p->place->n_devices;
	for (int i = 0; i < p->cfg.n_faults; i++)
		if (p->cfg.faults[i].device >= D) {
			ret = hmoe_err(HMOE_EINPUT, "expert backend sched: fault on device %d, but "
				       "there are %d", p->cfg.faults[i].device, D);
			goto err;
		}

	/* the devices, then the CPU tier on the caller's pool */
	for (int d = 0; d <= D && !ret; d++) {
		struct hmoe_sched_device *sd = &devs[d];

		snprintf(sd->name, sizeof(sd->name), "%s", d < D ? p->place->devices[d].name : "cpu");
		if (d < D && p->cfg.threads > 1)
			ret = hmoe_pool_create(&sd->pool, p->cfg.threads);
		if (!ret && d < D && p->cfg.kmod) {
			char spec[160];

			snprintf(spec, sizeof(spec), "%s%scard=%d", p->cfg.card,
				 p->cfg.card[4] ? "," : ":", d);
			ret = hmoe_expert_open(&sd->backend, spec, m, sd->pool);
		} else if (!ret) {
			ret = hmoe_expert_open(&sd->backend, d < D ? p->cfg.card : p->cfg.cpu, m,
					       d < D ? sd->pool : b->pool);
		}
		if (ret) {
			ret = hmoe_err_ctx(ret, "expert backend sched: %s", sd->name);
			break;
		}
		for (int i = 0; i < p->cfg.n_faults && !ret; i++)
			if (p->cfg.faults[i].device == d)
				ret = fault_wrap(&sd->backend, &p->cfg.faults[i], p->cfg.timeout_ms);
	}
	if (ret) {
		for (int d = 0; d <= D; d++) {
			hmoe_expert_close(devs[d].backend);
			hmoe_pool_destroy(devs[d].pool);
		}
		goto err;
	}
	so.timeout_ms = p->cfg.timeout_ms;
	so.micro_batches = p->cfg.micro;
	so.replan_every = p->cfg.replan;
	so.max_replicas = p->cfg.replicas;
	so.verbose = p->cfg.verbose;
	ret = hmoe_sched_create(&p->sched, p->place, devs, c->hidden_size, c->num_hidden_layers,
				&so);
	if (ret)
		goto err;
	b->act_planes = hmoe_sched_planes(p->sched);  /* takes GPU-quantised tokens then */
	return 0;
err:
	sched_fini(b);
	return ret;
}

static int sched_run(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch)
{
	struct sched_priv *p = b->priv;

	return hmoe_sched_run(p->sched, batch);
}

/* The devices are threads, so the backend is truly asynchronous: submit returns with
 * the cards' shares queued (the CPU tier's share has run), wait collects them. */
static int sched_submit(struct hmoe_expert_backend *b, const struct hmoe_expert_batch *batch,
			int *ticket)
{
	struct sched_priv *p = b->priv;

	return hmoe_sched_submit(p->sched, batch, ticket);
}

static int sched_wait(struct hmoe_expert_backend *b, int ticket)
{
	struct sched_priv *p = b->priv;

	return hmoe_sched_wait(p->sched, ticket);
}

const struct hmoe_expert_ops hmoe_expert_sched_ops = {
	.name = "sched",
	.init = sched_init,
	.run = sched_run,
	.fini = sched_fini,
	.submit = sched_submit,
	.wait = sched_wait,
};

struct hmoe_sched *hmoe_expert_sched_get(const struct hmoe_expert_backend *b)
{
	return b && b->ops == &hmoe_expert_sched_ops ? ((struct sched_priv *)b->priv)->sched
						     : NULL;
}
