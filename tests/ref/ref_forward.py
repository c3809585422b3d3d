#!/usr/bin/python3
"""Independent fp32 reference of the DeepSeek-V3/R1 forward pass, for checking hmoe.

Written apart from the C code: it reads config.json and the safetensors files itself
(single file or sharded through model.safetensors.index.json), decodes FP8 e4m3 from the
format definition with numpy (torch 1.13 has no float8 dtype), dequantises with the
128x128 weight_scale_inv blocks, and runs the model in torch fp32 with naive attention
recomputed over the whole sequence (no cache). Conventions follow DeepSeek's model.py
(docs/forward.md): interleaved-pair RoPE in fp32, YaRN whenever rope_scaling is yarn with
factor > 1, softmax scale qk_head_dim^-0.5 * mscale^2, groups not kept masked with -inf,
fp32 everywhere (no bf16 rounding).

  ref_forward.py --model DIR --tokens 0,15,27 --out ref.f32
  ref_forward.py --model DIR --tokens 0,15,27 --check c_logits.f32 [--tol 1e-4]
  ref_forward.py --compare a.f32 b.f32 --vocab V [--tol 1e-4]     (two logits files)

Exit status: 0 within tolerance, 1 outside it, 2 bad input, 77 torch/numpy missing.
"""
import argparse
import json
import math
import os
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # the runner reads the last line as the skip reason
    print(f"skip: /usr/bin/python3 lacks numpy/torch ({e})")
    sys.exit(77)


def fail(msg):
    print(f"ref_forward: {msg}", file=sys.stderr)
    sys.exit(2)


# ---- checkpoint reading ----

def fp8_e4m3_table():
    """Value of every e4m3fn byte: sign, 4 exponent bits (bias 7), 3 mantissa bits;
    exponent 0 is subnormal (m/8 * 2^-6); S.1111.111 is NaN; no infinities."""
    vals = np.zeros(256, dtype=np.float32)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp = (code >> 3) & 0xF
        man = code & 0x7
        if exp == 0xF and man == 0x7:
            vals[code] = np.nan
        elif exp == 0:
            vals[code] = sign * (man / 8.0) * 2.0 ** -6
        else:
            vals[code] = sign * (1.0 + man / 8.0) * 2.0 ** (exp - 7)
    return vals


FP8 = fp8_e4m3_table()


class SafeTensors:
    """One safetensors file: u64 LE header length, JSON header, raw data."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            raw = f.read(8)
            if len(raw) != 8:
                fail(f"{path}: too short for a safetensors header")
            (n,) = struct.unpack("<Q", raw)
            self.header = json.loads(f.read(n))
            self.base = 8 + n
        self.header.pop("__metadata__", None)
        self.data = np.memmap(path, dtype=np.uint8, mode="r")

    def get(self, name):
        h = self.header[name]
        start, end = h["data_offsets"]
        buf = np.asarray(self.data[self.base + start:self.base + end])
        shape = h["shape"]
        dt = h["dtype"]
        if dt == "F32":
            a = buf.view("<f4")
        elif dt == "F16":
            a = buf.view("<f2").astype(np.float32)
        elif dt == "BF16":
            a = (buf.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif dt == "F8_E4M3":
            a = FP8[buf]
        else:
            fail(f"{self.path}: tensor {name}: dtype {dt} not handled")
        return a.reshape(shape).astype(np.float32)


class Checkpoint:
    def __init__(self, d, block=(128, 128)):
        self.block = block  # quantization_config.weight_block_size: (rows, cols) per scale
        index = os.path.join(d, "model.safetensors.index.json")
        self.where = {}
        if os.path.exists(index):
            with open(index) as f:
                wm = json.load(f)["weight_map"]
            files = {fn: SafeTensors(os.path.join(d, fn)) for fn in sorted(set(wm.values()))}
            self.where = {name: files[fn] for name, fn in wm.items()}
        else:
            st = SafeTensors(os.path.join(d, "model.safetensors"))
            self.where = {name: st for name in st.header}

    def has(self, name):
        return name in self.where

    def tensor(self, name):
        if name not in self.where:
            fail(f"tensor {name} missing from the checkpoint")
        return torch.from_numpy(self.where[name].get(name).copy())

    def weight(self, prefix):
        """fp32 weight of a linear; FP8 weights times their 128x128 block scales."""
        w = self.tensor(prefix + ".weight")
        if self.has(prefix + ".weight_scale_inv"):
            s = self.tensor(prefix + ".weight_scale_inv")
            bo, bi = self.block
            if s.shape[0] != math.ceil(w.shape[0] / bo) or s.shape[1] != math.ceil(w.shape[1] / bi):
                fail(f"{prefix}.weight_scale_inv: shape {list(s.shape)} does not fit weight "
                     f"{list(w.shape)} in {bo}x{bi} blocks")
            s = s.repeat_interleave(bo, 0).repeat_interleave(bi, 1)
            w = w * s[:w.shape[0], :w.shape[1]]
        return w


# ---- configuration ----

class Config:
    def __init__(self, path):
        with open(path) as f:
            c = json.load(f)
        self.vocab = c["vocab_size"]
        self.dim = c["hidden_size"]
        self.inter = c["intermediate_size"]
        # missing optional fields: the HF DeepseekV3Config defaults
        self.moe_inter = c.get("moe_intermediate_size", 2048)
        self.n_layers = c["num_hidden_layers"]
        self.first_dense = c.get("first_k_dense_replace", 3)
        self.moe_freq = c.get("moe_layer_freq", 1) or 1
        self.heads = c["num_attention_heads"]
        self.n_routed = c.get("n_routed_experts", 256) or 0
        self.n_shared = c.get("n_shared_experts", 1) or 0
        self.topk = c.get("num_experts_per_tok", 8)
        self.n_group = c.get("n_group", 8) or 1
        self.topk_group = c.get("topk_group", 4) or 1
        self.score = c.get("scoring_func", "sigmoid")
        self.norm_topk = bool(c.get("norm_topk_prob", True))
        self.route_scale = float(c.get("routed_scaling_factor", 2.5))
        self.q_lora = c.get("q_lora_rank") or 0
        self.kv_lora = c["kv_lora_rank"]
        self.nope = c["qk_nope_head_dim"]
        self.rope = c["qk_rope_head_dim"]
        self.v = c["v_head_dim"]
        self.theta = float(c.get("rope_theta", 10000.0))
        self.eps = float(c.get("rms_norm_eps", 1e-6))
        rs = c.get("rope_scaling") or {}
        kind = rs.get("type", rs.get("rope_type"))
        self.factor = float(rs.get("factor", 1.0))
        self.yarn = kind == "yarn" and self.factor > 1.0
        self.orig_len = int(rs.get("original_max_position_embeddings", 4096))
        self.beta_fast = float(rs.get("beta_fast", 32))
        self.beta_slow = float(rs.get("beta_slow", 1))
        self.mscale_all_dim = float(rs.get("mscale_all_dim", 1.0))
        qc = c.get("quantization_config") or {}
        self.fp8_block = tuple(qc.get("weight_block_size", (128, 128)))

    def is_moe(self, layer):
        return self.n_routed > 0 and layer >= self.first_dense and layer % self.moe_freq == 0


# ---- the model ----

def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_angles(cfg, n_pos):
    """(n_pos, rope/2) complex64 e^(i pos freq), YaRN-blended frequencies."""
    d = cfg.rope
    freqs = 1.0 / (cfg.theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    if cfg.yarn:
        def corr(n_rot):
            return d * math.log(cfg.orig_len / (n_rot * 2 * math.pi)) / (2 * math.log(cfg.theta))
        lo = max(math.floor(corr(cfg.beta_fast)), 0)
        hi = min(math.ceil(corr(cfg.beta_slow)), d - 1)
        if lo == hi:
            hi += 0.001
        ramp = ((torch.arange(d // 2, dtype=torch.float32) - lo) / (hi - lo)).clamp(0, 1)
        keep = 1 - ramp  # weight of the original frequency
        freqs = freqs / cfg.factor * (1 - keep) + freqs * keep
    ang = torch.outer(torch.arange(n_pos, dtype=torch.float32), freqs)
    return torch.polar(torch.ones_like(ang), ang)


def rotate(x, cis):
    """x (..., S, ..., rope) rotated pairwise (x[2i], x[2i+1]); cis (S, rope/2)
    broadcast over the axes after S."""
    shape = x.shape
    xc = torch.view_as_complex(x.float().reshape(*shape[:-1], -1, 2).contiguous())
    extra = xc.dim() - 2  # axes between S and the pair axis
    c = cis.view(cis.shape[0], *([1] * extra), cis.shape[1])
    return torch.view_as_real(xc * c).reshape(shape)


def mlp(x, w1, w2, w3):
    g = x @ w1.T
    return (g * torch.sigmoid(g) * (x @ w3.T)) @ w2.T


class Model:
    def __init__(self, d):
        self.cfg = cfg = Config(os.path.join(d, "config.json"))
        self.ck = Checkpoint(d, cfg.fp8_block)

    def layer_forward(self, l, x, cis):
        cfg, ck = self.cfg, self.ck
        p = f"model.layers.{l}."
        S, H = x.shape[0], cfg.heads
        qk = cfg.nope + cfg.rope

        # MLA, naive form over the whole sequence
        h = rms_norm(x, ck.tensor(p + "input_layernorm.weight"), cfg.eps)
        if cfg.q_lora:
            qa = h @ ck.weight(p + "self_attn.q_a_proj").T
            qa = rms_norm(qa, ck.tensor(p + "self_attn.q_a_layernorm.weight"), cfg.eps)
            q = qa @ ck.weight(p + "self_attn.q_b_proj").T
        else:
            q = h @ ck.weight(p + "self_attn.q_proj").T
        q = q.view(S, H, qk)
        q_nope, q_pe = q[..., :cfg.nope], rotate(q[..., cfg.nope:], cis)
        kv = h @ ck.weight(p + "self_attn.kv_a_proj_with_mqa").T
        c = rms_norm(kv[:, :cfg.kv_lora], ck.tensor(p + "self_attn.kv_a_layernorm.weight"),
                     cfg.eps)
        k_pe = rotate(kv[:, cfg.kv_lora:], cis)                     # (S, rope), one head
        kvb = (c @ ck.weight(p + "self_attn.kv_b_proj").T).view(S, H, cfg.nope + cfg.v)
        k = torch.cat([kvb[..., :cfg.nope], k_pe[:, None, :].expand(S, H, cfg.rope)], -1)
        v = kvb[..., cfg.nope:]
        qf = torch.cat([q_nope, q_pe], -1)
        scale = qk ** -0.5
        if cfg.yarn:
            m = 0.1 * cfg.mscale_all_dim * math.log(cfg.factor) + 1.0
            scale = scale * m * m
        scores = torch.einsum("shd,thd->hst", qf, k) * scale
        mask = torch.full((S, S), float("-inf")).triu_(1)
        prob = torch.softmax(scores + mask, dim=-1)
        o = torch.einsum("hst,thd->shd", prob, v).reshape(S, H * cfg.v)
        x = x + o @ ck.weight(p + "self_attn.o_proj").T

        # FFN
        h = rms_norm(x, ck.tensor(p + "post_attention_layernorm.weight"), cfg.eps)
        if not cfg.is_moe(l):
            y = mlp(h, ck.weight(p + "mlp.gate_proj"), ck.weight(p + "mlp.down_proj"),
                    ck.weight(p + "mlp.up_proj"))
            return x + y
        return x + self.moe(l, h)

    def moe(self, l, h):
        cfg, ck = self.cfg, self.ck
        p = f"model.layers.{l}.mlp."
        S, E, K = h.shape[0], cfg.n_routed, cfg.topk
        logits = h @ ck.tensor(p + "gate.weight").T
        score = logits.sigmoid() if cfg.score == "sigmoid" else logits.softmax(-1)
        bias = ck.tensor(p + "gate.e_score_correction_bias") \
            if ck.has(p + "gate.e_score_correction_bias") else None
        sel = score + bias if bias is not None else score.clone()
        if cfg.n_group > 1:
            grouped = sel.view(S, cfg.n_group, -1)
            if bias is None:
                gscore = grouped.amax(-1)
            else:
                gscore = grouped.topk(2, dim=-1)[0].sum(-1)
            keep = gscore.topk(cfg.topk_group, dim=-1)[1]
            drop = torch.ones(S, cfg.n_group, dtype=torch.bool).scatter_(1, keep, False)
            sel = grouped.masked_fill(drop[..., None], float("-inf")).view(S, E)
        idx = sel.topk(K, dim=-1)[1]
        w = score.gather(1, idx)
        if cfg.norm_topk:
            w = w / w.sum(-1, keepdim=True)
        w = w * cfg.route_scale
        y = torch.zeros_like(h)
        for e in range(E):
            rows, slot = torch.where(idx == e)
            if rows.numel() == 0:
                continue
            pe = f"{p}experts.{e}."
            out = mlp(h[rows], ck.weight(pe + "gate_proj"), ck.weight(pe + "down_proj"),
                      ck.weight(pe + "up_proj"))
            y[rows] += out * w[rows, slot, None]
        if cfg.n_shared:
            ps = p + "shared_experts."
            y = y + mlp(h, ck.weight(ps + "gate_proj"), ck.weight(ps + "down_proj"),
                        ck.weight(ps + "up_proj"))
        return y

    @torch.no_grad()
    def logits(self, tokens):
        cfg, ck = self.cfg, self.ck
        x = ck.tensor("model.embed_tokens.weight")[torch.tensor(tokens)]
        cis = rope_angles(cfg, len(tokens))
        for l in range(cfg.n_layers):
            x = self.layer_forward(l, x, cis)
        x = rms_norm(x, ck.tensor("model.norm.weight"), cfg.eps)
        return x @ ck.weight("lm_head").T


# ---- comparison ----

def rel_errors(c, ref):
    """Per position: max |c - ref| / max |ref|."""
    d = np.abs(c.astype(np.float64) - ref.astype(np.float64)).max(axis=1)
    scale = np.abs(ref.astype(np.float64)).max(axis=1)
    return d / np.where(scale > 0, scale, 1.0)


def report(c, ref, tol, what):
    if c.shape != ref.shape:
        print(f"FAIL {what}: shape {c.shape} vs reference {ref.shape}")
        return 1
    if not np.isfinite(c).all():
        print(f"FAIL {what}: non-finite logits")
        return 1
    err = rel_errors(c, ref)
    worst = int(err.argmax())
    agree = int((c.argmax(1) == ref.argmax(1)).sum())
    print(f"{what}: {c.shape[0]} positions, max rel err {err.max():.3g} (position {worst}), "
          f"argmax agrees at {agree}/{c.shape[0]}; tolerance {tol:g}")
    if err.max() > tol:
        print(f"FAIL {what}: max rel err {err.max():.3g} > {tol:g}")
        return 1
    return 0


def load_logits(path, vocab):
    a = np.fromfile(path, dtype="<f4")
    if a.size % vocab:
        fail(f"{path}: {a.size} floats is not a multiple of vocab {vocab}")
    return a.reshape(-1, vocab)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--tokens")
    ap.add_argument("--out")
    ap.add_argument("--check")
    ap.add_argument("--compare", nargs=2)
    ap.add_argument("--vocab", type=int)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)

    if a.compare:
        if not a.vocab:
            fail("--compare needs --vocab")
        x, y = (load_logits(p, a.vocab) for p in a.compare)
        return report(x, y, a.tol, f"{a.compare[0]} vs {a.compare[1]}")
    if not a.model or not a.tokens:
        fail("--model and --tokens are required")
    try:
        tokens = [int(t) for t in a.tokens.split(",")]
    except ValueError:
        fail(f"--tokens {a.tokens}: not a comma-separated list of integers")
    try:
        m = Model(a.model)
    except (OSError, KeyError, ValueError) as e:
        fail(f"--model {a.model}: {type(e).__name__}: {e}")
    if any(t < 0 or t >= m.cfg.vocab for t in tokens):
        fail(f"--tokens: ids must lie in [0, {m.cfg.vocab})")
    ref = m.logits(tokens).numpy()
    if a.out:
        ref.astype("<f4").tofile(a.out)
    if a.check:
        return report(load_logits(a.check, m.cfg.vocab), ref, a.tol,
                      f"{a.check} vs python reference")
    return 0


if __name__ == "__main__":
    sys.exit(main())
