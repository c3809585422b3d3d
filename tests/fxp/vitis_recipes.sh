#!/usr/bin/env bash
# fxp/vitis-recipes: the Vitis HLS recipes in hls/vitis/ cannot run here (no Vitis), so
# this checks what a user with Vitis would otherwise find out first: that they still match
# the kernel and the C-simulation vectors.
#   run_hls.tcl   runs under tclsh with every Vitis command replaced by a stub that
#                 records it: the flow parses, names the kernel's top function, adds
#                 files that exist, passes csim/cosim vectors that exist, stops after
#                 csim or csynth when asked, exports the .xo, and with no vectors exits 2
#                 with a message;
#   hls_config.cfg  the unified-flow config: its top, source and testbench files and
#                 csim/cosim vectors exist, its part and clock are run_hls.tcl's defaults;
#   link.cfg      every port it maps to memory is an m_axi port of hmoe_ffn, and every
#                 m_axi port is mapped for each compute unit.
set -u
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
golden=$BUILD/hls-csim/golden
fail() { echo "FAIL: $*"; exit 1; }

command -v tclsh >/dev/null || fail "tclsh not found (scripts/deps.sh test installs tcl)"
make -s --no-print-directory hls-csim >/dev/null || fail "make hls-csim"
ls "$golden"/case_*.bin >/dev/null 2>&1 || fail "no golden vectors in $golden"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- run_hls.tcl under stubs ---------------------------------------------------------
cat >"$tmp/stubs.tcl" <<'EOF'
set ::calls {}
foreach c {open_project set_top open_solution set_part create_clock config_interface
	   config_compile csynth_design export_design} {
	proc $c {args} [format {lappend ::calls [list %s {*}$args]} $c]
}
proc need {what f} {
	if {![file exists $f]} { puts "MISSING $what $f"; __exit 3 }
}
proc add_files {args} {
	set f [lindex $args [expr {[lindex $args 0] eq "-tb" ? 1 : 0}]]
	need source $f
	lappend ::calls [list add_files $f]
}
proc csim_design {args} {
	foreach f [lindex $args [expr {[lsearch $args -argv] + 1}]] { need vector $f }
	lappend ::calls csim_design
}
proc cosim_design {args} {
	foreach f [lindex $args [expr {[lsearch $args -argv] + 1}]] { need vector $f }
	lappend ::calls cosim_design
}
rename exit __exit
proc exit {{code 0}} {
	foreach c $::calls { puts "CALL $c" }
	puts "EXIT $code"
	__exit $code
}
set argv $::env(STEPS_ARG)
source hls/vitis/run_hls.tcl
EOF
flow() {  # flow STEPS GOLDEN_DIR -> the stubbed run's output
	STEPS_ARG=$1 HMOE_GOLDEN=$2 tclsh "$tmp/stubs.tcl" 2>&1
}
out=$(flow "" "$golden")
echo "$out" | grep -q '^EXIT 0$' || fail "run_hls.tcl (all steps) did not finish: $out"
for want in "set_top hmoe_ffn" "add_files $PWD/hls/hmoe_ffn.c" "add_files $PWD/hls/hmoe_fxp.c" \
	"add_files $PWD/hls/tb/tb_hmoe_ffn.c" "csim_design" "csynth_design" "cosim_design" \
	"export_design -format xo -output $PWD/build/vitis_hls/hmoe_ffn.xo"; do
	echo "$out" | grep -qxF "CALL $want" || fail "run_hls.tcl never calls '$want': $out"
done
grep -q '^int32_t hmoe_ffn(' hls/hmoe_ffn.c || fail "hls/hmoe_ffn.c has no top function hmoe_ffn"
out=$(flow csim "$golden")
echo "$out" | grep -q '^CALL csim_design' || fail "csim step did not run csim: $out"
echo "$out" | grep -q '^CALL csynth_design' && fail "csim step went on to synthesis: $out"
out=$(flow csynth "$golden")
echo "$out" | grep -q '^CALL csynth_design' || fail "csynth step did not synthesise: $out"
echo "$out" | grep -q '^CALL cosim_design' && fail "csynth step went on to cosim: $out"
mkdir "$tmp/empty"
out=$(flow "" "$tmp/empty")
echo "$out" | grep -q '^EXIT 2$' || fail "no vectors: want exit 2: $out"
echo "$out" | grep -q 'run `make hls-csim` first' || fail "no vectors: no hint: $out"
echo "run_hls.tcl: all, csim, csynth and no-vector runs as expected"

# --- hls_config.cfg ------------------------------------------------------------------
cfg=hls/vitis/hls_config.cfg
val() { sed -n "s/^$1=//p" "$cfg"; }
[ "$(val syn.top)" = hmoe_ffn ] || fail "$cfg: syn.top is '$(val syn.top)', not hmoe_ffn"
for f in $(val syn.file) $(val tb.file); do
	[ -f "$f" ] || fail "$cfg names $f, which does not exist"
done
for f in $(val csim.argv) $(val cosim.argv); do
	[ -f "$golden/$(basename "$f")" ] || fail "$cfg: vector $f is not one make hls-csim writes"
done
[ -n "$(val csim.argv)" ] && [ -n "$(val cosim.argv)" ] || fail "$cfg: no csim/cosim vectors"
grep -q "\"$(val part)\"" hls/vitis/run_hls.tcl || fail "$cfg: part $(val part) differs from run_hls.tcl's"
grep -q "\"$(val clock)\"" hls/vitis/run_hls.tcl || fail "$cfg: clock $(val clock) differs from run_hls.tcl's"
echo "hls_config.cfg: top, files, vectors, part and clock agree"

# --- link.cfg ------------------------------------------------------------------------
axi=$(sed -n 's/^#pragma HLS INTERFACE m_axi port=\([a-z_0-9]*\).*/\1/p' hls/hmoe_ffn.c | sort -u)
[ -n "$axi" ] || fail "no m_axi ports found in hls/hmoe_ffn.c"
cus=$(sed -n 's/^nk=hmoe_ffn:\([0-9]*\):.*/\1/p' hls/vitis/link.cfg)
[ -n "$cus" ] || fail "link.cfg: no nk=hmoe_ffn line"
for port in $(sed -n 's/^sp=hmoe_ffn_[0-9]*\.\([a-z_0-9]*\):.*/\1/p' hls/vitis/link.cfg | sort -u); do
	echo "$axi" | grep -qx "$port" || fail "link.cfg maps $port, which is not an m_axi port of hmoe_ffn"
done
for cu in $(seq "$cus"); do
	for port in $axi; do
		grep -q "^sp=hmoe_ffn_$cu\.$port:" hls/vitis/link.cfg ||
			fail "link.cfg: compute unit $cu leaves port $port unmapped"
	done
done
echo "link.cfg: $cus compute units, m_axi ports $(echo $axi) all mapped"
echo PASSED
