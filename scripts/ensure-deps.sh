#!/usr/bin/env bash
# Installs what building, testing and the demo need, and nothing when it is all there already.
# Debian packages through apt-get, npm packages through npm (bun itself comes from npm).
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(clang llvm libbpf1 libbpf-dev libnetfilter-conntrack3 libmnl0 nftables conntrack
      iproute2 iputils-ping iperf3 ethtool bpftool linux-libc-dev
      qemu-user-static libc6-arm64-cross systemd)  # the last three: packaging tests
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [ "$(id -u)" = 0 ] || { echo "ensure-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  echo "ensure-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2; rm -f "$log"; echo "ensure-deps: apt-get failed" >&2; exit 1
  fi
  rm -f "$log"
fi

# npm install when node_modules is missing or older than the manifest.
if [ ! -x node_modules/.bin/bun ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "ensure-deps: installing npm packages" >&2
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
