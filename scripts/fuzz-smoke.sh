#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a few seconds (docs/fuzzing.md).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${FUZZ_BUILD_DIR:-$repo/build-fuzz}"
seconds="${FUZZ_SECONDS:-15}"

cmake -S "$repo" -B "$build_dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ \
  -DCELLGATE_BUILD_FUZZERS=ON -DCELLGATE_BUILD_TESTS=ON > /dev/null
cmake --build "$build_dir" --target wire_decoder_fuzzer -j"$(nproc)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
"$build_dir/tests/fuzz/wire_decoder_fuzzer" -max_total_time="$seconds" \
  -dict="$repo/tests/fuzz/wire_decoder.dict" -artifact_prefix="$work/artifacts/" \
  "$work/corpus" "$repo/tests/fuzz/corpus/wire_decoder" 2> "$work/fuzz.log" || {
    tail -50 "$work/fuzz.log"; echo "fuzz: wire_decoder_fuzzer found a crash"; exit 1; }
grep -E "^Done [0-9]+ runs" "$work/fuzz.log"
echo "fuzz: wire_decoder_fuzzer ran ${seconds}s without a crash"
