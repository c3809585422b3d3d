# expect_error.sh: sourced by the bad-input test scripts. One function:
#
#   expect_error WORDS -- COMMAND ARGS...
#
# runs COMMAND, which must exit with status 2 and print exactly one line on stderr that
# contains WORDS (a fixed string). A mismatch prints FAIL with what came out and sets
# fail=1; the script ends with `exit $fail`. Needs TMP (a scratch folder).
fail=${fail:-0}
expect_error() {
	local want=$1 rc
	shift 2
	"$@" >"$TMP/expect.out" 2>"$TMP/expect.err"
	rc=$?
	if [ $rc -ne 2 ] || ! grep -qF -- "$want" "$TMP/expect.err" ||
		[ "$(wc -l <"$TMP/expect.err")" -ne 1 ]; then
		echo "FAIL: ${*#"$HMOE"}: exit $rc, wanted '$want' in one line on stderr, got:"
		cat "$TMP/expect.err"
		fail=1
		return
	fi
	echo "ok: $(cat "$TMP/expect.err")"
}
