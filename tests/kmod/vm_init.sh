#!/bin/busybox sh
# vm_init.sh: /init of the QEMU guest of tests/kmod/run_vm.sh. Loads the DRM modules
# and hmoe.ko, runs the tests named in /etc/ktests ("all" for every one), prints one
# "KTEST <name> PASS|FAIL|SKIP [why]" line per test on the serial console, dumps the
# kernel log between markers, and powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmpfs /tmp
M=/lib/modules
# A long watchdog: expert jobs are slow under TCG; the faults test shortens it.
HMOE_ARGS="emu_cards=2 job_timeout_ms=5000"
CYCLES=$(cat /etc/kcycles 2>/dev/null)

tests=$(cat /etc/ktests)
[ "$tests" = all ] && tests="load basic validate multiproc faults race prime ffn hwmon pci bench e2e sched overlap experts cycles"
echo "KTEST-PLAN $tests"

pass() { echo "KTEST $1 PASS"; }
fail() { echo "KTEST $1 FAIL $2"; }

# The kernel's modules hmoe.ko depends on (and vgem), in load order (run_vm.sh).
for m in $(cat /etc/kmods); do
	insmod $M/$m || echo "KTEST load FAIL the kernel's $m did not load"
done

# Load: the module creates two emulated cards, each with a node and a hwmon device.
t_load() {
	insmod $M/hmoe.ko $HMOE_ARGS || { fail load "insmod hmoe.ko failed"; return; }
	n=$(ls -d /sys/bus/platform/drivers/hmoe_emu/hmoe_emu.* 2>/dev/null | wc -l)
	nodes=$(ls /dev/dri/renderD* /dev/accel/accel* 2>/dev/null | wc -l)
	[ "$n" = 2 ] || { fail load "$n emulated cards bound, want 2"; return; }
	# vgem has a render node too on 6.1; hmoe has one per card
	[ "$nodes" -ge 2 ] || { fail load "$nodes DRM nodes"; return; }
	pass load
}

# The pci backend: the driver registers; QEMU's "edu" device, offered to it by id, is
# probed (BAR map, ID register) and refused cleanly as not an hmoe card.
t_pci() {
	d=/sys/bus/pci/drivers/hmoe_pci
	[ -d $d ] || { fail pci "no $d"; return; }
	edu=$(grep -l 0x11e8 /sys/bus/pci/devices/*/device | head -n 1)
	[ -n "$edu" ] || { fail pci "QEMU edu device not present"; return; }
	echo "1234 11e8" >$d/new_id 2>/dev/null
	sleep 1
	dev=$(basename "$(dirname "$edu")")
	[ -e "$d/$dev" ] && { fail pci "the edu device was bound as an hmoe card"; return; }
	dmesg | grep -q "hmoe_pci $dev.*not an hmoe card" ||
		{ fail pci "no probe message for $dev"; return; }
	pass pci
}

t_bench() {
	[ -x /bin/hmoe ] || { echo "KTEST bench SKIP hmoe binary not packed"; return; }
	if hmoe bench kmod --json --layers 5 >/tmp/bench.json 2>/tmp/bench.err &&
		hmoe bench kmod --json --layers 2 --no-chain >/tmp/bench2.json 2>>/tmp/bench.err; then
		echo "KTEST-BENCH $(tr -d '\n' </tmp/bench.json)"
		echo "KTEST-BENCH $(tr -d '\n' </tmp/bench2.json)"
		grep -q '"jobs_per_sec"' /tmp/bench.json && grep -q '"ioctls_per_layer"' /tmp/bench.json &&
			{ pass bench; return; }
		fail bench "bench output lacks jobs_per_sec/ioctls_per_layer"
	else
		fail bench "hmoe bench kmod: $(tail -n 1 /tmp/bench.err)"
	fi
}

# End to end: a tiny checkpoint generated here, greedy text with the cpu-fxp experts and
# with the kmod backend on both cards must be identical; then again with an error
# injected on card hmoe_emu.1 once the first token is out: same text, and the backend
# reports the jobs it redid on the CPU.
e2e_gen() { # OUT EXPERTS [TOKENS]: greedy generation (16 tokens), text to OUT, stderr to OUT.err
	hmoe generate --model /tmp/m --temperature 0 --max-tokens "${3:-16}" --threads 2 \
		--prompt "Experts on cards" --experts "$2" >"$1" 2>"$1.err"
}
# make_model TEST: the tiny checkpoint /tmp/m (once); fails TEST if it cannot be made.
make_model() {
	[ -r /tmp/m/config.json ] && return 0
	hmoe mktiny --out /tmp/m --seed 3 --tokenizer /models/deepseek-v3-tokenizer \
		>/tmp/mktiny.log 2>&1 && return 0
	fail "$1" "mktiny: $(tail -n 1 /tmp/mktiny.log)"
	return 1
}
# The modes are A16 (fp8: two activation planes, the default) for the 2-card runs and
# the fault run, A8 (int8-a8) for the one-card run.
t_e2e() {
	[ -x /bin/hmoe ] || { echo "KTEST e2e SKIP hmoe binary not packed"; return; }
	[ -r /models/deepseek-v3-tokenizer/tokenizer.json ] ||
		{ echo "KTEST e2e SKIP tokenizer not packed"; return; }
	echo 5000 >/sys/module/hmoe/parameters/job_timeout_ms
	make_model e2e || return
	e2e_gen /tmp/e2e_cpu cpu-fxp:fp8 || { fail e2e "cpu-fxp: $(tail -n 1 /tmp/e2e_cpu.err)"; return; }
	HMOE_KMOD_VERIFY=1 e2e_gen /tmp/e2e_kmod kmod:fp8,cards=2 ||
		{ fail e2e "kmod: $(tail -n 1 /tmp/e2e_kmod.err)"; return; }
	echo "KTEST-E2E cpu-fxp:fp8 text: $(cat /tmp/e2e_cpu)"
	echo "KTEST-E2E kmod:fp8,cards=2 text: $(cat /tmp/e2e_kmod)"
	[ -s /tmp/e2e_cpu ] || { fail e2e "cpu-fxp generated no text"; return; }
	cmp -s /tmp/e2e_cpu /tmp/e2e_kmod || {
		sed 's/^/KTEST-E2E kmod stderr: /' /tmp/e2e_kmod.err
		fail e2e "kmod text differs from cpu-fxp"
		return
	}
	grep -q 'CPU fallbacks' /tmp/e2e_kmod.err &&
		{ fail e2e "CPU fallbacks without a fault: $(grep fallbacks /tmp/e2e_kmod.err)"; return; }
	# another format and the one-plane mode, one card
	e2e_gen /tmp/e2e_cpu8 cpu-fxp:int8-a8 || { fail e2e "cpu-fxp:int8-a8: $(tail -n 1 /tmp/e2e_cpu8.err)"; return; }
	e2e_gen /tmp/e2e_kmod8 kmod:int8-a8 || { fail e2e "kmod:int8-a8: $(tail -n 1 /tmp/e2e_kmod8.err)"; return; }
	echo "KTEST-E2E cpu-fxp:int8-a8 text: $(cat /tmp/e2e_cpu8)"
	echo "KTEST-E2E kmod:int8-a8 text: $(cat /tmp/e2e_kmod8)"
	cmp -s /tmp/e2e_cpu8 /tmp/e2e_kmod8 || { fail e2e "kmod:int8-a8 text differs from cpu-fxp:int8-a8"; return; }
	inj=/sys/kernel/debug/hmoe/hmoe_emu.1/inject_error
	[ -w $inj ] || { fail e2e "no $inj"; return; }
	e2e_gen /tmp/e2e_fault kmod:fp8,cards=2 &
	pid=$!
	i=0
	while [ ! -s /tmp/e2e_fault ] && [ $i -lt 1200 ] && kill -0 $pid 2>/dev/null; do
		usleep 100000
		i=$((i + 1))
	done
	echo 3 >$inj
	wait $pid || { fail e2e "kmod with a fault: $(tail -n 1 /tmp/e2e_fault.err)"; return; }
	echo 0 >$inj
	grep 'redone on the CPU\|CPU fallbacks' /tmp/e2e_fault.err | sed 's/^/KTEST-E2E /'
	cmp -s /tmp/e2e_cpu /tmp/e2e_fault ||
		{ fail e2e "kmod text with a fault differs from cpu-fxp: $(cat /tmp/e2e_fault)"; return; }
	grep -q 'hmoe: kmod experts: [1-9][0-9]* CPU fallbacks' /tmp/e2e_fault.err ||
		{ fail e2e "the injected fault was not counted as a CPU fallback"; return; }
	pass e2e
}

# The sched backend with kmod cards as its devices (device d = card d, only its placed
# experts resident), with a small mem= (experts on the CPU tier) and with re-placement
# during the run: the same greedy text as cpu-fxp:fp8. Then the two-micro-batch forward
# pass on the asynchronous kmod backend (and on sched over kmod cards, re-placing) with
# --prompts: the same JSON lines as cpu-fxp:fp8.
# (8 tokens: under the sanitizers each run takes ~20 s in the guest)
sched_gen() { # NAME EXPERTS: like e2e_gen, then the text must equal cpu-fxp's
	e2e_gen "/tmp/sched_$1" "$2" 8 || { fail sched "$2: $(tail -n 1 "/tmp/sched_$1.err")"; return 1; }
	echo "KTEST-SCHED $2 text: $(cat "/tmp/sched_$1")"
	grep '^\[sched:\|re-placement\|CPU fallbacks' "/tmp/sched_$1.err" | sed 's/^/KTEST-SCHED /'
	cmp -s /tmp/sched_cpu "/tmp/sched_$1" || { fail sched "$2: text differs from cpu-fxp:fp8"; return 1; }
}
prompts_gen() { # OUT EXPERTS MICRO: the requests of /tmp/reqs.jsonl, JSON lines to OUT
	hmoe generate --model /tmp/m --temperature 0 --max-tokens 6 --threads 2 \
		--prompts /tmp/reqs.jsonl --max-seqs 3 --micro-batches "$3" --experts "$2" \
		>"$1" 2>"$1.err"
}
t_sched() {
	[ -x /bin/hmoe ] || { echo "KTEST sched SKIP hmoe binary not packed"; return; }
	[ -r /models/deepseek-v3-tokenizer/tokenizer.json ] ||
		{ echo "KTEST sched SKIP tokenizer not packed"; return; }
	echo 5000 >/sys/module/hmoe/parameters/job_timeout_ms
	make_model sched || return
	e2e_gen /tmp/sched_cpu cpu-fxp:fp8 8 || { fail sched "cpu-fxp: $(tail -n 1 /tmp/sched_cpu.err)"; return; }
	[ -s /tmp/sched_cpu ] || { fail sched "cpu-fxp generated no text"; return; }
	sched_gen cards "sched:card=kmod:fp8,cards=2,verbose" || return
	grep -q 'cpu 0 calls' /tmp/sched_cards.err ||
		{ fail sched "default mem: the CPU tier was used"; return; }
	# an fp8 expert pack of the tiny model is 160 KiB: 480K holds 3 per card
	sched_gen tight "sched:card=kmod:fp8,cards=2,mem=480K,verbose" || return
	grep -Eq 'cpu [1-9][0-9]* calls' /tmp/sched_tight.err ||
		{ fail sched "mem=480K: the CPU tier was not used"; return; }
	sched_gen replan "sched:card=kmod,cards=2,replan=2,verbose" || return
	grep -Eq '[1-9][0-9]* re-placements, [1-9][0-9]* experts moved' /tmp/sched_replan.err ||
		{ fail sched "replan=2: no experts moved"; return; }
	printf '%s\n' '{"prompt": "Experts on cards", "id": "a"}' \
		'{"prompt": "Two micro-batches overlap the experts", "max_tokens": 4}' \
		'{"prompt": "hi", "id": 3}' >/tmp/reqs.jsonl
	prompts_gen /tmp/reqs_cpu cpu-fxp:fp8 1 || { fail sched "--prompts cpu-fxp: $(tail -n 1 /tmp/reqs_cpu.err)"; return; }
	[ "$(wc -l </tmp/reqs_cpu)" = 3 ] || { fail sched "--prompts cpu-fxp: want 3 JSON lines"; return; }
	sed 's/^/KTEST-SCHED cpu-fxp:fp8 --prompts: /' /tmp/reqs_cpu
	for spec in kmod:fp8,cards=2 "sched:card=kmod:fp8,cards=2,replan=3,verbose"; do
		prompts_gen /tmp/reqs_km "$spec" 2 || { fail sched "--prompts --micro-batches 2 $spec: $(tail -n 1 /tmp/reqs_km.err)"; return; }
		grep '^\[sched:\|CPU fallbacks' /tmp/reqs_km.err | sed "s/^/KTEST-SCHED $spec --prompts: /"
		cmp -s /tmp/reqs_cpu /tmp/reqs_km || {
			sed "s/^/KTEST-SCHED $spec --prompts: /" /tmp/reqs_km
			fail sched "--prompts --micro-batches 2 on $spec: JSON lines differ from cpu-fxp:fp8"
			return
		}
	done
	pass sched
}

# Two micro-batches on the cards, measured (a benchmark, not a timed assertion): the
# forward pass on 4 sequences with the kmod backend on both emulated cards, micro-batches
# 1 then 2; the JSON lines (KTEST-BENCH) carry prefill/decode seconds, the time the CPU
# waited for the cards and the attention time overlapped with card work. The guest has 2
# vCPUs: the user-space attention runs on 1 thread, the cards' jobs on kernel threads.
# Passes when both ran, the cards were driven asynchronously and 2 micro-batches ran.
t_overlap() {
	[ -x /bin/hmoe ] || { echo "KTEST overlap SKIP hmoe binary not packed"; return; }
	[ -r /models/deepseek-v3-tokenizer/tokenizer.json ] ||
		{ echo "KTEST overlap SKIP tokenizer not packed"; return; }
	make_model overlap || return
	for micro in 1 2; do
		hmoe bench forward --json --model /tmp/m --experts kmod:fp8,cards=2 --threads 1 \
			--sequences 4 --prompt-tokens 32 --decode-tokens 8 --bw-mib 64 \
			--micro-batches $micro >/tmp/ovl$micro.json 2>/tmp/ovl.err ||
			{ fail overlap "bench forward --micro-batches $micro: $(tail -n 1 /tmp/ovl.err)"; return; }
		echo "KTEST-BENCH $(tr -d '\n' </tmp/ovl$micro.json)"
	done
	grep -q '"experts_async": true' /tmp/ovl2.json && grep -q '"micro_batches_run": 2' /tmp/ovl2.json ||
		{ fail overlap "the kmod backend did not run asynchronously in 2 micro-batches"; return; }
	pass overlap
}

# The kmod expert backend against cpu-fxp on both cards, through run() and through
# submit/wait with two batches in flight, in A16 and A8 (tests/kmod/kmod_experts.c).
t_experts() {
	[ -x /bin/kmod_experts ] || { echo "KTEST experts SKIP kmod_experts not built (no libhmoe)"; return; }
	[ -x /bin/hmoe ] || { echo "KTEST experts SKIP hmoe binary not packed"; return; }
	[ -r /models/deepseek-v3-tokenizer/tokenizer.json ] ||
		{ echo "KTEST experts SKIP tokenizer not packed"; return; }
	make_model experts || return
	if kmod_experts /tmp/m >/tmp/experts.log 2>&1; then
		grep 'kmod_experts:' /tmp/experts.log | sed 's/^/KTEST-EXPERTS /'
		pass experts
	else
		sed 's/^/KTEST-EXPERTS /' /tmp/experts.log | tail -n 20
		fail experts "$(grep -m 1 '^FAIL' /tmp/experts.log)"
	fi
}

vmstat() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }
# snap N: memory counters into slabN shmemN vmN freeN, after dropping caches.
snap() {
	sync
	echo 3 >/proc/sys/vm/drop_caches
	eval "slab$1=$(vmstat nr_slab_unreclaimable) shmem$1=$(vmstat nr_shmem) free$1=$(vmstat nr_free_pages)"
	eval "vm$1=$(awk '$1 == "VmallocUsed:" { print $2 }' /proc/meminfo)"
}

# 20 load/unload cycles, each using a card; slab and free pages must not drift.
t_cycles() {
	rmmod hmoe || { fail cycles "rmmod hmoe failed"; return; }
	for i in 1 2; do
		insmod $M/hmoe.ko $HMOE_ARGS && hmoe_ktest smoke >/tmp/smoke && rmmod hmoe ||
			{ fail cycles "warm-up cycle $i: $(cat /tmp/smoke)"; return; }
	done
	snap 0
	cp /proc/slabinfo /tmp/slab0
	i=0
	while [ $i -lt ${CYCLES:-20} ]; do
		i=$((i + 1))
		insmod $M/hmoe.ko $HMOE_ARGS || { fail cycles "insmod in cycle $i"; return; }
		hmoe_ktest smoke >/tmp/smoke || { fail cycles "cycle $i: $(cat /tmp/smoke)"; return; }
		rmmod hmoe || { fail cycles "rmmod in cycle $i"; return; }
	done
	snap 1
	echo "cycles: $i load/unload cycles: unreclaimable slab pages $slab0 -> $slab1, shmem pages $shmem0 -> $shmem1, vmalloc kB $vm0 -> $vm1, free pages $free0 -> $free1"
	# The caches that grew, in bytes (active objects x object size), largest first.
	awk 'NR == FNR { if (FNR > 2) n[$1] = $2; next }
	     FNR > 2 && ($2 - n[$1]) * $4 > 0 { print "  slab " $1 " +" ($2 - n[$1]) * $4 " bytes" }' \
		/tmp/slab0 /proc/slabinfo | sort -t+ -k2 -n -r | head -n 8
	# What the driver allocates lands in unreclaimable slab (kmalloc, also the large
	# compute-unit scratch), shmem (BO pages) or vmalloc; free pages catch the rest.
	# Allowances are noise levels measured over 60 cycles; one leaked card per cycle
	# (2 x 98 KiB scratch) would add ~1000 slab pages, leaked smoke-test BOs (3 x 64 KiB)
	# ~960 shmem pages; shmem also holds the guest's /tmp files, hence 64. Free pages
	# are the gross catch-all: per-CPU page lists make them swing by ~1500 pages.
	[ $((slab1 - slab0)) -le 16 ] || { fail cycles "unreclaimable slab grew by $((slab1 - slab0)) pages"; return; }
	[ $((shmem1 - shmem0)) -le 64 ] || { fail cycles "shmem grew by $((shmem1 - shmem0)) pages"; return; }
	[ $((vm1 - vm0)) -le 256 ] || { fail cycles "vmalloc grew by $((vm1 - vm0)) kB"; return; }
	[ $((free0 - free1)) -le 4096 ] || { fail cycles "free pages fell by $((free0 - free1))"; return; }
	pass cycles
}

for t in $tests; do
	echo "KTEST-TIME $t starts at $(cut -d' ' -f1 /proc/uptime) s"
	case $t in
	load) t_load ;;
	pci) t_pci ;;
	bench) t_bench ;;
	e2e) t_e2e ;;
	sched) t_sched ;;
	overlap) t_overlap ;;
	experts) t_experts ;;
	cycles) t_cycles ;;
	*) hmoe_ktest "$t" ;;
	esac
done

echo "KTEST-DMESG-BEGIN"
dmesg
echo "KTEST-DMESG-END"
echo "KTEST-END"
poweroff -f
