#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a few seconds (docs/fuzzing.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${FUZZ_BUILD_DIR:-$repo/build-fuzz}"
seconds="${FUZZ_SECONDS:-12}"
targets=(wire_decoder ipynb_reader request_validation)

cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCELLGATE_BUILD_FUZZERS=ON -DCELLGATE_BUILD_TESTS=ON > /dev/null
cmake --build "$build_dir" -j"$(nproc)" --target "${targets[@]/%/_fuzzer}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in "${targets[@]}"; do
  fuzzer="${target}_fuzzer"
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  "$build_dir/tests/fuzz/$fuzzer" -max_total_time="$seconds" \
    -dict="$repo/tests/fuzz/$target.dict" -artifact_prefix="$work/$target/artifacts/" \
    "$work/$target/corpus" "$repo/tests/fuzz/corpus/$target" 2> "$work/$target/fuzz.log" || {
      tail -50 "$work/$target/fuzz.log"; echo "fuzz: $fuzzer found a crash"; exit 1; }
  grep -E "^Done [0-9]+ runs" "$work/$target/fuzz.log"
  echo "fuzz: $fuzzer ran ${seconds}s without a crash"
done
