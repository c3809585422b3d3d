#!/usr/bin/env bash
# Device selection, as a user sees it:
#  - `--config FILE` gives the same text as the same flags on the command line, and the
#    command line wins over the file;
#  - `--experts "kmod:...|cpu-fxp:..."` where no hmoe card exists runs the CPU alternative
#    (one note on stderr) and prints its exact text; `--attn "cuda|cpu"` without a GPU
#    prints the `--attn cpu` text; `--attn cpu` is the CPU forward pass;
#  - a bad spec never falls back, and bad config files are one line naming file and line,
#    exit 2.
set -u
HMOE=${HMOE:-build/hmoe}
MODEL=${HMOE_EVAL_MODEL:-${HMOE_ROOT:-.}/models/r1-arith}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
gen() { # gen OUT ARGS...: generated text only
	local out=$1
	shift
	"$HMOE" generate --chat --prompt "What is 457 + 386?" --max-tokens 40 --temperature 0 \
		"$@" >"$TMP/$out" 2>"$TMP/$out.err" || { echo "FAIL: generate $* exited $?"; cat "$TMP/$out.err"; fail=1; }
}
same() { # same A B WHAT
	if ! cmp -s "$TMP/$1" "$TMP/$2"; then
		echo "FAIL: $3: outputs differ"
		fail=1
	else
		echo "ok: $3"
	fi
}

gen ref --model "$MODEL" --experts cpu-fxp:int8 --threads 2
cat >"$TMP/dev.conf" <<CONF
# hmoe devices for this machine
model = $MODEL
experts = cpu-fxp:int8     # the CPU fixed-point path
threads 2
CONF
gen conf --config "$TMP/dev.conf"
same ref conf "--config gives the flags' text"
gen override --config "$TMP/dev.conf" --experts cpu-f32
gen f32 --model "$MODEL" --experts cpu-f32
same f32 override "the command line wins over --config"

# fallback alternatives (a machine with an hmoe card runs kmod: bit-identical anyway)
gen alt --model "$MODEL" --experts "kmod:int8,cards=2|cpu-fxp:int8" --threads 2
same ref alt "--experts kmod|cpu-fxp"
if ! ls /dev/dri/renderD* >/dev/null 2>&1 && ! grep -q "unavailable.*trying cpu-fxp:int8" "$TMP/alt.err"; then
	echo "FAIL: no note on stderr about the fallback:"; cat "$TMP/alt.err"; fail=1
fi
gen cpu --model "$MODEL" --attn cpu
same f32 cpu "--attn cpu is the CPU forward pass"
gen gpu_or_cpu --model "$MODEL" --attn "cuda|cpu"
same f32 gpu_or_cpu "--attn cuda|cpu without a GPU"  # with a GPU: bf16 vs fp32 may differ
[ -e /dev/nvidia0 ] && echo "(a GPU is present: the last comparison may legitimately differ)"

. "${HMOE_ROOT:-.}/tests/lib/expect_error.sh"
expect() { expect_error "$1" -- "$HMOE" generate --prompt x --max-tokens 2 "${@:3}"; } # expect WORDS -- ARGS...
printf 'model = %s\nbogus = 1\n' "$MODEL" >"$TMP/unknown.conf"
printf 'model = %s\nthreads\n' "$MODEL" >"$TMP/noval.conf"
printf 'model = %s\nconfig = x\n' "$MODEL" >"$TMP/nested.conf"
expect "unknown.conf line 2: unknown flag 'bogus'" -- --config "$TMP/unknown.conf"
expect "noval.conf line 2: threads needs a value" -- --config "$TMP/noval.conf"
expect "nested.conf line 2: unknown flag 'config'" -- --config "$TMP/nested.conf"
expect "cannot open" -- --config "$TMP/missing.conf"
expect "unknown fixed-point format 'fp9'" -- --model "$MODEL" --experts "kmod:fp9|cpu-fxp"
expect "an empty alternative" -- --model "$MODEL" --experts "cpu-fxp|"
expect "attention form 'bogus'" -- --model "$MODEL" --attn "cuda|bogus"
exit $fail
