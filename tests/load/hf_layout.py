#!/usr/bin/python3
"""Independent check that a checkpoint folder has the exact Hugging Face DeepSeek-V3 layout.

Reads config.json and the safetensors files with plain json/struct/numpy (no hmoe code):
the tensor name set must be exactly what the HF modeling code expects for the config,
dtypes as in the real checkpoint (FP8 e4m3 + F32 weight_scale_inv [ceil(out/128),
ceil(in/128)] for projections, bf16 embedding/norms/router/head, F32 correction bias),
files must follow the safetensors rules (header padded with spaces, data offsets
contiguous from 0 with no holes), and the index must list every tensor with the right
total_size. For mktiny output it also checks the quantiser (every 128x128 block's largest
|code| decodes to 448) and the init scales (std of linears ~ 1/sqrt(in), norms ~ 1).

usage: hf_layout.py DIR [--mktiny]
"""
import json
import math
import os
import struct
import sys

try:
    import numpy as np
except ImportError:
    print("numpy missing for /usr/bin/python3; skipping")
    sys.exit(77)

DTYPE_SIZE = {"F32": 4, "BF16": 2, "F16": 2, "F8_E4M3": 1, "I32": 4, "I64": 8, "U8": 1, "I8": 1}


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)


def read_st(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    head = blob[8:8 + n].decode("utf-8")
    if not head.startswith("{") or (8 + n) % 8 or head.rstrip(" ") != head.rstrip():
        fail(f"{path}: header not an object padded with spaces to 8 bytes")
    hdr = json.loads(head)
    data = blob[8 + n:]
    hdr.pop("__metadata__", None)
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in hdr.items())
    pos = 0
    for b, e, k in spans:
        if b != pos:
            fail(f"{path}: tensor {k} starts at {b}, expected {pos} (hole or overlap)")
        want = math.prod(hdr[k]["shape"]) * DTYPE_SIZE[hdr[k]["dtype"]]
        if e - b != want:
            fail(f"{path}: tensor {k} has {e - b} bytes, shape needs {want}")
        pos = e
    if pos != len(data):
        fail(f"{path}: data area {len(data)} bytes, tensors cover {pos}")
    return hdr, data


def expected(cfg):
    """name -> (shape, kind) as the HF DeepseekV3 modeling code lays the model out."""
    D, H = cfg["hidden_size"], cfg["num_attention_heads"]
    qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    q_lora = cfg.get("q_lora_rank") or 0
    kv = cfg["kv_lora_rank"]
    out = {"model.embed_tokens.weight": ([cfg["vocab_size"], D], "embed"),
           "model.norm.weight": ([D], "norm")}
    if not cfg.get("tie_word_embeddings", False):
        out["lm_head.weight"] = ([cfg["vocab_size"], D], "head")

    def mlp(p, inter):
        out[p + ".gate_proj.weight"] = ([inter, D], "linear")
        out[p + ".up_proj.weight"] = ([inter, D], "linear")
        out[p + ".down_proj.weight"] = ([D, inter], "linear")

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}"
        out[p + ".input_layernorm.weight"] = ([D], "norm")
        out[p + ".post_attention_layernorm.weight"] = ([D], "norm")
        a = p + ".self_attn"
        if q_lora:
            out[a + ".q_a_proj.weight"] = ([q_lora, D], "linear")
            out[a + ".q_a_layernorm.weight"] = ([q_lora], "norm")
            out[a + ".q_b_proj.weight"] = ([H * qk, q_lora], "linear")
        else:
            out[a + ".q_proj.weight"] = ([H * qk, D], "linear")
        out[a + ".kv_a_proj_with_mqa.weight"] = ([kv + cfg["qk_rope_head_dim"], D], "linear")
        out[a + ".kv_a_layernorm.weight"] = ([kv], "norm")
        out[a + ".kv_b_proj.weight"] = ([H * (cfg["qk_nope_head_dim"] + cfg["v_head_dim"]), kv], "linear")
        out[a + ".o_proj.weight"] = ([D, H * cfg["v_head_dim"]], "linear")
        moe = (cfg.get("n_routed_experts") and l >= cfg["first_k_dense_replace"]
               and l % cfg.get("moe_layer_freq", 1) == 0)
        if not moe:
            mlp(p + ".mlp", cfg["intermediate_size"])
            continue
        E = cfg["n_routed_experts"]
        out[p + ".mlp.gate.weight"] = ([E, D], "router")
        if cfg.get("topk_method", "noaux_tc") == "noaux_tc":
            out[p + ".mlp.gate.e_score_correction_bias"] = ([E], "bias")
        for e in range(E):
            mlp(f"{p}.mlp.experts.{e}", cfg["moe_intermediate_size"])
        if cfg.get("n_shared_experts"):
            mlp(p + ".mlp.shared_experts", cfg["n_shared_experts"] * cfg["moe_intermediate_size"])
    return out


def e4m3_table():
    t = np.zeros(256, dtype=np.float64)
    for c in range(256):
        s, e, m = c >> 7, (c >> 3) & 15, c & 7
        v = (1 + m / 8) * 2.0 ** (e - 7) if e else m / 8 * 2.0 ** -6
        t[c] = -v if s else v
    t[0x7f] = t[0xff] = np.nan
    return t


def main():
    d = sys.argv[1]
    mktiny = "--mktiny" in sys.argv
    cfg = json.load(open(os.path.join(d, "config.json")))
    for k in ("architectures", "model_type", "rope_scaling"):
        if k not in cfg:
            fail(f"config.json lacks {k}")
    if cfg["model_type"] != "deepseek_v3" or cfg["architectures"] != ["DeepseekV3ForCausalLM"]:
        fail("config.json model_type/architectures")
    fp8 = (cfg.get("quantization_config") or {}).get("quant_method") == "fp8"
    bs = (cfg.get("quantization_config") or {}).get("weight_block_size", [128, 128])

    tensors, where = {}, {}
    idx_path = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx_path):
        idx = json.load(open(idx_path))
        files = sorted(set(idx["weight_map"].values()))
    else:
        idx, files = None, ["model.safetensors"]
    total = 0
    for fn in files:
        hdr, data = read_st(os.path.join(d, fn))
        for k, v in hdr.items():
            if k in tensors:
                fail(f"tensor {k} in two files")
            tensors[k] = (v, data)
            where[k] = fn
            total += v["data_offsets"][1] - v["data_offsets"][0]
    if idx is not None:
        if idx["weight_map"] != where:
            fail("index weight_map does not match the files' contents")
        if idx["metadata"]["total_size"] != total:
            fail(f"index total_size {idx['metadata']['total_size']}, tensors hold {total}")

    want = expected(cfg)
    names = set(want)
    for n, (shape, kind) in want.items():
        if kind == "linear" and fp8:
            names.add(n + "_scale_inv")
    got = set(tensors)
    if got != names:
        fail(f"names differ: missing {sorted(names - got)[:5]}, extra {sorted(got - names)[:5]}")

    tab = e4m3_table()
    checked = 0
    for n, (shape, kind) in sorted(want.items()):
        v, data = tensors[n]
        dt = {"linear": "F8_E4M3" if fp8 else "BF16", "bias": "F32"}.get(kind, "BF16")
        if v["dtype"] != dt or v["shape"] != shape:
            fail(f"{n}: {v['dtype']} {v['shape']}, want {dt} {shape}")
        if kind == "linear" and fp8:
            s, sdata = tensors[n + "_scale_inv"]
            sshape = [-(-shape[0] // bs[0]), -(-shape[1] // bs[1])]
            if s["dtype"] != "F32" or s["shape"] != sshape:
                fail(f"{n}_scale_inv: {s['dtype']} {s['shape']}, want F32 {sshape}")
        if not mktiny:
            continue
        b, e = v["data_offsets"]
        raw = data[b:e]
        if kind == "linear" and fp8 and (checked < 40 or "experts" not in n):
            checked += 1
            codes = np.frombuffer(raw, dtype=np.uint8).reshape(shape)
            sb, se = s["data_offsets"]
            scale = np.frombuffer(sdata[sb:se], dtype="<f4").reshape(sshape).astype(np.float64)
            q = tab[codes]
            for i in range(sshape[0]):
                for j in range(sshape[1]):
                    blk = q[i * bs[0]:(i + 1) * bs[0], j * bs[1]:(j + 1) * bs[1]]
                    if np.abs(blk).max() != 448.0:
                        fail(f"{n} block [{i}, {j}]: max |code| {np.abs(blk).max()}, want 448")
            w = q * np.repeat(np.repeat(scale, bs[0], 0), bs[1], 1)[:shape[0], :shape[1]]
            ratio = w.std() * math.sqrt(shape[1])
            if not 0.8 < ratio < 1.2:
                fail(f"{n}: std * sqrt(in) = {ratio:.3f}, want ~1")
        elif kind == "norm":
            x = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
            if abs(x.mean() - 1) > 0.05 or x.std() > 0.1:
                fail(f"{n}: mean {x.mean():.3f} std {x.std():.3f}, want ~1 +- 0.05")
        elif kind == "bias":
            x = np.frombuffer(raw, dtype="<f4")
            if not (x.min() < 0 < x.max() and np.abs(x).max() <= 0.11):
                fail(f"{n}: range [{x.min()}, {x.max()}], want both signs within 0.1")
    print(f"{d}: {len(got)} tensors in {len(files)} file(s), HF DeepSeek-V3 layout ok"
          + (f", {checked} FP8 tensors' blocks checked" if mktiny else ""))


main()
