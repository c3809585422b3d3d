#!/usr/bin/env bash
# The test runner behind `make test`.
#
# Runs every unit-test binary in $BUILD/tests/unit and every line of tests/*/tests.list
# ("NAME COMMAND..."; commands run from the repository root with $HMOE and $BUILD set).
# A test passes with exit 0, is skipped with exit 77 (its last output line says why), and
# fails otherwise. Ends with the line "N passed, N failed, N skipped".
#   TESTS=pattern tests/run.sh     run only tests whose name matches the grep pattern
set -u
cd "$(dirname "$0")/.."
export BUILD=${BUILD:-build}
export HMOE=$BUILD/hmoe
export HMOE_ROOT=$PWD
logdir=$BUILD/test-logs
mkdir -p "$logdir"
pattern=${TESTS:-.}
per_test_timeout=${TEST_TIMEOUT:-1200}

names=()
cmds=()
for t in "$BUILD"/tests/unit/test_*; do
	[ -x "$t" ] || continue
	names+=("unit/$(basename "$t")")
	cmds+=("$t")
done
for list in tests/*/tests.list; do
	[ -f "$list" ] || continue
	while read -r name cmd; do
		case "$name" in ''|'#'*) continue ;; esac
		names+=("$name")
		cmds+=("$cmd")
	done <"$list"
done

pass=0 fail=0 skip=0
failed=()
for i in "${!names[@]}"; do
	name=${names[$i]}
	echo "$name" | grep -qE -- "$pattern" || continue
	log=$logdir/$(echo "$name" | tr '/ ' '__').log
	start=$(date +%s%N)
	timeout "$per_test_timeout" bash -c "${cmds[$i]}" >"$log" 2>&1 </dev/null
	rc=$?
	ms=$((($(date +%s%N) - start) / 1000000))
	secs=$((ms / 1000)).$(((ms % 1000) / 100))
	if [ $rc -eq 0 ]; then
		pass=$((pass + 1))
		echo "PASS $name (${secs}s)"
	elif [ $rc -eq 77 ]; then
		skip=$((skip + 1))
		echo "SKIP $name: $(grep -v '^\s*$' "$log" | tail -n 1)"
	else
		fail=$((fail + 1))
		failed+=("$name")
		echo "FAIL $name (exit $rc, ${secs}s); last lines of $log:"
		tail -n 40 "$log" | sed 's/^/    /'
	fi
done
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
