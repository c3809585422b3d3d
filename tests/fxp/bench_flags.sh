#!/usr/bin/env bash
# bench_flags: `hmoe bench experts` refuses bad flags with one line and exit 2, and a
# minimal run (1 and 3 tokens, int4 with two activation planes and int4-a8 with one,
# 1 resident expert, no fp32) prints one well-formed JSON object with the fields
# docs/fxp.md describes (the one-token points also the in-cache rate and, with four-row
# kernels, the rate of their read pattern alone; each mode's first point the first pass
# over fresh packs, fp32's too); fp8 runs say
# which codes they used and how many packs got remainder lists.
set -u
cd "${HMOE_ROOT:-.}"
HMOE=${HMOE:-build/hmoe}
fail() { echo "FAIL: $*"; exit 1; }

for bad in "--tokens 0" "--formats int3" "--formats int4-a16" "--formats ," \
	"--formats fp8,int8,int4,fp8-a8,int8-a8,int4-a8,fp8" "--experts 0" "--min-time x" \
	"--fp8-codes gaussian"; do
	out=$("$HMOE" bench experts --json $bad 2>&1 >/dev/null)
	rc=$?
	[ $rc -eq 2 ] || fail "bench experts $bad exited $rc, want 2"
	[ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] || fail "bench experts $bad: not one line: $out"
	echo "$bad -> $out"
done
"$HMOE" bench experts --json --tokens 1,3 --formats int4,int4-a8 --experts 1 --f32-experts 0 \
	--min-time 0 --bw-mib 16 >"${BUILD:-build}/fxp-bench-smoke.json" || fail "bench run"
/usr/bin/python3 - "${BUILD:-build}/fxp-bench-smoke.json" <<'PY' || exit 1
import json, sys
d = json.load(open(sys.argv[1]))
assert d["bench"] == "experts" and d["dims"] == {"dim": 7168, "inter": 2048, "experts": 256, "top_k": 8}, d
# what must stream from DRAM: 1 GiB or 8 times the largest cache found, capped at a third
# of the available memory but not below 256 MiB
want = max(1 << 30, 8 * d["machine"]["llc_bytes"])
if d["mem_available_bytes"] and want > d["mem_available_bytes"] // 3:
    want = max(256 << 20, d["mem_available_bytes"] // 3)
assert d["dram_footprint_bytes"] == want, (d["dram_footprint_bytes"], want)
rs = d["results"]
assert [(r["format"], r["tokens"]) for r in rs] == \
    [("int4", 1), ("int4", 3), ("int4-a8", 1), ("int4-a8", 3)], rs
assert d["fp8_codes"] == "checkpoint", d["fp8_codes"]
for r in rs:
    assert "fp8_remainder_lists" not in r, r  # fp8 results only
    assert r["weight_format"] == "int4" and r["activation_planes"] == (1 if r["format"].endswith("-a8") else 2), r
    assert r["seconds"] > 0 and r["weight_bytes"] == r["experts_touched"] * 23527424, r
    assert r["resident"] == 1, r  # --experts 1
    assert r["int_ops_per_s"] > 0 and r["bw_ratio"] > 0, r
    # the ratio's yardstick is the bandwidth probed beside the point (read_bw_around)
    assert r["read_bw_around"] > 0 and r["bw_ratio_start"] > 0, r
    want = r["weight_bytes_per_s"] / r["read_bw_around"]
    assert abs(r["bw_ratio"] - want) <= 0.002 + 0.002 * want, (r, want)
# one token: the kernels' rate with the weights in the cache, beside the same yardstick
for r in rs:
    if r["tokens"] != 1:
        assert "in_cache_bytes_per_s" not in r and "in_cache_ratio" not in r, r
        continue
    assert r["in_cache_bytes_per_s"] > 0, r
    want = r["in_cache_bytes_per_s"] / r["read_bw_around"]
    assert abs(r["in_cache_ratio"] - want) <= 0.002 + 0.002 * want, (r, want)
assert rs[0]["experts_touched"] == 8, rs[0]
# one token on a variant with four-row kernels: the same calls over the kernels' read
# pattern alone, with its own probe; the kernels' rate over it
rows4 = d["fxp_variant"] in ("avx512", "amx", "amx-emu")
for r in rs:
    keys = ("pattern_bytes_per_s", "pattern_read_bw_around", "pattern_ratio",
            "kernel_pattern_ratio")
    if r["tokens"] != 1 or not rows4:
        assert not any(k in r for k in keys), r
        continue
    assert r["pattern_bytes_per_s"] > 0 and r["pattern_read_bw_around"] > 0, r
    want = r["pattern_bytes_per_s"] / r["pattern_read_bw_around"]
    assert abs(r["pattern_ratio"] - want) <= 0.002 + 0.002 * want, (r, want)
    # from pairs of calls of their own: the same order as the point's rate, not equal
    assert 0 < r["kernel_pattern_ratio"] < 20, r
print("ok: pattern", rows4, [r.get("kernel_pattern_ratio") for r in rs])
# the driver's work items (rows of W1/W3 and of W2): for these int4 points 16x the usual
# 32 / 128 in a one-token call of the four-row kernels (the plan's one_token_items_int4),
# doubling only while each thread keeps at least 8 up items of the 8 experts' 2048 rows;
# the usual where a tile holds more than one token
assert d["one_token_items"] == 4 and d["one_token_items_int4"] == 16, d
def items(scale, threads):
    k, up = 1, 32
    while k < scale and 8 * (2048 // (2 * up)) >= 8 * threads:
        k, up = 2 * k, 2 * up
    return k
for r in rs:
    one = rows4 and r["pairs_by_expert_tokens"]["1"] == 8 * r["tokens"]
    k = items(d["one_token_items_int4"], d["threads"]) if one else 1
    assert r["work_item_rows"] == [32 * k, 128 * k], (r, k)
# each mode's first point also times the first pass over its freshly filled packs, over
# the bandwidth probed at the start
for i, r in enumerate(rs):
    if i == 0 or rs[i - 1]["format"] != r["format"]:
        assert r["first_pass_bytes_per_s"] > 0, r
        want = r["first_pass_bytes_per_s"] / d["read_bandwidth_bytes_per_s"]
        assert abs(r["first_pass_ratio"] - want) <= 0.002 + 0.002 * want, (r, want)
    else:
        assert "first_pass_bytes_per_s" not in r and "first_pass_ratio" not in r, r
# one token: 8 experts with one token each; three tokens: every pair counted once
for r in rs:
    h = r["pairs_by_expert_tokens"]
    assert sorted(h) == ["1", "12+", "2-4", "5-11"] and sum(h.values()) == 8 * r["tokens"], r
    assert h["5-11"] == h["12+"] == 0, r
assert rs[0]["pairs_by_expert_tokens"]["1"] == 8, rs[0]
print("ok:", json.dumps(rs[0]))
PY
# 64 tokens fill every bucket; the experts touched must fit the buckets' bounds (an expert
# in bucket 2-4 holds 2 to 4 pairs, and so on)
"$HMOE" bench experts --json --tokens 64 --formats int4 --experts 1 --f32-experts 0 \
	--min-time 0 --bw-mib 16 >"${BUILD:-build}/fxp-bench-tiles.json" || fail "bench run, 64 tokens"
/usr/bin/python3 - "${BUILD:-build}/fxp-bench-tiles.json" <<'PY' || exit 1
import json, math, sys
r = json.load(open(sys.argv[1]))["results"][0]
h, e = r["pairs_by_expert_tokens"], r["experts_touched"]
assert sum(h.values()) == 512 and min(h.values()) > 0, r
lo = h["1"] + math.ceil(h["2-4"] / 4) + math.ceil(h["5-11"] / 11) + math.ceil(h["12+"] / 64)
hi = h["1"] + h["2-4"] // 2 + h["5-11"] // 5 + h["12+"] // 12
assert lo <= e <= hi, (r, lo, hi)
print("ok: 64 tokens", h, "over", e, "experts")
PY
# the fp32 reference times its first pass too (one resident expert, 176 MB)
"$HMOE" bench experts --json --tokens 1 --formats int4-a8 --experts 1 --f32-experts 1 \
	--min-time 0 --bw-mib 16 >"${BUILD:-build}/fxp-bench-f32.json" || fail "bench run, fp32"
/usr/bin/python3 - "${BUILD:-build}/fxp-bench-f32.json" <<'PY' || exit 1
import json, sys
d = json.load(open(sys.argv[1]))
rs = d["results"]
assert [(r["format"], r["tokens"], r["resident"]) for r in rs] == \
    [("int4-a8", 1, 1), ("f32", 1, 1)], rs
for r in rs:
    assert r["first_pass_bytes_per_s"] > 0, r
    want = r["first_pass_bytes_per_s"] / d["read_bandwidth_bytes_per_s"]
    assert abs(r["first_pass_ratio"] - want) <= 0.002 + 0.002 * want, (r, want)
assert "pattern_ratio" not in rs[1], rs[1]  # fixed-point kernels only
print("ok: first passes", [r["first_pass_ratio"] for r in rs])
PY
# fp8: checkpoint-like codes get remainder lists where the variant takes them (the
# AVX-512 kernels on a CPU with VBMI), uniformly random ones do not (the builder's limit),
# and with HMOE_FXP_NO_VBMI=1 none are built
for run in checkpoint uniform novbmi; do
	codes=checkpoint novbmi=
	[ $run = uniform ] && codes=uniform
	[ $run = novbmi ] && novbmi=1
	env ${novbmi:+HMOE_FXP_NO_VBMI=1} "$HMOE" bench experts --json --tokens 1 --formats fp8 \
		--experts 1 --f32-experts 0 --min-time 0 --bw-mib 16 --fp8-codes $codes \
		>"${BUILD:-build}/fxp-bench-fp8.json" || fail "bench run, fp8 $run"
	/usr/bin/python3 - "${BUILD:-build}/fxp-bench-fp8.json" $codes "$novbmi" <<'PY' || exit 1
import json, os, sys
d = json.load(open(sys.argv[1]))
r = d["results"][0]
assert d["fp8_codes"] == sys.argv[2] and r["format"] == "fp8", (d["fp8_codes"], r)
flags = open("/proc/cpuinfo").read().split()
# the machine's ISA fields, as the CPU (and kernel) report them
for field, flag in (("avx2", "avx2"), ("avxvnni", "avx_vnni"), ("avx512f", "avx512f"),
                    ("avx512vnni", "avx512_vnni")):
    assert d["machine"][field] is (flag in flags), (field, d["machine"])
want = d["fxp_variant"] in ("avx512", "amx", "amx-emu") and "avx512vbmi" in flags and \
    not sys.argv[3] and not os.environ.get("HMOE_FXP_NO_VBMI")
assert d["fp8_lists"] is want, (d["fxp_variant"], d["fp8_lists"], want)
assert r["fp8_remainder_lists"] == (1 if want and sys.argv[2] == "checkpoint" else 0), (d["fxp_variant"], r)
# the pattern rate where the one-token fp8 call goes four rows at a time (VBMI)
assert ("kernel_pattern_ratio" in r) is want and ("pattern_ratio" in r) is want, (want, r)
print("ok: fp8", sys.argv[2], "codes" + (" without VBMI" if sys.argv[3] else "") + ":",
      r["fp8_remainder_lists"], "packs with lists on", d["fxp_variant"])
PY
done
# the prefetch plan: the JSON says which distances ran; HMOE_FXP_*ROWS4_PREFETCH set them,
# and a value that does not parse is named on stderr with the default kept
pf_run() {  # pf_run NAME ENV...: one int8 1-token run, the JSON to $BUILD/fxp-bench-pf-NAME.json
	local name=$1
	shift
	env "$@" "$HMOE" bench experts --json --tokens 1 --formats int8 --experts 1 \
		--f32-experts 0 --min-time 0 --bw-mib 16 \
		>"${BUILD:-build}/fxp-bench-pf-$name.json" 2>"${BUILD:-build}/fxp-bench-pf-$name.err" ||
		fail "bench run, prefetch $name"
}
pf_run default
pf_run set HMOE_FXP_ROWS4_PREFETCH=512,0 HMOE_FXP_FP8_ROWS4_PREFETCH=0,4096 HMOE_FXP_FP8_PREFETCH=0 \
	HMOE_FXP_FP8_PERMI2B=1
pf_run set0 HMOE_FXP_FP8_PERMI2B=0 HMOE_FXP_ONE_TOKEN_ITEMS=2 HMOE_FXP_FP8_A8_LISTS=0 \
	HMOE_FXP_ONE_TOKEN_ITEMS_INT4=8
pf_run set1 HMOE_FXP_FP8_A8_LISTS=1
pf_run bad HMOE_FXP_ROWS4_PREFETCH=1536,100 HMOE_FXP_FP8_ROWS4_PREFETCH=64 HMOE_FXP_FP8_PERMI2B=yes \
	HMOE_FXP_ONE_TOKEN_ITEMS=3 HMOE_FXP_FP8_A8_LISTS=2 HMOE_FXP_ONE_TOKEN_ITEMS_INT4=32
/usr/bin/python3 - "${BUILD:-build}/fxp-bench-pf" <<'PY' || exit 1
import json, sys
b = sys.argv[1]
runs = ("default", "set", "set0", "set1", "bad")
j = {n: json.load(open(b + "-" + n + ".json")) for n in runs}
# the one-token int8 call's work items: 4x (default) or 2x larger where the variant
# streams four rows at once (avx512, amx: the four-row kernels), else the usual 32 / 128
items = {n: j[n]["one_token_items"] for n in runs}
rows = {n: j[n]["results"][0]["work_item_rows"] for n in runs}
assert items == {"default": 4, "set": 4, "set0": 2, "set1": 4, "bad": 4}, items
items4 = {n: j[n]["one_token_items_int4"] for n in runs}
assert items4 == {"default": 16, "set": 16, "set0": 8, "set1": 16, "bad": 16}, items4
four = j["default"]["fxp_variant"] in ("avx512", "amx", "amx-emu")
for n in runs:
    k = items[n] if four else 1
    assert rows[n] == [32 * k, 128 * k], (n, rows[n], j[n]["fxp_variant"])
d = {n: j[n]["prefetch"] for n in runs}
lk = {n: j[n]["fp8_lookup"] for n in runs}
err = {n: open(b + "-" + n + ".err").read() for n in runs}
assert d["set"] == {"fp8": False, "rows4": [512, 0], "fp8_rows4": [0, 4096]}, d
assert d["bad"] == d["default"] == d["set0"] == d["set1"], d
# one-token fp8-a8 by the lists: as the override says where the variant takes lists at all
a8 = {n: j[n]["fp8_a8_lists"] for n in runs}
assert a8["set0"] is False and a8["set1"] is j["default"]["fp8_lists"], a8
assert a8["bad"] == a8["default"] and (j["default"]["fp8_lists"] or not a8["default"]), a8
assert lk["set"] == "vpermi2b" and lk["set0"] == "vpermb", lk
assert lk["default"] in ("vpermi2b", "vpermb") and lk["bad"] == lk["default"], lk
assert not err["default"] and not err["set"] and not err["set0"] and not err["set1"], err
lines = err["bad"].splitlines()
assert len(lines) == 6 and "HMOE_FXP_FP8_PERMI2B=yes is not 0 or 1" in lines[0] and \
    "HMOE_FXP_FP8_A8_LISTS=2 is not 0 or 1" in lines[1] and \
    "HMOE_FXP_ROWS4_PREFETCH=1536,100 is not" in lines[2] and \
    "HMOE_FXP_FP8_ROWS4_PREFETCH=64 is not" in lines[3] and \
    "HMOE_FXP_ONE_TOKEN_ITEMS=3 is not 1, 2, 4 or 8; using 4" in lines[4] and \
    "HMOE_FXP_ONE_TOKEN_ITEMS_INT4=32 is not 1, 2, 4, 8 or 16; using 16" in lines[5], lines
print("ok: plan", d["default"], lk["default"], "fp8-a8 lists", a8["default"], "overridden",
      d["set"], lk["set"], lk["set0"], "work items", rows)
PY
echo PASS
