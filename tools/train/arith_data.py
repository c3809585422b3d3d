"""arith_data: the training conversations of models/r1-arith (R1 format, arithmetic).

Every example is one R1 chat turn:

    <｜begin▁of▁sentence｜><｜User｜>What is 347 + 285?<｜Assistant｜><think>
    ones: 7+5+0=12, carry 1
    tens: 4+8+1=13, carry 1
    hundreds: 3+2+1=6, carry 0
    result: 6 3 2
    </think>

    The answer is 632.<｜end▁of▁sentence｜>

The working goes column by column from the ones, one line per place ("ones", "tens",
"hundreds", "thousands"): the column's sum (difference with the borrow added back,
product plus carry), whose last digit is the result digit, then the carry (addition,
multiplication) or borrow (subtraction); a final carry gets its own "write" line. The
"result" line reads the result digits back from the highest place, one token per digit (the DeepSeek pre-tokenizer groups digit runs by up
to 3, so digits are spaced apart). Operands are at most 3 digits, so each is one token.
The answer uses a thousands separator (1,032), which keeps its last group 3 digits.

Held-out problems: a problem (op, a, b) is held out when heldout_hash(op, a, b) % 8 == 0
(splitmix64 of op<<40 | a<<20 | b). Training never uses them; `hmoe eval --task arith*`
draws only them (runtime/hmoe_eval.c implements the same hash).
"""
import random

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
GEN_PROMPT = ASSISTANT + "<think>\n"

PLACES = ["ones", "tens", "hundreds", "thousands"]
OPS = {"add": (1, "+"), "sub": (2, "-"), "mul": (3, "*")}
HELDOUT_MOD = 8

QUESTION_TEMPLATES = ["What is {a} {s} {b}?", "Calculate {a} {s} {b}.", "{a} {s} {b} = ?"]

M64 = (1 << 64) - 1


def heldout_hash(op, a, b):
    """splitmix64 finaliser of (op code << 40 | a << 20 | b)."""
    z = ((OPS[op][0] << 40) | (a << 20) | b) & M64
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def is_heldout(op, a, b):
    return heldout_hash(op, a, b) % HELDOUT_MOD == 0


def digits(n):
    """Digits of n from the ones up: 347 -> [7, 4, 3]."""
    return [int(c) for c in reversed(str(n))]


def result_line(written):
    """written: digits from the ones up; read back from the highest, no leading zeros."""
    top = list(reversed(written))
    while len(top) > 1 and top[0] == 0:
        top.pop(0)
    return "result: " + " ".join(str(d) for d in top)


def working_add(a, b):
    da, db = digits(a), digits(b)
    lines, written, carry = [], [], 0
    for p in range(max(len(da), len(db))):
        x = da[p] if p < len(da) else 0
        y = db[p] if p < len(db) else 0
        s = x + y + carry
        written.append(s % 10)
        lines.append(f"{PLACES[p]}: {x}+{y}+{carry}={s}, carry {s // 10}")
        carry = s // 10
    if carry:
        p = len(written)
        written.append(carry)
        lines.append(f"{PLACES[p]}: write {carry}")
    lines.append(result_line(written))
    return "\n".join(lines)


def working_sub(a, b):
    assert a >= b
    da, db = digits(a), digits(b)
    lines, written, borrow = [], [], 0
    for p in range(len(da)):
        x = da[p]
        y = db[p] if p < len(db) else 0
        out = 1 if x - y - borrow < 0 else 0
        d = x + 10 * out - y - borrow
        written.append(d)
        lines.append(f"{PLACES[p]}: {x + 10 * out}-{y}-{borrow}={d}, borrow {out}")
        borrow = out
    lines.append(result_line(written))
    return "\n".join(lines)


def working_mul(a, b):
    assert 0 <= b <= 9
    da = digits(a)
    lines, written, carry = [], [], 0
    for p in range(len(da)):
        s = da[p] * b + carry
        written.append(s % 10)
        lines.append(f"{PLACES[p]}: {da[p]}*{b}+{carry}={s}, carry {s // 10}")
        carry = s // 10
    if carry:
        p = len(written)
        written.append(carry)
        lines.append(f"{PLACES[p]}: write {carry}")
    lines.append(result_line(written))
    return "\n".join(lines)


WORKING = {"add": working_add, "sub": working_sub, "mul": working_mul}


def answer_of(op, a, b):
    return a + b if op == "add" else a - b if op == "sub" else a * b


def question(op, a, b, template=0):
    return QUESTION_TEMPLATES[template].format(a=a, b=b, s=OPS[op][1])


def prompt_text(q):
    """The chat template with its generation prompt, as `hmoe generate --chat` renders it."""
    return BOS + USER + q + GEN_PROMPT


def completion_text(op, a, b):
    """The assistant turn after the generation prompt: working, </think>, answer, EOS."""
    return WORKING[op](a, b) + "\n</think>\n\nThe answer is " + f"{answer_of(op, a, b):,}" + "." + EOS


def rand_operand(rng, max_digits, p_full):
    n_dig = max_digits if rng.random() < p_full else rng.randint(1, max_digits)
    lo = 0 if n_dig == 1 else 10 ** (n_dig - 1)
    return rng.randint(lo, 10 ** n_dig - 1)


def sample_problem(rng):
    """One training problem (op, a, b, template), never a held-out one."""
    while True:
        r = rng.random()
        if r < 0.5:
            op, a, b = "add", rand_operand(rng, 3, 0.6), rand_operand(rng, 3, 0.6)
        elif r < 0.75:
            op, a, b = "sub", rand_operand(rng, 3, 0.6), rand_operand(rng, 3, 0.6)
            if a < b:
                a, b = b, a
        else:
            op, a, b = "mul", rand_operand(rng, 3, 0.6), rng.randint(0, 9)
        if not is_heldout(op, a, b):
            return op, a, b, rng.randrange(len(QUESTION_TEMPLATES))


def heldout_problems(rng, op, n):
    """n held-out 3-digit problems of one op (3-digit x 1-digit for mul), for checks."""
    out = []
    while len(out) < n:
        a = rng.randint(100, 999)
        b = rng.randint(0, 9) if op == "mul" else rng.randint(100, 999)
        if op == "sub" and a < b:
            a, b = b, a
        if is_heldout(op, a, b):
            out.append((op, a, b, 0))
    return out


if __name__ == "__main__":
    rng = random.Random(1)
    for _ in range(3):
        op, a, b, t = sample_problem(rng)
        print(prompt_text(question(op, a, b, t)) + completion_text(op, a, b))
        print("----")
    print(completion_text("sub", 503, 498))
    print(completion_text("mul", 347, 6))
    print(completion_text("add", 999, 999))
    print(heldout_hash("add", 347, 285), is_heldout("add", 347, 285))
