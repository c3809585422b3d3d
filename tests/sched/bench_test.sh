#!/usr/bin/env bash
# tests/sched/bench_test.sh: `hmoe bench sched --json` prints one JSON object whose device
# numbers are labelled modeled and whose host overhead is labelled measured; the modeled
# two-micro-batch schedule stays within 1.1 of its ideal bound (the pipeline model is
# deterministic: a regression here means the list schedule or the placement got worse);
# and the projection has the 4- and 8-card rows beside the published KTransformers one.
set -u
HMOE=${HMOE:-build/hmoe}
out=$("$HMOE" bench sched --json --reps 3) || { echo "bench sched failed"; exit 1; }
printf '%s\n' "$out" | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
p, h, pr = d["pipeline"], d["host_overhead"], d["projection"]
assert p["modeled"] is True and pr["modeled"] is True and h["measured"] is True, "labels"
assert p["micro_batches"] == 2, p
assert p["step_over_bound"] <= 1.1, "step/bound %.3f > 1.1" % p["step_over_bound"]
assert p["ideal_bound_s"] > 0 and p["step_s"] >= p["ideal_bound_s"] * 0.999, p
rows = pr["rows"]
systems = {r["system"] for r in rows}
assert any("4 x alveo-v80" in s for s in systems) and any("8 x alveo-u55c" in s for s in systems), systems
kt = [r for r in rows if r.get("published")]
assert len(kt) == 1 and kt[0]["decode_tokens_per_s"] == 13.69, kt
for r in rows:
    if not r.get("published"):
        assert r["modeled"] is True and r["decode_tokens_per_s"] > 0 and r["joules_per_token"] > 0, r
print("step/bound %.4f, plan overhead %.5f of the step per layer" %
      (p["step_over_bound"], h["plan_fraction_of_step"]))
'
