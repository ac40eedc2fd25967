#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test (the README's test command).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build_dir="${BUILD_DIR:-$repo/build}"

"$repo/scripts/install-deps.sh"
BUILD_DIR="$build_dir" "$repo/scripts/build.sh" -DCELLGATE_BUILD_TESTS=ON
# Kernels take a core each while they start: two tests at a time suits small machines.
ctest --test-dir "$build_dir" --output-on-failure --no-tests=error --timeout 600 -j2
"$repo/scripts/fuzz-smoke.sh"
