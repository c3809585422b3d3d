"""train: trains models/r1-arith, a small DeepSeek-V3-architecture R1-style model, on the
CPU with Debian's python3-torch, and exports it in the Hugging Face layout R1 ships.

    /usr/bin/python3 tools/train/train.py --out models/r1-arith   (see tools/train/README.md)

The forward pass is hmoe's (runtime/hmoe_forward.c, DeepSeek model.py conventions), in
fp32: RMSNorm eps 1e-6; MLA with q_lora (q_a -> q_norm -> q_b), the shared k_pe,
interleaved-pair RoPE with YaRN frequencies and the YaRN softmax scale mscale^2; the
sigmoid noaux_tc router (score + e_score_correction_bias for selection only, group score
= sum of the group's top-2, non-kept groups masked with -inf, weights = unbiased scores
normalised and times routed_scaling_factor); routed experts + shared expert; untied head.

The vocabulary is the real DeepSeek one (129280 logits). Only the U token ids that occur
in the data have embedding / lm_head rows as parameters; every other row is exactly 0
and stays 0 in the export, so the full-vocab softmax partition is
    sum_{used} exp(l_i) + (vocab_size - U) * exp(0),
which is what the loss computes: exact full-vocab cross-entropy at the cost of U rows.

Quantisation-aware finish: for the last --qat-frac of the steps the forward uses the
weights exactly as exported (projections and experts as FP8 e4m3 with 128x128 block
scales, embed / norms / head / gate as bf16) with straight-through gradients, so the
exported checkpoint is the model that was trained.

The e_score_correction_bias follows DeepSeek-V3's auxiliary-loss-free balancing: after
every step, bias_e += gamma * sign(mean load - load_e) per MoE layer.
"""
import argparse
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arith_data as D  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TOKENIZER_DIR = os.path.join(ROOT, "models", "deepseek-v3-tokenizer")

# The HF config.json of the model (real DeepSeek-V3 field names).
CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "auto_map": {
        "AutoConfig": "configuration_deepseek.DeepseekV3Config",
        "AutoModel": "modeling_deepseek.DeepseekV3Model",
        "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM",
    },
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 1,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 192,
    "kv_lora_rank": 32,
    "max_position_embeddings": 1024,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 32,
    "moe_layer_freq": 1,
    "n_group": 4,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 4,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 4,
    "num_key_value_heads": 4,
    "num_nextn_predict_layers": 0,
    "q_lora_rank": 48,
    "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 16,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 4.0,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 256,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "tie_word_embeddings": False,
    "topk_group": 2,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.3",
    "use_cache": True,
    "v_head_dim": 16,
    "vocab_size": 129280,
}

# ---------------------------------------------------------------- number formats


def e4m3_round(x):
    """Rounds fp32 x to the nearest FP8 e4m3fn value (ties to even), saturating at 448."""
    a = x.abs().clamp(max=448.0)
    _, e = torch.frexp(a)                    # a = m * 2^e, m in [0.5, 1)
    exp = (e - 1).clamp(min=-6)              # binade; subnormals share 2^-6's spacing
    ulp = torch.pow(2.0, (exp - 3).to(torch.float32))
    q = (torch.round(a / ulp) * ulp).clamp(max=448.0)
    return torch.where(x < 0, -q, q)


def fp8_block(w):
    """w (M, N) fp32 -> (codes as fp32 e4m3 values (M, N), scale_inv (ceil(M/128),
    ceil(N/128)) fp32); the weight is codes * scale_inv, block by block."""
    M, N = w.shape
    Mb, Nb = (M + 127) // 128, (N + 127) // 128
    pad = torch.zeros(Mb * 128, Nb * 128, dtype=torch.float32)
    pad[:M, :N] = w
    amax = pad.abs().view(Mb, 128, Nb, 128).amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / 448.0, torch.ones_like(amax))
    s_full = scale.repeat_interleave(128, 0).repeat_interleave(128, 1)[:M, :N]
    return e4m3_round(w / s_full), scale


def fp8_dequant(codes, scale):
    M, N = codes.shape
    return codes * scale.repeat_interleave(128, 0).repeat_interleave(128, 1)[:M, :N]


def fake_fp8(w):
    """Straight-through FP8 round trip of a 2-D weight (or a stack of them)."""
    with torch.no_grad():
        if w.dim() == 3:
            q = torch.stack([fp8_dequant(*fp8_block(wi)) for wi in w])
        else:
            q = fp8_dequant(*fp8_block(w))
    return w + (q - w).detach()


def fake_bf16(w):
    return w + (w.detach().to(torch.bfloat16).to(torch.float32) - w).detach()


def e4m3_bits(q):
    """Bit patterns (uint8) of exact e4m3 values q (numpy fp32)."""
    sign = (q < 0).astype(np.uint8) << 7
    a = np.abs(q).astype(np.float64)
    mant, ex = np.frexp(a)                   # a = mant * 2^ex
    normal = a >= 2.0 ** -6
    e_field = np.where(normal, ex - 1 + 7, 0)
    m_field = np.where(normal, (a / np.ldexp(1.0, ex - 1) - 1.0) * 8.0, a / 2.0 ** -9)
    assert np.all(m_field == np.round(m_field)) and np.all(e_field <= 15)
    return sign | (e_field.astype(np.uint8) << 3) | m_field.astype(np.uint8)


# ---------------------------------------------------------------- RoPE / YaRN


def rope_freqs(cfg):
    """(rope/2) fp32 frequencies, as hmoe_ops_rope_freqs computes them."""
    dim, half = cfg["qk_rope_head_dim"], cfg["qk_rope_head_dim"] // 2
    theta = np.float32(cfg["rope_theta"])
    freqs = np.array([np.float32(1.0) / np.power(theta, np.float32(2 * i) / np.float32(dim),
                                                 dtype=np.float32) for i in range(half)],
                     dtype=np.float32)
    rs = cfg["rope_scaling"]
    factor = float(rs["factor"])
    if rs.get("type") != "yarn" or factor <= 1.0:
        return torch.from_numpy(freqs)

    def corr(n_rot):
        return dim * math.log(rs["original_max_position_embeddings"] / (n_rot * 2 * math.pi)) / \
            (2 * math.log(cfg["rope_theta"]))
    low = max(math.floor(corr(rs["beta_fast"])), 0.0)
    high = min(math.ceil(corr(rs["beta_slow"])), dim - 1)
    if low == high:
        high += 0.001
    out = np.empty_like(freqs)
    for i in range(half):
        ramp = (np.float32(i) - np.float32(low)) / (np.float32(high) - np.float32(low))
        ramp = np.float32(min(max(ramp, 0.0), 1.0))
        smooth = np.float32(1.0) - ramp
        out[i] = freqs[i] / np.float32(factor) * (np.float32(1.0) - smooth) + freqs[i] * smooth
    return torch.from_numpy(out)


def softmax_scale(cfg):
    qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    scale = qk ** -0.5
    rs = cfg["rope_scaling"]
    if rs.get("type") == "yarn" and rs["factor"] > 1.0:
        m = 0.1 * rs["mscale_all_dim"] * math.log(rs["factor"]) + 1.0
        scale *= m * m
    return float(np.float32(scale))


def apply_rope(x, cos, sin):
    """x (..., T, [H,] rope) interleaved pairs; cos/sin broadcastable to (..., rope/2)."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


# ---------------------------------------------------------------- the model


class Model(torch.nn.Module):
    def __init__(self, cfg, n_used, seed, numbers=None):
        """numbers: (is_number (U,) bool, length-1 (U,), digit per place (U, 3), 10 =
        absent) of the used ids, for the factorised number rows (see num_rows)."""
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.cfg = cfg
        D_, H = cfg["hidden_size"], cfg["num_attention_heads"]
        self.nope, self.rope, self.vdim = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
        self.qk = self.nope + self.rope
        self.kv_lora, self.q_lora = cfg["kv_lora_rank"], cfg["q_lora_rank"]
        L = cfg["num_hidden_layers"]
        E, Im = cfg["n_routed_experts"], cfg["moe_intermediate_size"]
        Is = cfg["n_shared_experts"] * Im
        out_scale = 1.0 / math.sqrt(2 * L)

        def lin(o, i, scale=1.0):
            return torch.nn.Parameter(torch.randn(o, i, generator=g) * (scale / math.sqrt(i)))

        def ones(n):
            return torch.nn.Parameter(torch.ones(n))

        self.embed = torch.nn.Parameter(torch.randn(n_used, D_, generator=g))
        self.head = lin(n_used, D_)
        # Number tokens ("7", "47", "347", "032") share structure: during training their
        # embedding / head rows are free rows plus a learnt vector per length and per
        # (place, digit). The export writes the summed rows: a plain embedding table.
        if numbers is None:
            numbers = (torch.zeros(n_used, dtype=torch.bool), torch.zeros(n_used, dtype=torch.long),
                       torch.full((n_used, 3), 10, dtype=torch.long))
        self.is_num, self.num_len, self.num_dig = numbers
        with torch.no_grad():
            self.embed[self.is_num] *= 0.1
            self.head[self.is_num] *= 0.1
        self.emb_len = torch.nn.Parameter(torch.randn(3, D_, generator=g) * 0.5)
        self.emb_dig = torch.nn.Parameter(torch.randn(3, 11, D_, generator=g))
        self.head_len = torch.nn.Parameter(torch.randn(3, D_, generator=g) * (0.5 / math.sqrt(D_)))
        self.head_dig = torch.nn.Parameter(torch.randn(3, 11, D_, generator=g) / math.sqrt(D_))
        self.norm = ones(D_)
        self.layers = torch.nn.ModuleList()
        for l in range(L):
            m = torch.nn.ParameterDict()
            m["attn_norm"] = ones(D_)
            m["q_a"] = lin(self.q_lora, D_)
            m["q_norm"] = ones(self.q_lora)
            m["q_b"] = lin(H * self.qk, self.q_lora)
            m["kv_a"] = lin(self.kv_lora + self.rope, D_)
            m["kv_norm"] = ones(self.kv_lora)
            m["kv_b"] = lin(H * (self.nope + self.vdim), self.kv_lora)
            m["o"] = lin(D_, H * self.vdim, out_scale)
            m["ffn_norm"] = ones(D_)
            if l < cfg["first_k_dense_replace"]:
                I = cfg["intermediate_size"]
                m["w1"], m["w3"], m["w2"] = lin(I, D_), lin(I, D_), lin(D_, I, out_scale)
            else:
                m["gate"] = lin(E, D_)
                m["ew1"] = torch.nn.Parameter(torch.randn(E, Im, D_, generator=g) / math.sqrt(D_))
                m["ew3"] = torch.nn.Parameter(torch.randn(E, Im, D_, generator=g) / math.sqrt(D_))
                m["ew2"] = torch.nn.Parameter(torch.randn(E, D_, Im, generator=g) *
                                              (out_scale / math.sqrt(Im)))
                m["sw1"], m["sw3"], m["sw2"] = lin(Is, D_), lin(Is, D_), lin(D_, Is, out_scale)
            self.layers.append(m)
        self.biases = [torch.zeros(E) if l >= cfg["first_k_dense_replace"] else None for l in range(L)]
        self.freqs = rope_freqs(cfg)
        self.scale = softmax_scale(cfg)
        self.qat = False

    def num_rows(self, free, by_len, by_dig):
        """free (U, dim) + the number structure on the number-token rows."""
        add = by_len[self.num_len] + sum(by_dig[p][self.num_dig[:, p]] for p in range(3))
        return free + add * self.is_num[:, None].to(free.dtype)

    def embed_rows(self):
        return self.num_rows(self.embed, self.emb_len, self.emb_dig)

    def head_rows(self):
        return self.num_rows(self.head, self.head_len, self.head_dig)

    # weights as the forward sees them (exported form during QAT)
    def wl(self, w):
        return fake_fp8(w) if self.qat else w

    def wb(self, w):
        return fake_bf16(w) if self.qat else w

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["rms_norm_eps"]) * self.wb(w)

    def attention(self, m, x, cos, sin, mask):
        B, T, _ = x.shape
        H = self.cfg["num_attention_heads"]
        q = self.rms(x @ self.wl(m["q_a"]).t(), m["q_norm"]) @ self.wl(m["q_b"]).t()
        q = q.view(B, T, H, self.qk)
        q_nope, q_pe = q[..., :self.nope], apply_rope(q[..., self.nope:], cos[:, None], sin[:, None])
        kv = x @ self.wl(m["kv_a"]).t()
        c = self.rms(kv[..., :self.kv_lora], m["kv_norm"])
        k_pe = apply_rope(kv[..., self.kv_lora:], cos, sin)              # (B, T, rope)
        kvb = (c @ self.wl(m["kv_b"]).t()).view(B, T, H, self.nope + self.vdim)
        k_nope, v = kvb[..., :self.nope], kvb[..., self.nope:]
        s = torch.einsum("bthd,bshd->bhts", q_nope, k_nope) + torch.einsum("bthd,bsd->bhts", q_pe, k_pe)
        p = torch.softmax(s * self.scale + mask, dim=-1)
        o = torch.einsum("bhts,bshd->bthd", p, v).reshape(B, T, H * self.vdim)
        return o @ self.wl(m["o"]).t()

    def mlp(self, x, w1, w3, w2):
        return (F.silu(x @ self.wl(w1).t()) * (x @ self.wl(w3).t())) @ self.wl(w2).t()

    def moe(self, m, x, bias, valid):
        cfg = self.cfg
        N, D_ = x.shape
        E, K = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
        G, TG = cfg["n_group"], cfg["topk_group"]
        score = torch.sigmoid(x @ self.wb(m["gate"]).t())                # (N, E)
        with torch.no_grad():
            sel = score + bias
            gsc = sel.view(N, G, E // G).topk(min(2, E // G), dim=-1).values.sum(-1)
            keep = torch.zeros(N, G, dtype=torch.bool)
            keep.scatter_(1, gsc.topk(TG, dim=-1).indices, True)
            sel = sel.masked_fill(~keep.repeat_interleave(E // G, dim=1), float("-inf"))
            idx = sel.topk(K, dim=-1).indices                            # (N, K)
        w = score.gather(1, idx)
        if cfg["norm_topk_prob"]:
            w = w / w.sum(-1, keepdim=True)
        w = w * cfg["routed_scaling_factor"]
        # sparse dispatch: only the chosen experts run, tokens grouped by expert
        flat_e = idx.reshape(-1)                                         # (N * K)
        order = torch.argsort(flat_e)
        tok_of = torch.arange(N).repeat_interleave(K)[order]
        counts = torch.bincount(flat_e, minlength=E).tolist()
        w1, w3, w2 = self.wl(m["ew1"]), self.wl(m["ew3"]), self.wl(m["ew2"])
        outs = []
        for e, xe in enumerate(torch.split(x[tok_of], counts)):
            if counts[e]:
                outs.append((F.silu(xe @ w1[e].t()) * (xe @ w3[e].t())) @ w2[e].t())
        ys = torch.cat(outs) * w.reshape(-1)[order][:, None]
        y = torch.zeros(N, D_).index_add(0, tok_of, ys)
        load = torch.zeros(E).scatter_add(0, idx[valid].flatten(), torch.ones(int(valid.sum()) * K))
        return y + self.mlp(x, m["sw1"], m["sw3"], m["sw2"]), load

    def forward(self, tok, valid):
        """tok (B, T) compact ids; valid (B, T) bool (not padding). Returns the final
        normed hidden (B, T, dim) and the per-MoE-layer expert loads."""
        B, T = tok.shape
        x = self.wb(self.embed_rows())[tok]
        ang = torch.arange(T, dtype=torch.float32)[:, None] * self.freqs[None, :]
        cos, sin = torch.cos(ang), torch.sin(ang)                          # (T, rope/2)
        mask = torch.full((T, T), float("-inf")).triu(1)
        loads = []
        vflat = valid.reshape(-1)
        for l, m in enumerate(self.layers):
            x = x + self.attention(m, self.rms(x, m["attn_norm"]), cos, sin, mask)
            xn = self.rms(x, m["ffn_norm"])
            if "w1" in m:
                x = x + self.mlp(xn, m["w1"], m["w3"], m["w2"])
            else:
                y, load = self.moe(m, xn.reshape(B * T, -1), self.biases[l], vflat)
                x = x + y.view(B, T, -1)
                loads.append(load)
        return self.rms(x, self.norm), loads

    def logits(self, h):
        return h @ self.wb(self.head_rows()).t()


def loss_fn(model, h, tgt, lmask, n_unused):
    """Exact full-vocab cross-entropy over the positions of lmask."""
    hs = h[lmask]
    lg = model.logits(hs)                                                 # (n, U)
    z = torch.cat([lg, torch.full((lg.shape[0], 1), math.log(n_unused))], dim=1)
    lse = torch.logsumexp(z, dim=1)
    t = tgt[lmask]
    ll = lg.gather(1, t[:, None])[:, 0]
    nll = lse - ll
    with torch.no_grad():
        other = lg.scatter(1, t[:, None], float("-inf")).max(1).values
        ok = (ll > other) & (ll > 0)                                     # beats used and unused ids
        margin0 = ll.min()
    return nll.mean(), ok, margin0


# ---------------------------------------------------------------- data


def tok_helper():
    exe = os.path.join(ROOT, "build", "train", "tok_lines")
    src = os.path.join(ROOT, "tools", "train", "tok_lines.c")
    lib = os.path.join(ROOT, "build", "libhmoe.a")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(exe), exist_ok=True)
        subprocess.run(["cc", "-std=c11", "-O2", "-D_GNU_SOURCE", "-I" + os.path.join(ROOT, "runtime"),
                        src, lib, "-lcjson", "-lpcre2-8", "-ldl", "-lm", "-lpthread", "-o", exe],
                       check=True)
    return exe


def tokenize(texts):
    exe = tok_helper()
    inp = "".join(t.replace("\n", "\x01") + "\n" for t in texts)
    r = subprocess.run([exe, os.path.join(TOKENIZER_DIR, "tokenizer.json")], input=inp.encode(),
                       stdout=subprocess.PIPE, check=True)
    return [[int(v) for v in line.split()] for line in r.stdout.decode().splitlines()]


def build_examples(problems):
    """(prompt ids + completion ids, prompt length) per problem, checking that the
    prompt tokenises as a prefix of the whole conversation."""
    prompts = [D.prompt_text(D.question(op, a, b, t)) for op, a, b, t in problems]
    fulls = [p + D.completion_text(op, a, b) for p, (op, a, b, t) in zip(prompts, problems)]
    ids = tokenize(prompts + fulls)
    n = len(problems)
    out = []
    for i in range(n):
        p, f = ids[i], ids[n + i]
        assert f[:len(p)] == p, f"prompt is not a token prefix: {prompts[i]!r}"
        out.append((f, len(p)))
    return out


def number_features(used):
    """(is_number, length index, digits by place) of the used ids, from the token strings
    of tokenizer.json (a number token is 1 to 3 ASCII digits)."""
    with open(os.path.join(TOKENIZER_DIR, "tokenizer.json"), encoding="utf-8") as f:
        vocab = json.load(f)["model"]["vocab"]
    text = {i: t for t, i in vocab.items()}
    U = len(used)
    is_num = torch.zeros(U, dtype=torch.bool)
    nlen = torch.zeros(U, dtype=torch.long)
    dig = torch.full((U, 3), 10, dtype=torch.long)
    for c, t in enumerate(used):
        s = text.get(t, "")
        if 1 <= len(s) <= 3 and s.isascii() and s.isdigit():
            is_num[c], nlen[c] = True, len(s) - 1
            for p, ch in enumerate(reversed(s)):
                dig[c, p] = int(ch)
    return is_num, nlen, dig


def make_batch(examples, remap, idx):
    T = max(len(examples[i][0]) for i in idx)
    B = len(idx)
    tok = torch.zeros(B, T, dtype=torch.long)
    tgt = torch.zeros(B, T, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    lmask = torch.zeros(B, T, dtype=torch.bool)
    for r, i in enumerate(idx):
        ids, plen = examples[i]
        c = torch.tensor([remap[t] for t in ids])
        n = len(ids)
        tok[r, :n] = c
        valid[r, :n] = True
        tgt[r, :n - 1] = c[1:]
        lmask[r, plen - 1:n - 1] = True     # predict every assistant token, EOS included
    return tok, tgt, valid, lmask


# ---------------------------------------------------------------- export


def st_write(path, tensors):
    """Writes a safetensors file: tensors = [(name, dtype string, shape, bytes)]."""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, data in tensors:
            f.write(data)


def bf16_bytes(t):
    return t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()


def export(model, used_ids, out_dir):
    cfg = model.cfg
    V, D_ = cfg["vocab_size"], cfg["hidden_size"]
    os.makedirs(out_dir, exist_ok=True)
    ts = []

    def full_rows(p):
        w = torch.zeros(V, D_)
        w[torch.tensor(used_ids)] = p.detach()
        return w

    def fp8(name, w):
        codes, scale = fp8_block(w.detach())
        ts.append((name, "F8_E4M3", codes.shape, e4m3_bits(codes.numpy()).tobytes()))
        ts.append((name + "_scale_inv", "F32", scale.shape, scale.numpy().astype("<f4").tobytes()))

    def bf16(name, w):
        ts.append((name, "BF16", w.shape, bf16_bytes(w)))

    bf16("model.embed_tokens.weight", full_rows(model.embed_rows()))
    for l, m in enumerate(model.layers):
        p = f"model.layers.{l}."
        bf16(p + "input_layernorm.weight", m["attn_norm"])
        fp8(p + "self_attn.q_a_proj.weight", m["q_a"])
        bf16(p + "self_attn.q_a_layernorm.weight", m["q_norm"])
        fp8(p + "self_attn.q_b_proj.weight", m["q_b"])
        fp8(p + "self_attn.kv_a_proj_with_mqa.weight", m["kv_a"])
        bf16(p + "self_attn.kv_a_layernorm.weight", m["kv_norm"])
        fp8(p + "self_attn.kv_b_proj.weight", m["kv_b"])
        fp8(p + "self_attn.o_proj.weight", m["o"])
        bf16(p + "post_attention_layernorm.weight", m["ffn_norm"])
        if "w1" in m:
            fp8(p + "mlp.gate_proj.weight", m["w1"])
            fp8(p + "mlp.up_proj.weight", m["w3"])
            fp8(p + "mlp.down_proj.weight", m["w2"])
            continue
        bf16(p + "mlp.gate.weight", m["gate"])
        b = model.biases[l]
        ts.append((p + "mlp.gate.e_score_correction_bias", "F32", b.shape,
                   b.numpy().astype("<f4").tobytes()))
        for e in range(cfg["n_routed_experts"]):
            fp8(p + f"mlp.experts.{e}.gate_proj.weight", m["ew1"][e])
            fp8(p + f"mlp.experts.{e}.up_proj.weight", m["ew3"][e])
            fp8(p + f"mlp.experts.{e}.down_proj.weight", m["ew2"][e])
        fp8(p + "mlp.shared_experts.gate_proj.weight", m["sw1"])
        fp8(p + "mlp.shared_experts.up_proj.weight", m["sw3"])
        fp8(p + "mlp.shared_experts.down_proj.weight", m["sw2"])
    bf16("model.norm.weight", model.norm)
    bf16("lm_head.weight", full_rows(model.head_rows()))
    st_write(os.path.join(out_dir, "model.safetensors"), ts)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(out_dir, name))


# ---------------------------------------------------------------- training


def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    t = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def exact_match(model, examples, remap, n_unused, bs=100):
    """Fraction of examples whose every assistant token is the argmax of the full-vocab
    logits under teacher forcing: exactly the examples that greedy decoding gets right."""
    good, margin = 0, float("inf")
    for s in range(0, len(examples), bs):
        idx = list(range(s, min(s + bs, len(examples))))
        tok, tgt, valid, lmask = make_batch(examples, remap, idx)
        h, _ = model(tok, valid)
        lg = model.logits(h)
        t_lg = lg.gather(2, tgt[..., None])[..., 0]
        other = lg.scatter(2, tgt[..., None], float("-inf")).max(2).values
        ok = ((t_lg > other) & (t_lg > 0)) | ~lmask
        good += int(ok.all(1).sum())
        margin = min(margin, float(t_lg[lmask].min()))
    return good / len(examples), margin


def load_checkpoint(path):
    """The Model (export numerics on) and used ids of a training checkpoint."""
    ck = torch.load(path)
    used = ck["used"]
    model = Model(CONFIG, len(used), 0, number_features(used))
    model.load_state_dict(ck["state"])
    model.biases = ck["biases"]
    model.qat = True
    model.eval()
    return model, used


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "r1-arith"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--examples", type=int, default=100000)
    ap.add_argument("--steps", type=int, default=1400)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--bias-gamma", type=float, default=0.001)
    ap.add_argument("--qat-frac", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--log", default=None, help="loss log file (default OUT/train_log.tsv)")
    ap.add_argument("--export-only", metavar="CKPT", default=None,
                    help="skip training: export the checkpoint CKPT (build/train/r1-arith.pt) to OUT")
    args = ap.parse_args()
    if args.export_only:
        model, used = load_checkpoint(args.export_only)
        export(model, used, args.out)
        print(f"exported {args.export_only} to {args.out}")
        return

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    t0 = time.time()
    problems = [D.sample_problem(rng) for _ in range(args.examples)]
    examples = build_examples(problems)
    check_rng = random.Random(args.seed + 1)
    checks = {op: build_examples(D.heldout_problems(check_rng, op, 200)) for op in ("add", "sub", "mul")}
    used = sorted({t for ex in examples for t in ex[0]} |
                  {t for v in checks.values() for ex in v for t in ex[0]})
    remap = {t: i for i, t in enumerate(used)}
    n_unused = CONFIG["vocab_size"] - len(used)
    lens = [len(e[0]) for e in examples]
    print(f"data: {len(examples)} examples, {len(used)} distinct token ids, length "
          f"{min(lens)}..{max(lens)} (mean {sum(lens) / len(lens):.1f}), {time.time() - t0:.1f} s",
          flush=True)
    for v in checks.values():
        for ex in v:
            assert all(t in remap for t in ex[0]), "held-out check uses a token unseen in training"

    numbers = number_features(used)
    print(f"{int(numbers[0].sum())} of the used ids are number tokens", flush=True)
    model = Model(CONFIG, len(used), args.seed, numbers)
    no_wd = ("embed", "emb_", "head_len", "head_dig")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith(no_wd)]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith(no_wd)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params} trainable parameters ({len(used)} used vocab rows)", flush=True)

    os.makedirs(args.out, exist_ok=True)
    ckpt_path = os.path.join(ROOT, "build", "train", "r1-arith.pt")
    os.makedirs(os.path.dirname(ckpt_path), exist_ok=True)
    log_path = args.log or os.path.join(args.out, "train_log.tsv")
    log = open(log_path, "w")
    log.write("step\tlr\tloss\ttoken_acc\tqat\tmax_load_ratio\telapsed_s\n")
    order = list(range(len(examples)))
    rng.shuffle(order)
    pos = 0
    qat_start = int(args.steps * (1 - args.qat_frac))
    acc_loss, acc_ok, acc_n, acc_steps = 0.0, 0, 0, 0
    max_ratio = 0.0
    t_train = time.time()
    for step in range(args.steps):
        model.qat = step >= qat_start
        if pos + args.batch > len(order):
            rng.shuffle(order)
            pos = 0
        idx = order[pos:pos + args.batch]
        pos += args.batch
        lr = lr_at(step, args)
        for gp in opt.param_groups:
            gp["lr"] = lr
        tok, tgt, valid, lmask = make_batch(examples, remap, idx)
        h, loads = model(tok, valid)
        loss, ok, _ = loss_fn(model, h, tgt, lmask, n_unused)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            k = 0
            for l, b in enumerate(model.biases):
                if b is None:
                    continue
                load = loads[k]
                k += 1
                b += args.bias_gamma * torch.sign(load.mean() - load)
                max_ratio = max(max_ratio, float(load.max() / load.mean()))
        acc_loss += float(loss)
        acc_ok += int(ok.sum())
        acc_n += ok.numel()
        acc_steps += 1
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            el = time.time() - t_train
            line = (f"{step + 1}\t{lr:.5f}\t{acc_loss / acc_steps:.5f}\t{acc_ok / acc_n:.5f}\t"
                    f"{int(model.qat)}\t{max_ratio:.2f}\t{el:.0f}")
            log.write(line + "\n")
            log.flush()
            print(line, flush=True)
            acc_loss, acc_ok, acc_n, acc_steps, max_ratio = 0.0, 0, 0, 0, 0.0
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            model.eval()
            res = {op: exact_match(model, v, remap, n_unused) for op, v in checks.items()}
            msg = "  ".join(f"{op} {a * 100:.1f}% (min correct logit {mg:.2f})" for op, (a, mg) in res.items())
            print(f"# step {step + 1} held-out greedy exact match: {msg}", flush=True)
            log.write(f"# step {step + 1} held-out greedy exact match: {msg}\n")
            log.flush()
            model.train()
            torch.save({"state": model.state_dict(), "biases": model.biases, "used": used,
                        "step": step + 1, "args": vars(args)}, ckpt_path)
    log.close()
    model.qat = True
    export(model, used, args.out)
    torch.save({"state": model.state_dict(), "biases": model.biases, "used": used,
                "step": args.steps, "args": vars(args)}, ckpt_path)
    print(f"exported to {args.out} in {time.time() - t0:.0f} s total", flush=True)


if __name__ == "__main__":
    main()
