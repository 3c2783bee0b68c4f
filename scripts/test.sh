#!/usr/bin/env bash
# The test command (`npm test`): installs what is missing, builds, runs every test file on the real
# kernel, then the VM suite (test/vm, Debian's 6.1 kernel under qemu), and ends with one line
# "N passed, N failed" over both. Extra arguments go to `bun test` and leave the VM suite out
# (a subset run: `npm test -- test/nat.test.ts`).
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "npm test: the tests load BPF programs and build network namespaces: run as root" >&2; exit 1; }
bash scripts/ensure-deps.sh || exit 1
export PATH="$PWD/node_modules/.bin:$PATH"
bun build.ts || { echo "0 passed, 1 failed"; exit 1; }
mkdir -p build
rm -f build/junit.xml build/junit-vm.xml
bun test --timeout 120000 --reporter=junit --reporter-outfile=build/junit.xml "$@"
rc=$?
reports=(build/junit.xml "$rc")
if (($# == 0)); then
  echo "npm test: the VM suite (test/vm)"
  bun test/vm/run.ts --no-build --junit build/junit-vm.xml
  reports+=(build/junit-vm.xml "$?")
fi
bun scripts/junit-summary.ts "${reports[@]}"
