"""check_export: the exported checkpoint computes what training computed.

Runs the training forward pass (train.Model with the export's numerics: FP8 e4m3 block-
scaled projections and experts, bf16 embed / norms / head / gate) from the training
checkpoint build/train/r1-arith.pt, and `hmoe logits` (the C engine, cpu-f32 experts) on
the exported models/r1-arith, over a few held-out conversations, and compares:
 - the logits of the used ids (max |difference|),
 - that every unused id's logit is exactly 0 in C (its head row is zero),
 - the argmax at every position.

    /usr/bin/python3 tools/train/check_export.py [--model models/r1-arith]
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arith_data as D  # noqa: E402
import train as T  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(T.ROOT, "models", "r1-arith"))
    ap.add_argument("--ckpt", default=os.path.join(T.ROOT, "build", "train", "r1-arith.pt"))
    ap.add_argument("--hmoe", default=os.path.join(T.ROOT, "build", "hmoe"))
    ap.add_argument("--experts", default="cpu-f32")
    args = ap.parse_args()
    torch.set_num_threads(1)

    model, used = T.load_checkpoint(args.ckpt)
    remap = {t: i for i, t in enumerate(used)}
    used_t = torch.tensor(used)

    rng = random.Random(7)
    probs = [D.heldout_problems(rng, op, 1)[0] for op in ("add", "sub", "mul")]
    worst, bad_unused, argmax_diff, n_pos = 0.0, 0, 0, 0
    for ex, plen in T.build_examples(probs):
        with torch.no_grad():
            tok = torch.tensor([[remap[t] for t in ex]])
            h, _ = model(tok, torch.ones_like(tok, dtype=torch.bool))
            ref = model.logits(h)[0].numpy()                       # (T, U)
        with tempfile.NamedTemporaryFile(suffix=".f32") as f:
            subprocess.run([args.hmoe, "logits", "--model", args.model, "--experts", args.experts,
                            "--threads", "1", "--tokens", ",".join(map(str, ex)), "--out", f.name],
                           check=True, stdout=subprocess.DEVNULL)
            c = np.fromfile(f.name, dtype="<f4").reshape(len(ex), -1)
        diff = np.abs(c[:, used] - ref).max()
        worst = max(worst, float(diff))
        mask = np.ones(c.shape[1], dtype=bool)
        mask[used] = False
        bad_unused += int((c[:, mask] != 0).sum())
        ref_arg = used_t[torch.tensor(ref.argmax(1))].numpy()
        argmax_diff += int((c.argmax(1) != ref_arg).sum())
        n_pos += len(ex)
    print(f"{n_pos} positions: max |C - training| over used ids {worst:.3g}; unused ids with a "
          f"nonzero logit: {bad_unused}; argmax differences: {argmax_diff}")
    return 0 if worst < 1e-2 and bad_unused == 0 and argmax_diff == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
