# run_hls.tcl: Vitis HLS flow for the fixed-point expert kernel hmoe_ffn (hls/hmoe_ffn.c).
# NOT RUN: nobody working on hmoe has Vitis; gcc C simulation (make hls-csim) is what is
# tested. See docs/fxp.md, "Vitis HLS".
#
# From the repository root, after `make hls-csim` (which writes the golden vectors):
#   vitis_hls -f hls/vitis/run_hls.tcl               csim + csynth + cosim + export .xo
#   vitis_hls -f hls/vitis/run_hls.tcl -tclargs csim     only C simulation
#   vitis_hls -f hls/vitis/run_hls.tcl -tclargs csynth   C simulation + synthesis
# Environment: HMOE_PART (default xcu280-fsvh2892-2L-e, Alveo U280), HMOE_CLOCK_NS
# (default 3.33, 300 MHz), HMOE_GOLDEN (default build/hls-csim/golden).

set steps [expr {[llength $argv] > 0 ? [lindex $argv 0] : "all"}]
set root [pwd]
set part [expr {[info exists ::env(HMOE_PART)] ? $::env(HMOE_PART) : "xcu280-fsvh2892-2L-e"}]
set clock [expr {[info exists ::env(HMOE_CLOCK_NS)] ? $::env(HMOE_CLOCK_NS) : "3.33"}]
set golden [expr {[info exists ::env(HMOE_GOLDEN)] ? $::env(HMOE_GOLDEN) : "$root/build/hls-csim/golden"}]
set cases [glob -nocomplain $golden/case_*.bin]
if {[llength $cases] == 0} {
    puts "run_hls.tcl: no golden vectors in $golden; run `make hls-csim` first"
    exit 2
}
set cflags "-std=c11 -I$root/hls"

open_project -reset $root/build/vitis_hls/hmoe_ffn
set_top hmoe_ffn
add_files $root/hls/hmoe_ffn.c -cflags $cflags
add_files $root/hls/hmoe_fxp.c -cflags $cflags
add_files -tb $root/hls/tb/tb_hmoe_ffn.c -cflags $cflags

open_solution -reset -flow_target vitis solution1
set_part $part
create_clock -period $clock -name default
config_interface -m_axi_addr64 -m_axi_alignment_byte_size 64 -m_axi_max_widen_bitwidth 512
config_compile -pipeline_loops 64

csim_design -argv [join $cases " "]
if {$steps eq "csim"} { exit }
csynth_design
if {$steps eq "csynth"} { exit }
cosim_design -argv [join $cases " "] -trace_level none
export_design -format xo -output $root/build/vitis_hls/hmoe_ffn.xo
exit
