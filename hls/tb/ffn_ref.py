#!/usr/bin/python3
"""ffn_ref: an independent reference of the fixed-point expert contract (docs/fxp.md),
in Python integers (no overflow, so every bound in the contract is checked here rather
than assumed), and the generator of the golden vectors that the C-simulation testbench
hls/tb/tb_hmoe_ffn.c compares hmoe_ffn() against.

    /usr/bin/python3 hls/tb/ffn_ref.py OUTDIR     writes OUTDIR/case_*.bin

Case file (little-endian): int32 header [magic 0x46465848 'HXFF', contract version,
mode, n_tokens, dim, inter, pack_bytes], then the expert pack, xq (n_tokens, planes,
groups(dim)*128) int8, xs (n_tokens, groups(dim)) int32, y (n_tokens, dim) int32. The
mode is the weight format, | 0x100 (A16) for two activation planes per value.
"""
import math
import os
import random
import struct
import sys

GROUP = 128
LINE = 64
F_ACT, F_ACC, F_H = 32, 24, 16
TERM_MAX = 1 << 56
ACT_IN_MAX = 1 << 62
FP8, INT8, INT4 = 0, 1, 2
A16 = 0x100
CONTRACT_VERSION = 3
QMAX = {1: 127, 2: 127 * 128}  # activation levels per sign, by planes
FP8_QMAX, W_CODE_MAX = 229376, {FP8: 229376, INT8: 128, INT4: 8}  # widest |weight code|
X_CODE_MAX = {1: 128, 2: 128 * 128 + 128}  # widest |x|, -128 plane values included


def fp8_q(c):
    """e4m3fn value * 2^9; NaN codes (S.1111.111) are 0 by contract."""
    s, e, m = c >> 7, (c >> 3) & 15, c & 7
    if e == 15 and m == 7:
        return 0
    v = m if e == 0 else (8 + m) << (e - 1)
    return -v if s else v


SIG = [int(math.floor(65536.0 / (1.0 + math.exp(16.0 - i / 32.0)) + 0.5)) for i in range(1025)]


def shift_round(v, r):
    """v * 2^-r, half away from zero, saturated to +-2^56."""
    if v == 0:
        return 0
    sign = -1 if v < 0 else 1
    mag = abs(v)
    if r <= 0:
        mag = mag << -r
    elif r > 62:
        return 0
    else:
        mag = (mag + (1 << (r - 1))) >> r
    return sign * min(mag, TERM_MAX)


def sat32(v):
    return max(-(1 << 31), min((1 << 31) - 1, v))


def scale_split(w):
    m = w & 0xffff
    return m, (w - m) // 65536


def term(dot, ws, xs):
    mw, ew = scale_split(ws)
    mx, ex = scale_split(xs)
    v = dot * mw * (mx & 0xff)
    assert abs(v) < 1 << 63, "term product overflows int64"
    return shift_round(v, ew + ex - F_ACC)


def silu_q16(a):
    if a >= 16 << 16:
        return a
    if a < -(16 << 16):
        return 0
    off = a + (16 << 16)
    idx, frac = off >> 11, off & 2047
    sig = SIG[idx] + (((SIG[idx + 1] - SIG[idx]) * frac + 1024) >> 11)
    return shift_round(a * sig, F_H)


def quant_group(v, planes):
    """THE activation quantiser on Q32 integers: returns (planes lists of int8, scale
    word); the value of element i is q_i * m * 2^-(32-k) with q_i = 128 hi_i + lo_i
    (two planes) or hi_i (one)."""
    qmax = QMAX[planes]
    mags = [min(abs(x), ACT_IN_MAX) for x in v]
    amax = max(mags) if mags else 0
    if amax == 0:
        return [[0] * len(v) for _ in range(planes)], 0
    k = -80
    while -(-amax * (1 << max(-k, 0)) // (qmax << max(k, 0))) > 255:  # ceil(amax/(qmax*2^k))
        k += 1
    m = -(-amax * (1 << max(-k, 0)) // (qmax << max(k, 0)))
    assert 128 <= m <= 255
    assert (qmax * 255) << max(k, 0) < 1 << 63, "quantiser bound overflows int64"
    hi, lo = [], []
    for x, mag in zip(v, mags):
        num, den = mag << max(-k, 0), m << max(k, 0)
        assert 2 * num + den < 1 << 64, "quantiser numerator overflows uint64"
        r = (2 * num + den) // (2 * den)
        assert r <= qmax
        sign = -1 if x < 0 else 1
        if planes == 1:
            hi.append(sign * r)
        else:
            h = (r + 64) >> 7
            hi.append(sign * h)
            lo.append(sign * (r - 128 * h))
            assert -127 <= hi[-1] <= 127 and -64 <= lo[-1] <= 64
            assert 128 * hi[-1] + lo[-1] == sign * r
    return ([hi] if planes == 1 else [hi, lo]), (F_ACT - k) * 65536 + m


def quant_vector(v, planes):
    """A token's values (any length) -> (planes lists of groups*128 int8, scale words)."""
    out, words = [[] for _ in range(planes)], []
    for g in range(groups(len(v))):
        pl, w = quant_group(v[g * GROUP:(g + 1) * GROUP], planes)
        for p in range(planes):
            out[p] += pl[p] + [0] * (GROUP - len(pl[p]))
        words.append(w)
    return out, words


def plane_value(pl):
    """The integer activations of a token from its planes."""
    return pl[0] if len(pl) == 1 else [128 * h + l for h, l in zip(pl[0], pl[1])]


def groups(n):
    return (n + GROUP - 1) // GROUP


def scale_lines(n):
    return (groups(n) * 4 + LINE - 1) // LINE


def row_bytes(fmt, n):
    gb = GROUP // 2 if fmt == INT4 else GROUP
    return scale_lines(n) * LINE + groups(n) * gb


def weight(fmt, codes, k):
    if fmt == FP8:
        return fp8_q(codes[k])
    if fmt == INT8:
        return codes[k] - 256 if codes[k] > 127 else codes[k]
    # int4: column j of a group of 128 is byte j % 64 of its 64, high nibble for j >= 64
    g, j = divmod(k, GROUP)
    return ((codes[g * (GROUP // 2) + j % (GROUP // 2)] >> (4 * (j // (GROUP // 2)))) & 15) - 8


def linear_row(pack, off, fmt, planes, n_in, x, xs):
    """acc (Q24) of one row record at byte offset off against one token's integer
    activations x (the planes already combined: the dot is exact either way)."""
    acc = 0
    codes = pack[off + scale_lines(n_in) * LINE: off + row_bytes(fmt, n_in)]
    dot_bound = FP8_QMAX * X_CODE_MAX[planes] * GROUP  # the proof's, for every format
    for g in range(groups(n_in)):
        ws = struct.unpack_from("<i", pack, off + 4 * g)[0]
        dot = sum(weight(fmt, codes, k) * x[k] for k in range(g * GROUP, (g + 1) * GROUP))
        assert abs(dot) <= W_CODE_MAX[fmt] * X_CODE_MAX[planes] * GROUP <= dot_bound
        assert abs(dot) < 1 << (32 if planes == 1 else 39), "group dot exceeds the proven bound"
        acc += term(dot, ws, xs[g])
    assert abs(acc) < 1 << 62, "row accumulator exceeds the proven bound"
    return acc


def ffn(pack, mode, xq, xs, n_tokens, dim, inter):
    fmt, planes = mode & 0xff, 2 if mode & A16 else 1
    lin = inter * row_bytes(fmt, dim)
    y = []
    for t in range(n_tokens):
        x = plane_value(xq[t])
        h = []
        for n in range(inter):
            h1 = sat32(shift_round(linear_row(pack, n * row_bytes(fmt, dim), fmt, planes, dim, x, xs[t]), F_ACC - F_H))
            h3 = sat32(shift_round(linear_row(pack, lin + n * row_bytes(fmt, dim), fmt, planes, dim, x, xs[t]), F_ACC - F_H))
            h.append(silu_q16(h1) * h3)
            assert abs(h[-1]) <= ACT_IN_MAX, "h exceeds the quantiser's input bound"
        hq, hs = quant_vector(h, planes)
        hx = plane_value(hq)
        for n in range(dim):
            off = 2 * lin + n * row_bytes(fmt, inter)
            y.append(sat32(shift_round(linear_row(pack, off, fmt, planes, inter, hx, hs), F_ACC - F_H)))
    return y


def random_pack(rng, fmt, dim, inter, e_offset):
    out = bytearray()
    rms = {FP8: 60000.0, INT8: 73.6, INT4: 4.6}[fmt]
    for rows, n_in in ((inter, dim), (inter, dim), (dim, inter)):
        e_base = 16 + round(math.log2(rms * math.sqrt(n_in))) + e_offset
        for _ in range(rows):
            rec = bytearray(row_bytes(fmt, n_in))
            for g in range(groups(n_in)):
                w = (e_base + rng.randrange(-2, 2)) * 65536 + rng.randrange(32768, 65536)
                struct.pack_into("<i", rec, 4 * g, w)
            for b in range(scale_lines(n_in) * LINE, len(rec)):
                rec[b] = rng.randrange(256)
            out += rec
    return bytes(out)


def random_acts(rng, n_tokens, dim, huge, planes, extreme):
    """Per token: planes lists and scale words. extreme: every plane value at the edge
    the proof covers (+-127 or -128 in each plane), scale words from real data."""
    xq, xs = [], []
    for _ in range(n_tokens):
        v = [int(rng.gauss(0, 1) * 2**32) for _ in range(dim)]
        if huge:
            v[rng.randrange(dim)] = 40 * 2**32
        pl, s = quant_vector(v, planes)
        if extreme:
            pl = [[rng.choice((-128, 127)) if k < dim else 0 for k in range(len(p))] for p in pl]
        xq.append(pl)
        xs.append(s)
    return xq, xs


CASES = [  # name, mode, n_tokens, dim, inter, scale offset, one huge activation, extreme x
    ("fp8_a8_small", FP8, 3, 256, 128, 0, False, False),
    ("int8_a8_odd", INT8, 5, 200, 72, 0, True, False),
    ("int4_a8_odd", INT4, 2, 136, 260, 0, False, False),
    ("int8_a8_saturating", INT8, 1, 128, 128, -12, False, False),
    ("fp8_a8_nan_codes_one_token", FP8, 1, 384, 136, 0, True, False),
    ("fp8_a16_small", FP8 | A16, 3, 256, 128, 0, False, False),
    ("int8_a16_odd", INT8 | A16, 4, 200, 72, 0, True, False),
    ("int4_a16_odd", INT4 | A16, 2, 136, 260, 0, False, False),
    ("fp8_a16_nan_codes_huge", FP8 | A16, 1, 384, 136, 0, True, False),
    ("int8_a16_extreme", INT8 | A16, 2, 256, 128, 0, False, True),
    ("fp8_a16_extreme_saturating", FP8 | A16, 2, 256, 128, -12, False, True),
]


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    for name, mode, n_tokens, dim, inter, e_off, huge, extreme in CASES:
        rng = random.Random(name)
        planes = 2 if mode & A16 else 1
        pack = random_pack(rng, mode & 0xff, dim, inter, e_off)
        xq, xs = random_acts(rng, n_tokens, dim, huge, planes, extreme)
        y = ffn(pack, mode, xq, xs, n_tokens, dim, inter)
        with open(os.path.join(outdir, "case_%s.bin" % name), "wb") as f:
            f.write(struct.pack("<7i", 0x46465848, CONTRACT_VERSION, mode, n_tokens, dim, inter, len(pack)))
            f.write(pack)
            for token in xq:
                for row in token:
                    f.write(struct.pack("<%db" % len(row), *row))
            for row in xs:
                f.write(struct.pack("<%di" % len(row), *row))
            f.write(struct.pack("<%di" % len(y), *y))
        live = sum(1 for v in y if v not in (0, 2**31 - 1, -2**31))
        print("%s: %d outputs, %d neither 0 nor saturated" % (name, len(y), live))


if __name__ == "__main__":
    main()
