#!/usr/bin/env bash
# tsan: the thread pool and the fixed-point MoE layer driver under ThreadSanitizer. The
# driver's work items wait for each other inside one pool loop (hmoe_pool_await/post); a
# missing wait or a wake-up without the release it needs can still give the right bytes
# on most runs, and TSan sees the race itself (removing the wait for a tile's x gave 38
# reports and 2 wrong outputs). Builds libhmoe, test_pool and test_fxp_simd with
# -fsanitize=thread in $BUILD/tsan and runs test_pool and `test_fxp_simd --moe-only`
# (2 and 7 threads, every mode). Skips when the compiler cannot build a TSan program.
set -u
cd "${HMOE_ROOT:-.}"
BUILD=${BUILD:-build}
out=$BUILD/tsan
mkdir -p "$out"
printf 'int main(void) { return 0; }\n' >"$out/probe.c"
if ! cc -fsanitize=thread -o "$out/probe" "$out/probe.c" 2>"$out/probe.err" || ! "$out/probe"; then
	echo "skipped: this compiler or kernel cannot run ThreadSanitizer programs"
	exit 77
fi
# SANITIZE=0 on the command line: the inner make must not switch to ASan's build/san.
make -s --no-print-directory SANITIZE=0 BUILD="$out" EXTRA_CFLAGS=-fsanitize=thread \
	LDFLAGS="-pthread -fsanitize=thread" "$out/tests/unit/test_pool" \
	"$out/tests/unit/test_fxp_simd" || { echo "FAIL: the TSan build failed"; exit 1; }
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}"
status=0
for t in "test_pool" "test_fxp_simd --moe-only"; do
	"$out/tests/unit/"$t >"$out/log" 2>&1
	rc=$?
	tail -n 1 "$out/log"
	if [ $rc -ne 0 ]; then
		grep -A12 'WARNING: ThreadSanitizer' "$out/log" | head -n 40
		echo "FAIL: $t under TSan (exit $rc)"
		status=1
	fi
done
exit $status
