#!/usr/bin/env bash
# `make bench`: runs every benchmark that this machine can run and writes one JSON file per
# benchmark to $BUILD/bench/ (and a copy of each to stdout). Copy the files you want to keep
# into bench/results/ with the machine and commit in their name.
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
HMOE=$BUILD/hmoe
out=$BUILD/bench
mkdir -p "$out"
export HMOE_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
status=0
run() {
	local name=$1
	shift
	echo "== hmoe bench $name" >&2
	if "$HMOE" bench "$name" --json "$@" >"$out/$name.json" 2>"$out/$name.err"; then
		cat "$out/$name.json"
	elif grep -qE 'no hmoe card|no CUDA' "$out/$name.err"; then
		# A benchmark of hardware this machine does not have is skipped, not failed.
		echo "bench $name skipped: $(tail -n 1 "$out/$name.err")" >&2
		rm -f "$out/$name.json"
	else
		cat "$out/$name.err" >&2
		echo "bench $name failed" >&2
		status=1
	fi
}
small=$BUILD/models/small
[ -f "$small/config.json" ] || "$HMOE" mktiny --out "$small" --preset small --seed 1 >&2 || exit 1
run forward --model "$small"
for b in experts kmod mla sched; do
	if "$HMOE" bench --help 2>/dev/null | grep -q "^  $b "; then
		run "$b"
	fi
done
exit $status
