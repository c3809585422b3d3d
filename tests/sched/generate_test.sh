#!/usr/bin/env bash
# tests/sched/generate_test.sh: `hmoe generate` through the "sched" expert backend gives
# exactly the tokens of the plain cpu-fxp backend, whatever the number of cards, their
# memory (experts pushed to the CPU tier), micro-batching, a placement file with hot
# experts replicated, or a card that fails or hangs mid-run; and the fault is logged and
# counted. Emulated cards: each is a cpu-fxp backend on its own thread.
set -u
HMOE=${HMOE:-build/hmoe}
tmp=$(mktemp -d /tmp/hmoe_sched_gen.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0

"$HMOE" mktiny --out "$tmp/m" --seed 7 >/dev/null || { echo "mktiny failed"; exit 1; }

gen() { # gen NAME EXPERTS-SPEC
	"$HMOE" generate --model "$tmp/m" --prompt "The scheduler moves tokens" --max-tokens 12 \
		--seed 5 --threads 1 --experts "$2" >"$tmp/$1.out" 2>"$tmp/$1.err"
	local rc=$?
	if [ $rc -ne 0 ]; then
		echo "FAIL $1 ($2): exit $rc"; cat "$tmp/$1.err"; fail=1; return
	fi
	if ! cmp -s "$tmp/ref.out" "$tmp/$1.out"; then
		echo "FAIL $1 ($2): output differs from cpu-fxp"
		diff "$tmp/ref.out" "$tmp/$1.out" | head -5
		fail=1
	else
		echo "ok   $1 ($2)"
	fi
}

"$HMOE" generate --model "$tmp/m" --prompt "The scheduler moves tokens" --max-tokens 12 \
	--seed 5 --threads 1 --experts cpu-fxp >"$tmp/ref.out" 2>"$tmp/ref.err" ||
	{ echo "reference run failed"; cat "$tmp/ref.err"; exit 1; }
[ -s "$tmp/ref.out" ] || { echo "reference produced no text"; exit 1; }

# an expert pack of this model (dim 192, inter 160, fp8) is 160 KiB: 480K holds 3
gen two_cards "sched:cards=2,micro=2,verbose,place-out=$tmp/observed.txt"
grep -q "placement from the observed routing written" "$tmp/two_cards.err" ||
	{ echo "FAIL: place-out not written"; fail=1; }
gen tight_memory "sched:cards=3,mem=480K,verbose"
grep -Eq "cpu [1-9][0-9]* calls" "$tmp/tight_memory.err" ||
	{ echo "FAIL: tight memory did not use the CPU tier"; cat "$tmp/tight_memory.err"; fail=1; }
gen placement_file "sched:place=$tmp/observed.txt,fault=0@4:error"
grep -q "card0 failed on layer" "$tmp/placement_file.err" &&
	grep -q "1 failures, 0 timeouts" "$tmp/placement_file.err" ||
	{ echo "FAIL: error fault not logged and counted"; cat "$tmp/placement_file.err"; fail=1; }
gen hung_card "sched:cards=2,fault=1@3:hang,timeout-ms=150"
grep -q "card1 did not answer" "$tmp/hung_card.err" &&
	grep -q "0 failures, 1 timeouts" "$tmp/hung_card.err" ||
	{ echo "FAIL: hang not logged and counted"; cat "$tmp/hung_card.err"; fail=1; }

# bad input: one line, exit 2
for spec in "sched:place=$tmp/nope.txt"; do
	"$HMOE" generate --model "$tmp/m" --prompt x --max-tokens 1 --experts "$spec" \
		>/dev/null 2>"$tmp/bad.err"
	rc=$?
	if [ $rc -ne 2 ] || [ "$(wc -l <"$tmp/bad.err")" -ne 1 ]; then
		echo "FAIL bad spec '$spec': exit $rc, stderr:"; cat "$tmp/bad.err"; fail=1
	else
		echo "ok   bad spec '$spec': $(cat "$tmp/bad.err")"
	fi
done
exit $fail
