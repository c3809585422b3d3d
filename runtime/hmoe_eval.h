/* hmoe_eval: the pieces of accuracy evaluation (`hmoe eval`, docs/model.md): problem sets
 * (held-out arithmetic generated here, or a user's jsonl file), extraction of the final
 * answer from a reasoning model's output, and answer matching.
 *
 * Held-out arithmetic: a problem (op, a, b) is held out when
 * hmoe_eval_heldout_hash(op, a, b) % HMOE_EVAL_HELDOUT_MOD == 0; the training data of
 * models/r1-arith (tools/train/arith_data.py, same hash) never contains one, and the
 * arith tasks draw only held-out problems, from a fixed seed, so every run of a task
 * scores the same problems.
 */
#ifndef HMOE_EVAL_H
#define HMOE_EVAL_H

#include <stddef.h>
#include <stdint.h>

enum hmoe_eval_op { HMOE_EVAL_ADD = 1, HMOE_EVAL_SUB = 2, HMOE_EVAL_MUL = 3 };

#define HMOE_EVAL_HELDOUT_MOD 8
/* The seed of the arith problem sets (fixed: the sets are part of the benchmark). */
#define HMOE_EVAL_ARITH_SEED 20250120u

struct hmoe_eval_problem {
	char *prompt;    /* the user message */
	char *answer;    /* the reference answer */
};

struct hmoe_eval_set {
	struct hmoe_eval_problem *p;  /* [n] */
	int n;
};

/* splitmix64 finaliser of (op << 40 | a << 20 | b); a, b in [0, 2^20). */
uint64_t hmoe_eval_heldout_hash(int op, int a, int b);
int hmoe_eval_is_heldout(int op, int a, int b);

/* The sampler seed of one (problem, sample) of a run with seed `seed`: each sample draws
 * its own stream, so results do not depend on which samples share a batch. */
uint64_t hmoe_eval_sample_seed(uint64_t seed, int problem, int sample);

/* n held-out problems of task (HMOE_EINPUT for an unknown task, naming the valid ones):
 *   arith      3-digit + 3-digit addition ("What is 347 + 285?")
 *   arith-sub  3-digit - 3-digit subtraction, non-negative results
 *   arith-mul  3-digit * 1-digit multiplication
 *   arith-mix  the three in turn
 * All distinct; problem i is the same for every n > i. */
int hmoe_eval_arith(struct hmoe_eval_set *set, const char *task, int n);
/* Names of the arith tasks, for help texts. */
#define HMOE_EVAL_ARITH_TASKS "arith, arith-sub, arith-mul, arith-mix"

/* Reads a jsonl file: one JSON object per non-blank line with "prompt" (string) and
 * "answer" (string or number). A bad line is an HMOE_EINPUT error naming the file, the
 * line number and what is wrong; an empty file is an error too. */
int hmoe_eval_load_jsonl(struct hmoe_eval_set *set, const char *path);
void hmoe_eval_set_free(struct hmoe_eval_set *set);

/* The final answer of a generated text (the assistant turn after "<think>\n"), written
 * NUL-terminated to out (truncated to cap - 1 bytes). Only the text after the last
 * "</think>" counts (R1's protocol: the reasoning is not the answer); no "</think>"
 * means no answer. In that part: the content of the last \boxed{...} (braces balanced),
 * else what follows the last "answer is" up to the end of its line, else the last number.
 * Returns 1 when an answer was found, else 0 (out is then ""). */
int hmoe_eval_extract(const char *text, char *out, size_t cap);

/* 1 when the extracted answer matches the reference: both are normalised (whitespace,
 * '$', "\!", "\,", "\left", "\right", a trailing '.', a surrounding \text{...} removed;
 * thousands separators removed from numbers); numbers compare by value, anything else
 * as normalised strings. */
int hmoe_eval_match(const char *got, const char *want);

#endif
