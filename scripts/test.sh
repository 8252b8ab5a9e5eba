#!/usr/bin/env bash
# Installs the dependencies, checks the formatting, builds kvstore with
# AddressSanitizer and UndefinedBehaviorSanitizer, and runs the whole test
# suite with ctest.
# Extra arguments go to ctest (for example: -R raft, or -L storage).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
# Unformatted code fails the run before anything is built (scripts/format.sh --fix).
scripts/format.sh
build=${KV_BUILD_DIR:-build/test}
jobs=$(nproc)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Debug -DKV_SANITIZE=ON >/dev/null
cmake --build "$build" -j"$jobs"
ctest --test-dir "$build" --output-on-failure -j"$jobs" "$@"
