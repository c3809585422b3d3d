#!/usr/bin/env bash
# run_vm.sh: the kernel-module tests (`make test-kmod`). Builds hmoe.ko against Debian's
# kernel headers and the static in-VM test programs, packs an initramfs (busybox, the
# module, the DRM modules it needs from Debian's kernel, vgem as a foreign dma-buf
# exporter, the hmoe program with its shared libraries), boots Debian's kernel under
# qemu-system-x86_64 (KVM when usable, TCG otherwise), runs tests/kmod/vm_init.sh
# inside, and reads the results from the serial console.
#
# Fails when a test fails, when a test did not report, when the guest did not reach its
# end marker, or when the kernel log has any warning, oops, BUG or sanitizer report.
# Exits 77 (skip) when the kernel image, its modules, headers or QEMU are missing.
#   env: BUILD (build dir), KDIR (kernel build tree), KMOD_TESTS (tests to run inside,
#        default all), KMOD_CYCLES (load/unload cycles, default 20), KMOD_TIMEOUT (guest time
#        limit, s, default 480, 900 with the sanitizers), KMOD_ACCEL (tcg or kvm: no probing)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
BUILD=${BUILD:-build}
out=$root/$BUILD/kmod
log=$out/serial.log

skip() { echo "$1"; exit 77; }

kver=""
for d in /lib/modules/6.1.*-amd64; do [ -d "$d/kernel" ] && kver=$(basename "$d"); done
[ -n "$kver" ] || skip "no Debian 6.1 kernel modules in /lib/modules (install linux-image-amd64)"
kernel=/boot/vmlinuz-$kver
[ -r "$kernel" ] || skip "kernel image $kernel missing or unreadable (install linux-image-amd64)"
KDIR=${KDIR:-/lib/modules/$kver/build}
[ -d "$KDIR" ] || skip "no kernel headers at $KDIR (install linux-headers-amd64)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
busybox=$(command -v busybox || true)
[ -n "$busybox" ] && file -L "$busybox" | grep -q 'statically linked' ||
	skip "no static busybox (install busybox-static)"

mkdir -p "$out"
echo "== building hmoe.ko against $KDIR"
# The module must build warning-free: fail on any compiler warning.
make -s -C "$KDIR" M="$root" modules >"$out/kbuild.log" 2>&1 || { cat "$out/kbuild.log"; exit 1; }
if grep -E 'warning:|error:' "$out/kbuild.log"; then
	echo "FAIL: hmoe.ko does not build warning-free"
	exit 1
fi

echo "== building the in-VM test programs"
cc -static -O2 -std=gnu11 -Wall -Wextra -Werror -Wno-unknown-pragmas -Ikmod/uapi \
	$(pkg-config --cflags libdrm) -Ihls -o "$out/hmoe_ktest" tests/kmod/hmoe_ktest.c hls/*.c
# The kmod expert backend's own test links libhmoe (with the sanitizers it was built with).
rm -f "$out/kmod_experts"
san=()
if [ -r "$BUILD/libhmoe.a" ]; then
	# (grep reads all of nm's output: -q would make nm die of SIGPIPE under pipefail)
	nm "$BUILD/libhmoe.a" 2>/dev/null | grep __asan_ >/dev/null &&
		san=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
	cc -std=c11 -O2 -g -D_GNU_SOURCE -pthread -Wall -Wextra -Werror "${san[@]}" -Iruntime -Ihls \
		-Ikmod/uapi -Ihost -Itests/unit $(pkg-config --cflags libdrm) -o "$out/kmod_experts" \
		tests/kmod/kmod_experts.c "$BUILD/libhmoe.a" -lcjson -lpcre2-8 -ldrm -ldl -lm
fi

echo "== packing the initramfs"
ird=$out/initramfs
rm -rf "$ird"
mkdir -p "$ird"/{bin,sbin,proc,sys,dev,tmp,lib/modules,lib64,etc}
cp "$busybox" "$ird/bin/busybox"
cp tests/kmod/vm_init.sh "$ird/init"
chmod +x "$ird/init"
cp "$out/hmoe_ktest" "$ird/bin/"
cp hmoe.ko "$ird/lib/modules/"
# The kernel modules hmoe.ko needs (modinfo depends), plus vgem (a foreign dma-buf
# exporter for the PRIME test), with their own dependencies from Debian's modules.dep,
# in load order (modules.dep lists a module's dependencies last-to-load first).
moddep=/lib/modules/$kver/modules.dep
load_order=()
add_module() { # NAME: appends its dependencies, then itself, to load_order
	local name=$1 path dep i
	path=$(grep -E "(^|/)${name//[-_]/[-_]}\.ko(\.xz|\.zst|\.gz)?:" "$moddep" | head -n 1 | cut -d: -f1)
	[ -n "$path" ] || skip "kernel module $name not in $moddep"
	local deps=($(grep -E "^$path:" "$moddep" | cut -d: -f2))
	for ((i = ${#deps[@]} - 1; i >= 0; i--)); do
		dep=$(basename "${deps[$i]}")
		add_module "${dep%%.ko*}"
	done
	for i in "${load_order[@]}"; do [ "$i" = "$path" ] && return 0; done
	load_order+=("$path")
}
for m in $(modinfo -F depends hmoe.ko | tr ',' ' ') vgem; do
	add_module "$m"
done
: >"$ird/etc/kmods"
for path in "${load_order[@]}"; do
	src=/lib/modules/$kver/$path
	name=$(basename "${path%%.ko*}").ko
	case "$src" in
	*.xz) xz -dc "$src" >"$ird/lib/modules/$name" ;;
	*.zst) zstd -dqc "$src" >"$ird/lib/modules/$name" ;;
	*.gz) gzip -dc "$src" >"$ird/lib/modules/$name" ;;
	*) cp "$src" "$ird/lib/modules/$name" ;;
	esac
	echo "$name" >>"$ird/etc/kmods"
done
echo "kernel modules for the guest: $(tr '\n' ' ' <"$ird/etc/kmods")"
# The hmoe program (for `hmoe bench kmod` inside) and the expert backend's test, with
# their shared libraries.
for prog in "$BUILD/hmoe" "$out/kmod_experts"; do
	[ -x "$prog" ] || continue
	cp "$prog" "$ird/bin/"
	ldd "$prog" | awk '/=>/ { print $3 } /^[ \t]*\/.*ld-linux/ { print $1 }' |
		while read -r lib; do
			[ -r "$lib" ] || continue
			mkdir -p "$ird$(dirname "$lib")"
			cp -L "$lib" "$ird$lib"
		done
done
# The tokenizer, for the e2e test's `hmoe mktiny` + `hmoe generate` inside.
if [ -r models/deepseek-v3-tokenizer/tokenizer.json ]; then
	mkdir -p "$ird/models/deepseek-v3-tokenizer"
	cp models/deepseek-v3-tokenizer/tokenizer.json \
		models/deepseek-v3-tokenizer/tokenizer_config.json "$ird/models/deepseek-v3-tokenizer/"
fi
echo "${KMOD_TESTS:-all}" >"$ird/etc/ktests"
echo "${KMOD_CYCLES:-20}" >"$ird/etc/kcycles"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initramfs.cpio.gz"

# KVM when it is usable (KMOD_ACCEL=tcg|kvm forces one). A nested KVM that accepts the
# probe can still refuse the guest's vCPU (e.g. "failed to set MSR"): a KVM boot that
# dies before the guest's first line is retried under TCG.
accel=${KMOD_ACCEL:-}
if [ -z "$accel" ]; then
	accel=tcg
	if [ -w /dev/kvm ] && qemu-system-x86_64 -accel kvm -machine none -display none \
		-monitor none -serial none -S -daemonize -pidfile "$out/kvmprobe.pid" 2>/dev/null; then
		kill "$(cat "$out/kvmprobe.pid")" 2>/dev/null || true
		accel=kvm
	fi
fi
# Under TCG the guest CPU is "max" without XSAVE (so without AVX): QEMU 7.2's TCG runs the
# guest's plain SSE float code about ten times slower once the guest has AVX enabled (the
# scalar GEMV of a decode step spends its time in softfloat's slow multiply; measured with
# qemu-x86_64 on hmoe generate: 0.5 tok/s with max, 4.2 with max,-xsave). The SIMD paths
# are tested natively; the guest is here for the driver.
# The guest's time limit: 480 s, 900 s for the ASan/UBSan programs (about 390 s of guest
# time under TCG on the 2-core dev VM, 240 s without them).
guest_limit=${KMOD_TIMEOUT:-480}
[ -z "${KMOD_TIMEOUT:-}" ] && [ ${#san[@]} -gt 0 ] && guest_limit=900
boot() { # ACCEL: boots the guest, serial console to $log; returns qemu's status
	local cpu=max,-xsave
	[ "$1" = kvm ] && cpu=host
	echo "== booting $kernel ($1)"
	: >"$log"
	rm -f "$out/qemu.pid"
	timeout "$guest_limit" qemu-system-x86_64 -accel "$1" -cpu "$cpu" -smp 2 -m 1536 \
		-kernel "$kernel" -initrd "$out/initramfs.cpio.gz" \
		-append "console=ttyS0 quiet panic=-1 oops=panic hung_task_timeout_secs=30 slub_debug=FZP" \
		-device edu -net none -nographic -no-reboot -monitor none -serial "file:$log" \
		-pidfile "$out/qemu.pid" </dev/null
}
# An auto-chosen KVM boot is watched: a guest whose init has not printed its plan within
# $KMOD_KVM_WAIT s (30; under KVM it takes about two) is stuck in a nested KVM that ran
# the firmware but not the kernel (seen on a 2-core VM: SeaBIOS, then nothing), so it is
# stopped and TCG runs the tests instead.
kvm_watched() {
	local pid waited=0
	boot kvm &
	pid=$!
	while kill -0 "$pid" 2>/dev/null && ! grep -aq '^KTEST-PLAN' "$log"; do
		if [ "$waited" -ge "${KMOD_KVM_WAIT:-30}" ]; then
			echo "== no guest output after ${waited} s under KVM: stopping it"
			kill "$(cat "$out/qemu.pid" 2>/dev/null)" 2>/dev/null || true
			wait "$pid" 2>/dev/null || true
			: >"$log"
			return 125
		fi
		sleep 1
		waited=$((waited + 1))
	done
	wait "$pid"
}
start=$(date +%s)
rc=0
if [ "$accel" = kvm ] && [ -z "${KMOD_ACCEL:-}" ]; then
	kvm_watched || rc=$?
else
	boot "$accel" || rc=$?
fi
if [ $rc -ne 0 ] && [ "$accel" = kvm ] && [ -z "${KMOD_ACCEL:-}" ] && [ ! -s "$log" ]; then
	echo "== KVM could not run the guest (qemu exit $rc): TCG instead"
	start=$(date +%s)
	rc=0
	boot tcg || rc=$?
fi
echo "== guest ran $(($(date +%s) - start)) s (qemu exit $rc)"

fail=0
grep -a '^KTEST ' "$log" | tr -d '\r' || true
if ! grep -aq '^KTEST-END' "$log"; then
	echo "FAIL: the guest did not reach the end of its tests (crash or timeout); log tail:"
	tail -n 60 "$log" | tr -d '\r'
	fail=1
fi
if grep -aE '^KTEST [^ ]+ FAIL' "$log" >/dev/null; then
	fail=1
fi
# Every test listed in the guest's plan must have reported.
for t in $(grep -a '^KTEST-PLAN' "$log" | tr -d '\r' | cut -d' ' -f2-); do
	grep -aqE "^KTEST $t (PASS|FAIL|SKIP)" "$log" || { echo "FAIL: test $t did not report"; fail=1; }
done
# The kernel log (console plus the dmesg dump at the end) must be clean; slub_debug
# (on the command line) reports slab corruption and use-after-free as "BUG <cache> (".
if grep -aE 'WARNING:|BUG:|BUG [^ ]+ \(|Poison overwritten|Redzone overwritten|Oops|Call Trace|general protection|UBSAN|KASAN|kernel BUG|refcount_t|list_add corruption|list_del corruption|INFO: task .* blocked|soft lockup|hard LOCKUP|RCU stall|tainted: .*W' "$log" | grep -v '^KTEST'; then
	echo "FAIL: kernel warnings/oopses in the guest log ($log)"
	fail=1
fi
if [ $fail -ne 0 ]; then
	echo "kmod tests FAILED (full log: $log)"
	exit 1
fi
echo "kmod tests passed (log: $log)"
