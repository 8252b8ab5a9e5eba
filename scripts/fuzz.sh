#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (in build/fuzz) and runs one for a
# bounded time: scripts/fuzz.sh TARGET SECONDS. Used by ctest; also for long
# runs by hand (scripts/fuzz.sh decoders_fuzz 3600).
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-decoders_fuzz}
seconds=${2:-20}
build=${KV_FUZZ_BUILD_DIR:-build/fuzz}
CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKV_TESTS=OFF \
  -DKV_FUZZ=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target "$target" >/dev/null
corpus="$build/corpus-$target"
mkdir -p "$corpus"
# A crash or leak fails the run (exit code) and leaves the input in $build.
"$build/test/fuzz/$target" -max_total_time="$seconds" -max_len=4096 -rss_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="$build/" "$corpus" 2>&1 | tail -n 12
