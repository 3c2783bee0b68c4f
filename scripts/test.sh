#!/usr/bin/env bash
# The test command (`npm test`): installs what is missing, builds, runs every test file on the real
# kernel and ends with one line "N passed, N failed". Extra arguments go to `bun test`.
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "npm test: the tests load BPF programs and build network namespaces: run as root" >&2; exit 1; }
bash scripts/ensure-deps.sh || exit 1
export PATH="$PWD/node_modules/.bin:$PATH"
bun build.ts || { echo "0 passed, 1 failed"; exit 1; }
mkdir -p build
rm -f build/junit.xml
bun test --timeout 120000 --reporter=junit --reporter-outfile=build/junit.xml "$@"
rc=$?
bun scripts/junit-summary.ts build/junit.xml "$rc"
